// ZODB/tests/RevisionStorage.py: loadSerial and loadBefore over an object's revisions.
import assert from 'node:assert/strict';
import { POSKeyError } from '../../../src/storage/errors.js';
import { p64, u64 } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertBytes,
  assertId,
  dostore,
  hex,
  loadCurrent,
  minpo,
  minpoValue,
  snooze,
  tidPlus,
  undoTxn,
  z64,
} from './helpers.js';

export function revisionStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: RevisionStorage`, false, () => {
    storageTest(factory, 'checkLoadSerial', async ({ storage: s }) => {
      const oid = await s.newOid();
      let revid = z64;
      const revisions = new Map<string, number>();
      for (let i = 31; i < 38; i++) {
        revid = await dostore(s, { oid, revid, data: i });
        revisions.set(hex(revid), i);
      }
      for (const [tid, value] of revisions) {
        assert.equal(minpoValue(await s.loadSerial(oid, Buffer.from(tid, 'hex'))), value);
      }
      await assert.rejects(s.loadSerial(oid, tidPlus(revid, 1)), POSKeyError, 'no revision at that tid');
    });

    storageTest(factory, 'checkLoadBefore', async ({ storage: s }) => {
      // revisions at least a clock tick apart, so a tid exists strictly between two of them
      const oid = await s.newOid();
      const revs: Array<[Uint8Array, Uint8Array]> = [];
      let revid = z64;
      for (let i = 0; i < 10; i++) {
        await snooze();
        revid = await dostore(s, { oid, revid, data: i });
        revs.push(await loadCurrent(s, oid));
      }
      let prev = u64(revs[0][1]);
      for (let i = 1; i < 10; i++) {
        const tid = revs[i][1];
        const cur = u64(tid);
        const middle = prev + (cur - prev) / 2n;
        assert.ok(prev < middle && middle < cur, 'the snooze trick failed');
        prev = cur;
        const r = await s.loadBefore(oid, p64(middle));
        assert.ok(r);
        assertBytes(r.data, revs[i - 1][0]);
        assertId(r.start, revs[i - 1][1]);
        assertId(r.end, tid);
      }
    });

    storageTest(factory, 'checkLoadBeforeEdges', async ({ storage: s }) => {
      const oid = await s.newOid();
      await assert.rejects(s.loadBefore(oid, p64(0)), POSKeyError);
      const revid1 = await dostore(s, { oid, data: 1 });
      assert.equal(await s.loadBefore(oid, p64(0)), null);
      assert.equal(await s.loadBefore(oid, revid1), null);
      const cur = tidPlus(revid1, 1);
      let r = await s.loadBefore(oid, cur);
      assert.ok(r);
      assert.equal(minpoValue(r.data), 1);
      assertId(r.start, revid1);
      assert.equal(r.end, null);
      const revid2 = await dostore(s, { oid, revid: revid1, data: 2 });
      r = await s.loadBefore(oid, cur);
      assert.ok(r);
      assert.equal(minpoValue(r.data), 1);
      assertId(r.start, revid1);
      assertId(r.end, revid2);
    });

    storageTest(factory, 'checkLoadBeforeOld', async ({ storage: s }) => {
      const oid = await s.newOid();
      const revs: Uint8Array[] = [];
      let revid = z64;
      for (let i = 0; i < 50; i++) {
        revid = await dostore(s, { oid, revid, data: i });
        revs.push(revid);
      }
      const r = await s.loadBefore(oid, revs[12]);
      assert.ok(r);
      assert.equal(minpoValue(r.data), 11);
      assertId(r.start, revs[11]);
      assertId(r.end, revs[12]);
    });

    storageTest(
      factory,
      'checkLoadBeforeUndo',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        let revid = z64;
        for (let i = 0; i < 5; i++) revid = await dostore(s, { oid, revid, data: i });
        const revs: Array<[Uint8Array, Uint8Array]> = [];
        for (let i = 0; i < 4; i++) {
          // always undo the newest: the value alternates between 3 and 4
          const [info] = await s.undoInfo(0, -20);
          await undoTxn(s, info.id, { note: `undo ${i}` });
          revs.push(await loadCurrent(s, oid));
        }
        assert.deepEqual(
          revs.map(([d]) => minpoValue(d)),
          [3, 4, 3, 4],
        );
        let prevTid: Uint8Array | null = null;
        for (let i = 0; i < revs.length; i++) {
          const [data, tid] = revs[i];
          const t = await s.loadBefore(oid, tidPlus(tid, 1));
          assert.ok(t);
          assertBytes(t.data, data);
          assertId(t.start, tid);
          if (prevTid) assert.ok(hex(prevTid) < hex(t.start));
          prevTid = t.start;
          if (i < 3) assertId(t.end, revs[i + 1][1]);
          else assert.equal(t.end, null);
        }
      },
      { skip: !factory.supportsUndo && 'no undo' },
    );

    storageTest(
      factory,
      'checkLoadBeforeConsecutiveTids',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const helper = async (tid: number, revid: Uint8Array, x: number) => {
          const t = new TransactionMetaData();
          await s.tpcBegin(t, p64(tid));
          try {
            await s.store(oid, revid, minpo(x), t);
            await s.tpcVote(t);
            return await s.tpcFinish(t);
          } catch (e) {
            await s.tpcAbort(t);
            throw e;
          }
        };
        const revid1 = await helper(1, z64, 1);
        const revid2 = await helper(2, revid1, 2);
        await helper(3, revid2, 3);
        const r = await s.loadBefore(oid, p64(2));
        assert.ok(r);
        assert.equal(minpoValue(r.data), 1);
        assert.equal(u64(r.start), 1n);
        assert.equal(r.end && u64(r.end), 2n);
      },
      { skip: !factory.supportsRestore && 'tpcBegin with a given tid is for restore' },
    );

    storageTest(factory, 'checkLoadBeforeCreation', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      await dostore(s, { oid: oid1 });
      const revid2 = await dostore(s, { oid: oid2 });
      assert.equal(await s.loadBefore(oid2, revid2), null);
    });
  });
}
