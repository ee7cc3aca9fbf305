// Issue 12's acceptance: a randomized test in the spirit of ZODB's racetest, with clients spread over two
// `zeo serve` processes on one PostgreSQL database (and RelStorage clients on it too): Python processes of
// several threads, each a client (ZEO clients with and without server_sync, RelStorage), reading every
// counter and writing total = their sum + 1 now and then (test/fixtures/python/racetest_stale.py). No client
// ever sees an inconsistent snapshot, a stale read (a total older than one a commit had returned when its
// transaction began: for the clients that sync), or its reads go backwards; no update is lost. The seed is
// in every failure message.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest } from '../helpers/oracle.js';
import { skipRelStorage, useRelStorageFixture } from '../helpers/relstorage.js';

interface RaceResult {
  errors: string[];
  commits: number;
  conflicts: number;
  alive: number;
  exitcodes: Array<number | null>;
  finals: Array<[number, number]>;
  seconds: number;
}

/** the seed: ZEO_TS_RACE_SEED to replay one, else a new one each run */
const seed = Number(process.env.ZEO_TS_RACE_SEED ?? Math.floor(Math.random() * 1e9));

describe(
  'racetest over two zeo serve and RelStorage on one PostgreSQL database',
  { skip: skipRelStorage },
  () => {
    const fix = useRelStorageFixture();

    interopTest(
      `no inconsistent snapshot, no stale read, no lost update (seed ${seed})`,
      async (_oracle, t) => {
        const { dsn } = await fix.database('race');
        const servers = [
          await fix.serve(dsn, { pollInterval: 0.5 }),
          await fix.serve(dsn, { pollInterval: 0.5 }),
        ];
        // ZEO clients of each server with server_sync (their transactions see every commit returned before
        // they began) and without (they hear of commits by invalidations), and RelStorage clients
        const targets = [
          ...servers.map((s) => ['zeo', s.address]),
          ...servers.map((s) => ['zeo-nosync', s.address]),
          ['relstorage', dsn],
        ];
        const why = `(seed ${seed}: ZEO_TS_RACE_SEED=${seed} replays its choices)`;
        t.diagnostic(`seed ${seed}`);
        // per target: 1 process of 2 clients, 40 transactions each, half of them writing
        const r = await fix.rs.oracle.json<RaceResult>(
          `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
            `import racetest_stale\nresult = racetest_stale.race(*args)`,
          undefined,
          [targets, 1, 2, 5, 40, seed],
        );
        t.diagnostic(`${r.commits} commits, ${r.conflicts} conflicts in ${r.seconds} s`);
        assert.deepEqual(r.errors, [], `what the clients saw ${why}`);
        assert.equal(r.alive, 0, `every client finished ${why}`);
        assert.deepEqual(
          r.exitcodes,
          targets.map(() => 0),
        );
        assert.ok(r.commits > 0, `commits were made ${why}`);
        // every target reads the same end: the counters add up to the total, and no commit was lost
        assert.deepEqual(
          r.finals,
          targets.map(() => [r.commits, r.commits]),
          `the end state through each server and RelStorage ${why}`,
        );
        for (const s of servers) await s.server.stopCleanly();
      },
      { timeout: 180_000 },
    );
  },
);
