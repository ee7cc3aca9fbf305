// The raw bench's load generator (npm run bench -- raw): ZEO connections built on zeo-ts's protocol pieces
// (framing, handshake, codecs) without the client's cache nor its promise per call, so that it can drive a
// server harder than the server can answer. A load is a pre-encoded loadBefore frame (a template checked
// against the codec once, its msgid and oid patched in); a reply is read by its length and msgid only (and
// its flag, so that an error reply is never counted as a load), with one reply in LOAD_SAMPLE decoded in full
// and checked to be a real loadBefore result. Every request made in one read of the socket goes out in one
// write. The other phases (commits, iteration, scans, connects) run at a few thousand calls per second and
// decode every frame, one promise per call.
//
// Run as a worker thread (workerData: a GeneratorTask), it reports operations and a latency histogram in a
// SharedArrayBuffer the main thread reads at the phase's edges; the pure pieces are exported for tests.
import net from 'node:net';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Tuple, pyRepr, type PickleValue } from '../src/pickle/index.js';
import {
  REPLY,
  codecFor,
  encodeFrame,
  isAsync,
  type Encoding,
  type Message,
  type MessageCodec,
} from '../src/protocol/index.js';
import { maxtid, z64 } from '../src/storage/ids.js';

// --- pure pieces

/** The first msgid of the lean loads: from here to 2^31 - 1 an int has one fixed-size encoding (J / 0xce). */
export const FIRST_LOAD_MSGID = 0x10000;
/** One reply in this many is decoded in full and checked. */
export const LOAD_SAMPLE = 1000;
/** The most loads in flight on one connection (the ring of send times). */
export const MAX_DEPTH = 64;

/** A loadBefore(oid, maxtid) call frame (with its length prefix) and where its msgid and oid lie in it. */
export interface LoadTemplate {
  encoding: Encoding;
  frame: Buffer;
  msgidAt: number;
  oidAt: number;
}

function encodeMsgid(encoding: Encoding, msgid: number): Buffer {
  const b = Buffer.alloc(4);
  if (encoding === 'Z') b.writeInt32LE(msgid, 0);
  else b.writeUInt32BE(msgid, 0);
  return b;
}

/** Patches a msgid (FIRST_LOAD_MSGID <= msgid < 2^31) into a frame at `at`. */
export function writeMsgid(buf: Buffer, at: number, msgid: number, encoding: Encoding): void {
  if (encoding === 'Z') buf.writeInt32LE(msgid, at);
  else buf.writeUInt32BE(msgid, at);
}

export function readMsgid(buf: Buffer, at: number, encoding: Encoding): number {
  return encoding === 'Z' ? buf.readInt32LE(at) : buf.readUInt32BE(at);
}

/** Patches an oid < 2^32 into a frame at `at` (8 bytes, big-endian). */
export function writeOid(buf: Buffer, at: number, oid: number): void {
  buf.writeUInt32BE(0, at);
  buf.writeUInt32BE(oid >>> 0, at + 4);
}

function only(haystack: Buffer, needle: Buffer, what: string): number {
  const at = haystack.indexOf(needle);
  if (at < 0 || haystack.indexOf(needle, at + 1) >= 0)
    throw new Error(`cannot place the ${what} in ${what}'s template`);
  return at;
}

/**
 * The template of a loadBefore call in `encoding`, as the client codec encodes it, with the offsets of its msgid
 * and oid; checked by patching it for a few (msgid, oid) pairs and comparing with the codec's own frames.
 */
export function loadTemplate(encoding: Encoding): LoadTemplate {
  const codec = codecFor(encoding, 'client');
  const call = (msgid: number, oid: number): Buffer => {
    const o = Buffer.alloc(8);
    writeOid(o, 0, oid);
    return encodeFrame(codec.encodeCall(msgid, false, 'loadBefore', [o, maxtid]));
  };
  const probeMsgid = 0x5a3c1e2d;
  const probeOid = 0x71f3e5d7;
  const frame = call(probeMsgid, probeOid);
  const msgidAt = only(frame, encodeMsgid(encoding, probeMsgid), 'msgid');
  const o = Buffer.alloc(8);
  writeOid(o, 0, probeOid);
  const oidAt = only(frame, o, 'oid');
  const t: LoadTemplate = { encoding, frame, msgidAt, oidAt };
  for (const [m, oid] of [
    [FIRST_LOAD_MSGID, 0],
    [FIRST_LOAD_MSGID + 1, 1],
    [0x7fffffff, 0xffffffff],
    [123_456_789, 29_999],
  ]) {
    const f = Buffer.from(frame);
    writeMsgid(f, msgidAt, m, encoding);
    writeOid(f, oidAt, oid);
    if (!f.equals(call(m, oid)))
      throw new Error(`the loadBefore template differs from the codec's frame for msgid ${m}`);
  }
  return t;
}

/**
 * Where a reply's msgid lies in its payload (no length prefix), and the bytes that follow it in a result reply
 * (its flag: different in an error reply), as the server codec encodes them.
 */
export interface ReplyShape {
  encoding: Encoding;
  msgidAt: number;
  /** the payload's bytes at msgidAt + 4 in a result (flag 0) reply, up to where an error reply differs */
  ok: Buffer;
}

export function replyShape(encoding: Encoding): ReplyShape {
  const codec = codecFor(encoding, 'server');
  const probe = 0x5a3c1e2d;
  const ok = Buffer.from(codec.encodeReply(probe, null));
  const err = Buffer.from(codec.encodeError(probe, 'builtins.ValueError', new Tuple()));
  const msgidAt = only(ok, encodeMsgid(encoding, probe), 'msgid');
  let end = msgidAt + 4;
  while (end < ok.length && ok[end] === err[end]) end++;
  if (end >= ok.length) throw new Error('a result reply and an error reply do not differ after the msgid');
  const shape = { encoding, msgidAt, ok: ok.subarray(msgidAt + 4, end + 1) };
  // a reply to another msgid of the range has the same shape
  const other = Buffer.from(codec.encodeReply(FIRST_LOAD_MSGID, null));
  if (readMsgid(other, msgidAt, encoding) !== FIRST_LOAD_MSGID || !isOk(shape, other, 0))
    throw new Error('the reply shape differs between msgids');
  return shape;
}

/** Whether the reply payload at `start` of `buf` is a result (flag 0) reply. */
export function isOk(shape: ReplyShape, buf: Buffer, start: number): boolean {
  const at = start + shape.msgidAt + 4;
  const ok = shape.ok;
  for (let i = 0; i < ok.length; i++) if (buf[at + i] !== ok[i]) return false;
  return true;
}

/** Latency histogram buckets: 40 per decade of µs from 1 µs to 10^7.5 µs (about 6% wide). */
export const HISTOGRAM_BUCKETS = 300;
const PER_DECADE = 40;

export function bucketOf(us: number): number {
  if (!(us > 1)) return 0;
  const b = Math.floor(Math.log10(us) * PER_DECADE);
  return b < HISTOGRAM_BUCKETS ? b : HISTOGRAM_BUCKETS - 1;
}

/** The `p`-th percentile (0..1) of a histogram's counts, as its bucket's geometric middle, µs. */
export function percentile(counts: ArrayLike<number>, p: number): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (total === 0) return NaN;
  const rank = Math.max(1, Math.ceil(total * p));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return i === 0 ? 1 : 10 ** ((i + 0.5) / PER_DECADE);
  }
  return NaN;
}

/** A small fast PRNG (xorshift32): uniform oids without Math.random's cost or shared state. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return Math.floor((this.s / 0x100000000) * n);
  }
}

/** What a fully decoded loadBefore reply must be: (data, start, end) with 8-byte tids; its data. */
export function checkLoadReply(m: Message, msgid: number): Uint8Array {
  const v = m.body;
  if (m.name !== REPLY || m.flag !== 0 || m.msgid !== msgid)
    throw new Error(
      `loadBefore msgid ${msgid}: not its result but ${pyRepr(m.msgid)} ${pyRepr(m.flag)} ${pyRepr(v)}`,
    );
  if (
    !Array.isArray(v) ||
    v.length !== 3 ||
    !(v[0] instanceof Uint8Array) ||
    !(v[1] instanceof Uint8Array) ||
    v[1].length !== 8 ||
    !(v[2] === null || (v[2] instanceof Uint8Array && v[2].length === 8))
  )
    throw new Error(`loadBefore msgid ${msgid}: not (data, start, end) but ${pyRepr(v)}`);
  return v[0];
}

// --- connections

/** What a worker is asked to do. */
export interface GeneratorTask {
  phase: 'loads' | 'commits' | 'iterate' | 'iternext' | 'connect';
  host: string;
  port: number;
  encoding: Encoding;
  /** connections of this worker */
  connections: number;
  /** loads in flight per connection */
  depth: number;
  /** oids are drawn from [0, maxOid] */
  maxOid: number;
  seed: number;
  /** objects per commit */
  commitObjects: number;
  /** stop (and report done) after this many operations (the cold phase), else run until told to stop */
  maxOps?: number;
}

/** Shared counters: per worker, [operations, samples checked, histogram...]. */
export const SLOT_INTS = 2 + HISTOGRAM_BUCKETS;

const readBuffer = Buffer.allocUnsafe(1 << 18);

interface Pending {
  resolve(v: PickleValue): void;
  reject(e: Error): void;
}

/**
 * One ZEO connection: frames split from a static read buffer; calls decoded in full (setup and the slow
 * phases), or, once `startLoads` is called, the lean loads.
 */
export class GenConnection {
  private carry = Buffer.allocUnsafe(1 << 16);
  private carryLen = 0;
  private greeting: ((g: Buffer) => void) | null = null;
  codec: MessageCodec | null = null;
  private msgid = 0;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | null = null;
  private closed = false;
  /** told of the connection's failure (not of a close asked by close()) */
  onFail: ((e: Error) => void) | null = null;
  // lean loads
  private lean: LeanLoads | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => {
      const asked = this.closed;
      this.closed = true;
      this.fail(new Error(asked ? 'connection closed' : 'the server closed the connection'));
    });
  }

  /** Connects, answers the greeting with `encoding` and registers storage '1' (read-write). */
  static async open(host: string, port: number, encoding: Encoding): Promise<GenConnection> {
    let conn: GenConnection | null = null;
    const greeting = new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect({
        host,
        port,
        onread: { buffer: readBuffer, callback: (n, buf) => (conn!.onBytes(buf as Buffer, n), true) },
      });
      conn = new GenConnection(socket);
      conn.greeting = resolve;
      // (after an error too; a no-op once the greeting came)
      socket.once('close', () => reject(conn!.failure ?? new Error('the server closed the connection')));
    });
    const c = conn as unknown as GenConnection;
    await greeting;
    c.socket.write(encodeFrame(Buffer.from(`${encoding}5`, 'latin1')));
    c.codec = codecFor(encoding, 'client');
    const r = await c.call('register', ['1', false]);
    if (r !== null && !(r instanceof Uint8Array && r.length === 8))
      throw new Error(`register answered ${pyRepr(r)}`);
    return c;
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    if (!this.closed || e.message !== 'connection closed') this.onFail?.(e);
  }

  close(): void {
    this.closed = true;
    if (this.lean) this.lean.stopped = true;
    this.socket.destroy();
  }

  call(name: string, args: PickleValue[]): Promise<PickleValue> {
    if (this.failure) return Promise.reject(this.failure);
    const msgid = ++this.msgid;
    this.socket.write(encodeFrame(this.codec!.encodeCall(msgid, false, name, args)));
    return new Promise((resolve, reject) => this.pending.set(msgid, { resolve, reject }));
  }

  callAsync(name: string, args: PickleValue[]): void {
    this.socket.write(encodeFrame(this.codec!.encodeCall(0, true, name, args)));
  }

  startLoads(l: LeanLoads): void {
    this.lean = l;
  }

  private onBytes(buf: Buffer, n: number): void {
    let data = buf;
    let end = n;
    if (this.carryLen > 0) {
      if (this.carryLen + n > this.carry.length) {
        const bigger = Buffer.allocUnsafe(Math.max(this.carry.length * 2, this.carryLen + n));
        this.carry.copy(bigger, 0, 0, this.carryLen);
        this.carry = bigger;
      }
      buf.copy(this.carry, this.carryLen, 0, n);
      data = this.carry;
      end = this.carryLen + n;
    }
    let pos = 0;
    const lean = this.lean;
    try {
      while (end - pos >= 4) {
        const len = data.readUInt32BE(pos);
        if (end - pos - 4 < len) break;
        if (lean) lean.reply(data, pos + 4, len);
        else this.frame(Buffer.from(data.subarray(pos + 4, pos + 4 + len)));
        pos += 4 + len;
      }
      if (lean) lean.flush();
    } catch (e) {
      this.fail(e as Error);
      this.socket.destroy();
      return;
    }
    const rest = end - pos;
    if (rest > this.carry.length) {
      const bigger = Buffer.allocUnsafe(rest * 2);
      data.copy(bigger, 0, pos, end);
      this.carry = bigger;
    } else if (rest > 0) {
      data.copy(this.carry, 0, pos, end);
    }
    this.carryLen = rest;
  }

  private frame(payload: Buffer): void {
    if (this.greeting) {
      const g = this.greeting;
      this.greeting = null;
      g(payload);
      return;
    }
    const m = this.codec!.decode(payload);
    if (m.name !== REPLY) {
      if (!isAsync(m)) throw new Error(`the server called ${m.name}`);
      return; // invalidations, info: nothing to do here
    }
    if (this.lean) return;
    const id = typeof m.msgid === 'number' ? m.msgid : NaN;
    const p = this.pending.get(id);
    if (!p) throw new Error(`a reply to msgid ${pyRepr(m.msgid)}, which no call is waiting for`);
    this.pending.delete(id);
    if (m.flag === 0) p.resolve(m.body);
    else p.reject(new Error(`server error: ${pyRepr(m.body)}`));
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** The lean loads of one connection: `depth` loadBefore calls in flight, refilled as replies come. */
export class LeanLoads {
  private readonly template: Buffer;
  private readonly frameLen: number;
  private nextMsgid = FIRST_LOAD_MSGID;
  private readonly sentAt = new Float64Array(MAX_DEPTH);
  private due = 0;
  private seen = 0;
  stopped = false;

  constructor(
    private readonly conn: GenConnection,
    private readonly t: LoadTemplate,
    private readonly shape: ReplyShape,
    private readonly depth: number,
    private readonly rng: Rng,
    private readonly maxOid: number,
    private readonly sink: Sink,
  ) {
    if (depth < 1 || depth > MAX_DEPTH) throw new Error(`depth ${depth}: 1 to ${MAX_DEPTH}`);
    this.template = Buffer.from(t.frame);
    this.frameLen = t.frame.length;
  }

  start(): void {
    this.due = this.depth;
    this.flush();
  }

  /** One reply frame: payload at `start` of `buf`, `len` bytes. */
  reply(buf: Buffer, start: number, len: number): void {
    const shape = this.shape;
    const msgid = readMsgid(buf, start + shape.msgidAt, shape.encoding);
    const ahead = this.nextMsgid - msgid;
    if (!isOk(shape, buf, start) || ahead < 1 || ahead > this.depth) {
      const payload = Buffer.from(buf.subarray(start, start + len));
      const m = this.conn.codec!.decode(payload);
      if (m.name !== REPLY) return; // a one-way message from the server
      throw new Error(`loadBefore: unexpected reply ${pyRepr(m.msgid)} ${pyRepr(m.flag)} ${pyRepr(m.body)}`);
    }
    if (++this.seen % LOAD_SAMPLE === 1) {
      checkLoadReply(this.conn.codec!.decode(Buffer.from(buf.subarray(start, start + len))), msgid);
      this.sink.checked();
    }
    this.sink.op(performance.now() - this.sentAt[msgid & (MAX_DEPTH - 1)]);
    this.due++;
  }

  /** Sends the loads due, in one write. */
  flush(): void {
    const n = this.due;
    if (n === 0 || this.stopped) return;
    const k = this.sink.claim(n);
    this.due = 0;
    if (k <= 0) return;
    const len = this.frameLen;
    const out = Buffer.allocUnsafe(k * len);
    const { msgidAt, oidAt, encoding } = this.t;
    const now = performance.now();
    for (let i = 0; i < k; i++) {
      const at = i * len;
      this.template.copy(out, at);
      const msgid = this.nextMsgid++;
      writeMsgid(out, at + msgidAt, msgid, encoding);
      writeOid(out, at + oidAt, this.rng.below(this.maxOid + 1));
      this.sentAt[msgid & (MAX_DEPTH - 1)] = now;
    }
    this.conn.socket.write(out);
  }
}

/** Where a worker's operations go: counted in the shared counters. */
export interface Sink {
  op(ms: number): void;
  checked(): void;
  /** claims up to k operations to start: how many may (the cold phase's limit) */
  claim(k: number): number;
}

// --- the worker

class SharedSink implements Sink {
  private ops = 0;
  private started = 0;
  private readonly base: number;
  constructor(
    private readonly ints: Int32Array,
    slot: number,
    private readonly maxOps: number,
  ) {
    this.base = slot * SLOT_INTS;
  }
  op(ms: number): void {
    this.ops++;
    this.ints[this.base + 2 + bucketOf(ms * 1000)]++;
    Atomics.store(this.ints, this.base, this.ops);
    if (this.ops === this.maxOps) parentPort!.postMessage({ type: 'done' });
  }
  checked(): void {
    this.ints[this.base + 1]++;
  }
  /** (the limit is on started operations, so that no more than maxOps complete) */
  claim(k: number): number {
    const can = Math.min(k, this.maxOps - this.started);
    this.started += can;
    return can;
  }
}

async function runWorker(task: GeneratorTask, ints: Int32Array, slot: number): Promise<void> {
  const sink = new SharedSink(ints, slot, task.maxOps ?? Number.MAX_SAFE_INTEGER);
  const conns: GenConnection[] = [];
  let stopped = false;
  let go: () => void = () => {};
  const started = new Promise<void>((r) => (go = r));
  parentPort!.on('message', (m: { type: string }) => {
    if (m.type === 'go') go();
    if (m.type === 'stop') {
      stopped = true;
      for (const c of conns) c.close();
      parentPort!.postMessage({ type: 'stopped' });
    }
  });
  const rng = new Rng(task.seed);
  const timed = async (f: () => Promise<void>): Promise<void> => {
    const t0 = performance.now();
    await f();
    sink.op(performance.now() - t0);
  };
  // a slow phase's loop: its failures after `stop` are the closing connections
  const loop = async (c: GenConnection | null, body: () => Promise<void>): Promise<void> => {
    try {
      while (!stopped && sink.claim(1) === 1) await timed(body);
    } catch (e) {
      if (!stopped) throw e;
    } finally {
      c?.close();
    }
  };
  const open = (): Promise<GenConnection> => GenConnection.open(task.host, task.port, task.encoding);
  /** one connection, set up before the phase */
  const single = async (): Promise<GenConnection> => {
    const c = await open();
    conns.push(c);
    parentPort!.postMessage({ type: 'ready' });
    await started;
    return c;
  };
  switch (task.phase) {
    case 'loads': {
      const t = loadTemplate(task.encoding);
      const shape = replyShape(task.encoding);
      const loads: LeanLoads[] = [];
      for (let i = 0; i < task.connections; i++) {
        const c = await open();
        conns.push(c);
        c.onFail = (e) => {
          if (!stopped) parentPort!.postMessage({ type: 'error', message: e.stack ?? e.message });
        };
        loads.push(new LeanLoads(c, t, shape, task.depth, rng, task.maxOid, sink));
      }
      parentPort!.postMessage({ type: 'ready' });
      await started;
      for (let i = 0; i < loads.length; i++) {
        conns[i].startLoads(loads[i]);
        loads[i].start();
      }
      return;
    }
    case 'commits': {
      const objects = task.commitObjects;
      const setups = [];
      for (let i = 0; i < task.connections; i++) {
        setups.push(
          (async () => {
            const c = await open();
            conns.push(c);
            const oids = (await c.call('new_oids', [])) as Uint8Array[];
            const mine = oids.slice(0, objects).map((o) => Buffer.from(o));
            const probe = Buffer.alloc(8);
            writeOid(probe, 0, 1 + rng.below(task.maxOid));
            const r = (await c.call('loadBefore', [probe, maxtid])) as PickleValue[];
            const data = Buffer.from(r[0] as Uint8Array);
            let serial: Uint8Array = z64;
            let txnId = 0;
            const commit = async (): Promise<void> => {
              const id = ++txnId;
              c.callAsync('tpc_begin', [id, Buffer.from('raw bench'), Buffer.from(''), new Map(), null, ' ']);
              for (const oid of mine) c.callAsync('storea', [oid, serial, data, id]);
              await c.call('vote', [id]);
              const tid = await c.call('tpc_finish', [id]);
              if (!(tid instanceof Uint8Array) || tid.length !== 8)
                throw new Error(`tpc_finish answered ${pyRepr(tid)}`);
              serial = Buffer.from(tid);
            };
            await commit(); // the objects are created before the phase
            return { c, commit };
          })(),
        );
      }
      const ready = await Promise.all(setups);
      parentPort!.postMessage({ type: 'ready' });
      await started;
      await Promise.all(ready.map(({ c, commit }) => loop(c, commit)));
      return;
    }
    case 'iterate': {
      const c = await single();
      // iterator_start / iterator_next / iterator_record_start / iterator_record_next, as zodbconvert copies a
      // ClientStorage out (ZEO's TransactionIterator); one operation per record
      let iid: PickleValue = null;
      let riid: PickleValue = null;
      const nextRecord = async (): Promise<void> => {
        for (;;) {
          if (riid !== null) {
            const r = await c.call('iterator_record_next', [riid]);
            if (r !== null) return;
            riid = null;
          }
          if (iid === null) iid = await c.call('iterator_start', [null, null]);
          const t = await c.call('iterator_next', [iid]);
          if (t === null) {
            iid = null;
            continue;
          }
          riid = await c.call('iterator_record_start', [iid, (t as PickleValue[])[0]]);
        }
      };
      await loop(c, nextRecord);
      return;
    }
    case 'iternext': {
      const c = await single();
      let next: PickleValue = null;
      await loop(c, async () => {
        const r = (await c.call('record_iternext', [next])) as PickleValue[];
        next = r[3];
      });
      return;
    }
    case 'connect': {
      parentPort!.postMessage({ type: 'ready' });
      await started;
      await loop(null, async () => {
        const c = await open();
        c.close();
      });
      return;
    }
  }
}

if (!isMainThread && (workerData as { rawGenerator?: boolean } | null)?.rawGenerator) {
  const { task, counters, slot } = workerData as {
    task: GeneratorTask;
    counters: SharedArrayBuffer;
    slot: number;
  };
  runWorker(task, new Int32Array(counters), slot).catch((e: Error) =>
    parentPort!.postMessage({ type: 'error', message: e.stack ?? e.message }),
  );
}
