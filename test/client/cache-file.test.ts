// The persistent client cache file (src/client/cache-file.ts through ClientCache.open): a restart keeps the
// cache; a torn, truncated, flipped, foreign or empty file is dropped (never partly used) and moved aside; a
// process killed in the middle of flushing leaves the previous complete file or the new one, never a mix; two
// users of one file are refused by its lock (ZEO's zc.lockfile, both ways with Python's ZEO).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { ClientCache, ENTRY_OVERHEAD } from '../../src/client/cache.js';
import { CacheFileError, decodeCacheFile, encodeCacheFile } from '../../src/client/cache-file.js';
import { LockError } from '../../src/storage/filestorage/lockfile.js';
import { p64, u64 } from '../../src/storage/ids.js';
import { interopTest, repoRoot } from '../helpers/oracle.js';
import { mulberry32 } from '../helpers/prng.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'zeo-ts-cache-file-'));
  dirs.push(d);
  return d;
}

function dataFor(oid: number, start: number, len = 20): Uint8Array {
  return new Uint8Array(Buffer.from(`oid ${oid} tid ${start} `.padEnd(len, '.')));
}

/** A cache with current and non-current revisions of 50 oids, last tid 100. */
async function filledCache(path: string, size = 1 << 20): Promise<ClientCache> {
  const c = await ClientCache.open({ size, path });
  for (let i = 1; i <= 50; i++) {
    c.store(p64(i), p64(10 + i), null, dataFor(i, 10 + i));
    if (i % 5 === 0) c.store(p64(i), p64(i), p64(10 + i), dataFor(i, i));
  }
  c.setLastTid(p64(100));
  return c;
}

function contents(c: ClientCache): string[] {
  return c
    .snapshot()
    .entries.map(
      (e) =>
        `${u64(e.oid)} ${u64(e.start)} ${e.end === null ? '-' : u64(e.end)} ${Buffer.from(e.data).toString()}`,
    )
    .sort();
}

test('a restart keeps every revision and the last tid', async () => {
  const path = join(await tempDir(), '1-1.zec');
  const c = await filledCache(path);
  assert.equal(c.dropReason, null);
  const before = contents(c);
  assert.equal(before.length, 60);
  await Promise.all([c.close(), c.close()]);
  await c.flush(); // after close: nothing to do, and no error
  assert.equal(c.length, 60); // still answers from memory
  const d = await ClientCache.open({ size: 1 << 20, path });
  try {
    assert.equal(d.dropReason, null);
    assert.deepEqual(contents(d), before);
    assert.deepEqual(d.getLastTid(), p64(100));
    assert.equal(Buffer.from(d.load(p64(7))!.data).toString(), Buffer.from(dataFor(7, 17)).toString());
    assert.deepEqual(d.loadBefore(p64(5), p64(15))!.end, p64(15));
  } finally {
    await d.close();
  }
});

test('reopened smaller, it keeps what fits, the most used first', async () => {
  const path = join(await tempDir(), 'small.zec');
  const c = await ClientCache.open({ size: 1 << 20, path });
  for (let i = 1; i <= 200; i++) c.store(p64(i), p64(1), null, new Uint8Array(200));
  for (let k = 0; k < 20; k++) for (let i = 1; i <= 10; i++) c.load(p64(i)); // 1..10 are popular
  c.setLastTid(p64(1));
  await c.close();
  const d = await ClientCache.open({ size: 12 * (200 + ENTRY_OVERHEAD), path });
  try {
    d.checkIntegrity();
    assert.ok(d.stats().bytes <= 12 * (200 + ENTRY_OVERHEAD));
    assert.ok(d.length > 0 && d.length <= 12);
    for (let i = 1; i <= 10; i++) assert.ok(d.load(p64(i)), `popular oid ${i} kept`);
  } finally {
    await d.close();
  }
});

test('flush captures the cache as it was when called, with the last tid it was valid for', async () => {
  const path = join(await tempDir(), 'capture.zec');
  const c = await filledCache(path);
  const flushed = c.flush();
  // Changes after the call are not in that write; the file's last tid and content stay consistent.
  c.invalidate(p64(1), p64(101));
  c.store(p64(1), p64(101), null, dataFor(1, 101));
  c.setLastTid(p64(101));
  await flushed;
  const snap = decodeCacheFile(await readFile(path));
  assert.equal(u64(snap.lastTid!), 100n);
  const one = snap.entries.filter((e) => u64(e.oid) === 1n);
  assert.deepEqual(
    one.map((e) => [u64(e.start), e.end]),
    [[11n, null]],
  );
  await c.close(); // close writes the rest
  const snap2 = decodeCacheFile(await readFile(path));
  assert.equal(u64(snap2.lastTid!), 101n);
});

test('a second user of the file gets LockError until the first closes', async () => {
  const path = join(await tempDir(), 'locked.zec');
  const c = await ClientCache.open({ size: 1 << 20, path });
  await assert.rejects(
    ClientCache.open({ size: 1 << 20, path }),
    (e: Error) => e instanceof LockError && /Couldn't lock/.test(e.message),
  );
  await c.close();
  const d = await ClientCache.open({ size: 1 << 20, path });
  await d.close();
});

async function expectDropped(path: string, why: RegExp): Promise<void> {
  const c = await ClientCache.open({ size: 1 << 20, path });
  try {
    assert.match(c.dropReason ?? '(used)', why);
    assert.equal(c.length, 0);
    assert.equal(c.getLastTid(), null);
    assert.ok(!existsSync(path) && existsSync(path + '.bad'), 'the bad file is moved aside');
  } finally {
    await c.close();
  }
}

test('every truncation of the file is detected and the file dropped', async () => {
  const dir = await tempDir();
  const path = join(dir, 'trunc.zec');
  const c = await filledCache(path);
  await c.close();
  const good = await readFile(path);
  const rnd = mulberry32(7);
  const cuts = [0, 1, 4, 8, 39, 40, 41, good.length - 17, good.length - 16, good.length - 1];
  for (let i = 0; i < 30; i++) cuts.push(Math.floor(rnd() * good.length));
  for (const cut of cuts) {
    await writeFile(path, good.subarray(0, cut));
    await expectDropped(path, /truncated|not a zeo-ts cache file|trailer/);
  }
  // and bytes appended after a complete file
  await writeFile(path, Buffer.concat([good, Buffer.from('x')]));
  await expectDropped(path, /unexpected bytes after its trailer/);
});

test('property: any flipped byte is detected (every byte is under a checksum)', async () => {
  const path = join(await tempDir(), 'flip.zec');
  const c = await filledCache(path);
  await c.close();
  const good = await readFile(path);
  assert.equal(decodeCacheFile(good).entries.length, 60);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const bad = Buffer.from(good);
      bad[pos] ^= x;
      assert.throws(() => decodeCacheFile(bad), CacheFileError);
    }),
    { numRuns: 2000 },
  );
  // and through open, which moves it aside
  const bad = Buffer.from(good);
  bad[good.length >> 1] ^= 0x20;
  await writeFile(path, bad);
  await expectDropped(path, /checksum/);
});

test('foreign files are dropped: junk, empty, another format version', async () => {
  const dir = await tempDir();
  const path = join(dir, 'foreign.zec');
  await writeFile(path, 'this is not a cache file at all, just some text\n');
  await expectDropped(path, /not a zeo-ts cache file/);
  await writeFile(path, '');
  await expectDropped(path, /not a zeo-ts cache file/);
  // a future version: a well-formed header with version 2
  const parts = encodeCacheFile({ lastTid: p64(5), entries: [] });
  const header = Buffer.from(parts[0]);
  header.writeUInt32BE(2, 8);
  const { crc32 } = await import('node:zlib');
  header.writeUInt32BE(crc32(header.subarray(0, 36)), 36);
  await writeFile(path, Buffer.concat([header, ...parts.slice(1)]));
  await expectDropped(path, /version 2/);
  // records without a last tid to verify them from
  await writeFile(
    path,
    Buffer.concat(
      encodeCacheFile({
        lastTid: null,
        entries: [{ oid: p64(1), start: p64(1), end: null, data: new Uint8Array(3), frequency: 1 }],
      }),
    ),
  );
  await expectDropped(path, /no last tid/);
});

interopTest(
  "ZEO's own cache file is recognised as foreign, and the lock excludes ZEO and us both ways",
  async (oracle) => {
    const dir = await tempDir();
    const path = join(dir, 'zeo.zec');
    // Python's ZEO writes its ZEC3 file, and keeps it locked while open.
    await oracle.json(
      `
import ZEO.cache
from ZODB.utils import p64
c = ZEO.cache.ClientCache(args, 100000)
c.store(p64(1), p64(2), None, b'data')
c.setLastTid(p64(3))
import builtins
builtins._zeo_ts_cache = c  # kept open (and locked) until the next snippet closes it
result = None
`,
      undefined,
      path,
    );
    try {
      await assert.rejects(ClientCache.open({ size: 1 << 20, path }), LockError);
    } finally {
      await oracle.json('_zeo_ts_cache.close()\nresult = None');
    }
    await expectDropped(path, /a ZEO \(Python\) cache file/);
    // ours holds the lock: Python's ZEO cannot open the file
    const c = await ClientCache.open({ size: 1 << 20, path });
    try {
      const r = await oracle.json<string>(
        `
import ZEO.cache, zc.lockfile
try:
    ZEO.cache.ClientCache(args, 100000).close()
    result = 'opened'
except zc.lockfile.LockError as e:
    result = 'LockError'
`,
        undefined,
        path,
      );
      assert.equal(r, 'LockError');
    } finally {
      await c.close();
    }
  },
);

// A child process flushing generation after generation (each generation rewrites every entry with data naming
// it and sets the last tid to it), killed with SIGKILL at a random moment: the file it leaves is a complete
// generation or absent, never a mix.
const CHILD = `
import { ClientCache } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'dist/src/client/cache.js')).href)};
import { p64 } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'dist/src/storage/ids.js')).href)};
const c = await ClientCache.open({ size: 64 << 20, path: process.argv[1] });
process.stdout.write('open\\n');
for (let gen = 1; ; gen++) {
  for (let i = 1; i <= 1000; i++) {
    const oid = p64(i);
    c.invalidate(oid, p64(gen));
    c.store(oid, p64(gen), null, Buffer.from(('gen ' + gen + ' oid ' + i + ' ').padEnd(1000, '*')));
  }
  c.setLastTid(p64(gen));
  await c.flush();
  process.stdout.write('gen ' + gen + '\\n');
}
`;

test(
  'SIGKILL during flush leaves the previous or the new complete file, never a mix',
  { timeout: 60_000 },
  async () => {
    const dir = await tempDir();
    const rnd = mulberry32(99);
    let usedFiles = 0;
    let midFlush = 0;
    for (let round = 0; round < 6; round++) {
      const path = join(dir, `kill-${round}.zec`);
      const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, path], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      // Let it write a few generations, then kill it somewhere in the middle of one.
      while (!/gen [1-9]/.test(out)) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 50 + Math.floor(rnd() * 400)));
      child.kill('SIGKILL');
      await exited;
      if (existsSync(path + '.tmp')) midFlush++; // killed while writing the next generation
      const flushedGens = [...out.matchAll(/gen (\d+)/g)].map((m) => Number(m[1]));
      const lastReported = Math.max(...flushedGens);
      const c = await ClientCache.open({ size: 64 << 20, path });
      try {
        assert.equal(c.dropReason, null, 'an atomic rename never leaves a torn file');
        const gen = Number(u64(c.getLastTid()!));
        // The file holds the last flush that completed (it may have completed after the last report).
        assert.ok(
          gen === lastReported || gen === lastReported + 1,
          `generation ${gen}, last reported ${lastReported}`,
        );
        for (let i = 1; i <= 1000; i++) {
          const r = c.load(p64(i))!;
          assert.equal(Number(u64(r.tid)), gen);
          assert.ok(
            Buffer.from(r.data).toString().startsWith(`gen ${gen} oid ${i} `),
            `oid ${i} from generation ${gen}`,
          );
        }
        // the earlier generations, non-current, each ending where the next began, none from the future
        const entries = c.snapshot().entries;
        for (const e of entries) {
          const start = Number(u64(e.start));
          assert.ok(
            Buffer.from(e.data)
              .toString()
              .startsWith(`gen ${start} oid ${u64(e.oid)} `),
          );
          if (e.end === null) assert.equal(start, gen);
          else assert.ok(Number(u64(e.end)) === start + 1 && start < gen);
        }
        assert.equal(entries.length, 1000 * gen);
        usedFiles++;
      } finally {
        await c.close();
      }
    }
    assert.equal(usedFiles, 6);
    assert.ok(midFlush >= 2, `only ${midFlush} of 6 kills landed in the middle of a flush`);
  },
);
