// ZODB/tests/TransactionalUndoStorage.py: undo() writes a transaction that reverses another, refusing (UndoError)
// when a later transaction changed the same objects (unless the data is the same or a resolver merges it);
// undoLog/undoInfo paging; undo across pack. The tests ZODB writes against a DB use the Db helper.
import assert from 'node:assert/strict';
import { referencesf, type PyDict } from '../../../src/pickle/index.js';
import { POSKeyError, StorageTransactionError, UndoError } from '../../../src/storage/errors.js';
import { p64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData, type Storage, type UndoLogEntry } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertId,
  beginUndosVote,
  commitMany,
  Db,
  dostore,
  hex,
  loadCurrent,
  mappingRecord,
  minpo,
  minpoValue,
  objectRecord,
  packTimeNow,
  PCOUNTER_MODULE,
  pcounter,
  pcounterResolver,
  pcounterValue,
  readAll,
  ref,
  refOid,
  snooze,
  text,
  txnMeta,
  undoIds,
  undoTxn,
  z64,
} from './helpers.js';

const C = (state: PyDict = new Map()) => objectRecord('ZODB.tests.TransactionalUndoStorage', 'C', state);

/** A MinPO as a Connection writes it (a persistent object referenced from the root). */
const minpoObj = (value: number) => objectRecord('ZODB.tests.MinPO', 'MinPO', new Map([['value', value]]));
const minpoRef = (oid: Oid) => ref(oid, 'ZODB.tests.MinPO', 'MinPO');

/** undoInfo/undoLog entries as comparable values. */
const show = (entries: UndoLogEntry[]) =>
  entries.map((e) => ({
    id: Buffer.from(e.id).toString('latin1'),
    time: e.time,
    user: text(e.userName),
    description: text(e.description),
    extension: [...e.extension],
  }));

export function transactionalUndoStorageTests(name: string, factory: StorageFactory): void {
  const noUndo = !factory.supportsUndo && 'no undo';
  const noPack = noUndo || (!factory.supportsPack && 'no pack');

  /** _iterate(): the iterator must read a storage with undo records to the end. */
  const iterateAll = async (s: Storage) => {
    if (factory.supportsIterator) await readAll(s);
  };

  /** Asserts the value of a root-referenced MinPO object, through the root. */
  const rootValue = async (db: Db, key: string) => {
    const r = (await db.root()).get(key);
    return (await db.state(refOid(r ?? undefined))).get('value');
  };

  storageSuite(`${name}: TransactionalUndoStorage`, noUndo, () => {
    storageTest(factory, 'checkSimpleTransactionalUndo', async ({ storage: s }) => {
      const oid = await s.newOid();
      const r1 = await dostore(s, { oid, data: 23 });
      const r2 = await dostore(s, { oid, revid: r1, data: 24 });
      await dostore(s, { oid, revid: r2, data: 25 });

      let info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid], note: 'undo1' });
      assert.equal(minpoValue((await s.load(oid)).data), 24);

      info = await undoIds(s);
      await undoTxn(s, info[2], { expectedOids: [oid], note: 'undo2' });
      assert.equal(minpoValue((await s.load(oid)).data), 23);

      // undoing the first record undoes the object's creation
      info = await undoIds(s);
      await undoTxn(s, info[4], { expectedOids: [oid], note: 'undo3' });
      await assert.rejects(s.load(oid), POSKeyError);

      // and undoing that brings the object back
      info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid] });
      assert.equal(minpoValue((await s.load(oid)).data), 23);
      await iterateAll(s);
    });

    storageTest(factory, 'checkCreationUndoneGetTid', async ({ storage: s }) => {
      const oid = await s.newOid();
      await dostore(s, { oid, data: 23 });
      const [id] = await undoIds(s);
      await undoTxn(s, id, { note: 'undo1' });
      // getTid is load's serial here: an uncreated object has none
      await assert.rejects(s.load(oid), POSKeyError);
    });

    storageTest(factory, 'checkUndoCreationBranch1', async ({ storage: s }) => {
      const oid = await s.newOid();
      const r1 = await dostore(s, { oid, data: 11 });
      await dostore(s, { oid, revid: r1, data: 12 });
      let info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid] });
      assert.equal(minpoValue((await s.load(oid)).data), 11);
      // now undo the creation instead of redoing
      info = await undoIds(s);
      await undoTxn(s, info[2], { expectedOids: [oid] });
      await assert.rejects(s.load(oid), POSKeyError);
      // loading the current data through loadBefore fails the same way
      await assert.rejects(s.loadBefore(oid, p64(0x7fffffffffffffffn)), POSKeyError);
      await iterateAll(s);
    });

    storageTest(factory, 'checkUndoCreationBranch2', async ({ storage: s }) => {
      const oid = await s.newOid();
      const r1 = await dostore(s, { oid, data: 11 });
      await dostore(s, { oid, revid: r1, data: 12 });
      let info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid] });
      assert.equal(minpoValue((await s.load(oid)).data), 11);
      // redo the last undo
      info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid] });
      assert.equal(minpoValue((await s.load(oid)).data), 12);
      await iterateAll(s);
    });

    storageTest(factory, 'checkTwoObjectUndo', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      const tid = await commitMany(s, [
        [oid1, z64, minpo(31)],
        [oid2, z64, minpo(51)],
      ]);
      await commitMany(s, [
        [oid1, tid, minpo(32)],
        [oid2, tid, minpo(52)],
      ]);
      assert.equal(minpoValue((await s.load(oid1)).data), 32);
      assert.equal(minpoValue((await s.load(oid2)).data), 52);
      const info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid1, oid2] });
      assert.equal(minpoValue((await s.load(oid1)).data), 31);
      assert.equal(minpoValue((await s.load(oid2)).data), 51);
      await iterateAll(s);
    });

    storageTest(factory, 'checkTwoObjectUndoAtOnce', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      let tid = await commitMany(s, [
        [oid1, z64, minpo(30)],
        [oid2, z64, minpo(50)],
      ]);
      tid = await commitMany(s, [
        [oid1, tid, minpo(31)],
        [oid2, tid, minpo(51)],
      ]);
      await commitMany(s, [
        [oid1, tid, minpo(32)],
        [oid2, tid, minpo(52)],
      ]);
      // undo the two newest transactions in one
      let info = await undoIds(s);
      const t = new TransactionMetaData();
      const oids = await beginUndosVote(s, t, info[0], info[1]);
      await s.tpcFinish(t);
      assert.deepEqual([...oids].sort(), [hex(oid1), hex(oid2)].sort());
      assert.equal(minpoValue((await s.load(oid1)).data), 30);
      assert.equal(minpoValue((await s.load(oid2)).data), 50);
      // and undo that undo
      info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid1, oid2] });
      assert.equal(minpoValue((await s.load(oid1)).data), 32);
      assert.equal(minpoValue((await s.load(oid2)).data), 52);
      await iterateAll(s);
    });

    storageTest(factory, 'checkTwoObjectUndoAgain', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      let revid1 = await dostore(s, { oid: oid1, data: 31 });
      let revid2 = await dostore(s, { oid: oid2, data: 51 });
      await commitMany(s, [
        [oid1, revid1, minpo(32)],
        [oid2, revid2, minpo(52)],
      ]);
      let info = await undoIds(s);
      await undoTxn(s, info[0], { expectedOids: [oid1, oid2] });
      let data: Uint8Array;
      [data, revid1] = await loadCurrent(s, oid1);
      assert.equal(minpoValue(data), 31);
      [data, revid2] = await loadCurrent(s, oid2);
      assert.equal(minpoValue(data), 51);
      // both in one transaction, then each changed in its own
      const tid = await commitMany(s, [
        [oid1, revid1, minpo(33)],
        [oid2, revid2, minpo(53)],
      ]);
      await dostore(s, { oid: oid1, revid: tid, data: 34 });
      await dostore(s, { oid: oid2, revid: tid, data: 54 });
      info = await undoIds(s);
      await undoTxn(s, info[1]);
      assert.equal(minpoValue((await s.load(oid1)).data), 33);
      assert.equal(minpoValue((await s.load(oid2)).data), 54);
      await iterateAll(s);
    });

    storageTest(factory, 'checkNotUndoable', async ({ storage: s }) => {
      const oid = await s.newOid();
      const revidA = await dostore(s, { oid, data: 51 });
      const revidB = await dostore(s, { oid, revid: revidA, data: 52 });
      const revidC = await dostore(s, { oid, revid: revidB, data: 53 });
      let info = await undoIds(s);
      let t = new TransactionMetaData();
      await assert.rejects(beginUndosVote(s, t, info[1]), UndoError);
      await s.tpcAbort(t);
      assert.equal(minpoValue((await s.load(oid)).data), 53, 'the failed undo changed nothing');

      // two objects in one transaction, one of them changed since: that transaction cannot be undone
      const oid1 = oid;
      const oid2 = await s.newOid();
      const tid = await commitMany(s, [
        [oid1, revidC, minpo(81)],
        [oid2, z64, minpo(91)],
      ]);
      const [data1, revid11] = await loadCurrent(s, oid1);
      assert.equal(minpoValue(data1), 81);
      const [data2, revid22] = await loadCurrent(s, oid2);
      assert.equal(minpoValue(data2), 91);
      assertId(revid11, tid);
      assertId(revid22, tid);
      const revid2 = await dostore(s, { oid: oid2, revid: tid, data: 92 });
      assert.notEqual(hex(tid), hex(revid2));
      info = await undoIds(s);
      t = new TransactionMetaData();
      await assert.rejects(beginUndosVote(s, t, info[1]), UndoError);
      await s.tpcAbort(t);
      assert.equal(minpoValue((await s.load(oid1)).data), 81, 'no partial undo');
      assert.equal(minpoValue((await s.load(oid2)).data), 92);
      await iterateAll(s);
    });

    storageTest(factory, 'checkUndoUnknownTransaction (not a ZODB method)', async ({ storage: s }) => {
      await dostore(s);
      // an id of no transaction, and no id at all: refused by undo, or by the vote of a storage undoing there
      for (const bad of ['AAAAAAAAAAE=', 'xx']) {
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        const undo = s.undo(new Uint8Array(Buffer.from(bad)), t);
        if (factory.undoAtVote) {
          await undo;
          // (ZODB's FileStorage decodes the id with base64 first: runzeo reports a malformed one as binascii.Error)
          await assert.rejects(s.tpcVote(t), bad === 'xx' ? Error : UndoError);
        } else await assert.rejects(undo, UndoError);
        await s.tpcAbort(t);
      }
      // undo needs the transaction in progress
      const [id] = await undoIds(s);
      await assert.rejects(s.undo(id, new TransactionMetaData()), StorageTransactionError);
    });

    storageTest(
      factory,
      'checkTransactionalUndoAfterPack',
      async ({ storage: s }) => {
        // undo ids must not depend on positions a pack changes
        const oid = z64;
        const revid0 = await dostore(s, { oid, data: 50 });
        const revid1 = await dostore(s, { oid, revid: revid0, data: 51 });
        const packtime = await packTimeNow();
        const revid2 = await dostore(s, { oid, revid: revid1, data: 52 });
        await dostore(s, { oid, revid: revid2, data: 53 });
        let info = await undoIds(s);
        assert.equal(info.length, 4);
        const tid = info[0];
        // pack away the first revision only; the second must stay for the third to be undoable
        await s.pack(packtime, referencesf);
        info = await undoIds(s);
        assert.equal(info.length, 2, 'nothing at or before the pack time is undoable');
        await undoTxn(s, tid, { expectedOids: [oid] });
        assert.equal(minpoValue((await s.load(oid)).data), 52);
        await iterateAll(s);
      },
      { skip: noPack },
    );

    storageTest(
      factory,
      'checkTransactionalUndoAfterPackWithObjectUnlinkFromRoot',
      async ({ storage: s }) => {
        const db = await Db.open(s);
        const o1 = await db.newOid();
        const o2 = await db.newOid();
        await db.commit(
          [
            [z64, mappingRecord([['obj', ref(o1)]])],
            [o1, C(new Map([['obj', ref(o2)]]))],
            [o2, C()],
          ],
          { description: 'o1 -> o2' },
        );
        const packtime = await packTimeNow();
        const o3 = await db.newOid();
        await db.commit(
          [
            [o2, C(new Map([['obj', ref(o3)]]))],
            [o3, C()],
          ],
          { description: 'o1 -> o2 -> o3' },
        );
        await db.commit([[o1, C(new Map([['obj', ref(o3)]]))]], { description: 'o1 -> o3' });

        const descriptions = async () => (await s.undoLog(0, -20)).map((e) => text(e.description));
        assert.deepEqual(await descriptions(), [
          'o1 -> o3',
          'o1 -> o2 -> o3',
          'o1 -> o2',
          'initial database creation',
        ]);
        await s.pack(packtime, referencesf);
        assert.deepEqual(await descriptions(), ['o1 -> o3', 'o1 -> o2 -> o3']);

        const [log0] = await s.undoLog(0, -20);
        await db.undo([log0.id], 'undo');
        await db.sync();
        assert.deepEqual(await descriptions(), ['undo', 'o1 -> o3', 'o1 -> o2 -> o3']);
        // o1 points to o2 again, and o2 (kept: reachable at the pack time) to o3
        const o1obj = refOid((await db.state(o1)).get('obj'));
        assertId(o1obj, o2);
        assertId(refOid((await db.state(o1obj)).get('obj')), o3);
        await iterateAll(s);
      },
      { skip: noPack },
    );

    storageTest(
      factory,
      'checkPackAfterUndoDeletion',
      async ({ storage: s }) => {
        const db = await Db.open(s);
        const packTimes: number[] = [];
        const setPackTime = async () => {
          packTimes.push(Date.now() / 1000);
          await snooze();
        };
        const keys = [await db.newOid(), await db.newOid(), await db.newOid()];
        const rootOf = (which: number[]) => mappingRecord(which.map((i) => [`key${i}`, minpoRef(keys[i])]));
        await snooze();
        await db.commit(
          [[z64, rootOf([0, 1, 2])], ...keys.map((k, i): [Oid, Uint8Array] => [k, minpoObj(i)])],
          { description: 'create 3 keys' },
        );
        await setPackTime();
        await db.commit([[z64, rootOf([0, 2])]], { description: 'delete 1 key' });
        await setPackTime();
        assert.deepEqual([...(await db.root()).keys()].sort(), ['key0', 'key2']);

        const [l0] = await s.undoInfo(0, -20);
        await db.undo([l0.id], 'undo deletion');
        await db.sync();
        await setPackTime();
        assert.deepEqual([...(await db.root()).keys()].sort(), ['key0', 'key1', 'key2']);

        // key1 was unreachable at the second pack time, but the undo after it points back to the root
        // revision that refers to it: every pack must keep it
        for (const t of packTimes) {
          await s.pack(t, referencesf);
          await db.sync();
          assert.deepEqual([...(await db.root()).keys()].sort(), ['key0', 'key1', 'key2']);
          for (let i = 0; i < 3; i++) assert.equal(await rootValue(db, `key${i}`), i);
        }
        await iterateAll(s);
      },
      { skip: noPack },
    );

    storageTest(
      factory,
      'checkPackAfterUndoManyTimes',
      async ({ storage: s }) => {
        const db = await Db.open(s);
        const test1 = await db.newOid();
        const test2 = await db.newOid();
        const test3 = await db.newOid();
        await db.commit([
          [z64, mappingRecord([['test', minpoRef(test1)]])],
          [test1, minpoObj(1)],
        ]);
        await db.commit([
          [
            z64,
            mappingRecord([
              ['test', minpoRef(test1)],
              ['test2', minpoRef(test2)],
            ]),
          ],
          [test2, minpoObj(2)],
        ]);
        await db.commit(
          [
            [
              z64,
              mappingRecord([
                ['test', minpoRef(test3)],
                ['test2', minpoRef(test2)],
              ]),
            ],
            [test3, minpoObj(3)],
          ],
          { description: 'root of undo' },
        );
        const packtimes: number[] = [];
        for (let i = 0; i < 10; i++) {
          const [l0] = await s.undoInfo(0, -20);
          await db.undo([l0.id], `undo ${i}`);
          await db.sync();
          assert.equal(await rootValue(db, 'test'), i % 2 ? 3 : 1);
          assert.equal(await rootValue(db, 'test2'), 2);
          packtimes.push(Date.now() / 1000);
          await snooze();
        }
        for (const t of packtimes) {
          await s.pack(t, referencesf);
          await db.sync();
          // the last undo set the value to 3, and pack never changes that
          assert.equal(await rootValue(db, 'test'), 3);
          assert.equal(await rootValue(db, 'test2'), 2);
        }
      },
      { skip: noPack },
    );

    storageTest(
      factory,
      'checkTransactionalUndoIterator',
      async ({ storage: s }) => {
        // data_txn of the records an undo writes points to the transaction whose data they restore
        const BATCHES = 4;
        const OBJECTS = 4;
        const orig: Array<[Tid, Oid, Tid]> = [];
        for (let i = 0; i < BATCHES; i++) {
          const t = new TransactionMetaData();
          const tid = p64(i + 1);
          await s.tpcBegin(t, tid);
          for (let j = 0; j < OBJECTS; j++) {
            const oid = await s.newOid();
            await s.store(oid, z64, minpo(i * OBJECTS + j), t);
            orig.push([tid, oid, tid]);
          }
          await s.tpcVote(t);
          await s.tpcFinish(t);
        }
        for (const [tid, oid] of orig) assertId((await s.load(oid)).serial, tid);
        let i = 0;
        for (const [, oid, revid] of orig)
          await dostore(s, { oid, revid, data: minpo(revid), description: `update ${i++}` });

        // undo, in one transaction per batch, the updates of the objects of that batch (newest batch first)
        for (let b = 0; b < BATCHES; b++) {
          const info = await undoIds(s);
          const t = new TransactionMetaData();
          await s.tpcBegin(t);
          const base = b * OBJECTS + b;
          for (let j = 0; j < OBJECTS; j++) await s.undo(info[base + j], t);
          await s.tpcVote(t);
          await s.tpcFinish(t);
        }

        const all = await readAll(s);
        assert.equal(all.length, (2 + OBJECTS) * BATCHES);
        let n = 0;
        for (let b = 0; b < BATCHES; b++, n++) {
          const { txn, records } = all[n];
          const tid = p64(b + 1);
          assertId(txn.tid, tid);
          assert.deepEqual(
            records.map((r) => [hex(r.oid), hex(r.tid), r.dataTxn]).sort(),
            orig
              .filter(([t]) => hex(t) === hex(tid))
              .map(([, oid, revid]) => [hex(oid), hex(revid), null])
              .sort(),
          );
        }
        for (let k = 0; k < BATCHES * OBJECTS; k++, n++) {
          assert.equal(all[n].records.filter((r) => r.dataTxn === null).length, 1);
        }
        for (let b = 0; b < BATCHES; b++, n++) {
          const otid = p64(BATCHES - b);
          if (factory.backPointers === false) {
            // no back pointers: the undo's records are copies of the data they restore
            assert.deepEqual(
              all[n].records.map((r) => [hex(r.oid), r.dataTxn, minpoValue(r.data!)]).sort(),
              orig
                .map(([t, oid], k) => [hex(t), hex(oid), k] as const)
                .filter(([t]) => t === hex(otid))
                .map(([, oid, k]) => [oid, null, k])
                .sort(),
            );
            continue;
          }
          assert.deepEqual(
            all[n].records.map((r) => [hex(r.oid), r.dataTxn && hex(r.dataTxn)]).sort(),
            orig
              .filter(([t]) => hex(t) === hex(otid))
              .map(([, oid]) => [hex(oid), hex(otid)])
              .sort(),
          );
        }
      },
      {
        skip:
          (!factory.supportsIterator && 'no iterator') ||
          (!factory.supportsRestore && 'tpcBegin with a given tid'),
      },
    );

    storageTest(factory, 'checkUndoLogMetadata', async ({ storage: s }) => {
      const db = await Db.open(s);
      const o1 = await db.newOid();
      await db.commit(
        [
          [z64, mappingRecord([['obj', ref(o1)]])],
          [o1, C()],
        ],
        {
          description: 't1',
          // transaction.setUser('u3', path='p3') makes 'p3 u3'
          user: 'p3 u3',
          extension: new Map([['k2', 'this is transaction metadata']]),
        },
      );
      const log = await s.undoLog(0, -20);
      assert.equal(log.length, 2);
      const d = log[0];
      assert.equal(text(d.description), 't1');
      assert.equal(d.extension.get('k2'), 'this is transaction metadata');
      assert.equal(text(d.userName), 'p3 u3');
      assert.equal(text(log[1].description), 'initial database creation');
      assert.equal(log[1].extension.size, 0);
    });

    const exerciseInfoIndices =
      (method: 'undoInfo' | 'undoLog') =>
      async ({ storage: s }: { storage: Storage }) => {
        const info = (first?: number, last?: number) => s[method](first ?? 0, last ?? -20);
        const db = await Db.open(s);
        const entries: Array<[string, number]> = [];
        for (const key of 'abcdefghijklmnopqrstuvwxyz') {
          entries.push([key, key.charCodeAt(0)]);
          await db.commit([[z64, mappingRecord(entries)]]);
        }
        // 26 letters and the transaction that made the root
        const allofem = show(await info(0, 100000));
        assert.equal(allofem.length, 27);
        assert.deepEqual(show(await info(0, -1000000)), allofem);
        const dflt = show(await info());
        assert.equal(dflt.length, 20);
        assert.deepEqual(dflt, allofem.slice(0, 20));
        const fresh = show(await info(0, 1));
        assert.equal(fresh.length, 1);
        assert.deepEqual(fresh[0], allofem[0]);
        assert.deepEqual(show(await info(0, -1)), fresh);
        const oddball = show(await info(11, 17));
        assert.equal(oddball.length, 17 - 11);
        assert.deepEqual(oddball, allofem.slice(11, 17));
        assert.deepEqual(show(await info(11, -6)), oddball);
      };
    storageTest(factory, 'checkIndicesInUndoInfo', exerciseInfoIndices('undoInfo'));
    storageTest(factory, 'checkIndicesInUndoLog', exerciseInfoIndices('undoLog'));

    storageTest(
      factory,
      'checkUndoInfoSpecificationAndUndoLogFilter (not a ZODB method)',
      async ({ storage: s }) => {
        await dostore(s, { description: 'one', user: 'ann' });
        await dostore(s, { description: 'two', user: 'bob', extension: new Map([['k', 1]]) });
        await dostore(s, { description: 'three', user: 'ann' });
        const byAnn = await s.undoInfo(0, -20, new Map([['user_name', Buffer.from('ann')]]));
        assert.deepEqual(
          byAnn.map((e) => text(e.description)),
          ['three', 'one'],
        );
        const byExt = await s.undoInfo(0, -20, new Map([['k', 1]]));
        assert.deepEqual(
          byExt.map((e) => text(e.description)),
          ['two'],
        );
        const filtered = await s.undoLog(0, -20, (e) => text(e.description) !== 'three');
        assert.deepEqual(
          filtered.map((e) => text(e.description)),
          ['two', 'one'],
        );
        // first/last count the entries that pass the filter
        assert.deepEqual(
          (await s.undoLog(1, 2, (e) => text(e.description) !== 'three')).map((e) => text(e.description)),
          ['one'],
        );
      },
    );

    const undoMultipleConflictResolution =
      (reverse: boolean) =>
      async ({ storage: s }: { storage: Storage }) => {
        const db = await Db.open(s);
        const x = await db.newOid();
        await db.commit([
          [z64, mappingRecord([['x', ref(x, PCOUNTER_MODULE, 'PCounter')]])],
          [x, pcounter(0)],
        ]);
        for (let i = 0; i < 4; i++) await db.commit([[x, pcounter(i + 1)]], { description: String(i) });
        const ids = (await s.undoLog(1, 3)).map((e) => e.id);
        if (reverse) ids.reverse();
        // undoing two increments of four, with the later ones still there: conflict resolution merges them
        await db.undo(ids);
        assert.equal(pcounterValue((await s.load(x)).data), 2);
      };
    const undoResolves =
      factory.resolverAppliesToUndo === false && "undo resolves conflicts with the server's resolvers";
    storageTest(factory, 'checkUndoMultipleConflictResolution', undoMultipleConflictResolution(false), {
      resolver: (ctx) => pcounterResolver(() => ctx.storage),
      skip: undoResolves,
    });
    storageTest(
      factory,
      'checkUndoMultipleConflictResolutionReversed',
      undoMultipleConflictResolution(true),
      {
        resolver: (ctx) => pcounterResolver(() => ctx.storage),
        skip: undoResolves,
      },
    );

    storageTest(
      factory,
      'checkUndoNeedsTheNewTransactionsTxnMeta (not a ZODB method)',
      async ({ storage: s }) => {
        // the undo transaction's own metadata is what the log shows for it
        const oid = await s.newOid();
        const r = await dostore(s, { oid, data: 1 });
        await dostore(s, { oid, revid: r, data: 2 });
        const [id] = await undoIds(s);
        const t = txnMeta({ description: 'undo it', user: 'u' });
        await s.tpcBegin(t);
        const result = await s.undo(id, t);
        const voted = await s.tpcVote(t);
        // a storage that undoes at vote reports the oids there (and fills in the result's)
        assert.deepEqual((factory.undoAtVote ? voted : result.oids).map(hex), [hex(oid)]);
        const tid = await s.tpcFinish(t);
        assertId(result.tid, tid);
        const [top] = await s.undoLog(0, 1);
        assert.equal(text(top.description), 'undo it');
        assert.equal(text(top.userName), 'u');
        assert.equal(minpoValue((await s.load(oid)).data), 1);
      },
    );
  });
}
