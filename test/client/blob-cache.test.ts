// The client's blob cache directory: ZEO's zeocache layout (checked against Python's BlobCacheLayout), its
// marker, the per-directory lock shared with Python's zc.lockfile, and the size check (least recently used
// first, locked directories skipped, a busy check asked to run again), compared with ZEO's own check.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CACHE_LAYOUT,
  CHECK_ATTEMPT,
  CHECK_LOCK,
  cacheBlobFilePath,
  cacheOidPath,
  checkBlobCacheSize,
  createBlobCacheDir,
  lockBlob,
  scanBlobCache,
  BlobCacheError,
} from '../../src/client/blob-cache.js';
import { LockFile } from '../../src/storage/filestorage/lockfile.js';
import { idHex, p64 } from '../../src/storage/ids.js';
import { interopTest } from '../helpers/oracle.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'zeo-ts-blob-cache-'));
}

/** Writes `size` bytes as the cached revision (oid, tid), last used `ageSeconds` ago. */
async function cached(
  dir: string,
  oid: number,
  tid: number,
  size: number,
  ageSeconds: number,
): Promise<string> {
  const path = join(dir, cacheBlobFilePath(p64(oid), p64(tid)));
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, Buffer.alloc(size, oid & 0xff));
  const t = new Date(Date.now() - ageSeconds * 1000);
  await utimes(path, t, t);
  return path;
}

const OIDS = [0, 1, 996, 997, 998, 123_456_789, 2 ** 40 + 5, 2n ** 63n + 7n];

interopTest('the zeocache layout names files as ZEO.ClientStorage.BlobCacheLayout does', async (oracle) => {
  const pairs = OIDS.map((o, i) => [idHex(p64(o)), idHex(p64(BigInt(i) * 1_000_003n + 0x03f0n))]);
  const py = await oracle.json<Array<[string, string]>>(
    `
from ZEO.ClientStorage import BlobCacheLayout
l = BlobCacheLayout()
result = [[l.oid_to_path(bytes.fromhex(o)), l.getBlobFilePath(bytes.fromhex(o), bytes.fromhex(t))] for o, t in args]
`,
    undefined,
    pairs,
  );
  assert.deepEqual(
    pairs.map(([o, t]) => [
      cacheOidPath(Buffer.from(o, 'hex')),
      cacheBlobFilePath(Buffer.from(o, 'hex'), Buffer.from(t, 'hex')),
    ]),
    py,
  );
});

test('createBlobCacheDir: directory, tmp and the zeocache marker; a storage blob directory is refused', async () => {
  const dir = await tempDir();
  try {
    const cache = join(dir, 'cache');
    createBlobCacheDir(cache);
    assert.equal(await readFile(join(cache, '.layout'), 'utf8'), CACHE_LAYOUT);
    assert.ok(existsSync(join(cache, 'tmp')));
    createBlobCacheDir(cache); // again: accepted as it is
    const server = join(dir, 'server');
    await mkdir(server);
    await writeFile(join(server, '.layout'), 'bushy');
    assert.throws(
      () => createBlobCacheDir(server),
      (e: unknown) =>
        e instanceof BlobCacheError && /`bushy` layout/.test(e.message) && /shared-blob-dir/.test(e.message),
    );
    assert.equal(await readFile(join(server, '.layout'), 'utf8'), 'bushy', 'the marker is left alone');
    assert.ok(!existsSync(join(server, 'tmp')), 'nothing is created in a refused directory');
    // a storage's blob directory from before markers (lawn): refused too, and not marked
    const old = join(dir, 'old');
    await mkdir(join(old, '0x2a'), { recursive: true });
    await writeFile(join(old, '0x2a', '0x03.blob'), 'data');
    assert.throws(
      () => createBlobCacheDir(old),
      (e: unknown) => e instanceof BlobCacheError && /0x\.\. directories/.test(e.message),
    );
    assert.ok(!existsSync(join(old, '.layout')));
    assert.ok(!existsSync(join(old, 'tmp')), 'nothing is created in it');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the size check removes the least recently used files until the target, and skips locked directories', async () => {
  const dir = await tempDir();
  try {
    createBlobCacheDir(dir);
    // oids 1..6 in directories 1..6; oid 3 is the oldest but its directory is locked (a load in progress)
    const files = [
      await cached(dir, 1, 10, 1000, 50),
      await cached(dir, 2, 10, 1000, 40),
      await cached(dir, 3, 10, 1000, 60),
      await cached(dir, 4, 10, 1000, 30),
      await cached(dir, 5, 10, 1000, 20),
      await cached(dir, 6, 10, 1000, 10),
    ];
    await writeFile(join(dir, '7'), 'not a directory'); // ignored, as are non-numeric names
    await mkdir(join(dir, 'other'));
    await writeFile(join(dir, 'other', '1.blob'), Buffer.alloc(5000));
    const held = await lockBlob(files[2]);
    let r;
    try {
      r = await checkBlobCacheSize(dir, 3500);
    } finally {
      await held.release();
    }
    assert.deepEqual(r, { skipped: false, size: 3000, removed: 3 });
    assert.deepEqual(
      files.map((f) => existsSync(f)),
      [false, false, true, false, true, true],
      'oids 1, 2 and 4 went (oldest first), 3 was skipped as locked',
    );
    assert.equal((await scanBlobCache(dir)).size, 3000);
    // nothing above the target: nothing removed
    assert.deepEqual(await checkBlobCacheSize(dir, 3000), { skipped: false, size: 3000, removed: 0 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a check that finds another one busy leaves check_size.attempt, and the busy one scans again', async () => {
  const dir = await tempDir();
  try {
    createBlobCacheDir(dir);
    await cached(dir, 1, 10, 1000, 20);
    const other = await LockFile.acquire(join(dir, CHECK_LOCK)); // "another process" checking
    const started = Date.now();
    const r = await checkBlobCacheSize(dir, 0);
    assert.ok(Date.now() - started >= 900, 'it waited a second for the lock first');
    assert.equal(r.skipped, true);
    assert.ok(existsSync(join(dir, CHECK_ATTEMPT)));
    await other.release();
    // the next check sees the attempt marker: it removes it and scans again before it stops
    const r2 = await checkBlobCacheSize(dir, 0);
    assert.deepEqual(r2, { skipped: false, size: 0, removed: 1 });
    assert.ok(!existsSync(join(dir, CHECK_ATTEMPT)));
    await assert.rejects(checkBlobCacheSize(join(dir, 'tmp'), 0), BlobCacheError, 'no zeocache marker');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('lockBlob: loads in this process take turns on a directory lock', async () => {
  const dir = await tempDir();
  try {
    createBlobCacheDir(dir);
    const path = join(dir, cacheBlobFilePath(p64(5), p64(9)));
    await mkdir(join(path, '..'), { recursive: true });
    const order: string[] = [];
    const a = await lockBlob(path);
    const bDone = lockBlob(path).then(async (b) => {
      order.push('b locked');
      await b.release();
    });
    await new Promise((r) => setTimeout(r, 50));
    order.push('a releases');
    await a.release();
    await bDone;
    assert.deepEqual(order, ['a releases', 'b locked']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

interopTest(
  'the directory lock is the one ZEO takes: a Python lock holds a Node load back',
  async (oracle) => {
    const dir = await tempDir();
    try {
      createBlobCacheDir(dir);
      const path = join(dir, cacheBlobFilePath(p64(5), p64(9)));
      await mkdir(join(path, '..'), { recursive: true });
      await oracle.run(
        `
import ZEO.ClientStorage as CS
CS._test_held = CS._lock_blob(args)
`,
        undefined,
        path,
      );
      let locked = false;
      const waiting = lockBlob(path).then((l) => {
        locked = true;
        return l;
      });
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(locked, false, 'the Node load waits while Python holds the lock');
      await oracle.run(`
import ZEO.ClientStorage as CS
CS._test_held.close()
`);
      const l = await waiting;
      // and the other way: Python cannot take it while Node holds it
      const py = await oracle.json(
        `
import zc.lockfile
try:
    zc.lockfile.LockFile(args).close()
    result = 'taken'
except zc.lockfile.LockError:
    result = 'busy'
`,
        undefined,
        join(path, '..', '.lock'),
      );
      assert.equal(py, 'busy');
      await l.release();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);

interopTest('the size check removes what ZEO’s _check_blob_cache_size removes', async (oracle) => {
  const dirs = [await tempDir(), await tempDir()];
  try {
    for (const d of dirs) {
      createBlobCacheDir(d);
      for (let i = 1; i <= 12; i++) await cached(d, i * 331, 7, 100 * i, 100 - i * 3);
    }
    await checkBlobCacheSize(dirs[0], 3000);
    await oracle.run(
      `
import ZEO.ClientStorage as CS
CS._check_blob_cache_size(args, 3000)
`,
      undefined,
      dirs[1],
    );
    const left = async (d: string): Promise<string[]> => {
      const out: string[] = [];
      for (const n of (await readdir(d)).filter((x) => /^\d+$/.test(x)).sort())
        for (const f of (await readdir(join(d, n))).filter((x) => x.endsWith('.blob')).sort())
          out.push(`${n}/${f}`);
      return out;
    };
    const ours = await left(dirs[0]);
    assert.deepEqual(ours, await left(dirs[1]));
    assert.ok(ours.length < 12 && ours.length > 0);
  } finally {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
});
