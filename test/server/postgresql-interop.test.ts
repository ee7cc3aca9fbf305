// Issue 12's acceptance: RelStorage 4.x and two `zeo serve` processes on one database at once. Python ZEO
// clients of each server (A and B) and a RelStorage client (R) commit, read each other's data and get
// ConflictError across them; the ZEO clients hear of every other writer's commit once, in tid order: within
// the poll interval for RelStorage's (which notifies nobody), through NOTIFY for our servers' (shown with
// servers that never poll on a timer). The Python side is test/fixtures/python/racetest_writers.py.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest } from '../helpers/oracle.js';
import { skipRelStorage, useRelStorageFixture, type RelStorageFixture } from '../helpers/relstorage.js';

function scenario<T>(fix: RelStorageFixture, call: string, args: unknown[]): Promise<T> {
  return fix.rs.oracle.json<T>(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import racetest_writers as s\nresult = s.${call}(*args)`,
    undefined,
    args,
  );
}

interface Conflict {
  start: [number, number];
  tid: string;
  raised: string | null;
}

interface ThreeWriters {
  setup_tid: string;
  commits: Array<[string, string, string]>;
  delays: Record<string, number[]>;
  missing: unknown[];
  uncached: unknown[];
  reads: Array<[number, string, string, number[]]>;
  conflicts: Record<'a_then_b' | 'a_then_r' | 'r_then_b', Conflict>;
  final: Record<string, Record<string, number>>;
  heard: Record<'a' | 'b', Array<[string, string[]]>>;
}

const POLL_INTERVAL = 0.5;
/** seconds a poll may take beyond the poll interval on a busy machine: the bound is generous, not a timing */
const SLACK = 4;

describe('RelStorage and two zeo serve on one PostgreSQL database', { skip: skipRelStorage }, () => {
  const fix = useRelStorageFixture();

  interopTest(
    'ZEO clients of A and B and RelStorage commit, read each other, conflict across; every commit is heard of',
    async (_oracle, t) => {
      const { dsn } = await fix.database('three');
      const a = await fix.serve(dsn, { pollInterval: POLL_INTERVAL, poolSize: 4 });
      const b = await fix.serve(dsn, { pollInterval: POLL_INTERVAL, poolSize: 4 });
      const rounds = 3;
      const r = await scenario<ThreeWriters>(fix, 'three_writers', [
        a.address,
        b.address,
        dsn,
        rounds,
        POLL_INTERVAL + SLACK,
      ]);
      for (const [k, v] of Object.entries(r.delays))
        t.diagnostic(`${k}: ${v.map((d) => `${Math.round(d * 1000)} ms`).join(', ')}`);

      // every commit reached the caches of the ZEO clients of both servers (but its committer), its oid only
      assert.deepEqual(r.missing, [], 'commits not heard of, with the wrong oids, or left in a cache');
      assert.deepEqual(r.uncached, [], 'the ZEO clients had the current revisions cached before each commit');
      assert.equal(r.commits.length, 3 * rounds);
      for (const [writer, ...others] of [
        ['a', 'b'],
        ['b', 'a'],
        ['r', 'a', 'b'],
      ]) {
        for (const c of others) assert.equal(r.delays[`${writer}->${c}`].length, rounds, `${writer}->${c}`);
      }
      // RelStorage's commits, which notify nobody, within the poll interval (and slack)
      for (const d of [...r.delays['r->a'], ...r.delays['r->b']]) {
        assert.ok(d < POLL_INTERVAL + SLACK, `RelStorage's commit heard of after ${d} s`);
      }
      // each ZEO client heard of every transaction but its own, once each, in tid order
      const tids = (who: string[]): string[] =>
        r.commits.filter(([w]) => who.includes(w)).map(([, tid]) => tid);
      for (const [c, others] of [
        ['a', ['b', 'r']],
        ['b', ['a', 'r']],
      ] as const) {
        const heard = r.heard[c].map(([tid]) => tid);
        const rounds_ = heard.filter((tid) => tid > r.setup_tid && tid <= r.commits.at(-1)![1]);
        assert.deepEqual(rounds_, tids([...others]), `${c}'s client heard of the others' commits`);
        assert.deepEqual(heard, [...heard].sort(), `${c}'s client heard in tid order`);
        assert.equal(new Set(heard).size, heard.length, `${c}'s client heard of each once`);
      }

      // after each commit, everyone read every writer's last value
      for (const [round, writer, reader, values] of r.reads) {
        const at = 'abr'.indexOf(writer);
        const expected = [0, 1, 2].map((k) => round + (k <= at ? 1 : 0));
        assert.deepEqual(values, expected, `${reader} after ${writer}'s commit in round ${round}`);
      }

      // the same object changed from the same start by two writers: the second gets ConflictError
      assert.deepEqual(
        Object.fromEntries(Object.entries(r.conflicts).map(([k, c]) => [k, [c.start, c.raised]])),
        {
          a_then_b: [[0, 0], 'ConflictError'],
          a_then_r: [[1, 1], 'ConflictError'],
          r_then_b: [[2, 2], 'ConflictError'],
        },
      );
      const end = { a: rounds, b: rounds, r: rounds, x: 3 };
      assert.deepEqual(r.final, { a: end, b: end, r: end }, 'everyone reads what the winners wrote');

      for (const s of [a, b]) await s.server.stopCleanly();
    },
    { timeout: 120_000 },
  );

  interopTest(
    "servers that never poll on a timer: our commits reach the other server's clients (NOTIFY); RelStorage's come with the next notified poll",
    async () => {
      const { dsn } = await fix.database('notified');
      // (a poll interval longer than the test: only NOTIFY, and our own commits, make a server poll)
      const a = await fix.serve(dsn, { pollInterval: 600 });
      const b = await fix.serve(dsn, { pollInterval: 600 });
      const r = await scenario<{
        t1: string;
        t2: string;
        t3: string;
        delay1: number | null;
        delay3: number | null;
        heard_a: string[];
        heard_b: string[];
      }>(fix, 'notified', [a.address, b.address, dsn, 30]);
      assert.ok(r.delay1 !== null, "B's client heard of A's commit without a timer poll: NOTIFY");
      assert.ok(r.delay3 !== null, "B's client heard of A's second commit");
      // RelStorage's t2 came to B's clients with A's t3 (its NOTIFY woke B's poll), before it; to A's
      // clients when A committed t3 (a commit delivers the transactions before its own first)
      assert.deepEqual(r.heard_b, [r.t1, r.t2, r.t3]);
      assert.deepEqual(r.heard_a, [r.t2]);
      for (const s of [a, b]) await s.server.stopCleanly();
    },
    { timeout: 120_000 },
  );
});
