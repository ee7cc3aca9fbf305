// `zeo serve` over PostgreSQL, end to end: one runzeo configuration with RelStorage's <relstorage> section
// serves a private cluster's database through the real runzeo (RelStorage 4.3) and through `zeo serve`, in
// turns, a Python ZEO client committing and reading back under each; and zeo-ts's <postgresql> shorthand.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import { serveOptionsToConfig } from '../../src/server/config.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { freePort, ServerProcess, stopLeftovers, type ServerKind } from '../helpers/server-process.js';

const root = mkdtempSync(join(tmpdir(), 'zeo-ts-pg-serve-'));
after(() => rmSync(root, { recursive: true, force: true }));
after(stopLeftovers);

function roundtrip(
  oracle: Oracle,
  port: number,
  key: string,
  value: string,
): Promise<{ root: Record<string, { value: string }>; last: string }> {
  return oracle.json(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import zeo_serve_clients as c\nresult = c.roundtrip(args[0], '1', args[1], args[2])`,
    undefined,
    [['127.0.0.1', port], key, value],
  );
}

async function serve(kind: ServerKind, conf: string): Promise<{ server: ServerProcess; port: number }> {
  const server = new ServerProcess({ kind, conf, cwd: root, env: { ZEO_MSGPACK: '' } });
  try {
    return { server, port: await server.port(30_000) };
  } catch (e) {
    server.kill();
    throw e;
  }
}

describe('zeo serve over PostgreSQL', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgres();
    const admin = new pg.Client(cluster.connection());
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE shared');
      await admin.query('CREATE DATABASE shorthand');
    } finally {
      await admin.end();
    }
  });
  after(() => cluster?.stop());

  interopTest(
    'one <relstorage> zeo.conf: runzeo (RelStorage) and zeo serve take turns on one database',
    async (oracle) => {
      const port = await freePort();
      const dsn = `dbname=shared user=zeo host=${cluster.socketDir} port=${cluster.port}`;
      const conf = join(root, 'relstorage.conf');
      const text =
        `%import relstorage\n<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n` +
        `<relstorage>\n  keep-history true\n  commit-lock-timeout 20\n  cache-local-mb 5\n` +
        `  <postgresql>\n    dsn ${dsn}\n  </postgresql>\n</relstorage>\n`;
      writeFileSync(conf, text);

      // zeo serve reads the file as RelStorage's options
      assert.deepEqual(serveOptionsToConfig({ configure: conf }).storages, [
        {
          kind: 'postgresql',
          name: '1',
          options: {
            dsn,
            readOnly: false,
            createSchema: true,
            keepHistory: true,
            packGc: true,
            commitLockTimeout: 20,
          },
          ignored: [
            `cache-local-mb (${conf}, line 8): RelStorage's caches are its clients'; ZEO clients have their own`,
          ],
        },
      ]);

      // RelStorage creates the schema and the root object from the same section (ZODB.config): runzeo over
      // RelStorage cannot answer a client's first load in an empty database, since RelStorage's POSKeyError
      // carries what ZEO cannot pickle ("Couldn't pickle response")
      await oracle.run(
        `
import ZODB, ZODB.config
db = ZODB.DB(ZODB.config.storageFromString(args))
db.close()
result = None
`,
        undefined,
        text.slice(text.indexOf('<relstorage>')).replace('<relstorage>', '%import relstorage\n<relstorage>'),
      );
      // the real runzeo: a Python client commits and reads back
      const rz = await serve('runzeo', conf);
      let r = await roundtrip(oracle, rz.port, 'runzeo', 'written through RelStorage');
      await rz.server.stopCleanly();
      assert.deepEqual(r.root, { runzeo: { value: 'written through RelStorage' } });

      // zeo serve on the same file and database: RelStorage's transaction is there; ours is added
      const zs = await serve('zeo-ts', conf);
      r = await roundtrip(oracle, zs.port, 'zeots', 'written through zeo serve');
      const log = zs.server.log();
      await zs.server.stopCleanly();
      assert.deepEqual(r.root, {
        runzeo: { value: 'written through RelStorage' },
        zeots: { value: 'written through zeo serve' },
      });
      assert.match(
        log,
        new RegExp(
          `INFO ZEO\\.runzeo \\(\\d+\\) opening storage '1' using PostgreSQL \\(RelStorage's schema\\): database shared on ${cluster.socketDir}:${cluster.port} as zeo`,
        ),
      );
      assert.equal(log.match(/ignoring cache-local-mb/g)?.length, 1, log);

      // and runzeo again: RelStorage reads what zeo serve wrote
      const rz2 = await serve('runzeo', conf);
      r = await roundtrip(oracle, rz2.port, 'again', 'RelStorage once more');
      await rz2.server.stopCleanly();
      assert.deepEqual(Object.keys(r.root).sort(), ['again', 'runzeo', 'zeots']);
      assert.equal(r.root.zeots.value, 'written through zeo serve');
    },
    { timeout: 180_000 },
  );

  interopTest("zeo-ts's <postgresql> section: a URI DSN and pool-size", async (oracle) => {
    const port = await freePort();
    const conf = join(root, 'shorthand.conf');
    writeFileSync(
      conf,
      `<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n<postgresql>\n` +
        `  dsn postgresql://zeo@${encodeURIComponent(cluster.socketDir)}:${cluster.port}/shorthand?application_name=zeo-serve\n` +
        `  pool-size 3\n  poll-interval 0.5\n</postgresql>\n`,
    );
    const zs = await serve('zeo-ts', conf);
    try {
      const r = await roundtrip(oracle, zs.port, 'k', 'v');
      assert.deepEqual(r.root, { k: { value: 'v' } });
      // the server's connections are there, named as the DSN says, no more than the pool's size
      const c = new pg.Client(cluster.connection('shorthand'));
      await c.connect();
      try {
        const n = await c.query<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = 'shorthand' AND application_name = 'zeo-serve'",
        );
        assert.ok(Number(n.rows[0].n) >= 1 && Number(n.rows[0].n) <= 3 + 1, `connections: ${n.rows[0].n}`);
      } finally {
        await c.end();
      }
    } finally {
      await zs.server.stopCleanly();
    }
  });
});
