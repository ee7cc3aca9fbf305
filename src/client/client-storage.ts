// ClientStorage: our storage contract over the network, with the semantics of ZEO's ClientStorage and
// asyncio client. One ordered path carries what the server tells us: its one-way calls (invalidateTransaction,
// info) arrive in order, and each invalidation updates the cache, is emitted, and only then moves
// lastTransaction (ZEO#166). Loads store what they read into the cache when their reply is handled, and never
// as current when an invalidation of that object came in while they were in flight (ZEO#155). Transactions
// go to the server as one-way calls (storea...), vote is where conflicts come back to be resolved here, and
// tpc_finish puts what we stored into the cache under the new tid.

import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type tls from 'node:tls';
import { getPickleMetadata, PyFloat, type PickleValue } from '../pickle/index.js';
import {
  ConflictError,
  POSKeyError,
  ReadOnlyError,
  StorageTransactionError,
  Unsupported,
} from '../storage/errors.js';
import { CommitLock, type Release } from '../storage/commit-lock.js';
import { compareIds, maxtid, z64, type Oid, type Tid } from '../storage/ids.js';
import {
  capabilitiesOf,
  type ConflictResolver,
  type HistoryEntry,
  type LoadBeforeResult,
  type LoadResult,
  type ReferencesFinder,
  type Storage,
  type StorageCapabilities,
  type StoragePackOptions,
  type TransactionMetaData,
  type TransactionRecord,
  type UndoLogEntry,
  type UndoResult,
} from '../storage/interfaces.js';
import type { ChannelLimits } from '../transport/channel.js';
import type { TlsSection } from '../transport/tls.js';
import { ClientBlobs } from './blobs.js';
import { ClientCache, type CacheStats } from './cache.js';
import { ConflictResolverRegistry, defaultResolvers } from './conflict.js';
import {
  describeAddress,
  type CallOptions,
  type ClientConnection,
  type ServerAddress,
} from './connection.js';
import { ConnectionManager, type ConnectEvent } from './manager.js';
import { CallTimeoutError, ClientDisconnected } from './errors.js';
import { InvalidationFeed, type Invalidation } from './invalidations.js';
import { transactionIterator } from './iterator.js';
import {
  badReply,
  bytesOf,
  dictOf,
  historyEntry,
  idOf,
  idOrNull,
  numberOf,
  sequenceOf,
  undoEntry,
  voteConflict,
} from './replies.js';
import { TransactionBuffer } from './transaction-buffer.js';
import { ruok } from './ruok.js';
import { verifyCache, type VerifyResult } from './verify.js';

export interface ClientStorageOptions {
  server: ServerAddress | ServerAddress[];
  /** the storage name on the server (default '1') */
  storage?: string;
  /** bytes (default 20 MB, as ZEO); 0: no cache */
  cacheSize?: number;
  /** the persistent cache's client name: <var>/<client>-<storage>.zec */
  client?: string | null;
  var?: string;
  /** the persistent cache file itself (`<clientstorage>`'s cache-path); overrides client and var */
  cachePath?: string | null;
  /** a label for this client in the server's log (ZEO's client_label, sent with set_client_label) */
  clientLabel?: string | null;
  blobDir?: string | null;
  sharedBlobDir?: boolean;
  blobCacheSize?: number | null;
  blobCacheSizeCheck?: number;
  readOnly?: boolean;
  readOnlyFallback?: boolean;
  /** ms a call waits for a connection (default 30 s) */
  waitTimeout?: number;
  /** a round trip at tpcBegin, so that invalidations sent before it have arrived */
  serverSync?: boolean;
  dropCacheRatherVerify?: boolean;
  name?: string;
  minDisconnectPoll?: number;
  maxDisconnectPoll?: number;
  heartbeatInterval?: number;
  connectTimeout?: number;
  /** the client-wide default per-call timeout in ms (0: none) */
  timeout?: number;
  ssl?: TlsSection;
  tls?: tls.ConnectionOptions;
  /** passed to register after the storage name and read-only flag */
  credentials?: PickleValue;
  /** conflict resolution by class name (default: defaultResolvers, with BTrees.Length.Length) */
  conflictResolvers?: ConflictResolverRegistry;
  /** the low-level resolver (the contract suite's); overrides conflictResolvers */
  resolver?: ConflictResolver | null;
  /** open() waits for the first connection (default true) */
  wait?: boolean;
  limits?: Partial<ChannelLimits>;
  /** ms the register step (register, verification, get_info) may take (default 60 s) */
  registerTimeout?: number;
}

/** ZEO's default cache size: 20 MB. */
const DEFAULT_CACHE_SIZE = 20 * 1024 * 1024;

/** An oid being read while invalidations may arrive: the tids that changed it meanwhile, in order. */
interface Watch {
  invalidated: Tid[];
}

const NOT_CONNECTED_CAPABILITIES = capabilitiesOf([]);
const BLOB_INTERFACES = new Set(['ZODB.interfaces.IBlobStorage', 'ZODB.interfaces.IBlobStorageRestoreable']);

export class ClientStorage extends EventEmitter implements Storage {
  /** why the last (re)connection's cache verification ended as it did (ZEO's verify_result) */
  verifyResult: VerifyResult | null = null;
  private readonly storageName: string;
  private readonly name: string;
  private readonly cache: ClientCache | null;
  private readonly blobs: ClientBlobs | null;
  private readonly connector: ConnectionManager;
  private readonly feed = new InvalidationFeed();
  /** one transaction at a time on this client (the server's lock is taken at vote) */
  private readonly commitLock = new CommitLock();
  /** the lock's release per transaction holding it */
  private readonly lockHeld = new WeakMap<TransactionMetaData, Release>();
  /** the transactions waiting for the lock: aborting one takes it out of the queue */
  private readonly lockWaits = new Map<TransactionBuffer, AbortController>();
  private readonly inflight = new Map<string, Promise<LoadBeforeResult | null>>();
  private readonly watches = new Map<string, Set<Watch>>();
  private info = new Map<string, PickleValue>([
    ['length', 0],
    ['size', 0],
    ['name', 'ZEO Client'],
    ['supportsUndo', false],
    ['interfaces', []],
  ]);
  private caps: StorageCapabilities = NOT_CONNECTED_CAPABILITIES;
  private current: ClientConnection | null = null;
  private generation = 0;
  private lastTid: Tid = z64;
  /** the last tid the current connection's registration returned */
  private registeredTid: Tid = z64;
  private readonly oids: Oid[] = [];
  private newOids: Promise<void> | null = null;
  private nextTxnId = 1;
  private closed = false;
  private serverAddress: string | null = null;
  private readonly resolver: ConflictResolver | null;
  private addresses: ServerAddress[];

  private constructor(
    private readonly options: ClientStorageOptions,
    cache: ClientCache | null,
    /** the persistent cache file, if any */
    readonly cacheFile: string | null,
  ) {
    super();
    this.storageName = options.storage ?? '1';
    const addresses = Array.isArray(options.server) ? options.server : [options.server];
    if (addresses.length === 0) throw new TypeError('ClientStorage needs at least one server address');
    this.addresses = addresses;
    this.name = options.name ?? addresses.map(describeAddress).join(', ');
    this.cache = cache;
    // before the first connection, what the persistent cache has seen (ZEO's lastTransaction is the cache's)
    this.lastTid = cache?.getLastTid() ?? z64;
    this.blobs = options.blobDir
      ? new ClientBlobs({
          blobDir: options.blobDir,
          sharedBlobDir: options.sharedBlobDir ?? false,
          blobCacheSize: options.blobCacheSize ?? null,
          blobCacheSizeCheck: options.blobCacheSizeCheck ?? 10,
        })
      : null;
    const loadSerial = (oid: Oid, serial: Tid): Promise<Uint8Array> => this.loadSerial(oid, serial);
    this.resolver =
      options.resolver ?? (options.conflictResolvers ?? defaultResolvers).resolverFor(loadSerial);
    this.connector = new ConnectionManager({
      addresses,
      readOnly: options.readOnly ?? false,
      readOnlyFallback: options.readOnlyFallback ?? false,
      waitTimeout: options.waitTimeout ?? 30_000,
      minDisconnectPoll: options.minDisconnectPoll,
      maxDisconnectPoll: options.maxDisconnectPoll,
      connectTimeout: options.connectTimeout,
      heartbeatInterval: options.heartbeatInterval,
      timeout: options.timeout,
      tls: options.ssl ?? options.tls,
      limits: options.limits,
      registerTimeout: options.registerTimeout,
      register: (conn, readOnly) => this.register(conn, readOnly),
      onServerCall: (conn, name, args) => this.onServerCall(conn, name, args),
    });
    this.connector.on('connect', (e: ConnectEvent) => {
      this.serverAddress = describeAddress(e.address);
      this.emit('connect', e);
    });
    this.connector.on('disconnect', (reason: ClientDisconnected, conn: ClientConnection) => {
      // (a switch to a writable server: the new connection is current already)
      if (conn === this.current) {
        this.current = null;
        this.generation++;
      }
      this.emit('disconnect', reason);
    });
  }

  /** Opens the storage; unless `wait` is false, resolves once connected, registered and verified. */
  static async open(options: ClientStorageOptions): Promise<ClientStorage> {
    const size = options.cacheSize ?? DEFAULT_CACHE_SIZE;
    const storage = options.storage ?? '1';
    const path =
      options.cachePath ??
      (options.client ? join(options.var ?? process.cwd(), `${options.client}-${storage}.zec`) : null);
    const cache = size > 0 ? await ClientCache.open({ size, path }) : null;
    let s: ClientStorage;
    try {
      s = new ClientStorage(options, cache, path);
    } catch (e) {
      await cache?.close();
      throw e;
    }
    s.connector.start();
    if (options.wait ?? true) {
      try {
        await s.connector.ready({ timeout: options.waitTimeout ?? 30_000 });
      } catch (e) {
        await s.close();
        throw e;
      }
    }
    return s;
  }

  /** Why an existing persistent cache file was not used (torn, foreign...), or null. */
  get cacheDropReason(): string | null {
    return this.cache?.dropReason ?? null;
  }

  // ------------------------------------------------------------------------------------------------------
  // connection: register, verify, the server's one-way calls

  /**
   * The register step on a fresh connection (the manager holds the server's calls until it returns): register,
   * verify the cache against the server's last tid, get_info; then, at once, the connection becomes current.
   */
  private async register(conn: ClientConnection, readOnly: boolean): Promise<void> {
    const args: PickleValue[] = [this.storageName, readOnly];
    if (this.options.credentials !== undefined) args.push(this.options.credentials);
    let registered = await conn.call('register', args);
    if (registered === null) registered = await conn.call('lastTransaction');
    const serverTid = idOf(registered, 'register');
    const verified = await verifyCache(this.cache, serverTid, (tid) => conn.call('getInvalidations', [tid]), {
      dropCacheRatherVerify: this.options.dropCacheRatherVerify,
      cacheFile: this.cacheFile,
    });
    const info = dictOf(await conn.call('get_info'), 'get_info');
    if (!conn.connected) throw await conn.closed;
    // as ZEO's notify_connected: the label goes out once registered, before the connection is used
    if (this.options.clientLabel) conn.callAsync('set_client_label', [this.options.clientLabel]);
    // from here on, synchronously: the cache, the last tid, the connection
    this.verifyResult = verified.result;
    this.updateInfo(info);
    this.current = conn;
    this.generation++;
    // what changed while we were away is emitted before lastTransaction moves past it (ZEO#166)
    if (verified.invalidated) this.publish(verified.invalidated);
    else if (verified.cleared) this.emit('cacheCleared', verified.result);
    this.registeredTid = verified.serverTid;
    this.lastTid = verified.serverTid;
    this.cache?.setLastTid(verified.serverTid);
  }

  private onServerCall(conn: ClientConnection, name: string, args: PickleValue[]): void | Promise<void> {
    if (conn !== this.current) return;
    if (name === 'invalidateTransaction') {
      const [tidValue, oidsValue] = args;
      const tid = idOf(tidValue, 'invalidateTransaction');
      const oids = sequenceOf(oidsValue, 'invalidateTransaction').map((o) =>
        idOf(o, 'invalidateTransaction'),
      );
      this.invalidateTransaction(tid, oids);
    } else if (name === 'info') {
      const info = dictOf(args[0] ?? null, 'info');
      this.updateInfo(info);
      // (listeners: pack's progress; ZEO's own keys and zeo-ts's pack_progress)
      this.emit('info', info);
    } else if (this.blobs) {
      const r = this.blobs.onServerCall(name, args);
      if (r instanceof Promise) return r.then(() => undefined);
    }
  }

  /** One transaction of someone else's: cache, watchers, the application, and then the last tid. */
  private invalidateTransaction(tid: Tid, oids: Oid[]): void {
    // at or below the tid registration returned: verification covered it
    if (compareIds(tid, this.registeredTid) <= 0) return;
    // after a later transaction (our own commit's): where it ends the cached revisions is not known
    const late = compareIds(tid, this.lastTid) <= 0;
    for (const oid of oids) {
      if (this.cache) {
        try {
          this.cache.invalidate(oid, late ? null : tid);
        } catch {
          this.cache.invalidate(oid, null);
        }
      }
      this.noteInvalidation(oid, tid);
    }
    this.publish({ tid, oids });
    this.setLastTid(tid);
  }

  /** Loads in flight for `oid` learn that `tid` changed it. */
  private noteInvalidation(oid: Oid, tid: Tid): void {
    const ws = this.watches.get(idKey(oid));
    if (ws) for (const w of ws) w.invalidated.push(tid);
  }

  private publish(inv: Invalidation): void {
    this.emit('invalidations', inv);
    this.feed.publish(inv);
  }

  private setLastTid(tid: Tid): void {
    if (compareIds(tid, this.lastTid) <= 0) return;
    this.lastTid = tid;
    this.cache?.setLastTid(tid);
  }

  private updateInfo(d: Map<PickleValue, PickleValue>): void {
    for (const [k, v] of d) if (typeof k === 'string') this.info.set(k, v);
    const interfaces = this.info.get('interfaces');
    const names: string[] = [];
    if (Array.isArray(interfaces)) {
      for (const i of interfaces as PickleValue[]) {
        if (Array.isArray(i) && typeof i[0] === 'string' && typeof i[1] === 'string')
          names.push(`${i[0]}.${i[1]}`);
        else if (typeof i === 'string') names.push(i);
      }
    }
    // blobs only with somewhere to put them (a blob directory of our own or the server's)
    const usable = this.options.blobDir ? names : names.filter((n) => !BLOB_INTERFACES.has(n));
    this.caps = capabilitiesOf(usable);
  }

  private async connection(options?: CallOptions): Promise<ClientConnection> {
    if (this.closed) throw new ClientDisconnected('the storage is closed');
    const c = this.current;
    if (c && c.connected) return c;
    return this.connector.ready(options);
  }

  /** A call on the current connection (waiting for one up to waitTimeout). */
  private async call(name: string, args: PickleValue[], options?: CallOptions): Promise<PickleValue> {
    const conn = await this.connection(options);
    return conn.call(name, args, options);
  }

  // ------------------------------------------------------------------------------------------------------
  // identity and status

  get capabilities(): StorageCapabilities {
    return this.caps;
  }

  getName(): string {
    return `${this.name} (${this.isConnected() ? 'connected' : 'disconnected'})`;
  }

  sortKey(): string {
    return `${this.storageName}:${this.serverAddress ?? this.name}`;
  }

  isReadOnly(): boolean {
    return (this.options.readOnly ?? false) || this.connector.readOnly;
  }

  isConnected(): boolean {
    return this.current !== null && this.current.connected;
  }

  lastTransaction(): Tid {
    return this.lastTid;
  }

  getSize(): number {
    return numberOf(this.info.get('size'));
  }

  len(): number {
    return numberOf(this.info.get('length'));
  }

  supportsUndo(): boolean {
    return Boolean(this.info.get('supportsUndo'));
  }

  /** what get_info answered (and info calls updated): size, length, name, supportsUndo, interfaces... */
  getInfo(): Record<string, unknown> {
    return Object.fromEntries(this.info);
  }

  cacheStats(): CacheStats {
    return (
      this.cache?.stats() ?? {
        hits: 0,
        misses: 0,
        hitRate: 0,
        stores: 0,
        evictions: 0,
        invalidations: 0,
        bytes: 0,
        entries: 0,
        size: 0,
      }
    );
  }

  newAddr(addresses: ServerAddress[]): void {
    this.addresses = addresses;
    this.connector.newAddr(addresses);
  }

  /**
   * Every transaction's invalidations from now on, in order, as an async iterator (ended by close()). One
   * that leaves more than `maxQueued` transactions unread fails with InvalidationsLost instead of growing.
   */
  invalidations(options: { maxQueued?: number } = {}): AsyncIterableIterator<Invalidation> {
    return this.feed.subscribe(options.maxQueued);
  }

  /** ZEO's `ruok` request to the server we are connected to (else the first address): every storage's status. */
  ruok(options?: CallOptions): Promise<PickleValue> {
    const address = this.connector.address ?? this.addresses[0];
    return ruok(address, {
      tls: this.options.ssl ?? this.options.tls,
      timeout: options?.timeout,
      signal: options?.signal,
    });
  }

  serverStatus(options?: CallOptions): Promise<PickleValue> {
    return this.call('server_status', [], options);
  }

  /** A round trip: invalidations the server sent before it have been processed when it returns. */
  async serverSync(options?: CallOptions): Promise<void> {
    await this.call('ping', [], options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.current = null;
    for (const wait of this.lockWaits.values()) wait.abort(new ClientDisconnected('the storage is closed'));
    this.feed.close();
    await this.connector.close();
    await this.cache?.close();
    await this.blobs?.close();
  }

  // ------------------------------------------------------------------------------------------------------
  // reads

  async load(oid: Oid, options?: CallOptions): Promise<LoadResult> {
    const r = await this.loadBefore(oid, maxtid, options);
    if (r === null) throw new POSKeyError(oid);
    return { data: r.data, serial: r.start };
  }

  loadBefore(oid: Oid, tid: Tid, options?: CallOptions): Promise<LoadBeforeResult | null> {
    const cached = this.cache?.loadBefore(oid, tid);
    if (cached) return Promise.resolve(cached);
    return withCallOptions(this.fetchBefore(oid, tid), options, 'loadBefore');
  }

  /** loadBefore from the server, merged with a request for the same (oid, tid) already in flight. */
  private fetchBefore(oid: Oid, tid: Tid): Promise<LoadBeforeResult | null> {
    const oidKey = idKey(oid);
    const key = oidKey + idKey(tid);
    const inflight = this.inflight.get(key);
    if (inflight) return inflight;
    const p = this.loadFromServer(oid, tid, oidKey, key);
    this.inflight.set(key, p);
    return p;
  }

  /** (Takes itself out of `inflight` when done: always after fetchBefore put it there, an await comes first.) */
  private async loadFromServer(
    oid: Oid,
    tid: Tid,
    oidKey: string,
    key: string,
  ): Promise<LoadBeforeResult | null> {
    // the invalidations that come while the load is out matter only to what it puts in the cache
    let watch: Watch | null = null;
    let ws: Set<Watch> | undefined;
    if (this.cache) {
      watch = { invalidated: [] };
      ws = this.watches.get(oidKey);
      if (!ws) this.watches.set(oidKey, (ws = new Set()));
      ws.add(watch);
    }
    try {
      // (the current connection without a promise of its own: loads are the hot path)
      const c = this.current;
      const conn = c !== null && c.connected && !this.closed ? c : await this.connection();
      const generation = this.generation;
      const r = await conn.call('loadBefore', [oid, tid]);
      if (r === null) return null;
      const t = sequenceOf(r, 'loadBefore');
      if (t.length !== 3) throw badReply('loadBefore', 'is not (data, start, end)');
      const result: LoadBeforeResult = {
        data: bytesOf(t[0], 'loadBefore'),
        start: idOf(t[1], 'loadBefore'),
        end: idOrNull(t[2], 'loadBefore'),
      };
      // handled now, in order with the invalidations processed so far
      if (watch && generation === this.generation && this.current === conn) {
        let end = result.end;
        if (end === null) {
          // invalidations came first: what we read ended at the first of them after it was written (and is
          // current only if none came after it)
          for (const tid of watch.invalidated) {
            if (compareIds(tid, result.start) > 0 && (end === null || compareIds(tid, end) < 0)) end = tid;
          }
        }
        this.cacheLoaded(oid, result.start, end, result.data);
      }
      return result;
    } finally {
      this.inflight.delete(key);
      if (ws) {
        ws.delete(watch!);
        if (ws.size === 0) this.watches.delete(oidKey);
      }
    }
  }

  /** Puts what a load read into the cache, as current (end null) or as the revision that ended at `end`. */
  private cacheLoaded(oid: Oid, start: Tid, end: Tid | null, data: Uint8Array): void {
    const cache = this.cache!;
    if (end === null) {
      // (currentTid, not load: this check is no application read, so it counts no hit or miss)
      const known = cache.currentTid(oid);
      if (known) {
        // the same or a newer current revision is there already: ours adds nothing
        if (compareIds(known, start) >= 0) return;
        // an older one: the server answered before the invalidation of ours reached us (the reference's
        // server does not order them); it ended at or before our revision, so forget it
        cache.invalidate(oid, null);
      }
    }
    try {
      cache.store(oid, start, end, data);
    } catch {
      // the cache disagrees with what the server said: trust neither, the next load asks again
      cache.invalidate(oid, null);
    }
  }

  /**
   * Starts loading the revisions of `oids` current before `tid` that are not in the cache, all at once; the
   * loads that follow wait for these instead of asking again. Errors are the later loads' to report.
   */
  async prefetch(oids: Oid[], tid: Tid, options?: CallOptions): Promise<void> {
    if (!this.isConnected()) throw new ClientDisconnected('prefetch while disconnected');
    const loads: Promise<unknown>[] = [];
    for (const oid of oids) {
      if (this.cache?.loadBefore(oid, tid)) continue;
      loads.push(this.fetchBefore(oid, tid).catch(() => null));
    }
    await withCallOptions(Promise.all(loads), options, 'prefetch');
  }

  async loadSerial(oid: Oid, serial: Tid, options?: CallOptions): Promise<Uint8Array> {
    return bytesOf(await this.call('loadSerial', [oid, serial], options), 'loadSerial');
  }

  async history(oid: Oid, size = 1, options?: CallOptions): Promise<HistoryEntry[]> {
    const r = await this.call('history', [oid, size], options);
    return sequenceOf(r, 'history').map(historyEntry);
  }

  async recordIternext(
    next: Oid | null = null,
    options?: CallOptions,
  ): Promise<{ oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null }> {
    if (!this.caps.recordIternext) throw new Unsupported('the server storage has no record_iternext');
    const r = sequenceOf(await this.call('record_iternext', [next], options), 'record_iternext');
    if (r.length !== 4) throw badReply('record_iternext', 'is not (oid, tid, data, next)');
    return {
      oid: idOf(r[0], 'record_iternext'),
      tid: idOf(r[1], 'record_iternext'),
      data: bytesOf(r[2], 'record_iternext'),
      next: idOrNull(r[3], 'record_iternext'),
    };
  }

  iterator(start: Tid | null = null, stop: Tid | null = null): AsyncIterableIterator<TransactionRecord> {
    if (!this.caps.iteration) throw new Unsupported('the server storage cannot iterate');
    return transactionIterator(
      {
        call: (name, args) => this.call(name, args),
        generation: () => this.generation,
        gc: (iids, generation) => {
          const c = this.current;
          if (c && c.connected && generation === this.generation) c.callAsync('iterator_gc', [iids]);
        },
      },
      start,
      stop,
    );
  }

  async undoLog(
    first = 0,
    last = -20,
    filter?: (entry: UndoLogEntry) => boolean,
    options?: CallOptions,
  ): Promise<UndoLogEntry[]> {
    if (!this.caps.undo) throw new Unsupported('the server storage cannot undo');
    if (!filter) {
      const r = await this.call('undoLog', [first, last], options);
      return sequenceOf(r, 'undoLog').map((e) => undoEntry(e, 'undoLog'));
    }
    // a filter cannot travel (ZEO's client returns nothing): read the log in growing pages and filter here
    const count = last < 0 ? -last : last - first;
    const wanted = first + count;
    for (let page = Math.max(wanted * 2, 64); ; page *= 4) {
      const r = sequenceOf(await this.call('undoLog', [0, page], options), 'undoLog');
      const passing = r.map((e) => undoEntry(e, 'undoLog')).filter(filter);
      if (passing.length >= wanted || r.length < page) return passing.slice(first, wanted);
    }
  }

  async undoInfo(
    first = 0,
    last = -20,
    specification: Map<PickleValue, PickleValue> | null = null,
    options?: CallOptions,
  ): Promise<UndoLogEntry[]> {
    if (!this.caps.undo) throw new Unsupported('the server storage cannot undo');
    const r = await this.call('undoInfo', [first, last, specification], options);
    return sequenceOf(r, 'undoInfo').map((e) => undoEntry(e, 'undoInfo'));
  }

  lastInvalidations(): Promise<Array<{ tid: Tid; oids: Oid[] }>> {
    return Promise.reject(new Unsupported('lastInvalidations is the server storage’s own'));
  }

  // ------------------------------------------------------------------------------------------------------
  // writes

  async newOid(options?: CallOptions): Promise<Oid> {
    if (this.isReadOnly()) throw new ReadOnlyError();
    for (;;) {
      const oid = this.oids.shift();
      if (oid) return oid;
      // one new_oids request at a time; everyone waiting takes from its answer (100 oids, as ZEO)
      this.newOids ??= (async () => {
        try {
          const r = await this.call('new_oids', [], options);
          // (all or nothing: a bad answer leaves no oid of it behind)
          this.oids.push(...sequenceOf(r, 'new_oids').map((o) => idOf(o, 'new_oids')));
        } finally {
          this.newOids = null;
        }
      })();
      await this.newOids;
    }
  }

  /** The transaction's buffer, checked as ZEO's _check_trans, for a call made before the vote. */
  private checkTrans(txn: TransactionMetaData, method: string): TransactionBuffer {
    const tbuf = this.checkTransAny(txn, method);
    if (tbuf.voted) throw new StorageTransactionError(`${method} after tpc_vote`);
    return tbuf;
  }

  private checkTransAny(txn: TransactionMetaData, method: string): TransactionBuffer {
    if (this.options.readOnly || this.connector.readOnly) throw new ReadOnlyError();
    const tbuf = txn.data.get(this);
    if (!(tbuf instanceof TransactionBuffer) || this.lockWaits.has(tbuf)) {
      throw new StorageTransactionError(`Transaction not committing (${method})`);
    }
    if (tbuf.generation !== this.generation) {
      throw new ClientDisconnected(`${method} on a disconnected transaction`);
    }
    return tbuf;
  }

  /** The connection a transaction's one-way calls go to. */
  private txnConnection(tbuf: TransactionBuffer, method: string): ClientConnection {
    const c = this.current;
    if (!c || !c.connected || tbuf.generation !== this.generation) {
      throw new ClientDisconnected(`${method} on a disconnected transaction`);
    }
    return c;
  }

  async tpcBegin(
    txn: TransactionMetaData,
    tid: Tid | null = null,
    status = ' ',
    options?: CallOptions,
  ): Promise<void> {
    if (this.isReadOnly()) throw new ReadOnlyError();
    if (txn.data.get(this) instanceof TransactionBuffer) {
      throw new StorageTransactionError('Duplicate tpc_begin calls for same transaction');
    }
    if (this.options.serverSync) await this.serverSync(options);
    const placeholder = new TransactionBuffer(this.nextTxnId++, -1);
    const wait = new AbortController();
    this.lockWaits.set(placeholder, wait);
    txn.data.set(this, placeholder);
    try {
      this.lockHeld.set(txn, await this.commitLock.acquire(wait.signal));
    } catch (e) {
      if (txn.data.get(this) === placeholder) txn.data.delete(this);
      throw e;
    } finally {
      this.lockWaits.delete(placeholder);
    }
    try {
      const conn = await this.connection(options);
      const tbuf = new TransactionBuffer(placeholder.id, this.generation);
      txn.data.set(this, tbuf);
      // the extension's bytes when the transaction has them (a copy), so both servers store them as they are
      const ext = txn.extensionBytes ?? txn.extension;
      conn.callAsync('tpc_begin', [tbuf.id, txn.user, txn.description, ext, tid, status]);
    } catch (e) {
      txn.data.delete(this);
      this.releaseLock(txn);
      throw e;
    }
  }

  async store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): Promise<void> {
    const tbuf = this.checkTrans(txn, 'store');
    this.txnConnection(tbuf, 'store').callAsync('storea', [oid, oldSerial, data, tbuf.id]);
    tbuf.store(oid, data);
    return Promise.resolve();
  }

  async restore(
    oid: Oid,
    serial: Tid,
    data: Uint8Array | null,
    prevTxn: Tid | null,
    txn: TransactionMetaData,
  ): Promise<void> {
    const tbuf = this.checkTrans(txn, 'restore');
    if (!this.caps.restore) throw new Unsupported('the server storage cannot restore');
    this.txnConnection(tbuf, 'restore').callAsync('restorea', [oid, serial, data, prevTxn, tbuf.id]);
    // what a restore writes is not ours to cache as current
    tbuf.store(oid, null);
  }

  async checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): Promise<void> {
    const tbuf = this.checkTrans(txn, 'checkCurrentSerialInTransaction');
    this.txnConnection(tbuf, 'checkCurrentSerialInTransaction').callAsync('checkCurrentSerialInTransaction', [
      oid,
      serial,
      tbuf.id,
    ]);
    return Promise.resolve();
  }

  async deleteObject(oid: Oid, oldSerial: Tid, txn: TransactionMetaData): Promise<void> {
    const tbuf = this.checkTrans(txn, 'deleteObject');
    if (!this.caps.deleteObject) throw new Unsupported('the server storage cannot delete objects');
    this.txnConnection(tbuf, 'deleteObject').callAsync('deleteObject', [oid, oldSerial, tbuf.id]);
    tbuf.store(oid, null);
  }

  /**
   * Undo happens on the server at vote: the result's oids are filled in by tpcVote and its tid by tpcFinish
   * (ZEO's undo returns nothing; vote reports the oids).
   */
  async undo(undoId: Uint8Array, txn: TransactionMetaData): Promise<UndoResult> {
    const tbuf = this.checkTrans(txn, 'undo');
    if (!this.caps.undo) throw new Unsupported('the server storage cannot undo');
    this.txnConnection(tbuf, 'undo').callAsync('undoa', [undoId, tbuf.id]);
    const result = { tid: z64, oids: [] as Oid[] };
    tbuf.undos.push(result);
    return result;
  }

  async tpcVote(txn: TransactionMetaData, options?: CallOptions): Promise<Oid[]> {
    const tbuf = this.checkTrans(txn, 'tpc_vote');
    // the blob uploads go before the vote
    await Promise.all(tbuf.uploads);
    const conn = this.txnConnection(tbuf, 'tpc_vote');
    const undone: Oid[] = [];
    try {
      let conflicts = true;
      // resolved conflicts are stored again and voted again; ZEO gives up after 9 rounds
      for (let attempt = 0; conflicts && attempt < 9; attempt++) {
        conflicts = false;
        const r = await conn.call('vote', [tbuf.id], options);
        for (const item of r === null ? [] : sequenceOf(r, 'vote')) {
          if (item instanceof Map) {
            conflicts = true;
            const c = voteConflict(item);
            const data = await this.resolveConflict(c.oid, c.committed, c.read, c.data);
            this.txnConnection(tbuf, 'tpc_vote').callAsync('storea', [c.oid, c.committed, data, tbuf.id]);
            tbuf.resolve(c.oid, data);
          } else {
            const oid = idOf(item, 'vote');
            tbuf.serverResolve(oid);
            undone.push(oid);
          }
        }
      }
    } catch (e) {
      // an unresolved conflict may come from a stale cache entry: forget it (ZEO's band-aid)
      if (e instanceof ConflictError && e.oid) this.cache?.invalidate(e.oid, null);
      throw e;
    }
    for (const u of tbuf.undos) u.oids.push(...undone);
    tbuf.voted = true;
    return tbuf.resolvedOids();
  }

  /** The resolver's data for a conflict vote reported, or ConflictError naming the class and both serials. */
  private async resolveConflict(oid: Oid, committed: Tid, read: Tid, data: Uint8Array): Promise<Uint8Array> {
    if (this.resolver) {
      const committedData = await this.loadSerial(oid, committed);
      let resolved: Uint8Array | null = null;
      try {
        resolved = await this.resolver(oid, committed, read, data, committedData);
      } catch (e) {
        // a resolver that fails leaves the conflict as it was (ZODB's tryToResolveConflict)
        if (e instanceof ClientDisconnected) throw e;
      }
      if (resolved) return resolved;
    }
    throw conflictError(oid, committed, read, data);
  }

  async tpcFinish(
    txn: TransactionMetaData,
    onCommitted?: (tid: Tid) => void,
    options?: CallOptions,
  ): Promise<Tid> {
    const tbuf = this.checkTransAny(txn, 'tpc_finish');
    if (!tbuf.voted) throw new StorageTransactionError('tpc_finish before tpc_vote');
    try {
      const conn = this.txnConnection(tbuf, 'tpc_finish');
      let tid: Tid;
      try {
        tid = idOf(await conn.call('tpc_finish', [tbuf.id], options), 'tpc_finish');
      } catch (e) {
        // the cache may now disagree with the server: reconnect to verify it again (as ZEO)
        if (!(e instanceof ClientDisconnected))
          await conn.close(`tpc_finish failed: ${(e as Error).message}`);
        throw e;
      }
      for (const u of tbuf.updates()) this.noteInvalidation(u.oid, tid);
      if (this.cache && conn === this.current) {
        for (const u of tbuf.updates()) {
          this.cache.invalidate(u.oid, tid);
          // a later transaction's invalidation already processed makes ours non-current at once
          if (u.data && !u.serverResolved && compareIds(tid, this.lastTid) > 0) {
            this.cache.store(u.oid, tid, null, u.data);
          }
        }
      }
      for (const u of tbuf.undos) u.tid = tid;
      this.setLastTid(tid);
      onCommitted?.(tid);
      // the uploaded files become the blob cache's files of the new revision
      if (this.blobs && tbuf.blobs.length > 0) await this.blobs.committed(tid, tbuf.blobs);
      return tid;
    } finally {
      this.endTransaction(txn);
    }
  }

  async tpcAbort(txn: TransactionMetaData, options?: CallOptions): Promise<void> {
    const tbuf = txn.data.get(this);
    if (!(tbuf instanceof TransactionBuffer)) return;
    const wait = this.lockWaits.get(tbuf);
    if (wait) {
      // still waiting for our commit lock: leave the queue (its tpcBegin fails)
      txn.data.delete(this);
      wait.abort(new StorageTransactionError('the transaction was aborted while it waited'));
      return;
    }
    try {
      const c = this.current;
      if (c && c.connected && tbuf.generation === this.generation)
        await c.call('tpc_abort', [tbuf.id], options);
    } catch (e) {
      if (!(e instanceof ClientDisconnected)) throw e;
    } finally {
      this.endTransaction(txn);
      if (this.blobs && tbuf.uploads.length > 0) {
        await Promise.allSettled(tbuf.uploads);
        await this.blobs.aborted(tbuf.blobs);
      }
    }
  }

  private endTransaction(txn: TransactionMetaData): void {
    if (txn.data.get(this) instanceof TransactionBuffer) {
      txn.data.delete(this);
      this.releaseLock(txn);
    }
  }

  private releaseLock(txn: TransactionMetaData): void {
    this.lockHeld.get(txn)?.();
    this.lockHeld.delete(txn);
  }

  // ------------------------------------------------------------------------------------------------------
  // pack

  /**
   * ZEO's pack(t, wait): the server packs with its own reference finder and always collects garbage, so
   * `referencesf` is not used and gc: false cannot be honoured.
   */
  async pack(
    packTime: number,
    _referencesf?: ReferencesFinder,
    options?: StoragePackOptions & CallOptions,
  ): Promise<void> {
    if (options?.gc === false) {
      throw new Unsupported('a ZEO client cannot pack without garbage collection (the server decides)');
    }
    // a zeo-ts server tells the packing client its progress in info messages (ZEO's runzeo tells nothing)
    const onProgress = options?.onProgress;
    const onInfo =
      onProgress &&
      ((info: Map<PickleValue, PickleValue>): void => {
        const p = info.get('pack_progress');
        const n = (v: PickleValue): number =>
          typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : NaN;
        if (Array.isArray(p) && p.length === 3 && typeof p[2] === 'string') {
          const [done, total] = [n(p[0]), n(p[1])];
          if (Number.isFinite(done) && Number.isFinite(total)) onProgress(done, total, p[2]);
        }
      });
    if (onInfo) this.on('info', onInfo);
    try {
      // (a read-only registration may pack, as with ZEO: zeopack registers read-only)
      await this.call('pack', [new PyFloat(packTime), true], options);
    } finally {
      if (onInfo) this.off('info', onInfo);
    }
    // the revisions it removed may be in our cache: forget them (ZEO keeps them until evicted; other clients
    // still may, but they hold only what nothing reaches or what came before the pack time)
    this.cache?.clear();
  }

  // ------------------------------------------------------------------------------------------------------
  // blobs: ClientBlobs, with the server's blob directory (sharedBlobDir) or a blob cache of our own

  private blobsOrUnsupported(): ClientBlobs {
    if (!this.blobs) throw new Unsupported('this client has no blob directory (blobDir)');
    return this.blobs;
  }

  /**
   * Stores the record (storea), then hands the file to the server: its upload is done before the vote. The
   * file is taken over (moved), as ZODB's storeBlob does.
   */
  async storeBlob(
    oid: Oid,
    oldSerial: Tid,
    data: Uint8Array,
    blobFilename: string,
    txn: TransactionMetaData,
  ): Promise<void> {
    const blobs = this.blobsOrUnsupported();
    const tbuf = this.checkTrans(txn, 'storeBlob');
    const conn = this.txnConnection(tbuf, 'storeBlob');
    conn.callAsync('storea', [oid, oldSerial, data, tbuf.id]);
    tbuf.store(oid, data);
    const upload = blobs.storeBlob(conn, oid, oldSerial, data, blobFilename, tbuf.id).then((filename) => {
      tbuf.blobs.push({ oid, filename });
    });
    tbuf.uploads.push(upload);
    await upload;
  }

  /** ZEO has no call for it: a blob is copied to a server with storeBlob in a transaction begun with its tid. */
  restoreBlob(): Promise<void> {
    return Promise.reject(new Unsupported('ZEO has no restoreBlob: restore the record, then storeBlob'));
  }

  async loadBlob(oid: Oid, serial: Tid, options?: CallOptions): Promise<string> {
    const blobs = this.blobsOrUnsupported();
    const conn = await this.connection(options);
    return blobs.loadBlob(conn, oid, serial, options);
  }

  temporaryDirectory(): string {
    return this.blobsOrUnsupported().temporaryDirectory();
  }

  blobDirectoryOf(oid: Oid): string {
    return this.blobsOrUnsupported().blobDirectoryOf(oid);
  }
}

function conflictError(oid: Oid, committed: Tid, read: Tid, data: Uint8Array): ConflictError {
  let className = '?';
  try {
    className = getPickleMetadata(data).join('.');
  } catch {
    // not a pickle we can read: the conflict stands all the same
  }
  const e = new ConflictError(oid, [committed, read], data, `database conflict error (class ${className})`);
  return Object.assign(e, { className });
}

/**
 * An 8-byte id as a 4-character key for the load tables (two bytes a UTF-16 unit): one small string, where hex
 * made a Buffer view and a 16-digit string per id on every load.
 */
function idKey(b: Uint8Array): string {
  return String.fromCharCode((b[0] << 8) | b[1], (b[2] << 8) | b[3], (b[4] << 8) | b[5], (b[6] << 8) | b[7]);
}

/** A shared promise, raced against one caller's signal and timeout. */
function withCallOptions<T>(p: Promise<T>, options: CallOptions | undefined, name: string): Promise<T> {
  const signal = options?.signal;
  const ms = options?.timeout ?? 0;
  if (!signal && !(ms > 0)) return p;
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      clearTimeout(timer);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason
      reject(signal!.reason);
    };
    if (ms > 0) timer = setTimeout(() => reject(new CallTimeoutError(name, ms)), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the shared load's own error
        reject(e);
      },
    );
  });
}
