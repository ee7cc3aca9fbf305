// FileStorage (src/storage/filestorage/file-storage.ts) against Python's FileStorage:
//   - files Python builds (the corpus workload; a workload of overwrites, deletes, undos and records over 1 MB):
//     every load, loadBefore, loadSerial, history, recordIternext, iterator and undoLog answer is Python's;
//   - a file we build the same way: fstest and fsrefs find nothing, Python uses our index without a rebuild
//     and answers every read as we do; a copy made with our iterator and restore() is byte for byte the one
//     Python's copyTransactionsFrom makes (with and without spilling the transaction buffer);
//   - durability (a finished commit is on disk for a fresh open; an abort leaves the file as it was; a crash
//     after the vote is truncated on the next open), the commit lock's order, conflicts, read-only, close.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dumps, Global, referencesf } from '../../../src/pickle/index.js';
import {
  ConflictError,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageError,
  StorageTransactionError,
  UndoError,
  Unsupported,
} from '../../../src/storage/errors.js';
import {
  FileStorage,
  FileStorageQuotaError,
  type FileStorageOptions,
} from '../../../src/storage/filestorage/index.js';
import { copyTransactions } from '../../../src/storage/copy.js';
import { fdIO, FileIOError, type PositionalIO } from '../../../src/storage/filestorage/file.js';
import { LockError } from '../../../src/storage/filestorage/lockfile.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData, type DataRecord, type Storage } from '../../../src/storage/interfaces.js';
import { fixturesDir } from '../../helpers/corpus.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import { mappingRecord, minpo, minpoValue, ref } from '../contract/helpers.js';
import { mulberry32 } from '../../helpers/prng.js';
import { waitUntil } from '../../helpers/wait.js';
import { hex, pyOpen, withTempDir } from './fs-oracle.js';

const sha = (d: Uint8Array | null): string | null =>
  d === null ? null : createHash('sha1').update(d).digest('hex');
const errName = (e: unknown): string => '!' + (e as Error).name;
const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

// ---------------------------------------------------------------------------------------------------------
// every read answer, from Python's FileStorage and from ours, in one JSON shape

type Range = [string | null, string | null];

const PY_DUMP = `
import hashlib, json
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64, u64
def h(d): return None if d is None else hashlib.sha1(d).hexdigest()
def err(e): return '!' + type(e).__name__
def X(b): return b.hex()
META = {'time', 'user_name', 'description', 'tid', 'size', 'id'}
def ext_keys(d): return sorted(str(k) for k in d if k not in META)
fs = FileStorage(args['path'], read_only=True)
try:
    objects = {}
    for oid, _ in list(fs._index.iteritems()):
        o = {}
        try:
            d, t = fs.load(oid)
            o['load'] = [h(d), X(t)]
        except Exception as e:
            o['load'] = err(e)
        hist = fs.history(oid, size=10**9)
        o['history'] = [[X(x['tid']), x['size'], X(x['user_name']), X(x['description']), x['time'], ext_keys(x)]
                        for x in hist]
        tids = [x['tid'] for x in hist]
        ser = []
        for t in tids + [p64(u64(tids[-1]) - 1)]:
            try:
                ser.append([X(t), h(fs.loadSerial(oid, t))])
            except Exception as e:
                ser.append([X(t), err(e)])
        o['serial'] = ser
        bef = []
        for t in sorted(set(tids) | {p64(u64(t) + 1) for t in tids} | {p64(1), b'\\x7f' + b'\\xff' * 7}):
            try:
                r = fs.loadBefore(oid, t)
                bef.append([X(t), None if r is None else [h(r[0]), X(r[1]), None if r[2] is None else X(r[2])]])
            except Exception as e:
                bef.append([X(t), err(e)])
        o['before'] = bef
        try:
            r = fs.record_iternext(oid)
            o['iternext'] = [X(r[0]), X(r[1]), h(r[2]), None if r[3] is None else X(r[3])]
        except Exception as e:
            o['iternext'] = err(e)
        objects[X(oid)] = o
    txns = []
    for t in fs.iterator():
        recs = [[X(r.oid), X(r.tid), h(r.data), None if r.data_txn is None else X(r.data_txn)] for r in t]
        txns.append([X(t.tid), t.status, X(t.user), X(t.description), X(t.extension_bytes), recs])
    undo = [[x['id'].decode('ascii'), x['time'], X(x['user_name']), X(x['description']), x['size'], ext_keys(x)]
            for x in fs.undoLog(0, 10**9)]
    ranges = []
    for s, e in args['ranges']:
        it = fs.iterator(bytes.fromhex(s) if s else None, bytes.fromhex(e) if e else None)
        ranges.append([X(t.tid) for t in it])
    result = dict(len=len(fs), size=fs.getSize(), ltid=X(fs.lastTransaction()), oid=X(fs._oid),
                  objects=objects, txns=txns, undo=undo, ranges=ranges)
finally:
    fs.close()
`;

interface Dump {
  len: number;
  size: number;
  ltid: string;
  oid?: string;
  objects: Record<string, Record<string, unknown>>;
  txns: unknown[];
  undo: unknown[];
  ranges: unknown[];
}

async function guard<T>(fn: () => Promise<T>): Promise<T | string> {
  try {
    return await fn();
  } catch (e) {
    return errName(e);
  }
}

const extKeys = (m: Map<unknown, unknown>): string[] => [...m.keys()].map(String).sort();

async function ourDump(s: FileStorage, ranges: Range[]): Promise<Dump> {
  const txns: unknown[] = [];
  const oids = new Map<string, Oid>();
  for await (const t of s.iterator()) {
    const recs: unknown[] = [];
    for await (const r of t.records) {
      recs.push([hex(r.oid), hex(r.tid), sha(r.data), r.dataTxn ? hex(r.dataTxn) : null]);
      oids.set(hex(r.oid), r.oid);
    }
    txns.push([hex(t.tid), t.status, hex(t.user), hex(t.description), hex(t.extensionBytes), recs]);
  }
  const objects: Dump['objects'] = {};
  for (const [k, oid] of oids) {
    const o: Record<string, unknown> = {};
    o.load = await guard(async () => {
      const r = await s.load(oid);
      return [sha(r.data), hex(r.serial)];
    });
    const hist = await s.history(oid, 1e9);
    o.history = hist.map((x) => [
      hex(x.tid),
      x.size,
      hex(x.userName),
      hex(x.description),
      x.time,
      extKeys(x.extension),
    ]);
    const tids = hist.map((x) => x.tid);
    const serial: unknown[] = [];
    for (const t of [...tids, p64(u64(tids[tids.length - 1]) - 1n)]) {
      serial.push([hex(t), await guard(async () => sha(await s.loadSerial(oid, t)))]);
    }
    o.serial = serial;
    const probes = new Map<string, Tid>();
    for (const t of tids) {
      probes.set(hex(t), t);
      const t1 = p64(u64(t) + 1n);
      probes.set(hex(t1), t1);
    }
    probes.set(hex(p64(1)), p64(1));
    probes.set('7fffffffffffffff', p64(0x7fffffffffffffffn));
    const before: unknown[] = [];
    for (const k2 of [...probes.keys()].sort()) {
      before.push([
        k2,
        await guard(async () => {
          const r = await s.loadBefore(oid, probes.get(k2)!);
          return r === null ? null : [sha(r.data), hex(r.start), r.end === null ? null : hex(r.end)];
        }),
      ]);
    }
    o.before = before;
    o.iternext = await guard(async () => {
      const r = await s.recordIternext(oid);
      return [hex(r.oid), hex(r.tid), sha(r.data), r.next === null ? null : hex(r.next)];
    });
    objects[k] = o;
  }
  const undo = (await s.undoLog(0, 1e9)).map((x) => [
    Buffer.from(x.id).toString('latin1'),
    x.time,
    hex(x.userName),
    hex(x.description),
    x.size,
    extKeys(x.extension),
  ]);
  const out: unknown[] = [];
  for (const [a, b] of ranges) {
    const tids: string[] = [];
    for await (const t of s.iterator(a ? Buffer.from(a, 'hex') : null, b ? Buffer.from(b, 'hex') : null)) {
      tids.push(hex(t.tid));
    }
    out.push(tids);
  }
  return {
    len: s.len(),
    size: s.getSize(),
    ltid: hex(s.lastTransaction()),
    objects,
    txns,
    undo,
    ranges: out,
  };
}

/** Ranges for iterator(start, stop) probes, from the transactions of a dump. */
function rangesFor(txns: unknown[]): Range[] {
  const tids = txns.map((t) => (t as string[])[0]);
  const at = (i: number): string => tids[Math.max(0, Math.min(tids.length - 1, i))];
  const plus1 = (h: string): string => idHex(p64(u64(Buffer.from(h, 'hex')) + 1n));
  const n = tids.length;
  return [
    [null, null],
    [at(3), at(7)],
    [plus1(at(n >> 1)), null],
    [null, at(2)],
    [at(n - 1), null],
    [plus1(at(n - 1)), null],
    ['0000000000000001', at(0)],
    [at(n >> 2), plus1(at(n >> 1))],
  ];
}

async function pyDump(oracle: Oracle, path: string, ranges: Range[]): Promise<Dump> {
  return oracle.json<Dump>(PY_DUMP, undefined, { path, ranges });
}

function assertSameDump(ours: Dump, py: Dump, what: string): void {
  assert.equal(ours.len, py.len, `${what}: len`);
  assert.equal(ours.size, py.size, `${what}: getSize`);
  assert.equal(ours.ltid, py.ltid, `${what}: lastTransaction`);
  assert.deepEqual(Object.keys(ours.objects).sort(), Object.keys(py.objects).sort(), `${what}: oids`);
  for (const [oid, o] of Object.entries(py.objects)) {
    for (const k of Object.keys(o))
      assert.deepEqual(ours.objects[oid][k], o[k], `${what}: ${k} of oid ${oid}`);
  }
  assert.equal(ours.txns.length, py.txns.length, `${what}: number of transactions`);
  for (let i = 0; i < py.txns.length; i++)
    assert.deepEqual(ours.txns[i], py.txns[i], `${what}: transaction ${i}`);
  assert.deepEqual(ours.undo, py.undo, `${what}: undoLog`);
  assert.deepEqual(ours.ranges, py.ranges, `${what}: iterator(start, stop)`);
}

/** Opens our storage on `path` (read-only) and checks every answer against Python's. */
async function checkParity(oracle: Oracle, path: string, what: string): Promise<Dump> {
  const s = await FileStorage.open(path, { readOnly: true });
  try {
    const first = await ourDump(s, []);
    const ranges = rangesFor(first.txns);
    const ours = await ourDump(s, ranges);
    const py = await pyDump(oracle, path, ranges);
    assertSameDump(ours, py, what);
    if (process.env.ZEO_TS_FS_DEBUG) {
      const recs = py.txns.reduce((n: number, t) => n + ((t as unknown[])[5] as unknown[]).length, 0);
      const probes = Object.values(py.objects).reduce((n, o) => n + (o.before as unknown[]).length, 0);
      console.log(
        `${what}: ${Object.keys(py.objects).length} oids, ${py.txns.length} txns, ${recs} records, ${probes} loadBefore probes, ${py.undo.length} undo entries, size ${py.size}`,
      );
    }
    return py;
  } finally {
    await s.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// workloads

const PY_CORPUS = `
import sys
if args['fixtures'] not in sys.path:
    sys.path.insert(0, args['fixtures'])
import zodb_workload
zodb_workload.build_workload(args['path'], 1)
result = None
`;

/** Overwrites, undos (of creations too, and of undos), deleteObject, records over 1 MB, a pack. */
const PY_CHURN = `
import random, time, transaction, ZODB
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import UndoError
from persistent.mapping import PersistentMapping
rnd = random.Random(args['seed'])
fs = FileStorage(args['path'])
db = ZODB.DB(fs)
conn = db.open()
root = conn.root()
objs = []
for i in range(24):
    o = PersistentMapping({'i': i})
    root['o%d' % i] = o
    objs.append(o)
t = transaction.get()
t.note('create')
t.setUser('alice')
t.setExtendedInfo('app', 'churn')
t.commit()
def undo_last(n=1):
    log = db.undoLog(0, n)
    try:
        db.undo(log[rnd.randrange(len(log))]['id'])
        transaction.commit()
    except UndoError:
        transaction.abort()
for step in range(70):
    for o in rnd.sample(objs, 3):
        o['v'] = step
    if step % 9 == 0:
        rnd.choice(objs)['big'] = rnd.randbytes(1_100_000)
    if step % 10 == 3:
        root['tmp%d' % step] = PersistentMapping({'tmp': step})
    t = transaction.get()
    t.note('step %d' % step)
    t.commit()
    if step % 10 == 3:
        undo_last()  # undoes a creation: a back pointer of 0
    if step % 7 == 6:
        undo_last()
    if step % 11 == 10:
        undo_last(12)  # may conflict
    if step % 13 == 12:
        undo_last()  # often an undo of an undo
    if step % 17 == 5:
        orphan = PersistentMapping({'orphan': step})
        conn.add(orphan)
        transaction.commit()
        t = TransactionMetaData()
        fs.tpc_begin(t)
        fs.deleteObject(orphan._p_oid, orphan._p_serial, t)
        fs.tpc_vote(t)
        fs.tpc_finish(t)
        conn.cacheMinimize()
    if step == 40:
        time.sleep(0.01)
        db.pack(time.time())
        time.sleep(0.01)
conn.close()
db.close()
result = None
`;

const PY_COPY = `
from ZODB.FileStorage import FileStorage
src = FileStorage(args['src'], read_only=True)
dest = FileStorage(args['dest'], create=True)
dest.copyTransactionsFrom(src)
dest.close()
src.close()
result = None
`;

const PY_CHECKS = `
import contextlib, io
from ZODB.scripts import fsrefs, fstest
fstest.check(args['path'])
out = io.StringIO()
with contextlib.redirect_stdout(out):
    fsrefs.main(args['path'])
result = out.getvalue()
`;

async function commit(
  s: Storage,
  records: Array<[Oid, Uint8Array]>,
  meta: TransactionMetaData = new TransactionMetaData(),
): Promise<Tid> {
  await s.tpcBegin(meta);
  try {
    for (const [oid, data] of records) {
      let serial = z64;
      try {
        serial = (await s.load(oid)).serial;
      } catch (e) {
        if (!(e instanceof POSKeyError)) throw e;
        serial = await (s as FileStorage).getTid(oid).catch((e2) => {
          if (e2 instanceof POSKeyError) return z64;
          throw e2;
        });
      }
      await s.store(oid, serial, data, meta);
    }
    await s.tpcVote(meta);
    return await s.tpcFinish(meta);
  } catch (e) {
    await s.tpcAbort(meta);
    throw e;
  }
}

/** Undoes the transaction of `id`; false when it could not be undone (then nothing was written). */
async function undo(s: FileStorage, id: Uint8Array, description = 'undo'): Promise<boolean> {
  const meta = new TransactionMetaData(utf8(''), utf8(description));
  await s.tpcBegin(meta);
  try {
    await s.undo(id, meta);
    await s.tpcVote(meta);
    await s.tpcFinish(meta);
    return true;
  } catch (e) {
    await s.tpcAbort(meta);
    if (e instanceof UndoError) return false;
    throw e;
  }
}

/** Our workload: the churn one, written through our API, with references from the root for fsrefs. */
async function buildOurs(s: FileStorage, seed: number): Promise<void> {
  const rnd = mulberry32(seed);
  const pick = (n: number): number => Math.floor(rnd() * n);
  const objs: Oid[] = [];
  for (let i = 0; i < 24; i++) objs.push(await s.newOid());
  const rootEntries = objs.map((o, i): [string, ReturnType<typeof ref>] => [
    `o${i}`,
    ref(o, 'persistent.mapping', 'PersistentMapping'),
  ]);
  await commit(
    s,
    [[z64, mappingRecord(rootEntries)], ...objs.map((o, i): [Oid, Uint8Array] => [o, minpo(i)])],
    new TransactionMetaData(utf8('alice'), utf8('create'), new Map([['app', 'ours']])),
  );
  const sizeBefore = async (): Promise<Buffer> => readFile(s.path);
  for (let step = 0; step < 70; step++) {
    const recs: Array<[Oid, Uint8Array]> = [];
    for (let j = 0; j < 3; j++) recs.push([objs[pick(objs.length)], minpo(step * 10 + j)]);
    if (step % 9 === 0) recs.push([objs[pick(objs.length)], minpo(new Uint8Array(randomBytes(1_100_000)))]);
    const dedup = new Map(recs.map(([o, d]) => [hex(o), [o, d] as [Oid, Uint8Array]]));
    if (step % 10 === 3) dedup.set('new', [await s.newOid(), minpo(`tmp ${step}`)]);
    await commit(s, [...dedup.values()], new TransactionMetaData(utf8(''), utf8(`step ${step}`)));
    if (step % 10 === 3) assert.ok(await undo(s, (await s.undoLog(0, 1))[0].id), 'undo of a creation');
    if (step % 7 === 6) await undo(s, (await s.undoLog(0, 1))[0].id);
    if (step % 11 === 10) {
      const log = await s.undoLog(0, 12);
      const bytes = await sizeBefore();
      if (!(await undo(s, log[pick(log.length)].id))) {
        assert.deepEqual(await sizeBefore(), bytes, 'a failed undo leaves the file as it was');
      }
    }
    if (step % 13 === 12) await undo(s, (await s.undoLog(0, 1))[0].id, 'redo');
    if (step % 17 === 5) {
      const orphan = await s.newOid();
      const tid = await commit(s, [[orphan, minpo('orphan')]]);
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      await s.deleteObject(orphan, tid, meta);
      await s.tpcVote(meta);
      await s.tpcFinish(meta);
    }
    if (step % 5 === 4) {
      // a conflict: the transaction is aborted and leaves nothing
      const oid = objs[pick(objs.length)];
      const hist = await s.history(oid, 2);
      if (hist.length === 2) {
        const meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await assert.rejects(s.store(oid, hist[1].tid, minpo('late'), meta), ConflictError);
        await s.tpcAbort(meta);
      }
    }
  }
}

async function copyWithRestore(src: FileStorage, dest: FileStorage): Promise<void> {
  for await (const t of src.iterator()) {
    const meta = new TransactionMetaData(t.user, t.description, t.extension, t.extensionBytes);
    await dest.tpcBegin(meta, t.tid, t.status);
    for await (const r of t.records) await dest.restore(r.oid, r.tid, r.data, r.dataTxn, meta);
    await dest.tpcVote(meta);
    await dest.tpcFinish(meta);
  }
}

/** copyWithRestore through restoreRecords: the records as the iterator gives them (sync) or one by one. */
async function copyWithRestoreRecords(src: FileStorage, dest: FileStorage, sync: boolean): Promise<void> {
  let restored = 0;
  for await (const t of src.iterator()) {
    const meta = new TransactionMetaData(t.user, t.description, t.extension, t.extensionBytes);
    await dest.tpcBegin(meta, t.tid, t.status);
    const records = sync
      ? t.records
      : (async function* () {
          for await (const r of t.records) yield r;
        })();
    restored += (await dest.restoreRecords(records, meta)).records;
    await dest.tpcVote(meta);
    await dest.tpcFinish(meta);
  }
  assert.ok(restored > 0, 'records were restored');
}

// ---------------------------------------------------------------------------------------------------------

describe('FileStorage: parity with Python', () => {
  interopTest(
    'the corpus workload (BTrees, blobs, a pack, undos, a 1 MB record): every read',
    async (oracle) => {
      await withTempDir(async (dir) => {
        const path = join(dir, 'Data.fs');
        await oracle.run(PY_CORPUS, undefined, { fixtures: fixturesDir, path });
        const py = await checkParity(oracle, path, 'corpus');
        // a writable open takes the lock, and goes on with oids where Python would
        const s = await FileStorage.open(path);
        try {
          assert.equal(hex(await s.newOid()), idHex(p64(u64(Buffer.from(py.oid!, 'hex')) + 1n)));
        } finally {
          await s.close();
        }
      });
    },
  );

  interopTest('overwrites, deletes, undos, records over 1 MB, a pack: every read', async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await oracle.run(PY_CHURN, undefined, { path, seed: 11 });
      const py = await checkParity(oracle, path, 'churn');
      const statuses = new Set(py.txns.map((t) => (t as string[])[1]));
      assert.deepEqual([...statuses].sort(), [' ', 'p'], 'packed and committed transactions');
      assert.ok(
        py.txns.some((t) => ((t as unknown[])[5] as unknown[][]).some((r) => r[2] === null)),
        'some record undoes a creation or deletes',
      );
      assert.ok(
        Object.values(py.objects).some((o) => o.load === '!POSKeyError'),
        'some object is gone (POSKeyError)',
      );
    });
  });

  interopTest('a file we write: fstest, fsrefs, our index used by Python, every read', async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      const s = await FileStorage.open(path);
      try {
        await buildOurs(s, 7);
      } finally {
        await s.close();
      }
      const pos = (await stat(path)).size;
      assert.equal(await oracle.json(PY_CHECKS, undefined, { path }), '', 'fsrefs reports nothing');
      const opened = await pyOpen(oracle, path);
      assert.equal(opened.error, null);
      assert.equal(opened.usedIndex, 1, 'Python uses our Data.fs.index');
      assert.deepEqual(opened.starts, [pos], 'and reads nothing before the position it saved');
      // the index we saved is what Python builds by scanning
      await copyFile(path, join(dir, 'Scan.fs'));
      const scanned = await pyOpen(oracle, join(dir, 'Scan.fs'));
      assert.equal(scanned.usedIndex, 0);
      assert.deepEqual(opened.index, scanned.index);
      const py = await checkParity(oracle, path, 'ours');
      assert.ok(py.txns.length > 90);
      assert.ok(
        Object.values(py.objects).some((o) => o.load === '!POSKeyError'),
        'undone creations',
      );
    });
  });

  interopTest(
    "150 small transactions across the iterator's read chunks, an undo: every read; the records given synchronously are the asynchronous ones",
    async (oracle) => {
      await withTempDir(async (dir) => {
        const path = join(dir, 'Data.fs');
        const s = await FileStorage.open(path);
        const rnd = mulberry32(5);
        try {
          const oids: Oid[] = [];
          for (let i = 0; i < 30; i++) oids.push(await s.newOid());
          // about 300 KB of transactions of 100 to 5,000 bytes: some straddle each 128 KB chunk
          for (let i = 0; i < 150; i++) {
            const recs = new Map<Oid, Uint8Array>();
            for (let j = 0; j <= i % 2; j++)
              recs.set(oids[Math.floor(rnd() * oids.length)], minpo('x'.repeat(Math.floor(rnd() * 2500))));
            await commit(s, [...recs]);
            // an undo writes back pointers: a transaction whose records are read through them
            if (i === 100) assert.ok(await undo(s, (await s.undoLog(0, 1))[0].id));
          }
        } finally {
          await s.close();
        }
        await checkParity(oracle, path, 'small transactions');
        const r = await FileStorage.open(path, { readOnly: true });
        try {
          let sync = 0;
          let async = 0;
          for await (const t of r.iterator()) {
            const viaAsync: unknown[] = [];
            for await (const d of t.records) viaAsync.push([hex(d.oid), hex(d.tid), sha(d.data), d.dataTxn]);
            const records = t.records as Partial<Iterable<DataRecord>>;
            const it = records[Symbol.iterator];
            if (it === undefined) {
              async++;
              continue;
            }
            sync++;
            const viaSync = [...{ [Symbol.iterator]: it.bind(records) }].map((d) => [
              hex(d.oid),
              hex(d.tid),
              sha(d.data),
              d.dataTxn,
            ]);
            assert.deepEqual(viaSync, viaAsync, `records of ${hex(t.tid)}`);
          }
          assert.equal(sync, 150, 'every transaction without back pointers is given synchronously too');
          assert.equal(async, 1, 'the undo, whose records point back, only asynchronously');
        } finally {
          await r.close();
        }
      });
    },
  );

  interopTest(
    "a copy through our iterator and restore() is Python's copyTransactionsFrom, byte for byte",
    async (oracle) => {
      await withTempDir(async (dir) => {
        const src = join(dir, 'Data.fs');
        await oracle.run(PY_CHURN, undefined, { path: src, seed: 3 });
        await oracle.run(PY_COPY, undefined, { src, dest: join(dir, 'Py.fs') });
        const expected = await readFile(join(dir, 'Py.fs'));
        const from = await FileStorage.open(src, { readOnly: true });
        try {
          // restore() one by one, restoreRecords (copy's bulk path: records given synchronously where the
          // iterator can, else as they come), and copyTransactions (which takes restoreRecords)
          const bulk = (s: FileStorage, d: FileStorage) => copyWithRestoreRecords(s, d, true);
          const bulkAsync = (s: FileStorage, d: FileStorage) => copyWithRestoreRecords(s, d, false);
          const copier = async (s: FileStorage, d: FileStorage) => void (await copyTransactions(s, d));
          for (const [name, opts, copy] of [
            ['Ours.fs', {}, copyWithRestore],
            ['Spilled.fs', { spillThreshold: 64 << 10 }, copyWithRestore],
            ['Bulk.fs', {}, bulk],
            ['BulkSpilled.fs', { spillThreshold: 64 << 10 }, bulk],
            ['BulkAsync.fs', {}, bulkAsync],
            ['Copied.fs', {}, copier],
          ] as Array<[string, FileStorageOptions, (s: FileStorage, d: FileStorage) => Promise<void>]>) {
            const to = await FileStorage.open(join(dir, name), opts);
            try {
              await copy(from, to);
            } finally {
              await to.close();
            }
            const got = await readFile(join(dir, name));
            assert.equal(got.length, expected.length, `${name}: size`);
            assert.ok(got.equals(expected), `${name}: the same bytes as Python's copy`);
          }
        } finally {
          await from.close();
        }
        assert.ok(!(await readdir(dir)).includes('Spilled.fs.tmp'), 'the spill file goes at close');
        assert.ok(!(await readdir(dir)).includes('BulkSpilled.fs.tmp'), 'the spill file goes at close');
      });
    },
  );
});

// ---------------------------------------------------------------------------------------------------------

async function open(dir: string, opts: FileStorageOptions = {}): Promise<FileStorage> {
  return FileStorage.open(join(dir, 'Data.fs'), opts);
}

const PY_PACK = `
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf
fs = FileStorage(args['path'])
fs.pack(args['t'], referencesf)
fs.close()
result = None
`;

const PY_BLOBS = `
import hashlib
from ZODB.FileStorage import FileStorage
from ZODB.blob import is_blob_record
fs = FileStorage(args['path'], read_only=True, blob_dir=args['blobs'])
out = []
try:
    for t in fs.iterator():
        for r in t:
            if r.data is not None and is_blob_record(r.data):
                with fs.openCommittedBlobFile(r.oid, r.tid) as f:
                    out.append([r.oid.hex(), r.tid.hex(), hashlib.sha1(f.read()).hexdigest()])
finally:
    fs.close()
result = out
`;

/** A blob record as ZODB writes one: the class ZODB.blob.Blob, then the state None. */
const blobRecord = (): Uint8Array =>
  new Uint8Array(Buffer.concat([dumps(Global.of('ZODB.blob', 'Blob'), 3), dumps(null, 3)]));

describe('FileStorage: pack and blobs, with Python', () => {
  interopTest(
    "pack() through the storage gives Python's packed file, byte for byte, and its reads",
    async (oracle) => {
      await withTempDir(async (dir) => {
        const path = join(dir, 'Data.fs');
        await oracle.run(PY_CHURN, undefined, { path, seed: 5 });
        await copyFile(path, join(dir, 'Py.fs'));
        const s = await FileStorage.open(path);
        let t: number;
        let lastPy: Tid;
        try {
          lastPy = s.lastTransaction();
          const log = await s.undoLog(0, 1e9);
          // a pack time between two transactions in the middle of the history
          t = (log[log.length >> 1].time + log[(log.length >> 1) - 1].time) / 2;
          const before = s.getSize();
          const oids: Oid[] = [];
          for await (const tr of s.iterator()) for await (const r of tr.records) oids.push(r.oid);
          // loads keep running while the pack copies and swaps the file in (they finish on the old file)
          let packing = true;
          let loads = 0;
          const hammer = (async () => {
            while (packing) {
              for (const oid of oids) {
                await s.load(oid).catch((e: unknown) => assert.ok(e instanceof POSKeyError, String(e)));
                loads++;
              }
            }
          })();
          const packed = s.pack(t, referencesf).finally(() => (packing = false));
          // a commit racing the pack: it lands in the packed file too
          const racer = await s.newOid();
          await commit(s, [[racer, minpo('during pack')]]);
          await packed;
          await hammer;
          assert.ok(loads > 0);
          assert.equal(minpoValue((await s.load(racer)).data), 'during pack');
          assert.ok(s.getSize() < before, 'the pack freed something');
          // loads go to the packed file
          for (const oid of oids)
            await s.load(oid).catch((e: unknown) => assert.ok(e instanceof POSKeyError));
          // and commits go on after it
          const oid = await s.newOid();
          await commit(s, [[oid, minpo('after pack')]]);
          assert.equal(minpoValue((await s.load(oid)).data), 'after pack');
        } finally {
          await s.close();
        }
        await oracle.run(PY_PACK, undefined, { path: join(dir, 'Py.fs'), t });
        const ours = await readFile(path);
        const py = await readFile(join(dir, 'Py.fs'));
        // Python packed the file without the two commits we made since: compare up to them
        assert.ok(ours.length > py.length);
        const ro = await FileStorage.open(path, { readOnly: true });
        let firstOfOurs = 0;
        try {
          for await (const tr of ro.iterator(p64(u64(lastPy) + 1n))) {
            firstOfOurs = tr.pos;
            break;
          }
        } finally {
          await ro.close();
        }
        assert.equal(firstOfOurs, py.length, 'our commits follow the packed history');
        assert.ok(ours.subarray(0, py.length).equals(py), "the packed part is Python's packed file");
        assert.ok((await readdir(dir)).includes('Data.fs.old'));
        await checkParity(oracle, path, 'packed');
      });
    },
  );

  interopTest("blobs: Python's blob directory read through loadBlob; ours read by Python", async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      await oracle.run(PY_CORPUS, undefined, { fixtures: fixturesDir, path });
      const blobs = path + '.blobs';
      const expected = await oracle.json<string[][]>(PY_BLOBS, undefined, { path, blobs });
      assert.ok(expected.length > 0);
      const s = await FileStorage.open(path, { blobDir: blobs });
      try {
        for (const [oid, tid, digest] of expected) {
          const f = await s.loadBlob(Buffer.from(oid, 'hex'), Buffer.from(tid, 'hex'));
          assert.equal(sha(await readFile(f)), digest);
        }
        // a blob of ours, then a change and the undo of that change (which copies the first blob back)
        const oid = await s.newOid();
        const upload = async (content: string): Promise<string> => {
          const f = join(s.temporaryDirectory(), `upload-${content}`);
          await writeFile(f, content);
          return f;
        };
        let meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.storeBlob(oid, z64, blobRecord(), await upload('first'), meta);
        await s.tpcVote(meta);
        const t1 = await s.tpcFinish(meta);
        meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.storeBlob(oid, t1, blobRecord(), await upload('second'), meta);
        await s.tpcVote(meta);
        const t2 = await s.tpcFinish(meta);
        assert.equal(await readFile(await s.loadBlob(oid, t2), 'utf8'), 'second');
        assert.ok(await undo(s, (await s.undoLog(0, 1))[0].id));
        const t3 = s.lastTransaction();
        assert.equal(await readFile(await s.loadBlob(oid, t3), 'utf8'), 'first');
        // an aborted blob is removed
        meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        const up = await upload('aborted');
        await s.storeBlob(oid, t3, blobRecord(), up, meta);
        await s.tpcAbort(meta);
        await assert.rejects(s.loadBlob(oid, p64(u64(t3) + 1n)), POSKeyError);
        const tmpLeft = await readdir(s.temporaryDirectory());
        assert.deepEqual(tmpLeft, [], 'uploads are moved into place');
      } finally {
        await s.close();
      }
      const got = await oracle.json<string[][]>(PY_BLOBS, undefined, { path, blobs });
      const mine = got.slice(expected.length).map((r) => r[2]);
      assert.deepEqual(
        mine,
        ['first', 'second', 'first'].map((c) => sha(Buffer.from(c))),
      );
    });
  });
});

it('blobs without a blob directory are Unsupported', async () => {
  await withTempDir(async (dir) => {
    const s = await FileStorage.open(join(dir, 'Data.fs'));
    try {
      assert.throws(() => s.temporaryDirectory(), Unsupported);
      await assert.rejects(s.loadBlob(z64, z64), Unsupported);
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      await assert.rejects(s.storeBlob(z64, z64, blobRecord(), '/nonexistent', meta), Unsupported);
      await s.tpcAbort(meta);
    } finally {
      await s.close();
    }
  });
});

describe('FileStorage: durability', () => {
  interopTest(
    'a finished commit is on disk for a fresh open (ours, and Python while we run)',
    async (oracle) => {
      await withTempDir(async (dir) => {
        const s = await open(dir);
        try {
          const oid = await s.newOid();
          const tid = await commit(s, [
            [z64, minpo('root')],
            [oid, minpo(1)],
          ]);
          const ro = await open(dir, { readOnly: true });
          try {
            assert.equal(minpoValue((await ro.load(oid)).data), 1);
            assert.equal(hex(ro.lastTransaction()), hex(tid));
          } finally {
            await ro.close();
          }
          const py = await pyOpen(oracle, s.path);
          assert.equal(py.error, null);
          assert.equal(py.ltid, hex(tid));
          assert.equal(py.pos, s.getSize());
        } finally {
          await s.close();
        }
      });
    },
  );

  it('an abort after the vote leaves the file byte for byte as it was', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const oid = await s.newOid();
        const tid = await commit(s, [[oid, minpo(1)]]);
        const before = await readFile(s.path);
        const meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(oid, tid, minpo(new Uint8Array(200_000)), meta);
        await s.tpcVote(meta);
        assert.ok((await stat(s.path)).size > before.length, 'the vote wrote the transaction');
        await s.tpcAbort(meta);
        assert.ok((await readFile(s.path)).equals(before));
        assert.equal(hex(s.lastTransaction()), hex(tid));
        // and the next commit goes where the aborted one was
        const tid2 = await commit(s, [[oid, minpo(2)]]);
        assert.equal(minpoValue((await s.load(oid)).data), 2);
        assert.equal(hex((await s.loadBefore(oid, tid2))!.start), hex(tid));
      } finally {
        await s.close();
      }
    });
  });

  it('a crash after the vote: the next open truncates the transaction (kept in Data.fs.tr0)', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      const crashed = join(dir, 'crash');
      await mkdir(crashed);
      let tid: Tid;
      let oid: Oid;
      try {
        oid = await s.newOid();
        tid = await commit(s, [[oid, minpo(1)]]);
        const meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(oid, tid, minpo(2), meta);
        await s.tpcVote(meta);
        await copyFile(s.path, join(crashed, 'Data.fs')); // the disk as a crash would leave it
        await s.tpcAbort(meta);
      } finally {
        await s.close();
      }
      const logs: string[] = [];
      const r = await open(crashed, { log: (_l, m) => logs.push(m) });
      try {
        assert.equal(hex(r.lastTransaction()), hex(tid));
        assert.equal(minpoValue((await r.load(oid)).data), 1);
        assert.equal(r.getSize(), (await stat(join(crashed, 'Data.fs'))).size);
      } finally {
        await r.close();
      }
      assert.ok((await readdir(crashed)).includes('Data.fs.tr0'));
      assert.ok(
        logs.some((m) => m.includes('truncated')),
        logs.join('\n'),
      );
    });
  });
});

/**
 * The data file's system calls with an fdatasync the test holds back (`hold`, then `release`) or makes fail
 * (`fail`); `syncs` counts the calls.
 */
function flushControl(): {
  io: PositionalIO;
  syncs: () => number;
  hold: () => void;
  release: () => void;
  fail: (on: boolean) => void;
} {
  let syncs = 0;
  let failing = false;
  let held: Array<() => void> | null = null;
  const io: PositionalIO = {
    read: fdIO.read,
    write: fdIO.write,
    async datasync() {
      syncs++;
      if (held) await new Promise<void>((resolve) => held!.push(resolve));
      if (failing) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    },
  };
  return {
    io,
    syncs: () => syncs,
    hold: () => {
      held = [];
    },
    release: () => {
      const h = held ?? [];
      held = null;
      for (const r of h) r();
    },
    fail: (on) => {
      failing = on;
    },
  };
}

/** A FileStorage in a temp dir over flushControl's system calls, released and closed after `fn`. */
async function withFlushControl(
  fn: (s: FileStorage, ctl: ReturnType<typeof flushControl>) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const ctl = flushControl();
    const s = await open(dir, { io: ctl.io });
    try {
      await fn(s, ctl);
    } finally {
      ctl.release();
      await s.close();
    }
  });
}

/** Lets the event loop and the thread pool run a little. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

describe("FileStorage: a commit's flush", () => {
  it('a commit whose flush fails is not acknowledged: Failure in _finish, closed, status back to c, truncated on reopen', async () => {
    await withTempDir(async (dir) => {
      const ctl = flushControl();
      const logs: string[] = [];
      const s = await open(dir, { io: ctl.io, log: (l, m) => logs.push(`${l} ${m}`) });
      let tid: Tid;
      let oid: Oid;
      let tpos: number;
      try {
        oid = await s.newOid();
        tid = await commit(s, [[oid, minpo(1)]]);
        assert.equal(ctl.syncs(), 1, 'a commit flushes through fdatasync');
        tpos = s.getSize();
        ctl.fail(true);
        const meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(oid, tid, minpo(2), meta);
        await s.tpcVote(meta); // the write succeeded: the vote does
        let committed = false;
        await assert.rejects(
          s.tpcFinish(meta, () => {
            committed = true;
          }),
          (e: unknown) => e instanceof FileIOError && e.code === 'EIO' && /fdatasync/.test(e.message),
        );
        assert.equal(committed, false, 'onCommitted is not called');
        assert.equal(hex(s.lastTransaction()), hex(tid));
        assert.ok(
          logs.some((m) => m.startsWith('critical Failure in _finish')),
          logs.join('\n'),
        );
        await assert.rejects(s.load(oid), StorageError, 'the storage closed');
      } finally {
        await s.close();
      }
      // finish had cleared the status before the flush failed: it is back to 'c'
      const bytes = await readFile(join(dir, 'Data.fs'));
      assert.ok(bytes.length > tpos, 'the vote wrote the transaction');
      assert.equal(String.fromCharCode(bytes[tpos + 16]), 'c');
      const reopened: string[] = [];
      const again = flushControl();
      const r = await open(dir, { io: again.io, log: (_l, m) => reopened.push(m) });
      try {
        assert.equal(hex(r.lastTransaction()), hex(tid));
        assert.equal(minpoValue((await r.load(oid)).data), 1);
        assert.equal(r.getSize(), tpos);
        // and the storage commits again, over the truncated bytes: its vote flushes them first
        const meta = new TransactionMetaData();
        await r.tpcBegin(meta);
        await r.store(oid, tid, minpo(3), meta);
        await r.tpcVote(meta);
        assert.equal(again.syncs(), 1, 'the vote flushes data written where a truncated commit was');
        await r.tpcFinish(meta);
        assert.equal(again.syncs(), 2);
        assert.equal(minpoValue((await r.load(oid)).data), 3);
      } finally {
        await r.close();
      }
      assert.ok(
        reopened.some((m) => m.includes('truncated')),
        reopened.join('\n'),
      );
    });
  });

  it('an appended transaction: vote writes without a flush, finish clears the status and then flushes once', async () => {
    await withFlushControl(async (s, ctl) => {
      const oid = await s.newOid();
      const tpos = s.getSize();
      ctl.hold();
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      await s.store(oid, z64, minpo(1), meta);
      await s.tpcVote(meta);
      assert.equal(ctl.syncs(), 0, 'no flush at vote');
      assert.equal(String.fromCharCode((await readFile(s.path))[tpos + 16]), 'c');
      let finished = false;
      const finishing = s.tpcFinish(meta).then((t) => {
        finished = true;
        return t;
      });
      await waitUntil(() => ctl.syncs() === 1, 'the flush has started');
      await settle();
      assert.equal(ctl.syncs(), 1, 'one flush');
      assert.equal(finished, false, 'finish waits for the flush');
      assert.equal(String.fromCharCode((await readFile(s.path))[tpos + 16]), ' ', 'cleared before the flush');
      ctl.release();
      const tid = await finishing;
      assert.equal(ctl.syncs(), 1);
      assert.equal(hex(s.lastTransaction()), hex(tid));
      assert.equal(minpoValue((await s.load(oid)).data), 1);
    });
  });

  it('over bytes an aborted transaction wrote: the vote flushes the data, finish clears the status only after it', async () => {
    await withFlushControl(async (s, ctl) => {
      const oid = await s.newOid();
      const tpos = s.getSize();
      const aborted = new TransactionMetaData();
      await s.tpcBegin(aborted);
      await s.store(oid, z64, minpo(new Uint8Array(5_000)), aborted);
      await s.tpcVote(aborted);
      await s.tpcAbort(aborted);
      assert.equal(s.getSize(), tpos);
      assert.equal(ctl.syncs(), 0);
      ctl.hold();
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      await s.store(oid, z64, minpo(1), meta);
      await s.tpcVote(meta); // (resolves with the flush held back)
      assert.equal(ctl.syncs(), 1, "the data's flush has started");
      let finished = false;
      const finishing = s.tpcFinish(meta).then((t) => {
        finished = true;
        return t;
      });
      await settle();
      assert.equal(finished, false, 'finish waits for the flush');
      assert.equal(String.fromCharCode((await readFile(s.path))[tpos + 16]), 'c', 'not cleared yet');
      ctl.release();
      const tid = await finishing;
      assert.equal(ctl.syncs(), 2, 'then the status is flushed');
      assert.equal(String.fromCharCode((await readFile(s.path))[tpos + 16]), ' ');
      assert.equal(hex(s.lastTransaction()), hex(tid));
      assert.equal(minpoValue((await s.load(oid)).data), 1);
      // a commit that starts before the aborted transaction's end flushes twice; the next ones, once
      let n = ctl.syncs();
      await commit(s, [[oid, minpo(new Uint8Array(6_000))]]);
      assert.equal(ctl.syncs() - n, 2);
      n = ctl.syncs();
      await commit(s, [[oid, minpo(4)]]);
      assert.equal(ctl.syncs() - n, 1);
    });
  });

  it('an abort waits for the flush in flight, failed or not, then truncates', async () => {
    await withFlushControl(async (s, ctl) => {
      const oid = await s.newOid();
      const tid = await commit(s, [[oid, minpo(1)]]);
      const before = await readFile(s.path);
      // a first aborted vote: the ones after it write over its bytes, and their votes flush
      const first = new TransactionMetaData();
      await s.tpcBegin(first);
      await s.store(oid, tid, minpo(new Uint8Array(10_000)), first);
      await s.tpcVote(first);
      await s.tpcAbort(first);
      for (const failing of [false, true]) {
        ctl.hold();
        ctl.fail(failing);
        const meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(oid, tid, minpo(new Uint8Array(10_000)), meta);
        await s.tpcVote(meta);
        let aborted = false;
        const aborting = s.tpcAbort(meta).then(() => {
          aborted = true;
        });
        await settle();
        assert.equal(aborted, false, 'the abort waits for the flush');
        assert.ok((await stat(s.path)).size > before.length, 'not truncated under the flush');
        ctl.release();
        await aborting;
        assert.ok((await readFile(s.path)).equals(before), `failing flush: ${failing}`);
        ctl.fail(false);
      }
      // the storage goes on committing
      const tid2 = await commit(s, [[oid, minpo(2)]]);
      assert.equal(minpoValue((await s.load(oid)).data), 2);
      assert.equal(hex((await s.loadBefore(oid, tid2))!.start), hex(tid));
    });
  });

  it('small transactions are written synchronously; the flush runs on the event loop only when allowed and fast', async () => {
    await withTempDir(async (dir) => {
      const calls = { write: 0, writeSync: 0, datasync: 0, datasyncSync: 0 };
      let delayMs = 0;
      const io: PositionalIO = {
        read: fdIO.read,
        write: (...a) => {
          calls.write++;
          return fdIO.write(...a);
        },
        writeSync: (...a) => {
          calls.writeSync++;
          return fdIO.writeSync!(...a);
        },
        async datasync() {
          calls.datasync++;
          if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
        },
        datasyncSync() {
          calls.datasyncSync++;
          if (delayMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, delayMs);
        },
      };
      const s = await open(dir, { io });
      try {
        let allow = true;
        s.mayFlushInline = () => allow;
        const oid = await s.newOid();
        const atOpen = calls.write; // (the new file's header)
        await commit(s, [[oid, minpo(1)]]);
        // the first flush is timed through the thread pool
        assert.deepEqual(s.flushes, { inline: 0, threadPool: 1 });
        assert.equal(calls.write, atOpen, 'a small transaction and its status byte: written synchronously');
        assert.equal(calls.writeSync, 2);
        await commit(s, [[oid, minpo(2)]]);
        assert.deepEqual(s.flushes, { inline: 1, threadPool: 1 });
        assert.equal(calls.datasyncSync, 1);
        allow = false;
        await commit(s, [[oid, minpo(3)]]);
        assert.deepEqual(s.flushes, { inline: 1, threadPool: 2 });
        allow = true;
        const writes = calls.write;
        await commit(s, [[oid, minpo(new Uint8Array(200_000))]]);
        assert.equal(calls.write - writes, 1, 'a big transaction goes through the thread pool');
        assert.ok((await s.load(oid)).data.length > 200_000);
        // flushes that take long: the thread pool, allowed or not
        delayMs = 5;
        const before = { ...s.flushes };
        for (let i = 0; i < 8; i++) await commit(s, [[oid, minpo(i)]]);
        // (inline while the average of recent flushes stays under a millisecond: the first few)
        assert.ok(s.flushes.inline - before.inline < 4, JSON.stringify(s.flushes));
        const stuck = s.flushes.inline;
        await commit(s, [[oid, minpo(5)]]);
        await commit(s, [[oid, minpo(6)]]);
        assert.equal(s.flushes.inline, stuck, 'slow flushes stay in the thread pool');
        assert.equal(minpoValue((await s.load(oid)).data), 6);
      } finally {
        await s.close();
      }
    });
  });

  it('newOid counts on after the largest oid stored, carrying across bytes, and each call gets its own bytes', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        assert.equal(hex(await s.newOid()), idHex(p64(1)));
        for (const last of [0xffn, 0xffffn, 0x1ffffffffn, 0xfeffffffffffffffn]) {
          await commit(s, [[p64(last), minpo(1)]]);
          const a = await s.newOid();
          const b = await s.newOid();
          assert.equal(hex(a), idHex(p64(last + 1n)));
          assert.equal(hex(b), idHex(p64(last + 2n)));
          a[7] = 0x55; // (the caller's copy: the next one does not follow it)
          assert.equal(hex(await s.newOid()), idHex(p64(last + 3n)));
        }
      } finally {
        await s.close();
      }
    });
  });

  it('flushes sent to the thread pool by their time are timed inline again now and then', async () => {
    await withTempDir(async (dir) => {
      // the thread pool's flushes are slow (its round trip, say), the disk's own flush is not
      const io: PositionalIO = {
        read: fdIO.read,
        write: fdIO.write,
        writeSync: fdIO.writeSync,
        datasync: () => new Promise((r) => setTimeout(r, 3)),
        datasyncSync() {},
      };
      const s = await open(dir, { io });
      try {
        s.mayFlushInline = () => true;
        const oid = await s.newOid();
        // the first flush is timed through the pool (3 ms): the next 15 stay there
        for (let i = 1; i <= 16; i++) await commit(s, [[oid, minpo(i)]]);
        assert.deepEqual(s.flushes, { inline: 0, threadPool: 16 });
        // the 16th since is timed inline
        await commit(s, [[oid, minpo(17)]]);
        assert.deepEqual(s.flushes, { inline: 1, threadPool: 16 });
        // fast, so the flushes stay inline; (were this process held up during that one, the next re-timing
        // comes 16 flushes later: at least two more inline in 32, whatever the machine does)
        for (let i = 18; i < 50; i++) await commit(s, [[oid, minpo(i)]]);
        assert.ok(s.flushes.inline >= 3, JSON.stringify(s.flushes));
        // not allowed: the pool, whatever the time
        s.mayFlushInline = () => false;
        const before = { ...s.flushes };
        await commit(s, [[oid, minpo(50)]]);
        assert.deepEqual(s.flushes, { inline: before.inline, threadPool: before.threadPool + 1 });
        assert.equal(minpoValue((await s.load(oid)).data), 50);
      } finally {
        await s.close();
      }
    });
  });

  it('close during a voted transaction waits for its flush and truncates it', async () => {
    await withTempDir(async (dir) => {
      const ctl = flushControl();
      const s = await open(dir, { io: ctl.io });
      const oid = await s.newOid();
      const tid = await commit(s, [[oid, minpo(1)]]);
      const size = s.getSize();
      ctl.hold();
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      await s.store(oid, tid, minpo(2), meta);
      await s.tpcVote(meta);
      const closing = s.close();
      await settle();
      ctl.release();
      await closing;
      assert.equal((await stat(join(dir, 'Data.fs'))).size, size);
    });
  });

  it('tpcAbort right after tpcBegin (not awaited) on a free lock releases it', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const meta = new TransactionMetaData();
        const begun = s.tpcBegin(meta);
        await s.tpcAbort(meta);
        await begun; // (the lock was free: the begin got it, and the abort released it)
        const oid = await s.newOid();
        // (would wait forever for the lock if the aborted transaction held it)
        await commit(s, [[oid, minpo(1)]]);
        assert.equal(minpoValue((await s.load(oid)).data), 1);
      } finally {
        await s.close();
      }
    });
  });
});

describe('FileStorage: transactions', () => {
  it('transactions waiting for the commit lock get it in order', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const oid = await s.newOid();
        const metas = [0, 1, 2, 3].map(() => new TransactionMetaData());
        const order: number[] = [];
        await s.tpcBegin(metas[0]);
        const begun = metas.slice(1).map((m, i) => s.tpcBegin(m).then(() => order.push(i + 1)));
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(order, [], 'they wait');
        await s.store(oid, z64, minpo(0), metas[0]);
        await s.tpcVote(metas[0]);
        let last = await s.tpcFinish(metas[0]);
        for (let i = 1; i < 4; i++) {
          await begun[i - 1];
          assert.deepEqual(order, [1, 2, 3].slice(0, i), 'the oldest waiter is served first');
          await s.store(oid, last, minpo(i), metas[i]);
          await s.tpcVote(metas[i]);
          const tid = await s.tpcFinish(metas[i]);
          assert.ok(u64(tid) > u64(last));
          last = tid;
        }
        assert.equal(minpoValue((await s.load(oid)).data), 3);
        assert.equal((await s.history(oid, 10)).length, 4);
      } finally {
        await s.close();
      }
    });
  });

  it('onCommitted runs with the commit visible, after the commit lock went (group commit)', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const oid = await s.newOid();
        const meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(oid, z64, minpo(5), meta);
        await s.tpcVote(meta);
        let seen: Promise<number> | null = null;
        const tid = await s.tpcFinish(meta, (t) => {
          assert.equal(hex(s.lastTransaction()), hex(t));
          // the next transaction could begin once this one's status was written, before its flush
          assert.equal(s.commitLock.locked, false);
          seen = s.load(oid).then((r) => minpoValue(r.data) as number);
        });
        assert.equal(await seen!, 5);
        assert.equal(s.commitLock.locked, false);
        assert.equal(hex((await s.load(oid)).serial), hex(tid));
      } finally {
        await s.close();
      }
    });
  });

  it('conflicts: store, deleteObject, checkCurrentSerialInTransaction; a resolver; the quota', async () => {
    await withTempDir(async (dir) => {
      const calls: string[] = [];
      const s = await open(dir, {
        conflictResolver: async (oid, committed, old, newData, committedData) => {
          calls.push(hex(oid));
          return minpo((minpoValue(newData) as number) + (minpoValue(committedData) as number));
        },
        quotaBytes: 50_000,
      });
      try {
        const [a, b] = [await s.newOid(), await s.newOid()];
        const t1 = await commit(s, [
          [a, minpo(1)],
          [b, minpo(10)],
        ]);
        const t2 = await commit(s, [[a, minpo(2)]]);
        let meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(a, t1, minpo(3), meta); // resolved: 3 + 2
        await assert.rejects(s.checkCurrentSerialInTransaction(a, t1, meta), (e: unknown) => {
          assert.ok(e instanceof ReadConflictError);
          assert.deepEqual(e.serials?.map(hex), [hex(t2), hex(t1)]);
          return true;
        });
        await s.checkCurrentSerialInTransaction(b, t1, meta);
        await assert.rejects(s.checkCurrentSerialInTransaction(p64(99), t1, meta), POSKeyError);
        await assert.rejects(s.deleteObject(a, t1, meta), (e: unknown) => {
          assert.ok(e instanceof ConflictError && !(e instanceof ReadConflictError));
          assert.deepEqual(e.serials?.map(hex), [hex(t2), hex(t1)]);
          return true;
        });
        await assert.rejects(s.deleteObject(p64(99), z64, meta), POSKeyError);
        assert.deepEqual((await s.tpcVote(meta)).map(hex), [hex(a)]);
        await s.tpcFinish(meta);
        assert.equal(minpoValue((await s.load(a)).data), 5);
        assert.deepEqual(calls, [hex(a)]);

        // no resolution for data the resolver refuses
        const s2 = s; // the same storage: a resolver that throws leaves the conflict
        meta = new TransactionMetaData();
        await s2.tpcBegin(meta);
        await assert.rejects(
          s2.store(a, t1, new Uint8Array([0x80, 0x03, 0x4e, 0x2e]), meta),
          (e: unknown) => {
            assert.ok(e instanceof ConflictError);
            assert.ok(e.data !== null);
            return true;
          },
        );
        await s2.tpcAbort(meta);

        // as ZODB: a record that starts past the quota (the first one may end past it)
        meta = new TransactionMetaData();
        await s.tpcBegin(meta);
        await s.store(b, t1, minpo(new Uint8Array(60_000)), meta);
        await assert.rejects(s.store(p64(7), z64, minpo(1), meta), FileStorageQuotaError);
        await s.tpcAbort(meta);
      } finally {
        await s.close();
      }
    });
  });

  it('2PC calls out of order or for another transaction are StorageTransactionErrors', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const meta = new TransactionMetaData();
        const other = new TransactionMetaData();
        await assert.rejects(s.store(p64(1), z64, minpo(1), meta), StorageTransactionError);
        await assert.rejects(s.tpcVote(meta), StorageTransactionError);
        await assert.rejects(s.tpcFinish(meta), StorageTransactionError);
        await s.tpcBegin(meta);
        await assert.rejects(s.tpcBegin(meta), StorageTransactionError);
        await assert.rejects(s.store(p64(1), z64, minpo(1), other), StorageTransactionError);
        await assert.rejects(s.tpcFinish(meta), StorageTransactionError, 'finish before vote');
        await s.store(p64(1), z64, minpo(1), meta);
        await s.tpcVote(meta);
        await assert.rejects(
          s.store(p64(2), z64, minpo(1), meta),
          StorageTransactionError,
          'store after vote',
        );
        await s.tpcAbort(other); // not ours: ignored
        await s.tpcFinish(meta);
        const t = new TransactionMetaData();
        await assert.rejects(s.tpcBegin(t, z64), StorageTransactionError, 'a tid not after the last');
        assert.equal(s.commitLock.locked, false);
        await assert.rejects(s.undo(new Uint8Array(3), t), StorageTransactionError);
        await s.tpcBegin(t);
        await assert.rejects(s.undo(utf8('AAAAAAAAAAE='), t), UndoError, 'no such transaction');
        await s.tpcAbort(t);
      } finally {
        await s.close();
      }
    });
  });

  it('restoreRecords fails as restore() does: outside or after the vote, an empty record, read-only', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const rec = (oid: number, data: Uint8Array | null): DataRecord => ({
          oid: p64(oid),
          tid: z64,
          data,
          dataTxn: null,
        });
        const meta = new TransactionMetaData();
        const both = async (records: DataRecord[], m: TransactionMetaData, what: string) => {
          const one = await s.restore(records[0].oid, z64, records[0].data, null, m).then(
            () => null,
            (e: Error) => e,
          );
          const bulk = await s.restoreRecords(records, m).then(
            () => null,
            (e: Error) => e,
          );
          assert.ok(one !== null && bulk !== null, `${what}: both fail`);
          assert.equal(bulk.constructor, one.constructor, what);
          assert.equal(bulk.message, one.message, what);
        };
        await both([rec(1, minpo(1))], meta, 'not in a transaction');
        await s.tpcBegin(meta, p64(5));
        await both([rec(1, new Uint8Array(0))], meta, 'an empty record');
        // records restored in bulk take the transaction's tid, and the oids count for newOid
        assert.deepEqual(await s.restoreRecords([rec(1, minpo(1)), rec(7, null)], meta), {
          records: 2,
          dataBytes: minpo(1).length + 8,
        });
        await s.tpcVote(meta);
        await both([rec(2, minpo(2))], meta, 'after the vote');
        await s.tpcFinish(meta);
        const loaded = await s.load(p64(1));
        assert.equal(hex(loaded.data), hex(minpo(1)));
        assert.equal(hex(loaded.serial), hex(p64(5)));
        await assert.rejects(s.load(p64(7)), POSKeyError);
        assert.deepEqual(await s.newOid(), p64(8));
      } finally {
        await s.close();
      }
      const r = await open(dir, { readOnly: true });
      try {
        const meta = new TransactionMetaData();
        await assert.rejects(s.restoreRecords([], meta), StorageError, 'closed');
        await assert.rejects(r.restoreRecords([], meta), ReadOnlyError);
      } finally {
        await r.close();
      }
    });
  });

  it('read-only: no lock, ReadOnlyError for writes; a second writer gets LockError', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const oid = await s.newOid();
        await commit(s, [[oid, minpo(1)]]);
        await assert.rejects(open(dir), LockError);
        const ro = await open(dir, { readOnly: true });
        try {
          assert.equal(ro.isReadOnly(), true);
          assert.equal(minpoValue((await ro.load(oid)).data), 1);
          await assert.rejects(ro.tpcBegin(new TransactionMetaData()), ReadOnlyError);
          await assert.rejects(ro.newOid(), ReadOnlyError);
          await assert.rejects(ro.store(oid, z64, minpo(1), new TransactionMetaData()), ReadOnlyError);
          await assert.rejects(
            ro.pack(Date.now() / 1000, () => []),
            ReadOnlyError,
          );
        } finally {
          await ro.close();
        }
        await assert.rejects(open(join(dir, 'nowhere'), { readOnly: true }));
        await assert.rejects(open(dir, { readOnly: true, create: true }), StorageError);
      } finally {
        await s.close();
      }
    });
  });

  it('close saves the index, aborts a transaction in progress; later calls throw', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      const oid = await s.newOid();
      const tid = await commit(s, [[oid, minpo(1)]]);
      const size = s.getSize();
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      await s.store(oid, tid, minpo(2), meta);
      await s.tpcVote(meta);
      await s.close();
      await s.close(); // again: nothing
      assert.equal((await stat(s.path)).size, size, 'the voted transaction is gone');
      assert.ok((await stat(s.path + '.index')).size > 0);
      await assert.rejects(s.load(oid), StorageError);
      await assert.rejects(s.tpcBegin(new TransactionMetaData()), StorageError);
      assert.throws(() => s.iterator());
      const again = await open(dir, { readOnly: true });
      try {
        assert.equal(minpoValue((await again.load(oid)).data), 1);
        assert.equal(again.len(), 1);
      } finally {
        await again.close();
      }
    });
  });

  it('an iterator sees the transactions committed when it was made, and reads records lazily', async () => {
    await withTempDir(async (dir) => {
      const s = await open(dir);
      try {
        const oid = await s.newOid();
        const t1 = await commit(s, [[oid, minpo(1)]]);
        const it = s.iterator();
        const t2 = await commit(s, [[oid, minpo(2)]]);
        const seen: string[] = [];
        for await (const t of it) seen.push(hex(t.tid));
        assert.deepEqual(seen, [hex(t1)]);
        const all: string[] = [];
        for await (const t of s.iterator(t2)) {
          all.push(hex(t.tid));
          const recs = [];
          for await (const r of t.records) recs.push(minpoValue(r.data!));
          assert.deepEqual(recs, [2]);
        }
        assert.deepEqual(all, [hex(t2)]);
        // an iterator left half-way is closed with the storage
        const half = s.iterator();
        await half.next();
      } finally {
        await s.close();
      }
    });
  });
});
