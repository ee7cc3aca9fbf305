// The value model: what a pickle holds, kept with the distinctions JavaScript would otherwise lose.
//
//   Python            JavaScript
//   None              null
//   True / False      true / false
//   int               number when it is a safe integer, else bigint (readers always give this canonical form;
//                     writers accept either)
//   float             PyFloat (boxed, so that 1.0 stays a float); writers also take a non-integral number
//   str               string (lone surrogates kept, as Python's 'surrogatepass')
//   bytes             Uint8Array (Buffer included); zodbpickle's `binary` is bytes on Python 3
//   bytearray         ByteArray
//   tuple             Tuple (an Array subclass)
//   list              plain Array
//   dict              Map (insertion order kept, any key)
//   set / frozenset   Set / FrozenSet
//   a global          Global (module, name): a class or function named by the pickle, never imported
//   an object         PyObject: what REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ and BUILD made of a class we do not
//                     know, kept so that it pickles back the same way
//   persistent id     PersistentRef (the pid pickled by the persistent_id hook; ZODB's references)

import { PyFloat, pyBytesRepr, pyFloatRepr, pyStrRepr } from './pytext.js';

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyFloat
  | Uint8Array
  | Tuple
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>
  | Global
  | PyObject
  | PersistentRef
  | PickleBuffer;

export type PyDict = Map<PickleValue, PickleValue>;

/** A Python tuple. Build one with `tuple(a, b)` (not `new Tuple(n)`, which makes n holes like Array). */
export class Tuple<T = PickleValue> extends Array<T> {
  // map/filter/slice of a tuple give plain arrays: the result is new data, not a tuple. A data property, not a
  // static getter: V8 (Node 20) cannot optimize any function that does `new Tuple()` when the class has an
  // accessor there (every optimization attempt bails out on a map dependency), which made decoding 5x slower.
  static override readonly [Symbol.species]: ArrayConstructor = Array;
}

// Filled by index: push on an Array subclass is ~15x slower in V8.
export function tuple<T = PickleValue>(...items: NoInfer<T>[]): Tuple<T> {
  return tupleFrom(items);
}

export function tupleFrom<T = PickleValue>(items: ArrayLike<T>): Tuple<T> {
  const t = new Tuple<T>();
  for (let i = 0; i < items.length; i++) t[i] = items[i];
  return t;
}

/** A Python frozenset. */
export class FrozenSet<T = PickleValue> extends Set<T> {}

/** A Python bytearray (mutable bytes). */
export class ByteArray extends Uint8Array {
  static fromBytes(b: Uint8Array): ByteArray {
    const out = new ByteArray(b.length);
    out.set(b);
    return out;
  }
}

/** Out-of-band data of pickle protocol 5 (NEXT_BUFFER), as handed to loads in `buffers`. */
export class PickleBuffer {
  constructor(
    readonly data: Uint8Array,
    readonly readonly: boolean,
  ) {}
}

const globals = new Map<string, Global>();

/** A global named by a pickle (GLOBAL, STACK_GLOBAL, INST): a class or function, never imported. */
export class Global {
  private constructor(
    readonly module: string,
    readonly name: string,
  ) {}

  /** The one Global for module.name, so globals compare with ===. */
  static of(module: string, name: string): Global {
    const key = module + '\n' + name;
    let g = globals.get(key);
    if (!g) {
      g = new Global(module, name);
      globals.set(key, g);
    }
    return g;
  }

  is(module: string, name: string): boolean {
    return this.module === module && this.name === name;
  }

  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

export type ObjectKind = 'reduce' | 'newobj' | 'newobj_ex' | 'obj';

/**
 * An object built by the pickle from a class or callable we do not know, kept whole so it pickles back the
 * same way: `callable(*args)` (REDUCE), `cls.__new__(cls, *args, **kwargs)` (NEWOBJ, NEWOBJ_EX), or a
 * protocol 0/1 instance (INST, OBJ: kind 'obj'); then what was applied to it: APPEND(S) into `listItems`,
 * SETITEM(S) into `dictItems`, BUILD into `state`.
 */
export class PyObject {
  /** The argument of BUILD (`__setstate__` or `__dict__` update); undefined when the pickle had none. */
  state: PickleValue | undefined = undefined;
  listItems: PickleValue[] | null = null;
  dictItems: Array<[PickleValue, PickleValue]> | null = null;

  constructor(
    readonly kind: ObjectKind,
    readonly callable: PickleValue,
    readonly args: Tuple,
    readonly kwargs: PyDict | null = null,
  ) {}

  /** The class or callable when it is a global, else null. */
  get global(): Global | null {
    return this.callable instanceof Global ? this.callable : null;
  }
}

/** A persistent reference: the pid that the pickler's persistent_id hook returned (PERSID, BINPERSID). */
export class PersistentRef {
  constructor(readonly id: PickleValue) {}
}

export function isTuple(v: unknown): v is Tuple {
  return v instanceof Tuple;
}

export function isList(v: unknown): v is PickleValue[] {
  return Array.isArray(v) && !(v instanceof Tuple);
}

export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && !(v instanceof ByteArray);
}

/** Python int from number or bigint, in the canonical form: number when safe, else bigint. */
export function pyInt(v: number | bigint): number | bigint {
  if (typeof v === 'number') return v;
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}

/** Structural equality as Python's == would see it for pickled data, but strict about types (1 != 1.0, tuple != list). */
export function pyEquals(
  a: PickleValue | undefined,
  b: PickleValue | undefined,
  seen = new Map<object, object>(),
): boolean {
  if (a === b) return true;
  if (typeof a === 'number' || typeof a === 'bigint') {
    return (typeof b === 'number' || typeof b === 'bigint') && BigInt(a) === BigInt(b);
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof PyFloat) return b instanceof PyFloat && Object.is(a.value, b.value);
  if (seen.get(a) === b) return true; // cycles: assume equal where we already are comparing
  seen.set(a, b);
  if (a instanceof Uint8Array) {
    if (!(b instanceof Uint8Array) || a instanceof ByteArray !== b instanceof ByteArray) return false;
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
  }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a instanceof Tuple !== b instanceof Tuple || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!pyEquals(a[i], b[i], seen)) return false;
    return true;
  }
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    const ea = [...a];
    const eb = [...b];
    for (let i = 0; i < ea.length; i++) {
      if (!pyEquals(ea[i][0], eb[i][0], seen) || !pyEquals(ea[i][1], eb[i][1], seen)) return false;
    }
    return true;
  }
  if (a instanceof Set) {
    if (!(b instanceof Set) || a instanceof FrozenSet !== b instanceof FrozenSet || a.size !== b.size)
      return false;
    // sets are unordered: every member of a must equal some member of b
    const rest = [...b];
    for (const x of a) {
      const i = rest.findIndex((y) => pyEquals(x, y, seen));
      if (i < 0) return false;
      rest.splice(i, 1);
    }
    return true;
  }
  if (a instanceof Global) return b instanceof Global && a.module === b.module && a.name === b.name;
  if (a instanceof PersistentRef) return b instanceof PersistentRef && pyEquals(a.id, b.id, seen);
  if (a instanceof PickleBuffer) {
    return b instanceof PickleBuffer && a.readonly === b.readonly && pyEquals(a.data, b.data, seen);
  }
  if (a instanceof PyObject) {
    if (!(b instanceof PyObject) || a.kind !== b.kind) return false;
    if (!pyEquals(a.callable, b.callable, seen) || !pyEquals(a.args, b.args, seen)) return false;
    if ((a.kwargs === null) !== (b.kwargs === null)) return false;
    if (a.kwargs && b.kwargs && !pyEquals(a.kwargs, b.kwargs, seen)) return false;
    if ((a.state === undefined) !== (b.state === undefined)) return false;
    if (a.state !== undefined && !pyEquals(a.state, b.state, seen)) return false;
    if (!pyEquals(a.listItems ?? [], b.listItems ?? [], seen)) return false;
    const da = a.dictItems ?? [];
    const db = b.dictItems ?? [];
    if (da.length !== db.length) return false;
    for (let i = 0; i < da.length; i++) {
      if (!pyEquals(da[i][0], db[i][0], seen) || !pyEquals(da[i][1], db[i][1], seen)) return false;
    }
    return true;
  }
  return false;
}

/** Python's repr of a value, for messages and tools; objects we do not know print as their construction. */
export function pyRepr(v: PickleValue | undefined, seen = new Set<object>()): string {
  if (v === undefined) return '<undefined>';
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') return pyStrRepr(v);
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (seen.has(v)) return Array.isArray(v) ? (v instanceof Tuple ? '(...)' : '[...]') : '{...}';
  seen.add(v);
  try {
    if (v instanceof ByteArray) return `bytearray(${pyBytesRepr(v)})`;
    if (v instanceof Uint8Array) return pyBytesRepr(v);
    if (v instanceof Tuple) {
      const items = (v as Tuple).map((x) => pyRepr(x, seen));
      return items.length === 1 ? `(${items[0]},)` : `(${items.join(', ')})`;
    }
    if (Array.isArray(v)) return `[${v.map((x) => pyRepr(x, seen)).join(', ')}]`;
    if (v instanceof Map) {
      return `{${[...v].map(([k, x]) => `${pyRepr(k, seen)}: ${pyRepr(x, seen)}`).join(', ')}}`;
    }
    if (v instanceof FrozenSet) {
      return v.size
        ? `frozenset({${[...(v as FrozenSet)].map((x) => pyRepr(x, seen)).join(', ')}})`
        : 'frozenset()';
    }
    if (v instanceof Set) return v.size ? `{${[...v].map((x) => pyRepr(x, seen)).join(', ')}}` : 'set()';
    if (v instanceof Global) return `<global ${v.module}.${v.name}>`;
    if (v instanceof PersistentRef) return `<persistent ${pyRepr(v.id, seen)}>`;
    if (v instanceof PickleBuffer)
      return `<PickleBuffer ${v.data.length} bytes${v.readonly ? ' readonly' : ''}>`;
    if (v instanceof PyObject) {
      const name =
        v.callable instanceof Global ? `${v.callable.module}.${v.callable.name}` : pyRepr(v.callable, seen);
      const args = v.args.map((x) => pyRepr(x, seen));
      if (v.kwargs)
        for (const [k, x] of v.kwargs)
          args.push(`${typeof k === 'string' ? k : pyRepr(k, seen)}=${pyRepr(x, seen)}`);
      let out = `${name}(${args.join(', ')})`;
      if (v.listItems) out += `.extend(${pyRepr(v.listItems, seen)})`;
      if (v.dictItems) out += `.update(${pyRepr(new Map(v.dictItems), seen)})`;
      if (v.state !== undefined) out += `.__setstate__(${pyRepr(v.state, seen)})`;
      return out;
    }
  } finally {
    seen.delete(v);
  }
  return String(v);
}
