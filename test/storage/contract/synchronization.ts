// ZODB/tests/Synchronization.py: calls for a transaction that is not the one in progress, or out of order, are
// StorageTransactionErrors; tpcAbort of a transaction not in progress does nothing.
import assert from 'node:assert/strict';
import { StorageTransactionError } from '../../../src/storage/errors.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import { dostore, minpo, z64 } from './helpers.js';

const OID = z64;
const SERIALNO = z64;

export function synchronizationTests(name: string, factory: StorageFactory): void {
  const verifyNotCommitting = (p: () => Promise<unknown>) => assert.rejects(p, StorageTransactionError);
  const verifyWrongTrans = async (s: Storage, p: () => Promise<unknown>) => {
    const t = new TransactionMetaData();
    await s.tpcBegin(t);
    await assert.rejects(p, StorageTransactionError);
    await s.tpcAbort(t);
  };

  storageSuite(`${name}: SynchronizedStorage`, false, () => {
    storageTest(factory, 'checkStoreNotCommitting', async ({ storage: s }) => {
      await verifyNotCommitting(() => s.store(OID, SERIALNO, new Uint8Array(0), new TransactionMetaData()));
    });

    storageTest(factory, 'checkStoreWrongTrans', async ({ storage: s }) => {
      await verifyWrongTrans(s, () => s.store(OID, SERIALNO, new Uint8Array(0), new TransactionMetaData()));
    });

    storageTest(factory, 'checkAbortNotCommitting', async ({ storage: s }) => {
      await s.tpcAbort(new TransactionMetaData());
    });

    storageTest(factory, 'checkAbortWrongTrans', async ({ storage: s }) => {
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.tpcAbort(new TransactionMetaData());
      // t is still in progress
      await s.store(OID, SERIALNO, minpo(1), t);
      await s.tpcAbort(t);
    });

    storageTest(factory, 'checkFinishNotCommitting', async ({ storage: s }) => {
      const t = new TransactionMetaData();
      await assert.rejects(s.tpcFinish(t), StorageTransactionError);
      await s.tpcAbort(t);
    });

    storageTest(factory, 'checkFinishWrongTrans', async ({ storage: s }) => {
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await assert.rejects(s.tpcFinish(new TransactionMetaData()), StorageTransactionError);
      await s.tpcAbort(t);
    });

    storageTest(factory, 'checkBeginCommitting', async ({ storage: s }) => {
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.tpcAbort(t);
      // the lock is free again
      await dostore(s);
    });

    // Not in ZODB's class (its spec is silent): the rules the TS contract adds for calls out of order.
    storageTest(factory, 'checkVoteNotCommitting (not a ZODB method)', async ({ storage: s }) => {
      await verifyNotCommitting(() => s.tpcVote(new TransactionMetaData()));
      await verifyWrongTrans(s, () => s.tpcVote(new TransactionMetaData()));
    });

    storageTest(factory, 'checkOtherCallsWrongTrans (not a ZODB method)', async ({ storage: s }) => {
      const oid = await s.newOid();
      const tid = await dostore(s, { oid });
      const other = () => new TransactionMetaData();
      await verifyWrongTrans(s, () => s.checkCurrentSerialInTransaction(oid, tid, other()));
      if (factory.supportsDeleteObject) await verifyWrongTrans(s, () => s.deleteObject(oid, tid, other()));
      if (factory.supportsRestore)
        await verifyWrongTrans(s, () => s.restore(oid, tid, minpo(1), null, other()));
      if (factory.supportsUndo) {
        const [entry] = await s.undoLog(0, 1);
        await verifyWrongTrans(s, () => s.undo(entry.id, other()));
      }
    });

    storageTest(factory, 'checkFinishBeforeVote (not a ZODB method)', async ({ storage: s }) => {
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(await s.newOid(), z64, minpo(1), t);
      await assert.rejects(s.tpcFinish(t), StorageTransactionError);
      await s.tpcAbort(t);
    });

    storageTest(factory, 'checkStoreAfterVote (not a ZODB method)', async ({ storage: s }) => {
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.tpcVote(t);
      await assert.rejects(s.store(await s.newOid(), z64, minpo(1), t), StorageTransactionError);
      await s.tpcAbort(t);
    });

    storageTest(
      factory,
      'checkAbortWhileWaitingForTheLock (not a ZODB method)',
      async ({ storage: s }) => {
        // a client that goes away while waiting for the commit lock leaves the queue: tpcAbort of the waiting
        // transaction makes its tpcBegin fail, and it never holds the lock
        const t1 = new TransactionMetaData();
        await s.tpcBegin(t1);
        const t2 = new TransactionMetaData();
        const waiting = s.tpcBegin(t2);
        const t3 = new TransactionMetaData();
        const third = s.tpcBegin(t3);
        await s.tpcAbort(t2);
        await assert.rejects(waiting, StorageTransactionError);
        await s.tpcAbort(t1);
        await third;
        await assert.rejects(s.store(z64, z64, minpo(1), t2), StorageTransactionError);
        await s.store(z64, z64, minpo(1), t3);
        await s.tpcVote(t3);
        await s.tpcFinish(t3);
      },
      { skip: factory.commitLockAtBegin === false && 'the commit lock is not taken at tpcBegin' },
    );
  });
}
