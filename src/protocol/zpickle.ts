// The 'Z' encoder: a ZEO message as zodbpickle's Pickler(protocol 3) with fast = 1 writes it (marshal.encoder):
// no memo, every message a complete pickle. This writer covers what ZEO itself sends (None, bool, int, float,
// str, bytes, tuple, list, dict) with one copy of each large byte string; a message holding anything else
// (a Global, an object, a set, a bytearray, a lone surrogate, deep nesting) is handed whole to the general
// Pickler in fast mode, which writes the same bytes for the common part.
import {
  APPEND,
  APPENDS,
  BINBYTES,
  BINFLOAT,
  BININT,
  BININT1,
  BININT2,
  BINUNICODE,
  EMPTY_DICT,
  EMPTY_LIST,
  EMPTY_TUPLE,
  LONG1,
  LONG4,
  MARK,
  NEWFALSE,
  NEWTRUE,
  NONE,
  PROTO,
  SETITEM,
  SETITEMS,
  SHORT_BINBYTES,
  STOP,
  TUPLE,
  TUPLE1,
} from '../pickle/opcodes.js';
import {
  ByteArray,
  PickleError,
  Pickler,
  PyFloat,
  Tuple,
  tupleFrom,
  type PickleValue,
} from '../pickle/index.js';
import { ProtocolError } from './errors.js';
import { Output } from './output.js';

/** Thrown (one shared instance, made once: no stack per throw) when a value needs the general Pickler. */
const BAIL: Error = Object.freeze(new Error('a value for the general Pickler'));

/** pickle._BATCHSIZE */
const BATCHSIZE = 1000;
/** Deeper values go to the Pickler, which reports cycles as _pickle.c's fast mode does past this nesting. */
const FAST_NESTING_LIMIT = 50;

const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type WriteBuffer = Buffer & { utf8Write(s: string, offset: number, length: number): number };

export class ZeoPickleWriter {
  private readonly out = new Output();
  private fallback: Pickler | null = null;

  /**
   * The pickle of (msgid, flag, name, body); with `bodyIsArgs` the body is written as a tuple whatever array
   * it is (a call's arguments).
   */
  message(
    msgid: PickleValue,
    flag: PickleValue,
    name: string,
    body: PickleValue,
    bodyIsArgs: boolean,
    /**
     * true: pieces to write in order, the large byte strings not copied (Output.finishParts); 'view': one
     * Buffer that is a view of the writer's own buffer, valid until its next message (Output.finishView)
     */
    parts: boolean | 'view' = false,
  ): Buffer | Buffer[] {
    const out = this.out;
    try {
      out.ensure(3);
      out.buf[out.pos] = PROTO;
      out.buf[out.pos + 1] = 3;
      out.buf[out.pos + 2] = MARK;
      out.pos += 3;
      this.value(msgid, 1);
      this.value(flag, 1);
      this.str(name);
      if (bodyIsArgs) this.tuple(body as PickleValue[], 1);
      else this.value(body, 1);
      out.ensure(2);
      out.buf[out.pos] = TUPLE;
      out.buf[out.pos + 1] = STOP;
      out.pos += 2;
      return parts === 'view' ? out.finishView() : parts ? out.finishParts() : out.finish();
    } catch (e) {
      out.reset();
      if (e !== BAIL) throw e;
    }
    const fourth = bodyIsArgs ? tupleFrom(body as PickleValue[]) : body;
    try {
      const whole = (this.fallback ??= new Pickler(3, { memo: false })).dumps(
        tupleFrom([msgid, flag, name, fourth]),
      );
      return parts === true ? [whole] : whole;
    } catch (e) {
      if (e instanceof PickleError)
        throw new ProtocolError(`cannot encode the message: ${e.message}`, { cause: e });
      throw e;
    }
  }

  private value(v: PickleValue, depth: number): void {
    switch (typeof v) {
      case 'string':
        this.str(v);
        return;
      case 'number':
        if (Number.isInteger(v)) this.int(v);
        else this.float(v);
        return;
      case 'boolean':
        this.out.byte(v ? NEWTRUE : NEWFALSE);
        return;
      case 'bigint':
        if (v >= -9007199254740991n && v <= 9007199254740991n) this.int(Number(v));
        else this.bigint(v);
        return;
      case 'object':
        break;
      default:
        throw BAIL;
    }
    if (v === null) {
      this.out.byte(NONE);
    } else if (Array.isArray(v)) {
      if (depth > FAST_NESTING_LIMIT) throw BAIL;
      if (v instanceof Tuple) this.tuple(v, depth);
      else this.list(v, depth);
    } else if (v instanceof Uint8Array) {
      if (v instanceof ByteArray) throw BAIL;
      this.bytes(v);
    } else if (v instanceof Map) {
      if (depth > FAST_NESTING_LIMIT) throw BAIL;
      this.dict(v, depth);
    } else if (v instanceof PyFloat) {
      this.float(v.value);
    } else {
      throw BAIL;
    }
  }

  private tuple(t: PickleValue[], depth: number): void {
    const n = t.length;
    const out = this.out;
    if (n === 0) {
      out.byte(EMPTY_TUPLE);
      return;
    }
    if (n > 3) out.byte(MARK);
    for (let i = 0; i < n; i++) this.value(t[i], depth + 1);
    out.byte(n > 3 ? TUPLE : TUPLE1 + n - 1);
  }

  /** _pickle.c batch_list_exact: one item APPEND, else batches of 1000 MARK ... APPENDS. */
  private list(l: PickleValue[], depth: number): void {
    const out = this.out;
    out.byte(EMPTY_LIST);
    const n = l.length;
    if (n === 1) {
      this.value(l[0], depth + 1);
      out.byte(APPEND);
    } else if (n > 1) {
      let i = 0;
      do {
        out.byte(MARK);
        const end = Math.min(i + BATCHSIZE, n);
        for (; i < end; i++) this.value(l[i], depth + 1);
        out.byte(APPENDS);
      } while (i < n);
    }
  }

  /** _pickle.c batch_dict_exact: one item SETITEM, else batches of 1000 (a full last batch adds an empty one). */
  private dict(m: Map<PickleValue, PickleValue>, depth: number): void {
    const out = this.out;
    out.byte(EMPTY_DICT);
    const n = m.size;
    if (n === 0) return;
    if (n > 1) out.byte(MARK);
    let i = 0;
    for (const [k, v] of m) {
      this.value(k, depth + 1);
      this.value(v, depth + 1);
      if (++i === BATCHSIZE && n > 1) {
        out.byte(SETITEMS);
        out.byte(MARK);
        i = 0;
      }
    }
    out.byte(n > 1 ? SETITEMS : SETITEM);
  }

  private bytes(b: Uint8Array): void {
    const out = this.out;
    const n = b.length;
    if (n <= 0xff) {
      out.ensure(2);
      out.buf[out.pos] = SHORT_BINBYTES;
      out.buf[out.pos + 1] = n;
      out.pos += 2;
    } else {
      if (n > 0xffffffff) throw BAIL; // the Pickler says why
      out.ensure(5);
      out.buf[out.pos] = BINBYTES;
      out.buf.writeUInt32LE(n, out.pos + 1);
      out.pos += 5;
    }
    out.bytes(b);
  }

  /** BINUNICODE (protocol 3 has no short form). Lone surrogates (surrogatepass) are left to the Pickler. */
  private str(s: string): void {
    const out = this.out;
    const n = s.length;
    if (n < 64) {
      out.ensure(5 + n);
      const buf = out.buf;
      const start = out.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + 5 + i] = c;
      }
      if (i === n) {
        buf[start] = BINUNICODE;
        buf[start + 1] = n;
        buf[start + 2] = 0;
        buf[start + 3] = 0;
        buf[start + 4] = 0;
        out.pos = start + 5 + n;
        return;
      }
    }
    if (!s.isWellFormed()) throw BAIL;
    const max = n < 1 << 20 ? 3 * n : Buffer.byteLength(s, 'utf8');
    out.ensure(5 + max);
    const start = out.pos;
    const len = (out.buf as WriteBuffer).utf8Write(s, start + 5, max);
    out.buf[start] = BINUNICODE;
    out.buf.writeUInt32LE(len, start + 1);
    out.pos = start + 5 + len;
  }

  /** The smallest of BININT1, BININT2, BININT, LONG1 (minimal two's complement), as save_long. */
  private int(v: number): void {
    const out = this.out;
    out.ensure(12);
    const buf = out.buf;
    const p = out.pos;
    if (v >= 0 && v <= 0xff) {
      buf[p] = BININT1;
      buf[p + 1] = v;
      out.pos = p + 2;
    } else if (v >= 0 && v <= 0xffff) {
      buf[p] = BININT2;
      buf[p + 1] = v & 0xff;
      buf[p + 2] = v >> 8;
      out.pos = p + 3;
    } else if (v >= -0x80000000 && v <= 0x7fffffff) {
      buf[p] = BININT;
      buf[p + 1] = v & 0xff;
      buf[p + 2] = (v >> 8) & 0xff;
      buf[p + 3] = (v >> 16) & 0xff;
      buf[p + 4] = (v >> 24) & 0xff;
      out.pos = p + 5;
    } else if (v >= -9007199254740992 && v <= 9007199254740992) {
      // 64-bit two's complement from two 32-bit halves, then the redundant sign bytes dropped
      const start = p + 2;
      const lo = v >>> 0;
      const hi = Math.floor(v / 4294967296) | 0;
      buf[start] = lo & 0xff;
      buf[start + 1] = (lo >>> 8) & 0xff;
      buf[start + 2] = (lo >>> 16) & 0xff;
      buf[start + 3] = lo >>> 24;
      buf[start + 4] = hi & 0xff;
      buf[start + 5] = (hi >> 8) & 0xff;
      buf[start + 6] = (hi >> 16) & 0xff;
      buf[start + 7] = (hi >> 24) & 0xff;
      let len = 8;
      const fill = hi < 0 ? 0xff : 0;
      while (len > 1 && buf[start + len - 1] === fill && (buf[start + len - 2] & 0x80) === (fill & 0x80))
        len--;
      buf[p] = LONG1;
      buf[p + 1] = len;
      out.pos = start + len;
    } else {
      // an integral double past 2**53 is exact as a bigint
      this.bigint(BigInt(v));
    }
  }

  /** LONG1 (or LONG4 past 255 bytes) of a non-zero int outside the safe range. */
  private bigint(v: bigint): void {
    // pickle.encode_long: (bit_length >> 3) + 1 bytes, less a redundant 0xff sign byte of a negative
    const neg = v < 0n;
    let nbytes = ((neg ? -v : v).toString(2).length >> 3) + 1;
    const u = neg ? (1n << BigInt(nbytes * 8)) + v : v;
    let le = Buffer.from(u.toString(16).padStart(nbytes * 2, '0'), 'hex').reverse();
    if (neg && nbytes > 1 && le[nbytes - 1] === 0xff && (le[nbytes - 2] & 0x80) !== 0) {
      nbytes--;
      le = le.subarray(0, nbytes);
    }
    const out = this.out;
    if (nbytes < 256) {
      out.ensure(2);
      out.buf[out.pos] = LONG1;
      out.buf[out.pos + 1] = nbytes;
      out.pos += 2;
    } else {
      out.ensure(5);
      out.buf[out.pos] = LONG4;
      out.buf.writeInt32LE(nbytes, out.pos + 1);
      out.pos += 5;
    }
    out.bytes(le);
  }

  /** BINFLOAT: IEEE-754 big-endian. */
  private float(v: number): void {
    const out = this.out;
    out.ensure(9);
    const buf = out.buf;
    const p = out.pos;
    F64[0] = v;
    buf[p] = BINFLOAT;
    if (LITTLE_ENDIAN) {
      for (let i = 0; i < 8; i++) buf[p + 1 + i] = F64_BYTES[7 - i];
    } else {
      for (let i = 0; i < 8; i++) buf[p + 1 + i] = F64_BYTES[i];
    }
    out.pos = p + 9;
  }
}
