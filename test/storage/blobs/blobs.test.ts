// Blob directories (src/storage/blobs/index.ts) against ZODB's FilesystemHelper: the same names for the same
// (oid, tid) in both layouts, the layout chosen as auto_layout_select chooses it, the marker, permissions of
// what commit creates, directories written by Python read by us, and is_blob_record.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  BlobDirectory,
  BlobDirectoryError,
  isBlobRecord,
  oidToPath,
  pathToOid,
} from '../../../src/storage/blobs/index.js';
import { idFromHex, p64 } from '../../../src/storage/ids.js';
import { zodbRecords } from '../../helpers/corpus.js';
import { interopTest, packList, PY_LIST_HELPERS } from '../../helpers/oracle.js';
import { withTempDir } from '../filestorage/fs-oracle.js';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string, rel: string): Promise<void> {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      const mode = ((await lstat(p)).mode & 0o7777).toString(8);
      if (e.isDirectory()) {
        out.push(`${r}/ ${mode}`);
        await walk(p, r);
      } else
        out.push(
          `${r} ${mode} ${createHash('sha1')
            .update(await readFile(p))
            .digest('hex')}`,
        );
    }
  }
  await walk(dir, '');
  return out;
}

// (oid, tid) pairs with every byte position in use, and small ones (leading zeros stripped in lawn names)
const PAIRS: Array<[string, string]> = [
  ['0000000000000000', '0000000000000001'],
  ['0000000000000001', '03d4a0b1c2d3e4f5'],
  ['0000000000000001', '03d4a0b1c2d3e4f6'],
  ['000000000000002a', '0fedcba987654321'],
  ['0102030405060708', '7fffffffffffffff'],
  ['ff00ff00ff00ff00', '0000000000000100'],
  ['00000000000100ff', '0000000001000000'],
];

/** Python writes the pairs with FilesystemHelper + rename_or_copy_blob, as FileStorage._blob_storeblob does. */
const PY_WRITE = `
import os, tempfile
from ZODB.blob import FilesystemHelper, rename_or_copy_blob
h = FilesystemHelper(args['dir'], args.get('layout', 'automatic'))
h.create()
paths = []
for oid_hex, tid_hex in args['pairs']:
    oid, tid = bytes.fromhex(oid_hex), bytes.fromhex(tid_hex)
    fd, name = tempfile.mkstemp(dir=h.temp_dir)
    os.write(fd, ('%s %s' % (oid_hex, tid_hex)).encode())
    os.close(fd)
    h.getPathForOID(oid, create=True)
    target = h.getBlobFilename(oid, tid)
    rename_or_copy_blob(name, target)
    paths.append(target)
listed = [[oid.hex(), path] for oid, path in h.listOIDs()]
result = dict(layout=h.layout_name, paths=paths, listed=listed)
`;

interopTest(
  'the same paths as ZODB, bushy and lawn, and the same tree after the same commits',
  async (oracle) => {
    await withTempDir(async (base) => {
      for (const layout of ['bushy', 'lawn'] as const) {
        const pyDir = join(base, `py-${layout}`);
        const tsDir = join(base, `ts-${layout}`);
        const py = await oracle.json<{ layout: string; paths: string[]; listed: Array<[string, string]> }>(
          PY_WRITE,
          undefined,
          { dir: pyDir, layout, pairs: PAIRS },
        );
        assert.equal(py.layout, layout);
        // our names for Python's files
        const read = await BlobDirectory.open(pyDir);
        assert.equal(read.layout, layout);
        for (const [i, [o, t]] of PAIRS.entries()) {
          assert.equal(read.path(idFromHex(o), idFromHex(t)), py.paths[i]);
          assert.ok(await read.exists(idFromHex(o), idFromHex(t)));
          assert.deepEqual(read.splitBlobFilename(py.paths[i]), { oid: idFromHex(o), tid: idFromHex(t) });
        }
        const listed: Array<[string, string]> = [];
        for await (const { oid, path } of read.listOids()) listed.push([hexOf(oid), path]);
        assert.deepEqual(
          listed.sort(),
          py.listed.map(([o, p]) => [o, p.replace(/\/$/, '')] as [string, string]).sort(),
        );
        assert.deepEqual((await read.revisions(idFromHex('0000000000000001'))).map(hexOf), [
          '03d4a0b1c2d3e4f5',
          '03d4a0b1c2d3e4f6',
        ]);

        // the same commits by us: the same tree (names, contents, permissions, marker)
        const ours = await BlobDirectory.open(tsDir, { layout });
        for (const [o, t] of PAIRS) {
          const tmp = await ours.tempFile();
          assert.equal((await stat(tmp)).mode & 0o777, 0o600);
          await writeFile(tmp, `${o} ${t}`);
          await ours.commit(idFromHex(o), idFromHex(t), tmp);
        }
        assert.deepEqual(await listTree(tsDir), await listTree(pyDir));
      }
    });
  },
);

const PY_LAYOUT = `
import os
from ZODB.blob import FilesystemHelper
out = []
for d in args['dirs']:
    try:
        h = FilesystemHelper(d, args.get('layout', 'automatic'))
        h.create()
        with open(os.path.join(d, '.layout')) as f:
            marker = f.read()
        out.append(dict(layout=h.layout_name, marker=marker))
    except Exception as e:
        out.append(dict(error=type(e).__name__))
result = out
`;

interopTest(
  'the layout is chosen as auto_layout_select chooses it; the marker is checked',
  async (oracle) => {
    await withTempDir(async (base) => {
      // the situations, made twice (one copy for Python, one for us)
      const make = async (root: string): Promise<string[]> => {
        const dirs = ['missing', 'empty', 'hidden', 'used', 'marked-lawn', 'marked-bushy'].map((n) =>
          join(root, n),
        );
        await mkdir(dirs[1], { recursive: true });
        await mkdir(dirs[2]);
        await writeFile(join(dirs[2], '.something'), '');
        await mkdir(join(dirs[3], '0x2a'), { recursive: true });
        await writeFile(join(dirs[3], '0x2a', '0x03.blob'), 'old');
        await mkdir(dirs[4]);
        await writeFile(join(dirs[4], '.layout'), 'lawn\n');
        await mkdir(dirs[5]);
        await writeFile(join(dirs[5], '.layout'), 'bushy');
        return dirs;
      };
      const pyDirs = await make(join(base, 'py'));
      const tsDirs = await make(join(base, 'ts'));
      const py = await oracle.json<Array<{ layout?: string; marker?: string; error?: string }>>(
        PY_LAYOUT,
        undefined,
        { dirs: pyDirs },
      );
      for (const [i, d] of tsDirs.entries()) {
        const ours = await BlobDirectory.open(d);
        assert.equal(ours.layout, py[i].layout, d);
        assert.equal(await readFile(join(d, '.layout'), 'utf8'), py[i].marker, d);
        assert.deepEqual(await listTree(d), await listTree(pyDirs[i]), d);
      }
      // a lawn directory written before markers is read
      const used = await BlobDirectory.open(tsDirs[3]);
      assert.deepEqual((await used.revisions(idFromHex('000000000000002a'))).map(hexOf), [
        '0000000000000003',
      ]);

      // asking for a layout the marker contradicts: ZODB's ValueError
      const pyBad = await oracle.json<Array<{ error?: string }>>(PY_LAYOUT, undefined, {
        dirs: [pyDirs[4]],
        layout: 'bushy',
      });
      assert.equal(pyBad[0].error, 'ValueError');
      await assert.rejects(BlobDirectory.open(tsDirs[4], { layout: 'bushy' }), BlobDirectoryError);
      await writeFile(join(tsDirs[5], '.layout'), 'tree');
      await assert.rejects(BlobDirectory.open(tsDirs[5]), BlobDirectoryError);
    });
  },
);

interopTest('a lawn directory of a FileStorage made by Python is read', async (oracle) => {
  await withTempDir(async (base) => {
    const PY_FS = `
import os, transaction, ZODB
from ZODB.FileStorage import FileStorage
from ZODB.blob import Blob, FilesystemHelper
FileStorage(args['path']).close()  # a FileStorage created with a blob_dir removes that directory first
FilesystemHelper(args['blobs'], 'lawn').create()
db = ZODB.DB(FileStorage(args['path'], blob_dir=args['blobs']))
conn = db.open()
root = conn.root()
out = []
for i in range(3):
    b = root['b%d' % i] = Blob(b'blob %d' % i)
    transaction.commit()
    with b.open('w') as f:
        f.write(b'again %d' % i)
    transaction.commit()
for i in range(3):
    b = root['b%d' % i]
    b._p_activate()
    out.append([b._p_oid.hex(), b._p_serial.hex(), db.storage.loadBlob(b._p_oid, b._p_serial)])
db.close()
result = out
`;
    const blobsDir = join(base, 'blobs');
    const py = await oracle.json<Array<[string, string, string]>>(PY_FS, undefined, {
      path: join(base, 'Data.fs'),
      blobs: blobsDir,
    });
    const bd = await BlobDirectory.open(blobsDir);
    assert.equal(bd.layout, 'lawn');
    for (const [i, [o, t, file]] of py.entries()) {
      assert.equal(bd.path(idFromHex(o), idFromHex(t)), file);
      assert.equal(await readFile(file, 'utf8'), `again ${i}`);
      const revs = await bd.revisions(idFromHex(o));
      assert.equal(revs.length, 2);
      assert.equal(hexOf(revs[1]), t);
      assert.ok(
        !bd
          .oidPath(idFromHex(o))
          .slice(blobsDir.length + 1)
          .includes('/'),
      );
    }
  });
});

interopTest('oid paths parse as path_to_oid parses them; is_blob_record agrees', async (oracle) => {
  const PY_PATHS = `
from ZODB.blob import BushyLayout, LawnLayout
out = []
for layout, path in args['cases']:
    l = BushyLayout() if layout == 'bushy' else LawnLayout()
    try:
        out.append(l.path_to_oid(path).hex())
    except ValueError:
        out.append(None)
result = out
`;
  const cases: Array<['bushy' | 'lawn', string]> = [];
  for (const p of [
    '0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x2a',
    '0x01/0x02/0x03/0x04/0x05/0x06/0x07/0x08',
    '0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x2',
    '0x00/0x00/0x00/0x00/0x00/0x00/0x2a',
    '0x00/0x00/0x00/0x00/0x00/0x00/0x00/0xAA',
    'tmp',
    '',
  ]) {
    cases.push(['bushy', p]);
  }
  for (const p of [
    '0x2a',
    '0x00',
    '0x',
    '2a',
    '0x0102030405060708',
    '0xff0102030405060708',
    '0x2',
    'tmp',
    '0x2a/x',
    '0X2A',
  ]) {
    cases.push(['lawn', p]);
  }
  const py = await oracle.json<Array<string | null>>(PY_PATHS, undefined, { cases });
  for (const [i, [layout, path]] of cases.entries()) {
    const ours = pathToOid(layout, path);
    // an oid has 8 bytes: Python's longer results name nothing
    const expected = py[i] !== null && py[i].length === 16 ? py[i] : null;
    assert.equal(ours && hexOf(ours), expected, `${layout} ${JSON.stringify(path)}`);
    if (ours && py[i] !== null && layout === 'bushy') assert.equal(oidToPath(layout, ours), path);
  }

  const corpus = await zodbRecords(oracle);
  const PY_ISBLOB = `${PY_LIST_HELPERS}
from ZODB.blob import is_blob_record
result = [bool(is_blob_record(r)) for r in unpack_list(input)]
`;
  const extra = [
    Buffer.from('not a pickle ZODB.blob'),
    Buffer.from('\x80\x03cZODB.blob\nBlob\nq\x00.', 'latin1'),
  ];
  const records = [...corpus.records, ...extra];
  const pyIs = await oracle.json<boolean[]>(PY_ISBLOB, packList(records));
  const ours = records.map((r) => isBlobRecord(r));
  assert.deepEqual(ours, pyIs);
  assert.ok(pyIs.filter(Boolean).length >= 2);
});

test('tmp is emptied on open; remove, removeOid and pruning of emptied directories', async () => {
  await withTempDir(async (base) => {
    const dir = join(base, 'blobs');
    const bd = await BlobDirectory.open(dir);
    assert.equal(await readFile(join(dir, '.layout'), 'utf8'), 'bushy');
    const left = await bd.tempFile();
    await mkdir(join(bd.tmpDir, 'sub'));
    const again = await BlobDirectory.open(dir);
    assert.deepEqual(await readdir(again.tmpDir), []);
    assert.equal(await BlobDirectory.open(dir, { cleanTmp: false }).then((b) => b.tmpDir), again.tmpDir);
    void left;

    const oid = p64(0x0102n);
    for (const t of [3n, 1n, 2n]) {
      const tmp = await bd.tempFile();
      await writeFile(tmp, `rev ${t}`);
      await bd.commit(oid, p64(t), tmp);
    }
    assert.deepEqual(
      (await bd.revisions(oid)).map((t) => Number(BigInt('0x' + hexOf(t)))),
      [1, 2, 3],
    );
    assert.equal((await stat(bd.path(oid, p64(1n)))).mode & 0o222, 0, 'committed blobs are read-only');
    // commit replaces a revision's file, as os.rename does
    const tmp = await bd.tempFile();
    await writeFile(tmp, 'replaced');
    await bd.commit(oid, p64(1n), tmp);
    assert.equal(await readFile(bd.path(oid, p64(1n)), 'utf8'), 'replaced');
    const copy = await bd.copyToTemp(oid, p64(2n));
    assert.equal(await readFile(copy, 'utf8'), 'rev 2');

    assert.equal(await bd.remove(oid, p64(1n)), true);
    assert.equal(await bd.remove(oid, p64(1n)), false);
    assert.equal(await bd.remove(oid, p64(2n), { prune: true }), true);
    assert.equal(await bd.remove(oid, p64(3n), { prune: true }), true);
    // the oid's directory and its empty parents are gone, the blob directory stays
    assert.deepEqual((await readdir(dir)).sort(), ['.layout', 'tmp']);

    const other = p64(7n);
    const t2 = await bd.tempFile();
    await writeFile(t2, 'x');
    await bd.commit(other, p64(9n), t2);
    assert.equal(await bd.removeOid(other, { prune: true }), true);
    assert.equal(await bd.removeOid(other), false);
    assert.deepEqual((await readdir(dir)).sort(), ['.layout', 'tmp']);
  });
});
