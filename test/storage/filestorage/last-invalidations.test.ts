// lastInvalidations (what the ZEO server seeds its invalidation queue from): ours is ZODB's
// FileStorage.lastInvalidations newest first (ZODB lists them oldest first; its StorageServer reverses the
// list), read backwards from the end of the file; oids in file order, not deduplicated. Checked against
// Python's on a file Python builds (the corpus workload: undos, packs, deletions, plus a transaction that
// stores one oid twice) and on one we build; MemoryStorage answers as FileStorage does.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { it } from 'node:test';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { idHex, p64, z64, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import { MemoryStorage } from '../../../src/storage/memory/memory-storage.js';
import { fixturesDir } from '../../helpers/corpus.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import { withTempDir } from './fs-oracle.js';

const COUNTS = [0, 1, 2, 3, 7, 50, 100_000];

const PY_LAST = `
from ZODB.FileStorage import FileStorage
fs = FileStorage(args['path'], read_only=True)
try:
    result = {}
    for count in args['counts']:
        result[str(count)] = [[tid.hex(), [oid.hex() for oid in oids]] for tid, oids in fs.lastInvalidations(count)]
finally:
    fs.close()
`;

type Entries = Array<[string, string[]]>;

async function ours(s: Storage, count: number): Promise<Entries> {
  return (await s.lastInvalidations(count)).map((e) => [idHex(e.tid), e.oids.map(idHex)]);
}

async function compareWithPython(oracle: Oracle, path: string): Promise<number> {
  const py = await oracle.json<Record<string, Entries>>(PY_LAST, undefined, { path, counts: COUNTS });
  const s = await FileStorage.open(path, { readOnly: true });
  try {
    for (const count of COUNTS) {
      // Python's, oldest first, reversed
      assert.deepEqual(await ours(s, count), [...py[String(count)]].reverse(), `count ${count}`);
    }
  } finally {
    await s.close();
  }
  return py[String(COUNTS[COUNTS.length - 1])].length;
}

interopTest(
  'newest first, otherwise Python FileStorage.lastInvalidations on a file Python wrote',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await oracle.run(
        `import sys\nif args['fixtures'] not in sys.path: sys.path.insert(0, args['fixtures'])\n` +
          `import zodb_workload\nzodb_workload.build_workload(args['path'], 1)\n` +
          // a transaction that stores one oid twice (two records), then an empty one
          `from ZODB.FileStorage import FileStorage\nfrom ZODB.Connection import TransactionMetaData\n` +
          `from ZODB.utils import p64\n` +
          `fs = FileStorage(args['path'])\n` +
          `for stores in ([p64(9000001), p64(9000002), p64(9000001)], []):\n` +
          `    t = TransactionMetaData(b'', b'twice')\n    fs.tpc_begin(t)\n` +
          `    for oid in stores: fs.store(oid, b'\\0' * 8, b'x', '', t)\n` +
          `    fs.tpc_vote(t)\n    fs.tpc_finish(t)\n` +
          `fs.close()\nresult = None`,
        undefined,
        { fixtures: fixturesDir, path },
      );
      const n = await compareWithPython(oracle, path);
      assert.ok(n > 7, `${n} transactions`);
      const s = await FileStorage.open(path, { readOnly: true });
      try {
        const [empty, twice] = await ours(s, 2);
        assert.deepEqual(empty[1], []);
        assert.deepEqual(twice[1], [idHex(p64(9000001)), idHex(p64(9000002)), idHex(p64(9000001))]);
      } finally {
        await s.close();
      }
    });
  },
);

interopTest(
  'on a file we wrote, Python agrees; MemoryStorage answers as FileStorage does',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      const clock = (): (() => number) => {
        let t = 1.7e12;
        return () => (t += 1000);
      };
      const fs = await FileStorage.open(path, { fsync: false, clock: clock() });
      const mem = new MemoryStorage({ clock: clock() });
      try {
        for (const s of [fs, mem] as Storage[]) {
          const serials = new Map<number, Tid>();
          for (let k = 0; k < 12; k++) {
            const t = new TransactionMetaData(Buffer.from(''), Buffer.from(`txn ${k}`));
            await s.tpcBegin(t);
            const oids = [k % 5, (k * 3) % 7, 20 + k].filter((v, i, a) => a.indexOf(v) === i);
            for (const o of oids)
              await s.store(p64(o), serials.get(o) ?? z64, Buffer.from(`k ${k} o ${o}`), t);
            await s.tpcVote(t);
            const tid = await s.tpcFinish(t);
            for (const o of oids) serials.set(o, tid);
          }
        }
        for (const count of COUNTS)
          assert.deepEqual(await ours(fs, count), await ours(mem, count), `${count}`);
        // a transaction being committed is not listed
        const t = new TransactionMetaData();
        await fs.tpcBegin(t);
        await fs.store(p64(99), z64, Buffer.from('pending'), t);
        await fs.tpcVote(t);
        assert.deepEqual(await ours(fs, 1), await ours(mem, 1));
        await fs.tpcAbort(t);
      } finally {
        await fs.close();
        await mem.close();
      }
      assert.equal(await compareWithPython(oracle, path), 12);
    });
  },
);

it('an empty storage has none', async () => {
  await withTempDir(async (dir) => {
    const s = await FileStorage.open(join(dir, 'Data.fs'), { fsync: false });
    try {
      assert.deepEqual(await ours(s, 10), []);
    } finally {
      await s.close();
    }
  });
});
