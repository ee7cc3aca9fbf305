// ZODB/tests/RecoveryStorage.py: copying a storage transaction by transaction with restore() (undo records, back
// pointers and packs included) gives an identical history (IteratorDeepCompare).
import assert from 'node:assert/strict';
import { pyEquals, referencesf, type PickleValue } from '../../../src/pickle/index.js';
import { copyTransactions } from '../../../src/storage/copy.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import {
  TransactionMetaData,
  type DataRecord,
  type Storage,
  type TransactionRecord,
} from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertBytes,
  assertId,
  Db,
  dostore,
  mappingRecord,
  objectRecord,
  readAll,
  ref,
  refOid,
  snooze,
  undoTxn,
  z64,
} from './helpers.js';

const minpoRef = (oid: Uint8Array) => ref(oid, 'ZODB.tests.MinPO', 'MinPO');
const minpoObj = (value: number, extra: Array<[string, PickleValue]> = []) =>
  objectRecord('ZODB.tests.MinPO', 'MinPO', new Map<PickleValue, PickleValue>([['value', value], ...extra]));

/** IteratorDeepCompare.compare: the same transactions, metadata and records, in the same order. */
async function compare(s1: Storage, s2: Storage): Promise<void> {
  const a = await readAll(s1);
  const b = await readAll(s2);
  assert.equal(a.length, b.length, 'as many transactions');
  for (let i = 0; i < a.length; i++) {
    const t1: TransactionRecord = a[i].txn;
    const t2: TransactionRecord = b[i].txn;
    assertId(t1.tid, t2.tid);
    assert.equal(t1.status, t2.status);
    assertBytes(t1.user, t2.user);
    assertBytes(t1.description, t2.description);
    assert.ok(pyEquals(t1.extension, t2.extension), 'extension');
    assertBytes(t1.extensionBytes, t2.extensionBytes);
    const r1: DataRecord[] = a[i].records;
    const r2: DataRecord[] = b[i].records;
    assert.equal(r1.length, r2.length, 'as many records');
    for (let j = 0; j < r1.length; j++) {
      assertId(r1[j].oid, r2[j].oid);
      assertId(r1[j].tid, r2[j].tid);
      assertBytes(r1[j].data, r2[j].data);
    }
  }
}

export function recoveryStorageTests(name: string, factory: StorageFactory): void {
  const skip = (!factory.supportsRestore && 'no restore') || (!factory.supportsIterator && 'no iterator');
  const noUndo = skip || (!factory.supportsUndo && 'no undo');
  const noPack = skip || (!factory.supportsPack && 'no pack');

  storageSuite(`${name}: RecoveryStorage`, skip, () => {
    storageTest(factory, 'checkSimpleRecovery', async (ctx) => {
      const s = ctx.storage;
      const oid = await s.newOid();
      let revid = await dostore(s, { oid, data: 11, extension: new Map([['k', 'v']]) });
      revid = await dostore(s, { oid, revid, data: 12, user: 'u', description: 'd' });
      await dostore(s, { oid, revid, data: 13 });
      const dst = await ctx.openOther();
      assert.equal(await copyTransactions(s, dst), 3);
      await compare(s, dst);
      assertId(dst.lastTransaction(), s.lastTransaction());
      assertBytes((await dst.load(oid)).data, (await s.load(oid)).data);
    });

    storageTest(
      factory,
      'checkRestoreAcrossPack',
      async (ctx) => {
        const s = ctx.storage;
        const db = await Db.open(s);
        const obj1 = await s.newOid();
        const obj2 = await s.newOid();
        await db.commit([
          [z64, mappingRecord([['obj1', minpoRef(obj1)]])],
          [obj1, minpoObj(1)],
        ]);
        await db.commit([
          [
            z64,
            mappingRecord([
              ['obj1', minpoRef(obj1)],
              ['obj2', minpoRef(obj2)],
            ]),
          ],
          [obj2, minpoObj(1)],
        ]);
        const dst = await ctx.openOther();
        await copyTransactions(s, dst);
        await snooze();
        await dst.pack(Date.now() / 1000, referencesf);
        const [info] = await s.undoInfo(0, -20);
        await undoTxn(s, info.id);
        // copy the final transaction by hand: restore must cope with a back pointer into what was packed away
        const all = await readAll(s);
        const { txn: final, records } = all[all.length - 1];
        const meta = new TransactionMetaData(
          final.user,
          final.description,
          final.extension,
          final.extensionBytes,
        );
        await dst.tpcBegin(meta, final.tid, final.status);
        for (const r of records) await dst.restore(r.oid, r.tid, r.data, r.dataTxn, meta);
        await dst.tpcVote(meta);
        await dst.tpcFinish(meta);
        assertBytes((await dst.load(z64)).data, (await s.load(z64)).data);
        assertId((await dst.load(z64)).serial, final.tid);
      },
      { skip: noUndo || noPack },
    );

    storageTest(
      factory,
      'checkPackWithGCOnDestinationAfterRestore',
      async (ctx) => {
        const s = ctx.storage;
        const db = await Db.open(s);
        const obj1 = await s.newOid();
        const obj2 = await s.newOid();
        await db.commit(
          [
            [z64, mappingRecord([['obj', minpoRef(obj1)]])],
            [obj1, minpoObj(1)],
          ],
          { description: 'root -> obj' },
        );
        await db.commit(
          [
            [obj1, minpoObj(1, [['obj', minpoRef(obj2)]])],
            [obj2, minpoObj(2)],
          ],
          { description: 'root -> obj -> obj' },
        );
        await db.commit([[z64, mappingRecord([])]], { description: 'root -X->' });
        const dst = await ctx.openOther();
        await copyTransactions(s, dst);
        await snooze();
        await dst.pack(Date.now() / 1000, referencesf);
        await dst.load(z64);
        await assert.rejects(dst.load(obj1), POSKeyError);
        await assert.rejects(dst.load(obj2), POSKeyError);
      },
      { skip: noPack },
    );

    storageTest(
      factory,
      'checkRestoreWithMultipleObjectsInUndoRedo',
      async (ctx) => {
        const s = ctx.storage;
        const db = await Db.open(s);
        const obj1 = await s.newOid();
        const obj2 = await s.newOid();
        await db.commit([
          [
            z64,
            mappingRecord([
              ['obj1', minpoRef(obj1)],
              ['obj2', minpoRef(obj2)],
            ]),
          ],
          [obj1, minpoObj(1)],
          [obj2, minpoObj(1)],
        ]);
        await db.commit([
          [obj1, minpoObj(1, [['x', 'x1']])],
          [obj2, minpoObj(1, [['x', 'x2']])],
        ]);
        const x = async (key: string) => (await db.state(refOid((await db.root()).get(key)))).get('x');
        assert.equal(await x('obj1'), 'x1');
        assert.equal(await x('obj2'), 'x2');
        // undo the attribute creation: one transaction with two back pointers
        let [info] = await s.undoInfo(0, -20);
        await undoTxn(s, info.id);
        assert.equal(await x('obj1'), undefined);
        assert.equal(await x('obj2'), undefined);
        // undo the undo
        [info] = await s.undoInfo(0, -20);
        await undoTxn(s, info.id);
        assert.equal(await x('obj1'), 'x1');
        assert.equal(await x('obj2'), 'x2');
        const dst = await ctx.openOther();
        await copyTransactions(s, dst);
        await compare(s, dst);
        // the copied undo records point back like the originals
        const a = await readAll(s);
        const b = await readAll(dst);
        for (let i = 0; i < a.length; i++) {
          assert.deepEqual(
            b[i].records.map((r) => r.dataTxn && Buffer.from(r.dataTxn).toString('hex')),
            a[i].records.map((r) => r.dataTxn && Buffer.from(r.dataTxn).toString('hex')),
          );
        }
      },
      { skip: noUndo },
    );

    storageTest(
      factory,
      'checkRestoreWithMultipleUndoRedo',
      async (ctx) => {
        const s = ctx.storage;
        const db = await Db.open(s);
        const obj = await s.newOid();
        await db.commit([
          [z64, mappingRecord([['obj', minpoRef(obj)]])],
          [obj, minpoObj(0)],
        ]);
        await db.commit([[obj, minpoObj(1)]]);
        await db.commit([[obj, minpoObj(2)]]);
        // T3: undo T1 and T2: obj points back to T0
        await db.undo((await s.undoLog(0, 2)).map((u) => u.id));
        await db.sync();
        await db.commit([[obj, minpoObj(3)]]);
        // undo T4: obj points back to T3, which points back to T0
        await undoTxn(s, (await s.undoInfo(0, -20))[0].id);
        assert.equal((await db.state(obj)).get('value'), 0);
        const dst = await ctx.openOther();
        await copyTransactions(s, dst);
        await compare(s, dst);
        assert.equal((await new Db(dst).state(obj)).get('value'), 0);
      },
      { skip: noUndo },
    );
  });
}
