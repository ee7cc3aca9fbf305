// The server's self warm-up. A freshly started Node server runs its hot paths interpreted for the first few
// thousand calls, at about twice runzeo's CPU per load, which is all a short tool session sees. So `zeo serve`
// drives the real code (framing, the handshake, the fast loadBefore path and the general one, error replies,
// commits of 1 to 300 objects in both encodings with a conflict among them, the channel's batching) over
// loopback against a private server on scratch FileStorages in a temporary directory, for a bounded CPU time. It does so once it listens, beside the served server and only
// while that one is idle: a round (a few ms) at a time, the event loop given back between rounds, paused while
// clients send anything, and over once the served clients' loads and its own add up to what warms the code
// (real traffic warms the same code). So a client is served at once, and a server left idle after its start
// is warm when its first client comes. The served storages, the served server's counters and its log are
// never touched: the private server has its own storage and a silent log.

import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tuple, type PickleValue } from '../pickle/index.js';
import {
  codecFor,
  encodeFrame,
  FrameDecoder,
  REPLY,
  REPLY_ERROR,
  type Encoding,
  type MessageCodec,
} from '../protocol/index.js';
import { FileStorage } from '../storage/filestorage/index.js';
import { maxtid, z64 } from '../storage/ids.js';
import type { Logger } from './log.js';
import { StorageServer } from './server.js';

/** CPU milliseconds the warm-up may spend unless told otherwise (ZEO_TS_WARMUP_MS; 0: none). */
export const DEFAULT_WARMUP_MS = 500;

/** Objects the scratch storage holds: enough to spread loads over the read cache, few to write. */
const OBJECTS = 64;
/** loadBefore calls sent at once, as a pipelining client does (depth-1 rounds are mixed in too) */
const DEPTH = 32;
/** the kinds of round (which oids, depth 1 or DEPTH, error calls or not), repeating */
const ROUND_KINDS = 64;

/**
 * The warm-up's commits, in objects each, alternately new objects (new_oids, stores of new oids) and updates of
 * objects committed before, by a pickle and a msgpack client in turn: as zodbshootout's add and update, whose
 * first commits of a fresh server otherwise run at interpreter speed (20-33 ms of CPU for 200 objects, ~4 ms
 * warm). Small ones first, so that the storage's code is compiled before a big vote runs in one turn. About
 * 5,100 records (~0.5 MB) in all: the scratch storage's disk use is bounded.
 */
const COMMIT_SIZES = [
  1, 2, 4, 8, 16, 1, 24, 32, 48, 2, 64, 96, 128, 5, 160, 200, 256, 300, 10, 200, 1, 300, 200, 100, 50, 256,
  200, 300, 20, 200, 128, 300, 200, 64, 200, 300, 2, 200, 256, 300,
];
/** The commits a warm-up makes when its budget allows. */
export const WARM_UP_COMMITS = COMMIT_SIZES.length;
/** The commit (its index in COMMIT_SIZES, an update) one of whose stores conflicts: the vote's conflict path. */
const CONFLICT_AT = 11;
/** Stores sent in one round: a round stays a few ms while the code is cold. */
const STORES_PER_ROUND = 32;

/** Loads after which the code is as warm as it gets (TurboFan has compiled the hot functions). */
const ENOUGH_LOADS = 40_000;
/** Beside a server: how long a pause for its clients lasts before the next look */
const IDLE_WAIT_MS = 10;
/** Beside a server: no warm-up left this long after the start (a server busy from the first moment) */
const BESIDE_MAX_MS = 60_000;

/** A record: a ZODB class pickle and state pickle (PersistentMapping, empty). */
const RECORD = Buffer.from(
  '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e80037d71012e',
  'hex',
);

/**
 * A record of `size` bytes or so: RECORD's class pickle, then a bytes state (a pickle's BINBYTES over 255 bytes
 * and msgpack's bin16 are other paths than a small record's).
 */
function bigRecord(size: number): Buffer {
  const head = Buffer.from(
    '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e',
    'hex',
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  return Buffer.concat([
    head,
    Buffer.from([0x80, 0x03, 0x42]),
    len,
    Buffer.alloc(size, 0x61),
    Buffer.from('.'),
  ]);
}

/** Transaction ids as ZEO's ClientStorage sends them (Python's id() of the transaction: a pickle LONG1). */
const TXN_ID_BASE = 140_230_012_345_678;

export interface WarmUpOptions {
  /** where the scratch storage's directory goes (default the system's temporary directory) */
  tmp?: string;
  /**
   * The served server to warm up beside: a round only while `activity()` (a number that changes whenever a
   * client connects or sends anything) has not changed since the last look, and none once `servedLoads()`
   * (the loads it answered) and the warm-up's own reach what warms the code.
   */
  beside?: { activity(): number; servedLoads(): number };
  /** stops the warm-up before its next round (its private server closed, its files removed) */
  signal?: AbortSignal;
}

export interface WarmUpResult {
  /** loadBefore calls answered */
  loads: number;
  /** commits made (finished, or aborted after their planned conflict) */
  commits: number;
  /** votes that reported a conflict (one per encoding once its client has updates to make) */
  conflicts: number;
  /** process CPU the warm-up spent */
  cpuMs: number;
}

/** The budget in CPU ms from ZEO_TS_WARMUP_MS (a non-negative number), else the default. */
export function warmUpBudget(env: NodeJS.ProcessEnv): number {
  const v = env.ZEO_TS_WARMUP_MS;
  if (v === undefined || v === '') return DEFAULT_WARMUP_MS;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`ZEO_TS_WARMUP_MS must be a number of milliseconds, not ${v}`);
  return n;
}

const silent: Logger = {
  trace: () => {},
  debug: () => {},
  blather: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  critical: () => {},
  child: () => silent,
  isLevelEnabled: () => false,
};

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Warms the server's code paths for about `budgetMs` of CPU (at least one round of each kind of call unless
 * stopped), on a private server and scratch storage that are gone when it resolves; beside a served server
 * (options.beside) only while that one is idle.
 */
export async function warmUp(
  budgetMs = DEFAULT_WARMUP_MS,
  options: WarmUpOptions = {},
): Promise<WarmUpResult> {
  if (budgetMs <= 0) return { loads: 0, commits: 0, conflicts: 0, cpuMs: 0 };
  const { beside, signal } = options;
  const started = performance.now();
  // the CPU of the warm-up's own steps (beside a server, not what its clients cost meanwhile)
  let spent = 0;
  const step = async <T>(f: () => Promise<T>): Promise<T> => {
    const c0 = cpuMs();
    try {
      return await f();
    } finally {
      spent += cpuMs() - c0;
    }
  };
  let loads = 0;
  // beside a server: true once it is idle (its activity the same as at the last look), false to stop
  let seen = beside?.activity();
  const idle = async (): Promise<boolean> => {
    for (;;) {
      if (signal?.aborted) return false;
      if (!beside) return true;
      if (beside.servedLoads() + loads >= ENOUGH_LOADS) return false;
      // the served server's clients first: what is ready for them runs before the next step
      await new Promise((r) => setImmediate(r));
      if (performance.now() - started > BESIDE_MAX_MS) return false;
      const now = beside.activity();
      if (now === seen) return true;
      seen = now;
      await new Promise((r) => setTimeout(r, IDLE_WAIT_MS));
    }
  };
  if (!(await idle())) return { loads: 0, commits: 0, conflicts: 0, cpuMs: 0 };
  const dir = await mkdtemp(join(options.tmp ?? tmpdir(), 'zeo-ts-warmup-'));
  let server: StorageServer | null = null;
  const clients: WarmClient[] = [];
  const committers: Committer[] = [];
  let commits = 0;
  try {
    const oids = await step(async () => {
      // the committers each have a storage of their own: no invalidation reaches another warm-up client
      const storages = [];
      for (const name of ['1', ...COMMITTERS])
        storages.push({ name, storage: await FileStorage.open(join(dir, `${name}.fs`), { create: true }) });
      server = await StorageServer.create({ storages, log: silent });
      // its commits' fdatasyncs in the thread pool, never on the event loop the served server shares
      for (const { storage } of storages) storage.mayFlushInline = () => false;
      const address = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
      const port = address.kind === 'tcp' ? address.port : 0;
      // both encodings: a server answers pickle and msgpack clients alike (the commit comes before the second
      // client registers, so that no invalidation comes between its replies)
      clients.push(await WarmClient.open(port, 'Z', '1'));
      const made = await clients[0].commitNew(OBJECTS);
      clients.push(await WarmClient.open(port, 'M', '1'));
      for (const name of COMMITTERS) committers.push(new Committer(await WarmClient.open(port, name, name)));
      return made;
    });
    // the rounds' requests, encoded once (a round's cost is then the server's, which is what is warmed)
    const missing = Buffer.alloc(8, 0xff);
    const rounds = new Map<number, { bytes: Buffer; calls: number; loads: number }>();
    const roundOf = (round: number, c: WarmClient): { bytes: Buffer; calls: number; loads: number } => {
      const key = (round % ROUND_KINDS) * clients.length + clients.indexOf(c);
      let r = rounds.get(key);
      if (r === undefined) {
        const depth = round % 4 === 0 ? 1 : DEPTH;
        // every other kind with the msgid Python's ClientStorage gives a load, (oid, tid): another branch of
        // the fast path and of the reply's encoding
        const python = (round >> 1) % 2 === 1;
        const calls: Call[] = [];
        for (let i = 0; i < depth; i++) {
          const oid = oids[(round * 7 + i) % oids.length];
          calls.push(['loadBefore', [oid, maxtid], python ? tuple<PickleValue>(oid, maxtid) : undefined]);
        }
        // the general path now and then: a missing oid (an error reply), and a plain call
        if (round % 8 === 0) calls.push(['loadBefore', [missing, maxtid]], ['lastTransaction', []]);
        r = { bytes: c.encode(calls), calls: calls.length, loads: depth };
        rounds.set(key, r);
      }
      return r;
    };
    let round = 0;
    // (the load rounds' own count: their kinds do not depend on the commit steps between them)
    let loadRound = 0;
    for (;;) {
      if (loads >= ENOUGH_LOADS || (round >= 2 && spent >= budgetMs) || !(await idle())) break;
      // every other round a step of a commit (its stores a batch at a time, its vote, its finish), while any is left
      if (round % 2 === 1 && commits < COMMIT_SIZES.length) {
        round++;
        // (two commits in a row by one, an add and an update, then two by the other)
        const committer = committers[Math.floor(commits / 2) % committers.length];
        if (await step(() => committer.step(commits))) commits++;
        continue;
      }
      const c = clients[loadRound % clients.length];
      round++;
      loadRound++;
      const r = roundOf(loadRound, c);
      await step(() => c.sendEncoded(r.bytes, r.calls));
      loads += r.loads;
    }
  } finally {
    for (const c of [...clients, ...committers.map((m) => m.client)]) c.close();
    await (server as StorageServer | null)?.close();
    await rm(dir, { recursive: true, force: true });
  }
  return { loads, commits, conflicts: committers.reduce((n, m) => n + m.conflicts, 0), cpuMs: spent };
}

/** The committers' encodings, each also the name of its storage in the private server. */
const COMMITTERS: Encoding[] = ['Z', 'M'];

/** One client's commits, a step (one round trip) at a time, as ZEO's ClientStorage makes them. */
class Committer {
  /** the objects it committed, with their current serials */
  private readonly objects: Array<{ oid: Uint8Array; serial: Uint8Array }> = [];
  /** the transaction under way: its stores still to send, its objects if an update, whether its vote came */
  private txn: {
    id: number;
    stores: Array<[string, PickleValue[]]>;
    oids: Uint8Array[];
    updated: Array<{ oid: Uint8Array; serial: Uint8Array }> | null;
    voted: boolean;
  } | null = null;
  private ids = 0;
  private conflicted = false;
  /** votes that reported conflicts */
  conflicts = 0;

  constructor(readonly client: WarmClient) {}

  /** One step of commit `index` of COMMIT_SIZES; true once it is over (finished, or aborted after its conflict). */
  async step(index: number): Promise<boolean> {
    const c = this.client;
    if (this.txn === null) {
      const n = COMMIT_SIZES[index];
      // every other commit updates objects it made before (once it has that many), the others add new ones
      let updated: Array<{ oid: Uint8Array; serial: Uint8Array }> | null = null;
      let oids: Uint8Array[];
      let serials: Uint8Array[];
      if (index % 2 === 1 && this.objects.length >= n) {
        const from = (index * 37) % (this.objects.length - n + 1);
        updated = this.objects.slice(from, from + n);
        oids = updated.map((o) => o.oid);
        serials = updated.map((o) => o.serial);
        // once, a stale serial (the object's first state is long gone): the vote reports the conflict
        if (index >= CONFLICT_AT && !this.conflicted && updated[0].serial !== z64) {
          this.conflicted = true;
          serials[0] = z64;
        }
      } else {
        const asks: Array<[string, PickleValue[]]> = [];
        for (let i = 0; i < n; i += 100) asks.push(['new_oids', [100]]);
        oids = (await c.callMany(asks)).flatMap((r) => r as Uint8Array[]).slice(0, n);
        serials = oids.map(() => z64);
      }
      const id = TXN_ID_BASE + 48 * ++this.ids;
      c.sendAsync('tpc_begin', [id, Buffer.from('warm-up'), Buffer.from(''), new Map(), null, ' ']);
      // (one record in 50 a bigger one, of 300 bytes to a few KB)
      const stores = oids.map((oid, i): [string, PickleValue[]] => [
        'storea',
        [oid, serials[i], i % 50 === 25 ? bigRecord(300 + ((index * 211) % 3000)) : RECORD, id],
      ]);
      this.txn = { id, stores, oids, updated, voted: false };
      return false;
    }
    const t = this.txn;
    if (t.stores.length > 0) {
      // a batch of stores (asynchronous calls), then a plain call, whose reply says the server has them
      c.sendAsyncMany(t.stores.splice(0, STORES_PER_ROUND));
      await c.callMany([['lastTransaction', []]]);
      return false;
    }
    if (!t.voted) {
      const [conflicts] = await c.callMany([['vote', [t.id]]]);
      t.voted = true;
      // (a list of conflicts, dicts, for the client to resolve)
      if (Array.isArray(conflicts) && conflicts[0] instanceof Map) {
        // as a client that cannot resolve it
        this.conflicts++;
        await c.callMany([['tpc_abort', [t.id]]]);
        this.txn = null;
        return true;
      }
      return false;
    }
    const [tid] = await c.callMany([['tpc_finish', [t.id]]]);
    const serial = tid as Uint8Array;
    if (t.updated) for (const o of t.updated) o.serial = serial;
    else for (const oid of t.oids) this.objects.push({ oid, serial });
    this.txn = null;
    return true;
  }
}

/** A call: its name, its arguments, its msgid if not the next int. */
type Call = [string, PickleValue[], PickleValue?];

/** A bare protocol client on loopback: one batch of calls at a time, replies matched by count. */
class WarmClient {
  private readonly decoder = new FrameDecoder(0xffffffff);
  private frames: Buffer[] = [];
  private wanted = 0;
  private wake: (() => void) | null = null;
  private failed: Error | null = null;
  private msgid = 0;
  private codec: MessageCodec;

  private constructor(
    private readonly socket: net.Socket,
    encoding: Encoding,
  ) {
    this.codec = codecFor(encoding, 'client');
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) this.frames.push(f);
      if (this.frames.length >= this.wanted) this.wake?.();
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('warm-up connection closed')));
  }

  private fail(e: Error): void {
    this.failed ??= e;
    this.wake?.();
  }

  static async open(port: number, encoding: Encoding, storage: string): Promise<WarmClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new WarmClient(socket, encoding);
    await c.frames_(1); // the greeting
    socket.write(encodeFrame(Buffer.from(`${encoding}5`, 'latin1')));
    await c.callMany([['register', [storage, false]]]);
    return c;
  }

  /** Waits until `n` frames have come, and takes them. */
  private async frames_(n: number): Promise<Buffer[]> {
    this.wanted = n;
    while (this.frames.length < n) {
      if (this.failed) throw this.failed;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    if (this.failed) throw this.failed;
    return this.frames.splice(0, n);
  }

  /**
   * Sends the calls at once (one write, as a pipelining client does) and waits for their replies; the server's
   * own messages meanwhile (the `info` that comes before a tpc_finish's reply) are skipped, an error reply
   * fails the warm-up.
   */
  async callMany(calls: Array<[string, PickleValue[]]>): Promise<PickleValue[]> {
    this.socket.write(this.encode(calls));
    const replies: PickleValue[] = [];
    while (replies.length < calls.length) {
      const m = this.codec.decode((await this.frames_(1))[0]);
      if (m.name !== REPLY) continue;
      if (m.flag === REPLY_ERROR) throw new Error(`warm-up call ${calls[replies.length][0]} failed`);
      replies.push(m.body);
    }
    return replies;
  }

  /** The calls' frames, one after the other. */
  encode(calls: Call[]): Buffer {
    return Buffer.concat(
      calls.map(([name, args, msgid]) =>
        encodeFrame(this.codec.encodeCall(msgid ?? ++this.msgid, false, name, args)),
      ),
    );
  }

  /** Sends calls encoded before and waits for as many replies (not decoded: only the server is warmed). */
  async sendEncoded(bytes: Buffer, calls: number): Promise<void> {
    this.socket.write(bytes);
    await this.frames_(calls);
  }

  sendAsync(name: string, args: PickleValue[]): void {
    this.socket.write(encodeFrame(this.codec.encodeCall(0, true, name, args)));
  }

  /** Asynchronous calls (no reply), in one write. */
  sendAsyncMany(calls: Array<[string, PickleValue[]]>): void {
    this.socket.write(
      Buffer.concat(calls.map(([name, args]) => encodeFrame(this.codec.encodeCall(0, true, name, args)))),
    );
  }

  /** Commits `n` new objects in one transaction; their oids. */
  async commitNew(n: number): Promise<Uint8Array[]> {
    const [got] = await this.callMany([['new_oids', [n]]]);
    const oids = (got as Uint8Array[]).slice(0, n);
    this.sendAsync('tpc_begin', [1, Buffer.from('warm-up'), Buffer.from(''), new Map(), null, ' ']);
    for (const oid of oids) this.sendAsync('storea', [oid, z64, RECORD, 1]);
    await this.callMany([['vote', [1]]]);
    await this.callMany([['tpc_finish', [1]]]);
    return oids;
  }

  close(): void {
    this.socket.destroy();
  }
}
