// The schema installSchema creates is RelStorage 4.x's history-preserving schema: pg_dump --schema-only of a
// database RelStorage created and of one installSchema created are the same (tables, columns, types,
// defaults, constraints, indexes, the sequence, the view, the trigger), RelStorage's stored procedures aside
// (RelStorage installs those itself whenever it opens a database); the rows of a new database are the same;
// and RelStorage opens a database we created, installs its procedures and commits to it, and we read that.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { idHex } from '../../../src/storage/ids.js';
import { PostgreSQLStorage } from '../../../src/storage/postgresql/index.js';
import { installSchema, schemaExists } from '../../../src/storage/postgresql/schema.js';
import { postgresBinDir, type PostgresCluster } from '../../helpers/postgres.js';
import {
  relstorageDsn,
  skipRelStorage,
  storageHistory,
  storageObjects,
  useRelStorageFixture,
} from '../../helpers/relstorage.js';

const run = promisify(execFile);

/** The tables of RelStorage's history-preserving schema. */
const TABLES = [
  'blob_chunk',
  'commit_row_lock',
  'current_object',
  'object_ref',
  'object_refs_added',
  'object_state',
  'pack_object',
  'pack_state',
  'pack_state_tid',
  'transaction',
];

/**
 * pg_dump --schema-only as {"TYPE name": the object's SQL, whitespace collapsed}, from the "-- Name: ...;
 * Type: ...;" header pg_dump writes before each object; without the SET lines and the dump's random
 * \restrict key.
 */
async function dumpSchema(cluster: PostgresCluster, database: string): Promise<Map<string, string>> {
  const { stdout } = await run(
    join(postgresBinDir(), 'pg_dump'),
    [
      '--schema-only',
      '-h',
      cluster.socketDir,
      '-p',
      String(cluster.port),
      '-U',
      cluster.user,
      '-d',
      database,
    ],
    { maxBuffer: 64 << 20 },
  );
  const objects = new Map<string, string>();
  let key: string | null = null;
  let sql: string[] = [];
  const flush = () => {
    if (key !== null) objects.set(key, sql.join(' ').replace(/\s+/g, ' ').trim());
  };
  for (const line of stdout.split('\n')) {
    const header = /^-- Name: (.*); Type: (.*); Schema: .*; Owner: .*$/.exec(line);
    if (header) {
      flush();
      key = `${header[2]} ${header[1]}`;
      assert.ok(!objects.has(key), `pg_dump names ${key} once`);
      sql = [];
    } else if (!line.startsWith('--') && !line.startsWith('SET ') && !line.startsWith('\\')) {
      sql.push(line);
    }
  }
  flush();
  return objects;
}

/** The dump without functions (RelStorage's procedures, which it installs on open) and their comments. */
function withoutFunctions(dump: Map<string, string>): Map<string, string> {
  return new Map(
    [...dump].filter(([key]) => !key.startsWith('FUNCTION ') && !key.startsWith('COMMENT FUNCTION ')),
  );
}

/** Runs `fn` with a connection to `database`. */
async function withClient<T>(
  cluster: PostgresCluster,
  database: string,
  fn: (c: pg.Client) => Promise<T>,
): Promise<T> {
  const c = new pg.Client(cluster.connection(database));
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Every row of every table, and the sequence's state. */
function rows(cluster: PostgresCluster, database: string): Promise<Record<string, unknown>> {
  return withClient(cluster, database, async (c) => {
    const out: Record<string, unknown> = {};
    for (const table of TABLES) out[table] = (await c.query(`SELECT * FROM "${table}" ORDER BY 1`)).rows;
    out.zoid_seq = (await c.query('SELECT last_value, is_called FROM zoid_seq')).rows;
    out.large_objects = (await c.query('SELECT count(*)::int AS n FROM pg_largeobject_metadata')).rows;
    return out;
  });
}

/** The names of the functions and of the triggers (table and name) of the database. */
function functionsAndTriggers(
  cluster: PostgresCluster,
  database: string,
): Promise<{ functions: string[]; triggers: string[] }> {
  return withClient(cluster, database, async (c) => {
    const functions = await c.query<{ name: string }>(
      `SELECT p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' ORDER BY 1`,
    );
    const triggers = await c.query<{ name: string }>(
      `SELECT tgrelid::regclass::text || ' ' || tgname AS name FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`,
    );
    return { functions: functions.rows.map((r) => r.name), triggers: triggers.rows.map((r) => r.name) };
  });
}

describe('PostgreSQL schema: the same as RelStorage 4.x creates', { skip: skipRelStorage }, () => {
  const fx = useRelStorageFixture();
  const { rs } = fx;

  /** A new database with the schema installSchema makes. */
  async function ours(): Promise<string> {
    const { name } = await fx.database('schema');
    await withClient(fx.cluster, name, async (c) => {
      assert.equal(await schemaExists(c), false);
      await installSchema(c);
      assert.equal(await schemaExists(c), true);
    });
    return name;
  }

  /** A new database whose schema RelStorage made. */
  async function theirs(): Promise<string> {
    const { name, dsn } = await fx.database('schema');
    await rs.createSchema(dsn);
    return name;
  }

  it("pg_dump --schema-only of installSchema's database is RelStorage's, procedures aside", async () => {
    const expected = withoutFunctions(await dumpSchema(fx.cluster, await theirs()));
    const actual = withoutFunctions(await dumpSchema(fx.cluster, await ours()));
    // what is compared: every table, and the sequence, view, constraints, indexes and trigger
    for (const table of TABLES) assert.ok(expected.has(`TABLE ${table}`), `RelStorage's dump has ${table}`);
    for (const key of [
      'SEQUENCE zoid_seq',
      'VIEW current_object_state',
      'TRIGGER blob_chunk blob_chunk_delete',
      'CONSTRAINT object_state object_state_pk',
      'FK CONSTRAINT current_object current_object_zoid_tid_fkey',
      'INDEX pack_object_keep_true',
    ]) {
      assert.ok(expected.has(key), `RelStorage's dump has ${key}`);
    }
    assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
    for (const [key, sql] of expected) assert.equal(actual.get(key), sql, key);
  });

  it('a new database holds the same rows (tid 0, the commit row lock, an unused zoid_seq)', async () => {
    const expected = await rows(fx.cluster, await theirs());
    assert.deepEqual((expected.transaction as unknown[]).length, 1);
    assert.deepEqual(expected.commit_row_lock, [{ tid: '0' }]);
    assert.deepEqual(await rows(fx.cluster, await ours()), expected);
  });

  it('RelStorage opens a database we created, installs its procedures and commits to it; we read it after', async () => {
    const reference = await theirs();
    const name = await ours();
    const dsn = relstorageDsn(fx.cluster, name);
    const before = await dumpSchema(fx.cluster, name);
    const tids = await rs.commit(dsn, [
      {
        user: 'alice',
        description: 'first',
        extension: { app: 'schema test' },
        set: [[['a'], { $mapping: { x: 1 } }]],
      },
      {
        description: 'a tree',
        set: [[['t'], { $btree: Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`k${i}`, i])) }]],
      },
    ]);
    assert.equal(tids.length, 2);
    // its procedures are now there, as in a database it created; its trigger is ours (not a second one)
    const now = await functionsAndTriggers(fx.cluster, name);
    assert.deepEqual(now, await functionsAndTriggers(fx.cluster, reference));
    assert.ok(now.functions.includes('lock_objects_and_detect_conflicts'));
    assert.deepEqual(now.triggers, ['blob_chunk blob_chunk_delete']);
    // and it changed nothing else of the schema
    assert.deepEqual(withoutFunctions(await dumpSchema(fx.cluster, name)), withoutFunctions(before));
    // what it committed reads back through RelStorage: the root it made, then the two transactions
    const history = await rs.history(dsn);
    assert.deepEqual(
      history.map((t) => [t.user, t.description, t.extension]),
      [
        ['', 'initial database creation', '{}'],
        ['alice', 'first', "{'app': 'schema test'}"],
        ['', 'a tree', '{}'],
      ],
    );
    assert.deepEqual(
      history.slice(1).map((t) => t.tid),
      tids,
    );
    const tree = (await rs.tree(dsn)) as { $mapping: Record<string, unknown> };
    assert.deepEqual(tree.$mapping.a, { $mapping: { x: 1 } });
    assert.equal(Object.keys((tree.$mapping.t as { $btree: object }).$btree).length, 150);
    // and we still open it (its procedures there now) and read what RelStorage wrote
    const storage = await PostgreSQLStorage.open({ dsn, resolver: null });
    try {
      assert.deepEqual(await storageHistory(storage), history);
      assert.deepEqual(await storageObjects(storage), await rs.objects(dsn));
      assert.equal(idHex(storage.lastTransaction()), tids[1]);
    } finally {
      await storage.close();
    }
  });

  it('installSchema leaves a database RelStorage created as it is', async () => {
    const name = await theirs();
    const before = await dumpSchema(fx.cluster, name);
    const beforeRows = await rows(fx.cluster, name);
    await withClient(fx.cluster, name, async (c) => {
      assert.equal(await schemaExists(c), true);
      await installSchema(c);
    });
    assert.deepEqual(await dumpSchema(fx.cluster, name), before);
    assert.deepEqual(await rows(fx.cluster, name), beforeRows);
  });
});
