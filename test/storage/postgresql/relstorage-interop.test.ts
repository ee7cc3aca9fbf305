// RelStorage 4.x (the Python reference, in the oracle venv) and zeo-ts's PostgreSQLStorage on one database,
// at the storage level (no server): what one writes the other reads the same (states, per-object history,
// loadBefore/loadSerial, the iterator, lastTransaction), they commit in turn on one database, an object each
// changed from the same start is a ConflictError for the second, an object either deletes (IExternalGC) is gone
// for both, RelStorage's pack leaves what both read the same, and a Data.fs copied in through restore reads
// the same through RelStorage.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dumps, Global, tupleFrom, type PickleValue } from '../../../src/pickle/index.js';
import { copyTransactions } from '../../../src/storage/copy.js';
import { ConflictError, POSKeyError } from '../../../src/storage/errors.js';
import { FileStorage } from '../../../src/storage/filestorage/index.js';
import { idFromHex, idHex, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import type { PostgreSQLStorage } from '../../../src/storage/postgresql/index.js';
import {
  skipRelStorage,
  storageHistory,
  storageObjects,
  untilSeen,
  useRelStorageFixture,
  type HistoryTransaction,
  type Reported,
  type Spec,
} from '../../helpers/relstorage.js';
import { commitMany, mappingOf, mappingRecord, ref, txnMeta } from '../contract/helpers.js';

const tuple = (...items: PickleValue[]) => tupleFrom<PickleValue>(items);
const PM = ['persistent.mapping', 'PersistentMapping'] as const;
const sha1 = (d: Uint8Array): string => createHash('sha1').update(d).digest('hex');

/** A record as ZODB's Connection writes it: (class, None), then the state. */
function record(module: string, name: string, state: PickleValue): Uint8Array {
  return new Uint8Array(Buffer.concat([dumps(tuple(Global.of(module, name), null), 3), dumps(state, 3)]));
}

/** An OOBTree small enough to keep its one bucket inline: its state is (((k, v, k, v...),),). */
function oobtree(items: Array<[string, PickleValue]>): Uint8Array {
  return record('BTrees.OOBTree', 'OOBTree', tuple(tuple(tuple(tuple(...items.flat())))));
}

describe('RelStorage 4.x and PostgreSQLStorage on one database', { skip: skipRelStorage }, () => {
  const fx = useRelStorageFixture();
  const { rs } = fx;

  async function database(): Promise<string> {
    return (await fx.database('interop')).dsn;
  }

  /** What each storage heard from watchInvalidations. */
  const invalidations = new Map<PostgreSQLStorage, Reported>();

  async function storage(dsn: string): Promise<PostgreSQLStorage> {
    const { storage: s, reported } = await fx.openWatched(dsn);
    invalidations.set(s, reported);
    return s;
  }

  /** One transaction through PostgreSQLStorage's two-phase commit; its tid. */
  function commit(
    s: PostgreSQLStorage,
    meta: { user?: string; description?: string; extension?: Record<string, PickleValue> },
    records: Array<[Oid, Tid, Uint8Array]>,
  ): Promise<Tid> {
    return commitMany(s, records, { ...meta, extension: new Map(Object.entries(meta.extension ?? {})) });
  }

  /** Both see the same history, objects and last transaction. */
  async function assertSameView(s: PostgreSQLStorage, dsn: string): Promise<HistoryTransaction[]> {
    const theirs = await rs.view(dsn);
    assert.deepEqual(await storageHistory(s), theirs.history);
    assert.deepEqual(await storageObjects(s), theirs.objects);
    assert.equal(idHex(s.lastTransaction()), theirs.lastTransaction);
    return theirs.history;
  }

  it('RelStorage writes (BTrees, many objects, a resolved conflict): PostgreSQLStorage reads the same', async () => {
    const dsn = await database();
    await rs.create(dsn);
    const tree: Record<string, Spec> = {};
    for (let i = 0; i < 400; i++) tree[`key${String(i).padStart(3, '0')}`] = i;
    await rs.commit(dsn, [
      {
        user: 'alice',
        description: 'a mapping, a tree of many buckets, a counter',
        extension: { app: 'interop', n: 3 },
        set: [
          [['a'], { $mapping: { x: 1, s: 'text', b: { $bytes: '00ff10' } } }],
          [['t'], { $btree: tree }],
          [['n'], { $length: 0 }],
        ],
      },
      { description: 'change the tree', set: [[['t', 'key007'], 'seven']], delete: [['t', 'key100']] },
    ]);
    // two RelStorage connections change the counter from the same start: the second resolves the conflict
    const first = (await rs.session('one', dsn)).session;
    const second = (await rs.session('two', dsn)).session;
    await first.change({ description: 'one', incr: [[['n'], 5]] });
    await second.change({ description: 'two', incr: [[['n'], 2]] });
    assert.ok('tid' in (await first.commit()));
    assert.ok('tid' in (await second.commit()));
    await first.close();
    await second.close();
    await rs.commit(dsn, [{ user: 'bob', description: 'a deletion', delete: [['a']] }]);
    const spec = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.deepEqual(spec.$mapping.n, { $length: 7 });

    const s = await storage(dsn);
    const history = await assertSameView(s, dsn);
    assert.equal(history.length, 6);
    const oids = new Set(history.flatMap((t) => t.records.map((r) => r.oid)));
    assert.ok(oids.size > 10, `a tree of many buckets: ${oids.size} objects`);

    // every revision by loadSerial, and the root's and the counter's by loadBefore at every tid
    for (const t of history) {
      for (const r of t.records) {
        assert.equal(sha1(await s.loadSerial(idFromHex(r.oid), idFromHex(r.tid))), r.data);
      }
    }
    // the counter: the one object of the two transactions whose conflict RelStorage resolved
    assert.deepEqual(
      history.slice(3, 5).map((t) => [t.description, t.records.length]),
      [
        ['one', 1],
        ['two', 1],
      ],
    );
    const counter = history[3].records[0].oid;
    assert.equal(history[4].records[0].oid, counter);
    for (const oid of [idHex(z64), counter]) {
      for (const t of history) {
        const ours = await s.loadBefore(idFromHex(oid), idFromHex(t.tid));
        const theirs = await rs.loadBefore(dsn, oid, t.tid);
        assert.deepEqual(
          ours && { data: sha1(ours.data), start: idHex(ours.start), end: ours.end && idHex(ours.end) },
          theirs,
          `loadBefore(${oid}, ${t.tid})`,
        );
      }
    }

    // the root's history, newest first, with each transaction's metadata
    const rootTxns = history.filter((t) => t.records.some((r) => r.oid === idHex(z64))).reverse();
    const rootHistory = await s.history(z64, 100);
    assert.deepEqual(
      rootHistory.map((h) => [
        idHex(h.tid),
        Buffer.from(h.userName).toString(),
        Buffer.from(h.description).toString(),
      ]),
      rootTxns.map((t) => [t.tid, t.user, t.description]),
    );

    // the iterator from one tid to another (both included)
    const part: string[] = [];
    for await (const t of s.iterator(idFromHex(history[1].tid), idFromHex(history[3].tid)))
      part.push(idHex(t.tid));
    assert.deepEqual(
      part,
      history.slice(1, 4).map((t) => t.tid),
    );
  });

  it('PostgreSQLStorage writes a new database: RelStorage reads the same objects and history', async () => {
    const dsn = await database();
    const s = await storage(dsn);
    const [a, t, c] = [await s.newOid(), await s.newOid(), await s.newOid()];
    const items: Array<[string, PickleValue]> = Array.from({ length: 20 }, (_, i) => [`k${i}`, i]);
    const tid1 = await commit(s, { user: 'carol', description: 'initial', extension: { app: 'zeo-ts' } }, [
      [
        z64,
        z64,
        mappingRecord([
          ['a', ref(a, ...PM)],
          ['t', ref(t, 'BTrees.OOBTree', 'OOBTree')],
          ['n', ref(c, 'BTrees.Length', 'Length')],
          ['s', 'text'],
          ['b', new Uint8Array([0, 255, 16])],
        ]),
      ],
      [a, z64, mappingRecord([['x', 1]])],
      [t, z64, oobtree(items)],
      [c, z64, record('BTrees.Length', 'Length', 7)],
    ]);
    const tid2 = await commit(s, { description: 'x is 2' }, [[a, tid1, mappingRecord([['x', 2]])]]);
    assert.ok(idHex(tid2) > idHex(tid1));

    assert.deepEqual(await rs.tree(dsn), {
      $mapping: {
        a: { $mapping: { x: 2 } },
        t: { $btree: Object.fromEntries(items) as Record<string, Spec> },
        n: { $length: 7 },
        s: 'text',
        b: { $bytes: '00ff10' },
      },
    });
    const history = await assertSameView(s, dsn);
    assert.deepEqual(
      history.map((x) => [x.tid, x.user, x.description, x.extension, x.records.length]),
      [
        [idHex(tid1), 'carol', 'initial', "{'app': 'zeo-ts'}", 4],
        [idHex(tid2), '', 'x is 2', '{}', 1],
      ],
    );
    assert.equal(
      await rs.loadSerial(dsn, idHex(a), idHex(tid1)),
      history[0].records.find((r) => r.oid === idHex(a))?.data,
    );

    // RelStorage writes on top: its oids do not collide with ours, and we read its commit
    const [tid3] = await rs.commit(dsn, [
      { description: 'RelStorage on top', set: [[['r'], { $mapping: { y: 1 } }]], incr: [[['n'], 1]] },
    ]);
    await untilSeen(s, tid3);
    const after = await assertSameView(s, dsn);
    const added = after[2].records
      .map((r) => r.oid)
      .filter((oid) => !history[0].records.some((r) => r.oid === oid));
    assert.equal(added.length, 1, 'RelStorage made one new object, under an oid we did not use');
  });

  it('RelStorage and PostgreSQLStorage commit in turn on one database', async () => {
    const dsn = await database();
    await rs.create(dsn);
    const s = await storage(dsn);
    const tids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const [rsTid] = await rs.commit(dsn, [
        { description: `rs ${i}`, set: [[[`rs${i}`], { $mapping: { i } }]] },
      ]);
      await untilSeen(s, rsTid);
      const root = await s.load(z64);
      assert.equal(idHex(root.serial), rsTid);
      const oid = await s.newOid();
      const tid = await commit(s, { description: `ps ${i}` }, [
        [z64, root.serial, mappingRecord([...mappingOf(root.data), [`ps${i}`, ref(oid, ...PM)]])],
        [oid, z64, mappingRecord([['i', i]])],
      ]);
      assert.ok(idHex(tid) > rsTid);
      tids.push(rsTid, idHex(tid));
    }
    const expected: Record<string, Spec> = {};
    for (let i = 0; i < 4; i++) {
      expected[`rs${i}`] = { $mapping: { i } };
      expected[`ps${i}`] = { $mapping: { i } };
    }
    const spec = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.deepEqual(spec.$mapping, expected);
    const history = await assertSameView(s, dsn);
    assert.deepEqual(
      history.slice(1).map((t) => t.tid),
      tids,
    );
    // RelStorage's commits, and only those, were reported, each once, in order, with the oids they wrote
    assert.deepEqual(
      invalidations.get(s),
      history
        .filter((t) => t.description.startsWith('rs '))
        .map((t) => ({ tid: t.tid, oids: t.records.map((r) => r.oid).sort() })),
    );

    // RelStorage packs (with GC) to the middle: both still read the same, which is ZODB's pack: up to the
    // pack tid only the revisions current then are kept (every object is reachable), in transactions marked
    // packed, the emptied ones gone; the later transactions as they were
    const cut = tids[3];
    await rs.pack(dsn, cut);
    const packed = await assertSameView(s, dsn);
    const replaced = (t: HistoryTransaction, oid: string) =>
      history.some((u) => u.tid > t.tid && u.tid <= cut && u.records.some((r) => r.oid === oid));
    assert.deepEqual(packed, [
      ...history
        .filter((t) => t.tid <= cut)
        .map((t) => ({ ...t, status: 'p', records: t.records.filter((r) => !replaced(t, r.oid)) }))
        .filter((t) => t.records.length > 0),
      ...history.filter((t) => t.tid > cut),
    ]);
    assert.ok(packed.length < history.length);
  });

  it('a Data.fs ZODB wrote, copied into PostgreSQLStorage (restore): RelStorage reads the same history', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-rs-copy-'));
    try {
      const path = join(dir, 'Data.fs');
      await rs.fileStorageWorkload(path);
      const source = await FileStorage.open(path, { readOnly: true });
      try {
        const dsn = await database();
        const s = await storage(dsn);
        assert.equal(await copyTransactions(source, s), 6);
        // the same transactions, records and data; in the schema a transaction's records have no order but the
        // oids' (RelStorage's iterator and ours list them by oid, FileStorage in file order), and no back
        // pointers (undo's records are copies of the data)
        const expected = await storageHistory(source);
        assert.ok(
          expected.some((t) => t.records.some((r) => r.dataTxn !== null)),
          'the undo wrote back pointers',
        );
        const history = await assertSameView(s, dsn);
        assert.deepEqual(
          history,
          expected.map((t) => ({
            ...t,
            records: t.records
              .map((r) => ({ ...r, dataTxn: null }))
              .sort((a, b) => (a.oid < b.oid ? -1 : a.oid > b.oid ? 1 : 0)),
          })),
        );
        assert.deepEqual(await storageObjects(s), await storageObjects(source));
        const spec = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
        assert.deepEqual(spec.$mapping.m, { $mapping: { x: 2 } });
        assert.deepEqual(spec.$mapping.n, { $length: 3 });
      } finally {
        await source.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('deleteObject (IExternalGC) by either: the other finds the object gone', async () => {
    const dsn = await database();
    await rs.create(dsn);
    const s = await storage(dsn);
    // two objects nothing refers to, one for each to delete
    const [x, y] = [await s.newOid(), await s.newOid()];
    const made = await commit(s, { description: 'garbage' }, [
      [x, z64, mappingRecord([['g', 1]])],
      [y, z64, mappingRecord([['g', 2]])],
    ]);
    const txn = txnMeta({ description: 'zeo-ts deletes x' });
    await s.tpcBegin(txn);
    await s.deleteObject(x, made, txn);
    await s.tpcVote(txn);
    const ours = idHex(await s.tpcFinish(txn));
    const raw = await rs.rawBegin('gc', dsn, 'RelStorage deletes y');
    await raw.deleteObject(y, made);
    assert.equal(await raw.vote(), null);
    const theirs = await raw.finish();
    await untilSeen(s, theirs);
    // each delete is a transaction with the object's record without data; both read both objects as gone
    const history = await assertSameView(s, dsn);
    assert.deepEqual(
      history.slice(-2).map((t) => [t.tid, t.description, t.records.map((r) => [r.oid, r.data])]),
      [
        [ours, 'zeo-ts deletes x', [[idHex(x), null]]],
        [theirs, 'RelStorage deletes y', [[idHex(y), null]]],
      ],
    );
    const objects = await storageObjects(s);
    assert.deepEqual([objects[idHex(x)], objects[idHex(y)]], [null, null]);
    for (const oid of [x, y]) await assert.rejects(s.load(oid), POSKeyError);
  });

  it('an object changed by each from the same start is a ConflictError for the second to commit', async () => {
    const dsn = await database();
    await rs.create(dsn);
    const s = await storage(dsn);

    // RelStorage starts from the root as it is, we commit a change to it first: RelStorage's commit conflicts
    const { session } = await rs.session('late', dsn);
    await session.change({ set: [[['who'], 'RelStorage']] });
    const root = await s.load(z64);
    const ours = await commit(s, { description: 'zeo-ts first' }, [
      [z64, root.serial, mappingRecord([...mappingOf(root.data), ['who', 'zeo-ts']])],
    ]);
    assert.deepEqual(await session.commit(), { conflict: 'ConflictError', oid: idHex(z64) });

    // we start from the root as it is, RelStorage commits a change to it first: our commit conflicts
    const start = await s.load(z64);
    assert.equal(idHex(start.serial), idHex(ours));
    await session.change({ set: [[['who'], 'RelStorage']] });
    const theirs = await session.commit();
    assert.ok('tid' in theirs);
    await session.close();
    await assert.rejects(
      commit(s, { description: 'zeo-ts second' }, [
        [z64, start.serial, mappingRecord([...mappingOf(start.data), ['who', 'zeo-ts again']])],
      ]),
      (e: unknown) => e instanceof ConflictError && e.oid !== null && idHex(e.oid) === idHex(z64),
    );
    // the winner of each race is what both read
    await untilSeen(s, theirs.tid);
    const spec = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.equal(spec.$mapping.who, 'RelStorage');
    await assertSameView(s, dsn);
  });
});
