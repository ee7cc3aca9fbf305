// PostgreSQLStorage: the storage contract suite on a private PostgreSQL cluster (a database per test
// directory), then what is particular to it: tids after the last one when the clock is behind, a commit
// whose connection is killed mid-vote leaves no lock, reopening sees the data, schema checks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ConflictError, POSKeyError, ReadConflictError, StorageError } from '../../../src/storage/errors.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import {
  PostgreSQLStorage,
  StorageDisconnectedError,
  UnableToAcquireCommitLockError,
  UnableToLockRowsToReadCurrentError,
} from '../../../src/storage/postgresql/index.js';
import { installSchema, zapAll } from '../../../src/storage/postgresql/schema.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { copyTransactions } from '../../../src/storage/copy.js';
import { MemoryStorage } from '../../../src/storage/memory/memory-storage.js';
import { storageContractTests, type StorageFactory } from '../contract/index.js';
import { dostore, minpo, minpoValue } from '../contract/helpers.js';
import { interopDisabled, oraclePython } from '../../helpers/oracle.js';
import { waitUntil } from '../../helpers/wait.js';

let cluster: PostgresCluster;
let admin: pg.Client;
/** a database with the schema installed, copied for each test (CREATE DATABASE ... TEMPLATE) */
const TEMPLATE = 'zeo_template';

/**
 * The contract tests' databases: each test directory gets one, emptied with zapAll when the test is done and
 * kept for a later test (creating a database costs 200-300 ms on a busy machine, emptying one a few).
 */
const databaseOfDir = new Map<string, string>();
const emptyDatabases: string[] = [];
let databases = 0;

async function databaseFor(dir: string): Promise<string> {
  let database = databaseOfDir.get(dir);
  if (!database) {
    database = emptyDatabases.pop();
    if (!database) {
      database = `contract_${++databases}`;
      await createDatabase(database);
    }
    databaseOfDir.set(dir, database);
  }
  return database;
}

function dsnOf(database: string): string {
  return `host=${cluster.socketDir} port=${cluster.port} user=${cluster.user} dbname=${database}`;
}

async function createDatabase(name: string, template = TEMPLATE): Promise<void> {
  const r = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  // (FILE_COPY: faster than WAL_LOG for a small template)
  if (r.rowCount === 0) await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template} STRATEGY FILE_COPY`);
}

async function dropDatabase(name: string): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** a client of `database` for a test's own SQL (ended by the caller) */
async function sqlClient(database: string): Promise<pg.Client> {
  const c = new pg.Client(cluster.connection(database));
  await c.connect();
  return c;
}

const factory: StorageFactory = {
  async open({ dir, readOnly, resolver }) {
    const database = await databaseFor(dir);
    return PostgreSQLStorage.open({
      dsn: dsnOf(database),
      name: `PostgreSQLStorage(${database})`,
      readOnly,
      resolver,
      poolSize: 4,
      commitLockTimeout: 5,
      blobDir: join(dir, 'blobs'),
    });
  },
  async destroy(dir) {
    const database = databaseOfDir.get(dir);
    if (!database) return;
    databaseOfDir.delete(dir);
    const c = await sqlClient(database);
    try {
      await zapAll(c);
    } finally {
      await c.end();
    }
    emptyDatabases.push(database);
  },
  persistent: true,
  supportsUndo: true,
  supportsPack: true,
  supportsPackWithoutGc: true,
  packRemovesHistoryOfObjectsChangedLater: false,
  backPointers: false,
  supportsBlobs: true,
  supportsIterator: true,
  supportsRestore: true,
  supportsDeleteObject: true,
  timeout: 30_000,
};

describe('PostgreSQLStorage', { skip: skipPostgres }, () => {
  before(async () => {
    cluster = await startPostgres();
    admin = new pg.Client(cluster.connection('postgres'));
    await admin.connect();
    await admin.query(`CREATE DATABASE ${TEMPLATE}`);
    const c = await sqlClient(TEMPLATE);
    await installSchema(c);
    await c.end();
  });
  after(async () => {
    await admin?.end();
    await cluster?.stop();
  });

  storageContractTests('PostgreSQLStorage', factory);

  describe('PostgreSQLStorage specifics', () => {
    let n = 0;
    /** a new database with the schema, and storages on it closed after the test */
    async function fresh(t: { after: (fn: () => Promise<void>) => void }): Promise<{
      database: string;
      open: (extra?: Partial<Parameters<typeof PostgreSQLStorage.open>[0]>) => Promise<PostgreSQLStorage>;
    }> {
      const database = `spec_${process.pid}_${++n}`;
      await createDatabase(database);
      const opened: PostgreSQLStorage[] = [];
      t.after(async () => {
        for (const s of opened) await s.close();
        await dropDatabase(database);
      });
      return {
        database,
        async open(extra = {}) {
          const s = await PostgreSQLStorage.open({ dsn: dsnOf(database), poolSize: 3, ...extra });
          opened.push(s);
          return s;
        },
      };
    }

    /** two storages on a fresh database; `a` committed `oid` at tid1, then stored it again and voted (ta) */
    async function votedElsewhere(t: { after: (fn: () => Promise<void>) => void }) {
      const { open } = await fresh(t);
      const a = await open();
      const b = await open();
      const oid = await a.newOid();
      const tid1 = await dostore(a, { oid, data: 1 });
      const ta = new TransactionMetaData();
      await a.tpcBegin(ta);
      await a.store(oid, tid1, minpo(2), ta);
      await a.tpcVote(ta);
      return { a, b, oid, tid1, ta };
    }

    it('writes what RelStorage writes: the transaction row, prev_tid, md5, current_object; oids 16 per nextval', async (t) => {
      const { database, open } = await fresh(t);
      const s = await open();
      const oid = await s.newOid();
      assert.equal(idHex(oid), '0000000000000001', 'the first oid of the range of nextval 1');
      const tid1 = await dostore(s, { oid, data: 1, user: 'u', description: 'd' });
      const tid2 = await dostore(s, { oid, revid: tid1, data: 2 });
      for (let i = 0; i < 15; i++) await s.newOid();
      const c = await sqlClient(database);
      try {
        const rows = (
          await c.query<Record<'zoid' | 'tid' | 'prev_tid' | 'md5' | 'state_size' | 'real_md5', string>>(
            `SELECT zoid, tid, prev_tid, md5, state_size, md5(state) AS real_md5 FROM object_state ORDER BY tid`,
          )
        ).rows;
        assert.deepEqual(
          rows.map((r) => [r.zoid, r.tid, r.prev_tid, r.md5, Number(r.state_size)]),
          [
            ['1', u64(tid1).toString(), '0', rows[0].real_md5, minpo(1).length],
            ['1', u64(tid2).toString(), u64(tid1).toString(), rows[1].real_md5, minpo(2).length],
          ],
        );
        const cur = (await c.query('SELECT zoid, tid FROM current_object')).rows;
        assert.deepEqual(cur, [{ zoid: '1', tid: u64(tid2).toString() }]);
        const txn = (
          await c.query<{ username: Buffer; description: Buffer; packed: boolean }>(
            'SELECT username, description, packed FROM transaction WHERE tid = $1',
            [u64(tid1).toString()],
          )
        ).rows[0];
        assert.equal(txn.username.toString(), 'u');
        assert.equal(txn.description.toString(), 'd');
        assert.equal(txn.packed, false);
        // 16 oids handed out from nextval 1 (1..16), the 17th from nextval 2
        assert.equal(idHex(await s.newOid()), '0000000000000011');
        const seq = await c.query<{ last_value: string }>('SELECT last_value FROM zoid_seq');
        assert.equal(seq.rows[0].last_value, '2');
      } finally {
        await c.end();
      }
    });

    it('a tid comes after the last one even when the clock is behind it (max(tid) + 1)', async (t) => {
      const { database, open } = await fresh(t);
      const s = await open();
      const future = u64(await dostore(s, { data: 1 })) + (1n << 40n); // some days ahead
      const c = await sqlClient(database);
      await c.query(`INSERT INTO transaction (tid, username, description) VALUES ($1, '', '')`, [
        future.toString(),
      ]);
      await c.end();
      const tid = await dostore(s, { data: 2 });
      assert.equal(u64(tid), future + 1n);
      assert.equal(u64(await dostore(s, { data: 3 })), future + 2n);
      assert.equal(idHex(s.lastTransaction()), idHex(p64(future + 2n)));
    });

    it('a commit whose connection is killed mid-vote fails as transient, leaves no lock, and the next commit works', async (t) => {
      const { database, open } = await fresh(t);
      const s = await open();
      const oid = await s.newOid();
      const tid1 = await dostore(s, { oid, data: 1 });
      const txn = new TransactionMetaData();
      await s.tpcBegin(txn);
      await s.store(oid, tid1, minpo(2), txn);
      await s.tpcVote(txn);
      const c = await sqlClient(database);
      try {
        const locks = async (): Promise<number> =>
          Number(
            (await c.query<{ n: string }>(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'`))
              .rows[0].n,
          );
        assert.equal(await locks(), 2, 'the commit lock and the object lock are held after the vote');
        const killed = await c.query(
          // (waits up to 5 s for the backend to be gone)
          `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
            WHERE datname = $1 AND state = 'idle in transaction' AND pid <> pg_backend_pid()`,
          [database],
        );
        assert.equal(killed.rowCount, 1);
        await assert.rejects(s.tpcFinish(txn), StorageDisconnectedError);
        await s.tpcAbort(txn);
        assert.equal(await locks(), 0, 'no lock is left behind');
      } finally {
        await c.end();
      }
      assert.equal(minpoValue((await s.load(oid)).data), 1, 'the killed commit wrote nothing');
      const tid3 = await dostore(s, { oid, revid: tid1, data: 3 });
      assert.equal(minpoValue((await s.load(oid)).data), 3);
      assert.equal(idHex(s.lastTransaction()), idHex(tid3));
    });

    it('the commit lock held elsewhere: UnableToAcquireCommitLockError after commitLockTimeout, and abort', async (t) => {
      const { database, open } = await fresh(t);
      const s = await open({ commitLockTimeout: 0.2 });
      const c = await sqlClient(database);
      try {
        await c.query('SELECT pg_advisory_lock(-1)');
        const txn = new TransactionMetaData();
        await s.tpcBegin(txn);
        await s.store(await s.newOid(), z64, minpo(1), txn);
        await assert.rejects(s.tpcVote(txn), UnableToAcquireCommitLockError);
        await s.tpcAbort(txn);
        await c.query('SELECT pg_advisory_unlock(-1)');
      } finally {
        await c.end();
      }
      const tid = await dostore(s, { data: 2 });
      assert.equal(idHex(s.lastTransaction()), idHex(tid));
    });

    it('reopening sees the data; a restored oid moves the oid sequence past it', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      const oid = await s.newOid();
      const tid = await dostore(s, { oid, data: 5 });
      const txn = new TransactionMetaData();
      const big = p64(1000n);
      await s.tpcBegin(txn, p64(u64(tid) + 10n), ' ');
      await s.restore(big, p64(u64(tid) + 10n), minpo(6), null, txn);
      await s.tpcVote(txn);
      await s.tpcFinish(txn);
      assert.ok(u64(await s.newOid()) > 1000n);
      await s.close();
      const again = await open({ readOnly: true });
      assert.equal(minpoValue((await again.load(oid)).data), 5);
      assert.equal(minpoValue((await again.load(big)).data), 6);
      assert.equal(idHex(again.lastTransaction()), idHex(p64(u64(tid) + 10n)));
      assert.equal(again.len(), 2);
    });

    it('two storages on one database: the object lock makes the second wait, then its vote conflicts', async (t) => {
      const { a, b, oid, tid1, ta } = await votedElsewhere(t);
      // b read tid1 too: its vote waits for a's object lock, then finds a's commit
      const tb = new TransactionMetaData();
      await b.tpcBegin(tb);
      await b.store(oid, tid1, minpo(3), tb);
      let settled = false;
      const vote = b.tpcVote(tb).finally(() => (settled = true));
      vote.catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(settled, false, "b's vote waits for a's object lock");
      const tid2 = await a.tpcFinish(ta);
      await assert.rejects(vote, (e: unknown) => {
        assert.ok(e instanceof ConflictError && !(e instanceof ReadConflictError));
        assert.deepEqual(e.serials?.map(idHex), [idHex(tid2), idHex(tid1)]);
        return true;
      });
      await b.tpcAbort(tb);
      assert.equal(minpoValue((await b.load(oid)).data), 2);
    });

    it('two storages on one database: readCurrent of an object the other has voted on is a ReadConflictError', async (t) => {
      const { a, b, oid, tid1, ta } = await votedElsewhere(t);
      const tb = new TransactionMetaData();
      await b.tpcBegin(tb);
      await b.store(await b.newOid(), z64, minpo(3), tb);
      await b.checkCurrentSerialInTransaction(oid, tid1, tb);
      await assert.rejects(b.tpcVote(tb), (e: unknown) => {
        assert.ok(e instanceof UnableToLockRowsToReadCurrentError);
        assert.equal(idHex(e.oid!), idHex(oid));
        return true;
      });
      await b.tpcAbort(tb);
      await a.tpcFinish(ta);
    });

    it('two storages on one database: a conflict resolved at the vote with the resolver', async (t) => {
      const { open } = await fresh(t);
      const a = await open();
      // the resolver adds the new value's increment to the committed value (a counter)
      const b = await open({
        resolver: async (_oid, _committed, _old, newData, committedData) =>
          minpo((minpoValue(committedData) as number) + (minpoValue(newData) as number) - 1),
      });
      const oid = await a.newOid();
      const tid1 = await dostore(a, { oid, data: 1 });
      const tid2 = await dostore(a, { oid, revid: tid1, data: 10 });
      const tb = new TransactionMetaData();
      await b.tpcBegin(tb);
      await b.store(oid, tid1, minpo(2), tb);
      assert.deepEqual((await b.tpcVote(tb)).map(idHex), [idHex(oid)]);
      const tid3 = await b.tpcFinish(tb);
      assert.equal(minpoValue((await a.load(oid)).data), 11);
      const h = await a.history(oid, 5);
      assert.deepEqual(
        h.map((e) => idHex(e.tid)),
        [tid3, tid2, tid1].map(idHex),
      );
    });

    it('copies into a MemoryStorage and back: the same transactions, records and metadata; lastInvalidations', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      const t1 = await dostore(s, { oid: oid1, data: 1, user: 'me', description: 'first' });
      const t2 = await dostore(s, { oid: oid2, data: 2 });
      const del = new TransactionMetaData();
      await s.tpcBegin(del);
      await s.store(oid2, t2, minpo(3), del);
      await s.deleteObject(oid1, t1, del);
      await s.tpcVote(del);
      const t3 = await s.tpcFinish(del);
      assert.deepEqual(
        (await s.lastInvalidations(5)).map((e) => [idHex(e.tid), e.oids.map(idHex)]),
        [
          [idHex(t3), [idHex(oid1), idHex(oid2)]],
          [idHex(t2), [idHex(oid2)]],
          [idHex(t1), [idHex(oid1)]],
        ],
      );
      const mem = new MemoryStorage();
      assert.equal(await copyTransactions(s, mem), 3);
      const { open: openOther } = await fresh(t);
      const back = await openOther();
      assert.equal(await copyTransactions(mem, back), 3);
      const dump = async (st: { iterator: PostgreSQLStorage['iterator'] }) => {
        const out: unknown[] = [];
        for await (const txn of st.iterator()) {
          const records: unknown[] = [];
          for await (const r of txn.records)
            records.push([idHex(r.oid), idHex(r.tid), r.data && Buffer.from(r.data).toString('hex')]);
          out.push([
            idHex(txn.tid),
            txn.status,
            Buffer.from(txn.user).toString(),
            Buffer.from(txn.description).toString(),
            records,
          ]);
        }
        return out;
      };
      const original = await dump(s);
      assert.equal(original.length, 3);
      assert.deepEqual(await dump(back), original);
      await assert.rejects(back.load(oid1), POSKeyError);
      assert.equal(minpoValue((await back.load(oid2)).data), 3);
      assert.equal(idHex(back.lastTransaction()), idHex(t3));
    });

    it('deleteObject of an object that is not there: POSKeyError at the vote', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      const txn = new TransactionMetaData();
      await s.tpcBegin(txn);
      await s.deleteObject(p64(42n), p64(1n), txn);
      await assert.rejects(s.tpcVote(txn), POSKeyError);
      await s.tpcAbort(txn);
    });

    it('zapAll empties a database to what installSchema leaves: the initial rows, oids from 1 again', async (t) => {
      const { database, open } = await fresh(t);
      const s = await open();
      await dostore(s, { data: 1 });
      await dostore(s, { data: 2 });
      await s.close();
      const c = await sqlClient(database);
      try {
        await zapAll(c);
        const rows = async (sql: string): Promise<unknown[]> =>
          (await c.query<Record<string, unknown>>(sql)).rows;
        assert.deepEqual(
          await rows('SELECT tid, packed, is_empty, username, description, extension FROM transaction'),
          [
            {
              tid: '0',
              packed: false,
              is_empty: false,
              username: Buffer.from('system'),
              description: Buffer.from('special transaction for object creation'),
              extension: null,
            },
          ],
        );
        assert.deepEqual(await rows('SELECT tid FROM commit_row_lock'), [{ tid: '0' }]);
        assert.deepEqual(await rows('SELECT count(*) AS n FROM object_state'), [{ n: '0' }]);
        assert.deepEqual(await rows('SELECT count(*) AS n FROM current_object'), [{ n: '0' }]);
      } finally {
        await c.end();
      }
      const again = await open();
      assert.equal(idHex(again.lastTransaction()), idHex(z64));
      assert.equal(idHex(await again.newOid()), '0000000000000001');
      assert.equal(again.len(), 0);
    });

    it('refuses a history-free database, and an empty one when createSchema is off', async (t) => {
      const { open } = await fresh(t);
      const empty = `spec_${process.pid}_${++n}`;
      await admin.query(`CREATE DATABASE ${empty}`);
      t.after(() => dropDatabase(empty));
      await assert.rejects(PostgreSQLStorage.open({ dsn: dsnOf(empty), createSchema: false }), StorageError);
      const c = await sqlClient(empty);
      await c.query('CREATE TABLE object_state (zoid bigint PRIMARY KEY, tid bigint NOT NULL)');
      await c.end();
      await assert.rejects(PostgreSQLStorage.open({ dsn: dsnOf(empty) }), /history-free/);
      await open(); // (the fresh one opens)
    });

    it('load of a missing oid: POSKeyError; loadBefore before the first revision: null', async (t) => {
      const { open } = await fresh(t);
      const s = await open();
      await assert.rejects(s.load(p64(77n)), POSKeyError);
      await assert.rejects(s.loadBefore(p64(77n), p64(5n)), POSKeyError);
      const oid = await s.newOid();
      const tid = await dostore(s, { oid, data: 1 });
      assert.equal(await s.loadBefore(oid, tid), null);
    });

    it('watchInvalidations: another storage on the database sees each commit once, in order, after lastTransaction moves', async (t) => {
      const { open } = await fresh(t);
      const a = await open({ pollInterval: 0.05 });
      const b = await open({ pollInterval: 0.05 });
      const seen: Array<[string, string[], string]> = [];
      b.watchInvalidations((tid: Tid, oids: Oid[]) => {
        seen.push([idHex(tid), oids.map(idHex), idHex(b.lastTransaction())]);
      });
      const oid1 = await a.newOid();
      const oid2 = await a.newOid();
      const t1 = await dostore(a, { oid: oid1, data: 1 });
      const t2 = await dostore(a, { oid: oid2, data: 2 });
      const t3 = await dostore(a, { oid: oid1, revid: t1, data: 3 });
      await waitUntil(
        () => seen.length >= 3,
        () => `b saw ${JSON.stringify(seen)}`,
      );
      await new Promise((r) => setTimeout(r, 150)); // (more polls: nothing is delivered twice)
      assert.deepEqual(seen, [
        [idHex(t1), [idHex(oid1)], idHex(t1)],
        [idHex(t2), [idHex(oid2)], idHex(t2)],
        [idHex(t3), [idHex(oid1)], idHex(t3)],
      ]);
      assert.equal(idHex(b.lastTransaction()), idHex(t3));
      assert.equal(b.len(), 2);
    });

    it("watchInvalidations: others' commits before our own are delivered before tpcFinish's onCommitted", async (t) => {
      const { open } = await fresh(t);
      // a poll interval long enough that only tpcFinish can deliver (and no LISTEN wake-up in time: the
      // listener connection's notification may still come first, which is as good: then it is already seen)
      const a = await open();
      const b = await open({ pollInterval: 600 });
      const events: string[] = [];
      b.watchInvalidations((tid: Tid) => events.push(`external ${idHex(tid)}`));
      const oid = await a.newOid();
      const ta = await dostore(a, { oid, data: 1 });
      const txn = new TransactionMetaData();
      await b.tpcBegin(txn);
      await b.store(await b.newOid(), z64, minpo(2), txn);
      await b.tpcVote(txn);
      const tb = await b.tpcFinish(txn, (tid) => events.push(`committed ${idHex(tid)}`));
      assert.ok(u64(tb) > u64(ta));
      assert.deepEqual(events, [`external ${idHex(ta)}`, `committed ${idHex(tb)}`]);
      assert.equal(idHex(b.lastTransaction()), idHex(tb));
    });

    it('connections killed by the server: calls fail as transient, then work with new ones; the listener resumes', async (t) => {
      const { database, open } = await fresh(t);
      const a = await open();
      const b = await open({ pollInterval: 0.05 });
      const seen: string[] = [];
      b.watchInvalidations((tid: Tid) => seen.push(idHex(tid)));
      const oid = await a.newOid();
      const t1 = await dostore(a, { oid, data: 1 });
      await waitUntil(() => seen.includes(idHex(t1)), 'b sees the first commit');
      const c = await sqlClient(database);
      const killed = await c.query(
        `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [database],
      );
      await c.end();
      assert.ok((killed.rowCount ?? 0) >= 3, 'the pools and the LISTEN connection were killed');
      /**
       * the call, again when it meets a connection the server ended (each pooled connection fails once at
       * most: the pool then drops it; a pool has 3)
       */
      async function retried<T>(fn: () => Promise<T>): Promise<T> {
        for (let tries = 1; ; tries++) {
          try {
            return await fn();
          } catch (e) {
            assert.ok(e instanceof StorageDisconnectedError, `transient, not ${String(e)}`);
            assert.ok(tries <= 3, 'a new connection after the dead ones');
          }
        }
      }
      assert.equal(minpoValue((await retried(() => b.load(oid))).data), 1);
      const t2 = await retried(() => dostore(a, { oid, revid: t1, data: 2 }));
      await waitUntil(
        () => seen.includes(idHex(t2)),
        () => `b saw ${JSON.stringify(seen)}`,
      );
      assert.deepEqual(seen, [idHex(t1), idHex(t2)]);
    });

    it("two storages incrementing one counter at once: no lost update, each sees the other's commits once, in order", async (t) => {
      const { open } = await fresh(t);
      const storages = [await open({ pollInterval: 0.05 }), await open({ pollInterval: 0.05 })];
      const oid = await storages[0].newOid();
      const first = await dostore(storages[0], { oid, data: 0 });
      // (the first commit is storage 0's own: storage 1 is told of it when it starts watching)
      const own: string[][] = [[idHex(first)], []];
      const seen: string[][] = [[], []];
      storages.forEach((s, i) => s.watchInvalidations((tid: Tid) => seen[i].push(idHex(tid))));
      const K = 12;
      const worker = async (i: number): Promise<void> => {
        const s = storages[i];
        for (let done = 0; done < K;) {
          const { data, serial } = await s.load(oid);
          const txn = new TransactionMetaData();
          await s.tpcBegin(txn);
          try {
            await s.store(oid, serial, minpo((minpoValue(data) as number) + 1), txn);
            await s.tpcVote(txn);
            own[i].push(idHex(await s.tpcFinish(txn)));
            done++;
          } catch (e) {
            assert.ok(e instanceof ConflictError, `a conflict, not ${String(e)}`);
            await s.tpcAbort(txn);
          }
        }
      };
      await Promise.all([worker(0), worker(1)]);
      assert.equal(minpoValue((await storages[0].load(oid)).data), 2 * K);
      const all = [...own[0], ...own[1]].sort();
      assert.equal(new Set(all).size, 2 * K + 1, 'every tid is distinct');
      for (const i of [0, 1]) {
        const other = own[1 - i];
        await waitUntil(
          () => other.every((tid) => seen[i].includes(tid)),
          () => `storage ${i} saw ${JSON.stringify(seen[i])}`,
        );
        // the other's commits, in tid order, each once (and none of its own)
        assert.deepEqual(seen[i], [...other].sort());
        assert.equal(idHex(storages[i].lastTransaction()), all[all.length - 1]);
      }
    });

    it("watchInvalidations: a backlog of other writers' transactions is delivered whole, in order, in batches", async (t) => {
      const { database, open } = await fresh(t);
      const b = await open({ pollInterval: 600 });
      const oid = await b.newOid();
      const base = u64(await dostore(b, { oid, data: 1 }));
      const c = await sqlClient(database);
      // 1200 transactions committed elsewhere while b was not watching, each writing the object
      await c.query(
        `INSERT INTO transaction (tid, username, description) SELECT $1::bigint + g, '', '' FROM generate_series(1, 1200) g`,
        [base.toString()],
      );
      await c.query(
        `INSERT INTO object_state (zoid, tid, prev_tid, state_size, state)
           SELECT 1, $1::bigint + g, $1::bigint + g - 1, 0, NULL FROM generate_series(1, 1200) g`,
        [base.toString()],
      );
      await c.end();
      const seen: bigint[] = [];
      b.watchInvalidations((tid: Tid, oids: Oid[]) => {
        assert.deepEqual(oids.map(idHex), [idHex(oid)]);
        assert.equal(idHex(b.lastTransaction()), idHex(tid));
        seen.push(u64(tid));
      });
      await waitUntil(
        () => seen.length >= 1200,
        () => `${seen.length} delivered`,
      );
      assert.deepEqual(
        seen,
        Array.from({ length: 1200 }, (_, i) => base + BigInt(i + 1)),
      );
    });

    it('tpcFinish delivers a backlog of silent external transactions (no NOTIFY) before its own', async (t) => {
      const { database, open } = await fresh(t);
      const b = await open({ pollInterval: 600 });
      const events: string[] = [];
      b.watchInvalidations((tid: Tid) => events.push(idHex(tid)));
      const base = u64(await dostore(b, { data: 1 }));
      // (the first poll, of nothing; were it later, it would deliver the backlog itself, in the same order)
      await new Promise((r) => setTimeout(r, 50));
      const c = await sqlClient(database);
      await c.query(
        `INSERT INTO transaction (tid, username, description) SELECT $1::bigint + g, '', '' FROM generate_series(1, 1200) g`,
        [base.toString()],
      );
      await c.end();
      const tid = await b.tpcFinish(
        await (async () => {
          const txn = new TransactionMetaData();
          await b.tpcBegin(txn);
          await b.store(await b.newOid(), z64, minpo(2), txn);
          await b.tpcVote(txn);
          return txn;
        })(),
        (committed) => events.push(`ours ${idHex(committed)}`),
      );
      assert.ok(u64(tid) > base + 1200n, 'the tid comes after the others');
      assert.deepEqual(events, [
        ...Array.from({ length: 1200 }, (_, i) => idHex(p64(base + BigInt(i + 1)))),
        `ours ${idHex(tid)}`,
      ]);
    });

    /** Polls until a session of `database` waits for an advisory lock; `ok` must hold meanwhile. */
    async function lockWaiter(database: string, ok: () => boolean, what: () => string): Promise<void> {
      const c = await sqlClient(database);
      try {
        const deadline = Date.now() + 20_000;
        const sql = `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`;
        while ((await c.query(sql)).rowCount === 0) {
          assert.ok(Date.now() < deadline && ok(), what());
          await new Promise((r) => setTimeout(r, 10));
        }
      } finally {
        await c.end();
      }
    }

    const noOracle = interopDisabled && 'ZEO_TS_SKIP_INTEROP=1';
    it(
      'RelStorage committing an object we voted on waits for our locks, then gets ConflictError',
      { skip: noOracle },
      async (t) => {
        const { database, open } = await fresh(t);
        const relstorage = (body: string[]): string =>
          [
            'import sys, ZODB, transaction',
            'from relstorage.options import Options',
            'from relstorage.adapters.postgresql import PostgreSQLAdapter',
            'from relstorage.storage import RelStorage',
            'o = Options(keep_history=True, commit_lock_timeout=10)',
            'db = ZODB.DB(RelStorage(PostgreSQLAdapter(dsn=sys.argv[1], options=o), options=o))',
            'c = db.open()',
            ...body,
            'db.close()',
          ].join('\n');
        // RelStorage creates the root
        await promisify(execFile)(oraclePython(), ['-c', relstorage([]), dsnOf(database)]);
        const s = await open();
        const root = await s.load(z64);
        const txn = new TransactionMetaData();
        await s.tpcBegin(txn);
        await s.store(z64, root.serial, root.data, txn);
        await s.tpcVote(txn);
        // RelStorage reads the root at its serial, changes it and commits: it waits for our lock on oid 0
        const py = execFile(oraclePython(), [
          '-c',
          relstorage([
            "c.root()['x'] = 1",
            'try:',
            '    transaction.commit()',
            "    print('committed')",
            'except Exception as e:',
            '    print(type(e).__name__)',
          ]),
          dsnOf(database),
        ]);
        let out = '';
        py.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        const exited = new Promise((r) => py.on('exit', r));
        await lockWaiter(
          database,
          () => out === '',
          () => `RelStorage did not wait for the lock: ${out}`,
        );
        const tid = await s.tpcFinish(txn);
        await exited;
        assert.equal(out.trim(), 'ConflictError');
        assert.equal(idHex((await s.load(z64)).serial), idHex(tid));
      },
    );

    it(
      'our vote on an object RelStorage has voted on waits for its locks, then is a ConflictError',
      { skip: noOracle },
      async (t) => {
        const { database, open } = await fresh(t);
        const s = await open();
        const oid = await s.newOid();
        const tid1 = await dostore(s, { oid, data: 1 });
        // RelStorage stores the object through the storage API and votes, then waits for a line to finish
        const py = execFile(oraclePython(), [
          '-c',
          [
            'import sys',
            'from ZODB.Connection import TransactionMetaData',
            'from relstorage.options import Options',
            'from relstorage.adapters.postgresql import PostgreSQLAdapter',
            'from relstorage.storage import RelStorage',
            'o = Options(keep_history=True)',
            'st = RelStorage(PostgreSQLAdapter(dsn=sys.argv[1], options=o), options=o)',
            'oid, serial, data = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])',
            't = TransactionMetaData()',
            'st.tpc_begin(t)',
            "st.store(oid, serial, data, '', t)",
            'st.tpc_vote(t)',
            "print('voted', flush=True)",
            'sys.stdin.readline()',
            'print(st.tpc_finish(t).hex(), flush=True)',
            'st.close()',
          ].join('\n'),
          dsnOf(database),
          idHex(oid),
          idHex(tid1),
          Buffer.from(minpo(2)).toString('hex'),
        ]);
        let out = '';
        py.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        const exited = new Promise((r) => py.on('exit', r));
        await waitUntil(
          () => out.includes('voted'),
          () => `RelStorage did not vote: ${out}`,
          20_000,
        );
        const txn = new TransactionMetaData();
        await s.tpcBegin(txn);
        await s.store(oid, tid1, minpo(3), txn);
        const vote = s.tpcVote(txn);
        vote.catch(() => {});
        await lockWaiter(
          database,
          () => true,
          () => 'our vote did not wait',
        ); // (for RelStorage's lock)
        py.stdin!.end('\n');
        await exited;
        const tid2 = out.trim().split('\n')[1];
        await assert.rejects(vote, (e: unknown) => {
          assert.ok(e instanceof ConflictError);
          assert.deepEqual(e.serials?.map(idHex), [tid2, idHex(tid1)]);
          return true;
        });
        await s.tpcAbort(txn);
        assert.equal(minpoValue((await s.load(oid)).data), 2);
      },
    );

    it('watchInvalidations: commits by RelStorage from Python are seen', { skip: noOracle }, async (t) => {
      const { database, open } = await fresh(t);
      const b = await open({ pollInterval: 0.05 });
      const seen: Array<[string, string[]]> = [];
      b.watchInvalidations((tid: Tid, oids: Oid[]) => seen.push([idHex(tid), oids.map(idHex)]));
      const script = [
        'import sys, ZODB, transaction',
        'from relstorage.options import Options',
        'from relstorage.adapters.postgresql import PostgreSQLAdapter',
        'from relstorage.storage import RelStorage',
        'from persistent.mapping import PersistentMapping',
        `a = PostgreSQLAdapter(dsn=sys.argv[1], options=Options(keep_history=True))`,
        'db = ZODB.DB(RelStorage(a, options=Options(keep_history=True)))',
        'c = db.open()',
        "c.root()['x'] = PersistentMapping()",
        'transaction.commit()',
        'print(db.lastTransaction().hex())',
        'db.close()',
      ].join('\n');
      const out = await promisify(execFile)(oraclePython(), ['-c', script, dsnOf(database)]);
      const last = out.stdout.trim();
      await waitUntil(
        () => seen.some(([tid]) => tid === last),
        () => `b saw ${JSON.stringify(seen)}`,
      );
      assert.equal(idHex(b.lastTransaction()), last);
      // RelStorage's root creation, then its commit of the root and the new mapping
      assert.deepEqual(
        seen.map(([, oids]) => oids),
        [['0000000000000000'], ['0000000000000000', '0000000000000001']],
      );
      const root = await b.load(z64);
      assert.equal(idHex(root.serial), last);
    });
  });
});
