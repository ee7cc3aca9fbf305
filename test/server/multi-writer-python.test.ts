// Several servers over one database (issue 12), with the real Python ZEO client: two zeo-ts servers over one
// shared MemoryStorageData (test/helpers/multi-writer.ts), Python clients of each
// (test/fixtures/python/zeo_multi_writer.py). A commit through one server is invalidated in the caches of
// the other's clients; a client that syncs with its server (server_sync) reads it at once; a client coming
// back with a persistent cache catches up from its server's invalidation queue; and a racetest with clients
// spread over both servers finds no inconsistent snapshot, no stale read, no lost update.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturesDir } from '../helpers/corpus.js';
import { startServersOnOneDatabase, type ServersOnOneDatabase } from '../helpers/multi-writer.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import type { TestServer } from '../helpers/server-fixture.js';

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

async function withServers(
  count: number,
  fn: (db: ServersOnOneDatabase) => Promise<void>,
  pollIntervalMs?: number,
): Promise<void> {
  const db = await startServersOnOneDatabase(count, {}, pollIntervalMs);
  try {
    await fn(db);
  } finally {
    await db.stop();
  }
}

interopTest(
  'a client of B coming back with a persistent cache catches up on commits made through A',
  async (oracle) => {
    const var_ = await mkdtemp(join(tmpdir(), 'zeo-ts-multi-writer-'));
    try {
      await withServers(2, async ({ servers: [a, b] }) => {
        const r = await scenario<{ verify: string | null; p: number; q: number }>(
          oracle,
          'reconnect_catch_up(*args)',
          [addr(a), addr(b), var_],
        );
        assert.deepEqual(r, { verify: 'quick verification', p: 2, q: 1 });
        assert.ok(
          b.logs.some((l) => /Return 1 invalidations up to tid/.test(l)),
          "B answered getInvalidations from its queue with A's one change",
        );
      });
    } finally {
      await rm(var_, { recursive: true, force: true });
    }
  },
);

// storages that hear of each other's commits at once, and ones that poll (as PostgreSQL storages do)
for (const pollIntervalMs of [undefined, 20]) {
  const mode = pollIntervalMs === undefined ? 'told at once' : `polling every ${pollIntervalMs} ms`;
  interopTest(
    `${mode}: a commit through server A is invalidated in the cache of B's clients; a client of B that syncs reads it at once`,
    async (oracle) => {
      await withServers(
        2,
        async ({ servers: [a, b] }) => {
          const r = await scenario<{
            tid1: string;
            invalidated: boolean;
            b_value: number;
            stale: Array<[number, number]>;
            last_a: string;
            last_b: string;
          }>(oracle, 'cross_invalidation(*args)', [addr(a), addr(b), 20]);
          assert.equal(r.invalidated, true, "m's cached current revision was invalidated in B's client");
          assert.equal(r.b_value, 1);
          assert.deepEqual(r.stale, [], 'no stale read after A committed (server_sync)');
          assert.equal(r.last_b, r.last_a);
        },
        pollIntervalMs,
      );
    },
  );

  interopTest(
    `${mode}: racetest over two servers: consistent snapshots, no stale read, no lost update`,
    async (oracle, t) => {
      await withServers(
        2,
        async ({ servers }) => {
          const r = await scenario<{
            errors: string[];
            finals: Array<[number, number]>;
            commits: number;
            conflicts: number;
            alive: number;
          }>(oracle, 'race(*args)', [servers.map(addr), 2, 25, 7]);
          t.diagnostic(`${r.commits} commits, ${r.conflicts} conflicts retried`);
          assert.deepEqual(r.errors, []);
          assert.equal(r.alive, 0);
          assert.equal(r.commits, 4 * 25);
          assert.deepEqual(r.finals, [
            [100, 100],
            [100, 100],
          ]);
        },
        pollIntervalMs,
      );
    },
    { timeout: 120_000 },
  );
}

interopTest(
  'a client with a persistent cache moves from A to B at once: B, behind, polls before it answers register',
  async (oracle) => {
    const var_ = await mkdtemp(join(tmpdir(), 'zeo-ts-multi-writer-'));
    try {
      await withServers(
        2,
        async ({ servers: [a, b] }) => {
          const r = await scenario<{ v: number; caught_up: boolean; verify: string | null }>(
            oracle,
            'failover(*args)',
            [addr(a), addr(b), var_],
          );
          assert.deepEqual(r, { v: 1, caught_up: true, verify: 'Cache up to date' });
        },
        // (the timer never polls during the test: only the server's register does)
        60_000,
      );
    } finally {
      await rm(var_, { recursive: true, force: true });
    }
  },
);
