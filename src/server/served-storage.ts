// One storage as the server offers it under a name: the storage, its commit lock, its invalidation queue,
// its statistics (server_status), and the sessions registered on it (who gets invalidations).

import { ctime, PyFloat, tuple, type PickleValue, type PyDict } from '../pickle/index.js';
import type { Oid, Tid } from '../storage/ids.js';
import { compareIds, idHex, p64, u64 } from '../storage/ids.js';
import type { Storage } from '../storage/interfaces.js';
import { tidTime } from '../storage/timestamp.js';
import type { MessageCodec } from '../protocol/index.js';
import { InvalidationQueue } from './invalidation-queue.js';
import { LockManager, type LockClient } from './lock-manager.js';
import type { Logger } from './log.js';
import { RecentTransactions } from './recent-transactions.js';

/**
 * A one-way call sent to many clients (a transaction's invalidations): encoded once per encoding, the same
 * bytes queued on every connection (an encoded payload shares its memory with no other message).
 */
export class AsyncCall {
  private pickle: Uint8Array | null = null;
  private msgpack: Uint8Array | null = null;

  constructor(
    readonly name: string,
    readonly args: PickleValue[],
  ) {}

  encode(codec: MessageCodec): Uint8Array {
    if (codec.encoding === 'M') return (this.msgpack ??= codec.encodeCall(0, true, this.name, this.args));
    return (this.pickle ??= codec.encodeCall(0, true, this.name, this.args));
  }
}

/** Told the seconds each vote (its replay, under the commit lock) and each tpc_finish took. */
export interface CommitTimings {
  vote(seconds: number): void;
  finish(seconds: number): void;
}

const NO_TIMINGS: CommitTimings = { vote: () => {}, finish: () => {} };

/** What a registered session must offer the storage it registered on. */
export interface StorageClient extends LockClient {
  /**
   * queues invalidateTransaction(tid, oids) (`call`) behind every reply already promised to this client;
   * written to the socket by flushOutput() or at the end of the tick
   */
  invalidateTransaction(call: AsyncCall): void;
  /** writes what is queued for this client and may go out now, rather than at the end of the tick */
  flushOutput(): void;
  sendInfo(info: PyDict): void;
  /** the lock manager's transaction-timeout: abort the transaction, free the lock, drop the client */
  transactionTimedOut(): void;
}

export class ServedStorage {
  readonly clients = new Set<StorageClient>();
  readonly lock: LockManager<StorageClient>;
  readonly invalidations: InvalidationQueue;
  /** the last transactions, for the dashboard (./recent-transactions.ts) */
  readonly recent = new RecentTransactions(100);
  readonly stats = {
    loads: 0,
    stores: 0,
    commits: 0,
    aborts: 0,
    activeTxns: 0,
    conflicts: 0,
    /** write conflicts vote sent back for the client to resolve (server_status counts only those raised) */
    clientConflicts: 0,
    start: ctime(new Date()),
  };
  /** how long votes and finishes take, in seconds (the server's metrics; nothing until those exist) */
  timings: CommitTimings = NO_TIMINGS;
  /** a pack running in the background (pack(t, wait=false)), so close() can wait for it */
  packing: Promise<void> | null = null;
  /** the running pack's last progress report (the metrics' zeo_pack_progress_ratio) */
  packProgress: { done: number; total: number; phase: string } | null = null;

  constructor(
    readonly name: string,
    readonly storage: Storage,
    private readonly options: {
      log: Logger;
      invalidationQueueSize: number;
      invalidationAge: number | null;
      transactionTimeout: number | null;
    },
  ) {
    this.lock = new LockManager<StorageClient>(name, options.log, options.transactionTimeout, (c) =>
      c.transactionTimedOut(),
    );
    this.invalidations = new InvalidationQueue(options.invalidationQueueSize);
  }

  /**
   * Seeds the invalidation queue from the storage's last transactions (StorageServer._setup_invq), and
   * listens for the transactions other writers commit to the storage (another server over the same
   * database): each goes to every client and into the queue, as a commit of a client of this server with no
   * committer (StorageServerDB.invalidate, the fan-out's way).
   */
  async init(): Promise<void> {
    const n = this.options.invalidationQueueSize;
    // commits elsewhere while the queue is read wait for it, then those it does not hold go in after
    let early: Array<{ tid: Tid; oids: Oid[] }> | null = [];
    this.storage.watchInvalidations?.((tid, oids) => {
      if (early) early.push({ tid, oids });
      else this.invalidate(null, tid, oids);
    });
    if (this.storage.capabilities.lastInvalidations) {
      const seeded = await this.storage.lastInvalidations(n);
      // a transaction the storage has not reported yet (a database other writers commit to holds some)
      // comes through the listener, in order: not in the queue before lastTransaction() has it
      const last = this.storage.lastTransaction();
      const known = seeded.filter((e) => compareIds(e.tid, last) <= 0);
      this.invalidations.seed(known);
      this.recent.seed(known.map((e) => ({ tid: e.tid, records: e.oids.length, info: null })));
    } else {
      this.invalidations.seed([{ tid: this.storage.lastTransaction(), oids: null }]);
    }
    const pending = early;
    early = null;
    for (const e of pending) {
      const newest = this.invalidations.newest;
      if (newest === null || compareIds(e.tid, newest) > 0) this.invalidate(null, e.tid, e.oids);
    }
  }

  /**
   * After a commit: remember it and tell every other client, in commit order. The invalidations are queued
   * now and written by flushInvalidations(), before any reply given to afterInvalidations(): a group commit's
   * transactions cost each client one write, not one per transaction.
   */
  invalidate(
    committer: StorageClient | null,
    tid: Tid,
    oids: Oid[],
    /** the committed transaction's metadata, when a client of this server committed it */
    txn?: { user: Uint8Array; description: Uint8Array; log: { size: number } },
  ): void {
    const newest = this.invalidations.newest;
    if (newest !== null && compareIds(tid, newest) <= 0) {
      // a storage that broke watchInvalidations' order: a client would see its last tid go back (and the
      // Python client fails on that); said loudly, the invalidation still goes out
      this.options.log.error(
        `invalidation of ${idHex(tid)} after ${idHex(newest)}: transactions reported out of tid order`,
      );
    }
    this.invalidations.push(tid, oids);
    this.recent.push({
      tid,
      records: oids.length,
      info: txn ? { user: txn.user, description: txn.description, size: txn.log.size } : null,
    });
    // (a copy: the committer's list is not kept past its transaction)
    const call = new AsyncCall('invalidateTransaction', [tid, oids.slice()]);
    for (const c of this.clients) {
      if (c === committer) continue;
      c.invalidateTransaction(call);
      this.unflushed.add(c);
    }
    this.scheduleFlush();
  }

  /**
   * Runs `reply` (a committer's tpc_finish reply) once every invalidation queued so far is written: the other
   * clients' invalidations leave before the committer learns its commit is done (a committer that signals
   * another process out of band must find the invalidation already on its way there).
   */
  afterInvalidations(reply: () => void): void {
    this.replies.push(reply);
    this.scheduleFlush();
  }

  /** Writes the queued invalidations, then runs the replies waiting for them, in order. */
  flushInvalidations(): void {
    this.flushDue = false;
    while (this.unflushed.size > 0 || this.replies.length > 0) {
      const clients = [...this.unflushed];
      this.unflushed.clear();
      for (const c of clients) c.flushOutput();
      const replies = this.replies.splice(0);
      for (const r of replies) r();
    }
  }

  /** clients with invalidations queued and not yet written */
  private readonly unflushed = new Set<StorageClient>();
  /** tpc_finish replies waiting for them */
  private replies: Array<() => void> = [];
  private flushDue = false;

  /**
   * At the end of the synchronous run that queued them (a group commit publishes all its transactions in one
   * run): a microtask runs before the ticks that would write the connections' output on their own.
   */
  private scheduleFlush(): void {
    if (this.flushDue) return;
    this.flushDue = true;
    queueMicrotask(() => {
      if (this.flushDue) this.flushInvalidations();
    });
  }

  broadcastInfo(): void {
    const info = this.sizeInfo();
    for (const c of this.clients) c.sendInfo(info);
  }

  sizeInfo(): PyDict {
    return new Map<PickleValue, PickleValue>([
      ['length', this.storage.len()],
      ['size', this.storage.getSize()],
    ]);
  }

  /** get_info, from what the storage declares (StorageServer.get_info: its interfaces' __iro__). */
  getInfo(): PyDict {
    const caps = this.storage.capabilities;
    const interfaces = tuple(
      ...caps.interfaces.map((name) => {
        const dot = name.lastIndexOf('.');
        return tuple<PickleValue>(name.slice(0, dot), name.slice(dot + 1));
      }),
    );
    return new Map<PickleValue, PickleValue>([
      ['length', this.storage.len()],
      ['size', this.storage.getSize()],
      ['name', this.storage.getName()],
      ['supportsUndo', caps.undo],
      ['supports_record_iternext', caps.recordIternext],
      ['interfaces', interfaces],
    ]);
  }

  /** server_status, with the reference's keys in its order. */
  status(): PyDict {
    const s = this.stats;
    return new Map<PickleValue, PickleValue>([
      ['connections', this.clients.size],
      ['loads', s.loads],
      ['stores', s.stores],
      ['commits', s.commits],
      ['aborts', s.aborts],
      ['active_txns', s.activeTxns],
      ['lock_time', this.lock.lockTime === null ? null : new PyFloat(this.lock.lockTime)],
      ['conflicts', s.conflicts],
      ['conflicts_resolved', 0],
      ['start', s.start],
      ['waiting', this.lock.waiting],
      ['timeout-thread-is-alive', this.lock.hasTimeout ? true : 'stub'],
      ['last-transaction', idHex(this.storage.lastTransaction())],
    ]);
  }

  /**
   * getInvalidations: from the queue, or (invalidation-age) by iterating the storage when the client's tid is
   * recent enough; null when neither can say what changed.
   */
  async invalidationsSince(tid: Tid): Promise<{ tid: Tid; oids: Oid[] } | null> {
    const fromQueue = this.invalidations.since(tid);
    if (fromQueue) return fromQueue;
    const age = this.options.invalidationAge;
    if (age === null || !(age > Date.now() / 1000 - tidTime(tid))) return null;
    // no further than the last transaction now: later ones reach the client as invalidations, behind this
    // reply (and a database other writers commit to may hold some this server has not reported yet)
    const last = this.storage.lastTransaction();
    const oids: Oid[] = [];
    const seen = new Set<string>();
    let latest: Tid | null = null;
    for await (const t of this.storage.iterator(p64(u64(tid) + 1n), last)) {
      for await (const r of t.records) {
        const key = idHex(r.oid);
        if (!seen.has(key)) {
          seen.add(key);
          oids.push(r.oid);
        }
      }
      latest = t.tid;
    }
    if (latest === null || compareIds(latest, tid) <= 0) return null;
    return { tid: latest, oids };
  }
}
