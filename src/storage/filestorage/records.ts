// The record reader (ZODB's FileStorageFormatter: _read_txn_header, _read_data_header, _loadBack_impl) over
// the data file. Two ways to read, one set of records:
//   - random reads of the storage's RandomAccessFile, through its ReadCache of whole records (loads, history,
//     undo, the iterator's big transactions): readDataRecord, readTxnHeader, readTxnBefore, loadBack;
//   - walks through a WindowReader (./window.ts: pack, fstest, fsdump): windowTxnHeader, windowDataHeader,
//     followBack, transactionEndingFile.
// format.ts decodes and checks the bytes; this module only gets them and names the damage.

import { CorruptedError, POSKeyError } from '../errors.js';
import { idEquals, idHex, oidRepr, type Oid, type Tid } from '../ids.js';
import { ShortReadError, type RandomAccessFile } from './file.js';
import {
  BACK_PTR_LEN,
  copy8,
  DATA_HDR_LEN,
  dataRecordLen,
  decodeDataHeader,
  decodeTxnHeader,
  FILE_HEADER_LEN,
  readU64,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLen,
  txnHeaderLenAt,
  type DataHeader,
  type TxnHeader,
  type TxnHeaderFull,
} from './format.js';
import type { WindowReader } from './window.js';

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

/** Whether the 8 bytes at buf[off..] are `id`. */
export function equalAt(buf: Uint8Array, off: number, id: Uint8Array): boolean {
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
  checkStart(file, pos, DATA_HDR_LEN, limit, 'data record');
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

/** (Buffers, as the header's parts always were) */
const EMPTY = Buffer.alloc(0);

/** `len` bytes of `meta` from `from` (a view; the shared empty array for none, the usual user and extension). */
function part(meta: Buffer, from: number, len: number): Uint8Array {
  return len === 0 ? EMPTY : meta.subarray(from, from + len);
}

/** The header `h` with its user, description and extension, the parts of `meta` (built field by field: hot). */
function withMeta(h: TxnHeader, meta: Buffer): TxnHeaderFull {
  return {
    tid: h.tid,
    tl: h.tl,
    status: h.status,
    ulen: h.ulen,
    dlen: h.dlen,
    elen: h.elen,
    user: part(meta, 0, h.ulen),
    description: part(meta, h.ulen, h.dlen),
    extension: part(meta, h.ulen + h.dlen, h.elen),
  };
}

/** The transaction header at `off` of `b` (all of it there) with copies of its user, description, extension. */
function headerCopy(b: Uint8Array, off: number, file: string, tpos: number): TxnHeaderFull {
  const h = decodeTxnHeader(b, off, file, tpos);
  const n = txnHeaderLen(h) - TRANS_HDR_LEN;
  if (n === 0) return withMeta(h, EMPTY);
  const meta = Buffer.allocUnsafe(n);
  const from = off + TRANS_HDR_LEN;
  // (a short header is copied byte by byte: cheaper than a view to copy from)
  if (n <= 64) for (let i = 0; i < n; i++) meta[i] = b[from + i];
  else meta.set(b.subarray(from, from + n));
  return withMeta(h, meta);
}

/** CorruptedError unless a `what` of `len` bytes can start at `pos`, after the file header and before `limit`. */
function checkStart(file: RandomAccessFile, pos: number, len: number, limit: number, what: string): void {
  if (!(pos >= FILE_HEADER_LEN && pos + len <= limit)) {
    throw new CorruptedError(file.path, pos, `no ${what} can start at ${pos} (the data ends at ${limit})`);
  }
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
  checkStart(file, tpos, TRANS_HDR_LEN, limit, 'transaction');
  const c = cached(file, tpos, TRANS_HDR_LEN);
  if (c !== null) {
    const hlen = txnHeaderLenAt(c, 0);
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
    return withMeta(h, meta);
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

// ---------------------------------------------------------------------------------------------------------
// walks through a WindowReader

/** The 8-byte number at `pos` of the window (a transaction's trailing length). */
export async function windowNum(w: WindowReader, pos: number): Promise<number> {
  return readU64(await w.get(pos, TRAILER_LEN, 'transaction length'), 0);
}

/** The transaction header at `pos` of the window, with copies of its user, description and extension. */
export async function windowTxnHeader(w: WindowReader, pos: number): Promise<TxnHeaderFull> {
  const hlen = txnHeaderLenAt(await w.get(pos, TRANS_HDR_LEN, 'transaction header'), 0);
  // (copies: the window moves on)
  return headerCopy(await w.get(pos, hlen, 'transaction header'), 0, w.file, pos);
}

/** The data record header at `pos` of the window (with its back pointer); `oid`, when given, must be its. */
export async function windowDataHeader(w: WindowReader, pos: number, oid?: Oid): Promise<DataHeader> {
  const head = await w.get(pos, DATA_HDR_LEN, 'data record header');
  const plen = readU64(head, 34);
  const b = plen === 0 ? await w.get(pos, DATA_HDR_LEN + 8, 'data record') : head;
  const h = decodeDataHeader(b, 0, w.file, pos);
  if (oid && !idEquals(oid, h.oid)) {
    throw new CorruptedError(w.file, pos, `back pointer to a record of another oid (${idHex(h.oid)})`);
  }
  return h;
}

/**
 * FileStorageFormatter._loadBack_impl(oid, back, fail=False) with getTxnFromData: the data at the end of the
 * back pointer chain from `back` (a view, or null when the chain ends in a 0: an undone creation), and the
 * tid of the record `back` points to, which must be `oid`'s when given.
 */
export async function followBack(
  w: WindowReader,
  back: number,
  oid?: Oid,
): Promise<{ data: Uint8Array | null; tid: Tid }> {
  const first = await windowDataHeader(w, back, oid);
  const seen = new Set<number>();
  let h = first;
  for (let at = back; ;) {
    if (h.plen) return { data: await w.get(at + DATA_HDR_LEN, h.plen, 'data'), tid: first.tid };
    if (h.back === 0) return { data: null, tid: first.tid };
    seen.add(at);
    at = h.back;
    if (seen.has(at)) throw new CorruptedError(w.file, back, 'back pointers in a loop');
    h = await windowDataHeader(w, at);
  }
}

/**
 * The position of a whole transaction that ends the file and starts after `after`: its header's length agrees
 * with the file's last 8 bytes (a crash leaves nothing after the transaction it cut short; a damaged length,
 * whole transactions). With its status byte; null when there is none.
 */
export async function transactionEndingFile(
  read: (pos: number, n: number) => Promise<Uint8Array>,
  size: number,
  after: number,
): Promise<{ pos: number; status: number } | null> {
  if (size < 4 + TRANS_HDR_LEN + TRAILER_LEN) return null;
  const t = await read(size - TRAILER_LEN, TRAILER_LEN);
  const tl = readU64(t, 0);
  const q = size - TRAILER_LEN - tl;
  if (!(q > after) || tl < TRANS_HDR_LEN) return null;
  const h = await read(q, TRANS_HDR_LEN);
  if (h.length < TRANS_HDR_LEN || readU64(h, 8) !== tl) return null;
  return { pos: q, status: h[16] };
}
