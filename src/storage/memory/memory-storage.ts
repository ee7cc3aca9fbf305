// An in-memory storage: ZODB's MappingStorage (src/ZODB/MappingStorage.py), but keeping every revision for
// MVCC reads and undo, with FileStorage's semantics wherever MappingStorage has none (undo, pack's reachability
// at the pack time, 'p' status of packed transactions, back pointers written by undo and restore). Blobs are
// the FileStorage's job: the blob methods throw Unsupported. Served as runzeo serves a <mappingstorage>, it
// declares only what MappingStorage provides (options.mappingStorage).

import type { PyDict } from '../../pickle/index.js';
import {
  BaseStorage,
  pendingState,
  undoLogEntry,
  UNDO_LOG_DEFAULT_LAST,
  type PendingTransaction,
  type TransactionStart,
} from '../base.js';
import { CommitLock } from '../commit-lock.js';
import {
  POSKeyError,
  StorageError,
  StorageTransactionError,
  // conflicts
  ConflictError,
  ReadConflictError,
  // undo
  MultipleUndoErrors,
  UndoError,
} from '../errors.js';
import { decodeExtension } from '../extension.js';
import { searchUndoLog, type UndoCandidate } from '../undo-log.js';
import { compareIds, idCopy, idEquals, p64, u64, z64, type Oid, type Tid } from '../ids.js';
import {
  capabilitiesOf,
  zodbInterfaces,
  type Storage,
  // reads
  type LoadResult,
  type LoadBeforeResult,
  type HistoryEntry,
  // commits
  type ConflictResolver,
  // undo, pack, iteration
  type UndoResult,
  type UndoLogEntry,
  type ReferencesFinder,
  type TransactionRecord,
  type DataRecord,
} from '../interfaces.js';
import { preciseNow, tidTime, TimeStamp } from '../timestamp.js';

/** One revision of an object. */
interface Revision {
  readonly tid: Tid;
  /** the object's state in this revision; null when it was deleted or its creation undone */
  readonly data: Uint8Array | null;
  /**
   * A back pointer: the tid of the revision of this object whose data this one reuses (written by undo and by
   * restore), as FileStorage's data records point back; null when the record carries its own data.
   */
  dataTxn: Tid | null;
}

interface ObjectHistory {
  readonly oid: Oid;
  /** ascending by tid */
  revs: Revision[];
  /**
   * Revisions a pack kept only because a later record points back to them: in their transactions (the
   * iterator shows them) and back pointer targets, but no longer in the object's history.
   */
  detached: Revision[];
}

interface CommittedTxn {
  readonly tid: Tid;
  status: string;
  readonly user: Uint8Array;
  readonly description: Uint8Array;
  readonly extensionBytes: Uint8Array;
  readonly extension: PyDict;
  /** in the order they were stored */
  records: Array<{ oid: Oid; rev: Revision }>;
}

/** A record of the transaction being committed. */
interface PendingRecord {
  oid: Oid;
  data: Uint8Array | null;
  dataTxn: Tid | null;
}

interface Pending extends PendingTransaction {
  readonly records: Map<string, PendingRecord>;
}

/** An oid or tid as a Map key: its 8 bytes as latin1 characters (string order is byte order). */
function key(id: Uint8Array): string {
  return String.fromCharCode(id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]);
}

function keyToId(k: string): Uint8Array {
  const out = new Uint8Array(8);
  for (let i = 0; i < 8; i++) out[i] = k.charCodeAt(i);
  return out;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** The newest revision with tid <= `tid` (index into revs), or -1. */
function indexAtOrBefore(revs: Revision[], tid: Tid): number {
  let lo = 0;
  let hi = revs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareIds(revs[mid].tid, tid) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** The newest revision with tid < `before` (index into revs), or -1. */
function indexBefore(revs: Revision[], before: Tid): number {
  let lo = 0;
  let hi = revs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareIds(revs[mid].tid, before) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

function indexOfTid(revs: Revision[], tid: Tid): number {
  const i = indexBefore(revs, tid) + 1;
  return i < revs.length && idEquals(revs[i].tid, tid) ? i : -1;
}

/**
 * The database of a MemoryStorage. Several MemoryStorage objects may share one (a read-only view, a reopen
 * after close, MVCCMappingStorage's new_instance): they share the data, the oid counter and the commit lock.
 */
export class MemoryStorageData {
  readonly objects = new Map<string, ObjectHistory>();
  /** ascending by tid */
  readonly transactions: CommittedTxn[] = [];
  readonly txnByTid = new Map<string, CommittedTxn>();
  readonly commitLock = new CommitLock();
  lastTid: Tid = z64;
  /** the last tid handed out by tpcBegin (committed or not): new tids are later than it */
  lastAssigned: Tid = z64;
  maxOid = 0n;
  packing = false;
  private sorted: string[] | null = null;
  /** the storages open on this data that hear of each other's commits (watchInvalidations) */
  private readonly watchers = new Set<MemoryStorage>();

  watch(storage: MemoryStorage): void {
    this.watchers.add(storage);
  }

  unwatch(storage: MemoryStorage): void {
    this.watchers.delete(storage);
  }

  /** `source` committed `tid` (lastTid is it already): every other storage open on this data hears of it. */
  committed(source: MemoryStorage, tid: Tid, oids: () => Oid[]): void {
    for (const storage of this.watchers)
      if (storage !== source && storage.listens) storage.heard(tid, oids());
  }

  /** The oid keys in byte order (cached until an object is added or removed). */
  sortedKeys(): string[] {
    if (!this.sorted) this.sorted = [...this.objects.keys()].sort();
    return this.sorted;
  }

  objectsChanged(): void {
    this.sorted = null;
  }
}

export interface MemoryStorageOptions {
  /** getName() and sortKey(); default 'MemoryStorage' */
  name?: string;
  readOnly?: boolean;
  /** tries to resolve write conflicts in store() and undo(); none: conflicts raise ConflictError / UndoError */
  resolver?: ConflictResolver | null;
  /** the database to open; default a new, empty one */
  data?: MemoryStorageData;
  /** the clock for new tids, in milliseconds since the epoch; default preciseNow (Date.now with microseconds) */
  clock?: () => number;
  /**
   * Declare only what ZODB's MappingStorage provides (IStorage, IStorageIteration), as runzeo serves a
   * <mappingstorage>: undo, restore, deleteObject, recordIternext and lastInvalidations raise Unsupported.
   */
  mappingStorage?: boolean;
  /**
   * Hear of the other storages' commits on the same data only when polling, as a PostgreSQL storage does:
   * every `pollIntervalMs` milliseconds, at pollInvalidations(), and before its own commit is published.
   * Until then lastTransaction() stays behind (loads see everything, as a database's do). Default: at once.
   * (In milliseconds: PostgreSQLOptions.pollInterval is in seconds, as RelStorage's.)
   */
  pollIntervalMs?: number;
}

/** What a MemoryStorage offers: FileStorage's interfaces (see there), without blobs. */
const MEMORY_STORAGE_CAPABILITIES = capabilitiesOf(
  zodbInterfaces(
    'IStorageRestoreable IStorageIteration IStorageUndoable IStorageCurrentRecordIteration IExternalGC IStorage',
  ),
  { lastInvalidations: true },
);

/** What ZODB's MappingStorage offers (its @implementer list, as runzeo's get_info reports it). */
const MAPPING_STORAGE_CAPABILITIES = capabilitiesOf(zodbInterfaces('IStorage IStorageIteration'));

type InvalidationListener = (tid: Tid, oids: Oid[]) => void;

export class MemoryStorage extends BaseStorage<Pending> implements Storage {
  readonly data: MemoryStorageData;
  protected readonly clock: () => number;
  private readonly listeners: InvalidationListener[] = [];
  /** polling (options.pollIntervalMs): the other storages' commits not heard of yet, and the last tid heard of */
  private readonly polled: {
    unheard: Array<{ tid: Tid; oids: Oid[] }>;
    last: Tid;
    timer: NodeJS.Timeout;
  } | null;
  /** Storage.pollInvalidations, for a storage that polls (options.pollIntervalMs) */
  readonly pollInvalidations?: () => Promise<void>;

  constructor(options: MemoryStorageOptions = {}) {
    super({
      name: options.name ?? 'MemoryStorage',
      readOnly: options.readOnly ?? false,
      capabilities: options.mappingStorage ? MAPPING_STORAGE_CAPABILITIES : MEMORY_STORAGE_CAPABILITIES,
      resolver: options.resolver,
    });
    this.data = options.data ?? new MemoryStorageData();
    this.clock = options.clock ?? preciseNow;
    this.data.watch(this);
    if (options.pollIntervalMs === undefined) {
      this.polled = null;
    } else {
      const timer = setInterval(() => this.poll(), options.pollIntervalMs);
      timer.unref();
      this.polled = { unheard: [], last: this.data.lastTid, timer };
      this.pollInvalidations = async () => this.poll();
    }
  }

  /** the lock of the data, shared by the storages that open it */
  protected get commitLock(): CommitLock {
    return this.data.commitLock;
  }

  protected get lastTs(): Tid {
    const d = this.data;
    return compareIds(d.lastAssigned, d.lastTid) > 0 ? d.lastAssigned : d.lastTid;
  }

  protected set lastTs(tid: Tid) {
    this.data.lastAssigned = tid;
  }

  // ------------------------------------------------------------------------------------------------------
  // identity and status

  lastTransaction(): Tid {
    return this.polled ? this.polled.last : this.data.lastTid;
  }

  /** (restore's check is against the data's last transaction, heard of or not) */
  protected override lastWrittenTid(): Tid {
    return this.data.lastTid;
  }

  /** MappingStorage's estimate: 50 bytes per object, 100 per revision, plus the data. */
  getSize(): number {
    let size = 0;
    for (const obj of this.data.objects.values()) {
      size += 50;
      for (const rev of [...obj.detached, ...obj.revs]) size += 100 + (rev.data?.length ?? 0);
    }
    return size;
  }

  /** Objects with records, as FileStorage counts its index (a deleted object counts until a pack). */
  len(): number {
    return this.data.objects.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.data.unwatch(this);
    if (this.polled) clearInterval(this.polled.timer);
    await this.closeTransactions();
  }

  /**
   * Storage.watchInvalidations: the commits of the other MemoryStorages open on the same data (other writers
   * on one database), each reported as it commits (or, polling, at the next poll).
   */
  watchInvalidations(listener: InvalidationListener): void {
    this.checkOpen();
    this.listeners.push(listener);
  }

  /** whether it has anything to do with the other storages' commits */
  get listens(): boolean {
    return this.polled !== null || this.listeners.length > 0;
  }

  /** Another storage on the data committed `tid`: heard of now, or at the next poll. */
  heard(tid: Tid, oids: Oid[]): void {
    if (this.polled) this.polled.unheard.push({ tid: idCopy(tid), oids });
    else this.tell(idCopy(tid), oids);
  }

  /** Hears of the commits not heard of yet, in order: lastTransaction() advances to each, then its listeners. */
  private poll(): void {
    const polled = this.polled!;
    for (const { tid, oids } of polled.unheard.splice(0)) {
      polled.last = tid;
      this.tell(tid, oids);
    }
  }

  /**
   * The listeners, in the run that advanced lastTransaction() (so none answers it before they have it). A
   * listener's error is thrown on its own, later: the transaction is committed whatever a listener does.
   */
  private tell(tid: Tid, oids: Oid[]): void {
    for (const listener of this.listeners) {
      try {
        listener(tid, oids);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // reads

  private revisionsOf(oid: Oid): ObjectHistory | undefined {
    return this.data.objects.get(key(oid));
  }

  async load(oid: Oid): Promise<LoadResult> {
    this.checkOpen();
    const revs = this.revisionsOf(oid)?.revs;
    const cur = revs?.[revs.length - 1];
    if (!cur || cur.data === null) throw new POSKeyError(oid);
    return { data: cur.data, serial: cur.tid };
  }

  async loadBefore(oid: Oid, tid: Tid): Promise<LoadBeforeResult | null> {
    this.checkOpen();
    const revs = this.revisionsOf(oid)?.revs;
    if (!revs?.length) throw new POSKeyError(oid);
    const i = indexBefore(revs, tid);
    if (i < 0) return null;
    const rev = revs[i];
    // a revision that deleted the object: FileStorage raises rather than answering "did not exist"
    if (rev.data === null) throw new POSKeyError(oid);
    return { data: rev.data, start: rev.tid, end: i + 1 < revs.length ? revs[i + 1].tid : null };
  }

  async loadSerial(oid: Oid, serial: Tid): Promise<Uint8Array> {
    this.checkOpen();
    const revs = this.revisionsOf(oid)?.revs;
    const i = revs ? indexOfTid(revs, serial) : -1;
    const data = i >= 0 ? revs![i].data : null;
    if (data === null) throw new POSKeyError(oid, serial);
    return data;
  }

  async history(oid: Oid, size = 1): Promise<HistoryEntry[]> {
    this.checkOpen();
    const revs = this.revisionsOf(oid)?.revs;
    if (!revs?.length) throw new POSKeyError(oid);
    const out: HistoryEntry[] = [];
    for (let i = revs.length - 1; i >= 0 && out.length < size; i--) {
      const rev = revs[i];
      const txn = this.data.txnByTid.get(key(rev.tid))!;
      out.push({
        tid: rev.tid,
        time: tidTime(rev.tid),
        userName: txn.user,
        description: txn.description,
        extension: txn.extension,
        // FileStorage reports the record's own data length: 0 for a back pointer or a deletion
        size: rev.dataTxn === null && rev.data ? rev.data.length : 0,
      });
    }
    return out;
  }

  async newOid(): Promise<Oid> {
    this.checkWritable();
    this.data.maxOid += 1n;
    return p64(this.data.maxOid);
  }

  /** New oids continue after the largest oid stored (FileStorage's set_max_oid). */
  private noteOid(oid: Oid): void {
    const n = u64(oid);
    if (n > this.data.maxOid) this.data.maxOid = n;
  }

  /** The record of `oid` in transaction `tid` (detached revisions included: back pointers reach them). */
  private revisionIn(tid: Tid, oid: Oid): Revision | undefined {
    return this.data.txnByTid.get(key(tid))?.records.find((r) => idEquals(r.oid, oid))?.rev;
  }

  private current(oid: Oid): Revision | undefined {
    const revs = this.revisionsOf(oid)?.revs;
    return revs?.[revs.length - 1];
  }

  // ------------------------------------------------------------------------------------------------------
  // two-phase commit

  protected _begin(start: TransactionStart): Pending {
    return { ...pendingState(start), records: new Map() };
  }

  /** After an await: the transaction may have been aborted meanwhile (a client that went away). */
  private stillPending(p: Pending, what: string): void {
    if (this.pending !== p) throw new StorageTransactionError(`${what}: the transaction was aborted`);
    if (p.voted)
      throw new StorageTransactionError(`${what}: tpc_vote came while it was resolving a conflict`);
  }

  protected async _store(p: Pending, oid: Oid, oldSerial: Tid, data: Uint8Array): Promise<void> {
    this.noteOid(oid);
    // the check is against the committed revision, as FileStorage's (not a record stored earlier in this txn)
    const cur = this.current(oid);
    if (cur && !idEquals(cur.tid, oldSerial)) {
      const resolved = await this.tryToResolveConflict(oid, cur.tid, oldSerial, data, cur.data);
      this.stillPending(p, 'store');
      if (!resolved) throw new ConflictError(oid, [cur.tid, oldSerial], data);
      data = resolved;
      p.resolved.push(oid);
    }
    p.records.set(key(oid), { oid, data, dataTxn: null });
  }

  protected async _restore(p: Pending, record: DataRecord): Promise<void> {
    const { oid, tid: serial, data, dataTxn: prevTxn } = record;
    if (!idEquals(serial, p.tid)) {
      throw new StorageTransactionError("restore: the record's serial must be the transaction's tid");
    }
    this.noteOid(oid);
    // prevTxn is a hint (FileStorage's _data_find): point back when that revision exists with the same data
    if (prevTxn !== null) {
      const target = this.revisionIn(prevTxn, oid);
      if (target) {
        const same =
          data === null
            ? target.data === null
            : target.dataTxn !== null || (target.data !== null && bytesEqual(target.data, data));
        if (same) {
          p.records.set(key(oid), { oid, data: target.data, dataTxn: target.tid });
          return;
        }
      }
    }
    p.records.set(key(oid), { oid, data, dataTxn: null });
  }

  protected async _checkCurrentSerial(_p: Pending, oid: Oid, serial: Tid): Promise<void> {
    const cur = this.current(oid);
    if (!cur || cur.data === null) throw new POSKeyError(oid);
    if (!idEquals(cur.tid, serial)) throw new ReadConflictError(oid, [cur.tid, serial]);
  }

  protected async _deleteObject(p: Pending, oid: Oid, oldSerial: Tid): Promise<void> {
    const cur = this.current(oid);
    if (!cur) throw new POSKeyError(oid);
    if (!idEquals(cur.tid, oldSerial)) throw new ConflictError(oid, [cur.tid, oldSerial]);
    p.records.set(key(oid), { oid, data: null, dataTxn: null });
  }

  protected _finish(p: Pending): void {
    const d = this.data;
    // the other writers' earlier commits are heard of before this one is published
    if (this.polled) this.poll();
    const committed: CommittedTxn = {
      tid: p.tid,
      status: p.status,
      user: p.user,
      description: p.description,
      extensionBytes: p.extension,
      extension: decodeExtension(p.extension),
      records: [],
    };
    for (const rec of p.records.values()) {
      const k = key(rec.oid);
      let obj = d.objects.get(k);
      if (!obj) {
        obj = { oid: rec.oid, revs: [], detached: [] };
        d.objects.set(k, obj);
        d.objectsChanged();
      }
      const rev: Revision = { tid: p.tid, data: rec.data, dataTxn: rec.dataTxn };
      obj.revs.push(rev); // p.tid is later than every tid stored: the order holds
      committed.records.push({ oid: rec.oid, rev });
    }
    d.transactions.push(committed);
    d.txnByTid.set(key(p.tid), committed);
    d.lastTid = p.tid;
    if (this.polled) this.polled.last = p.tid;
    d.committed(this, p.tid, () => committed.records.map((r) => idCopy(r.oid)));
  }

  // ------------------------------------------------------------------------------------------------------
  // undo

  protected async _undo(p: Pending, tid: Tid): Promise<UndoResult> {
    const undone = this.findUndoable(tid);
    const records = new Map<string, PendingRecord>();
    // FileStorage gives a record a second chance when its oid comes again in the transaction
    const failures = new Map<string, UndoError>();
    for (const { oid, rev } of undone.records) {
      const k = key(oid);
      failures.delete(k);
      try {
        records.set(k, await this.undoRecord(p, oid, rev));
        this.stillPending(p, 'undo');
      } catch (e) {
        if (!(e instanceof UndoError)) throw e;
        failures.set(k, e);
      }
    }
    if (failures.size) throw new MultipleUndoErrors([...failures.values()]);
    for (const [k, rec] of records) p.records.set(k, rec);
    return { tid: p.tid, oids: [...records.values()].map((r) => r.oid) };
  }

  /** The committed transaction `tid`, searched from the newest back to the last packed one. */
  private findUndoable(tid: Tid): CommittedTxn {
    const txns = this.data.transactions;
    for (let i = txns.length - 1; i >= 0; i--) {
      const t = txns[i];
      if (idEquals(t.tid, tid)) {
        if (t.status !== ' ') throw new UndoError('non-undoable transaction');
        return t;
      }
      if (t.status === 'p') break;
    }
    throw new UndoError('Invalid transaction id');
  }

  /** FileStorage's _transactionalUndoRecord: the record that undoes `rev` (of the undone transaction). */
  private async undoRecord(p: Pending, oid: Oid, rev: Revision): Promise<PendingRecord> {
    const revs = this.revisionsOf(oid)!.revs;
    const at = indexOfTid(revs, rev.tid);
    const pre = at > 0 ? revs[at - 1] : null;
    // the current state: an earlier undo in this transaction, else the committed revision
    const inTxn = p.records.get(key(oid));
    const committed = revs[revs.length - 1];
    let copy = true;
    let currentData: Uint8Array | null = null;
    const isUndone = !inTxn && committed === rev;
    if (!isUndone) {
      // does the current record point back to the undone one (same data, nothing to check)?
      const curPtr = inTxn ? inTxn.dataTxn : committed.dataTxn;
      if (curPtr === null || !idEquals(curPtr, rev.tid)) {
        currentData = inTxn ? inTxn.data : committed.data;
        if (rev.data === null || currentData === null) throw new UndoError('_loadBack() failed', oid);
        if (!bytesEqual(rev.data, currentData)) {
          copy = false;
          if (!pre) {
            throw new UndoError("Can't undo an add transaction followed by conflicting transactions.", oid);
          }
        }
      }
    }
    // undoing the creation: the object is gone again
    if (!pre) return { oid, data: null, dataTxn: null };
    if (copy) return { oid, data: pre.data, dataTxn: pre.tid };
    if (pre.data === null) throw new UndoError('_loadBack() failed', oid);
    const ctid = inTxn ? p.tid : committed.tid;
    const resolved = await this.tryToResolveConflict(oid, ctid, rev.tid, pre.data, currentData);
    if (!resolved) throw new UndoError('Some data were modified by a later transaction', oid);
    return { oid, data: resolved, dataTxn: null };
  }

  async undoLog(
    first = 0,
    last: number = UNDO_LOG_DEFAULT_LAST,
    filter?: (entry: UndoLogEntry) => boolean,
  ): Promise<UndoLogEntry[]> {
    this.checkOpen();
    this.require('undo', 'undoLog');
    const txns = this.data.transactions;
    const newestFirst = function* (): Generator<UndoCandidate<UndoLogEntry>> {
      for (let n = txns.length - 1; n >= 0; n--) {
        const t = txns[n];
        yield {
          status: t.status,
          entry: () => undoLogEntry(t.tid, t.user, t.description, t.extension),
        };
      }
    };
    return searchUndoLog(first, last, filter, newestFirst());
  }

  // ------------------------------------------------------------------------------------------------------
  // pack

  async pack(packTime: number, referencesf: ReferencesFinder, options: { gc?: boolean } = {}): Promise<void> {
    this.checkWritable();
    const gc = options.gc ?? true;
    const stop = TimeStamp.fromTime(packTime).raw();
    if (idEquals(stop, z64)) throw new StorageError('Invalid pack time');
    const d = this.data;
    if (d.objects.size === 0) return;
    if (d.packing) throw new StorageError('Already packing');
    d.packing = true;
    try {
      // no transaction commits while the history is rewritten
      await d.commitLock.runExclusive(() => this.packLocked(stop, referencesf, gc));
    } finally {
      d.packing = false;
    }
  }

  private packLocked(stop: Tid, referencesf: ReferencesFinder, gc: boolean): void {
    const d = this.data;
    // FileStorage's RedundantPackWarning: when everything up to the pack time is packed already and so is the
    // transaction after it, an earlier pack went further; a traversal at this time would miss what it removed
    const txns0 = d.transactions;
    let n = 0;
    let unpacked = false;
    for (; n < txns0.length && compareIds(txns0[n].tid, stop) <= 0; n++)
      if (txns0[n].status !== 'p') unpacked = true;
    const after = txns0[n] ?? txns0[n - 1];
    if (!unpacked && after?.status === 'p') return;

    // the revision of each object current at the pack time, unless it deleted the object (a back pointer to a
    // deletion counts, as in fspack, which looks at the record, not where it points)
    const atPack = new Map<string, Revision>();
    for (const [k, obj] of d.objects) {
      const i = indexAtOrBefore(obj.revs, stop);
      if (i >= 0 && (obj.revs[i].data !== null || obj.revs[i].dataTxn !== null)) atPack.set(k, obj.revs[i]);
    }

    // the revisions at or before the pack time to keep: {oid -> tids}
    // fspack's GC, structure for structure: `reachable` holds one revision per object (the one current at the
    // pack time, or the first one a later back pointer reached), `reachEx` the others later records point to
    const reachable = new Map<string, Revision>();
    const reachEx = new Map<string, Revision[]>();
    if (gc) {
      // reachable from the root at the pack time (findReachableAtPacktime)
      const traverse = (roots: Oid[]): void => {
        const todo = [...roots];
        while (todo.length) {
          const oid = todo.pop()!;
          const k = key(oid);
          if (reachable.has(k)) continue;
          const rev = atPack.get(k);
          if (!rev) {
            if (idEquals(oid, z64) && atPack.size === 0) continue; // packing to before the root existed
            throw new POSKeyError(oid); // a dangling reference: FileStorage's pack fails the same way
          }
          reachable.set(k, rev);
          if (rev.data) for (const ref of referencesf(rev.data)) if (!reachable.has(key(ref))) todo.push(ref);
        }
      };
      traverse([z64]);
      // records after the pack time that point back before it keep their target, and what that refers to
      // (findReachableFromFuture: an undo after the pack time may bring it back)
      const extraRoots: Revision[] = [];
      for (const t of d.transactions) {
        if (compareIds(t.tid, stop) <= 0) continue;
        for (const { oid, rev } of t.records) {
          if (rev.dataTxn === null || compareIds(rev.dataTxn, stop) > 0) continue;
          const k = key(oid);
          const target = this.revisionIn(rev.dataTxn, oid);
          if (!target) continue;
          if (reachable.has(k)) {
            let ex = reachEx.get(k);
            if (!ex) reachEx.set(k, (ex = []));
            if (!ex.includes(target)) {
              ex.push(target);
              extraRoots.push(target);
            }
          } else reachable.set(k, target); // as fspack: kept, but what it refers to is not followed
        }
      }
      for (const rev of extraRoots) if (rev.data) traverse(referencesf(rev.data));
    } else {
      for (const [k, rev] of atPack) reachable.set(k, rev);
    }
    const keep = new Map<string, Set<string>>();
    for (const [k, rev] of reachable)
      keep.set(k, new Set([key(rev.tid), ...(reachEx.get(k) ?? []).map((r) => key(r.tid))]));

    // The plan, applied only if the pack frees something (FileStorage leaves the file alone otherwise):
    // - up to the pack time, the kept revisions; the newest stays in the object's history, older ones kept only
    //   as targets of later back pointers are detached from it (fspack writes packed records with no previous
    //   record: loadBefore, loadSerial and history do not reach them; the iterator and back pointers do);
    // - packed records carry their data (no back pointers), as do later records whose target goes;
    // - transactions up to the pack time keep their surviving records and are marked packed; empty ones go.
    let changed = false;
    const plans: Array<{ obj: ObjectHistory; k: string; revs: Revision[]; detached: Revision[] }> = [];
    const unpoint: Revision[] = [];
    for (const [k, obj] of d.objects) {
      const kept = keep.get(k);
      const before: Revision[] = [];
      const after: Revision[] = [];
      for (const rev of [...obj.detached, ...obj.revs]) {
        if (compareIds(rev.tid, stop) > 0) after.push(rev);
        else if (kept?.has(key(rev.tid))) {
          before.push(rev);
          if (rev.dataTxn !== null) unpoint.push(rev);
        } else changed = true;
      }
      before.sort((a, b) => compareIds(a.tid, b.tid));
      plans.push({ obj, k, revs: [...before.slice(-1), ...after], detached: before.slice(0, -1) });
    }
    const isKept = (oid: Oid, tid: Tid): boolean =>
      compareIds(tid, stop) > 0 || (keep.get(key(oid))?.has(key(tid)) ?? false);
    for (const t of d.transactions) {
      if (compareIds(t.tid, stop) <= 0) continue;
      for (const { oid, rev } of t.records)
        if (rev.dataTxn !== null && !isKept(oid, rev.dataTxn)) unpoint.push(rev);
    }
    const txns: CommittedTxn[] = [];
    const packedRecords = new Map<CommittedTxn, CommittedTxn['records']>();
    for (const t of d.transactions) {
      if (compareIds(t.tid, stop) > 0) {
        txns.push(t);
        continue;
      }
      const records = t.records.filter(({ oid, rev }) => isKept(oid, rev.tid));
      // an empty transaction before the pack time goes too: that frees space
      if (records.length !== t.records.length || !records.length) changed = true;
      if (records.length) {
        packedRecords.set(t, records);
        txns.push(t);
      }
    }
    // inlining a back pointer changes the file too (a record of another size)
    if (!changed && unpoint.length === 0) return;

    for (const { obj, k, revs, detached } of plans) {
      if (!revs.length && !detached.length) {
        d.objects.delete(k);
        d.objectsChanged();
        continue;
      }
      obj.revs = revs;
      obj.detached = detached;
    }
    for (const rev of unpoint) rev.dataTxn = null;
    for (const t of d.transactions)
      if (!packedRecords.has(t) && compareIds(t.tid, stop) <= 0) d.txnByTid.delete(key(t.tid));
    for (const [t, records] of packedRecords) {
      t.records = records;
      t.status = 'p';
    }
    d.transactions.splice(0, d.transactions.length, ...txns);
  }

  // ------------------------------------------------------------------------------------------------------
  // iteration

  iterator(start: Tid | null = null, stop: Tid | null = null): AsyncIterable<TransactionRecord> {
    this.checkOpen();
    // the transactions committed when iterator() is called; later commits are not seen
    const txns = this.data.transactions.filter(
      (t) =>
        (start === null || compareIds(t.tid, start) >= 0) && (stop === null || compareIds(t.tid, stop) <= 0),
    );
    return iterate(txns);
  }

  async recordIternext(
    next: Oid | null = null,
  ): Promise<{ oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null }> {
    this.checkOpen();
    this.require('recordIternext', 'recordIternext');
    const keys = this.data.sortedKeys();
    const from = key(next ?? z64);
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < from) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= keys.length) throw new POSKeyError(next ?? z64);
    const oid = keyToId(keys[lo]);
    const { data, serial } = await this.load(oid);
    return { oid, tid: serial, data, next: lo + 1 < keys.length ? keyToId(keys[lo + 1]) : null };
  }

  /**
   * The last `count` committed transactions with the oids of their records, NEWEST FIRST, as FileStorage's
   * lastInvalidations gives them (see Storage.lastInvalidations): the records as the iterator lists them.
   */
  async lastInvalidations(count: number): Promise<Array<{ tid: Tid; oids: Oid[] }>> {
    this.checkOpen();
    this.require('lastInvalidations', 'lastInvalidations');
    const txns = this.data.transactions;
    const out: Array<{ tid: Tid; oids: Oid[] }> = [];
    for (let i = txns.length - 1; i >= 0 && out.length < count; i--) {
      out.push({ tid: idCopy(txns[i].tid), oids: txns[i].records.map((r) => idCopy(r.oid)) });
    }
    return out;
  }
}

async function* iterate(txns: CommittedTxn[]): AsyncGenerator<TransactionRecord> {
  for (const t of txns) {
    const records: DataRecord[] = t.records.map(({ oid, rev }) => ({
      oid,
      tid: rev.tid,
      data: rev.data,
      dataTxn: rev.dataTxn,
    }));
    yield {
      tid: t.tid,
      status: t.status,
      user: t.user,
      description: t.description,
      extension: t.extension,
      extensionBytes: t.extensionBytes,
      records,
    };
  }
}
