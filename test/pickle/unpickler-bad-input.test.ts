// The pickle reader on bad input: every failure is a PickleError with a byte offset, never another exception,
// never a hang, never an allocation that the input's own size does not bound.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  Global,
  PickleError,
  PickleStackLimitError,
  pyEquals,
  Tuple,
  tuple,
  Unpickler,
  loads,
  overBudget,
  pickleEnd,
  zeoServerGlobals,
  type LoadOptions,
  type PickleValue,
} from '../../src/pickle/index.js';
import * as op from '../../src/pickle/opcodes.js';
import { interopTest, PY_LIST_HELPERS, unpackList } from '../helpers/oracle.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
function le(n: number | bigint, size: 4 | 8): string {
  const buf = Buffer.alloc(size);
  if (size === 4) buf.writeUInt32LE(Number(n));
  else buf.writeBigUInt64LE(BigInt(n));
  return buf.toString('latin1');
}

/** Asserts that reading `data` fails with a PickleError (message matching `pattern`, at `offset` if given). */
function assertBad(
  data: Uint8Array | string,
  pattern?: RegExp,
  offset?: number,
  options?: LoadOptions,
): PickleError {
  const bytes = typeof data === 'string' ? b(data) : data;
  try {
    loads(bytes, options);
  } catch (e) {
    if (!(e instanceof PickleError)) {
      throw new Error(
        `expected a PickleError for ${JSON.stringify(Buffer.from(bytes).toString('latin1'))}, got ${String(e)}`,
        { cause: e },
      );
    }
    if (pattern) assert.match(e.message, pattern);
    assert.ok(Number.isInteger(e.offset) && e.offset >= 0 && e.offset <= bytes.length, `offset ${e.offset}`);
    if (offset !== undefined) assert.equal(e.offset, offset, e.message);
    return e;
  }
  assert.fail(`expected a PickleError for ${JSON.stringify(Buffer.from(bytes).toString('latin1'))}`);
}

/** A protocol 4 pickle whose opcodes are all in one FRAME. */
const framed = (body: string): string => '\x80\x04\x95' + le(body.length, 8) + body;

/** Valid pickles of every kind, for truncation and fuzzing. */
const VALID: string[] = [
  'N.',
  'I01\nI-7\nI123456789012345678901\n\x87.',
  'L-99999999999999999999L\n.',
  'F1.5e-07\n.',
  '(S\'a\\nb\'\nS"q"\nVcaf\\u00e9\nl.',
  '(lp0\nI1\naI2\nag0\na.',
  "(dp0\nS'k'\np1\n(I1\nI2\ntp2\nsS'self'\np3\ng0\ns.",
  '\x80\x02]q\x00(K\x01M\x00\x01J\xff\xff\xff\xffG?\xf8\x00\x00\x00\x00\x00\x00\x88\x89Ne.',
  '\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02h\x00u.',
  '\x80\x03C\x03abcB\x02\x00\x00\x00xy\x86q\x00.',
  '\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00\x8b\x02\x00\x00\x00\xff\x7f\x86.',
  '\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.',
  '\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00\xc3\xbfX\x06\x00\x00\x00latin1\x86R.',
  '\x80\x03cmod\nC\n)\x81}X\x01\x00\x00\x00xK\x01sb.',
  '\x80\x03cmod\nL\n)\x81K\x01a(K\x02K\x03e.',
  '\x80\x03C\x08\x00\x00\x00\x00\x00\x00\x00\x01cmod\nK\n\x86Q.',
  'Poid\n.',
  '(X\x01\x00\x00\x00aimod\nCls\n.',
  '(cmod\nCls\nK\x01o.',
  framed('\x8c\x03mod\x94\x8c\x01C\x94\x93\x94K\x01\x85\x94}\x94\x92\x94\x8f(K\x01\x90.'),
  '\x80\x04(K\x01\x91\x8d\x01\x00\x00\x00\x00\x00\x00\x00x\x8e\x01\x00\x00\x00\x00\x00\x00\x00y\x86.',
  '\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x98.',
  '\x80\x02]q\x00h\x00a.',
  'K\x05(0K\x01\x86(K\x021.',
  'K\x01r\x10\x27\x00\x00K\x02\x94h\x01j\x10\x27\x00\x00\x87.',
];

test('the valid corpus loads', () => {
  for (const v of VALID) {
    const data = b(v);
    assert.doesNotThrow(() => loads(data), JSON.stringify(v));
    assert.equal(pickleEnd(data), data.length, JSON.stringify(v));
  }
});

test('every truncation of a valid pickle is a PickleError, from loads and from pickleEnd', () => {
  let n = 0;
  for (const v of VALID) {
    const data = b(v);
    for (let k = 0; k < data.length; k++) {
      const cut = data.subarray(0, k);
      assertBad(cut, /truncated|underflow|MARK|memo|quoted|newline/);
      assert.throws(() => pickleEnd(cut), PickleError);
      n++;
    }
  }
  assert.ok(n > 500);
});

test('unknown opcodes fail with their offset', () => {
  const known = new Set<number>(
    Object.entries(op)
      .filter(([k]) => k !== 'HIGHEST_PROTOCOL')
      .map(([, v]) => v),
  );
  let unknown = 0;
  for (let c = 0; c < 256; c++) {
    if (known.has(c)) continue;
    unknown++;
    const ch = String.fromCharCode(c);
    assertBad(ch + '.', /unknown opcode/, 0);
    assertBad('NNN' + ch + '.', /unknown opcode/, 3);
    assert.throws(
      () => pickleEnd(b('NN' + ch + '.')),
      (e) => e instanceof PickleError && e.offset === 2,
    );
  }
  assert.equal(unknown, 256 - 68, 'protocols 0-5 have 68 opcodes');
  assertBad('', /truncated/, 0);
});

test('stack underflow, with the offset of the opcode', () => {
  const underflow: Array<[string, number]> = [
    ['.', 0],
    ['0.', 0],
    ['2.', 0],
    ['a.', 0],
    ['K\x01a.', 2],
    [']K\x01s.', 3],
    ['K\x01R.', 2],
    [')R.', 1],
    ['b.', 0],
    [')b.', 1],
    [')\x81.', 1],
    ['))\x92.', 2],
    ['\x85.', 0],
    ['N\x86.', 1],
    ['NN\x87.', 2],
    ['Q.', 0],
    ['p0\n.', 0],
    ['q\x00.', 0],
    ['r\x00\x00\x00\x00.', 0],
    ['\x94.', 0],
    ['N\x93.', 1],
    ['\x98.', 0],
    ['](K\x01a.', 4],
    ['(e.', 1],
    ['(u.', 1],
    ['(\x90.', 1],
    ['N(\x85.', 2],
    ['(o.', 1],
    ['K\x01(.', 3],
    ['NN(Na.', 4],
  ];
  for (const [v, at] of underflow) assertBad(v, /underflow/, at);
});

test('missing MARK', () => {
  for (const c of ['t', 'l', 'd', 'e', 'u', '\x90', '\x91', '1', 'o']) {
    assertBad(']' + c + '.', /could not find MARK/, 1);
  }
  assertBad('imod\nC\n.', /could not find MARK/, 0);
});

test('missing memo keys', () => {
  assertBad('h\x05.', /memo value not found at index 5/, 0);
  assertBad('j\x00\x00\x01\x00.', /memo value not found at index 65536/, 0);
  assertBad('g7\n.', /memo value not found at index 7/, 0);
  assertBad('g-1\n.', /memo value not found/, 0);
  assertBad('Nq\x03h\x02.', /memo value not found at index 2/, 3);
  // a memo index at the top of the u32 range is fine (a Map, not a 4-billion-slot array)
  assert.equal(loads(b('K\x07r\xff\xff\xff\xff0j\xff\xff\xff\xff.')), 7);
});

test('sparse memo indices do not blow up memory (a 5-byte LONG_BINPUT per 1023 slots)', () => {
  const n = 100_000;
  const parts = ['N'];
  for (let i = 1; i <= n; i++) parts.push('r' + le(i * 1023, 4));
  parts.push('j' + le(n * 1023, 4) + '.');
  const data = b(parts.join(''));
  const before = process.memoryUsage().heapUsed;
  const u = new Unpickler(data);
  assert.equal(u.load(), null);
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 200 * 1024 * 1024, `heap grew by ${grown} bytes`);
  assert.equal(u.position, data.length);
});

test('copying a memoized value again and again (set(), _codecs.encode, bytearray) cannot blow up', () => {
  // a 20000-item list, then 50000 x (set, list, TUPLE1, REDUCE) of 6 bytes each: 10^9 set members
  const list = '(' + 'K\x01'.repeat(20_000) + 'lq\x00';
  const again = 'cbuiltins\nset\nq\x01' + 'h\x01h\x00\x85R'.repeat(50_000) + '.';
  const t0 = performance.now();
  assertBad(list + again, /expands too much/);
  const str =
    'X' + le(100_000, 4) + 'a'.repeat(100_000) + 'q\x00c_codecs\nencode\nq\x01X\x06\x00\x00\x00latin1q\x02';
  assertBad(str + 'h\x01h\x00h\x02\x86R'.repeat(10_000) + '.', /expands too much/);
  const bytes = 'B' + le(100_000, 4) + 'b'.repeat(100_000) + 'q\x00cbuiltins\nbytearray\nq\x01';
  assertBad(bytes + 'h\x01h\x00\x85R'.repeat(10_000) + '.', /expands too much/);
  assert.ok(performance.now() - t0 < 2000, 'fails fast');
  // one copy of each, as real pickles do, is fine
  assert.ok(loads(b(list + 'cbuiltins\nset\nh\x00\x85R.')) instanceof Set);
  assert.equal((loads(b(str + 'h\x01h\x00h\x02\x86R.')) as Uint8Array).length, 100_000);
});

test('ints too large for a JavaScript BigInt (2^30 bits) are a PickleError, not a RangeError', () => {
  const data = Buffer.alloc(5 + 2 ** 27 + 1);
  data[0] = op.LONG4;
  data.writeUInt32LE(2 ** 27, 1);
  data[data.length - 1] = op.STOP;
  assertBad(data, /too large for a JavaScript BigInt/, 0);
});

test('many text opcodes stay linear (no scanning past their own line)', () => {
  const lines = '(' + 'Vabcdefgh\n'.repeat(200_000) + 'l0';
  const tail = 'X' + le(4_000_000, 4) + 'x'.repeat(3_999_999) + '\\' + '.';
  const t0 = performance.now();
  assert.equal((loads(b(lines + tail)) as string).length, 4_000_000);
  assert.equal(pickleEnd(b(lines + tail)), lines.length + tail.length);
  assert.ok(performance.now() - t0 < 2000, `took ${performance.now() - t0} ms`);
});

test('length fields claiming more than remains fail before allocating anything (4 GiB in 20 bytes)', () => {
  const before = process.memoryUsage().arrayBuffers;
  const t0 = performance.now();
  const claims: Array<[string, RegExp]> = [
    ['B\xff\xff\xff\xff', /BINBYTES/],
    ['X\xff\xff\xff\xff', /BINUNICODE/],
    ['\x8e' + le(2n ** 32n, 8), /BINBYTES8/],
    ['\x8e' + le(2n ** 64n - 1n, 8), /BINBYTES8/],
    ['\x8d' + le(2n ** 32n, 8), /BINUNICODE8/],
    ['\x96' + le(2n ** 32n, 8), /BYTEARRAY8/],
    ['\x95' + le(2n ** 40n, 8), /FRAME/],
    ['\x8b\xff\xff\xff\x7f', /LONG4/],
    ['T\xff\xff\xff\x7f', /BINSTRING/],
    ['C\xff', /SHORT_BINBYTES/],
    ['U\xff', /SHORT_BINSTRING/],
    ['\x8c\xff', /SHORT_BINUNICODE/],
    ['\x8a\xff', /LONG1/],
  ];
  for (const [head, pattern] of claims) {
    const data = b((head + 'abcdefghijklmnopqrst.').slice(0, Math.max(20, head.length + 1)));
    const e = assertBad(data, pattern, 0);
    assert.match(e.message, /truncated/);
    assert.throws(() => pickleEnd(data), PickleError);
  }
  assert.ok(performance.now() - t0 < 1000, 'fails fast');
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'no big allocation');
  // negative lengths
  assertBad('T\xff\xff\xff\xff.', /negative byte count/, 0);
  assertBad('\x8b\xff\xff\xff\xff.', /negative byte count/, 0);
  assert.throws(() => pickleEnd(b('\x8b\xff\xff\xff\xff.')), /negative/);
});

test('bad text in INT, LONG, FLOAT, STRING, GET, PUT', () => {
  for (const v of [
    'Iabc\n.',
    'I1.5\n.',
    'I\n.',
    'I010\n.',
    'I1 2\n.',
    'I0x\n.',
    'I--1\n.',
    'I1_\n.',
    'I\xff\n.',
  ]) {
    assertBad(v, /INT/, 0);
  }
  assertBad('I' + '9'.repeat(5000) + '\n.', /4300/, 0);
  assert.equal(
    loads(b('I' + '9'.repeat(4300) + '\n.')),
    10n ** 4300n - 1n,
    '4300 digits are fine, as in Python',
  );
  assert.equal(
    loads(b('L0x' + 'f'.repeat(5000) + 'L\n.')),
    16n ** 5000n - 1n,
    'no limit for hex, as in Python',
  );
  for (const v of ['Lxyz\n.', 'L\n.', 'LL\n.', 'L12LL\n.', 'L1e5\n.']) assertBad(v, /LONG/, 0);
  for (const v of ['Fabc\n.', 'F\n.', 'F1.2.3\n.', 'F1e\n.', 'F0x10\n.', 'Finfinite\n.']) {
    assertBad(v, /float/, 0);
  }
  for (const v of ['Sabc\n.', "S'abc\n.", "S'\n.", 'S\n.']) assertBad(v, /quoted/, 0);
  assertBad("S'\\x'\n.", /\\x escape/, 0);
  assertBad('gx\n.', /GET/, 0);
  assertBad('g1.0\n.', /GET/, 0);
  assertBad('Np-1\n.', /negative PUT/, 1);
  assertBad('Npx\n.', /PUT/, 1);
  assertBad('Np99999999999999999999\n.', /PUT/, 1);
  assertBad('P\x80\n.', /ASCII/, 0);
  assertBad('cmod\xff\nname\n.', /UTF-8/, 0);
  assertBad('(imod\xc3\xa9\nname\n.', /not ASCII/, 1);
  assertBad('\x80\x06.', /unsupported pickle protocol: 6/, 0);
  assertBad('\x80\xff.', /unsupported pickle protocol: 255/, 0);
});

test('MARK nesting past maxDepth is a PickleError naming the limit (100k deep)', () => {
  const deep = b('('.repeat(100_000) + 'l'.repeat(100_000) + '.');
  assertBad(deep, /maxDepth 10000/, 10_000);
  assertBad(b('('.repeat(11) + '.'), /maxDepth 10/, 10, { maxDepth: 10 });
  // exactly at the limit is fine
  const atLimit = loads(b('('.repeat(10_000) + 'l'.repeat(10_000) + '.'));
  let depth = 0;
  for (let x = atLimit; Array.isArray(x) && x.length > 0; x = x[0] as PickleValue[]) depth++;
  assert.equal(depth, 9_999);
});

test('100k-deep nesting without MARKs loads (no recursion): lists by APPEND, tuples by TUPLE1, dicts', () => {
  const n = 100_000;
  const lists = loads(b(']'.repeat(n + 1) + 'a'.repeat(n) + '.'));
  let depth = 0;
  let x: PickleValue = lists;
  while (Array.isArray(x) && x.length === 1) {
    x = x[0];
    depth++;
  }
  assert.equal(depth, n);
  assert.deepEqual(x, []);
  const tuples = loads(b('N' + '\x85'.repeat(n) + '.'));
  depth = 0;
  x = tuples;
  while (x instanceof Tuple) {
    x = (x as Tuple)[0];
    depth++;
  }
  assert.equal(depth, n);
  assert.equal(x, null);
  // {1: {1: {...}}}: d0 1 d1 1 ... dn, then SETITEM from the inside out
  const dicts = loads(b('}K\x01'.repeat(n) + '}' + 's'.repeat(n) + '.'));
  depth = 0;
  x = dicts;
  while (x instanceof Map && x.size === 1) {
    x = x.get(1) as PickleValue;
    depth++;
  }
  assert.equal(depth, n);
  assert.equal(pickleEnd(b(']'.repeat(n + 1) + 'a'.repeat(n) + '.')), 2 * n + 2);
});

test('zeoServerGlobals refuses globals outside the ZEO modules, wherever the pickle names them', () => {
  const zeo = { globals: zeoServerGlobals };
  assertBad('cos\nsystem\n.', /'os\.system'/, 0, zeo);
  assertBad('\x80\x04\x8c\x02os\x8c\x06system\x93.', /'os\.system'/, 14, zeo);
  assertBad('(ios\nsystem\n.', /'os\.system'/, 1, zeo);
  assertBad('\x82\x01.', /'os\.system'/, 0, {
    ...zeo,
    extensions: new Map<number, readonly [string, string]>([[1, ['os', 'system']]]),
  });
  assertBad('csubprocess\nPopen\n(X\x02\x00\x00\x00lstR.', /'subprocess\.Popen'/, 0, zeo);
  assertBad('cbuiltins_evil\neval\n.', /builtins_evil\.eval/, 0, zeo);
  // what ZEO allows
  assert.ok(loads(b('cbuiltins\nset\n)R.'), zeo) instanceof Set);
  assert.equal(loads(b('ccopy_reg\n_reconstructor\n.'), zeo), Global.of('copy_reg', '_reconstructor'));
  assert.equal(loads(b('cZopeUndo.Prefix\nPrefix\n.'), zeo), Global.of('ZopeUndo.Prefix', 'Prefix'));
});

test('errors from the persistentLoad hook are passed through as they are', () => {
  class Mine extends Error {}
  assert.throws(
    () =>
      loads(b('Poid\n.'), {
        persistentLoad: () => {
          throw new Mine('no');
        },
      }),
    Mine,
  );
});

// ---------------------------------------------------------------- fuzzing

function loadOutcome(data: Uint8Array, options?: LoadOptions): 'value' | 'error' {
  try {
    loads(data, options);
    return 'value';
  } catch (e) {
    if (e instanceof PickleError) return 'error';
    throw new Error(
      `not a PickleError for ${Buffer.from(data).toString('hex')}: ${String((e as Error)?.stack ?? e)}`,
      { cause: e },
    );
  }
}

function endOutcome(data: Uint8Array): void {
  try {
    const end = pickleEnd(data);
    assert.ok(end > 0 && end <= data.length);
  } catch (e) {
    if (!(e instanceof PickleError)) throw e;
  }
}

type Mutation =
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'insert'; at: number; bytes: number[] }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'duplicate'; at: number; count: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.array(
      fc.oneof(
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom(0x28, 0x2e, 0x61, 0x68, 0x71, 0x94, 0x95, 0xff),
      ),
      { minLength: 1, maxLength: 6 },
    ),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('duplicate' as const),
    at: fc.nat(),
    count: fc.integer({ min: 1, max: 12 }),
  }),
);

function mutate(data: Uint8Array, m: Mutation): Uint8Array {
  const a = [...data];
  const at = a.length ? m.at % (a.length + 1) : 0;
  switch (m.kind) {
    case 'flip':
      if (a.length) a[at % a.length] = m.byte;
      break;
    case 'insert':
      a.splice(at, 0, ...m.bytes);
      break;
    case 'delete':
      a.splice(at, m.count);
      break;
    case 'truncate':
      a.length = at;
      break;
    case 'duplicate':
      a.splice(at, 0, ...a.slice(at, at + m.count));
      break;
  }
  return Uint8Array.from(a);
}

test('fuzz: mutated valid pickles load to a value or fail with a PickleError, quickly', () => {
  const corpus = VALID.map(b);
  const t0 = performance.now();
  const outcomes = { value: 0, error: 0 };
  fc.assert(
    fc.property(fc.nat(corpus.length - 1), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (i, ms) => {
      let data: Uint8Array = corpus[i];
      for (const m of ms) data = mutate(data, m);
      const start = performance.now();
      outcomes[loadOutcome(data)]++;
      loadOutcome(data, { globals: zeoServerGlobals, encoding: 'bytes', copyBytes: true, maxDepth: 5 });
      loadOutcome(data, { errors: 'strict', encoding: 'utf-8' });
      endOutcome(data);
      assert.ok(performance.now() - start < 500, 'no input takes long');
    }),
    { numRuns: 2000, seed: 20240229 },
  );
  assert.ok(outcomes.value > 50 && outcomes.error > 200, JSON.stringify(outcomes));
  assert.ok(performance.now() - t0 < 10_000, 'the whole fuzz run stays well under 10 s');
});

/** A random opcode with a random (often wrong) argument: deeper fuzzing than byte flips alone. */
const tokenArb: fc.Arbitrary<number[]> = fc.oneof(
  fc.constantFrom(
    ...[
      op.MARK,
      op.POP,
      op.POP_MARK,
      op.DUP,
      op.NONE,
      op.BINPERSID,
      op.REDUCE,
      op.APPEND,
      op.BUILD,
      op.DICT,
      op.EMPTY_DICT,
      op.APPENDS,
      op.LIST,
      op.EMPTY_LIST,
      op.OBJ,
      op.SETITEM,
      op.TUPLE,
      op.EMPTY_TUPLE,
      op.SETITEMS,
      op.NEWOBJ,
      op.TUPLE1,
      op.TUPLE2,
      op.TUPLE3,
      op.NEWTRUE,
      op.NEWFALSE,
      op.EMPTY_SET,
      op.ADDITEMS,
      op.FROZENSET,
      op.NEWOBJ_EX,
      op.STACK_GLOBAL,
      op.MEMOIZE,
      op.READONLY_BUFFER,
      op.NEXT_BUFFER,
    ].map((c) => [c]),
  ),
  fc
    .tuple(
      fc.constantFrom(op.BININT1, op.BINGET, op.BINPUT, op.EXT1, op.PROTO),
      fc.integer({ min: 0, max: 8 }),
    )
    .map(([c, x]) => [c, x]),
  fc
    .tuple(
      fc.constantFrom(op.SHORT_BINBYTES, op.SHORT_BINUNICODE, op.SHORT_BINSTRING, op.LONG1),
      fc.uint8Array({ maxLength: 9 }),
    )
    .map(([c, x]) => [c, x.length, ...x]),
  fc
    .tuple(
      fc.constantFrom(op.BINUNICODE, op.BINBYTES, op.BINSTRING, op.LONG4, op.BININT),
      fc.uint8Array({ maxLength: 6 }),
    )
    .map(([c, x]) => [c, x.length, 0, 0, 0, ...x]),
  fc
    .tuple(
      fc.constantFrom(op.BINBYTES8, op.BINUNICODE8, op.BYTEARRAY8, op.FRAME),
      fc.uint8Array({ maxLength: 6 }),
    )
    .map(([c, x]) => [c, x.length, 0, 0, 0, 0, 0, 0, 0, ...x]),
  fc
    .tuple(
      fc.constantFrom(op.INT, op.LONG, op.FLOAT, op.STRING, op.UNICODE, op.PERSID, op.GET, op.PUT),
      fc.constantFrom('0', '01', '-1', '1.5', "'a'", 'x', '', '99999999999999999999', '\\u00e9', '1L'),
    )
    .map(([c, s]) => [c, ...Buffer.from(s + '\n', 'latin1')]),
  fc.constantFrom<number[]>(
    [...Buffer.from('cmod\nname\n', 'latin1')],
    [...Buffer.from('cbuiltins\nset\n', 'latin1')],
    [...Buffer.from('c_codecs\nencode\n', 'latin1')],
    [...Buffer.from('imod\nC\n', 'latin1')],
    [op.BINFLOAT, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
    [op.BININT2, 1, 0],
    [op.LONG_BINPUT, 1, 0, 0, 0],
    [op.LONG_BINGET, 1, 0, 0, 0],
  ),
);

test('fuzz: random opcode sequences load to a value or fail with a PickleError', () => {
  const t0 = performance.now();
  const outcomes = { value: 0, error: 0 };
  fc.assert(
    fc.property(fc.array(tokenArb, { minLength: 1, maxLength: 40 }), fc.boolean(), (tokens, stop) => {
      const bytes = tokens.flat();
      if (stop) bytes.push(op.STOP);
      const data = Uint8Array.from(bytes);
      outcomes[loadOutcome(data, { buffers: [new Uint8Array(2)] })]++;
      endOutcome(data);
    }),
    { numRuns: 2000, seed: 7 },
  );
  assert.ok(outcomes.value > 20 && outcomes.error > 200, JSON.stringify(outcomes));
  assert.ok(performance.now() - t0 < 10_000);
});

// ---------------------------------------------------------------- against Python's pickles

interopTest(
  'every truncation of pickles Python wrote (all protocols, record-like pickles) is a PickleError',
  async (oracle) => {
    const code = `${PY_LIST_HELPERS}
import io, pickle, datetime
import zodbpickle.pickle as zpickle
values = [None, True, 1, -1, 300, 2**31, 2**70, -2**70, 1.5, 'abc', 'caf\\u00e9', '\\ud800', b'xyz', bytearray(b'ab'),
          (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [1, [2]], {'a': 1, 'b': [2.5]}, {1, 2}, frozenset({3}),
          datetime.datetime(2020, 1, 2, 3, 4, 5), [[]] * 3]
pickles = [pickle.dumps(v, p) for v in values for p in range(6)]
pickles += [zpickle.dumps(v, p) for v in values for p in range(4)]
class Ref:
    def __init__(self, oid): self.oid = oid
class P(zpickle.Pickler):
    def persistent_id(self, obj):
        return (obj.oid, None) if isinstance(obj, Ref) else None
for state in ({'data': {'k%d' % i: Ref(bytes([0] * 7 + [i])) for i in range(5)}},
              {'title': 'x', 'children': [Ref(b'\\0' * 8)], 'when': datetime.date(2021, 1, 1)}):
    f = io.BytesIO()
    p = P(f, 3)
    p.dump(state)
    pickles.append(f.getvalue())
result = pack_list(pickles)
`;
    const pickles = unpackList(await oracle.bytes(code));
    assert.ok(pickles.length > 200);
    for (const p of pickles) {
      assert.doesNotThrow(() => loads(p));
      assert.equal(pickleEnd(p), p.length);
      for (let k = 0; k < p.length; k++) {
        assertBad(p.subarray(0, k));
        assert.throws(() => pickleEnd(p.subarray(0, k)), PickleError);
      }
    }
  },
);

// ---------------------------------------------------------------------------------------------------------
// Explosive values: far larger decoded than their bytes. With a DecodeBudget (what the ZEO codecs pass for
// every message) they are a PickleError; legit large values pass.

describe('a decode budget', () => {
  const N = 1_000_000;
  const budgetFor = (p: Uint8Array): LoadOptions => ({
    budget: { maxDepth: 1000, maxElements: p.length + 1024 },
  });

  test('a 10^6-deep nested list is refused', () => {
    const p = b('\x80\x03' + ']'.repeat(N) + 'a'.repeat(N - 1) + '.');
    assertBad(p, /nested deeper than 1000/, p.length - 1, budgetFor(p));
  });

  test('a memo reference repeated a million times is refused', () => {
    // a list of 100 ints, memoized; then a list of a million references to it: 2 MB standing for 10^8 values
    const inner = ']q\x00(' + 'K\x01'.repeat(100) + 'e';
    const p = b('\x80\x03' + inner + '](' + 'h\x00'.repeat(N) + 'e.');
    assertBad(p, /more than \d+ elements/, p.length - 1, budgetFor(p));
  });

  test('maxStack refuses deep nesting while it is read, before the containers are built', () => {
    // a million unfinished lists would wait on the stack before the first APPEND: refused at the 1001st
    const p = b('\x80\x03(K\x07\x89X\x04\x00\x00\x00call' + ']'.repeat(N) + 'a'.repeat(N - 1) + 't.');
    const before = process.memoryUsage().heapUsed;
    assert.throws(
      () => loads(p, { maxStack: 1000 }),
      (e: unknown) =>
        e instanceof PickleStackLimitError &&
        /more than 1000 values wait on the stack/.test(e.message) &&
        // PROTO, MARK, msgid, flag and name are 15 bytes; the 998th list would make 1001 values on the stack
        e.offset === 15 + 997 &&
        pyEquals(tuple(...(e.stackBottom as PickleValue[])), tuple(7, false, 'call', [])),
    );
    // (what was built is a thousand empty lists, not a million)
    assert.ok(process.memoryUsage().heapUsed - before < 16 << 20);
    // within the bound, and real messages' shapes: lists appended in batches of 1000, a 10k-item MARK tuple
    const deep = b('\x80\x03' + ']'.repeat(999) + 'a'.repeat(998) + '.');
    assert.equal(Array.isArray(loads(deep, { maxStack: 1000 })), true);
    const wide = b('\x80\x03(' + 'K\x01'.repeat(10_000) + 't.');
    assert.equal((loads(wide, { maxStack: 1000 }) as PickleValue[]).length, 10_000);
  });

  test('values nested within the depth bound, and deeper ones without a budget, still load', () => {
    const deep = b('\x80\x03' + ']'.repeat(999) + 'a'.repeat(998) + '.');
    assert.equal(Array.isArray(loads(deep, budgetFor(deep))), true);
    const deeper = b('\x80\x03' + ']'.repeat(5000) + 'a'.repeat(4999) + '.');
    assert.equal(Array.isArray(loads(deeper)), true);
  });

  test('legit large values pass: 10k oids, a 10 MiB record', () => {
    const oids = Array.from({ length: 10_000 }, (_, i) => {
      const o = Buffer.alloc(8);
      o.writeBigUInt64BE(BigInt(i));
      return 'C\x08' + o.toString('latin1');
    });
    // as Pickler writes a list: APPENDS in batches of 1000
    let body = ']';
    for (let i = 0; i < oids.length; i += 1000) body += '(' + oids.slice(i, i + 1000).join('') + 'e';
    const list = b('\x80\x03' + body + '.');
    assert.equal((loads(list, budgetFor(list)) as PickleValue[]).length, 10_000);
    const big = Buffer.concat([
      b('\x80\x03B' + le(10 * 1024 * 1024, 4)),
      Buffer.alloc(10 * 1024 * 1024),
      b('.'),
    ]);
    assert.equal((loads(big, budgetFor(big)) as Uint8Array).length, 10 * 1024 * 1024);
  });

  test('overBudget walks shared values as often as they occur, without recursion', () => {
    const shared: PickleValue[] = [1, 2, 3];
    const v = new Tuple(...Array.from({ length: 10 }, () => shared));
    assert.equal(overBudget(v, { maxDepth: 10, maxElements: 41 }), null);
    assert.match(overBudget(v, { maxDepth: 10, maxElements: 40 })!, /more than 40 elements/);
    let chain: PickleValue = [];
    for (let i = 0; i < 100_000; i++) chain = [chain];
    assert.match(overBudget(chain, { maxDepth: 1000, maxElements: 1e9 })!, /deeper than 1000/);
  });
});
