// A transaction's extension bytes as ZODB writes them (TransactionMetaData.extension_bytes): the given bytes,
// else the protocol 3 pickle of the dict, empty for an empty dict; and read back as the dict.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PyFloat, pyEquals, tupleFrom, type PickleValue, type PyDict } from '../../src/pickle/index.js';
import { decodeExtension, extensionBytes } from '../../src/storage/extension.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { interopTest, packList, PY_LIST_HELPERS, unpackList } from '../helpers/oracle.js';

const meta = (ext: PyDict, bytes: Uint8Array | null = null) =>
  new TransactionMetaData(new Uint8Array(0), new Uint8Array(0), ext, bytes);

/** The same dicts, as Python literals and as values of our model. */
const CASES: Array<[string, PyDict]> = [
  ['{}', new Map<PickleValue, PickleValue>()],
  ["{'k2': 'this is transaction metadata'}", new Map([['k2', 'this is transaction metadata']])],
  [
    "{'user_id': 42, 'path': ['a', 'b'], 'ratio': 2.5, 'none': None, 'flag': True, 'raw': b'\\x00\\xff', 't': (1, 'x')}",
    new Map<PickleValue, PickleValue>([
      ['user_id', 42],
      ['path', ['a', 'b']],
      ['ratio', new PyFloat(2.5)],
      ['none', null],
      ['flag', true],
      ['raw', Uint8Array.of(0, 255)],
      ['t', tupleFrom<PickleValue>([1, 'x'])],
    ]),
  ],
  [
    "{'big': 2**70, 'uni': 'h\\u00e9llo \\u2603'}",
    new Map<PickleValue, PickleValue>([
      ['big', 2n ** 70n],
      ['uni', 'héllo ☃'],
    ]),
  ],
];

test('given bytes are kept as they are; an empty dict is empty bytes; bad bytes read as an empty dict', () => {
  const raw = Uint8Array.of(1, 2, 3);
  assert.equal(extensionBytes(meta(new Map([['a', 1]]), raw)), raw);
  assert.equal(extensionBytes(meta(new Map())).length, 0);
  assert.equal(decodeExtension(new Uint8Array(0)).size, 0);
  assert.equal(decodeExtension(raw).size, 0, 'not a pickle');
  assert.equal(
    decodeExtension(Uint8Array.of(0x80, 0x03, 0x4b, 0x01, 0x2e)).size,
    0,
    'a pickle of 1, not a dict',
  );
});

interopTest(
  'extensionBytes is TransactionMetaData.extension_bytes; decodeExtension reads it back',
  async (oracle) => {
    const py = unpackList(
      await oracle.bytes(
        `${PY_LIST_HELPERS}
from ZODB.Connection import TransactionMetaData
result = pack_list([TransactionMetaData(extension=eval(src)).extension_bytes for src in args])`,
        undefined,
        CASES.map(([src]) => src),
      ),
    );
    for (let i = 0; i < CASES.length; i++) {
      const [src, value] = CASES[i];
      assert.deepEqual(Buffer.from(extensionBytes(meta(value))), py[i], src);
      assert.ok(pyEquals(decodeExtension(py[i]), value), src);
    }
    // and Python reads ours as the same dict
    const same = await oracle.json<boolean[]>(
      `${PY_LIST_HELPERS}
from ZODB.Connection import TransactionMetaData
result = [TransactionMetaData(extension=b).extension == eval(src) for b, src in zip(unpack_list(input), args)]`,
      packList(CASES.map(([, value]) => extensionBytes(meta(value)))),
      CASES.map(([src]) => src),
    );
    assert.deepEqual(
      same,
      CASES.map(() => true),
    );
  },
);
