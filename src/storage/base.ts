// ZODB's BaseStorage: the two-phase-commit bookkeeping every storage shares, whatever it keeps its data in
// (memory, a Data.fs, a ZEO server): one transaction at a time between tpcBegin and tpcFinish/tpcAbort under
// the commit lock, a waiter that tpcAbort or close can take out of the queue, the tid (a new one after the last
// handed out, or the one restore gives), the transaction's operations run one after the other, vote/finish/
// abort state, the closed and read-only checks, undoInfo through undoLog, and Unsupported for what the storage
// does not declare. The engines implement the hooks, after ZODB's: _begin, _vote, _finish, _abort.
// Nothing here knows of files or the network.

import type { PyDict } from '../pickle/index.js';
import { CommitLock, type Release } from './commit-lock.js';
import { ReadOnlyError, StorageError, StorageTransactionError, Unsupported } from './errors.js';
import { extensionBytes } from './extension.js';
import { compareIds, idCopy, tidRepr, type Oid, type Tid } from './ids.js';
import type {
  ConflictResolver,
  DataRecord,
  StorageCapabilities,
  TransactionMetaData,
  UndoLogEntry,
  UndoResult,
} from './interfaces.js';
import { newTid, tidTime } from './timestamp.js';
import { decodeUndoId, encodeUndoId, undoInfoVia } from './undo-log.js';

/** undoLog's and undoInfo's default `last` (ZODB's -20: the 20 newest) */
export const UNDO_LOG_DEFAULT_LAST = -20;

/** A transaction's user, description and extension as tpcBegin captured them (copies). */
export interface TransactionMeta {
  readonly user: Uint8Array;
  readonly description: Uint8Array;
  /** the extension's bytes, as the storage writes them */
  readonly extension: Uint8Array;
}

/** What tpcBegin hands to _begin: the transaction, its tid and status, its metadata, and the commit lock. */
export interface TransactionStart extends TransactionMeta {
  readonly txn: TransactionMetaData;
  readonly tid: Tid;
  readonly status: string;
  readonly release: Release;
}

/** The transaction in progress: what _begin returns, with an engine's own state added. */
export interface PendingTransaction extends TransactionStart {
  /** oids whose conflicts store() resolved: tpcVote's answer */
  readonly resolved: Oid[];
  voted: boolean;
  finishing: boolean;
  /** tpcFinish's callback, called by published() */
  onCommitted: ((tid: Tid) => void) | null;
  /** published() ran: the transaction is committed and visible */
  published: boolean;
  /** the operations on this transaction, one after the other (see inTxn) */
  chain: Promise<unknown>;
  /** operations of the chain not settled yet: while there are, nothing may run at once (storeNow...) */
  ops: number;
}

/** The bookkeeping fields of a new PendingTransaction. */
export function pendingState(start: TransactionStart): PendingTransaction {
  // (fields named, not spread: a spread copies through the runtime's slow path, on every commit)
  return {
    txn: start.txn,
    tid: start.tid,
    status: start.status,
    user: start.user,
    description: start.description,
    extension: start.extension,
    release: start.release,
    resolved: [],
    voted: false,
    finishing: false,
    onCommitted: null,
    published: false,
    chain: Promise.resolve(),
    ops: 0,
  };
}

/** An undoLog entry of the transaction `tid`, with the id undo() takes back. */
export function undoLogEntry(
  tid: Tid,
  userName: Uint8Array,
  description: Uint8Array,
  extension: PyDict,
): UndoLogEntry {
  return { id: encodeUndoId(tid), time: tidTime(tid), userName, description, extension };
}

type Capability = Exclude<keyof StorageCapabilities, 'interfaces'>;

/**
 * The base of a Storage (a subclass says `implements Storage`): what it needs of the storage is below, abstract;
 * the rest of the contract is the subclass's own.
 */
export abstract class BaseStorage<P extends PendingTransaction = PendingTransaction> {
  /** the commit lock (ZODB's _commit_lock) */
  protected abstract readonly commitLock: CommitLock;
  /** the tid of the last tpcBegin, committed or not (ZODB's _ts): new tids come after it */
  protected abstract lastTs: Tid;
  /** the clock for new tids, in milliseconds since the epoch */
  protected abstract readonly clock: () => number;
  protected pending: P | null = null;
  protected closed = false;
  /** tpcBegin calls waiting for the commit lock, so tpcAbort and close can take them out of the queue */
  private readonly waiting = new Map<TransactionMetaData, () => void>();

  /** what it offers beyond the basics (Storage.capabilities) */
  readonly capabilities: StorageCapabilities;
  private readonly name: string;
  private readonly readOnly: boolean;
  /** tries to resolve write conflicts in store() and undo(); null: they stand */
  private readonly resolver: ConflictResolver | null;

  constructor(options: {
    name: string;
    readOnly: boolean;
    capabilities: StorageCapabilities;
    resolver?: ConflictResolver | null;
  }) {
    this.name = options.name;
    this.readOnly = options.readOnly;
    this.capabilities = options.capabilities;
    this.resolver = options.resolver ?? null;
  }

  abstract lastTransaction(): Tid;
  abstract loadSerial(oid: Oid, serial: Tid): Promise<Uint8Array>;
  abstract undoLog(
    first: number,
    last: number,
    filter?: (entry: UndoLogEntry) => boolean,
  ): Promise<UndoLogEntry[]>;

  getName(): string {
    return this.name;
  }

  sortKey(): string {
    return this.name;
  }

  isReadOnly(): boolean {
    return this.readOnly;
  }

  // ------------------------------------------------------------------------------------------------------
  // hooks

  /** Checks a new transaction before the commit lock is taken (FileStorage: its status and field lengths). */
  protected checkBegin(_meta: TransactionMeta, _status: string): void {}

  /** The transaction's state, once it holds the commit lock and has its tid (ZODB's _begin). */
  protected abstract _begin(start: TransactionStart): P;

  // the transaction's operations, with their arguments copied, once tpcBegin's transaction is theirs and not
  // voted yet, and the storage declares them
  protected abstract _store(p: P, oid: Oid, oldSerial: Tid, data: Uint8Array): Promise<void>;
  /** the record to restore: its oid, its tid (restore's serial), its data and back pointer (prevTxn) */
  protected abstract _restore(p: P, record: DataRecord): Promise<void>;
  protected abstract _deleteObject(p: P, oid: Oid, oldSerial: Tid): Promise<void>;
  protected abstract _checkCurrentSerial(p: P, oid: Oid, serial: Tid): Promise<void>;
  protected abstract _undo(p: P, tid: Tid): Promise<UndoResult>;

  // the same operations done at once (storeNow...), called only when no earlier one is still running: true
  // when done, false when the async one must do it; by default never
  protected _storeNow(_p: P, _oid: Oid, _oldSerial: Tid, _data: Uint8Array): boolean {
    return false;
  }
  protected _deleteObjectNow(_p: P, _oid: Oid, _oldSerial: Tid): boolean {
    return false;
  }
  protected _checkCurrentSerialNow(_p: P, _oid: Oid, _serial: Tid): boolean {
    return false;
  }

  /** Makes the transaction ready to commit (ZODB's _vote), after its earlier operations. */
  protected async _vote(_p: P): Promise<void> {}

  /**
   * Commits the transaction, durably, and makes it visible (ZODB's _finish): lastTransaction() is its tid
   * after. A failure leaves it to be aborted (or, when the storage cannot go on, the storage closes).
   * A storage may give up the commit lock before the transaction is durable (unlocked(), FileStorage's group
   * commit), and then calls published() itself once it is, in commit order; else tpcFinish does after this.
   */
  protected abstract _finish(p: P): Promise<void> | void;

  /** After tpcFinish's onCommitted, before the commit lock goes (FileStorage: the read cache's write-through). */
  protected _committed(_p: P): void {}

  /** Throws away what the transaction wrote (ZODB's _abort); the commit lock goes after. */
  protected async _abort(_p: P): Promise<void> {}

  // ------------------------------------------------------------------------------------------------------
  // status

  supportsUndo(): boolean {
    return this.capabilities.undo;
  }

  protected checkOpen(): void {
    if (this.closed) throw new StorageError(`${this.getName()} is closed`);
  }

  protected checkWritable(): void {
    if (this.isReadOnly()) throw new ReadOnlyError();
    this.checkOpen();
  }

  /** Unsupported unless the storage declares `capability`. */
  protected require(capability: Capability, what: string): void {
    if (!this.capabilities[capability]) throw new Unsupported(`${this.getName()} does not support ${what}`);
  }

  // ------------------------------------------------------------------------------------------------------
  // two-phase commit

  async tpcBegin(txn: TransactionMetaData, tid: Tid | null = null, status = ' '): Promise<void> {
    this.checkWritable();
    if (this.pending?.txn === txn || this.waiting.has(txn)) {
      throw new StorageTransactionError('Duplicate tpc_begin calls for same transaction');
    }
    const meta: TransactionMeta = {
      user: new Uint8Array(txn.user),
      description: new Uint8Array(txn.description),
      extension: new Uint8Array(extensionBytes(txn)),
    };
    this.checkBegin(meta, status);
    // the lock at once when it is free (the usual case), without an await: a tpcAbort that follows this call
    // at once finds the transaction
    const release = this.commitLock.tryAcquire() ?? (await this.waitForCommitLock(txn));
    try {
      this.checkOpen();
      this.pending = this._begin({
        txn,
        tid: this.nextTid(tid),
        status,
        user: meta.user,
        description: meta.description,
        extension: meta.extension,
        release,
      });
    } catch (e) {
      release();
      throw e;
    }
  }

  /** The commit lock, waited for in `waiting`, so that tpcAbort or close can take the transaction out of the queue. */
  private async waitForCommitLock(txn: TransactionMetaData): Promise<Release> {
    const { granted, cancel } = this.commitLock.wait();
    this.waiting.set(txn, cancel);
    try {
      return await granted;
    } catch {
      throw new StorageTransactionError('the transaction was aborted while it waited for the commit lock');
    } finally {
      this.waiting.delete(txn);
    }
  }

  /**
   * The transaction's tid: the one given (restore, copy), which must come after the last transaction, as the
   * records are kept in tid order (ZODB writes an earlier one and warns of a time-stamp reduction at the next
   * open); else a new one, later than every tid handed out before, committed or not.
   */
  private nextTid(given: Tid | null): Tid {
    let tid: Tid;
    if (given !== null) {
      const last = this.lastWrittenTid();
      if (compareIds(given, last) <= 0) {
        throw new StorageTransactionError(
          `tid ${tidRepr(given)} is not later than the last transaction ${tidRepr(last)}`,
        );
      }
      tid = idCopy(given);
    } else {
      tid = newTid(this.lastTs, this.clock());
    }
    if (compareIds(tid, this.lastTs) > 0) this.lastTs = tid;
    return tid;
  }

  /**
   * The tid of the last transaction written, durable or not: lastTransaction(), unless the storage gives up
   * the commit lock before a transaction is durable (see _finish)
   */
  protected lastWrittenTid(): Tid {
    return this.lastTransaction();
  }

  /** The transaction in progress, which must be `txn` and not voted yet (for store, restore, undo...). */
  protected pendingFor(txn: TransactionMetaData, what: string): P {
    const p = this.pending;
    if (!p || p.txn !== txn) throw new StorageTransactionError(`${what}: not the transaction in progress`);
    if (p.voted) throw new StorageTransactionError(`${what} after tpc_vote`);
    return p;
  }

  /** Runs `fn` after the transaction's earlier operations; StorageTransactionError if it was aborted meanwhile. */
  protected inTxn<T>(p: P, what: string, fn: () => Promise<T>): Promise<T> {
    const run = p.chain.then(() => {
      if (this.pending !== p) throw new StorageTransactionError(`${what}: the transaction was aborted`);
      return fn();
    });
    // the caller gets run's error; the chain only orders what comes next. (ops goes down in the first
    // reaction to run: before the caller's, so an operation its caller starts next may run at once.)
    p.ops++;
    const settled = (): void => {
      p.ops--;
    };
    p.chain = run.then(settled, settled);
    return run;
  }

  /** whether store() may resolve a write conflict (a resolver is set): else the ConflictError stands */
  protected get resolvesConflicts(): boolean {
    return this.resolver !== null;
  }

  async store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): Promise<void> {
    this.checkWritable();
    const p = this.pendingFor(txn, 'store');
    return this._store(p, idCopy(oid), idCopy(oldSerial), new Uint8Array(data));
  }

  /** Storage.storeNow: store's checks, then the engine's _storeNow when nothing runs before it. */
  storeNow(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): boolean {
    this.checkWritable();
    const p = this.pendingFor(txn, 'store');
    return p.ops === 0 && this._storeNow(p, idCopy(oid), idCopy(oldSerial), data);
  }

  async restore(
    oid: Oid,
    serial: Tid,
    data: Uint8Array | null,
    prevTxn: Tid | null,
    txn: TransactionMetaData,
  ): Promise<void> {
    this.checkWritable();
    this.require('restore', 'restore');
    const p = this.pendingFor(txn, 'restore');
    return this._restore(p, {
      oid: idCopy(oid),
      tid: idCopy(serial),
      data: data === null ? null : new Uint8Array(data),
      dataTxn: prevTxn === null ? null : idCopy(prevTxn),
    });
  }

  async deleteObject(oid: Oid, oldSerial: Tid, txn: TransactionMetaData): Promise<void> {
    this.checkWritable();
    this.require('deleteObject', 'deleteObject');
    const p = this.pendingFor(txn, 'deleteObject');
    return this._deleteObject(p, idCopy(oid), idCopy(oldSerial));
  }

  /** Storage.deleteObjectNow (see storeNow). */
  deleteObjectNow(oid: Oid, oldSerial: Tid, txn: TransactionMetaData): boolean {
    this.checkWritable();
    this.require('deleteObject', 'deleteObject');
    const p = this.pendingFor(txn, 'deleteObject');
    return p.ops === 0 && this._deleteObjectNow(p, idCopy(oid), idCopy(oldSerial));
  }

  /** ReadConflictError when the object changed since `serial` (BaseStorage.checkCurrentSerialInTransaction). */
  async checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): Promise<void> {
    this.checkOpen();
    const p = this.pendingFor(txn, 'checkCurrentSerialInTransaction');
    return this._checkCurrentSerial(p, idCopy(oid), idCopy(serial));
  }

  /** Storage.checkCurrentSerialNow (see storeNow). */
  checkCurrentSerialNow(oid: Oid, serial: Tid, txn: TransactionMetaData): boolean {
    this.checkOpen();
    const p = this.pendingFor(txn, 'checkCurrentSerialInTransaction');
    return p.ops === 0 && this._checkCurrentSerialNow(p, idCopy(oid), idCopy(serial));
  }

  async undo(undoId: Uint8Array, txn: TransactionMetaData): Promise<UndoResult> {
    this.checkWritable();
    this.require('undo', 'undo');
    const p = this.pendingFor(txn, 'undo');
    return this._undo(p, decodeUndoId(undoId));
  }

  /**
   * ZODB's tryToResolveConflict: the resolved data, or null when the conflict stands (no resolver, or any
   * failure of the resolution). The committed data is read when not given.
   */
  protected async tryToResolveConflict(
    oid: Oid,
    committedSerial: Tid,
    oldSerial: Tid,
    newData: Uint8Array,
    committedData: Uint8Array | null,
  ): Promise<Uint8Array | null> {
    if (!this.resolver) return null;
    try {
      if (committedData === null || committedData.length === 0) {
        committedData = await this.loadSerial(oid, committedSerial);
      }
      const r = await this.resolver(oid, committedSerial, oldSerial, newData, committedData);
      return r && r.length ? new Uint8Array(r) : null;
    } catch {
      return null;
    }
  }

  async tpcVote(txn: TransactionMetaData): Promise<Oid[]> {
    this.checkOpen();
    const p = this.pending;
    if (!p || p.txn !== txn) throw new StorageTransactionError('tpc_vote called with wrong transaction');
    if (p.voted) return p.chain.then(() => [...p.resolved]);
    p.voted = true;
    return this.inTxn(p, 'tpc_vote', async () => {
      await this._vote(p);
      return [...p.resolved];
    });
  }

  async tpcFinish(txn: TransactionMetaData, onCommitted?: (tid: Tid) => void): Promise<Tid> {
    this.checkOpen();
    const p = this.pending;
    if (!p || p.txn !== txn) throw new StorageTransactionError('tpc_finish called with wrong transaction');
    if (!p.voted) throw new StorageTransactionError('tpc_finish called before tpc_vote');
    if (p.finishing) throw new StorageTransactionError('tpc_finish called twice');
    p.finishing = true;
    p.onCommitted = onCommitted ?? null;
    const run = p.chain.then(() => this.finishPending(p));
    p.chain = run.catch(() => {}); // (as in inTxn)
    return run;
  }

  private async finishPending(p: P): Promise<Tid> {
    try {
      await this._finish(p);
    } catch (e) {
      p.finishing = false;
      throw e;
    }
    if (!p.published) this.published(p);
    return p.tid;
  }

  /**
   * The transaction is committed, durable and visible (lastTransaction() is its tid): tpcFinish's callback,
   * the write-through, and the commit lock goes if the transaction still holds it. Synchronous, so a storage
   * publishing several transactions at once calls each one's callback in commit order with nothing in
   * between. Throws the callback's error.
   */
  protected published(p: P): void {
    p.published = true;
    if (this.pending === p) this.pending = null;
    // the data is visible before the callback: a load it starts sees this transaction (ZODB's loads wait for
    // tpc_finish to return); no later transaction is visible yet
    try {
      p.onCommitted?.(p.tid);
    } finally {
      this._committed(p);
      p.release();
    }
  }

  /**
   * The commit lock goes before the transaction is durable (group commit): the next transaction may begin
   * and write; this one can no longer be aborted, and its _finish calls published() once it is durable.
   */
  protected unlocked(p: P): void {
    if (this.pending === p) this.pending = null;
    p.release();
  }

  async tpcAbort(txn: TransactionMetaData): Promise<void> {
    const cancel = this.waiting.get(txn);
    if (cancel) {
      cancel();
      return;
    }
    const p = this.pending;
    if (!p || p.txn !== txn) return;
    if (p.finishing) {
      // too late to abort: tpc_finish is committing it (if that fails, the abort comes again)
      await p.chain;
      if (this.pending !== p) return;
    }
    await this.abortPending(p);
  }

  /** Forgets the transaction in progress: its operations end, _abort, and the commit lock goes. */
  protected async abortPending(p: P): Promise<void> {
    this.pending = null;
    try {
      await p.chain;
      await this._abort(p);
    } finally {
      p.release();
    }
  }

  /**
   * close's part: later calls throw StorageError, transactions waiting for the lock leave the queue, and the
   * one in progress is aborted (after its tpc_finish, when that has begun); an abort that fails goes to
   * `onAbortError` (the storage is closing either way).
   */
  protected async closeTransactions(onAbortError: (e: unknown) => void = () => {}): Promise<void> {
    this.closed = true;
    for (const cancel of this.waiting.values()) cancel();
    this.waiting.clear();
    const p = this.pending;
    if (!p) return;
    if (p.finishing) await p.chain;
    if (this.pending === p) await this.abortPending(p).catch(onAbortError);
  }

  // ------------------------------------------------------------------------------------------------------
  // undo

  /** BaseStorage.undoInfo: undoLog, with a filter made of the specification. */
  async undoInfo(
    first = 0,
    last: number = UNDO_LOG_DEFAULT_LAST,
    specification?: PyDict | null,
  ): Promise<UndoLogEntry[]> {
    return undoInfoVia((f, l, filter) => this.undoLog(f, l, filter), first, last, specification);
  }

  // ------------------------------------------------------------------------------------------------------
  // blobs: none unless the storage declares them (and overrides these)

  async storeBlob(
    _oid: Oid,
    _oldSerial: Tid,
    _data: Uint8Array,
    _blobFilename: string,
    _txn: TransactionMetaData,
  ): Promise<void> {
    throw this.noBlobs();
  }

  async restoreBlob(
    _oid: Oid,
    _serial: Tid,
    _data: Uint8Array,
    _blobFilename: string,
    _prevTxn: Tid | null,
    _txn: TransactionMetaData,
  ): Promise<void> {
    throw this.noBlobs();
  }

  async loadBlob(_oid: Oid, _serial: Tid): Promise<string> {
    throw this.noBlobs();
  }

  temporaryDirectory(): string {
    throw this.noBlobs();
  }

  blobDirectoryOf(_oid: Oid): string {
    throw this.noBlobs();
  }

  protected noBlobs(): Unsupported {
    return new Unsupported(`${this.getName()} does not store blobs`);
  }
}
