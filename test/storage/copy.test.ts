// copyStorage (src/storage/copy.ts: zodbconvert over copyTransactionsFrom / copyTransactionsFromTo) between
// FileStorages: Python's iterator sees the same history on both sides (tids, statuses, metadata, records,
// back pointers, blob files); the copy of a file Python wrote is byte for byte the same file; --incremental
// continues where the destination stopped; a destination with transactions, or with a history the source
// does not have, is refused and left as it was.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { copyStorage, CopyError } from '../../src/storage/copy.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { idHex, z64 } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { PY_ADD_BLOBS, pyHistory } from '../helpers/history.js';
import { interopTest } from '../helpers/oracle.js';
import { PY_BUILD, withTempDir } from './filestorage/fs-oracle.js';

interopTest(
  'a copy keeps every transaction, record and blob file; Python sees the same history',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'src.fs');
      const srcBlobs = join(dir, 'src-blobs');
      await oracle.run(PY_BUILD, undefined, { path: src, n: 40, pack: true });
      await oracle.run(PY_ADD_BLOBS, undefined, { path: src, blobDir: srcBlobs, tag: 'a' });
      const dst = join(dir, 'dst.fs');
      const dstBlobs = join(dir, 'dst-blobs');
      const source = await FileStorage.open(src, { readOnly: true, blobDir: srcBlobs });
      const dest = await FileStorage.open(dst, { blobDir: dstBlobs });
      const seen: number[] = [];
      let r;
      try {
        r = await copyStorage(source, dest, { onTransaction: (p) => seen.push(p.bytes) });
        assert.deepEqual(dest.lastTransaction(), source.lastTransaction());
      } finally {
        await dest.close();
        await source.close();
      }
      const before = await pyHistory(oracle, { path: src, blobDir: srcBlobs });
      const after = await pyHistory(oracle, { path: dst, blobDir: dstBlobs });
      assert.equal(r.transactions, before.length);
      assert.equal(
        r.records,
        before.reduce((n, t) => n + t.records.length, 0),
      );
      // the three new blobs, the rewrite, the undone write (its file) and the undo (a copy of the file before)
      assert.equal(r.blobs, 6);
      assert.ok(
        before.some((t) => t.status === 'p'),
        'the source was packed',
      );
      assert.ok(
        before.some((t) => t.records.some((x) => x.dataTxn !== null)),
        'the source has back pointers',
      );
      assert.ok(
        before.some((t) => t.records.some((x) => x.blob !== null && x.dataTxn !== null)),
        'the source has a back pointer to blob data (the undo)',
      );
      assert.ok(before.every((t) => t.records.every((x) => x.blob !== 'missing')));
      assert.deepEqual(after, before);
      // the same bytes, too: restore writes what Python's commits wrote
      assert.deepEqual(await readFile(dst), await readFile(src));
      // the progress is the source file's position, ending at its size
      assert.equal(seen.length, r.transactions);
      assert.ok(seen.every((b, i) => i === 0 || b > seen[i - 1]));
      assert.equal(seen.at(-1), (await stat(src)).size);
    });
  },
);

interopTest('--incremental continues after the destination’s last transaction', async (oracle) => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src.fs');
    const srcBlobs = join(dir, 'src-blobs');
    const dst = join(dir, 'dst.fs');
    const dstBlobs = join(dir, 'dst-blobs');
    await oracle.run(PY_ADD_BLOBS, undefined, { path: src, blobDir: srcBlobs, tag: 'a' });
    const copy = async (incremental: boolean) => {
      const source = await FileStorage.open(src, { readOnly: true, blobDir: srcBlobs });
      const dest = await FileStorage.open(dst, { blobDir: dstBlobs });
      try {
        return await copyStorage(source, dest, { incremental });
      } finally {
        await dest.close();
        await source.close();
      }
    };
    // incremental into an empty destination: everything
    const first = await copy(true);
    assert.equal(first.after, null);
    const n1 = (await pyHistory(oracle, { path: src })).length;
    assert.equal(first.transactions, n1);
    // nothing new: nothing copied
    const none = await copy(true);
    assert.equal(none.transactions, 0);
    await oracle.run(PY_ADD_BLOBS, undefined, { path: src, blobDir: srcBlobs, tag: 'b' });
    const second = await copy(true);
    const before = await pyHistory(oracle, { path: src, blobDir: srcBlobs });
    assert.equal(second.transactions, before.length - n1);
    assert.equal(idHex(second.first!), before[n1].tid);
    assert.deepEqual(await pyHistory(oracle, { path: dst, blobDir: dstBlobs }), before);
    // without --incremental, a destination with transactions is refused
    const size = (await stat(dst)).size;
    await assert.rejects(copy(false), (e: Error) => {
      assert.ok(e instanceof CopyError);
      assert.match(e.message, /the destination has transactions \(the last 0x[0-9a-f]+\).*--incremental/);
      return true;
    });
    assert.equal((await stat(dst)).size, size);
  });
});

test('an incremental copy into a destination with transactions the source lacks is refused', async () => {
  await withTempDir(async (dir) => {
    const a = await FileStorage.open(join(dir, 'a.fs'), { fsync: false });
    const b = await FileStorage.open(join(dir, 'b.fs'), { fsync: false });
    try {
      const commit = async (s: FileStorage, data: string) => {
        const txn = new TransactionMetaData();
        await s.tpcBegin(txn);
        const oid = await s.newOid();
        await s.store(oid, z64, new TextEncoder().encode(data), txn);
        await s.tpcVote(txn);
        return s.tpcFinish(txn);
      };
      await commit(a, 'one');
      // b: a copy of a, then a transaction of its own
      await copyStorage(a, b);
      await commit(b, 'only in b');
      await commit(a, 'two');
      const size = b.getSize();
      const last = b.lastTransaction();
      await assert.rejects(copyStorage(a, b, { incremental: true }), (e: Error) => {
        assert.ok(e instanceof CopyError);
        assert.match(e.message, /the destination has transactions the source lacks: its last transaction 0x/);
        return true;
      });
      assert.equal(b.getSize(), size);
      assert.deepEqual(b.lastTransaction(), last);
      // and a source whose first transactions the destination lacks (a different history altogether)
      const c = await FileStorage.open(join(dir, 'c.fs'), { fsync: false });
      try {
        await commit(c, 'c');
        await assert.rejects(copyStorage(c, a, { incremental: true }), /the source lacks/);
      } finally {
        await c.close();
      }
    } finally {
      await b.close();
      await a.close();
    }
  });
});

interopTest(
  'blobs: a destination without a blob directory is refused unless blobs are left out',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'src.fs');
      const srcBlobs = join(dir, 'src-blobs');
      await oracle.run(PY_ADD_BLOBS, undefined, { path: src, blobDir: srcBlobs, tag: 'a' });
      const source = await FileStorage.open(src, { readOnly: true, blobDir: srcBlobs });
      const dest = await FileStorage.open(join(dir, 'dst.fs'));
      try {
        await assert.rejects(
          copyStorage(source, dest),
          /the source keeps blobs and the destination does not/,
        );
        assert.deepEqual(dest.lastTransaction(), z64);
        const r = await copyStorage(source, dest, { blobs: false });
        assert.equal(r.blobs, 0);
        assert.deepEqual(dest.lastTransaction(), source.lastTransaction());
      } finally {
        await dest.close();
        await source.close();
      }
      const h = await pyHistory(oracle, { path: join(dir, 'dst.fs') });
      assert.equal(h.length, (await pyHistory(oracle, { path: src })).length);
    });
  },
);

test('an aborted copy stops after the transaction in hand; --incremental continues from there', async () => {
  await withTempDir(async (dir) => {
    const a = await FileStorage.open(join(dir, 'a.fs'), { fsync: false });
    const b = await FileStorage.open(join(dir, 'b.fs'), { fsync: false });
    try {
      const tids = [];
      for (let i = 0; i < 5; i++) {
        const txn = new TransactionMetaData();
        await a.tpcBegin(txn);
        await a.store(await a.newOid(), z64, new TextEncoder().encode(`record ${i}`), txn);
        await a.tpcVote(txn);
        tids.push(await a.tpcFinish(txn));
      }
      const stop = new AbortController();
      await assert.rejects(
        copyStorage(a, b, {
          signal: stop.signal,
          onTransaction: (p) => {
            if (p.transactions === 2) stop.abort(new CopyError('interrupted'));
          },
        }),
        /interrupted/,
      );
      assert.deepEqual(b.lastTransaction(), tids[1]);
      const rest = await copyStorage(a, b, { incremental: true });
      assert.equal(rest.transactions, 3);
      assert.deepEqual(rest.after, tids[1]);
      assert.deepEqual(b.lastTransaction(), tids[4]);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
