// npm run bench -- server [--objects N] [--seconds S] [--warmup S] [--rounds R] [--clients 1,4]
//                         [--phases loads,pipelined,commits] [--window W] [--placement clients|free|split]
//                         [--pin] [--rebuild] [--keep] [--profile PHASE:CLIENTS]
// The same Python-client workload against runzeo (ZEO's own server, from the oracle venv) and `zeo serve`, in
// one run: both serve a fresh copy of one Data.fs (N objects, default 30,000, built once by Python's ZODB and
// kept in the system's temp directory; --rebuild builds it again) with the same zeo.conf shape, both at their
// defaults (durable commits: each server syncs Data.fs before a commit returns). Each phase runs for S
// seconds (default 5) with 1 and with 4 Python client processes (the real ZEO 6 ClientStorage, started
// together behind a barrier: test/fixtures/python/zeo_bench_client.py), after a warm-up of the same
// operations (default 2 s, not measured: a server runs for days, and V8 compiles zeo-ts's hot paths in the
// first second or two of a workload), against one server, then the other, R times (default 3; the order
// alternates from run to run):
//   - loads: one loadBefore round trip at a time per client, random oids, the client's cache never asked;
//   - pipelined loads: W (default 32) loadBefore calls in flight per client;
//   - small commits: ZODB transactions changing 2 objects of the client's own (no conflicts);
//   - single-object commits (asked with --phases commits1): the same, changing 1 object;
//   - undoLog, undoInfo (asked with --phases): one undoLog(0, -20) / undoInfo(0, -20) round trip at a time;
//   - missing (asked with --phases): one loadBefore round trip at a time of an oid that does not exist (the
//     POSKeyError reply).
// For each: operations per second over the phase (all clients), and the server's CPU time per operation (the
// server process's utime + stime from /proc/<pid>/stat, all its threads, read when the clients start and when
// they have all finished), the median of the R runs. Prints the table (ratio > 1: zeo-ts better; with each
// ratio's range over the runs, paired in run order), a second one for context (each server's CPU use over
// the phase and its main thread's share, the clients' CPU per operation), and writes
// bench/results/server-<timestamp>.json with every run.
// --placement says where the processes run. The clients and the servers share this machine's CPUs, and a
// Python ZEO client is two threads (the application's and its asyncio IO thread) that hand the GIL to each
// other several times per operation: on one CPU each handoff is a context switch, across two (on a VM) an
// inter-processor wake-up of tens of µs. Where the kernel puts the client's threads follows how often the
// server's CPU is idle when they wake, so left free it measures the client's placement more than the server:
// against a server that goes idle sooner, the client's main thread lands beside it, and its commits cost the
// client ~100 µs more CPU (perf sched shows the split).
//   clients (default): each client process kept on one CPU (sched_setaffinity, before its IO thread starts;
//     client i on CPU i mod N), the servers free: a client is GIL-bound and uses one CPU's worth anyway;
//   free: nothing pinned (the kernel decides, as before; the figures then vary with the placement);
//   split (or --pin): the servers on the last CPU and the clients on the others (taskset), as on separate
//     machines.
// --profile PHASE:CLIENTS (e.g. commits:1) instead runs only that phase, only against `node --cpu-prof zeo
// serve`, and prints the server's top functions by self time over the phase's window (with the zeo-ts
// function that called each of Node's), and by file; the profile is kept with --keep.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../test/helpers/oracle.js';
import {
  arg,
  benchDataFs,
  printProfile,
  startBenchServer,
  stopBenchServer,
  type BenchServer,
  type BenchServerKind,
  runRecord,
  writeResult,
  median,
  oracleVersions,
  printTable,
  runPython,
  withRange,
  type BenchDataFs,
  type ClientsRun,
} from './report.js';

const OBJECTS = Number(arg('objects') ?? 30_000);
const SECONDS = Number(arg('seconds') ?? 5);
const WARMUP = Number(arg('warmup') ?? 2);
const ROUNDS = Number(arg('rounds') ?? 3);
const CLIENTS = (arg('clients') ?? '1,4').split(',').map(Number);
const WINDOW = Number(arg('window') ?? 32);
const REBUILD = process.argv.includes('--rebuild');
type Placement = 'clients' | 'free' | 'split';
const PLACEMENT: Placement = process.argv.includes('--pin')
  ? 'split'
  : ((arg('placement') ?? 'clients') as Placement);
if (!['clients', 'free', 'split'].includes(PLACEMENT))
  throw new Error(`--placement clients|free|split, not ${PLACEMENT}`);
const PIN = PLACEMENT === 'split';
const SERVER_CPUS = String(cpus().length - 1);
const CLIENT_CPUS = `0-${Math.max(0, cpus().length - 2)}`;
/** --placement clients: the CPU of each client process, in turn */
const EACH_CLIENT_CPUS = PLACEMENT === 'clients' ? cpus().map((_, i) => i) : null;
const PLACEMENT_TEXT = {
  clients: 'each client process on one CPU, the servers free',
  free: 'nothing pinned',
  split: `servers on CPU ${SERVER_CPUS}, clients on ${CLIENT_CPUS}`,
}[PLACEMENT];
const KEEP = process.argv.includes('--keep');
const PROFILE = arg('profile');
/** client slots in the Data.fs: the most clients a phase can have */
const SLOTS = 16;

type Phase = 'loads' | 'pipelined' | 'commits' | 'commits1' | 'undoLog' | 'undoInfo' | 'missing';
const PHASES: Phase[] = ((arg('phases') ?? 'loads,pipelined,commits').split(',') as Phase[]).filter(Boolean);
const PHASE_NAMES: Record<Phase, string> = {
  loads: 'loads',
  pipelined: `pipelined loads (${WINDOW} in flight)`,
  commits: 'small commits (2 objects)',
  commits1: 'single-object commits',
  undoLog: 'undoLog(0, -20)',
  undoInfo: 'undoInfo(0, -20)',
  missing: 'loadBefore of a missing oid',
};

const CLIENT_PY = resolve(repoRoot, 'test/fixtures/python/zeo_bench_client.py');
const log = (s: string): void => void process.stderr.write(s + '\n');

type DataFs = BenchDataFs;

interface PhaseRun extends ClientsRun {
  serverCpu: number;
  serverMainThreadCpu: number;
}

interface Figures {
  opsPerSecond: number;
  serverCpuUsPerOp: number;
  /** the server's CPU time over the phase's wall time (100 = one core busy) */
  serverCpuPercent: number;
  /** the share of the server's CPU time spent by its main thread (the rest: Node's thread pool, V8's threads) */
  mainThreadShare: number;
  clientCpuUsPerOp: number;
  run: PhaseRun;
}

type ServerKind = BenchServerKind;

type RunningServer = BenchServer;

function python(args: string[], timeoutMs: number, pin = false): string {
  return runPython(args, timeoutMs, pin ? ['taskset', '-c', CLIENT_CPUS] : []);
}

function prepareDataFs(): DataFs {
  return benchDataFs(OBJECTS, SLOTS, REBUILD);
}

/** A fresh copy of the Data.fs in `dir`, served by runzeo or `zeo serve` (logs in dir/server.log). */
function startServer(
  kind: ServerKind,
  data: DataFs,
  dir: string,
  nodeFlags: string[] = [],
): Promise<RunningServer> {
  return startBenchServer(kind, data.path, dir, { nodeFlags, taskset: PIN ? SERVER_CPUS : undefined });
}

function runPhase(s: RunningServer, data: DataFs, phase: Phase, clients: number, seed: number): Figures {
  const args = {
    host: '127.0.0.1',
    port: s.port,
    serverPid: s.proc.pid,
    phase,
    clients,
    seconds: SECONDS,
    warmup: WARMUP,
    maxOid: data.maxOid,
    window: WINDOW,
    seed,
    clientCpus: EACH_CLIENT_CPUS,
  };
  let out: string;
  try {
    out = python([CLIENT_PY, 'run', JSON.stringify(args)], (SECONDS + 300) * 1000, PIN);
  } catch (e) {
    const tail = readFileSync(s.logPath, 'utf8').split('\n').slice(-30).join('\n');
    throw new Error(`${(e as Error).message}\n${s.kind} log (last lines):\n${tail}`, { cause: e });
  }
  const run = JSON.parse(out) as PhaseRun;
  if (!(run.ops > 0)) throw new Error(`${phase} x${clients} against ${s.kind}: no operations`);
  return {
    opsPerSecond: run.ops / run.wall,
    serverCpuUsPerOp: (run.serverCpu / run.ops) * 1e6,
    serverCpuPercent: (run.serverCpu / run.wall) * 100,
    mainThreadShare: run.serverCpu > 0 ? run.serverMainThreadCpu / run.serverCpu : 0,
    clientCpuUsPerOp: (run.clientCpu / run.ops) * 1e6,
    run,
  };
}

async function profile(data: DataFs, work: string, spec: string): Promise<void> {
  const [phase, clients] = spec.split(':') as [Phase, string];
  if (!PHASE_NAMES[phase] || !(Number(clients) > 0)) throw new Error(`--profile PHASE:CLIENTS, not ${spec}`);
  const profDir = join(work, 'cpu-prof');
  const s = await startServer('zeo-ts', data, join(work, 'zeo-ts'), [
    '--cpu-prof',
    '--cpu-prof-dir',
    profDir,
  ]);
  let f: Figures;
  try {
    log(`profiling zeo serve: ${phase} x${clients}, ${SECONDS} s...`);
    f = runPhase(s, data, phase, Number(clients), 1);
  } finally {
    await stopBenchServer(s);
  }
  log(
    `${phase} x${clients} (under --cpu-prof): ${f.opsPerSecond.toFixed(0)} ops/s, ` +
      `${f.serverCpuUsPerOp.toFixed(1)} server CPU µs/op, server CPU ${f.serverCpuPercent.toFixed(0)}% ` +
      `(main thread ${(f.mainThreadShare * 100).toFixed(0)}% of it)`,
  );
  const files = readdirSync(profDir).filter((x) => x.endsWith('.cpuprofile'));
  if (files.length !== 1) throw new Error(`expected one profile in ${profDir}, found ${files.join(', ')}`);
  printProfile(join(profDir, files[0]), `${PHASE_NAMES[phase]} x${clients}`, f.run.monotonic);
  if (KEEP) log(`profile: ${join(profDir, files[0])}`);
}

// --- the comparison

async function main(): Promise<void> {
  const data = prepareDataFs();
  const work = mkdtempSync(join(tmpdir(), 'zeo-ts-bench-server-run-'));
  try {
    if (PROFILE) return await profile(data, work, PROFILE);
    const versions = oracleVersions();
    const load0 = loadavg()[0];
    const t0 = performance.now();
    log(`Data.fs: ${data.objects} objects; starting runzeo and zeo serve on copies of it...`);
    const servers: Record<ServerKind, RunningServer> = {
      runzeo: await startServer('runzeo', data, join(work, 'runzeo')),
      'zeo-ts': await startServer('zeo-ts', data, join(work, 'zeo-ts')),
    };
    const results: Compared[] = [];
    try {
      let k = 0;
      for (const phase of PHASES) {
        for (const clients of CLIENTS) {
          const r: Compared = { phase, clients, runzeo: [], zeoTs: [] };
          for (let round = 0; round < ROUNDS; round++) {
            const order: ServerKind[] = (k + round) % 2 === 0 ? ['runzeo', 'zeo-ts'] : ['zeo-ts', 'runzeo'];
            for (const kind of order) {
              log(`${phase} x${clients} against ${kind} (run ${round + 1} of ${ROUNDS})...`);
              // (both servers get the same seed in a round: the same oids)
              const f = runPhase(servers[kind], data, phase, clients, k * ROUNDS + round + 1);
              (kind === 'runzeo' ? r.runzeo : r.zeoTs).push(f);
            }
          }
          results.push(r);
          k++;
        }
      }
    } finally {
      await Promise.all(Object.values(servers).map(stopBenchServer));
    }
    const seconds = (performance.now() - t0) / 1000;
    printTable(
      `server: Python clients (ZEO ${versions.ZEO}) against runzeo and zeo serve, Data.fs of ` +
        `${data.objects.toLocaleString('en-US')} objects, ${SECONDS} s per phase after ${WARMUP} s of warm-up, ` +
        `median of ${ROUNDS} runs each (Node ${process.version}, Python ${versions.python}; ${cpus().length} ` +
        `CPUs, ${PLACEMENT_TEXT}; load average ` +
        `${load0.toFixed(1)} at start); ratio > 1: zeo-ts better (in parentheses: the ratios of the runs, ` +
        `paired in order)`,
      [
        'phase',
        'clients',
        'runzeo ops/s',
        'zeo-ts ops/s',
        'ratio',
        'runzeo CPU µs/op',
        'zeo-ts CPU µs/op',
        'ratio',
      ],
      results.map((r) => [
        PHASE_NAMES[r.phase],
        r.clients,
        med(r.runzeo, 'opsPerSecond').toFixed(0),
        med(r.zeoTs, 'opsPerSecond').toFixed(0),
        withRange(
          throughputRatio(r),
          pairedRatios(r, (a, b) => b.opsPerSecond / a.opsPerSecond),
        ),
        med(r.runzeo, 'serverCpuUsPerOp').toFixed(1),
        med(r.zeoTs, 'serverCpuUsPerOp').toFixed(1),
        withRange(
          cpuRatio(r),
          pairedRatios(r, (a, b) => a.serverCpuUsPerOp / b.serverCpuUsPerOp),
        ),
      ]),
    );
    printTable(
      'context: server CPU busy over the phase (100% = one core; in parentheses its main thread share), and the ' +
        'Python clients CPU per operation',
      ['phase', 'clients', 'runzeo CPU %', 'zeo-ts CPU %', 'client µs/op (runzeo)', 'client µs/op (zeo-ts)'],
      results.map((r) => [
        PHASE_NAMES[r.phase],
        r.clients,
        `${med(r.runzeo, 'serverCpuPercent').toFixed(0)} (${(med(r.runzeo, 'mainThreadShare') * 100).toFixed(0)}%)`,
        `${med(r.zeoTs, 'serverCpuPercent').toFixed(0)} (${(med(r.zeoTs, 'mainThreadShare') * 100).toFixed(0)}%)`,
        med(r.runzeo, 'clientCpuUsPerOp').toFixed(1),
        med(r.zeoTs, 'clientCpuUsPerOp').toFixed(1),
      ]),
    );
    const date = new Date();
    const out = {
      ...runRecord('server', date, versions, { loadAverageAtStart: load0, benchSeconds: seconds }),
      objects: data.objects,
      secondsPerPhase: SECONDS,
      warmupSeconds: WARMUP,
      rounds: ROUNDS,
      placement: PLACEMENT,
      pinned: PIN ? { servers: SERVER_CPUS, clients: CLIENT_CPUS } : null,
      clientCpus: EACH_CLIENT_CPUS,
      pipelineWindow: WINDOW,
      results: results.map((r) => ({
        phase: r.phase,
        clients: r.clients,
        // from the medians of the runs
        throughputRatio: throughputRatio(r),
        serverCpuRatio: cpuRatio(r),
        runzeo: r.runzeo.map(summary),
        zeoTs: r.zeoTs.map(summary),
      })),
    };
    writeResult('server', date, out, seconds);
  } finally {
    if (KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

/** One phase at one client count: every run against each server, in run order. */
interface Compared {
  phase: Phase;
  clients: number;
  runzeo: Figures[];
  zeoTs: Figures[];
}

type FigureKey =
  'opsPerSecond' | 'serverCpuUsPerOp' | 'serverCpuPercent' | 'mainThreadShare' | 'clientCpuUsPerOp';

function med(runs: Figures[], key: FigureKey): number {
  return median(runs.map((f) => f[key]));
}

const throughputRatio = (r: Compared): number => med(r.zeoTs, 'opsPerSecond') / med(r.runzeo, 'opsPerSecond');
const cpuRatio = (r: Compared): number =>
  med(r.runzeo, 'serverCpuUsPerOp') / med(r.zeoTs, 'serverCpuUsPerOp');

/** The ratio of each round's pair of runs (runzeo's, zeo-ts's). */
function pairedRatios(r: Compared, ratio: (runzeo: Figures, zeoTs: Figures) => number): number[] {
  return r.runzeo.map((a, i) => ratio(a, r.zeoTs[i]));
}

function summary(f: Figures): Record<string, number> {
  return {
    opsPerSecond: f.opsPerSecond,
    serverCpuUsPerOp: f.serverCpuUsPerOp,
    serverCpuPercent: f.serverCpuPercent,
    serverMainThreadShare: f.mainThreadShare,
    clientCpuUsPerOp: f.clientCpuUsPerOp,
    ops: f.run.ops,
    wallSeconds: f.run.wall,
    serverCpuSeconds: f.run.serverCpu,
    serverMainThreadCpuSeconds: f.run.serverMainThreadCpu,
    clientCpuSeconds: f.run.clientCpu,
  };
}

await main();
