// The storage contract: one interface with the semantics of ZODB's IStorage, IMVCCStorage (loadBefore),
// IStorageRestoreable, IStorageUndoable, IStorageIteration, IExternalGC (deleteObject) and IBlobStorage
// (src/ZODB/interfaces.py). Names follow ZODB's, in camelCase. Everything that may touch the disk returns a
// Promise, so a FileStorage never stalls the server's event loop; MemoryStorage answers at once.
//
// Two-phase commit is driven with a TransactionMetaData object, whose identity names the transaction (as
// ZODB's transaction object does): tpcBegin(txn) ... store(..., txn) ... tpcVote(txn) ... tpcFinish(txn).

import type { PyDict } from '../pickle/index.js';
import type { Oid, Tid } from './ids.js';

/** The user, description and extension of a transaction (ZODB.Connection.TransactionMetaData). */
export class TransactionMetaData {
  /** Per-storage scratch space, as ZODB's transaction.data(storage) / set_data. */
  readonly data = new Map<object, unknown>();

  constructor(
    public user: Uint8Array = new Uint8Array(0),
    public description: Uint8Array = new Uint8Array(0),
    /** The extension dict; its pickle (protocol 3) is what FileStorage writes. */
    public extension: PyDict = new Map(),
    /**
     * The extension exactly as read from a storage, kept so copying or restoring a transaction writes the
     * same bytes; null for a new transaction.
     */
    public extensionBytes: Uint8Array | null = null,
  ) {}
}

/** What loadBefore returns: the revision that was current just before a tid. */
export interface LoadBeforeResult {
  data: Uint8Array;
  /** the tid that wrote this revision */
  start: Tid;
  /** the tid of the next revision, or null when this one is current */
  end: Tid | null;
}

/**
 * loadBefore's found result as Storage.loadBeforeInto gives it, without objects: one instance reused from load
 * to load, its data a range of a buffer valid only until the storage is used again.
 */
export class LoadBeforeHit {
  data: Uint8Array = new Uint8Array(0);
  dataAt = 0;
  dataLen = 0;
  readonly start = new Uint8Array(8);
  /** valid when hasEnd (else the end is null) */
  readonly end = new Uint8Array(8);
  hasEnd = false;
}

export interface LoadResult {
  data: Uint8Array;
  serial: Tid;
}

/** One entry of history(): ZODB's dict with tid, time, user_name, description, size (and extension keys). */
export interface HistoryEntry {
  tid: Tid;
  /** seconds since the epoch, from the tid's TimeStamp */
  time: number;
  userName: Uint8Array;
  description: Uint8Array;
  extension: PyDict;
  size: number;
}

/** One entry of undoLog()/undoInfo(). */
export interface UndoLogEntry {
  /** opaque; hand it back to undo() */
  id: Uint8Array;
  time: number;
  userName: Uint8Array;
  description: Uint8Array;
  extension: PyDict;
  /** the transaction's size in bytes, where the storage knows it (FileStorage; ZEO clients get it as 'size') */
  size?: number;
}

/** A data record of a transaction, as iterator() yields it (ZODB's IStorageRecordInformation). */
export interface DataRecord {
  oid: Oid;
  tid: Tid;
  /** null when the object was deleted or its creation undone */
  data: Uint8Array | null;
  /** for restore(): the tid of the transaction whose data this record reuses (a back pointer), else null */
  dataTxn: Tid | null;
}

/** What Storage.restoreRecords restored: how many records, and the bytes of their data (8 for none). */
export interface RestoredRecords {
  records: number;
  dataBytes: number;
}

/** A transaction, as iterator() yields it (ZODB's IStorageTransactionInformation). */
export interface TransactionRecord {
  tid: Tid;
  /** ' ' committed, 'p' packed, 'u' (in old files) */
  status: string;
  user: Uint8Array;
  description: Uint8Array;
  extension: PyDict;
  /** the extension as stored, for byte-exact copies */
  extensionBytes: Uint8Array;
  /** read lazily by a FileStorage; iterate with for await */
  records: AsyncIterable<DataRecord> | Iterable<DataRecord>;
}

/**
 * Called by store() when the object changed since `oldSerial` was read: the resolved data, or null when the
 * conflict stands (then store raises ConflictError). The ZEO server passes none: conflicts go to the client.
 */
export type ConflictResolver = (
  oid: Oid,
  committedSerial: Tid,
  oldSerial: Tid,
  newData: Uint8Array,
  committedData: Uint8Array,
) => Promise<Uint8Array | null>;

/** ZODB.serialize.referencesf's shape: the oids a record refers to. */
export type ReferencesFinder = (data: Uint8Array, oids?: Oid[]) => Oid[];

/**
 * A pack's progress: `done` of `total` units (bytes of the data file for FileStorage) of the phase named
 * `phase` ('reachability', 'copy'). Called at most ~10 times a second, and once with done === total at the
 * end of each phase; the total may grow (commits during the pack).
 */
export type PackProgressListener = (done: number, total: number, phase: string) => void;

export interface StoragePackOptions {
  /** garbage collection (the storage's default when absent) */
  gc?: boolean;
  /** told of the pack's progress, if the engine can tell (MemoryStorage does not) */
  onProgress?: PackProgressListener;
}

export interface UndoResult {
  tid: Tid;
  oids: Oid[];
}

/**
 * What a storage offers beyond the basics, declared by the storage (as a ZODB storage declares the interfaces
 * it provides), so that the server and the client read it instead of trying a method and catching Unsupported.
 * A method of a capability that is not declared raises Unsupported.
 */
export interface StorageCapabilities {
  /** IStorageUndoable: undo, undoLog, undoInfo (ZODB's supportsUndo()) */
  readonly undo: boolean;
  /** IBlobStorage and IBlobStorageRestoreable: storeBlob, restoreBlob, loadBlob, temporaryDirectory... */
  readonly blobs: boolean;
  /** IStorageIteration: iterator */
  readonly iteration: boolean;
  /** IStorageCurrentRecordIteration: recordIternext (ZEO's record_iternext) */
  readonly recordIternext: boolean;
  /** IStorageRestoreable: restore */
  readonly restore: boolean;
  /** IExternalGC: deleteObject */
  readonly deleteObject: boolean;
  /** lastInvalidations (FileStorage's), which the ZEO server seeds its invalidation queue from */
  readonly lastInvalidations: boolean;
  /**
   * The interfaces it provides, as zope.interface's __iro__ lists them and ZEO's get_info reports them: dotted
   * names, most specific first, ending with zope.interface.Interface.
   */
  readonly interfaces: readonly string[];
}

/** The capability that each ZODB interface stands for. */
export const CAPABILITY_INTERFACES = {
  undo: 'ZODB.interfaces.IStorageUndoable',
  blobs: 'ZODB.interfaces.IBlobStorage',
  iteration: 'ZODB.interfaces.IStorageIteration',
  recordIternext: 'ZODB.interfaces.IStorageCurrentRecordIteration',
  restore: 'ZODB.interfaces.IStorageRestoreable',
  deleteObject: 'ZODB.interfaces.IExternalGC',
} as const;

/**
 * The capabilities of a storage that provides `interfaces` (zope.interface's __iro__, as get_info reports it):
 * each capability is there when its interface is (CAPABILITY_INTERFACES).
 */
export function capabilitiesOf(
  interfaces: readonly string[],
  extra: { lastInvalidations?: boolean } = {},
): StorageCapabilities {
  const has = (name: string): boolean => interfaces.includes(name);
  return {
    undo: has(CAPABILITY_INTERFACES.undo),
    blobs: has(CAPABILITY_INTERFACES.blobs),
    iteration: has(CAPABILITY_INTERFACES.iteration),
    recordIternext: has(CAPABILITY_INTERFACES.recordIternext),
    restore: has(CAPABILITY_INTERFACES.restore),
    deleteObject: has(CAPABILITY_INTERFACES.deleteObject),
    lastInvalidations: extra.lastInvalidations ?? false,
    interfaces: [...interfaces],
  };
}

/** A storage class's interface resolution order: ZODB.interfaces names, most specific first, then Interface. */
export function zodbInterfaces(names: string): string[] {
  return [...names.split(' ').map((n) => `ZODB.interfaces.${n}`), 'zope.interface.Interface'];
}

/** A record cache's figures, as Storage.cacheStats gives them. */
export interface RecordCacheStats {
  /** the bound, bytes */
  capacity?: number;
  /** bytes of cached records */
  bytes: number;
  hits: number;
  misses: number;
}

export interface Storage {
  /** what it offers beyond the basics (see StorageCapabilities); fixed once the storage is open */
  readonly capabilities: StorageCapabilities;

  // --- identity and status ---
  getName(): string;
  sortKey(): string;
  isReadOnly(): boolean;
  /** the tid of the last committed transaction (z64 for an empty storage) */
  lastTransaction(): Tid;
  /** approximate size in bytes */
  getSize(): number;
  /** the number of objects */
  len(): number;
  /** capabilities.undo, under ZODB's name */
  supportsUndo(): boolean;
  close(): Promise<void>;

  // --- reads (IStorage, IMVCCStorage) ---
  /** the current revision; POSKeyError when the oid is unknown or deleted */
  load(oid: Oid): Promise<LoadResult>;
  /**
   * the revision current before tid; null when the object did not exist then; POSKeyError if never, or when
   * that revision deleted the object (deleteObject, an undone creation), as FileStorage does
   */
  loadBefore(oid: Oid, tid: Tid): Promise<LoadBeforeResult | null>;
  /**
   * loadBefore for the oid at oid[oidAt..+8] and the tid at tid[tidAt..+8] when it can be answered at once
   * (from memory), into `hit`: 1 found, 0 none (loadBefore's null), -1 not at once (then loadBefore answers).
   * Optional: the server's fast path for loads, which costs no object per load.
   */
  loadBeforeInto?(oid: Uint8Array, oidAt: number, tid: Uint8Array, tidAt: number, hit: LoadBeforeHit): number;
  /** that exact revision; POSKeyError when there is none */
  loadSerial(oid: Oid, serial: Tid): Promise<Uint8Array>;
  /** newest first, at most `size` entries */
  history(oid: Oid, size?: number): Promise<HistoryEntry[]>;
  newOid(): Promise<Oid>;

  // --- two-phase commit ---
  /** takes the commit lock (waiting for it); tid and status come from restore/copy (IStorageRestoreable) */
  tpcBegin(txn: TransactionMetaData, tid?: Tid | null, status?: string): Promise<void>;
  /** ConflictError when the object changed since oldSerial and cannot be resolved */
  store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): Promise<void>;
  /**
   * store done at once when it needs no I/O and no wait (the transaction's earlier operations done, the
   * object's current record in memory, no conflict to resolve): true when done; false when store() must do it
   * (nothing was stored). Throws what store() would reject with when it knows it at once; `data` is not kept.
   * Optional: the server's store path without a promise per object.
   */
  storeNow?(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): boolean;
  /** capabilities.restore: a record with its tid given (copy, recovery); data null with prevTxn for a back pointer */
  restore(
    oid: Oid,
    serial: Tid,
    data: Uint8Array | null,
    prevTxn: Tid | null,
    txn: TransactionMetaData,
  ): Promise<void>;
  /**
   * Optional (a storage that restores in bulk; copy uses it when offered): restore(r.oid, tid, r.data,
   * r.dataTxn, txn) for every record r of `records`, in order, where tid is the transaction's (tpcBegin's; the
   * records' own are not used), with the same result. The records and their buffers are the caller's until
   * it resolves.
   */
  restoreRecords?(
    records: Iterable<DataRecord> | AsyncIterable<DataRecord>,
    txn: TransactionMetaData,
  ): Promise<RestoredRecords>;
  /** ReadConflictError when the object's current serial is not `serial` */
  checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): Promise<void>;
  /** checkCurrentSerialInTransaction done at once, as storeNow is */
  checkCurrentSerialNow?(oid: Oid, serial: Tid, txn: TransactionMetaData): boolean;
  /** capabilities.deleteObject (IExternalGC): delete the object (ConflictError if it changed since oldSerial) */
  deleteObject(oid: Oid, oldSerial: Tid, txn: TransactionMetaData): Promise<void>;
  /** deleteObject done at once, as storeNow is */
  deleteObjectNow?(oid: Oid, oldSerial: Tid, txn: TransactionMetaData): boolean;
  /** writes the transaction (not yet committed); returns the oids whose conflicts were resolved */
  tpcVote(txn: TransactionMetaData): Promise<Oid[]>;
  /**
   * commits durably (on disk before it returns), calls `onCommitted` with the tid once it is durable and
   * visible, before any later transaction is (callbacks come in commit order); a load started from the
   * callback sees the new transaction (ZODB's loads wait for tpc_finish). The next transaction may begin
   * before then (FileStorage's group commit: the commit lock goes once the transaction is written).
   */
  tpcFinish(txn: TransactionMetaData, onCommitted?: (tid: Tid) => void): Promise<Tid>;
  tpcAbort(txn: TransactionMetaData): Promise<void>;

  // --- undo (IStorageUndoable; capabilities.undo) ---
  undo(undoId: Uint8Array, txn: TransactionMetaData): Promise<UndoResult>;
  undoLog(first: number, last: number, filter?: (entry: UndoLogEntry) => boolean): Promise<UndoLogEntry[]>;
  undoInfo(first: number, last: number, specification?: PyDict | null): Promise<UndoLogEntry[]>;

  // --- pack ---
  /** ZODB's pack-time semantics; `referencesf` finds references for garbage collection */
  pack(packTime: number, referencesf: ReferencesFinder, options?: StoragePackOptions): Promise<void>;

  // --- iteration (IStorageIteration, IStorageCurrentRecordIteration; capabilities.iteration, recordIternext) ---
  iterator(start?: Tid | null, stop?: Tid | null): AsyncIterable<TransactionRecord>;
  /** (oid, tid, data, nextOid) of the current record at or after `next` (null: the first oid) */
  recordIternext(next?: Oid | null): Promise<{ oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null }>;
  /**
   * recordIternext's result when it can be had at once (from memory), its data valid only until the storage is
   * used again; undefined when not (then recordIternext answers). Optional: the server's fast path.
   */
  recordIternextCached?(
    next: Oid | null,
  ): { oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null } | undefined;
  /**
   * capabilities.lastInvalidations (FileStorage's, which the ZEO server seeds its invalidation queue from): the last
   * `count` committed transactions, NEWEST FIRST (ZODB's returns them oldest first and StorageServer reverses
   * the list), each with the oids of its data records in file order, not deduplicated, as ZODB lists them.
   * Fewer when the storage has fewer; none for a count of 0 or less.
   */
  lastInvalidations(count: number): Promise<Array<{ tid: Tid; oids: Oid[] }>>;

  /** Storages other writers also commit to (another zeo serve, RelStorage): calls `listener` with each
   *  transaction committed elsewhere, in tid order, exactly once, and only after lastTransaction() has
   *  advanced to it; a commit through this storage is reported by tpcFinish, not here. */
  watchInvalidations?(listener: (tid: Tid, oids: Oid[]) => void): void;
  /**
   * Optional, with watchInvalidations, for a storage that hears of other writers' commits late (a poll):
   * hear now of every transaction committed elsewhere before the call (RelStorage's poll at a transaction's
   * start). Resolves once each went to the listeners and lastTransaction() has advanced to it. The server
   * calls it before it answers register, ping and lastTransaction, so that a client that syncs (ZEO's
   * server_sync) after a commit through another server returned reads it.
   */
  pollInvalidations?(): Promise<void>;

  /**
   * Optional (FileStorage's): asked before a flush of `commits` transactions; true when nothing else waits on
   * this thread (the ZEO server: no call in progress but those transactions' tpc_finish), so that a fast flush
   * may run synchronously instead of through the thread pool, saving the round trip and its two thread
   * wake-ups. Null or absent: never.
   */
  mayFlushInline?: ((commits: number) => boolean) | null;

  /**
   * Optional: told the seconds each flush that makes commits durable took (FileStorage's fdatasync), for the
   * server's metrics. Null or absent: nobody listens.
   */
  onFlush?: ((seconds: number) => void) | null;

  /** Optional: the record cache's figures (FileStorage's read cache, PostgreSQL's state cache); null: none. */
  cacheStats?(): RecordCacheStats | null;

  // --- blobs (IBlobStorage; capabilities.blobs): a storage without them throws Unsupported ---
  storeBlob(
    oid: Oid,
    oldSerial: Tid,
    data: Uint8Array,
    blobFilename: string,
    txn: TransactionMetaData,
  ): Promise<void>;
  restoreBlob(
    oid: Oid,
    serial: Tid,
    data: Uint8Array,
    blobFilename: string,
    prevTxn: Tid | null,
    txn: TransactionMetaData,
  ): Promise<void>;
  /** the path of the committed blob file; POSKeyError when there is none */
  loadBlob(oid: Oid, serial: Tid): Promise<string>;
  /** a directory on the same file system as the blobs, for uploads */
  temporaryDirectory(): string;
  /**
   * the directory of an object's blob files (ZODB's fshelper.getPathForOID), where a client sharing the blob
   * directory puts its uploads (ZEO's storeBlobShared)
   */
  blobDirectoryOf(oid: Oid): string;
}
