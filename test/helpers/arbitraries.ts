// fast-check arbitraries for the pickle value model, restricted to values Python can load and pickle back:
// dict keys and set members are hashable (str, int, bytes, None and tuples of those) and distinct as Python
// sees them; globals and objects name things Python resolves harmlessly (the stdlib, or the echo classes of
// test/fixtures/python/zeots_fixtures.py, which pickle back exactly as they were built).
import fc from 'fast-check';
import {
  ByteArray,
  FrozenSet,
  Global,
  PersistentRef,
  PyFloat,
  PyObject,
  pyInt,
  pyRepr,
  tupleFrom,
  type PickleValue,
} from '../../src/pickle/index.js';

// ZEO_TS_FC_SEED=N replays a failing property run (the seed is in its failure message).
if (process.env.ZEO_TS_FC_SEED) fc.configureGlobal({ seed: Number(process.env.ZEO_TS_FC_SEED) });

export const FIXTURES_MODULE = 'zeots_fixtures';

/** Python ints: small, 1/2/4-byte boundaries, safe integers, and bigints far past 2^64, both signs. */
export const pyIntArb: fc.Arbitrary<number | bigint> = fc.oneof(
  fc.integer({ min: -300, max: 300 }),
  fc.constantFrom(
    0,
    255,
    256,
    65535,
    65536,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 31,
    -(2 ** 31) - 1,
    2 ** 32,
    -128,
    -129,
  ),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }).map((v) => pyInt(v)),
  fc.bigInt({ min: -(2n ** 2200n), max: 2n ** 2200n }).map((v) => pyInt(v)),
);

/** Python floats, boxed: -0.0, NaN and the infinities included. */
export const pyFloatArb: fc.Arbitrary<PyFloat> = fc
  .oneof(fc.double(), fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 1, 0.5, 5e-324, 1e300))
  .map((x) => new PyFloat(x));

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

/** Python str: ASCII, Latin-1 (the shared one-character strings), BMP, astral characters and lone surrogates. */
export const pyStrArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.constantFrom('', 'a', 'é', '\x00', 'ÿ', 'Ā', 'latin1', '__new__') },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 48, maxLength: 200 }) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.oneof(fc.string({ unit: 'binary', maxLength: 4 }), loneSurrogate), { maxLength: 30 })
      .map((parts) => parts.join('')),
  },
);

export const pyBytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 3 }),
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ minLength: 250, maxLength: 300 }),
);

/** Hashable values that Python compares as JS does (no bools or floats: True == 1 and 1.0 == 1 in Python). */
export const hashableArb: fc.Arbitrary<PickleValue> = fc.letrec<{ h: PickleValue }>((tie) => ({
  h: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    pyStrArb,
    pyIntArb,
    pyBytesArb,
    fc.constant(null),
    fc.array(tie('h'), { maxLength: 3 }).map((xs) => tupleFrom(xs)),
  ),
})).h;

/** Distinct as Python sees them (pyRepr is injective on hashable values). */
const uniqueHashables = (maxLength: number) =>
  fc.uniqueArray(hashableArb, { maxLength, selector: (k) => pyRepr(k) });

export const GLOBALS: Global[] = [
  Global.of('collections', 'OrderedDict'),
  Global.of('builtins', 'len'),
  Global.of('builtins', 'set'),
  Global.of('builtins', 'str'),
  Global.of('datetime', 'date'),
  Global.of(FIXTURES_MODULE, 'EchoReduce'),
  Global.of(FIXTURES_MODULE, '_Echo.append'), // a dotted name: getattr(_Echo, 'append') below protocol 4
];

/** datetime.date(y, m, d) as Python pickles it: reduce(date, (4 state bytes,)). */
const dateArb = fc
  .record({
    year: fc.integer({ min: 1, max: 9999 }),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 28 }),
  })
  .map(({ year, month, day }) => {
    return new PyObject(
      'reduce',
      Global.of('datetime', 'date'),
      tupleFrom([Buffer.of(year >> 8, year & 0xff, month, day)]),
    );
  });

export interface ValueArbOptions {
  /** Include sets and frozensets (Python may reorder their members: their pickles are not canonical). */
  sets?: boolean;
  /** Include PyObjects of kind 'obj' (Python pickles the object back with REDUCE, never OBJ). */
  objKind?: boolean;
  /** Include containers shared twice, and lists/dicts/objects that contain themselves. */
  sharing?: boolean;
  /** Include PersistentRefs. */
  persistentRefs?: boolean;
  /** The globals to draw from (default GLOBALS). */
  globals?: Global[];
  /** Nesting depth bias (fast-check's depthSize). */
  depthSize?: fc.DepthSize;
}

/** The value model, as Python can load it. */
export function valueArb(options: ValueArbOptions = {}): fc.Arbitrary<PickleValue> {
  const {
    sets = true,
    objKind = true,
    sharing = true,
    persistentRefs = true,
    depthSize = 'small',
    globals = GLOBALS,
  } = options;
  return fc.letrec<{ value: PickleValue; container: PickleValue; object: PickleValue }>((tie) => {
    const value = tie('value');
    const scalar: Array<fc.Arbitrary<PickleValue>> = [
      fc.constant(null),
      fc.boolean(),
      pyIntArb,
      pyFloatArb,
      pyStrArb,
      pyBytesArb,
      pyBytesArb.map((b) => ByteArray.fromBytes(b)),
      fc.constantFrom(...globals),
    ];
    if (persistentRefs) {
      const pid = fc.oneof(
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc
          .tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.constantFrom(...globals, null))
          .map((t) => tupleFrom(t)),
      );
      scalar.push(pid.map((p) => new PersistentRef(p)));
    }
    const containers: Array<fc.Arbitrary<PickleValue>> = [
      fc.array(value, { maxLength: 5 }).map((xs) => tupleFrom(xs)),
      fc.array(value, { maxLength: 5 }),
      fc
        .tuple(uniqueHashables(5), fc.array(value, { minLength: 5, maxLength: 5 }))
        .map(([keys, vals]) => new Map(keys.map((k, i) => [k, vals[i]]))),
    ];
    if (sets) {
      containers.push(uniqueHashables(5).map((xs) => new Set(xs)));
      containers.push(uniqueHashables(5).map((xs) => new FrozenSet(xs)));
    }
    if (sharing) {
      // the same container twice (BINGET), and containers holding themselves
      containers.push(fc.array(value, { maxLength: 3 }).map((xs) => [xs, tupleFrom([xs]), xs]));
      containers.push(
        fc.array(value, { maxLength: 3 }).map((xs) => {
          const l: PickleValue[] = [...xs];
          l.push(l);
          return l;
        }),
      );
      containers.push(
        fc.tuple(hashableArb, value).map(([k, v]) => {
          const d = new Map<PickleValue, PickleValue>([[k, v]]);
          d.set(typeof k === 'string' ? k + '!' : 'self', d);
          return d;
        }),
      );
    }
    return {
      value: fc.oneof(
        { depthSize, withCrossShrink: true },
        { arbitrary: fc.oneof(...scalar), weight: 4 },
        { arbitrary: tie('container'), weight: 3 },
        { arbitrary: tie('object'), weight: 2 },
      ),
      container: fc.oneof(...containers),
      object: objectArb(value, { objKind, sharing }),
    };
  }).value;
}

const identifier = fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/);

function objectArb(
  value: fc.Arbitrary<PickleValue>,
  { objKind, sharing }: { objKind: boolean; sharing: boolean },
): fc.Arbitrary<PickleValue> {
  const extras = fc.record({
    // state is never None: Python's save_reduce writes no BUILD for a None state
    state: fc.option(
      value.filter((v) => v !== null),
      { nil: undefined },
    ),
    listItems: fc.option(fc.array(value, { maxLength: 4 }), { nil: null }),
    // keys hashable: our loads, like a dict, refuses unhashable SETITEM keys even on objects
    dictItems: fc.option(fc.array(fc.tuple(hashableArb, value), { maxLength: 3 }), { nil: null }),
    selfState: fc.boolean(),
  });
  const kinds: Array<fc.Arbitrary<PyObject>> = [
    fc
      .tuple(fc.array(value, { maxLength: 3 }), extras)
      .map(([args, x]) =>
        withExtras(
          new PyObject('reduce', Global.of(FIXTURES_MODULE, 'EchoReduce'), tupleFrom(args)),
          x,
          sharing,
        ),
      ),
    fc
      .tuple(fc.array(value, { maxLength: 4 }), extras)
      .map(([args, x]) =>
        withExtras(
          new PyObject('newobj', Global.of(FIXTURES_MODULE, 'EchoNewObj'), tupleFrom(args)),
          x,
          sharing,
        ),
      ),
    fc
      .tuple(
        fc.array(value, { maxLength: 3 }),
        fc.uniqueArray(fc.tuple(identifier, value), { maxLength: 3, selector: (kv) => kv[0] }),
        extras,
      )
      .map(([args, kwargs, x]) =>
        withExtras(
          new PyObject(
            'newobj_ex',
            Global.of(FIXTURES_MODULE, 'EchoNewObjEx'),
            tupleFrom(args),
            new Map(kwargs),
          ),
          x,
          sharing,
        ),
      ),
    dateArb,
    // OrderedDict: reduce(OrderedDict, ()) then its items by SETITEMS
    fc.tuple(uniqueHashables(4), fc.array(value, { minLength: 4, maxLength: 4 })).map(([keys, vals]) => {
      const o = new PyObject('reduce', Global.of('collections', 'OrderedDict'), tupleFrom([]));
      o.dictItems = keys.map((k, i) => [k, vals[i]]);
      return o;
    }),
  ];
  if (objKind) {
    // OBJ builds EchoReduce(*args): at least one argument, else Python calls __new__ alone
    kinds.push(
      fc
        .tuple(fc.array(value, { minLength: 1, maxLength: 3 }), extras)
        .map(([args, x]) =>
          withExtras(
            new PyObject('obj', Global.of(FIXTURES_MODULE, 'EchoReduce'), tupleFrom(args)),
            x,
            sharing,
          ),
        ),
    );
  }
  return fc.oneof(...kinds);
}

function withExtras(
  o: PyObject,
  x: {
    state: PickleValue | undefined;
    listItems: PickleValue[] | null;
    dictItems: Array<[PickleValue, PickleValue]> | null;
    selfState: boolean;
  },
  sharing: boolean,
): PyObject {
  o.state = x.state;
  o.listItems = x.listItems;
  o.dictItems = x.dictItems;
  // an object whose state refers back to it (memoized before its state is written)
  if (sharing && x.selfState) o.state = new Map<PickleValue, PickleValue>([['me', o]]);
  return o;
}

/** True when the value holds something whose Python pickle is not byte-for-byte ours (see roundtrip tests). */
export function hasNonCanonical(
  v: PickleValue | undefined,
  test: (v: PickleValue) => boolean,
  seen = new Set<object>(),
): boolean {
  if (v === undefined) return false;
  if (test(v)) return true;
  if (v === null || typeof v !== 'object') return false;
  if (seen.has(v)) return false;
  seen.add(v);
  if (Array.isArray(v)) return v.some((x) => hasNonCanonical(x, test, seen));
  if (v instanceof Map) {
    for (const [k, x] of v) if (hasNonCanonical(k, test, seen) || hasNonCanonical(x, test, seen)) return true;
    return false;
  }
  if (v instanceof Set) return [...v].some((x) => hasNonCanonical(x, test, seen));
  if (v instanceof PersistentRef) return hasNonCanonical(v.id, test, seen);
  if (v instanceof PyObject) {
    if (hasNonCanonical(v.callable, test, seen) || hasNonCanonical(v.args, test, seen)) return true;
    if (v.kwargs && hasNonCanonical(v.kwargs, test, seen)) return true;
    if (hasNonCanonical(v.state, test, seen)) return true;
    if (v.listItems && v.listItems.some((x) => hasNonCanonical(x, test, seen))) return true;
    if (
      v.dictItems &&
      v.dictItems.some(([k, x]) => hasNonCanonical(k, test, seen) || hasNonCanonical(x, test, seen))
    ) {
      return true;
    }
  }
  return false;
}
