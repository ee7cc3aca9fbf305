// A server run as a child process, the way a supervisor runs runzeo: `node bin/zeo serve ...` (zeo-ts) or the
// oracle venv's `python -m ZEO.runzeo ...` (the reference), with its stderr (and stdout) collected, the port
// taken from its "listening on ('127.0.0.1', PORT)" log line, its exit tracked; and a raw `ruok` exchange.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import { oraclePython, repoRoot } from './oracle.js';

const zeo = resolve(repoRoot, 'bin/zeo');
/** The node flags of bin/zeo's `#!/usr/bin/env -S node ...` line, for running it as `node FLAGS bin/zeo`. */
export const zeoNodeFlags: string[] = (/^#!.*\bnode\b(.*)$/m.exec(readFileSync(zeo, 'utf8'))?.[1] ?? '')
  .trim()
  .split(/\s+/)
  .filter((f) => f !== '');

export type ServerKind = 'zeo-ts' | 'runzeo';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcessOptions {
  kind: ServerKind;
  /** the configuration file: `-C conf` */
  conf?: string;
  /** the command-line arguments instead (zeo serve's -a, -f, --pid-file, ...) */
  args?: string[];
  /** the working directory (default: this process's) */
  cwd?: string;
  /** added to process.env and INSTANCE_HOME='' */
  env?: NodeJS.ProcessEnv;
  /** node's flags for `zeo serve`, after bin/zeo's own (e.g. --cpu-prof, which NODE_OPTIONS refuses) */
  nodeFlags?: string[];
  /** the event log file the configuration names: the log read by waitForLog and port() */
  logFile?: string;
}

/** Every ServerProcess started in this test file, for stopLeftovers. */
const running = new Set<ServerProcess>();

/** SIGKILL the servers still running (for an `after` hook: those a failed test left behind). */
export function stopLeftovers(): void {
  for (const s of running) s.kill();
}

export class ServerProcess {
  readonly kind: ServerKind;
  readonly proc: ChildProcess;
  stderr = '';
  stdout = '';
  exit: Exit | null = null;
  readonly exited: Promise<Exit>;

  constructor(readonly options: ServerProcessOptions) {
    this.kind = options.kind;
    const args = options.args ?? ['-C', options.conf!];
    const [cmd, argv] =
      options.kind === 'runzeo'
        ? [oraclePython(), ['-m', 'ZEO.runzeo', ...args]]
        : [process.execPath, [...zeoNodeFlags, ...(options.nodeFlags ?? []), zeo, 'serve', ...args]];
    this.proc = spawn(cmd, argv, {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, INSTANCE_HOME: '', ...options.env },
    });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.proc.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.exited = new Promise((resolveExit) =>
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        running.delete(this);
        resolveExit(this.exit);
      }),
    );
    running.add(this);
  }

  /** "runzeo" or "zeo serve", for messages */
  get label(): string {
    return this.kind === 'runzeo' ? 'runzeo' : 'zeo serve';
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** The log text: the log file when there is one, else stderr. */
  log(): string {
    if (!this.options.logFile) return this.stderr;
    try {
      return readFileSync(this.options.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Waits until the log matches `re`; fails if the server exits first. */
  async waitForLog(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.log());
      if (m) return m;
      if (this.exit)
        throw new Error(
          `${this.label} exited (${JSON.stringify(this.exit)}) before logging ${re}:\n${this.diag()}`,
        );
      if (Date.now() > deadline) throw new Error(`${this.label} did not log ${re} in time:\n${this.diag()}`);
      await sleep(25);
    }
  }

  /** The port of runzeo's (and ours) "listening on ('127.0.0.1', PORT)" line. */
  async port(timeoutMs = 20_000): Promise<number> {
    const m = await this.waitForLog(
      /INFO ZEO\.asyncio\.server listening on \('127\.0\.0\.1', (\d+)\)/,
      timeoutMs,
    );
    return Number(m[1]);
  }

  /** Sends `signal` and waits for the exit; after `timeoutMs`, SIGKILLs the server and fails. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<Exit> {
    if (!this.exit) this.proc.kill(signal);
    try {
      return await withTimeout(
        this.exited,
        timeoutMs,
        () => `${this.label} did not exit on ${signal}:\n${this.diag()}`,
      );
    } catch (e) {
      this.kill();
      throw e;
    }
  }

  /** stop(), and the exit must be status 0. */
  async stopCleanly(): Promise<void> {
    const exit = await this.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `${this.label} exit on SIGTERM:\n${this.diag()}`);
  }

  kill(): void {
    if (!this.exit) this.proc.kill('SIGKILL');
  }

  diag(): string {
    return `stderr:\n${this.stderr.slice(-3000)}${this.options.logFile ? `\nlog file:\n${this.log().slice(-3000)}` : ''}`;
  }
}

/** The records of a log in runzeo's "------\n" separated format. */
export function logRecords(text: string): string[] {
  return text
    .split(/^------\n/m)
    .slice(1)
    .map((r) => r.replace(/\n$/, ''));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function withTimeout<T>(p: Promise<T>, ms: number, why: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(why())), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A free loopback port for runzeo, whose log says port 0 when given port 0. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export type RuokStatus = Record<string, Record<string, unknown>>;

export interface RuokAnswer {
  /** the protocol frame (the greeting) */
  proto: string;
  /** the JSON status as sent */
  text: string;
  status: RuokStatus;
  /** bytes received after the two frames (0: the server closed after them) */
  excess: number;
}

/** A raw `ruok` exchange: the server's protocol frame, then its JSON status; the server closes. */
export async function ruok(address: { port: number } | { path: string }): Promise<RuokAnswer> {
  const sock = 'path' in address ? net.connect(address.path) : net.connect(address.port, '127.0.0.1');
  const chunks: Buffer[] = [];
  await new Promise<void>((resolveEnd, reject) => {
    sock.on('connect', () => sock.write(Buffer.from('\x00\x00\x00\x04ruok', 'latin1')));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('end', () => resolveEnd());
    sock.on('error', reject);
    sock.setTimeout(10_000, () => reject(new Error('ruok timed out')));
  });
  sock.destroy();
  const all = Buffer.concat(chunks);
  const n1 = all.readUInt32BE(0);
  const proto = all.subarray(4, 4 + n1).toString('latin1');
  const n2 = all.readUInt32BE(4 + n1);
  const text = all.subarray(8 + n1, 8 + n1 + n2).toString('latin1');
  return { proto, text, status: JSON.parse(text) as RuokStatus, excess: all.length - (8 + n1 + n2) };
}
