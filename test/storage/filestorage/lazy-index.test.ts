// Opening a storage from Data.fs.index without reading its big buckets (openIndexFile, FsIndex's deferred
// buckets): the structure is checked at open as before, the buckets come in the background or when a load
// needs one, and every answer is the one a scan-built index gives:
//   - loads, commits, recordIternext and close right after the open (before the background load; the
//     server's synchronous recordIternextCached leaves them to recordIternext);
//   - the open-time checks (sanity, maxOid) answered by probing the file, the same as the loaded buckets;
//   - damaged structure, a file cut short, a stale index, a wrong entry: not used (or the tail scanned), as
//     before; a bucket that cannot be read after the open fails the loads that need it, until it can be read;
//   - no descriptor left open by a storage closed while buckets were loading.
import assert from 'node:assert/strict';
import { readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { IndexNotLoadedError } from '../../../src/storage/filestorage/fsindex.js';
import { IndexFileError, openIndexFile, readIndexFile } from '../../../src/storage/filestorage/indexfile.js';
import { scanDataPath, type LogLevel } from '../../../src/storage/filestorage/scan.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData, type DataRecord } from '../../../src/storage/interfaces.js';
import { indexAsMap, withTempDir } from './fs-oracle.js';

/** oids 0 .. N-1 fill two 65,536-oid buckets and part of a third (deferred), plus small sparse groups. */
const N = 140_000;
const SPARSE = [2 ** 40, 2 ** 40 + 5, 2 ** 41 + 7, 2 ** 50 + 1].map((n) => BigInt(n));

function dataOf(n: bigint | number, rev: number): Buffer {
  return Buffer.from(`object ${n} revision ${rev} `.padEnd(40 + (Number(BigInt(n) % 50n) | 0), '.'));
}

/** Builds a Data.fs of N + 4 objects (then every 10th changed), closed: its index saved. */
async function build(path: string): Promise<Map<string, Tid>> {
  const s = await FileStorage.open(path, { fsync: false });
  const serials = new Map<string, Tid>();
  try {
    const commit = async (oids: Array<bigint | number>, rev: number): Promise<void> => {
      const t = new TransactionMetaData(Buffer.from('build'), Buffer.from(`rev ${rev}`));
      await s.tpcBegin(t);
      for (const n of oids) await s.store(p64(n), serials.get(String(n)) ?? z64, dataOf(n, rev), t);
      await s.tpcVote(t);
      const tid = await s.tpcFinish(t);
      for (const n of oids) serials.set(String(n), tid);
    };
    const all = Array.from({ length: N }, (_, i) => i);
    for (let i = 0; i < N; i += 35_000) await commit(all.slice(i, i + 35_000), 0);
    await commit(SPARSE, 0);
    await commit(
      all.filter((i) => i % 10 === 0),
      1,
    );
  } finally {
    await s.close();
  }
  return serials;
}

let built: { dir: string; path: string } | null = null;

/** A fresh copy of the built file (and its index) in `dir`. */
async function copyBuilt(dir: string): Promise<string> {
  if (built === null) throw new Error('not built');
  const path = join(dir, 'Data.fs');
  await copyFile(built.path, path);
  await copyFile(built.path + '.index', path + '.index');
  return path;
}

const sample = (): number[] => [0, 1, 4095, 4096, 65535, 65536, 70_000, 100_000, 131_071, 131_072, N - 1, N];

describe('Data.fs.index opened lazily', () => {
  it('builds the test file', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-lazy-'));
    built = { dir, path: join(dir, 'Data.fs') };
    await build(built.path);
  });

  it('the open reads the structure; probes and loaded buckets give the scan-built index', async () => {
    await withTempDir(async (dir) => {
      const path = await copyBuilt(dir);
      const truth = await scanDataPath(path, { useIndexFile: false });
      const lazy = await scanDataPath(path, { lazyIndex: true });
      const ix = lazy.index;
      try {
        assert.equal(lazy.usedIndexFile, true);
        assert.equal(ix.loaded, false, 'the big buckets are left in the file');
        assert.equal(ix.size, truth.index.size);
        assert.equal(idHex(lazy.maxOid), idHex(truth.maxOid));
        assert.equal(lazy.pos, truth.pos);
        assert.throws(() => ix.get(p64(70_000)), IndexNotLoadedError);
        assert.throws(() => ix.set(p64(70_000), 1234), IndexNotLoadedError);
        assert.throws(() => [...ix.entries()], IndexNotLoadedError);
        // the sparse groups are small: read at once
        for (const n of SPARSE) assert.equal(ix.get(p64(n)), truth.index.get(p64(n)));
        for (const n of [...sample(), 77_777, 99_999]) {
          const oid = p64(n);
          assert.equal(ix.peekHiLo(0, n), truth.index.get(oid), `probe of ${n}`);
        }
        await ix.pendingOid(p64(70_000));
        assert.equal(ix.get(p64(70_000)), truth.index.get(p64(70_000)));
        await ix.pendingAll();
        assert.equal(ix.loaded, true);
        assert.deepEqual(indexAsMap(ix.entries()), indexAsMap(truth.index.entries()));
        assert.equal(idHex(ix.maxOid()), idHex(truth.maxOid));
      } finally {
        await ix.dispose();
      }
    });
  });

  it('loads, commits, recordIternext and close right after the open; the saved index is the scan-built one', async () => {
    await withTempDir(async (dir) => {
      const path = await copyBuilt(dir);
      const truth = await scanDataPath(path, { useIndexFile: false });
      const s = await FileStorage.open(path, { fsync: false });
      let tid: Tid;
      try {
        // (the background load starts after open returns: buckets are deferred now) left to recordIternext
        assert.equal(s.recordIternextCached(p64(65_535)), undefined);
        assert.equal(s.len(), truth.index.size);
        // every bucket at once, before the background load got far
        const got = await Promise.all(sample().map((n) => s.load(p64(n)).catch((e: Error) => e.name)));
        assert.deepEqual(
          got.map((r) => (typeof r === 'string' ? r : r.data.toString())),
          sample().map((n) => (n === N ? 'POSKeyError' : dataOf(n, n % 10 === 0 ? 1 : 0).toString())),
        );
        const it = await s.recordIternext(p64(65_535));
        assert.equal(idHex(it.oid), idHex(p64(65_535)));
        assert.equal(idHex(it.next!), idHex(p64(65_536)));
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        for (const n of [131_073, 66_000, N + 5]) {
          const old = n < N ? (await s.load(p64(n))).serial : z64;
          await s.store(p64(n), old, dataOf(n, 9), t);
        }
        await s.tpcVote(t);
        tid = await s.tpcFinish(t);
      } finally {
        await s.close();
      }
      const saved = await readIndexFile(path);
      const rescan = await scanDataPath(path, { useIndexFile: false });
      assert.ok(saved);
      assert.equal(saved.pos, rescan.pos);
      assert.deepEqual(indexAsMap(saved.index.entries()), indexAsMap(rescan.index.entries()));
      const again = await FileStorage.open(path, { readOnly: true });
      try {
        assert.equal((await again.load(p64(66_000))).data.toString(), dataOf(66_000, 9).toString());
        assert.equal(idHex((await again.load(p64(N + 5))).serial), idHex(tid));
      } finally {
        await again.close();
      }
    });
  });

  it('restoreRecords right after the open (buckets deferred, a back pointer) writes what restore() writes', async () => {
    await withTempDir(async (dir) => {
      const files: Buffer[] = [];
      for (const bulk of [false, true]) {
        const sub = join(dir, bulk ? 'bulk' : 'one');
        await mkdir(sub);
        const path = await copyBuilt(sub);
        const s = await FileStorage.open(path, { fsync: false });
        try {
          assert.equal(s.recordIternextCached(p64(70_000)), undefined, 'the buckets are deferred');
          // (a sparse oid's bucket is read at open: its load leaves the big buckets deferred)
          const sparse = p64(SPARSE[0]);
          const old = await s.load(sparse);
          const records: DataRecord[] = [
            { oid: p64(70_000), tid: z64, data: dataOf(70_000, 5), dataTxn: null },
            { oid: sparse, tid: z64, data: old.data, dataTxn: old.serial },
            { oid: p64(100_000), tid: z64, data: null, dataTxn: null },
            { oid: p64(N + 9), tid: z64, data: dataOf(N + 9, 5), dataTxn: null },
          ];
          const t = new TransactionMetaData(Buffer.from('restore'));
          await s.tpcBegin(t, p64(u64(s.lastTransaction()) + 1n));
          if (bulk) assert.equal((await s.restoreRecords(records, t)).records, records.length);
          else
            for (const r of records)
              await s.restore(r.oid, p64(u64(s.lastTransaction()) + 1n), r.data, r.dataTxn, t);
          await s.tpcVote(t);
          await s.tpcFinish(t);
          assert.equal((await s.load(p64(70_000))).data.toString(), dataOf(70_000, 5).toString());
          assert.equal((await s.load(sparse)).data.toString(), old.data.toString());
          // the sparse record went in as a back pointer to its data
          const backs: Array<string | null> = [];
          for await (const txn of s.iterator(s.lastTransaction())) {
            for await (const r of txn.records) backs.push(r.dataTxn && idHex(r.dataTxn));
          }
          assert.deepEqual(backs, [null, idHex(old.serial), null, null]);
        } finally {
          await s.close();
        }
        files.push(await readFile(path));
      }
      assert.ok(files[0].equals(files[1]), 'the same bytes');
    });
  });

  it('an index not to be used is not: damaged, cut short, wrong; a stale one has its tail scanned', async () => {
    await withTempDir(async (dir) => {
      const path = await copyBuilt(dir);
      const good = await readFile(path + '.index');
      const truth = await scanDataPath(path, { useIndexFile: false });
      const opened = async (bytes: Buffer): Promise<{ used: boolean; logs: string[]; same: boolean }> => {
        await writeFile(path + '.index', bytes);
        const logs: string[] = [];
        const r = await scanDataPath(path, { log: (l: LogLevel, m: string) => logs.push(`${l} ${m}`) });
        return {
          used: r.usedIndexFile,
          logs,
          same:
            r.pos === truth.pos &&
            JSON.stringify([...indexAsMap(r.index.entries())]) ===
              JSON.stringify([...indexAsMap(truth.index.entries())]),
        };
      };
      // the second (prefix, bucket) record's header, past the first (deferred) bucket
      const second = good.indexOf(Buffer.from([0x80, 0x03, 0x43, 0x06, 0, 0, 0, 0, 0, 1]));
      assert.ok(second > 500_000, `${second}`);
      const cases: Array<[string, Buffer, RegExp]> = [];
      const badOp = Buffer.from(good);
      badOp[second + 10] = 0x55; // not a bytes opcode
      cases.push(['a record header damaged', badOp, /loading index/]);
      const badTuple = Buffer.from(good);
      badTuple[second - 2] = 0x85; // TUPLE3 where TUPLE2 ends the first record
      cases.push(['a record end damaged', badTuple, /loading index/]);
      cases.push(['cut in a deferred bucket', good.subarray(0, 300_000), /loading index/]);
      cases.push(['cut before the end', good.subarray(0, good.length - 4), /loading index/]);
      // a position of the last transaction's first record (oid 0, in a deferred bucket) wrong
      const wrong = Buffer.from(good);
      const firstBucket = good.indexOf(Buffer.from([0x80, 0x03, 0x43, 0x06, 0, 0, 0, 0, 0, 0])) + 10 + 5;
      const n0 = wrong.readUInt32LE(firstBucket - 4) / 8;
      wrong.writeUIntBE(truth.index.get(p64(0)) + 1, firstBucket + 2 * n0, 6);
      cases.push(['a position of the last transaction wrong', wrong, /Ignoring index/]);
      for (const [name, bytes, logged] of cases) {
        const r = await opened(bytes);
        assert.equal(r.used, false, name);
        assert.ok(
          r.logs.some((m) => logged.test(m)),
          `${name}: ${r.logs.join('; ')}`,
        );
        assert.ok(r.same, name);
      }
      // stale: the index of an earlier state (the tail is scanned after it, every bucket loaded first)
      const s = await FileStorage.open(path, { fsync: false });
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(p64(70_001), (await s.load(p64(70_001))).serial, dataOf(70_001, 5), t);
      await s.tpcVote(t);
      await s.tpcFinish(t);
      await s.close();
      await writeFile(path + '.index', good);
      const stale = await scanDataPath(path);
      assert.equal(stale.usedIndexFile, true);
      assert.equal(stale.transactionsScanned, 1);
      const fresh = await scanDataPath(path, { useIndexFile: false });
      assert.deepEqual(indexAsMap(stale.index.entries()), indexAsMap(fresh.index.entries()));
    });
  });

  it('a bucket that cannot be read after the open fails the loads that need it, until it can be read', async () => {
    await withTempDir(async (dir) => {
      const path = await copyBuilt(dir);
      const good = await readFile(path + '.index');
      const logs: string[] = [];
      const s = await FileStorage.open(path, { readOnly: true, log: (l, m) => logs.push(`${l} ${m}`) });
      try {
        // before the background load starts (it waits for the next turn of the event loop): the index file
        // loses its buckets (in place: the storage's descriptor sees it)
        truncateSync(path + '.index', 1000);
        await assert.rejects(s.load(p64(70_000)), (e: unknown) => e instanceof IndexFileError);
        assert.equal((await s.load(p64(2n ** 40n))).data.toString(), dataOf(2n ** 40n, 0).toString());
        writeFileSync(path + '.index', good);
        assert.equal((await s.load(p64(70_000))).data.toString(), dataOf(70_000, 1).toString());
        assert.equal((await s.load(p64(5))).data.toString(), dataOf(5, 0).toString());
      } finally {
        await s.close();
      }
    });
  });

  it('storages closed while their buckets load leave no descriptor open', async () => {
    await withTempDir(async (dir) => {
      const path = await copyBuilt(dir);
      const fds = (): number => readdirSync('/proc/self/fd').length;
      const before = fds();
      for (let i = 0; i < 10; i++) {
        const s = await FileStorage.open(path, { readOnly: true });
        if (i % 2) await s.load(p64(100_000));
        await s.close();
      }
      // a scan result let go without being loaded is released by dispose()
      const lazy = await openIndexFile(path);
      assert.ok(lazy && !lazy.index.loaded);
      await lazy.index.dispose();
      await assert.rejects(lazy.index.pendingAll()!, IndexFileError);
      assert.equal(fds(), before);
    });
  });

  it('removes the test file', async () => {
    const { rm } = await import('node:fs/promises');
    if (built) await rm(built.dir, { recursive: true, force: true });
  });
});

// (for the type checker: Oid is used in helpers' signatures)
export type { Oid };
