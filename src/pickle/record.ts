// ZODB data records: two pickles back to back, the class metadata then the state (ZODB/serialize.py).
//
// - splitRecord / decodeClassMeta / decodeRecord read a record with the unpickler (one Unpickler for both
//   pickles: ZODB's ObjectWriter dumps them with one Pickler without clearing its memo, so the state pickle
//   may GET what the class metadata put).
// - persistentReferences lists every persistent reference of a record, classified by ZODB's forms.
// - referencesf is ZODB.serialize.referencesf, to the byte: it emulates zodbpickle's C `noload()` (which is
//   what ZODB runs, twice, on one unpickler) with a scanner that builds none of the values it does not need.
// - isZlibRecord / decompressRecord undo zc.zlibstorage's `b'.z' + zlib.compress(record)`.
import { isUtf8 } from 'node:buffer';
import { inflateSync } from 'node:zlib';
import { PickleError } from './errors.js';
import * as op from './opcodes.js';
import { decodeUtf8Strict, escapeDecode, parseIntText, rawUnicodeEscapeDecode } from './text.js';
import { pyStrRepr } from './pytext.js';
import { pickleEnd, Unpickler, type LoadOptions } from './unpickler.js';
import {
  Global,
  isBytes,
  isList,
  isTuple,
  PersistentRef,
  pyRepr,
  type PickleValue,
  type Tuple,
} from './values.js';

// ---------------------------------------------------------------------------------------------------------
// Structure

/** The two pickles of a record, as views of `data`. */
export interface RecordParts {
  classMeta: Uint8Array;
  state: Uint8Array;
}

/** Splits a record into its two pickles (views, no copy). PickleError unless `data` is exactly two pickles. */
export function splitRecord(data: Uint8Array): RecordParts {
  if (data.length === 0) throw new PickleError('empty record: a ZODB record is two pickles', 0);
  const end1 = pickleEnd(data, 0);
  if (end1 >= data.length) {
    throw new PickleError('a ZODB record is two pickles (class metadata, state); this is one', end1);
  }
  const end2 = pickleEnd(data, end1);
  if (end2 !== data.length) {
    throw new PickleError(
      `a ZODB record is two pickles; ${data.length - end2} bytes follow the second`,
      end2,
    );
  }
  return { classMeta: data.subarray(0, end1), state: data.subarray(end1, end2) };
}

// ---------------------------------------------------------------------------------------------------------
// Class metadata

/**
 * The class of a record's object, as ZODB's ObjectReader.getClassName / getGhost read it.
 *
 * `form` is how the record wrote it (ZODB/serialize.py's docstring numbers them):
 * - 'class': the class alone (format 1, what ZODB writes for ordinary persistent objects);
 * - 'class-args': `(class, args)`: args are `__getnewargs__()` (format 2), or None (format 5), or
 *   `__getinitargs__()` (format 6, old);
 * - 'names-args': `((module, name), args)` with args None or newargs: instances of persistent classes
 *   (formats 3 and 7) and old records (format 4).
 *
 * `args` is null when the record has none or None. When the class is itself a persistent object (a
 * persistent class stored in the database, ZClasses), `module` and `name` are '' and `classRef` is the
 * reference to it: its name is only in its own record.
 */
export interface ClassMeta {
  module: string;
  name: string;
  args: PickleValue | null;
  form: 'class' | 'class-args' | 'names-args';
  classRef?: PersistentReference;
}

/**
 * Decodes the class metadata (the first pickle only) of a record. `options.persistentLoad` is not used: a
 * persistent class must come back as a PersistentRef to be told apart.
 */
export function decodeClassMeta(data: Uint8Array, options: LoadOptions = {}): ClassMeta {
  const u = new Unpickler(data, { ...options, persistentLoad: undefined });
  return classMetaOf(u.load(), 0);
}

/**
 * ZODB.utils.get_pickle_metadata: [module, class name] of a record's class metadata, read as ZODB reads it
 * (a GLOBAL's two lines split without unpickling; else the first pickle loaded), ['', ''] when it cannot be
 * read, [repr, ''] when it is not a class reference. fsdump prints it; ConflictError's class_name joins it with '.'.
 */
export function getPickleMetadata(data: Uint8Array): [string, string] {
  let d = data;
  if (d[0] === 0x80) d = d.subarray(2); // PROTO n
  const prefix = d[0] === 0x28 && d[1] === 0x63 ? 2 : d[0] === 0x63 ? 1 : 0; // '(c' or 'c': GLOBAL
  if (prefix) {
    const i1 = d.indexOf(0x0a);
    const i2 = i1 < 0 ? -1 : d.indexOf(0x0a, i1 + 1);
    if (i2 < 0) return ['', ''];
    const text = (a: number, b: number): string =>
      Buffer.from(d.buffer, d.byteOffset + a, b - a).toString('utf8');
    return [text(prefix, i1), text(i1 + 1, i2)];
  }
  let info: PickleValue;
  try {
    info = new Unpickler(d).load();
  } catch {
    return ['', ''];
  }
  // Python's unpickler there has no persistent_load: a persistent id is an error
  if (info instanceof PersistentRef) return ['', ''];
  if (isTuple(info)) {
    const first = info[0];
    if (first instanceof PersistentRef) return ['', ''];
    const pair = isTuple(first) ? first : info;
    if (pair.length === 2) return [str(pair[0]) ?? pyRepr(pair[0]), str(pair[1]) ?? pyRepr(pair[1])];
    return ['', ''];
  }
  return [pyRepr(info), ''];
}

function str(v: PickleValue): string | null {
  if (typeof v === 'string') return v;
  // Python 2 records with an unpickler that keeps 8-bit strings as bytes: names are ASCII
  if (isBytes(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1');
  return null;
}

function classMetaOf(meta: PickleValue, offset: number): ClassMeta {
  let klass = meta;
  let args: PickleValue | null = null;
  let form: ClassMeta['form'] = 'class';
  if (isTuple(meta)) {
    // getClassName / getGhost: `klass, args = klass`
    if (meta.length !== 2) {
      throw new PickleError(`class metadata is a tuple of ${meta.length}, not (class, args)`, offset);
    }
    klass = meta[0];
    args = meta[1];
    form = 'class-args';
    if (isTuple(klass)) {
      // the old (module name, class name) reference
      const module = klass.length === 2 ? str(klass[0]) : null;
      const name = klass.length === 2 ? str(klass[1]) : null;
      if (module === null || name === null) {
        throw new PickleError(`class metadata names no class: ${pyRepr(klass)}`, offset);
      }
      return { module, name, args, form: 'names-args' };
    }
  }
  if (klass instanceof Global) return { module: klass.module, name: klass.name, args, form };
  if (klass instanceof PersistentRef) {
    return { module: '', name: '', args, form, classRef: classifyPid(klass.id) };
  }
  throw new PickleError(`class metadata names no class: ${pyRepr(meta)}`, offset);
}

// ---------------------------------------------------------------------------------------------------------
// Whole records

export interface DecodedRecord {
  classMeta: ClassMeta;
  state: PickleValue;
}

/**
 * Decodes both pickles of a record (one unpickler, so the state may refer to the metadata's memo). PickleError
 * unless `data` is exactly two pickles and the first is class metadata. With `options.persistentLoad`, the
 * class metadata of a persistent class (a persistent reference) is recognized only if it returns a
 * PersistentRef.
 */
export function decodeRecord(data: Uint8Array, options: LoadOptions = {}): DecodedRecord {
  const u = new Unpickler(data, options);
  const meta = u.load();
  const end1 = u.position;
  if (end1 >= data.length) {
    throw new PickleError('a ZODB record is two pickles (class metadata, state); this is one', end1);
  }
  const classMeta = classMetaOf(meta, 0);
  const state = u.load();
  if (u.position !== data.length) {
    throw new PickleError(
      `a ZODB record is two pickles; ${data.length - u.position} bytes follow the second`,
      u.position,
    );
  }
  return { classMeta, state };
}

// ---------------------------------------------------------------------------------------------------------
// Persistent references

/**
 * A persistent reference, in one of the forms ZODB writes (ObjectWriter.persistent_id) or reads
 * (ObjectReader._persistent_load):
 * - 'oid': the oid alone (the class has `__getnewargs__`, or a persistent class);
 * - 'oid-class': `(oid, class)`, the class to make the ghost with (`classMeta`, a Global, or a
 *   PersistentRef when the class is itself persistent);
 * - 'weak': `['w', (oid,)]`, a persistent.wref.WeakRef; `['w', (oid, database)]` across databases;
 * - 'weak-legacy': `[oid]`, the old form of a weak reference;
 * - 'cross-db': `['m', (database, oid, class)]`, an object of another database of a multi-database;
 * - 'cross-db-oid': `['n', (database, oid)]`, likewise for a class with `__getnewargs__`;
 * - 'unknown': a persistent id of no ZODB form (ZODB cannot load it); `oid` is empty.
 *
 * `pid` is the persistent id as the pickle holds it.
 */
export interface PersistentReference {
  oid: Uint8Array;
  kind: 'oid' | 'oid-class' | 'weak' | 'weak-legacy' | 'cross-db' | 'cross-db-oid' | 'unknown';
  database?: string;
  classMeta?: PickleValue;
  pid: PickleValue;
}

function oidOf(v: PickleValue | undefined): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  // Python 2 records: oids are 8-bit strings, which Python 3 reads as str when they are ASCII
  if (typeof v !== 'string') return null;
  for (let i = 0; i < v.length; i++) if (v.charCodeAt(i) >= 0x80) return null;
  return Buffer.from(v, 'latin1');
}

function classifyPid(pid: PickleValue): PersistentReference {
  const unknown: PersistentReference = { oid: new Uint8Array(0), kind: 'unknown', pid };
  const bare = oidOf(pid);
  if (bare) return { oid: bare, kind: 'oid', pid };
  if (isTuple(pid)) {
    const oid = oidOf(pid[0]);
    if (!oid || pid.length !== 2) return unknown;
    return { oid, kind: 'oid-class', classMeta: pid[1], pid };
  }
  if (!isList(pid)) return unknown;
  if (pid.length === 1) {
    const oid = oidOf(pid[0]);
    return oid ? { oid, kind: 'weak-legacy', pid } : unknown;
  }
  if (pid.length !== 2 || !isTuple(pid[1])) return unknown;
  const type = pid[0];
  const args: Tuple = pid[1];
  if (type === 'w' && (args.length === 1 || args.length === 2)) {
    const oid = oidOf(args[0]);
    if (!oid) return unknown;
    if (args.length === 1) return { oid, kind: 'weak', pid };
    const database = str(args[1]);
    return database === null ? unknown : { oid, kind: 'weak', database, pid };
  }
  if (type === 'm' && args.length === 3) {
    const database = str(args[0]);
    const oid = oidOf(args[1]);
    if (database === null || !oid) return unknown;
    return { oid, kind: 'cross-db', database, classMeta: args[2], pid };
  }
  if (type === 'n' && args.length === 2) {
    const database = str(args[0]);
    const oid = oidOf(args[1]);
    if (database === null || !oid) return unknown;
    return { oid, kind: 'cross-db-oid', database, pid };
  }
  return unknown;
}

/** Classifies one persistent id (what a PersistentRef holds) by ZODB's forms. */
export function classifyPersistentId(pid: PickleValue): PersistentReference {
  return classifyPid(pid);
}

/**
 * Every persistent reference of a record (both pickles), in pickle order: the order in which the pickle's
 * PERSID/BINPERSID opcodes run, so a reference inside another's persistent id (a persistent class as the
 * class of an (oid, class) reference) comes before it.
 */
export function persistentReferences(data: Uint8Array, options: LoadOptions = {}): PersistentReference[] {
  const out: PersistentReference[] = [];
  const u = new Unpickler(data, {
    ...options,
    persistentLoad: (pid: PickleValue) => {
      out.push(classifyPid(pid));
      return new PersistentRef(pid);
    },
  });
  u.load();
  u.load();
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// referencesf: zodbpickle's noload(), emulated
//
// ZODB.serialize.referencesf runs `noload()` twice on one zodbpickle C Unpickler (ASCII/strict strings,
// protocol 3 at most) with persistent_load = refs.append, then keeps, for each persistent id, pid[0] of a
// tuple, a bytes or str pid itself (str encoded to ASCII), and skips lists (weak and cross-database
// references); anything else fails its asserts. noload() builds what plain data needs (strings, tuples,
// lists, dicts) but pushes None for every global, REDUCE, NEWOBJ, INST, OBJ and EXT, drops BUILD's state,
// and drops items appended or set into None. Persistent ids are reported wherever they are, including
// inside structures it does not build. This scanner tracks exactly what that needs: for a string its bytes
// (as a range of the record) and whether it is ASCII; for a tuple its first item, length and hashability;
// for a list its length; a dict is just a dict. Every error of noload (and of referencesf's asserts) is a
// PickleError here; bytes after the second pickle are ignored, as there.

const K_BYTES = 1;
const K_STR = 2;
const K_TUPLE = 3;
const K_LIST = 4;
const K_DICT = 5;
const K_FLOAT = 6;

/**
 * A value noload() builds that matters to referencesf (None is null, an int a number, a bool a boolean):
 * bytes and str as a range of a buffer (str: `flag` when it is ASCII, the range then being its ASCII bytes);
 * a tuple as its length (`s`), first item and hashability (`flag`); a list as its length (`s`, mutable:
 * lists are shared through the memo); a dict or a float as its kind.
 */
class NV {
  constructor(
    readonly k: number,
    readonly buf: Uint8Array | null,
    public s: number,
    readonly e: number,
    readonly flag: boolean,
    readonly first: Val,
  ) {}
}

type Val = NV | null | number | boolean | undefined;

/** What scanReferences calls for each oid: the oid is buf[start:end]. */
export type OidVisitor = (buf: Uint8Array, start: number, end: number) => void;

const FLOAT_V = new NV(K_FLOAT, null, 0, 0, true, null);
const EMPTY_TUPLE_V = new NV(K_TUPLE, null, 0, 0, true, undefined);

function hashable(v: Val): boolean {
  if (v === null || typeof v !== 'object') return true;
  return v.k !== K_LIST && v.k !== K_DICT && (v.k !== K_TUPLE || v.flag);
}

const td = new TextDecoder('latin1');

function fail(message: string, offset: number): never {
  throw new PickleError(`referencesf: ${message}`, offset);
}

/**
 * zodbpickle's noload(), run twice on one record (one memo), reporting oids as referencesf keeps them.
 * The stack is an array with its own top (`sp`), marks likewise, as the C unpickler's Pdata.
 */
class NoloadScanner {
  data: Uint8Array = new Uint8Array(0);
  stack: Val[] = [];
  sp = 0;
  high = 0; // highest sp used, to clear the stack after a record
  marks: number[] = [];
  nm = 0;
  memo: Val[] = [];
  visit: OidVisitor = () => {};

  scan(data: Uint8Array, visit: OidVisitor): void {
    this.data = data;
    this.visit = visit;
    this.memo = [];
    try {
      this.run(this.run(0));
    } finally {
      // drop what the values point to (the record) before the scanner waits in the pool
      this.stack.fill(null, 0, this.high);
      this.high = 0;
      this.memo = [];
      this.data = EMPTY;
      this.visit = noVisit;
    }
  }

  private underflow(at: number): never {
    fail('unpickling stack underflow', at);
  }

  private marker(at: number): number {
    if (this.nm === 0) fail('could not find MARK', at);
    return this.marks[--this.nm];
  }

  /** The index of the '\n' that ends the line at pos (a line without one fails later in noload anyway). */
  private lineEnd(pos: number, at: number): number {
    const nl = this.data.indexOf(0x0a, pos);
    if (nl < 0) fail('pickle data was truncated (no end of line)', at);
    return nl;
  }

  private text(s: number, e: number): string {
    return td.decode(this.data.subarray(s, e));
  }

  /** Pdata_poptuple(start) then push */
  private tuple(i: number, at: number): void {
    const stack = this.stack;
    const sp = this.sp;
    if (i > sp) fail('bad argument to internal function (mark above the stack)', at);
    let h = true;
    for (let j = i; j < sp; j++) {
      const v = stack[j];
      if (v !== null && typeof v === 'object' && !hashable(v)) {
        h = false;
        break;
      }
    }
    stack[i] = sp === i ? EMPTY_TUPLE_V : new NV(K_TUPLE, null, sp - i, 0, h, stack[i]);
    this.sp = i + 1;
  }

  /** do_noload_append */
  private append(x: number, at: number): void {
    const len = this.sp;
    if (!(len >= x && x > 0)) this.underflow(at);
    if (len === x) return;
    const list = this.stack[x - 1];
    if (list instanceof NV && list.k === K_LIST) list.s += len - x;
    else if (list !== null) fail('APPEND to an object that has no append (AttributeError)', at);
    this.sp = x;
  }

  /** do_noload_setitems */
  private setitems(x: number, at: number): void {
    const len = this.sp;
    const stack = this.stack;
    if (!(len >= x && x > 0)) this.underflow(at);
    const target = stack[x - 1];
    if (target === null || len === x) {
      this.sp = x;
      return;
    }
    if ((len - x) % 2 !== 0) fail('odd number of items for SETITEMS', at);
    this.sp = x;
    for (let i = x + 1; i < len; i += 2) {
      const key = stack[i - 1];
      if (target instanceof NV && target.k === K_DICT) {
        if (!hashable(key)) fail('unhashable dict key (TypeError)', at);
      } else if (target instanceof NV && target.k === K_LIST) {
        // list[key] = value
        if (typeof key !== 'number' && typeof key !== 'boolean')
          fail('list indices must be integers (TypeError)', at);
        const idx = Number(key);
        if (idx >= target.s || idx < -target.s) fail('list assignment index out of range (IndexError)', at);
      } else {
        fail('SETITEM on an object that does not support item assignment (TypeError)', at);
      }
    }
  }

  /** referencesf's treatment of one persistent id: tuple -> pid[0]; bytes/str -> itself; list -> skipped. */
  private report(pid: Val, at: number): void {
    let oid: Val = pid;
    if (pid instanceof NV) {
      if (pid.k === K_LIST) return;
      if (pid.k === K_TUPLE) {
        if (pid.s === 0) fail('a persistent id is an empty tuple (IndexError)', at);
        oid = pid.first;
      } else if (pid.k !== K_BYTES && pid.k !== K_STR) {
        fail('a persistent id is neither an oid, a tuple nor a list (AssertionError)', at);
      }
    } else {
      fail(`a persistent id is ${pid === null ? 'None' : typeof pid} (AssertionError)`, at);
    }
    if (!(oid instanceof NV) || (oid.k !== K_BYTES && oid.k !== K_STR)) {
      fail('the oid of a persistent id is neither bytes nor str (AssertionError)', at);
    }
    if (oid.k === K_STR && !oid.flag) fail('an oid is a str that is not ASCII (UnicodeEncodeError)', at);
    this.visit(oid.buf!, oid.s, oid.e);
  }

  /** One noload() from `start`; returns the offset past its STOP. */
  private run(start: number): number {
    const data = this.data;
    const n = data.length;
    const stack = this.stack;
    const marks = this.marks;
    const memo = this.memo;
    let sp = 0; // the stack top is kept in a local; this.sp is synced around the helper methods
    this.nm = 0;
    let pos = start;
    let at: number;
    try {
      for (;;) {
        at = pos;
        if (pos >= n) fail('Ran out of input (EOFError)', at);
        const code = data[pos++];
        switch (code) {
          case op.BINUNICODE: {
            if (pos + 4 > n) break;
            const len =
              (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)) + data[pos + 3] * 0x1000000;
            pos += 4;
            const e = pos + len;
            if (e > n) break;
            let ascii = true;
            for (let i = pos; i < e; i++) {
              if (data[i] >= 0x80) {
                ascii = false;
                checkUtf8(data, i, e);
                break;
              }
            }
            stack[sp++] = new NV(K_STR, data, pos, e, ascii, null);
            pos = e;
            continue;
          }
          case op.SHORT_BINBYTES: {
            if (pos >= n) break;
            const e = pos + 1 + data[pos];
            if (e > n) break;
            stack[sp++] = new NV(K_BYTES, data, pos + 1, e, false, null);
            pos = e;
            continue;
          }
          case op.BINBYTES: {
            if (pos + 4 > n) break;
            const len =
              (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)) + data[pos + 3] * 0x1000000;
            pos += 4;
            const e = pos + len;
            if (e > n) break;
            stack[sp++] = new NV(K_BYTES, data, pos, e, false, null);
            pos = e;
            continue;
          }
          case op.BINPUT:
            if (pos >= n) break;
            if (sp === 0) this.underflow(at);
            memo[data[pos++]] = stack[sp - 1];
            continue;
          case op.BINGET: {
            if (pos >= n) break;
            const v = memo[data[pos]];
            if (v === undefined) fail(`memo key ${data[pos]} not found (KeyError)`, at);
            pos++;
            stack[sp++] = v;
            continue;
          }
          case op.LONG_BINPUT: {
            if (pos + 4 > n) break;
            if (sp === 0) this.underflow(at);
            const idx =
              (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)) + data[pos + 3] * 0x1000000;
            pos += 4;
            memo[idx] = stack[sp - 1];
            continue;
          }
          case op.LONG_BINGET: {
            if (pos + 4 > n) break;
            const idx =
              (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16)) + data[pos + 3] * 0x1000000;
            const v = memo[idx];
            if (v === undefined) fail(`memo key ${idx} not found (KeyError)`, at);
            pos += 4;
            stack[sp++] = v;
            continue;
          }
          case op.MARK:
            marks[this.nm++] = sp;
            continue;
          case op.TUPLE1:
          case op.TUPLE2:
          case op.TUPLE3: {
            const len = code - op.TUPLE1 + 1;
            if (sp < len) fail('bad pickle data (pop from an empty stack)', at);
            this.sp = sp;
            this.tuple(sp - len, at);
            sp = this.sp;
            continue;
          }
          case op.EMPTY_TUPLE:
            stack[sp++] = EMPTY_TUPLE_V;
            continue;
          case op.TUPLE:
            this.sp = sp;
            this.tuple(this.marker(at), at);
            sp = this.sp;
            continue;
          case op.BINPERSID:
            if (sp === 0) fail('bad pickle data (pop from an empty stack)', at);
            this.report(stack[sp - 1], at);
            stack[sp - 1] = null;
            continue;
          case op.NONE:
            stack[sp++] = null;
            continue;
          case op.BININT1:
            if (pos >= n) break;
            stack[sp++] = data[pos++];
            continue;
          case op.BININT2:
            if (pos + 2 > n) break;
            stack[sp++] = data[pos] | (data[pos + 1] << 8);
            pos += 2;
            continue;
          case op.BININT:
            if (pos + 4 > n) break;
            stack[sp++] = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24);
            pos += 4;
            continue;
          case op.LONG1:
          case op.LONG4: {
            let len: number;
            if (code === op.LONG1) {
              if (pos >= n) break;
              len = data[pos++];
            } else {
              if (pos + 4 > n) break;
              len = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24);
              pos += 4;
              if (len < 0) fail('LONG pickle has negative byte count', at);
            }
            if (pos + len > n) break;
            stack[sp++] = longValue(data, pos, len);
            pos += len;
            continue;
          }
          case op.BINFLOAT:
            if (pos + 8 > n) break;
            pos += 8;
            stack[sp++] = FLOAT_V;
            continue;
          case op.NEWTRUE:
            stack[sp++] = true;
            continue;
          case op.NEWFALSE:
            stack[sp++] = false;
            continue;
          case op.EMPTY_LIST:
            stack[sp++] = new NV(K_LIST, null, 0, 0, false, null);
            continue;
          case op.EMPTY_DICT:
            stack[sp++] = new NV(K_DICT, null, 0, 0, false, null);
            continue;
          case op.APPEND:
            this.sp = sp;
            this.append(sp - 1, at);
            sp = this.sp;
            continue;
          case op.APPENDS:
            this.sp = sp;
            this.append(this.nm > 0 ? this.marks[--this.nm] : -1, at);
            sp = this.sp;
            continue;
          case op.SETITEM:
            this.sp = sp;
            this.setitems(sp - 2, at);
            sp = this.sp;
            continue;
          case op.SETITEMS:
            this.sp = sp;
            this.setitems(this.nm > 0 ? this.marks[--this.nm] : -1, at);
            sp = this.sp;
            continue;
          case op.GLOBAL:
            pos = this.lineEnd(pos, at) + 1;
            pos = this.lineEnd(pos, at) + 1;
            stack[sp++] = null;
            continue;
          case op.REDUCE:
            if (sp < 2) this.underflow(at);
            stack[--sp - 1] = null;
            continue;
          case op.NEWOBJ:
            if (sp < 2) fail('bad pickle data (pop from an empty stack)', at);
            stack[--sp - 1] = null;
            continue;
          case op.BUILD:
            if (sp < 1) this.underflow(at);
            sp--;
            continue;
          case op.STOP:
            if (sp === 0) fail('bad pickle data (STOP with an empty stack)', at);
            return pos;
          case op.PROTO:
            if (pos >= n) break;
            if (data[pos] > 3)
              fail(`unsupported pickle protocol: ${data[pos]} (zodbpickle reads 3 at most)`, at);
            pos++;
            continue;
          case op.SHORT_BINSTRING:
          case op.BINSTRING: {
            // Python 2 str, decoded as ASCII (strict)
            let len: number;
            if (code === op.SHORT_BINSTRING) {
              if (pos >= n) break;
              len = data[pos++];
            } else {
              if (pos + 4 > n) break;
              len = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24);
              pos += 4;
              if (len < 0) fail('BINSTRING pickle has negative byte count', at);
            }
            const e = pos + len;
            if (e > n) break;
            for (let i = pos; i < e; i++) {
              if (data[i] >= 0x80)
                fail(`'ascii' codec can't decode byte 0x${data[i].toString(16)} (UnicodeDecodeError)`, i);
            }
            stack[sp++] = new NV(K_STR, data, pos, e, true, null);
            pos = e;
            continue;
          }
          case op.LIST: {
            const i = this.marker(at);
            if (i > sp) fail('bad argument to internal function (mark above the stack)', at);
            stack[i] = new NV(K_LIST, null, sp - i, 0, false, null);
            sp = i + 1;
            continue;
          }
          case op.DICT: {
            const i = this.marker(at);
            for (let k = i + 1; k < sp; k += 2) {
              if (!hashable(stack[k - 1])) fail('unhashable dict key (TypeError)', at);
            }
            if (i < sp) sp = i;
            stack[sp++] = new NV(K_DICT, null, 0, 0, false, null);
            continue;
          }
          case op.OBJ: {
            const i = this.marker(at) + 1;
            if (i < sp) sp = i;
            continue;
          }
          case op.INST: {
            const i = this.marker(at);
            if (i < sp) sp = i;
            pos = this.lineEnd(pos, at) + 1;
            pos = this.lineEnd(pos, at) + 1;
            stack[sp++] = null;
            continue;
          }
          case op.POP:
            if (this.nm > 0 && marks[this.nm - 1] === sp) this.nm--;
            else if (sp > 0) sp--;
            else this.underflow(at);
            continue;
          case op.POP_MARK: {
            const i = this.marker(at);
            if (i < sp) sp = i;
            continue;
          }
          case op.DUP:
            if (sp <= 0) this.underflow(at);
            stack[sp] = stack[sp - 1];
            sp++;
            continue;
          case op.EXT1:
          case op.EXT2:
          case op.EXT4: {
            const w = code === op.EXT1 ? 1 : code === op.EXT2 ? 2 : 4;
            if (pos + w > n) break;
            pos += w;
            stack[sp++] = null;
            continue;
          }
          case op.INT:
          case op.LONG:
          case op.FLOAT:
          case op.GET:
          case op.PUT: {
            const nl = this.lineEnd(pos, at);
            let s = this.text(pos, nl + 1);
            pos = nl + 1;
            if (s.length < 2) fail('pickle data was truncated', at);
            if (code === op.INT) {
              stack[sp++] = parseIntLine(s, at);
            } else if (code === op.LONG) {
              if (s[s.length - 2] === 'L') s = s.slice(0, -2);
              stack[sp++] = parsePyLong(s, 0, at);
            } else if (code === op.FLOAT) {
              checkFloatLine(s, at);
              stack[sp++] = FLOAT_V;
            } else if (code === op.GET) {
              const idx = parsePyLong(s, 10, at);
              const v = idx >= 0 ? memo[idx] : undefined;
              if (v === undefined) fail(`memo key ${idx} not found (KeyError)`, at);
              stack[sp++] = v;
            } else {
              if (sp === 0) this.underflow(at);
              const idx = parsePyLong(s, 10, at);
              if (idx < 0) fail('negative PUT argument', at);
              memo[idx] = stack[sp - 1];
            }
            continue;
          }
          case op.STRING: {
            const nl = this.lineEnd(pos, at);
            const bytes = decodeStringLine(data.subarray(pos, nl + 1), at);
            pos = nl + 1;
            for (let i = 0; i < bytes.length; i++) {
              if (bytes[i] >= 0x80)
                fail(`'ascii' codec can't decode byte 0x${bytes[i].toString(16)} (UnicodeDecodeError)`, at);
            }
            stack[sp++] = new NV(K_STR, bytes, 0, bytes.length, true, null);
            continue;
          }
          case op.UNICODE: {
            const nl = this.lineEnd(pos, at);
            const [bytes, ascii] = rawUnicodeEscape(data.subarray(pos, nl), at);
            pos = nl + 1;
            stack[sp++] = new NV(K_STR, bytes, 0, bytes.length, ascii, null);
            continue;
          }
          case op.PERSID: {
            const nl = this.lineEnd(pos, at);
            if (nl + 1 - pos < 2) fail('pickle data was truncated', at);
            // zodbpickle passes the line's bytes, undecoded
            this.report(new NV(K_BYTES, data, pos, nl, false, null), at);
            pos = nl + 1;
            stack[sp++] = null;
            continue;
          }
          default:
            fail(`invalid load key, 0x${code.toString(16).padStart(2, '0')}`, at);
        }
        // the cases that break out of the switch ran out of input
        fail('pickle data was truncated (EOFError)', at);
      }
    } finally {
      if (sp > this.high) this.high = sp;
      if (this.stack.length > this.high) this.high = this.stack.length;
    }
  }
}

const EMPTY = new Uint8Array(0);
const noVisit: OidVisitor = () => {};
let pool: NoloadScanner | null = null;

/**
 * Calls `visit(buf, start, end)` for each oid that ZODB.serialize.referencesf would return for the record, in
 * its order (the oid is buf[start:end]; buf is the record itself unless the oid needed decoding). A
 * PickleError where referencesf raises. For callers that want the oids in their own form (pack's GC).
 */
export function scanReferences(data: Uint8Array, visit: OidVisitor): void {
  // one scanner at a time is pooled (visit may itself call scanReferences)
  const s = pool ?? new NoloadScanner();
  pool = null;
  try {
    s.scan(data, visit);
  } finally {
    pool = s;
  }
}

/**
 * ZODB.serialize.referencesf: the oids of the ordinary references of a record, in order, with duplicates;
 * weak and cross-database references are left out. Appends to `oids` when given, and returns it.
 */
export function referencesf(data: Uint8Array, oids: Uint8Array[] = []): Uint8Array[] {
  scanReferences(data, (buf, s, e) => {
    const oid = new Uint8Array(e - s);
    for (let i = 0; i < oid.length; i++) oid[i] = buf[s + i];
    oids.push(oid);
  });
  return oids;
}

// C strtol(s, &end, 0) accepting the whole line (or up to a NUL)
const STRTOL = /^[ \t\n\v\f\r]*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)(?:\n|\0|$)/;

function parsePyLong(s: string, base: 0 | 10, at: number): number {
  const nul = s.indexOf('\0');
  const v = parseIntText(nul >= 0 ? s.slice(0, nul) : s, base === 0);
  if (v === null) fail(`invalid literal for int() with base ${base}: ${pyStrRepr(s)}`, at);
  if (typeof v === 'string') fail(v, at);
  return Number(v);
}

function parseIntLine(s: string, at: number): number {
  // load_int: strtol base 0, else PyLong_FromString base 0 (a bool for "00"/"01", which acts as an int here)
  if (STRTOL.test(s)) {
    const body = s.split(/[\n\0]/)[0].trim();
    const neg = body.startsWith('-');
    const b = body.replace(/^[+-]/, '');
    const v = /^0[xX]/.test(b) ? parseInt(b.slice(2), 16) : /^0[0-7]+$/.test(b) ? parseInt(b, 8) : Number(b);
    return neg ? -v : v;
  }
  return parsePyLong(s, 0, at);
}

function longValue(data: Uint8Array, pos: number, len: number): number {
  // little-endian two's complement; only its rough value matters here (a list index)
  if (len === 0) return 0;
  let v = 0;
  for (let i = len - 1; i >= 0; i--) v = v * 256 + data[pos + i];
  if (data[pos + len - 1] >= 0x80) v -= 2 ** (8 * len);
  return v;
}

const FLOAT_LINE = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)(?:\n|\0)/i;

function checkFloatLine(s: string, at: number): void {
  // PyOS_string_to_double: a float, then '\n' or NUL; overflow is an error
  const m = FLOAT_LINE.exec(s);
  if (!m) fail(`could not convert string to float: ${pyStrRepr(s)}`, at);
  const body = m[0].slice(0, -1);
  if (!/inf|nan/i.test(body) && !Number.isFinite(Number(body))) fail('float overflow (OverflowError)', at);
}

/** load_string: strip trailing whitespace, require matching quotes, then Python's bytes escapes. */
function decodeStringLine(raw: Uint8Array, at: number): Uint8Array {
  let len = raw.length;
  if (len < 2) fail('pickle data was truncated', at);
  while (len > 0 && raw[len - 1] <= 0x20) len--;
  const q = raw[0];
  if (!(len > 1 && (q === 0x22 || q === 0x27) && raw[len - 1] === q)) fail('insecure string pickle', at);
  const out = escapeDecode(raw, 1, len - 1);
  if (typeof out === 'string') fail(out, at);
  return out;
}

/** raw-unicode-escape text as the scanner keeps it: its bytes when it is all ASCII, and whether it is. */
function rawUnicodeEscape(raw: Uint8Array, at: number): [Uint8Array, boolean] {
  if (raw.indexOf(0x5c) < 0) {
    let ascii = true;
    for (let i = 0; i < raw.length; i++) if (raw[i] >= 0x80) ascii = false;
    return [raw, ascii];
  }
  const s = rawUnicodeEscapeDecode(raw, 0, raw.length);
  if (s === null) fail('truncated or out of range \\uXXXX escape (UnicodeDecodeError)', at);
  let ascii = true;
  for (let i = 0; i < s.length && ascii; i++) ascii = s.charCodeAt(i) < 0x80;
  return [ascii ? Buffer.from(s, 'latin1') : new Uint8Array(0), ascii];
}

/** UTF-8 as Python decodes it with 'surrogatepass' (encoded surrogates allowed), from `i` to `e`. */
function checkUtf8(data: Uint8Array, i: number, e: number): void {
  let j = i;
  while (j < e && data[j] < 0x80) j++;
  if (j === e || isUtf8(data.subarray(j, e))) return;
  if (decodeUtf8Strict(data, j, e, true) === null) fail("'utf-8' codec can't decode (UnicodeDecodeError)", i);
}

// ---------------------------------------------------------------------------------------------------------
// zc.zlibstorage

/** True for a record compressed by zc.zlibstorage: b'.z' + zlib.compress(record). */
export function isZlibRecord(data: Uint8Array): boolean {
  return data.length >= 2 && data[0] === 0x2e && data[1] === 0x7a;
}

/**
 * The record inside a zc.zlibstorage record; other records as they are. (zc.zlibstorage's pack gives the
 * storage a referencesf that decompresses first; referencesf here, like ZODB's, takes the plain record.)
 */
export function decompressRecord(data: Uint8Array, maxOutputLength?: number): Uint8Array {
  if (!isZlibRecord(data)) return data;
  try {
    // a bound for readers that must not inflate a zlib bomb (a few KB can inflate to gigabytes)
    return new Uint8Array(inflateSync(data.subarray(2), maxOutputLength ? { maxOutputLength } : undefined));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new PickleError(`zc.zlibstorage record inflates past ${maxOutputLength} bytes`, 2);
    }
    throw new PickleError(`bad zc.zlibstorage record: ${(e as Error).message}`, 2);
  }
}
