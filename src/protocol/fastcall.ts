// The server's fast reading of its hottest call, loadBefore(oid, tid), straight from the frame's bytes: the
// forms ZEO's clients (Python's and ours) write, pickled ('Z': zodbpickle protocol 3, fast mode) or msgpacked
// ('M'), with an int msgid (ours) or an (oid, tid) one (Python's). It gives the values the general decoder
// gives for the same bytes, or null for anything else (another call, another msgid, a heartbeat, a one-way
// flag, an unusual but valid encoding), which the general path then decodes as always.

import { tuple, type PickleValue } from '../pickle/index.js';
// (the module's binding, not the global: Node's global Buffer is a getter, called at each use)
import { Buffer } from 'node:buffer';
import {
  BINBYTES,
  BININT,
  BININT1,
  BININT2,
  BINUNICODE,
  MARK,
  NEWFALSE,
  NONE,
  PROTO,
  SHORT_BINBYTES,
  STOP,
  TUPLE,
  TUPLE2,
  TUPLE3,
} from '../pickle/opcodes.js';
import type { Encoding } from './handshake.js';

/** A loadBefore call read from its frame; oid and tid are views of the frame. */
export interface LoadBeforeCall {
  msgid: PickleValue;
  oid: Uint8Array;
  tid: Uint8Array;
}

/**
 * Where scanLoadBefore found the parts of a loadBefore call in a frame (positions in the buffer it was
 * given): one instance reused from call to call, so that the server's fast loads cost no object each.
 */
export class LoadBeforeAt {
  /** the int msgid, or -1 for Python's (oid, tid) msgid, whose bytes (the reply's too) are at msgidAt */
  msgid = 0;
  msgidAt = 0;
  oidAt = 0;
  tidAt = 0;
}

/** What a loadBefore reply carries when the object is found: (data, start, end) as ranges of buffers. */
export interface LoadBeforeFound {
  /** the record's data is data[dataAt .. dataAt + dataLen] */
  data: Uint8Array;
  dataAt: number;
  dataLen: number;
  /** 8 bytes */
  start: Uint8Array;
  /** 8 bytes, when hasEnd (else the end is None) */
  end: Uint8Array;
  hasEnd: boolean;
}

// msgpack
const FIXARRAY2 = 0x92;
const FIXARRAY3 = 0x93;
const FIXARRAY4 = 0x94;
const NIL = 0xc0;
const FALSE = 0xc2;
const BIN8 = 0xc4;
const BIN16 = 0xc5;
const BIN32 = 0xc6;
const UINT8 = 0xcc;
const UINT16 = 0xcd;
const UINT32 = 0xce;

const NAME = 'loadBefore';
/** BINUNICODE 'loadBefore' */
const PICKLED_NAME = Buffer.from([BINUNICODE, NAME.length, 0, 0, 0, ...Buffer.from(NAME, 'latin1')]);
/** fixstr 'loadBefore' */
const PACKED_NAME = Buffer.from([0xa0 | NAME.length, ...Buffer.from(NAME, 'latin1')]);

/** (python's msgid pair: SHORT_BINBYTES 8 x2 TUPLE2, or fixarray 2 of bin8 8 x2: the same length) */
const PAIR_MSGID_LEN = 21;

/** The loadBefore call in `payload`, or null when it is not one in a form read here. */
export function readLoadBefore(encoding: Encoding, payload: Uint8Array): LoadBeforeCall | null {
  const at = new LoadBeforeAt();
  if (!scanLoadBefore(encoding, payload, 0, payload.length, at)) return null;
  // (the pair: two 8-byte strings, after a 2-byte (pickle) or 3-byte (msgpack) opening each)
  const o = encoding === 'Z' ? 2 : 3;
  const msgid =
    at.msgid >= 0
      ? at.msgid
      : tuple<PickleValue>(view(payload, at.msgidAt + o), view(payload, at.msgidAt + o + 10));
  return { msgid, oid: view(payload, at.oidAt), tid: view(payload, at.tidAt) };
}

/**
 * readLoadBefore without objects: whether p[start .. start + length] is a loadBefore call read here, its
 * parts' places put in `into` (positions in p).
 */
export function scanLoadBefore(
  encoding: Encoding,
  p: Uint8Array,
  start: number,
  length: number,
  into: LoadBeforeAt,
): boolean {
  return encoding === 'Z' ? scanPickled(p, start, length, into) : scanPacked(p, start, length, into);
}

/** 8 bytes of the frame, as the general decoder gives bytes: a Uint8Array view (not a Buffer). */
function view(p: Uint8Array, at: number): Uint8Array {
  return new Uint8Array(p.buffer, p.byteOffset + at, 8);
}

function matchAt(p: Uint8Array, at: number, end: number, what: Uint8Array): boolean {
  if (at + what.length > end) return false;
  for (let i = 0; i < what.length; i++) if (p[at + i] !== what[i]) return false;
  return true;
}

/** PROTO 3, MARK, msgid, NEWFALSE, BINUNICODE 'loadBefore', C oid, C tid, TUPLE2, TUPLE, STOP */
function scanPickled(p: Uint8Array, start: number, length: number, into: LoadBeforeAt): boolean {
  // the shortest: PROTO 3 MARK K n (6) + NEWFALSE (1) + name (15) + 2 x C 8 bytes (20) + TUPLE2 TUPLE STOP (3)
  if (length < 44 || p[start] !== PROTO || p[start + 1] !== 3 || p[start + 2] !== MARK) return false;
  const end = start + length;
  let at = start + 3;
  into.msgidAt = at;
  switch (p[at]) {
    case BININT1:
      into.msgid = p[at + 1];
      at += 2;
      break;
    case BININT2:
      into.msgid = p[at + 1] | (p[at + 2] << 8);
      at += 3;
      break;
    case BININT: {
      // signed: -1 is the heartbeat, left to the general path with every negative msgid
      const id = p[at + 1] | (p[at + 2] << 8) | (p[at + 3] << 16) | (p[at + 4] << 24);
      if (id < 0) return false;
      into.msgid = id;
      at += 5;
      break;
    }
    case SHORT_BINBYTES:
      // Python's client: (oid, tid)
      if (p[at + 1] !== 8 || p[at + 10] !== SHORT_BINBYTES || p[at + 11] !== 8 || p[at + 20] !== TUPLE2)
        return false;
      into.msgid = -1;
      at += PAIR_MSGID_LEN;
      break;
    default:
      return false;
  }
  if (p[at] !== NEWFALSE || !matchAt(p, at + 1, end, PICKLED_NAME)) return false;
  at += 1 + PICKLED_NAME.length;
  if (
    end !== at + 23 ||
    p[at] !== SHORT_BINBYTES ||
    p[at + 1] !== 8 ||
    p[at + 10] !== SHORT_BINBYTES ||
    p[at + 11] !== 8 ||
    p[at + 20] !== TUPLE2 ||
    p[at + 21] !== TUPLE ||
    p[at + 22] !== STOP
  )
    return false;
  into.oidAt = at + 2;
  into.tidAt = at + 12;
  return true;
}

/** fixarray 4: msgid, false, fixstr 'loadBefore', fixarray 2 of bin8 oid and bin8 tid */
function scanPacked(p: Uint8Array, start: number, length: number, into: LoadBeforeAt): boolean {
  if (length < 35 || p[start] !== FIXARRAY4) return false;
  const end = start + length;
  let at = start + 1;
  into.msgidAt = at;
  const b = p[at];
  if (b <= 0x7f) {
    into.msgid = b;
    at += 1;
  } else if (b === UINT8) {
    into.msgid = p[at + 1];
    at += 2;
  } else if (b === UINT16) {
    into.msgid = (p[at + 1] << 8) | p[at + 2];
    at += 3;
  } else if (b === UINT32) {
    into.msgid = ((p[at + 1] << 24) >>> 0) + ((p[at + 2] << 16) | (p[at + 3] << 8) | p[at + 4]);
    at += 5;
  } else if (b === FIXARRAY2) {
    // Python's client: (oid, tid)
    if (p[at + 1] !== BIN8 || p[at + 2] !== 8 || p[at + 11] !== BIN8 || p[at + 12] !== 8) return false;
    into.msgid = -1;
    at += PAIR_MSGID_LEN;
  } else {
    return false;
  }
  if (p[at] !== FALSE || !matchAt(p, at + 1, end, PACKED_NAME)) return false;
  at += 1 + PACKED_NAME.length;
  if (
    end !== at + 21 ||
    p[at] !== FIXARRAY2 ||
    p[at + 1] !== BIN8 ||
    p[at + 2] !== 8 ||
    p[at + 11] !== BIN8 ||
    p[at + 12] !== 8
  )
    return false;
  into.oidAt = at + 3;
  into.tidAt = at + 13;
  return true;
}

// The reply, (msgid, 0, '.reply', (data, start, end)) or (msgid, 0, '.reply', None), as the codecs encode it
// (test/protocol/fastcall.test.ts compares them): what comes before the msgid, then between it and the result.
/** PROTO 3, MARK */
const PICKLED_HEAD = Buffer.from([PROTO, 3, MARK]);
/** BININT1 0, BINUNICODE '.reply' */
const PICKLED_FLAG_NAME = Buffer.from([
  BININT1,
  0,
  BINUNICODE,
  6,
  0,
  0,
  0,
  ...Buffer.from('.reply', 'latin1'),
]);
/** fixint 0, fixstr '.reply' */
const PACKED_FLAG_NAME = Buffer.from([0, 0xa6, ...Buffer.from('.reply', 'latin1')]);

/** The length of the msgid as the codec writes it (the smallest int form, or the pair as it came). */
function msgidLength(encoding: Encoding, msgid: number): number {
  if (msgid < 0) return PAIR_MSGID_LEN;
  if (encoding === 'Z') return msgid <= 0xff ? 2 : msgid <= 0xffff ? 3 : 5;
  return msgid <= 0x7f ? 1 : msgid <= 0xff ? 2 : msgid <= 0xffff ? 3 : 5;
}

/** The length of the reply's payload to `call` with `found` (null: None). */
export function loadBeforeReplyLength(
  encoding: Encoding,
  call: LoadBeforeAt,
  found: LoadBeforeFound | null,
): number {
  const id = msgidLength(encoding, call.msgid);
  if (encoding === 'Z') {
    // head, msgid, flag and name, result, TUPLE STOP
    let n = 3 + id + PICKLED_FLAG_NAME.length + 2;
    if (found === null) return n + 1;
    // (data) start end TUPLE3
    n += (found.dataLen <= 0xff ? 2 : 5) + found.dataLen + 10 + (found.hasEnd ? 10 : 1) + 1;
    return n;
  }
  let n = 1 + id + PACKED_FLAG_NAME.length;
  if (found === null) return n + 1;
  const d = found.dataLen;
  n += 1 + (d <= 0xff ? 2 : d <= 0xffff ? 3 : 5) + d + 10 + (found.hasEnd ? 10 : 1);
  return n;
}

/**
 * Writes the reply's payload (loadBeforeReplyLength bytes) to `call`, read from `req`, into out at `at`: the
 * bytes the codec's encodeReply gives for the same msgid and result.
 */
export function writeLoadBeforeReply(
  encoding: Encoding,
  out: Uint8Array,
  at: number,
  req: Uint8Array,
  call: LoadBeforeAt,
  found: LoadBeforeFound | null,
): void {
  const packed = encoding === 'M';
  if (packed) out[at++] = FIXARRAY4;
  else at = put(out, at, PICKLED_HEAD);
  const id = call.msgid;
  if (id < 0) {
    const from = call.msgidAt;
    for (let i = 0; i < PAIR_MSGID_LEN; i++) out[at + i] = req[from + i];
    at += PAIR_MSGID_LEN;
  } else if (packed) {
    if (id <= 0x7f) out[at++] = id;
    else if (id <= 0xff) {
      out[at++] = UINT8;
      out[at++] = id;
    } else if (id <= 0xffff) {
      out[at++] = UINT16;
      out[at++] = id >> 8;
      out[at++] = id & 0xff;
    } else {
      out[at++] = UINT32;
      at = be32(out, at, id);
    }
  } else if (id <= 0xff) {
    out[at++] = BININT1;
    out[at++] = id;
  } else if (id <= 0xffff) {
    out[at++] = BININT2;
    out[at++] = id & 0xff;
    out[at++] = id >> 8;
  } else {
    out[at++] = BININT;
    at = le32(out, at, id);
  }
  at = put(out, at, packed ? PACKED_FLAG_NAME : PICKLED_FLAG_NAME);
  if (found === null) {
    out[at++] = packed ? NIL : NONE;
  } else {
    const d = found.dataLen;
    if (packed) {
      out[at++] = FIXARRAY3;
      if (d <= 0xff) {
        out[at++] = BIN8;
        out[at++] = d;
      } else if (d <= 0xffff) {
        out[at++] = BIN16;
        out[at++] = d >> 8;
        out[at++] = d & 0xff;
      } else {
        out[at++] = BIN32;
        at = be32(out, at, d);
      }
    } else if (d <= 0xff) {
      out[at++] = SHORT_BINBYTES;
      out[at++] = d;
    } else {
      out[at++] = BINBYTES;
      at = le32(out, at, d);
    }
    const data = found.data;
    const from = found.dataAt;
    // (Buffer#copy: the native copy of a range, without the view that set() of a subarray makes)
    if (d <= 16) for (let i = 0; i < d; i++) out[at + i] = data[from + i];
    else if (data instanceof Buffer) data.copy(out, at, from, from + d);
    else out.set(data.subarray(from, from + d), at);
    at += d;
    const bin8 = packed ? BIN8 : SHORT_BINBYTES;
    at = id8(out, at, bin8, found.start);
    if (found.hasEnd) at = id8(out, at, bin8, found.end);
    else out[at++] = packed ? NIL : NONE;
    if (!packed) out[at++] = TUPLE3;
  }
  if (!packed) {
    out[at] = TUPLE;
    out[at + 1] = STOP;
  }
}

function put(out: Uint8Array, at: number, what: Uint8Array): number {
  for (let i = 0; i < what.length; i++) out[at + i] = what[i];
  return at + what.length;
}

function id8(out: Uint8Array, at: number, op: number, id: Uint8Array): number {
  out[at] = op;
  out[at + 1] = 8;
  for (let i = 0; i < 8; i++) out[at + 2 + i] = id[i];
  return at + 10;
}

function be32(out: Uint8Array, at: number, v: number): number {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
  return at + 4;
}

function le32(out: Uint8Array, at: number, v: number): number {
  out[at] = v & 0xff;
  out[at + 1] = (v >>> 8) & 0xff;
  out[at + 2] = (v >>> 16) & 0xff;
  out[at + 3] = v >>> 24;
  return at + 4;
}
