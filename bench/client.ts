// npm run bench -- client [--objects N] [--seconds S] [--warmup S] [--rounds R] [--clients 1,4]
//                         [--phases loads,pipelined,storeCommits] [--window W] [--servers zeo-ts,runzeo]
// Our ClientStorage against Python's (the real ZEO 6 ClientStorage from the oracle venv), the same workload
// against the same server, in one run: `zeo serve` (and runzeo, unless --servers says otherwise), each on a
// fresh copy of the Data.fs bench/server.ts uses (N objects, default 30,000, built once by Python's ZODB and
// kept in the system's temp directory). Each phase runs for S seconds (default 5) with 1 and 4 client
// processes, after W s of warm-up (default 2, not measured), R times (default 3; the order of the two
// clients alternates from run to run):
//   - loads: one loadBefore round trip at a time per client, uniformly random oids, the cache never asked:
//     ours through ClientStorage.loadBefore with cacheSize 0 (the public path: the request, the reply's
//     checks, the in-flight table), Python's through its server stub, cs._server.call('loadBefore', oid,
//     maxtid), the call ClientStorage.loadBefore makes on a miss (a lighter path than ours);
//   - pipelined loads: W (default 32) loadBefore calls in flight per client: ours W loadBefore promises, each
//     reply issuing the next; Python's issued from its IO thread (test/fixtures/python/zeo_bench_client.py);
//   - small commits: two-phase commits on the storage itself (no ZODB Connection on either side): tpcBegin,
//     newOid + store of the same ~100-byte record twice, tpcVote, tpcFinish (oids from new_oids batches).
// For each: operations per second (all clients), and the CPU time per operation of the client processes
// (user + system, all threads: Node's process.cpuUsage, Python's time.process_time, over the measured
// window), the median of the R runs; the server's CPU per operation for context. Prints the table (ratio >
// 1: ours better) and writes bench/results/client-<timestamp>.json with every run.
//
// (The Node clients are this file run with --worker: each warms up, says "ready", and starts on "go".)
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ClientStorage } from '../src/client/client-storage.js';
import { maxtid, p64, z64 } from '../src/storage/ids.js';
import { TransactionMetaData } from '../src/storage/interfaces.js';
import { repoRoot } from '../test/helpers/oracle.js';
import { mulberry32 } from '../test/helpers/prng.js';
import {
  arg,
  benchDataFs,
  runRecord,
  writeResult,
  median,
  oracleVersions,
  printTable,
  processCpuSeconds,
  runPython,
  startManagedServer,
  type ManagedServer,
  withRange,
  type BenchDataFs,
} from './report.js';

type Phase = 'loads' | 'pipelined' | 'storeCommits';
type ServerKind = 'zeo-ts' | 'runzeo';
type ClientKind = 'python' | 'node';

const WINDOW = Number(arg('window') ?? 32);
const PHASE_NAMES: Record<Phase, string> = {
  loads: 'loads',
  pipelined: `pipelined loads (${WINDOW} in flight)`,
  storeCommits: 'small commits (2 stores)',
};

const CLIENT_PY = resolve(repoRoot, 'test/fixtures/python/zeo_client_bench.py');
const log = (s: string): void => void process.stderr.write(s + '\n');

/** What a worker (ours) is told. */
interface WorkerArgs {
  host: string;
  port: number;
  phase: Phase;
  seconds: number;
  warmup: number;
  maxOid: number;
  window: number;
  seed: number;
  /** the record the commits store, hex */
  record: string;
}

/** One client process's figures over the measured window. */
interface ClientRun {
  ops: number;
  seconds: number;
  /** CPU seconds (user + system) */
  cpu: number;
}

// ---------------------------------------------------------------------------------------------------------
// the Node client (--worker)

type Operation = (s: ClientStorage, deadline: number) => Promise<number>;

function operations(a: WorkerArgs): Record<Phase, Operation> {
  const rnd = mulberry32(a.seed);
  const oid = (): Uint8Array => p64(1 + Math.floor(rnd() * a.maxOid));
  const record = new Uint8Array(Buffer.from(a.record, 'hex'));
  return {
    async loads(s, deadline) {
      let n = 0;
      for (;;) {
        await s.loadBefore(oid(), maxtid);
        n++;
        if (performance.now() >= deadline) return n;
      }
    },
    pipelined(s, deadline) {
      return new Promise((done, fail) => {
        let n = 0;
        let inflight = 0;
        let error: Error | null = null;
        const next = (): void => {
          if (error === null && performance.now() < deadline) issue();
          else if (inflight === 0) {
            if (error === null) done(n);
            else fail(error);
          }
        };
        const issue = (): void => {
          inflight++;
          s.loadBefore(oid(), maxtid).then(
            (r) => {
              inflight--;
              if (r === null) error ??= new Error('loadBefore returned null');
              else n++;
              next();
            },
            (e: Error) => {
              inflight--;
              error ??= e;
              next();
            },
          );
        };
        for (let i = 0; i < a.window; i++) issue();
      });
    },
    async storeCommits(s, deadline) {
      let n = 0;
      for (;;) {
        const txn = new TransactionMetaData();
        await s.tpcBegin(txn);
        await s.store(await s.newOid(), z64, record, txn);
        await s.store(await s.newOid(), z64, record, txn);
        await s.tpcVote(txn);
        await s.tpcFinish(txn);
        n++;
        if (performance.now() >= deadline) return n;
      }
    },
  };
}

async function worker(a: WorkerArgs): Promise<void> {
  const storage = await ClientStorage.open({
    server: { host: a.host, port: a.port },
    cacheSize: 0,
    waitTimeout: 60_000,
  });
  try {
    const op = operations(a)[a.phase];
    await op(storage, performance.now() + a.warmup * 1000);
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    process.stdout.write('ready\n');
    const go = await lines.next();
    if (go.done || go.value !== 'go') throw new Error(`expected "go", got ${JSON.stringify(go.value)}`);
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const ops = await op(storage, t0 + a.seconds * 1000);
    const c = process.cpuUsage(c0);
    const run: ClientRun = { ops, seconds: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
    process.stdout.write(JSON.stringify(run) + '\n');
  } finally {
    await storage.close();
  }
  process.stdin.destroy();
}

// ---------------------------------------------------------------------------------------------------------
// the harness

const OBJECTS = Number(arg('objects') ?? 30_000);
const SECONDS = Number(arg('seconds') ?? 5);
const WARMUP = Number(arg('warmup') ?? 2);
const ROUNDS = Number(arg('rounds') ?? 3);
const CLIENTS = (arg('clients') ?? '1,4').split(',').map(Number);
const PHASES = (arg('phases') ?? 'loads,pipelined,storeCommits').split(',').filter(Boolean) as Phase[];
const SERVERS = (arg('servers') ?? 'zeo-ts,runzeo').split(',').filter(Boolean) as ServerKind[];
for (const p of PHASES) if (!PHASE_NAMES[p]) throw new Error(`--phases: unknown phase ${p}`);
for (const s of SERVERS)
  if (s !== 'zeo-ts' && s !== 'runzeo') throw new Error(`--servers: unknown ${String(s)}`);
/** client slots in the Data.fs (zeo_bench_client.py build's; unused here, kept so both benches share it) */
const SLOTS = 16;

const python = (args: string[], timeoutMs: number): string => runPython(args, timeoutMs);

type DataFs = BenchDataFs;

/** bench/server.ts's Data.fs (the same file, built by either). */
const prepareDataFs = (): DataFs => benchDataFs(OBJECTS, SLOTS);

type RunningServer = ManagedServer;

async function startServer(kind: ServerKind, data: DataFs, dir: string): Promise<RunningServer> {
  mkdirSync(dir, { recursive: true });
  copyFileSync(data.path, join(dir, 'Data.fs'));
  copyFileSync(data.path + '.index', join(dir, 'Data.fs.index'));
  return startManagedServer(kind, dir);
}

interface PhaseRun {
  ops: number;
  wall: number;
  serverCpu: number;
  clientCpu: number;
  clients: ClientRun[];
}

interface Figures {
  opsPerSecond: number;
  clientCpuUsPerOp: number;
  serverCpuUsPerOp: number;
  run: PhaseRun;
}

function figures(run: PhaseRun): Figures {
  if (!(run.ops > 0)) throw new Error('no operations');
  return {
    opsPerSecond: run.ops / run.wall,
    clientCpuUsPerOp: (run.clientCpu / run.ops) * 1e6,
    serverCpuUsPerOp: (run.serverCpu / run.ops) * 1e6,
    run,
  };
}

function runPythonClients(
  s: RunningServer,
  data: DataFs,
  phase: Phase,
  clients: number,
  seed: number,
): Figures {
  const args = {
    host: '127.0.0.1',
    port: s.port,
    serverPid: s.process.pid,
    phase,
    clients,
    seconds: SECONDS,
    warmup: WARMUP,
    maxOid: data.maxOid,
    window: WINDOW,
    seed,
    clientCpus: null,
  };
  const out = python([CLIENT_PY, 'run', JSON.stringify(args)], (SECONDS + 300) * 1000);
  return figures(JSON.parse(out) as PhaseRun);
}

/** Our clients: `clients` worker processes, started together once all have warmed up. */
async function runNode(
  s: RunningServer,
  data: DataFs,
  phase: Phase,
  clients: number,
  seed: number,
  record: string,
): Promise<Figures> {
  const self = fileURLToPath(import.meta.url);
  const workers = Array.from({ length: clients }, (_, i) => {
    const a: WorkerArgs = {
      host: '127.0.0.1',
      port: s.port,
      phase,
      seconds: SECONDS,
      warmup: WARMUP,
      maxOid: data.maxOid,
      window: WINDOW,
      seed: seed * 1000 + i,
      record,
    };
    const p = spawn(process.execPath, [self, '--worker', JSON.stringify(a)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: repoRoot,
    });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: p.stdout })[Symbol.asyncIterator]();
    const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
    const line = async (): Promise<string> => {
      const l = await lines.next();
      if (l.done) throw new Error(`a Node client exited (${await exited}):\n${stderr}`);
      return l.value;
    };
    return { p, line, exited };
  });
  try {
    for (const w of workers) {
      const l = await w.line();
      if (l !== 'ready') throw new Error(`a Node client said ${JSON.stringify(l)}`);
    }
    const cpu0 = processCpuSeconds(s.process.pid);
    const t0 = performance.now();
    for (const w of workers) w.p.stdin.write('go\n');
    const runs = await Promise.all(workers.map(async (w) => JSON.parse(await w.line()) as ClientRun));
    const wall = (performance.now() - t0) / 1000;
    const serverCpu = processCpuSeconds(s.process.pid) - cpu0;
    for (const w of workers) w.p.stdin.end();
    await Promise.all(workers.map((w) => w.exited));
    return figures({
      ops: runs.reduce((n, r) => n + r.ops, 0),
      wall,
      serverCpu,
      clientCpu: runs.reduce((n, r) => n + r.cpu, 0),
      clients: runs,
    });
  } finally {
    for (const w of workers) if (w.p.exitCode === null) w.p.kill('SIGKILL');
  }
}

interface Compared {
  server: ServerKind;
  phase: Phase;
  clients: number;
  python: Figures[];
  node: Figures[];
}

type FigureKey = 'opsPerSecond' | 'clientCpuUsPerOp' | 'serverCpuUsPerOp';

function med(runs: Figures[], key: FigureKey): number {
  return median(runs.map((f) => f[key]));
}

const throughputRatio = (r: Compared): number => med(r.node, 'opsPerSecond') / med(r.python, 'opsPerSecond');
const cpuRatio = (r: Compared): number => med(r.python, 'clientCpuUsPerOp') / med(r.node, 'clientCpuUsPerOp');

function summary(f: Figures): Record<string, unknown> {
  return {
    opsPerSecond: f.opsPerSecond,
    clientCpuUsPerOp: f.clientCpuUsPerOp,
    serverCpuUsPerOp: f.serverCpuUsPerOp,
    ops: f.run.ops,
    wallSeconds: f.run.wall,
    clientCpuSeconds: f.run.clientCpu,
    serverCpuSeconds: f.run.serverCpu,
    clients: f.run.clients,
  };
}

async function main(): Promise<void> {
  const data = prepareDataFs();
  const record = python([CLIENT_PY, 'record'], 60_000).trim();
  const versions = oracleVersions();
  const work = mkdtempSync(join(tmpdir(), 'zeo-ts-bench-client-'));
  const load0 = loadavg()[0];
  const t0 = performance.now();
  const results: Compared[] = [];
  try {
    let k = 0;
    for (const kind of SERVERS) {
      log(`starting ${kind} on a copy of ${data.path}...`);
      const server = await startServer(kind, data, join(work, kind));
      try {
        for (const phase of PHASES) {
          for (const clients of CLIENTS) {
            const r: Compared = { server: kind, phase, clients, python: [], node: [] };
            for (let round = 0; round < ROUNDS; round++) {
              const order: ClientKind[] = (k + round) % 2 === 0 ? ['python', 'node'] : ['node', 'python'];
              for (const client of order) {
                log(`${kind}: ${phase} x${clients}, ${client} clients (run ${round + 1} of ${ROUNDS})...`);
                const seed = k * ROUNDS + round + 1;
                if (client === 'python') r.python.push(runPythonClients(server, data, phase, clients, seed));
                else r.node.push(await runNode(server, data, phase, clients, seed, record));
              }
            }
            results.push(r);
            k++;
          }
        }
      } finally {
        await server.process.stop('SIGTERM', 60_000);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  printTable(
    `client: our ClientStorage (Node ${process.version}) and Python's (ZEO ${versions.ZEO}, Python ` +
      `${versions.python}) against the same server, Data.fs of ${data.objects.toLocaleString('en-US')} objects, ` +
      `${SECONDS} s per phase after ${WARMUP} s of warm-up, median of ${ROUNDS} runs each (${cpus().length} ` +
      `CPUs, load average ${load0.toFixed(1)} at start); ratio > 1: ours better (in parentheses: the ratios ` +
      `of the runs, paired in order)`,
    [
      'server',
      'phase',
      'clients',
      'Python ops/s',
      'Node ops/s',
      'ratio',
      'Python client CPU µs/op',
      'Node client CPU µs/op',
      'ratio',
      'server CPU µs/op (Py / Node)',
    ],
    results.map((r) => [
      r.server === 'runzeo' ? 'runzeo' : 'zeo serve',
      PHASE_NAMES[r.phase],
      r.clients,
      med(r.python, 'opsPerSecond').toFixed(0),
      med(r.node, 'opsPerSecond').toFixed(0),
      withRange(
        throughputRatio(r),
        r.python.map((p, i) => r.node[i].opsPerSecond / p.opsPerSecond),
      ),
      med(r.python, 'clientCpuUsPerOp').toFixed(1),
      med(r.node, 'clientCpuUsPerOp').toFixed(1),
      withRange(
        cpuRatio(r),
        r.python.map((p, i) => p.clientCpuUsPerOp / r.node[i].clientCpuUsPerOp),
      ),
      `${med(r.python, 'serverCpuUsPerOp').toFixed(1)} / ${med(r.node, 'serverCpuUsPerOp').toFixed(1)}`,
    ]),
  );
  const date = new Date();
  const out = {
    ...runRecord('client', date, versions, { loadAverageAtStart: load0, benchSeconds: seconds }),
    objects: data.objects,
    secondsPerPhase: SECONDS,
    warmupSeconds: WARMUP,
    rounds: ROUNDS,
    pipelineWindow: WINDOW,
    results: results.map((r) => ({
      server: r.server,
      phase: r.phase,
      clients: r.clients,
      // from the medians of the runs; > 1: ours better
      throughputRatio: throughputRatio(r),
      clientCpuRatio: cpuRatio(r),
      python: r.python.map(summary),
      node: r.node.map(summary),
    })),
  };
  writeResult('client', date, out, seconds);
}

const w = process.argv.indexOf('--worker');
if (w >= 0) await worker(JSON.parse(process.argv[w + 1]) as WorkerArgs);
else await main();
