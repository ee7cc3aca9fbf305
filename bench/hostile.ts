// `npm run bench -- hostile [ROUNDS]`: zeo serve and runzeo, in the same run, against hostile clients (a client
// that pipelines 64 loads of a 1 MiB record and never reads, a 10^6-deep nested pickle, 300 idle connections),
// each load ROUNDS times (default 3); prints each server's resident memory (VmRSS) before, at the peak of each
// load and after it, and writes them to bench/results/hostile.json.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../test/helpers/oracle.js';
import { mib, runHostile, startServer, type HostileFigures } from '../test/helpers/hostile.js';
import { printTable } from './report.js';

const repeat = Number(process.argv[2] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-bench-hostile-'));
const figures: HostileFigures[] = [];
try {
  for (const kind of ['runzeo', 'zeo-ts'] as const) {
    const { server, port } = await startServer(kind, dir);
    try {
      figures.push(await runHostile(server, port, repeat, (l) => console.error(l)));
    } finally {
      await server.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const rows: Array<Array<string | number>> = [];
rows.push(['start (after one 1 MiB commit)', ...figures.map((f) => mib(f.base))]);
for (let i = 0; i < figures[0].rounds.length; i++) {
  const load = figures[0].rounds[i].load;
  rows.push([`${load}: peak`, ...figures.map((f) => mib(f.rounds[i].peak))]);
  rows.push([`${load}: after`, ...figures.map((f) => mib(f.rounds[i].after))]);
}
rows.push(['end of the run', ...figures.map((f) => mib(f.end))]);
printTable(
  `Resident memory (MiB) under hostile clients, ${repeat} round(s)`,
  ['', ...figures.map((f) => f.kind)],
  rows,
);
mkdirSync(resolve(repoRoot, 'bench/results'), { recursive: true });
writeFileSync(
  resolve(repoRoot, 'bench/results/hostile.json'),
  JSON.stringify({ repeat, figures }, null, 2) + '\n',
);
console.error('wrote bench/results/hostile.json');
