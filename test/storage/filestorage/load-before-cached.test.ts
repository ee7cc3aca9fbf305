// FileStorage.loadBeforeCached, the server's synchronous loadBefore (the read cache, or one synchronous read of
// a record not cached): whenever it answers, the answer is loadBefore's (current and older revisions, a tid
// before the object's creation); it leaves to loadBefore what is an error (a missing oid, a deleted object) or
// needs more (a back pointer, no synchronous read, sync reads off after a slow one), and never answers without
// a cache.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fdIO, SLOW_SYNC_READ_MS, SYNC_READS_OFF_MS } from '../../../src/storage/filestorage/file.js';
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
        // opened cold: a record is read at once (a synchronous read), and kept in the cache
        const fresh = await FileStorage.open(join(dir, 'Data.fs'), { readOnly: true });
        try {
          const oid = p64(15n);
          const now = p64(0x7fffffffffffffffn);
          const before = fresh.cacheStats()!;
          const cold = copied(fresh.loadBeforeCached(oid, now));
          assert.ok(cold);
          assert.deepEqual(cold, await loadBefore(fresh, oid, now));
          const after = fresh.cacheStats()!;
          assert.equal(after.misses - before.misses, 1, 'the read at once counts as one miss');
          assert.equal(after.hits - before.hits, 1, 'then loadBefore found it in the cache');
          // a tid before the object's creation: None, its two records read at once
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

  it('reads at once only with a synchronous read, and not for a while after a slow one', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await buildRevisions(path);
      const now = p64(0x7fffffffffffffffn);
      // an io without readSync: a record not cached is left to loadBefore, then answered from the cache
      const { readSync: _readSync, ...asyncOnly } = fdIO;
      const s = await FileStorage.open(path, { readOnly: true, io: asyncOnly });
      try {
        assert.equal(s.loadBeforeCached(p64(15n), now), undefined);
        assert.ok(await s.loadBefore(p64(15n), now));
        assert.ok(s.loadBeforeCached(p64(15n), now));
      } finally {
        await s.close();
      }
      // a read that takes longer than a page-cache read (the disk): answered, then sync reads stop
      let reads = 0;
      const slow = {
        ...fdIO,
        readSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
          reads++;
          const until = performance.now() + 2 * SLOW_SYNC_READ_MS;
          while (performance.now() < until);
          return fdIO.readSync!(fd, buf, offset, length, position);
        },
      };
      const t = await FileStorage.open(path, { readOnly: true, io: slow });
      try {
        assert.ok(t.loadBeforeCached(p64(15n), now));
        assert.equal(reads, 1);
        assert.equal(t.loadBeforeCached(p64(16n), now), undefined, 'sync reads are off');
        assert.equal(reads, 1);
        assert.ok(await t.loadBefore(p64(16n), now));
        assert.ok(t.loadBeforeCached(p64(16n), now), 'what the cache has is still answered');
        // a moment later they are back (one slow read, as a fresh server's first, does not cost a second);
        // slow again, they are off again
        await sleep(SYNC_READS_OFF_MS + 5);
        assert.ok(t.loadBeforeCached(p64(17n), now), 'sync reads are back');
        assert.equal(reads, 2);
        assert.equal(t.loadBeforeCached(p64(18n), now), undefined, 'off again');
        assert.equal(reads, 2);
      } finally {
        await t.close();
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
