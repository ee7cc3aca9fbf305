import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ByteArray,
  FrozenSet,
  Global,
  loads,
  PersistentRef,
  PyFloat,
  pyEquals,
  pyRepr,
  Tuple,
  tuple,
} from '../../src/pickle/index.js';
import { interopTest, PY_LIST_HELPERS, unpackList } from '../helpers/oracle.js';

test('tuple() builds a Tuple that is an Array but not a list', () => {
  const t = tuple(1, 'a');
  assert.ok(t instanceof Tuple && Array.isArray(t));
  assert.deepEqual([...t], [1, 'a']);
  assert.equal(tuple(3).length, 1, 'a single number is an item, not a length');
  assert.ok(!(t.map((x) => x) instanceof Tuple), 'derived arrays are plain lists');
});

test('Global.of interns, so globals compare with ===', () => {
  assert.equal(Global.of('a.b', 'C'), Global.of('a.b', 'C'));
  assert.notEqual(Global.of('a.b', 'C'), Global.of('a', 'b.C'));
});

test('pyEquals is strict about Python types', () => {
  assert.ok(pyEquals(1, 1n));
  assert.ok(!pyEquals(1, new PyFloat(1)));
  assert.ok(!pyEquals(tuple(1), [1]));
  assert.ok(!pyEquals(new Uint8Array([1]), ByteArray.fromBytes(new Uint8Array([1]))));
  assert.ok(pyEquals(new PyFloat(NaN), new PyFloat(NaN)));
  assert.ok(!pyEquals(new PyFloat(0), new PyFloat(-0)));
  assert.ok(pyEquals(new Set([1, tuple(2)]), new Set([tuple(2), 1])));
  assert.ok(!pyEquals(new Set([1]), new FrozenSet([1])));
  assert.ok(
    !pyEquals(
      new Map([
        ['a', 1],
        ['b', 2],
      ]),
      new Map([
        ['b', 2],
        ['a', 1],
      ]),
    ),
    'dict order is kept',
  );
  assert.ok(
    pyEquals(
      new PersistentRef(tuple(new Uint8Array(8), null)),
      new PersistentRef(tuple(new Uint8Array(8), null)),
    ),
  );
  const a: unknown[] = [];
  a.push(a);
  const b: unknown[] = [];
  b.push(b);
  assert.ok(pyEquals(a as never, b as never), 'cycles compare');
});

interopTest('pyRepr of a loaded value is what Python repr prints', async (oracle) => {
  const code = `${PY_LIST_HELPERS}
import pickle
values = [
    None, True, False, 0, -1, 2**70, -2**64, 1.5, 1.0, -0.0, float('inf'), float('nan'), 1e16, 1e-7, 123456.789,
    0.1, 'caf\\u00e9', 'it\\'s', 'say "hi"', 'both \\'"', 'tab\\tnl\\n\\\\', '\\ud800', '\\U0001f600',
    b'\\x00ab\\'', b'"', bytearray(b'xy'), (), (1,), (1, 2.0, 'x'), [1, [2, (3,)]], {'a': 1, 2: b'b', (1, 2): None},
    set(), frozenset(), {1}, frozenset({2}),
]
if args == 'reprs':
    result = [repr(v) for v in values]
else:
    result = pack_list([pickle.dumps(v, p) for v in values for p in (0, 2, 3, 4, 5)])
`;
  const reprs = await oracle.json<string[]>(code, undefined, 'reprs');
  const pickles = unpackList(await oracle.bytes(code, undefined, 'pickles'));
  assert.equal(pickles.length, reprs.length * 5);
  for (let i = 0; i < pickles.length; i++) {
    assert.equal(
      pyRepr(loads(pickles[i])),
      reprs[Math.floor(i / 5)],
      `value #${Math.floor(i / 5)}, protocol #${i % 5}`,
    );
  }
});
