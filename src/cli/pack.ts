// `zeo pack [options] [servers]`: ZEO's zeopack (ZEO/scripts/zeopack.py). Packs the storage of each server
// given, host:port[:name] as arguments and path[:name] with -u, to the current time (or -t HH[:MM[:SS]] today)
// less -d days, waiting for the pack to finish. The same options and exit statuses: none at all prints the
// help (exit 0); a bad specification or a failed pack prints "Error:" and the reason on stderr (exit 1); a
// server that cannot be reached is reported and skipped, and exit 1 when none could be. Like zeopack it
// registers read-only (ZEO lets a read-only client pack) and waits (60 s) for each server to answer, through
// a ClientStorage (its connection manager retries with backoff meanwhile).

import os from 'node:os';
import { Command } from 'commander';
import type { ClientStorage } from '../client/client-storage.js';
import type { ServerAddress } from '../client/connection.js';
import { pyRepr, tuple } from '../pickle/index.js';
import type { TlsSection } from '../transport/tls.js';
import { addTlsOptions, sslFromOptions } from './copy.js';
import { formatDuration, ProgressBar, type ProgressStream } from './progress.js';

/** One storage to pack: its server and its name there. */
export interface PackTarget {
  address: ServerAddress;
  name: string;
}

export interface PackCommandOptions {
  days?: string;
  time?: string;
  unix?: string[];
  host?: string;
  port?: string;
  name: string;
  unixDeprecated?: string;
  waitTimeout?: string;
  sslCertificate?: string;
  sslKey?: string;
  sslAuthenticate?: string;
  sslCheckHostname?: boolean;
  sslServerHostname?: string;
}

/** A specification zeopack refuses (its error(): "Error:\n<message>", exit 1). */
export class PackUsageError extends Error {
  override name = 'PackUsageError';
}

/** An optparse error (a value of the wrong type): exit 2. */
class OptionError extends Error {}

function parseInt10(flag: string, v: string): number {
  if (!/^\s*[-+]?\d+\s*$/.test(v))
    throw new OptionError(`option ${flag}: invalid integer value: ${pyRepr(v)}`);
  return Number(v);
}

/** zeopack's pack time: now (or today at -t HH[:MM[:SS]], local time) less `days` days, in seconds. */
export function packTime(days: number, time: string | undefined, now: Date = new Date()): number {
  let t = now.getTime() / 1000;
  if (time !== undefined) {
    const parts = time.split(':').map((p) => {
      if (!/^\s*[-+]?\d+\s*$/.test(p)) throw new PackUsageError(`Invalid time value: ${pyRepr(time)}`);
      return Number(p);
    });
    if (parts.length > 3) throw new PackUsageError(`Invalid time value: ${pyRepr(time)}`);
    while (parts.length < 3) parts.push(0);
    // time.mktime of today's date with that time of day (whole seconds, as mktime returns them)
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate(), parts[0], parts[1], parts[2]);
    t = d.getTime() / 1000;
  }
  return t - days * 86400;
}

/**
 * The storages the arguments and options name, in zeopack's order (-h/-p, -U, arguments, -u). One
 * difference: a server given without a storage name gets -S's (zeopack ignores -S there and packs '1', which
 * `-S main host:port` would pack by surprise); without -S both use '1'.
 */
export function packTargets(args: string[], o: PackCommandOptions): PackTarget[] {
  const targets: PackTarget[] = [];
  if (o.host !== undefined) {
    if (o.port === undefined)
      throw new PackUsageError('If host (-h) is specified then a port (-p) must be specified as well.');
    targets.push({ address: { host: o.host, port: parseInt10('-p', o.port) }, name: o.name });
  } else if (o.port !== undefined) {
    targets.push({ address: { host: os.hostname(), port: parseInt10('-p', o.port) }, name: o.name });
  }
  if (o.unixDeprecated !== undefined) targets.push({ address: o.unixDeprecated, name: o.name });
  for (const server of args) {
    const data = server.split(':');
    if (data.length !== 2 && data.length !== 3)
      throw new PackUsageError(`Invalid server specification: ${pyRepr(server)}`);
    if (!/^\s*[-+]?\d+\s*$/.test(data[1]))
      throw new PackUsageError(`Invalid port in server specification: ${pyRepr(server)}`);
    targets.push({ address: { host: data[0], port: Number(data[1]) }, name: data[2] ?? o.name });
  }
  for (const server of o.unix ?? []) {
    const data = server.split(':');
    if (data.length > 2) throw new PackUsageError(`Invalid server specification: ${pyRepr(server)}`);
    targets.push({ address: data[0], name: data[1] ?? o.name });
  }
  return targets;
}

/** The target as zeopack prints it: Python's repr of ((host, port), name) or (path, name). */
export function targetRepr(t: PackTarget): string {
  const a = t.address;
  const addr = typeof a === 'string' ? a : 'path' in a ? a.path : tuple<string | number>(a.host, a.port);
  return pyRepr(tuple(addr, t.name));
}

function addressRepr(t: PackTarget): string {
  const a = t.address;
  return pyRepr(typeof a === 'string' ? a : 'path' in a ? a.path : tuple<string | number>(a.host, a.port));
}

/** A read-only ClientStorage on the target's storage, or the reason there is none after `waitMs`. */
async function connect(
  t: PackTarget,
  waitMs: number,
  ssl: TlsSection | null,
): Promise<{ storage: ClientStorage | null; reason: string }> {
  try {
    // the client's modules load only when a pack runs
    const { ClientStorage } = await import('../client/client-storage.js');
    const storage = await ClientStorage.open({
      server: t.address,
      storage: t.name,
      readOnly: true,
      waitTimeout: waitMs,
      cacheSize: 0,
      ...(ssl ? { ssl } : {}),
    });
    return { storage, reason: '' };
  } catch (e) {
    return { storage: null, reason: (e as Error).message };
  }
}

/**
 * What a terminal shows while a server that says nothing of a pack's progress (ZEO's runzeo) packs: the
 * storage and the time spent, redrawn each second ("pack (('127.0.0.1', 8100), '1')  0:42"). Off a terminal it
 * draws nothing (zeopack's output, which scripts read, stays as it was).
 */
export class PackTicker {
  private timer: NodeJS.Timeout | null = null;
  private drawn = false;
  private readonly start: number;

  constructor(
    readonly label: string,
    private readonly stream: ProgressStream = process.stderr,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.start = now();
  }

  /** Draws now and then every `intervalMs`, on a terminal only. */
  run(intervalMs = 1000): this {
    if (this.stream.isTTY !== true) return this;
    this.draw();
    this.timer = setInterval(() => this.draw(), intervalMs);
    this.timer.unref();
    return this;
  }

  draw(): void {
    const line = `${this.label}  ${formatDuration((this.now() - this.start) / 1000)}`;
    const max = (this.stream.columns && this.stream.columns > 20 ? this.stream.columns : 80) - 1;
    this.stream.write(`\r${line.length > max ? line.slice(0, max) : line}\x1b[K`);
    this.drawn = true;
  }

  /** Stops drawing and erases the line. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}

/**
 * A pack's line on a terminal: the ticker until the server tells the pack's progress (a zeo-ts server sends
 * {'pack_progress': (done, total, phase)} info messages), then a progress bar per phase ("pack 1: copy  42%
 * [####......] ..."). Off a terminal, nothing.
 */
export class PackProgressView {
  private ticker: PackTicker | null = null;
  private bar: ProgressBar | null = null;
  private phase: string | null = null;
  private readonly tty: boolean;

  constructor(
    readonly target: PackTarget,
    private readonly stream: ProgressStream,
    private readonly now?: () => number,
  ) {
    this.tty = stream.isTTY === true;
    if (this.tty) this.ticker = new PackTicker(`pack ${targetRepr(target)}`, stream, now).run();
  }

  /** The server's report: `done` of `total` bytes of the phase `phase`. */
  progress(done: number, total: number, phase: string): void {
    if (!this.tty) return;
    this.ticker?.stop();
    this.ticker = null;
    if (phase !== this.phase || !this.bar) {
      this.bar?.finish();
      this.phase = phase;
      this.bar = new ProgressBar({
        label: `pack ${this.target.name}: ${phase}`,
        total,
        stream: this.stream,
        tty: true,
        ...(this.now ? { now: this.now } : {}),
      });
    }
    this.bar.update(done, total);
  }

  /** Erases the line. */
  stop(): void {
    this.ticker?.stop();
    this.ticker = null;
    this.bar?.finish();
    this.bar = null;
  }
}

/** Packs every target; returns the exit status (messages go to `err`). */
export async function runPack(
  targets: PackTarget[],
  packt: number,
  options: {
    waitMs: number;
    tls?: TlsSection | null;
    err?: (s: string) => void;
    /** where the waiting line is drawn when it is a terminal (default process.stderr); null: nowhere */
    progress?: ProgressStream | null;
  },
): Promise<number> {
  const err = options.err ?? ((s: string) => process.stderr.write(s));
  let found = false;
  for (const t of targets) {
    const { storage, reason } = await connect(t, options.waitMs, options.tls ?? null);
    if (storage === null) {
      err(`Couldn't connect to: ${targetRepr(t)}\n  (${reason})\n`);
      continue;
    }
    found = true;
    const progress = options.progress === undefined ? process.stderr : options.progress;
    const view = progress ? new PackProgressView(t, progress) : null;
    try {
      await storage.pack(packt, undefined, view ? { onProgress: (d, n, p) => view.progress(d, n, p) } : {});
      view?.stop();
    } catch (e) {
      view?.stop();
      const error = e as Error;
      err(`${error.name}: ${error.message}\n`);
      err(`Error:\nError packing storage ${t.name} in ${addressRepr(t)}\n`);
      return 1;
    } finally {
      await storage.close();
    }
  }
  if (!found) {
    err('Error:\nCannot connect to any of the configured ZEO servers.\n');
    return 1;
  }
  return 0;
}

export function packCommand(): Command {
  const cmd = new Command('pack')
    .usage('[options] [servers]')
    .description(
      "pack one or more storages hosted by ZEO servers, as ZEO's zeopack. The arguments name TCP servers, " +
        'each host:port[:name] (the storage name defaults to 1)',
    )
    .helpOption('--help', 'display help for command')
    .argument('[servers...]', 'host:port[:name] of each server to pack')
    .option('-d, --days <days>', 'pack objects that are older than this number of days', '0')
    .option(
      '-t, --time <time>',
      'time of day to pack to of the form: HH[:MM[:SS]]. Defaults to current time.',
    )
    .option(
      '-u, --unix <socket>',
      'a unix-domain-socket server to connect to, of the form: path[:name] (repeatable)',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option('-h <host>', 'deprecated: used with the -p and -S options, specified the host to connect to')
    .option('-p <port>', 'deprecated: used with the -h and -S options, specifies the port to connect to')
    .option(
      '-S <name>',
      'the storage name to use with -h and -p, with -U, and for servers given without one. Defaults to 1.',
      '1',
    )
    .option('-U <socket>', 'deprecated: used with the -S option, unix-domain socket to connect to')
    .option('-w, --wait-timeout <seconds>', 'how long to wait for each server to answer (default 60)');
  return addTlsOptions(cmd).action(
    async (servers: string[], raw: Record<string, string | string[] | boolean | undefined>) => {
      const o: PackCommandOptions = {
        days: raw.days as string | undefined,
        time: raw.time as string | undefined,
        unix: raw.unix as string[] | undefined,
        host: raw.h as string | undefined,
        port: raw.p as string | undefined,
        name: (raw.S as string | undefined) ?? '1',
        unixDeprecated: raw.U as string | undefined,
        waitTimeout: raw.waitTimeout as string | undefined,
        sslCertificate: raw.sslCertificate as string | undefined,
        sslKey: raw.sslKey as string | undefined,
        sslAuthenticate: raw.sslAuthenticate as string | undefined,
        sslCheckHostname: raw.sslCheckHostname as boolean | undefined,
        sslServerHostname: raw.sslServerHostname as string | undefined,
      };
      // zeopack without arguments prints its help
      const given = cmd.options.some((opt) => cmd.getOptionValueSource(opt.attributeName()) === 'cli');
      if (servers.length === 0 && !given) {
        cmd.outputHelp();
        return;
      }
      let targets: PackTarget[];
      let packt: number;
      let waitMs = 60_000;
      try {
        const days = parseInt10('-d', o.days ?? '0');
        if (o.waitTimeout !== undefined) {
          const w = Number(o.waitTimeout);
          if (!Number.isFinite(w) || w < 0)
            throw new OptionError(`option -w: invalid number of seconds: ${pyRepr(o.waitTimeout)}`);
          waitMs = w * 1000;
        }
        packt = packTime(days, o.time);
        targets = packTargets(servers, o);
        if (targets.length === 0) throw new PackUsageError('No servers specified.');
      } catch (e) {
        if (e instanceof OptionError) {
          process.stderr.write(`${cmd.helpInformation().split('\n')[0]}\n\nzeo pack: error: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        if (e instanceof PackUsageError) {
          process.stderr.write(`Error:\n${e.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw e;
      }
      process.exitCode = await runPack(targets, packt, { waitMs, tls: sslFromOptions(o) });
    },
  );
}
