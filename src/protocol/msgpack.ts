// The 'M' encoding: msgpack as ZEO's marshal module uses it, packb(..., use_bin_type=True) and
// unpackb(raw=False, use_list=False), byte for byte and type for type.
//
// Written here rather than with msgpackr because msgpackr cannot give these types cheaply: it decodes floats to
// plain numbers (1.0 would come back as the int 1), arrays to lists (ZEO needs tuples, to echo msgids), accepts
// invalid UTF-8 in str, and has built-in ext types; it writes bigints always as 64-bit and has no PyFloat.
// The format subset is small, and owning it lets large bin values be copied once on the way out and not at
// all on the way in (a decoded bin is a view of the payload).
import { isUtf8 } from 'node:buffer';
import { Global, PyFloat, PyObject, Tuple, type PickleValue } from '../pickle/index.js';
import { ProtocolError } from './errors.js';
import { Output } from './output.js';

/** msgpack's Packer: a value nested deeper than this under the top one is "recursion limit exceeded". */
const PACK_NEST_LIMIT = 1024;
/** msgpack's unpacker stack (MSGPACK_EMBED_STACK_SIZE): deeper containers are a StackError. */
const UNPACK_MAX_DEPTH = 1024;

const UINT64_MAX = 0xffffffffffffffffn;
const INT64_MIN = -0x8000000000000000n;

const RECON = Global.of('ZODB.POSException', '_recon');

type Utf8Buffer = Buffer & {
  utf8Write(s: string, offset: number, length: number): number;
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
};

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v !== 'object' || v === null) return typeof v;
  const name = (Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null)?.constructor?.name;
  return name ? `a ${name}` : 'an object';
}

export interface MsgpackEncodeOptions {
  /**
   * The server's `default` hook (marshal.server_default): an exception inside a value (the pickle form
   * `_recon(cls, state)` that exceptions.ts builds) becomes (class name, its __dict__ or its args).
   */
  serverDefault?: boolean;
}

export class MsgpackWriter {
  private readonly out = new Output();
  private readonly serverDefault: boolean;

  constructor(options: MsgpackEncodeOptions = {}) {
    this.serverDefault = options.serverDefault ?? false;
  }

  /** packb((msgid, flag, name, body)); with `bodyIsArgs` the body is an array (a call's arguments). */
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
      out.byte(0x94);
      this.value(msgid, 1);
      this.value(flag, 1);
      this.str(name);
      if (bodyIsArgs) this.array(body as PickleValue[], 1);
      else this.value(body, 1);
      return parts === 'view' ? out.finishView() : parts ? out.finishParts() : out.finish();
    } catch (e) {
      out.reset();
      throw e;
    }
  }

  /** packb(value) of one value, for tests and tools. */
  pack(value: PickleValue): Buffer {
    try {
      this.value(value, 0);
      return this.out.finish();
    } catch (e) {
      this.out.reset();
      throw e;
    }
  }

  private value(v: PickleValue, depth: number): void {
    if (depth > PACK_NEST_LIMIT)
      throw new ProtocolError('cannot encode in msgpack: recursion limit exceeded');
    switch (typeof v) {
      case 'string':
        this.str(v);
        return;
      case 'number':
        if (Number.isInteger(v)) {
          if (Number.isSafeInteger(v)) this.int(v);
          else this.bigint(BigInt(v));
        } else {
          this.float(v);
        }
        return;
      case 'boolean':
        this.out.byte(v ? 0xc3 : 0xc2);
        return;
      case 'bigint':
        this.bigint(v);
        return;
      case 'object':
        break;
      default:
        throw new ProtocolError(`cannot encode ${describe(v)} in msgpack`);
    }
    if (v === null) {
      this.out.byte(0xc0);
    } else if (Array.isArray(v)) {
      this.array(v, depth);
    } else if (v instanceof Uint8Array) {
      this.bin(v);
    } else if (v instanceof Map) {
      this.map(v, depth);
    } else if (v instanceof PyFloat) {
      this.float(v.value);
    } else if (this.serverDefault && v instanceof PyObject && isReconstructedException(v)) {
      // (class name, exc.__dict__ or exc.args), as reduce_exception
      const [cls, state] = v.args as [Global, Map<PickleValue, PickleValue>];
      const dict = new Map(state);
      const args = dict.get('args') ?? new Tuple();
      dict.delete('args');
      this.array([`${cls.module}.${cls.name}`, dict.size ? dict : args], depth);
    } else {
      throw new ProtocolError(`cannot encode ${describe(v)} in msgpack`);
    }
  }

  private array(a: PickleValue[], depth: number): void {
    const n = a.length;
    this.header(n, 0x90, 0xdc);
    for (let i = 0; i < n; i++) this.value(a[i], depth + 1);
  }

  private map(m: Map<PickleValue, PickleValue>, depth: number): void {
    this.header(m.size, 0x80, 0xde);
    for (const [k, v] of m) {
      this.value(k, depth + 1);
      this.value(v, depth + 1);
    }
  }

  /** fixarray/fixmap (n <= 15), else the 16-bit code, else the 32-bit one (code16 + 1). */
  private header(n: number, fix: number, code16: number): void {
    const out = this.out;
    out.ensure(5);
    const buf = out.buf;
    const p = out.pos;
    if (n <= 15) {
      buf[p] = fix | n;
      out.pos = p + 1;
    } else if (n <= 0xffff) {
      buf[p] = code16;
      buf[p + 1] = n >> 8;
      buf[p + 2] = n & 0xff;
      out.pos = p + 3;
    } else if (n <= 0xffffffff) {
      buf[p] = code16 + 1;
      buf.writeUInt32BE(n, p + 1);
      out.pos = p + 5;
    } else {
      throw new ProtocolError(`cannot encode a container of ${n} items in msgpack`);
    }
  }

  private bin(b: Uint8Array): void {
    const out = this.out;
    const n = b.length;
    out.ensure(5);
    const buf = out.buf;
    const p = out.pos;
    if (n <= 0xff) {
      buf[p] = 0xc4;
      buf[p + 1] = n;
      out.pos = p + 2;
    } else if (n <= 0xffff) {
      buf[p] = 0xc5;
      buf[p + 1] = n >> 8;
      buf[p + 2] = n & 0xff;
      out.pos = p + 3;
    } else if (n <= 0xffffffff) {
      buf[p] = 0xc6;
      buf.writeUInt32BE(n, p + 1);
      out.pos = p + 5;
    } else {
      throw new ProtocolError(`cannot encode bytes of ${n} bytes in msgpack`);
    }
    out.bytes(b);
  }

  /** fixstr/str8/str16/str32 of the UTF-8; a lone surrogate is an error, as Python's strict encoding. */
  private str(s: string): void {
    const out = this.out;
    const n = s.length;
    if (n <= 31) {
      out.ensure(1 + n);
      const buf = out.buf;
      const start = out.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + 1 + i] = c;
      }
      if (i === n) {
        buf[start] = 0xa0 | n;
        out.pos = start + 1 + n;
        return;
      }
    }
    if (!s.isWellFormed()) {
      throw new ProtocolError(
        "cannot encode a str with a lone surrogate in msgpack (Python: 'surrogates not allowed')",
      );
    }
    const len = Buffer.byteLength(s, 'utf8');
    out.ensure(5 + len);
    const buf = out.buf;
    let p = out.pos;
    if (len <= 31) {
      buf[p++] = 0xa0 | len;
    } else if (len <= 0xff) {
      buf[p++] = 0xd9;
      buf[p++] = len;
    } else if (len <= 0xffff) {
      buf[p++] = 0xda;
      buf[p++] = len >> 8;
      buf[p++] = len & 0xff;
    } else {
      buf[p++] = 0xdb;
      buf.writeUInt32BE(len, p);
      p += 4;
    }
    (buf as Utf8Buffer).utf8Write(s, p, len);
    out.pos = p + len;
  }

  /** The smallest int form (a safe integer). */
  private int(v: number): void {
    const out = this.out;
    out.ensure(9);
    const buf = out.buf;
    const p = out.pos;
    if (v >= 0) {
      if (v <= 0x7f) {
        buf[p] = v;
        out.pos = p + 1;
      } else if (v <= 0xff) {
        buf[p] = 0xcc;
        buf[p + 1] = v;
        out.pos = p + 2;
      } else if (v <= 0xffff) {
        buf[p] = 0xcd;
        buf[p + 1] = v >> 8;
        buf[p + 2] = v & 0xff;
        out.pos = p + 3;
      } else if (v <= 0xffffffff) {
        buf[p] = 0xce;
        buf.writeUInt32BE(v, p + 1);
        out.pos = p + 5;
      } else {
        // uint64: id(txn) values
        buf[p] = 0xcf;
        buf.writeUInt32BE(Math.floor(v / 4294967296), p + 1);
        buf.writeUInt32BE(v >>> 0, p + 5);
        out.pos = p + 9;
      }
    } else if (v >= -32) {
      buf[p] = v & 0xff;
      out.pos = p + 1;
    } else if (v >= -0x80) {
      buf[p] = 0xd0;
      buf[p + 1] = v & 0xff;
      out.pos = p + 2;
    } else if (v >= -0x8000) {
      buf[p] = 0xd1;
      buf.writeInt16BE(v, p + 1);
      out.pos = p + 3;
    } else if (v >= -0x80000000) {
      buf[p] = 0xd2;
      buf.writeInt32BE(v, p + 1);
      out.pos = p + 5;
    } else {
      buf[p] = 0xd3;
      buf.writeInt32BE(Math.floor(v / 4294967296), p + 1);
      buf.writeUInt32BE(v >>> 0, p + 5);
      out.pos = p + 9;
    }
  }

  private bigint(v: bigint): void {
    if (v >= -9007199254740991n && v <= 9007199254740991n) {
      this.int(Number(v));
      return;
    }
    if (v > UINT64_MAX || v < INT64_MIN) {
      throw new ProtocolError(`cannot encode the int ${v} in msgpack (Python: 'Integer value out of range')`);
    }
    const out = this.out;
    out.ensure(9);
    if (v > 0n) {
      out.buf[out.pos] = 0xcf;
      out.buf.writeBigUInt64BE(v, out.pos + 1);
    } else {
      out.buf[out.pos] = 0xd3;
      out.buf.writeBigInt64BE(v, out.pos + 1);
    }
    out.pos += 9;
  }

  /** Always float64: Python floats are doubles and ZEO never asks for use_single_float. */
  private float(v: number): void {
    const out = this.out;
    out.ensure(9);
    out.buf[out.pos] = 0xcb;
    out.buf.writeDoubleBE(v, out.pos + 1);
    out.pos += 9;
  }
}

/** The `_recon(cls, state)` object that stands for an exception inside a pickled value. */
function isReconstructedException(o: PyObject): boolean {
  return (
    o.kind === 'reduce' &&
    o.callable === RECON &&
    o.args.length === 2 &&
    o.args[0] instanceof Global &&
    o.args[1] instanceof Map
  );
}

/**
 * unpackb(data, raw=False, use_list=False): arrays are Tuples, bin is bytes (a view of `data`, not a copy),
 * str must be valid UTF-8, map keys must be str or bin (strict_map_key), float32 and float64 are PyFloat, ints
 * are numbers when safe and bigints beyond; ext types, the unused byte 0xc1, truncation and trailing bytes
 * are ProtocolErrors.
 */
export function unpack(data: Uint8Array): PickleValue {
  const r = new Reader(data);
  const v = r.value(0);
  if (r.pos !== r.end) {
    throw new ProtocolError(
      `msgpack: ${r.end - r.pos} bytes of extra data after the value (at byte ${r.pos})`,
    );
  }
  return v;
}

/** Containers nested past msgpack's unpacker stack. */
export class NestedTooDeeply extends ProtocolError {
  override name = 'NestedTooDeeply';
}

/**
 * The msgid, flag and name of a message (a 4-array) whose arguments did not decode, so that its call can be
 * answered; null when the head does not read either.
 */
export function unpackMessageHead(
  data: Uint8Array,
): { msgid: PickleValue; flag: PickleValue; name: string } | null {
  if (data.length === 0 || data[0] !== 0x94) return null;
  const r = new Reader(data);
  r.pos = 1;
  try {
    const msgid = r.value(1);
    const flag = r.value(1);
    const name = r.value(1);
    return typeof name === 'string' ? { msgid, flag, name } : null;
  } catch {
    return null;
  }
}

class Reader {
  readonly buf: Utf8Buffer;
  pos = 0;
  readonly end: number;

  constructor(data: Uint8Array) {
    this.buf = (
      Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    ) as Utf8Buffer;
    this.end = data.length;
  }

  private fail(message: string, at: number): never {
    throw new ProtocolError(`msgpack: ${message} (at byte ${at})`);
  }

  /** Checks that n bytes follow pos. */
  private need(n: number, at: number): void {
    if (n > this.end - this.pos) this.fail('truncated data', at);
  }

  value(depth: number): PickleValue {
    const at = this.pos;
    if (at >= this.end) this.fail('truncated data', at);
    const buf = this.buf;
    const c = buf[this.pos++];
    if (c <= 0x7f) return c;
    if (c >= 0xe0) return c - 0x100;
    if (c >= 0xa0 && c <= 0xbf) return this.str(c & 0x1f, at);
    if (c >= 0x90 && c <= 0x9f) return this.array(c & 0x0f, depth, at);
    if (c >= 0x80 && c <= 0x8f) return this.map(c & 0x0f, depth, at);
    let n: number;
    switch (c) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        this.need(1, at);
        n = buf[this.pos++];
        return this.bin(n, at);
      case 0xc5:
        this.need(2, at);
        n = buf.readUInt16BE(this.pos);
        this.pos += 2;
        return this.bin(n, at);
      case 0xc6:
        this.need(4, at);
        n = buf.readUInt32BE(this.pos);
        this.pos += 4;
        return this.bin(n, at);
      case 0xca:
        this.need(4, at);
        this.pos += 4;
        return new PyFloat(buf.readFloatBE(this.pos - 4));
      case 0xcb:
        this.need(8, at);
        this.pos += 8;
        return new PyFloat(buf.readDoubleBE(this.pos - 8));
      case 0xcc:
        this.need(1, at);
        return buf[this.pos++];
      case 0xcd:
        this.need(2, at);
        this.pos += 2;
        return buf.readUInt16BE(this.pos - 2);
      case 0xce:
        this.need(4, at);
        this.pos += 4;
        return buf.readUInt32BE(this.pos - 4);
      case 0xcf: {
        this.need(8, at);
        const hi = buf.readUInt32BE(this.pos);
        const lo = buf.readUInt32BE(this.pos + 4);
        this.pos += 8;
        return hi < 0x200000 ? hi * 4294967296 + lo : buf.readBigUInt64BE(this.pos - 8);
      }
      case 0xd0:
        this.need(1, at);
        this.pos += 1;
        return buf.readInt8(this.pos - 1);
      case 0xd1:
        this.need(2, at);
        this.pos += 2;
        return buf.readInt16BE(this.pos - 2);
      case 0xd2:
        this.need(4, at);
        this.pos += 4;
        return buf.readInt32BE(this.pos - 4);
      case 0xd3: {
        this.need(8, at);
        const hi = buf.readInt32BE(this.pos);
        const lo = buf.readUInt32BE(this.pos + 4);
        this.pos += 8;
        return hi >= -0x200000 && hi < 0x200000 ? hi * 4294967296 + lo : buf.readBigInt64BE(this.pos - 8);
      }
      case 0xd9:
        this.need(1, at);
        n = buf[this.pos++];
        return this.str(n, at);
      case 0xda:
        this.need(2, at);
        n = buf.readUInt16BE(this.pos);
        this.pos += 2;
        return this.str(n, at);
      case 0xdb:
        this.need(4, at);
        n = buf.readUInt32BE(this.pos);
        this.pos += 4;
        return this.str(n, at);
      case 0xdc:
        this.need(2, at);
        n = buf.readUInt16BE(this.pos);
        this.pos += 2;
        return this.array(n, depth, at);
      case 0xdd:
        this.need(4, at);
        n = buf.readUInt32BE(this.pos);
        this.pos += 4;
        return this.array(n, depth, at);
      case 0xde:
        this.need(2, at);
        n = buf.readUInt16BE(this.pos);
        this.pos += 2;
        return this.map(n, depth, at);
      case 0xdf:
        this.need(4, at);
        n = buf.readUInt32BE(this.pos);
        this.pos += 4;
        return this.map(n, depth, at);
      case 0xc7:
      case 0xc8:
      case 0xc9:
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        return this.fail(`ext type 0x${c.toString(16)} (ZEO uses none)`, at);
      default:
        return this.fail('invalid byte 0xc1', at);
    }
  }

  private bin(n: number, at: number): Uint8Array {
    this.need(n, at);
    const buf = this.buf;
    const v = new Uint8Array(buf.buffer, buf.byteOffset + this.pos, n);
    this.pos += n;
    return v;
  }

  private str(n: number, at: number): string {
    this.need(n, at);
    const buf = this.buf;
    const start = this.pos;
    const end = start + n;
    this.pos = end;
    if (n <= 16) {
      let s = '';
      for (let i = start; i < end; i++) {
        const c = buf[i];
        if (c >= 0x80) return this.utf8(start, end, at);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return this.utf8(start, end, at);
  }

  private utf8(start: number, end: number, at: number): string {
    const buf = this.buf;
    if (!isUtf8(buf.subarray(start, end))) this.fail('invalid UTF-8 in a str', at);
    return buf.utf8Slice(start, end);
  }

  private array(n: number, depth: number, at: number): Tuple {
    if (depth >= UNPACK_MAX_DEPTH)
      throw new NestedTooDeeply(`msgpack: containers nested too deeply (at byte ${at})`);
    // every item takes at least a byte: a huge count in a short message is truncation, not an allocation
    this.need(n, at);
    const t = new Tuple();
    for (let i = 0; i < n; i++) t[i] = this.value(depth + 1);
    return t;
  }

  private map(n: number, depth: number, at: number): Map<PickleValue, PickleValue> {
    if (depth >= UNPACK_MAX_DEPTH)
      throw new NestedTooDeeply(`msgpack: containers nested too deeply (at byte ${at})`);
    this.need(2 * n, at);
    const m = new Map<PickleValue, PickleValue>();
    for (let i = 0; i < n; i++) {
      const kat = this.pos;
      const k = this.value(depth + 1);
      if (typeof k !== 'string' && !(k instanceof Uint8Array)) {
        this.fail(`a map key must be str or bin, not ${describe(k)} (strict_map_key)`, kat);
      }
      m.set(k, this.value(depth + 1));
    }
    return m;
  }
}
