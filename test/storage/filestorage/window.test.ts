// The windowed reader (src/storage/filestorage/window.ts) and the record reads over it (records.ts's window*,
// followBack, transactionEndingFile), on a Data.fs built with format.ts's encoder: every byte as the file holds
// it, whatever the window size (windows smaller than a record, records straddling two windows); damage named by
// its offset.
import assert from 'node:assert/strict';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptedError } from '../../../src/storage/errors.js';
import { p64 } from '../../../src/storage/ids.js';
import {
  encodeTransaction,
  FILE_MAGIC,
  writeU64,
  type TransactionToWrite,
} from '../../../src/storage/filestorage/format.js';
import {
  followBack,
  transactionEndingFile,
  windowDataHeader,
  windowNum,
  windowTxnHeader,
} from '../../../src/storage/filestorage/records.js';
import { WindowReader } from '../../../src/storage/filestorage/window.js';
import { withTempDir } from './fs-oracle.js';

interface Built {
  bytes: Buffer;
  /** transaction positions */
  tpos: number[];
  /** record positions, per transaction */
  rpos: number[][];
}

/** Three transactions: data of several sizes (one bigger than any window below), then back pointers to them. */
function build(): Built {
  const parts: Buffer[] = [Buffer.from(FILE_MAGIC)];
  let pos = FILE_MAGIC.length;
  const tpos: number[] = [];
  const rpos: number[][] = [];
  const add = (t: TransactionToWrite): void => {
    const e = encodeTransaction(t, pos);
    tpos.push(pos);
    rpos.push(e.positions);
    parts.push(e.bytes);
    pos += e.bytes.length;
  };
  const data = (n: number, salt: number): Uint8Array =>
    Uint8Array.from({ length: n }, (_, i) => (i * 7 + salt) & 0xff);
  add({
    tid: p64(1n),
    user: Buffer.from('user'),
    description: Buffer.from('first'),
    extension: Buffer.alloc(100, 1),
    records: [
      { oid: p64(1), prev: 0, data: data(10, 1) },
      { oid: p64(2), prev: 0, data: data(5000, 2) },
      { oid: p64(3), prev: 0, data: data(300, 3) },
    ],
  });
  const [r1, r2, r3] = rpos[0];
  add({ tid: p64(2n), records: [{ oid: p64(2), prev: r2, data: null, back: r2 }] });
  add({
    tid: p64(3n),
    description: Buffer.from('undo of creation, and a chain'),
    records: [
      { oid: p64(1), prev: r1, data: null, back: 0 },
      { oid: p64(2), prev: rpos[1][0], data: null, back: rpos[1][0] },
      { oid: p64(3), prev: r3, data: data(20, 4) },
    ],
  });
  return { bytes: Buffer.concat(parts), tpos, rpos };
}

async function withFile(bytes: Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, 'Data.fs');
    await writeFile(path, bytes);
    await fn(path);
  });
}

test('WindowReader: any span, any window size, is the bytes of the file', async () => {
  const { bytes } = build();
  await withFile(bytes, async (path) => {
    const fh = await open(path, 'r');
    try {
      for (const size of [64, 100, 4096, 1 << 20]) {
        const reads: number[] = [];
        const w = new WindowReader(fh, path, bytes.length, size, (p) => reads.push(p));
        for (const [pos, n] of [
          [0, 4],
          [3, 60],
          [50, 5100],
          [90, 20],
          [bytes.length - 8, 8],
          [bytes.length - 3, 10],
          [bytes.length, 5],
        ]) {
          const got = await w.at(pos, n);
          assert.deepEqual(Buffer.from(got), bytes.subarray(pos, pos + n), `window ${size}: ${pos}+${n}`);
        }
        assert.ok(reads.length > 0);
        await assert.rejects(w.get(bytes.length - 3, 10, 'thing'), (e: unknown) => {
          assert.ok(e instanceof CorruptedError);
          assert.equal(e.offset, bytes.length - 3);
          assert.match(e.message, /thing runs past the end/);
          return true;
        });
      }
    } finally {
      await fh.close();
    }
  });
});

test('the records over a window: headers, lengths, back pointer chains, the transaction ending the file', async () => {
  const b = build();
  await withFile(b.bytes, async (path) => {
    const fh = await open(path, 'r');
    try {
      for (const size of [64, 4096]) {
        const w = new WindowReader(fh, path, b.bytes.length, size);
        const h = await windowTxnHeader(w, b.tpos[0]);
        assert.equal(Buffer.from(h.user).toString(), 'user');
        assert.equal(Buffer.from(h.description).toString(), 'first');
        assert.deepEqual(Buffer.from(h.extension), Buffer.alloc(100, 1));
        assert.equal(await windowNum(w, b.tpos[0] + h.tl), h.tl);
        const d = await windowDataHeader(w, b.rpos[0][1]);
        assert.equal(d.plen, 5000);
        // a chain of two back pointers to the 5000 bytes, whose first target is oid 2's record of tid 2
        const back = await windowDataHeader(w, b.rpos[2][1], p64(2));
        const f = await followBack(w, back.back, p64(2));
        assert.deepEqual(Buffer.from(f.tid), Buffer.from(p64(2n)));
        assert.deepEqual(Buffer.from(f.data!), b.bytes.subarray(b.rpos[0][1] + 42, b.rpos[0][1] + 42 + 5000));
        await assert.rejects(windowDataHeader(w, b.rpos[0][1], p64(7)), /another oid/);
        const ending = await transactionEndingFile((p, n) => w.at(p, n), b.bytes.length, b.tpos[1]);
        assert.deepEqual(ending, { pos: b.tpos[2], status: 0x20 });
        assert.equal(await transactionEndingFile((p, n) => w.at(p, n), b.bytes.length, b.tpos[2]), null);
      }
    } finally {
      await fh.close();
    }
  });
});

test('followBack: a chain ending in 0 is no data; a loop is damage, named at the pointer', async () => {
  const b = build();
  // make the tid-2 record of oid 2 point to the tid-3 record that points to it
  const looped = Buffer.from(b.bytes);
  writeU64(looped, b.rpos[1][0] + 42, b.rpos[2][1]);
  await withFile(looped, async (path) => {
    const fh = await open(path, 'r');
    try {
      const w = new WindowReader(fh, path, looped.length, 4096);
      const none = await followBack(w, b.rpos[2][0], p64(1));
      assert.equal(none.data, null);
      await assert.rejects(followBack(w, b.rpos[2][1], p64(2)), (e: unknown) => {
        assert.ok(e instanceof CorruptedError);
        assert.equal(e.offset, b.rpos[2][1]);
        assert.match(e.message, /back pointers in a loop/);
        return true;
      });
    } finally {
      await fh.close();
    }
  });
});
