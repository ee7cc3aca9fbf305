// MemoryStorage.watchInvalidations: two MemoryStorages on one MemoryStorageData are two writers on one
// database (the model of several servers over one PostgreSQL database). The shared suite, then what is the
// MemoryStorage's own: the others hear of a commit synchronously, before its committer does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idHex, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { MemoryStorage, MemoryStorageData } from '../../src/storage/memory/memory-storage.js';
import { TimeStamp } from '../../src/storage/timestamp.js';
import { dostore, minpo, undoIds, undoTxn } from './contract/helpers.js';
import { watchInvalidationsTests } from './watch-invalidations.js';

watchInvalidationsTests('MemoryStorage', async () => {
  const data = new MemoryStorageData();
  const a = new MemoryStorage({ name: 'a', data });
  const b = new MemoryStorage({ name: 'b', data });
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
    },
  };
});

// as a PostgreSQL storage hears of the others: by polling
watchInvalidationsTests(
  'MemoryStorage polling every 5 ms',
  async () => {
    const data = new MemoryStorageData();
    const a = new MemoryStorage({ name: 'a', data, pollIntervalMs: 5 });
    const b = new MemoryStorage({ name: 'b', data, pollIntervalMs: 5 });
    return {
      a,
      b,
      async close() {
        await a.close();
        await b.close();
      },
    };
  },
  { polls: true },
);

/** The (tid, oids) a storage's listener got, as hex. */
function heardBy(s: MemoryStorage): Array<[string, string[]]> {
  const heard: Array<[string, string[]]> = [];
  s.watchInvalidations((tid, oids) => heard.push([idHex(tid), oids.map(idHex)]));
  return heard;
}

describe('MemoryStorage watchInvalidations specifics', () => {
  it('the other storages hear of a commit in the run that commits it, before its onCommitted', async () => {
    const data = new MemoryStorageData();
    const a = new MemoryStorage({ data });
    const b = new MemoryStorage({ data });
    const c = new MemoryStorage({ data, readOnly: true });
    const heardB = heardBy(b);
    const heardC = heardBy(c);
    const oid = await a.newOid();
    const t = new TransactionMetaData();
    await a.tpcBegin(t);
    await a.store(oid, new Uint8Array(8), minpo(1), t);
    await a.tpcVote(t);
    let atCommitted: number[] = [];
    const tid = await a.tpcFinish(t, () => (atCommitted = [heardB.length, heardC.length]));
    assert.deepEqual(atCommitted, [1, 1], 'b and the read-only view heard of it before a returned');
    assert.deepEqual(heardB, [[idHex(tid), [idHex(oid)]]]);
    assert.deepEqual(heardC, heardB);
  });

  it('undo, deleteObject and restore are reported with their oids; a closed storage hears no more', async () => {
    const data = new MemoryStorageData();
    const a = new MemoryStorage({ data });
    const b = new MemoryStorage({ data });
    const heard = heardBy(b);
    const o1 = await a.newOid();
    const o2 = await a.newOid();
    const t1 = await dostore(a, { oid: o1, data: 1 });
    const t2 = await dostore(a, { oid: o2, data: 2 });
    const [undoLast] = await undoIds(a);
    const t3 = await undoTxn(a, undoLast);
    const t = new TransactionMetaData();
    await a.tpcBegin(t);
    await a.deleteObject(o1, t1, t);
    await a.tpcVote(t);
    const t4 = await a.tpcFinish(t);
    const later = new TimeStamp(2100, 1, 1).raw();
    const r = new TransactionMetaData();
    await a.tpcBegin(r, later);
    await a.restore(o2, later, minpo(5), null, r);
    await a.tpcVote(r);
    const t5: Tid = await a.tpcFinish(r);
    assert.deepEqual(heard, [
      [idHex(t1), [idHex(o1)]],
      [idHex(t2), [idHex(o2)]],
      [idHex(t3), [idHex(o2)]],
      [idHex(t4), [idHex(o1)]],
      [idHex(t5), [idHex(o2)]],
    ]);
    await b.close();
    await dostore(a, { oid: o2, revid: t5, data: 6 });
    assert.equal(heard.length, 5, 'a closed storage hears of nothing more');
  });

  it('polling: lastTransaction() stays behind until a poll or its own commit, which hears of the earlier ones first', async () => {
    const data = new MemoryStorageData();
    const a = new MemoryStorage({ data });
    const b = new MemoryStorage({ data, pollIntervalMs: 60_000 });
    const heard: string[] = [];
    b.watchInvalidations((tid) => heard.push(`${idHex(tid)} at ${idHex(b.lastTransaction())}`));
    const t1 = await dostore(a, { data: 1 });
    const t2 = await dostore(a, { data: 2 });
    assert.equal(idHex(b.lastTransaction()), '0000000000000000', 'not heard of yet');
    assert.deepEqual(heard, []);
    assert.ok(b.pollInvalidations);
    await b.pollInvalidations();
    assert.deepEqual(heard, [`${idHex(t1)} at ${idHex(t1)}`, `${idHex(t2)} at ${idHex(t2)}`]);
    const t3 = await dostore(a, { data: 3 });
    const t = new TransactionMetaData();
    await b.tpcBegin(t);
    await b.store(await b.newOid(), new Uint8Array(8), minpo(4), t);
    await b.tpcVote(t);
    let atCommitted = '';
    const t4 = await b.tpcFinish(t, (tid) => (atCommitted = `${heard.length} ${idHex(tid)}`));
    assert.equal(heard[2], `${idHex(t3)} at ${idHex(t3)}`);
    assert.equal(atCommitted, `3 ${idHex(t4)}`, 'a heard of before its own commit was published');
    assert.equal(idHex(b.lastTransaction()), idHex(t4));
    assert.equal(a.pollInvalidations, undefined, 'a storage that hears at once does not poll');
    await a.close();
    await b.close();
  });
});
