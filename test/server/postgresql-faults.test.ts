// Faults of `zeo serve` over PostgreSQL (issue 12), with `zeo serve` as child processes over a private cluster
// and bare protocol clients: a server SIGKILLed after vote (holding RelStorage's commit lock) leaves no lock
// held and loses no acknowledged transaction; the database going down makes calls fail with a transient
// StorageError until it is back, and the servers resume without a restart (commits, invalidations across
// servers); a database holding a tid from the future (a writer whose clock is ahead, so ours is behind) never
// gets a tid at or below the last one.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { PickleValue } from '../../src/pickle/index.js';
import { idHex, maxtid, p64, u64, z64 } from '../../src/storage/ids.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { newTid } from '../../src/storage/timestamp.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { ServerProcess, sleep, stopLeftovers } from '../helpers/server-process.js';

const root = mkdtempSync(join(tmpdir(), 'zeo-ts-pg-faults-'));
after(() => rmSync(root, { recursive: true, force: true }));
after(stopLeftovers);

const rec = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n & 0xff, 0x2e]);
const empty = new Uint8Array(0);
const hex = (b: PickleValue): string => Buffer.from(b as Uint8Array).toString('hex');

/** RelStorage's commit lock, pg_advisory_xact_lock(-1), as pg_locks shows it (the bigint's two halves). */
const COMMIT_LOCK_HELD = `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
  AND classid = 4294967295::oid AND objid = 4294967295::oid AND objsubid = 1`;

function beginAndStore(c: RawClient, id: number, stores: Array<[Uint8Array, Uint8Array, Uint8Array]>): void {
  c.sendAsync('tpc_begin', [id, empty, new Uint8Array(Buffer.from(`txn ${id}`)), new Map(), null, ' ']);
  for (const [oid, serial, data] of stores) c.sendAsync('storea', [oid, serial, data, id]);
}

async function commit(
  c: RawClient,
  id: number,
  stores: Array<[Uint8Array, Uint8Array, Uint8Array]>,
): Promise<Uint8Array> {
  beginAndStore(c, id, stores);
  assert.deepEqual(await c.call('vote', [id]), []);
  return (await c.call('tpc_finish', [id])) as Uint8Array;
}

/** The data and serial of an object's current revision, through a server. */
async function current(c: RawClient, oid: Uint8Array): Promise<{ data: string; serial: string }> {
  const r = (await c.call('loadBefore', [oid, maxtid])) as PickleValue[];
  return { data: hex(r[0]), serial: hex(r[1]) };
}

/** An error reply saying the database is unavailable: a StorageError, the call may be tried again. */
function isUnavailable(e: unknown): boolean {
  return (
    e instanceof ServerError &&
    e.className === 'ZODB.POSException.StorageError' &&
    /database is unavailable/.test(e.message)
  );
}

/** `fn` tried again while it fails as isUnavailable says, until `ms` have passed. */
async function whenBack<T>(fn: () => Promise<T>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!isUnavailable(e) || Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

describe('zeo serve over PostgreSQL: faults', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  let n = 0;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  /** A new database (zeo serve installs the schema): its DSN and a client connected to it. */
  async function newDatabase(): Promise<{ dsn: string; sql: pg.Client }> {
    const database = `faults_${n++}`;
    // (a connection per database: the cluster goes down in one test)
    const admin = new pg.Client(cluster.connection('postgres'));
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${database}`);
    } finally {
      await admin.end();
    }
    const sql = new pg.Client(cluster.connection(database));
    await sql.connect();
    return {
      dsn: `host=${cluster.socketDir} port=${cluster.port} user=${cluster.user} dbname=${database}`,
      sql,
    };
  }

  /** `zeo serve` (a child process) of storage '1' on the database; its address. */
  async function serve(
    dsn: string,
  ): Promise<{ server: ServerProcess; address: { host: string; port: number } }> {
    const conf = join(root, `serve-${n}-${Math.random().toString(36).slice(2)}.conf`);
    writeFileSync(
      conf,
      `<zeo>\n  address 127.0.0.1:0\n</zeo>\n<postgresql 1>\n  dsn ${dsn}\n  poll-interval 0.2\n` +
        `  commit-lock-timeout 10\n</postgresql>\n`,
    );
    const server = new ServerProcess({ kind: 'zeo-ts', conf, cwd: root });
    try {
      return { server, address: { host: '127.0.0.1', port: await server.port(30_000) } };
    } catch (e) {
      server.kill();
      throw e;
    }
  }

  test('a server SIGKILLed after vote leaves no lock held and loses no acknowledged transaction', async () => {
    const { dsn, sql } = await newDatabase();
    const a = await serve(dsn);
    const b = await serve(dsn);
    const ca = await RawClient.open(a.address);
    const cb = await RawClient.open(b.address);
    try {
      const [o1, o2] = (await ca.call('new_oids', [2])) as Uint8Array[];
      const t1 = await commit(ca, 1, [[o1, z64, rec(1)]]); // acknowledged
      // the next transaction is voted: A holds the commit lock (and o2's row is written, uncommitted)
      beginAndStore(ca, 2, [
        [o1, t1, rec(2)],
        [o2, z64, rec(2)],
      ]);
      assert.deepEqual(await ca.call('vote', [2]), []);
      assert.equal(
        (await sql.query<{ n: number }>(COMMIT_LOCK_HELD)).rows[0].n,
        1,
        'A holds the commit lock',
      );

      a.server.kill();
      assert.equal((await a.server.exited).signal, 'SIGKILL');

      // B commits at once over the same objects: the lock went with A's session (a lock still held would
      // fail B's vote with UnableToAcquireCommitLockError after commit-lock-timeout)
      const t3 = await commit(cb, 1, [
        [o1, t1, rec(3)],
        [o2, z64, rec(3)],
      ]);
      assert.ok(u64(t3) > u64(t1));
      assert.equal(
        (
          await sql.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`,
          )
        ).rows[0].n,
        0,
      );

      // what was acknowledged is there, what A voted and never finished is not
      const tids = (
        await sql.query<{ tid: string }>('SELECT tid::text FROM transaction WHERE tid > 0 ORDER BY tid')
      ).rows.map((r) => BigInt(r.tid));
      assert.deepEqual(tids, [u64(t1), u64(t3)]);
      const history = (await cb.call('history', [o1, 10])) as Array<Map<string, PickleValue>>;
      assert.deepEqual(
        history.map((h) => hex(h.get('tid')!)),
        [hex(t3), hex(t1)],
      );
      // a new server on the database (A's replacement) serves the same
      const a2 = await serve(dsn);
      const ca2 = await RawClient.open(a2.address);
      try {
        assert.deepEqual(await current(ca2, o1), { data: hex(rec(3)), serial: hex(t3) });
        assert.deepEqual(await current(ca2, o2), { data: hex(rec(3)), serial: hex(t3) });
        assert.equal(hex(await ca2.call('lastTransaction')), hex(t3));
      } finally {
        ca2.close();
        await a2.server.stopCleanly();
      }
    } finally {
      ca.close();
      cb.close();
      a.server.kill();
      await b.server.stopCleanly();
      await sql.end();
    }
  });

  test('the database going down: calls fail with a transient StorageError, and the servers resume when it is back', async () => {
    const { dsn, sql } = await newDatabase();
    await sql.end();
    const a = await serve(dsn);
    const b = await serve(dsn);
    const ca = await RawClient.open(a.address);
    const cb = await RawClient.open(b.address);
    try {
      const [oid] = (await ca.call('new_oids', [1])) as Uint8Array[];
      const t1 = await commit(ca, 1, [[oid, z64, rec(1)]]);

      await cluster.down();
      try {
        // reads that need the database and commits fail, saying it is unavailable; the servers and their
        // clients stay. (A still answers the current state of the object it committed from its state cache,
        // exact as of its last transaction; what happened before t1 it must ask the database.)
        assert.deepEqual(await current(ca, oid), { data: hex(rec(1)), serial: hex(t1) });
        await assert.rejects(ca.call('loadBefore', [oid, t1]), isUnavailable);
        beginAndStore(ca, 2, [[oid, t1, rec(2)]]);
        await assert.rejects(ca.call('vote', [2]), isUnavailable);
        await ca.call('tpc_abort', [2]);
        await assert.rejects(cb.call('loadBefore', [oid, maxtid]), isUnavailable);
        assert.equal(a.server.exit, null);
        assert.equal(b.server.exit, null);
      } finally {
        await cluster.up();
      }

      // back, without restarting anything: reads, then a commit through A
      assert.deepEqual(await whenBack(() => current(ca, oid)), { data: hex(rec(1)), serial: hex(t1) });
      const t2 = await whenBack(() => commit(ca, 3, [[oid, t1, rec(2)]]));
      assert.ok(u64(t2) > u64(t1));
      // B hears of A's commit again (its LISTEN connection came back, or its poll found it) and serves it
      for (;;) {
        const m = await cb.nextMessage(10_000);
        if (m.name === 'invalidateTransaction' && hex(m.args[0]) === hex(t2)) {
          assert.deepEqual((m.args[1] as Uint8Array[]).map(hex), [hex(oid)]);
          break;
        }
      }
      assert.deepEqual(await whenBack(() => current(cb, oid)), { data: hex(rec(2)), serial: hex(t2) });
      assert.equal(hex(await cb.call('lastTransaction')), hex(t2));
    } finally {
      ca.close();
      cb.close();
      await a.server.stopCleanly();
      await b.server.stopCleanly();
    }
  });

  test('a tid from the future in the database: the next tids come after it, never at or below', async () => {
    const { dsn, sql } = await newDatabase();
    const a = await serve(dsn);
    const ca = await RawClient.open(a.address);
    try {
      const [o1, o2] = (await ca.call('new_oids', [2])) as Uint8Array[];
      const t1 = await commit(ca, 1, [[o1, z64, rec(1)]]);
      // another writer whose clock is far ahead (the year 2200) committed: our clock is behind the database's
      // last tid. Written as RelStorage writes a transaction (an empty one: no objects).
      const future = u64(newTid(null, Date.UTC(2200, 0, 1)));
      assert.ok(future > u64(t1));
      await sql.query(
        `INSERT INTO transaction (tid, packed, is_empty, username, description, extension)
         VALUES ($1, false, true, '', '\\x6675747572', '')`,
        [future.toString()],
      );
      const t2 = await commit(ca, 2, [[o1, t1, rec(2)]]);
      assert.ok(u64(t2) > future, `${idHex(t2)} after the future tid ${idHex(p64(future))}`);
      const t3 = await commit(ca, 3, [[o2, z64, rec(3)]]);
      assert.ok(u64(t3) > u64(t2), `${idHex(t3)} after ${idHex(t2)}`);
      const tids = (
        await sql.query<{ tid: string }>('SELECT tid::text FROM transaction WHERE tid > 0 ORDER BY tid')
      ).rows.map((r) => BigInt(r.tid));
      assert.deepEqual(tids, [u64(t1), future, u64(t2), u64(t3)]);
      assert.equal(hex(await ca.call('lastTransaction')), hex(t3));
    } finally {
      ca.close();
      await a.server.stopCleanly();
      await sql.end();
    }
  });
});
