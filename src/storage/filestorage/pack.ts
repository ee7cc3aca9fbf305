// FileStorage pack, as ZODB 6 does it (ZODB/FileStorage/fspack.py: GC, FileStoragePacker, PackCopier; and the
// file and blob handling of FileStorage.pack), as a module the FileStorage engine calls.
//
// The engine's pack(t, referencesf, gc) does what FileStorage.pack does before the packer runs: refuses on a
// read-only storage (ReadOnlyError), turns the time into the stop tid (TimeStamp.fromTime(t).raw(); z64 is a
// FileStorageError 'Invalid pack time', checked here too), returns at once for a storage with an empty index
// (ZODB: `if not self._index: return`), then calls packFileStorage and, while it runs, refuses undoLog (ZODB:
// UndoError 'Undo is currently disabled for database maintenance.<p>'). packFileStorage does the rest:
//
//   1. 'Already packing' (FileStorageError) when a pack of the same file is running; removes Data.fs.old and
//      <blobs>.old;
//   2. GC over the file up to its committed end at the start (ZODB's storage.getSize()): the index at the pack
//      time, then, with gc, the objects reachable from the root (z64) through the references (referencesf) of
//      their revisions current at the pack time, plus revisions before the pack time that records after it
//      point back to (and, for those, what they refer to); without gc, every object current at the pack time;
//   3. writes Data.fs.pack: the header, the transactions up to the pack time that keep a record (status 'p';
//      each kept record carries its data: prev 0, no back pointer; a back pointer to nothing stays 0), then
//      every transaction after the pack time as it is (back pointers re-aimed at the copies, prev pointers at
//      the packed file). A pack that frees nothing stops here (Data.fs.pack removed, null returned), as does
//      a redundant one (RedundantPackWarning, logged at info);
//   4. the transactions committed meanwhile are copied without the commit lock, then, holding it (it is held
//      only to see that nothing more came and for the swap: ZODB holds it longer), Data.fs.pack is fsynced and
//      PackTarget.swap renames Data.fs to Data.fs.old and Data.fs.pack to Data.fs (packed.rename(), which fsyncs
//      the directory) and installs the new index and end;
//   5. after the lock: the blob files of dropped revisions are removed (moved to <blobs>.old with keepOld, where
//      the remaining ones are hard-linked too), Data.fs.old is removed unless keepOld, and the index file is
//      written (PackTarget.saveIndex, else the packed index as it was at the swap).
//
// The output is byte for byte what ZODB's packer writes for the same file and stop tid (tested against ZODB 6.4
// at every transaction boundary of a varied history, with and without GC). Where it differs from ZODB:
//   - a reference, at the pack time, to an object that does not exist is a POSKeyError (ZODB: KeyError);
//   - a record after the pack time whose back pointer cannot be re-aimed (without GC, an undo pointing at a
//     revision the pack drops) is a PackError (ZODB: AssertionError); in both cases Data.fs stays as it was;
//   - the blob removals are kept in memory, not in `<blobs>/.removed` (which ZODB leaves behind when a pack
//     frees nothing);
//   - Data.fs.pack is fsynced before the swap, and the directory after it (ZODB does neither).

import { open, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { CorruptedError, POSError, POSKeyError, StorageError } from '../errors.js';
import { compareIds, idEquals, u64, z64, type Oid, type Tid } from '../ids.js';
import type { PackProgressListener, ReferencesFinder } from '../interfaces.js';
import { ProgressReporter } from '../progress.js';
import { isBlobRecord, type BlobDirectory } from '../blobs/index.js';
import { fsyncDirectory } from './file.js';
import { followBack, windowDataHeader, windowNum, windowTxnHeader } from './records.js';
import { readFully, WindowReader } from './window.js';
import {
  checkDataHeader,
  checkTxnHeader,
  DATA_HDR_LEN,
  dataRecordLen,
  decodeTxnHeader,
  encodeDataHeader,
  encodeTxnHeader,
  FILE_HEADER_LEN,
  readU64,
  STATUS_PACKED,
  TRANS_HDR_LEN,
  txnHeaderLen,
  txnHeaderLenAt,
  writeU64,
  type DataHeader,
  type TxnHeaderFull,
} from './format.js';
import { FsIndex } from './fsindex.js';
import { writeIndexFile } from './indexfile.js';
import type { ScanLog } from './scan.js';

// ---------------------------------------------------------------------------------------------------------
// the interface with the engine

/**
 * What the packer needs from the storage. The packer opens its own read handle on `path` and writes
 * `path + '.pack'` next to it.
 */
export interface PackTarget {
  /** The data file (Data.fs). */
  readonly path: string;
  /**
   * The end of the last committed transaction (ZODB's _pos): data below it never changes. Read once at the
   * start (the GC's snapshot), then while holding the commit lock.
   */
  committedEnd(): number;
  /** Runs `fn` holding the storage's commit lock (no transaction between tpcBegin and tpcFinish/tpcAbort). */
  withCommitLock<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Called holding the commit lock once Data.fs.pack holds everything and is on disk. Must: stop reads of the
   * old file (in-flight reads through the old handle may finish: its positions stay valid), call
   * `packed.rename()` (Data.fs -> Data.fs.old, Data.fs.pack -> Data.fs, directory fsynced; it throws before
   * the point of no return when the first rename fails), then reopen Data.fs and take `packed.index` (now the
   * storage's: the packer keeps no reference) and `packed.end` as its index and end, dropping anything that
   * remembers old file positions. Once `packed.rename()` has resolved there is no way back: swap must then
   * install the packed file (a failure after it leaves the storage pointing at Data.fs.old).
   */
  swap(packed: PackedFile): Promise<void>;
  /**
   * Writes the storage's index file as close does (ZODB calls _save_index after a pack). Without it, the packer
   * writes the packed index as it was at the swap, with the packed end as its position.
   */
  saveIndex?(): Promise<void>;
}

export interface PackedFile {
  /** Data.fs.pack */
  readonly packedPath: string;
  /** oid -> position in the packed file */
  readonly index: FsIndex;
  /** the end of the packed file: the storage's new end */
  readonly end: number;
  /** Data.fs -> Data.fs.old, Data.fs.pack -> Data.fs, fsync of the directory. */
  rename(): Promise<void>;
}

export interface PackOptions {
  /** garbage collection (ZODB's pack_gc, default true in ZODB) */
  gc: boolean;
  /** the storage's blob directory: blob files of dropped revisions and objects go */
  blobs?: BlobDirectory;
  /** keep Data.fs.old and <blobs>.old (ZODB's pack_keep_old, default true) */
  keepOld?: boolean;
  /** tells blob records (default: ZODB.blob.is_blob_record; a storage transforming records passes its own) */
  isBlobRecord?: (data: Uint8Array) => boolean;
  log?: ScanLog;
  /**
   * told of the bytes of the data file gone through: phase 'reachability' (the GC's passes over the file) then
   * 'copy' (writing Data.fs.pack, with what was committed meanwhile), each ended with done === total
   */
  onProgress?: PackProgressListener;
}

export interface PackResult {
  /** the end of the packed data file (the storage's new end) */
  end: number;
  /** the packed index (owned by the storage after the swap) */
  index: FsIndex;
  /** in the old file: the end of the last transaction at or before the pack time (fspack's packpos) */
  packPos: number;
  /** the old file's committed end at the swap */
  oldEnd: number;
  /** blob files or oid directories removed (or moved to <blobs>.old) */
  blobsRemoved: number;
}

// ---------------------------------------------------------------------------------------------------------
// errors

/** ZODB.FileStorage.FileStorage.FileStorageError. */
export class FileStorageError extends StorageError {
  override readonly pythonName: string = 'ZODB.FileStorage.FileStorage.FileStorageError';
  override name = 'FileStorageError';
}

/** The pack time is at or before that of an earlier pack, or nothing changed since: nothing to do. */
export class RedundantPackWarning extends FileStorageError {
  override readonly pythonName: string = 'ZODB.FileStorage.FileStorage.RedundantPackWarning';
  override name = 'RedundantPackWarning';
}

/** ZODB.FileStorage.fspack.PackError: the packed file could not be made consistent. */
export class PackError extends POSError {
  override readonly pythonName: string = 'ZODB.FileStorage.fspack.PackError';
  override name = 'PackError';
}

// ---------------------------------------------------------------------------------------------------------
// reading the data file

const SEQ_WINDOW = 4 << 20;
const RANDOM_WINDOW = 64 << 10;
const WRITE_BUFFER = 1 << 20;

// ---------------------------------------------------------------------------------------------------------
// writing Data.fs.pack

class PackWriter {
  #buf = Buffer.allocUnsafe(WRITE_BUFFER);
  #used = 0;
  /** the file position of #buf[0] */
  #bufStart = 0;

  constructor(
    readonly fh: FileHandle,
    readonly path: string,
  ) {}

  /** The logical end (ZODB's tfile.tell()). */
  get pos(): number {
    return this.#bufStart + this.#used;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.#used + data.length > this.#buf.length) await this.flush();
    if (data.length > this.#buf.length) {
      await writeAll(this.fh, data, this.#bufStart);
      this.#bufStart += data.length;
      return;
    }
    this.#buf.set(data, this.#used);
    this.#used += data.length;
  }

  /** Overwrites 8 bytes at `at` (below pos) with n. */
  async patchU64(at: number, n: number): Promise<void> {
    const b = Buffer.allocUnsafe(8);
    writeU64(b, 0, n);
    for (let i = 0; i < 8; i++) {
      const p = at + i;
      if (p >= this.#bufStart) this.#buf[p - this.#bufStart] = b[i];
    }
    if (at < this.#bufStart) {
      const n0 = Math.min(8, this.#bufStart - at);
      await writeAll(this.fh, b.subarray(0, n0), at);
    }
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    await writeAll(this.fh, this.#buf.subarray(0, this.#used), this.#bufStart);
    this.#bufStart += this.#used;
    this.#used = 0;
  }

  /** Reads back what was written (flushing first). */
  async read(pos: number, n: number): Promise<Buffer> {
    await this.flush();
    const b = Buffer.allocUnsafe(n);
    const got = await readFully(this.fh, b, n, pos);
    if (got < n) throw new CorruptedError(this.path, pos, 'read past the end of the packed file');
    return b;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array, pos: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, pos + done);
    if (bytesWritten <= 0) throw new Error(`write at ${pos + done} wrote nothing`);
    done += bytesWritten;
  }
}

function u64Bytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeU64(b, 0, n);
  return b;
}

/** The transactions written to the packed file: tid -> position, in file order (PackCopier._txn_find). */
class TxnPositions {
  #hi = new Uint32Array(1024);
  #lo = new Uint32Array(1024);
  #pos = new Float64Array(1024);
  #n = 0;

  add(tid: Tid, pos: number): void {
    if (this.#n === this.#hi.length) {
      const grow = <T extends Uint32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.#hi = grow(this.#hi);
      this.#lo = grow(this.#lo);
      this.#pos = grow(this.#pos);
    }
    const v = Buffer.from(tid.buffer, tid.byteOffset, 8);
    this.#hi[this.#n] = v.readUInt32BE(0);
    this.#lo[this.#n] = v.readUInt32BE(4);
    this.#pos[this.#n] = pos;
    this.#n++;
  }

  /** The position of the transaction `tid`, or -1. */
  find(tid: Tid): number {
    const v = Buffer.from(tid.buffer, tid.byteOffset, 8);
    const hi = v.readUInt32BE(0);
    const lo = v.readUInt32BE(4);
    let a = 0;
    let b = this.#n;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.#hi[m] < hi || (this.#hi[m] === hi && this.#lo[m] < lo)) a = m + 1;
      else b = m;
    }
    if (a < this.#n && this.#hi[a] === hi && this.#lo[a] === lo) return this.#pos[a];
    // tids out of order (never in a sane file): ZODB's walk from the end
    for (let i = this.#n - 1; i >= 0; i--) if (this.#hi[i] === hi && this.#lo[i] === lo) return this.#pos[i];
    return -1;
  }
}

// ---------------------------------------------------------------------------------------------------------
// the packer

const inProgress = new Set<string>();

/** Whether a pack of this data file is running (ZODB's _pack_is_in_progress: undoLog refuses meanwhile). */
export function packInProgress(dataPath: string): boolean {
  return inProgress.has(resolve(dataPath));
}

class Packer {
  readonly file: string;
  readonly seq: WindowReader;
  readonly rnd: WindowReader;
  ltid: Tid | null = null;
  packpos = 0;
  /** oid -> current record position at the pack time (dropped after the GC) */
  oid2curpos: FsIndex | null = new FsIndex();
  /** oid -> a reachable record position */
  reachable = new FsIndex();
  /** oid -> more reachable record positions (revisions that records after the pack time point back to) */
  reachEx = new Map<bigint, number[]>();
  /** blob removals: 8-byte oids (whole objects) and 16-byte oid+tid (revisions), in ZODB's order */
  readonly removed: Uint8Array[] = [];
  /** the packed index */
  readonly index = new FsIndex();
  readonly txns = new TxnPositions();
  out!: PackWriter;

  constructor(
    readonly fh: FileHandle,
    file: string,
    readonly eof: number,
    readonly packTime: Tid,
    readonly gc: boolean,
    readonly referencesf: ReferencesFinder,
    readonly packBlobs: boolean,
    readonly isBlob: (data: Uint8Array) => boolean,
    readonly log: ScanLog,
    readonly onProgress?: PackProgressListener,
  ) {
    this.file = file;
    this.seq = new WindowReader(fh, file, eof, SEQ_WINDOW);
    this.rnd = new WindowReader(fh, file, eof, RANDOM_WINDOW);
  }

  fail(pos: number, msg: string): never {
    this.log('error', `${this.file}:${pos}:${msg}`);
    throw new CorruptedError(this.file, pos, msg);
  }

  checkTxn(th: TxnHeaderFull, pos: number): void {
    checkTxnHeader(th, pos, this.file, this.ltid);
    this.ltid = th.tid;
  }

  /** Checks the trailing copy of the length of the transaction `th` at `pos`; the position after it. */
  async trailer(pos: number, th: TxnHeaderFull): Promise<number> {
    const tlen = await windowNum(this.seq, pos);
    if (tlen !== th.tl) {
      this.fail(
        pos,
        `redundant transaction length does not match initial transaction length: ${tlen} != ${th.tl}`,
      );
    }
    return pos + 8;
  }

  /** The data records of the transaction `th` at `tpos`, each checked (checkData), read through the window. */
  async *records(tpos: number, th: TxnHeaderFull): AsyncGenerator<[number, DataHeader]> {
    const end = tpos + th.tl;
    let pos = tpos + txnHeaderLen(th);
    while (pos < end) {
      const dh = await windowDataHeader(this.seq, pos);
      checkDataHeader(th, tpos, dh, pos, this.file);
      yield [pos, dh];
      pos += dataRecordLen(dh.plen);
    }
  }

  // ---- GC (fspack.GC)

  async findReachable(): Promise<boolean> {
    const progress = ProgressReporter.for(this.onProgress, 'reachability', this.eof);
    if (!(await this.buildPackIndex(progress))) return false;
    if (this.gc) {
      await this.findReachableAtPacktime([z64]);
      await this.findReachableFromFuture(progress);
      this.oid2curpos = null;
    } else {
      this.reachable = this.oid2curpos!;
    }
    progress?.end();
    return true;
  }

  /** The index at the pack time and packpos; false when the file holds no transaction. */
  async buildPackIndex(progress: ProgressReporter | null): Promise<boolean> {
    const cur = this.oid2curpos!;
    let pos = FILE_HEADER_LEN;
    let unpacked = false;
    let th: TxnHeaderFull | null = null;
    while (pos < this.eof) {
      th = await windowTxnHeader(this.seq, pos);
      if (compareIds(th.tid, this.packTime) > 0) break;
      this.checkTxn(th, pos);
      if (th.status !== STATUS_PACKED) unpacked = true;
      for await (const [rpos, dh] of this.records(pos, th)) {
        if (dh.plen || dh.back) cur.set(dh.oid, rpos);
        else cur.delete(dh.oid);
      }
      pos += th.tl;
      pos = await this.trailer(pos, th);
      progress?.update(pos);
    }
    this.packpos = pos;
    if (th === null) return false;
    if (unpacked) return true;
    // a redundant pack: everything up to the pack time is packed already, and so is what follows it
    let next = th;
    if (pos >= this.eof) {
      // ZODB reads on in the live file (a transaction committed since the start); at its end, the last one
      const head = Buffer.alloc(TRANS_HDR_LEN);
      if ((await readFully(this.fh, head, TRANS_HDR_LEN, pos)) === TRANS_HDR_LEN)
        next = { ...th, status: String.fromCharCode(head[16]) };
    }
    if (next.status === STATUS_PACKED) {
      throw new RedundantPackWarning(
        'The database has already been packed to a later time or no changes have been made since the last pack',
      );
    }
    return true;
  }

  async findReachableAtPacktime(roots: Oid[]): Promise<void> {
    const reachable = this.reachable;
    const cur = this.oid2curpos!;
    const todo = roots.map((r) => new Uint8Array(r));
    while (todo.length) {
      const oid = todo.pop()!;
      if (reachable.has(oid)) continue;
      const pos = cur.get(oid);
      if (pos < 0) {
        // special case, pack to before creation time
        if (idEquals(oid, z64) && cur.size === 0) continue;
        throw new POSKeyError(oid); // ZODB: KeyError(oid), a reference to an object that does not exist
      }
      reachable.set(oid, pos);
      // (copies: a finder may hand back views of the record, which lives in a read window that moves on)
      for (const ref of await this.findrefs(pos)) if (!reachable.has(ref)) todo.push(new Uint8Array(ref));
    }
  }

  async findReachableFromFuture(progress: ProgressReporter | null): Promise<void> {
    const extraRoots: number[] = [];
    let pos = this.packpos;
    while (pos < this.eof) {
      const th = await windowTxnHeader(this.seq, pos);
      this.checkTxn(th, pos);
      for await (const [, dh] of this.records(pos, th)) {
        if (dh.back && dh.back < this.packpos) {
          if (this.reachable.has(dh.oid)) {
            const key = u64(dh.oid);
            let l = this.reachEx.get(key);
            if (!l) this.reachEx.set(key, (l = []));
            if (!l.includes(dh.back)) {
              l.push(dh.back);
              extraRoots.push(dh.back);
            }
          } else {
            this.reachable.set(dh.oid, dh.back);
          }
        }
      }
      pos += th.tl;
      pos = await this.trailer(pos, th);
      progress?.update(pos);
    }
    for (const p of extraRoots) await this.findReachableAtPacktime(await this.findrefs(p));
  }

  /** The oids a revision refers to, following back pointers to its data. */
  async findrefs(pos: number): Promise<Oid[]> {
    let at = pos;
    let dh = await windowDataHeader(this.rnd, at);
    while (dh.back) {
      at = dh.back;
      dh = await windowDataHeader(this.rnd, at);
    }
    if (!dh.plen) return [];
    return this.referencesf(await this.rnd.get(at + DATA_HDR_LEN, dh.plen, 'data'));
  }

  isReachable(oid: Oid, pos: number): boolean {
    const rpos = this.reachable.get(oid);
    if (rpos < 0) return false;
    if (rpos === pos) return true;
    if (this.reachEx.size === 0) return false;
    return this.reachEx.get(u64(oid))?.includes(pos) ?? false;
  }

  // ---- copying (FileStoragePacker)

  /** The data of a back pointer, following the chain; null when it ends at 0 (an undone creation). */
  async fetchDataViaBackpointer(back: number): Promise<Uint8Array | null> {
    return back ? (await followBack(this.rnd, back)).data : null;
  }

  async copyToPacktime(progress: ProgressReporter | null): Promise<[number, number]> {
    let pos = FILE_HEADER_LEN;
    let newPos = pos;
    while (pos < this.packpos) {
      const th = await windowTxnHeader(this.seq, pos);
      const [newTpos, next] = await this.copyDataRecords(pos, th);
      pos = next;
      if (newTpos) {
        newPos = this.out.pos + 8;
        const tlen = newPos - newTpos - 8;
        await this.out.patchU64(newTpos + 8, tlen);
        await this.out.write(u64Bytes(tlen));
        this.txns.add(th.tid, newTpos);
      }
      pos = await this.trailer(pos, th);
      progress?.update(pos);
    }
    return [pos, newPos];
  }

  async copyDataRecords(tpos: number, th: TxnHeaderFull): Promise<[number, number]> {
    let newTpos = 0;
    const tend = tpos + th.tl;
    let pos = tpos + txnHeaderLen(th);
    while (pos < tend) {
      const h = await windowDataHeader(this.seq, pos);
      const rec = pos;
      pos += dataRecordLen(h.plen);
      if (!this.isReachable(h.oid, rec)) {
        if (this.packBlobs) await this.noteRemovedBlob(h, rec);
        continue;
      }
      if (!newTpos) {
        newTpos = this.out.pos;
        await this.out.write(
          encodeTxnHeader({
            tid: th.tid,
            tl: th.tl,
            status: STATUS_PACKED,
            user: th.user,
            description: th.description,
            extension: th.extension,
          }),
        );
      }
      const data = h.plen
        ? await this.seq.get(rec + DATA_HDR_LEN, h.plen, 'data')
        : await this.fetchDataViaBackpointer(h.back);
      await this.writePackedDataRecord(h, data, newTpos);
    }
    return [newTpos, pos];
  }

  async noteRemovedBlob(h: DataHeader, rec: number): Promise<void> {
    const data = h.plen
      ? await this.seq.get(rec + DATA_HDR_LEN, h.plen, 'data')
      : await this.fetchDataViaBackpointer(h.back);
    if (!data || !data.length || !this.isBlob(data)) return;
    // not a duplicate of the kept record (ZEO once wrote blob records twice)
    const rpos = this.reachable.get(h.oid);
    if (rpos > 0 && idEquals((await windowDataHeader(this.rnd, rpos)).tid, h.tid)) return;
    if (rpos < 0) this.removed.push(new Uint8Array(h.oid));
    else {
      const line = new Uint8Array(16);
      line.set(h.oid, 0);
      line.set(h.tid, 8);
      this.removed.push(line);
    }
  }

  async writePackedDataRecord(h: DataHeader, data: Uint8Array | null, newTpos: number): Promise<void> {
    const plen = data ? data.length : 0;
    this.index.set(h.oid, this.out.pos);
    await this.out.write(encodeDataHeader({ oid: h.oid, tid: h.tid, prev: 0, tloc: newTpos, plen, back: 0 }));
    if (plen) await this.out.write(data!);
  }

  /** Copies the transactions in [ipos, end) as they are (copyOne for each); returns the new ipos. */
  async copyRest(ipos: number, end: number, progress: ProgressReporter | null): Promise<number> {
    this.seq.limit = end;
    this.rnd.limit = end;
    let pos = ipos;
    while (pos < end) {
      pos = await this.copyOne(pos);
      progress?.update(pos, end);
    }
    return pos;
  }

  async copyOne(ipos: number): Promise<number> {
    const th = await windowTxnHeader(this.seq, ipos);
    const pos = this.out.pos;
    await this.out.write(encodeTxnHeader({ ...th, tl: th.tl }));
    const tend = ipos + th.tl;
    let at = ipos + txnHeaderLen(th);
    const tindex: Array<[Oid, number]> = [];
    while (at < tend) {
      const h = await windowDataHeader(this.seq, at);
      const rec = at;
      at += dataRecordLen(h.plen);
      let data: Uint8Array | null;
      let prevTxn: Tid | null = null;
      if (h.plen) {
        data = await this.seq.get(rec + DATA_HDR_LEN, h.plen, 'data');
      } else {
        if (h.back) {
          const b = await followBack(this.rnd, h.back, h.oid);
          data = b.data && new Uint8Array(b.data); // a copy: the window moves on
          prevTxn = b.tid;
        } else data = null;
      }
      await this.copy(h.oid, h.tid, data, prevTxn, pos, this.out.pos, tindex);
    }
    const tlen = this.out.pos - pos;
    if (tlen !== th.tl) {
      // ZODB: AssertionError (a back pointer it could not re-aim made a record grow)
      throw new PackError(
        `transaction ${Buffer.from(th.tid).toString('hex')} at ${ipos} changed length when copied (${th.tl} -> ${tlen})`,
      );
    }
    await this.out.write(u64Bytes(tlen));
    for (const [oid, p] of tindex) this.index.set(oid, p);
    this.txns.add(th.tid, pos);
    return ipos + th.tl + 8;
  }

  // PackCopier.copy
  async copy(
    oid: Oid,
    serial: Tid,
    data: Uint8Array | null,
    prevTxn: Tid | null,
    txnpos: number,
    here: number,
    tindex: Array<[Oid, number]>,
  ): Promise<void> {
    let prevPos = 0;
    if (prevTxn !== null) {
      const tpos = this.txns.find(prevTxn);
      if (tpos < 0) throw new PackError('Invalid backpointer transaction id');
      prevPos = await this.dataFind(tpos, oid, data);
    }
    const old = this.index.get(oid);
    tindex.push([oid, here]);
    if (prevPos) {
      await this.out.write(
        encodeDataHeader({ oid, tid: serial, prev: old < 0 ? 0 : old, tloc: txnpos, plen: 0, back: prevPos }),
      );
    } else if (data === null) {
      await this.out.write(
        encodeDataHeader({ oid, tid: serial, prev: old < 0 ? 0 : old, tloc: txnpos, plen: 0, back: 0 }),
      );
    } else {
      await this.out.write(
        encodeDataHeader({
          oid,
          tid: serial,
          prev: old < 0 ? 0 : old,
          tloc: txnpos,
          plen: data.length,
          back: 0,
        }),
      );
      await this.out.write(data);
    }
  }

  // PackCopier._data_find: the record of oid in the packed transaction at tpos, if it holds `data`
  async dataFind(tpos: number, oid: Oid, data: Uint8Array | null): Promise<number> {
    const hlen = txnHeaderLenAt(await this.out.read(tpos, TRANS_HDR_LEN), 0);
    const th = decodeTxnHeader(await this.out.read(tpos, hlen), 0, this.out.path, tpos);
    const tend = tpos + th.tl;
    let pos = tpos + txnHeaderLen(th);
    while (pos < tend) {
      const hb = await this.out.read(pos, DATA_HDR_LEN);
      const plen = readU64(hb, 34);
      if (idEquals(hb.subarray(0, 8), oid)) {
        if (plen === 0) return pos; // a back pointer too: trust it
        if (data === null || plen !== data.length) {
          this.log('error', `Mismatch between data and backpointer at ${pos}`);
          return 0;
        }
        const stored = await this.out.read(pos + DATA_HDR_LEN, plen);
        return stored.equals(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) ? pos : 0;
      }
      pos += dataRecordLen(plen);
    }
    return 0;
  }
}

/** Data.fs -> Data.fs.old, Data.fs.pack -> Data.fs, then fsync of the directory (FileStorage.pack's swap). */
export async function renamePackedIntoPlace(dataPath: string): Promise<void> {
  const oldPath = dataPath + '.old';
  const packedPath = dataPath + '.pack';
  await rename(dataPath, oldPath);
  try {
    await rename(packedPath, dataPath);
  } catch (e) {
    // the rename's error is the one to report; should the way back fail too, Data.fs.old holds the data (ZODB's
    // pack does not even try to go back)
    await rename(oldPath, dataPath).catch(() => {});
    throw e;
  }
  await fsyncDirectory(dirname(dataPath));
}

/**
 * Packs the FileStorage behind `target` to `packTime` (a tid: transactions with a tid at or below it are
 * packed). Resolves with what changed, or null when the pack frees nothing (or is redundant: logged at info).
 * See the top of this file for the steps and PackTarget for the engine's part.
 */
export async function packFileStorage(
  target: PackTarget,
  packTime: Tid,
  referencesf: ReferencesFinder,
  opts: PackOptions,
): Promise<PackResult | null> {
  const log: ScanLog = opts.log ?? (() => {});
  if (packTime.length !== 8) throw new RangeError(`a pack time is a tid of 8 bytes, not ${packTime.length}`);
  if (idEquals(packTime, z64)) throw new FileStorageError('Invalid pack time');
  const path = resolve(target.path);
  if (inProgress.has(path)) throw new FileStorageError('Already packing');
  inProgress.add(path);
  try {
    const keepOld = opts.keepOld ?? true;
    await rm(path + '.old', { force: true });
    if (opts.blobs) await opts.blobs.removeOld();
    let swapped: { result: PackResult; removed: Uint8Array[]; indexCopy: FsIndex | null } | null;
    try {
      swapped = await runPack(target, path, packTime, referencesf, opts, log);
    } catch (e) {
      if (e instanceof RedundantPackWarning) {
        log('info', e.message);
        return null;
      }
      throw e;
    }
    if (!swapped) return null;
    const { result } = swapped;
    if (opts.blobs) result.blobsRemoved = await opts.blobs.applyPackRemovals(swapped.removed, { keepOld });
    if (!keepOld) await rm(path + '.old', { force: true });
    if (target.saveIndex) await target.saveIndex();
    else await writeIndexFile(path, swapped.indexCopy!, result.end);
    return result;
  } finally {
    inProgress.delete(path);
  }
}

async function runPack(
  target: PackTarget,
  path: string,
  packTime: Tid,
  referencesf: ReferencesFinder,
  opts: PackOptions,
  log: ScanLog,
): Promise<{ result: PackResult; removed: Uint8Array[]; indexCopy: FsIndex | null } | null> {
  const packedPath = path + '.pack';
  const eof = target.committedEnd();
  const fh = await open(path, 'r');
  let out: FileHandle | null = null;
  try {
    const p = new Packer(
      fh,
      path,
      eof,
      packTime,
      opts.gc,
      referencesf,
      !!opts.blobs,
      opts.isBlobRecord ?? isBlobRecord,
      log,
      opts.onProgress,
    );
    if (eof <= FILE_HEADER_LEN || !(await p.findReachable())) return null;
    const progress = ProgressReporter.for(opts.onProgress, 'copy', eof);

    out = await open(packedPath, 'w+');
    p.out = new PackWriter(out, packedPath);
    await p.out.write(await p.seq.get(0, FILE_HEADER_LEN, 'file header'));
    const [ipos0, opos] = await p.copyToPacktime(progress);
    if (ipos0 !== p.packpos)
      throw new PackError(`copied up to ${ipos0}, not to the pack position ${p.packpos}`);
    if (ipos0 === opos) {
      // the pack frees nothing
      progress?.end();
      await out.close();
      out = null;
      // (a Data.fs.pack left behind is truncated by the next pack)
      await unlink(packedPath).catch(() => {});
      log('debug', `pack of ${path}: nothing to remove`);
      return null;
    }

    // what was committed during the pack: copied without the lock, until the lock shows nothing more
    await p.out.flush();
    await out.datasync();
    let ipos = ipos0;
    for (;;) {
      let end = -1;
      const done = await target.withCommitLock(async () => {
        end = target.committedEnd();
        if (end > ipos) return null;
        await p.out.flush();
        await out!.sync();
        await out!.close();
        out = null;
        const indexCopy = target.saveIndex ? null : p.index.clone();
        let renamed = false;
        const packed: PackedFile = {
          packedPath,
          index: p.index,
          end: p.out.pos,
          rename: async () => {
            await renamePackedIntoPlace(path);
            renamed = true;
          },
        };
        await target.swap(packed);
        if (!renamed)
          throw new Error('PackTarget.swap did not call packed.rename(): Data.fs was not replaced');
        return {
          result: { end: p.out.pos, index: p.index, packPos: p.packpos, oldEnd: end, blobsRemoved: 0 },
          removed: p.removed,
          indexCopy,
        };
      });
      if (done) {
        progress?.end(done.result.oldEnd);
        return done;
      }
      ipos = await p.copyRest(ipos, end, progress);
      await p.out.flush();
      await out.datasync();
    }
  } catch (e) {
    // the pack's error is the one to report
    if (out) await out.close().catch(() => {});
    // gone when the swap renamed it into place
    await unlink(packedPath).catch(() => {});
    throw e;
  } finally {
    await fh.close();
  }
}
