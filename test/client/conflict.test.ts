// Conflict resolution on the client (src/client/conflict.ts) against ZODB's tryToResolveConflict: records made
// by the real ZODB (old, committed, new revisions of one object) resolve to the very bytes Python resolves them
// to, for BTrees.Length.Length and for a class with its own _p_resolveConflict (test/fixtures/python/
// zeots_conflict.py, registered here in JavaScript); what Python cannot resolve, we leave standing too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ConflictResolverRegistry,
  defaultResolvers,
  PersistentReference,
  type StateResolver,
} from '../../src/client/conflict.js';
import {
  dumps,
  Global,
  loads,
  PersistentRef,
  pyEquals,
  tuple,
  type PickleValue,
} from '../../src/pickle/index.js';
import { ConflictError } from '../../src/storage/errors.js';
import { idHex, p64, type Oid, type Tid } from '../../src/storage/ids.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, PY_LIST_HELPERS, unpackList, type Oracle } from '../helpers/oracle.js';

interface Case {
  name: string;
  oid: Oid;
  oldSerial: Tid;
  committedSerial: Tid;
  old: Uint8Array;
  committed: Uint8Array;
  newData: Uint8Array;
  /** Python's tryToResolveConflict: the resolved record, or null when it raised ConflictError */
  resolved: Uint8Array | null;
}

// Each scenario: an object committed (old), changed and committed by one connection (committed), changed
// from the old state by another connection (new: the record ObjectWriter makes, never committed), then
// FileStorage.tryToResolveConflict on the three.
const PY_CASES = `${PY_LIST_HELPERS}
import io, os, shutil, sys, tempfile, pickle
if args['fixtures'] not in sys.path:
    sys.path.insert(0, args['fixtures'])
import transaction, ZODB
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError
from ZODB.serialize import ObjectWriter
from ZODB.utils import p64
from BTrees.Length import Length
from persistent.mapping import PersistentMapping
from zeots_conflict import Tally

tmp = tempfile.mkdtemp(prefix='zeots-conflict-')
out = []
try:
    st = FileStorage(os.path.join(tmp, 'Data.fs'))
    db = ZODB.DB(st)
    tm0 = transaction.TransactionManager()
    c0 = db.open(tm0)
    root = c0.root()
    root['len'] = Length(5)
    root['big'] = Length(2 ** 62)
    root['t1'] = PersistentMapping({'x': 1})
    root['t2'] = PersistentMapping({'y': 2})
    root['tally'] = Tally(root['t1'])
    root['pm'] = PersistentMapping({'a': 1})
    tm0.commit()

    def scenario(name, key, change_committed, change_new, protocol2=False):
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        c1, c2 = db.open(tm1), db.open(tm2)
        o1, o2 = c1.root()[key], c2.root()[key]
        o2._p_activate()
        oid, old_serial = o1._p_oid, o2._p_serial
        change_committed(o1, c1)
        tm1.commit()
        committed_serial = o1._p_serial
        change_new(o2, c2)
        new = ObjectWriter(o2).serialize(o2)
        if protocol2:
            # as a Python 2 era writer would have made it (Length has no references to keep)
            u = pickle.Unpickler(io.BytesIO(new))
            meta, state = u.load(), u.load()
            f = io.BytesIO()
            p = pickle.Pickler(f, 2)
            p.dump(meta); p.dump(state)
            new = f.getvalue()
        old = st.loadSerial(oid, old_serial)
        committed = st.loadSerial(oid, committed_serial)
        try:
            resolved = st.tryToResolveConflict(oid, committed_serial, old_serial, new)
        except ConflictError:
            resolved = None
        tm2.abort(); c1.close(); c2.close()
        out.extend([name.encode(), oid, old_serial, committed_serial, old, committed, new,
                    b'-' if resolved is None else b'+' + resolved])

    scenario('length', 'len', lambda o, c: o.change(3), lambda o, c: o.change(10))
    scenario('length-big', 'big', lambda o, c: o.change(2 ** 62), lambda o, c: o.change(-7))
    scenario('length-again', 'len', lambda o, c: o.change(-100), lambda o, c: o.change(1))

    def t_commit(o, c):
        o.count += 2; o.log = o.log + ['c1']
    def t_new(o, c):
        o.count += 40; o.log = o.log + ['n1', 'n2']
    scenario('tally', 'tally', t_commit, t_new)

    def t_label_c(o, c):
        o.label = 'committed'; o.count += 1
    def t_label_n(o, c):
        o.count += 5; o.log = o.log + ['n']
    scenario('tally-label-one-side', 'tally', t_label_c, t_label_n)

    def t_label_c2(o, c):
        o.label = 'committed again'
    def t_label_n2(o, c):
        o.label = 'new'
    scenario('tally-label-both-sides', 'tally', t_label_c2, t_label_n2)

    def t_target_n(o, c):
        o.target = c.root()['t2']; o.count += 1
    scenario('tally-target-changed', 'tally', t_commit, t_target_n)

    def pm_c(o, c):
        o['b'] = 2
    def pm_n(o, c):
        o['c'] = 3
    scenario('no-resolver', 'pm', pm_c, pm_n)

    scenario('length-protocol-2', 'len', lambda o, c: o.change(3), lambda o, c: o.change(10), protocol2=True)
    db.close()
finally:
    shutil.rmtree(tmp)
result = pack_list(out)
`;

async function pythonCases(oracle: Oracle): Promise<Case[]> {
  const items = unpackList(await oracle.bytes(PY_CASES, undefined, { fixtures: fixturesDir }));
  const cases: Case[] = [];
  for (let i = 0; i < items.length; i += 8) {
    const r = items[i + 7];
    cases.push({
      name: items[i].toString(),
      oid: items[i + 1],
      oldSerial: items[i + 2],
      committedSerial: items[i + 3],
      old: items[i + 4],
      committed: items[i + 5],
      newData: items[i + 6],
      resolved: r[0] === 0x2b ? r.subarray(1) : null,
    });
  }
  return cases;
}

/** zeots_conflict.Tally._p_resolveConflict, in JavaScript. */
const resolveTally: StateResolver = (old, committed, newState) => {
  const [o, c, n] = [old, committed, newState] as Map<PickleValue, PickleValue>[];
  const ref = (m: Map<PickleValue, PickleValue>, k: string): PersistentReference =>
    m.get(k) as PersistentReference;
  // PersistentReference.equals throws for different references, as ZODB's != raises ValueError
  if (!ref(o, 'target').equals(ref(n, 'target')) || !ref(o, 'target').equals(ref(c, 'target'))) {
    throw new ConflictError(null, null, null, 'target changed');
  }
  if (!ref(n, 'also').equals(ref(c, 'also'))) throw new ConflictError(null, null, null, 'also changed');
  const resolved = new Map(c);
  resolved.set('count', (c.get('count') as number) + (n.get('count') as number) - (o.get('count') as number));
  if (n.get('label') !== o.get('label')) {
    if (c.get('label') !== o.get('label'))
      throw new ConflictError(null, null, null, 'label changed on both sides');
    resolved.set('label', n.get('label')!);
  }
  const oldLog = o.get('log') as PickleValue[];
  resolved.set('log', [
    ...(c.get('log') as PickleValue[]),
    ...(n.get('log') as PickleValue[]).slice(oldLog.length),
  ]);
  return resolved;
};

function registry(): ConflictResolverRegistry {
  return new ConflictResolverRegistry().register('zeots_conflict', 'Tally', resolveTally);
}

/** loadSerial over the two revisions a case has; counts the calls. */
function serialsOf(c: Case): { loadSerial: (oid: Oid, serial: Tid) => Promise<Uint8Array>; calls: string[] } {
  const calls: string[] = [];
  const loadSerial = (oid: Oid, serial: Tid): Promise<Uint8Array> => {
    calls.push(idHex(serial));
    assert.equal(idHex(oid), idHex(c.oid));
    if (idHex(serial) === idHex(c.oldSerial)) return Promise.resolve(c.old);
    if (idHex(serial) === idHex(c.committedSerial)) return Promise.resolve(c.committed);
    return Promise.reject(new Error(`no revision ${idHex(serial)}`));
  };
  return { loadSerial, calls };
}

/** Resolves a case with `reg`, the committed data given (as the server's conflict report carries it) or not. */
async function resolveCase(
  reg: ConflictResolverRegistry,
  c: Case,
  given = true,
): Promise<{ resolved: Uint8Array | null; calls: string[] }> {
  const { loadSerial, calls } = serialsOf(c);
  const committed = given ? c.committed : new Uint8Array(0);
  const resolved = await reg.resolverFor(loadSerial)(
    c.oid,
    c.committedSerial,
    c.oldSerial,
    c.newData,
    committed,
  );
  return { resolved, calls };
}

const hex = (b: Uint8Array | null): string | null => (b ? Buffer.from(b).toString('hex') : null);

interopTest('records made by ZODB resolve to the bytes ZODB resolves them to', async (oracle) => {
  const cases = await pythonCases(oracle);
  assert.equal(cases.length, 9);
  const reg = registry();
  const verdicts: Record<string, boolean> = {};
  for (const c of cases) {
    if (c.name === 'length-protocol-2') continue;
    // committed data given (as the server's conflict report carries it), and read with loadSerial
    for (const given of [true, false]) {
      const { resolved: ours, calls } = await resolveCase(reg, c, given);
      assert.equal(hex(ours), hex(c.resolved), `${c.name} (committed data ${given ? 'given' : 'loaded'})`);
      if (c.name !== 'no-resolver') assert.equal(calls.length, given ? 1 : 2, `${c.name}: revisions read`);
      else assert.equal(calls.length, 0, 'a class without a resolver reads nothing');
    }
    verdicts[c.name] = c.resolved !== null;
  }
  // the scenarios cover both outcomes, each for its reason
  assert.deepEqual(verdicts, {
    length: true,
    'length-big': true,
    'length-again': true,
    tally: true,
    'tally-label-one-side': true,
    'tally-label-both-sides': false,
    'tally-target-changed': false,
    'no-resolver': false,
  });
  // Length's resolved state is committed + new - old, as Python ints (2**62 + 2**62 - 7 is a bigint)
  const big = cases.find((c) => c.name === 'length-big')!;
  const r = (await resolveCase(defaultResolvers, big)).resolved;
  assert.ok(r);
  const { Unpickler } = await import('../../src/pickle/unpickler.js');
  const u = new Unpickler(r);
  assert.equal(u.load(), Global.of('BTrees.Length', 'Length'));
  assert.equal(u.load(), 2n ** 62n + 2n ** 62n - 7n);
});

interopTest(
  'without a registered resolver the conflict stands, as for a class Python cannot resolve',
  async (oracle) => {
    const cases = await pythonCases(oracle);
    const tally = cases.find((c) => c.name === 'tally')!;
    assert.ok(tally.resolved, 'Python resolves it with Tally._p_resolveConflict');
    const { resolved: r, calls } = await resolveCase(new ConflictResolverRegistry(), tally);
    assert.equal(r, null);
    assert.deepEqual(calls, []);
  },
);

interopTest(
  'a protocol 2 record is resolved in protocol 2, to the state ZODB resolves it to',
  async (oracle) => {
    const cases = await pythonCases(oracle);
    const c = cases.find((x) => x.name === 'length-protocol-2')!;
    assert.ok(c.resolved);
    assert.equal(c.newData[1], 2, 'the new record is protocol 2');
    assert.equal(c.resolved[1], 3, 'ZODB writes protocol 3');
    const ours = (await resolveCase(defaultResolvers, c)).resolved;
    assert.ok(ours);
    assert.equal(ours[1], 2, 'we keep protocol 2');
    // the same values: Python reads both records to the same class and state
    const py = await oracle.json<string[]>(
      `${PY_LIST_HELPERS}
import io, pickle
def read(p):
    u = pickle.Unpickler(io.BytesIO(p)); return [repr(u.load()), repr(u.load())]
a, b = unpack_list(input)
result = [read(a), read(b)]
`,
      (await import('../helpers/oracle.js')).packList([ours, c.resolved]),
    );
    assert.deepEqual(py[0], py[1]);
  },
);

test('PersistentReference compares as ZODB: equal when the same oid and database, else it throws', () => {
  const oid = p64(7);
  const klass = Global.of('persistent.mapping', 'PersistentMapping');
  const a = new PersistentReference(tuple(oid, klass));
  const b = new PersistentReference(oid); // the same object, spelled without its class
  const other = new PersistentReference(tuple(p64(8), klass));
  assert.equal(a.equals(b), true);
  assert.deepEqual([a.oid, a.databaseName, a.weak, a.klass], [oid, null, false, klass]);
  assert.throws(() => a.equals(other), /can't reliably compare/);
  assert.throws(() => a.equals('x'), /can't reliably compare/);
  const cross = new PersistentReference(['m', tuple('other', oid, klass)]);
  assert.equal(cross.databaseName, 'other');
  assert.throws(() => a.equals(cross), /can't reliably compare/);
  const weak = new PersistentReference(['w', tuple(oid)]);
  assert.equal(weak.weak, true);
  assert.equal(weak.equals(weak), true, 'a reference is equal to itself');
  assert.throws(() => weak.equals(new PersistentReference(['w', tuple(oid)])), /can't reliably compare/);
  assert.throws(() => new PersistentReference(tuple(1, 2, 3)), /unknown persistent reference format/);
  // it pickles back as the persistent id it was read from
  assert.ok(pyEquals(loads(dumps(a)), new PersistentRef(tuple(oid, klass))));
});

test('the resolver sees one PersistentReference per reference across the three states, and failures leave the conflict', async () => {
  const klass = Global.of('zeots_conflict', 'Thing');
  const ref = new PersistentRef(tuple(p64(9), Global.of('persistent.mapping', 'PersistentMapping')));
  const rec = (n: number): Uint8Array =>
    Buffer.concat([
      dumps(klass),
      dumps(
        new Map<PickleValue, PickleValue>([
          ['n', n],
          ['r', ref],
        ]),
      ),
    ]);
  const [old, committed, newData] = [rec(1), rec(2), rec(3)];
  const load = (_oid: Oid, serial: Tid): Promise<Uint8Array> =>
    Promise.resolve(serial[7] === 1 ? old : committed);
  const seen: PickleValue[] = [];
  const reg = new ConflictResolverRegistry().register('zeots_conflict', 'Thing', (o, c, n) => {
    seen.push(o, c, n);
    return n;
  });
  const r = await reg.resolverFor(load)(p64(5), p64(2), p64(1), newData, committed);
  assert.ok(r);
  const refs = seen.map((s) => (s as Map<PickleValue, PickleValue>).get('r'));
  assert.ok(refs[0] instanceof PersistentReference);
  assert.equal(refs[0], refs[1]);
  assert.equal(refs[1], refs[2]);
  assert.deepEqual(
    seen.map((s) => (s as Map<PickleValue, PickleValue>).get('n')),
    [1, 2, 3],
  );

  // a resolver that throws, returns undefined, or a revision that cannot be read: null (the conflict stands)
  const failing: StateResolver[] = [
    () => {
      throw new ConflictError();
    },
    () => {
      throw new TypeError('bug in the resolver');
    },
    () => undefined,
  ];
  for (const f of failing) {
    const rr = new ConflictResolverRegistry().register('zeots_conflict', 'Thing', f);
    assert.equal(await rr.resolverFor(load)(p64(5), p64(2), p64(1), newData, committed), null);
  }
  assert.equal(
    await reg.resolverFor(() => Promise.reject(new Error('POSKeyError')))(
      p64(5),
      p64(2),
      p64(1),
      newData,
      committed,
    ),
    null,
  );
  // a record that is not a record, and a persistent class (no module): null
  assert.equal(
    await reg.resolverFor(load)(p64(5), p64(2), p64(1), new Uint8Array([1, 2, 3]), committed),
    null,
  );
  const persistentClass = Buffer.concat([dumps(new PersistentRef(p64(3))), dumps(1)]);
  assert.equal(await reg.resolverFor(load)(p64(5), p64(2), p64(1), persistentClass, committed), null);
  // Length with a state that is not an int: null
  const badLength = Buffer.concat([dumps(Global.of('BTrees.Length', 'Length')), dumps('x')]);
  assert.equal(
    await defaultResolvers.resolverFor(() => Promise.resolve(badLength))(
      p64(5),
      p64(2),
      p64(1),
      badLength,
      badLength,
    ),
    null,
  );
  assert.ok(defaultResolvers.get('BTrees.Length', 'Length'), 'Length is built in');
});
