// packPostgreSQL against RelStorage 4.3's own pack (the oracle): RelStorage writes a database (history, garbage,
// references through PersistentMappings and a BTree, a reference from an old revision to an object unlinked
// later, an object unreachable at the pack time and linked again after it, blobs, an undone creation), which is
// copied (CREATE DATABASE ... TEMPLATE); RelStorage packs one copy, packPostgreSQL the other, at the same pack
// tid, and the rows left must be the same; then RelStorage reads both copies (every reachable object, and
// loadBefore of every oid after each transaction from the pack time on) and must read the same.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { referencesf } from '../../../src/pickle/record.js';
import { StorageError } from '../../../src/storage/errors.js';
import { packPostgreSQL, packTuning } from '../../../src/storage/postgresql/pack.js';
import { interopDisabled, oraclePython, repoRoot } from '../../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { waitUntil } from '../../helpers/wait.js';

const run = promisify(execFile);
const script = resolve(repoRoot, 'test/fixtures/python/relstorage_pack.py');
const skip = skipPostgres || (interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false);

describe("packPostgreSQL leaves what RelStorage 4.3's pack leaves", { skip, timeout: 180_000 }, () => {
  let cluster: PostgresCluster;
  let blobDir: string;
  let built: { tids: string[]; pack: string; mid: string };
  let serial = 0;

  const dsn = (db: string): string =>
    `dbname=${db} user=${cluster.user} host=${cluster.socketDir} port=${cluster.port}`;
  async function python(...args: string[]): Promise<string> {
    const { stdout } = await run(oraclePython(), [script, ...args], { maxBuffer: 64 << 20, timeout: 60_000 });
    return stdout;
  }
  async function admin(sql: string): Promise<void> {
    const c = new pg.Client(cluster.connection());
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }
  /** a new database copied from the one RelStorage wrote */
  async function copy(): Promise<string> {
    const name = `copy${++serial}`;
    await admin(`CREATE DATABASE ${name} TEMPLATE model`);
    return name;
  }
  async function withPool<T>(db: string, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
    const pool = new pg.Pool({ ...cluster.connection(db), max: 3 });
    try {
      return await fn(pool);
    } finally {
      await pool.end();
    }
  }
  /** the rows a pack leaves, large objects' contents included */
  async function rows(db: string): Promise<Record<string, unknown[]>> {
    return withPool(db, async (pool) => {
      const q = async (sql: string): Promise<unknown[]> =>
        (await pool.query<Record<string, unknown>>(sql)).rows;
      return {
        transaction: await q(
          'SELECT tid, packed, is_empty, username, description, extension FROM "transaction" ORDER BY tid',
        ),
        object_state: await q(
          'SELECT zoid, tid, prev_tid, md5, state_size, state FROM object_state ORDER BY zoid, tid',
        ),
        current_object: await q('SELECT zoid, tid FROM current_object ORDER BY zoid'),
        blob_chunk: await q(
          'SELECT zoid, tid, chunk_num, chunk, lo_get(chunk) AS data FROM blob_chunk ORDER BY zoid, tid, chunk_num',
        ),
        large_objects: await q('SELECT oid FROM pg_largeobject_metadata ORDER BY oid'),
        object_ref: await q('SELECT zoid, tid, to_zoid FROM object_ref ORDER BY tid, zoid, to_zoid'),
        object_refs_added: await q('SELECT tid FROM object_refs_added ORDER BY tid'),
        pack_tables: await q(
          'SELECT (SELECT count(*) FROM pack_object) AS o, (SELECT count(*) FROM pack_state) AS s, ' +
            '(SELECT count(*) FROM pack_state_tid) AS t',
        ),
      };
    });
  }
  async function ours(db: string, tid: string, gc: boolean, log?: (m: string) => void): Promise<void> {
    await withPool(db, (pool) => packPostgreSQL(pool, BigInt(tid), referencesf, { gc, log }));
  }
  async function theirs(db: string, tid: string, gc: boolean): Promise<void> {
    await python('pack', dsn(db), blobDir, tid, gc ? '1' : '0');
  }
  /** RelStorage reads both databases (one Python process) and must read the same */
  async function sameReads(a: string, b: string, tids: string[]): Promise<void> {
    const [fromA, fromB] = JSON.parse(await python('read', blobDir, tids.join(','), dsn(a), dsn(b))) as [
      { reachable: Record<string, unknown> },
      unknown,
    ];
    assert.deepEqual(fromB, fromA);
    assert.ok(Object.keys(fromA.reachable).length > 100, 'the tree and its values were read');
  }
  /** a transaction row after the last one, as a commit adds it (the caller holds the commit lock) */
  async function newTransaction(c: pg.Client): Promise<string> {
    const tid = (await c.query<{ tid: string }>('SELECT max(tid) + 1 AS tid FROM "transaction"')).rows[0].tid;
    await c.query(
      `INSERT INTO "transaction" (tid, username, description, extension) VALUES ($1, '', '', '')`,
      [tid],
    );
    return tid;
  }
  const from = (tid: string): string[] => built.tids.filter((t) => BigInt(t) >= BigInt(tid));

  before(async () => {
    cluster = await startPostgres();
    blobDir = mkdtempSync(join(tmpdir(), 'zeo-ts-pgpack-blobs-'));
    await admin('CREATE DATABASE model');
    const out = JSON.parse(await python('build', dsn('model'), blobDir)) as { pack: string; mid: string };
    // every transaction, the 'initial database creation' RelStorage makes before the built ones included
    const tids = await withPool('model', (pool) =>
      pool.query<{ tid: string }>('SELECT tid FROM "transaction" WHERE tid > 0 ORDER BY tid'),
    );
    built = { tids: tids.rows.map((r) => r.tid), pack: out.pack, mid: out.mid };
  });
  after(async () => {
    await cluster?.stop();
    if (blobDir) rmSync(blobDir, { recursive: true, force: true });
  });

  for (const gc of [true, false]) {
    it(`at the same pack tid, ${gc ? 'with' : 'without'} gc: the same rows, and RelStorage reads the same`, async () => {
      const a = await copy();
      const b = await copy();
      const before = await rows(b);
      await theirs(a, built.pack, gc);
      const logs: string[] = [];
      await ours(b, built.pack, gc, (m) => logs.push(m));
      const left = await rows(b);
      assert.deepEqual(left, await rows(a));
      // the pack did remove something, and kept the history after the pack tid
      assert.ok(left.object_state.length < before.object_state.length, 'states were removed');
      assert.ok(left.transaction.some((t) => (t as { packed: boolean }).packed));
      if (gc) assert.ok(left.large_objects.length < before.large_objects.length, 'a garbage blob went');
      assert.ok(
        logs.some((m) => m.startsWith('pack: batch 1:')),
        logs.join('\n'),
      );
      await sameReads(a, b, from(built.pack));
    });
  }

  it('packing twice (an earlier tid, then a later one), with gc, the second by us or by RelStorage: the same rows', async () => {
    const a = await copy();
    const b = await copy();
    const c = await copy();
    await theirs(a, built.mid, true);
    await ours(b, built.mid, true);
    await ours(c, built.mid, true);
    assert.deepEqual(await rows(b), await rows(a));
    await theirs(a, built.pack, true);
    await ours(b, built.pack, true);
    // RelStorage goes on from our pack (its object_ref and object_refs_added) as from its own
    await theirs(c, built.pack, true);
    const left = await rows(a);
    assert.deepEqual(await rows(b), left);
    assert.deepEqual(await rows(c), left);
    await sameReads(a, b, from(built.mid));
  });

  it('a pack tid before any transaction packs nothing, as RelStorage', async () => {
    const a = await copy();
    const b = await copy();
    const early = (BigInt(built.tids[0]) - 1n).toString();
    const model = await rows('model');
    await theirs(a, early, true);
    const logs: string[] = [];
    await ours(b, early, true, (m) => logs.push(m));
    assert.deepEqual(await rows(b), await rows(a));
    assert.deepEqual(await rows(b), model);
    assert.ok(
      logs.some((m) => m.includes('nothing to pack')),
      logs.join('\n'),
    );
  });

  it('refuses to run while another pack holds the pack lock', async () => {
    const db = await copy();
    const other = new pg.Client(cluster.connection(db));
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock(-2)');
      await assert.rejects(ours(db, built.pack, true), (e: unknown) => {
        assert.ok(e instanceof StorageError);
        assert.match(e.message, /pack or undo operation is in progress/);
        return true;
      });
      await other.query('SELECT pg_advisory_unlock(-2)');
      await ours(db, built.pack, true);
    } finally {
      await other.end();
    }
  });

  it('a state it cannot read references from: a clear error, nothing removed, the pack lock free', async () => {
    const db = await copy();
    const c = new pg.Client(cluster.connection(db));
    await c.connect();
    try {
      // a transaction after the pack tid whose one state is not a pickle
      const tid = await newTransaction(c);
      await c.query(
        `INSERT INTO object_state (zoid, tid, prev_tid, md5, state_size, state)
         VALUES (999, $1, 0, md5('not a pickle'), 12, 'not a pickle')`,
        [tid],
      );
      await c.query('INSERT INTO current_object (zoid, tid) VALUES (999, $1)', [tid]);
      const { object_state, current_object, transaction, blob_chunk } = await rows(db);
      await assert.rejects(ours(db, built.pack, true), (e: unknown) => {
        assert.ok(e instanceof StorageError);
        assert.match(e.message, new RegExp(`can't unpickle object 999 in transaction ${tid}`));
        return true;
      });
      const left = await rows(db);
      assert.deepEqual(
        { object_state, current_object, transaction, blob_chunk },
        {
          object_state: left.object_state,
          current_object: left.current_object,
          transaction: left.transaction,
          blob_chunk: left.blob_chunk,
        },
      );
      const lock = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(-2) AS ok');
      assert.deepEqual(lock.rows, [{ ok: true }]);
      await c.query('SELECT pg_advisory_unlock(-2)');
      // without gc no reference is read: that pack goes through
      await ours(db, built.pack, false);
      assert.ok((await rows(db)).object_state.length < object_state.length);
    } finally {
      await c.end();
    }
  });

  it('commits made while it runs survive, and do not wait for the whole pack', async (t) => {
    const saved = { ...packTuning };
    t.after(() => Object.assign(packTuning, saved));
    packTuning.batchTransactions = 2; // several batches
    const db = await copy();
    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client(cluster.connection(db));
      await c.connect();
      // a commit lock the pack kept would fail the test with a lock timeout, not hang it
      await c.query("SET lock_timeout = '20s'");
      return c;
    };
    // a commit of a new revision of the root, as RelStorage commits (commit lock, tid after the last one)
    const begin = async (c: pg.Client): Promise<void> => {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock(-1)');
    };
    const finish = async (c: pg.Client): Promise<string> => {
      const tid = await newTransaction(c);
      await c.query(
        `INSERT INTO object_state (zoid, tid, prev_tid, md5, state_size, state)
         SELECT 0, $1, tid, md5, state_size, state FROM object_state
         WHERE zoid = 0 AND tid = (SELECT tid FROM current_object WHERE zoid = 0)`,
        [tid],
      );
      await c.query('UPDATE current_object SET tid = $1 WHERE zoid = 0', [tid]);
      await c.query('COMMIT');
      return tid;
    };
    const committer = await connect();
    const blocker = await connect();
    try {
      // a reader that keeps one transaction row the pack empties from being deleted: the pack stops in its
      // cleanup, after its batches
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM "transaction" WHERE tid = $1 FOR KEY SHARE', [built.tids[0]]);
      // a commit holding the commit lock while the pack starts: pre-pack does not need it
      await begin(committer);
      const logs: string[] = [];
      let settled = false;
      const packing = ours(db, built.pack, true, (m) => logs.push(m)).finally(() => (settled = true));
      await waitUntil(
        () => logs.some((m) => m.startsWith('pre_pack: will remove')),
        () => logs.join('\n'),
      );
      const first = await finish(committer);
      await waitUntil(
        () => logs.some((m) => m.startsWith('pack: batch 3:')),
        () => logs.join('\n'),
      );
      // between or after the batches: a commit goes through while the pack has not finished
      await begin(committer);
      const second = await finish(committer);
      assert.equal(settled, false);
      await blocker.query('COMMIT');
      await packing;
      const batches = logs.filter((m) => m.startsWith('pack: batch ')).length;
      assert.ok(batches >= 3, logs.join('\n'));
      const left = await committer.query<{ tid: string; packed: boolean }>(
        'SELECT tid, packed FROM "transaction" WHERE tid = ANY($1::bigint[]) ORDER BY tid',
        [[first, second]],
      );
      assert.deepEqual(left.rows, [
        { tid: first, packed: false },
        { tid: second, packed: false },
      ]);
      const root = await committer.query<{ tid: string; prev_tid: string }>(
        'SELECT tid, prev_tid FROM object_state WHERE zoid = 0 AND tid >= $1 ORDER BY tid',
        [first],
      );
      assert.deepEqual(root.rows, [
        { tid: first, prev_tid: built.tids[built.tids.length - 1] },
        { tid: second, prev_tid: first },
      ]);
      const current = await committer.query('SELECT tid FROM current_object WHERE zoid = 0');
      assert.deepEqual(current.rows, [{ tid: second }]);
    } finally {
      await committer.end();
      await blocker.end();
    }
  });
});
