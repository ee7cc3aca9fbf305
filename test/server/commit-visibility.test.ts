// Commit visibility across processes (issue 9, item 9): a Python client commits, then tells a second Python
// client through a pipe; that one begins a transaction at once and reads. It reads stale data when the
// commit's invalidation has not reached it yet. The other clients' invalidations must leave before the
// committer's reply, as runzeo sends them, so our stale-read rate is no higher than runzeo's, measured in
// the same run.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after } from 'node:test';
import { interopTest, oraclePython, repoRoot } from '../helpers/oracle.js';
import { freePort, ServerProcess, stopLeftovers, type ServerKind } from '../helpers/server-process.js';

const script = resolve(repoRoot, 'test/fixtures/python/zeo_visibility.py');
/** trials per round; rounds alternate between the servers, so a busy moment of the machine hits both */
const TRIALS = 400;
const ROUNDS = 5;

after(stopLeftovers);

function staleReads(port: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      oraclePython(),
      [script, '127.0.0.1', String(port), String(TRIALS)],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolvePromise((JSON.parse(stdout.trim()) as { stale: number }).stale);
      },
    );
  });
}

interopTest(
  'a client that begins right after another process committed reads stale data no more often than with runzeo',
  async (_oracle, t) => {
    const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-visibility-'));
    const servers: Array<{ kind: ServerKind; server: ServerProcess; port: number; stale: number }> = [];
    try {
      for (const kind of ['runzeo', 'zeo-ts'] as const) {
        const conf = join(dir, `${kind}.conf`);
        writeFileSync(
          conf,
          `<zeo>\n  address 127.0.0.1:${await freePort()}\n</zeo>\n` +
            `<filestorage 1>\n  path ${join(dir, `${kind}.fs`)}\n</filestorage>\n`,
        );
        const server = new ServerProcess({ kind, conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
        servers.push({ kind, server, port: await server.port(30_000), stale: 0 });
      }
      for (let round = 0; round < ROUNDS; round++) {
        for (const s of servers) s.stale += await staleReads(s.port);
      }
      const [runzeo, ours] = servers;
      t.diagnostic(`stale reads in ${TRIALS * ROUNDS} trials: runzeo ${runzeo.stale}, zeo-ts ${ours.stale}`);
      // the counts vary a lot from run to run on a shared machine: allow three standard deviations of a
      // Poisson count around runzeo's, plus 5
      const margin = 3 * Math.sqrt(runzeo.stale) + 5;
      assert.ok(
        ours.stale <= runzeo.stale + margin,
        `zeo-ts ${ours.stale} stale reads, runzeo ${runzeo.stale} (+ margin ${margin.toFixed(1)})`,
      );
      for (const s of servers) await s.server.stopCleanly();
    } finally {
      for (const s of servers) s.server.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  { timeout: 180_000 },
);
