// The pickle writer, protocols 2 and 3: CPython's C pickler (Modules/_pickle.c, what pickle.dumps runs) opcode
// for opcode, so that our bytes are Python's bytes wherever Python's are determined by the value.
//
// Memo. CPython memoizes by object identity: every str, bytes, tuple (of one item or more), list, dict and
// reduced object gets a BINPUT, and a second sight of the same object a BINGET. JavaScript containers, bytes,
// and PyObjects have identity and are memoized by it; Globals are interned, so they are memoized by module and
// name (the name of the value, not the one protocol 2's fix_imports writes: two Python 3 classes may share a
// Python 2 name). Strings have no identity in JavaScript: each is written afresh (with its BINPUT, as Python does),
// except the ones CPython shares after unpickling (the empty string, one-character strings below U+0100, the
// empty bytes, and at protocol 2 one-byte bytes), which are memoized by value, so that Python loading and
// re-dumping our pickle gives our bytes back.
//
// Values the writer makes up (the argument tuple of a set's reduce, the 'latin1' of protocol 2 bytes, the
// functools.partial of NEWOBJ_EX below protocol 4) are fresh objects as in CPython: BINPUT, never a BINGET from
// elsewhere. The persistentId hook sees the values of the caller's graph only, not these.
import { PickleError } from './errors.js';
import { REVERSE_IMPORT_MAPPING, REVERSE_NAME_MAPPING } from './fix-imports.js';
import {
  APPEND,
  APPENDS,
  BINBYTES,
  BINFLOAT,
  BINGET,
  BININT,
  BININT1,
  BININT2,
  BINPERSID,
  BINPUT,
  BINUNICODE,
  BUILD,
  EMPTY_DICT,
  EMPTY_LIST,
  EMPTY_TUPLE,
  GLOBAL,
  LONG1,
  LONG4,
  LONG_BINGET,
  LONG_BINPUT,
  MARK,
  NEWFALSE,
  NEWOBJ,
  NEWTRUE,
  NONE,
  OBJ,
  POP,
  POP_MARK,
  PROTO,
  REDUCE,
  SETITEM,
  SETITEMS,
  SHORT_BINBYTES,
  STOP,
  TUPLE,
  TUPLE1,
} from './opcodes.js';
import {
  ByteArray,
  FrozenSet,
  Global,
  PersistentRef,
  PickleBuffer,
  PyObject,
  Tuple,
  type PickleValue,
} from './values.js';
import { PyFloat } from './pytext.js';

export interface DumpOptions {
  /**
   * Memoize like CPython's pickle.dumps (BINPUT after each memoizable object, BINGET for repeats); the default.
   * false is ZEO's "fast" mode (zodbpickle's Pickler with fast=True): no BINPUT or BINGET at all, and a cyclic
   * value is a PickleError.
   */
  memo?: boolean;
  /**
   * Like Pickler.persistent_id: a pid other than undefined (or null, Python's None) is written instead of the
   * value (the pid, then BINPERSID). It sees every value of the graph being pickled, the pid's own parts
   * included but not the pid itself, as in CPython.
   */
  persistentId?: (value: PickleValue) => PickleValue | undefined;
}

/** Items per MARK ... APPENDS / SETITEMS batch (pickle._BATCHSIZE). */
const BATCHSIZE = 1000;
/**
 * Containers nested deeper than this are refused with a PickleError. CPython's own pickler gives up near 500
 * (RecursionError); 1000 leaves room on a default Node stack for every kind of container, even unoptimized (a
 * stack overflow would be reported as a PickleError too, but at a depth that depends on the caller's stack).
 */
const MAX_DEPTH = 1000;
/** In fast mode, containers nested deeper than this are tracked to report cycles (_pickle.c's FAST_NESTING_LIMIT). */
const FAST_NESTING_LIMIT = 50;
const INITIAL_SIZE = 8192;
/** The output buffer is kept between calls unless a pickle grew it past this. */
const KEEP_SIZE = 16 << 20;

const G_SET = Global.of('builtins', 'set');
const G_FROZENSET = Global.of('builtins', 'frozenset');
const G_BYTEARRAY = Global.of('builtins', 'bytearray');
const G_BYTES = Global.of('builtins', 'bytes');
const G_CODECS_ENCODE = Global.of('_codecs', 'encode');
const G_PARTIAL = Global.of('functools', 'partial');
const G_GETATTR = Global.of('builtins', 'getattr');

const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Memo key of the one 'latin1' string CPython uses for every protocol 2 bytes object. */
const LATIN1_KEY = {};
/** BINUNICODE 'latin1' (the argument CPython gives _codecs.encode for protocol 2 bytes). */
const LATIN1_BINUNICODE = Buffer.from('X\x06\x00\x00\x00latin1', 'latin1');

/** GLOBAL module\nname\n for each global written (protocol 2: renamed by fix_imports), null for a dotted name. */
const globalLines3 = new Map<Global, Buffer | null>();
const globalLines2 = new Map<Global, Buffer | null>();

function checkGlobalPart(g: Global, part: string, proto: number): void {
  if (part.length === 0 || part.includes('\n')) {
    throw new PickleError(`cannot pickle global ${JSON.stringify(g.module)}.${JSON.stringify(g.name)}`, -1);
  }
  // eslint-disable-next-line no-control-regex
  if (proto < 3 && !/^[\x00-\x7f]*$/.test(part)) {
    throw new PickleError(
      `can't pickle global identifier '${g.module}.${g.name}' using pickle protocol ${proto}`,
      -1,
    );
  }
  if (!part.isWellFormed()) {
    throw new PickleError(`cannot pickle global ${g.module}.${g.name}: lone surrogate in its name`, -1);
  }
}

function globalLine(g: Global, proto: number): Buffer | null {
  const cache = proto < 3 ? globalLines2 : globalLines3;
  let line = cache.get(g);
  if (line !== undefined) return line;
  let module = g.module;
  let name = g.name;
  checkGlobalPart(g, module, proto);
  checkGlobalPart(g, name, proto);
  if (name.includes('.')) {
    line = null; // written as getattr(parent, last)
  } else {
    if (proto < 3) {
      // pickle's fix_imports: the Python 2 name of a Python 3 global
      const renamed = REVERSE_NAME_MAPPING.get(module + '\n' + name);
      if (renamed) [module, name] = renamed;
      else module = REVERSE_IMPORT_MAPPING.get(module) ?? module;
    }
    line = Buffer.concat([Buffer.of(GLOBAL), Buffer.from(`${module}\n${name}\n`, 'utf8')]);
  }
  cache.set(g, line);
  return line;
}

// Node's Buffer has this fast, unchecked encoder on its prototype (Buffer#write calls it after checking its
// arguments); it is not in @types/node.
type WriteBuffer = Buffer & { utf8Write(s: string, offset: number, length: number): number };

/** UTF-8 with Python's 'surrogatepass': a lone surrogate is encoded as its 3-byte sequence. Returns the end. */
function encodeUtf8Pass(s: string, i: number, buf: Buffer, p: number): number {
  const n = s.length;
  for (; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[p++] = c;
    } else if (c < 0x800) {
      buf[p++] = 0xc0 | (c >> 6);
      buf[p++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          buf[p++] = 0xf0 | (c >> 18);
          buf[p++] = 0x80 | ((c >> 12) & 0x3f);
          buf[p++] = 0x80 | ((c >> 6) & 0x3f);
          buf[p++] = 0x80 | (c & 0x3f);
          continue;
        }
      }
      buf[p++] = 0xe0 | (c >> 12);
      buf[p++] = 0x80 | ((c >> 6) & 0x3f);
      buf[p++] = 0x80 | (c & 0x3f);
    }
  }
  return p;
}

/** pickle.encode_long: the minimal little-endian two's complement bytes of a nonzero int. */
function encodeBigLong(v: bigint): Buffer {
  const neg = v < 0n;
  const hex = (neg ? -v : v).toString(16);
  const nbits = (hex.length - 1) * 4 + (32 - Math.clz32(parseInt(hex[0], 16)));
  const nbytes = (nbits >> 3) + 1;
  const u = neg ? (1n << BigInt(nbytes * 8)) + v : v;
  const uhex = u.toString(16).padStart(nbytes * 2, '0');
  let out = Buffer.from(uhex, 'hex').reverse();
  if (neg && nbytes > 1 && out[nbytes - 1] === 0xff && (out[nbytes - 2] & 0x80) !== 0) {
    out = out.subarray(0, nbytes - 1);
  }
  return out;
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'function') return `a function (${v.name || 'anonymous'})`;
  if (typeof v === 'symbol') return 'a symbol';
  if (typeof v === 'object' && v !== null) {
    const proto = Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null;
    const name = proto?.constructor?.name;
    return proto === null || name === 'Object' || !name ? 'a plain object' : `a ${name}`;
  }
  return typeof v;
}

/** The Python type of a container, for messages. */
function kindOf(o: object): string {
  if (o instanceof Tuple) return 'tuple';
  if (Array.isArray(o)) return 'list';
  if (o instanceof Map) return 'dict';
  if (o instanceof FrozenSet) return 'frozenset';
  if (o instanceof Set) return 'set';
  if (o instanceof PyObject)
    return o.callable instanceof Global ? `${o.callable.toString()} object` : 'object';
  return describe(o);
}

function unsupported(v: unknown): PickleError {
  return new PickleError(`cannot pickle ${describe(v)}: not a pickle value`, -1);
}

/** `buf` with its first `used` bytes copied into one at least twice as large, with room for `need` more. */
export function grownBuffer(buf: Buffer, used: number, need: number): Buffer {
  let size = buf.length * 2;
  while (size < used + need) size *= 2;
  const bigger = Buffer.allocUnsafe(size);
  buf.copy(bigger, 0, 0, used);
  return bigger;
}

/** A pickle writer for protocol 2 or 3; reuse it: it keeps its output buffer between calls. */
export class Pickler {
  private readonly proto: 2 | 3;
  private readonly memoOn: boolean;
  private readonly pidHook: ((value: PickleValue) => PickleValue | undefined) | null;
  private buf: Buffer = Buffer.allocUnsafe(INITIAL_SIZE);
  private pos = 0;
  private readonly memo = new Map<object, number>();
  private memoLen = 0;
  /** BINPUT index of '' (slot 256) and of the one-character strings below U+0100, or -1. */
  private readonly charMemo = new Int32Array(257).fill(-1);
  /** BINPUT index of b'' (slot 256) and, at protocol 2, of the one-byte bytes, or -1. */
  private readonly byteMemo = new Int32Array(257).fill(-1);
  private charMemoUsed = false;
  private byteMemoUsed = false;
  private depth = 0;
  /** Fast mode: the containers being written below FAST_NESTING_LIMIT, to report cycles. */
  private active: Set<object> | null = null;
  /** The next save is of a value the writer made up: do not show it to the persistentId hook. */
  private internal = false;
  private busy = false;

  constructor(protocol: 2 | 3 = 3, options: DumpOptions = {}) {
    if (protocol !== 2 && protocol !== 3) {
      throw new PickleError(`pickle protocol ${String(protocol)} cannot be written (2 and 3 can)`, -1);
    }
    this.proto = protocol;
    this.memoOn = options.memo ?? true;
    this.pidHook = options.persistentId ?? null;
  }

  /** The pickle of `value`: a fresh Buffer. */
  dumps(value: PickleValue): Buffer {
    return this.run(value, null);
  }

  /**
   * The pickles of `values`, back to back in one fresh Buffer, sharing one memo: Python's Pickler.dump called
   * once per value without clear_memo in between. ZODB's ObjectWriter writes a record so (the class metadata,
   * then the state, which may BINGET what the metadata put).
   */
  dumpsMany(values: readonly PickleValue[]): Buffer {
    return this.run(undefined, values);
  }

  private run(value: PickleValue | undefined, values: readonly PickleValue[] | null): Buffer {
    if (this.busy) throw new PickleError('Pickler.dumps called while this pickler is already pickling', -1);
    this.busy = true;
    try {
      this.pos = 0;
      this.depth = 0;
      this.internal = false;
      if (values === null) {
        this.writeOne(value as PickleValue);
      } else {
        for (let i = 0; i < values.length; i++) this.writeOne(values[i]);
      }
      const out = Buffer.allocUnsafe(this.pos);
      this.buf.copy(out, 0, 0, this.pos);
      return out;
    } catch (e) {
      if (e instanceof RangeError && /call stack/i.test(e.message)) {
        throw new PickleError('cannot pickle: value nested too deeply', -1);
      }
      throw e;
    } finally {
      if (this.memoLen !== 0) {
        this.memo.clear();
        this.memoLen = 0;
      }
      if (this.charMemoUsed) {
        this.charMemo.fill(-1);
        this.charMemoUsed = false;
      }
      if (this.byteMemoUsed) {
        this.byteMemo.fill(-1);
        this.byteMemoUsed = false;
      }
      this.active = null;
      if (this.buf.length > KEEP_SIZE) this.buf = Buffer.allocUnsafe(INITIAL_SIZE);
      this.busy = false;
    }
  }

  private writeOne(value: PickleValue): void {
    this.op2(PROTO, this.proto);
    this.save(value);
    this.op(STOP);
  }

  // --- output ---

  private ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  private grow(n: number): void {
    this.buf = grownBuffer(this.buf, this.pos, n);
  }

  private op(code: number): void {
    if (this.pos >= this.buf.length) this.grow(1);
    this.buf[this.pos++] = code;
  }

  private op2(a: number, b: number): void {
    this.ensure(2);
    const buf = this.buf;
    buf[this.pos] = a;
    buf[this.pos + 1] = b;
    this.pos += 2;
  }

  private raw(bytes: Uint8Array): void {
    const n = bytes.length;
    this.ensure(n);
    if (n <= 32) {
      // a loop beats TypedArray#set's call for a few bytes (oids, class names)
      const buf = this.buf;
      const p = this.pos;
      for (let i = 0; i < n; i++) buf[p + i] = bytes[i];
    } else {
      this.buf.set(bytes, this.pos);
    }
    this.pos += n;
  }

  /** Writes BINPUT for the next memo index and returns it (memo on only). */
  private put(): number {
    const idx = this.memoLen++;
    if (idx < 256) {
      if (this.pos + 2 > this.buf.length) this.grow(2);
      const buf = this.buf;
      buf[this.pos] = BINPUT;
      buf[this.pos + 1] = idx;
      this.pos += 2;
    } else {
      this.ensure(5);
      this.buf[this.pos] = LONG_BINPUT;
      this.buf.writeUInt32LE(idx, this.pos + 1);
      this.pos += 5;
    }
    return idx;
  }

  /** Memoizes a value only the writer holds (a fresh object in CPython): a BINPUT never read back. */
  private putFresh(): void {
    if (this.memoOn) this.put();
  }

  private memoize(key: object): void {
    if (this.memoOn) this.memo.set(key, this.put());
  }

  private get(idx: number): void {
    if (idx < 256) {
      this.op2(BINGET, idx);
    } else {
      this.ensure(5);
      this.buf[this.pos] = LONG_BINGET;
      this.buf.writeUInt32LE(idx, this.pos + 1);
      this.pos += 5;
    }
  }

  /** Writes BINGET when `key` is memoized; true when it did. */
  private fromMemo(key: object): boolean {
    if (!this.memoOn) return false;
    const idx = this.memo.get(key);
    if (idx === undefined) return false;
    this.get(idx);
    return true;
  }

  private enter(o: object): void {
    if (++this.depth > FAST_NESTING_LIMIT) {
      if (this.depth > MAX_DEPTH) {
        throw new PickleError(`cannot pickle: value nested more than ${MAX_DEPTH} levels deep`, -1);
      }
      if (!this.memoOn) {
        const active = (this.active ??= new Set());
        if (active.has(o)) {
          throw new PickleError(
            `fast mode: cannot pickle a cyclic value (a ${kindOf(o)} that contains itself)`,
            -1,
          );
        }
        active.add(o);
      }
    }
  }

  private leave(o: object): void {
    if (this.depth-- > FAST_NESTING_LIMIT && !this.memoOn) this.active!.delete(o);
  }

  // --- values ---

  /** Saves a value the writer made up (no persistentId call for it; its parts from the caller get one). */
  private saveInternal(v: PickleValue): void {
    this.internal = true;
    this.save(v);
  }

  private save(v: PickleValue): void {
    if (this.pidHook !== null) {
      if (this.internal) {
        this.internal = false;
      } else {
        const pid = this.pidHook(v);
        if (pid !== undefined && pid !== null) {
          this.savePers(pid);
          return;
        }
      }
    }
    switch (typeof v) {
      case 'string':
        this.saveStr(v);
        return;
      case 'number':
        if (Number.isInteger(v)) this.saveInt(v);
        else this.saveFloat(v);
        return;
      case 'boolean':
        this.op(v ? NEWTRUE : NEWFALSE);
        return;
      case 'bigint':
        this.saveBigInt(v);
        return;
      case 'object':
        break;
      default:
        throw unsupported(v);
    }
    if (v === null) {
      this.op(NONE);
    } else if (Array.isArray(v)) {
      if (v instanceof Tuple) this.saveTuple(v);
      else this.saveList(v);
    } else if (v instanceof Uint8Array) {
      if (v instanceof ByteArray) this.saveByteArray(v, v);
      else this.saveBytes(v);
    } else if (v instanceof Map) {
      this.saveDict(v);
    } else if (v instanceof PyFloat) {
      this.saveFloat(v.value);
    } else if (v instanceof Global) {
      this.saveGlobal(v);
    } else if (v instanceof PyObject) {
      this.savePyObject(v);
    } else if (v instanceof PersistentRef) {
      this.savePers(v.id);
    } else if (v instanceof Set) {
      this.saveSet(v);
    } else if (v instanceof PickleBuffer) {
      this.savePickleBuffer(v);
    } else {
      throw unsupported(v);
    }
  }

  private savePers(pid: PickleValue): void {
    this.saveInternal(pid);
    this.op(BINPERSID);
  }

  private saveInt(v: number): void {
    this.ensure(132);
    const buf = this.buf;
    let p = this.pos;
    if (v >= 0 && v <= 0xff) {
      buf[p] = BININT1;
      buf[p + 1] = v;
      this.pos = p + 2;
    } else if (v >= 0 && v <= 0xffff) {
      buf[p] = BININT2;
      buf[p + 1] = v & 0xff;
      buf[p + 2] = v >> 8;
      this.pos = p + 3;
    } else if (v >= -0x80000000 && v <= 0x7fffffff) {
      buf[p] = BININT;
      buf[p + 1] = v & 0xff;
      buf[p + 2] = (v >> 8) & 0xff;
      buf[p + 3] = (v >> 16) & 0xff;
      buf[p + 4] = (v >> 24) & 0xff;
      this.pos = p + 5;
    } else {
      // LONG1: minimal two's complement, little-endian
      buf[p] = LONG1;
      const start = p + 2;
      if (v >= -9007199254740992 && v <= 9007199254740992) {
        // 64-bit two's complement from two 32-bit halves, then drop the redundant sign bytes
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
        let n = 8;
        const fill = hi < 0 ? 0xff : 0;
        while (n > 1 && buf[start + n - 1] === fill && (buf[start + n - 2] & 0x80) === (fill & 0x80)) n--;
        p = start + n;
      } else {
        // past 2**53: exact for every integral double
        p = start;
        let n = v;
        for (;;) {
          const b = ((n % 256) + 256) % 256;
          buf[p++] = b;
          n = (n - b) / 256;
          if ((n === 0 && b < 0x80) || (n === -1 && b >= 0x80)) break;
        }
      }
      buf[start - 1] = p - start;
      this.pos = p;
    }
  }

  private saveBigInt(v: bigint): void {
    if (v >= -9007199254740991n && v <= 9007199254740991n) {
      this.saveInt(Number(v));
      return;
    }
    const bytes = encodeBigLong(v);
    const n = bytes.length;
    if (n < 256) {
      this.op2(LONG1, n);
    } else {
      this.ensure(5);
      this.buf[this.pos] = LONG4;
      this.buf.writeInt32LE(n, this.pos + 1);
      this.pos += 5;
    }
    this.raw(bytes);
  }

  private saveFloat(v: number): void {
    this.ensure(9);
    const buf = this.buf;
    const p = this.pos;
    F64[0] = v;
    buf[p] = BINFLOAT;
    const b = F64_BYTES;
    if (LITTLE_ENDIAN) {
      buf[p + 1] = b[7];
      buf[p + 2] = b[6];
      buf[p + 3] = b[5];
      buf[p + 4] = b[4];
      buf[p + 5] = b[3];
      buf[p + 6] = b[2];
      buf[p + 7] = b[1];
      buf[p + 8] = b[0];
    } else {
      for (let i = 0; i < 8; i++) buf[p + 1 + i] = b[i];
    }
    this.pos = p + 9;
  }

  private saveStr(s: string): void {
    if (this.memoOn) {
      const n = s.length;
      if (n <= 1) {
        const slot = n === 0 ? 256 : s.charCodeAt(0);
        if (slot <= 0xff || n === 0) {
          const idx = this.charMemo[slot];
          if (idx >= 0) {
            this.get(idx);
          } else {
            this.writeUnicode(s);
            this.charMemo[slot] = this.put();
            this.charMemoUsed = true;
          }
          return;
        }
      }
      this.writeUnicode(s);
      this.put();
    } else {
      this.writeUnicode(s);
    }
  }

  /** BINUNICODE: UTF-8 with 'surrogatepass'. */
  private writeUnicode(s: string): void {
    const n = s.length;
    if (n < 48) {
      this.ensure(5 + 3 * n);
      const buf = this.buf;
      const start = this.pos;
      let p = start + 5;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i < n) p = encodeUtf8Pass(s, i, buf, p);
      const len = p - start - 5;
      buf[start] = BINUNICODE;
      buf[start + 1] = len;
      buf[start + 2] = 0;
      buf[start + 3] = 0;
      buf[start + 4] = 0;
      this.pos = p;
      return;
    }
    const max = n < 1 << 20 ? 3 * n : Buffer.byteLength(s, 'utf8');
    this.ensure(5 + max);
    const buf = this.buf;
    const start = this.pos;
    const len = s.isWellFormed()
      ? (buf as WriteBuffer).utf8Write(s, start + 5, max)
      : encodeUtf8Pass(s, 0, buf, start + 5) - start - 5;
    buf[start] = BINUNICODE;
    buf.writeUInt32LE(len, start + 1);
    this.pos = start + 5 + len;
  }

  private saveBytes(b: Uint8Array): void {
    const n = b.length;
    if (this.memoOn) {
      // CPython shares b'' (and at protocol 2, where bytes are made by codecs.encode, the one-byte bytes)
      if (n === 0 || (n === 1 && this.proto < 3)) {
        const slot = n === 0 ? 256 : b[0];
        const idx = this.byteMemo[slot];
        if (idx >= 0) {
          this.get(idx);
        } else {
          this.writeBytes(b);
          this.byteMemo[slot] = this.put();
          this.byteMemoUsed = true;
        }
        return;
      }
      if (this.fromMemo(b)) return;
      this.writeBytes(b);
      this.memo.set(b, this.put());
    } else {
      this.writeBytes(b);
    }
  }

  /** bytes without its BINPUT: protocol 3 SHORT_BINBYTES/BINBYTES, protocol 2 CPython's reduce. */
  private writeBytes(b: Uint8Array): void {
    const n = b.length;
    if (this.proto >= 3) {
      if (n <= 0xff) {
        this.op2(SHORT_BINBYTES, n);
      } else if (n <= 0xffffffff) {
        this.ensure(5);
        this.buf[this.pos] = BINBYTES;
        this.buf.writeUInt32LE(n, this.pos + 1);
        this.pos += 5;
      } else {
        throw new PickleError(`cannot pickle bytes of ${n} bytes at protocol ${this.proto}`, -1);
      }
      this.raw(b);
    } else if (n === 0) {
      // bytes() -> reduce(bytes, ())
      this.saveInternal(G_BYTES);
      this.op2(EMPTY_TUPLE, REDUCE);
    } else {
      // _codecs.encode(str(b, 'latin1'), 'latin1')
      this.saveInternal(G_CODECS_ENCODE);
      this.saveStr(Buffer.from(b.buffer, b.byteOffset, n).toString('latin1'));
      if (!this.fromMemo(LATIN1_KEY)) {
        this.raw(LATIN1_BINUNICODE);
        this.memoize(LATIN1_KEY);
      }
      this.op(TUPLE1 + 1);
      this.putFresh();
      this.op(REDUCE);
    }
  }

  /** bytearray: reduce(bytearray, ()) or reduce(bytearray, (bytes(b),)); `key` is its memo identity. */
  private saveByteArray(b: Uint8Array, key: object | null): void {
    if (key !== null && this.fromMemo(key)) return;
    this.saveInternal(G_BYTEARRAY);
    if (b.length === 0) {
      this.op(EMPTY_TUPLE);
    } else {
      this.writeBytes(b); // a fresh bytes object, not shared in CPython
      this.putFresh();
      this.op(TUPLE1);
      this.putFresh();
    }
    this.op(REDUCE);
    if (key !== null) this.memoize(key);
    else this.putFresh();
  }

  /** PickleBuffer below protocol 5: in-band, as the bytes (read-only) or bytearray (writable) of its data. */
  private savePickleBuffer(pb: PickleBuffer): void {
    const data = pb.data;
    if (!pb.readonly) {
      this.saveByteArray(data, null);
    } else if (data.length === 0 || (data.length === 1 && this.proto < 3)) {
      this.saveBytes(data); // memoized by value
    } else {
      this.writeBytes(data);
      this.putFresh();
    }
  }

  private saveTuple(t: ArrayLike<PickleValue> & object): void {
    const n = t.length;
    if (n === 0) {
      this.op(EMPTY_TUPLE);
      return;
    }
    if (this.fromMemo(t)) return;
    this.enter(t);
    if (n <= 3) {
      for (let i = 0; i < n; i++) this.save(t[i]);
      if (this.memoOn) {
        const idx = this.memo.get(t);
        if (idx !== undefined) {
          // the tuple is recursive: it was written while its items were; drop the copies, get it
          for (let i = 0; i < n; i++) this.op(POP);
          this.get(idx);
          this.leave(t);
          return;
        }
      }
      this.op(TUPLE1 + n - 1);
    } else {
      this.op(MARK);
      for (let i = 0; i < n; i++) this.save(t[i]);
      if (this.memoOn) {
        const idx = this.memo.get(t);
        if (idx !== undefined) {
          this.op(POP_MARK);
          this.get(idx);
          this.leave(t);
          return;
        }
      }
      this.op(TUPLE);
    }
    this.memoize(t);
    this.leave(t);
  }

  /** A tuple the writer made up (never in the memo, memoized fresh): `first` (when given) then `items`. */
  private saveFreshTuple(items: ArrayLike<PickleValue>, first?: PickleValue): void {
    const extra = first === undefined ? 0 : 1;
    const n = items.length + extra;
    if (n === 0) {
      this.op(EMPTY_TUPLE);
      return;
    }
    if (n > 3) this.op(MARK);
    if (extra) this.save(first!);
    for (let i = 0; i < items.length; i++) this.save(items[i]);
    this.op(n > 3 ? TUPLE : TUPLE1 + n - 1);
    this.putFresh();
  }

  private saveList(l: PickleValue[]): void {
    if (this.fromMemo(l)) return;
    this.enter(l);
    this.op(EMPTY_LIST);
    this.memoize(l);
    const n = l.length;
    if (n === 1) {
      this.save(l[0]);
      this.op(APPEND);
    } else if (n > 1) {
      // _pickle.c batch_list_exact: batches of 1000, the last one MARK ... APPENDS even when it has one item
      let i = 0;
      do {
        this.op(MARK);
        const end = Math.min(i + BATCHSIZE, n);
        for (; i < end; i++) this.save(l[i]);
        this.op(APPENDS);
      } while (i < n);
    }
    this.leave(l);
  }

  private saveDict(m: Map<PickleValue, PickleValue>): void {
    if (this.fromMemo(m)) return;
    this.enter(m);
    this.op(EMPTY_DICT);
    this.memoize(m);
    this.writeDictItems(m);
    this.leave(m);
  }

  /** _pickle.c batch_dict_exact: one item SETITEM, else batches of 1000 (a full last batch adds an empty one). */
  private writeDictItems(m: Map<PickleValue, PickleValue>): void {
    const n = m.size;
    if (n === 0) return;
    if (n > 1) this.op(MARK);
    // keys(), not entries(): no [key, value] array made per item
    let i = 0;
    for (const k of m.keys()) {
      this.save(k);
      this.save(m.get(k)!);
      if (++i === BATCHSIZE && n > 1) {
        this.op2(SETITEMS, MARK);
        i = 0;
      }
    }
    this.op(n > 1 ? SETITEMS : SETITEM);
  }

  /** set / frozenset below protocol 4: reduce(set, ([members],)). */
  private saveSet(s: Set<PickleValue>): void {
    if (this.fromMemo(s)) return;
    this.enter(s);
    this.saveInternal(s instanceof FrozenSet ? G_FROZENSET : G_SET);
    // the argument: a fresh 1-tuple of a fresh list of the members
    this.op(EMPTY_LIST);
    this.putFresh();
    const n = s.size;
    if (n === 1) {
      for (const x of s) this.save(x);
      this.op(APPEND);
    } else if (n > 1) {
      this.op(MARK);
      let i = 0;
      for (const x of s) {
        if (i === BATCHSIZE) {
          this.op2(APPENDS, MARK);
          i = 0;
        }
        this.save(x);
        i++;
      }
      this.op(APPENDS);
    }
    this.op(TUPLE1);
    this.putFresh();
    this.op(REDUCE);
    this.memoizeReduced(s);
    this.leave(s);
  }

  /** After REDUCE/NEWOBJ/OBJ: memoize the object, or when it got memoized meanwhile (recursion), POP and GET. */
  private memoizeReduced(o: object): void {
    if (!this.memoOn) return;
    const idx = this.memo.get(o);
    if (idx !== undefined) {
      this.op(POP);
      this.get(idx);
    } else {
      this.memo.set(o, this.put());
    }
  }

  private saveGlobal(g: Global): void {
    // memoized as the class it names (CPython: by identity), whatever name fix_imports writes for it
    if (this.fromMemo(g)) return;
    const line = globalLine(g, this.proto);
    if (line === null) {
      // a dotted name below protocol 4: getattr(parent, last)
      const dot = g.name.lastIndexOf('.');
      this.saveInternal(G_GETATTR);
      this.saveInternal(Global.of(g.module, g.name.slice(0, dot)));
      this.saveInternal(g.name.slice(dot + 1));
      this.op(TUPLE1 + 1);
      this.putFresh();
      this.op(REDUCE);
    } else {
      this.raw(line);
    }
    this.memoize(g);
  }

  private savePyObject(o: PyObject): void {
    if (this.fromMemo(o)) return;
    this.enter(o);
    const kind = o.kind;
    if (kind !== 'newobj_ex' && o.kwargs !== null && o.kwargs.size > 0) {
      throw new PickleError(
        `cannot pickle a '${kind}' object with keyword arguments (only 'newobj_ex' has them)`,
        -1,
      );
    }
    switch (kind) {
      case 'reduce':
        this.save(o.callable);
        if (o.args instanceof Tuple) this.save(o.args);
        else this.saveTuple(o.args); // a plain array given as the arguments: still a tuple
        this.op(REDUCE);
        break;
      case 'newobj':
        // CPython: cls.__reduce_ex__ gives (copyreg.__newobj__, (cls, *args)); NEWOBJ gets a fresh args tuple
        this.save(o.callable);
        this.saveFreshTuple(o.args);
        this.op(NEWOBJ);
        break;
      case 'newobj_ex':
        this.writeNewObjEx(o);
        break;
      case 'obj':
        this.op(MARK);
        this.save(o.callable);
        for (let i = 0; i < o.args.length; i++) this.save(o.args[i]);
        this.op(OBJ);
        break;
      default:
        throw new PickleError(`cannot pickle a PyObject of kind ${JSON.stringify(kind)}`, -1);
    }
    this.memoizeReduced(o);
    const listItems = o.listItems;
    if (listItems !== null) this.batchAppends(listItems);
    const dictItems = o.dictItems;
    if (dictItems !== null) this.batchSetItems(dictItems);
    if (o.state !== undefined) {
      this.save(o.state);
      this.op(BUILD);
    }
    this.leave(o);
  }

  /**
   * NEWOBJ_EX below protocol 4, as CPython's save_reduce writes it:
   * functools.partial(cls.__new__, cls, *args, **kwargs)(), the partial pickled by its __reduce__, i.e.
   * partial(cls.__new__) then BUILD (cls.__new__, (cls, *args), kwargs, None), then REDUCE with ().
   * cls.__new__ is written getattr(cls, '__new__'), which is CPython's bytes when the class defines __new__.
   */
  private writeNewObjEx(o: PyObject): void {
    const cls = o.callable;
    this.saveInternal(G_PARTIAL);
    const fnKey = cls instanceof Global ? null : {};
    this.writeClassNew(cls, fnKey);
    this.op(TUPLE1);
    this.putFresh();
    this.op(REDUCE);
    this.putFresh(); // the partial
    this.op(MARK);
    this.writeClassNew(cls, fnKey);
    this.saveFreshTuple(o.args, cls);
    this.op(EMPTY_DICT);
    this.putFresh();
    if (o.kwargs !== null) this.writeDictItems(o.kwargs);
    this.op(NONE);
    this.op(TUPLE);
    this.putFresh();
    this.op(BUILD);
    this.op2(EMPTY_TUPLE, REDUCE);
  }

  /** cls.__new__: the global `cls.__new__` for a global class, else getattr(cls, '__new__') memoized under fnKey. */
  private writeClassNew(cls: PickleValue, fnKey: object | null): void {
    if (cls instanceof Global) {
      this.saveInternal(Global.of(cls.module, cls.name + '.__new__'));
      return;
    }
    if (this.fromMemo(fnKey!)) return;
    this.saveInternal(G_GETATTR);
    this.save(cls);
    this.saveInternal('__new__');
    this.op(TUPLE1 + 1);
    this.putFresh();
    this.op(REDUCE);
    this.memoize(fnKey!);
  }

  /** pickle._batch_appends (batch_list in _pickle.c): the last batch of one item is an APPEND. */
  private batchAppends(items: PickleValue[]): void {
    const n = items.length;
    let i = 0;
    for (;;) {
      const m = Math.min(BATCHSIZE, n - i);
      if (m > 1) {
        this.op(MARK);
        for (const end = i + m; i < end; i++) this.save(items[i]);
        this.op(APPENDS);
      } else if (m === 1) {
        this.save(items[i++]);
        this.op(APPEND);
      }
      if (m < BATCHSIZE) return;
    }
  }

  /** pickle._batch_setitems (batch_dict in _pickle.c): the last batch of one item is a SETITEM. */
  private batchSetItems(items: Array<[PickleValue, PickleValue]>): void {
    const n = items.length;
    let i = 0;
    for (;;) {
      const m = Math.min(BATCHSIZE, n - i);
      if (m > 1) {
        this.op(MARK);
        for (const end = i + m; i < end; i++) {
          this.save(items[i][0]);
          this.save(items[i][1]);
        }
        this.op(SETITEMS);
      } else if (m === 1) {
        this.save(items[i][0]);
        this.save(items[i][1]);
        i++;
        this.op(SETITEM);
      }
      if (m < BATCHSIZE) return;
    }
  }
}

const defaultPicklers: { 2?: Pickler; 3?: Pickler } = {};

/** The pickle of `value` at protocol 3 (or 2), as Python's pickle.dumps(value, protocol) writes it. */
export function dumps(value: PickleValue, protocol: 2 | 3 = 3, options?: DumpOptions): Buffer {
  if (
    (protocol === 2 || protocol === 3) &&
    (options === undefined || (options.memo !== false && !options.persistentId))
  ) {
    // a pickler without a hook never runs caller code while it is busy, so one per protocol serves every call
    return (defaultPicklers[protocol] ??= new Pickler(protocol)).dumps(value);
  }
  return new Pickler(protocol, options).dumps(value);
}
