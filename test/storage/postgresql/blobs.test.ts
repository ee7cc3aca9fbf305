// PostgreSQLStorage's blobs (src/storage/postgresql/blobs.ts) on a private cluster, beside RelStorage 4.3 (the
// Python reference): one large object per revision in blob_chunk as RelStorage keeps them, the blob directory a
// cache (a revision missing there is downloaded), an aborted upload leaves nothing, undo copies a blob forward
// sharing its large object, and blobs RelStorage stored load through us byte-identical and ours through it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { dumps, Global } from '../../../src/pickle/index.js';
import { copyTransactions } from '../../../src/storage/copy.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { FileStorage } from '../../../src/storage/filestorage/index.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { PostgreSQLStorage } from '../../../src/storage/postgresql/index.js';
import {
  skipRelStorage,
  storageHistory,
  untilSeen,
  useRelStorageFixture,
  type Spec,
} from '../../helpers/relstorage.js';
import { startServer } from '../../helpers/server-fixture.js';
import { mappingRecord, ref, txnMeta, undoIds } from '../contract/helpers.js';

const sha1 = (d: Uint8Array): string => createHash('sha1').update(d).digest('hex');

/** A blob record as ZODB writes one: the class ZODB.blob.Blob, then the state None. */
const blobRecord = (): Uint8Array =>
  new Uint8Array(Buffer.concat([dumps(Global.of('ZODB.blob', 'Blob'), 3), dumps(null, 3)]));

/** `n` bytes of a fixed pattern (several of blobs.ts's 1 MiB pieces when n is large). */
function content(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) % 251;
  return b;
}

describe('PostgreSQLStorage blobs', { skip: skipRelStorage }, () => {
  const fx = useRelStorageFixture();
  const { rs } = fx;
  const dirs: string[] = [];
  const opened: PostgreSQLStorage[] = [];
  after(async () => {
    for (const s of opened) await s.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function blobDir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'zeo-ts-pg-blobs-'));
    dirs.push(d);
    return d;
  }

  async function open(dsn: string, dir?: string): Promise<PostgreSQLStorage> {
    const s = await PostgreSQLStorage.open({ dsn, blobDir: dir ?? (await blobDir()), pollInterval: 0.05 });
    opened.push(s);
    return s;
  }

  async function sql<R extends pg.QueryResultRow>(dsn: string, text: string, values: unknown[] = []) {
    const c = new pg.Client({ ...fx.cluster.connection(dsn.match(/dbname=(\w+)/)![1]) });
    await c.connect();
    try {
      return (await c.query<R>(text, values)).rows;
    } finally {
      await c.end();
    }
  }

  /** A new database with RelStorage's schema and root. */
  async function database(): Promise<string> {
    const { dsn } = await fx.database('blobs');
    await rs.create(dsn);
    return dsn;
  }

  /** Stores a blob of `bytes` for `oid` (and the root pointing to it under `key`) in one transaction. */
  async function storeBlob(
    s: PostgreSQLStorage,
    oid: Oid,
    serial: Tid,
    bytes: Uint8Array,
    key = 'b',
  ): Promise<{ tid: Tid; upload: string }> {
    const upload = join(s.temporaryDirectory(), `upload-${idHex(oid)}-${bytes.length}`);
    await writeFile(upload, bytes);
    const root = await s.load(z64);
    const t = txnMeta({ description: `blob ${key}` });
    await s.tpcBegin(t);
    await s.store(z64, root.serial, mappingRecord([[key, ref(oid, 'ZODB.blob', 'Blob')]]), t);
    await s.storeBlob(oid, serial, blobRecord(), upload, t);
    await s.tpcVote(t);
    return { tid: await s.tpcFinish(t), upload };
  }

  it('one large object per revision, as RelStorage keeps them; loads from the cache, and downloaded into an empty one', async () => {
    const dsn = await database();
    const s = await open(dsn);
    const oid = await s.newOid();
    const big = content((5 << 20) / 2, 7); // 2.5 MiB: three pieces each way
    const { tid, upload } = await storeBlob(s, oid, z64, big);
    await assert.rejects(stat(upload), { code: 'ENOENT' }, 'storeBlob took the file');
    const rows = await sql<{ chunk_num: string; size: string; sha: string }>(
      dsn,
      `SELECT chunk_num, length(lo_get(chunk))::text AS size, encode(sha256(lo_get(chunk)), 'hex') AS sha
         FROM blob_chunk WHERE zoid = $1 AND tid = $2`,
      [u64(oid).toString(), u64(tid).toString()],
    );
    assert.deepEqual(rows, [
      {
        chunk_num: '0',
        size: String(big.length),
        sha: createHash('sha256').update(big).digest('hex'),
      },
    ]);
    const cached = await s.loadBlob(oid, tid);
    assert.ok(cached.startsWith(s.blobDirectoryOf(oid)));
    assert.equal(sha1(await readFile(cached)), sha1(big));

    // another storage with an empty cache downloads it
    const other = await open(dsn);
    const downloaded = await other.loadBlob(oid, tid);
    assert.notEqual(downloaded, cached);
    assert.equal(sha1(await readFile(downloaded)), sha1(big));
    // two loads at once of a revision not yet cached: one download, the same file
    const third = await open(dsn);
    const [a, b] = await Promise.all([third.loadBlob(oid, tid), third.loadBlob(oid, tid)]);
    assert.equal(a, b);
    assert.equal(sha1(await readFile(a)), sha1(big));
    assert.deepEqual(await readdir(third.temporaryDirectory()), [], 'no download left behind');

    // no blob: the root's record, a tid that is not the blob's, an empty blob
    await assert.rejects(other.loadBlob(z64, tid), POSKeyError);
    await assert.rejects(other.loadBlob(oid, p64(u64(tid) - 1n)), POSKeyError);
    const empty = await storeBlob(s, oid, tid, new Uint8Array(0));
    assert.equal((await readFile(await other.loadBlob(oid, empty.tid))).length, 0);
  });

  it('an aborted transaction leaves no large object and no file', async () => {
    const dsn = await database();
    const s = await open(dsn);
    const los = async () =>
      (await sql<{ n: string }>(dsn, 'SELECT count(*) AS n FROM pg_largeobject_metadata'))[0].n;
    const before = await los();
    const oid = await s.newOid();
    const upload = join(s.temporaryDirectory(), 'upload');
    await writeFile(upload, 'never committed');
    const t = txnMeta();
    await s.tpcBegin(t);
    await s.storeBlob(oid, z64, blobRecord(), upload, t);
    // (the vote writes the large object in its database transaction, which the abort rolls back)
    await s.tpcVote(t);
    await s.tpcAbort(t);
    assert.equal(await los(), before);
    assert.deepEqual(await readdir(s.temporaryDirectory()), []);
    await assert.rejects(s.loadBlob(oid, s.lastTransaction()), POSKeyError);
    // a later store of the same oid in a transaction drops the blob it held
    await writeFile(upload, 'replaced');
    const t2 = txnMeta();
    await s.tpcBegin(t2);
    await s.storeBlob(oid, z64, blobRecord(), upload, t2);
    await s.store(oid, z64, mappingRecord([]), t2);
    await s.tpcVote(t2);
    const tid = await s.tpcFinish(t2);
    assert.equal(await los(), before);
    await assert.rejects(s.loadBlob(oid, tid), POSKeyError);
    assert.deepEqual(await readdir(s.temporaryDirectory()), []);
  });

  it('undo of a blob change brings the earlier blob back, sharing its large object; RelStorage reads it', async () => {
    const dsn = await database();
    const s = await open(dsn);
    const oid = await s.newOid();
    const first = await storeBlob(s, oid, z64, Buffer.from('first'));
    await storeBlob(s, oid, first.tid, Buffer.from('second'));
    const [id] = await undoIds(s);
    const t = txnMeta({ description: 'undo' });
    await s.tpcBegin(t);
    const undone = await s.undo(id, t);
    await s.tpcVote(t);
    const tid = await s.tpcFinish(t);
    assert.deepEqual(undone.oids.map(idHex).sort(), [idHex(z64), idHex(oid)]);
    assert.equal(await readFile(await s.loadBlob(oid, tid), 'utf8'), 'first');
    const chunks = await sql<{ tid: string; chunk: string }>(
      dsn,
      'SELECT tid, chunk FROM blob_chunk WHERE zoid = $1 ORDER BY tid',
      [u64(oid).toString()],
    );
    assert.equal(chunks.length, 3);
    assert.equal(chunks[2].tid, u64(tid).toString());
    assert.equal(chunks[2].chunk, chunks[0].chunk, 'the undo shares the first revision large object');
    // RelStorage sees the same history, blobs included, and the blob through the root
    assert.deepEqual(await rs.history(dsn), await storageHistory(s));
    const tree = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.deepEqual(tree.$mapping.b, { $blob: Buffer.from('first').toString('hex') });
  });

  it("RelStorage's blobs load through us byte-identical; ours through RelStorage", async () => {
    const dsn = await database();
    const theirs = content(1_500_000, 3);
    const tids = await rs.commit(dsn, [
      { description: 'their blob', set: [[['theirs'], { $blob: theirs.toString('hex') }]] },
      { description: 'an empty one', set: [[['empty'], { $blob: '' }]] },
    ]);
    const s = await open(dsn);
    await untilSeen(s, tids[1]);
    const history = await storageHistory(s);
    assert.deepEqual(history, await rs.history(dsn));
    const blobs = history.flatMap((t) => t.records).filter((r) => r.blob !== null);
    assert.deepEqual(
      blobs.map((r) => r.blob),
      [sha1(theirs), sha1(new Uint8Array(0))],
    );

    const mine = content(1_200_000, 11);
    const oid = await s.newOid();
    const root = await s.load(z64);
    const upload = join(s.temporaryDirectory(), 'mine');
    await writeFile(upload, mine);
    // the root keeps RelStorage's entries (its state read back as RelStorage wrote it is not needed here)
    const t = txnMeta({ description: 'our blob' });
    await s.tpcBegin(t);
    await s.store(z64, root.serial, mappingRecord([['mine', ref(oid, 'ZODB.blob', 'Blob')]]), t);
    await s.storeBlob(oid, z64, blobRecord(), upload, t);
    await s.tpcVote(t);
    await s.tpcFinish(t);
    const tree = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.deepEqual(tree, { $mapping: { mine: { $blob: mine.toString('hex') } } });
    assert.deepEqual(await rs.history(dsn), await storageHistory(s));
  });

  it('copied from a FileStorage with blobs (restoreBlob) and back: the same history and blob files', async () => {
    const dir = await blobDir();
    const fs = await FileStorage.open(join(dir, 'Data.fs'), { blobDir: join(dir, 'fs-blobs') });
    try {
      const oid = await fs.newOid();
      let serial = z64;
      for (const [i, text] of ['one', 'two', 'three'].entries()) {
        const upload = join(fs.temporaryDirectory(), `u${i}`);
        await writeFile(upload, content(300_000 + i, i));
        const t = txnMeta({ description: text });
        await fs.tpcBegin(t);
        await fs.store(
          z64,
          serial === z64 ? z64 : (await fs.load(z64)).serial,
          mappingRecord([[text, 1]]),
          t,
        );
        await fs.storeBlob(oid, serial, blobRecord(), upload, t);
        await fs.tpcVote(t);
        serial = await fs.tpcFinish(t);
      }
      const { dsn } = await fx.database('blobcopy');
      const s = await open(dsn);
      assert.equal(await copyTransactions(fs, s), 3);
      const history = await storageHistory(fs);
      assert.equal(history.flatMap((t) => t.records).filter((r) => r.blob !== null).length, 3);
      assert.deepEqual(await storageHistory(s), history);
      // RelStorage reads the blobs we restored, and a Data.fs copied back has them too
      assert.deepEqual(await rs.history(dsn), history);
      const back = await FileStorage.open(join(dir, 'Back.fs'), { blobDir: join(dir, 'back-blobs') });
      try {
        assert.equal(await copyTransactions(s, back), 3);
        assert.deepEqual(await storageHistory(back), history);
      } finally {
        await back.close();
      }
    } finally {
      await fs.close();
    }
  });

  it('through zeo serve: a Python ZEO client stores blobs, undoes a change, and another reads the blob back', async () => {
    const dsn = await database();
    const s = await PostgreSQLStorage.open({ dsn, blobDir: await blobDir(), pollInterval: 0.05 });
    const server = await startServer({ opened: [{ name: '1', storage: s }] });
    try {
      const got = await rs.oracle.json<{ read: number; same: boolean; log: string[]; pack: boolean }>(
        PY_ZEO_BLOBS,
        undefined,
        { addr: Object.values(server.address as { host: string; port: number }) },
      );
      assert.deepEqual(got, { read: 500_000, same: true, log: ['undo', 'second', 'first'], pack: true });
    } finally {
      await server.stop();
    }
    // and RelStorage reads what the ZEO client wrote
    const tree = (await rs.tree(dsn)) as { $mapping: Record<string, { $blob: string }> };
    assert.equal(tree.$mapping.b.$blob, Buffer.from('first'.repeat(100_000)).toString('hex'));
  });
});

/** A Python ZEO client (its own blob cache) on zeo serve: blobs, undo through DB.undo, then a second reads. */
const PY_ZEO_BLOBS = `
import shutil, tempfile
import transaction, ZEO
from ZODB.blob import Blob
addr = tuple(args['addr'])
tmp = tempfile.mkdtemp()
try:
    db = ZEO.DB(addr, blob_dir=tmp + '/1', shared_blob_dir=False, wait_timeout=30)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    root = conn.root()
    b = Blob()
    with b.open('w') as f:
        f.write(b'first' * 100000)
    root['b'] = b
    tm.get().note('first')
    tm.commit()
    with root['b'].open('w') as f:
        f.write(b'second')
    tm.get().note('second')
    tm.commit()
    db.undo(db.undoLog(0, 1)[0]['id'], tm.get())
    tm.get().note('undo')
    tm.commit()
    log = [e['description'] if isinstance(e['description'], str) else e['description'].decode()
           for e in db.undoLog(0, 3)]
    conn.close()
    db.close()
    db2 = ZEO.DB(addr, blob_dir=tmp + '/2', shared_blob_dir=False, wait_timeout=30)
    c2 = db2.open()
    with c2.root()['b'].open() as f:
        data = f.read()
    c2.close()
    db2.pack()
    c3 = db2.open()
    with c3.root()['b'].open() as f:
        packed = f.read() == data
    c3.close()
    db2.close()
    result = dict(read=len(data), same=data == b'first' * 100000, log=log, pack=packed)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
`;
