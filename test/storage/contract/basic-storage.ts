// ZODB/tests/BasicStorage.py: what every storage must do (2PC, store/load, conflicts, lastTransaction, len).
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import {
  ConflictError,
  POSKeyError,
  ReadConflictError,
  StorageTransactionError,
} from '../../../src/storage/errors.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertBytes,
  assertId,
  dostore,
  hex,
  loadCurrent,
  minpo,
  minpoValue,
  objectRecord,
  text,
  txnMeta,
  z64,
} from './helpers.js';

/** The Storage methods (BasicStorage.testInterfaces verifies the declared interfaces). */
const STORAGE_METHODS = [
  'getName',
  'sortKey',
  'isReadOnly',
  'lastTransaction',
  'getSize',
  'len',
  'supportsUndo',
  'close',
  'load',
  'loadBefore',
  'loadSerial',
  'history',
  'newOid',
  'tpcBegin',
  'store',
  'restore',
  'checkCurrentSerialInTransaction',
  'deleteObject',
  'tpcVote',
  'tpcFinish',
  'tpcAbort',
  'undo',
  'undoLog',
  'undoInfo',
  'pack',
  'iterator',
  'recordIternext',
  'storeBlob',
  'restoreBlob',
  'loadBlob',
  'temporaryDirectory',
] as const satisfies ReadonlyArray<keyof Storage>;

/** `cpersistent\nPersistent\nq\x01.N.`: the simple persistent object of test_checkCurrentSerialInTransaction. */
const PERSISTENT_DATA = objectRecord('persistent', 'Persistent', new Map());

export function basicStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: BasicStorage`, false, () => {
    storageTest(factory, 'checkBasics', async ({ storage: s }) => {
      assertId(s.lastTransaction(), z64);
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      // a second tpcBegin of the same transaction must fail at once, not wait for the lock it holds
      await assert.rejects(s.tpcBegin(t), StorageTransactionError);
      await s.tpcAbort(t);
      await s.tpcBegin(t);
      await assert.rejects(
        s.store(z64, z64, new Uint8Array(0), new TransactionMetaData()),
        StorageTransactionError,
      );
      await assert.rejects(s.store(z64, z64, minpo(2), new TransactionMetaData()), StorageTransactionError);
      await assert.rejects(s.tpcVote(new TransactionMetaData()), StorageTransactionError);
      await s.tpcAbort(t);
      assertId(s.lastTransaction(), z64, 'aborted transactions commit nothing');
    });

    storageTest(factory, 'checkSerialIsNoneForInitialRevision', async ({ storage: s }) => {
      // the TS API has no None serial: z64 is "a new object" (ZEO clients send None as z64)
      const oid = await s.newOid();
      const txn = new TransactionMetaData();
      await s.tpcBegin(txn);
      await s.store(oid, z64, minpo(11), txn);
      await s.tpcVote(txn);
      const newrevid = await s.tpcFinish(txn);
      const [data, revid] = await loadCurrent(s, oid);
      assert.equal(minpoValue(data), 11);
      assertId(revid, newrevid);
    });

    storageTest(factory, 'checkStore', async ({ storage: s }) => {
      const newrevid = await dostore(s);
      assert.notEqual(hex(newrevid), hex(z64));
      assertId(s.lastTransaction(), newrevid);
    });

    storageTest(factory, 'checkStoreAndLoad', async ({ storage: s }) => {
      const oid = await s.newOid();
      await dostore(s, { oid, data: 7 });
      let [data, revid] = await loadCurrent(s, oid);
      assert.equal(minpoValue(data), 7);
      for (let i = 13; i < 22; i++) revid = await dostore(s, { oid, revid, data: i });
      [data, revid] = await loadCurrent(s, oid);
      assert.equal(minpoValue(data), 21);
      assertId(revid, s.lastTransaction());
    });

    storageTest(factory, 'checkConflicts', async ({ storage: s }) => {
      const oid = await s.newOid();
      const revid1 = await dostore(s, { oid, data: 11 });
      const revid2 = await dostore(s, { oid, revid: revid1, data: 12 });
      const rejected = minpo(13);
      await assert.rejects(dostore(s, { oid, revid: revid1, data: rejected }), (e: unknown) => {
        assert.ok(e instanceof ConflictError && !(e instanceof ReadConflictError));
        assertId(e.oid, oid);
        // serials are (current, the one the transaction read)
        assert.deepEqual(e.serials?.map(hex), [hex(revid2), hex(revid1)]);
        return true;
      });
      assert.equal(minpoValue((await s.load(oid)).data), 12, 'the conflicting store left nothing');
    });

    storageTest(factory, 'checkWriteAfterAbort', async ({ storage: s }) => {
      let oid = await s.newOid();
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oid, z64, minpo(5), t);
      await s.tpcAbort(t);
      await assert.rejects(s.load(oid), POSKeyError);
      oid = await s.newOid();
      await dostore(s, { oid, data: 6 });
      assert.equal(minpoValue((await s.load(oid)).data), 6);
    });

    storageTest(factory, 'checkAbortAfterVote', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const revid1 = await dostore(s, { oid: oid1, data: -2 });
      let oid = await s.newOid();
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oid, z64, minpo(5), t);
      await s.tpcVote(t);
      await s.tpcAbort(t);
      await assert.rejects(s.load(oid), POSKeyError, 'the aborted object was not committed');
      assertId(s.lastTransaction(), revid1);
      oid = await s.newOid();
      const revid = await dostore(s, { oid, data: 6 });
      for (const [o, r] of [
        [oid1, revid1],
        [oid, revid],
      ]) {
        assertId((await s.load(o)).serial, r);
      }
    });

    storageTest(factory, 'checkStoreTwoObjects', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      assert.notEqual(hex(oid1), hex(oid2));
      const revid1 = await dostore(s, { oid: oid1, data: 31 });
      const revid2 = await dostore(s, { oid: oid2, data: 51 });
      assert.notEqual(hex(revid1), hex(revid2));
      const revid3 = await dostore(s, { oid: oid1, revid: revid1, data: 32 });
      const revid4 = await dostore(s, { oid: oid2, revid: revid2, data: 52 });
      assert.notEqual(hex(revid3), hex(revid4));
      assert.equal(minpoValue((await s.load(oid1)).data), 32);
      assert.equal(minpoValue((await s.load(oid2)).data), 52);
    });

    storageTest(factory, 'checkGetTid', async ({ storage: s }) => {
      // the TS API has no getTid: the serial of load() is the object's current tid
      const oid = await s.newOid();
      await assert.rejects(s.load(oid), POSKeyError);
      const revid1 = await dostore(s, { oid, data: 41 });
      assertId((await s.load(oid)).serial, revid1);
      const revid2 = await dostore(s, { oid, revid: revid1, data: 42 });
      assertId((await s.load(oid)).serial, revid2);
    });

    storageTest(factory, 'checkLen', async ({ storage: s }) => {
      assert.equal(s.len(), 0);
      await dostore(s, { data: 22 });
      await dostore(s, { data: 23 });
      // storages that do not count may say 0
      assert.ok([0, 2].includes(s.len()), `len() is ${s.len()}`);
    });

    storageTest(factory, 'checkGetSize', async ({ storage: s }) => {
      await dostore(s, { data: 25 });
      const size = s.getSize();
      assert.ok(Number.isFinite(size) && size >= 0, `getSize() is ${size}`);
    });

    storageTest(factory, 'checkNote', async ({ storage: s }) => {
      const oid = await s.newOid();
      const t = txnMeta({ description: 'this is a test' });
      await s.tpcBegin(t);
      await s.store(oid, z64, minpo(5), t);
      await s.tpcVote(t);
      const tid = await s.tpcFinish(t);
      const [h] = await s.history(oid);
      assertId(h.tid, tid);
      assert.equal(text(h.description), 'this is a test');
    });

    storageTest(factory, 'checkInterfaces', async ({ storage: s }) => {
      for (const m of STORAGE_METHODS) assert.equal(typeof s[m], 'function', m);
      assert.equal(typeof s.getName(), 'string');
      assert.equal(typeof s.sortKey(), 'string');
      assert.equal(s.isReadOnly(), false);
      assert.equal(s.supportsUndo(), factory.supportsUndo);
    });

    storageTest(factory, 'checkMultipleEmptyTransactions', async ({ storage: s }) => {
      // MappingStorage once kept the commit lock after an empty transaction: the second begin hung
      let t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.tpcVote(t);
      const tid1 = await s.tpcFinish(t);
      t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.tpcVote(t);
      const tid2 = await s.tpcFinish(t);
      assert.ok(hex(tid2) > hex(tid1));
      assertId(s.lastTransaction(), tid2);
    });

    storageTest(factory, 'check_checkCurrentSerialInTransaction', async ({ storage: s }) => {
      const oid = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0xf0);
      const oidAt = (n: number) => Uint8Array.of(0, 0, 0, 0, 0, 0, 0, n);
      const tid = await dostore(s, { oid });
      const tid2 = await dostore(s, { oid, revid: tid });

      // stale read: ReadConflictError with (current, read) serials, at the check or at the vote
      let t = new TransactionMetaData();
      await s.tpcBegin(t);
      await assert.rejects(
        (async () => {
          await s.store(oidAt(0xf1), z64, PERSISTENT_DATA, t);
          await s.checkCurrentSerialInTransaction(oid, tid, t);
          await s.tpcVote(t);
        })(),
        (e: unknown) => {
          assert.ok(e instanceof ReadConflictError);
          assertId(e.oid, oid);
          assert.deepEqual(e.serials?.map(hex), [hex(tid2), hex(tid)]);
          return true;
        },
      );
      await s.tpcAbort(t);

      // non-stale read, no competition
      t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oidAt(0xf2), z64, PERSISTENT_DATA, t);
      await s.checkCurrentSerialInTransaction(oid, tid2, t);
      await s.tpcVote(t);
      await s.tpcFinish(t);

      // non-stale read, a competing transaction after the vote: it must get a later tid
      t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oidAt(0xf3), z64, PERSISTENT_DATA, t);
      await s.checkCurrentSerialInTransaction(oid, tid2, t);
      await s.tpcVote(t);
      let competitor = dostore(s, { oid, revid: tid2 });
      await tick();
      await s.tpcFinish(t);
      await competitor;
      const tid3 = (await s.load(oid)).serial;
      assert.ok(hex(tid3) > hex((await s.load(oidAt(0xf3))).serial));

      // a competitor starting after checkCurrentSerialInTransaction: either our vote fails, or it commits
      // after us with a later tid
      t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oidAt(0xf4), z64, PERSISTENT_DATA, t);
      await s.checkCurrentSerialInTransaction(oid, tid3, t);
      competitor = dostore(s, { oid, revid: tid3 });
      await tick();
      try {
        await s.tpcVote(t);
      } catch (e) {
        assert.ok(e instanceof ReadConflictError);
        await s.tpcAbort(t);
        await competitor;
        return;
      }
      await s.tpcFinish(t);
      await competitor;
      const tid4 = (await s.load(oid)).serial;
      assert.ok(hex(tid4) > hex((await s.load(oidAt(0xf4))).serial));
    });

    storageTest(factory, 'check_tid_ordering_w_commit', async ({ storage: s }) => {
      // loads and lastTransaction() around tpcFinish must agree on one order of the commits
      let t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(z64, z64, minpo('x'), t);
      await s.tpcVote(t);
      const tids: Uint8Array[] = [];
      await s.tpcFinish(t, (tid) => tids.push(tid));

      t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(z64, tids[0], minpo('y'), t);
      await s.tpcVote(t);
      // a transaction that wants to begin while the callback runs: the commit lock is still held
      const other = new TransactionMetaData();
      let otherBegun = false;
      let load: Promise<{ serial: Uint8Array; data: Uint8Array }> | null = null;
      let beginOther: Promise<void> | null = null;
      const finished = s.tpcFinish(t, (tid) => {
        tids.push(tid);
        // a load started from the callback sees the transaction being finished (ZODB's loads wait for it)
        load = s.load(z64);
        beginOther = s.tpcBegin(other).then(() => {
          otherBegun = true;
        });
      });
      assert.equal(otherBegun, false);
      const finishedTid = await finished;
      assertId(finishedTid, tids[1]);
      assert.ok(load && beginOther, 'the callback ran');
      const loaded = await (load as Promise<{ serial: Uint8Array; data: Uint8Array }>);
      assertId(loaded.serial, tids[1]);
      assert.equal(minpoValue(loaded.data), 'y');
      assertId(s.lastTransaction(), tids[1]);
      await (beginOther as Promise<void> | null);
      assert.equal(otherBegun, true);
      await s.tpcAbort(other);
    });

    storageTest(factory, 'checkStoreArbitraryBytes', async ({ storage: s }) => {
      // not a ZODB method: binary data of every byte value and an empty record survive store/load
      const oid = await s.newOid();
      const all = new Uint8Array(256).map((_, i) => i);
      const tid = await dostore(s, { oid, data: all });
      const [data, serial] = await loadCurrent(s, oid);
      assertBytes(data, all);
      assertId(serial, tid);
      assertBytes(await s.loadSerial(oid, tid), all);
    });
  });
}
