// FileStorage pack (src/storage/filestorage/pack.ts) against ZODB's: the same file packed by Python's
// FileStorage.pack and by packFileStorage, at every transaction boundary of a varied history, with and without
// GC, with its blob directory, must give byte-identical Data.fs, Data.fs.index and blob directories (and the
// same refusals). Then: Python's fstest and fsrefs on our packed files, GC through BTrees, weak and cross-database
// references, transactions committed during the pack, and the errors.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { referencesf } from '../../../src/pickle/index.js';
import { BlobDirectory } from '../../../src/storage/blobs/index.js';
import { CommitLock } from '../../../src/storage/commit-lock.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { idFromHex, p64, u64 } from '../../../src/storage/ids.js';
import { decodeTransaction } from '../../../src/storage/filestorage/format.js';
import type { FsIndex } from '../../../src/storage/filestorage/fsindex.js';
import { readIndexFile } from '../../../src/storage/filestorage/indexfile.js';
import {
  FileStorageError,
  PackError,
  packFileStorage,
  type PackedFile,
  type PackOptions,
  type PackResult,
  type PackTarget,
} from '../../../src/storage/filestorage/pack.js';
import { scanDataPath, type LogLevel } from '../../../src/storage/filestorage/scan.js';
import { fixturesDir } from '../../helpers/corpus.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import { withTempDir } from './fs-oracle.js';

// ---------------------------------------------------------------------------------------------------------
// a stand-in for the engine

class TestTarget implements PackTarget {
  readonly lock = new CommitLock();
  index: FsIndex | null = null;
  swaps = 0;
  /** run, one per acquisition, before the packer's code under the lock: "commits" made meanwhile */
  beforeLocked: Array<() => Promise<void>> = [];
  lockHeldDuringSwap = false;
  lockCalls = 0;

  constructor(
    readonly path: string,
    public end: number,
  ) {}

  static async open(path: string): Promise<TestTarget> {
    return new TestTarget(path, (await scanDataPath(path, { useIndexFile: false })).pos);
  }

  committedEnd(): number {
    return this.end;
  }

  async withCommitLock<T>(fn: () => Promise<T>): Promise<T> {
    this.lockCalls++;
    const hook = this.beforeLocked.shift();
    if (hook) await this.lock.runExclusive(hook);
    return this.lock.runExclusive(fn);
  }

  async swap(packed: PackedFile): Promise<void> {
    this.lockHeldDuringSwap = this.lock.locked;
    await packed.rename();
    this.index = packed.index;
    this.end = packed.end;
    this.swaps++;
  }

  /** Appends committed transactions (bytes of a longer file), as a commit would. */
  async append(bytes: Uint8Array): Promise<void> {
    const fh = await open(this.path, 'r+');
    try {
      await fh.write(bytes, 0, bytes.length, this.end);
    } finally {
      await fh.close();
    }
    this.end += bytes.length;
  }
}

type Outcome = 'packed' | 'none' | `error: ${string}`;

async function ourPack(
  dir: string,
  stop: Uint8Array,
  opts: Partial<PackOptions> & { hooks?: (t: TestTarget) => Array<() => Promise<void>> } = {},
): Promise<{ outcome: Outcome; result: PackResult | null; logs: string[]; target: TestTarget }> {
  const target = await TestTarget.open(join(dir, 'Data.fs'));
  if (opts.hooks) target.beforeLocked = opts.hooks(target);
  const logs: string[] = [];
  const blobs =
    opts.blobs ??
    ((await hasDir(join(dir, 'blobs'))) ? await BlobDirectory.open(join(dir, 'blobs')) : undefined);
  try {
    const result = await packFileStorage(target, stop, referencesf, {
      gc: opts.gc ?? true,
      keepOld: opts.keepOld,
      blobs,
      log: (l: LogLevel, m: string) => logs.push(`${l} ${m}`),
    });
    return { outcome: result ? 'packed' : 'none', result, logs, target };
  } catch (e) {
    return { outcome: `error: ${(e as Error).name}: ${(e as Error).message}`, result: null, logs, target };
  }
}

async function hasDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Every entry under `dir`: relative path, kind, mode, and a hash of file contents. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string, rel: string): Promise<void> {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (rel === '' && e.name === '.removed') continue; // ZODB leaves it behind when a pack frees nothing
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      const st = await lstat(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (e.isDirectory()) {
        out.push(`${r}/ ${mode}`);
        await walk(p, r);
      } else {
        out.push(
          `${r} ${mode} ${createHash('sha1')
            .update(await readFile(p))
            .digest('hex')}`,
        );
      }
    }
  }
  if (await hasDir(dir)) await walk(dir, '');
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Python's side

const PY_WORKLOAD = `
import os, sys
if args['fixtures'] not in sys.path:
    sys.path.insert(0, args['fixtures'])
import zodb_workload
zodb_workload.build_workload(args['path'], 1)
result = None
`;

const PY_PACK = `
import io, logging, os, sys, time, types
from ZODB.FileStorage import FileStorage
import ZODB.FileStorage.fspack as fspack
from ZODB.serialize import referencesf
FSmod = sys.modules['ZODB.FileStorage.FileStorage']
out = []
for job in args['jobs']:
    d = job['dir']
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
    zlog = logging.getLogger('ZODB')
    zlog.addHandler(handler)
    old_level = zlog.level
    zlog.setLevel(logging.INFO)
    stop = bytes.fromhex(job['stop'])
    blob_dir = os.path.join(d, 'blobs') if os.path.isdir(os.path.join(d, 'blobs')) else None
    fs = FileStorage(os.path.join(d, 'Data.fs'), blob_dir=blob_dir, pack_gc=job['gc'],
                     pack_keep_old=job.get('keepOld', True))
    packed = []
    orig_packer = fs.packer
    def spy(storage, r, stop_, gc):
        res = orig_packer(storage, r, stop_, gc)
        packed.append(res is not None)
        return res
    fs.packer = spy
    tail = bytes.fromhex(job.get('tail', ''))
    orig_ctp = fspack.FileStoragePacker.copyToPacktime
    def ctp(self):
        r = orig_ctp(self)
        if tail:  # transactions committed while the pack ran
            with open(os.path.join(d, 'Data.fs'), 'ab') as f:
                f.write(tail)
        return r
    fspack.FileStoragePacker.copyToPacktime = ctp
    orig_ts = FSmod.TimeStamp
    FSmod.TimeStamp = lambda *a: types.SimpleNamespace(raw=lambda: stop)
    try:
        fs.pack(time.time(), referencesf)
        outcome = 'packed' if packed and packed[0] else 'none'
    except Exception as e:
        outcome = 'error: %s: %s' % (type(e).__name__, e)
    finally:
        FSmod.TimeStamp = orig_ts
        fspack.FileStoragePacker.copyToPacktime = orig_ctp
        fs.close()
        zlog.removeHandler(handler)
        zlog.setLevel(old_level)
    out.append(dict(outcome=outcome, log=stream.getvalue()))
result = out
`;

interface PackJob {
  dir: string;
  stop: string;
  gc: boolean;
  keepOld?: boolean;
  tail?: string;
}

async function pyPack(oracle: Oracle, jobs: PackJob[]): Promise<Array<{ outcome: string; log: string }>> {
  return oracle.json(PY_PACK, undefined, { jobs });
}

/** fstest.check and fsrefs.main on a file; '' when both are happy. */
const PY_CHECK = `
import contextlib, io
from ZODB.scripts import fstest, fsrefs
problems = []
for path in args['paths']:
    try:
        fstest.check(path)
    except Exception as e:
        problems.append('%s: fstest: %s' % (path, e))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fsrefs.main(path)
    if buf.getvalue():
        problems.append('%s: fsrefs: %s' % (path, buf.getvalue()))
result = '\\n'.join(problems)
`;

/** What Python's iterator reads from a file: one line per transaction and record. */
const PY_ITERATE = `
import hashlib
from ZODB.FileStorage import FileStorage
out = []
for path in args['paths']:
    fs = FileStorage(path, read_only=True)
    lines = []
    try:
        for t in fs.iterator():
            lines.append('T %s %r %r %r' % (t.tid.hex(), t.status, t.user, t.description))
            for r in t:
                lines.append('R %s %s %s %s' % (r.oid.hex(), r.tid.hex(),
                             None if r.data is None else hashlib.sha1(r.data).hexdigest(),
                             None if r.data_txn is None else r.data_txn.hex()))
        oids = sorted(o.hex() for o, _ in fs._index.iteritems())
    finally:
        fs.close()
    out.append(dict(lines=lines, oids=oids))
result = out
`;

// ---------------------------------------------------------------------------------------------------------
// the workload (test/fixtures/python/zodb_workload.py), built once

let workDir: string | null = null;
let workload: Promise<string> | null = null;
after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

function buildWorkload(oracle: Oracle): Promise<string> {
  workload ??= (async () => {
    workDir = await mkdtemp(join(tmpdir(), 'zeots-pack-'));
    await oracle.json(PY_WORKLOAD, undefined, { fixtures: fixturesDir, path: join(workDir, 'Data.fs') });
    return workDir;
  })();
  return workload;
}

interface Txn {
  tid: Uint8Array;
  pos: number;
  end: number;
}

function transactions(buf: Buffer): Txn[] {
  const out: Txn[] = [];
  let p = 4;
  while (p < buf.length) {
    const d = decodeTransaction(buf, p, 'walk', p);
    out.push({ tid: d.tid, pos: p, end: p + d.tl + 8 });
    p += d.tl + 8;
  }
  return out;
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const tidPlus = (t: Uint8Array, n: number): Uint8Array => p64(u64(t) + BigInt(n));

/** Copies `src` (and its blob directory) into two fresh dirs under `base`: one for Python, one for us. */
async function twoCopies(
  base: string,
  name: string,
  src: string,
  blobs: string | null,
): Promise<[string, string]> {
  const dirs: [string, string] = [join(base, `${name}-py`), join(base, `${name}-ts`)];
  for (const d of dirs) {
    await mkdir(d, { recursive: true });
    await cp(src, join(d, 'Data.fs'));
    if (blobs) await cp(blobs, join(d, 'blobs'), { recursive: true });
  }
  return dirs;
}

async function assertSameResult(pyDir: string, tsDir: string, what: string, packed: boolean): Promise<void> {
  const [a, b] = await Promise.all([readFile(join(pyDir, 'Data.fs')), readFile(join(tsDir, 'Data.fs'))]);
  assert.ok(a.equals(b), `${what}: Data.fs differs (python ${a.length} bytes, ours ${b.length})`);
  assert.equal(
    await exists(join(tsDir, 'Data.fs.old')),
    await exists(join(pyDir, 'Data.fs.old')),
    `${what}: .old`,
  );
  assert.equal(await exists(join(tsDir, 'Data.fs.pack')), false, `${what}: Data.fs.pack left behind`);
  if (packed) {
    const [ia, ib] = await Promise.all([
      readFile(join(pyDir, 'Data.fs.index')),
      readFile(join(tsDir, 'Data.fs.index')),
    ]);
    assert.ok(ia.equals(ib), `${what}: Data.fs.index differs`);
    const [oa, ob] = await Promise.all([
      readFile(join(pyDir, 'Data.fs.old')),
      readFile(join(tsDir, 'Data.fs.old')),
    ]);
    assert.ok(oa.equals(ob), `${what}: Data.fs.old differs`);
  }
  for (const sub of ['blobs', 'blobs.old']) {
    assert.deepEqual(await listTree(join(tsDir, sub)), await listTree(join(pyDir, sub)), `${what}: ${sub}`);
  }
}

// ---------------------------------------------------------------------------------------------------------

interopTest('packs byte for byte as ZODB: every pack time, GC on and off, with blobs', async (oracle) => {
  const wd = await buildWorkload(oracle);
  await withTempDir(async (base) => {
    const inputs: Array<{ name: string; file: string; blobs: string }> = [
      // the history before the workload's own pack (undo, deletes, blobs with two revisions, cross-db refs)
      { name: 'unpacked', file: join(wd, 'Data.fs.old'), blobs: join(wd, 'Data.fs.blobs.old') },
      // after it: packed transactions ('p'), redundant packs
      { name: 'packed', file: join(wd, 'Data.fs'), blobs: join(wd, 'Data.fs.blobs') },
    ];
    const cases: Array<{ label: string; py: string; ts: string; stop: Uint8Array; gc: boolean }> = [];
    for (const input of inputs) {
      const txns = transactions(await readFile(input.file));
      const stops = [tidPlus(txns[0].tid, -1), ...txns.map((t) => t.tid), tidPlus(txns.at(-1)!.tid, 1000)];
      for (const gc of [true, false]) {
        for (const [i, stop] of stops.entries()) {
          const label = `${input.name} gc=${gc} stop#${i}`;
          const [py, ts] = await twoCopies(base, label.replace(/[ =#]/g, '_'), input.file, input.blobs);
          cases.push({ label, py, ts, stop, gc });
        }
      }
    }
    const pyOut = await pyPack(
      oracle,
      cases.map((c) => ({ dir: c.py, stop: hexOf(c.stop), gc: c.gc })),
    );
    const tally = { packed: 0, none: 0, error: 0, blobRemovals: 0 };
    for (const [i, c] of cases.entries()) {
      const ours = await ourPack(c.ts, c.stop, { gc: c.gc });
      const py = pyOut[i];
      const kind = (o: string): string => (o.startsWith('error') ? 'error' : o);
      assert.equal(
        kind(ours.outcome),
        kind(py.outcome),
        `${c.label}: ours ${ours.outcome}, python ${py.outcome}`,
      );
      tally[kind(ours.outcome) as 'packed' | 'none' | 'error']++;
      tally.blobRemovals += ours.result?.blobsRemoved ?? 0;
      if (py.log.includes('already been packed')) {
        assert.ok(
          ours.logs.some((l) => l.includes('already been packed')),
          `${c.label}: redundant pack not logged`,
        );
      }
      await assertSameResult(c.py, c.ts, c.label, ours.outcome === 'packed');
      await rm(c.py, { recursive: true, force: true });
      if (ours.outcome !== 'packed') await rm(c.ts, { recursive: true, force: true });
    }
    // the matrix covers all three outcomes (ZODB refuses a pack without GC whose undo points at a dropped revision)
    assert.ok(
      tally.packed > 20 && tally.none > 2 && tally.error >= 1 && tally.blobRemovals > 5,
      JSON.stringify(tally),
    );

    // Python reads what we wrote: fstest and fsrefs find nothing, its iterator sees the same records
    const ourFiles: string[] = [];
    for (const c of cases) if (await exists(join(c.ts, 'Data.fs.old'))) ourFiles.push(join(c.ts, 'Data.fs'));
    assert.equal(await oracle.json(PY_CHECK, undefined, { paths: ourFiles }), '');
  });
});

interopTest("Python's iterator reads our packed file as its own", async (oracle) => {
  const wd = await buildWorkload(oracle);
  await withTempDir(async (base) => {
    const txns = transactions(await readFile(join(wd, 'Data.fs.old')));
    const stop = txns[13].tid; // 'overwrites': GC'd garbage, dropped revisions, an undo and deletes after
    const [py, ts] = await twoCopies(base, 'iter', join(wd, 'Data.fs.old'), null);
    const [pyRes] = await pyPack(oracle, [{ dir: py, stop: hexOf(stop), gc: true }]);
    assert.equal(pyRes.outcome, 'packed');
    const ours = await ourPack(ts, stop, { gc: true });
    assert.equal(ours.outcome, 'packed');
    const [a, b] = await oracle.json<Array<{ lines: string[]; oids: string[] }>>(PY_ITERATE, undefined, {
      paths: [join(py, 'Data.fs'), join(ts, 'Data.fs')],
    });
    assert.deepEqual(b.lines, a.lines);
    assert.deepEqual(b.oids, a.oids);
    assert.ok(b.lines.some((l) => l.startsWith('T ') && l.includes("'p'")));
    // our in-memory index is the one written to Data.fs.index, and what Python's index holds
    const saved = await readIndexFile(join(ts, 'Data.fs'));
    assert.equal(saved!.pos, ours.target.end);
    assert.deepEqual(
      [...ours.target.index!.itemsFrom(null)].map(([o]) => hexOf(o)),
      a.oids,
    );
    assert.ok(ours.target.lockHeldDuringSwap, 'the swap runs under the commit lock');
  });
});

// ---------------------------------------------------------------------------------------------------------
// GC through BTrees, weak references and cross-database references

const PY_GC_DB = `
import time, transaction, ZODB
from ZODB.FileStorage import FileStorage
from persistent.mapping import PersistentMapping
from persistent.wref import WeakRef
from BTrees.OOBTree import OOBTree
from ZODB.blob import Blob
d = args['dir']
databases = {}
db = ZODB.DB(FileStorage(d + '/Data.fs', blob_dir=d + '/blobs'), databases=databases, database_name='main')
db2 = ZODB.DB(FileStorage(d + '/Other.fs'), databases=databases, database_name='other')
conn = db.open()
root = conn.root()
conn2 = conn.get_connection('other')
tree = root['tree'] = OOBTree()
for i in range(2000):
    tree['k%05d' % i] = PersistentMapping({'i': i})
weak_only = PersistentMapping({'weak': 'only'})
conn.add(weak_only)
root['weak'] = WeakRef(weak_only)
conn2.root()['there'] = PersistentMapping({'x': 1})
transaction.commit()
root['xdb'] = conn2.root()['there']
garbage = root['garbage'] = PersistentMapping({'child': PersistentMapping(), 'blob': Blob(b'garbage blob')})
kept = root['blob'] = Blob(b'first revision')
transaction.commit()
with kept.open('w') as f:
    f.write(b'second revision')
transaction.commit()
oids = dict(tree=tree._p_oid.hex(), weak_only=weak_only._p_oid.hex(), garbage=garbage._p_oid.hex(),
            garbage_blob=garbage['blob']._p_oid.hex(), kept_blob=kept._p_oid.hex(),
            garbage_child=garbage['child']._p_oid.hex(), xdb_target=conn2.root()['there']._p_oid.hex(),
            buckets=[], values=[])
b = tree._firstbucket
while b is not None:
    oids['buckets'].append(b._p_oid.hex())
    b = b._next
oids['values'] = [v._p_oid.hex() for v in tree.values()]
del root['garbage']
transaction.commit()
time.sleep(0.01)
conn.close()
db.close(); db2.close()
result = oids
`;

interopTest(
  'GC keeps what the root reaches through BTrees, drops weak-only and unlinked objects',
  async (oracle) => {
    await withTempDir(async (base) => {
      const src = join(base, 'src');
      await mkdir(src);
      const oids = await oracle.json<{
        tree: string;
        weak_only: string;
        garbage: string;
        garbage_child: string;
        garbage_blob: string;
        kept_blob: string;
        xdb_target: string;
        buckets: string[];
        values: string[];
      }>(PY_GC_DB, undefined, { dir: src });
      const txns = transactions(await readFile(join(src, 'Data.fs')));
      const stop = txns.at(-1)!.tid;
      const [py, ts] = await twoCopies(base, 'gc', join(src, 'Data.fs'), join(src, 'blobs'));
      const [pyRes] = await pyPack(oracle, [{ dir: py, stop: hexOf(stop), gc: true }]);
      const ours = await ourPack(ts, stop, { gc: true });
      assert.equal(pyRes.outcome, 'packed');
      assert.equal(ours.outcome, 'packed');
      await assertSameResult(py, ts, 'gc', true);
      const idx = ours.target.index!;
      const has = (h: string): boolean => idx.has(idFromHex(h));
      assert.ok(
        has(oids.tree) && oids.buckets.length > 5 && oids.buckets.every(has) && oids.values.every(has),
      );
      assert.ok(!has(oids.weak_only), 'an object reached only through a weak reference is collected');
      assert.ok(!has(oids.garbage) && !has(oids.garbage_child), 'unlinked objects are collected');
      assert.ok(!has(oids.garbage_blob) && has(oids.kept_blob));
      // the cross-database reference names an oid of the other database: not followed here
      assert.equal(idx.size, 3 + oids.buckets.length + oids.values.length);
      // blobs: the collected blob's directory and the kept blob's first revision went to blobs.old
      const blobs = await BlobDirectory.open(join(ts, 'blobs'));
      assert.equal((await blobs.revisions(idFromHex(oids.garbage_blob))).length, 0);
      assert.equal((await blobs.revisions(idFromHex(oids.kept_blob))).length, 1);
      assert.equal(ours.result!.blobsRemoved, 2);
      const old = await BlobDirectory.open(join(ts, 'blobs.old'), { cleanTmp: false });
      assert.equal((await old.revisions(idFromHex(oids.garbage_blob))).length, 1);
      assert.equal((await old.revisions(idFromHex(oids.kept_blob))).length, 2);

      // without GC every object current at the pack time stays
      const [py2, ts2] = await twoCopies(base, 'nogc', join(src, 'Data.fs'), join(src, 'blobs'));
      const [pyRes2] = await pyPack(oracle, [{ dir: py2, stop: hexOf(stop), gc: false }]);
      const ours2 = await ourPack(ts2, stop, { gc: false });
      assert.equal(pyRes2.outcome, 'packed');
      assert.equal(ours2.outcome, 'packed');
      await assertSameResult(py2, ts2, 'nogc', true);
      const idx2 = ours2.target.index!;
      for (const o of [oids.weak_only, oids.garbage, oids.garbage_child, oids.garbage_blob]) {
        assert.ok(idx2.has(idFromHex(o)));
      }
    });
  },
);

// ---------------------------------------------------------------------------------------------------------
// commits during the pack

interopTest(
  'transactions committed during the pack are kept (and their back pointers re-aimed)',
  async (oracle) => {
    const wd = await buildWorkload(oracle);
    await withTempDir(async (base) => {
      const full = await readFile(join(wd, 'Data.fs.old'));
      const txns = transactions(full);
      // the last four ('deletes', 'delete temp', 'to be undone', 'undo': back pointers) arrive during the pack
      const cut = txns.at(-5)!.end;
      const prefix = join(base, 'prefix.fs');
      await writeFile(prefix, full.subarray(0, cut));
      const stop = txns[13].tid; // 'overwrites'
      const tail = full.subarray(cut);
      const [py, ts] = await twoCopies(base, 'concurrent', prefix, null);
      const [pyRes] = await pyPack(oracle, [
        { dir: py, stop: hexOf(stop), gc: true, tail: tail.toString('hex') },
      ]);
      assert.equal(pyRes.outcome, 'packed');
      // ours: two commits while GC and the copy up to the pack time ran, two more while the rest was copied
      const mid = txns.at(-3)!.end - cut;
      const ours = await ourPack(ts, stop, {
        gc: true,
        hooks: (t) => [() => t.append(tail.subarray(0, mid)), () => t.append(tail.subarray(mid))],
      });
      assert.equal(ours.outcome, 'packed');
      assert.equal(ours.target.beforeLocked.length, 0, 'both commits happened');
      // the lock was taken three times: twice it showed new transactions (copied after releasing it), then the swap
      assert.equal(ours.target.lockCalls, 3);
      await assertSameResult(py, ts, 'concurrent', true);
      // the concurrent transactions are there, after the packed ones, with their tids
      const packedTxns = transactions(await readFile(join(ts, 'Data.fs')));
      assert.deepEqual(
        packedTxns.slice(-4).map((t) => hexOf(t.tid)),
        txns.slice(-4).map((t) => hexOf(t.tid)),
      );
      assert.equal(await oracle.json(PY_CHECK, undefined, { paths: [join(ts, 'Data.fs')] }), '');
    });
  },
);

// ---------------------------------------------------------------------------------------------------------
// errors and no-ops

interopTest(
  'refusals: a second pack at once, a pack before the first transaction, a dangling reference',
  async (oracle) => {
    const wd = await buildWorkload(oracle);
    await withTempDir(async (base) => {
      const src = join(wd, 'Data.fs.old');
      const txns = transactions(await readFile(src));
      const dir = join(base, 'one');
      await mkdir(dir);
      await cp(src, join(dir, 'Data.fs'));
      const before = await readFile(join(dir, 'Data.fs'));

      // before the first transaction: nothing to do
      const early = await ourPack(dir, tidPlus(txns[0].tid, -1));
      assert.equal(early.outcome, 'none');
      assert.ok((await readFile(join(dir, 'Data.fs'))).equals(before));
      assert.equal(await exists(join(dir, 'Data.fs.pack')), false);

      // z64 is no pack time
      const t0 = await TestTarget.open(join(dir, 'Data.fs'));
      await assert.rejects(packFileStorage(t0, new Uint8Array(8), referencesf, { gc: true }), (e: Error) => {
        return e instanceof FileStorageError && e.message === 'Invalid pack time';
      });

      // two packs of one file at once: the second is refused, the first completes
      const t1 = await TestTarget.open(join(dir, 'Data.fs'));
      const first = packFileStorage(t1, txns[13].tid, referencesf, { gc: true });
      await assert.rejects(packFileStorage(t1, txns[13].tid, referencesf, { gc: true }), (e: Error) => {
        return e instanceof FileStorageError && e.message === 'Already packing';
      });
      assert.ok(await first);
      assert.equal(t1.swaps, 1);
      // once it is done, another may run: the same time again frees nothing, an earlier one is redundant
      const again = await ourPack(dir, txns[13].tid);
      assert.equal(again.outcome, 'none');
      const packedOnce = await readFile(join(dir, 'Data.fs'));
      const earlier = await ourPack(dir, txns[5].tid);
      assert.equal(earlier.outcome, 'none');
      assert.ok(
        earlier.logs.some((l) => l.startsWith('info ') && l.includes('already been packed')),
        earlier.logs.join(),
      );
      assert.ok((await readFile(join(dir, 'Data.fs'))).equals(packedOnce));
    });
    await withTempDir(async (base) => {
      // a reference to an object that does not exist (deleted while still referenced): ZODB's KeyError
      const PY_DANGLING = `
import transaction, ZODB
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from persistent.mapping import PersistentMapping
fs = FileStorage(args['path'])
db = ZODB.DB(fs)
conn = db.open()
child = conn.root()['child'] = PersistentMapping()
transaction.commit()
oid, serial = child._p_oid, child._p_serial
conn.close()
t = TransactionMetaData()
fs.tpc_begin(t)
fs.deleteObject(oid, serial, t)
fs.tpc_vote(t)
fs.tpc_finish(t)
db.close()
result = oid.hex()
`;
      const src = join(base, 'dangling.fs');
      const oid = await oracle.json<string>(PY_DANGLING, undefined, { path: src });
      const stop = transactions(await readFile(src)).at(-1)!.tid;
      const [py, ts] = await twoCopies(base, 'dangling', src, null);
      const [pyRes] = await pyPack(oracle, [{ dir: py, stop: hexOf(stop), gc: true }]);
      assert.match(pyRes.outcome, /^error: KeyError/);
      const target = await TestTarget.open(join(ts, 'Data.fs'));
      await assert.rejects(packFileStorage(target, stop, referencesf, { gc: true }), (e: Error) => {
        return e instanceof POSKeyError && hexOf(e.oid) === oid;
      });
      assert.equal(await exists(join(ts, 'Data.fs.pack')), false);
      assert.equal(target.swaps, 0);
    });
  },
);

interopTest('a pack without GC refuses, as ZODB, an undo pointing at a revision it drops', async (oracle) => {
  const wd = await buildWorkload(oracle);
  await withTempDir(async (base) => {
    const src = join(wd, 'Data.fs.old');
    const txns = transactions(await readFile(src));
    const stop = txns.at(-2)!.tid; // 'to be undone': the undo after it points before it
    const [py, ts] = await twoCopies(base, 'undo', src, null);
    const [pyRes] = await pyPack(oracle, [{ dir: py, stop: hexOf(stop), gc: false }]);
    assert.match(pyRes.outcome, /^error: AssertionError/);
    const before = await readFile(join(ts, 'Data.fs'));
    const target = await TestTarget.open(join(ts, 'Data.fs'));
    await assert.rejects(packFileStorage(target, stop, referencesf, { gc: false }), PackError);
    assert.ok((await readFile(join(ts, 'Data.fs'))).equals(before));
    assert.equal(await exists(join(ts, 'Data.fs.pack')), false);
  });
});

interopTest('keepOld false: Data.fs.old and blobs.old go, as with pack_keep_old=False', async (oracle) => {
  const wd = await buildWorkload(oracle);
  await withTempDir(async (base) => {
    const src = join(wd, 'Data.fs.old');
    const txns = transactions(await readFile(src));
    const stop = tidPlus(txns.at(-1)!.tid, 1000); // after everything: the blob's first revision goes
    const [py, ts] = await twoCopies(base, 'nokeep', src, join(wd, 'Data.fs.blobs.old'));
    const [pyRes] = await pyPack(oracle, [{ dir: py, stop: hexOf(stop), gc: true, keepOld: false }]);
    assert.equal(pyRes.outcome, 'packed');
    const ours = await ourPack(ts, stop, { gc: true, keepOld: false });
    assert.equal(ours.outcome, 'packed');
    assert.ok(ours.result!.blobsRemoved >= 1);
    assert.equal(await exists(join(ts, 'Data.fs.old')), false);
    assert.equal(await exists(join(ts, 'blobs.old')), false);
    await assertSameResult(py, ts, 'nokeep', false);
    const [ia, ib] = await Promise.all([
      readFile(join(py, 'Data.fs.index')),
      readFile(join(ts, 'Data.fs.index')),
    ]);
    assert.ok(ia.equals(ib));
  });
});

test('a pack of an empty file does nothing', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'Data.fs');
    await writeFile(path, 'FS30');
    const target = new TestTarget(path, 4);
    assert.equal(await packFileStorage(target, p64(1n << 60n), referencesf, { gc: true }), null);
    assert.equal(await exists(path + '.pack'), false);
  });
});
