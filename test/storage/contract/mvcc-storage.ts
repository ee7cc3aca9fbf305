// ZODB/tests/testMVCCMappingStorage.py (MVCCTests): what a connection's MVCC needs from a storage, at the storage
// level: a reader holding a snapshot (loadBefore at its tid) keeps seeing it while others commit, and sees the
// new state after it moves its snapshot (sync); new tids stay later than any tid stored.
import assert from 'node:assert/strict';
import { p64, u64 } from '../../../src/storage/ids.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertBytes,
  assertId,
  Db,
  dostore,
  mappingOf,
  mappingRecord,
  ref,
  refOid,
  stateOf,
  z64,
} from './helpers.js';

/** A connection's view: everything as of `before` (its snapshot: the last transaction it saw + 1). */
class Snapshot {
  before: Uint8Array;
  constructor(private readonly s: Storage) {
    this.before = p64(u64(s.lastTransaction()) + 1n);
  }
  sync(): void {
    this.before = p64(u64(this.s.lastTransaction()) + 1n);
  }
  async load(oid: Uint8Array): Promise<Uint8Array> {
    const r = await this.s.loadBefore(oid, this.before);
    assert.ok(r, 'the object existed in the snapshot');
    return r.data;
  }
}

export function mvccStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: MVCCTests`, false, () => {
    storageTest(factory, 'checkCrossConnectionInvalidation', async ({ storage: s }) => {
      const db = await Db.open(s);
      const c2 = new Snapshot(s);
      await db.commit([[z64, mappingRecord([['myobj', 'yes']])]]);
      assert.equal(mappingOf(await c2.load(z64)).has('myobj'), false, 'not seen before sync');
      c2.sync();
      assert.equal(mappingOf(await c2.load(z64)).get('myobj'), 'yes');
    });

    storageTest(factory, 'checkCrossConnectionIsolation', async ({ storage: s }) => {
      const db = await Db.open(s);
      const alpha = await s.newOid();
      const gamma = await s.newOid();
      const pm = (oid: Uint8Array) => ref(oid, 'persistent.mapping', 'PersistentMapping');
      await db.commit([
        [
          z64,
          mappingRecord([
            ['alpha', pm(alpha)],
            ['gamma', pm(gamma)],
          ]),
        ],
        [alpha, mappingRecord([])],
        [gamma, mappingRecord([])],
      ]);
      const c2 = new Snapshot(s);
      const r2 = mappingOf(await c2.load(z64));
      for (const [k, other] of [
        ['alpha', 'beta'],
        ['gamma', 'delta'],
      ]) {
        const oid = refOid(r2.get(k));
        const before = await c2.load(oid);
        const tid = await db.commit([[oid, mappingRecord([[other, 'yes']])]], {
          description: `isolation ${k}`,
        });
        // c2 loads it only now, but sees the state of its snapshot
        assertBytes(await c2.load(oid), before);
        assert.equal(mappingOf(await c2.load(oid)).size, 0);
        const r = await s.loadBefore(oid, c2.before);
        assertId(r?.end ?? null, tid);
        c2.sync();
        assert.equal(mappingOf(await c2.load(oid)).get(other), 'yes');
      }
      assert.equal(stateOf(await c2.load(z64)).has('data'), true);
    });

    storageTest(
      factory,
      'checkTransactionIdIncreases',
      async ({ storage: s }) => {
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        await s.tpcVote(t);
        await s.tpcFinish(t);
        // a transaction far in the future (the year 5735): the next tid still comes after it
        const fake = new Uint8Array(Buffer.from('zzzzzzzy'));
        const t2 = new TransactionMetaData();
        await s.tpcBegin(t2, fake);
        await s.tpcVote(t2);
        await s.tpcFinish(t2);
        const tid = await dostore(s);
        assert.equal(Buffer.from(tid).toString('latin1'), 'zzzzzzzz');
      },
      { skip: !factory.supportsRestore && 'tpcBegin with a given tid is for restore' },
    );
  });
}
