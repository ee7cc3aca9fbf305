// npm run bench -- cache [--accesses N]
// The client cache beside ZEO's (ZEO.cache.ClientCache, in the oracle venv), in one run:
//   - hit rate at the same byte size on the same traces (test/helpers/cache-trace.ts: loads stored on a miss,
//     commits by others invalidating oids): Zipf skews, a moving popular set, scans, uniform;
//   - operations per second: load hits, loadBefore hits on non-current revisions, store with eviction,
//     invalidate (ours in process; ZEO's timed inside Python, without the oracle's round trips);
//   - memory per entry: the growth of V8's heap and array buffers per cached revision, beside ENTRY_OVERHEAD
//     (what the size counts per entry beside the data).
// Results also go to bench/results/cache.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ClientCache, ENTRY_OVERHEAD } from '../src/client/cache.js';
import { p64 } from '../src/storage/ids.js';
import { makeTrace, replayOurs, replayZeo, type TraceOptions } from '../test/helpers/cache-trace.js';
import { Oracle, repoRoot } from '../test/helpers/oracle.js';
import { printTable } from './report.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const accesses = arg('accesses', 200_000);

const traces: Array<[string, Omit<TraceOptions, 'accesses'>, number]> = [
  ['Zipf 0.9, 20k objects, cache 10%', { seed: 1, objects: 20_000, skew: 0.9, writeRate: 0.02 }, 0.1],
  ['Zipf 1.1, 50k objects, cache 5%', { seed: 2, objects: 50_000, skew: 1.1, writeRate: 0.02 }, 0.05],
  [
    'Zipf 0.8, 20k objects, cache 25%, 5% writes',
    { seed: 3, objects: 20_000, skew: 0.8, writeRate: 0.05 },
    0.25,
  ],
  ['Zipf 1.0, 100k objects, cache 2%', { seed: 7, objects: 100_000, skew: 1.0, writeRate: 0.02 }, 0.02],
  [
    'Zipf 1.0, popular set moving (500 ranks / 5k)',
    { seed: 4, objects: 20_000, skew: 1.0, writeRate: 0.02, shiftEvery: 5000, shiftBy: 500 },
    0.1,
  ],
  [
    'Zipf 1.0 with 5000-oid scans every 10k',
    { seed: 5, objects: 20_000, skew: 1.0, writeRate: 0.02, scanEvery: 10_000, scanLength: 5000 },
    0.1,
  ],
  ['uniform, 20k objects, cache 30%', { seed: 6, objects: 20_000, skew: 0, writeRate: 0.02 }, 0.3],
];

const oracle = new Oracle();
const out: Record<string, unknown> = { accesses, entryOverhead: ENTRY_OVERHEAD };
try {
  const rows: Array<Array<string | number>> = [];
  const hitRates: unknown[] = [];
  for (const [name, options, share] of traces) {
    const trace = makeTrace({ ...options, accesses });
    const size = Math.floor(trace.totalBytes * share);
    const ours = replayOurs(trace, size);
    const zeo = await replayZeo(oracle, trace, size);
    rows.push([
      name,
      (size / 2 ** 20).toFixed(1),
      (ours.hitRate * 100).toFixed(2),
      (zeo.hitRate * 100).toFixed(2),
      ((ours.hitRate - zeo.hitRate) * 100).toFixed(2),
    ]);
    hitRates.push({ name, size, ours: ours.hitRate, zeo: zeo.hitRate });
  }
  out.hitRates = hitRates;
  printTable(
    `Hit rate (%), ${accesses} loads per trace, same byte size (ZEO counts 43 bytes per record, ours ${ENTRY_OVERHEAD})`,
    ['trace', 'MiB', 'ours', 'ZEO', 'ours-ZEO'],
    rows,
  );

  // ---- throughput
  const N = 100_000;
  const oids = Array.from({ length: N }, (_, i) => p64(i + 1));
  const data = new Uint8Array(200);
  const t1 = p64(1);
  const t2 = p64(2);
  const t3 = p64(3);
  const time = (ops: number, fn: () => void): number => {
    const t0 = performance.now();
    fn();
    return ops / ((performance.now() - t0) / 1000);
  };
  const ours: Record<string, number> = {};
  {
    const c = new ClientCache({ size: 1 << 30 });
    ours['store (new current)'] = time(N, () => {
      for (let i = 0; i < N; i++) c.store(oids[i], t1, null, data);
    });
    ours['load hit'] = time(5 * N, () => {
      for (let k = 0; k < 5; k++) for (let i = 0; i < N; i++) c.load(oids[i]);
    });
    ours.invalidate = time(N, () => {
      for (let i = 0; i < N; i++) c.invalidate(oids[i], t2);
    });
    ours['loadBefore hit (non-current)'] = time(5 * N, () => {
      for (let k = 0; k < 5; k++) for (let i = 0; i < N; i++) c.loadBefore(oids[i], t2);
    });
    ours['load miss'] = time(5 * N, () => {
      for (let k = 0; k < 5; k++) for (let i = 0; i < N; i++) c.load(oids[i]);
    });
    const small = new ClientCache({ size: (N / 10) * (200 + ENTRY_OVERHEAD) });
    ours['store with eviction (cache 10%)'] = time(3 * N, () => {
      for (let i = 0; i < N; i++) small.store(oids[i], t1, null, data);
      for (let i = 0; i < N; i++) small.invalidate(oids[i], t2);
      for (let i = 0; i < N; i++) small.store(oids[i], t3, null, data);
    });
  }
  const zeo = await oracle.json<Record<string, number>>(
    `
import time, ZEO.cache
from ZODB.utils import p64
N = args
oids = [p64(i + 1) for i in range(N)]
data = b'x' * 200
t1, t2, t3 = p64(1), p64(2), p64(3)
def rate(ops, f):
    t0 = time.perf_counter(); f(); return ops / (time.perf_counter() - t0)
r = {}
c = ZEO.cache.ClientCache(None, 1 << 30)
def store():
    for o in oids: c.store(o, t1, None, data)
r['store (new current)'] = rate(N, store)
def load():
    for k in range(5):
        for o in oids: c.load(o)
r['load hit'] = rate(5 * N, load)
def inval():
    for o in oids: c.invalidate(o, t2)
r['invalidate'] = rate(N, inval)
def lb():
    for k in range(5):
        for o in oids: c.loadBefore(o, t2)
r['loadBefore hit (non-current)'] = rate(5 * N, lb)
r['load miss'] = rate(5 * N, load)
c.close()
s = ZEO.cache.ClientCache(None, N // 10 * (200 + 43))
def churn():
    for o in oids: s.store(o, t1, None, data)
    for o in oids: s.invalidate(o, t2)
    for o in oids: s.store(o, t3, None, data)
r['store with eviction (cache 10%)'] = rate(3 * N, churn)
s.close()
result = r
`,
    undefined,
    N,
  );
  printTable(
    `Operations per second (${N} oids, 200-byte records)`,
    ['operation', 'ours', 'ZEO', 'ours/ZEO'],
    Object.keys(ours).map((k) => [
      k,
      Math.round(ours[k]),
      Math.round(zeo[k]),
      (ours[k] / zeo[k]).toFixed(1) + 'x',
    ]),
  );
  out.opsPerSecond = { ours, zeo };

  // ---- memory per entry
  const M = 200_000;
  const mem = (): number => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const base = mem();
  const c = new ClientCache({ size: 1 << 30 });
  const m0 = mem();
  for (let i = 0; i < M; i++) c.store(p64(i + 1), t1, null, new Uint8Array(100));
  const m1 = mem();
  const perEntry = (m1 - m0) / M - 100;
  printTable(
    'Memory per cached revision beside its data (100-byte records)',
    ['measure', 'bytes'],
    [
      ['V8 heap + array buffers per entry, minus the data', perEntry.toFixed(0)],
      ['ENTRY_OVERHEAD (what the size counts)', ENTRY_OVERHEAD],
      ['empty cache (sketch and tables)', m0 - base],
    ],
  );
  out.memory = { perEntry, entryOverhead: ENTRY_OVERHEAD, stats: c.stats().entries };
  mkdirSync(resolve(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(resolve(repoRoot, 'bench/results/cache.json'), JSON.stringify(out, null, 2) + '\n');
  console.log('wrote bench/results/cache.json');
} finally {
  oracle.close();
}
