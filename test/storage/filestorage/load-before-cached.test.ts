// FileStorage.loadBeforeCached, the server's synchronous loadBefore from the read cache: whenever it answers,
// the answer is loadBefore's (current and older revisions, a tid before the object's creation); it leaves to
// loadBefore what needs the file or is an error (a record not cached, a missing oid, a deleted object, a back
// pointer), and never answers without a cache.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { p64, u64, type Oid, type Tid } from '../../../src/storage/ids.js';
import type { LoadBeforeResult } from '../../../src/storage/interfaces.js';
import { buildRevisions, REVISED_OBJECTS as OBJECTS } from '../../helpers/revisions.js';
import { withTempDir } from './fs-oracle.js';

async function loadBefore(s: FileStorage, oid: Oid, tid: Tid): Promise<unknown> {
  try {
    return copied(await s.loadBefore(oid, tid));
  } catch (e) {
    return { error: (e as Error).name };
  }
}

/** a result with its data copied out of the cache, as a Buffer */
function copied(r: LoadBeforeResult | null | undefined): unknown {
  return r ? { data: Buffer.from(r.data), start: r.start, end: r.end } : r;
}

describe('FileStorage.loadBeforeCached', () => {
  it("answers as loadBefore whenever it answers, and answers cached records' loads", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      const tids = await buildRevisions(path);
      // tids to ask about: before everything, at and between each transaction, after everything
      const asks: Tid[] = [p64(1n)];
      for (const t of tids) asks.push(t, p64(u64(t) + 1n));
      asks.push(p64(0x7fffffffffffffffn));
      const s = await FileStorage.open(path, { fsync: false });
      try {
        let answered = 0;
        for (let round = 0; round < 2; round++) {
          for (let i = 0; i <= OBJECTS + 2; i++) {
            const oid = p64(BigInt(i));
            for (const tid of asks) {
              const fast = copied(s.loadBeforeCached(oid, tid));
              const general = await loadBefore(s, oid, tid);
              if (fast === undefined) continue;
              answered++;
              assert.deepEqual(fast, general, `oid ${i} tid ${u64(tid)}`);
            }
          }
        }
        // opened cold: nothing is answered before loadBefore has read it; then every plain record is
        const fresh = await FileStorage.open(join(dir, 'Data.fs'), { readOnly: true });
        try {
          const oid = p64(15n);
          const now = p64(0x7fffffffffffffffn);
          assert.equal(fresh.loadBeforeCached(oid, now), undefined);
          const r = await fresh.loadBefore(oid, now);
          assert.ok(r);
          const again = fresh.loadBeforeCached(oid, now);
          assert.ok(again);
          assert.deepEqual(Buffer.from(again.data), Buffer.from(r.data));
          // a tid before the object's creation: None, once its records are cached
          await fresh.loadBefore(oid, tids[1]);
          await fresh.loadBefore(oid, tids[0]);
          assert.equal(fresh.loadBeforeCached(oid, tids[0]), null);
          assert.equal(await fresh.loadBefore(oid, tids[0]), null);
          // a missing oid, a deleted object: loadBefore's POSKeyError, not answered here
          assert.equal(fresh.loadBeforeCached(p64(999n), now), undefined);
          await assert.rejects(fresh.loadBefore(p64(1n), now), { name: 'POSKeyError' });
          assert.equal(fresh.loadBeforeCached(p64(1n), now), undefined);
        } finally {
          await fresh.close();
        }
        // current, older and pre-creation answers were all given
        assert.ok(answered > OBJECTS * asks.length, `${answered} answered`);
      } finally {
        await s.close();
      }
    });
  });

  it('never answers without a read cache', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await buildRevisions(path);
      const s = await FileStorage.open(path, { fsync: false, cacheBytes: 0 });
      try {
        const oid = p64(5n);
        const now = p64(0x7fffffffffffffffn);
        assert.ok(await s.loadBefore(oid, now));
        assert.equal(s.loadBeforeCached(oid, now), undefined);
      } finally {
        await s.close();
      }
    });
  });
});
