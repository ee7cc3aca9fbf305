// MemoryStorage: the whole storage contract suite, then what is particular to it (shared data, blobs refused,
// close, tids from its clock).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { referencesf } from '../../src/pickle/index.js';
import { POSKeyError, StorageError, StorageTransactionError, Unsupported } from '../../src/storage/errors.js';
import { idHex, z64 } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { MemoryStorage, MemoryStorageData } from '../../src/storage/memory/memory-storage.js';
import { TimeStamp } from '../../src/storage/timestamp.js';
import { storageContractTests, type StorageFactory } from './contract/index.js';
import { dostore, minpo, minpoValue } from './contract/helpers.js';

/** The data of each test directory, so a reopen of the same dir finds it (MemoryStorage keeps nothing on disk). */
const databases = new Map<string, MemoryStorageData>();

const memoryFactory: StorageFactory = {
  async open({ dir, readOnly, resolver }) {
    let data = databases.get(dir);
    if (!data) databases.set(dir, (data = new MemoryStorageData()));
    return new MemoryStorage({ name: `MemoryStorage(${dir})`, data, readOnly, resolver });
  },
  destroy(dir) {
    databases.delete(dir);
  },
  persistent: true,
  supportsUndo: true,
  supportsPack: true,
  supportsPackWithoutGc: true,
  supportsBlobs: false,
  supportsIterator: true,
  supportsRestore: true,
  supportsDeleteObject: true,
};

storageContractTests('MemoryStorage', memoryFactory);

// as runzeo serves a <mappingstorage>: only what ZODB's MappingStorage provides
storageContractTests('MemoryStorage as MappingStorage', {
  ...memoryFactory,
  async open({ dir, readOnly, resolver }) {
    let data = databases.get(dir);
    if (!data) databases.set(dir, (data = new MemoryStorageData()));
    return new MemoryStorage({
      name: `MappingStorage(${dir})`,
      data,
      readOnly,
      resolver,
      mappingStorage: true,
    });
  },
  supportsUndo: false,
  supportsRecordIternext: false,
  supportsRestore: false,
  supportsDeleteObject: false,
});

describe('MemoryStorage specifics', () => {
  it('two storages on one MemoryStorageData share data, oids and the commit lock', async () => {
    const data = new MemoryStorageData();
    const a = new MemoryStorage({ data });
    const b = new MemoryStorage({ data, readOnly: true });
    const oid = await a.newOid();
    const tid = await dostore(a, { oid, data: 5 });
    assert.equal(minpoValue((await b.load(oid)).data), 5);
    assert.equal(idHex(b.lastTransaction()), idHex(tid));
    const c = new MemoryStorage({ data });
    assert.equal(idHex(await c.newOid()), '0000000000000002');
    const t = new TransactionMetaData();
    await a.tpcBegin(t);
    assert.equal(data.commitLock.locked, true);
    const t2 = new TransactionMetaData();
    let begun = false;
    const other = c.tpcBegin(t2).then(() => (begun = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(begun, false, 'the other storage waits for the shared lock');
    await a.tpcAbort(t);
    await other;
    await c.tpcAbort(t2);
  });

  it('blobs are Unsupported', async () => {
    const s = new MemoryStorage();
    const t = new TransactionMetaData();
    await assert.rejects(s.storeBlob(z64, z64, minpo(1), '/tmp/x', t), Unsupported);
    await assert.rejects(s.restoreBlob(z64, z64, minpo(1), '/tmp/x', null, t), Unsupported);
    await assert.rejects(s.loadBlob(z64, z64), Unsupported);
    assert.throws(() => s.temporaryDirectory(), Unsupported);
  });

  it('tids come from its clock, made later than the last one', async () => {
    let now = Date.UTC(2030, 0, 1, 12, 0, 0);
    const s = new MemoryStorage({ clock: () => now });
    const t1 = await dostore(s);
    assert.equal(String(new TimeStamp(t1)), '2030-01-01 12:00:00.000000');
    now -= 60_000; // the clock goes back: the next tid is still later
    const t2 = await dostore(s);
    assert.equal(BigInt('0x' + idHex(t2)), BigInt('0x' + idHex(t1)) + 1n);
    // an aborted transaction's tid is not reused either (FileStorage's _ts)
    const t = new TransactionMetaData();
    await s.tpcBegin(t);
    await s.tpcAbort(t);
    const t3 = await dostore(s);
    assert.equal(BigInt('0x' + idHex(t3)), BigInt('0x' + idHex(t2)) + 2n);
  });

  it('restore refuses a tid that is not after the last transaction, and a serial that is not the txn tid', async () => {
    const s = new MemoryStorage();
    const tid = await dostore(s);
    const t = new TransactionMetaData();
    await assert.rejects(s.tpcBegin(t, tid), StorageTransactionError);
    const later = new TimeStamp(2100, 1, 1).raw();
    await s.tpcBegin(t, later);
    await assert.rejects(s.restore(z64, tid, minpo(1), null, t), StorageTransactionError);
    await s.tpcAbort(t);
  });

  it('close aborts the transaction in progress and the waiting ones; later calls fail', async () => {
    const data = new MemoryStorageData();
    const s = new MemoryStorage({ data });
    const t1 = new TransactionMetaData();
    await s.tpcBegin(t1);
    const waiting = s.tpcBegin(new TransactionMetaData());
    await s.close();
    await assert.rejects(waiting, StorageTransactionError);
    assert.equal(data.commitLock.locked, false, 'the lock is free for other storages on the data');
    await assert.rejects(s.load(z64), StorageError);
    await assert.rejects(s.tpcBegin(new TransactionMetaData()), StorageError);
    await s.close();
  });

  it('undo of a deleted object restores it; loadSerial of a deletion is a POSKeyError', async () => {
    const s = new MemoryStorage();
    const oid = await s.newOid();
    const tid = await dostore(s, { oid, data: 1 });
    const t = new TransactionMetaData();
    await s.tpcBegin(t);
    await s.deleteObject(oid, tid, t);
    await s.tpcVote(t);
    const deleted = await s.tpcFinish(t);
    await assert.rejects(s.loadSerial(oid, deleted), POSKeyError);
    await assert.rejects(s.load(oid), POSKeyError);
    const [entry] = await s.undoLog(0, 1);
    const u = new TransactionMetaData();
    await s.tpcBegin(u);
    await s.undo(entry.id, u);
    await s.tpcVote(u);
    await s.tpcFinish(u);
    assert.equal(minpoValue((await s.load(oid)).data), 1);
    assert.equal((await s.history(oid, 10)).map((h) => h.size).join(','), '0,0,' + minpo(1).length);
  });

  it('lastInvalidations: the last transactions, newest first, with the oids of their records', async () => {
    const s = new MemoryStorage();
    assert.deepEqual(await s.lastInvalidations(5), []);
    const [a, b, c] = [await s.newOid(), await s.newOid(), await s.newOid()];
    const t1 = await dostore(s, { oid: a, data: 1 });
    const t = new TransactionMetaData();
    await s.tpcBegin(t);
    await s.store(c, z64, minpo(2), t);
    await s.store(b, z64, minpo(3), t);
    await s.tpcVote(t);
    const t2 = await s.tpcFinish(t);
    const t3 = await dostore(s, { oid: a, revid: t1, data: 4 });
    const all = (await s.lastInvalidations(10)).map((e) => [idHex(e.tid), e.oids.map(idHex)]);
    assert.deepEqual(all, [
      [idHex(t3), [idHex(a)]],
      [idHex(t2), [idHex(c), idHex(b)]],
      [idHex(t1), [idHex(a)]],
    ]);
    assert.deepEqual(
      (await s.lastInvalidations(2)).map((e) => idHex(e.tid)),
      [idHex(t3), idHex(t2)],
    );
    assert.deepEqual(await s.lastInvalidations(0), []);
    assert.deepEqual(await s.lastInvalidations(-1), []);
    await s.close();
    await assert.rejects(s.lastInvalidations(1), StorageError);
  });

  it('pack refuses a pack time before 1900 and does nothing to an empty storage', async () => {
    const s = new MemoryStorage();
    await s.pack(Date.now() / 1000, referencesf);
    await dostore(s, { oid: z64 });
    await assert.rejects(s.pack(-3e9, referencesf), RangeError);
  });
});
