// Two zeo-ts servers over one PostgreSQL database (issue 12): each serves a PostgreSQLStorage of its own on
// the database (they hear of each other's commits through LISTEN/NOTIFY and polls), with Python ZEO clients of
// each (test/fixtures/python/zeo_multi_writer.py): a commit through one server reaches the caches of the
// other's clients, and a client of the other that syncs (server_sync: its server polls before it answers the
// ping) reads it at once; a racetest spread over both finds consistent snapshots, no stale read and no lost
// update; a client moving from A to B at once finds B caught up (B polls at the register). And the shared
// watchInvalidations suite (test/storage/watch-invalidations.ts), its polling cases (pollInvalidations) too,
// on two PostgreSQLStorages.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { idHex, u64 } from '../../src/storage/ids.js';
import { PostgreSQLStorage, installSchema } from '../../src/storage/postgresql/index.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { dostore } from '../storage/contract/helpers.js';
import { watchInvalidationsTests } from '../storage/watch-invalidations.js';

function scenario<T>(oracle: Oracle, call: string, args: unknown = null): Promise<T> {
  return oracle.json<T>(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import zeo_multi_writer as s\nresult = s.${call}`,
    undefined,
    args,
  );
}

function addr(s: TestServer): unknown {
  return 'path' in s.address ? s.address.path : ['127.0.0.1', s.address.port];
}

describe('two zeo-ts servers over one PostgreSQL database', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  let admin: pg.Client;
  let n = 0;
  before(async () => {
    cluster = await startPostgres();
    admin = new pg.Client(cluster.connection('postgres'));
    await admin.connect();
  });
  after(async () => {
    await admin?.end();
    await cluster?.stop();
  });

  /** A new database with the schema: its DSN, and how to drop it. */
  async function newDatabase(): Promise<{ dsn: string; drop: () => Promise<void> }> {
    const database = `mw_${n++}`;
    await admin.query(`CREATE DATABASE ${database}`);
    const c = new pg.Client(cluster.connection(database));
    await c.connect();
    await installSchema(c);
    await c.end();
    return {
      dsn: `host=${cluster.socketDir} port=${cluster.port} user=${cluster.user} dbname=${database}`,
      drop: async () => {
        await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      },
    };
  }

  /** Two servers, each with its own PostgreSQLStorage on a new database (pollInterval in seconds). */
  async function withServers(
    fn: (servers: TestServer[]) => Promise<void>,
    pollInterval = 0.2,
  ): Promise<void> {
    const { dsn, drop } = await newDatabase();
    const servers: TestServer[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const storage = await PostgreSQLStorage.open({
          dsn,
          name: `pg ${i}`,
          poolSize: 4,
          pollInterval,
        });
        servers.push(await startServer({ opened: [{ name: '1', storage }] }));
      }
      await fn(servers);
    } finally {
      for (const s of servers) await s.stop();
      await drop();
    }
  }

  // the storage side: the shared watchInvalidations suite on two PostgreSQLStorages over one database
  watchInvalidationsTests(
    'PostgreSQLStorage',
    async () => {
      const { dsn, drop } = await newDatabase();
      const a = await PostgreSQLStorage.open({ dsn, name: 'a', poolSize: 3, pollInterval: 0.2 });
      const b = await PostgreSQLStorage.open({ dsn, name: 'b', poolSize: 3, pollInterval: 0.2 });
      return {
        a,
        b,
        close: async () => {
          await a.close();
          await b.close();
          await drop();
        },
      };
    },
    { polls: true },
  );

  it('pollInvalidations: a backlog of silent transactions, more than a poll reads at once, all heard of when it resolves', async () => {
    const { dsn, drop } = await newDatabase();
    const database = /dbname=(\S+)/.exec(dsn)![1];
    // (no timer poll during the test; the transactions below notify nobody)
    const b = await PostgreSQLStorage.open({ dsn, name: 'b', poolSize: 2, pollInterval: 600 });
    try {
      const oid = await b.newOid();
      const base = u64(await dostore(b, { oid, data: 1 }));
      const heard: bigint[] = [];
      b.watchInvalidations((tid) => heard.push(u64(tid)));
      await b.pollInvalidations();
      const c = new pg.Client(cluster.connection(database));
      await c.connect();
      try {
        // 1200 transactions written as another writer would, each changing the object
        await c.query(
          `INSERT INTO transaction (tid, username, description) SELECT $1::bigint + g, '', '' FROM generate_series(1, 1200) g`,
          [base.toString()],
        );
        await c.query(
          `INSERT INTO object_state (zoid, tid, prev_tid, state_size, state)
             SELECT $2::bigint, $1::bigint + g, $1::bigint + g - 1, 0, NULL FROM generate_series(1, 1200) g`,
          [base.toString(), u64(oid).toString()],
        );
      } finally {
        await c.end();
      }
      await b.pollInvalidations();
      assert.deepEqual(
        heard,
        Array.from({ length: 1200 }, (_, i) => base + BigInt(i + 1)),
        'every one, once, in order, before pollInvalidations resolved',
      );
      assert.equal(u64(b.lastTransaction()), base + 1200n);
    } finally {
      await b.close();
      await drop();
    }
  });

  it('pollInvalidations: fails while the database refuses connections, then hears of what it missed; fails once closed', async () => {
    const { dsn, drop } = await newDatabase();
    const database = /dbname=(\S+)/.exec(dsn)![1];
    const a = await PostgreSQLStorage.open({ dsn, name: 'a', poolSize: 2 });
    // (a poll interval longer than the test: only pollInvalidations and NOTIFY poll)
    const b = await PostgreSQLStorage.open({ dsn, name: 'b', poolSize: 2, pollInterval: 600 });
    try {
      const heard: string[] = [];
      b.watchInvalidations((tid) => heard.push(idHex(tid)));
      const oid = await a.newOid();
      const t1 = await dostore(a, { oid, data: 1 });
      await admin.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
      await admin.query(
        `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [database],
      );
      await assert.rejects(b.pollInvalidations(), Error, 'no connection to poll on: the call fails');
      await admin.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
      const t2 = await dostore(a, { oid, revid: t1, data: 2 });
      // (a connection that died with the database may fail one call: the pool drops it)
      for (let tries = 0; ; tries++) {
        try {
          await b.pollInvalidations();
          break;
        } catch (e) {
          assert.ok(tries < 2, `pollInvalidations works again once the database is back: ${String(e)}`);
        }
      }
      assert.deepEqual(heard, [idHex(t1), idHex(t2)], 'b heard of both commits, once each, in order');
      assert.equal(idHex(b.lastTransaction()), idHex(t2));
      await b.close();
      await assert.rejects(async () => b.pollInvalidations(), /closed/);
    } finally {
      await admin.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
      await a.close();
      await b.close();
      await drop();
    }
  });

  interopTest(
    "a commit through server A is invalidated in the cache of B's clients; a client of B that syncs reads it at once",
    async (oracle) => {
      await withServers(async ([a, b]) => {
        const r = await scenario<{
          invalidated: boolean;
          b_value: number;
          stale: Array<[number, number]>;
          last_a: string;
          last_b: string;
        }>(oracle, 'cross_invalidation(*args)', [addr(a), addr(b), 20]);
        assert.equal(r.invalidated, true, "m's cached current revision was invalidated in B's client");
        assert.equal(r.b_value, 1);
        assert.deepEqual(r.stale, [], 'no stale read after A committed (server_sync: B polls at the ping)');
        assert.equal(r.last_b, r.last_a);
      });
    },
  );

  interopTest(
    'racetest over two servers on PostgreSQL: consistent snapshots, no stale read, no lost update',
    async (oracle, t) => {
      await withServers(async (servers) => {
        const r = await scenario<{
          errors: string[];
          finals: Array<[number, number]>;
          commits: number;
          conflicts: number;
          alive: number;
        }>(oracle, 'race(*args)', [servers.map(addr), 2, 15, 11, 4]);
        t.diagnostic(`${r.commits} commits, ${r.conflicts} conflicts retried`);
        assert.deepEqual(r.errors, []);
        assert.equal(r.alive, 0);
        assert.equal(r.commits, 4 * 15);
        assert.deepEqual(r.finals, [
          [60, 60],
          [60, 60],
        ]);
      });
    },
    { timeout: 120_000 },
  );

  interopTest(
    'a client with a persistent cache moves from A to B at once: B polls before it answers register',
    async (oracle) => {
      const var_ = await mkdtemp(join(tmpdir(), 'zeo-ts-mw-pg-'));
      try {
        await withServers(
          async ([a, b]) => {
            const r = await scenario<{ v: number; caught_up: boolean; verify: string | null }>(
              oracle,
              'failover(*args)',
              [addr(a), addr(b), var_],
            );
            assert.deepEqual(r, { v: 1, caught_up: true, verify: 'Cache up to date' });
          },
          // (the timer never polls during the test: B hears of A's commit by NOTIFY, or at the register)
          600,
        );
      } finally {
        await rm(var_, { recursive: true, force: true });
      }
    },
  );
});
