// Shared output for benchmarks: an aligned table on stdout; and what several benches share (medians, the
// oracle's Python, the Data.fs of the server and client benches).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release as osRelease, tmpdir, totalmem, type as osType } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { oraclePython, repoRoot } from '../test/helpers/oracle.js';
import { ServerProcess, freePort, zeoNodeFlags, type ServerKind } from '../test/helpers/server-process.js';

/** The value of a command-line flag `--name VALUE`, if given. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** "2.31x" when ours is faster (theirs / ours in time), "0.80x" when slower. */
export function ratio(theirSeconds: number, ourSeconds: number): string {
  return `${(theirSeconds / ourSeconds).toFixed(2)}x`;
}

export function printTable(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  const line = (r: string[]) =>
    r.map((x, c) => (c === 0 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
  console.log('');
}

/** The median of some figures. */
export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** "1.23x (1.10–1.40)": a ratio, with the range of the runs' own ratios when there are several. */
export function withRange(ratio: number, each: number[]): string {
  const text = `${ratio.toFixed(2)}x`;
  if (each.length < 2) return text;
  return `${text} (${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)})`;
}

/** Runs the oracle's Python with `args` (through `prefix`, e.g. taskset); its stdout. */
export function runPython(args: string[], timeoutMs: number, prefix: string[] = []): string {
  const [cmd, argv] = prefix.length
    ? [prefix[0], [...prefix.slice(1), oraclePython(), ...args]]
    : [oraclePython(), args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs, cwd: repoRoot });
  if (r.error) throw new Error(`python ${args[0]}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`python ${args.slice(0, 2).join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** The oracle's Python, ZEO and ZODB versions. */
export function oracleVersions(): { python: string; ZEO: string; ZODB: string } {
  return JSON.parse(
    runPython(
      [
        '-c',
        'import sys, json, importlib.metadata as m\n' +
          "print(json.dumps({'python': sys.version.split()[0], 'ZEO': m.version('ZEO'), 'ZODB': m.version('ZODB')}))",
      ],
      60_000,
    ),
  ) as { python: string; ZEO: string; ZODB: string };
}

export interface BenchDataFs {
  path: string;
  maxOid: number;
  objects: number;
}

/**
 * The server and client benches' Data.fs: `objects` PersistentMappings and `slots` client slots, built once
 * by Python's ZODB (test/fixtures/python/zeo_bench_client.py build) and kept in the system's temp directory
 * (`rebuild`: built again).
 */
export function benchDataFs(objects: number, slots: number, rebuild = false): BenchDataFs {
  const dir = join(tmpdir(), 'zeo-ts-bench-server');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${objects}.fs`);
  const marker = path + '.built';
  if (rebuild || !existsSync(marker) || !existsSync(path + '.index')) {
    for (const s of ['', '.index', '.lock', '.tmp', '.built']) rmSync(path + s, { force: true });
    process.stderr.write(`building ${path} (${objects} objects) with Python's ZODB...\n`);
    const build = resolve(repoRoot, 'test/fixtures/python/zeo_bench_client.py');
    const out = runPython([build, 'build', path, String(objects), String(slots)], 600_000);
    writeFileSync(marker, out.trim() + '\n');
  }
  const built = JSON.parse(readFileSync(marker, 'utf8')) as { maxOid: number; objects: number };
  return { path, ...built };
}

/**
 * What the Python client runners print for a phase (zeo_bench_client.py run_clients): the operations of all
 * clients, the phase's wall time and its window on CLOCK_MONOTONIC (seconds; V8's profiles use that clock, in
 * µs), the clients' CPU seconds together and each client's figures.
 */
export interface ClientsRun {
  ops: number;
  wall: number;
  monotonic: [number, number];
  clientCpu: number;
  clients: Array<{ ops: number; seconds: number; cpu: number }>;
}

/** What every comparison with the oracle records about its run (the head of its JSON result). */
export function runRecord(
  bench: string,
  date: Date,
  versions: { python: string; ZEO: string; ZODB: string },
  figures: { loadAverageAtStart: number; benchSeconds: number },
): Record<string, unknown> {
  return {
    bench,
    date: date.toISOString(),
    node: process.version,
    python: versions.python,
    zeo: versions.ZEO,
    zodb: versions.ZODB,
    cpus: cpus().length,
    ...figures,
  };
}

/** Writes bench/results/<bench>-<date>.json and says so on stderr. */
export function writeResult(bench: string, date: Date, out: unknown, seconds: number): void {
  const dir = resolve(repoRoot, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${bench}-${date.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  process.stderr.write(`wrote ${relative(repoRoot, file)} (${seconds.toFixed(0)} s)\n`);
}

// --- servers as child processes (the server and raw benches)

export type BenchServerKind = 'runzeo' | 'zeo-ts';

export interface BenchServer {
  kind: BenchServerKind;
  dir: string;
  port: number;
  proc: ChildProcess;
  logPath: string;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A fresh copy of the Data.fs (and its index) in `dir`, served by runzeo or `zeo serve` with the same zeo.conf
 * (both at their defaults: durable commits), logs in dir/server.log; `msgpack`: the servers' msgpack option on;
 * `taskset`: the CPUs to keep the server on; `nodeFlags`: for `zeo serve` (e.g. --cpu-prof).
 */
export async function startBenchServer(
  kind: BenchServerKind,
  dataPath: string,
  dir: string,
  options: { nodeFlags?: string[]; taskset?: string; msgpack?: boolean; withIndex?: boolean } = {},
): Promise<BenchServer> {
  mkdirSync(dir, { recursive: true });
  copyFileSync(dataPath, join(dir, 'Data.fs'));
  if (options.withIndex ?? true) copyFileSync(dataPath + '.index', join(dir, 'Data.fs.index'));
  const port = await freePort();
  const conf = join(dir, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n${options.msgpack ? '  msgpack true\n' : ''}</zeo>\n` +
      `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
  );
  const logPath = join(dir, 'server.log');
  const fd = openSync(logPath, 'w');
  const zeoBin = resolve(repoRoot, 'bin/zeo');
  const [cmd, args] =
    kind === 'runzeo'
      ? [oraclePython(), ['-m', 'ZEO.runzeo', '-C', conf]]
      : [process.execPath, [...zeoNodeFlags, ...(options.nodeFlags ?? []), zeoBin, 'serve', '-C', conf]];
  const proc = options.taskset
    ? spawn('taskset', ['-c', options.taskset, cmd, ...args], { cwd: dir, stdio: ['ignore', fd, fd] })
    : spawn(cmd, args, { cwd: dir, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited: number | null = null;
  proc.on('exit', (code) => (exited = code ?? -1));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = readFileSync(logPath, 'utf8');
    if (text.includes(`listening on ('127.0.0.1', ${port})`)) break;
    if (exited !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`${kind} did not start (exit ${exited}):\n${text}`);
    }
    await sleep(50);
  }
  return { kind, dir, port, proc, logPath };
}

/** Stops a child process: SIGTERM, then SIGKILL after 30 s. */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

export async function stopBenchServer(s: BenchServer): Promise<void> {
  await stopProcess(s.proc);
}

/** A process's user + system CPU time in seconds (all its threads), from /proc/PID/stat. */
export function processCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15, in clock ticks (100 per second)
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** What a result records about the machine: CPU model, cores, memory, kernel, load average. */
export function machineDescription(): Record<string, unknown> {
  const c = cpus();
  return {
    cpuModel: c[0]?.model ?? 'unknown',
    cores: c.length,
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    kernel: `${osType()} ${osRelease()}`,
    loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
  };
}

// --- the profile of a server (--profile)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/**
 * Prints the top functions of a .cpuprofile by self time over a window (seconds on CLOCK_MONOTONIC, the clock
 * of V8's profiles; the server's start-up and shutdown left out), each with the zeo-ts function it was called
 * from (the nearest frame of our own code above it: for Node's native functions, which of ours made the call),
 * and the self time by file. The profiler samples the main thread on a timer, so a sample in a native function
 * (a socket write, a call handing work to the thread pool) includes time the thread was descheduled there.
 */
export function printProfile(file: string, phase: string, window: [number, number]): void {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time from sample i-1 to sample i: charge it to sample i
  const [from, to] = [window[0] * 1e6, window[1] * 1e6];
  let t = prof.startTime;
  prof.samples.forEach((id, i) => {
    t += prof.timeDeltas[i] ?? 0;
    if (t > from && t <= to) selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  });
  if (selfUs.size === 0) throw new Error(`no samples of ${file} fall in the phase's window`);
  const fileOf = (n: ProfileNode): string => {
    const url = n.callFrame.url;
    if (!url) return n.callFrame.functionName;
    return url.startsWith('file://') ? relative(repoRoot, fileURLToPath(url)) : url;
  };
  const name = (n: ProfileNode): string =>
    `${n.callFrame.functionName || '(anonymous)'}${n.callFrame.url ? `  ${fileOf(n)}:${n.callFrame.lineNumber + 1}` : ''}`;
  const ours = (n: ProfileNode): boolean => n.callFrame.url.startsWith('file://');
  const callerOf = (id: number): string => {
    for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
      const n = byId.get(p)!;
      if (ours(n)) return name(n);
    }
    return '';
  };
  const byFunction = new Map<string, { us: number; callers: Map<string, number> }>();
  const byFile = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    total += us;
    if (n.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const f = byFunction.get(name(n)) ?? { us: 0, callers: new Map<string, number>() };
    f.us += us;
    if (!ours(n)) {
      const c = callerOf(id);
      f.callers.set(c, (f.callers.get(c) ?? 0) + us);
    }
    byFunction.set(name(n), f);
    byFile.set(fileOf(n), (byFile.get(fileOf(n)) ?? 0) + us);
  }
  const busy = total - idle;
  const ms = (us: number): string => (us / 1000).toFixed(0);
  const pct = (us: number): string => ((us / busy) * 100).toFixed(1);
  printTable(
    `zeo serve --cpu-prof, ${phase}: top functions by self time over the phase (${ms(busy)} ms busy of ` +
      `${ms(total)} ms)`,
    ['function  location', 'self ms', '% of busy', 'called from (ours; share of its self time)'],
    [...byFunction]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, 30)
      .map(([k, f]) => {
        const [caller, cus] = [...f.callers].sort((a, b) => b[1] - a[1])[0] ?? ['', 0];
        return [k, ms(f.us), pct(f.us), caller ? `${caller} (${((cus / f.us) * 100).toFixed(0)}%)` : ''];
      }),
  );
  printTable(
    'by file (self time)',
    ['file', 'self ms', '% of busy'],
    [...byFile]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([k, us]) => [k, ms(us), pct(us)]),
  );
}

/** A server run by the test helper ServerProcess (its log kept in memory), on a free loopback port. */
export interface ManagedServer {
  kind: ServerKind;
  port: number;
  process: ServerProcess;
}

/**
 * runzeo or `zeo serve` over dir/Data.fs (an empty one, or the copy the caller put there) on a free loopback
 * port, at its defaults (durable commits), with `zeo` added to its <zeo> section (e.g. `msgpack true`); for the
 * benches that need no taskset or node flags (client, shootout).
 */
export async function startManagedServer(kind: ServerKind, dir: string, zeo = ''): Promise<ManagedServer> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n${zeo}</zeo>\n` +
      `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
  );
  const p = new ServerProcess({ kind, conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
  try {
    await p.port(60_000);
  } catch (e) {
    p.kill();
    throw e;
  }
  return { kind, port, process: p };
}
