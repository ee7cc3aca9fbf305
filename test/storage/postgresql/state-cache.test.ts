// PostgreSQLStorage's state cache (src/storage/postgresql/state-cache.ts): loads answered from memory are what
// the database answers (against a storage without the cache on the same database), and never stale: commits
// by this storage, by another PostgreSQLStorage and by RelStorage are seen once delivered; a database read
// racing a delivery of its oid is not kept (the race made happen: the read's reply held back until the
// delivery is done); a pack clears it, an undo replaces; it stays within its bytes; 0 turns it off, and it is
// not used without watchInvalidations.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { referencesf } from '../../../src/pickle/record.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { LoadBeforeHit, type LoadBeforeResult } from '../../../src/storage/interfaces.js';
import { PostgreSQLStorage, type PostgreSQLStorageOptions } from '../../../src/storage/postgresql/index.js';
import { SQL } from '../../../src/storage/postgresql/sql.js';
import { Oracle } from '../../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { RelStorageOracle, relstorageDsn, skipRelStorage, untilSeen } from '../../helpers/relstorage.js';
import {
  commitMany,
  mappingRecord,
  minpo,
  packTimeNow,
  ref,
  txnMeta,
  undoIds,
  undoTxn,
} from '../contract/helpers.js';

/** loadBeforeInto's answer as loadBefore's: undefined when it cannot answer at once (-1). */
function fromMemory(s: PostgreSQLStorage, oid: Oid, tid: Tid): LoadBeforeResult | null | undefined {
  const hit = new LoadBeforeHit();
  const r = s.loadBeforeInto(oid, 0, tid, 0, hit);
  if (r < 0) return undefined;
  if (r === 0) return null;
  return {
    data: new Uint8Array(hit.data.subarray(hit.dataAt, hit.dataAt + hit.dataLen)),
    start: new Uint8Array(hit.start),
    end: hit.hasEnd ? new Uint8Array(hit.end) : null,
  };
}

/** A promise's value, or the name of its error (POSKeyError and the like are answers too). */
async function outcome<T>(p: Promise<T>): Promise<T | string> {
  try {
    return await p;
  } catch (e) {
    return (e as Error).name;
  }
}

/** Until the database says `cond` (a query through the admin connection), failing after 10 s. */
async function untilDatabase(admin: pg.Client, sql: string, values: unknown[], what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await admin.query(sql, values)).rowCount) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const next = (tid: Tid): Tid => p64(u64(tid) + 1n);
const hits = (s: PostgreSQLStorage): number => s.cacheStats()!.hits;

/** One object changed (or deleted: data null) in a transaction of its own; the tid. */
async function change(s: PostgreSQLStorage, oid: Oid, serial: Tid, data: Uint8Array | null): Promise<Tid> {
  if (data) return commitMany(s, [[oid, serial, data]]);
  const t = txnMeta();
  await s.tpcBegin(t);
  await s.deleteObject(oid, serial, t);
  await s.tpcVote(t);
  return s.tpcFinish(t);
}

describe('PostgreSQLStorage state cache', { skip: skipPostgres, timeout: 120_000 }, () => {
  let cluster: PostgresCluster;
  let admin: pg.Client;
  let oracle: Oracle | null = null;
  const rs = new RelStorageOracle(() => oracle);
  let databases = 0;

  before(async () => {
    cluster = await startPostgres();
    admin = new pg.Client(cluster.connection());
    await admin.connect();
  });
  after(async () => {
    if (oracle) {
      await rs.closeAll();
      oracle.close();
    }
    await admin?.end();
    await cluster?.stop();
  });

  /**
   * A new database, and `open` for storages on it (closed after the test): watched (watchInvalidations, as
   * the server does) unless `watch` is false, polling every 50 ms.
   */
  async function database(t: { after: (fn: () => Promise<void>) => void }): Promise<{
    dsn: string;
    open: (options?: Partial<PostgreSQLStorageOptions>, watch?: boolean) => Promise<PostgreSQLStorage>;
  }> {
    const name = `cache_${++databases}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const dsn = relstorageDsn(cluster, name);
    const opened: PostgreSQLStorage[] = [];
    t.after(async () => {
      for (const s of opened) await s.close();
    });
    return {
      dsn,
      async open(options = {}, watch = true) {
        const s = await PostgreSQLStorage.open({ dsn, resolver: null, pollInterval: 0.05, ...options });
        opened.push(s);
        if (watch) s.watchInvalidations(() => {});
        return s;
      },
    };
  }

  /** `s` answers `oid` as `db` (a storage without the cache) does: load, loadBefore at `tids`, loadBeforeInto. */
  async function assertSameLoads(s: PostgreSQLStorage, db: PostgreSQLStorage, oid: Oid, tids: Tid[]) {
    const what = `oid ${idHex(oid)}`;
    assert.deepEqual(await outcome(s.load(oid)), await outcome(db.load(oid)), `load of ${what}`);
    for (const tid of tids) {
      const memory = fromMemory(s, oid, tid);
      const expected = await outcome(db.loadBefore(oid, tid));
      assert.deepEqual(await outcome(s.loadBefore(oid, tid)), expected, `loadBefore ${what} ${idHex(tid)}`);
      if (memory !== undefined) assert.deepEqual(memory, expected, `loadBeforeInto ${what} ${idHex(tid)}`);
    }
  }

  it('answers loads from memory as the database answers them (own commits, misses filled)', async (t) => {
    const { open } = await database(t);
    const s = await open();
    const db = await open({ cacheBytes: 0 }, false);
    const oids: Oid[] = [];
    for (let i = 0; i < 12; i++) oids.push(await s.newOid());
    const t1 = await commitMany(
      s,
      oids.map((oid, i) => [oid, z64, minpo('x'.repeat(i * 37))]),
    );
    const t2 = await commitMany(
      s,
      oids.slice(0, 6).map((oid, i) => [oid, t1, minpo(i)]),
    );
    const t3 = await change(s, oids[11], t1, null);
    const missing = p64(u64(oids[11]) + 1000n);
    assert.deepEqual(s.lastTransaction(), t3);

    // its own commits are in memory at once: current records before lastTransaction() + 1, and after it as of
    // lastTransaction() (ClientStorage.load's maxtid: FileStorage's answer)
    assert.deepEqual(fromMemory(s, oids[0], next(t3)), { data: minpo(0), start: t2, end: null });
    assert.deepEqual(fromMemory(s, oids[7], next(t1)), {
      data: minpo('x'.repeat(7 * 37)),
      start: t1,
      end: null,
    });
    assert.deepEqual(fromMemory(s, oids[0], p64((1n << 63n) - 1n)), { data: minpo(0), start: t2, end: null });
    // not: an older revision, a deleted or missing object
    assert.equal(fromMemory(s, oids[0], t2), undefined);
    assert.equal(fromMemory(s, oids[11], next(t3)), undefined);
    assert.equal(fromMemory(s, missing, next(t3)), undefined);

    const tids = [t1, next(t1), t2, next(t2), t3, next(t3), next(next(t3)), p64((1n << 63n) - 1n), z64];
    const before = hits(s);
    for (const oid of [...oids, missing]) await assertSameLoads(s, db, oid, tids);
    assert.ok(hits(s) > before + oids.length, 'the loads were answered from memory');

    // a storage that did not commit them fills its cache from its reads
    const other = await open();
    assert.deepEqual(other.lastTransaction(), t3);
    assert.equal(fromMemory(other, oids[3], next(t3)), undefined);
    assert.deepEqual(await other.load(oids[3]), await db.load(oids[3]));
    assert.deepEqual(fromMemory(other, oids[3], next(t3)), { data: minpo(3), start: t2, end: null });
    assert.deepEqual(await other.loadBefore(oids[8], next(t3)), await db.loadBefore(oids[8], next(t3)));
    assert.deepEqual(fromMemory(other, oids[8], t3), await db.loadBefore(oids[8], t3));
    // (an older revision read is not the current one: not kept)
    await other.loadBefore(oids[4], t2);
    assert.equal(fromMemory(other, oids[4], next(t3)), undefined);
    for (const oid of [...oids, missing]) await assertSameLoads(other, db, oid, tids);
  });

  it("another PostgreSQLStorage's commits replace what it holds once they are delivered", async (t) => {
    const { open } = await database(t);
    const s = await open();
    const writer = await open({}, false);
    const db = await open({ cacheBytes: 0 }, false);
    const [x, y] = [await writer.newOid(), await writer.newOid()];
    let serial = await commitMany(writer, [
      [x, z64, minpo(0)],
      [y, z64, minpo('y')],
    ]);
    for (let i = 1; i <= 12; i++) {
      await untilSeen(s, idHex(serial));
      // loaded (into the cache, then from it), then changed by the other storage
      await assertSameLoads(s, db, x, [next(serial)]);
      await assertSameLoads(s, db, x, [next(serial), serial]);
      assert.deepEqual(fromMemory(s, x, next(serial)), { data: minpo(i - 1), start: serial, end: null });
      serial = await change(writer, x, serial, i === 12 ? null : minpo(i));
    }
    await untilSeen(s, idHex(serial));
    assert.equal(fromMemory(s, x, next(serial)), undefined);
    await assert.rejects(s.load(x), POSKeyError);
    await assertSameLoads(s, db, y, [next(serial)]);
    assert.deepEqual(fromMemory(s, y, next(serial))?.data, minpo('y'));
  });

  it(
    "RelStorage's commits replace what it holds once they are delivered",
    { skip: skipRelStorage },
    async (t) => {
      oracle ??= new Oracle();
      const { dsn, open } = await database(t);
      await rs.create(dsn);
      const s = await open();
      const db = await open({ cacheBytes: 0 }, false);
      let last = s.lastTransaction();
      for (let i = 0; i < 4; i++) {
        await assertSameLoads(s, db, z64, [next(last)]);
        assert.deepEqual(fromMemory(s, z64, next(last))?.start, last);
        const [tid] = await rs.commit(dsn, [{ description: `change ${i}`, set: [[['n'], i]] }]);
        // (RelStorage does not notify: the poll finds it)
        await untilSeen(s, tid);
        last = s.lastTransaction();
        assert.equal(idHex(last), tid);
        await assertSameLoads(s, db, z64, [next(last)]);
        assert.equal(idHex(fromMemory(s, z64, next(last))!.start), tid);
      }
    },
  );

  for (const read of ['load', 'loadBefore'] as const) {
    it(`a ${read} from the database racing a delivery of its oid is not kept`, async (t) => {
      const { dsn, open } = await database(t);
      const writer = await open({}, false);
      const x = await writer.newOid();
      const t1 = await commitMany(writer, [[x, z64, minpo('old')]]);
      // two connections: the read's (held back), and the poll's; polls when asked, or notified (of t2: t1
      // was committed before it listened)
      const s = await open({ poolSize: 2, pollInterval: 3600 });
      await untilDatabase(
        admin,
        "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND state = 'idle' AND query = 'LISTEN zodb_commit'",
        [/dbname=(\w+)/.exec(dsn)![1]],
        'the storage listening',
      );
      await s.pollInvalidations();
      assert.deepEqual(s.lastTransaction(), t1);
      assert.equal(s.pool.totalCount, 1);
      assert.equal(s.pool.idleCount, 1);

      // the read goes to the one idle connection, whose replies are held back
      const conn = await s.pool.connect();
      const { processID: pid, connection } = conn as unknown as {
        processID: number;
        connection: { stream: Socket };
      };
      const socket = connection.stream;
      conn.release();
      socket.pause();
      const reading = read === 'load' ? s.load(x) : s.loadBefore(x, next(t1));
      const text = read === 'load' ? SQL.load.text : SQL.loadBefore.text;
      await untilDatabase(
        admin,
        "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle' AND query = $2",
        [pid, text],
        `the ${read} answered`,
      );
      // the database has answered (the old state); a change of x is committed and delivered meanwhile
      const t2 = await commitMany(writer, [[x, t1, minpo('new')]]);
      await s.pollInvalidations();
      assert.deepEqual(s.lastTransaction(), t2);
      socket.resume();
      const r = await reading;
      assert.deepEqual(
        read === 'load' ? (r as { data: Uint8Array }).data : (r as LoadBeforeResult).data,
        minpo('old'),
      );

      // what that read found is not in the cache: x is read again, the new state
      assert.equal(fromMemory(s, x, next(t2)), undefined);
      assert.deepEqual(await s.load(x), { data: minpo('new'), serial: t2 });
      assert.deepEqual(fromMemory(s, x, next(t2)), { data: minpo('new'), start: t2, end: null });
    });
  }

  it('a pack clears it (an object the pack removes is gone), an undo replaces', async (t) => {
    const { open } = await database(t);
    const s = await open();
    const db = await open({ cacheBytes: 0 }, false);
    const x = await s.newOid();
    const y = await s.newOid();
    const t1 = await commitMany(s, [
      [z64, z64, mappingRecord([['x', ref(x)]])],
      [x, z64, minpo('x')],
      [y, z64, minpo('y1')],
    ]);
    const t2 = await commitMany(s, [
      [z64, t1, mappingRecord([['y', ref(y)]])],
      [y, t1, minpo('y2')],
    ]);
    assert.deepEqual((await s.load(x)).data, minpo('x'));
    assert.ok(s.cacheStats()!.entries >= 3);
    await s.pack(await packTimeNow(), referencesf);
    assert.equal(s.cacheStats()!.entries, 0);
    await assert.rejects(s.load(x), POSKeyError);
    assert.equal(await outcome(s.loadBefore(x, next(t2))), 'POSKeyError');

    // a change of y undone: its state goes back to y2, in memory too
    await commitMany(s, [[y, t2, minpo('y3')]]);
    const [id] = await undoIds(s);
    const t4 = await undoTxn(s, id);
    assert.deepEqual(fromMemory(s, y, next(t4)), { data: minpo('y2'), start: t4, end: null });
    await assertSameLoads(s, db, y, [next(t4), t4]);
    await assertSameLoads(s, db, z64, [next(t4), t4]);
  });

  it('stays within cacheBytes', async (t) => {
    const { open } = await database(t);
    const bytes = 256 << 10;
    const s = await open({ cacheBytes: bytes });
    const db = await open({ cacheBytes: 0 }, false);
    const oids: Oid[] = [];
    for (let i = 0; i < 400; i++) oids.push(await s.newOid());
    // 400 objects of 1 KiB, more than the cache holds
    for (let i = 0; i < 400; i += 100) {
      await commitMany(
        s,
        oids.slice(i, i + 100).map((oid, j) => [oid, z64, minpo(String(i + j).padEnd(1024, '.'))]),
      );
    }
    const last = s.lastTransaction();
    for (let round = 0; round < 2; round++) {
      for (const oid of oids) await assertSameLoads(s, db, oid, [next(last)]);
      const stats = s.cacheStats()!;
      assert.equal(stats.capacity, bytes);
      assert.ok(stats.allocated <= bytes, `allocated ${stats.allocated}`);
      assert.ok(stats.bytes < bytes && stats.entries < 400, `${stats.entries} entries, ${stats.bytes} bytes`);
      assert.ok(stats.entries > 0);
    }
    // the default: 64 MiB
    const other = await open();
    assert.equal(other.cacheStats()!.capacity, 64 << 20);
  });

  it('is off with cacheBytes 0, and unused without watchInvalidations', async (t) => {
    const { open } = await database(t);
    const off = await open({ cacheBytes: 0 });
    const unwatched = await open({}, false);
    const x = await off.newOid();
    const tid = await commitMany(off, [[x, z64, minpo(1)]]);
    assert.equal(off.cacheStats(), null);
    assert.deepEqual(await off.load(x), { data: minpo(1), serial: tid });
    assert.equal(fromMemory(off, x, next(tid)), undefined);

    assert.deepEqual(await unwatched.load(x), { data: minpo(1), serial: tid });
    assert.deepEqual(await unwatched.load(x), { data: minpo(1), serial: tid });
    assert.equal(fromMemory(unwatched, x, next(tid)), undefined);
    assert.deepEqual(unwatched.cacheStats(), { ...unwatched.cacheStats()!, entries: 0, hits: 0 });
    // (a commit of its own while unwatched is not kept either: others' commits would go unseen)
    const t2 = await commitMany(unwatched, [[x, tid, minpo(2)]]);
    assert.equal(fromMemory(unwatched, x, next(t2)), undefined);
    await assert.rejects(PostgreSQLStorage.open({ dsn: '', cacheBytes: -1 }), RangeError);
  });
});
