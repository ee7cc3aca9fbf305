// The server's fast reading of its hottest call, loadBefore(oid, tid), straight from the frame's bytes: the
// forms ZEO's clients (Python's and ours) write, pickled ('Z': zodbpickle protocol 3, fast mode) or msgpacked
// ('M'), with an int msgid (ours) or an (oid, tid) one (Python's). It gives the values the general decoder
// gives for the same bytes, or null for anything else (another call, another msgid, a heartbeat, a one-way
// flag, an unusual but valid encoding), which the general path then decodes as always.

import { tuple, type PickleValue } from '../pickle/index.js';
import {
  BININT,
  BININT1,
  BININT2,
  BINUNICODE,
  MARK,
  NEWFALSE,
  PROTO,
  SHORT_BINBYTES,
  STOP,
  TUPLE,
  TUPLE2,
} from '../pickle/opcodes.js';
import type { Encoding } from './handshake.js';

/** A loadBefore call read from its frame; oid and tid are views of the frame. */
export interface LoadBeforeCall {
  msgid: PickleValue;
  oid: Uint8Array;
  tid: Uint8Array;
}

// msgpack
const FIXARRAY2 = 0x92;
const FIXARRAY4 = 0x94;
const FALSE = 0xc2;
const BIN8 = 0xc4;
const UINT8 = 0xcc;
const UINT16 = 0xcd;
const UINT32 = 0xce;

const NAME = 'loadBefore';
/** BINUNICODE 'loadBefore' */
const PICKLED_NAME = Buffer.from([BINUNICODE, NAME.length, 0, 0, 0, ...Buffer.from(NAME, 'latin1')]);
/** fixstr 'loadBefore' */
const PACKED_NAME = Buffer.from([0xa0 | NAME.length, ...Buffer.from(NAME, 'latin1')]);

/** The loadBefore call in `payload`, or null when it is not one in a form read here. */
export function readLoadBefore(encoding: Encoding, payload: Uint8Array): LoadBeforeCall | null {
  return encoding === 'Z' ? readPickled(payload) : readPacked(payload);
}

/** 8 bytes of the frame, as the general decoder gives bytes: a Uint8Array view (not a Buffer). */
function view(p: Uint8Array, at: number): Uint8Array {
  return new Uint8Array(p.buffer, p.byteOffset + at, 8);
}

function matchAt(p: Uint8Array, at: number, what: Uint8Array): boolean {
  if (at + what.length > p.length) return false;
  for (let i = 0; i < what.length; i++) if (p[at + i] !== what[i]) return false;
  return true;
}

/** PROTO 3, MARK, msgid, NEWFALSE, BINUNICODE 'loadBefore', C oid, C tid, TUPLE2, TUPLE, STOP */
function readPickled(p: Uint8Array): LoadBeforeCall | null {
  // the shortest: PROTO 3 MARK K n (6) + NEWFALSE (1) + name (15) + 2 x C 8 bytes (20) + TUPLE2 TUPLE STOP (3)
  if (p.length < 44 || p[0] !== PROTO || p[1] !== 3 || p[2] !== MARK) return null;
  let at = 3;
  let msgid: PickleValue;
  switch (p[at]) {
    case BININT1:
      msgid = p[at + 1];
      at += 2;
      break;
    case BININT2:
      msgid = p[at + 1] | (p[at + 2] << 8);
      at += 3;
      break;
    case BININT:
      // signed: -1 is the heartbeat, left to the general path with every negative msgid
      msgid = p[at + 1] | (p[at + 2] << 8) | (p[at + 3] << 16) | (p[at + 4] << 24);
      if (msgid < 0) return null;
      at += 5;
      break;
    case SHORT_BINBYTES: {
      // Python's client: (oid, tid)
      if (p[at + 1] !== 8 || p[at + 10] !== SHORT_BINBYTES || p[at + 11] !== 8 || p[at + 20] !== TUPLE2)
        return null;
      msgid = tuple<PickleValue>(view(p, at + 2), view(p, at + 12));
      at += 21;
      break;
    }
    default:
      return null;
  }
  if (p[at] !== NEWFALSE || !matchAt(p, at + 1, PICKLED_NAME)) return null;
  at += 1 + PICKLED_NAME.length;
  if (
    p.length !== at + 23 ||
    p[at] !== SHORT_BINBYTES ||
    p[at + 1] !== 8 ||
    p[at + 10] !== SHORT_BINBYTES ||
    p[at + 11] !== 8 ||
    p[at + 20] !== TUPLE2 ||
    p[at + 21] !== TUPLE ||
    p[at + 22] !== STOP
  )
    return null;
  return { msgid, oid: view(p, at + 2), tid: view(p, at + 12) };
}

/** fixarray 4: msgid, false, fixstr 'loadBefore', fixarray 2 of bin8 oid and bin8 tid */
function readPacked(p: Uint8Array): LoadBeforeCall | null {
  if (p.length < 35 || p[0] !== FIXARRAY4) return null;
  let at = 1;
  let msgid: PickleValue;
  const b = p[at];
  if (b <= 0x7f) {
    msgid = b;
    at += 1;
  } else if (b === UINT8) {
    msgid = p[at + 1];
    at += 2;
  } else if (b === UINT16) {
    msgid = (p[at + 1] << 8) | p[at + 2];
    at += 3;
  } else if (b === UINT32) {
    msgid = ((p[at + 1] << 24) >>> 0) + ((p[at + 2] << 16) | (p[at + 3] << 8) | p[at + 4]);
    at += 5;
  } else if (b === FIXARRAY2) {
    // Python's client: (oid, tid)
    if (p[at + 1] !== BIN8 || p[at + 2] !== 8 || p[at + 11] !== BIN8 || p[at + 12] !== 8) return null;
    msgid = tuple<PickleValue>(view(p, at + 3), view(p, at + 13));
    at += 21;
  } else {
    return null;
  }
  if (p[at] !== FALSE || !matchAt(p, at + 1, PACKED_NAME)) return null;
  at += 1 + PACKED_NAME.length;
  if (
    p.length !== at + 21 ||
    p[at] !== FIXARRAY2 ||
    p[at + 1] !== BIN8 ||
    p[at + 2] !== 8 ||
    p[at + 11] !== BIN8 ||
    p[at + 12] !== 8
  )
    return null;
  return { msgid, oid: view(p, at + 3), tid: view(p, at + 13) };
}
