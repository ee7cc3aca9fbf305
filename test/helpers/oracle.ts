// The Python oracle: the real ZODB/ZEO in the venv that `npm test` prepares (scripts/oracle-venv.mjs).
// One long-lived Python process per test file answers snippets, so property tests can send batches.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Set by the documented ZEO_TS_SKIP_INTEROP=1; the only way interop tests are turned off. */
export const interopDisabled = process.env.ZEO_TS_SKIP_INTEROP === '1';

export function oraclePython(): string {
  const py = process.env.ZEO_TS_ORACLE_PYTHON;
  if (!py) {
    throw new Error(
      'ZEO_TS_ORACLE_PYTHON is not set: run the tests with `npm test` (which prepares the Python oracle), ' +
        'or set ZEO_TS_SKIP_INTEROP=1 to skip interop tests.',
    );
  }
  return py;
}

export interface OracleResult {
  json: unknown;
  bytes: Buffer;
}

export class OracleError extends Error {
  constructor(
    message: string,
    readonly pythonTraceback: string,
  ) {
    super(message);
    this.name = 'OracleError';
  }
}

/** A Python worker process: `run(code, input)` executes code with `input` bytes and returns its `result`. */
export class Oracle {
  private proc: ChildProcessWithoutNullStreams;
  private buf: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  private waiting: Array<{ resolve: (r: OracleResult) => void; reject: (e: Error) => void }> = [];
  private exited: Error | null = null;

  constructor(python = oraclePython()) {
    this.proc = spawn(python, ['-u', resolve(repoRoot, 'test/helpers/oracle_worker.py')], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    this.proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    this.proc.stdout.on('data', (d: Buffer) => this.onData(d));
    this.proc.on('exit', (code) => {
      this.exited = new Error(`oracle python exited with ${code}: ${stderr}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    });
    this.proc.on('error', (e) => {
      this.exited = new Error(`cannot start the oracle python: ${e.message}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      if (this.buf.length < 4) return;
      const hlen = this.buf.readUInt32BE(0);
      if (this.buf.length < 8 + hlen) return;
      const plen = this.buf.readUInt32BE(4 + hlen);
      if (this.buf.length < 8 + hlen + plen) return;
      const header = JSON.parse(this.buf.subarray(4, 4 + hlen).toString('utf8')) as {
        ok: boolean;
        kind?: string;
        json?: unknown;
        error?: string;
        traceback?: string;
      };
      const payload = Buffer.from(this.buf.subarray(8 + hlen, 8 + hlen + plen));
      this.buf = this.buf.subarray(8 + hlen + plen);
      const w = this.waiting.shift();
      if (!w) continue;
      if (header.ok) w.resolve({ json: header.json ?? null, bytes: payload });
      else w.reject(new OracleError(`python: ${header.error}\n${header.traceback}`, header.traceback ?? ''));
    }
  }

  /** Runs `code` in the oracle with `input` and `args` bound; resolves with what it put in `result`. */
  run(code: string, input: Uint8Array = new Uint8Array(0), args: unknown = null): Promise<OracleResult> {
    if (this.exited) return Promise.reject(this.exited);
    const header = Buffer.from(JSON.stringify({ code, args }));
    const frame = Buffer.alloc(8 + header.length + input.length);
    frame.writeUInt32BE(header.length, 0);
    header.copy(frame, 4);
    frame.writeUInt32BE(input.length, 4 + header.length);
    frame.set(input, 8 + header.length);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(frame);
    });
  }

  async json<T = unknown>(code: string, input?: Uint8Array, args?: unknown): Promise<T> {
    return (await this.run(code, input, args)).json as T;
  }

  async bytes(code: string, input?: Uint8Array, args?: unknown): Promise<Buffer> {
    return (await this.run(code, input, args)).bytes;
  }

  close(): void {
    this.proc.stdin.end();
  }
}

/** Packs a list of byte strings into one buffer (u32 BE length each) for batch requests; Python unpacks with `unpack_list`. */
export function packList(items: Uint8Array[]): Buffer {
  let n = 4;
  for (const it of items) n += 4 + it.length;
  const out = Buffer.alloc(n);
  out.writeUInt32BE(items.length, 0);
  let p = 4;
  for (const it of items) {
    out.writeUInt32BE(it.length, p);
    out.set(it, p + 4);
    p += 4 + it.length;
  }
  return out;
}

export function unpackList(buf: Uint8Array): Buffer[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = b.readUInt32BE(0);
  const out: Buffer[] = [];
  let p = 4;
  for (let i = 0; i < n; i++) {
    const len = b.readUInt32BE(p);
    out.push(b.subarray(p + 4, p + 4 + len));
    p += 4 + len;
  }
  return out;
}

/** Python helpers for snippets: `unpack_list(input)` and `pack_list(items)` mirror packList/unpackList. */
export const PY_LIST_HELPERS = `
import struct
def unpack_list(b):
    (n,) = struct.unpack_from('>I', b, 0); p = 4; out = []
    for _ in range(n):
        (l,) = struct.unpack_from('>I', b, p); out.append(bytes(b[p+4:p+4+l])); p += 4 + l
    return out
def pack_list(items):
    return struct.pack('>I', len(items)) + b''.join(struct.pack('>I', len(i)) + bytes(i) for i in items)
`;

/**
 * An interop test: runs `fn` with a started oracle, or reports a visible skip when (and only when)
 * ZEO_TS_SKIP_INTEROP=1 is set.
 */
export function interopTest(
  name: string,
  fn: (oracle: Oracle, t: TestContext) => Promise<void>,
  options: { timeout?: number } = {},
): void {
  if (interopDisabled) {
    test(name, { skip: 'ZEO_TS_SKIP_INTEROP=1' }, () => {});
    return;
  }
  test(name, { timeout: options.timeout ?? 120_000 }, async (t) => {
    const oracle = new Oracle();
    try {
      await fn(oracle, t);
    } finally {
      oracle.close();
    }
  });
}
