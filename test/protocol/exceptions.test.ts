// Error replies (spec §3.3): our storage errors marshalled to the (class name, dict or args) shapes the
// reference sends, byte for byte against Python's reduce_exception + encoder for the same errors raised the way
// ZODB raises them; the real Python client's reply handling building the right exceptions from our frames; and
// unmarshalError giving our classes back.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Global, PyObject, pyEquals, pyRepr, tupleFrom, type PickleValue } from '../../src/pickle/index.js';
import {
  codecFor,
  errorPayload,
  marshalError,
  PythonError,
  recordClassName,
  replyParts,
  replyPayload,
  ServerException,
  unmarshalError,
} from '../../src/protocol/index.js';
import {
  ConflictError,
  CorruptedError,
  MultipleUndoErrors,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageError,
  StorageTransactionError,
  UndoError,
  Unsupported,
} from '../../src/storage/errors.js';
import { interopTest, packList, PY_LIST_HELPERS, unpackList } from '../helpers/oracle.js';

const hex = (s: string) => Buffer.from(s, 'hex');
const t = (...items: PickleValue[]) => tupleFrom<PickleValue>(items);
const d = (...entries: Array<[string, PickleValue]>) => new Map<PickleValue, PickleValue>(entries);
const id = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return new Uint8Array(b);
};
const SERIALS = [hex('040d3da17b29d599'), hex('040d3da179dd2955')] as const;
const ROOT0 = hex(
  '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e' +
    '80037d710158040000006461746171027d7103732e',
);

function enoent(): Error {
  try {
    readFileSync('/nonexistent-zeo-ts/x');
  } catch (e) {
    return e as Error;
  }
  throw new Error('unreachable');
}

function shape(err: unknown): [string, PickleValue] {
  const m = marshalError(err);
  return [m.className, m.args];
}

function sameShape(err: unknown, className: string, args: PickleValue): void {
  const [c, a] = shape(err);
  assert.equal(c, className);
  assert.ok(pyEquals(a, args), `${className}: ${pyRepr(a)} != ${pyRepr(args)}`);
}

test('the shapes of §3.3 for our storage errors', () => {
  sameShape(new POSKeyError(id(0)), 'ZODB.POSException.POSKeyError', t(id(0)));
  // a missing serial is still POSKeyError(oid), as FileStorage.loadSerial raises it
  sameShape(new POSKeyError(id(5), id(9)), 'ZODB.POSException.POSKeyError', t(id(5)));
  sameShape(
    new ConflictError(id(1), SERIALS, ROOT0),
    'ZODB.POSException.ConflictError',
    d(
      ['message', 'database conflict error'],
      ['oid', id(1)],
      ['class_name', 'persistent.mapping.PersistentMapping'],
      ['serials', t(SERIALS[0], SERIALS[1])],
    ),
  );
  sameShape(
    new ConflictError(),
    'ZODB.POSException.ConflictError',
    d(['message', 'database conflict error'], ['oid', null], ['class_name', null], ['serials', null]),
  );
  sameShape(
    new ConflictError(id(1), null, null, 'a custom message'),
    'ZODB.POSException.ConflictError',
    d(['message', 'a custom message'], ['oid', id(1)], ['class_name', null], ['serials', null]),
  );
  sameShape(
    new ReadConflictError(id(1), SERIALS),
    'ZODB.POSException.ReadConflictError',
    d(
      ['message', 'database read conflict error'],
      ['oid', id(1)],
      ['class_name', null],
      ['serials', t(SERIALS[0], SERIALS[1])],
    ),
  );
  sameShape(new ReadOnlyError(), 'ZODB.POSException.ReadOnlyError', t());
  sameShape(
    new ReadOnlyError('read-only connection'),
    'ZODB.POSException.ReadOnlyError',
    t('read-only connection'),
  );
  sameShape(
    new StorageTransactionError('Already voting (locked)'),
    'ZODB.POSException.StorageTransactionError',
    t('Already voting (locked)'),
  );
  sameShape(
    new UndoError('Undo is currently disabled for database maintenance.<p>'),
    'ZODB.POSException.UndoError',
    d(['_reason', 'Undo is currently disabled for database maintenance.<p>'], ['_oid', null]),
  );
  sameShape(
    new UndoError('Some data were modified by a later transaction', id(3)),
    'ZODB.POSException.UndoError',
    d(['_reason', 'Some data were modified by a later transaction'], ['_oid', id(3)]),
  );
  const [mc, ma] = shape(new MultipleUndoErrors([new UndoError('r1', id(1)), new UndoError('r2', id(2))]));
  assert.equal(mc, 'ZODB.POSException.MultipleUndoErrors');
  assert.ok(ma instanceof Map);
  assert.deepEqual([...ma.keys()], ['_reason', '_oid', '_errs']);
  const errs = ma.get('_errs') as PickleValue[];
  assert.ok(Array.isArray(errs) && errs.length === 2);
  const first = (errs[0] as PickleValue[])[1];
  assert.ok(first instanceof PyObject && first.callable === Global.of('ZODB.POSException', '_recon'));
  sameShape(
    new Unsupported('Retrieval of historical revisions is not supported'),
    'ZODB.POSException.Unsupported',
    t('Retrieval of historical revisions is not supported'),
  );
  sameShape(
    new CorruptedError('Data.fs', 4, 'bad'),
    'ZODB.FileStorage.FileStorage.CorruptedError',
    t('Data.fs: bad (at byte 4)'),
  );
  sameShape(new StorageError(''), 'ZODB.POSException.StorageError', t());
});

test('Python exceptions the server raises itself, Node system errors, and everything else', () => {
  const tE = new PythonError(
    'builtins.TypeError',
    t("ZEOStorage.history() missing 1 required positional argument: 'tid'"),
  );
  sameShape(
    tE,
    'builtins.TypeError',
    t("ZEOStorage.history() missing 1 required positional argument: 'tid'"),
  );
  assert.match(tE.message, /^builtins\.TypeError: ZEOStorage\.history\(\)/);
  sameShape(new PythonError('builtins.KeyError', t(999)), 'builtins.KeyError', t(999));
  sameShape(new ServerException('x.Y', d(['a', 1])), 'x.Y', d(['a', 1]));
  sameShape(enoent(), 'builtins.FileNotFoundError', t(2, 'No such file or directory'));
  sameShape(new Error('boom'), 'builtins.RuntimeError', t('boom'));
  sameShape(new TypeError('x is undefined'), 'builtins.RuntimeError', t('TypeError: x is undefined'));
  sameShape('a string', 'builtins.RuntimeError', t('a string'));
});

test("recordClassName is ZODB's get_pickle_metadata", () => {
  assert.equal(recordClassName(ROOT0), 'persistent.mapping.PersistentMapping');
  // protocol 1 records: (c...
  assert.equal(
    recordClassName(Buffer.from('(cBTrees.OOBTree\nOOBTree\nq\x01Nt.', 'latin1')),
    'BTrees.OOBTree.OOBTree',
  );
  assert.equal(recordClassName(Buffer.from('junk', 'latin1')), '.');
});

test("a reply or an error that cannot be encoded becomes the reference's ValueError", () => {
  const M = codecFor('M', 'server');
  const fallback = Buffer.from(
    M.encodeError(3, 'builtins.ValueError', t("Couldn't pickle response")),
  ).toString('hex');
  assert.equal(Buffer.from(replyPayload(M, 3, 2n ** 70n)).toString('hex'), fallback);
  assert.equal(
    Buffer.from(errorPayload(M, 3, new PythonError('x.Y', t(new Set<PickleValue>())))).toString('hex'),
    fallback,
  );
  assert.equal(
    Buffer.from(replyPayload(M, 3, 5)).toString('hex'),
    Buffer.from(M.encodeReply(3, 5)).toString('hex'),
  );
  // the hook sees why, as the reference logs "Unpicklable response"
  const seen: unknown[] = [];
  assert.equal(Buffer.from(replyPayload(M, 3, 2n ** 70n, (e) => seen.push(e))).toString('hex'), fallback);
  assert.equal(seen.length, 1);
  assert.ok(seen[0] instanceof Error);
  assert.deepEqual(
    replyParts(M, 3, 2n ** 70n).map((p) => Buffer.from(p).toString('hex')),
    [fallback],
  );
});

test('replyParts: the bytes of encodeReply, in pieces that reference a large record instead of copying it', () => {
  for (const enc of ['Z', 'M'] as const) {
    const codec = codecFor(enc, 'server');
    for (const size of [10, 1000, 64 << 10, 1 << 20]) {
      const record = Buffer.alloc(size, 0x61);
      const result = t(record, Buffer.alloc(8, 1), null);
      const parts = replyParts(codec, t(1, 2), result);
      assert.ok(
        Buffer.concat(parts).equals(Buffer.from(codec.encodeReply(t(1, 2), result))),
        `${enc} ${size}: same bytes`,
      );
      const shared = parts.some((p) => p.buffer === record.buffer && p.byteOffset === record.byteOffset);
      assert.equal(shared, size >= 64 << 10, `${enc} ${size}: the record is referenced only when large`);
    }
  }
});

test('replyPayload transient: the bytes of encodeReply, valid until the next encode, for every encoding and size', () => {
  for (const enc of ['Z', 'M'] as const) {
    const codec = codecFor(enc, 'server');
    // small and large records (the large one deferred by the writer), an int and a tuple msgid, a value only
    // the general Pickler writes ('Z': a set), and one msgpack cannot write (the ValueError fallback)
    const results: PickleValue[] = [
      t(Buffer.alloc(10, 0x61), Buffer.alloc(8, 1), null),
      t(Buffer.alloc(1 << 20, 0x62), Buffer.alloc(8, 1), Buffer.alloc(8, 2)),
      null,
      2n ** 70n,
    ];
    if (enc === 'Z') results.push(new Set<PickleValue>([1]));
    for (const msgid of [7, t(Buffer.alloc(8, 3), Buffer.alloc(8, 4))] as PickleValue[]) {
      for (const result of results) {
        const seenBefore: unknown[] = [];
        const expected = Buffer.from(replyPayload(codec, msgid, result, (e) => seenBefore.push(e)));
        const seen: unknown[] = [];
        const got = Buffer.from(replyPayload(codec, msgid, result, (e) => seen.push(e), true));
        assert.ok(got.equals(expected), `${enc} ${pyRepr(msgid)} ${pyRepr(result).slice(0, 40)}: same bytes`);
        assert.equal(seen.length, seenBefore.length, 'the same unencodable hook calls');
      }
    }
    // valid until the next encode: copied before it, it stays right
    const first = Buffer.from(codec.encodeReplyTransient(1, Buffer.from('one')));
    codec.encodeReplyTransient(2, Buffer.from('two'));
    assert.ok(first.equals(Buffer.from(codec.encodeReply(1, Buffer.from('one')))));
  }
});

/** The JS errors paired with the Python expressions that raise their twins in ZODB/ZEO. */
const PAIRS: Array<[unknown, string]> = [
  [new POSKeyError(id(0)), 'P.POSKeyError(p64(0))'],
  [new ConflictError(id(1), SERIALS, ROOT0), 'P.ConflictError(oid=p64(1), serials=SERIALS, data=ROOT0)'],
  [new ReadConflictError(id(1), SERIALS), 'P.ReadConflictError(oid=p64(1), serials=SERIALS)'],
  [new ReadOnlyError(), 'P.ReadOnlyError()'],
  [
    new StorageTransactionError('Already voting (locked)'),
    "P.StorageTransactionError('Already voting (locked)')",
  ],
  [
    new UndoError('Undo is currently disabled for database maintenance.<p>'),
    "P.UndoError('Undo is currently disabled for database maintenance.<p>')",
  ],
  [
    new MultipleUndoErrors([
      new UndoError('Some data were modified by a later transaction', id(1)),
      new UndoError('_loadBack() failed', id(2)),
    ]),
    "P.MultipleUndoErrors(list({p64(1): P.UndoError('Some data were modified by a later transaction', p64(1)), " +
      "p64(2): P.UndoError('_loadBack() failed', p64(2))}.items()))",
  ],
  [
    new Unsupported('Retrieval of historical revisions is not supported'),
    "P.Unsupported('Retrieval of historical revisions is not supported')",
  ],
  [enoent(), "raising(lambda: open('/nonexistent-zeo-ts/x'))"],
  [
    new PythonError('builtins.ValueError', t('unknown storage: nosuch')),
    "ValueError('unknown storage: nosuch')",
  ],
  [new PythonError('builtins.KeyError', t(999)), 'KeyError(999)'],
  [
    new PythonError('builtins.AssertionError', t('finished called wo lock')),
    "AssertionError('finished called wo lock')",
  ],
];

const PY_ERRORS =
  PY_LIST_HELPERS +
  `
import ZODB.POSException as P
from ZODB.utils import p64
from ZEO.asyncio.marshal import encoder, reduce_exception
SERIALS = (bytes.fromhex('040d3da17b29d599'), bytes.fromhex('040d3da179dd2955'))
ROOT0 = bytes.fromhex('${ROOT0.toString('hex')}')
def raising(f):
    try:
        f()
    except Exception as e:
        return e
out = []
for expr in args:
    e = eval(expr)
    for enc in (b'Z', b'M'):
        out.append(encoder(enc, True)(7, 2, '.reply', reduce_exception(e)))
result = pack_list(out)
`;

interopTest(
  "error replies are byte-identical to the reference's for the same errors, both encodings",
  async (oracle) => {
    const py = unpackList(
      await oracle.bytes(
        PY_ERRORS,
        undefined,
        PAIRS.map(([, expr]) => expr),
      ),
    );
    PAIRS.forEach(([err, expr], i) => {
      for (const [j, enc] of (['Z', 'M'] as const).entries()) {
        const ours = Buffer.from(errorPayload(codecFor(enc, 'server'), 7, err));
        assert.equal(ours.toString('hex'), py[2 * i + j].toString('hex'), `${enc}: ${expr}`);
      }
    });
  },
);

const PY_CLIENT =
  PY_LIST_HELPERS +
  `
import logging, types
logging.disable(logging.CRITICAL)
import ZODB.POSException as P
from ZEO.asyncio import client
from ZEO.asyncio.marshal import decoder

class Fut:
    exc = result = None
    def set_exception(self, e): self.exc = e
    def set_result(self, r): self.result = r

def hexes(v):
    return [x.hex() if isinstance(x, bytes) else x for x in v] if v is not None else None

out = []
items = unpack_list(input)
for i in range(0, len(items), 2):
    enc, data = items[i], items[i + 1]
    dec = decoder(enc)
    msgid = dec(data)[0]
    fut = Fut()
    proto = types.SimpleNamespace(decode=dec, futures={msgid: fut}, name='test', client=None,
                                  exception_type_type=type(Exception))
    client.Protocol.message_received(proto, data)
    e = fut.exc
    try:
        text = str(e)
    except Exception as x:
        text = '<str failed: %s>' % type(x).__name__
    r = {'type': type(e).__module__ + '.' + type(e).__qualname__, 'str': text,
         'args': [repr(a) for a in e.args], 'pending': msgid in proto.futures}
    if isinstance(e, P.ConflictError):
        r.update(oid=e.oid.hex() if e.oid else None, serials=hexes(e.serials), class_name=e.class_name,
                 message=e.message)
    if isinstance(e, P.MultipleUndoErrors):
        r['errs'] = [oid.hex() for oid, _ in e._errs]
    out.append(r)
result = out
`;

interface PyClientView {
  type: string;
  str: string;
  args: string[];
  pending: boolean;
  oid?: string | null;
  serials?: string[] | null;
  class_name?: string | null;
  message?: string;
  errs?: string[];
}

interopTest(
  "the Python client's reply handling builds the right exceptions from our frames",
  async (oracle) => {
    const cases: Array<[unknown, (v: PyClientView, enc: 'Z' | 'M') => void]> = [
      [
        new ConflictError(id(1), SERIALS, ROOT0),
        (v) => {
          assert.equal(v.type, 'ZODB.POSException.ConflictError');
          assert.equal(v.oid, '0000000000000001');
          assert.deepEqual(
            v.serials,
            SERIALS.map((s) => s.toString('hex')),
          );
          assert.equal(v.class_name, 'persistent.mapping.PersistentMapping');
          assert.equal(v.message, 'database conflict error');
          assert.match(
            v.str,
            /^database conflict error \(oid 0x01, class persistent\.mapping\.PersistentMapping/,
          );
        },
      ],
      [
        new ReadConflictError(id(1), SERIALS),
        (v) => {
          assert.equal(v.type, 'ZODB.POSException.ReadConflictError');
          assert.equal(v.oid, '0000000000000001');
          assert.deepEqual(
            v.serials,
            SERIALS.map((s) => s.toString('hex')),
          );
          assert.equal(v.class_name, null);
          assert.equal(v.message, 'database read conflict error');
        },
      ],
      [
        new POSKeyError(id(0)),
        (v) => {
          assert.equal(v.type, 'ZODB.POSException.POSKeyError');
          assert.deepEqual(v.args, ["b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'"]);
          assert.equal(v.str, '0x00');
        },
      ],
      [
        new ReadOnlyError(),
        (v) => {
          assert.equal(v.type, 'ZODB.POSException.ReadOnlyError');
          assert.deepEqual(v.args, []);
        },
      ],
      [
        new StorageTransactionError('Already voting (locked)'),
        (v) => {
          assert.equal(v.type, 'ZODB.POSException.StorageTransactionError');
          assert.deepEqual(v.args, ["'Already voting (locked)'"]);
        },
      ],
      [
        new MultipleUndoErrors([new UndoError('r1', id(1)), new UndoError('r2', id(2))]),
        (v, enc) => {
          assert.equal(v.type, 'ZODB.POSException.MultipleUndoErrors');
          assert.deepEqual(v.errs, ['0000000000000001', '0000000000000002']);
          // the pairs hold UndoErrors; over msgpack they are (class, dict) tuples, which ZODB's __str__ cannot
          // format: so it is with the reference server too (the bytes are its bytes, see above)
          if (enc === 'Z')
            assert.equal(v.str, 'Undo error 0x01: Undo error 0x01: r1\nUndo error 0x02: Undo error 0x02: r2');
          else assert.equal(v.str, '<str failed: TypeError>');
        },
      ],
      [
        new PythonError(
          'builtins.TypeError',
          t("ZEOStorage.history() missing 1 required positional argument: 'tid'"),
        ),
        (v) => {
          assert.equal(v.type, 'builtins.TypeError');
          assert.equal(v.str, "ZEOStorage.history() missing 1 required positional argument: 'tid'");
        },
      ],
      [
        new PythonError('builtins.KeyError', t(999)),
        (v) => {
          assert.equal(v.type, 'builtins.KeyError');
          assert.deepEqual(v.args, ['999']);
        },
      ],
      [
        new UndoError('Undo is currently disabled for database maintenance.<p>'),
        (v) => {
          // no factory for UndoError: a ServerException with the class name and the dict
          assert.equal(v.type, 'ZEO.Exceptions.ServerException');
          assert.equal(v.args[0], "'ZODB.POSException.UndoError'");
        },
      ],
      [
        new Error('boom'),
        (v) => {
          assert.equal(v.type, 'ZEO.Exceptions.ServerException');
          assert.deepEqual(v.args, ["'builtins.RuntimeError'", "('boom',)"]);
        },
      ],
    ];
    const frames: Uint8Array[] = [];
    for (const [err] of cases) {
      for (const enc of ['Z', 'M'] as const) {
        frames.push(Buffer.from(enc), errorPayload(codecFor(enc, 'server'), t(id(4), id(5)), err));
      }
    }
    const py = await oracle.json<PyClientView[]>(PY_CLIENT, packList(frames));
    cases.forEach(([err, expect], i) => {
      for (const j of [0, 1]) {
        const v = py[2 * i + j];
        assert.equal(v.pending, false, `${String(err)}: the call was completed`);
        try {
          expect(v, j === 0 ? 'Z' : 'M');
        } catch (e) {
          assert.fail(
            `${['Z', 'M'][j]} ${String(err)}: ${(e as Error).message}\nPython saw ${JSON.stringify(v)}`,
          );
        }
      }
    });
  },
);

test('unmarshalError rebuilds our classes from what the server sent, in both encodings', () => {
  const errors: Error[] = [
    new POSKeyError(id(7)),
    new ConflictError(id(1), SERIALS, ROOT0),
    new ReadConflictError(id(2), SERIALS),
    new ReadOnlyError(),
    new StorageTransactionError('Already voting (locked)'),
    new UndoError('Some data were modified by a later transaction', id(3)),
    new MultipleUndoErrors([new UndoError('r1', id(1)), new UndoError('r2', id(2))]),
    new Unsupported('no'),
  ];
  for (const enc of ['Z', 'M'] as const) {
    for (const err of errors) {
      const payload = errorPayload(codecFor(enc, 'server'), 1, err);
      const m = codecFor(enc, 'client').decode(payload);
      assert.equal(m.flag, 2);
      const [cls, args] = m.body as PickleValue[];
      const back = unmarshalError(cls as string, args);
      assert.equal(back.constructor, err.constructor, `${enc} ${err.name}`);
      assert.equal(back.message, err.message, `${enc} ${err.name}`);
      if (err instanceof ConflictError) {
        const b = back as ConflictError;
        assert.deepEqual(b.oid && [...b.oid], err.oid && [...err.oid]);
        assert.deepEqual(
          b.serials?.map((s) => [...s]),
          err.serials?.map((s) => [...s]),
        );
      }
      if (err instanceof MultipleUndoErrors) {
        assert.deepEqual(
          (back as MultipleUndoErrors).errors.map((e) => e.message),
          err.errors.map((e) => e.message),
        );
      }
    }
  }
  const other = unmarshalError('builtins.ValueError', t('unknown storage: nosuch'));
  assert.ok(other instanceof ServerException);
  assert.equal(other.className, 'builtins.ValueError');
  assert.equal(other.message, 'builtins.ValueError: unknown storage: nosuch');
  // a wrong shape is not a crash (the Python client would never complete the call)
  assert.ok(unmarshalError('ZODB.POSException.ConflictError', t('x')) instanceof ServerException);
  const bt = unmarshalError(
    'ZODB.POSException.BTreesConflictError',
    d(['p1', 1], ['p2', 2], ['p3', 3], ['reason', 6]),
  );
  assert.ok(bt instanceof ConflictError);
  assert.match(bt.message, /Conflicting inserts/);
});
