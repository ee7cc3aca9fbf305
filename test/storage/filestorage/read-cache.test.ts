// The read cache (ReadCache in src/storage/filestorage/file.ts) and the FileStorage's use of it:
//   - the cache against a model (a Map of what was put): a hit is always the bytes put at that position, never
//     bytes a write or a truncate overlapped since; its memory never passes its capacity; a put that raced an
//     overlapping invalidation is refused; what is used often survives a stream of one-time entries;
//   - a FileStorage with a small cache (evicting all the time) against one without: the same answer to every
//     read after commits, aborts after the vote, undos, packs (the file swap), reopens and a crash recovery;
//   - write-through: a commit's records are served from the cache without a read.
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { referencesf } from '../../../src/pickle/index.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { MIN_CACHE_BYTES, RandomAccessFile, ReadCache } from '../../../src/storage/filestorage/file.js';
import { FileStorage, type FileStorageOptions } from '../../../src/storage/filestorage/file-storage.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import { tidTime } from '../../../src/storage/timestamp.js';
import { encodeUndoId } from '../../../src/storage/undo-log.js';
import { withTempDir } from './fs-oracle.js';
import { mulberry32 } from '../../helpers/prng.js';

function bytesFor(pos: number, len: number, salt = 0): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (pos * 7 + i * 13 + salt) & 0xff;
  return b;
}

describe('ReadCache', () => {
  it('keeps bytes by position, in one or two parts; misses are undefined', () => {
    const c = new ReadCache(MIN_CACHE_BYTES);
    assert.equal(c.get(100), undefined);
    c.put(100, Buffer.from('hello'));
    c.put(2 ** 40 + 3, Buffer.from('far '), Buffer.from('away'));
    assert.deepEqual(c.get(100), Buffer.from('hello'));
    assert.deepEqual(c.get(2 ** 40 + 3), Buffer.from('far away'));
    assert.equal(c.get(101), undefined);
    // a position already there is left as it is (the bytes at a position do not change)
    c.put(100, Buffer.from('other'));
    assert.deepEqual(c.get(100), Buffer.from('hello'));
    // too large for the cache: not kept
    c.put(5000, Buffer.alloc(c.maxEntry + 1));
    assert.equal(c.get(5000), undefined);
    const st = c.stats();
    assert.equal(st.entries, 2);
    assert.equal(st.bytes, 5 + 8);
    assert.equal(st.hits, 3);
    assert.ok(st.allocated <= st.capacity);
    assert.throws(() => new ReadCache(MIN_CACHE_BYTES - 1), RangeError);
  });

  it('against a model: hits are exactly what was put and not invalidated since; memory stays bounded', () => {
    for (const capacity of [MIN_CACHE_BYTES, 256 << 10, 2 << 20]) {
      const rnd = mulberry32(capacity);
      const c = new ReadCache(capacity);
      /** position -> length of what was put there (and may still be cached) */
      const model = new Map<number, number>();
      let hits = 0;
      for (let step = 0; step < 60_000; step++) {
        const r = rnd();
        const pos = Math.floor(rnd() * 3000) * 3 + (rnd() < 0.05 ? 2 ** 45 : 0);
        if (r < 0.5) {
          const len = 1 + Math.floor(rnd() * (rnd() < 0.1 ? 3000 : 200));
          if (!model.has(pos)) {
            c.put(pos, bytesFor(pos, len));
            model.set(pos, len);
          }
        } else if (r < 0.995) {
          const got = c.get(pos);
          if (got !== undefined) {
            hits++;
            const len = model.get(pos);
            assert.ok(len !== undefined, `a hit at ${pos} that was never put (or was invalidated)`);
            assert.deepEqual(got, bytesFor(pos, len), `the bytes at ${pos}`);
          }
        } else {
          const from = Math.floor(rnd() * 9000);
          const to = rnd() < 0.3 ? Infinity : from + Math.floor(rnd() * 5000);
          c.invalidate(from, to);
          for (const [p, len] of model) if (p < to && p + len > from) model.delete(p);
        }
        if (step % 1000 === 0) {
          const st = c.stats();
          assert.ok(st.allocated <= capacity, `${st.allocated} > ${capacity}`);
          assert.ok(st.entries <= model.size);
        }
      }
      assert.ok(hits > 1000, `hits: ${hits}`);
      // everything the cache still holds is right
      for (const [pos, len] of model) {
        const got = c.get(pos);
        if (got !== undefined) assert.deepEqual(got, bytesFor(pos, len));
      }
      c.clear();
      assert.equal(c.stats().entries, 0);
      assert.equal(c.stats().allocated, 0);
      assert.equal(c.get([...model.keys()][0]), undefined);
    }
  });

  it('a put of bytes read before an overlapping invalidation is refused; one that does not overlap is kept', () => {
    const c = new ReadCache(MIN_CACHE_BYTES);
    let g = c.generation;
    c.invalidate(1000, 2000);
    c.put(1500, Buffer.from('stale'), null, g);
    assert.equal(c.get(1500), undefined);
    c.put(990, Buffer.from('0123456789abc'), null, g); // [990, 1003) overlaps
    assert.equal(c.get(990), undefined);
    c.put(500, Buffer.from('fine'), null, g);
    assert.deepEqual(c.get(500), Buffer.from('fine'));
    // too many invalidations since to tell: refused
    g = c.generation;
    for (let i = 0; i < 20; i++) c.invalidate(10_000_000 + i, 10_000_001 + i);
    c.put(600, Buffer.from('unsure'), null, g);
    assert.equal(c.get(600), undefined);
    // clear() invalidates everything
    g = c.generation;
    c.clear();
    c.put(700, Buffer.from('x'), null, g);
    assert.equal(c.get(700), undefined);
  });

  it('entries used often survive a stream of entries used once (a second chance in the newest slab)', () => {
    const c = new ReadCache(1 << 20);
    const hot = Array.from({ length: 200 }, (_, i) => i * 1000);
    for (const p of hot) c.put(p, bytesFor(p, 100));
    let pos = 10_000_000;
    for (let round = 0; round < 200; round++) {
      // more than the cache holds, over the rounds
      for (let i = 0; i < 100; i++, pos += 200) c.put(pos, bytesFor(pos, 150));
      for (const p of hot) assert.deepEqual(c.get(p), bytesFor(p, 100), `round ${round}, ${p}`);
    }
    assert.ok(c.stats().allocated <= 1 << 20);
  });

  it('a RandomAccessFile drops the cached bytes its writes and truncates overlap', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'f');
      await writeFile(path, bytesFor(0, 10_000));
      const f = await RandomAccessFile.open(path, 'r+', undefined, { cacheBytes: MIN_CACHE_BYTES });
      try {
        const c = f.cache!;
        for (const p of [100, 2000, 5000, 9000]) c.put(p, await f.readExact(p, 50));
        await f.write(2010, Buffer.from('zz'));
        assert.equal(c.get(2000), undefined);
        assert.deepEqual(c.get(100), bytesFor(0, 10_000).subarray(100, 150));
        await f.writeDurable(120, Buffer.from('y'));
        assert.equal(c.get(100), undefined);
        await f.truncate(5020);
        assert.equal(c.get(5000), undefined);
        assert.equal(c.get(9000), undefined);
        assert.equal((await readFile(path)).length, 5020);
        assert.equal(f.end, 5020);
      } finally {
        await f.close();
      }
      assert.equal(f.cache!.stats().entries, 0, 'closed: emptied');
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// the FileStorage with and without its cache

/** Every read answer of a storage over `oids` and the tids of the history, as one comparable value. */
async function answers(s: FileStorage, oids: Oid[], tids: Tid[]): Promise<unknown[]> {
  const out: unknown[] = [];
  const safe = async (f: () => Promise<unknown>): Promise<unknown> => {
    try {
      return await f();
    } catch (e) {
      return '!' + (e as Error).name;
    }
  };
  const hx = (b: Uint8Array | null | undefined): string | null => (b ? Buffer.from(b).toString('hex') : null);
  for (const oid of oids) {
    out.push(await safe(async () => ((r) => [hx(r.data), idHex(r.serial)])(await s.load(oid))));
    for (const tid of tids) {
      out.push(
        await safe(async () => {
          const r = await s.loadBefore(oid, tid);
          return r && [hx(r.data), idHex(r.start), r.end && idHex(r.end)];
        }),
      );
      out.push(await safe(async () => hx(await s.loadSerial(oid, tid))));
    }
    out.push(await safe(async () => (await s.history(oid, 100)).map((h) => [idHex(h.tid), h.size])));
  }
  // the undo log reads transaction headers and lengths through the cache too
  const log = (e: { id: Uint8Array; description: Uint8Array; size?: number }): unknown[] => [
    hx(e.id),
    hx(e.description),
    e.size,
  ];
  out.push(await safe(async () => (await s.undoLog(0, -20)).map(log)));
  out.push(await safe(async () => (await s.undoLog(3, 1000)).map(log)));
  out.push(await safe(async () => (await s.undoInfo(0, -5)).map(log)));
  return out;
}

describe('FileStorage with its read cache', () => {
  it('answers every read as a storage without one, through commits, aborts, undos, packs, reopens', async () => {
    await withTempDir(async (dir) => {
      const rnd = mulberry32(42);
      const clock = (): (() => number) => {
        let t = 1.7e12;
        return () => (t += 1500);
      };
      const opts = (cacheBytes: number, c: () => number): FileStorageOptions => ({
        fsync: false,
        cacheBytes,
        clock: c,
        packKeepOld: false,
      });
      const clocks = [clock(), clock()];
      const paths = [join(dir, 'cached.fs'), join(dir, 'plain.fs')];
      const stores = [
        await FileStorage.open(paths[0], opts(MIN_CACHE_BYTES, clocks[0])),
        await FileStorage.open(paths[1], opts(0, clocks[1])),
      ];
      assert.ok(stores[0].cacheStats());
      assert.equal(stores[1].cacheStats(), null);
      const oids = Array.from({ length: 40 }, (_, i) => p64(i));
      const serials = [new Map<string, Tid>(), new Map<string, Tid>()];
      const tids: Tid[] = [z64];
      const undoable: Tid[] = [];
      try {
        for (let step = 0; step < 90; step++) {
          const r = rnd();
          const which = oids.filter(() => rnd() < 0.15);
          const sizes = which.map(() =>
            rnd() < 0.1 ? 3000 + Math.floor(rnd() * 30_000) : 10 + Math.floor(rnd() * 300),
          );
          const kind =
            r < 0.7 ? 'commit' : r < 0.8 ? 'abort' : r < 0.9 ? 'undo' : r < 0.95 ? 'pack' : 'reopen';
          const results: unknown[] = [];
          for (let k = 0; k < 2; k++) {
            const s = stores[k];
            if (kind === 'commit' || kind === 'abort') {
              const t = new TransactionMetaData(Buffer.from('u'), Buffer.from(`step ${step}`));
              await s.tpcBegin(t);
              for (let i = 0; i < which.length; i++) {
                const key = idHex(which[i]);
                await s.store(which[i], serials[k].get(key) ?? z64, bytesFor(step * 100 + i, sizes[i]), t);
              }
              await s.tpcVote(t);
              if (kind === 'abort') {
                await s.tpcAbort(t);
                results.push('aborted');
                continue;
              }
              const tid = await s.tpcFinish(t);
              for (const oid of which) serials[k].set(idHex(oid), tid);
              results.push(idHex(tid));
              if (k === 0) {
                tids.push(tid, p64(u64(tid) + 1n));
                undoable.push(tid);
              }
            } else if (kind === 'undo' && undoable.length) {
              const target = undoable[Math.floor((step * 7) % undoable.length)];
              const t = new TransactionMetaData();
              await s.tpcBegin(t);
              try {
                const u = await s.undo(encodeUndoId(target), t);
                await s.tpcVote(t);
                const tid = await s.tpcFinish(t);
                for (const oid of u.oids) serials[k].set(idHex(oid), tid);
                results.push(['undone', idHex(tid), u.oids.map(idHex).sort()]);
                if (k === 0) tids.push(tid);
              } catch (e) {
                await s.tpcAbort(t);
                results.push('!' + (e as Error).name);
              }
            } else if (kind === 'pack' && tids.length > 4) {
              const at = tids[Math.floor(tids.length / 2)];
              try {
                await s.pack(tidTime(at) + 0.001, referencesf, { gc: false });
                results.push('packed');
              } catch (e) {
                results.push('!' + (e as Error).name);
              }
            } else if (kind === 'reopen') {
              await s.close();
              stores[k] = await FileStorage.open(paths[k], opts(k === 0 ? MIN_CACHE_BYTES : 0, clocks[k]));
              results.push('reopened');
            }
          }
          assert.deepEqual(results[0], results[1], `step ${step} (${kind})`);
          if (kind === 'pack') undoable.length = 0;
          const [a, b] = [
            await answers(stores[0], oids, tids.slice(-5)),
            await answers(stores[1], oids, tids.slice(-5)),
          ];
          assert.deepEqual(a, b, `step ${step} (${kind})`);
        }
        const st = stores[0].cacheStats()!;
        assert.ok(st.hits > 0 && st.allocated <= st.capacity, JSON.stringify(st));
      } finally {
        await stores[0].close();
        await stores[1].close();
      }
    });
  });

  it('a commit writes its records through to the cache: loading them reads nothing', async () => {
    await withTempDir(async (dir) => {
      const s = await FileStorage.open(join(dir, 'Data.fs'), { fsync: false });
      try {
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        const oids = [await s.newOid(), await s.newOid(), await s.newOid()];
        for (const [i, oid] of oids.entries()) await s.store(oid, z64, bytesFor(i, 50 + i), t);
        await s.tpcVote(t);
        const tid = await s.tpcFinish(t);
        const before = s.cacheStats()!;
        assert.equal(before.entries, 3);
        for (const [i, oid] of oids.entries()) {
          const r = await s.load(oid);
          assert.deepEqual(Buffer.from(r.data), bytesFor(i, 50 + i));
          assert.equal(idHex(r.serial), idHex(tid));
        }
        const after = s.cacheStats()!;
        assert.equal(after.hits - before.hits, 3);
        assert.equal(after.misses, before.misses);
      } finally {
        await s.close();
      }
    });
  });

  it('after a crash recovery truncates a commit cut short, new commits there are read right', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      let s = await FileStorage.open(path, { fsync: false });
      const oid = await s.newOid();
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oid, z64, bytesFor(1, 100), t);
      await s.tpcVote(t);
      const tid1 = await s.tpcFinish(t);
      await s.close();
      const good = (await readFile(path)).length;
      // a second commit, cut short by a "crash"
      s = await FileStorage.open(path, { fsync: false });
      const t2 = new TransactionMetaData();
      await s.tpcBegin(t2);
      await s.store(oid, tid1, bytesFor(2, 200), t2);
      await s.tpcVote(t2);
      await s.tpcFinish(t2);
      await s.close();
      await truncate(path, (await readFile(path)).length - 30);
      s = await FileStorage.open(path, { fsync: false });
      try {
        assert.equal(s.getSize(), good);
        assert.deepEqual(Buffer.from((await s.load(oid)).data), bytesFor(1, 100));
        const t3 = new TransactionMetaData();
        await s.tpcBegin(t3);
        await s.store(oid, tid1, bytesFor(3, 77), t3);
        await s.tpcVote(t3);
        await s.tpcAbort(t3);
        await assert.rejects(s.loadSerial(oid, p64(u64(tid1) + 1n)), POSKeyError);
        const t4 = new TransactionMetaData();
        await s.tpcBegin(t4);
        await s.store(oid, tid1, bytesFor(4, 66), t4);
        await s.tpcVote(t4);
        const tid4 = await s.tpcFinish(t4);
        assert.deepEqual(Buffer.from((await s.load(oid)).data), bytesFor(4, 66));
        assert.deepEqual(Buffer.from(await s.loadSerial(oid, tid1)), bytesFor(1, 100));
        assert.equal(idHex((await s.loadBefore(oid, tid4))!.start), idHex(tid1));
      } finally {
        await s.close();
      }
    });
  });

  it('undoLog reads the newest transactions once: asked again, it reads nothing; a commit is seen next time', async () => {
    await withTempDir(async (dir) => {
      const s = await FileStorage.open(join(dir, 'Data.fs'), { fsync: false });
      try {
        const commit = async (i: number): Promise<Tid> => {
          const t = new TransactionMetaData(Buffer.from('user'), Buffer.from(`txn ${i}`));
          await s.tpcBegin(t);
          await s.store(p64(i + 1), z64, bytesFor(i, 5000), t);
          await s.tpcVote(t);
          return s.tpcFinish(t);
        };
        const tids: Tid[] = [];
        for (let i = 0; i < 30; i++) tids.push(await commit(i));
        const first = await s.undoLog(0, -20);
        assert.equal(first.length, 20);
        const before = s.cacheStats()!;
        const again = await s.undoLog(0, -20);
        const info = await s.undoInfo(0, -20);
        const after = s.cacheStats()!;
        assert.deepEqual(again, first);
        assert.deepEqual(info, first);
        assert.equal(after.misses, before.misses, 'no read: every header and length came from the cache');
        assert.ok(after.hits >= before.hits + 80, `${after.hits - before.hits} hits`);
        assert.deepEqual(
          first.map((e) => Buffer.from(e.description).toString()),
          Array.from({ length: 20 }, (_, i) => `txn ${29 - i}`),
        );
        const tid = await commit(30);
        const next = await s.undoLog(0, -20);
        assert.equal(Buffer.from(next[0].description).toString(), 'txn 30');
        assert.deepEqual(next[0].id, encodeUndoId(tid));
        assert.deepEqual(next.slice(1), first.slice(0, 19));
        // a missing oid: POSKeyError naming it, as before (its stack is not kept: nobody reads it)
        await assert.rejects(s.loadBefore(p64(1000), p64(u64(tid) + 1n)), (e: unknown) => {
          assert.ok(e instanceof POSKeyError);
          assert.equal(e.message, '0x03e8');
          assert.equal(idHex(e.oid), idHex(p64(1000)));
          return true;
        });
        await assert.rejects(s.load(p64(1000)), POSKeyError);
      } finally {
        await s.close();
      }
    });
  });
});
