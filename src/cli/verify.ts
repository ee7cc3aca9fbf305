// `zeo verify PATH`: the structural check of a Data.fs that ZODB's fstest.py does (ZODB/scripts/fstest.py),
// with the checks of ZODB's own reader added (FileStorageFormatter.checkTxn / checkData, here format.ts's
// checkTxnHeader / decodeDataHeader / checkDataHeader), read in one sequential pass with a progress bar.
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
import { Command } from 'commander';
import { CorruptedError } from '../storage/errors.js';
import { compareIds, idEquals, oidRepr, type Tid } from '../storage/ids.js';
import {
  checkDataHeader,
  checkFileHeader,
  checkTxnHeader,
  DATA_HDR_LEN,
  dataRecordLen,
  decodeDataHeader,
  decodeTxnHeader,
  FILE_HEADER_LEN,
  readU64,
  STATUS_UNDONE,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLen,
  type FileMagic,
} from '../storage/filestorage/format.js';
import { FsIndex } from '../storage/filestorage/fsindex.js';
import { FileReader } from './file-reader.js';
import { formatBytes, ProgressBar } from './progress.js';

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
    const r = new FileReader(fh, size, Math.max(options.chunkSize ?? DEFAULT_CHUNK, 4096), (p) =>
      onProgress?.(p, size),
    );
    const warn = (offset: number, message: string): void => {
      if (result.warningCount++ < MAX_WARNINGS) result.warnings.push({ offset, message });
    };
    try {
      await walk(path, r, size, result, warn);
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
  r: FileReader,
  size: number,
  result: VerifyResult,
  warn: (offset: number, message: string) => void,
): Promise<void> {
  if (size === 0) throw new CorruptedError(file, 0, 'empty file: not a FileStorage data file');
  let o = await r.ensure(0, FILE_HEADER_LEN);
  result.magic = checkFileHeader(r.buf.subarray(o, o + Math.min(FILE_HEADER_LEN, r.avail(0))), file);

  // oid -> position of its last record, for the prev pointer check; a transaction's records go in after it
  const index = new FsIndex();
  let staged: Array<[number, number, number]> = [];
  let lastTid: Tid = Z64;
  let pos = FILE_HEADER_LEN;
  result.pos = pos;
  while (pos < size) {
    result.pos = pos;
    o = await r.ensure(pos, TRANS_HDR_LEN);
    if (r.avail(pos) < TRANS_HDR_LEN) {
      result.recoverable = true;
      throw new CorruptedError(
        file,
        pos,
        `transaction header truncated (${r.avail(pos)} of 23 bytes): the file ends in the middle of it`,
      );
    }
    const h = decodeTxnHeader(r.buf, o, file, pos);
    const tend = pos + h.tl;
    const runsPast = !(tend + TRAILER_LEN <= size);
    if (h.status === 'c' && compareIds(h.tid, lastTid) > 0) {
      // a commit that did not finish: FileStorage truncates it on open when it ends the file
      result.recoverable = runsPast
        ? !(await transactionEndsFileAfter(r, size, pos))
        : tend + TRAILER_LEN === size;
      throw new CorruptedError(
        file,
        pos,
        `transaction with checkpoint flag set${result.recoverable ? ' at the end of the file: its commit did not finish' : ''}`,
      );
    }
    checkTxnHeader(h, pos, file, lastTid);
    if (runsPast) {
      result.recoverable = !(await transactionEndsFileAfter(r, size, pos));
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
        o = await r.ensure(rpos, DATA_HDR_LEN + 8);
        const dh = decodeDataHeader(r.buf, o, file, rpos);
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
          const target = await r.readAt(dh.back, DATA_HDR_LEN);
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
    o = await r.ensure(tend, TRAILER_LEN);
    if (r.avail(tend) < TRAILER_LEN || readU64(r.buf, o) !== h.tl) {
      const got = r.avail(tend) < TRAILER_LEN ? 'missing' : String(readU64(r.buf, o));
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

/** Whether a whole transaction after `after` ends the file (then a damaged length is not a crash). */
async function transactionEndsFileAfter(r: FileReader, size: number, after: number): Promise<boolean> {
  if (size < FILE_HEADER_LEN + TRANS_HDR_LEN + TRAILER_LEN) return false;
  const t = await r.readAt(size - TRAILER_LEN, TRAILER_LEN);
  const tl = readU64(t, 0);
  const q = size - TRAILER_LEN - tl;
  if (!(q > after) || tl < TRANS_HDR_LEN) return false;
  const h = await r.readAt(q, TRANS_HDR_LEN);
  return h.length === TRANS_HDR_LEN && readU64(h, 8) === tl;
}

/** The one-line summary of a sound file. */
export function summaryLine(path: string, r: VerifyResult): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const magic = r.magic === 'FS21' ? ' (FS21: written by ZODB on Python 2)' : '';
  return (
    `${path}: OK: ${n(r.transactions)} transactions, ${n(r.records)} data records, ` +
    `${n(r.bytes)} bytes (${formatBytes(r.bytes)})${magic}`
  );
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description(
      'check the structure of a FileStorage data file (Data.fs) as ZODB fstest does: transaction and data ' +
        'record headers, lengths, statuses, pointers. Exit 0 when sound, 1 at the first structural error ' +
        '(named by its byte offset), 2 when the file cannot be read',
    )
    .argument('<path>', 'the Data.fs to check')
    .option('-q, --quiet', 'no progress bar, no summary, no warnings: only errors, and the exit status')
    .action(async (path: string, opts: { quiet?: boolean }) => {
      const quiet = opts.quiet ?? false;
      const bar = new ProgressBar({ label: 'verify', total: 0, enabled: !quiet });
      let r: VerifyResult;
      try {
        r = await verifyDataFile(path, { onProgress: (done, total) => bar.update(done, total) });
      } catch (e) {
        bar.finish();
        console.error(`zeo verify: ${path}: ${(e as Error).message}`);
        process.exitCode = 2;
        return;
      }
      bar.finish();
      if (!quiet) {
        for (const w of r.warnings)
          console.error(`zeo verify: warning: ${path}: ${w.message} (at byte ${w.offset})`);
        if (r.warningCount > r.warnings.length) {
          console.error(`zeo verify: warning: ... and ${r.warningCount - r.warnings.length} more`);
        }
      }
      if (r.error) {
        console.error(`zeo verify: ${r.error.message}`);
        if (!quiet) {
          console.error(
            `zeo verify: checked ${r.transactions} transactions and ${r.records} data records before byte ${r.error.offset}` +
              (r.recoverable
                ? '; this looks like a commit interrupted by a crash: opening the storage for writing truncates it'
                : ''),
          );
        }
        process.exitCode = 1;
        return;
      }
      if (!quiet) console.log(summaryLine(path, r));
    });
}
