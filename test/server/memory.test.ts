// Server memory under hostile clients, zeo serve beside runzeo in the same run (issue 9, item 8): a client that
// pipelines 64 loads of a 1 MiB record and never reads, a 10^6-deep nested pickle, 300 idle connections, each
// twice. Both servers run as real processes; their RSS is read from /proc/PID/status. Ours must grow no more
// than runzeo's (within a margin, below) and give the memory back once each load is over, round after round.
// `npm run bench -- hostile` prints the same figures as a table.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { interopDisabled } from '../helpers/oracle.js';
import { LOADS, mib, MiB, runHostile, startServer, type HostileFigures } from '../helpers/hostile.js';
import { stopLeftovers } from '../helpers/server-process.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-memory-'));
after(() => {
  stopLeftovers();
  rmSync(dir, { recursive: true, force: true });
});

const ROUNDS = 2;
/**
 * How much more than runzeo's our peak may grow: garbage lives until V8's next collection (a young collection
 * every 4 MiB of allocation, a full one once external memory has grown by 64 MiB since the last), where
 * CPython's reference counting frees each buffer when its last reference goes.
 */
const PEAK_MARGIN = 32 * MiB;
/**
 * What may stay after a load is over: V8 keeps its young generation committed (2 x 4 MiB semi-spaces, see
 * bin/zeo) and a few pages of old space and code; malloc keeps some of its arenas' free memory.
 */
const KEPT_MARGIN = 24 * MiB;

test(
  'under hostile clients zeo serve grows no more than runzeo, and gives the memory back',
  {
    skip: interopDisabled
      ? 'ZEO_TS_SKIP_INTEROP=1: runzeo is the reference'
      : existsSync('/proc/self/status')
        ? false
        : 'no /proc to read RSS from',
    timeout: 900_000,
  },
  async () => {
    {
      const figures = new Map<string, HostileFigures>();
      for (const kind of ['runzeo', 'zeo-ts'] as const) {
        const { server, port } = await startServer(kind, dir);
        try {
          figures.set(kind, await runHostile(server, port, ROUNDS));
        } finally {
          await server.stop();
        }
      }
      const theirs = figures.get('runzeo')!;
      const ours = figures.get('zeo-ts')!;
      const table = [theirs, ours]
        .map(
          (f) =>
            `${f.kind}: base ${mib(f.base)}, ` +
            f.rounds.map((r) => `${r.load} peak ${mib(r.peak)} after ${mib(r.after)}`).join(', ') +
            `, end ${mib(f.end)} MiB`,
        )
        .join('\n');
      for (let i = 0; i < ours.rounds.length; i++) {
        const o = ours.rounds[i];
        const t = theirs.rounds[i];
        assert.equal(o.load, t.load);
        assert.ok(
          o.peak - ours.base <= Math.max(0, t.peak - theirs.base) + PEAK_MARGIN,
          `${o.load} (round ${Math.floor(i / LOADS.length) + 1}): zeo serve grew by ${mib(o.peak - ours.base)} MiB, ` +
            `runzeo by ${mib(t.peak - theirs.base)} MiB\n${table}`,
        );
        assert.ok(
          o.after - ours.base <= KEPT_MARGIN,
          `${o.load} (round ${Math.floor(i / LOADS.length) + 1}): zeo serve kept ${mib(o.after - ours.base)} MiB ` +
            `after the load\n${table}`,
        );
      }
      assert.ok(
        ours.end - ours.base <= KEPT_MARGIN,
        `zeo serve kept ${mib(ours.end - ours.base)} MiB\n${table}`,
      );
      console.log(table);
    }
  },
);
