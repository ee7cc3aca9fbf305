// The pickle reader: protocols 0 to 5, as CPython's Lib/pickle.py and zodbpickle read them, into the value model
// of values.ts. Reading never imports, calls or runs anything a pickle names: classes and functions become
// Global values, objects become PyObject values, and the global policy decides which names are accepted at all.
//
// Design notes:
//  - One class, one loop, a switch on the opcode byte; the stack is a plain JS array and MARKs are indices into
//    it (like CPython's C unpickler), so no per-MARK allocation. Input nesting never recurses.
//  - Every length field is checked against the bytes that remain BEFORE anything is allocated, so hostile
//    lengths (a 4 GiB BINBYTES8 in a 20-byte pickle) fail fast; every failure is a PickleError with the offset
//    of the opcode that failed.
//  - bytes values are, by default, views (subarrays) into the input: no copy. Keep the input unchanged while
//    the values are in use, or pass `copyBytes: true`. bytearray values (mutable) are always copies.

import { constants } from 'node:buffer';
import { PickleError, PickleStackLimitError } from './errors.js';
import { anyGlobal, type GlobalPolicy } from './globals.js';
import {
  decodeUtf8Strict,
  escapeDecode,
  latin1,
  MAX_BIGINT_BYTES,
  parseFloatText,
  parseIntText,
  rawUnicodeEscapeDecode,
} from './text.js';
import * as op from './opcodes.js';
import {
  ByteArray,
  FrozenSet,
  Global,
  PersistentRef,
  PickleBuffer,
  PyObject,
  Tuple,
  type PickleValue,
  type PyDict,
} from './values.js';
import { PyFloat } from './pytext.js';

export interface LoadOptions {
  /** Which globals the pickle may name (default anyGlobal); a refused global is a PickleError naming module.name. */
  globals?: GlobalPolicy;
  /**
   * How to read Python 2 str (the STRING, BINSTRING and SHORT_BINSTRING opcodes): decoded with this encoding into a
   * string, or kept as bytes with 'bytes'. Default 'ASCII', as Python and ZODB.
   */
  encoding?: 'ASCII' | 'latin1' | 'utf-8' | 'bytes';
  /**
   * What to do with a Python 2 str that does not decode: 'bytes' (the default, ZODB's choice: zodbpickle's
   * decode_string keeps it as bytes) or 'strict' (a PickleError).
   */
  errors?: 'strict' | 'bytes';
  /** Turns a persistent id (PERSID, BINPERSID) into a value; default `pid => new PersistentRef(pid)`. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /** Protocol 5 out-of-band buffers for NEXT_BUFFER, in order; without them NEXT_BUFFER is a PickleError. */
  buffers?: Iterable<Uint8Array>;
  /** The copyreg extension registry (code -> [module, name]) for EXT1, EXT2, EXT4; an unknown code is a PickleError. */
  extensions?: ReadonlyMap<number, readonly [string, string]>;
  /** Limit on MARK nesting (open MARKs at once); default 10000. Deeper pickles are a PickleError. */
  maxDepth?: number;
  /**
   * Limit on the values waiting on the stack when a new container (EMPTY_LIST, EMPTY_DICT, EMPTY_SET) or a
   * MARK begins: a pickle of lists nested a million deep holds a million unfinished lists there before the
   * first APPEND, so it is refused (PickleStackLimitError) before they are built. Unbounded by default.
   */
  maxStack?: number;
  /**
   * Refuse (a PickleError) a value whose decoded form is far larger than its pickle: see DecodeBudget. Checked
   * once the value is read, before anyone walks it; off by default.
   */
  budget?: DecodeBudget;
  /**
   * bytes values are views into `data` by default (fast, no copy; they change if `data` is changed later).
   * true copies each bytes value into its own buffer.
   */
  copyBytes?: boolean;
}

const DEFAULT_MAX_DEPTH = 10000;

/**
 * Bounds on a decoded value seen as a tree, as a repr, an equality test or a re-pickle meets it: a value shared
 * through the memo counts each time it occurs, so a few bytes of memo references that stand for millions of
 * elements are caught.
 */
export interface DecodeBudget {
  /** containers within containers, the outermost one at depth 1 */
  maxDepth: number;
  /** every value in the tree, containers and leaves */
  maxElements: number;
}

/**
 * What in `v` passes the budget, or null. Walks without recursion, and stops as soon as a bound is passed, so
 * the cost is at most maxElements steps whatever the value.
 */
export function overBudget(v: PickleValue, budget: DecodeBudget): string | null {
  const values: PickleValue[] = [v];
  const depths: number[] = [0];
  let count = 0;
  while (values.length > 0) {
    const x = values.pop()!;
    const depth = depths.pop()!;
    if (++count > budget.maxElements) return `more than ${budget.maxElements} elements`;
    if (x === null || typeof x !== 'object' || x instanceof Uint8Array) continue;
    let children: Iterable<PickleValue | undefined>;
    if (Array.isArray(x)) children = x;
    else if (x instanceof Map) children = mapEntries(x);
    else if (x instanceof Set) children = x;
    else if (x instanceof PyObject) children = objectParts(x);
    else if (x instanceof PersistentRef) children = [x.id];
    else continue;
    if (depth + 1 > budget.maxDepth) return `containers nested deeper than ${budget.maxDepth}`;
    for (const c of children) {
      if (c === undefined) continue;
      values.push(c);
      depths.push(depth + 1);
    }
  }
  return null;
}

function* mapEntries(m: Map<PickleValue, PickleValue>): Iterable<PickleValue> {
  for (const [k, v] of m) {
    yield k;
    yield v;
  }
}

function* objectParts(o: PyObject): Iterable<PickleValue | undefined> {
  yield o.callable;
  yield o.args;
  if (o.kwargs) yield o.kwargs;
  yield o.state;
  if (o.listItems) yield* o.listItems;
  if (o.dictItems) for (const [k, v] of o.dictItems) yield* [k, v];
}

// The longest string V8 makes (in UTF-16 units).
const MAX_STRING_LENGTH = constants.MAX_STRING_LENGTH;

// Memo indices a little past the end of the dense array (at most this far) go into it, others into a Map.
const MEMO_ARRAY_SLACK = 1024;

const G_BUILTINS_SET = Global.of('builtins', 'set');
const G_BUILTIN_SET = Global.of('__builtin__', 'set');
const G_BUILTINS_FROZENSET = Global.of('builtins', 'frozenset');
const G_BUILTIN_FROZENSET = Global.of('__builtin__', 'frozenset');
const G_BUILTINS_BYTEARRAY = Global.of('builtins', 'bytearray');
const G_BUILTIN_BYTEARRAY = Global.of('__builtin__', 'bytearray');
const G_BUILTINS_BYTES = Global.of('builtins', 'bytes');
const G_BUILTIN_BYTES = Global.of('__builtin__', 'bytes');
const G_CODECS_ENCODE = Global.of('_codecs', 'encode');
const G_ZODBPICKLE_BINARY = Global.of('zodbpickle', 'binary');

const EMPTY_BYTES = new Uint8Array(0);

// Node's Buffer has had these fast, unchecked decoders on its prototype forever (toString calls them after
// checking its arguments); they are not in @types/node.
type SliceBuffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
};

function sliceBuffer(d: Uint8Array): SliceBuffer {
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength) as SliceBuffer;
}

function u32(d: Uint8Array, p: number): number {
  return (d[p] | (d[p + 1] << 8) | (d[p + 2] << 16)) + d[p + 3] * 0x1000000;
}

function i32(d: Uint8Array, p: number): number {
  return d[p] | (d[p + 1] << 8) | (d[p + 2] << 16) | (d[p + 3] << 24);
}

// BINFLOAT is big-endian: reverse the bytes into a scratch double when this machine is little-endian
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function f64be(d: Uint8Array, p: number): number {
  if (LITTLE_ENDIAN) for (let i = 0; i < 8; i++) f64Bytes[i] = d[p + 7 - i];
  else for (let i = 0; i < 8; i++) f64Bytes[i] = d[p + i];
  return f64[0];
}

// Global.of builds a "module\nname" key per call; readers name the same few classes again and again
const globalCache = new Map<string, Map<string, Global>>();

function globalOf(module: string, name: string): Global {
  let byName = globalCache.get(module);
  if (byName === undefined) {
    byName = new Map();
    globalCache.set(module, byName);
  }
  let g = byName.get(name);
  if (g === undefined) {
    g = Global.of(module, name);
    byName.set(name, g);
  }
  return g;
}

const defaultPersistentLoad = (pid: PickleValue): PickleValue => new PersistentRef(pid);

// Short ASCII strings (attribute names, keys) repeat a lot in ZODB records: a small direct-mapped cache of
// decoded strings saves making them again. Collisions just replace the entry.
const STR_CACHE_SIZE = 4096; // power of 2
const STR_CACHE_MAX_LEN = 32;
const strCache: string[] = new Array<string>(STR_CACHE_SIZE).fill('');

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push(i.toString(16).padStart(2, '0'));

/** The names of the opcodes, for messages. */
const OPNAMES: string[] = [];
for (const [name, code] of Object.entries(op)) {
  if (typeof code === 'number' && name !== 'HIGHEST_PROTOCOL') OPNAMES[code] = name;
}

function opName(code: number): string {
  return OPNAMES[code] ?? `0x${code.toString(16).padStart(2, '0')}`;
}

/** Reads one pickle (or, called again, the next one) from `data`, starting at `position`. */
export class Unpickler {
  /** The offset of the next byte to read: just past the STOP after a successful load(). */
  position = 0;

  private readonly data: Uint8Array;
  private readonly buf: SliceBuffer;
  private readonly policy: GlobalPolicy;
  private readonly encoding: 'ASCII' | 'latin1' | 'utf-8' | 'bytes';
  private readonly strictStrings: boolean;
  private readonly persistentLoad: (pid: PickleValue) => PickleValue;
  private readonly buffers: Iterator<Uint8Array> | null;
  private readonly extensions: ReadonlyMap<number, readonly [string, string]> | null;
  private readonly maxDepth: number;
  private readonly maxStack: number;
  private readonly budget: DecodeBudget | null;
  private readonly copyBytes: boolean;

  // the memo survives across load() calls, as in Python (a ZODB record's two pickles share it)
  private memoArr: PickleValue[] = [];
  private memoMap: Map<number, PickleValue> | null = null;
  private memoCount = 0;
  // see charge()
  private copyBudget: number;

  constructor(data: Uint8Array, options: LoadOptions = {}) {
    this.data = data;
    this.buf = Buffer.isBuffer(data) ? (data as SliceBuffer) : sliceBuffer(data);
    this.policy = options.globals ?? anyGlobal;
    this.encoding = options.encoding ?? 'ASCII';
    this.strictStrings = (options.errors ?? 'bytes') === 'strict';
    this.persistentLoad = options.persistentLoad ?? defaultPersistentLoad;
    this.buffers = options.buffers ? options.buffers[Symbol.iterator]() : null;
    this.extensions = options.extensions ?? null;
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.maxStack = options.maxStack ?? Infinity;
    this.budget = options.budget ?? null;
    this.copyBytes = options.copyBytes ?? false;
    this.copyBudget = 2 * data.length + 65536;
  }

  /** Reads the pickle at `position` up to its STOP and returns its value (the top of the stack at STOP). */
  load(): PickleValue {
    const data = this.data;
    const end = data.length;
    const stack: PickleValue[] = [];
    const marks: number[] = [];
    let fence = 0; // stack items below this index belong to an enclosing MARK
    let pos = this.position;

    for (;;) {
      const at = pos; // offset of the current opcode, for errors
      if (pos >= end) {
        this.position = pos;
        throw new PickleError('pickle data was truncated (no STOP)', pos);
      }
      const code = data[pos++];
      switch (code) {
        case op.BININT1:
          if (pos >= end) this.truncated(code, at);
          stack.push(data[pos++]);
          break;

        case op.BININT2:
          if (pos + 2 > end) this.truncated(code, at);
          stack.push(data[pos] | (data[pos + 1] << 8));
          pos += 2;
          break;

        case op.BININT:
          if (pos + 4 > end) this.truncated(code, at);
          stack.push(data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24));
          pos += 4;
          break;

        case op.BINPUT: {
          if (pos >= end) this.truncated(code, at);
          if (stack.length <= fence) this.underflow(code, at);
          const idx = data[pos++];
          const arr = this.memoArr;
          if (idx < arr.length) {
            if (arr[idx] === undefined) this.memoCount++;
            arr[idx] = stack[stack.length - 1];
          } else {
            this.memoPut(idx, stack[stack.length - 1]);
          }
          break;
        }

        case op.LONG_BINPUT: {
          if (pos + 4 > end) this.truncated(code, at);
          if (stack.length <= fence) this.underflow(code, at);
          const idx = u32(data, pos);
          pos += 4;
          this.memoPut(idx, stack[stack.length - 1]);
          break;
        }

        case op.MEMOIZE:
          if (stack.length <= fence) this.underflow(code, at);
          this.memoPut(this.memoCount, stack[stack.length - 1]);
          break;

        case op.BINGET: {
          if (pos >= end) this.truncated(code, at);
          const idx = data[pos++];
          const v = idx < this.memoArr.length ? this.memoArr[idx] : this.memoGet(idx);
          if (v === undefined) this.fail(`memo value not found at index ${idx}`, at);
          stack.push(v);
          break;
        }

        case op.LONG_BINGET: {
          if (pos + 4 > end) this.truncated(code, at);
          const idx = u32(data, pos);
          pos += 4;
          const v = this.memoGet(idx);
          if (v === undefined) this.fail(`memo value not found at index ${idx}`, at);
          stack.push(v);
          break;
        }

        case op.SHORT_BINBYTES: {
          if (pos >= end) this.truncated(code, at);
          const n = data[pos++];
          if (n > end - pos) this.truncated(code, at);
          stack.push(this.bytesAt(pos, n));
          pos += n;
          break;
        }

        case op.BINBYTES: {
          if (pos + 4 > end) this.truncated(code, at);
          const n = u32(data, pos);
          pos += 4;
          if (n > end - pos) this.tooLong(code, n, end - pos, at);
          stack.push(this.bytesAt(pos, n));
          pos += n;
          break;
        }

        case op.BINBYTES8: {
          const n = this.readSize8(pos, code, at);
          pos += 8;
          stack.push(this.bytesAt(pos, n));
          pos += n;
          break;
        }

        case op.BYTEARRAY8: {
          const n = this.readSize8(pos, code, at);
          pos += 8;
          stack.push(ByteArray.fromBytes(data.subarray(pos, pos + n)));
          pos += n;
          break;
        }

        case op.SHORT_BINUNICODE: {
          if (pos >= end) this.truncated(code, at);
          const n = data[pos++];
          if (n > end - pos) this.truncated(code, at);
          stack.push(this.utf8(pos, pos + n, true, at));
          pos += n;
          break;
        }

        case op.BINUNICODE: {
          if (pos + 4 > end) this.truncated(code, at);
          const n = u32(data, pos);
          pos += 4;
          if (n > end - pos) this.tooLong(code, n, end - pos, at);
          stack.push(this.utf8(pos, pos + n, true, at));
          pos += n;
          break;
        }

        case op.BINUNICODE8: {
          const n = this.readSize8(pos, code, at);
          pos += 8;
          stack.push(this.utf8(pos, pos + n, true, at));
          pos += n;
          break;
        }

        case op.SHORT_BINSTRING: {
          if (pos >= end) this.truncated(code, at);
          const n = data[pos++];
          if (n > end - pos) this.truncated(code, at);
          stack.push(this.pyStr(pos, pos + n, at));
          pos += n;
          break;
        }

        case op.BINSTRING: {
          if (pos + 4 > end) this.truncated(code, at);
          const n = i32(data, pos);
          pos += 4;
          if (n < 0) this.fail('BINSTRING pickle has negative byte count', at);
          if (n > end - pos) this.tooLong(code, n, end - pos, at);
          stack.push(this.pyStr(pos, pos + n, at));
          pos += n;
          break;
        }

        case op.NONE:
          stack.push(null);
          break;

        case op.NEWTRUE:
          stack.push(true);
          break;

        case op.NEWFALSE:
          stack.push(false);
          break;

        case op.EMPTY_TUPLE:
          stack.push(new Tuple());
          break;

        // Tuples are filled by index, in order (they stay packed): push on an Array subclass is ~15x slower in V8.

        case op.TUPLE1: {
          if (stack.length - fence < 1) this.underflow(code, at);
          const t = new Tuple();
          t[0] = stack[stack.length - 1];
          stack[stack.length - 1] = t;
          break;
        }

        case op.TUPLE2: {
          if (stack.length - fence < 2) this.underflow(code, at);
          const t = new Tuple();
          const b = stack.pop() as PickleValue;
          t[0] = stack[stack.length - 1];
          t[1] = b;
          stack[stack.length - 1] = t;
          break;
        }

        case op.TUPLE3: {
          if (stack.length - fence < 3) this.underflow(code, at);
          const t = new Tuple();
          const c = stack.pop() as PickleValue;
          const b = stack.pop() as PickleValue;
          t[0] = stack[stack.length - 1];
          t[1] = b;
          t[2] = c;
          stack[stack.length - 1] = t;
          break;
        }

        case op.EMPTY_LIST:
          if (stack.length >= this.maxStack) this.stackLimit(stack, at);
          stack.push([]);
          break;

        case op.EMPTY_DICT:
          if (stack.length >= this.maxStack) this.stackLimit(stack, at);
          stack.push(new Map());
          break;

        case op.EMPTY_SET:
          if (stack.length >= this.maxStack) this.stackLimit(stack, at);
          stack.push(new Set());
          break;

        case op.MARK:
          if (stack.length >= this.maxStack) this.stackLimit(stack, at);
          if (marks.length >= this.maxDepth) {
            this.fail(`MARK nesting deeper than the limit (maxDepth ${this.maxDepth})`, at);
          }
          marks.push(stack.length);
          fence = stack.length;
          break;

        case op.TUPLE:
        case op.LIST:
        case op.FROZENSET: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          let v: PickleValue;
          if (code === op.LIST) {
            v = stack.slice(k);
          } else if (code === op.TUPLE) {
            const t = new Tuple();
            for (let i = k; i < stack.length; i++) t[i - k] = stack[i];
            v = t;
          } else {
            const s = new FrozenSet<PickleValue>();
            for (let i = k; i < stack.length; i++) {
              const x = stack[i];
              if (unhashable(x)) this.fail(`unhashable ${typeName(x)} in a frozenset`, at);
              s.add(x);
            }
            v = s;
          }
          stack.length = k;
          stack.push(v);
          break;
        }

        case op.DICT: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          if ((stack.length - k) % 2 !== 0) this.fail('odd number of items for DICT', at);
          const d: PyDict = new Map();
          for (let i = k; i < stack.length; i += 2) {
            const key = stack[i];
            if (typeof key === 'object' && unhashable(key))
              this.fail(`unhashable dict key ${typeName(key)}`, at);
            d.set(key, stack[i + 1]);
          }
          stack.length = k;
          stack.push(d);
          break;
        }

        case op.APPEND: {
          if (stack.length - fence < 2) this.underflow(code, at);
          const v = stack.pop() as PickleValue;
          const target = stack[stack.length - 1];
          if (Array.isArray(target) && !(target instanceof Tuple)) target.push(v);
          else if (target instanceof PyObject) (target.listItems ??= []).push(v);
          else this.fail(`cannot APPEND to ${typeName(target)}`, at);
          break;
        }

        case op.APPENDS: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          if (k - 1 < fence) this.underflow(code, at);
          const target = stack[k - 1];
          if (Array.isArray(target) && !(target instanceof Tuple)) {
            for (let i = k; i < stack.length; i++) target.push(stack[i]);
          } else if (target instanceof PyObject) {
            const items = (target.listItems ??= []);
            for (let i = k; i < stack.length; i++) items.push(stack[i]);
          } else {
            this.fail(`cannot APPENDS to ${typeName(target)}`, at);
          }
          stack.length = k;
          break;
        }

        case op.SETITEM: {
          if (stack.length - fence < 3) this.underflow(code, at);
          const v = stack.pop() as PickleValue;
          const key = stack.pop() as PickleValue;
          this.setItem(stack[stack.length - 1], key, v, at);
          break;
        }

        case op.SETITEMS: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          if (k - 1 < fence) this.underflow(code, at);
          if ((stack.length - k) % 2 !== 0) this.fail('odd number of items for SETITEMS', at);
          const target = stack[k - 1];
          if (target instanceof Map) {
            for (let i = k; i < stack.length; i += 2) {
              const key = stack[i];
              if (typeof key === 'object' && unhashable(key))
                this.fail(`unhashable dict key ${typeName(key)}`, at);
              target.set(key, stack[i + 1]);
            }
          } else {
            for (let i = k; i < stack.length; i += 2) this.setItem(target, stack[i], stack[i + 1], at);
          }
          stack.length = k;
          break;
        }

        case op.ADDITEMS: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          if (k - 1 < fence) this.underflow(code, at);
          const target = stack[k - 1];
          if (!(target instanceof Set) || target instanceof FrozenSet) {
            this.fail(`cannot ADDITEMS to ${typeName(target)}`, at);
          }
          for (let i = k; i < stack.length; i++) {
            const x = stack[i];
            if (unhashable(x)) this.fail(`unhashable ${typeName(x)} in a set`, at);
            target.add(x);
          }
          stack.length = k;
          break;
        }

        case op.POP:
          if (marks.length && marks[marks.length - 1] === stack.length) {
            // pickle.py: POP on an empty (post-MARK) stack discards the MARK
            marks.pop();
            fence = marks.length ? marks[marks.length - 1] : 0;
          } else {
            if (stack.length <= fence) this.underflow(code, at);
            stack.pop();
          }
          break;

        case op.POP_MARK: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          stack.length = k;
          break;
        }

        case op.DUP:
          if (stack.length <= fence) this.underflow(code, at);
          stack.push(stack[stack.length - 1]);
          break;

        case op.BINPERSID:
          if (stack.length <= fence) this.underflow(code, at);
          stack.push(this.persistentLoad(stack.pop() as PickleValue));
          break;

        case op.PERSID: {
          const nl = this.lineEnd(pos, code, at);
          for (let i = pos; i < nl; i++) {
            if (data[i] >= 0x80) this.fail('persistent IDs in protocol 0 must be ASCII strings', at);
          }
          const pid = this.text(pos, nl, at);
          pos = nl + 1;
          stack.push(this.persistentLoad(pid));
          break;
        }

        case op.REDUCE: {
          if (stack.length - fence < 2) this.underflow(code, at);
          const args = stack.pop() as PickleValue;
          if (!(args instanceof Tuple))
            this.fail(`REDUCE arguments must be a tuple, not ${typeName(args)}`, at);
          stack[stack.length - 1] = this.reduce(stack[stack.length - 1], args as Tuple, at);
          break;
        }

        case op.NEWOBJ: {
          if (stack.length - fence < 2) this.underflow(code, at);
          const args = stack.pop() as PickleValue;
          if (!(args instanceof Tuple))
            this.fail(`NEWOBJ arguments must be a tuple, not ${typeName(args)}`, at);
          stack[stack.length - 1] = new PyObject('newobj', stack[stack.length - 1], args as Tuple);
          break;
        }

        case op.NEWOBJ_EX: {
          if (stack.length - fence < 3) this.underflow(code, at);
          const kwargs = stack.pop() as PickleValue;
          const args = stack.pop() as PickleValue;
          if (!(args instanceof Tuple))
            this.fail(`NEWOBJ_EX arguments must be a tuple, not ${typeName(args)}`, at);
          if (!(kwargs instanceof Map)) {
            this.fail(`NEWOBJ_EX keyword arguments must be a dict, not ${typeName(kwargs)}`, at);
          }
          stack[stack.length - 1] = new PyObject('newobj_ex', stack[stack.length - 1], args as Tuple, kwargs);
          break;
        }

        case op.BUILD: {
          if (stack.length - fence < 2) this.underflow(code, at);
          const state = stack.pop() as PickleValue;
          const inst = stack[stack.length - 1];
          if (inst instanceof PyObject) {
            if (inst.state !== undefined) this.fail('BUILD applied twice to the same object', at);
            inst.state = state;
          } else if (state !== null) {
            // Python's default __setstate__ ignores a None state; anything else needs an object with a __dict__
            this.fail(`cannot BUILD ${typeName(inst)} with a state`, at);
          }
          break;
        }

        case op.GLOBAL: {
          const nl1 = this.lineEnd(pos, code, at);
          const module = this.utf8(pos, nl1, false, at);
          const nl2 = this.lineEnd(nl1 + 1, code, at);
          const name = this.utf8(nl1 + 1, nl2, false, at);
          pos = nl2 + 1;
          stack.push(this.findGlobal(module, name, at));
          break;
        }

        case op.STACK_GLOBAL: {
          if (stack.length - fence < 2) this.underflow(code, at);
          const name = stack.pop() as PickleValue;
          const module = stack.pop() as PickleValue;
          if (typeof name !== 'string' || typeof module !== 'string')
            this.fail('STACK_GLOBAL requires str', at);
          stack.push(this.findGlobal(module, name, at));
          break;
        }

        case op.INST: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          const nl1 = this.lineEnd(pos, code, at);
          const module = this.ascii(pos, nl1, 'INST module', at);
          const nl2 = this.lineEnd(nl1 + 1, code, at);
          const name = this.ascii(nl1 + 1, nl2, 'INST name', at);
          pos = nl2 + 1;
          const cls = this.findGlobal(module, name, at);
          const args = new Tuple();
          for (let i = k; i < stack.length; i++) args[i - k] = stack[i];
          stack.length = k;
          stack.push(new PyObject('obj', cls, args));
          break;
        }

        case op.OBJ: {
          const k = marks.pop();
          if (k === undefined) this.noMark(code, at);
          fence = marks.length ? marks[marks.length - 1] : 0;
          if (stack.length - k < 1) this.underflow(code, at);
          const cls = stack[k];
          const args = new Tuple();
          for (let i = k + 1; i < stack.length; i++) args[i - k - 1] = stack[i];
          stack.length = k;
          stack.push(new PyObject('obj', cls, args));
          break;
        }

        case op.EXT1:
        case op.EXT2:
        case op.EXT4: {
          const n = code === op.EXT1 ? 1 : code === op.EXT2 ? 2 : 4;
          if (pos + n > end) this.truncated(code, at);
          const ext =
            code === op.EXT1
              ? data[pos]
              : code === op.EXT2
                ? data[pos] | (data[pos + 1] << 8)
                : i32(data, pos);
          pos += n;
          if (ext <= 0) this.fail('EXT specifies code <= 0', at);
          const key = this.extensions?.get(ext);
          if (!key) this.fail(`unregistered extension code ${ext}`, at);
          stack.push(this.findGlobal(key[0], key[1], at));
          break;
        }

        case op.BINFLOAT:
          if (pos + 8 > end) this.truncated(code, at);
          stack.push(new PyFloat(f64be(data, pos)));
          pos += 8;
          break;

        case op.FLOAT: {
          const nl = this.lineEnd(pos, code, at);
          const x = parseFloatText(this.text(pos, nl, at));
          if (x === null) this.fail('could not convert string to float', at);
          pos = nl + 1;
          stack.push(new PyFloat(x));
          break;
        }

        case op.INT: {
          const nl = this.lineEnd(pos, code, at);
          let v: PickleValue;
          if (nl - pos === 2 && data[pos] === 0x30 && (data[pos + 1] === 0x30 || data[pos + 1] === 0x31)) {
            v = data[pos + 1] === 0x31; // I01 / I00: protocol 0 True / False
          } else {
            const x = parseIntText(this.text(pos, nl, at), true);
            if (x === null) this.fail('invalid literal for INT', at);
            if (typeof x === 'string') this.fail(x, at);
            v = x;
          }
          pos = nl + 1;
          stack.push(v);
          break;
        }

        case op.LONG: {
          const nl = this.lineEnd(pos, code, at);
          let e = nl;
          if (e > pos && data[e - 1] === 0x4c) e--; // the trailing L of Python 2
          const x = parseIntText(this.text(pos, e, at), true);
          if (x === null) this.fail('invalid literal for LONG', at);
          if (typeof x === 'string') this.fail(x, at);
          pos = nl + 1;
          stack.push(x);
          break;
        }

        case op.LONG1: {
          if (pos >= end) this.truncated(code, at);
          const n = data[pos++];
          if (n > end - pos) this.truncated(code, at);
          const v = decodeLong(data, pos, n);
          if (v === null)
            this.fail(`${opName(code)} int of ${n} bytes is too large for a JavaScript BigInt`, at);
          stack.push(v);
          pos += n;
          break;
        }

        case op.LONG4: {
          if (pos + 4 > end) this.truncated(code, at);
          const n = i32(data, pos);
          pos += 4;
          if (n < 0) this.fail('LONG pickle has negative byte count', at);
          if (n > end - pos) this.tooLong(code, n, end - pos, at);
          const v = decodeLong(data, pos, n);
          if (v === null)
            this.fail(`${opName(code)} int of ${n} bytes is too large for a JavaScript BigInt`, at);
          stack.push(v);
          pos += n;
          break;
        }

        case op.STRING: {
          const nl = this.lineEnd(pos, code, at);
          const q = data[pos];
          if (nl - pos < 2 || data[nl - 1] !== q || (q !== 0x27 && q !== 0x22)) {
            this.fail('the STRING opcode argument must be quoted', at);
          }
          const raw = escapeDecode(data, pos + 1, nl - 1);
          if (typeof raw === 'string') this.fail(raw, at);
          pos = nl + 1;
          stack.push(this.decodePyStr(raw, 0, raw.length, at));
          break;
        }

        case op.UNICODE: {
          const nl = this.lineEnd(pos, code, at);
          if (nl - pos > MAX_STRING_LENGTH) this.fail('UNICODE text is too long for a JavaScript string', at);
          const s = rawUnicodeEscapeDecode(data, pos, nl);
          if (s === null) this.fail('bad raw-unicode-escape text in UNICODE', at);
          pos = nl + 1;
          stack.push(s);
          break;
        }

        case op.GET: {
          const nl = this.lineEnd(pos, code, at);
          const idx = parseIntText(this.text(pos, nl, at), false);
          if (typeof idx !== 'number') this.fail('invalid memo index for GET', at);
          pos = nl + 1;
          const v = this.memoGet(idx);
          if (v === undefined) this.fail(`memo value not found at index ${idx}`, at);
          stack.push(v);
          break;
        }

        case op.PUT: {
          const nl = this.lineEnd(pos, code, at);
          const idx = parseIntText(this.text(pos, nl, at), false);
          if (typeof idx !== 'number') this.fail('invalid memo index for PUT', at);
          if (idx < 0) this.fail('negative PUT argument', at);
          pos = nl + 1;
          if (stack.length <= fence) this.underflow(code, at);
          this.memoPut(idx, stack[stack.length - 1]);
          break;
        }

        case op.PROTO: {
          if (pos >= end) this.truncated(code, at);
          const proto = data[pos++];
          if (proto > op.HIGHEST_PROTOCOL) this.fail(`unsupported pickle protocol: ${proto}`, at);
          break;
        }

        case op.FRAME:
          // Frames only group opcodes for buffered readers; the whole input is here, so just check the size.
          this.readSize8(pos, code, at);
          pos += 8;
          break;

        case op.NEXT_BUFFER: {
          if (this.buffers === null) {
            this.fail('pickle stream refers to out-of-band data but no buffers were given', at);
          }
          const r = this.buffers.next();
          if (r.done) this.fail('not enough out-of-band buffers', at);
          stack.push(new PickleBuffer(r.value, false));
          break;
        }

        case op.READONLY_BUFFER: {
          if (stack.length <= fence) this.underflow(code, at);
          const b = stack[stack.length - 1];
          if (b instanceof PickleBuffer) {
            if (!b.readonly) stack[stack.length - 1] = new PickleBuffer(b.data, true);
          } else if (b instanceof ByteArray) {
            stack[stack.length - 1] = new PickleBuffer(b, true);
          } else if (!(b instanceof Uint8Array)) {
            // bytes are read-only already
            this.fail(`READONLY_BUFFER needs a buffer, not ${typeName(b)}`, at);
          }
          break;
        }

        case op.STOP: {
          if (stack.length <= fence) this.underflow(code, at);
          this.position = pos;
          const result = stack[stack.length - 1];
          const over = this.budget && overBudget(result, this.budget);
          if (over) throw new PickleError(`the pickle's value is too large for its size: ${over}`, at);
          return result;
        }

        default:
          this.position = at;
          throw new PickleError(
            `invalid load key, 0x${code.toString(16).padStart(2, '0')} (unknown opcode)`,
            at,
          );
      }
    }
  }

  // ---- failures (never return; kept out of the loop so the loop stays small) ----

  private stackLimit(stack: PickleValue[], at: number): never {
    this.position = at;
    throw new PickleStackLimitError(
      `more than ${this.maxStack} values wait on the stack (containers nested too deep)`,
      at,
      stack.slice(0, 4),
    );
  }

  private fail(message: string, at: number): never {
    this.position = at;
    throw new PickleError(message, at);
  }

  private truncated(code: number, at: number): never {
    this.fail(`pickle data was truncated in ${opName(code)}`, at);
  }

  private tooLong(code: number, n: number, remaining: number, at: number): never {
    this.fail(
      `${opName(code)} length ${n} is more than the ${remaining} bytes that remain (truncated pickle)`,
      at,
    );
  }

  private underflow(code: number, at: number): never {
    this.fail(`unpickling stack underflow in ${opName(code)}`, at);
  }

  private noMark(code: number, at: number): never {
    this.fail(`could not find MARK for ${opName(code)}`, at);
  }

  // ---- helpers ----

  /** An 8-byte little-endian size at pos that must fit in the bytes after it. */
  private readSize8(pos: number, code: number, at: number): number {
    const end = this.data.length;
    if (pos + 8 > end) this.truncated(code, at);
    const lo = u32(this.data, pos);
    const hi = u32(this.data, pos + 4);
    const remaining = end - pos - 8;
    if (hi !== 0 || lo > remaining) this.tooLong(code, hi * 0x100000000 + lo, remaining, at);
    return lo;
  }

  /** The index of the newline ending the text argument at pos. */
  private lineEnd(pos: number, code: number, at: number): number {
    const nl = this.data.indexOf(0x0a, pos);
    if (nl < 0) this.fail(`pickle data was truncated in ${opName(code)} (no newline)`, at);
    return nl;
  }

  private bytesAt(pos: number, n: number): Uint8Array {
    if (n === 0) return this.copyBytes ? new Uint8Array(0) : EMPTY_BYTES;
    const d = this.data;
    if (!this.copyBytes) return new Uint8Array(d.buffer, d.byteOffset + pos, n);
    // not d.slice: on a Buffer, slice is a view
    const out = new Uint8Array(n);
    out.set(d.subarray(pos, pos + n));
    return out;
  }

  /** The Latin-1 text of an opcode's line (numbers, protocol 0 persistent ids). */
  private text(start: number, end: number, at: number): string {
    if (end - start > MAX_STRING_LENGTH) this.fail('a text argument too long for a JavaScript string', at);
    return this.buf.latin1Slice(start, end);
  }

  private ascii(start: number, end: number, what: string, at: number): string {
    const d = this.data;
    for (let i = start; i < end; i++) if (d[i] >= 0x80) this.fail(`${what} is not ASCII`, at);
    return this.text(start, end, at);
  }

  /** UTF-8 text (with surrogatepass: lone surrogates encoded in 3 bytes come back) to a string; bad UTF-8 fails. */
  private utf8(start: number, end: number, surrogatePass: boolean, at: number): string {
    const d = this.data;
    const n = end - start;
    if (n <= STR_CACHE_MAX_LEN) {
      // short: ASCII by hand, through the cache
      let h = n;
      let i = start;
      for (; i < end; i++) {
        const c = d[i];
        if (c >= 0x80) break;
        h = (Math.imul(h, 31) + c) | 0;
      }
      if (i === end) {
        const slot = (h ^ (h >>> 12)) & (STR_CACHE_SIZE - 1);
        const cached = strCache[slot];
        if (cached.length === n) {
          let j = 0;
          while (j < n && cached.charCodeAt(j) === d[start + j]) j++;
          if (j === n) return cached;
        }
        const s = this.buf.latin1Slice(start, end);
        strCache[slot] = s;
        return s;
      }
    }
    if (n > MAX_STRING_LENGTH) return this.hugeText(start, end, surrogatePass, at);
    const s = this.buf.utf8Slice(start, end);
    // Buffer's decoder replaces bad sequences (and surrogates) with U+FFFD: only then look closer
    if (s.indexOf('\ufffd') < 0) return s;
    const r = decodeUtf8Strict(d, start, end, surrogatePass);
    if (r === null) this.fail(`invalid UTF-8 text${surrogatePass ? '' : ' (a global name)'}`, at);
    return r;
  }

  /** Text of more bytes than a JS string has chars: decodable only if multi-byte; V8's own error becomes ours. */
  private hugeText(start: number, end: number, surrogatePass: boolean, at: number): string {
    let s: string | null = null;
    try {
      s = this.buf.utf8Slice(start, end);
      if (s.indexOf('\ufffd') >= 0) s = decodeUtf8Strict(this.data, start, end, surrogatePass);
    } catch {
      this.fail(`text of ${end - start} bytes is too long for a JavaScript string`, at);
    }
    if (s === null) this.fail('invalid UTF-8 text', at);
    return s;
  }

  /** A Python 2 str (STRING, BINSTRING, SHORT_BINSTRING) from the input. */
  private pyStr(start: number, end: number, at: number): PickleValue {
    return this.decodePyStr(this.data, start, end, at);
  }

  private decodePyStr(src: Uint8Array, start: number, end: number, at: number): PickleValue {
    const enc = this.encoding;
    if (enc === 'bytes') {
      return src === this.data ? this.bytesAt(start, end - start) : src.subarray(start, end);
    }
    if (end - start > MAX_STRING_LENGTH)
      this.fail(`a str of ${end - start} bytes is too long for JavaScript`, at);
    let s: string | null = null;
    if (enc === 'latin1') {
      s = latin1(src, start, end);
    } else if (enc === 'ASCII') {
      let i = start;
      while (i < end && src[i] < 0x80) i++;
      if (i === end) s = latin1(src, start, end);
    } else {
      s = decodeUtf8Strict(src, start, end, false);
    }
    if (s !== null) return s;
    if (this.strictStrings) this.fail(`a Python 2 str does not decode as ${enc}`, at);
    return src === this.data ? this.bytesAt(start, end - start) : src.subarray(start, end);
  }

  /** REDUCE: the builtins that stand for native values become them; everything else is kept as a PyObject. */
  private reduce(func: PickleValue, args: Tuple, at: number): PickleValue {
    if (func instanceof Global) {
      const a0 = args.length > 0 ? args[0] : undefined;
      if (func === G_BUILTINS_SET || func === G_BUILTIN_SET) {
        if (args.length === 0) return new Set();
        if (args.length === 1 && Array.isArray(a0) && this.charge(a0.length, at) && !a0.some(unhashable)) {
          return new Set(a0);
        }
      } else if (func === G_BUILTINS_FROZENSET || func === G_BUILTIN_FROZENSET) {
        if (args.length === 0) return new FrozenSet();
        if (args.length === 1 && Array.isArray(a0) && this.charge(a0.length, at) && !a0.some(unhashable)) {
          return new FrozenSet(a0);
        }
      } else if (func === G_CODECS_ENCODE) {
        // CPython protocols 0-2 write bytes as _codecs.encode(str, 'latin1')
        if (
          args.length === 2 &&
          typeof a0 === 'string' &&
          isLatin1Name(args[1]) &&
          this.charge(a0.length, at)
        ) {
          const b = latin1Bytes(a0, new Uint8Array(a0.length));
          if (b !== null) return b;
        }
      } else if (func === G_BUILTINS_BYTEARRAY || func === G_BUILTIN_BYTEARRAY) {
        if (args.length === 0) return new ByteArray(0);
        if (
          args.length === 1 &&
          a0 instanceof Uint8Array &&
          !(a0 instanceof ByteArray) &&
          this.charge(a0.length, at)
        ) {
          return ByteArray.fromBytes(a0);
        }
        // protocols 0-2: bytearray(str, 'latin-1')
        if (
          args.length === 2 &&
          typeof a0 === 'string' &&
          isLatin1Name(args[1]) &&
          this.charge(a0.length, at)
        ) {
          const b = latin1Bytes(a0, new ByteArray(a0.length));
          if (b !== null) return b;
        }
      } else if (func === G_BUILTINS_BYTES || func === G_BUILTIN_BYTES) {
        if (args.length === 0) return new Uint8Array(0);
      } else if (func === G_ZODBPICKLE_BINARY) {
        if (args.length === 1 && a0 instanceof Uint8Array && !(a0 instanceof ByteArray)) return a0;
      }
    }
    return new PyObject('reduce', func, args);
  }

  /**
   * Counts `n` units of work copying a value the pickle already made (a memoized list into a set, a str into
   * bytes). Each such copy takes a few bytes of pickle (BINGET, REDUCE) however big the value, so without a
   * budget a small pickle could make huge ones; a real pickle copies each value once, well within it.
   */
  private charge(n: number, at: number): true {
    this.copyBudget -= n;
    if (this.copyBudget < 0) {
      this.fail(
        `pickle expands too much: it copies more values than its size allows (${this.data.length} bytes)`,
        at,
      );
    }
    return true;
  }

  private findGlobal(module: string, name: string, at: number): Global {
    if (!this.policy(module, name)) this.fail(`global '${module}.${name}' is forbidden`, at);
    return globalOf(module, name);
  }

  private setItem(target: PickleValue, key: PickleValue, value: PickleValue, at: number): void {
    if (target instanceof Map) {
      if (typeof key === 'object' && unhashable(key)) this.fail(`unhashable dict key ${typeName(key)}`, at);
      target.set(key, value);
    } else if (target instanceof PyObject) {
      // an object of a class we do not know: its __setitem__, not dict hashing, decides what keys it takes
      (target.dictItems ??= []).push([key, value]);
    } else this.fail(`cannot set an item of ${typeName(target)}`, at);
  }

  private memoGet(idx: number): PickleValue | undefined {
    if (idx < this.memoArr.length) return this.memoArr[idx];
    return this.memoMap?.get(idx);
  }

  private memoPut(idx: number, v: PickleValue): void {
    const arr = this.memoArr;
    if (idx < arr.length) {
      if (arr[idx] === undefined) this.memoCount++;
      arr[idx] = v;
      return;
    }
    // grow the array only while it stays dense (at most about twice the entries): sparse indices chosen to
    // make it huge (a 5-byte LONG_BINPUT per 1023 empty slots) go to the Map
    if (idx < arr.length + MEMO_ARRAY_SLACK && idx < 2 * this.memoCount + MEMO_ARRAY_SLACK) {
      const map = this.memoMap;
      while (arr.length < idx) {
        // keep the array packed; move what the Map held for the indices it now covers
        const moved = map !== null ? map.get(arr.length) : undefined;
        if (moved !== undefined) map!.delete(arr.length);
        arr.push(moved as PickleValue);
      }
      if (map !== null && map.has(idx)) map.delete(idx);
      else this.memoCount++;
      arr.push(v);
      return;
    }
    const map = (this.memoMap ??= new Map());
    if (!map.has(idx)) this.memoCount++;
    map.set(idx, v);
  }
}

/** Reads one pickle from `data` (bytes after its STOP are ignored, as Python does). */
export function loads(data: Uint8Array, options?: LoadOptions): PickleValue {
  return new Unpickler(data, options).load();
}

/**
 * The offset just past the STOP of the pickle that starts at `offset`, found by stepping over the opcodes and
 * their arguments without making any values (to split a ZODB record into its class and state pickles). Fails
 * with a PickleError on truncated input or an unknown opcode.
 */
export function pickleEnd(data: Uint8Array, offset = 0): number {
  const end = data.length;
  let pos = offset;
  for (;;) {
    const at = pos;
    if (pos >= end) throw new PickleError('pickle data was truncated (no STOP)', pos);
    const code = data[pos++];
    let n: number; // bytes of argument after the opcode
    switch (code) {
      case op.STOP:
        return pos;
      case op.MARK:
      case op.POP:
      case op.POP_MARK:
      case op.DUP:
      case op.NONE:
      case op.BINPERSID:
      case op.REDUCE:
      case op.APPEND:
      case op.BUILD:
      case op.DICT:
      case op.EMPTY_DICT:
      case op.APPENDS:
      case op.LIST:
      case op.EMPTY_LIST:
      case op.OBJ:
      case op.SETITEM:
      case op.TUPLE:
      case op.EMPTY_TUPLE:
      case op.SETITEMS:
      case op.NEWOBJ:
      case op.TUPLE1:
      case op.TUPLE2:
      case op.TUPLE3:
      case op.NEWTRUE:
      case op.NEWFALSE:
      case op.EMPTY_SET:
      case op.ADDITEMS:
      case op.FROZENSET:
      case op.NEWOBJ_EX:
      case op.STACK_GLOBAL:
      case op.MEMOIZE:
      case op.NEXT_BUFFER:
      case op.READONLY_BUFFER:
        n = 0;
        break;
      case op.BININT1:
      case op.BINGET:
      case op.BINPUT:
      case op.EXT1:
        n = 1;
        break;
      case op.PROTO:
        if (pos >= end) throw new PickleError('pickle data was truncated in PROTO', at);
        if (data[pos] > op.HIGHEST_PROTOCOL)
          throw new PickleError(`unsupported pickle protocol: ${data[pos]}`, at);
        n = 1;
        break;
      case op.BININT2:
      case op.EXT2:
        n = 2;
        break;
      case op.BININT:
      case op.LONG_BINGET:
      case op.LONG_BINPUT:
      case op.EXT4:
        n = 4;
        break;
      case op.BINFLOAT:
      case op.FRAME: // the frame's opcodes follow: step into them
        n = 8;
        break;
      case op.SHORT_BINBYTES:
      case op.SHORT_BINSTRING:
      case op.SHORT_BINUNICODE:
      case op.LONG1:
        if (pos >= end) throw new PickleError(`pickle data was truncated in ${opName(code)}`, at);
        n = 1 + data[pos];
        break;
      case op.BINBYTES:
      case op.BINUNICODE:
        if (pos + 4 > end) throw new PickleError(`pickle data was truncated in ${opName(code)}`, at);
        n = 4 + (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)) + data[pos + 3] * 0x1000000;
        break;
      case op.BINSTRING:
      case op.LONG4: {
        if (pos + 4 > end) throw new PickleError(`pickle data was truncated in ${opName(code)}`, at);
        const len = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24);
        if (len < 0) throw new PickleError(`${opName(code)} pickle has negative byte count`, at);
        n = 4 + len;
        break;
      }
      case op.BINUNICODE8:
      case op.BINBYTES8:
      case op.BYTEARRAY8:
        if (pos + 8 > end) throw new PickleError(`pickle data was truncated in ${opName(code)}`, at);
        n =
          8 +
          (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)) +
          data[pos + 3] * 0x1000000 +
          (data[pos + 4] | (data[pos + 5] << 8) | (data[pos + 6] << 16)) * 0x100000000 +
          data[pos + 7] * 0x100000000000000;
        break;
      case op.INT:
      case op.LONG:
      case op.FLOAT:
      case op.STRING:
      case op.UNICODE:
      case op.PERSID:
      case op.GET:
      case op.PUT: {
        const nl = data.indexOf(0x0a, pos);
        if (nl < 0) throw new PickleError(`pickle data was truncated in ${opName(code)} (no newline)`, at);
        n = nl + 1 - pos;
        break;
      }
      case op.GLOBAL:
      case op.INST: {
        const nl1 = data.indexOf(0x0a, pos);
        const nl2 = nl1 < 0 ? -1 : data.indexOf(0x0a, nl1 + 1);
        if (nl2 < 0) throw new PickleError(`pickle data was truncated in ${opName(code)} (no newline)`, at);
        n = nl2 + 1 - pos;
        break;
      }
      default:
        throw new PickleError(
          `invalid load key, 0x${code.toString(16).padStart(2, '0')} (unknown opcode)`,
          at,
        );
    }
    if (n > end - pos) throw new PickleError(`pickle data was truncated in ${opName(code)}`, at);
    pos += n;
  }
}

// ---- building values ----

function isLatin1Name(v: PickleValue): boolean {
  return v === 'latin1' || v === 'latin-1';
}

function latin1Bytes<T extends Uint8Array>(s: string, out: T): T | null {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return null;
    out[i] = c;
  }
  return out;
}

/** Values Python could not use as a dict key or set member. */
function unhashable(v: PickleValue): boolean {
  if (typeof v !== 'object' || v === null) return false;
  if (Array.isArray(v)) return !(v instanceof Tuple);
  return v instanceof Map || (v instanceof Set && !(v instanceof FrozenSet)) || v instanceof ByteArray;
}

/** Python's type(v).__name__ for a decoded value ('object' for one of a class we do not know). */
export function pyTypeName(v: PickleValue | undefined): string {
  if (v === null || v === undefined) return 'NoneType';
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'number':
    case 'bigint':
      return 'int';
    case 'string':
      return 'str';
  }
  if (v instanceof PyFloat) return 'float';
  if (v instanceof ByteArray) return 'bytearray';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Tuple) return 'tuple';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Map) return 'dict';
  if (v instanceof FrozenSet) return 'frozenset';
  if (v instanceof Set) return 'set';
  if (v instanceof PickleBuffer) return 'PickleBuffer';
  return 'object';
}

/** The kind of a value, for the reader's errors. */
function typeName(v: PickleValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (v instanceof Global) return `global ${v.module}.${v.name}`;
  if (v instanceof PyObject)
    return `object ${v.global ? `${v.global.module}.${v.global.name}` : ''}`.trimEnd();
  if (v instanceof PersistentRef) return 'persistent reference';
  const name = pyTypeName(v);
  return name === 'object' ? 'value' : name;
}

// ---- numbers ----

/** LONG1/LONG4: a little-endian two's complement integer of n bytes. */
function decodeLong(d: Uint8Array, start: number, n: number): number | bigint | null {
  if (n === 0) return 0;
  if (n > MAX_BIGINT_BYTES) return null;
  if (n <= 6) {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + d[start + i];
    if (d[start + n - 1] & 0x80) v -= 2 ** (8 * n);
    return v;
  }
  let v: bigint;
  if (n <= 16) {
    v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(d[start + i]);
  } else {
    const parts: string[] = ['0x'];
    for (let i = n - 1; i >= 0; i--) parts.push(HEX[d[start + i]]);
    v = BigInt(parts.join(''));
  }
  if (d[start + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}
