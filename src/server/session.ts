// One client's session (StorageServer's ZEOStorage): the methods a ZEO 5/6 client calls, with the
// reference's semantics. A session serves the one storage its client registered for. Stores are only
// logged; vote takes the storage's commit lock and replays them, so conflicts are found at vote and the
// lock is held only from vote to tpc_finish/tpc_abort.
//
// Write conflicts always go back to the client (the reference's client-conflict-resolution mode): the
// server runs no Python, and the stock Python client resolves them with the application's own classes.

import { randomBytes } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { basename, join, sep } from 'node:path';
import {
  isBytes,
  isTuple,
  PyFloat,
  PyObject,
  pyEquals,
  pyFloatRepr,
  pyRepr,
  pyTypeName,
  tuple,
  type PickleValue,
  type PyDict,
} from '../pickle/index.js';
import { zlibAwareReferences } from './open-storages.js';
import { PythonError, pyTruthy } from '../protocol/index.js';
import {
  ConflictError,
  POSKeyError,
  ReadOnlyError,
  StorageTransactionError,
  UndoError,
} from '../storage/errors.js';
import type { Oid, Tid } from '../storage/ids.js';
import { idCopy, idHex, u64 } from '../storage/ids.js';
import {
  TransactionMetaData,
  type DataRecord,
  type LoadBeforeHit,
  type PackProgressListener,
  type TransactionRecord,
  type UndoLogEntry,
} from '../storage/interfaces.js';
import { Throttle } from '../storage/progress.js';
import { undoEntryItems } from '../storage/undo-log.js';
import { CommitLog, type ReplayOp } from './commit-log.js';
import type { Logger } from './log.js';
import type { AsyncCall, ServedStorage, StorageClient } from './served-storage.js';

/** What a session needs from its connection. */
export interface SessionConnection {
  readonly label: string;
  readonly connected: boolean;
  /**
   * queues an async call (invalidateTransaction, info, receiveBlob*) behind every promised reply; `now`:
   * write what can go out to the socket at once rather than gathering it until the end of the tick
   */
  sendAsync(name: string, args: PickleValue[], now?: boolean): void;
  /** sendAsync of a call encoded once for many connections */
  sendCall(call: AsyncCall): void;
  /** writes what is queued and may go out now, rather than at the end of the tick */
  flushOutput(): void;
  /** resolves when the connection's output has room again (backpressure for blob streams) */
  writable(): Promise<void>;
  close(reason?: string): void;
}

/** A reply slot: messages appended to it go out in order, before anything queued after it. */
export interface ReplySlot {
  append(name: string, args: PickleValue[]): void;
  /** append of a call encoded once for many connections */
  appendCall(call: AsyncCall): void;
  /**
   * answers the call now (behind the replies before it), without waiting for the handler to return; what the
   * handler then returns or throws is dropped
   */
  reply(result: PickleValue): void;
}

export interface SessionServer {
  readonly storages: ReadonlyMap<string, ServedStorage>;
  readonly readOnly: boolean;
  readonly log: Logger;
  readonly commitLogThreshold: number;
  /** the largest blob one upload may send */
  readonly maxBlobUpload: number;
  /** ruok/server_status of every storage */
  statusAll(): PyDict;
}

type Handler = (session: Session, args: PickleValue[], slot: ReplySlot | null) => unknown;

interface MethodSpec {
  /** Python's parameter names, without self, for TypeError messages */
  params: string[];
  /** how many of them are required */
  required: number;
  fn: Handler;
  /** the reply may take long (lock, pack, threads in the reference): it must not hold up later replies */
  deferred?: boolean;
  /** the owner shown in TypeError messages (ZEOStorage, or the storage for delegated methods) */
  owner?: string;
}

interface ActiveTransaction {
  id: PickleValue;
  user: Uint8Array;
  description: Uint8Array;
  extension: PyDict;
  extensionBytes: Uint8Array | null;
  tid: Tid | null;
  status: string;
  log: CommitLog;
  /** (oid, serial, data, temp file) in upload order; replayed newest first, as the reference does */
  blobs: Array<{ oid: Oid; serial: Tid; data: Uint8Array; file: string }>;
  /** storeBlobEnd calls still closing their upload files: vote waits for them */
  uploads: Promise<void>[];
  /** the storage's view of the transaction during a vote attempt */
  meta: TransactionMetaData | null;
  /** oids to invalidate for other clients, in replay order */
  invalidated: Oid[];
  /** vote's result: oids resolved by the storage or changed by undo */
  serials: Oid[];
  /** the last vote returned conflicts: the commit lock stays ours until the client votes again */
  resolving: boolean;
  /**
   * the first bad argument of a one-way call that adds to the transaction (a str where bytes go): the vote
   * fails with it. The reference logs these calls unchecked and fails the vote, keeping the connection; a
   * one-way call's own error could only close it.
   */
  badArgument: PythonError | null;
}

const MAX_ITERATORS = 1000;
/**
 * bytes of a blob upload's chunks that may wait to be written while the connection reads on: the network and
 * the disk overlap (the Python client sends 59,000-byte chunks), memory stays bounded
 */
const BLOB_WRITE_AHEAD = 4 << 20;

/** A storeBlobStart/Chunk/End upload in progress. */
interface BlobUpload {
  file: string;
  handle: Promise<FileHandle>;
  /** the writes so far, in order */
  chain: Promise<void>;
  size: number;
  /** bytes of chunks received and not yet written */
  queued: number;
  /** set once the upload passed the bound: later chunks are dropped and storeBlobEnd fails the transaction */
  tooLarge: PythonError | null;
}

export class Session implements StorageClient {
  served: ServedStorage | null = null;
  private readOnly: boolean;
  private txn: ActiveTransaction | null = null;
  /** holds the storage's commit lock after a successful vote */
  locked = false;
  /**
   * the reply slot of this session's tpc_finish while its transaction waits for its flush: the invalidations
   * of the transactions committed before it go into it, ahead of its reply (see invalidateTransaction)
   */
  private finishSlot: ReplySlot | null = null;
  private blobUpload: BlobUpload | null = null;
  private readonly iterators = new Map<
    number,
    AsyncIterator<TransactionRecord> | AsyncIterator<DataRecord> | Iterator<DataRecord>
  >();
  private readonly lastTxnOfIterator = new Map<number, TransactionRecord>();
  private nextIteratorId = 0;
  label: string;

  constructor(
    private readonly server: SessionServer,
    private readonly conn: SessionConnection,
  ) {
    this.readOnly = server.readOnly;
    this.label = conn.label;
  }

  get connected(): boolean {
    return this.conn.connected;
  }

  /** registered read-only (or on a read-only server): the dashboard's view */
  get isReadOnly(): boolean {
    return this.readOnly;
  }

  /** whether a transaction is in progress (tpc_begin to tpc_finish/tpc_abort) */
  get inTransaction(): boolean {
    return this.txn !== null;
  }

  get log(): Logger {
    return this.server.log;
  }

  /** The method table before (register only) and after registration. */
  method(name: string): MethodSpec | undefined {
    if (!Object.prototype.hasOwnProperty.call(METHODS, name)) return undefined;
    if (this.served === null) return name === 'register' ? METHODS.register : undefined;
    if (name === 'register') return undefined;
    if (this.served.storage.pollInvalidations !== undefined && Object.hasOwn(POLLING_METHODS, name)) {
      return POLLING_METHODS[name];
    }
    return METHODS[name];
  }

  /** Checks the argument count as Python would, then runs the method. */
  call(spec: MethodSpec, name: string, args: PickleValue[], slot: ReplySlot | null): unknown {
    const max = spec.params.length;
    if (args.length < spec.required || args.length > max) {
      throw new PythonError(
        'builtins.TypeError',
        tuple(arityMessage(spec.owner ?? 'ZEOStorage', name, spec, args.length)),
      );
    }
    return spec.fn(this, args, slot);
  }

  // ----------------------------------------------------------------------------------------------------
  // StorageClient: what the storage's fan-out calls

  invalidateTransaction(call: AsyncCall): void {
    // A transaction committed before this session's own, which waits for its flush (group commit): behind the
    // tpc_finish call's place in the output, this would reach the client after its reply, a later tid
    if (this.finishSlot) {
      this.finishSlot.appendCall(call);
      return;
    }
    // (written by the storage's flushInvalidations, before the committer's reply)
    this.conn.sendCall(call);
  }

  flushOutput(): void {
    this.conn.flushOutput();
  }

  sendInfo(info: PyDict): void {
    this.conn.sendAsync('info', [info]);
  }

  transactionTimedOut(): void {
    // do what the reference means to do: abort, free the lock for the next voter, drop the client
    // abortActive logs a failed abort and does not reject
    void this.abortActive('transaction timeout').finally(() => this.conn.close('transaction timeout'));
  }

  // ----------------------------------------------------------------------------------------------------
  // lifecycle

  /** The connection is gone: abort whatever transaction is in progress and leave the storage. */
  async disconnected(): Promise<void> {
    const served = this.served;
    if (this.txn) {
      this.log.info(`(${this.label}) disconnected during ${this.locked ? 'locked' : 'unlocked'} transaction`);
      await this.abortActive('disconnected');
    } else {
      this.log.info(`(${this.label}) disconnected`);
    }
    await this.dropBlobUpload();
    for (const id of [...this.iterators.keys()]) await this.closeIterator(id);
    served?.clients.delete(this);
  }

  private async abortActive(why: string): Promise<void> {
    const t = this.txn;
    const served = this.served;
    if (!t || !served) return;
    try {
      if (t.meta) await served.storage.tpcAbort(t.meta);
    } catch (e) {
      this.log.error(`(${this.label}) tpc_abort after ${why} failed`, e);
    }
    served.stats.aborts++;
    await this.clearTransaction();
  }

  private async clearTransaction(): Promise<void> {
    const t = this.txn;
    const served = this.served!;
    served.lock.release(this);
    this.locked = false;
    if (!t) return;
    this.txn = null;
    served.stats.activeTxns--;
    // an upload the transaction never ended goes with it
    await this.dropBlobUpload();
    await Promise.all(t.uploads);
    await t.log.close();
    // (the transaction is over either way: a temporary file that cannot go is logged, not thrown)
    for (const b of t.blobs) {
      await rm(b.file, { force: true }).catch((e) =>
        this.log.warn(`(${this.label}) could not remove ${b.file}`, e),
      );
    }
  }

  // ----------------------------------------------------------------------------------------------------
  // registration and information

  register(storageId: PickleValue, readOnly: PickleValue): Tid | Promise<Tid> {
    const name = pyStr(storageId);
    // the reference looks the id up in a dict of str: b'1' is not '1'
    const served = typeof storageId === 'string' ? this.server.storages.get(name) : undefined;
    if (!served) {
      this.log.info(`(${this.label}) unknown storage_id: ${name}`);
      throw new PythonError('builtins.ValueError', tuple(`unknown storage: ${name}`));
    }
    if (!pyTruthy(readOnly) && (this.readOnly || served.storage.isReadOnly())) throw new ReadOnlyError();
    this.readOnly = this.readOnly || pyTruthy(readOnly);
    this.served = served;
    const storage = served.storage;
    // registration and the last tid are one step: every later commit reaches this client as an invalidation
    // (and no earlier one: a tid at or below the one it registered at fails the Python client)
    if (storage.pollInvalidations === undefined) {
      served.clients.add(this);
      return storage.lastTransaction();
    }
    // a storage other writers commit to hears of their commits late: a client coming from another server
    // may have seen some, and would find this one behind it (the Python client refuses that)
    return storage.pollInvalidations().then(() => {
      if (this.conn.connected) served.clients.add(this);
      return storage.lastTransaction();
    });
  }

  /**
   * ping and lastTransaction over a storage other writers commit to (pollInvalidations): their replies come
   * after the invalidations of everything committed elsewhere before they came, as they come after those of
   * this server's commits (a client that syncs, ZEO's server_sync, after a commit through another server
   * returned reads it). Replies queued when ready (deferred), behind those invalidations.
   */
  async polled<T>(answer: () => T): Promise<T> {
    await this.storage.storage.pollInvalidations!();
    return answer();
  }

  private get storage(): ServedStorage {
    return this.served!;
  }

  /**
   * runzeo answers a bad argument as its storage's Python class does: a MappingStorage (no undo) or a
   * FileStorage. Which one a storage would be is read from what it declares.
   */
  private get pythonClass(): 'MappingStorage' | 'FileStorage' {
    return this.storage.storage.capabilities.undo ? 'FileStorage' : 'MappingStorage';
  }

  // ----------------------------------------------------------------------------------------------------
  // transactions

  private checkTid(id: PickleValue, raise: boolean): boolean {
    if (this.readOnly) throw new ReadOnlyError();
    const t = this.txn;
    if (t === null || !pyEquals(t.id, id)) {
      if (raise) {
        this.log.warn(
          t === null
            ? `(${this.label}) no current transaction`
            : `(${this.label}) ${pyRepr(id)} invalid; current transaction = ${pyRepr(t.id)}`,
        );
        throw new PythonError(
          'ZODB.POSException.StorageTransactionError',
          tuple(t === null ? null : t.id, id),
        );
      }
      return false;
    }
    return true;
  }

  tpcBegin(args: PickleValue[]): void {
    const [id, user, description, ext] = args;
    const tid = args.length > 4 ? args[4] : null;
    // str or bytes, as Python's FileStorage writes either (zodbtools' restore sends b' ')
    const status = args.length > 5 ? args[5] : ' ';
    if (this.readOnly) throw new ReadOnlyError();
    if (this.txn !== null) {
      if (pyEquals(this.txn.id, id)) {
        this.log.info(`(${this.label}) duplicate tpc_begin(${pyRepr(id)})`);
        return;
      }
      throw new StorageTransactionError('Multiple simultaneous tpc_begin requests from one client.');
    }
    // user and description are encoded now (TransactionMetaData); the reference keeps ext, tid and status
    // as they come and fails on a bad one only at vote: so does this, with a TypeError
    const userBytes = textOrBytes(user);
    const descriptionBytes = textOrBytes(description);
    let badArgument: PythonError | null = null;
    const bad = (message: string): void => {
      badArgument ??= new PythonError('builtins.TypeError', tuple(message));
    };
    let extension: PyDict = new Map();
    let extensionBytes: Uint8Array | null = null;
    const asDict = ext instanceof PyObject ? dictFromObject(ext) : null;
    if (ext instanceof Map) extension = ext;
    else if (asDict) extension = asDict;
    else if (isBytes(ext)) extensionBytes = ext.length ? new Uint8Array(ext) : null;
    else if (ext !== null) bad(`the transaction's extension must be a dict, not ${pyTypeName(ext)}`);
    if (tid !== null && !isOid(tid)) bad(`tpc_begin's tid must be 8 bytes, not ${pyTypeName(tid)}`);
    if (typeof status !== 'string' && !isBytes(status))
      bad(`tpc_begin's status must be str or bytes, not ${pyTypeName(status)}`);
    this.txn = {
      id,
      user: userBytes,
      description: descriptionBytes,
      extension,
      extensionBytes,
      tid: tid !== null && isOid(tid) ? idCopy(tid as Uint8Array) : null,
      status:
        typeof status === 'string' ? status : isBytes(status) ? Buffer.from(status).toString('latin1') : ' ',
      log: new CommitLog(this.server.commitLogThreshold),
      blobs: [],
      uploads: [],
      meta: null,
      invalidated: [],
      serials: [],
      resolving: false,
      badArgument,
    };
    this.storage.stats.activeTxns++;
  }

  storea(oid: PickleValue, serial: PickleValue, data: PickleValue, id: PickleValue): void {
    this.checkTid(id, true);
    this.storage.stats.stores++;
    const t = this.txn!;
    this.checkArguments(t, () => t.log.store(oidArg(oid), serialArg(serial), bytesArg(data)));
  }

  /** Runs a one-way call's conversions; a bad argument fails the transaction's vote (see badArgument). */
  private checkArguments(t: ActiveTransaction, add: () => void): void {
    try {
      add();
    } catch (e) {
      if (!(e instanceof PythonError)) throw e;
      t.badArgument ??= e;
    }
  }

  restorea(
    oid: PickleValue,
    serial: PickleValue,
    data: PickleValue,
    prevTxn: PickleValue,
    id: PickleValue,
  ): void {
    this.checkTid(id, true);
    this.storage.stats.stores++;
    const t = this.txn!;
    this.checkArguments(t, () =>
      t.log.restore(
        oidArg(oid),
        oidArg(serial),
        data === null ? null : bytesArg(data),
        prevTxn === null ? null : oidArg(prevTxn),
      ),
    );
  }

  deleteObject(oid: PickleValue, serial: PickleValue, id: PickleValue): void {
    this.checkTid(id, true);
    this.storage.stats.stores++;
    const t = this.txn!;
    this.checkArguments(t, () => t.log.delete(oidArg(oid), serialArg(serial)));
  }

  checkCurrentSerialInTransaction(oid: PickleValue, serial: PickleValue, id: PickleValue): void {
    this.checkTid(id, true);
    const t = this.txn!;
    this.checkArguments(t, () => t.log.checkread(oidArg(oid), serialArg(serial)));
  }

  undoa(undoId: PickleValue, id: PickleValue): void {
    this.checkTid(id, true);
    const t = this.txn!;
    this.checkArguments(t, () => t.log.undo(bytesArg(undoId)));
  }

  storeBlobStart(): void {
    if (this.blobUpload) throw new PythonError('builtins.AssertionError', tuple());
    const dir = this.storage.storage.temporaryDirectory();
    const file = join(dir, `tmp${randomBytes(6).toString('hex')}`);
    const handle = open(file, 'wx', 0o600);
    this.blobUpload = { file, handle, chain: handle.then(() => {}), size: 0, queued: 0, tooLarge: null };
  }

  /**
   * Writes the chunk, after the ones before. While less than BLOB_WRITE_AHEAD bytes wait to be written, the
   * connection reads on (the next chunks arrive while this one is written); past it, the promise settles once
   * this chunk is written and the connection reads nothing more from this client until then, so a client
   * sending faster than the disk takes is held back instead of buffered.
   */
  storeBlobChunk(chunk: PickleValue): Promise<void> | undefined {
    const up = this.blobUpload;
    if (!up) throw new PythonError('builtins.TypeError', tuple('storeBlobChunk without storeBlobStart'));
    const data = bytesArg(chunk);
    if (up.tooLarge) return undefined;
    up.size += data.length;
    const max = this.server.maxBlobUpload;
    if (up.size > max) {
      up.tooLarge = new PythonError(
        // StorageTransactionError: a storage error the Python client raises as itself
        'ZODB.POSException.StorageTransactionError',
        tuple(
          `blob upload of ${up.size} bytes so far is larger than the server's limit of ${max} bytes (--max-blob-upload)`,
        ),
      );
      this.log.error(
        `(${this.label}) blob upload larger than ${max} bytes: dropped, its transaction will fail`,
      );
      // the disk is given back now; what else the client sends of it is read and dropped
      up.chain = up.chain.catch(() => {}).then(() => rm(up.file, { force: true }));
    } else {
      up.queued += data.length;
      up.chain = up.chain.then(async () => {
        try {
          const h = await up.handle;
          let done = 0;
          while (done < data.length) done += (await h.write(data, done, data.length - done)).bytesWritten;
        } finally {
          up.queued -= data.length;
        }
      });
      if (up.queued <= BLOB_WRITE_AHEAD) {
        // (a failed write is reported when the upload ends)
        up.chain.catch(() => {});
        return undefined;
      }
    }
    // a failed write is reported when the upload ends
    return up.chain.catch(() => {});
  }

  async storeBlobEnd(
    oid: PickleValue,
    serial: PickleValue,
    data: PickleValue,
    id: PickleValue,
  ): Promise<void> {
    this.checkTid(id, true);
    const up = this.blobUpload;
    if (!up) throw new PythonError('builtins.TypeError', tuple('storeBlobEnd without storeBlobStart'));
    this.blobUpload = null;
    const t = this.txn!;
    let stored = false;
    if (up.tooLarge) t.badArgument ??= up.tooLarge;
    else
      this.checkArguments(t, () => {
        // listed now, so a transaction ended while the file is being closed still removes it
        t.blobs.push({ oid: oidArg(oid), serial: serialArg(serial), data: bytesArg(data), file: up.file });
        stored = true;
      });
    // one-way calls run concurrently: the vote that follows must wait until the file is whole
    const done = (async () => {
      await up.chain;
      await (await up.handle).close();
      if (!stored) await rm(up.file, { force: true });
    })();
    // the transaction's end only waits for it to settle; its error reaches the caller through `await done`
    t.uploads.push(done.catch(() => {}));
    await done;
  }

  storeBlobShared(
    oid: PickleValue,
    serial: PickleValue,
    data: PickleValue,
    filename: PickleValue,
    id: PickleValue,
  ): void {
    this.checkTid(id, true);
    const name = typeof filename === 'string' ? filename : '';
    if (
      name.includes(sep) ||
      name.includes('/') ||
      !(name.endsWith('.tmp') || name.slice(0, -1).endsWith('.tmp'))
    ) {
      this.log.critical(`We're under attack! (bad filename to storeBlobShared, ${pyRepr(filename)})`);
      throw new PythonError('builtins.ValueError', tuple(filename));
    }
    const storage = this.storage.storage;
    if (!storage.capabilities.blobs)
      throw new PythonError('builtins.AttributeError', tuple('storage has no blob directory'));
    const t = this.txn!;
    this.checkArguments(t, () => {
      const o = oidArg(oid);
      t.blobs.push({
        oid: o,
        serial: serialArg(serial),
        data: bytesArg(data),
        file: join(storage.blobDirectoryOf(o), basename(name)),
      });
    });
  }

  private async dropBlobUpload(): Promise<void> {
    const up = this.blobUpload;
    if (!up) return;
    this.blobUpload = null;
    // the upload is abandoned: its write and close errors no longer matter, the file goes
    await up.chain.catch(() => {});
    await (await up.handle.catch(() => null))?.close().catch(() => {});
    await rm(up.file, { force: true }).catch((e) =>
      this.log.warn(`(${this.label}) could not remove ${up.file}`, e),
    );
  }

  /** vote: the reply waits for the commit lock; returns the replay's result. */
  vote(id: PickleValue): Promise<PickleValue> | PickleValue {
    this.checkTid(id, true);
    const served = this.storage;
    const t = this.txn!;
    if (t.badArgument) {
      // as the reference's vote fails on the stored call: the transaction ends, the connection stays
      const e = t.badArgument;
      return this.clearTransaction().then(() => Promise.reject(e));
    }
    if (t.resolving && served.lock.locked === this) {
      // the re-vote after resolving conflicts: still holding the lock, so nothing changed meanwhile
      t.resolving = false;
      return this.replay();
    }
    return new Promise<PickleValue>((resolve, reject) => {
      const run = (): void => {
        this.replay().then(resolve, reject);
      };
      if (served.lock.acquire(this, run)) run();
    });
  }

  private async replay(): Promise<PickleValue> {
    const served = this.storage;
    const storage = served.storage;
    const t = this.txn;
    if (!this.conn.connected || !t) return null;
    await Promise.all(t.uploads);
    if (this.txn !== t) return null;
    const started = performance.now();
    const meta = new TransactionMetaData(t.user, t.description, t.extension, t.extensionBytes);
    t.meta = meta;
    t.invalidated = [];
    // undo's oids from an earlier attempt are replayed again
    t.serials = [];
    const conflicts = new Map<string, PyDict>();
    const stored = (oid: Oid): void => {
      // (the map is almost always empty: no hex key built for every store)
      if (conflicts.size > 0) conflicts.delete(idHex(oid));
      t.invalidated.push(oid);
    };
    /** a store's error: a write conflict goes back to the client with the others, the rest fails the vote */
    const storeFailed = (e: unknown, oid: Oid, data: Uint8Array): void => {
      if (e instanceof ConflictError && e.constructor === ConflictError && e.serials) {
        conflicts.set(
          idHex(oid),
          new Map<PickleValue, PickleValue>([
            ['oid', oid],
            ['serials', tuple<PickleValue>(e.serials[0], e.serials[1])],
            ['data', data],
          ]),
        );
        return;
      }
      throw e;
    };
    const store = async (oid: Oid, serial: Tid, data: Uint8Array, blobFile: string | null): Promise<void> => {
      try {
        if (blobFile === null) await storage.store(oid, serial, data, meta);
        else await storage.storeBlob(oid, serial, data, blobFile, meta);
      } catch (e) {
        storeFailed(e, oid, data);
        return;
      }
      stored(oid);
    };
    /**
     * The operation done at once when the storage can (Storage.storeNow...: no promise per object, the usual
     * case); false when apply must do it. The same results and errors as apply's.
     */
    const now = (op: ReplayOp): boolean => {
      switch (op.op) {
        case 'store':
          if (storage.storeNow === undefined) return false;
          try {
            if (!storage.storeNow(op.oid, op.serial, op.data, meta)) return false;
          } catch (e) {
            storeFailed(e, op.oid, op.data);
            return true;
          }
          stored(op.oid);
          return true;
        case 'checkread':
          return storage.checkCurrentSerialNow?.(op.oid, op.serial, meta) ?? false;
        case 'delete':
          return storage.deleteObjectNow?.(op.oid, op.serial, meta) ?? false;
        default:
          return false;
      }
    };
    const apply = async (op: ReplayOp): Promise<void> => {
      switch (op.op) {
        case 'store':
          return store(op.oid, op.serial, op.data, null);
        case 'checkread':
          return storage.checkCurrentSerialInTransaction(op.oid, op.serial, meta);
        case 'delete':
          return storage.deleteObject(op.oid, op.serial, meta);
        case 'restore':
          return storage.restore(op.oid, op.serial, op.data, op.prevTxn, meta);
        case 'undo': {
          const r = await storage.undo(op.undoId, meta);
          t.invalidated.push(...r.oids);
          t.serials.push(...r.oids);
        }
      }
    };
    try {
      if (this.log.isLevelEnabled('BLATHER')) {
        this.log.blather(
          `(${this.label}) Preparing to commit transaction: ${t.log.stores} objects, ${t.log.size} bytes`,
        );
      }
      if (t.tid !== null || t.status !== ' ') await storage.tpcBegin(meta, t.tid, t.status);
      else await storage.tpcBegin(meta);
      const ops = t.log.inMemory();
      if (ops !== null) {
        for (const op of ops) if (!now(op)) await apply(op);
      } else for await (const op of t.log.replay()) if (!now(op)) await apply(op);
      // blobs: the reference pops them off the end of its list
      for (let i = t.blobs.length - 1; i >= 0; i--) {
        const b = t.blobs[i];
        await store(b.oid, b.serial, b.data, b.file);
      }
      if (conflicts.size === 0) {
        try {
          t.serials.push(...(await storage.tpcVote(meta)));
        } catch (e) {
          if (e instanceof ConflictError && e.constructor === ConflictError && e.oid && e.serials && e.data) {
            for (const c of [e, ...e.others]) {
              if (!c.oid || !c.serials || !c.data) continue;
              conflicts.set(
                idHex(c.oid),
                new Map<PickleValue, PickleValue>([
                  ['oid', c.oid],
                  ['serials', tuple<PickleValue>(c.serials[0], c.serials[1])],
                  ['data', c.data],
                ]),
              );
            }
          } else throw e;
        }
      }
      if (conflicts.size > 0) {
        // The client resolves these and votes again; its transaction and log stay. Unlike the reference,
        // the commit lock stays too: were it released, other commits could land during every resolution
        // round trip and exhaust the client's nine attempts (it then calls tpc_finish unvoted). Holding it,
        // the re-vote replays against the state the client resolved with. Timeout and disconnect still
        // release it.
        await storage.tpcAbort(meta);
        t.meta = null;
        t.resolving = true;
        this.log.blather(`(${this.label}) vote: ${conflicts.size} conflicts for the client to resolve`);
        served.stats.clientConflicts += conflicts.size;
        return [...conflicts.values()];
      }
      this.locked = true;
      if (!this.conn.connected) {
        // the client left while we voted: nothing will finish this transaction
        await this.abortActive('disconnect during vote');
        return null;
      }
      return t.serials.slice();
    } catch (e) {
      // the vote's error is the one the client gets
      await storage
        .tpcAbort(meta)
        .catch((e2) => this.log.error(`(${this.label}) tpc_abort after a failed vote failed`, e2));
      if (this.txn === t) await this.clearTransaction();
      else served.lock.release(this);
      if (e instanceof ConflictError) {
        served.stats.conflicts++;
        this.log.blather(`(${this.label}) conflict error ${e.message}`);
      } else if (
        !(e instanceof StorageTransactionError) &&
        !(e instanceof POSKeyError) &&
        !(e instanceof UndoError)
      ) {
        this.log.error(`(${this.label}) While voting`, e);
      }
      throw e;
    } finally {
      served.timings.vote((performance.now() - started) / 1000);
    }
  }

  /**
   * tpc_finish: commit; as soon as the transaction is durable and visible, write the other clients'
   * invalidations to their sockets, then send the committer info and the tid, in the same run of the event
   * loop (no request is served in between).
   */
  async tpcFinish(id: PickleValue, slot: ReplySlot): Promise<PickleValue> {
    if (!this.checkTid(id, false)) return null;
    if (!this.locked) throw new PythonError('builtins.AssertionError', tuple('finished called wo lock'));
    const t = this.txn!;
    const served = this.storage;
    const started = performance.now();
    served.stats.commits++;
    const invalidated = t.invalidated;
    let tid: Tid;
    this.finishSlot = slot;
    try {
      const finishing = served.storage.tpcFinish(t.meta!, (committed) => {
        this.finishSlot = null;
        // the other clients first, as the reference does: a committer that signals another process out of
        // band once its commit returns must find the invalidation already on its way to that process
        served.invalidate(this, committed, invalidated, t);
        const info = served.sizeInfo();
        // the reply once the invalidations are written: those of every transaction of a group commit go to a
        // client in one write
        served.afterInvalidations(() => {
          slot.append('info', [info]);
          slot.reply(committed);
        });
      });
      // the next voter may replay now: the storage's commit lock holds it back until this transaction is
      // written, and it writes while this one waits for its flush (FileStorage's group commit)
      served.lock.release(this);
      tid = await finishing;
      served.timings.finish((performance.now() - started) / 1000);
      // (the reply is given before tpcFinish returns, whatever ran between)
      served.flushInvalidations();
    } catch (e) {
      this.finishSlot = null;
      await this.abortActive('failed tpc_finish');
      throw e;
    }
    // the lock goes once the reply is queued (the reference releases after sending it)
    // (clearTransaction does not reject: the commit log's close and the removals swallow or log their errors)
    queueMicrotask(() => void this.clearTransaction());
    return tid;
  }

  async tpcAbort(id: PickleValue): Promise<null> {
    if (!this.checkTid(id, false)) return null;
    await this.abortActive('tpc_abort');
    return null;
  }

  // ----------------------------------------------------------------------------------------------------
  // reads

  /**
   * An oid looked up as the storage fails on it: FileStorage's index asserts bytes (AssertionError), and bytes
   * that are not 8 long are not found; MappingStorage's dict finds nothing else either (POSKeyError).
   */
  lookupOid(v: PickleValue | undefined): Oid {
    if (!isBytes(v) && this.pythonClass !== 'MappingStorage') {
      throw new PythonError('builtins.AssertionError', tuple());
    }
    if (!isOid(v)) throw new PythonError('ZODB.POSException.POSKeyError', tuple(v ?? null));
    return idCopy(v as Uint8Array);
  }

  /** A bad second argument: FileStorage fails on it only once the oid is found (else POSKeyError). */
  private async typeErrorIfFound(oid: Oid, v: PickleValue, what: string): Promise<never> {
    await this.storage.storage.load(oid);
    throw new PythonError(
      'builtins.TypeError',
      tuple(`${what} must be ${what === 'size' ? 'an int' : '8 bytes'}, not ${pyTypeName(v)}`),
    );
  }

  async loadBefore(oid: PickleValue, tid: PickleValue): Promise<PickleValue> {
    const served = this.storage;
    served.stats.loads++;
    const o = this.lookupOid(oid);
    if (!isOid(tid)) await this.typeErrorIfFound(o, tid, 'tid');
    const r = await served.storage.loadBefore(o, oidArg(tid));
    if (r === null) return null;
    return tuple<PickleValue>(r.data, r.start, r.end);
  }

  /**
   * loadBefore of the oid at req[oidAt..+8] before the tid at req[tidAt..+8] answered at once when the storage
   * has the record in memory (Storage.loadBeforeInto): 1 found (into `hit`, its data valid only until the
   * storage is used again), 0 none, -1 when loadBefore must answer. Before registration there is nothing to
   * load from: -1.
   */
  loadBeforeNow(req: Uint8Array, oidAt: number, tidAt: number, hit: LoadBeforeHit): number {
    const served = this.served;
    if (served === null) return -1;
    const storage = served.storage;
    if (storage.loadBeforeInto === undefined) return -1;
    const r = storage.loadBeforeInto(req, oidAt, req, tidAt, hit);
    if (r >= 0) served.stats.loads++;
    return r;
  }

  async loadSerial(oid: PickleValue, serial: PickleValue): Promise<PickleValue> {
    const o = this.lookupOid(oid);
    if (!isOid(serial)) await this.typeErrorIfFound(o, serial, 'serial');
    return this.storage.storage.loadSerial(o, oidArg(serial));
  }

  async history(oid: PickleValue, size: PickleValue): Promise<PickleValue> {
    // FileStorage looks the oid up first: a bad size matters only for an oid that is there
    const o = this.lookupOid(oid);
    if (size !== undefined && !isInt(size)) await this.typeErrorIfFound(o, size, 'size');
    const n = size === undefined ? 1 : Number(size);
    const entries = await this.storage.storage.history(o, n);
    return entries.map((e) => {
      const d = new Map<PickleValue, PickleValue>([
        ['time', new PyFloat(e.time)],
        ['user_name', e.userName],
        ['description', e.description],
        ['tid', e.tid],
        ['size', e.size],
      ]);
      for (const [k, v] of e.extension) d.set(k, v);
      return d;
    });
  }

  newOids(n: PickleValue): Promise<Oid[]> {
    // min(n, 100), then range(n): anything but an int is a TypeError
    if (n !== undefined && !isInt(n)) {
      throw new PythonError(
        'builtins.TypeError',
        tuple(
          n instanceof PyFloat
            ? "'float' object cannot be interpreted as an integer"
            : `'<' not supported between instances of 'int' and '${pyTypeName(n)}'`,
        ),
      );
    }
    let count = Math.min(n === undefined ? 100 : Number(n), 100);
    if (this.readOnly) throw new ReadOnlyError();
    if (!(count > 0)) count = 1;
    const storage = this.storage.storage;
    return (async () => {
      const out: Oid[] = [];
      for (let i = 0; i < count; i++) out.push(await storage.newOid());
      return out;
    })();
  }

  async getInvalidations(tid: PickleValue): Promise<PickleValue> {
    // not a tid: the reference's empty queue answers None, a queue with entries compares it (TypeError); its
    // queue over a MappingStorage (no lastInvalidations) always holds the last tid
    if (!isOid(tid)) {
      if (this.storage.invalidations.length === 0 && this.pythonClass !== 'MappingStorage') return null;
      throw new PythonError(
        'builtins.TypeError',
        tuple(`'>' not supported between instances of 'bytes' and '${pyTypeName(tid)}'`),
      );
    }
    const r = await this.storage.invalidationsSince(oidArg(tid));
    if (r === null) return null;
    this.log.info(`(${this.label}) Return ${r.oids.length} invalidations up to tid ${u64(r.tid)}`);
    return tuple<PickleValue>(r.tid, r.oids);
  }

  async pack(time: PickleValue, wait: PickleValue): Promise<null> {
    const t = time instanceof PyFloat ? time.value : Number(time);
    const served = this.storage;
    const run = async (): Promise<void> => {
      this.log.info(`(${this.label}) pack(time=${pyFloatRepr(t)}) started...`);
      const progress = this.packProgress(served);
      try {
        await served.storage.pack(t, zlibAwareReferences, { onProgress: progress.listener });
      } finally {
        // (a pack refused because another runs leaves that one's progress)
        if (progress.told) served.packProgress = null;
      }
      this.log.info(`(${this.label}) pack(time=${pyFloatRepr(t)}) complete`);
      served.broadcastInfo();
    };
    if (wait === undefined || pyTruthy(wait)) {
      await run();
      return null;
    }
    const p = run().catch((e) => this.log.error(`(${this.label}) pack failed`, e));
    served.packing = p.finally(() => {
      if (served.packing === p) served.packing = null;
    });
    return null;
  }

  /**
   * The pack's progress, kept for the metrics and told to the client that asked for the pack in ZEO's `info`
   * message, {'pack_progress': (done, total, phase)}: Python's ClientStorage.info only updates its info dict
   * with it. At most twice a second, and the end of each phase always (a progress bar reaches 100%).
   */
  private packProgress(served: ServedStorage): { listener: PackProgressListener; told: boolean } {
    const throttle = new Throttle(500);
    const progress = {
      told: false,
      listener: (done: number, total: number, phase: string): void => {
        progress.told = true;
        served.packProgress = { done, total, phase };
        if (done < total && !throttle.due()) return;
        const info: PyDict = new Map([['pack_progress', tuple<PickleValue>(done, total, phase)]]);
        // now: the client is waiting for the pack's reply, with nothing else to flush this out
        this.conn.sendAsync('info', [info], true);
      },
    };
    return progress;
  }

  async undoLog(first: PickleValue, last: PickleValue): Promise<PickleValue> {
    if (!this.storage.storage.capabilities.undo) return tuple();
    checkInts(first, last);
    const entries = await this.storage.storage.undoLog(Number(first), Number(last));
    return entries.map(undoDict);
  }

  async undoInfo(first: PickleValue, last: PickleValue, spec: PickleValue): Promise<PickleValue> {
    if (!this.storage.storage.capabilities.undo) return tuple();
    checkInts(first, last);
    const storage = this.storage.storage;
    if (spec === null || spec === undefined || (spec instanceof Map && spec.size === 0)) {
      return (await storage.undoInfo(Number(first), Number(last), null)).map(undoDict);
    }
    if (!(spec instanceof Map)) {
      throw new PythonError(
        'builtins.AttributeError',
        tuple(`'${pyTypeName(spec)}' object has no attribute 'items'`),
      );
    }
    const filter = undoSpecificationFilter(spec);
    return (await storage.undoLog(Number(first), Number(last), filter)).map(undoDict);
  }

  // ----------------------------------------------------------------------------------------------------
  // blobs

  async sendBlob(oid: PickleValue, serial: PickleValue, slot: ReplySlot): Promise<null> {
    if (!this.storage.storage.capabilities.blobs) {
      const cls = this.pythonClass;
      throw new PythonError('builtins.AttributeError', tuple(`'${cls}' object has no attribute 'loadBlob'`));
    }
    const o = this.lookupOid(oid);
    const s = oidArg(serial);
    const path = await this.storage.storage.loadBlob(o, s);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch {
      throw new POSKeyError(o, s);
    }
    try {
      slot.append('receiveBlobStart', [o, s]);
      for (;;) {
        const chunk = Buffer.allocUnsafe(59000);
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        slot.append('receiveBlobChunk', [o, s, chunk.subarray(0, bytesRead)]);
        await this.conn.writable();
        if (!this.conn.connected) return null;
      }
      slot.append('receiveBlobStop', [o, s]);
    } finally {
      await handle.close();
    }
    return null;
  }

  // ----------------------------------------------------------------------------------------------------
  // iteration

  iteratorStart(start: PickleValue, stop: PickleValue): number {
    if (this.iterators.size >= MAX_ITERATORS) {
      throw new PythonError('builtins.ValueError', tuple(`too many open iterators (${MAX_ITERATORS})`));
    }
    // FileIterator asserts bytes bounds; MappingStorage's generator fails on them only when first read
    for (const bound of [start, stop]) {
      if (bound === null || isOid(bound)) continue;
      if (this.pythonClass === 'FileStorage' && !isBytes(bound)) {
        throw new PythonError('builtins.AssertionError', tuple());
      }
      const id = this.nextIteratorId++;
      const error = new PythonError('builtins.TypeError', tuple('iterator bounds must be 8-byte tids'));
      const failing: AsyncIterator<TransactionRecord> = { next: () => Promise.reject(error) };
      this.iterators.set(id, failing);
      return id;
    }
    const id = this.nextIteratorId++;
    const it = this.storage.storage.iterator(
      start === null ? null : oidArg(start),
      stop === null ? null : oidArg(stop),
    );
    this.iterators.set(id, it[Symbol.asyncIterator]());
    return id;
  }

  async iteratorNext(iid: PickleValue): Promise<PickleValue> {
    const id = iteratorId(iid);
    const it = this.iterators.get(id) as AsyncIterator<TransactionRecord> | undefined;
    if (!it || !this.isTxnIterator(id)) throw new PythonError('builtins.KeyError', tuple(iid));
    const r = await it.next();
    if (r.done) {
      this.iterators.delete(id);
      this.lastTxnOfIterator.delete(id);
      return null;
    }
    const t = r.value;
    this.lastTxnOfIterator.set(id, t);
    return tuple<PickleValue>(t.tid, t.status, t.user, t.description, t.extension);
  }

  private isTxnIterator(id: number): boolean {
    return !this.recordIterators.has(id);
  }

  private readonly recordIterators = new Set<number>();

  iteratorRecordStart(txnIid: PickleValue, tid: PickleValue): number {
    const t = this.lastTxnOfIterator.get(iteratorId(txnIid));
    if (!t) throw new PythonError('builtins.KeyError', tuple(txnIid));
    if (!isOid(tid) || Buffer.compare(Buffer.from(t.tid), Buffer.from(tid as Uint8Array)) !== 0) {
      throw new PythonError(
        'builtins.Exception',
        tuple(`Out-of-order request for record iterator for transaction ${pyRepr(tid)}`),
      );
    }
    if (this.iterators.size >= MAX_ITERATORS) {
      throw new PythonError('builtins.ValueError', tuple(`too many open iterators (${MAX_ITERATORS})`));
    }
    const id = this.nextIteratorId++;
    // a storage that can give the records synchronously (FileStorage, for transactions it read whole) is
    // answered at once, without a promise per record
    const records = t.records as Partial<AsyncIterable<DataRecord> & Iterable<DataRecord>>;
    const it = records[Symbol.iterator]?.() ?? records[Symbol.asyncIterator]!();
    this.iterators.set(id, it);
    this.recordIterators.add(id);
    return id;
  }

  iteratorRecordNext(iid: PickleValue): PickleValue | Promise<PickleValue> {
    const id = iteratorId(iid);
    const it = this.iterators.get(id) as AsyncIterator<DataRecord> | Iterator<DataRecord> | undefined;
    if (!it || !this.recordIterators.has(id)) throw new PythonError('builtins.KeyError', tuple(iid));
    const r = it.next();
    return r instanceof Promise ? r.then((x) => this.recordItem(id, x)) : this.recordItem(id, r);
  }

  private recordItem(id: number, r: IteratorResult<DataRecord>): PickleValue {
    if (r.done) {
      this.iterators.delete(id);
      this.recordIterators.delete(id);
      return null;
    }
    const d = r.value;
    return tuple<PickleValue>(d.oid, d.tid, d.data, d.dataTxn);
  }

  async iteratorGc(iids: PickleValue): Promise<void> {
    if (!Array.isArray(iids)) {
      throw new PythonError('builtins.TypeError', tuple(`'${pyTypeName(iids)}' object is not iterable`));
    }
    for (const iid of iids) if (typeof iid === 'number') await this.closeIterator(iid);
  }

  private async closeIterator(id: number): Promise<void> {
    const it = this.iterators.get(id);
    this.iterators.delete(id);
    this.recordIterators.delete(id);
    this.lastTxnOfIterator.delete(id);
    try {
      await it?.return?.(undefined);
    } catch {
      // an iterator that fails to close has nothing left to give back
    }
  }

  /** record_iternext: at once when the storage has the record in memory (recordIternextCached), else awaited. */
  recordIternext(next: PickleValue): PickleValue | Promise<PickleValue> {
    const from = next === undefined || next === null ? null : oidArg(next);
    const storage = this.storage.storage;
    const now = storage.recordIternextCached?.(from);
    // (its data is a view of the storage's cache: copied before anything else uses the storage)
    if (now !== undefined) return tuple<PickleValue>(now.oid, now.tid, Buffer.from(now.data), now.next);
    return storage.recordIternext(from).then((r) => tuple<PickleValue>(r.oid, r.tid, r.data, r.next));
  }

  setClientLabel(label: PickleValue): void {
    this.label = `${pyStr(label)} ${this.conn.label}`;
  }
}

// ------------------------------------------------------------------------------------------------------
// the method table

function m(params: string[], required: number, fn: Handler, extra: Partial<MethodSpec> = {}): MethodSpec {
  return { params, required, fn, ...extra };
}

const METHODS: Record<string, MethodSpec> = {
  register: m(['storage_id', 'read_only'], 2, (s, a) => s.register(a[0], a[1])),
  get_info: m([], 0, (s) => s.served!.getInfo()),
  lastTransaction: m([], 0, (s) => s.served!.storage.lastTransaction(), { owner: 'FileStorage' }),
  getInvalidations: m(['tid'], 1, (s, a) => s.getInvalidations(a[0])),
  new_oids: m(['n'], 0, (s, a) => s.newOids(a[0])),
  new_oid: m([], 0, () => {
    throw new PythonError('builtins.AttributeError', tuple("'ZEOStorage' object has no attribute 'new_oid'"));
  }),
  pack: m(['time', 'wait'], 1, (s, a) => s.pack(a[0], a[1]), { deferred: true }),
  loadBefore: m(['oid', 'tid'], 2, (s, a) => s.loadBefore(a[0], a[1])),
  loadSerial: m(['oid', 'serial'], 2, (s, a) => s.loadSerial(a[0], a[1]), {
    owner: 'FileStorage',
  }),
  getTid: m(['oid'], 1, async (s, a) => (await s.served!.storage.load(s.lookupOid(a[0]))).serial, {
    owner: 'FileStorage',
  }),
  history: m(['tid', 'size'], 1, (s, a) => s.history(a[0], a[1])),
  record_iternext: m(
    ['next'],
    0,
    (s, a) => {
      if (!s.served!.storage.capabilities.recordIternext) {
        throw new PythonError(
          'builtins.AttributeError',
          tuple("'ZEOStorage' object has no attribute 'record_iternext'"),
        );
      }
      return s.recordIternext(a[0]);
    },
    { owner: 'FileStorage' },
  ),
  tpc_begin: m(['id', 'user', 'description', 'ext', 'tid', 'status'], 4, (s, a) => s.tpcBegin(a)),
  storea: m(['oid', 'serial', 'data', 'id'], 4, (s, a) => s.storea(a[0], a[1], a[2], a[3])),
  restorea: m(['oid', 'serial', 'data', 'prev_txn', 'id'], 5, (s, a) =>
    s.restorea(a[0], a[1], a[2], a[3], a[4]),
  ),
  deleteObject: m(['oid', 'serial', 'id'], 3, (s, a) => s.deleteObject(a[0], a[1], a[2])),
  checkCurrentSerialInTransaction: m(['oid', 'serial', 'id'], 3, (s, a) =>
    s.checkCurrentSerialInTransaction(a[0], a[1], a[2]),
  ),
  undoa: m(['trans_id', 'tid'], 2, (s, a) => s.undoa(a[0], a[1])),
  storeBlobStart: m([], 0, (s) => s.storeBlobStart()),
  storeBlobChunk: m(['chunk'], 1, (s, a) => s.storeBlobChunk(a[0])),
  storeBlobEnd: m(['oid', 'serial', 'data', 'id'], 4, (s, a) => s.storeBlobEnd(a[0], a[1], a[2], a[3])),
  storeBlobShared: m(['oid', 'serial', 'data', 'filename', 'id'], 5, (s, a) =>
    s.storeBlobShared(a[0], a[1], a[2], a[3], a[4]),
  ),
  vote: m(['tid'], 1, (s, a) => s.vote(a[0]), { deferred: true }),
  tpc_finish: m(['id'], 1, (s, a, slot) => s.tpcFinish(a[0], slot!)),
  tpc_abort: m(['tid'], 1, (s, a) => s.tpcAbort(a[0])),
  sendBlob: m(['oid', 'serial'], 2, (s, a, slot) => s.sendBlob(a[0], a[1], slot!)),
  undoLog: m(['first', 'last'], 2, (s, a) => s.undoLog(a[0], a[1]), { deferred: true }),
  undoInfo: m(['first', 'last', 'spec'], 3, (s, a) => s.undoInfo(a[0], a[1], a[2]), { deferred: true }),
  iterator_start: m(['start', 'stop'], 2, (s, a) => s.iteratorStart(a[0], a[1])),
  iterator_next: m(['iid'], 1, (s, a) => s.iteratorNext(a[0])),
  iterator_record_start: m(['txn_iid', 'tid'], 2, (s, a) => s.iteratorRecordStart(a[0], a[1])),
  iterator_record_next: m(['iid'], 1, (s, a) => s.iteratorRecordNext(a[0])),
  iterator_gc: m(['iids'], 1, (s, a) => s.iteratorGc(a[0])),
  server_status: m([], 0, (s) => s.served!.status()),
  set_client_label: m(['label'], 1, (s, a) => s.setClientLabel(a[0])),
  ping: m([], 0, () => null),
};

/** The methods that answer differently over a storage other writers commit to (Session.polled). */
const POLLING_METHODS: Record<string, MethodSpec> = {
  lastTransaction: m([], 0, (s) => s.polled(() => s.served!.storage.lastTransaction()), {
    owner: 'FileStorage',
    deferred: true,
  }),
  ping: m([], 0, (s) => s.polled(() => null), { deferred: true }),
};

// ------------------------------------------------------------------------------------------------------
// argument helpers

function isOid(v: PickleValue | undefined): boolean {
  return isBytes(v) && v.length === 8;
}

/** An int as Python takes one (bool is an int). */
function isInt(v: PickleValue | undefined): boolean {
  return typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean';
}

/** undoLog and undoInfo's first and last, compared with ints before anything is read. */
function checkInts(...vs: PickleValue[]): void {
  for (const v of vs) {
    if (!isInt(v) && !(v instanceof PyFloat)) {
      throw new PythonError(
        'builtins.TypeError',
        tuple(`'<' not supported between instances of '${pyTypeName(v)}' and 'int'`),
      );
    }
  }
}

/** An oid or tid argument: 8 bytes, copied (it may be a view into the frame). */
function oidArg(v: PickleValue | undefined): Uint8Array {
  if (!isOid(v)) throw new PythonError('builtins.TypeError', tuple('an oid or tid must be 8 bytes'));
  return idCopy(v as Uint8Array);
}

/**
 * The serial a store is based on. The reference hands it to the storage as it comes, which compares it only
 * with an existing object's tid: the Python client sends None for a new object, and old tests a str of eight
 * NULs. Both read here as z64 (no revision), which an existing object's tid never equals either.
 */
function serialArg(v: PickleValue | undefined): Uint8Array {
  if (v === null) return new Uint8Array(8);
  if (typeof v === 'string' && v.length === 8) return new Uint8Array(Buffer.from(v, 'latin1'));
  return oidArg(v);
}

function bytesArg(v: PickleValue | undefined): Uint8Array {
  if (!isBytes(v)) throw new PythonError('builtins.TypeError', tuple('a bytes argument was expected'));
  return v;
}

/** user and description: bytes, or str encoded as UTF-8 (the reference accepts both). */
function textOrBytes(v: PickleValue | undefined): Uint8Array {
  if (typeof v === 'string') return new Uint8Array(Buffer.from(v, 'utf8'));
  if (isBytes(v)) return new Uint8Array(v);
  if (v === null || v === undefined) return new Uint8Array(0);
  // TransactionMetaData calls v.encode('utf-8') on what is not bytes
  throw new PythonError(
    'builtins.AttributeError',
    tuple(`'${pyTypeName(v)}' object has no attribute 'encode'`),
  );
}

/** A dict pickled by calling dict (`dict(((k, v),))`, a dict subclass): its items, as Python would read it. */
function dictFromObject(o: PyObject): PyDict | null {
  if (!o.global?.is('builtins', 'dict') && !o.global?.is('__builtin__', 'dict')) return null;
  const out: PyDict = new Map();
  const first = o.args[0];
  if (first instanceof Map) for (const [k, v] of first) out.set(k, v);
  else if (Array.isArray(first)) {
    for (const pair of first) {
      if (!Array.isArray(pair) || pair.length !== 2) return null;
      out.set(pair[0], pair[1]);
    }
  } else if (first !== undefined) return null;
  for (const [k, v] of o.dictItems ?? []) out.set(k, v);
  return out;
}

/** Python's str(v). */
function pyStr(v: PickleValue | undefined): string {
  return typeof v === 'string' ? v : pyRepr(v ?? null);
}

function iteratorId(v: PickleValue): number {
  return typeof v === 'number' ? v : -1;
}

function undoDict(e: UndoLogEntry): PyDict {
  return new Map(undoEntryItems(e));
}

/**
 * undoInfo's specification: equal values, except ZopeUndo.Prefix.Prefix (Zope's undo screens), which matches
 * a value starting with its path: Prefix.__eq__ compares the other value's first len(path) characters.
 */
function undoSpecificationFilter(spec: PyDict): (e: UndoLogEntry) => boolean {
  const wanted = [...spec].map(([k, v]) => [k, prefixOf(v)] as const);
  return (e) => {
    const items = undoEntryItems(e);
    return wanted.every(([k, want]) => {
      const found = items.find(([ik]) => pyEquals(ik, k));
      const have = found ? found[1] : null;
      if (typeof want === 'object' && want !== null && 'prefix' in want) {
        const p = want.prefix;
        if (typeof have === 'string') return have.slice(0, p.length) === p;
        if (isBytes(have)) return Buffer.from(have).toString('utf8').slice(0, p.length) === p;
        return false;
      }
      return pyEquals(have, want);
    });
  };
}

function prefixOf(v: PickleValue): PickleValue | { prefix: string } {
  if (v instanceof PyObject && v.global?.is('ZopeUndo.Prefix', 'Prefix')) {
    // pickled with its state {'value': (len(path), path)}, or built as Prefix(path)
    let path: PickleValue = null;
    const state = v.state;
    if (state instanceof Map) {
      const value = state.get('value');
      if (isTuple(value)) path = value[1];
    } else if (v.args.length > 0) path = v.args[0];
    return {
      prefix: typeof path === 'string' ? path : isBytes(path) ? Buffer.from(path).toString('utf8') : '',
    };
  }
  return v;
}

/** Python's TypeError text for a wrong number of positional arguments (self counted). */
function arityMessage(owner: string, name: string, spec: MethodSpec, given: number): string {
  const fn = `${owner}.${name}()`;
  if (given < spec.required) {
    const missing = spec.params.slice(given, spec.required).map((p) => `'${p}'`);
    const list =
      missing.length === 1
        ? missing[0]
        : missing.length === 2
          ? `${missing[0]} and ${missing[1]}`
          : `${missing.slice(0, -1).join(', ')}, and ${missing[missing.length - 1]}`;
    return `${fn} missing ${missing.length} required positional argument${missing.length === 1 ? '' : 's'}: ${list}`;
  }
  const lo = spec.required + 1;
  const hi = spec.params.length + 1;
  const takes =
    lo === hi
      ? `${hi} positional argument${hi === 1 ? '' : 's'}`
      : `from ${lo} to ${hi} positional arguments`;
  return `${fn} takes ${takes} but ${given + 1} ${given + 1 === 1 ? 'was' : 'were'} given`;
}
