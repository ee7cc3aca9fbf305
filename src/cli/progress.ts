// A console progress bar for long work (open-time scans, `zeo verify`, pack): on a terminal, one line on
// stderr rewritten in place (percentage, bar, bytes, rate, ETA), at most 10 times a second; off a terminal
// (a log file, a pipe, CI) nothing for work that ends quickly, and for long work a line at 25, 50 and 75%
// at most. No dependency: the line is built here and written with '\r' and "erase to the end of line".
//
//   const bar = new ProgressBar({ label: 'verify', total: size });
//   bar.update(done);      // as often as you like: drawing is throttled
//   bar.finish();          // erases the line (the caller prints its own summary)

/** The part of a stream the bar writes to (process.stderr, or a fake in tests). */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** what is being done, shown first ("verify", "scan") */
  label: string;
  /** total bytes (or units) of the work; 0 or less when unknown */
  total: number;
  /** default process.stderr */
  stream?: ProgressStream;
  /** false draws nothing at all (--quiet) */
  enabled?: boolean;
  /** overrides stream.isTTY */
  tty?: boolean;
  /** minimum time between two drawings on a terminal, ms (default 100: at most 10 a second) */
  intervalMs?: number;
  /** off a terminal, milestone lines are written only once the work has run this long, ms (default 5000) */
  quietMs?: number;
  /** the clock, in ms (tests pass a fake one) */
  now?: () => number;
}

const KIB = 1024;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes for people, in binary units: "999 B", "1.0 KiB", "12.3 MiB", "117 GiB" (3 significant digits). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '? B';
  if (n < KIB) return `${Math.round(n)} B`;
  let u = 0;
  let v = n;
  while (v >= KIB && u < UNITS.length - 1) {
    v /= KIB;
    u++;
  }
  // 1023.9 KiB would print as "1024 KiB": show it as the next unit
  if (v >= 999.5 && u < UNITS.length - 1) {
    v /= KIB;
    u++;
  }
  const digits = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/** A rate in bytes per second: "45.6 MiB/s"; "-- B/s" when unknown. */
export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return '-- B/s';
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** A duration: "0:07", "12:34", "1:02:03"; "--:--" when unknown or absurd (over 100 days). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > 100 * 86400) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export interface ProgressState {
  label: string;
  done: number;
  total: number;
  /** ms since the work started */
  elapsedMs: number;
  /** the width of the terminal; the line is cut to columns - 1 (so it never wraps) */
  columns?: number;
}

/** The percentage done, 0 to 100, floored (100 only when done); null when the total is unknown. */
export function percentOf(done: number, total: number): number | null {
  if (!(total > 0)) return null;
  if (done >= total) return 100;
  return Math.max(0, Math.min(99, Math.floor((done / total) * 100)));
}

/**
 * The progress line: "verify  42% [########..........] 76.0 MiB / 181 MiB  45.6 MiB/s  ETA 0:03". The rate is
 * the average since the start; the bar shrinks (then goes) to fit the width, the label is cut last.
 */
export function formatProgressLine(s: ProgressState): string {
  const columns = s.columns && s.columns > 20 ? s.columns : 80;
  const elapsed = s.elapsedMs / 1000;
  const rate = elapsed > 0.05 ? s.done / elapsed : NaN;
  const pct = percentOf(s.done, s.total);
  const known = pct !== null;
  // fixed widths, so the bar keeps its length as the numbers change
  const done = formatBytes(s.done).padStart(8);
  const amount = known ? `${done} / ${formatBytes(s.total)}` : done;
  const eta = known && rate > 0 ? formatDuration((s.total - s.done) / rate) : '--:--';
  const tail = `${amount}  ${formatRate(rate).padStart(10)}${known ? `  ETA ${eta.padStart(5)}` : ''}`;
  const head = known ? `${s.label} ${String(pct).padStart(3)}%` : s.label;
  const max = columns - 1;
  // room for a bar: " [" + bar + "] " between head and tail
  const room = max - head.length - tail.length - 4;
  let line: string;
  if (known && room >= 10) {
    const width = Math.min(room, 40);
    const filled = Math.floor(((pct ?? 0) / 100) * width);
    line = `${head} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${tail}`;
  } else {
    line = `${head}  ${tail}`;
  }
  return line.length > max ? line.slice(0, max) : line;
}

/** Off a terminal: the milestones (percent) that get a line, once the work has run `quietMs`. */
const MILESTONES = [25, 50, 75];

export class ProgressBar {
  readonly label: string;
  private total: number;
  private readonly stream: ProgressStream;
  private readonly enabled: boolean;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly quietMs: number;
  private readonly now: () => number;
  private readonly start: number;
  private lastDraw = -Infinity;
  private drawn = false;
  private drewComplete = false;
  private milestone = 0;
  private done = 0;
  private finished = false;

  constructor(options: ProgressOptions) {
    this.label = options.label;
    this.total = options.total;
    this.stream = options.stream ?? process.stderr;
    this.enabled = options.enabled ?? true;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.intervalMs = options.intervalMs ?? 100;
    this.quietMs = options.quietMs ?? 5000;
    this.now = options.now ?? (() => performance.now());
    this.start = this.now();
  }

  /** Reports `done` units of the total (and a new total when it changed); draws when it is time to. */
  update(done: number, total?: number): void {
    if (this.finished || !this.enabled) return;
    if (total !== undefined) this.total = total;
    this.done = done;
    const t = this.now();
    if (this.tty) {
      const complete = this.total > 0 && done >= this.total;
      // throttled; the 100% line is drawn once, at once
      if (t - this.lastDraw < this.intervalMs && !(complete && !this.drewComplete)) return;
      if (complete) this.drewComplete = true;
      this.lastDraw = t;
      this.draw(t);
      return;
    }
    if (t - this.start < this.quietMs) return;
    const pct = percentOf(done, this.total);
    if (pct === null) return;
    let reached = 0;
    for (const m of MILESTONES) if (pct >= m) reached = m;
    if (reached > this.milestone) {
      this.milestone = reached;
      this.stream.write(
        formatProgressLine({ label: this.label, done, total: this.total, elapsedMs: t - this.start }) + '\n',
      );
    }
  }

  /** Erases the line (on a terminal); nothing more is drawn after. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.enabled && this.tty && this.drawn) this.stream.write('\r\x1b[K');
  }

  /** ms since the bar was made */
  elapsedMs(): number {
    return this.now() - this.start;
  }

  private draw(t: number): void {
    const line = formatProgressLine({
      label: this.label,
      done: this.done,
      total: this.total,
      elapsedMs: t - this.start,
      columns: this.stream.columns,
    });
    this.stream.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }
}
