import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  FileIOError,
  RandomAccessFile,
  ShortReadError,
  fdIO,
  fsyncDirectory,
  type PositionalIO,
} from '../../../src/storage/filestorage/file.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zeo-ts-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

test('write at positions, readExact back, end and size follow', async () => {
  const f = await RandomAccessFile.open(join(dir, 'rw.fs'), 'w+');
  try {
    assert.equal(f.end, 0);
    await f.write(0, Buffer.from('FS30'));
    await f.write(10, Buffer.from('xyz'));
    assert.equal(f.end, 13);
    assert.equal(await f.size(), 13);
    assert.deepEqual(await f.readExact(0, 4), Buffer.from('FS30'));
    assert.deepEqual(await f.readExact(4, 6), Buffer.alloc(6), 'the hole reads as zeros');
    // a part of a larger source buffer
    await f.write(4, Buffer.from('..abc..'), 2, 3);
    assert.deepEqual(await f.readExact(4, 3), Buffer.from('abc'));
  } finally {
    await f.close();
  }
});

test('readExact into a given buffer fills it at the offset and returns that very buffer', async () => {
  const path = join(dir, 'into.fs');
  await writeFile(path, bytes(100));
  const f = await RandomAccessFile.open(path);
  try {
    const scratch = Buffer.alloc(64, 0xee);
    const got = await f.readExact(40, 42, scratch, 8);
    assert.equal(got, scratch);
    assert.deepEqual(scratch.subarray(8, 50), bytes(100).subarray(40, 82));
    assert.equal(scratch[7], 0xee);
    assert.equal(scratch[50], 0xee);
    const u8 = new Uint8Array(5);
    assert.equal(await f.readExact(0, 5, u8), u8);
    assert.deepEqual(Buffer.from(u8), bytes(100).subarray(0, 5));
    assert.equal((await f.readExact(100, 0)).length, 0, 'zero bytes at the end is not short');
    await assert.rejects(f.readExact(0, 10, Buffer.alloc(8)), RangeError);
    await assert.rejects(f.readExact(-1, 1), RangeError);
  } finally {
    await f.close();
  }
});

test('a short read names the file, the offset, and how much there was', async () => {
  const path = join(dir, 'short.fs');
  await writeFile(path, bytes(50));
  const f = await RandomAccessFile.open(path);
  try {
    await assert.rejects(f.readExact(40, 42), (e: unknown) => {
      assert.ok(e instanceof ShortReadError);
      assert.ok(e instanceof FileIOError);
      assert.equal(e.path, path);
      assert.equal(e.position, 40);
      assert.equal(e.wanted, 42);
      assert.equal(e.got, 10);
      assert.match(e.message, new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} at offset 40`));
      assert.match(e.message, /wanted 42 bytes, got 10/);
      return true;
    });
    await assert.rejects(f.readExact(500, 1), (e: unknown) => e instanceof ShortReadError && e.got === 0);
    const buf = Buffer.alloc(20);
    assert.equal(await f.readAtMost(45, buf), 5, 'readAtMost stops at the end without an error');
  } finally {
    await f.close();
  }
});

test('I/O errors name the file (and the offset for reads and writes)', async () => {
  const missing = join(dir, 'missing.fs');
  await assert.rejects(
    RandomAccessFile.open(missing),
    (e: unknown) => e instanceof FileIOError && e.code === 'ENOENT' && e.message.includes(missing),
  );
  const path = join(dir, 'ro.fs');
  await writeFile(path, bytes(10));
  const ro = await RandomAccessFile.open(path, 'r');
  try {
    await assert.rejects(
      ro.write(3, Buffer.from('x')),
      (e: unknown) =>
        e instanceof FileIOError && e.code === 'EBADF' && e.message.startsWith(`write ${path} at offset 3`),
    );
  } finally {
    await ro.close();
  }
  const d = await RandomAccessFile.open(dir, 'r');
  try {
    await assert.rejects(
      d.readExact(0, 8),
      (e: unknown) =>
        e instanceof FileIOError && e.code === 'EISDIR' && e.message.startsWith(`read ${dir} at offset 0`),
    );
  } finally {
    await d.close();
  }
  await assert.rejects(
    ro.readExact(0, 1),
    (e: unknown) => e instanceof FileIOError && /closed/.test(e.message) && e.message.includes(path),
  );
  await ro.close(); // twice is fine
  await assert.rejects(RandomAccessFile.open(path, 'a+'), RangeError);
});

test('chunks read a large range through one reused buffer', async () => {
  const path = join(dir, 'large.fs');
  const data = bytes(3_500_000, 7);
  await writeFile(path, data);
  const f = await RandomAccessFile.open(path);
  try {
    const parts: Buffer[] = [];
    const seen = new Set<ArrayBufferLike>();
    for await (const c of f.chunks(123, data.length - 200, { chunkSize: 1 << 20 })) {
      assert.ok(c.length <= 1 << 20);
      seen.add(c.buffer);
      parts.push(Buffer.from(c));
    }
    assert.equal(seen.size, 1, 'one buffer for all chunks');
    assert.deepEqual(Buffer.concat(parts), data.subarray(123, data.length - 77));
    const mine = Buffer.alloc(4096);
    let n = 0;
    for await (const c of f.chunks(0, 10_000, { buffer: mine })) {
      assert.equal(c.buffer, mine.buffer);
      n += c.length;
    }
    assert.equal(n, 10_000);
    const it = f.chunks(data.length - 10, 20, { chunkSize: 8 });
    await assert.rejects(async () => {
      for await (const _ of it) {
        // drain
      }
    }, ShortReadError);
  } finally {
    await f.close();
  }
});

test('copyTo copies a range between files', async () => {
  const src = await RandomAccessFile.open(join(dir, 'copy-src.fs'), 'w+');
  const dst = await RandomAccessFile.open(join(dir, 'copy-dst.fs'), 'w+');
  try {
    await src.write(0, bytes(300_000, 3));
    await dst.write(0, Buffer.from('FS30'));
    await src.copyTo(dst, 1000, 250_000, 4, { chunkSize: 65536 });
    assert.equal(dst.end, 250_004);
    assert.deepEqual(
      await readFile(join(dir, 'copy-dst.fs')),
      Buffer.concat([Buffer.from('FS30'), bytes(300_000, 3).subarray(1000, 251_000)]),
    );
  } finally {
    await src.close();
    await dst.close();
  }
});

test('appends started together land one after another, in call order', async () => {
  const path = join(dir, 'append.fs');
  const f = await RandomAccessFile.open(path, 'w+');
  try {
    await f.write(0, Buffer.from('FS30'));
    const recs = Array.from({ length: 50 }, (_, i) => Buffer.alloc(10 + i, i));
    const positions = await Promise.all(recs.map((r) => f.append(r)));
    let expect = 4;
    for (let i = 0; i < recs.length; i++) {
      assert.equal(positions[i], expect);
      expect += recs[i].length;
    }
    assert.equal(f.end, expect);
    await f.datasync();
    await f.sync();
    assert.deepEqual(await readFile(path), Buffer.concat([Buffer.from('FS30'), ...recs]));
    await f.truncate(20);
    assert.equal(f.end, 20);
    assert.equal(await f.size(), 20);
    assert.equal(await f.append(Buffer.from('z')), 20);
  } finally {
    await f.close();
  }
});

/** System calls that move at most `step` bytes per call, as a kernel may. */
function stingyIO(step: number): PositionalIO {
  return {
    read: (fd, b, o, l, p) => fdIO.read(fd, b, o, Math.min(l, step), p),
    write: (fd, b, o, l, p) => fdIO.write(fd, b, o, Math.min(l, step), p),
  };
}

test('short reads and short writes from the kernel are looped over', async () => {
  const path = join(dir, 'stingy.fs');
  const inner = await RandomAccessFile.open(path, 'w+');
  const f = new RandomAccessFile(inner.fd, path, 0, { io: stingyIO(3) });
  try {
    const data = bytes(1000, 9);
    await f.write(0, data);
    assert.deepEqual(await readFile(path), data);
    assert.deepEqual(await f.readExact(1, 998), data.subarray(1, 999));
    await assert.rejects(f.readExact(990, 20), (e: unknown) => e instanceof ShortReadError && e.got === 10);
  } finally {
    await inner.close();
  }
});

test('fsyncDirectory syncs a directory and names one it cannot open', async () => {
  await fsyncDirectory(dir);
  const missing = join(dir, 'no-such-dir');
  await assert.rejects(
    fsyncDirectory(missing),
    (e: unknown) => e instanceof FileIOError && e.code === 'ENOENT' && e.message.includes(missing),
  );
});

test('writeDurable writes (through an O_DSYNC descriptor of the same file where there is one)', async () => {
  const path = join(dir, 'durable.fs');
  const f = await RandomAccessFile.open(path, 'w+');
  try {
    await f.writeDurable(0, Buffer.from('FS30'));
    await f.writeDurable(4, Buffer.from('..abcdef..'), 2, 6);
    await f.writeDurable(2, Buffer.from('x'));
    assert.equal(f.end, 10);
    assert.deepEqual(await readFile(path), Buffer.from('FSx0abcdef'));
    await assert.rejects(f.writeDurable(-1, Buffer.from('x')), RangeError);
  } finally {
    await f.close();
  }
  await assert.rejects(f.writeDurable(0, Buffer.from('x')), (e: unknown) => e instanceof FileIOError);
  // a file opened read-only cannot be written either way
  const ro = await RandomAccessFile.open(path, 'r');
  try {
    await assert.rejects(ro.writeDurable(0, Buffer.from('x')), (e: unknown) => e instanceof FileIOError);
  } finally {
    await ro.close();
  }
});

test('writeNow and datasyncNow: the synchronous write and flush, where the system calls have them', async () => {
  const path = join(dir, 'now.fs');
  const f = await RandomAccessFile.open(path, 'w+');
  try {
    assert.equal(f.writesNow, true);
    assert.equal(f.datasyncsNow, true);
    f.writeNow(0, Buffer.from('FS30'));
    f.writeNow(4, Buffer.from('..abcdef..'), 2, 6);
    f.writeNow(2, Buffer.from('x'));
    f.datasyncNow();
    assert.equal(f.end, 10);
    assert.deepEqual(await readFile(path), Buffer.from('FSx0abcdef'));
    assert.throws(() => f.writeNow(-1, Buffer.from('x')), RangeError);
    assert.throws(() => f.writeNow(0, Buffer.from('x'), 0, 2), RangeError);
  } finally {
    await f.close();
  }
  assert.throws(
    () => f.writeNow(0, Buffer.from('x')),
    (e: unknown) => e instanceof FileIOError,
  );
  assert.throws(
    () => f.datasyncNow(),
    (e: unknown) => e instanceof FileIOError,
  );
  // a write error names the file and the offset
  const ro = await RandomAccessFile.open(path, 'r');
  try {
    assert.throws(
      () => ro.writeNow(3, Buffer.from('x')),
      (e: unknown) =>
        e instanceof FileIOError && e.code === 'EBADF' && e.message.includes(`${path} at offset 3`),
    );
  } finally {
    await ro.close();
  }
  // system calls without the synchronous ones: not offered
  const inner = await RandomAccessFile.open(path, 'r+');
  const g = new RandomAccessFile(inner.fd, path, 10, { io: stingyIO(3) });
  try {
    assert.equal(g.writesNow, false);
    assert.equal(g.datasyncsNow, false);
    assert.throws(
      () => g.writeNow(0, Buffer.from('x')),
      (e: unknown) => e instanceof FileIOError,
    );
    assert.throws(
      () => g.datasyncNow(),
      (e: unknown) => e instanceof FileIOError,
    );
  } finally {
    await inner.close();
  }
});

test('close waits for the reads in flight (the descriptor is not closed under them)', async () => {
  const path = join(dir, 'inflight.fs');
  await writeFile(path, bytes(1 << 20, 5));
  const f = await RandomAccessFile.open(path);
  const reads = Array.from({ length: 16 }, (_, i) => f.readExact(i * 65536, 65536));
  const closed = f.close();
  const got = await Promise.all(reads);
  await closed;
  assert.deepEqual(Buffer.concat(got), bytes(1 << 20, 5));
  await assert.rejects(
    f.readExact(0, 1),
    (e: unknown) => e instanceof FileIOError && /closed/.test(e.message),
  );
});
