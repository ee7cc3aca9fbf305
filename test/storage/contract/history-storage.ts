// ZODB/tests/HistoryStorage.py: history() lists an object's revisions, newest first, with their times.
import assert from 'node:assert/strict';
import { POSKeyError } from '../../../src/storage/errors.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import { assertId, dostore, hex, snooze, text, z64 } from './helpers.js';

export function historyStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: HistoryStorage`, false, () => {
    storageTest(factory, 'checkSimpleHistory', async ({ storage: s }) => {
      const start = Date.now() / 1000;
      const oid = await s.newOid();
      await assert.rejects(s.history(oid), POSKeyError);
      const revids: Uint8Array[] = [];
      let revid = z64;
      for (const value of [11, 12, 13]) {
        // the clock has millisecond steps: times (doubles near 1.7e9) of tids in one millisecond may be equal
        await snooze();
        revid = await dostore(s, { oid, revid, data: value, description: `v${value}`, user: 'me' });
        revids.unshift(revid);
      }
      for (let i = 1; i <= revids.length; i++) {
        const h = await s.history(oid, i);
        assert.deepEqual(
          h.map((d) => hex(d.tid)),
          revids.slice(0, i).map(hex),
        );
      }
      assert.equal((await s.history(oid)).length, 1, 'the default size is 1');
      const h = await s.history(oid, 10);
      assert.equal(h.length, 3, 'no more than there are');
      await snooze();
      let a = Date.now() / 1000;
      for (const d of h) {
        const b = a;
        a = d.time;
        assert.ok(a < b, 'newest first, and not in the future');
      }
      assert.ok(start < a, 'not before the test started');
      assert.deepEqual(
        h.map((d) => text(d.description)),
        ['v13', 'v12', 'v11'],
      );
      assert.ok(h.every((d) => text(d.userName) === 'me' && d.size > 0 && d.extension.size === 0));
      assertId(h[0].tid, s.lastTransaction());
    });
  });
}
