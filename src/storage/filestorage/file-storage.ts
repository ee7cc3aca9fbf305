// FileStorage: ZODB's FileStorage (src/ZODB/FileStorage/FileStorage.py) over a Data.fs that Python's ZODB can
// open, and that zeo-ts opens after runzeo: same records, same index file, same lock file.
//
// Reads are positional reads on the data file (no shared seek pointer, no sync fs call): the index gives the
// position of an object's current record; older revisions are found through the records' previous pointers,
// data shared with an older record (undo, restore) through back pointers. A record with no data and a back
// pointer of 0 is an object whose creation was undone, or that deleteObject removed: load raises POSKeyError.
//
// Two-phase commit, as ZODB's (its bookkeeping in BaseStorage, ../base.ts): tpcBegin takes the commit lock
// (FIFO) and picks the tid; store, restore, deleteObject and undo put records in a transaction buffer (in
// memory, spilled to Data.fs.tmp past a size);
// tpcVote writes the whole transaction after the last one written with status 'c' (one positional write);
// tpcFinish overwrites the status with ' ', releases the lock, and once a flush has made the transaction
// durable moves the end of the committed data, updates the index and lastTransaction and calls onCommitted;
// tpcAbort truncates what vote wrote.
//
// Durability: a commit returns only once it is on disk. Vote writes the transaction (a plain write, so a full
// disk or another write error fails the vote, as in ZODB; a small one synchronously, into the page cache);
// tpcFinish overwrites the status byte and waits for a flush of the file (fdatasync) that started after that
// write, as ZODB flushes before it returns.
// Group commit: the commit lock goes as soon as the status is written, so the next transaction stores, votes
// (writes after this one) and finishes while this one's flush runs; one flush then covers every transaction
// whose status was written before it started (the flusher: one flush at a time, started at the end of the
// event loop's turn, so that the tpc_finish calls read in one turn share it; the transactions written meanwhile
// wait for the next, which starts when it ends). A transaction written but not yet durable is seen
// only by the transactions that follow it: their conflict checks (store, deleteObject,
// checkCurrentSerialInTransaction) read `unflushedIndex` first, and the next tid comes after its (`wltid`);
// restore, undo and the pack's swap wait for the flushes (drained), as they read the file's transactions.
// Everyone else (loads, loadBefore by tid, the iterator, lastTransaction, lastInvalidations, the ZEO
// server's invalidations and last tid, which it takes from onCommitted and lastTransaction) sees it only
// once it is durable: then, for each transaction the flush covered, in commit order and in one synchronous
// run, the index, the committed end and lastTransaction move and onCommitted runs. A crash between the write
// and the flush leaves a transaction that nobody saw and no client had acknowledged, in the file or not.
// A flush (or status write) that fails is ZODB's "Failure in _finish": every transaction written and not yet
// durable fails, none acknowledged, and the storage closes; unlike ZODB, the first of them goes back to 'c'
// and the file ends after it, so the next open truncates it (a later fsync that succeeds says nothing of
// pages a failed one lost: nothing after a failed flush is acknowledged).
// Torn transactions: the format has no checksum, so the next open cannot tell a transaction with a block of
// its data never written (its header, trailer and status ' ' on disk) from a whole one: the data must not
// reach the disk after the status byte. One flush suffices where the transaction is appended: the file's new
// size, without which none of it can be read, is on disk only once its data is (ext4's data=ordered, its
// default, and XFS; a crash before that leaves the file at its old size). Not so where the transaction
// overwrites bytes that may already be on disk past the committed end, with their size (a transaction aborted
// after its vote, a crashed commit truncated at open: `overwriteEnd`): there vote flushes the data, in the
// background (the vote's reply, the client's work and its tpc_finish round trip overlap it), and finish waits
// for that flush before it clears the status.
// The commit's flush goes through the thread pool, unless the server says nothing else waits
// (mayFlushInline) and recent flushes were fast (under INLINE_FLUSH_MAX_US): then it runs on the event loop,
// as every one of ZODB's does, and saves the thread pool's round trip.
//
// Reads: the index is what Data.fs.index holds, its big buckets read in the background or when a load first
// needs one (FsIndex.pending); loads go through a bounded cache of whole data records (the data file's
// ReadCache, FileStorageOptions.cacheBytes), which commits write through to.
//
// Deviations from ZODB (each deliberate): tpcBegin refuses a given tid that is not after the last transaction
// (ZODB writes it and its own scan then warns of a time-stamp reduction); store/restore/undo after tpcVote and
// tpcFinish before tpcVote are StorageTransactionErrors; user/description/extension lengths are checked before
// the commit lock is taken; an undo that fails leaves nothing in the transaction (ZODB leaves the records of
// the oids that could be undone in its temporary file); restore finds the prev_txn record through the object's
// chain of records instead of scanning back over every transaction (the same record); a data file whose
// records contradict themselves raises CorruptedError where ZODB would sometimes read on.
// checkCurrentSerialInTransaction checks at once, as ZODB's FileStorage does (BaseStorage's): the commit lock
// is held from tpcBegin on, so the answer cannot change before the vote.

import { rm, stat, unlink } from 'node:fs/promises';
import {
  BaseStorage,
  pendingState,
  undoLogEntry,
  UNDO_LOG_DEFAULT_LAST,
  type PendingTransaction,
  type TransactionMeta,
  type TransactionStart,
} from '../base.js';
import { BlobDirectory, isBlobRecord } from '../blobs/index.js';
import { CommitLock } from '../commit-lock.js';
import {
  ConflictError,
  CorruptedError,
  MultipleUndoErrors,
  POSKeyError,
  ReadConflictError,
  StorageError,
  StorageTransactionError,
  UndoError,
  Unsupported,
} from '../errors.js';
import { decodeExtension } from '../extension.js';
import { searchUndoLog, type UndoCandidate } from '../undo-log.js';
import { compareIds, idCopy, idEquals, maxtid, p64, u64, z64, type Oid, type Tid } from '../ids.js';
import {
  capabilitiesOf,
  zodbInterfaces,
  type ConflictResolver,
  type DataRecord,
  type HistoryEntry,
  LoadBeforeHit,
  type LoadBeforeResult,
  type LoadResult,
  type ReferencesFinder,
  type StoragePackOptions,
  type RestoredRecords,
  type Storage,
  type StorageCapabilities,
  type TransactionMetaData,
  type TransactionRecord,
  type UndoLogEntry,
  type UndoResult,
} from '../interfaces.js';
import { preciseNow, tidTime, TimeStamp } from '../timestamp.js';
import { MIN_CACHE_BYTES, RandomAccessFile, type PositionalIO, type ReadCacheStats } from './file.js';
import {
  BACK_PTR_LEN,
  checkDataHeader,
  copy8,
  DATA_HDR_LEN,
  dataRecordLen,
  checkTransaction,
  decodeRecord,
  decodeTxnHeader,
  encodeTxnHeader,
  FILE_HEADER_LEN,
  FILE_MAGIC,
  MAX_META_LEN,
  readU64,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLen,
  writeU64,
  type DecodedRecord,
  type TxnHeaderFull,
} from './format.js';
import type { FsIndex } from './fsindex.js';
import { indexPathFor, writeIndexFile } from './indexfile.js';
import { LockFile } from './lockfile.js';
import { FileStorageError, packFileStorage, type PackedFile, type PackTarget } from './pack.js';
import {
  equalAt,
  loadBack,
  missing,
  READ_AHEAD,
  readDataRecord,
  readTxnBefore,
  readTxnHeader,
  type RecordAt,
} from './records.js';
import { scanDataFile, truncateDamagedTail, type ScanLog } from './scan.js';

export { FileStorageError };

// ---------------------------------------------------------------------------------------------------------
// errors (ZODB.FileStorage.FileStorage's own; FileStorageError lives with the packer, which raises it too)

/** The data file would grow past the quota (FileStorage's `quota`). */
export class FileStorageQuotaError extends FileStorageError {
  override readonly pythonName: string = 'ZODB.FileStorage.FileStorage.FileStorageQuotaError';
  override name = 'FileStorageQuotaError';
}

// ---------------------------------------------------------------------------------------------------------
// options

export interface FileStorageOptions {
  /** start a new, empty file even if one exists (ZODB's create=True) */
  create?: boolean;
  /** open for reading only: no lock file, no writes (not even the index file) */
  readOnly?: boolean;
  /** the blob directory; blobs are Unsupported without one */
  blobDir?: string | null;
  /** the blob directory's layout (default: its `.layout` marker, else as ZODB chooses) */
  blobLayout?: 'bushy' | 'lawn';
  /** pack() collects garbage unless told otherwise (ZODB's pack_gc, default true) */
  packGc?: boolean;
  /** keep the file before the last pack as Data.fs.old (ZODB's pack_keep_old, default true) */
  packKeepOld?: boolean;
  /** FileStorageQuotaError when a record would start past this many bytes (ZODB's quota) */
  quotaBytes?: number | null;
  /** tries to resolve write conflicts in store() and undo(); none: ConflictError / UndoError */
  conflictResolver?: ConflictResolver | null;
  /** progress of the open-time scan: bytes scanned, bytes to scan */
  onProgress?: (done: number, total: number) => void;
  /** where the storage's messages go (ZODB's logger 'ZODB.FileStorage', same wording) */
  log?: ScanLog;
  /** flush commits to disk (default true; only tests on throwaway files turn it off) */
  fsync?: boolean;
  /** bytes of a transaction kept in memory before the rest goes to Data.fs.tmp (default 16 MiB) */
  spillThreshold?: number;
  /**
   * bytes of data records kept in memory for loads (a ReadCache of the data file; default 64 MiB, 0 for
   * none): a bound on all of its memory, table and slabs
   */
  cacheBytes?: number;
  /** the clock for new tids, in milliseconds since the epoch (default preciseNow: Date.now with microseconds) */
  clock?: () => number;
  /** the data file's system calls (tests: a failing fdatasync, say) */
  io?: PositionalIO;
}

/** A transaction as FileStorage's iterator gives it: with its position in the file. */
export interface FileTransactionRecord extends TransactionRecord {
  /** the transaction header's file position */
  pos: number;
  records: AsyncIterable<FileDataRecord>;
}

/** A data record as FileStorage's iterator gives it: with its position in the file. */
export interface FileDataRecord extends DataRecord {
  pos: number;
}

/** FileStorage's undoLog entries also carry the transaction's length (ZODB's 'size'). */
export interface FileUndoLogEntry extends UndoLogEntry {
  size: number;
}

// ---------------------------------------------------------------------------------------------------------
// small helpers

const DEFAULT_SPILL = 16 << 20;

/** Overwrites the status byte of the transaction at `tpos` (synchronously where the file offers it: one byte). */
async function writeStatus(file: RandomAccessFile, tpos: number, status: string): Promise<void> {
  const byte = Buffer.from(status, 'latin1');
  if (file.writesNow) file.writeNow(tpos + 16, byte);
  else await file.write(tpos + 16, byte);
}
/**
 * the biggest transaction vote writes synchronously (RandomAccessFile.writeNow): about what the page cache
 * takes in the time of the thread-pool round trip it saves
 */
const WRITE_NOW_MAX = 128 << 10;
/**
 * a commit's flush runs on the event loop (when mayFlushInline allows it) only while recent flushes took less
 * than this: on a disk that flushes slowly, a client that comes in meanwhile would wait too long
 */
const INLINE_FLUSH_MAX_US = 1000;
/**
 * while flushes go through the thread pool, every this many of them that could have run inline is timed
 * inline: a pool flush's time includes the pool's round trip (a few hundred µs on a busy machine), so an
 * average of those alone can stay above INLINE_FLUSH_MAX_US on a disk that flushes in half of it
 */
const INLINE_FLUSH_RETIME = 16;
export const DEFAULT_CACHE_BYTES = 64 << 20;
/**
 * transactions up to this size are read whole by the iterator (one read instead of one per record: a copy of
 * 5000-record transactions went from 30,000 reads to 8); bigger ones record by record, so memory stays bounded
 */
const WHOLE_TXN_READ = 8 << 20;
/** the iterator reads the file in chunks of this size (at least): small transactions need no read each */
const ITER_CHUNK = 128 << 10;
/** restoreRecords' arena buffers (RecordArena), unless the spill threshold is smaller */
const ARENA_BYTES = 256 << 10;

/**
 * What a FileStorage offers: its @implementer list, as runzeo's get_info reports it; with a blob directory,
 * what ZODB's alsoProvides(IBlobStorageRestoreable) puts in front.
 */
function fileStorageCapabilities(blobs: boolean): StorageCapabilities {
  const own =
    'IStorageRestoreable IStorageIteration IStorageUndoable IStorageCurrentRecordIteration IExternalGC IStorage';
  return capabilitiesOf(zodbInterfaces(blobs ? `IBlobStorageRestoreable IBlobStorage ${own}` : own), {
    lastInvalidations: true,
  });
}

/** An oid as a Map key: its 8 bytes as latin1 characters. */
function key(id: Uint8Array): string {
  return String.fromCharCode(id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

// ---------------------------------------------------------------------------------------------------------
// the transaction buffer (ZODB's Data.fs.tmp)

/**
 * The data records of the transaction being committed, as they will be written after its header. Kept in
 * memory up to a threshold; past it everything goes to a spill file (Data.fs.tmp), appended as it comes.
 */
class TxnBuffer {
  private chunks: Buffer[] = [];
  /** bytes in `chunks` */
  private memBytes = 0;
  /** bytes at the start of the spill file */
  private spilled = 0;
  private spillFile: RandomAccessFile | null = null;

  constructor(
    private readonly threshold: number,
    private readonly openSpill: () => Promise<RandomAccessFile>,
  ) {}

  get size(): number {
    return this.spilled + this.memBytes;
  }

  /** Appends `parts` as one record; resolves with its offset. The caller serializes calls. */
  async append(parts: Uint8Array[]): Promise<number> {
    const at = this.add(parts);
    if (this.memBytes > this.threshold) await this.spill();
    return at;
  }

  /** Whether `n` more bytes stay in memory (appendNow may take them). */
  fits(n: number): boolean {
    return this.memBytes + n <= this.threshold;
  }

  /** append of a record that fits, at once: its offset. */
  appendNow(head: Uint8Array, data: Uint8Array | null): number {
    return this.add(data === null ? [head] : [head, data]);
  }

  private add(parts: Uint8Array[]): number {
    const at = this.size;
    let n = 0;
    for (const p of parts) n += p.length;
    const rec = Buffer.allocUnsafe(n);
    let o = 0;
    for (const p of parts) {
      rec.set(p, o);
      o += p.length;
    }
    this.chunks.push(rec);
    this.memBytes += n;
    return at;
  }

  async spill(): Promise<void> {
    if (!this.spillFile) this.spillFile = await this.openSpill();
    const data = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.memBytes);
    await this.spillFile.write(this.spilled, data);
    this.spilled += data.length;
    this.chunks = [];
    this.memBytes = 0;
  }

  /** `len` bytes at `offset` (a copy). */
  async read(offset: number, len: number): Promise<Uint8Array> {
    const out = Buffer.allocUnsafe(len);
    let done = 0;
    if (offset < this.spilled) {
      const n = Math.min(len, this.spilled - offset);
      await this.spillFile!.readExact(offset, n, out, 0);
      done = n;
    }
    let base = this.spilled;
    for (const c of this.chunks) {
      if (done === len) break;
      const want = offset + done;
      if (want < base + c.length) {
        const from = want - base;
        const n = Math.min(c.length - from, len - done);
        c.copy(out, done, from, from + n);
        done += n;
      }
      base += c.length;
    }
    return out;
  }

  /** Drops everything from `size` on. */
  truncate(size: number): void {
    if (size >= this.spilled) {
      let keep = size - this.spilled;
      const chunks: Buffer[] = [];
      for (const c of this.chunks) {
        if (keep <= 0) break;
        chunks.push(c.length <= keep ? c : c.subarray(0, keep));
        keep -= c.length;
      }
      this.chunks = chunks;
      this.memBytes = size - this.spilled;
    } else {
      this.chunks = [];
      this.memBytes = 0;
      this.spilled = size;
    }
  }

  /**
   * Appends records the caller wrote and hands over (RecordArena: no copy, no promise); their offset. The
   * caller calls spill() when `spillDue` says so.
   */
  appendOwned(rec: Buffer): number {
    const at = this.size;
    this.chunks.push(rec);
    this.memBytes += rec.length;
    return at;
  }

  get spillDue(): boolean {
    return this.memBytes > this.threshold;
  }

  /** Nothing went to the spill file: every record is in memory (forEachRecord). */
  get inMemory(): boolean {
    return this.spilled === 0;
  }

  /** Calls fn(offset, record) for each record appended, in order, when all are in memory (inMemory). */
  forEachRecord(fn: (offset: number, record: Buffer) => void): void {
    if (this.spilled) return;
    let offset = 0;
    for (const c of this.chunks) {
      fn(offset, c);
      offset += c.length;
    }
  }

  /**
   * Writes the whole transaction: `header`, the records, `trailer`, at `pos` of `file` (not flushed: the
   * caller does that).
   */
  async writeTo(file: RandomAccessFile, pos: number, header: Buffer, trailer: Buffer): Promise<void> {
    if (!this.spilled) {
      // the usual case: one positional write of the whole transaction, into the page cache at once if small
      const whole = Buffer.concat([header, ...this.chunks, trailer]);
      if (whole.length <= WRITE_NOW_MAX && file.writesNow) file.writeNow(pos, whole);
      else await file.write(pos, whole);
      return;
    }
    await file.write(pos, header);
    await this.spillFile!.copyTo(file, 0, this.spilled, pos + header.length);
    let at = pos + header.length + this.spilled;
    for (const c of this.chunks) {
      await file.write(at, c);
      at += c.length;
    }
    await file.write(at, trailer);
  }
}

/**
 * restoreRecords' records, written one after the other into big buffers handed to the transaction buffer
 * (appendOwned) as they fill: a buffer per record, kept until the vote, would outlive the young generation
 * (the GC's copies of a big transaction's records were a fifth of its copy's CPU). The transaction buffer's
 * chunks then hold several records each: forEachRecord (the read cache's write-through) is not used for it.
 */
class RecordArena {
  private chunk: Buffer = Buffer.alloc(0);
  private used = 0;
  /** the start of what is not handed over yet */
  private from = 0;

  constructor(
    private readonly buf: TxnBuffer,
    /** the size of its buffers (a bigger record gets one of its own) */
    private readonly chunkBytes: number,
  ) {}

  /** the offset in the transaction buffer of the next record */
  get size(): number {
    return this.buf.size + this.used - this.from;
  }

  /** Room for `n` bytes: the buffer and the offset in it to write them at. */
  take(n: number): [Buffer, number] {
    if (this.used + n > this.chunk.length) {
      this.push();
      this.chunk = Buffer.allocUnsafeSlow(Math.max(this.chunkBytes, n));
      this.used = 0;
      this.from = 0;
    }
    const at = this.used;
    this.used += n;
    return [this.chunk, at];
  }

  /** Hands what was written so far to the transaction buffer. */
  push(): void {
    if (this.used === this.from) return;
    this.buf.appendOwned(this.chunk.subarray(this.from, this.used));
    this.from = this.used;
  }
}

// ---------------------------------------------------------------------------------------------------------
// the transaction in progress

/** A record of the transaction in progress (ZODB's tindex entry, with what undo reads back from it). */
interface TEntry {
  oid: Oid;
  /** its file position once written */
  pos: number;
  /** its offset in the transaction buffer */
  offset: number;
  tid: Tid;
  plen: number;
  back: number;
}

interface Pending extends PendingTransaction {
  /** the transaction header's length (ZODB's _thl) */
  readonly thl: number;
  /** where the transaction goes: the committed end when it began */
  readonly tpos: number;
  readonly buf: TxnBuffer;
  readonly tindex: Map<string, TEntry>;
  /** blobs moved into place by this transaction: removed if it aborts */
  readonly blobs: Array<[Oid, Tid]>;
  /** vote wrote the transaction to the data file (ZODB's _nextpos != 0) */
  written: boolean;
  /**
   * the flush of what vote wrote, started by vote when the transaction overwrites `overwriteEnd`'s bytes and
   * awaited by finish (and abort): resolves with its error, or null once the data is on disk; null when there
   * is none
   */
  flushed: Promise<Error | null> | null;
  nextPos: number;
  /** restoreRecords filled it (a bulk copy): no write-through into the read cache after it commits */
  bulk: boolean;
  /** settles the promise _finish waits on once a flush covered the transaction (group commit) */
  durable: { resolve: () => void; reject: (e: unknown) => void } | null;
}

/** The data file and the readers using it: a pack swaps in a new one, the old one closes when its readers end. */
class DataFileRef {
  users = 0;
  retired = false;
  private drained: Array<() => void> = [];

  constructor(readonly file: RandomAccessFile) {}

  enter(): void {
    this.users++;
  }

  leave(): void {
    if (--this.users > 0) return;
    for (const d of this.drained.splice(0)) d();
    // (a retired file is one a pack replaced: nothing is written to it, so a failed close loses nothing)
    if (this.retired) void this.file.close().catch(() => {});
  }

  /** Resolves once no reader uses the file. */
  idle(): Promise<void> {
    if (this.users === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Closes the file once its readers are done. */
  retire(): void {
    this.retired = true;
    if (this.users === 0) void this.file.close().catch(() => {}); // (as in leave)
  }
}

// ---------------------------------------------------------------------------------------------------------

export class FileStorage extends BaseStorage<Pending> implements Storage {
  private readonly quota: number | null;
  private readonly doFsync: boolean;
  private readonly spillThreshold: number;
  protected readonly clock: () => number;
  private readonly io: PositionalIO | undefined;
  private readonly packGc: boolean;
  private readonly packKeepOld: boolean;
  private readonly cacheBytes: number;
  readonly log: ScanLog;
  /** the storage's commit lock (ZODB's _commit_lock), shared with the packer */
  readonly commitLock = new CommitLock();
  /** see Storage.mayFlushInline */
  mayFlushInline: ((commits: number) => boolean) | null = null;
  /** see Storage.onFlush */
  onFlush: ((seconds: number) => void) | null = null;
  /** commits flushed on the event loop and through the thread pool */
  readonly flushes = { inline: 0, threadPool: 0 };
  /** how long a commit's flush takes, µs (exponentially weighted; Infinity until one is timed) */
  private flushMicros = Infinity;
  /** flushes sent to the thread pool by flushMicros alone since one was last timed inline */
  private poolFlushesByTime = 0;

  private fileRef: DataFileRef;
  private index: FsIndex;
  /** the end of the last committed transaction (ZODB's _pos) */
  private pos: number;
  /**
   * bytes of the data file from `pos` up to here may be on disk already, with the size that covers them (an
   * aborted transaction's, a crashed commit's): a transaction written over them flushes its data before its
   * status (see the header comment)
   */
  private overwriteEnd: number;
  /** the last durable transaction's tid: what readers see */
  private ltid: Tid;
  /**
   * the end of the last transaction written, status and all, durable or not: where the next one goes (`pos`
   * while nothing waits for a flush); `wltid` its tid
   */
  private wpos: number;
  private wltid: Tid;
  /**
   * oid → its newest record in a transaction written but not durable yet: the conflict checks of the next
   * transactions see these, readers do not (the index gets them once they are durable)
   */
  private readonly unflushedIndex = new Map<string, number>();
  /** transactions written (status too), waiting for the next flush to start, in commit order */
  private flushQueue: Pending[] = [];
  /** the transactions the flush in progress covers; null while none runs */
  private flushing: Pending[] | null = null;
  /** a startDueFlush is queued (setImmediate) */
  private flushDue = false;
  /** drained()'s callers */
  private drainWaiters: Array<() => void> = [];
  /** a status write or flush of a commit failed: the storage is closing, later finishes fail with it */
  private flushFailure: Error | null = null;
  /** where failFinish cut the file: transactions after it are gone already */
  private failedEnd: number | null = null;
  /** the largest oid in use (ZODB's _oid) */
  private maxOid: Oid;
  protected lastTs: Tid;
  private spillFile: RandomAccessFile | null = null;
  private readonly iterFiles = new Set<RandomAccessFile>();
  private packing = false;
  private packCount = 0;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly path: string,
    file: RandomAccessFile,
    private lockFile: LockFile | null,
    init: { index: FsIndex; pos: number; ltid: Tid; maxOid: Oid; overwriteEnd: number },
    readonly blobDirectory: BlobDirectory | null,
    options: FileStorageOptions,
  ) {
    super({
      name: path,
      readOnly: options.readOnly ?? false,
      capabilities: fileStorageCapabilities(blobDirectory !== null),
      resolver: options.conflictResolver,
    });
    this.quota = options.quotaBytes ?? null;
    this.doFsync = options.fsync ?? true;
    this.spillThreshold = options.spillThreshold ?? DEFAULT_SPILL;
    this.clock = options.clock ?? preciseNow;
    this.io = options.io;
    this.packGc = options.packGc ?? true;
    this.packKeepOld = options.packKeepOld ?? true;
    this.cacheBytes = cacheBytesOf(options);
    this.log = options.log ?? (() => {});
    this.fileRef = new DataFileRef(file);
    this.index = init.index;
    this.pos = init.pos;
    this.overwriteEnd = init.overwriteEnd;
    this.ltid = init.ltid;
    this.wpos = init.pos;
    this.wltid = init.ltid;
    this.maxOid = init.maxOid;
    this.lastTs = init.ltid;
  }

  /**
   * Opens (or creates) the FileStorage at `path`: takes Data.fs.lock unless read-only, writes the FS30 header
   * into a new file, reads Data.fs.index when it agrees with the file and scans the rest (or everything),
   * truncates a commit interrupted by a crash (when writable), and saves a rebuilt index. CorruptedError for a
   * damaged file, LockError when another process has it open for writing.
   */
  static async open(path: string, options: FileStorageOptions = {}): Promise<FileStorage> {
    const readOnly = options.readOnly ?? false;
    const log: ScanLog = options.log ?? (() => {});
    let create = options.create ?? false;
    if (readOnly && create) throw new FileStorageError("can't create a read-only file");
    const fileOptions = { cacheBytes: cacheBytesOf(options), io: options.io };
    const lock = readOnly ? null : await LockFile.acquire(path + '.lock');
    let file: RandomAccessFile | null = null;
    let index: FsIndex | null = null;
    try {
      if (!create) {
        try {
          // (synchronous open and fstat: see RandomAccessFile.openSync)
          file = RandomAccessFile.openSync(path, readOnly ? 'r' : 'r+', undefined, fileOptions);
        } catch (e) {
          if (readOnly || (e as { code?: string }).code !== 'ENOENT') throw e;
          create = true;
        }
      }
      if (file === null) {
        file = await RandomAccessFile.open(path, 'w+', undefined, fileOptions);
        // (on disk before any commit: writeDurable flushes only what it writes)
        if (options.fsync ?? true) await file.writeDurable(0, FILE_MAGIC);
        else await file.write(0, FILE_MAGIC);
        // a new file: an index left by an earlier one does not describe it
        // (one that cannot be removed is an error: it would be read at the next open)
        await rm(indexPathFor(path), { force: true });
      }
      // the index's big buckets stay in Data.fs.index until used, or read in the background (below)
      const scan = await scanDataFile(file, path, {
        readOnly,
        onProgress: options.onProgress,
        log,
        fileSize: file.end,
        lazyIndex: true,
      });
      index = scan.index;
      if (scan.magic === null && !readOnly) {
        // an empty (0-byte) file: read_index writes the header
        if (options.fsync ?? true) await file.writeDurable(0, FILE_MAGIC);
        else await file.write(0, FILE_MAGIC);
      }
      const sizeAtOpen = file.end;
      if (scan.recovery && !readOnly) {
        await truncateDamagedTail(file, path, scan.recovery.pos, log);
        await file.truncate(scan.recovery.pos);
      }
      const pos = scan.pos;
      if (!readOnly && (!scan.usedIndexFile || scan.legacyIndexFile)) {
        await writeIndexFile(path, scan.index, pos, { fsync: options.fsync ?? true });
      }
      futureCheck(path, scan.lastTid, log);
      let blobs: BlobDirectory | null = null;
      if (options.blobDir) {
        // ZODB: a new storage starts with an empty blob directory (remove_committed_dir)
        if (create) await rm(options.blobDir, { recursive: true, force: true });
        blobs = await BlobDirectory.open(options.blobDir, {
          layout: options.blobLayout ?? 'automatic',
          log,
        });
      }
      const storage = new FileStorage(
        path,
        file,
        lock,
        { index: scan.index, pos, ltid: scan.lastTid, maxOid: scan.maxOid, overwriteEnd: sizeAtOpen },
        blobs,
        options,
      );
      // the rest of the index, in the background once open returns (a load that needs a bucket first asks
      // for it at once); a bucket that cannot be read now is tried again by the first load that needs it
      if (!index.loaded) {
        const loading = index;
        setImmediate(() => {
          if (storage.closed || storage.index !== loading) return;
          loading.pendingAll()?.catch((e: unknown) => {
            if (!storage.closed) log('error', `loading index: ${(e as Error).message} (retried when needed)`);
          });
        });
      }
      return storage;
    } catch (e) {
      // the open error is the one to report
      await index?.dispose().catch(() => {});
      await file?.close().catch(() => {});
      await lock?.release().catch(() => {});
      throw e;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // identity and status

  lastTransaction(): Tid {
    return this.ltid;
  }

  protected override lastWrittenTid(): Tid {
    return this.wltid;
  }

  /** The size of the committed data (ZODB: the end of the last transaction). */
  getSize(): number {
    return this.pos;
  }

  /** The number of objects in the index (deleted ones count until a pack removes them). */
  len(): number {
    return this.index.size;
  }

  /** The read cache's figures (see FileStorageOptions.cacheBytes), null when there is none. */
  cacheStats(): ReadCacheStats | null {
    return this.fileRef.file.cache?.stats() ?? null;
  }

  /**
   * Runs `fn` with the data file, the index that goes with it and the committed end (read synchronously before
   * `fn` runs). `oid`: the object `fn` looks up; its bucket of the index is loaded first, when Data.fs.index
   * left it deferred (see FsIndex.pending).
   */
  private async reading<T>(
    oid: Oid | null,
    fn: (file: RandomAccessFile, index: FsIndex, end: number) => Promise<T>,
  ): Promise<T> {
    this.checkOpen();
    if (oid !== null && this.index.pendingOid(oid) !== null) await this.indexed(oid);
    const ref = this.fileRef;
    ref.enter();
    try {
      return await fn(ref.file, this.index, this.pos);
    } finally {
      ref.leave();
    }
  }

  /** Loads the bucket of the index that holds `oid` when it is deferred (see FsIndex.pending). */
  private async indexed(oid: Oid): Promise<void> {
    for (let w = this.index.pendingOid(oid); w !== null; w = this.index.pendingOid(oid)) {
      await w;
      this.checkOpen();
    }
  }

  /** Loads every deferred bucket of the index. */
  private async indexedAll(): Promise<void> {
    for (let w = this.index.pendingAll(); w !== null; w = this.index.pendingAll()) {
      await w;
      this.checkOpen();
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // reads

  async load(oid: Oid): Promise<LoadResult> {
    return this.reading(oid, async (file, index, end) => {
      const pos = index.get(oid);
      if (pos < 0) throw missing(oid);
      const h = await readDataRecord(file, pos, oid, true, end);
      if (h.plen) return { data: h.data!, serial: h.tid };
      if (h.back) return { data: (await loadBack(file, oid, h.back, true, end)).data!, serial: h.tid };
      throw missing(oid);
    });
  }

  async loadBefore(oid: Oid, tid: Tid): Promise<LoadBeforeResult | null> {
    this.checkOpen();
    // an oid the (loaded) index does not have: answered here, without a turn through the file's reader
    if (this.index.loaded && this.index.get(oid) < 0) throw missing(oid);
    return this.reading(oid, async (file, index, end) => {
      let pos = index.get(oid);
      if (pos < 0) throw missing(oid);
      let endTid: Tid | null = null;
      let h: RecordAt;
      for (;;) {
        h = await readDataRecord(file, pos, oid, true, end);
        if (compareIds(h.tid, tid) < 0) break;
        if (h.prev >= pos) throw new CorruptedError(file.path, pos, `invalid previous pointer: ${h.prev}`);
        pos = h.prev;
        endTid = h.tid;
        if (!pos) return null;
      }
      if (h.plen) return { data: h.data!, start: h.tid, end: endTid };
      if (h.back)
        return { data: (await loadBack(file, oid, h.back, true, end)).data!, start: h.tid, end: endTid };
      throw missing(oid);
    });
  }

  /**
   * loadBefore answered at once, for the server's hot path: from the read cache, or a record not cached read
   * with one synchronous read (RandomAccessFile.readNow: the page cache's copy, at a tenth of the CPU of a
   * thread-pool read). The same result, its data a view into the cache valid only until the storage is used
   * again (copy it first), or undefined when it needs more (see loadBeforeInto): loadBefore then gives it.
   */
  loadBeforeCached(oid: Oid, tid: Tid): LoadBeforeResult | null | undefined {
    const hit = new LoadBeforeHit();
    const r = this.loadBeforeInto(oid, 0, tid, 0, hit);
    if (r < 0) return undefined;
    if (r === 0) return null;
    return {
      data: hit.data.subarray(hit.dataAt, hit.dataAt + hit.dataLen),
      start: idCopy(hit.start),
      end: hit.hasEnd ? idCopy(hit.end) : null,
    };
  }

  /**
   * loadBeforeCached without objects (Storage.loadBeforeInto): 1 found, into `hit`; 0 none; -1 when it needs
   * more (sync reads off after a slow one, a record longer than one read ahead) or is not the usual answer (a
   * back pointer, a deleted object, a missing oid, a deferred index bucket, a damaged record).
   */
  loadBeforeInto(oid: Uint8Array, oidAt: number, tid: Uint8Array, tidAt: number, hit: LoadBeforeHit): number {
    const cache = this.fileRef.file.cache;
    if (this.closed || cache === null) return -1;
    const index = this.index;
    const hi = ((oid[oidAt] << 24) | (oid[oidAt + 1] << 16) | (oid[oidAt + 2] << 8) | oid[oidAt + 3]) >>> 0;
    const lo =
      ((oid[oidAt + 4] << 24) | (oid[oidAt + 5] << 16) | (oid[oidAt + 6] << 8) | oid[oidAt + 7]) >>> 0;
    if (!index.loaded && index.pending(hi, lo) !== null) return -1;
    let pos = index.getHiLo(hi, lo);
    if (pos < 0) return -1;
    const end = this.pos;
    hit.hasEnd = false;
    for (;;) {
      if (pos < FILE_HEADER_LEN || pos + DATA_HDR_LEN > end) return -1;
      let at = cache.locate(pos);
      let c: Buffer;
      let len: number;
      if (at >= 0) {
        c = cache.found;
        len = cache.foundLen;
      } else {
        len = this.readRecordNow(pos, end);
        if (len < 0) return -1;
        c = nowBuf;
        at = 0;
      }
      if (len < DATA_HDR_LEN) return -1;
      const plen = readU64(c, at + 34);
      if (len < dataRecordLen(plen) || pos + DATA_HDR_LEN + plen > end) return -1;
      for (let i = 0; i < 8; i++) if (c[at + i] !== oid[oidAt + i]) return -1;
      if (c[at + 32] !== 0 || c[at + 33] !== 0) return -1;
      let older = false;
      for (let i = 0; i < 8; i++) {
        const x = c[at + 8 + i];
        const y = tid[tidAt + i];
        if (x !== y) {
          older = x < y;
          break;
        }
      }
      if (older) {
        if (plen === 0) return -1;
        hit.data = c;
        hit.dataAt = at + DATA_HDR_LEN;
        hit.dataLen = plen;
        const start = hit.start;
        for (let i = 0; i < 8; i++) start[i] = c[at + 8 + i];
        return 1;
      }
      const prev = readU64(c, at + 16);
      if (prev >= pos) return -1;
      const endTid = hit.end;
      for (let i = 0; i < 8; i++) endTid[i] = c[at + 8 + i];
      hit.hasEnd = true;
      if (!prev) return 0;
      pos = prev;
    }
  }

  /**
   * The record at `pos` read at once (RandomAccessFile.readNow) into nowBuf and put in the cache: its length,
   * or -1 when it is not read so (sync reads off, longer than one read ahead, an error).
   */
  private readRecordNow(pos: number, end: number): number {
    const file = this.fileRef.file;
    const n = file.readNow(pos, nowBuf, 0, Math.min(READ_AHEAD, end - pos));
    if (n < DATA_HDR_LEN) return -1;
    const len = dataRecordLen(readU64(nowBuf, 34));
    if (len > n) return -1;
    const cache = file.cache!;
    cache.misses++;
    cache.put(pos, nowBuf.subarray(0, len));
    return len;
  }

  async loadSerial(oid: Oid, serial: Tid): Promise<Uint8Array> {
    return this.reading(oid, async (file, index, end) => {
      let pos = index.get(oid);
      if (pos < 0) throw missing(oid);
      let h: RecordAt;
      for (;;) {
        h = await readDataRecord(file, pos, oid, true, end);
        if (idEquals(h.tid, serial)) break;
        if (h.prev >= pos && h.prev)
          throw new CorruptedError(file.path, pos, `invalid previous pointer: ${h.prev}`);
        pos = h.prev;
        if (compareIds(h.tid, serial) < 0 || !pos) throw missing(oid, serial);
      }
      if (h.plen) return h.data!;
      return (await loadBack(file, oid, h.back, true, end)).data!;
    });
  }

  async history(oid: Oid, size = 1): Promise<HistoryEntry[]> {
    return this.reading(oid, async (file, index, end) => {
      let pos = index.get(oid);
      if (pos < 0) throw missing(oid);
      const out: HistoryEntry[] = [];
      while (out.length < size) {
        const h = await readDataRecord(file, pos, oid, false, end);
        const th = await readTxnHeader(file, h.tloc, end);
        out.push({
          tid: h.tid,
          time: tidTime(h.tid),
          userName: th.user,
          description: th.description,
          extension: decodeExtension(th.extension),
          size: h.plen,
        });
        if (!h.prev) break;
        if (h.prev >= pos) throw new CorruptedError(file.path, pos, `invalid previous pointer: ${h.prev}`);
        pos = h.prev;
      }
      return out;
    });
  }

  /** The tid of the object's current record; POSKeyError when it has none or it was deleted (ZODB's getTid). */
  async getTid(oid: Oid): Promise<Tid> {
    return this.reading(oid, async (file, index, end) => {
      const pos = index.get(oid);
      if (pos < 0) throw missing(oid);
      const h = await readDataRecord(file, pos, oid, false, end);
      if (h.plen === 0 && h.back === 0) throw missing(oid);
      return h.tid;
    });
  }

  async newOid(): Promise<Oid> {
    this.checkWritable();
    // + 1 on the big-endian bytes (as p64(u64 + 1n), wrapping alike), without two BigInts per oid: a ZEO
    // client asks for them by the hundred
    const next = idCopy(this.maxOid);
    for (let i = 7; i >= 0; i--) if (++next[i] !== 256) break; // (the byte stored is 0 when it reads 256)
    this.maxOid = next;
    return idCopy(next);
  }

  private noteOid(oid: Oid): void {
    if (compareIds(oid, this.maxOid) > 0) this.maxOid = idCopy(oid);
  }

  // ------------------------------------------------------------------------------------------------------
  // two-phase commit

  /** FileStorage._begin's checks, made before the commit lock is taken here. */
  protected override checkBegin(meta: TransactionMeta, status: string): void {
    if (status !== ' ' && status !== 'p' && status !== 'u') {
      throw new StorageTransactionError(`invalid transaction status ${JSON.stringify(status)}`);
    }
    if (meta.user.length > MAX_META_LEN) throw new FileStorageError('user name too long');
    if (meta.description.length > MAX_META_LEN) throw new FileStorageError('description too long');
    if (meta.extension.length > MAX_META_LEN) throw new FileStorageError('too much extension data');
  }

  protected _begin(start: TransactionStart): Pending {
    // (FileStorage's fields added to the base's object, always in this order, rather than both spread into a
    // new one: the spread's copy showed at 3% of the server's time in commits over 16 connections)
    const p = pendingState(start) as { -readonly [K in keyof Pending]: Pending[K] };
    p.thl = TRANS_HDR_LEN + start.user.length + start.description.length + start.extension.length;
    p.tpos = this.wpos;
    p.buf = new TxnBuffer(this.spillThreshold, () => this.openSpillFile());
    p.tindex = new Map();
    p.blobs = [];
    p.written = false;
    p.flushed = null;
    p.nextPos = 0;
    p.durable = null;
    p.bulk = false;
    return p;
  }

  /** Appends a data record to the transaction; its file position. */
  private async appendRecord(
    p: Pending,
    oid: Oid,
    tid: Tid,
    prev: number,
    data: Uint8Array | null,
    back: number,
  ): Promise<TEntry> {
    const here = p.tpos + p.thl + p.buf.size;
    const head = dataHeader(p, oid, tid, prev, data, back);
    const offset = await p.buf.append(data === null ? [head] : [head, data]);
    return {
      oid,
      pos: here,
      offset,
      tid,
      plen: data === null ? 0 : data.length,
      back: data === null ? back : 0,
    };
  }

  /**
   * appendRecord at once, of a record of the transaction's tid, indexed in the transaction (quota checked
   * after, as _store does), when it stays in memory; false when it does not (nothing appended).
   */
  private appendRecordNow(p: Pending, oid: Oid, prev: number, data: Uint8Array | null): boolean {
    const plen = data === null ? 0 : data.length;
    if (!p.buf.fits(DATA_HDR_LEN + (data === null ? BACK_PTR_LEN : plen))) return false;
    const pos = p.tpos + p.thl + p.buf.size;
    const offset = p.buf.appendNow(dataHeader(p, oid, p.tid, prev, data, 0), data);
    p.tindex.set(key(oid), { oid, pos, offset, tid: p.tid, plen, back: 0 });
    this.checkQuota(pos);
    return true;
  }

  private checkQuota(here: number): void {
    if (this.quota !== null && here > this.quota) {
      throw new FileStorageQuotaError('The storage quota has been exceeded.');
    }
  }

  /**
   * The header of the current record of `oid` as the transaction in progress sees it (written transactions
   * not yet durable included), or null for an object not in the index.
   */
  private async committedTid(
    oid: Oid,
  ): Promise<{ pos: number; tid: Tid; plen: number; back: number } | null> {
    const unflushed = this.unflushedIndex.size ? this.unflushedIndex.get(key(oid)) : undefined;
    return this.reading(unflushed === undefined ? oid : null, async (file, index, end) => {
      const pos = unflushed ?? index.get(oid);
      if (pos < 0) return null;
      const h = await readDataRecord(file, pos, oid, false, unflushed === undefined ? end : this.wpos);
      return { pos, tid: h.tid, plen: h.plen, back: h.back };
    });
  }

  protected async _store(p: Pending, oid: Oid, oldSerial: Tid, data: Uint8Array): Promise<void> {
    if (data.length === 0) throw new StorageError('store: a record cannot be empty');
    return this.inTxn(p, 'store', async () => {
      this.noteOid(oid);
      const cur = await this.committedTid(oid);
      if (cur && !idEquals(oldSerial, cur.tid)) {
        const resolved = await this.tryToResolveConflict(oid, cur.tid, oldSerial, data, null);
        if (!resolved) throw new ConflictError(oid, [cur.tid, oldSerial], data);
        data = resolved;
        p.resolved.push(oid);
      }
      const e = await this.appendRecord(p, oid, p.tid, cur ? cur.pos : 0, data, 0);
      p.tindex.set(key(oid), e);
      this.checkQuota(e.pos);
    });
  }

  /**
   * _store at once (BaseStorage._storeNow): when the object's current record is in memory (the read cache, or
   * one synchronous read) and the record stays in the transaction's buffer; a write conflict throws the same
   * ConflictError unless a resolver may resolve it (then _store does).
   */
  protected override _storeNow(p: Pending, oid: Oid, oldSerial: Tid, data: Uint8Array): boolean {
    if (data.length === 0) throw new StorageError('store: a record cannot be empty');
    const pos = this.currentNow(oid);
    if (pos === CURRENT_LATER) return false;
    if (pos > 0 && !equalAt(nowRec, nowRecAt + 8, oldSerial)) {
      if (this.resolvesConflicts) return false;
      this.noteOid(oid);
      throw new ConflictError(oid, [copy8(nowRec, nowRecAt + 8), oldSerial], new Uint8Array(data));
    }
    this.noteOid(oid);
    return this.appendRecordNow(p, oid, pos > 0 ? pos : 0, data);
  }

  /** _deleteObject at once (see _storeNow). */
  protected override _deleteObjectNow(p: Pending, oid: Oid, oldSerial: Tid): boolean {
    const pos = this.currentNow(oid);
    if (pos === CURRENT_LATER) return false;
    if (pos === CURRENT_NONE) throw missing(oid);
    if (!equalAt(nowRec, nowRecAt + 8, oldSerial)) {
      throw new ConflictError(oid, [copy8(nowRec, nowRecAt + 8), oldSerial]);
    }
    return this.appendRecordNow(p, oid, pos, null);
  }

  /** _checkCurrentSerial at once (see _storeNow). */
  protected override _checkCurrentSerialNow(_p: Pending, oid: Oid, serial: Tid): boolean {
    const pos = this.currentNow(oid);
    if (pos === CURRENT_LATER) return false;
    if (
      pos === CURRENT_NONE ||
      (readU64(nowRec, nowRecAt + 34) === 0 && readU64(nowRec, nowRecAt + 42) === 0)
    ) {
      throw missing(oid);
    }
    if (!equalAt(nowRec, nowRecAt + 8, serial)) {
      throw new ReadConflictError(oid, [copy8(nowRec, nowRecAt + 8), serial]);
    }
    return true;
  }

  /**
   * committedTid at once: the position of the object's current record as the transaction in progress sees it,
   * its header at nowRec[nowRecAt..] (valid until the storage is used again); CURRENT_NONE for an object not
   * in the index; CURRENT_LATER when it needs I/O (a deferred bucket of the index, sync reads off, a record
   * not in memory) or is not as committedTid expects (committedTid then throws its error).
   */
  private currentNow(oid: Oid): number {
    const unflushed = this.unflushedIndex.size ? this.unflushedIndex.get(key(oid)) : undefined;
    let pos: number;
    let end: number;
    if (unflushed !== undefined) {
      pos = unflushed;
      end = this.wpos;
    } else {
      if (this.index.pendingOid(oid) !== null) return CURRENT_LATER;
      pos = this.index.get(oid);
      if (pos < 0) return CURRENT_NONE;
      end = this.pos;
    }
    if (pos < FILE_HEADER_LEN || pos + DATA_HDR_LEN > end) return CURRENT_LATER;
    const file = this.fileRef.file;
    const cache = file.cache;
    let at = cache === null ? -1 : cache.locate(pos);
    let c: Buffer;
    let n: number;
    if (at >= 0) {
      c = cache!.found;
      n = cache!.foundLen;
    } else {
      // (the header and a back pointer, as committedTid reads)
      n = file.readNow(pos, headBuf, 0, Math.min(DATA_HDR_LEN + BACK_PTR_LEN, end - pos));
      c = headBuf;
      at = 0;
    }
    if (n < DATA_HDR_LEN || !equalAt(c, at, oid) || c[at + 32] !== 0 || c[at + 33] !== 0)
      return CURRENT_LATER;
    const plen = readU64(c, at + 34);
    if (plen === 0 ? n < DATA_HDR_LEN + BACK_PTR_LEN : pos + DATA_HDR_LEN + plen > end) return CURRENT_LATER;
    // a cache entry is trusted as readDataRecord trusts it: a whole record (else a damaged pointer's target)
    if (c !== headBuf && n < dataRecordLen(plen)) return CURRENT_LATER;
    nowRec = c;
    nowRecAt = at;
    return pos;
  }

  protected async _deleteObject(p: Pending, oid: Oid, oldSerial: Tid): Promise<void> {
    return this.inTxn(p, 'deleteObject', async () => {
      const cur = await this.committedTid(oid);
      if (!cur) throw missing(oid);
      if (!idEquals(oldSerial, cur.tid)) throw new ConflictError(oid, [cur.tid, oldSerial]);
      const e = await this.appendRecord(p, oid, p.tid, cur.pos, null, 0);
      p.tindex.set(key(oid), e);
      this.checkQuota(e.pos);
    });
  }

  protected async _restore(p: Pending, record: DataRecord): Promise<void> {
    const { oid, tid: serial, data, dataTxn: prevTxn } = record;
    if (data !== null && data.length === 0) throw new StorageError('restore: a record cannot be empty');
    return this.inTxn(p, 'restore', async () => {
      // (it reads the file's transactions and the index: those written before, durable)
      await this.drained();
      this.noteOid(oid);
      const prevPos = prevTxn === null ? 0 : await this.dataFind(oid, prevTxn, data);
      await this.indexed(oid);
      const old = Math.max(this.index.get(oid), 0);
      const e = prevPos
        ? await this.appendRecord(p, oid, serial, old, null, prevPos)
        : await this.appendRecord(p, oid, serial, old, data, 0);
      p.tindex.set(key(oid), e);
    });
  }

  /**
   * restore(r.oid, the transaction's tid, r.data, r.dataTxn) of every record r of `records`, in order, in one
   * step of the transaction (copy's bulk path; the records' own tids are not used): each
   * record is encoded straight into the transaction buffer as it comes, without a copy of its data, a promise
   * or an operation of its own, and the transaction is not written through into the read cache after it
   * commits (a bulk copy would push out what is being read). The same bytes as restore() one by one. The
   * records (and their buffers) are the caller's until this resolves.
   */
  async restoreRecords(
    records: Iterable<DataRecord> | AsyncIterable<DataRecord>,
    txn: TransactionMetaData,
  ): Promise<RestoredRecords> {
    this.checkWritable();
    this.require('restore', 'restore');
    const p = this.pendingFor(txn, 'restore');
    return this.inTxn(p, 'restore', async () => {
      p.bulk = true;
      // (it reads the file's transactions and the index: those written before, durable)
      await this.drained();
      const done: RestoredRecords = { records: 0, dataBytes: 0 };
      // (memory stays bounded: the spill threshold and an arena buffer at most)
      const arena = new RecordArena(p.buf, Math.min(ARENA_BYTES, this.spillThreshold));
      try {
        if (Symbol.iterator in records) {
          for (const r of records) {
            if (!this.restoreNow(p, arena, r)) await this.restoreLater(p, arena, r);
            done.records++;
            done.dataBytes += r.data?.length ?? BACK_PTR_LEN;
            if (p.buf.spillDue) await p.buf.spill();
          }
        } else {
          for await (const r of records) {
            if (!this.restoreNow(p, arena, r)) await this.restoreLater(p, arena, r);
            done.records++;
            done.dataBytes += r.data?.length ?? BACK_PTR_LEN;
            if (p.buf.spillDue) await p.buf.spill();
          }
        }
      } finally {
        // (the records restored before an error stay in the transaction, as with restore())
        arena.push();
      }
      return done;
    });
  }

  /**
   * _restore's record, appended at once when nothing needs a read (no prevTxn, the oid's bucket of the index
   * loaded); false when it does (restoreLater).
   */
  private restoreNow(p: Pending, arena: RecordArena, r: DataRecord): boolean {
    const { oid, data } = r;
    if (data !== null && data.length === 0) throw new StorageError('restore: a record cannot be empty');
    if (r.dataTxn !== null || this.index.pendingOid(oid) !== null) return false;
    this.noteOid(oid);
    this.appendRestored(p, arena, r, Math.max(this.index.get(oid), 0), 0);
    return true;
  }

  /** _restore's record, after the reads it needs: the back pointer's target, the oid's bucket of the index. */
  private async restoreLater(p: Pending, arena: RecordArena, r: DataRecord): Promise<void> {
    const { oid, data } = r;
    this.noteOid(oid);
    const prevPos = r.dataTxn === null ? 0 : await this.dataFind(oid, r.dataTxn, data);
    await this.indexed(oid);
    this.appendRestored(p, arena, r, Math.max(this.index.get(oid), 0), prevPos);
  }

  /** appendRecord's record, written into the arena (its data copied into it). */
  private appendRestored(p: Pending, arena: RecordArena, r: DataRecord, prev: number, back: number): void {
    const data = back ? null : r.data;
    const plen = data === null ? 0 : data.length;
    const offset = arena.size;
    const [b, at] = arena.take(DATA_HDR_LEN + (data === null ? BACK_PTR_LEN : plen));
    b.set(r.oid, at);
    b.set(p.tid, at + 8);
    writeU64(b, at + 16, prev);
    writeU64(b, at + 24, p.tpos);
    b[at + 32] = 0;
    b[at + 33] = 0;
    writeU64(b, at + 34, plen);
    if (data === null) writeU64(b, at + DATA_HDR_LEN, back);
    else b.set(data, at + DATA_HDR_LEN);
    const oid = idCopy(r.oid);
    p.tindex.set(key(oid), { oid, pos: p.tpos + p.thl + offset, offset, tid: p.tid, plen, back });
  }

  /**
   * FileStorage._txn_find + _data_find: the position of the object's record in transaction `tid` when it has
   * a back pointer (trusted) or the same data, else 0. The record is found through the object's chain.
   */
  private async dataFind(oid: Oid, tid: Tid, data: Uint8Array | null): Promise<number> {
    return this.reading(oid, async (file, index, end) => {
      let pos = index.get(oid);
      while (pos > 0) {
        const h = await readDataRecord(file, pos, oid, false, end);
        const c = compareIds(h.tid, tid);
        if (c < 0) return 0;
        if (c === 0) {
          if (h.plen === 0) return pos;
          if (data === null || h.plen !== data.length) {
            if (data !== null) this.log('error', `Mismatch between data and backpointer at ${pos}`);
            return 0;
          }
          const r = await readDataRecord(file, pos, oid, true, end);
          return bytesEqual(r.data!, data) ? pos : 0;
        }
        if (h.prev >= pos) throw new CorruptedError(file.path, pos, `invalid previous pointer: ${h.prev}`);
        pos = h.prev;
      }
      return 0;
    });
  }

  /** Checked at once: the commit lock is held from tpcBegin on, so nothing can change it before the vote. */
  protected async _checkCurrentSerial(p: Pending, oid: Oid, serial: Tid): Promise<void> {
    return this.inTxn(p, 'checkCurrentSerialInTransaction', async () => {
      // (getTid's answer, written transactions not yet durable included)
      const cur = await this.committedTid(oid);
      if (!cur || (cur.plen === 0 && cur.back === 0)) throw missing(oid);
      if (!idEquals(cur.tid, serial)) throw new ReadConflictError(oid, [cur.tid, serial]);
    });
  }

  /** Writes the transaction after the committed data, with status 'c' (not committed yet). */
  protected override async _vote(p: Pending): Promise<void> {
    const tl = p.thl + p.buf.size;
    const header = encodeTxnHeader({
      tid: p.tid,
      tl,
      status: 'c',
      user: p.user,
      description: p.description,
      extension: p.extension,
    });
    const trailer = Buffer.allocUnsafe(TRAILER_LEN);
    writeU64(trailer, 0, tl);
    // finish updates the index with these oids: their buckets must be loaded (store and restore did)
    // (an await per record only while buckets are deferred: none once the index is loaded, the usual case)
    if (!this.index.loaded) for (const e of p.tindex.values()) await this.indexed(e.oid);
    const file = this.fileRef.file;
    p.written = true;
    p.nextPos = p.tpos + tl + TRAILER_LEN;
    try {
      await p.buf.writeTo(file, p.tpos, header, trailer);
    } catch (e) {
      // a disk full, perhaps: leave no turd at the end
      this.overwriteEnd = Math.max(this.overwriteEnd, p.nextPos);
      // (the write's error is the one to report)
      await file.truncate(p.tpos).catch(() => {});
      p.written = false;
      throw e;
    }
    // over bytes that may be on disk already: the data's flush, in the background, and finish waits for it
    // before it clears the status (see the header comment)
    if (this.doFsync && p.tpos < this.overwriteEnd) {
      p.flushed = file.datasync().then(
        () => null,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      );
    }
  }

  /**
   * Overwrites the status with the transaction's own; the commit lock goes, and the next flush makes it
   * durable (group commit, see the header comment); only then does it become visible.
   */
  protected async _finish(p: Pending): Promise<void> {
    if (!p.written) {
      // the vote failed: the transaction cannot commit (it is to be aborted)
      throw new StorageTransactionError('tpc_finish: the vote did not succeed');
    }
    const file = this.fileRef.file;
    let cleared = false;
    try {
      if (this.flushFailure) throw this.flushFailure;
      // over bytes that may be on disk already, the transaction's data first (vote's flush)
      const flushFailed = p.flushed && (await p.flushed);
      if (flushFailed) throw flushFailed;
      // clear the checkpoint flag
      await writeStatus(file, p.tpos, p.status);
      cleared = true;
      // a flush that failed meanwhile may have lost pages of the file: a later one that succeeds says nothing
      const failedMeanwhile = this.failure();
      if (failedMeanwhile) throw failedMeanwhile;
    } catch (e) {
      // ZODB: "Failure in _finish. Closing."
      this.unlocked(p);
      await this.failFinish(e, cleared ? p : null);
      throw e;
    }
    if (!this.doFsync) {
      this.makeVisible(p);
      return;
    }
    this.wpos = p.nextPos;
    this.wltid = p.tid;
    for (const [k, e] of p.tindex) this.unflushedIndex.set(k, e.pos);
    const durable = new Promise<void>((resolve, reject) => (p.durable = { resolve, reject }));
    this.flushQueue.push(p);
    // the next transaction may write while this one waits for its flush
    this.unlocked(p);
    this.startFlush();
    await durable;
  }

  /** (read through a call: TypeScript keeps its narrowing of the field across an await) */
  private failure(): Error | null {
    return this.flushFailure;
  }

  /** The transaction's records in the index, the end of the committed data and lastTransaction move. */
  private makeVisible(p: Pending): void {
    this.pos = p.nextPos;
    for (const [k, e] of p.tindex) {
      this.index.set(e.oid, e.pos);
      if (this.unflushedIndex.get(k) === e.pos) this.unflushedIndex.delete(k);
    }
    this.ltid = p.tid;
    if (!this.doFsync) {
      this.wpos = this.pos;
      this.wltid = this.ltid;
    }
  }

  /**
   * Starts a flush of every transaction written since the last one started, unless one runs: at the end of
   * this turn of the event loop (setImmediate, after the sockets read in it), so that the tpc_finish calls
   * that came in together share one flush rather than the first going alone.
   */
  private startFlush(): void {
    if (this.flushing !== null || this.flushQueue.length === 0 || this.flushDue) return;
    this.flushDue = true;
    setImmediate(this.startDueFlush);
  }

  private readonly startDueFlush = (): void => {
    this.flushDue = false;
    if (this.flushing !== null || this.flushQueue.length === 0) return;
    const batch = this.flushQueue;
    this.flushQueue = [];
    this.flushing = batch;
    void this.runFlush(batch);
  };

  /**
   * One fdatasync for `batch` (every transaction in it was written before it started); then each becomes
   * visible and its tpcFinish callback runs, in commit order, in one synchronous run.
   */
  private async runFlush(batch: Pending[]): Promise<void> {
    try {
      await this.flushCommit(this.fileRef.file, batch.length);
    } catch (e) {
      await this.failFinish(e);
      return;
    }
    this.flushing = null;
    for (const p of batch) {
      this.makeVisible(p);
      try {
        this.published(p);
        p.durable!.resolve();
      } catch (e) {
        p.durable!.reject(e);
      }
    }
    this.startFlush();
    if (this.flushing === null) for (const d of this.drainWaiters.splice(0)) d();
  }

  /**
   * ZODB's "Failure in _finish. Closing.": a status write or a flush failed. Every transaction written and
   * not yet durable fails, none acknowledged: the first one's checkpoint flag goes back to 'c' and the file
   * ends after it (the next open truncates it; a 'c' before other transactions would be corruption); if
   * these writes fail too, the file may still hold them, on disk and never acknowledged, as ZODB leaves a
   * transaction whose _finish failed. The storage closes. `cleared`: the transaction whose status the
   * failing _finish wrote.
   */
  private async failFinish(e: unknown, cleared: Pending | null = null): Promise<void> {
    const error = e instanceof Error ? e : new Error(String(e));
    this.flushFailure ??= error;
    const failed = [...(this.flushing ?? []), ...this.flushQueue];
    this.flushing = null;
    this.flushQueue = [];
    this.unflushedIndex.clear();
    this.wpos = this.pos;
    this.wltid = this.ltid;
    const file = this.fileRef.file;
    try {
      if (this.failedEnd === null) {
        const all = cleared ? [...failed, cleared] : failed;
        if (all.length) {
          const first = all.reduce((a, b) => (b.tpos < a.tpos ? b : a));
          this.failedEnd = first.nextPos;
          await writeStatus(file, first.tpos, 'c');
          await file.truncate(first.nextPos);
        }
      } else if (cleared) {
        // (its status write raced an earlier failure's truncation)
        await file.truncate(this.failedEnd);
      }
    } catch {
      // (logged below, with the first error)
    }
    this.log('critical', `Failure in _finish. Closing. (${error.message})`);
    for (const d of this.drainWaiters.splice(0)) d();
    // (a close already under way may be waiting for the transaction failing here: not waited for)
    const closing = this.closing;
    this.closing ??= this.shutDown(false);
    if (!closing) await this.closing.catch(() => {}); // (the finish's error is the one to report)
    for (const p of failed) p.durable!.reject(error);
  }

  /** Resolves once no transaction waits for its flush (the ones written so far are durable, or failed). */
  private drained(): Promise<void> {
    if (this.flushing === null && this.flushQueue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** (the write-through after tpcFinish's callback: the ZEO server answers the committer from it) */
  protected override _committed(p: Pending): void {
    this.cacheCommitted(p, this.fileRef.file);
  }

  /**
   * fdatasync of `commits` transactions: on the event loop when nothing else waits and flushes are fast, else
   * in the thread pool (whose round trip, two thread wake-ups, cost about 60 µs of CPU more per flush here)
   */
  private async flushCommit(file: RandomAccessFile, commits: number): Promise<void> {
    const started = performance.now();
    const mayInline =
      file.datasyncsNow && this.flushMicros !== Infinity && this.mayFlushInline?.(commits) === true;
    // timed inline again now and then (INLINE_FLUSH_RETIME): its time replaces the pool's round trips
    const retime =
      mayInline && this.flushMicros >= INLINE_FLUSH_MAX_US && ++this.poolFlushesByTime >= INLINE_FLUSH_RETIME;
    if (mayInline && (this.flushMicros < INLINE_FLUSH_MAX_US || retime)) {
      this.flushes.inline++;
      file.datasyncNow();
    } else {
      this.flushes.threadPool++;
      await file.datasync();
    }
    const us = (performance.now() - started) * 1000;
    this.onFlush?.(us / 1e6);
    if (retime) this.poolFlushesByTime = 0;
    this.flushMicros = this.flushMicros === Infinity || retime ? us : 0.8 * this.flushMicros + 0.2 * us;
  }

  /**
   * Write-through: the records a commit wrote go to the read cache (clients that were told of the commit load
   * them next). Only the records the index now points to, and only for a transaction small beside the cache
   * (a bulk import would push out what is being read).
   */
  private cacheCommitted(p: Pending, file: RandomAccessFile): void {
    const cache = file.cache;
    if (cache === null || p.bulk || !p.buf.inMemory || p.buf.size > cache.capacity / 8) return;
    const base = p.tpos + p.thl;
    p.buf.forEachRecord((offset, record) => {
      const e = p.tindex.get(key(record));
      if (e !== undefined && e.pos === base + offset) cache.put(e.pos, record);
    });
  }

  /** Truncates what vote wrote and removes the transaction's blobs. */
  protected override async _abort(p: Pending): Promise<void> {
    try {
      // (not under a flush in flight; a failed one does not matter: what it was to flush goes)
      if (p.flushed) await p.flushed;
      if (p.written && !(this.failedEnd !== null && p.tpos >= this.failedEnd)) {
        this.overwriteEnd = Math.max(this.overwriteEnd, p.nextPos);
        await this.fileRef.file.truncate(p.tpos);
      }
    } finally {
      const blobs = this.blobDirectory;
      if (blobs) {
        // (a blob of an aborted transaction that stays is never referenced: a leftover, not a loss)
        for (const [oid, tid] of p.blobs) await blobs.remove(oid, tid).catch(() => false);
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // undo

  protected async _undo(p: Pending, tid: Tid): Promise<UndoResult> {
    return this.inTxn(p, 'undo', async () => {
      // (it reads the file's transactions and the index: those written before, durable)
      await this.drained();
      return this.reading(null, async (file, _index, end) => {
        const tpos = await this.txnFind(file, tid, end);
        const oids = await this.txnUndoWrite(p, file, tpos, end);
        return { tid: p.tid, oids };
      });
    });
  }

  /** FileStorage._txn_find(tid, stop_at_pack=True): the position of transaction `tid`, searched backwards. */
  private async txnFind(file: RandomAccessFile, tid: Tid, end: number): Promise<number> {
    let pos = end;
    while (pos > 39) {
      const { tpos, header } = await readTxnBefore(file, pos);
      if (idEquals(header.tid, tid)) return tpos;
      // (ZODB 5/6 on Python 3 compares an int with b'p' here and never stops; transactions before a packed one
      // are packed too, so both end in the same UndoError)
      if (header.status === 'p') break;
      pos = tpos;
    }
    throw new UndoError('Invalid transaction id');
  }

  /** FileStorage._txn_undo_write: the records undoing the transaction at `tpos`; the oids undone. */
  private async txnUndoWrite(p: Pending, file: RandomAccessFile, tpos: number, end: number): Promise<Oid[]> {
    const th = await readTxnHeader(file, tpos, end);
    if (th.status !== ' ') throw new UndoError('non-undoable transaction');
    const tend = tpos + th.tl;
    let pos = tpos + txnHeaderLen(th);
    const mark = p.buf.size;
    const tindex = new Map<string, TEntry>();
    // failures may be redeemed by a later record of the same oid
    const failures = new Map<string, UndoError>();
    try {
      while (pos < tend) {
        const h = await readDataRecord(file, pos, null, false, end);
        const k = key(h.oid);
        failures.delete(k);
        try {
          const r = await this.undoRecord(p, file, h.oid, pos, h.tid, h.prev, end);
          if (this.blobDirectory && r.data === null && r.back)
            await this.undoBlob(p, file, h.oid, r.back, end);
          const e = await this.appendRecord(p, h.oid, p.tid, r.ipos, r.data, r.back);
          tindex.set(k, e);
        } catch (e) {
          if (!(e instanceof UndoError)) throw e;
          failures.set(k, e);
        }
        pos += dataRecordLen(h.plen);
        if (pos > tend) throw new UndoError('non-undoable transaction');
      }
      if (failures.size) throw new MultipleUndoErrors([...failures.values()]);
    } catch (e) {
      p.buf.truncate(mark);
      throw e;
    }
    for (const [k, e] of tindex) p.tindex.set(k, e);
    return [...tindex.values()].map((e) => e.oid);
  }

  /**
   * FileStorage._transactionalUndoRecord: what undoing the record at `pos` (of transaction `tid`, previous
   * record `pre`) writes: data (resolved), or a back pointer (0: the object's creation is undone); `ipos` is
   * the object's committed record, the new record's previous pointer.
   */
  private async undoRecord(
    p: Pending,
    file: RandomAccessFile,
    oid: Oid,
    pos: number,
    tid: Tid,
    pre: number,
    end: number,
  ): Promise<{ data: Uint8Array | null; back: number; ipos: number }> {
    let copy = true;
    const te = p.tindex.get(key(oid));
    const tpos = te ? te.pos : 0;
    await this.indexed(oid);
    const ipos = Math.max(this.index.get(oid), 0);
    const tipos = tpos || ipos;
    let ctid: Tid = z64;
    let currentData: Uint8Array | null = null;
    if (tipos !== pos) {
      // the undone record is not current: a later transaction, or an earlier undo in this one, changed the
      // object (ZODB's _undoDataInfo)
      let cdataptr: number;
      if (te) {
        ctid = te.tid;
        if (te.plen) {
          currentData = await p.buf.read(te.offset + DATA_HDR_LEN, te.plen);
          cdataptr = te.pos;
        } else cdataptr = te.back;
      } else {
        const h = await readDataRecord(file, ipos, null, true, end);
        if (!idEquals(h.oid, oid)) throw new UndoError('Invalid undo transaction id', oid);
        ctid = h.tid;
        if (h.plen) {
          currentData = h.data;
          cdataptr = ipos;
        } else cdataptr = h.back;
      }
      if (cdataptr !== pos) {
        // not the same data record: is it the same data?
        try {
          const undone = (await loadBack(file, oid, pos, true, end)).data!;
          if (!currentData) currentData = (await loadBack(file, oid, cdataptr, true, end)).data!;
          if (!bytesEqual(undone, currentData)) {
            copy = false;
            if (!pre) {
              throw new UndoError("Can't undo an add transaction followed by conflicting transactions.", oid);
            }
          }
        } catch (e) {
          if (e instanceof POSKeyError) throw new UndoError('_loadBack() failed', oid);
          throw e;
        }
      }
    }
    if (!pre) return { data: null, back: 0, ipos };
    if (copy) return { data: null, back: pre, ipos };
    let preData: Uint8Array;
    try {
      preData = (await loadBack(file, oid, pre, true, end)).data!;
    } catch (e) {
      if (e instanceof POSKeyError) throw new UndoError('_loadBack() failed', oid);
      throw e;
    }
    const resolved = await this.tryToResolveConflict(oid, ctid, tid, preData, currentData);
    if (resolved) return { data: resolved, back: 0, ipos };
    throw new UndoError('Some data were modified by a later transaction', oid);
  }

  /** Undoing a blob change: the blob of the revision pointed back to is copied for the undo's tid. */
  private async undoBlob(
    p: Pending,
    file: RandomAccessFile,
    oid: Oid,
    back: number,
    end: number,
  ): Promise<void> {
    const blobs = this.blobDirectory!;
    let up: { data: Uint8Array | null; tid: Tid };
    try {
      up = await loadBack(file, oid, back, true, end);
    } catch (e) {
      if (e instanceof POSKeyError) return; // it was removed: no blob to copy
      throw e;
    }
    if (!isBlobRecord(up.data)) return;
    const tmp = await blobs.copyToTemp(oid, up.tid);
    try {
      await blobs.commit(oid, p.tid, tmp);
    } catch (e) {
      await unlink(tmp).catch(() => {}); // (the commit's error is the one to report)
      throw e;
    }
    p.blobs.push([oid, p.tid]);
  }

  async undoLog(
    first = 0,
    last: number = UNDO_LOG_DEFAULT_LAST,
    filter?: (entry: UndoLogEntry) => boolean,
  ): Promise<FileUndoLogEntry[]> {
    if (this.packing) throw new UndoError('Undo is currently disabled for database maintenance.<p>');
    return this.reading(null, (file, _index, end) =>
      searchUndoLog(first, last, filter, txnsNewestFirst(file, end)),
    );
  }

  // ------------------------------------------------------------------------------------------------------
  // pack

  /**
   * FileStorage.pack: removes the history before `packTime` (seconds since the epoch) that is not needed, and,
   * with gc (the storage's packGc unless told), the objects not reachable from the root then. The packer
   * (./pack.ts) copies while commits go on and swaps the packed file in under the commit lock; undoLog is
   * refused meanwhile, as ZODB does.
   */
  async pack(
    packTime: number,
    referencesf: ReferencesFinder,
    options: StoragePackOptions = {},
  ): Promise<void> {
    this.checkWritable();
    const stop = TimeStamp.fromTime(packTime).raw();
    if (idEquals(stop, z64)) throw new FileStorageError('Invalid pack time');
    // if the storage is empty, there's nothing to do
    if (this.index.size === 0) return;
    if (this.packing) throw new FileStorageError('Already packing');
    this.packing = true;
    try {
      await packFileStorage(this.packTarget(), stop, referencesf, {
        gc: options.gc ?? this.packGc,
        blobs: this.blobDirectory ?? undefined,
        keepOld: this.packKeepOld,
        log: this.log,
        onProgress: options.onProgress,
      });
    } finally {
      this.packing = false;
    }
  }

  /** What the packer works with (see PackTarget in ./pack.ts). */
  packTarget(): PackTarget {
    return {
      path: this.path,
      committedEnd: () => this.pos,
      // (under the lock, once the transactions written before are durable: `pos` is the file's end)
      withCommitLock: (fn) =>
        this.commitLock.runExclusive(async () => {
          await this.drained();
          return fn();
        }),
      swap: (packed) => this.swapPacked(packed),
      saveIndex: async () => {
        if (this.closed) return;
        await this.indexedAll();
        await writeIndexFile(this.path, this.index, this.pos, { fsync: this.doFsync });
      },
    };
  }

  /**
   * FileStorage.pack's swap, called by the packer holding the commit lock: renames the files (packed.rename),
   * reopens the data file and installs the packed index and end. Loads in flight finish on the old file.
   */
  private async swapPacked(packed: PackedFile): Promise<void> {
    this.checkWritable();
    if (this.pending) throw new StorageError('pack: a transaction is in progress at the swap');
    await packed.rename();
    const file = await RandomAccessFile.open(this.path, 'r+', undefined, {
      cacheBytes: this.cacheBytes,
      io: this.io,
    });
    const previous = this.fileRef;
    const previousIndex = this.index;
    this.fileRef = new DataFileRef(file);
    this.index = packed.index;
    this.pos = packed.end;
    this.wpos = packed.end;
    this.overwriteEnd = packed.end;
    this.packCount++;
    previous.retire();
    // (loads of its buckets in flight finish; readers that took the old index before the swap read those)
    // (disposing only closes the replaced index file, which nothing reads any more)
    void previousIndex.dispose().catch(() => {});
  }

  // ------------------------------------------------------------------------------------------------------
  // iteration

  /**
   * The transactions from the first with tid >= start to the last with tid <= stop, as committed when
   * iterator() is called. It reads through a file handle of its own (opened at the first step, closed at the
   * end, on break, and when the storage closes), so a pack during the iteration does not disturb it.
   */
  iterator(start: Tid | null = null, stop: Tid | null = null): AsyncGenerator<FileTransactionRecord> {
    this.checkOpen();
    return this.iterate(start, stop, this.pos, this.packCount);
  }

  private async *iterate(
    start: Tid | null,
    stop: Tid | null,
    end: number,
    packCount: number,
  ): AsyncGenerator<FileTransactionRecord> {
    this.checkOpen();
    if (packCount !== this.packCount) end = this.pos;
    const file = await RandomAccessFile.open(this.path, 'r');
    this.iterFiles.add(file);
    try {
      const pos = start ? await skipToStart(file, start, end) : FILE_HEADER_LEN;
      yield* transactionsIn(file, pos, end, stop);
    } finally {
      this.iterFiles.delete(file);
      await file.close();
    }
  }

  async recordIternext(
    next: Oid | null = null,
  ): Promise<{ oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null }> {
    this.checkOpen();
    await this.indexedAll();
    const oid = this.index.minKey(next);
    if (oid === null) throw missing(next ?? z64);
    const n = u64(oid);
    const nextOid = n === 0xffffffffffffffffn ? null : this.index.minKey(p64(n + 1n));
    const { data, serial } = await this.load(oid);
    return { oid, tid: serial, data, next: nextOid };
  }

  /**
   * recordIternext answered at once, for the server's hot path: the index walked in memory and the current
   * record found as loadBeforeCached finds it (the read cache, or one synchronous read). The same result (its
   * data a view, valid only until the storage is used again: copy it first), or undefined when it needs more
   * (a deferred index bucket, a record not read so, a back pointer, a deleted object, no oid at or after
   * `next`): recordIternext then gives it, or its error.
   */
  recordIternextCached(
    next: Oid | null,
  ): { oid: Oid; tid: Tid; data: Uint8Array; next: Oid | null } | undefined {
    if (this.closed || !this.index.loaded) return undefined;
    const oid = this.index.minKey(next);
    if (oid === null) return undefined;
    // (the current record is older than maxtid: loadBeforeCached gives it, or undefined, never null)
    const r = this.loadBeforeCached(oid, maxtid);
    if (!r) return undefined;
    const after = oidAfter(oid);
    return { oid, tid: r.start, data: r.data, next: after === null ? null : this.index.minKey(after) };
  }

  /**
   * FileStorage.lastInvalidations: the last `count` committed transactions with the oids of their data
   * records (in file order, repeated when a transaction wrote an oid twice, as ZODB lists them), NEWEST FIRST
   * (see Storage.lastInvalidations: ZODB's are oldest first, and its StorageServer reverses them). Read
   * backwards from the end of the committed data, as ZODB finds where to start: transactions marked 'u' (old
   * files) count but are not listed, as ZODB's iterator skips them.
   */
  async lastInvalidations(count: number): Promise<Array<{ tid: Tid; oids: Oid[] }>> {
    return this.reading(null, async (file, _index, end) => {
      const out: Array<{ tid: Tid; oids: Oid[] }> = [];
      let pos = end;
      for (; count > 0 && pos > FILE_HEADER_LEN; count--) {
        const { tpos, header } = await readTxnBefore(file, pos);
        if (header.status !== 'u') out.push({ tid: header.tid, oids: await oidsOfTxn(file, tpos, header) });
        pos = tpos;
      }
      return out;
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // blobs

  private blobs(): BlobDirectory {
    if (!this.blobDirectory) throw new Unsupported(`${this.getName()} has no blob directory`);
    return this.blobDirectory;
  }

  override async storeBlob(
    oid: Oid,
    oldSerial: Tid,
    data: Uint8Array,
    blobFilename: string,
    txn: TransactionMetaData,
  ): Promise<void> {
    const blobs = this.blobs();
    const p = this.pendingFor(txn, 'storeBlob');
    oid = idCopy(oid);
    await this.store(oid, oldSerial, data, txn);
    await this.inTxn(p, 'storeBlob', async () => {
      await blobs.commit(oid, p.tid, blobFilename);
      p.blobs.push([oid, p.tid]);
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
    oid = idCopy(oid);
    serial = idCopy(serial);
    await this.restore(oid, serial, data, prevTxn, txn);
    await this.inTxn(p, 'restoreBlob', async () => {
      await blobs.commit(oid, serial, blobFilename);
      p.blobs.push([oid, serial]);
    });
  }

  override async loadBlob(oid: Oid, serial: Tid): Promise<string> {
    this.checkOpen();
    const path = this.blobs().path(oid, serial);
    try {
      await stat(path);
    } catch {
      throw missing(oid, serial);
    }
    return path;
  }

  override temporaryDirectory(): string {
    return this.blobs().tmpDir;
  }

  override blobDirectoryOf(oid: Oid): string {
    return this.blobs().oidPath(oid);
  }

  // ------------------------------------------------------------------------------------------------------
  // close

  private async openSpillFile(): Promise<RandomAccessFile> {
    if (!this.spillFile) this.spillFile = await RandomAccessFile.open(this.path + '.tmp', 'w+');
    return this.spillFile;
  }

  /**
   * Saves the index (Data.fs.index, as ZODB on close), closes the files and releases the lock. A transaction
   * in progress is aborted; loads in flight finish first. Calls after close throw StorageError.
   */
  async close(): Promise<void> {
    if (!this.closing) this.closing = this.shutDown(true);
    return this.closing;
  }

  private async shutDown(saveIndex: boolean): Promise<void> {
    if (this.closed) return;
    await this.closeTransactions((e) =>
      this.log('error', `Error aborting on close(): ${e instanceof Error ? e.message : String(e)}`),
    );
    // the commits written before: their flush ends (or fails), and their callers have their answer
    await this.drained();
    const errors: unknown[] = [];
    if (saveIndex && !this.isReadOnly()) {
      try {
        // (a bucket Data.fs.index left deferred is read now: the whole index is saved)
        await this.index.pendingAll();
        await writeIndexFile(this.path, this.index, this.pos, { fsync: this.doFsync });
      } catch (e) {
        this.log('error', `Error saving index on close(): ${(e as Error).message}`);
      }
    }
    // (read-only handles, the index file and the scratch spill file: their close loses nothing; the data
    // file's and the lock's errors are thrown)
    for (const f of this.iterFiles) await f.close().catch(() => {});
    this.iterFiles.clear();
    const ref = this.fileRef;
    await ref.idle();
    await this.index.dispose().catch(() => {});
    await ref.file.close().catch((e: unknown) => errors.push(e));
    if (this.spillFile) {
      await this.spillFile.close().catch(() => {});
      await unlink(this.path + '.tmp').catch(() => {});
      this.spillFile = null;
    }
    if (this.lockFile) {
      await this.lockFile.release().catch((e: unknown) => errors.push(e));
      this.lockFile = null;
    }
    if (errors.length) throw errors[0];
  }
}

// ---------------------------------------------------------------------------------------------------------
// iteration over the file

/** FileIterator._skip_to_start: the position of the first transaction with tid >= start (before `end`). */
async function skipToStart(file: RandomAccessFile, start: Tid, end: number): Promise<number> {
  if (end <= FILE_HEADER_LEN) return end;
  const first = await readTxnHeader(file, FILE_HEADER_LEN, end);
  if (compareIds(start, first.tid) <= 0) return FILE_HEADER_LEN;
  const last = await readTxnBefore(file, end);
  const c = compareIds(last.header.tid, start);
  if (c < 0) return end;
  if (c === 0) return last.tpos;
  // scan from the nearer end, by time (ZODB's heuristic)
  const t1 = tidTime(first.tid);
  const t2 = tidTime(last.header.tid);
  const ts = tidTime(start);
  if (ts - t1 < t2 - ts) {
    let pos = FILE_HEADER_LEN;
    while (pos < end) {
      const h = await readTxnHeader(file, pos, end);
      if (compareIds(h.tid, start) >= 0) return pos;
      pos += h.tl + TRAILER_LEN;
    }
    return end;
  }
  let pos = end;
  while (pos > FILE_HEADER_LEN) {
    const { tpos, header } = await readTxnBefore(file, pos);
    const d = compareIds(header.tid, start);
    if (d === 0) return tpos;
    if (d < 0) return pos;
    pos = tpos;
  }
  return FILE_HEADER_LEN;
}

/**
 * The transactions in [pos, end) of `file`, up to the last with tid <= stop, each checked as a whole (header,
 * records, trailing length) before it is given; records are read when iterated (small transactions are read in
 * one go).
 */
async function* transactionsIn(
  file: RandomAccessFile,
  pos: number,
  end: number,
  stop: Tid | null,
): AsyncGenerator<FileTransactionRecord> {
  // the file is read in chunks of ITER_CHUNK and more (a whole small transaction at least): small
  // transactions come out of memory, not one read through the thread pool each. A chunk is never reused:
  // the records given out are views of it.
  let chunk: Buffer = Buffer.alloc(0);
  let chunkPos = pos;
  while (pos < end) {
    if (end - pos < TRANS_HDR_LEN) throw new CorruptedError(file.path, pos, 'transaction header truncated');
    if (pos + TRANS_HDR_LEN > chunkPos + chunk.length) {
      chunkPos = pos;
      chunk = await file.readExact(pos, Math.min(ITER_CHUNK, end - pos));
    }
    let off = pos - chunkPos;
    const h = decodeTxnHeader(chunk, off, file.path, pos);
    const total = h.tl + TRAILER_LEN;
    if (!(pos + total <= end)) {
      throw new CorruptedError(file.path, pos, `transaction (length ${h.tl}) runs past the committed data`);
    }
    if (stop !== null && compareIds(h.tid, stop) > 0) break;
    const tpos = pos;
    pos += total;
    if (h.status === 'u') continue;
    if (total <= WHOLE_TXN_READ) {
      if (off + total > chunk.length) {
        // the transaction runs past the chunk: a new chunk from its start
        const next = Buffer.allocUnsafe(Math.min(Math.max(ITER_CHUNK, total), end - tpos));
        const have = chunk.length - off;
        chunk.copy(next, 0, off);
        await file.readExact(tpos + have, next.length - have, next, have);
        chunk = next;
        chunkPos = tpos;
        off = 0;
      }
      const t = checkTransaction(chunk, off, file.path, tpos, null);
      yield {
        tid: t.tid,
        status: t.status,
        user: t.user,
        description: t.description,
        extension: decodeExtension(t.extension),
        extensionBytes: t.extension,
        pos: tpos,
        records: recordsOf(file, chunk, off, tpos, t, end),
      };
      continue;
    }
    // a big transaction: header and trailer now, records one by one when iterated
    const th = await readTxnHeader(file, tpos, end);
    const tl2 = readU64(await file.readExact(tpos + h.tl, TRAILER_LEN), 0);
    if (tl2 !== h.tl) {
      throw new CorruptedError(
        file.path,
        tpos + h.tl,
        `redundant transaction length check failed: ${tl2} != ${h.tl}`,
      );
    }
    const tend = tpos + h.tl;
    const rstart = tpos + txnHeaderLen(th);
    yield {
      tid: th.tid,
      status: th.status,
      user: th.user,
      description: th.description,
      extension: decodeExtension(th.extension),
      extensionBytes: th.extension,
      pos: tpos,
      records: {
        [Symbol.asyncIterator]: async function* () {
          let rpos = rstart;
          while (rpos < tend) {
            const r = await readDataRecord(file, rpos, null, true, tend);
            checkDataHeader(th, tpos, r, rpos, file.path);
            yield await dataRecordOf(file, rpos, r.oid, r.tid, r.data, r.back, end);
            rpos += dataRecordLen(r.plen);
          }
          if (rpos !== tend) throw new CorruptedError(file.path, tpos, "data records don't add up");
        },
      },
    };
  }
}

/**
 * The records of a transaction read whole (at `off` of `chunk`, file position `tpos`) and checked, each decoded
 * when it is reached (a transaction's worth of records held at once would outlive the young generation: its
 * collection was half the iteration's CPU): when none needs a read through a back pointer (the usual case),
 * also a synchronous iterable (the server answers iterator_record_next at once, without a promise).
 */
function recordsOf(
  file: RandomAccessFile,
  chunk: Buffer,
  off: number,
  tpos: number,
  t: TxnHeaderFull & { backPointers: boolean },
  end: number,
): AsyncIterable<FileDataRecord> & Partial<Iterable<FileDataRecord>> {
  const tend = tpos + t.tl;
  const rstart = tpos + txnHeaderLen(t);
  function* decoded(): Generator<DecodedRecord> {
    for (let rpos = rstart; rpos < tend;) {
      const r = decodeRecord(chunk, off + (rpos - tpos), file.path, rpos);
      yield r;
      rpos += dataRecordLen(r.plen);
    }
  }
  if (t.backPointers) {
    return {
      [Symbol.asyncIterator]: async function* () {
        for (const r of decoded()) yield await dataRecordOf(file, r.pos, r.oid, r.tid, r.data, r.back, end);
      },
    };
  }
  function* plain(): Generator<FileDataRecord> {
    for (const r of decoded()) yield { oid: r.oid, tid: r.tid, data: r.data, dataTxn: null, pos: r.pos };
  }
  return {
    [Symbol.iterator]: plain,
    [Symbol.asyncIterator]: async function* () {
      yield* plain();
    },
  };
}

/** TransactionRecordIterator.__next__'s record: data through a back pointer, and the tid it points to. */
async function dataRecordOf(
  file: RandomAccessFile,
  pos: number,
  oid: Oid,
  tid: Tid,
  data: Uint8Array | null,
  back: number,
  end: number,
): Promise<FileDataRecord> {
  if (data !== null || back === 0) return { oid, tid, data, dataTxn: null, pos };
  const r = await loadBack(file, oid, back, false, end);
  const target = await readDataRecord(file, back, oid, false, end);
  return { oid, tid, data: r.data, dataTxn: target.tid, pos };
}

// ---------------------------------------------------------------------------------------------------------

/** The oids of the data records of the transaction at `tpos` (whose header is `h`), in file order. */
async function oidsOfTxn(file: RandomAccessFile, tpos: number, h: TxnHeaderFull): Promise<Oid[]> {
  const tend = tpos + h.tl;
  const oids: Oid[] = [];
  let pos = tpos + txnHeaderLen(h);
  if (h.tl + TRAILER_LEN <= WHOLE_TXN_READ) {
    // one read of the records (data records are at least 42 bytes: their headers are all in it)
    const buf = await file.readExact(pos, tend - pos);
    let o = 0;
    while (o < buf.length) {
      if (o + DATA_HDR_LEN > buf.length)
        throw new CorruptedError(file.path, pos + o, 'data record truncated');
      if (readU64(buf, o + 24) !== tpos) {
        throw new CorruptedError(file.path, pos + o, 'data record does not point to its transaction header');
      }
      oids.push(copy8(buf, o));
      o += dataRecordLen(readU64(buf, o + 34));
    }
    if (o !== buf.length) throw new CorruptedError(file.path, tpos, "data records don't add up");
    return oids;
  }
  while (pos < tend) {
    const r = await readDataRecord(file, pos, null, false, tend);
    if (r.tloc !== tpos) {
      throw new CorruptedError(file.path, pos, 'data record does not point to its transaction header');
    }
    oids.push(r.oid);
    pos += dataRecordLen(r.plen);
  }
  if (pos !== tend) throw new CorruptedError(file.path, tpos, "data records don't add up");
  return oids;
}

/** The oid after `oid` (a new array), or null after the largest. */
function oidAfter(oid: Oid): Oid | null {
  const o = Uint8Array.from(oid);
  for (let i = 7; i >= 0; i--) {
    if (o[i] !== 0xff) {
      o[i]++;
      return o;
    }
    o[i] = 0;
  }
  return null;
}

/** The cache size a storage's options ask for (0: none). */
/** readRecordNow's buffer */
const nowBuf = Buffer.allocUnsafe(READ_AHEAD);

/** currentNow's answers that are not a position */
const CURRENT_NONE = -1;
const CURRENT_LATER = -2;
/** currentNow's read of a header not in the cache */
const headBuf = Buffer.allocUnsafe(DATA_HDR_LEN + BACK_PTR_LEN);
/** where currentNow found the record's header (the cache's slab or headBuf) */
let nowRec: Buffer = headBuf;
let nowRecAt = 0;

/** The header of a data record of the transaction `p` (and its back pointer when `data` is null). */
function dataHeader(
  p: Pending,
  oid: Oid,
  tid: Tid,
  prev: number,
  data: Uint8Array | null,
  back: number,
): Buffer {
  const head = Buffer.allocUnsafe(data === null ? DATA_HDR_LEN + BACK_PTR_LEN : DATA_HDR_LEN);
  head.set(oid, 0);
  head.set(tid, 8);
  writeU64(head, 16, prev);
  writeU64(head, 24, p.tpos);
  head[32] = 0;
  head[33] = 0;
  writeU64(head, 34, data === null ? 0 : data.length);
  if (data === null) writeU64(head, DATA_HDR_LEN, back);
  return head;
}

function cacheBytesOf(options: FileStorageOptions): number {
  const n = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`cacheBytes: ${n} is not a size`);
  return n === 0 ? 0 : Math.max(n, MIN_CACHE_BYTES);
}

/** FileStorage.__init__'s complaint about a last transaction in the future. */
function futureCheck(path: string, ltid: Tid, log: ScanLog): void {
  const now = TimeStamp.fromTime(Date.now() / 1000);
  const last = new TimeStamp(ltid);
  if (last.compare(now) > 0) {
    const seconds = last.timeTime() - now.timeTime();
    log(
      seconds > 30 * 60 ? 'critical' : 'warning',
      `${path} Database records ${Math.trunc(seconds)} seconds in the future`,
    );
  }
}

/** The committed transactions from `end` back to the start, as ZODB's UndoSearch reads them (from position 39 on). */
async function* txnsNewestFirst(
  file: RandomAccessFile,
  end: number,
): AsyncGenerator<UndoCandidate<FileUndoLogEntry>> {
  let pos = end;
  while (pos >= 39) {
    const { tpos, header } = await readTxnBefore(file, pos);
    pos = tpos;
    yield {
      status: header.status,
      entry: () => ({
        ...undoLogEntry(header.tid, header.user, header.description, decodeExtension(header.extension)),
        size: header.tl,
      }),
    };
  }
}
