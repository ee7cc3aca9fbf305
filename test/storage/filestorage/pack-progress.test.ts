// A FileStorage pack's progress (StoragePackOptions.onProgress, src/storage/filestorage/pack.ts): the bytes of
// the data file gone through in the phase 'reachability' and then 'copy', each ended by done === total (the
// file's size at the start), done never going back, throttled; a listener that throws is dropped, not the pack.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { referencesf } from '../../../src/pickle/index.js';
import { FileStorage } from '../../../src/storage/filestorage/index.js';
import { p64 } from '../../../src/storage/ids.js';
import { buildPackable as build } from '../../helpers/pack-data.js';
import { withTempDir } from './fs-oracle.js';

type Report = { done: number; total: number; phase: string };

/** The reports of each phase, in the order the phases came; checks what holds for every pack. */
function phases(reports: Report[], size: number, ms: number): Map<string, Report[]> {
  const by = new Map<string, Report[]>();
  for (const r of reports) {
    const list = by.get(r.phase) ?? [];
    if (list.length === 0) assert.equal(by.has(r.phase), false, `phase ${r.phase} came back`);
    list.push(r);
    by.set(r.phase, list);
  }
  assert.deepEqual([...by.keys()], ['reachability', 'copy']);
  for (const [phase, list] of by) {
    for (let i = 0; i < list.length; i++) {
      assert.ok(list[i].done <= list[i].total, `${phase}: done within the total`);
      if (i > 0) assert.ok(list[i].done >= list[i - 1].done, `${phase}: done never goes back`);
    }
    // the phase's end, once, with the whole file (nothing was committed during the pack)
    assert.deepEqual(list.at(-1), { done: size, total: size, phase });
    assert.equal(list.filter((r) => r.done === r.total).length, 1, `${phase} ends once`);
    // throttled: one report per 100 ms at most, and the end
    assert.ok(list.length <= 2 + Math.ceil(ms / 100), `${phase}: ${list.length} reports in ${ms} ms`);
  }
  return by;
}

for (const gc of [true, false]) {
  test(`FileStorage pack${gc ? '' : ' without gc'} tells its progress through reachability and copy`, async () => {
    await withTempDir(async (dir) => {
      const s = await build(join(dir, 'Data.fs'), 300);
      try {
        const size = s.getSize();
        const reports: Report[] = [];
        const start = performance.now();
        await s.pack(Date.now() / 1000 + 1, referencesf, {
          gc,
          onProgress: (done, total, phase) => reports.push({ done, total, phase }),
        });
        phases(reports, size, performance.now() - start);
        // and it packed
        assert.equal((await s.history(p64(1), 1000)).length, 1);
        assert.ok(s.getSize() < size / 10);
      } finally {
        await s.close();
      }
    });
  });
}

test('a pack whose progress listener throws packs all the same, and the listener is told no more', async () => {
  await withTempDir(async (dir) => {
    const s = await build(join(dir, 'Data.fs'), 20);
    try {
      let calls = 0;
      await s.pack(Date.now() / 1000 + 1, referencesf, {
        onProgress: () => {
          calls++;
          throw new Error('a listener that fails');
        },
      });
      // one call per phase, each dropping the listener (each phase has a reporter of its own)
      assert.equal(calls, 2);
      assert.equal((await s.history(p64(1), 100)).length, 1);
    } finally {
      await s.close();
    }
  });
});

test('a pack nobody listens to packs as before; an empty storage and a redundant pack tell nothing', async () => {
  await withTempDir(async (dir) => {
    const empty = await FileStorage.open(join(dir, 'Empty.fs'), { create: true });
    const told: Report[] = [];
    const onProgress = (done: number, total: number, phase: string): void => {
      told.push({ done, total, phase });
    };
    try {
      await empty.pack(Date.now() / 1000, referencesf, { onProgress });
      assert.equal(told.length, 0);
    } finally {
      await empty.close();
    }
    const s = await build(join(dir, 'Data.fs'), 5);
    try {
      await s.pack(Date.now() / 1000 + 1, referencesf);
      assert.equal((await s.history(p64(1), 100)).length, 1);
      // packed already, nothing since: redundant (ZODB's RedundantPackWarning, logged), no phase ends
      await s.pack(Date.now() / 1000 + 2, referencesf, { onProgress });
      assert.ok(!told.some((r) => r.done === r.total), JSON.stringify(told));
    } finally {
      await s.close();
    }
  });
});
