// Opening a Data.fs: what FileStorage.__init__ does before it can serve (FileStorage.py _restore_index, _sane,
// _check_sanity and read_index), as functions over an open file. Nothing here writes to the data file or its
// index: a damaged tail is reported (OpenScanResult.recovery) and the storage truncates it with
// truncateDamagedTail, as ZODB does on a writable open.
//
//   1. the 4-byte header (FS30, or FS21 from Python 2);
//   2. Data.fs.index, when present, readable and sane: the transaction ending at the saved position is intact
//      and its records are where the index says (ZODB's _check_sanity); else the index is rebuilt from scratch.
//      Its structure is read, its big buckets may stay in the file (openIndexFile, ScanOptions.lazyIndex): the
//      sanity check and maxOid probe them. The header, the index's structure and the sanity check are small
//      synchronous reads: this runs before the storage serves anyone (see openIndexFile);
//   3. a scan from that position (or from byte 4) to the end of the file: every transaction and data record is
//      checked and indexed, in big sequential reads, without allocating per record.
//
// Recovery, as ZODB's read_index: a last transaction whose header is cut short, whose length runs past the end
// of the file, whose status is still 'c' (written at vote, cleared at finish), or, as ZODB's heuristic for a
// garbage tail, whose length is smaller than its header while the file's last 8 bytes do not end a transaction
// after it: a commit interrupted by a crash. zeo-ts also treats as a crash a last transaction that ends exactly
// at the end of the file but whose trailing copy of its length is wrong (ZODB refuses to open such a file): a
// commit whose last block never reached the disk. Damage anywhere else is a CorruptedError naming the file and
// the byte offset, where ZODB would sometimes truncate a healthy tail (a 'c' status or a length running past
// the end in the middle of the file: zeo-ts checks that no transaction ends the file after it) or only log
// (a record's previous or back pointer pointing at or after the record itself).

import {
  fstat as fsFstat,
  fsync as fsFsync,
  ftruncate as fsFtruncate,
  read as fsRead,
  readSync,
} from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { CorruptedError } from '../errors.js';
import type { Oid, Tid } from '../ids.js';
import {
  checkFileHeader,
  DATA_HDR_LEN,
  FILE_HEADER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLenAt,
  type FileMagic,
} from './format.js';
import { FsIndex } from './fsindex.js';
import { IndexFileError, openIndexFile } from './indexfile.js';
import { transactionEndingFile } from './records.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';
/** Where the open-time messages go; they are ZODB's (logger 'ZODB.FileStorage'), with the same wording. */
export type ScanLog = (level: LogLevel, message: string) => void;

export interface ScanOptions {
  /**
   * Time travel (read-only storages, FileStorage's `stop`): read only the transactions with a tid below this
   * one. An index file is then used only when it ends below `stop`.
   */
  stop?: Tid | null;
  /** Use Data.fs.index when it is there (default true); false always scans from the start. */
  useIndexFile?: boolean;
  /** Only changes the messages, as in ZODB: a read-only storage does not announce the truncation it won't do. */
  readOnly?: boolean;
  /** Called as the scan goes (after each chunk read, and at the end): bytes scanned, bytes to scan. */
  onProgress?: (done: number, total: number) => void;
  log?: ScanLog;
  /** Bytes per read of the scan (default 4 MiB). */
  chunkSize?: number;
  /** The file's size, when the caller knows it (saves an fstat). */
  fileSize?: number;
  /**
   * Return the index with the buckets Data.fs.index left deferred (see openIndexFile): the caller loads them
   * (FsIndex.pending, pendingAll) and releases the file (FsIndex.dispose). Default false: every bucket is
   * loaded before scanDataFile returns.
   */
  lazyIndex?: boolean;
}

/** A damaged end of file: a commit interrupted by a crash. */
export interface Recovery {
  /** where the damage starts, the end of the last committed transaction: truncate the file here */
  pos: number;
  /** the tid in the damaged transaction's header, when a whole header was there */
  tid: Tid | null;
  reason: string;
}

export interface OpenScanResult {
  /** null for an empty (0-byte) file: the storage writes the header (FS30), as read_index does */
  magic: FileMagic | null;
  fileSize: number;
  /** the end of the last committed transaction, where the next one goes (ZODB's _pos); 4 for an empty file */
  pos: number;
  index: FsIndex;
  /**
   * the tid of the last transaction before `pos` (z64 for none). ZODB's _ltid may instead be the tid of a
   * truncated transaction or of the transaction at `stop`: this is the last one kept.
   */
  lastTid: Tid;
  /** the largest oid in the index (z64 when empty) */
  maxOid: Oid;
  /** Data.fs.index was used (ZODB's _used_index) */
  usedIndexFile: boolean;
  /** the position the index file covered, when used */
  indexFilePos: number | null;
  /** why an index file that exists was not used (null when used or absent) */
  indexFileRejected: string | null;
  /** the index file was in the old one-dict form (ZODB rewrites it) */
  legacyIndexFile: boolean;
  /** set when the file ends in an interrupted commit: truncate at recovery.pos (truncateDamagedTail) */
  recovery: Recovery | null;
  /** the scan ended at a transaction with tid >= options.stop */
  stopped: boolean;
  /** transactions read by the scan (not counting those the index file covered) */
  transactionsScanned: number;
  /** data records read by the scan */
  recordsScanned: number;
}

const Z64 = new Uint8Array(8);
const TWO32 = 0x100000000;
const DEFAULT_CHUNK = 4 << 20;
/** the read-ahead starts this far before the end of the current chunk (more than any header) */
const READ_AHEAD_OVERLAP = 256;

function be32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function be64(b: Uint8Array, o: number): number {
  return be32(b, o) * TWO32 + be32(b, o + 4);
}

function tidOf(hi: number, lo: number): Tid {
  const t = Buffer.allocUnsafe(8);
  t.writeUInt32BE(hi, 0);
  t.writeUInt32BE(lo, 4);
  return new Uint8Array(t.buffer, t.byteOffset, 8).slice();
}

/** An open file, named by its descriptor: a FileHandle, a RandomAccessFile (whose owner closes it). */
export interface OpenFile {
  readonly fd: number;
}

function call<T = void>(fn: (cb: (err: NodeJS.ErrnoException | null, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

async function readFully(
  fh: OpenFile,
  buf: Uint8Array,
  off: number,
  len: number,
  pos: number,
): Promise<number> {
  let got = 0;
  while (got < len) {
    const n = await call<number>((cb) => fsRead(fh.fd, buf, off + got, len - got, pos + got, cb));
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** `n` bytes at `pos` (fewer at the end of the file). */
async function readAt(fh: OpenFile, pos: number, n: number): Promise<Buffer> {
  const b = Buffer.allocUnsafe(n);
  const got = await readFully(fh, b, 0, n, pos);
  return got === n ? b : b.subarray(0, got);
}

/** The size of an open file. */
async function sizeOf(fh: OpenFile): Promise<number> {
  return (await call<{ size: number }>((cb) => fsFstat(fh.fd, cb))).size;
}

function statusName(s: string): string {
  return JSON.stringify(s);
}

// ---------------------------------------------------------------------------------------------------------
// _check_sanity

const SANITY_WINDOW = 4096;

/** Small synchronous reads of a file (see checkIndexSanity), through a window of a few KiB. */
class SyncWindow {
  private buf = Buffer.allocUnsafe(SANITY_WINDOW);
  private start = 0;
  private len = 0;

  constructor(
    private readonly fd: number,
    private readonly fileSize: number,
  ) {}

  /**
   * `n` bytes at `pos` (fewer at the end of the file), a view valid until the next call. `backward`: the
   * window is read ending there (the next reads go back), else starting there.
   */
  at(pos: number, n: number, backward = false): Buffer {
    if (!(pos >= this.start && pos + n <= this.start + this.len)) {
      if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
      const size = this.buf.length;
      const from = backward ? Math.max(0, pos + n - size) : pos;
      const want = Math.max(0, Math.min(size, this.fileSize - from));
      let got = 0;
      while (got < want) {
        const r = readSync(this.fd, this.buf, got, want - got, from + got);
        if (r === 0) break;
        got += r;
      }
      this.start = from;
      this.len = got;
    }
    const o = pos - this.start;
    return this.buf.subarray(o, Math.max(o, Math.min(o + n, this.len)));
  }
}

/**
 * FileStorage._check_sanity: reads back from `pos` (the saved index's position) over the last transaction
 * that is not undone or empty, and checks up to 5 of its records against the index (`lookup`: the position
 * the index gives an oid, -1 for none). The tid of the transaction ending at `pos` when sane, else null. ZODB
 * also calls a position below 100 insane.
 *
 * Synchronous reads on `fd` (two or three of 4 KiB, usually): it runs while a storage opens, before it
 * serves anyone (see openIndexFile), where a round trip to the thread pool for each would cost more.
 */
export function checkIndexSanity(
  fd: number,
  fileSize: number,
  lookup: (oidHi: number, oidLo: number) => number,
  pos: number,
): Tid | null {
  if (pos < 100) return null;
  if (fileSize < pos) return null;
  const w = new SyncWindow(fd, fileSize);
  let ltid: Tid | null = null;
  const maxChecked = 5;
  let checked = 0;
  while (checked < maxChecked) {
    const rstl = w.at(pos - 8, 8, true);
    if (rstl.length < 8) return null;
    const tl = be64(rstl, 0);
    pos = pos - tl - 8;
    if (pos < FILE_HEADER_LEN) return null;
    // the header, and the first records after it
    const h = w.at(pos, TRANS_HDR_LEN, tl + 8 <= SANITY_WINDOW);
    if (h.length < TRANS_HDR_LEN) return null;
    if (ltid === null) ltid = new Uint8Array(h.subarray(0, 8));
    if (be64(h, 8) !== tl) return null;
    const status = String.fromCharCode(h[16]);
    if (status === 'u') continue;
    if (status !== ' ' && status !== 'p') return null;
    const hlen = txnHeaderLenAt(h, 0);
    if (tl < hlen) return null;
    const tend = pos + tl;
    let opos = pos + hlen;
    if (opos === tend) continue;
    while (opos < tend && checked < maxChecked) {
      const d = w.at(opos, DATA_HDR_LEN);
      if (d.length < DATA_HDR_LEN) return null;
      if (((d[32] << 8) | d[33]) !== 0) return null;
      const plen = be64(d, 34);
      const reclen = DATA_HDR_LEN + (plen || 8);
      if (opos + reclen > tend || be64(d, 24) !== pos) return null;
      const cur = lookup(be32(d, 0), be32(d, 4));
      if ((cur === -1 ? 0 : cur) !== opos) return null;
      checked++;
      opos += reclen;
    }
    return ltid;
  }
  return ltid;
}

// ---------------------------------------------------------------------------------------------------------
// read_index

export interface ReadIndexResult {
  pos: number;
  lastTid: Tid;
  recovery: Recovery | null;
  stopped: boolean;
  transactions: number;
  records: number;
}

/**
 * FileStorage's read_index: scans the transactions from `start` to the end of the file, adding each
 * committed transaction's records to `index` (a transaction's records go in only once it proved whole).
 * `ltid` is the tid of the transaction ending at `start` (z64 at 4). The file's header must have been checked.
 */
export async function readIndex(
  fh: OpenFile,
  file: string,
  fileSize: number,
  index: FsIndex,
  start: number,
  ltid: Tid,
  options: ScanOptions = {},
): Promise<ReadIndexResult> {
  const log: ScanLog = options.log ?? (() => {});
  const readOnly = options.readOnly ?? false;
  const onProgress = options.onProgress;
  const chunkSize = Math.max(options.chunkSize ?? DEFAULT_CHUNK, 4096);
  const stop = options.stop ?? null;
  const stopHi = stop ? be32(stop, 0) : 0;
  const stopLo = stop ? be32(stop, 4) : 0;

  // Two buffers: the scan parses one while the next chunk is read into the other (it starts a little before
  // the end of the current one, where the next fill will ask for: a header straddling the chunks).
  const bufSize = Math.min(chunkSize, Math.max(fileSize - start, 64));
  let buf = Buffer.allocUnsafe(bufSize);
  let spare = Buffer.allocUnsafe(bufSize);
  let bufStart = 0;
  let bufEnd = 0; // the file range [bufStart, bufEnd) is in buf
  let ahead: Promise<number> | null = null; // the read into `spare` of [aheadStart, ...)
  let aheadStart = 0;
  const total = fileSize - start;
  const readAhead = (): void => {
    if (bufEnd >= fileSize) return;
    aheadStart = Math.max(bufStart, bufEnd - READ_AHEAD_OVERLAP);
    ahead = readFully(fh, spare, 0, Math.min(spare.length, fileSize - aheadStart), aheadStart);
  };
  /** makes the file range [p, p + n) available in buf (less at the end of the file); n <= 64 */
  const fill = async (p: number, n: number): Promise<void> => {
    if (ahead !== null) {
      const got = await ahead;
      ahead = null;
      if (p >= aheadStart && p + Math.min(n, fileSize - p) <= aheadStart + got) {
        const b = buf;
        buf = spare;
        spare = b;
        bufStart = aheadStart;
        bufEnd = aheadStart + got;
        if (onProgress) onProgress(p - start, total);
        readAhead();
        return;
      }
    }
    const want = Math.min(buf.length, fileSize - p);
    const got = want > 0 ? await readFully(fh, buf, 0, want, p) : 0;
    bufStart = p;
    bufEnd = p + got;
    if (onProgress) onProgress(p - start, total);
    readAhead();
  };

  // the records of the transaction being read (ZODB's tindex), applied once it proved whole
  let stagedCap = 1024;
  let stagedHi = new Uint32Array(stagedCap);
  let stagedLo = new Uint32Array(stagedCap);
  let stagedPos = new Float64Array(stagedCap);

  let ltidHi = be32(ltid, 0);
  let ltidLo = be32(ltid, 4);
  // the last transaction kept
  let keptHi = ltidHi;
  let keptLo = ltidLo;
  let pos = start;
  let recovery: Recovery | null = null;
  let stopped = false;
  let transactions = 0;
  let records = 0;

  const truncated = (reason: string, tid: Tid | null, p: number): void => {
    if (!readOnly) log('warning', `${file} truncated, possibly due to damaged records at ${p}`);
    recovery = { pos: p, tid, reason };
  };

  try {
    for (;;) {
      if (pos >= fileSize) break;
      if (pos < bufStart || pos + TRANS_HDR_LEN > bufEnd) await fill(pos, TRANS_HDR_LEN);
      let o = pos - bufStart;
      if (bufEnd - pos < TRANS_HDR_LEN) {
        if (!readOnly) log('warning', `${file} truncated at ${pos}`);
        recovery = {
          pos,
          tid: null,
          reason: `the transaction header at ${pos} is cut short by the end of the file`,
        };
        break;
      }
      const tidHi = be32(buf, o);
      const tidLo = be32(buf, o + 4);
      const tl = be64(buf, o + 8);
      const statusCode = buf[o + 16];
      const hlen =
        TRANS_HDR_LEN +
        ((buf[o + 17] << 8) | buf[o + 18]) +
        ((buf[o + 19] << 8) | buf[o + 20]) +
        ((buf[o + 21] << 8) | buf[o + 22]);

      if (tidHi < ltidHi || (tidHi === ltidHi && tidLo <= ltidLo)) {
        log('warning', `${file} time-stamp reduction at ${pos}`);
      }
      ltidHi = tidHi;
      ltidLo = tidLo;

      const tend = pos + tl;
      if (tend + 8 > fileSize || statusCode === 0x63 /* 'c' */) {
        if (tend + 8 > fileSize) {
          // a crash leaves nothing after the interrupted transaction; a length damaged in the middle of the
          // file does: a whole transaction ending the file after this one
          const last = await transactionEndingFile((p, n) => readAt(fh, p, n), fileSize, pos);
          const q = last !== null && ' puc'.includes(String.fromCharCode(last.status)) ? last.pos : -1;
          if (q !== -1) {
            throw new CorruptedError(
              file,
              pos,
              `transaction length ${tl} runs past the end of the file, but the transaction at ${q} ends it`,
            );
          }
          truncated(
            `the transaction at ${pos} (length ${tl}) runs past the end of the file`,
            tidOf(tidHi, tidLo),
            pos,
          );
        } else if (tend + 8 < fileSize) {
          throw new CorruptedError(
            file,
            pos,
            'transaction with checkpoint flag set, in the middle of the file',
          );
        } else {
          truncated(
            `the last transaction, at ${pos}, has the checkpoint flag: its commit did not finish`,
            tidOf(tidHi, tidLo),
            pos,
          );
        }
        break;
      }

      if (statusCode !== 0x20 && statusCode !== 0x75 && statusCode !== 0x70) {
        log(
          'warning',
          `${file} has invalid status, ${statusName(String.fromCharCode(statusCode))}, at ${pos}`,
        );
      }

      if (tl < hlen) {
        // read_index: bad data in the middle of the file, or a turd a crash dropped at the end? Look at what
        // should be the last transaction's length, at the end of the file.
        const last = await readAt(fh, fileSize - 8, 8);
        const rtl = be64(last, 0);
        if (fileSize - rtl < pos || rtl < TRANS_HDR_LEN) {
          log('critical', `${file} has invalid transaction header at ${pos}`);
          if (!readOnly) {
            log(
              'warning',
              `It appears that there is invalid data at the end of the file, possibly due to a system crash.  ` +
                `${file} truncated to recover from bad data at end.`,
            );
          }
          truncated(
            `the transaction header at ${pos} is invalid (length ${tl} < header ${hlen}) and ends the file`,
            tidOf(tidHi, tidLo),
            pos,
          );
          break;
        }
        throw new CorruptedError(
          file,
          pos,
          `invalid transaction header (length ${tl} < header length ${hlen})`,
        );
      }

      if (stop && (tidHi > stopHi || (tidHi === stopHi && tidLo >= stopLo))) {
        stopped = true;
        break;
      }

      if (statusCode === 0x75 /* 'u' */) {
        // an undone transaction (old ZODB): skipped
        const t = await readAt(fh, tend, 8);
        if (be64(t, 0) !== tl) throw new CorruptedError(file, pos, 'inconsistent transaction length');
        pos = tend + 8;
        keptHi = tidHi;
        keptLo = tidLo;
        transactions++;
        continue;
      }

      if (tend + 8 === fileSize) {
        // the last transaction: a wrong trailing length means its last block never reached the disk
        const t = await readAt(fh, tend, 8);
        if (be64(t, 0) !== tl) {
          truncated(
            `the last transaction, at ${pos}, ends in a wrong copy of its length: its commit did not reach the disk`,
            tidOf(tidHi, tidLo),
            pos,
          );
          break;
        }
      }

      let rpos = pos + hlen;
      let staged = 0;
      while (rpos < tend) {
        if (rpos + DATA_HDR_LEN > tend) {
          throw new CorruptedError(
            file,
            rpos,
            `data record exceeds transaction record (header past ${tend})`,
          );
        }
        // tend + 8 <= fileSize: the header (and a back pointer that fits in the transaction) can be read
        if (rpos < bufStart || rpos + DATA_HDR_LEN + 8 > bufEnd) await fill(rpos, DATA_HDR_LEN + 8);
        o = rpos - bufStart;
        const oidHi = be32(buf, o);
        const oidLo = be32(buf, o + 4);
        const prev = be64(buf, o + 16);
        const tloc = be64(buf, o + 24);
        const vlen = (buf[o + 32] << 8) | buf[o + 33];
        const plen = be64(buf, o + 34);
        const dlen = DATA_HDR_LEN + (plen || 8);
        if (rpos + dlen > tend || tloc !== pos) {
          throw new CorruptedError(
            file,
            rpos,
            tloc !== pos
              ? `data record does not point to its transaction header (${tloc} != ${pos})`
              : `data record exceeds transaction record (${rpos + dlen} > ${tend})`,
          );
        }
        if (vlen !== 0) throw new CorruptedError(file, rpos, `data record with a version (length ${vlen})`);
        if (prev >= rpos || (prev !== 0 && prev < FILE_HEADER_LEN)) {
          throw new CorruptedError(file, rpos, `invalid previous pointer: ${prev}`);
        }
        if (plen === 0) {
          const back = be64(buf, o + DATA_HDR_LEN);
          if (back >= rpos || (back !== 0 && back < FILE_HEADER_LEN)) {
            throw new CorruptedError(file, rpos, `invalid back pointer: ${back}`);
          }
        }
        const cur = index.getHiLo(oidHi, oidLo);
        if ((cur === -1 ? 0 : cur) !== prev) {
          // ZODB only logs this
          if (prev) log('error', `${file} incorrect previous pointer at ${rpos}`);
          else log('warning', `${file} incorrect previous pointer at ${rpos}`);
        }
        if (staged === stagedCap) {
          stagedCap *= 2;
          const h2 = new Uint32Array(stagedCap);
          const l2 = new Uint32Array(stagedCap);
          const p2 = new Float64Array(stagedCap);
          h2.set(stagedHi);
          l2.set(stagedLo);
          p2.set(stagedPos);
          stagedHi = h2;
          stagedLo = l2;
          stagedPos = p2;
        }
        stagedHi[staged] = oidHi;
        stagedLo[staged] = oidLo;
        stagedPos[staged++] = rpos;
        rpos += dlen;
      }
      if (rpos !== tend) throw new CorruptedError(file, pos, "data records don't add up");

      // the (intentionally redundant) transaction length
      if (tend < bufStart || tend + 8 > bufEnd) await fill(tend, 8 + TRANS_HDR_LEN);
      o = tend - bufStart;
      if (bufEnd - tend < 8 || be64(buf, o) !== tl) {
        throw new CorruptedError(file, tend, 'redundant transaction length check failed');
      }
      pos = tend + 8;
      for (let i = 0; i < staged; i++) index.setHiLo(stagedHi[i], stagedLo[i], stagedPos[i]);
      records += staged;
      transactions++;
      keptHi = tidHi;
      keptLo = tidLo;
    }
  } finally {
    // never leave a read running on the caller's file handle (its result or error no longer matters)
    if (ahead !== null) await (ahead as Promise<number>).catch(() => 0);
  }
  if (onProgress) onProgress(pos - start, total);
  return { pos, lastTid: tidOf(keptHi, keptLo), recovery, stopped, transactions, records };
}

// ---------------------------------------------------------------------------------------------------------
// the whole open

/**
 * Everything FileStorage does on open before serving: header, index file, scan, recovery report. `file` is
 * the data file's path (its index is `file + '.index'`); `fh` is open on it for reading.
 */
export async function scanDataFile(
  fh: OpenFile,
  file: string,
  options: ScanOptions = {},
): Promise<OpenScanResult> {
  const log: ScanLog = options.log ?? (() => {});
  const fileSize = options.fileSize ?? (await sizeOf(fh));
  const result: OpenScanResult = {
    magic: null,
    fileSize,
    pos: FILE_HEADER_LEN,
    index: new FsIndex(),
    lastTid: Z64,
    maxOid: Z64,
    usedIndexFile: false,
    indexFilePos: null,
    indexFileRejected: null,
    legacyIndexFile: false,
    recovery: null,
    stopped: false,
    transactionsScanned: 0,
    recordsScanned: 0,
  };
  if (fileSize === 0) return result;
  // (a synchronous read of 4 bytes: see checkIndexSanity)
  const header = Buffer.alloc(FILE_HEADER_LEN);
  const got = readSync(fh.fd, header, 0, FILE_HEADER_LEN, 0);
  result.magic = checkFileHeader(header.subarray(0, got), file);

  let start = FILE_HEADER_LEN;
  let ltid: Tid = Z64;
  if (options.useIndexFile ?? true) {
    let contents = null;
    try {
      contents = await openIndexFile(file);
    } catch (e) {
      log('error', `loading index: ${(e as Error).message}`);
      result.indexFileRejected = `unreadable: ${(e as Error).message}`;
    }
    if (contents) {
      const index = contents.index;
      let tid: Tid | null = null;
      let unreadable = false;
      try {
        // deferred buckets are probed, not loaded
        tid = checkIndexSanity(fh.fd, fileSize, (hi, lo) => index.peekHiLo(hi, lo), contents.pos);
      } catch (e) {
        // the index file, read by the probes, changed or failed since it was opened
        if (!(e instanceof IndexFileError)) {
          await index.dispose();
          throw e;
        }
        log('error', `loading index: ${e.message}`);
        result.indexFileRejected = `unreadable: ${e.message}`;
        unreadable = true;
      }
      const stop = options.stop ?? null;
      if (unreadable) {
        // (said above)
      } else if (!tid) {
        log('warning', `Ignoring index for ${file}`);
        result.indexFileRejected = `it does not agree with the data file at position ${contents.pos}`;
      } else if (stop && Buffer.compare(tid, stop) >= 0) {
        result.indexFileRejected = 'it covers transactions at or after the stop tid';
      } else {
        result.index = index;
        result.usedIndexFile = true;
        result.indexFilePos = contents.pos;
        result.legacyIndexFile = contents.format === 'legacy';
        start = contents.pos;
        ltid = tid;
      }
      if (result.index !== index) await index.dispose();
    }
  }
  if (result.usedIndexFile && (start < fileSize || !(options.lazyIndex ?? false))) {
    // every bucket now (the scan looks every record's oid up); one that cannot be read makes the index
    // unusable, as an unreadable index file is
    try {
      await result.index.pendingAll();
    } catch (e) {
      await result.index.dispose();
      log('error', `loading index: ${(e as Error).message}`);
      result.indexFileRejected = `unreadable: ${(e as Error).message}`;
      result.index = new FsIndex();
      result.usedIndexFile = false;
      result.indexFilePos = null;
      result.legacyIndexFile = false;
      start = FILE_HEADER_LEN;
      ltid = Z64;
    }
  }
  const index = result.index;
  try {
    if (start < fileSize) {
      const { transactions, records, ...found } = await readIndex(
        fh,
        file,
        fileSize,
        index,
        start,
        ltid,
        options,
      );
      Object.assign(result, found, { transactionsScanned: transactions, recordsScanned: records });
    } else {
      result.pos = start;
      result.lastTid = ltid;
      if (options.onProgress) options.onProgress(0, 0);
    }
    let maxOid = index.peekMaxOid();
    if (maxOid === null) {
      await index.pendingAll();
      maxOid = index.maxOid();
    }
    result.maxOid = maxOid;
  } catch (e) {
    await index.dispose();
    throw e;
  }
  return result;
}

/** scanDataFile on a path: opens it read-only, scans, closes. */
export async function scanDataPath(file: string, options: ScanOptions = {}): Promise<OpenScanResult> {
  const fh = await open(file, 'r');
  try {
    return await scanDataFile(fh, file, options);
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// recovery (this one writes: the storage calls it on a writable open when scanDataFile reported a recovery)

/** Whether `path` exists (ENOENT: no; other errors are thrown). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * ZODB's _truncate: copies the damaged tail [pos, end of file) to the first free `<file>.tr<N>` (N = 0, 1, ...)
 * and truncates the data file at `pos`. `fh` must be open for writing. Returns the path of the copy.
 */
export async function truncateDamagedTail(
  fh: OpenFile,
  file: string,
  pos: number,
  log: ScanLog = () => {},
): Promise<string> {
  const fileSize = await sizeOf(fh);
  let copyPath = `${file}.tr0`;
  for (let i = 1; await exists(copyPath); i++) copyPath = `${file}.tr${i}`;
  log('warning', `Writing truncated data from ${file} to ${copyPath}`);
  const out = await open(copyPath, 'wx');
  try {
    const chunk = Buffer.allocUnsafe(Math.min(DEFAULT_CHUNK, Math.max(fileSize - pos, 1)));
    for (let p = pos; p < fileSize;) {
      const got = await readFully(fh, chunk, 0, Math.min(chunk.length, fileSize - p), p);
      if (got === 0) break;
      await out.write(chunk, 0, got);
      p += got;
    }
    await out.sync();
  } finally {
    await out.close();
  }
  await call((cb) => fsFtruncate(fh.fd, pos, cb));
  await call((cb) => fsFsync(fh.fd, cb));
  return copyPath;
}
