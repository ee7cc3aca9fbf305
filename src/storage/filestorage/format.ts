// The Data.fs layout (ZODB/FileStorage/format.py): constants, header codecs over Buffers, the checks of
// FileStorageFormatter.checkTxn/checkData, and whole-transaction encode/decode. Pure: no I/O here.
//
//   file      := magic ("FS30", or "FS21" from Python 2) transaction*
//   txn       := tid(8) tl(8) status(1) ulen(2) dlen(2) elen(2) user desc ext record* tl(8)
//                (tl = the length of everything but the trailing copy of tl)
//   record    := oid(8) tid(8) prev(8) tloc(8) vlen(2)=0 plen(8) (data(plen) | back(8) when plen == 0)
//
// All integers are big-endian. File positions are JS numbers (files are far below 2^53 bytes); an 8-byte field
// above 2^53 decodes to an imprecise huge number, which every bounds check then rejects.

import { CorruptedError } from '../errors.js';
import { tidRepr, type Oid, type Tid } from '../ids.js';

export const MAGIC_FS30 = 'FS30';
export const MAGIC_FS21 = 'FS21';
/** What ZODB 5/6 on Python 3 writes (ZODB._compat.FILESTORAGE_MAGIC). */
export const FILE_MAGIC: Buffer = Buffer.from(MAGIC_FS30, 'latin1');
export const FILE_HEADER_LEN = 4;

export const TRANS_HDR_LEN = 23;
export const DATA_HDR_LEN = 42;
/** The back pointer that follows a data header whose data length is 0. */
export const BACK_PTR_LEN = 8;
/** The trailing redundant copy of a transaction's length. */
export const TRAILER_LEN = 8;

/** Transaction status bytes. */
export const STATUS_COMMITTED = ' ';
export const STATUS_PACKED = 'p';
export const STATUS_CHECKPOINT = 'c';
export const STATUS_UNDONE = 'u';

/** user, description and extension lengths are 2-byte fields */
export const MAX_META_LEN = 0xffff;

const TWO32 = 0x100000000;

export type FileMagic = typeof MAGIC_FS30 | typeof MAGIC_FS21;

/** The 23-byte transaction header (format.TxnHeader without user/descr/ext). */
export interface TxnHeader {
  tid: Tid;
  /** the transaction's length, without the trailing 8-byte copy */
  tl: number;
  /** one character: ' ', 'p', 'c', 'u' (anything else is reported by the checks) */
  status: string;
  ulen: number;
  dlen: number;
  elen: number;
}

/** A transaction header with its user, description and extension bytes. */
export interface TxnHeaderFull extends TxnHeader {
  user: Uint8Array;
  description: Uint8Array;
  extension: Uint8Array;
}

/** The 42-byte data record header (format.DataHeader), with the back pointer when plen is 0. */
export interface DataHeader {
  oid: Oid;
  tid: Tid;
  /** position of the previous record of this oid, 0 for none */
  prev: number;
  /** position of the transaction header */
  tloc: number;
  /** data length; 0 means a back pointer follows */
  plen: number;
  /** the back pointer (0 when plen > 0, or when the object's creation was undone / it was deleted) */
  back: number;
}

/** The length of a transaction header with its user, description and extension (TxnHeader.headerlen). */
export function txnHeaderLen(h: { ulen: number; dlen: number; elen: number }): number {
  return TRANS_HDR_LEN + h.ulen + h.dlen + h.elen;
}

/** txnHeaderLen of the raw transaction header at `off` of `b` (its 23 bytes there). */
export function txnHeaderLenAt(b: Uint8Array, off: number): number {
  return TRANS_HDR_LEN + u16(b, off + 17) + u16(b, off + 19) + u16(b, off + 21);
}

/** The length of a data record (DataHeader.recordlen): header plus data, or header plus back pointer. */
export function dataRecordLen(plen: number): number {
  return DATA_HDR_LEN + (plen || BACK_PTR_LEN);
}

// ---------------------------------------------------------------------------------------------------------
// integers

/** An 8-byte big-endian unsigned integer as a number (imprecise, but huge, above 2^53). */
export function readU64(b: Uint8Array, off: number): number {
  const hi = ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
  const lo = ((b[off + 4] << 24) | (b[off + 5] << 16) | (b[off + 6] << 8) | b[off + 7]) >>> 0;
  return hi * TWO32 + lo;
}

/** Writes a safe non-negative integer as 8 bytes big-endian. */
export function writeU64(b: Uint8Array, off: number, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a file position or length: ${n}`);
  const hi = Math.floor(n / TWO32);
  const lo = n >>> 0;
  b[off] = hi >>> 24;
  b[off + 1] = (hi >>> 16) & 0xff;
  b[off + 2] = (hi >>> 8) & 0xff;
  b[off + 3] = hi & 0xff;
  b[off + 4] = lo >>> 24;
  b[off + 5] = (lo >>> 16) & 0xff;
  b[off + 6] = (lo >>> 8) & 0xff;
  b[off + 7] = lo & 0xff;
}

/** A copy of the 8 bytes (an oid, a tid) at `off`. */
export function copy8(b: Uint8Array, off: number): Uint8Array {
  const out = new Uint8Array(8);
  out.set(b.subarray(off, off + 8));
  return out;
}

function u16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

// ---------------------------------------------------------------------------------------------------------
// the file header

/** The magic of a Data.fs (its first 4 bytes), or null when they are not one ZODB wrote. */
export function fileMagic(head: Uint8Array): FileMagic | null {
  if (head.length < FILE_HEADER_LEN || head[0] !== 0x46 || head[1] !== 0x53) return null; // 'FS'
  const v = String.fromCharCode(head[2], head[3]);
  return v === '30' ? MAGIC_FS30 : v === '21' ? MAGIC_FS21 : null;
}

/** Checks a Data.fs header; CorruptedError at offset 0 when it is not one. */
export function checkFileHeader(head: Uint8Array, file: string): FileMagic {
  const magic = fileMagic(head);
  if (magic === null) {
    const shown = Buffer.from(head.subarray(0, FILE_HEADER_LEN)).toString('latin1');
    throw new CorruptedError(
      file,
      0,
      `not a FileStorage data file: it starts with ${JSON.stringify(shown)}, not "FS30" (or "FS21")`,
    );
  }
  return magic;
}

// ---------------------------------------------------------------------------------------------------------
// transaction headers

/**
 * Decodes the 23-byte transaction header at `off` of `b`; `pos` is its file position (for errors). Only checks
 * that the bytes are there: see checkTxnHeader for the format's rules.
 */
export function decodeTxnHeader(b: Uint8Array, off: number, file: string, pos: number): TxnHeader {
  if (off < 0 || off + TRANS_HDR_LEN > b.length) {
    throw new CorruptedError(file, pos, `transaction header truncated (${b.length - off} of 23 bytes)`);
  }
  return {
    tid: copy8(b, off),
    tl: readU64(b, off + 8),
    status: String.fromCharCode(b[off + 16]),
    ulen: u16(b, off + 17),
    dlen: u16(b, off + 19),
    elen: u16(b, off + 21),
  };
}

/** decodeTxnHeader plus the user, description and extension bytes (views into `b`). */
export function decodeTxnHeaderFull(b: Uint8Array, off: number, file: string, pos: number): TxnHeaderFull {
  const h = decodeTxnHeader(b, off, file, pos);
  const end = off + txnHeaderLen(h);
  if (end > b.length) {
    throw new CorruptedError(file, pos, 'transaction header truncated in its user, description or extension');
  }
  const u = off + TRANS_HDR_LEN;
  const d = u + h.ulen;
  const e = d + h.dlen;
  const user = b.subarray(u, d);
  const description = b.subarray(d, e);
  const extension = b.subarray(e, e + h.elen);
  return { ...h, user, description, extension };
}

/** The 23-byte header plus user, description and extension. */
export function encodeTxnHeader(h: {
  tid: Tid;
  tl: number;
  status: string;
  user: Uint8Array;
  description: Uint8Array;
  extension: Uint8Array;
}): Buffer {
  checkMetaLengths(h.user, h.description, h.extension);
  if (h.tid.length !== 8) throw new RangeError(`a tid has 8 bytes, not ${h.tid.length}`);
  if (h.status.length !== 1 || h.status.charCodeAt(0) > 0x7f) {
    throw new RangeError(`a transaction status is one ASCII character, not ${JSON.stringify(h.status)}`);
  }
  const out = Buffer.allocUnsafe(TRANS_HDR_LEN + h.user.length + h.description.length + h.extension.length);
  writeTxnHeaderInto(out, 0, h.tid, h.tl, h.status, h.user, h.description, h.extension);
  return out;
}

function checkMetaLengths(user: Uint8Array, description: Uint8Array, extension: Uint8Array): void {
  // FileStorage._begin's messages (FileStorageError there)
  if (user.length > MAX_META_LEN) throw new RangeError('user name too long');
  if (description.length > MAX_META_LEN) throw new RangeError('description too long');
  if (extension.length > MAX_META_LEN) throw new RangeError('too much extension data');
}

function writeTxnHeaderInto(
  out: Uint8Array,
  off: number,
  tid: Tid,
  tl: number,
  status: string,
  user: Uint8Array,
  description: Uint8Array,
  extension: Uint8Array,
): number {
  out.set(tid.subarray(0, 8), off);
  writeU64(out, off + 8, tl);
  out[off + 16] = status.charCodeAt(0);
  out[off + 17] = user.length >> 8;
  out[off + 18] = user.length & 0xff;
  out[off + 19] = description.length >> 8;
  out[off + 20] = description.length & 0xff;
  out[off + 21] = extension.length >> 8;
  out[off + 22] = extension.length & 0xff;
  let p = off + TRANS_HDR_LEN;
  out.set(user, p);
  p += user.length;
  out.set(description, p);
  p += description.length;
  out.set(extension, p);
  return p + extension.length;
}

/**
 * FileStorageFormatter.checkTxn: the tid grows, the status is ' ', 'p' or 'u' (a 'c' is a transaction whose
 * commit did not finish), and the length covers at least the header. `lastTid` is the previous transaction's
 * tid (null for none). CorruptedError at `pos` otherwise.
 */
export function checkTxnHeader(h: TxnHeader, pos: number, file: string, lastTid: Tid | null): void {
  if (lastTid !== null && compare8(h.tid, lastTid) <= 0) {
    throw new CorruptedError(file, pos, `time-stamp reduction: ${tidRepr(h.tid)} <= ${tidRepr(lastTid)}`);
  }
  if (h.status === STATUS_CHECKPOINT)
    throw new CorruptedError(file, pos, 'transaction with checkpoint flag set');
  if (h.status !== ' ' && h.status !== 'p' && h.status !== 'u') {
    throw new CorruptedError(file, pos, `invalid transaction status: ${JSON.stringify(h.status)}`);
  }
  if (h.tl < txnHeaderLen(h)) {
    throw new CorruptedError(
      file,
      pos,
      `invalid transaction header: txnlen (${h.tl}) < headerlen(${txnHeaderLen(h)})`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// data records

/**
 * Decodes the data record header at `off` of `b` (and its back pointer when plen is 0); `pos` is its file
 * position. A nonzero version length (ZODB versions, long gone) is a CorruptedError.
 */
export function decodeDataHeader(b: Uint8Array, off: number, file: string, pos: number): DataHeader {
  if (off < 0 || off + DATA_HDR_LEN > b.length) {
    throw new CorruptedError(file, pos, `data record header truncated (${b.length - off} of 42 bytes)`);
  }
  const vlen = u16(b, off + 32);
  if (vlen !== 0) throw new CorruptedError(file, pos, `data record with a version (length ${vlen})`);
  const plen = readU64(b, off + 34);
  let back = 0;
  if (plen === 0) {
    if (off + DATA_HDR_LEN + BACK_PTR_LEN > b.length) {
      throw new CorruptedError(file, pos, 'data record truncated in its back pointer');
    }
    back = readU64(b, off + DATA_HDR_LEN);
  }
  return {
    oid: copy8(b, off),
    tid: copy8(b, off + 8),
    prev: readU64(b, off + 16),
    tloc: readU64(b, off + 24),
    plen,
    back,
  };
}

/** The 42-byte data header, plus the 8-byte back pointer when plen is 0. */
export function encodeDataHeader(h: DataHeader): Buffer {
  const out = Buffer.allocUnsafe(h.plen === 0 ? DATA_HDR_LEN + BACK_PTR_LEN : DATA_HDR_LEN);
  writeDataHeaderInto(out, 0, h.oid, h.tid, h.prev, h.tloc, h.plen, h.back);
  return out;
}

function writeDataHeaderInto(
  out: Uint8Array,
  off: number,
  oid: Oid,
  tid: Tid,
  prev: number,
  tloc: number,
  plen: number,
  back: number,
): number {
  if (oid.length !== 8) throw new RangeError(`an oid has 8 bytes, not ${oid.length}`);
  out.set(oid, off);
  out.set(tid.subarray(0, 8), off + 8);
  writeU64(out, off + 16, prev);
  writeU64(out, off + 24, tloc);
  out[off + 32] = 0;
  out[off + 33] = 0;
  writeU64(out, off + 34, plen);
  if (plen === 0) {
    writeU64(out, off + DATA_HDR_LEN, back);
    return off + DATA_HDR_LEN + BACK_PTR_LEN;
  }
  return off + DATA_HDR_LEN;
}

/**
 * FileStorageFormatter.checkData: the record at `pos` points to its transaction header `tpos`, fits in the
 * transaction, its prev and back pointers point backwards, and it has a back pointer or data, not both.
 */
export function checkDataHeader(
  th: TxnHeader,
  tpos: number,
  dh: DataHeader,
  pos: number,
  file: string,
): void {
  if (dh.tloc !== tpos) {
    throw new CorruptedError(
      file,
      pos,
      `data record does not point to transaction header: ${dh.tloc} != ${tpos}`,
    );
  }
  if (pos + dataRecordLen(dh.plen) > tpos + th.tl) {
    throw new CorruptedError(
      file,
      pos,
      `data record size exceeds transaction size: ${pos + dataRecordLen(dh.plen)} > ${tpos + th.tl}`,
    );
  }
  if (dh.prev >= pos) throw new CorruptedError(file, pos, `invalid previous pointer: ${dh.prev}`);
  if (dh.back) {
    if (dh.back >= pos) throw new CorruptedError(file, pos, `invalid back pointer: ${dh.back}`);
    if (dh.plen) throw new CorruptedError(file, pos, 'data record has back pointer and data');
  }
}

// ---------------------------------------------------------------------------------------------------------
// whole transactions

/** A data record to write: data, or (data null) a back pointer (0: the object does not exist). */
export interface RecordToWrite {
  oid: Oid;
  /** position of the previous record of this oid, 0 for none */
  prev: number;
  data: Uint8Array | null;
  /** used when data is null */
  back?: number;
}

export interface TransactionToWrite {
  tid: Tid;
  status?: string;
  user?: Uint8Array;
  description?: Uint8Array;
  extension?: Uint8Array;
  records: readonly RecordToWrite[];
}

export interface EncodedTransaction {
  /** the whole transaction, trailing length included */
  bytes: Buffer;
  /** tl, as written twice */
  tl: number;
  /** the file position of each data record, in the order given */
  positions: number[];
}

const EMPTY = new Uint8Array(0);

/**
 * Encodes a whole transaction for position `tpos` of the file (the records' tloc, and the positions
 * returned): header, user/description/extension, records, trailing tl. A record with data of length 0 is
 * refused: on disk it would read as a back pointer.
 */
export function encodeTransaction(t: TransactionToWrite, tpos: number): EncodedTransaction {
  const user = t.user ?? EMPTY;
  const description = t.description ?? EMPTY;
  const extension = t.extension ?? EMPTY;
  const status = t.status ?? STATUS_COMMITTED;
  checkMetaLengths(user, description, extension);
  if (t.tid.length !== 8) throw new RangeError(`a tid has 8 bytes, not ${t.tid.length}`);
  if (status.length !== 1 || status.charCodeAt(0) > 0x7f) {
    throw new RangeError(`a transaction status is one ASCII character, not ${JSON.stringify(status)}`);
  }
  const hlen = TRANS_HDR_LEN + user.length + description.length + extension.length;
  let tl = hlen;
  for (const r of t.records) {
    if (r.data !== null && r.data.length === 0) {
      throw new RangeError('a data record cannot hold 0 bytes of data (it would read as a back pointer)');
    }
    tl += r.data === null ? DATA_HDR_LEN + BACK_PTR_LEN : DATA_HDR_LEN + r.data.length;
  }
  const out = Buffer.allocUnsafe(tl + TRAILER_LEN);
  let p = writeTxnHeaderInto(out, 0, t.tid, tl, status, user, description, extension);
  const positions: number[] = [];
  for (const r of t.records) {
    positions.push(tpos + p);
    if (r.data === null) {
      p = writeDataHeaderInto(out, p, r.oid, t.tid, r.prev, tpos, 0, r.back ?? 0);
    } else {
      p = writeDataHeaderInto(out, p, r.oid, t.tid, r.prev, tpos, r.data.length, 0);
      out.set(r.data, p);
      p += r.data.length;
    }
  }
  writeU64(out, p, tl);
  return { bytes: out, tl, positions };
}

/** A data record read back by decodeTransaction. */
export interface DecodedRecord extends DataHeader {
  /** the record's file position */
  pos: number;
  /** the data (a view), or null for a back pointer */
  data: Uint8Array | null;
}

export interface DecodedTransaction extends TxnHeaderFull {
  pos: number;
  records: DecodedRecord[];
}

/**
 * Decodes the whole transaction at `off` of `b` (file position `pos`), checking it as FileStorage's iterator
 * and fstest do: header rules (checkTxnHeader with `lastTid`), every record (checkDataHeader), the records
 * adding up to the length, the trailing copy of the length. Data and metadata are views into `b`.
 */
export function decodeTransaction(
  b: Uint8Array,
  off: number,
  file: string,
  pos: number,
  lastTid: Tid | null = null,
): DecodedTransaction {
  const records: DecodedRecord[] = [];
  const { backPointers: _, ...h } = walkTransaction(b, off, file, pos, lastTid, records);
  return { ...h, pos, records };
}

/**
 * decodeTransaction's checks, keeping none of the records (an iterator decodes each with decodeRecord when it
 * is reached: no transaction's worth of records held at once): the header, and whether a record has a back
 * pointer to follow (no data, a back pointer not 0).
 */
export function checkTransaction(
  b: Uint8Array,
  off: number,
  file: string,
  pos: number,
  lastTid: Tid | null = null,
): TxnHeaderFull & { backPointers: boolean } {
  return walkTransaction(b, off, file, pos, lastTid, null);
}

/** The record at `off` of `b` (file position `pos`) of a transaction checkTransaction passed. */
export function decodeRecord(b: Uint8Array, off: number, file: string, pos: number): DecodedRecord {
  return withData(b, off, pos, decodeDataHeader(b, off, file, pos));
}

/** The record whose header `dh` is at `off` of `b` (file position `pos`), its data a view. */
function withData(b: Uint8Array, off: number, pos: number, dh: DataHeader): DecodedRecord {
  const data = dh.plen ? b.subarray(off + DATA_HDR_LEN, off + DATA_HDR_LEN + dh.plen) : null;
  // (fields named: a spread of dh was a third of an iteration's CPU)
  const { oid, tid, prev, tloc, plen, back } = dh;
  return { oid, tid, prev, tloc, plen, back, pos, data };
}

function walkTransaction(
  b: Uint8Array,
  off: number,
  file: string,
  pos: number,
  lastTid: Tid | null,
  records: DecodedRecord[] | null,
): TxnHeaderFull & { backPointers: boolean } {
  const h = decodeTxnHeaderFull(b, off, file, pos);
  checkTxnHeader(h, pos, file, lastTid);
  if (off + h.tl + TRAILER_LEN > b.length) {
    throw new CorruptedError(file, pos, `transaction (length ${h.tl}) runs past the end of the data`);
  }
  const tend = pos + h.tl;
  let rpos = pos + txnHeaderLen(h);
  // (a back pointer is read within the transaction)
  const within = b.subarray(0, off + h.tl);
  let backPointers = false;
  while (rpos < tend) {
    const roff = off + (rpos - pos);
    if (rpos + DATA_HDR_LEN > tend) {
      throw new CorruptedError(file, rpos, `data record header exceeds transaction record (ends at ${tend})`);
    }
    const dh = decodeDataHeader(within, roff, file, rpos);
    checkDataHeader(h, pos, dh, rpos, file);
    if (dh.plen === 0 && dh.back !== 0) backPointers = true;
    if (records !== null) records.push(withData(b, roff, rpos, dh));
    rpos += dataRecordLen(dh.plen);
  }
  if (rpos !== tend) throw new CorruptedError(file, pos, "data records don't add up");
  const tl2 = readU64(b, off + h.tl);
  if (tl2 !== h.tl) {
    throw new CorruptedError(file, tend, `redundant transaction length check failed: ${tl2} != ${h.tl}`);
  }
  return { ...h, backPointers };
}

// ---------------------------------------------------------------------------------------------------------

function compare8(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 8; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return 0;
}
