// fstest: the structural check of a Data.fs that ZODB's fstest.py does (ZODB/scripts/fstest.py),
// with the checks of ZODB's own reader added (FileStorageFormatter.checkTxn / checkData, here format.ts's
// checkTxnHeader / decodeDataHeader / checkDataHeader), read in one sequential pass (`zeo verify` prints it, with a progress bar).
//
// Checked, stopping at the first error (as fstest does: after one, the file cannot be walked further):
//   - the header: "FS30" (or "FS21", Python 2's, which fstest on Python 3 refuses); an empty file is an error;
//   - every transaction header: whole, tid growing, status ' ', 'p' or 'u' (a 'c' is a commit that did not
//     finish), its length covering at least its header with user, description and extension and ending inside
//     the file, and the trailing redundant copy of the length equal to it;
//   - every data record of a transaction not marked 'u' (fstest skips those too): the header whole and inside
//     its transaction, no version (length 0), its tid the transaction's, tloc pointing to the transaction,
//     its length (data, or an 8-byte back pointer) inside the transaction, the records adding up to the
//     transaction's length;
//   - pointers: prev and back pointers point backwards, after the file header; a back pointer points to a data
//     record of the same oid.
// Reported as warnings, without failing (ZODB only logs them when it opens the file): a prev pointer that is
// not the position of the oid's previous record.
//
// fstest checks less: it does not look at prev and back pointers, record tids or versions. Where fstest says
// the file is damaged, so does this; this may also find damage fstest misses (a back pointer past the end of
// the file, say).

import { open } from 'node:fs/promises';
import { CorruptedError } from '../errors.js';
import { compareIds, idEquals, oidRepr, type Tid } from '../ids.js';
import {
  checkDataHeader,
  checkFileHeader,
  checkTxnHeader,
  DATA_HDR_LEN,
  dataRecordLen,
  decodeTxnHeader,
  FILE_HEADER_LEN,
  readU64,
  STATUS_UNDONE,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLen,
  type FileMagic,
} from './format.js';
import { FsIndex } from './fsindex.js';
import { transactionEndingFile, windowDataHeader } from './records.js';
import { WindowReader } from './window.js';

export interface VerifyOptions {
  /** called as the check goes: bytes checked, file size */
  onProgress?: (done: number, total: number) => void;
  /** bytes per read (default 4 MiB) */
  chunkSize?: number;
}

export interface VerifyWarning {
  offset: number;
  message: string;
}

export interface VerifyResult {
  /** null when the file is sound, else the first structural error (its `offset` names the byte) */
  error: CorruptedError | null;
  /** true when the error is an interrupted commit at the end of the file, which opening the storage repairs */
  recoverable: boolean;
  magic: FileMagic | null;
  /** transactions checked (all of them when there is no error) */
  transactions: number;
  /** data records checked */
  records: number;
  /** the size of the file */
  bytes: number;
  /** where the check stopped: the file size when sound */
  pos: number;
  lastTid: Tid | null;
  warnings: VerifyWarning[];
  /** warnings beyond the first 100 are counted, not kept */
  warningCount: number;
}

const Z64 = new Uint8Array(8);
const DEFAULT_CHUNK = 4 << 20;
/** the window of the reads beside the walk (back pointers, the end of the file) */
const RANDOM_WINDOW = 64 << 10;
const MAX_WARNINGS = 100;

function be32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** Checks the Data.fs at `path` (see the top of this file). Throws only for I/O errors (no such file, ...). */
export async function verifyDataFile(path: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const fh = await open(path, 'r');
  const result: VerifyResult = {
    error: null,
    recoverable: false,
    magic: null,
    transactions: 0,
    records: 0,
    bytes: 0,
    pos: 0,
    lastTid: null,
    warnings: [],
    warningCount: 0,
  };
  try {
    const size = (await fh.stat()).size;
    result.bytes = size;
    const onProgress = options.onProgress;
    const r = new WindowReader(fh, path, size, Math.max(options.chunkSize ?? DEFAULT_CHUNK, 4096), (p) =>
      onProgress?.(p, size),
    );
    const rnd = new WindowReader(fh, path, size, RANDOM_WINDOW);
    const warn = (offset: number, message: string): void => {
      if (result.warningCount++ < MAX_WARNINGS) result.warnings.push({ offset, message });
    };
    try {
      await walk(path, r, rnd, size, result, warn);
      result.pos = size;
    } catch (e) {
      if (!(e instanceof CorruptedError)) throw e;
      result.error = e;
    }
    onProgress?.(result.error ? result.pos : size, size);
    return result;
  } finally {
    await fh.close();
  }
}

async function walk(
  file: string,
  r: WindowReader,
  rnd: WindowReader,
  size: number,
  result: VerifyResult,
  warn: (offset: number, message: string) => void,
): Promise<void> {
  if (size === 0) throw new CorruptedError(file, 0, 'empty file: not a FileStorage data file');
  result.magic = checkFileHeader(await r.at(0, FILE_HEADER_LEN), file);
  const endsFile = async (after: number): Promise<boolean> =>
    (await transactionEndingFile((p, n) => rnd.at(p, n), size, after)) !== null;

  // oid -> position of its last record, for the prev pointer check; a transaction's records go in after it
  const index = new FsIndex();
  let staged: Array<[number, number, number]> = [];
  let lastTid: Tid = Z64;
  let pos = FILE_HEADER_LEN;
  result.pos = pos;
  while (pos < size) {
    result.pos = pos;
    const hb = await r.at(pos, TRANS_HDR_LEN);
    if (hb.length < TRANS_HDR_LEN) {
      result.recoverable = true;
      throw new CorruptedError(
        file,
        pos,
        `transaction header truncated (${hb.length} of 23 bytes): the file ends in the middle of it`,
      );
    }
    const h = decodeTxnHeader(hb, 0, file, pos);
    const tend = pos + h.tl;
    const runsPast = !(tend + TRAILER_LEN <= size);
    if (h.status === 'c' && compareIds(h.tid, lastTid) > 0) {
      // a commit that did not finish: FileStorage truncates it on open when it ends the file
      result.recoverable = runsPast ? !(await endsFile(pos)) : tend + TRAILER_LEN === size;
      throw new CorruptedError(
        file,
        pos,
        `transaction with checkpoint flag set${result.recoverable ? ' at the end of the file: its commit did not finish' : ''}`,
      );
    }
    checkTxnHeader(h, pos, file, lastTid);
    if (runsPast) {
      result.recoverable = !(await endsFile(pos));
      throw new CorruptedError(
        file,
        pos,
        `transaction length ${h.tl} runs past the end of the file (${tend + TRAILER_LEN} > ${size})`,
      );
    }
    const hlen = txnHeaderLen(h);
    if (h.status !== STATUS_UNDONE) {
      staged = [];
      let rpos = pos + hlen;
      while (rpos < tend) {
        if (rpos + DATA_HDR_LEN > tend) {
          throw new CorruptedError(
            file,
            rpos,
            `data record header (42 bytes) exceeds the transaction record, which ends at ${tend}`,
          );
        }
        // the header and a back pointer; tend + 8 <= size, so both are in the file
        const dh = await windowDataHeader(r, rpos);
        checkDataHeader(h, pos, dh, rpos, file);
        if (!idEquals(dh.tid, h.tid)) {
          throw new CorruptedError(
            file,
            rpos,
            `data record tid ${oidRepr(dh.tid)} is not its transaction's (${oidRepr(h.tid)})`,
          );
        }
        if (dh.prev !== 0 && dh.prev < FILE_HEADER_LEN) {
          throw new CorruptedError(file, rpos, `invalid previous pointer: ${dh.prev}`);
        }
        const oidHi = be32(dh.oid, 0);
        const oidLo = be32(dh.oid, 4);
        const cur = index.getHiLo(oidHi, oidLo);
        if ((cur === -1 ? 0 : cur) !== dh.prev) {
          warn(
            rpos,
            `the previous pointer of oid ${oidRepr(dh.oid)} is ${dh.prev}, ` +
              `but its previous record is at ${cur === -1 ? 'none (0)' : cur}`,
          );
        }
        if (dh.plen === 0 && dh.back !== 0) {
          if (dh.back < FILE_HEADER_LEN) {
            throw new CorruptedError(file, rpos, `invalid back pointer: ${dh.back}`);
          }
          const target = await rnd.at(dh.back, DATA_HDR_LEN);
          if (target.length < DATA_HDR_LEN || !idEquals(target.subarray(0, 8), dh.oid)) {
            throw new CorruptedError(
              file,
              rpos,
              `back pointer ${dh.back} does not point to a data record of oid ${oidRepr(dh.oid)}`,
            );
          }
          if (readU64(target, 24) >= dh.back || target[32] !== 0 || target[33] !== 0) {
            throw new CorruptedError(
              file,
              rpos,
              `back pointer ${dh.back} does not point to a data record (its header is not one)`,
            );
          }
        }
        staged.push([oidHi, oidLo, rpos]);
        result.records++;
        rpos += dataRecordLen(dh.plen);
      }
      if (rpos !== tend) throw new CorruptedError(file, pos, "data records don't add up");
    }
    const tb = await r.at(tend, TRAILER_LEN);
    if (tb.length < TRAILER_LEN || readU64(tb, 0) !== h.tl) {
      const got = tb.length < TRAILER_LEN ? 'missing' : String(readU64(tb, 0));
      const err = new CorruptedError(
        file,
        tend,
        `redundant transaction length check failed: ${got} != ${h.tl} (the transaction at ${pos})`,
      );
      // the commit's last block never reached the disk (FileStorage truncates it on open)
      result.recoverable = tend + TRAILER_LEN === size;
      throw err;
    }
    for (const [hi, lo, p] of staged) index.setHiLo(hi, lo, p);
    staged = [];
    result.transactions++;
    lastTid = h.tid;
    result.lastTid = h.tid;
    pos = tend + TRAILER_LEN;
  }
  result.pos = pos;
}
