// The record reader (ZODB's FileStorageFormatter: _read_txn_header, _read_data_header, _loadBack_impl) over
// the data file. Two ways to read, one set of records:
//   - random reads of the storage's RandomAccessFile, through its ReadCache of whole records (loads, history,
//     undo, the iterator's big transactions): readDataRecord, readTxnHeader, readTxnBefore, loadBack;
//   - walks through a WindowReader (./window.ts: pack, fstest, fsdump): windowTxnHeader, windowDataHeader,
//     followBack, transactionEndingFile.
// format.ts decodes and checks the bytes; this module only gets them and names the damage.

import { CorruptedError, POSKeyError } from '../errors.js';
import { oidRepr, type Oid, type Tid } from '../ids.js';
import { ShortReadError, type RandomAccessFile } from './file.js';
import {
  BACK_PTR_LEN,
  copy8,
  DATA_HDR_LEN,
  dataRecordLen,
  decodeDataHeader,
  decodeTxnHeader,
  decodeTxnHeaderFull,
  FILE_HEADER_LEN,
  readU64,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLen,
  type DataHeader,
  type TxnHeaderFull,
} from './format.js';

/** one positional read gets the header and, usually, the whole data of a record */
export const READ_AHEAD = 4096;

/**
 * POSKeyError for an object (or revision) the file does not have: a normal answer (a client asking for an
 * oid that was never stored, or packed away), so it is made without a stack trace, which costs more than the
 * rest of such a load and which nobody reads.
 */
export function missing(oid: Oid, serial: Tid | null = null): POSKeyError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new POSKeyError(oid, serial);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function equalAt(buf: Uint8Array, off: number, id: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (buf[off + i] !== id[i]) return false;
  return true;
}

const bufPool: Buffer[] = [];
function takeBuf(): Buffer {
  return bufPool.pop() ?? Buffer.allocUnsafe(READ_AHEAD);
}
function giveBuf(b: Buffer): void {
  if (bufPool.length < 64) bufPool.push(b);
}

// ---------------------------------------------------------------------------------------------------------
// random reads of the storage's file

/** A data record header read from the file, with its data when asked for. */
export interface RecordAt extends DataHeader {
  pos: number;
  /** the data (a copy), when read with `withData` and plen > 0 */
  data: Uint8Array | null;
}

/**
 * Reads the data record at `pos` (FileStorageFormatter._read_data_header): one positional read of the header
 * and, with `withData`, as much of the data as fits in READ_AHEAD bytes (a second read gets the rest).
 * `limit` is the end of the committed data: a record that runs past it is corrupted. `oid`, when given, must be
 * the record's.
 */
export async function readDataRecord(
  file: RandomAccessFile,
  pos: number,
  oid: Oid | null,
  withData: boolean,
  limit: number,
): Promise<RecordAt> {
  if (!(pos >= FILE_HEADER_LEN && pos + DATA_HDR_LEN <= limit)) {
    throw new CorruptedError(
      file.path,
      pos,
      `no data record can start at ${pos} (the data ends at ${limit})`,
    );
  }
  const cache = file.cache;
  if (cache !== null) {
    // the whole record, as read before (or written by a commit); the cache also holds transaction headers and
    // lengths (readTxnHeader, readTxnBefore), which are never a whole record but where a damaged pointer points
    const c = cache.get(pos);
    if (c !== undefined && c.length >= DATA_HDR_LEN && c.length >= dataRecordLen(readU64(c, 34))) {
      return parseRecord(file, pos, oid, withData, limit, c, c.length);
    }
  }
  const generation = cache === null ? 0 : cache.generation;
  const buf = takeBuf();
  try {
    const want = withData
      ? Math.min(READ_AHEAD, limit - pos)
      : Math.min(DATA_HDR_LEN + BACK_PTR_LEN, limit - pos);
    const n = await file.readAtMost(pos, buf, 0, want);
    const r = await parseRecord(file, pos, oid, withData, limit, buf, n);
    if (cache !== null) {
      const len = dataRecordLen(r.plen);
      if (len <= n) cache.put(pos, buf.subarray(0, len), null, generation);
      else if (r.data !== null) cache.put(pos, buf.subarray(0, DATA_HDR_LEN), r.data, generation);
    }
    return r;
  } finally {
    giveBuf(buf);
  }
}

/**
 * readDataRecord's checks and decoding of the `n` bytes at `pos` in `buf` (the record's start: its header and,
 * with `withData`, its data when they fit; the rest of the data is read).
 */
async function parseRecord(
  file: RandomAccessFile,
  pos: number,
  oid: Oid | null,
  withData: boolean,
  limit: number,
  buf: Buffer,
  n: number,
): Promise<RecordAt> {
  try {
    if (n < DATA_HDR_LEN) {
      throw new CorruptedError(file.path, pos, `data record header truncated (${n} of 42 bytes)`);
    }
    if (oid !== null && !equalAt(buf, 0, oid)) {
      throw new CorruptedError(
        file.path,
        pos,
        `expected a data record of oid ${oidRepr(oid)}, found one of ${oidRepr(buf.subarray(0, 8))}`,
      );
    }
    if (buf[32] !== 0 || buf[33] !== 0) {
      throw new CorruptedError(
        file.path,
        pos,
        `data record with a version (length ${(buf[32] << 8) | buf[33]})`,
      );
    }
    const plen = readU64(buf, 34);
    let back = 0;
    let data: Uint8Array | null = null;
    if (plen === 0) {
      if (n < DATA_HDR_LEN + BACK_PTR_LEN) {
        throw new CorruptedError(file.path, pos, 'data record truncated in its back pointer');
      }
      back = readU64(buf, DATA_HDR_LEN);
    } else if (pos + DATA_HDR_LEN + plen > limit) {
      throw new CorruptedError(file.path, pos, `data record (length ${plen}) runs past the end of the data`);
    } else if (withData) {
      const out = Buffer.allocUnsafe(plen);
      const have = Math.min(n - DATA_HDR_LEN, plen);
      buf.copy(out, 0, DATA_HDR_LEN, DATA_HDR_LEN + have);
      if (have < plen) await file.readExact(pos + DATA_HDR_LEN + have, plen - have, out, have);
      data = out;
    }
    return {
      pos,
      oid: copy8(buf, 0),
      tid: copy8(buf, 8),
      prev: readU64(buf, 16),
      tloc: readU64(buf, 24),
      plen,
      back,
      data,
    };
  } catch (e) {
    if (e instanceof ShortReadError) {
      throw new CorruptedError(file.path, pos, `data record truncated: ${e.message}`);
    }
    throw e;
  }
}

/** A transaction header with copies of its user, description and extension. */
function headerCopy(b: Uint8Array, off: number, file: string, tpos: number): TxnHeaderFull {
  const h = decodeTxnHeader(b, off, file, tpos);
  const n = txnHeaderLen(h) - TRANS_HDR_LEN;
  const meta = Buffer.allocUnsafe(n);
  if (n) meta.set(b.subarray(off + TRANS_HDR_LEN, off + TRANS_HDR_LEN + n));
  const d = h.ulen;
  const e = d + h.dlen;
  return {
    ...h,
    user: meta.subarray(0, d),
    description: meta.subarray(d, e),
    extension: meta.subarray(e, e + h.elen),
  };
}

/** The bytes at `pos` in the file's cache when it holds at least `n` of them (see readTxnBefore). */
function cached(file: RandomAccessFile, pos: number, n: number): Buffer | null {
  const c = file.cache?.get(pos);
  return c !== undefined && c.length >= n ? c : null;
}

/**
 * The transaction header at `tpos` with its user, description and extension (copies). The header's bytes go
 * into the file's cache: the undo log reads the same newest transactions again and again.
 */
export async function readTxnHeader(
  file: RandomAccessFile,
  tpos: number,
  limit: number,
): Promise<TxnHeaderFull> {
  if (!(tpos >= FILE_HEADER_LEN && tpos + TRANS_HDR_LEN <= limit)) {
    throw new CorruptedError(
      file.path,
      tpos,
      `no transaction can start at ${tpos} (the data ends at ${limit})`,
    );
  }
  const c = cached(file, tpos, TRANS_HDR_LEN);
  if (c !== null) {
    const hlen = TRANS_HDR_LEN + ((c[17] << 8) | c[18]) + ((c[19] << 8) | c[20]) + ((c[21] << 8) | c[22]);
    if (c.length >= hlen && tpos + hlen <= limit) return headerCopy(c, 0, file.path, tpos);
  }
  const cache = file.cache;
  const generation = cache === null ? 0 : cache.generation;
  const buf = takeBuf();
  try {
    const n = await file.readAtMost(tpos, buf, 0, Math.min(READ_AHEAD, limit - tpos));
    const h = decodeTxnHeader(buf.subarray(0, n), 0, file.path, tpos);
    const hlen = txnHeaderLen(h);
    if (tpos + hlen > limit)
      throw new CorruptedError(file.path, tpos, 'transaction header runs past the data');
    const meta = Buffer.allocUnsafe(hlen - TRANS_HDR_LEN);
    const have = Math.min(n, hlen) - TRANS_HDR_LEN;
    buf.copy(meta, 0, TRANS_HDR_LEN, TRANS_HDR_LEN + have);
    if (have < meta.length) await file.readExact(tpos + TRANS_HDR_LEN + have, meta.length - have, meta, have);
    cache?.put(tpos, buf.subarray(0, TRANS_HDR_LEN), meta, generation);
    const d = h.ulen;
    const e = d + h.dlen;
    return {
      ...h,
      user: meta.subarray(0, d),
      description: meta.subarray(d, e),
      extension: meta.subarray(e, e + h.elen),
    };
  } finally {
    giveBuf(buf);
  }
}

/**
 * The transaction that ends at `end` (its trailing length is the 8 bytes before `end`), read backwards in one
 * read when it is small: its header position and header. The trailing length and the header go into the
 * file's cache (the undo log walks back over the same transactions at every call); what a commit, an abort or a
 * recovery writes there drops them, as it drops records.
 */
export async function readTxnBefore(
  file: RandomAccessFile,
  end: number,
): Promise<{ tpos: number; header: TxnHeaderFull }> {
  const t = cached(file, end - TRAILER_LEN, TRAILER_LEN);
  if (t !== null) {
    const tl = readU64(t, 0);
    const tpos = end - TRAILER_LEN - tl;
    if (tpos >= FILE_HEADER_LEN && tl >= TRANS_HDR_LEN) {
      const header = await readTxnHeader(file, tpos, end);
      if (header.tl !== tl) {
        throw new CorruptedError(
          file.path,
          tpos,
          `transaction length ${header.tl} != its trailing copy ${tl}`,
        );
      }
      return { tpos, header };
    }
  }
  const span = Math.min(READ_AHEAD, end - FILE_HEADER_LEN);
  if (span < TRAILER_LEN + TRANS_HDR_LEN) {
    throw new CorruptedError(file.path, end, 'no transaction ends here');
  }
  const cache = file.cache;
  const generation = cache === null ? 0 : cache.generation;
  const buf = takeBuf();
  try {
    const from = end - span;
    await file.readExact(from, span, buf, 0);
    const tl = readU64(buf, span - TRAILER_LEN);
    const tpos = end - TRAILER_LEN - tl;
    if (!(tpos >= FILE_HEADER_LEN) || tl < TRANS_HDR_LEN) {
      throw new CorruptedError(
        file.path,
        end - TRAILER_LEN,
        `invalid transaction length before ${end}: ${tl}`,
      );
    }
    cache?.put(end - TRAILER_LEN, buf.subarray(span - TRAILER_LEN, span), null, generation);
    if (tpos >= from) {
      const off = tpos - from;
      const h = decodeTxnHeader(buf, off, file.path, tpos);
      const hlen = txnHeaderLen(h);
      if (h.tl !== tl) {
        throw new CorruptedError(file.path, tpos, `transaction length ${h.tl} != its trailing copy ${tl}`);
      }
      if (off + hlen <= span) {
        cache?.put(tpos, buf.subarray(off, off + hlen), null, generation);
        return { tpos, header: headerCopy(buf, off, file.path, tpos) };
      }
    }
  } finally {
    giveBuf(buf);
  }
  const tl = readU64(await file.readExact(end - TRAILER_LEN, TRAILER_LEN), 0);
  const tpos = end - TRAILER_LEN - tl;
  const header = await readTxnHeader(file, tpos, end);
  if (header.tl !== tl) {
    throw new CorruptedError(file.path, tpos, `transaction length ${header.tl} != its trailing copy ${tl}`);
  }
  return { tpos, header };
}

/**
 * FileStorageFormatter._loadBack_impl: follows back pointers from `back` to the record holding the data.
 * POSKeyError when `back` is 0 or (with `fail`) the chain ends in a back pointer of 0 (the object did not exist
 * there); without `fail`, such a chain gives data null.
 */
export async function loadBack(
  file: RandomAccessFile,
  oid: Oid,
  back: number,
  fail: boolean,
  limit: number,
): Promise<{ data: Uint8Array | null; tid: Tid; pos: number; tloc: number }> {
  for (;;) {
    if (!back) throw missing(oid);
    const h = await readDataRecord(file, back, null, true, limit);
    if (h.plen) return { data: h.data!, tid: h.tid, pos: back, tloc: h.tloc };
    if (h.back === 0 && !fail) return { data: null, tid: h.tid, pos: back, tloc: h.tloc };
    if (h.back >= back) throw new CorruptedError(file.path, back, `invalid back pointer: ${h.back}`);
    back = h.back;
  }
}
