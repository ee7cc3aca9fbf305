// RelStorage 4.x and PostgreSQLStorage take the same locks, so they commit to one database at once safely:
// RelStorage's vote holds its object locks (advisory, by zoid) and our vote waits on them; our vote holds the
// commit lock (advisory -1) and RelStorage's finish waits on it; readCurrent's shared locks meet the other's
// object locks both ways. Each wait is seen in pg_locks (a lock not granted), not guessed from timing. And
// both incrementing counters at once (each retrying its conflicts) lose no increment.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError, ReadConflictError } from '../../../src/storage/errors.js';
import { idHex, u64, z64, type Oid } from '../../../src/storage/ids.js';
import type { PostgreSQLStorage } from '../../../src/storage/postgresql/index.js';
import {
  skipRelStorage,
  storageHistory,
  storageObjects,
  untilSeen,
  useRelStorageFixture,
  type Spec,
} from '../../helpers/relstorage.js';
import { commitMany, mappingOf, mappingRecord, refOid, txnMeta } from '../contract/helpers.js';

/** RelStorage's commit lock key (its locker.py) */
const COMMIT_LOCK = -1n;

describe('RelStorage 4.x and PostgreSQLStorage take the same locks', { skip: skipRelStorage }, () => {
  const fx = useRelStorageFixture();
  const { rs } = fx;

  /** A database RelStorage created, with objects a and b in the root; our storage on it. */
  async function setup(): Promise<{
    dsn: string;
    database: string;
    s: PostgreSQLStorage;
    a: Oid;
    b: Oid;
  }> {
    const { name: database, dsn } = await fx.database('locks');
    await rs.create(dsn);
    await rs.commit(dsn, [
      {
        description: 'a and b',
        set: [
          [['a'], { $mapping: { v: 0 } }],
          [['b'], { $mapping: { v: 0 } }],
        ],
      },
    ]);
    const { storage: s } = await fx.openWatched(dsn);
    const root = mappingOf((await s.load(z64)).data);
    return { dsn, database, s, a: refOid(root.get('a')), b: refOid(root.get('b')) };
  }

  /** The keys of the advisory locks some session of `database` waits for. */
  async function waitingFor(database: string): Promise<bigint[]> {
    const r = await fx.admin.query<{ classid: string; objid: string }>(
      `SELECT l.classid::text AS classid, l.objid::text AS objid FROM pg_locks l JOIN pg_database d
          ON d.oid = l.database
        WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND NOT l.granted AND d.datname = $1`,
      [database],
    );
    return r.rows.map((row) => BigInt.asIntN(64, (BigInt(row.classid) << 32n) | BigInt(row.objid)));
  }

  async function untilWaiting(database: string, key: bigint): Promise<void> {
    for (let i = 0; i < 2000; i++) {
      if ((await waitingFor(database)).includes(key)) return;
      await sleep(5);
    }
    assert.fail(`nobody waits for advisory lock ${key} in ${database}`);
  }

  const value = async (s: PostgreSQLStorage, oid: Oid) => mappingOf((await s.load(oid)).data).get('v');

  it("our vote waits for the object lock RelStorage's vote holds, then finds the conflict", async () => {
    const { dsn, database, s, a } = await setup();
    const start = await s.load(a);
    const theirs = await rs.rawBegin('r', dsn, 'RelStorage holds a');
    await theirs.store(a, start.serial, mappingRecord([['v', 'RelStorage']]));
    assert.equal(await theirs.vote(), null);

    const ours = commitMany(s, [[a, start.serial, mappingRecord([['v', 'zeo-ts']])]], {
      description: 'zeo-ts',
    });
    const outcome = ours.then(
      () => null,
      (e: unknown) => e,
    );
    await untilWaiting(database, u64(a));
    const tid = await theirs.finish();
    const e = await outcome;
    assert.ok(
      e instanceof ConflictError && !(e instanceof ReadConflictError),
      `a ConflictError: ${String(e)}`,
    );
    assert.equal(idHex(e.oid!), idHex(a));

    await untilSeen(s, tid);
    assert.equal(await value(s, a), 'RelStorage');
    assert.deepEqual(await storageHistory(s), await rs.history(dsn));
  });

  it("RelStorage's finish waits for the commit lock our vote holds, and commits after us", async () => {
    const { dsn, database, s, a, b } = await setup();
    const [sa, sb] = [await s.load(a), await s.load(b)];
    const txn = txnMeta({ description: 'zeo-ts holds the commit lock' });
    await s.tpcBegin(txn);
    await s.store(a, sa.serial, mappingRecord([['v', 'zeo-ts']]), txn);
    await s.tpcVote(txn);

    // RelStorage changes another object: its vote (object locks) goes through, its finish waits
    const theirs = await rs.rawBegin('r', dsn, 'RelStorage after');
    await theirs.store(b, sb.serial, mappingRecord([['v', 'RelStorage']]));
    assert.equal(await theirs.vote(), null);
    const finished = theirs.finish();
    await untilWaiting(database, COMMIT_LOCK);
    const ourTid = idHex(await s.tpcFinish(txn));
    const theirTid = await finished;
    assert.ok(theirTid > ourTid, `RelStorage's ${theirTid} after our ${ourTid}`);

    await untilSeen(s, theirTid);
    assert.equal(await value(s, a), 'zeo-ts');
    assert.equal(await value(s, b), 'RelStorage');
    const spec = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.deepEqual(spec.$mapping.a, { $mapping: { v: 'zeo-ts' } });
    assert.deepEqual(spec.$mapping.b, { $mapping: { v: 'RelStorage' } });
    assert.deepEqual(await storageObjects(s), await rs.objects(dsn));
  });

  it("readCurrent of an object the other's vote holds fails at once, both ways", async () => {
    const { dsn, s, a, b } = await setup();
    const [sa, sb] = [await s.load(a), await s.load(b)];

    // RelStorage holds a: our readCurrent of a (storing b) cannot take its shared lock
    const theirs = await rs.rawBegin('r', dsn, 'RelStorage holds a');
    await theirs.store(a, sa.serial, mappingRecord([['v', 'RelStorage']]));
    assert.equal(await theirs.vote(), null);
    const txn = txnMeta({ description: 'zeo-ts reads a' });
    await s.tpcBegin(txn);
    await s.checkCurrentSerialInTransaction(a, sa.serial, txn);
    await s.store(b, sb.serial, mappingRecord([['v', 'zeo-ts']]), txn);
    await assert.rejects(s.tpcVote(txn), (e: unknown) => e instanceof ReadConflictError);
    await s.tpcAbort(txn);
    const tid = await theirs.finish();
    await untilSeen(s, tid);
    const a1 = await s.load(a);
    assert.equal(idHex(a1.serial), tid);

    // we hold a: RelStorage's readCurrent of a (storing b) fails in its vote
    const ours = txnMeta({ description: 'zeo-ts holds a' });
    await s.tpcBegin(ours);
    await s.store(a, a1.serial, mappingRecord([['v', 'zeo-ts']]), ours);
    await s.tpcVote(ours);
    const reader = await rs.rawBegin('r2', dsn, 'RelStorage reads a');
    await reader.readCurrent(a, a1.serial);
    await reader.store(b, sb.serial, mappingRecord([['v', 'RelStorage']]));
    const refused = await reader.vote();
    assert.ok(
      refused && ['ReadConflictError', 'UnableToLockRowsToReadCurrentError'].includes(refused.error),
      `RelStorage's vote raised a read conflict: ${JSON.stringify(refused)}`,
    );
    const ourTid = idHex(await s.tpcFinish(ours));
    // b was never written by either; a is ours
    assert.equal(await value(s, a), 'zeo-ts');
    assert.equal(await value(s, b), 0);
    assert.equal(await rs.lastTransaction(dsn), ourTid);
    assert.deepEqual(await storageHistory(s), await rs.history(dsn));
  });

  it('counters incremented by both at once: every increment lands once (no lost update)', async () => {
    const { name: database, dsn } = await fx.database('race');
    const keys = ['c0', 'c1', 'c2'];
    await rs.create(dsn);
    await rs.commit(dsn, [{ set: keys.map((k): [string[], Spec] => [[k], { $mapping: { v: 0 } }]) }]);
    const { storage: s } = await fx.openWatched(dsn);
    const root = mappingOf((await s.load(z64)).data);
    const oids = keys.map((k) => refOid(root.get(k)));
    const n = 30;

    // ours: the same increments through PostgreSQLStorage, each retried after a ConflictError
    const ourIncrements = async (): Promise<number> => {
      let conflicts = 0;
      for (let i = 0; i < n; i++) {
        const oid = oids[i % oids.length];
        for (;;) {
          const { data, serial } = await s.load(oid);
          const v = mappingOf(data).get('v') as number;
          try {
            await commitMany(s, [[oid, serial, mappingRecord([['v', v + 1]])]], {
              description: `zeo-ts ${i}`,
            });
            break;
          } catch (e) {
            if (!(e instanceof ConflictError)) throw e;
            conflicts++;
            await sleep(1); // the poll brings the other's commit
          }
        }
      }
      return conflicts;
    };
    await Promise.all([rs.increments(dsn, keys, n), ourIncrements()]);

    const spec = (await rs.tree(dsn)) as { $mapping: Record<string, Spec> };
    assert.deepEqual(
      keys.map((k) => spec.$mapping[k]),
      keys.map(() => ({ $mapping: { v: (2 * n) / keys.length } })),
    );
    const history = await rs.history(dsn);
    assert.equal(history.filter((t) => t.description.startsWith('zeo-ts ')).length, n);
    // 2 + 2n transactions in tid order, each counter's revisions a chain (every increment read the one before)
    assert.equal(history.length, 2 + 2 * n);
    await untilSeen(s, history[history.length - 1].tid);
    assert.deepEqual(await storageHistory(s), history);
    assert.deepEqual(await waitingFor(database), []);
  });
});
