// A storage in PostgreSQL, on RelStorage 4.x's history-preserving schema, written to by RelStorage and by
// other zeo-ts servers at the same time. Commits take RelStorage's locks: readCurrent's shared advisory locks,
// the object locks (advisory, by zoid, in zoid order), then the commit lock (advisory lock -1) under which the
// tid is chosen from the database's clock after the last tid, and the rows are written. A ZODB transaction is
// one database transaction on one pooled connection, from tpcVote to tpcFinish (COMMIT) or tpcAbort
// (ROLLBACK): the stores are kept in memory until the vote, then written in one statement. Reads go through
// the pool, one statement each.
//
// Invalidations from other writers (watchInvalidations): LISTEN is the wake-up, a poll of the transactions
// after the last one seen is the truth; tpcFinish delivers those before its own, under the commit lock.
//
// Loads are answered from memory when they can (state-cache.ts): the current records as of lastTransaction(),
// kept while invalidations are watched (the only way this storage learns of others' commits), replaced by
// tpcFinish and dropped by deliveries in the run that advances lastTransaction().
//
// Undo (undo.ts) is decided at undo() and its records written at the vote like stores; blobs (blobs.ts) are
// large objects written at the vote, the blob directory a local cache; pack is pack.ts's.

import { unlink } from 'node:fs/promises';
import pg from 'pg';
import {
  BaseStorage,
  pendingState,
  UNDO_LOG_DEFAULT_LAST,
  type PendingTransaction,
  type TransactionStart,
} from '../base.js';
import { CommitLock } from '../commit-lock.js';
import {
  ConflictError,
  POSKeyError,
  ReadConflictError,
  StorageError,
  StorageTransactionError,
  UndoError,
} from '../errors.js';
import { decodeExtension } from '../extension.js';
import { compareIds, p64, u64, z64, type Oid, type Tid } from '../ids.js';
import {
  capabilitiesOf,
  zodbInterfaces,
  type ConflictResolver,
  type LoadBeforeHit,
  type DataRecord,
  type HistoryEntry,
  type LoadBeforeResult,
  type LoadResult,
  type ReferencesFinder,
  type Storage,
  type TransactionMetaData,
  type TransactionRecord,
  type UndoLogEntry,
  type UndoResult,
} from '../interfaces.js';
import { newTid, preciseNow, tidTime, TimeStamp } from '../timestamp.js';
import {
  isConnectionError,
  mapDatabaseError,
  UnableToLockRowsToReadCurrentError,
  type LockPhase,
} from './errors.js';
import { pgClientConfig, type PostgreSQLOptions } from './options.js';
import { installSchema, schemaExists, schemaIsHistoryFree } from './schema.js';
import { COMMIT_CHANNEL, SQL, VOTE_SQL, type NamedQuery } from './sql.js';
import { COPY_BLOBS_FORWARD, md5Hex, planUndo, undoLogOf, undoVoteCheck } from './undo.js';
import { packPostgreSQL } from './pack.js';
import { PostgreSQLBlobCache } from './blobs.js';
import { StateCache, stateCacheBytes, zoidKey, zoidKeyAt } from './state-cache.js';
import type { ReadCacheStats } from '../filestorage/file.js';

/** What a PostgreSQLStorage offers: FileStorage's interfaces in its order, with blobs when it has a blob directory. */
const OWN_INTERFACES =
  'IStorageRestoreable IStorageIteration IStorageUndoable IStorageCurrentRecordIteration IExternalGC IStorage';
const POSTGRESQL_CAPABILITIES = capabilitiesOf(zodbInterfaces(OWN_INTERFACES), { lastInvalidations: true });
const POSTGRESQL_BLOB_CAPABILITIES = capabilitiesOf(
  zodbInterfaces(`IBlobStorageRestoreable IBlobStorage ${OWN_INTERFACES}`),
  { lastInvalidations: true },
);

/** oids per value of zoid_seq (RelStorage's _OID_RANGE_SIZE) */
const OID_RANGE = 16n;

/** transactions delivered per query by a poll (a backlog goes a batch at a time: memory stays bounded) */
const POLL_BATCH = 500;

/** transactions read per query by iterator() */
const ITER_BATCH = 100;

/** A record of the transaction being committed; data null deletes the object. */
interface PendingRecord {
  readonly oid: Oid;
  readonly zoid: bigint;
  /** the serial the store read (z64: new); a conflict is resolved against the current one */
  oldSerial: bigint;
  data: Uint8Array | null;
  /** restore(): written as given, no conflict check */
  readonly restored: boolean;
  /** undo: the tid whose blob rows are copied forward with the state */
  blobFrom?: bigint | null;
  /** storeBlob, restoreBlob: the blob's file (in the blob directory's tmp/), uploaded at the vote */
  blobFile?: string | null;
}

interface Pending extends PendingTransaction {
  /** by oid (latin1 of the 8 bytes) */
  readonly records: Map<string, PendingRecord>;
  /** readCurrent: oid -> the serial read */
  readonly readCurrent: Map<string, { oid: Oid; zoid: bigint; serial: bigint }>;
  /** the tid given to tpcBegin (restore, copy), else null: chosen at the vote */
  readonly givenTid: bigint | null;
  /** the connection of the database transaction, from the vote on */
  client: pg.PoolClient | null;
  /** the connection failed: it is not given back to the pool */
  broken: boolean;
  /** objects this transaction creates (current_object rows added) */
  added: number;
  /** the last tid in the database when the vote took the commit lock: anyone's commit before this one */
  lastBefore: bigint;
  /** the transactions undone (the vote checks they are still unpacked) */
  readonly undone: bigint[];
  /** the tids undo() returned: the vote writes the transaction's real tid into them */
  readonly undoTids: Tid[];
}

function key(id: Uint8Array): string {
  return String.fromCharCode(id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]);
}

/** An int8 column or parameter (node-postgres gives int8 as text) as 8 bytes. */
function idOf(v: string | bigint): Uint8Array {
  return p64(BigInt(v));
}

function bytesOf(b: Buffer | null): Uint8Array | null {
  return b === null ? null : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** RelStorage's range of oids for one value n of the sequence: n*16-15 .. n*16 */
function oidRange(n: bigint): bigint[] {
  const out: bigint[] = [];
  for (let i = n * OID_RANGE - OID_RANGE + 1n; i <= n * OID_RANGE; i++) out.push(i);
  return out;
}

/** pool clients given an 'error' listener */
const guarded = new WeakSet<pg.PoolClient>();

export type PostgreSQLStorageOptions = PostgreSQLOptions & { resolver?: ConflictResolver | null };

export class PostgreSQLStorage extends BaseStorage<Pending> implements Storage {
  protected readonly commitLock = new CommitLock();
  protected lastTs: Tid = z64;
  protected readonly clock: () => number = preciseNow;

  /** the last transaction this storage has seen (its own commits, and others' once delivered) */
  private lastTid: Tid = z64;
  private lastTidN = 0n;
  /** the current records (state-cache.ts), used while invalidations are watched; null: off */
  private readonly stateCache: StateCache | null;
  /** see Storage.onFlush: the COMMIT's time */
  onFlush: ((seconds: number) => void) | null = null;
  private objectCount = 0;
  private sizeEstimate = 0;
  /** oids from zoid_seq not handed out yet, smallest first */
  private oids: bigint[] = [];
  /** the largest oid handed out or stored through this storage (set_min_oid is needed above it) */
  private maxOidSeen = 0n;
  private readonly commitLockTimeoutMs: number;
  private readonly pollIntervalMs: number;
  private readonly packGc: boolean;

  private listener: ((tid: Tid, oids: Oid[]) => void) | null = null;
  private listenClient: pg.Client | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private pollAgain = false;
  /** a tpcFinish is delivering and committing: polls wait, so nothing is delivered twice or out of order */
  private finishing = false;

  private constructor(
    readonly pool: pg.Pool,
    private readonly clientConfig: pg.ClientConfig,
    options: PostgreSQLStorageOptions,
    /** the blob directory (a cache of the database's blobs); none: no blobs */
    private readonly blobCache: PostgreSQLBlobCache | null,
  ) {
    super({
      name: options.name ?? 'PostgreSQLStorage',
      readOnly: options.readOnly ?? false,
      capabilities: blobCache ? POSTGRESQL_BLOB_CAPABILITIES : POSTGRESQL_CAPABILITIES,
      resolver: options.resolver,
    });
    this.commitLockTimeoutMs = Math.round((options.commitLockTimeout ?? 30) * 1000);
    this.pollIntervalMs = Math.max(1, Math.round((options.pollInterval ?? 1) * 1000));
    this.packGc = options.packGc ?? true;
    const cacheBytes = stateCacheBytes(options.cacheBytes);
    this.stateCache = cacheBytes > 0 ? new StateCache(cacheBytes) : null;
  }

  /**
   * Opens the database (creating the schema in an empty one unless createSchema is false); a history-free
   * RelStorage database is refused, as RelStorage's history-preserving adapter refuses it.
   */
  static async open(options: PostgreSQLStorageOptions): Promise<PostgreSQLStorage> {
    if (options.keepHistory === false) {
      throw new StorageError('PostgreSQLStorage keeps history: keep-history false is not supported');
    }
    stateCacheBytes(options.cacheBytes); // (a bad size: refused before connecting)
    const clientConfig: pg.ClientConfig = { ...pgClientConfig(options.dsn) };
    if (options.connectTimeout !== undefined)
      clientConfig.connectionTimeoutMillis = options.connectTimeout * 1000;
    const pool = new pg.Pool({ ...clientConfig, max: options.poolSize ?? 10 });
    // an idle connection that the server ends: the pool drops it, and the next query makes a new one
    pool.on('error', () => {});
    let blobCache: PostgreSQLBlobCache | null;
    try {
      blobCache = options.blobDir ? await PostgreSQLBlobCache.open(options.blobDir) : null;
    } catch (e) {
      await pool.end().catch(() => {});
      throw e;
    }
    const storage = new PostgreSQLStorage(pool, clientConfig, options, blobCache);
    try {
      await storage.prepare(options.createSchema ?? true);
    } catch (e) {
      await pool.end().catch(() => {});
      throw mapDatabaseError(e);
    }
    return storage;
  }

  private async prepare(createSchema: boolean): Promise<void> {
    const client = await this.pool.connect();
    try {
      if (!(await schemaExists(client))) {
        if (!createSchema || this.isReadOnly()) {
          throw new StorageError(
            `${this.getName()}: the database has no ZODB schema (and createSchema is off)`,
          );
        }
        await installSchema(client);
      }
      if (await schemaIsHistoryFree(client)) {
        throw new StorageError(
          'Schema mismatch: a history-preserving adapter can not connect to a history-free database',
        );
      }
      const r = await client.query<{ tid: string }>(SQL.lastTid.text);
      this.setLastTid(BigInt(r.rows[0].tid));
      this.lastTs = this.lastTid;
      await this.refreshCounts(client);
    } finally {
      client.release();
    }
  }

  private setLastTid(tid: bigint): void {
    this.lastTidN = tid;
    this.lastTid = p64(tid);
  }

  /** The state cache when it is in use: while invalidations are watched (else others' commits go unseen). */
  private liveCache(): StateCache | null {
    return this.listener === null ? null : this.stateCache;
  }

  /** The state cache's figures (see PostgreSQLOptions.cacheBytes), null when there is none. */
  cacheStats(): ReadCacheStats | null {
    return this.stateCache?.stats() ?? null;
  }

  private async refreshCounts(client?: pg.ClientBase): Promise<void> {
    const r = await (client ?? this.pool).query<{ objects: string; size: string }>(SQL.counts.text);
    this.objectCount = Number(r.rows[0].objects);
    this.sizeEstimate = Number(r.rows[0].size);
  }

  /** A read through the pool, its errors mapped. */
  private async query<R extends pg.QueryResultRow>(sql: NamedQuery, values: unknown[]): Promise<R[]> {
    try {
      const r = await this.pool.query<R>({ name: sql.name, text: sql.text, values });
      return r.rows;
    } catch (e) {
      throw mapDatabaseError(e);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // status

  lastTransaction(): Tid {
    return this.lastTid;
  }

  /** pg_total_relation_size of object_state, as of the last commit or poll */
  getSize(): number {
    return this.sizeEstimate;
  }

  /** current objects (deleted ones count until a pack), as of the last commit or poll */
  len(): number {
    return this.objectCount;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.closeTransactions();
    this.listener = null;
    this.stateCache?.clear();
    this.schedulePoll(); // (pollInvalidations() calls still waiting fail: closed)
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.pollTimer = this.reconnectTimer = null;
    const listen = this.listenClient;
    this.listenClient = null;
    await listen?.end().catch(() => {});
    await this.pool.end().catch(() => {});
  }

  // ------------------------------------------------------------------------------------------------------
  // reads

  async load(oid: Oid): Promise<LoadResult> {
    this.checkOpen();
    const zoid = u64(oid);
    const cache = this.liveCache();
    const k = cache === null ? -1 : zoidKey(zoid);
    const cached = this.cachedCurrent(k, null);
    if (cached) return { data: cached.data, serial: cached.tid };
    const since = cache?.generation ?? 0;
    const rows = await this.query<{ tid: string; state: Buffer | null }>(SQL.load, [zoid.toString()]);
    const row = rows[0];
    if (!row || row.state === null) throw new POSKeyError(oid);
    const result = { data: bytesOf(row.state)!, serial: idOf(row.tid) };
    this.fillCache(k, row.tid, result.serial, result.data, since);
    return result;
  }

  /** The cached current record of key `k` (copied out), if there is one and it is older than `before`. */
  private cachedCurrent(k: number, before: Tid | null): { data: Uint8Array; tid: Tid } | null {
    const cache = this.liveCache();
    if (k < 0 || cache === null) return null;
    const at = cache.locate(k);
    if (at < 0) return null;
    const found = cache.found;
    const tid = found.subarray(at, at + 8);
    if (before !== null && compareIds(tid, before) >= 0) return null;
    return { data: new Uint8Array(found.subarray(at + 8, at + cache.foundLen)), tid: new Uint8Array(tid) };
  }

  /**
   * Keeps a record read from the database as `k`'s current one when it is current as of lastTransaction()
   * (its tid not after it: a read may see commits not delivered yet) and its oid was not dropped meanwhile.
   */
  private fillCache(k: number, tid: string, serial: Tid, data: Uint8Array, since: number): void {
    const cache = this.liveCache();
    if (k < 0 || cache === null || BigInt(tid) > this.lastTidN) return;
    cache.fill(k, serial, data, since);
  }

  async loadBefore(oid: Oid, tid: Tid): Promise<LoadBeforeResult | null> {
    this.checkOpen();
    const cache = this.liveCache();
    const k = cache === null ? -1 : zoidKey(u64(oid));
    // the current record as of lastTransaction(), when older than `tid`: none after it in this storage's view
    const cached = this.cachedCurrent(k, tid);
    if (cached) return { data: cached.data, start: cached.tid, end: null };
    const since = cache?.generation ?? 0;
    const rows = await this.query<{
      tid: string | null;
      state: Buffer | null;
      found: boolean | null;
      next: string | null;
    }>(SQL.loadBefore, [u64(oid).toString(), u64(tid).toString()]);
    const row = rows[0];
    if (!row.found) {
      if (row.next === null) throw new POSKeyError(oid);
      return null;
    }
    if (row.state === null) throw new POSKeyError(oid);
    const result = {
      data: bytesOf(row.state)!,
      start: idOf(row.tid!),
      end: row.next === null ? null : idOf(row.next),
    };
    // (no revision at or after `tid`: the one found is the current one)
    if (row.next === null) this.fillCache(k, row.tid!, result.start, result.data, since);
    return result;
  }

  /**
   * Storage.loadBeforeInto: a load the state cache answers, else -1 (loadBefore asks the database). The oid's
   * current record as of lastTransaction() answers a tid after it with end null, as loadBefore from the cache
   * does: a tid after lastTransaction() + 1 too (ClientStorage.load's maxtid), as FileStorage answers it, and
   * RelStorage from its snapshot of its last poll; a later commit elsewhere comes to the client as an
   * invalidation, after this reply.
   */
  loadBeforeInto(oid: Uint8Array, oidAt: number, tid: Uint8Array, tidAt: number, hit: LoadBeforeHit): number {
    const cache = this.stateCache;
    if (cache === null || this.listener === null || this.closed) return -1;
    const k = zoidKeyAt(oid, oidAt);
    if (k < 0) return -1;
    const at = cache.locate(k);
    if (at < 0) return -1;
    const c = cache.found;
    for (let i = 0; ; i++) {
      // the cached record must be older than the tid asked
      if (i === 8) return -1;
      const x = c[at + i];
      const y = tid[tidAt + i];
      if (x !== y) {
        if (x > y) return -1;
        break;
      }
    }
    hit.data = c;
    hit.dataAt = at + 8;
    hit.dataLen = cache.foundLen - 8;
    hit.start.set(c.subarray(at, at + 8));
    hit.hasEnd = false;
    return 1;
  }

  async loadSerial(oid: Oid, serial: Tid): Promise<Uint8Array> {
    this.checkOpen();
    const rows = await this.query<{ state: Buffer | null }>(SQL.loadSerial, [
      u64(oid).toString(),
      u64(serial).toString(),
    ]);
    const state = rows[0]?.state ?? null;
    if (state === null) throw new POSKeyError(oid, serial);
    return bytesOf(state)!;
  }

  async history(oid: Oid, size = 1): Promise<HistoryEntry[]> {
    this.checkOpen();
    const rows = await this.query<{
      tid: string;
      state_size: string;
      username: Buffer;
      description: Buffer;
      extension: Buffer | null;
    }>(SQL.history, [u64(oid).toString(), Math.max(0, size)]);
    if (rows.length === 0) {
      // no entries asked for, or none there
      if (size > 0 || (await this.query(SQL.history, [u64(oid).toString(), 1])).length === 0)
        throw new POSKeyError(oid);
    }
    return rows.map((r) => {
      const tid = idOf(r.tid);
      return {
        tid,
        time: tidTime(tid),
        userName: bytesOf(r.username)!,
        description: bytesOf(r.description)!,
        extension: decodeExtension(bytesOf(r.extension) ?? new Uint8Array(0)),
        size: Number(r.state_size),
      };
    });
  }

  async newOid(): Promise<Oid> {
    this.checkWritable();
    while (this.oids.length === 0) {
      const rows = await this.query<{ n: string }>(SQL.newOids, []);
      // (another newOid may have filled the list while this one waited)
      if (this.oids.length === 0) this.oids = oidRange(BigInt(rows[0].n));
    }
    const n = this.oids.shift()!;
    if (n > this.maxOidSeen) this.maxOidSeen = n;
    return p64(n);
  }

  // ------------------------------------------------------------------------------------------------------
  // two-phase commit

  protected _begin(start: TransactionStart): Pending {
    return {
      ...pendingState(start),
      records: new Map(),
      readCurrent: new Map(),
      givenTid: this.givenTids.has(start.txn) ? u64(start.tid) : null,
      client: null,
      broken: false,
      added: 0,
      lastBefore: 0n,
      undone: [],
      undoTids: [],
    };
  }

  /** the transactions whose tid restore or copy gave to tpcBegin (read by _begin) */
  private readonly givenTids = new WeakSet<TransactionMetaData>();

  override async tpcBegin(txn: TransactionMetaData, tid: Tid | null = null, status = ' '): Promise<void> {
    if (tid !== null) this.givenTids.add(txn);
    else this.givenTids.delete(txn);
    return super.tpcBegin(txn, tid, status);
  }

  protected async _store(p: Pending, oid: Oid, oldSerial: Tid, data: Uint8Array): Promise<void> {
    this.dropBlob(p, oid);
    p.records.set(key(oid), { oid, zoid: u64(oid), oldSerial: u64(oldSerial), data, restored: false });
  }

  protected async _restore(p: Pending, record: DataRecord): Promise<void> {
    let data = record.data;
    if (data === null && record.dataTxn !== null) {
      // a back pointer: this schema keeps no pointers, the record gets the data it points to
      data = await this.loadSerial(record.oid, record.dataTxn).catch((e: unknown) => {
        if (e instanceof POSKeyError) return null;
        throw e;
      });
    }
    const zoid = u64(record.oid);
    this.dropBlob(p, record.oid);
    p.records.set(key(record.oid), { oid: record.oid, zoid, oldSerial: 0n, data, restored: true });
  }

  protected async _deleteObject(p: Pending, oid: Oid, oldSerial: Tid): Promise<void> {
    this.dropBlob(p, oid);
    p.records.set(key(oid), { oid, zoid: u64(oid), oldSerial: u64(oldSerial), data: null, restored: false });
  }

  protected async _checkCurrentSerial(p: Pending, oid: Oid, serial: Tid): Promise<void> {
    p.readCurrent.set(key(oid), { oid, zoid: u64(oid), serial: u64(serial) });
  }

  /**
   * Decides what undoing `tid` writes (undo.ts), and keeps it as the transaction's records; the vote writes
   * them. The tid returned is the transaction's, provisional until the vote chooses it (then written into it).
   */
  protected async _undo(p: Pending, tid: Tid): Promise<UndoResult> {
    return this.inTxn(p, 'undo', async () => {
      let records;
      try {
        records = await planUndo(
          {
            query: (sql, values) => this.query(sql, values),
            inTxn: (zoid) => p.records.get(key(p64(zoid))),
            selfTid: p.tid,
            resolves: this.resolvesConflicts,
            resolve: (oid, committed, old, data, committedData) =>
              this.tryToResolveConflict(oid, committed, old, data, committedData),
          },
          u64(tid),
        );
      } catch (e) {
        throw mapDatabaseError(e);
      }
      for (const r of records) {
        this.dropBlob(p, r.oid);
        p.records.set(key(r.oid), { ...r, restored: false });
      }
      p.undone.push(u64(tid));
      const undoTid = new Uint8Array(p.tid);
      p.undoTids.push(undoTid);
      return { tid: undoTid, oids: records.map((r) => r.oid) };
    });
  }

  /**
   * The database transaction: readCurrent's checks and shared locks, the object locks, conflicts found and
   * resolved, then the commit lock, the tid and the rows. Left open for tpcFinish (COMMIT) or tpcAbort.
   */
  protected override async _vote(p: Pending): Promise<void> {
    let phase: LockPhase = null;
    try {
      const client = await this.pool.connect();
      p.client = client;
      if (!guarded.has(client)) {
        // a connection that breaks while checked out emits 'error' besides failing its query: the query's
        // error is the one handled (and the client is discarded at the abort)
        guarded.add(client);
        client.on('error', () => {});
      }
      const run = async <R extends pg.QueryResultRow>(sql: NamedQuery, values: unknown[]): Promise<R[]> =>
        (await client.query<R>({ name: sql.name, text: sql.text, values })).rows;

      // blobs go into large objects first, in the database transaction but before any lock is taken
      const blobRecords = [...p.records.values()].filter((r) => r.blobFile);
      const loids: string[] = [];
      const batch = [VOTE_SQL.begin(this.commitLockTimeoutMs)];
      if (blobRecords.length) {
        await client.query(batch.pop()!);
        for (const r of blobRecords) loids.push(await this.blobCache!.upload(client, r.blobFile!));
      }
      // (the results of BEGIN and SET LOCAL come first, when they are in the batch)
      let at = batch.length ? 2 : 0;

      // one round trip: readCurrent's check, shared locks and check again (objects also stored are covered
      // by their store's conflict check), the object locks, the conflicts under them, and the commit lock
      // when it is free
      const reads = [...p.readCurrent.entries()].filter(([k]) => !p.records.has(k)).map(([, r]) => r);
      reads.sort((a, b) => (a.zoid < b.zoid ? -1 : a.zoid > b.zoid ? 1 : 0));
      const readZoids = reads.map((r) => r.zoid);
      if (reads.length) {
        const stale = VOTE_SQL.readCurrentStale(
          readZoids,
          reads.map((r) => r.serial),
        );
        batch.push(stale, VOTE_SQL.readCurrentLock(readZoids), stale);
      }
      const records = [...p.records.values()];
      const checked = records.filter((r) => !r.restored);
      if (records.length) {
        const all = records.map((r) => r.zoid).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        batch.push(VOTE_SQL.lockObjects(all));
        if (checked.length) {
          batch.push(
            VOTE_SQL.conflicts(
              checked.map((r) => r.zoid),
              checked.map((r) => r.oldSerial),
              this.resolvesConflicts,
            ),
          );
        }
      }
      // oids stored that zoid_seq did not hand out (restore, copy, another writer's): the sequence passes them
      let maxOid = 0n;
      for (const r of records) if (r.zoid > maxOid) maxOid = r.zoid;
      const newMaxOid = maxOid > this.maxOidSeen;
      if (newMaxOid) batch.push(VOTE_SQL.setMinOidRange((maxOid + OID_RANGE - 1n) / OID_RANGE));
      // the commit lock when it is free (else it is waited for below, once the conflicts are known), and the
      // last tid and the clock under it
      batch.push(SQL.tryCommitLockAndClock);
      // (readCurrent and the commit lock are only tried here: a lock timeout is an object lock's)
      phase = 'object-locks';
      const results = (await client.query(batch.join(';\n'))) as unknown as pg.QueryResult[];
      phase = null;
      if (reads.length) {
        const stale = (rows: Array<{ zoid: string; tid: string | null }>): void => {
          if (rows.length === 0) return;
          const r = reads.find((x) => x.zoid === BigInt(rows[0].zoid))!;
          if (rows[0].tid === null) throw new POSKeyError(r.oid);
          throw new ReadConflictError(r.oid, [idOf(rows[0].tid), p64(r.serial)]);
        };
        stale(results[at].rows as Array<{ zoid: string; tid: string | null }>);
        const held = results[at + 1].rows as Array<{ zoid: string }>;
        if (held.length) throw new UnableToLockRowsToReadCurrentError(idOf(held[0].zoid));
        stale(results[at + 2].rows as Array<{ zoid: string; tid: string | null }>);
        at += 3;
      }
      if (checked.length) {
        const rows = results[at + 1].rows as Array<{
          zoid: string;
          tid: string | null;
          state: Buffer | null;
        }>;
        // every conflict that stands, not only the first: a ZEO client resolves them all in one round (with
        // one per vote, a transaction with more than 9 failed: checkConcurrentLargeUpdates)
        let first: ConflictError | null = null;
        for (const row of rows) {
          try {
            await this.resolve(p, row);
          } catch (e) {
            // (another error after a conflict: the conflict, the first in oid order, as before)
            if (!(e instanceof ConflictError)) throw first ?? e;
            if (first) first.others.push(e);
            else first = e;
          }
        }
        if (first) throw first;
      }
      this.checkVoteStillPending(p);
      if (newMaxOid) {
        this.maxOidSeen = maxOid;
        this.oids = this.oids.filter((n) => n > maxOid);
      }

      // the tid: after the last one, from the database's clock, under the commit lock
      let clock = results[results.length - 1].rows[0] as { max_tid: string; now: number };
      if (!(results[results.length - 2].rows[0] as { got: boolean }).got) {
        phase = 'commit-lock';
        const locked = (await client.query(SQL.commitLockAndClock)) as unknown as pg.QueryResult[];
        phase = null;
        clock = locked[1].rows[0] as { max_tid: string; now: number };
      }
      const { max_tid, now } = clock;
      const maxTid = BigInt(max_tid);
      p.lastBefore = maxTid;
      let tid: bigint;
      if (p.givenTid !== null) {
        if (p.givenTid <= maxTid) {
          throw new StorageTransactionError(
            `tid ${p.givenTid} is not later than the database's last transaction ${maxTid}`,
          );
        }
        tid = p.givenTid;
      } else {
        tid = u64(newTid(null, now * 1000));
        if (tid <= maxTid) tid = maxTid + 1n;
      }

      if (p.undone.length) {
        const check = (await client.query<{ got: boolean; unpacked: string }>(undoVoteCheck(p.undone)))
          .rows[0];
        if (!check.got) throw new StorageError('A pack or undo operation is in progress');
        if (Number(check.unpacked) !== new Set(p.undone).size) {
          throw new UndoError('Transaction not found or packed');
        }
      }

      const zoids: string[] = [];
      const md5s: Array<string | null> = [];
      const states: Array<Buffer | null> = [];
      for (const r of records) {
        zoids.push(r.zoid.toString());
        md5s.push(r.data === null ? null : md5Hex(r.data));
        states.push(
          r.data === null ? null : Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength),
        );
      }
      const written = await run<{ added: string }>(SQL.writeTransaction, [
        tid.toString(),
        p.status === 'p',
        Buffer.from(p.user),
        Buffer.from(p.description),
        Buffer.from(p.extension),
        zoids,
        md5s,
        states,
      ]);
      p.added = Number(written[0].added);
      await this.blobCache?.insertRows(
        client,
        tid,
        blobRecords.map((r) => r.zoid),
        loids,
      );
      const blobsFrom = records.filter((r) => r.blobFrom != null);
      if (blobsFrom.length) {
        await run(COPY_BLOBS_FORWARD, [
          tid.toString(),
          blobsFrom.map((r) => r.zoid.toString()),
          blobsFrom.map((r) => r.blobFrom!.toString()),
        ]);
      }
      (p as { tid: Tid }).tid = p64(tid);
      for (const t of p.undoTids) t.set(p.tid);
    } catch (e) {
      if (isConnectionError(e)) p.broken = true;
      throw mapDatabaseError(e, phase);
    }
  }

  /** A write conflict found at the vote: resolved (the record gets the resolved data), or ConflictError. */
  private async resolve(
    p: Pending,
    row: { zoid: string; tid: string | null; state: Buffer | null },
  ): Promise<void> {
    const zoid = BigInt(row.zoid);
    const rec = p.records.get(key(p64(zoid)))!;
    if (row.tid === null) {
      // a delete of an object that is not there (a store of one that is not there is no conflict)
      throw new POSKeyError(rec.oid);
    }
    const current = idOf(row.tid);
    const old = p64(rec.oldSerial);
    if (rec.data !== null) {
      const resolved = await this.tryToResolveConflict(rec.oid, current, old, rec.data, bytesOf(row.state));
      if (resolved) {
        rec.data = resolved;
        rec.oldSerial = BigInt(row.tid);
        p.resolved.push(rec.oid);
        return;
      }
    }
    throw new ConflictError(rec.oid, [current, old], rec.data);
  }

  private checkVoteStillPending(p: Pending): void {
    if (this.pending !== p) throw new StorageTransactionError('tpc_vote: the transaction was aborted');
  }

  /**
   * COMMIT, under the commit lock still: first the transactions other writers committed before this one are
   * delivered to the listener (in tid order), then this one is published by tpcFinish.
   */
  protected async _finish(p: Pending): Promise<void> {
    const client = p.client!;
    const tid = u64(p.tid);
    this.finishing = true;
    try {
      // (under the commit lock nothing is committed between the vote's last tid and ours: when this storage
      // has seen up to it, there is nothing to fetch, and a commit costs no query for it)
      while (this.listener && p.lastBefore > this.lastTidN) {
        const rows = await client.query<{ tid: string; zoids: string[] }>({
          name: SQL.transactionsAfter.name,
          text: SQL.transactionsAfter.text,
          values: [this.lastTidN.toString(), tid.toString(), POLL_BATCH],
        });
        this.deliver(rows.rows);
        if (rows.rows.length < POLL_BATCH) break;
      }
      // (the COMMIT is where the database makes the transaction durable: the flush the server times)
      const committing = performance.now();
      await client.query('COMMIT');
      this.onFlush?.((performance.now() - committing) / 1000);
    } catch (e) {
      this.finishing = false;
      if (this.pollAgain) this.schedulePoll(); // (pollInvalidations() calls waiting behind this finish)
      if (isConnectionError(e)) p.broken = true;
      throw mapDatabaseError(e);
    }
    p.client = null;
    client.release();
    this.setLastTid(tid);
    const cache = this.liveCache();
    if (cache !== null) {
      for (const r of p.records.values()) {
        const k = zoidKey(r.zoid);
        if (r.data === null) cache.drop(k);
        else cache.replace(k, p.tid, r.data);
      }
    }
    this.objectCount += p.added;
    for (const r of p.records.values()) {
      if (r.data) this.sizeEstimate += r.data.length;
      if (r.blobFile) {
        await this.blobCache!.committed(r.oid, p.tid, r.blobFile);
        r.blobFile = null;
      }
    }
  }

  /** After tpcFinish's onCommitted: polls may deliver again. */
  protected override _committed(_p: Pending): void {
    this.finishing = false;
    if (this.pollAgain) this.schedulePoll();
  }

  protected override async _abort(p: Pending): Promise<void> {
    for (const r of p.records.values()) this.dropBlob(p, r.oid);
    const client = p.client;
    p.client = null;
    if (!client) return;
    if (p.broken) {
      client.release(true);
      return;
    }
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (e) {
      // the connection is gone with its locks: PostgreSQL rolled back when the session ended
      client.release(true);
      if (!isConnectionError(e)) throw e;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // invalidations from other writers

  /** Storage.watchInvalidations (see interfaces.ts): LISTEN wakes the poll; the poll runs every pollInterval. */
  watchInvalidations(listener: (tid: Tid, oids: Oid[]) => void): void {
    this.checkOpen();
    // (what the state cache held was not kept exact without a listener)
    if (this.listener === null) this.stateCache?.clear();
    this.listener = listener;
    if (!this.pollTimer) {
      this.pollTimer = setInterval(() => this.schedulePoll(), this.pollIntervalMs);
      this.pollTimer.unref();
      this.listen();
    }
    this.schedulePoll();
  }

  /** A connection of its own that LISTENs; when it breaks, another after a pause (and a poll then). */
  private listen(): void {
    if (this.closed || this.listener === null) return;
    const client = new pg.Client(this.clientConfig);
    this.listenClient = client;
    const retry = (): void => {
      if (this.listenClient !== client) return;
      this.listenClient = null;
      client.end().catch(() => {});
      if (this.closed) return;
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.listen();
      }, this.pollIntervalMs);
      this.reconnectTimer.unref();
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', () => this.schedulePoll());
    client
      .connect()
      .then(() => client.query(`LISTEN ${COMMIT_CHANNEL}`))
      .then(() => this.schedulePoll(), retry);
  }

  /** pollInvalidations() calls waiting for the next poll to start (one running began before they came) */
  private pollWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  /**
   * Storage.pollInvalidations (see interfaces.ts): resolves once a poll that started after the call has
   * delivered every transaction committed elsewhere before it (a poll already running may have read before
   * the commit the caller knows of); rejects with the database's error (transient) when it is away.
   */
  async pollInvalidations(): Promise<void> {
    this.checkOpen();
    return new Promise((resolve, reject) => {
      this.pollWaiters.push({ resolve, reject });
      this.schedulePoll();
    });
  }

  /** Runs a poll, or one more after the one running (or after the tpcFinish in progress). */
  private schedulePoll(): void {
    if (this.closed) {
      for (const w of this.pollWaiters.splice(0)) w.reject(new StorageError(`${this.getName()} is closed`));
      return;
    }
    if (this.listener === null && this.pollWaiters.length === 0) return;
    if (this.polling || this.finishing) {
      this.pollAgain = true;
      return;
    }
    this.polling = true;
    this.pollAgain = false;
    const waiters = this.pollWaiters.splice(0);
    void this.poll()
      .then(
        (complete) => {
          if (complete) for (const w of waiters) w.resolve();
          else this.pollWaiters.unshift(...waiters); // (the rest comes from the next poll, scheduled)
        },
        (e: unknown) => {
          // the database is away: the callers get the error, and the next poll tries again
          for (const w of waiters) w.reject(e);
        },
      )
      .finally(() => {
        this.polling = false;
        if (this.pollAgain) this.schedulePoll();
      });
  }

  /**
   * Delivers the transactions after the last one seen; true when all that its query saw went to the
   * listener, false when it left some to the next poll (a backlog, or a tpcFinish of ours in progress).
   */
  private async poll(): Promise<boolean> {
    const after = this.lastTidN;
    const rows = await this.query<{ tid: string; zoids: string[] }>(SQL.transactionsAfter, [
      after.toString(),
      '9223372036854775807',
      POLL_BATCH,
    ]);
    if (this.closed) throw new StorageError(`${this.getName()} is closed`);
    if (this.finishing) {
      // a commit of ours is being delivered: what this poll found goes after it, from the next poll
      this.pollAgain = true;
      return false;
    }
    if (rows.length) this.deliver(rows);
    if (rows.length === POLL_BATCH) {
      this.pollAgain = true; // (a backlog: the rest at once, a batch at a time)
      return false;
    }
    if (rows.length) await this.refreshCounts().catch(() => {});
    return true;
  }

  /** Advances lastTransaction() over other writers' transactions and tells the listener, in one run. */
  private deliver(rows: Array<{ tid: string; zoids: string[] }>): void {
    const cache = this.liveCache();
    for (const row of rows) {
      const tid = BigInt(row.tid);
      if (tid <= this.lastTidN) continue;
      this.setLastTid(tid);
      if (cache !== null) for (const z of row.zoids) cache.drop(zoidKey(z));
      if (compareIds(this.lastTid, this.lastTs) > 0) this.lastTs = this.lastTid;
      this.listener?.(this.lastTid, row.zoids.map(idOf));
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // iteration

  iterator(start: Tid | null = null, stop: Tid | null = null): AsyncIterable<TransactionRecord> {
    this.checkOpen();
    const from = start === null ? 0n : u64(start);
    const to = stop === null ? (1n << 63n) - 1n : u64(stop);
    return this.iterate(from, to);
  }

  private async *iterate(from: bigint, to: bigint): AsyncGenerator<TransactionRecord> {
    let next = from;
    for (;;) {
      const txns = await this.query<{
        tid: string;
        packed: boolean;
        username: Buffer;
        description: Buffer;
        extension: Buffer | null;
      }>(SQL.iterTransactions, [next.toString(), to.toString(), ITER_BATCH]);
      if (txns.length === 0) return;
      const recs = await this.query<{ zoid: string; tid: string; state: Buffer | null }>(SQL.iterRecords, [
        txns.map((t) => t.tid),
      ]);
      const byTid = new Map<string, DataRecord[]>();
      for (const r of recs) {
        let list = byTid.get(r.tid);
        if (!list) byTid.set(r.tid, (list = []));
        list.push({ oid: idOf(r.zoid), tid: idOf(r.tid), data: bytesOf(r.state), dataTxn: null });
      }
      for (const t of txns) {
        const extensionBytes = bytesOf(t.extension) ?? new Uint8Array(0);
        yield {
          tid: idOf(t.tid),
          status: t.packed ? 'p' : ' ',
          user: bytesOf(t.username)!,
          description: bytesOf(t.description)!,
          extension: decodeExtension(extensionBytes),
          extensionBytes,
          records: byTid.get(t.tid) ?? [],
        };
      }
      if (txns.length < ITER_BATCH) return;
      next = BigInt(txns[txns.length - 1].tid) + 1n;
    }
  }

  async recordIternext(
    next: Oid | null = null,
  ): Promise<{ oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null }> {
    this.checkOpen();
    const rows = await this.query<{ zoid: string; tid: string; state: Buffer }>(SQL.recordIternext, [
      u64(next ?? z64).toString(),
    ]);
    if (rows.length === 0) throw new POSKeyError(next ?? z64);
    return {
      oid: idOf(rows[0].zoid),
      tid: idOf(rows[0].tid),
      data: bytesOf(rows[0].state)!,
      next: rows.length > 1 ? idOf(rows[1].zoid) : null,
    };
  }

  /** The newest `count` transactions with the oids they wrote (in zoid order), newest first. */
  async lastInvalidations(count: number): Promise<Array<{ tid: Tid; oids: Oid[] }>> {
    this.checkOpen();
    if (count <= 0) return [];
    const rows = await this.query<{ tid: string; zoids: string[] }>(SQL.lastTransactions, [count]);
    return rows.map((r) => ({ tid: idOf(r.tid), oids: r.zoids.map(idOf) }));
  }

  // ------------------------------------------------------------------------------------------------------
  // blobs (blobs.ts): declared when there is a blob directory

  private blobs(): PostgreSQLBlobCache {
    if (!this.blobCache) throw this.noBlobs();
    return this.blobCache;
  }

  /** Forgets the blob file the transaction holds for `oid` (a later store replaced it, or an abort). */
  private dropBlob(p: Pending, oid: Oid): void {
    const r = p.records.get(key(oid));
    if (r?.blobFile) {
      void unlink(r.blobFile).catch(() => {});
      r.blobFile = null;
    }
  }

  /** store, and the blob file goes with the record (taken at once: the caller's file is ours). */
  override async storeBlob(
    oid: Oid,
    oldSerial: Tid,
    data: Uint8Array,
    blobFilename: string,
    txn: TransactionMetaData,
  ): Promise<void> {
    const blobs = this.blobs();
    const p = this.pendingFor(txn, 'storeBlob');
    oid = new Uint8Array(oid);
    await this.store(oid, oldSerial, data, txn);
    await this.inTxn(p, 'storeBlob', async () => {
      p.records.get(key(oid))!.blobFile = await blobs.adopt(blobFilename);
    });
  }

  override async restoreBlob(
    oid: Oid,
    serial: Tid,
    data: Uint8Array,
    blobFilename: string,
    prevTxn: Tid | null,
    txn: TransactionMetaData,
  ): Promise<void> {
    const blobs = this.blobs();
    const p = this.pendingFor(txn, 'restoreBlob');
    oid = new Uint8Array(oid);
    await this.restore(oid, serial, data, prevTxn, txn);
    await this.inTxn(p, 'restoreBlob', async () => {
      p.records.get(key(oid))!.blobFile = await blobs.adopt(blobFilename);
    });
  }

  override async loadBlob(oid: Oid, serial: Tid): Promise<string> {
    this.checkOpen();
    const blobs = this.blobs();
    try {
      return await blobs.load(this.pool, oid, serial);
    } catch (e) {
      throw mapDatabaseError(e);
    }
  }

  override temporaryDirectory(): string {
    return this.blobs().dir.tmpDir;
  }

  override blobDirectoryOf(oid: Oid): string {
    return this.blobs().dir.oidPath(oid);
  }

  // ------------------------------------------------------------------------------------------------------
  // undo (undo.ts) and pack (pack.ts)

  async undoLog(
    first = 0,
    last: number = UNDO_LOG_DEFAULT_LAST,
    filter?: (entry: UndoLogEntry) => boolean,
  ): Promise<UndoLogEntry[]> {
    this.checkOpen();
    return undoLogOf((sql, values) => this.query(sql, values), first, last, filter);
  }

  /**
   * Packs to `packTime` (seconds since the epoch) with packPostgreSQL: with garbage collection unless
   * options.gc (else the packGc option) says not. Commits go on meanwhile (it holds the commit lock a batch at
   * a time); a second pack, here or elsewhere, fails at once (the pack lock).
   */
  async pack(packTime: number, referencesf: ReferencesFinder, options: { gc?: boolean } = {}): Promise<void> {
    this.checkWritable();
    const packTid = TimeStamp.fromTime(packTime).raw();
    if (u64(packTid) === 0n) throw new StorageError('Invalid pack time');
    // the objects the pack removes leave the state cache: all of it goes, and reads meanwhile are not kept
    this.stateCache?.clear();
    try {
      await packPostgreSQL(this.pool, u64(packTid), referencesf, { gc: options.gc ?? this.packGc });
      await this.blobCache?.dropPacked(this.pool);
    } catch (e) {
      throw mapDatabaseError(e);
    } finally {
      this.stateCache?.clear();
    }
    await this.refreshCounts().catch(() => {});
  }
}
