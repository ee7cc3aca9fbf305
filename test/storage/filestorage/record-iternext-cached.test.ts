// FileStorage.recordIternextCached, the server's synchronous record_iternext: whenever it answers, the answer is
// recordIternext's (every step of a walk over the whole storage, and from oids between and past the objects);
// it leaves to recordIternext what is an error (no oid at or after `next`, a deleted object) or needs more (a
// back pointer), and never answers without a read cache or while index buckets are deferred.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { p64, type Oid } from '../../../src/storage/ids.js';
import { buildRevisions, REVISED_OBJECTS as OBJECTS } from '../../helpers/revisions.js';
import { withTempDir } from './fs-oracle.js';

type Step = { oid: Oid; tid: Oid; data: Uint8Array; next: Oid | null };

/** a step with its data copied out of the cache, as a Buffer */
function copied(r: Step | undefined): unknown {
  return r && { oid: r.oid, tid: r.tid, data: Buffer.from(r.data), next: r.next };
}

async function general(s: FileStorage, next: Oid | null): Promise<unknown> {
  try {
    return copied(await s.recordIternext(next));
  } catch (e) {
    return { error: (e as Error).name };
  }
}

describe('FileStorage.recordIternextCached', () => {
  it('answers as recordIternext whenever it answers, and answers the plain records of a walk', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await buildRevisions(path);
      const s = await FileStorage.open(path, { fsync: false });
      try {
        // twice: cold (a record read at once, unless reads are slow just now: then it declines) and cached
        const answered = [0, 0];
        for (let round = 0; round < 2; round++) {
          const froms: Array<Oid | null> = [null, p64(0xffffffffffffffffn)];
          for (let i = 0; i <= OBJECTS + 2; i++) froms.push(p64(BigInt(i)));
          for (const from of froms) {
            const fast = copied(s.recordIternextCached(from));
            const slow = await general(s, from);
            if (fast === undefined) continue;
            answered[round]++;
            assert.deepEqual(fast, slow, `from ${from && Buffer.from(from).toString('hex')}`);
          }
        }
        // objects 11..20 are plain records (1 is deleted, 2..10 point back): each answered once cached (the
        // first round's reads may have been slow on a busy machine, and the reads are then left to the pool)
        assert.ok(answered[0] <= OBJECTS / 2, `${answered[0]} answered cold`);
        assert.equal(answered[1], OBJECTS / 2, `${answered[1]} answered cached`);
        // the walk's last step: no next oid
        const last = s.recordIternextCached(p64(BigInt(OBJECTS)));
        assert.equal(last?.next, null);
        // not answered here: a deleted object, a back pointer, nothing at or after the oid
        assert.equal(s.recordIternextCached(p64(1n)), undefined);
        assert.equal(s.recordIternextCached(p64(5n)), undefined);
        assert.equal(s.recordIternextCached(p64(999n)), undefined);
        await assert.rejects(s.recordIternext(p64(999n)), { name: 'POSKeyError' });
      } finally {
        await s.close();
      }
    });
  });

  it('never answers without a read cache, nor once closed', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await buildRevisions(path);
      const s = await FileStorage.open(path, { fsync: false, cacheBytes: 0 });
      try {
        assert.ok(await s.recordIternext(p64(15n)));
        assert.equal(s.recordIternextCached(p64(15n)), undefined);
      } finally {
        await s.close();
      }
      const t = await FileStorage.open(path, { readOnly: true });
      assert.ok(t.recordIternextCached(p64(15n)));
      await t.close();
      assert.equal(t.recordIternextCached(p64(15n)), undefined);
    });
  });
});
