// Data.fs.index (src/storage/filestorage/indexfile.ts) against ZODB: the bytes ZODB writes for the same file,
// ZODB opening ours without rebuilding (and we opening ZODB's), the old one-dict form, and index files that
// must not be used (another file's, damaged, stale in the wrong way).
import assert from 'node:assert/strict';
import { copyFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { PickleError, Pickler, tuple } from '../../../src/pickle/index.js';
import { p64 } from '../../../src/storage/ids.js';
import { FsIndex } from '../../../src/storage/filestorage/fsindex.js';
import {
  decodeIndexFile,
  encodeIndexFile,
  IndexFileError,
  readIndexFile,
  writeIndexFile,
} from '../../../src/storage/filestorage/indexfile.js';
import {
  scanDataPath,
  type OpenScanResult,
  type ScanOptions,
} from '../../../src/storage/filestorage/scan.js';
import { fixturesDir } from '../../helpers/corpus.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import { hex, indexAsMap, PY_BUILD, pyOpen, withTempDir } from './fs-oracle.js';

async function scan(
  path: string,
  opts: ScanOptions = {},
): Promise<OpenScanResult & { logs: Array<[string, string]> }> {
  const logs: Array<[string, string]> = [];
  const r = await scanDataPath(path, { ...opts, log: (l, m) => logs.push([l, m]) });
  return { ...r, logs };
}

async function buildWorkload(oracle: Oracle, path: string): Promise<void> {
  await oracle.run(
    `import sys\nif args['fixtures'] not in sys.path: sys.path.insert(0, args['fixtures'])\n` +
      `import zodb_workload\nzodb_workload.build_workload(args['path'], 1)\nresult = None`,
    undefined,
    { fixtures: fixturesDir, path },
  );
}

interopTest(
  'the index file written here is the one ZODB writes, byte for byte; each reads the other',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const wl = join(dir, 'Data.fs');
      await buildWorkload(oracle, wl);
      const big = join(dir, 'big.fs');
      await oracle.run(PY_BUILD, undefined, { path: big, n: 20000, pack: true });
      // sparse oids too: objects restored under oids in several 6-byte groups and pages
      const sparse = join(dir, 'sparse.fs');
      await oracle.run(
        `
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import p64
fs = FileStorage(args['path'])
oids = [0, 1, 4095, 4096, 65535, 65536, 65537, 2**32 - 1, 2**32, 2**40 + 7, 2**63, 2**64 - 1] + list(range(70000, 72000, 3))
for i in range(0, len(oids), 100):
    t = TransactionMetaData()
    fs.tpc_begin(t)
    for o in oids[i:i + 100]:
        fs.store(p64(o), b'\\0' * 8, b'data %d' % o, '', t)
    fs.tpc_vote(t)
    fs.tpc_finish(t)
fs.close()
result = None
`,
        undefined,
        { path: sparse },
      );

      for (const path of [wl, big, sparse]) {
        const pyBytes = await readFile(path + '.index'); // written by ZODB when it closed the storage
        const fresh = await scanDataPath(path, { useIndexFile: false });
        // the same bytes
        const ours = encodeIndexFile(fresh.index, fresh.pos);
        assert.equal(ours.length, pyBytes.length, path);
        assert.ok(ours.equals(pyBytes), `${path}: the index bytes differ from ZODB's`);
        // ZODB's file decodes to the same index
        const decoded = decodeIndexFile(pyBytes);
        assert.equal(decoded.format, 'stream');
        assert.equal(decoded.pos, fresh.pos);
        assert.deepEqual(indexAsMap(decoded.index.entries()), indexAsMap(fresh.index.entries()));
      }

      // ZODB opens an index file we wrote without scanning. Proof: an entry we changed (one its sanity check
      // does not look at) is in its _index, and read_index started at the saved position.
      for (const path of [wl, big]) {
        const fresh = await scanDataPath(path, { useIndexFile: false });
        const oid = fresh.index.minKey()!; // the root: not in the last transaction's first records
        const tampered = fresh.index.clone();
        tampered.set(oid, 123456);
        await rm(path + '.index');
        await writeIndexFile(path, tampered, fresh.pos);
        assert.deepEqual(await readdir(dir).then((l) => l.filter((f) => f.endsWith('.index_tmp'))), []);
        const py = await pyOpen(oracle, path);
        assert.equal(py.error, null);
        assert.equal(py.usedIndex, 1, `${path}: ZODB did not use our index`);
        assert.deepEqual(py.starts, [fresh.pos]);
        assert.equal(py.index.get(hex(oid)), 123456);
        assert.doesNotMatch(py.log, /Ignoring index/);
        // and we use it the same way
        const r = await scan(path);
        assert.equal(r.usedIndexFile, true);
        assert.equal(r.index.get(oid), 123456);
        assert.equal(r.transactionsScanned, 0);
        assert.equal(hex(r.lastTid), py.ltid);
        // back to the truth
        await writeIndexFile(path, fresh.index, fresh.pos);
        assert.ok((await readFile(path + '.index')).equals(encodeIndexFile(fresh.index, fresh.pos)));
      }

      // we open an index file ZODB wrote without scanning: ZODB saves one with an entry changed
      const path = big;
      const truth = await scanDataPath(path, { useIndexFile: false });
      const oid = truth.index.minKey()!;
      await oracle.run(
        `
from ZODB.FileStorage import FileStorage
fs = FileStorage(args['path'])
fs._index[bytes.fromhex(args['oid'])] = 654321
fs.close()
result = None
`,
        undefined,
        { path, oid: hex(oid) },
      );
      const r = await scan(path);
      assert.equal(r.usedIndexFile, true);
      assert.equal(r.transactionsScanned, 0);
      assert.equal(r.index.get(oid), 654321);
      assert.equal(r.index.size, truth.index.size);
    });
  },
);

interopTest('an index older than the data file: both read on from its position', async (oracle) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'Data.fs');
    await oracle.run(PY_BUILD, undefined, { path, n: 500, pack: false });
    const before = await readFile(path + '.index');
    const oldPos = decodeIndexFile(before).pos;
    // more transactions, then the old index put back
    await oracle.run(
      `
import transaction, ZODB
from ZODB.FileStorage import FileStorage
from persistent.mapping import PersistentMapping
db = ZODB.DB(FileStorage(args['path']))
c = db.open()
for i in range(5):
    c.root()['more%d' % i] = PersistentMapping({'i': i})
    transaction.commit()
c.close()
db.close()
result = None
`,
      undefined,
      { path },
    );
    await writeFile(path + '.index', before);
    const r = await scan(path);
    const py = await pyOpen(oracle, path);
    assert.equal(py.usedIndex, 1);
    assert.deepEqual(py.starts, [oldPos]);
    assert.equal(r.usedIndexFile, true);
    assert.equal(r.indexFilePos, oldPos);
    assert.equal(r.transactionsScanned, 5);
    assert.equal(r.pos, py.pos);
    assert.deepEqual(indexAsMap(r.index.entries()), py.index);
    assert.equal(hex(r.lastTid), py.ltid);
    assert.equal(hex(r.maxOid), py.oid);
  });
});

const PY_LEGACY = `
from ZODB.fsIndex import fsIndex
from ZODB._compat import Pickler, _protocol
info = fsIndex.load(args['path'] + '.index')
index = info['index']
if args['kind'] == 'dict':
    index = dict(index.items())
with open(args['path'] + '.index', 'wb') as f:
    Pickler(f, _protocol).dump({'pos': info['pos'], 'index': index})
result = None
`;

interopTest('the old one-dict index file (a dict, or an fsIndex instance) is read', async (oracle) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'Data.fs');
    await oracle.run(PY_BUILD, undefined, { path, n: 3000, pack: false });
    const truth = await scanDataPath(path, { useIndexFile: false });
    for (const kind of ['dict', 'fsIndex']) {
      await oracle.run(PY_LEGACY, undefined, { path, kind });
      const contents = await readIndexFile(path);
      assert.ok(contents);
      assert.equal(contents.format, 'legacy');
      assert.equal(contents.pos, truth.pos);
      assert.deepEqual(indexAsMap(contents.index.entries()), indexAsMap(truth.index.entries()));
      const r = await scan(path);
      assert.equal(r.usedIndexFile, true, kind);
      assert.equal(r.legacyIndexFile, true);
      assert.equal(r.transactionsScanned, 0);
      const py = await pyOpen(oracle, path);
      assert.equal(py.usedIndex, 1);
      assert.deepEqual(indexAsMap(r.index.entries()), py.index);
      await writeIndexFile(path, truth.index, truth.pos);
    }
  });
});

interopTest(
  'index files that must not be used: ignored (logged), the index rebuilt by a scan, as ZODB does',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await oracle.run(PY_BUILD, undefined, { path, n: 2000, pack: false });
      const other = join(dir, 'other.fs');
      await oracle.run(PY_BUILD, undefined, { path: other, n: 2100, pack: false });
      const good = await readFile(path + '.index');
      const truth = await scanDataPath(path, { useIndexFile: false });
      const cases: Array<[string, Buffer, RegExp]> = [];
      cases.push(['another Data.fs', await readFile(other + '.index'), /Ignoring index/]);
      cases.push(['garbage', Buffer.from('not an index at all'), /loading index/]);
      cases.push(['cut short', good.subarray(0, good.length - 100), /loading index/]);
      cases.push(['no None at the end', good.subarray(0, good.length - 4), /loading index/]);
      cases.push(['position 0', encodeIndexFile(truth.index, 0), /Ignoring index/]);
      cases.push(['position below 100', encodeIndexFile(truth.index, 50), /Ignoring index/]);
      cases.push(['position past the end', encodeIndexFile(truth.index, truth.pos + 1000), /Ignoring index/]);
      cases.push([
        'position inside a transaction',
        encodeIndexFile(truth.index, truth.pos - 3),
        /Ignoring index/,
      ]);
      // the last transaction's records not where the index says
      const wrong = truth.index.clone();
      wrong.set(truth.index.maxKey()!, 4);
      cases.push([
        'an entry of the last transaction wrong',
        encodeIndexFile(wrong, truth.pos),
        /Ignoring index/,
      ]);
      // a bucket whose length is not a multiple of 8 (fsBucket.fromString: "state string of wrong size")
      const odd = Buffer.from(good);
      const at = odd.indexOf(Buffer.from([0x80, 0x03, 0x43, 0x06])); // the first (prefix, bucket) pickle
      assert.ok(at > 0);
      cases.push([
        'a bucket of the wrong size',
        Buffer.concat([
          odd.subarray(0, at),
          Buffer.from('\x80\x03C\x06\x00\x00\x00\x00\x00\x00C\x03abc\x86.', 'latin1'),
          odd.subarray(at),
        ]),
        /loading index/,
      ]);

      for (const [name, bytes, logged] of cases) {
        await writeFile(path + '.index', bytes);
        const r = await scan(path);
        assert.equal(r.usedIndexFile, false, name);
        assert.ok(r.indexFileRejected, name);
        assert.ok(
          r.logs.some(([, m]) => logged.test(m)),
          `${name}: ${JSON.stringify(r.logs)}`,
        );
        assert.equal(r.pos, truth.pos, name);
        assert.deepEqual(indexAsMap(r.index.entries()), indexAsMap(truth.index.entries()), name);
        // ZODB does not use it either (and scans from the start)
        const py = await pyOpen(oracle, path);
        if (name === 'position inside a transaction') {
          // ZODB's _check_sanity reads a header past the end of the file there and its CorruptedDataError
          // escapes: ZODB cannot open the storage until the index file is removed
          assert.match(py.error ?? '', /CorruptedDataError/);
          continue;
        }
        assert.equal(py.error, null, name);
        assert.equal(py.usedIndex, 0, name);
        assert.deepEqual(py.starts, [4], name);
      }
      // decode errors are typed
      assert.throws(
        () => decodeIndexFile(Buffer.from('garbage')),
        (e: unknown) => e instanceof PickleError || e instanceof IndexFileError,
      );
      assert.throws(() => decodeIndexFile(encodeIndexFile(truth.index, 2 ** 49)), IndexFileError);
      const pk = new Pickler(3, { memo: false });
      const zeroPos = Buffer.concat([
        pk.dumps(1000),
        pk.dumps(tuple(Buffer.alloc(6), Buffer.alloc(8))),
        pk.dumps(null),
      ]);
      assert.throws(
        () => decodeIndexFile(zeroPos),
        (e: unknown) => e instanceof IndexFileError && /not 0/.test(e.message),
      );
      const noPair = Buffer.concat([pk.dumps(1000), pk.dumps(tuple(Buffer.alloc(6))), pk.dumps(null)]);
      assert.throws(() => decodeIndexFile(noPair), IndexFileError);
      // useIndexFile: false ignores a good one
      await writeFile(path + '.index', good);
      const noIndex = await scan(path, { useIndexFile: false });
      assert.equal(noIndex.usedIndexFile, false);
      assert.equal(noIndex.indexFileRejected, null);
    });
  },
);

test('writeIndexFile: through Data.fs.index.index_tmp, replacing the old file; readIndexFile of none is null', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'Data.fs');
    assert.equal(await readIndexFile(path), null);
    const ix = new FsIndex();
    for (let i = 0; i < 100000; i += 3) ix.set(p64(i), 4 + i * 10);
    ix.set(p64(2n ** 64n - 1n), 2 ** 48 - 1);
    await writeFile(path + '.index', 'old');
    await writeIndexFile(path, ix, 12345678);
    assert.deepEqual((await readdir(dir)).sort(), ['Data.fs.index']);
    const back = await readIndexFile(path);
    assert.ok(back);
    assert.equal(back.pos, 12345678);
    assert.deepEqual(indexAsMap(back.index.entries()), indexAsMap(ix.entries()));
    // an empty index: the position, then None
    const empty = encodeIndexFile(new FsIndex(), 4);
    assert.deepEqual(empty, Buffer.from('\x80\x03K\x04.\x80\x03N.', 'latin1'));
    assert.equal(decodeIndexFile(empty).index.size, 0);
    // a write that fails leaves no index_tmp behind
    await assert.rejects(writeIndexFile(path, ix, -1));
    assert.deepEqual((await readdir(dir)).sort(), ['Data.fs.index']);
    await copyFile(path + '.index', path + '.index.bak');
  });
});
