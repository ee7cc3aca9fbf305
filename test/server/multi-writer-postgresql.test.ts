// Two zeo-ts servers over one PostgreSQL database (issue 12): each serves a PostgreSQLStorage of its own on
// the database (they hear of each other's commits through LISTEN/NOTIFY and polls), with Python ZEO clients of
// each (test/fixtures/python/zeo_multi_writer.py): a commit through one server reaches the caches of the
// other's clients; a racetest spread over both finds consistent snapshots and no lost update. And the shared
// watchInvalidations suite (test/storage/watch-invalidations.ts) on two PostgreSQLStorages.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import { PostgreSQLStorage, installSchema } from '../../src/storage/postgresql/index.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
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

  /** Two servers, each with its own PostgreSQLStorage on a new database. */
  async function withServers(fn: (servers: TestServer[]) => Promise<void>): Promise<void> {
    const { dsn, drop } = await newDatabase();
    const servers: TestServer[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const storage = await PostgreSQLStorage.open({
          dsn,
          name: `pg ${i}`,
          poolSize: 4,
          pollInterval: 0.2,
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
  watchInvalidationsTests('PostgreSQLStorage', async () => {
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
  });

  interopTest("a commit through server A is invalidated in the cache of B's clients", async (oracle) => {
    await withServers(async ([a, b]) => {
      // (rounds 0: a client that syncs is not promised A's commit at once without pollInvalidations)
      const r = await scenario<{ invalidated: boolean; b_value: number; last_a: string; last_b: string }>(
        oracle,
        'cross_invalidation(*args)',
        [addr(a), addr(b), 0],
      );
      assert.equal(r.invalidated, true, "m's cached current revision was invalidated in B's client");
      assert.equal(r.b_value, 1);
    });
  });

  interopTest(
    'racetest over two servers on PostgreSQL: consistent snapshots, no lost update',
    async (oracle, t) => {
      await withServers(async (servers) => {
        const r = await scenario<{
          errors: string[];
          finals: Array<[number, number]>;
          commits: number;
          conflicts: number;
          alive: number;
        }>(oracle, 'race(*args)', [servers.map(addr), 2, 15, 11, 4, false]);
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
});
