// ZODB/tests/IteratorStorage.py (IteratorStorage, ExtendedIteratorStorage): iterator() yields the committed
// transactions in order, each with its records; plus recordIternext, which the ZEO server uses.
import assert from 'node:assert/strict';
import { dumps, pyEquals } from '../../../src/pickle/index.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { p64, u64, type Tid } from '../../../src/storage/ids.js';
import {
  TransactionMetaData,
  type Storage,
  type TransactionRecord,
} from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertBytes,
  assertId,
  dostore,
  hex,
  minpo,
  minpoValue,
  readAll,
  recordsOf,
  undoIds,
  z64,
} from './helpers.js';

/** The Python class of an error a ZEO server reported as it is (ServerException's className). */
function pythonClassOf(e: unknown): string | null {
  return e instanceof Error && 'className' in e && typeof e.className === 'string' ? e.className : null;
}

/** IteratorCompare.iter_verify: one record of `oid` per transaction, values counting up from val0. */
async function iterVerify(
  txns: AsyncIterable<TransactionRecord>,
  oid: Uint8Array,
  revids: Tid[],
  val0: number,
) {
  let val = val0;
  let n = 0;
  for await (const txn of txns) {
    assert.ok(n < revids.length, 'no more transactions than expected');
    assertId(txn.tid, revids[n]);
    for (const rec of await recordsOf(txn)) {
      assertId(rec.oid, oid);
      assertId(rec.tid, revids[n]);
      assert.ok(rec.data);
      assert.equal(minpoValue(rec.data), val);
      val++;
    }
    n++;
  }
  assert.equal(val, val0 + revids.length);
}

/** pickle.dumps({'foo': 1}, 1): an extension whose bytes dumps(loads(x), 3) does not give back. */
const PROTOCOL1_EXTENSION = new Uint8Array(Buffer.from('}q\x00X\x03\x00\x00\x00fooq\x01K\x01s.', 'latin1'));

export function iteratorStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: IteratorStorage`, !factory.supportsIterator && 'no iterator', () => {
    storageTest(factory, 'checkSimpleIteration', async ({ storage: s }) => {
      const oid = await s.newOid();
      const revid1 = await dostore(s, { oid, data: 11 });
      const revid2 = await dostore(s, { oid, revid: revid1, data: 12 });
      const revid3 = await dostore(s, { oid, revid: revid2, data: 13 });
      await iterVerify(s.iterator(), oid, [revid1, revid2, revid3], 11);
      const [first] = await readAll(s);
      assert.equal(first.txn.status, ' ');
      assert.equal(first.records[0].dataTxn, null);
    });

    storageTest(
      factory,
      'checkUndoZombie',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        await dostore(s, { oid, data: 94 });
        const [id] = await undoIds(s);
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        await s.undo(id, t);
        await s.tpcVote(t);
        await s.tpcFinish(t);
        // the creation is undone (the George Bailey state): the last record has no data
        const all = await readAll(s);
        const last = all[all.length - 1].records;
        const rec = last[last.length - 1];
        assertId(rec.oid, oid);
        assert.equal(rec.data, null);
      },
      { skip: !factory.supportsUndo && 'no undo' },
    );

    storageTest(factory, 'checkTransactionExtensionFromIterator', async ({ storage: s }) => {
      const ext = new Map([['foo', 1]]);
      const oid = await s.newOid();
      await dostore(s, { oid, data: 1, extension: ext, extensionBytes: PROTOCOL1_EXTENSION });
      const all = await readAll(s);
      assert.equal(all.length, 1);
      const { txn } = all[0];
      assert.ok(pyEquals(txn.extension, ext));
      // the bytes as given, not the pickle of the dict read back (unless only the dict travels: ZEO)
      if (factory.extensionBytesFromIterator !== false) {
        assertBytes(txn.extensionBytes, PROTOCOL1_EXTENSION);
        assert.notDeepEqual(Buffer.from(dumps(txn.extension, 3)), Buffer.from(txn.extensionBytes));
      }
      // and an extension given as a dict is stored as its protocol 3 pickle
      await dostore(s, { data: 2, extension: ext });
      const again = await readAll(s);
      assertBytes(again[1].txn.extensionBytes, dumps(ext, 3));
      // no extension: empty bytes, empty dict
      await dostore(s, { data: 3 });
      const third = (await readAll(s))[2].txn;
      assert.equal(third.extensionBytes.length, 0);
      assert.equal(third.extension.size, 0);
    });

    storageTest(factory, 'checkIterationIntraTransaction', async ({ storage: s }) => {
      const oid = await s.newOid();
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      try {
        await s.store(oid, z64, minpo(0), t);
        await s.tpcVote(t);
        // the voted, unfinished transaction is not seen, and iterating does not wait for it
        assert.equal((await readAll(s)).length, 0);
      } finally {
        await s.tpcFinish(t);
      }
      assert.equal((await readAll(s)).length, 1);
    });

    storageTest(factory, 'checkLoad_was_checkLoadEx', async ({ storage: s }) => {
      const oid = await s.newOid();
      await dostore(s, { oid, data: 42 });
      const { data, serial: tid } = await s.load(oid);
      assert.equal(minpoValue(data), 42);
      let match = false;
      for (const { txn, records } of await readAll(s)) {
        for (const rec of records) {
          if (hex(rec.oid) === hex(oid) && hex(rec.tid) === hex(tid)) {
            assertId(txn.tid, tid);
            match = true;
          }
        }
      }
      assert.ok(match, 'could not find the transaction with the matching id');
    });

    storageTest(factory, 'checkIterateRepeatedly', async ({ storage: s }) => {
      await dostore(s);
      const transactions = s.iterator();
      let n = 0;
      for await (const _ of transactions) n++;
      assert.equal(n, 1);
      // an iterator is consumed once
      n = 0;
      for await (const _ of transactions) n++;
      assert.equal(n, 0);
    });

    storageTest(factory, 'checkIterateRecordsRepeatedly', async ({ storage: s }) => {
      await dostore(s);
      const it = s.iterator()[Symbol.asyncIterator]();
      const { value: tinfo, done } = (await it.next()) as IteratorYieldResult<TransactionRecord>;
      assert.equal(done, false);
      assert.equal((await recordsOf(tinfo)).length, 1);
      assert.equal((await recordsOf(tinfo)).length, 1);
      await it.return?.();
    });

    storageTest(factory, 'checkIterateWhileWriting', async ({ storage: s }) => {
      await dostore(s);
      const it = s.iterator()[Symbol.asyncIterator]();
      const first = await it.next();
      assert.equal(first.done, false);
      assert.equal((await recordsOf(first.value)).length, 1);
      // a transaction committed after the iterator started is not picked up
      await dostore(s);
      assert.equal((await it.next()).done, true);
    });

    storageTest(
      factory,
      'checkRecordIternext (not a ZODB method: ZEO serves it)',
      async ({ storage: s }) => {
        const oids = [await s.newOid(), await s.newOid(), await s.newOid()];
        const tids: Tid[] = [];
        for (const [i, oid] of oids.entries()) tids.push(await dostore(s, { oid, data: i }));
        let next: Uint8Array | null = null;
        const seen: string[] = [];
        do {
          const r: Awaited<ReturnType<Storage['recordIternext']>> = await s.recordIternext(next);
          seen.push(hex(r.oid));
          assertId(r.tid, tids[seen.length - 1]);
          assert.equal(minpoValue(r.data), seen.length - 1);
          next = r.next;
        } while (next !== null);
        assert.deepEqual(seen, oids.map(hex));
        // from z64, the first oid; from an oid, that one
        const r0 = await s.recordIternext(z64);
        assertId(r0.oid, oids[0]);
        const r1 = await s.recordIternext(oids[1]);
        assertId(r1.oid, oids[1]);
        assertId(r1.next, oids[2]);
        // past the last oid there is nothing: POSKeyError (ZODB's FileStorage lets its index's ValueError out,
        // which a client of runzeo gets as it is)
        await assert.rejects(
          s.recordIternext(p64(u64(oids[2]) + 1n)),
          (e) => e instanceof POSKeyError || pythonClassOf(e) === 'builtins.ValueError',
        );
      },
      { skip: factory.supportsRecordIternext === false && 'no recordIternext' },
    );
  });

  storageSuite(`${name}: ExtendedIteratorStorage`, !factory.supportsIterator && 'no iterator', () => {
    storageTest(factory, 'checkExtendedIteration', async ({ storage: s }) => {
      const oid = await s.newOid();
      const revid1 = await dostore(s, { oid, data: 11 });
      const revid2 = await dostore(s, { oid, revid: revid1, data: 12 });
      const revid3 = await dostore(s, { oid, revid: revid2, data: 13 });
      const revid4 = await dostore(s, { oid, revid: revid3, data: 14 });
      // the end points are included
      await iterVerify(s.iterator(revid1, revid4), oid, [revid1, revid2, revid3, revid4], 11);
      await iterVerify(s.iterator(revid3), oid, [revid3, revid4], 13);
      await iterVerify(s.iterator(null, revid2), oid, [revid1, revid2], 11);
      await iterVerify(s.iterator(revid2, revid3), oid, [revid2, revid3], 12);
      // bounds between tids
      const revid3a = p64((u64(revid3) + u64(revid4)) / 2n);
      await iterVerify(s.iterator(revid2, revid3a), oid, [revid2, revid3], 12);
      const revid1a = p64((u64(revid1) + 1n + u64(revid2)) / 2n);
      assert.ok(hex(revid1) < hex(revid1a));
      await iterVerify(s.iterator(revid1a, revid3a), oid, [revid2, revid3], 12);
      // an empty range, and a single transaction
      await iterVerify(s.iterator(revid3, revid2), oid, [], 13);
      await iterVerify(s.iterator(revid3, revid3), oid, [revid3], 13);
    });
  });
}
