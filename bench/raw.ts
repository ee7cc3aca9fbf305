// npm run bench -- raw [--phases P,..] [--servers zeo,runzeo,floor] [--seconds S] [--warmup S] [--rounds R]
//                      [--objects N] [--encoding pickle|msgpack] [--threads T] [--commit-objects K]
//                      [--profile PHASE] [--keep] [--rebuild]
// The raw capacity of `zeo serve` against Python's runzeo (the oracle venv's ZEO), driven by a lean load
// generator on zeo-ts's protocol pieces (bench/raw-generator.ts: no cache, no promise per load, requests
// pre-encoded and batched per event-loop turn, replies read by length and msgid), in worker threads; and the
// floor (bench/raw-floor.ts): a server that only answers every request frame with a canned loadBefore-shaped
// reply, on the same loopback under the same loads: what this machine allows a server at all. runzeo and
// zeo serve each serve a fresh copy of one Data.fs (N objects, default 30,000, built once by Python's ZODB:
// bench/report.ts benchDataFs) at their defaults (every commit fsynced before it is acknowledged). Each
// phase runs S seconds (default 5) after a warm-up of W (default 2), against one server at a time, R rounds
// (default 3; the order of the servers turns from round to round), and reports the median of the rounds:
//   loads-dD-cC    loadBefore(random oid, maxtid) at depth D (1, or 32 pipelined) on each of C connections
//                  (1, 8, 64); uniformly random oids among the Data.fs's;
//   iterate        iterator_start / iterator_next / iterator_record_start / iterator_record_next over the
//                  whole database, as zodbconvert copies a ClientStorage out (one operation: a record);
//   iternext       record_iternext scans of the whole database (one operation: a call);
//   connect        connect, handshake, register, close, one at a time (one operation: a cycle);
//   commits-cC     small commits on each of C connections (1, 4, 16), each connection updating its own K
//                  objects (default 2; made from new_oids before the phase): tpc_begin and storea one-way,
//                  vote and tpc_finish waited for, as ZEO 5 clients send them (they run after the read-only
//                  phases, whatever the order of --phases, so that those see the same Data.fs in every server);
//   cold           a freshly started server's first 5,000 loads at depth 1 on one connection (no warm-up:
//                  what short tool sessions see).
// For each: operations per second, p50/p99 latency (fixed histogram buckets, 6% wide) and the server's CPU per
// operation (utime + stime of the server process from /proc/PID/stat over the phase / operations), with the
// ratios against runzeo and the floor and the targets marked met or not; writes
// bench/results/raw-<timestamp>.json (with the machine's description) and raw-<timestamp>.svg.
// --profile PHASE runs only that phase, only against `node --cpu-prof zeo serve`, and prints its top functions.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { repoRoot } from '../test/helpers/oracle.js';
import {
  GenConnection,
  HISTOGRAM_BUCKETS,
  SLOT_INTS,
  percentile,
  type GeneratorTask,
} from './raw-generator.js';
import { rawChartSvg } from './raw-chart.js';
import {
  arg,
  benchDataFs,
  machineDescription,
  median,
  oracleVersions,
  printProfile,
  printTable,
  processCpuSeconds,
  runRecord,
  sleep,
  startBenchServer,
  stopBenchServer,
  stopProcess,
  writeResult,
  type BenchDataFs,
} from './report.js';
import { maxtid } from '../src/storage/ids.js';
import type { Encoding } from '../src/protocol/index.js';

const OBJECTS = Number(arg('objects') ?? 30_000);
const SECONDS = Number(arg('seconds') ?? 5);
const WARMUP = Number(arg('warmup') ?? 2);
const ROUNDS = Number(arg('rounds') ?? 3);
const ENCODING_NAME = arg('encoding') ?? 'pickle';
if (!['pickle', 'msgpack'].includes(ENCODING_NAME))
  throw new Error(`--encoding pickle|msgpack, not ${ENCODING_NAME}`);
const ENCODING: Encoding = ENCODING_NAME === 'msgpack' ? 'M' : 'Z';
const COMMIT_OBJECTS = Number(arg('commit-objects') ?? 2);
/** generator threads at most (a phase uses no more than it has connections) */
const THREADS = Number(arg('threads') ?? Math.max(1, cpus().length - 1));
const COLD_LOADS = 5000;
const KEEP = process.argv.includes('--keep');
const REBUILD = process.argv.includes('--rebuild');
const PROFILE = arg('profile');
const PERF = arg('perf');
const log = (s: string): void => void process.stderr.write(s + '\n');

type Kind = 'zeo' | 'runzeo' | 'floor';
const SERVERS = (arg('servers') ?? 'zeo,runzeo,floor').split(',').filter(Boolean) as Kind[];
for (const s of SERVERS)
  if (!['zeo', 'runzeo', 'floor'].includes(s)) throw new Error(`--servers: unknown ${s}`);

interface PhaseSpec {
  name: string;
  title: string;
  task: GeneratorTask['phase'];
  connections: number;
  depth: number;
  /** the floor answers loads only */
  floor: boolean;
  cold?: boolean;
}

const ALL_PHASES: PhaseSpec[] = [
  ...[1, 32].flatMap((depth) =>
    [1, 8, 64].map((c) => ({
      name: `loads-d${depth}-c${c}`,
      title: `loads, depth ${depth}, ${c} conn${c > 1 ? 's' : ''}`,
      task: 'loads' as const,
      connections: c,
      depth,
      floor: true,
    })),
  ),
  { name: 'iterate', title: 'iterate (per record)', task: 'iterate', connections: 1, depth: 1, floor: false },
  { name: 'iternext', title: 'record_iternext', task: 'iternext', connections: 1, depth: 1, floor: false },
  {
    name: 'connect',
    title: 'connect+register+close',
    task: 'connect',
    connections: 1,
    depth: 1,
    floor: false,
  },
  // (after the read-only phases, which then all see the same Data.fs in every server)
  ...[1, 4, 16].map((c) => ({
    name: `commits-c${c}`,
    title: `commits (${COMMIT_OBJECTS} obj), ${c} conn${c > 1 ? 's' : ''}`,
    task: 'commits' as const,
    connections: c,
    depth: 1,
    floor: false,
  })),
  {
    name: 'cold',
    title: `cold: first ${COLD_LOADS} loads`,
    task: 'loads',
    connections: 1,
    depth: 1,
    floor: false,
    cold: true,
  },
];
/** the phases asked for, in the order of ALL_PHASES */
const PHASES: PhaseSpec[] = arg('phases')
  ? arg('phases')!
      .split(',')
      .filter(Boolean)
      .map((n) => {
        const p = ALL_PHASES.find((x) => x.name === n);
        if (!p)
          throw new Error(`--phases: unknown ${n} (one of ${ALL_PHASES.map((x) => x.name).join(', ')})`);
        return p;
      })
      .sort((a, b) => ALL_PHASES.indexOf(a) - ALL_PHASES.indexOf(b))
  : ALL_PHASES;

interface Running {
  kind: Kind;
  port: number;
  pid: number;
  stop(): Promise<void>;
  /** the server's log, if it writes one */
  logPath?: string;
}

/** One phase against one server. */
export interface Figures {
  ops: number;
  wall: number;
  opsPerSecond: number;
  serverCpu: number;
  serverCpuUsPerOp: number;
  generatorCpuUsPerOp: number;
  p50us: number;
  p99us: number;
  checkedReplies: number;
  threads: number;
  /** the phase's window on CLOCK_MONOTONIC, seconds (for --profile) */
  monotonic: [number, number];
  /** the server's read and write system calls per operation (/proc/PID/io syscr, syscw) */
  readsPerOp: number;
  writesPerOp: number;
  /** the kernel's share of the server's CPU (stime / (utime + stime)) */
  systemShare: number;
}

/** The read and write system calls a process made so far (/proc/PID/io), and its system CPU in clock ticks. */
function processSyscalls(pid: number): { r: number; w: number; sys: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return {
    r: Number(/syscr: (\d+)/.exec(io)![1]),
    w: Number(/syscw: (\d+)/.exec(io)![1]),
    sys: Number(stat[12]) / CLOCK_TICKS,
  };
}
/** USER_HZ, the unit of /proc/PID/stat times (100 on Linux whatever the kernel tick) */
const CLOCK_TICKS = 100;

const FLOOR_JS = resolve(repoRoot, 'dist/bench/raw-floor.js');
const GENERATOR_JS = resolve(repoRoot, 'dist/bench/raw-generator.js');

async function startFloor(dataBytes: number): Promise<Running> {
  const proc: ChildProcess = spawn(
    process.execPath,
    [FLOOR_JS, '--serve', '--port', '0', '--encoding', ENCODING_NAME, '--data-bytes', String(dataBytes)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolvePort, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\d+)/.exec(out);
      if (m) resolvePort(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`the floor exited (${code})`)));
  });
  return { kind: 'floor', port, pid: proc.pid!, stop: () => stopProcess(proc) };
}

async function startReal(
  kind: 'zeo' | 'runzeo',
  data: BenchDataFs,
  dir: string,
  nodeFlags: string[] = [],
): Promise<Running> {
  const s = await startBenchServer(kind === 'zeo' ? 'zeo-ts' : 'runzeo', data.path, dir, {
    nodeFlags,
    msgpack: ENCODING === 'M',
  });
  return { kind, port: s.port, pid: s.proc.pid!, stop: () => stopBenchServer(s), logPath: s.logPath };
}

/** A worker of the generator; resolves `ready` once its connections are set up. */
class GenWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  private readonly waiters = new Map<string, () => void>();

  constructor(task: GeneratorTask, counters: SharedArrayBuffer, slot: number, onError: (e: Error) => void) {
    this.worker = new Worker(GENERATOR_JS, { workerData: { rawGenerator: true, task, counters, slot } });
    const wait = (type: string): Promise<void> => new Promise((r) => this.waiters.set(type, r));
    this.ready = wait('ready');
    this.done = wait('done');
    this.worker.on('message', (m: { type: string; message?: string }) => {
      if (m.type === 'error') onError(new Error(`generator: ${m.message}`));
      this.waiters.get(m.type)?.();
    });
    this.worker.on('error', (e) => onError(e));
  }

  async stop(): Promise<void> {
    const stopped = new Promise<void>((r) => this.waiters.set('stopped', r));
    this.worker.postMessage({ type: 'stop' });
    await Promise.race([stopped, sleep(5000)]);
    await this.worker.terminate();
  }
}

function readCounters(ints: Int32Array, workers: number): { ops: number; checked: number; hist: number[] } {
  const hist = new Array<number>(HISTOGRAM_BUCKETS).fill(0);
  let ops = 0;
  let checked = 0;
  for (let w = 0; w < workers; w++) {
    const base = w * SLOT_INTS;
    ops += Atomics.load(ints, base);
    checked += ints[base + 1];
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) hist[i] += ints[base + 2 + i];
  }
  return { ops, checked, hist };
}

const monotonicNow = (): number => Number(process.hrtime.bigint()) / 1e9;

async function runPhase(s: Running, p: PhaseSpec, data: BenchDataFs, seed: number): Promise<Figures> {
  const threads = Math.max(1, Math.min(p.connections, THREADS));
  const counters = new SharedArrayBuffer(threads * SLOT_INTS * 4);
  const ints = new Int32Array(counters);
  let failure: Error | null = null;
  let failed: () => void = () => {};
  const failedP = new Promise<void>((r) => (failed = r));
  const onError = (e: Error): void => {
    failure ??= e;
    failed();
  };
  const workers: GenWorker[] = [];
  for (let t = 0; t < threads; t++) {
    const task: GeneratorTask = {
      phase: p.task,
      host: '127.0.0.1',
      port: s.port,
      encoding: ENCODING,
      connections: Math.floor(p.connections / threads) + (t < p.connections % threads ? 1 : 0),
      depth: p.depth,
      maxOid: data.maxOid,
      seed: seed * 1000 + t + 1,
      commitObjects: COMMIT_OBJECTS,
      maxOps: p.cold ? COLD_LOADS : undefined,
    };
    workers.push(new GenWorker(task, counters, t, onError));
  }
  const check = (): void => {
    if (failure) throw new Error(`${p.name} against ${s.kind}: ${failure.message}`);
  };
  try {
    await Promise.race([Promise.all(workers.map((w) => w.ready)), failedP]);
    check();
    const gen0 = process.cpuUsage();
    let cpu0 = processCpuSeconds(s.pid);
    let io0 = processSyscalls(s.pid);
    let t0 = performance.now();
    let m0 = monotonicNow();
    let c0 = readCounters(ints, threads);
    for (const w of workers) w.worker.postMessage({ type: 'go' });
    if (p.cold) {
      await Promise.race([Promise.all(workers.map((w) => w.done)), failedP]);
    } else {
      await Promise.race([sleep(WARMUP * 1000), failedP]);
      check();
      cpu0 = processCpuSeconds(s.pid);
      io0 = processSyscalls(s.pid);
      t0 = performance.now();
      m0 = monotonicNow();
      c0 = readCounters(ints, threads);
      await Promise.race([sleep(SECONDS * 1000), failedP]);
    }
    check();
    const cpu1 = processCpuSeconds(s.pid);
    const io1 = processSyscalls(s.pid);
    const t1 = performance.now();
    const m1 = monotonicNow();
    const c1 = readCounters(ints, threads);
    const gen = process.cpuUsage(gen0);
    const ops = c1.ops - c0.ops;
    if (!(ops > 0)) throw new Error(`${p.name} against ${s.kind}: no operations`);
    const hist = c1.hist.map((x, i) => x - c0.hist[i]);
    const wall = (t1 - t0) / 1000;
    const serverCpu = cpu1 - cpu0;
    return {
      ops,
      wall,
      opsPerSecond: ops / wall,
      serverCpu,
      serverCpuUsPerOp: (serverCpu / ops) * 1e6,
      // (over the warm-up too: an indication of what the generator costs per operation)
      generatorCpuUsPerOp: (gen.user + gen.system) / c1.ops,
      p50us: percentile(hist, 0.5),
      p99us: percentile(hist, 0.99),
      checkedReplies: c1.checked,
      threads,
      monotonic: [m0, m1],
      readsPerOp: (io1.r - io0.r) / ops,
      writesPerOp: (io1.w - io0.w) / ops,
      systemShare: (io1.sys - io0.sys) / serverCpu,
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** The typical data size of a loadBefore reply (the median of some random oids' records), for the floor. */
async function typicalDataBytes(s: Running, data: BenchDataFs): Promise<number> {
  const c = await GenConnection.open('127.0.0.1', s.port, ENCODING);
  try {
    const sizes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const oid = Buffer.alloc(8);
      oid.writeUInt32BE(Math.floor(Math.random() * (data.maxOid + 1)), 4);
      const r = (await c.call('loadBefore', [oid, maxtid])) as Uint8Array[];
      sizes.push(r[0].length);
    }
    return median(sizes);
  } finally {
    c.close();
  }
}

// --- the comparison

interface Compared {
  phase: PhaseSpec;
  runs: Partial<Record<Kind, Figures[]>>;
}

const med = (runs: Figures[] | undefined, key: keyof Figures): number =>
  runs && runs.length ? median(runs.map((f) => f[key] as number)) : NaN;

interface Target {
  phase: string;
  what: string;
  value: number;
  goal: string;
  met: boolean;
}

/** The targets that this run measured. */
function targets(results: Compared[]): Target[] {
  const out: Target[] = [];
  for (const r of results) {
    const z = r.runs.zeo;
    const py = r.runs.runzeo;
    if (!z || !py) continue;
    const cpu = med(py, 'serverCpuUsPerOp') / med(z, 'serverCpuUsPerOp');
    const ops = med(z, 'opsPerSecond') / med(py, 'opsPerSecond');
    const p = r.phase;
    if (p.task === 'loads' && !p.cold) {
      out.push({
        phase: p.name,
        what: 'server CPU/load vs runzeo',
        value: cpu,
        goal: '>= 5x less',
        met: cpu >= 5,
      });
      if (p.depth > 1 && p.connections === 8) {
        out.push({ phase: p.name, what: 'loads/s vs runzeo', value: ops, goal: '>= 5x', met: ops >= 5 });
        const f = r.runs.floor;
        if (f) {
          const vf = med(z, 'opsPerSecond') / med(f, 'opsPerSecond');
          out.push({
            phase: p.name,
            what: 'loads/s vs the floor',
            value: vf,
            goal: '>= 0.5x',
            met: vf >= 0.5,
          });
        }
      }
    } else if (p.task === 'commits') {
      out.push({
        phase: p.name,
        what: 'server CPU/commit vs runzeo',
        value: cpu,
        goal: '>= 4x less',
        met: cpu >= 4,
      });
      if (p.connections >= 4)
        out.push({ phase: p.name, what: 'commits/s vs runzeo', value: ops, goal: '>= 3x', met: ops >= 3 });
    } else {
      out.push({
        phase: p.name,
        what: 'server CPU/op vs runzeo',
        value: cpu,
        goal: '>= 1x less',
        met: cpu >= 1,
      });
      if (!p.cold)
        out.push({ phase: p.name, what: 'ops/s vs runzeo', value: ops, goal: '>= 1x', met: ops >= 1 });
    }
  }
  return out;
}

const fmt = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const us = (x: number): string => (!Number.isFinite(x) ? '-' : x < 100 ? x.toFixed(1) : x.toFixed(0));

async function profile(data: BenchDataFs, work: string, name: string): Promise<void> {
  const p = ALL_PHASES.find((x) => x.name === name);
  if (!p) throw new Error(`--profile PHASE, one of ${ALL_PHASES.map((x) => x.name).join(', ')}`);
  const profDir = join(work, 'cpu-prof');
  const s = await startReal('zeo', data, join(work, 'zeo-prof'), ['--cpu-prof', '--cpu-prof-dir', profDir]);
  let f: Figures;
  try {
    log(`profiling zeo serve: ${p.name}, ${SECONDS} s...`);
    f = await runPhase(s, p, data, 1);
  } finally {
    await s.stop();
  }
  log(
    `${p.name} (under --cpu-prof): ${f.opsPerSecond.toFixed(0)} ops/s, ${f.serverCpuUsPerOp.toFixed(1)} server ` +
      `CPU µs/op, p50 ${us(f.p50us)} µs, p99 ${us(f.p99us)} µs, ${fmt(f.readsPerOp, 3)} reads and ` +
      `${fmt(f.writesPerOp, 3)} writes per op, ${fmt(f.systemShare * 100)}% of the CPU in the kernel`,
  );
  const files = readdirSync(profDir).filter((x) => x.endsWith('.cpuprofile'));
  if (files.length !== 1) throw new Error(`expected one profile in ${profDir}, found ${files.join(', ')}`);
  printProfile(join(profDir, files[0]), p.title, f.monotonic);
  if (KEEP) log(`profile: ${join(profDir, files[0])}`);
}

/**
 * --perf PHASE: `perf record` of `node --perf-basic-prof zeo serve` over the phase (user space: native code,
 * the JIT's JS functions and what node's C++ does per call, which --cpu-prof lumps into the native it
 * called), then `perf report`'s top symbols.
 */
async function perfProfile(data: BenchDataFs, work: string, name: string): Promise<void> {
  const p = ALL_PHASES.find((x) => x.name === name);
  if (!p) throw new Error(`--perf PHASE, one of ${ALL_PHASES.map((x) => x.name).join(', ')}`);
  const s = await startReal('zeo', data, join(work, 'zeo-perf'), ['--perf-basic-prof']);
  const out = join(work, 'perf.data');
  let f: Figures;
  try {
    log(`perf record of zeo serve: ${p.name}, ${SECONDS} s (and its warm-up)...`);
    const rec = spawn('perf', ['record', '-F', '2000', '-g', '-p', String(s.pid), '-o', out], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await sleep(500);
    f = await runPhase(s, p, data, 1);
    const stopped = new Promise<void>((r) => rec.once('exit', () => r()));
    rec.kill('SIGINT');
    await stopped;
  } finally {
    await s.stop();
  }
  log(
    `${p.name} (under perf): ${f.opsPerSecond.toFixed(0)} ops/s, ${f.serverCpuUsPerOp.toFixed(1)} server CPU µs/op`,
  );
  const report = spawnSync(
    'perf',
    ['report', '-i', out, '--no-children', '--stdio', '-g', 'none', '--percent-limit', '0.7'],
    {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    },
  );
  process.stdout.write(report.stdout);
  if (KEEP) log(`perf data: ${out}`);
}

async function main(): Promise<void> {
  const data = benchDataFs(OBJECTS, 16, REBUILD);
  const work = mkdtempSync(join(tmpdir(), 'zeo-ts-bench-raw-'));
  const started: Running[] = [];
  try {
    if (PROFILE) return await profile(data, work, PROFILE);
    if (PERF) return await perfProfile(data, work, PERF);
    const versions = oracleVersions();
    const machine = machineDescription();
    const load0 = loadavg()[0];
    const t0 = performance.now();
    log(`Data.fs: ${data.objects} objects; starting ${SERVERS.join(', ')}...`);
    const servers: Partial<Record<Kind, Running>> = {};
    for (const k of SERVERS) {
      if (k === 'floor') continue;
      servers[k] = await startReal(k, data, join(work, k));
      started.push(servers[k]);
    }
    let dataBytes = 150;
    const probe = servers.zeo ?? servers.runzeo;
    if (probe) dataBytes = await typicalDataBytes(probe, data);
    if (SERVERS.includes('floor')) {
      servers.floor = await startFloor(dataBytes);
      started.push(servers.floor);
    }
    const results: Compared[] = [];
    let k = 0;
    for (const p of PHASES) {
      const r: Compared = { phase: p, runs: {} };
      const kinds = SERVERS.filter((s) => s !== 'floor' || p.floor);
      for (let round = 0; round < ROUNDS; round++) {
        const order = (k + round) % 2 === 0 ? kinds : [...kinds].reverse();
        for (const kind of order) {
          log(`${p.name} against ${kind} (round ${round + 1} of ${ROUNDS})...`);
          let s = servers[kind]!;
          if (p.cold)
            s = await startReal(kind as 'zeo' | 'runzeo', data, join(work, `${kind}-cold-${round}`));
          try {
            // (every server gets the same seed in a round: the same oids)
            const f = await runPhase(s, p, data, k * ROUNDS + round + 1);
            (r.runs[kind] ??= []).push(f);
          } catch (e) {
            if (!s.logPath) throw e;
            const tail = readFileSync(s.logPath, 'utf8').split('\n').slice(-30).join('\n');
            throw new Error(`${(e as Error).message}\n${kind} log (last lines):\n${tail}`, { cause: e });
          } finally {
            if (p.cold) {
              await s.stop();
              rmSync(join(work, `${kind}-cold-${round}`), { recursive: true, force: true });
            }
          }
        }
      }
      results.push(r);
      k++;
    }
    const seconds = (performance.now() - t0) / 1000;
    const threadsOf = (r: Compared): number =>
      Math.max(...Object.values(r.runs).flatMap((f) => f.map((x) => x.threads)));
    printTable(
      `raw: zeo serve and runzeo (ZEO ${versions.ZEO}) driven by zeo-ts's lean generator (${ENCODING_NAME}), ` +
        `Data.fs of ${data.objects.toLocaleString('en-US')} objects, ${SECONDS} s per phase after ${WARMUP} s of ` +
        `warm-up, median of ${ROUNDS} rounds (Node ${process.version}, Python ${versions.python}; ` +
        `${String(machine.cores)} CPUs, ${String(machine.cpuModel)}; load average ${load0.toFixed(1)} at start). ` +
        `ops/s ratios: zeo / other; CPU ratio: runzeo / zeo (> 1: zeo spends less)`,
      [
        'phase',
        'runzeo ops/s',
        'zeo ops/s',
        'floor ops/s',
        'zeo/runzeo',
        'zeo/floor',
        'runzeo p50/p99 µs',
        'zeo p50/p99 µs',
        'floor p50/p99 µs',
        'runzeo CPU µs/op',
        'zeo CPU µs/op',
        'floor CPU µs/op',
        'CPU runzeo/zeo',
      ],
      results.map((r) => {
        const { zeo, runzeo, floor } = r.runs;
        return [
          r.phase.title,
          fmt(med(runzeo, 'opsPerSecond')),
          fmt(med(zeo, 'opsPerSecond')),
          fmt(med(floor, 'opsPerSecond')),
          fmt(med(zeo, 'opsPerSecond') / med(runzeo, 'opsPerSecond'), 2),
          fmt(med(zeo, 'opsPerSecond') / med(floor, 'opsPerSecond'), 2),
          `${us(med(runzeo, 'p50us'))}/${us(med(runzeo, 'p99us'))}`,
          `${us(med(zeo, 'p50us'))}/${us(med(zeo, 'p99us'))}`,
          `${us(med(floor, 'p50us'))}/${us(med(floor, 'p99us'))}`,
          us(med(runzeo, 'serverCpuUsPerOp')),
          us(med(zeo, 'serverCpuUsPerOp')),
          us(med(floor, 'serverCpuUsPerOp')),
          fmt(med(runzeo, 'serverCpuUsPerOp') / med(zeo, 'serverCpuUsPerOp'), 2),
        ];
      }),
    );
    printTable(
      "context: each server's CPU busy over the phase (100% = one core), and the generator (its threads, its " +
        'CPU per operation over warm-up and phase: it must stay well below the time per operation)',
      [
        'phase',
        'runzeo CPU %',
        'zeo CPU %',
        'floor CPU %',
        'gen threads',
        'gen µs/op (runzeo)',
        'gen µs/op (zeo)',
        'gen µs/op (floor)',
        'reads+writes/op runzeo',
        'zeo',
        'floor',
        'kernel % of CPU runzeo',
        'zeo',
        'floor',
      ],
      results.map((r) => {
        const { zeo, runzeo, floor } = r.runs;
        const busy = (f: Figures[] | undefined): string => fmt((med(f, 'serverCpu') / med(f, 'wall')) * 100);
        return [
          r.phase.title,
          busy(runzeo),
          busy(zeo),
          busy(floor),
          threadsOf(r),
          us(med(runzeo, 'generatorCpuUsPerOp')),
          us(med(zeo, 'generatorCpuUsPerOp')),
          us(med(floor, 'generatorCpuUsPerOp')),
          ...[runzeo, zeo, floor].map((f) =>
            f ? `${fmt(med(f, 'readsPerOp'), 3)}+${fmt(med(f, 'writesPerOp'), 3)}` : '-',
          ),
          ...[runzeo, zeo, floor].map((f) => (f ? fmt(med(f, 'systemShare') * 100) : '-')),
        ];
      }),
    );
    // how far the generator drives a server at all: its best phase against the floor
    const reach = results
      .filter((r) => r.runs.floor)
      .map((r) => ({
        phase: r.phase.name,
        opsPerSecond: med(r.runs.floor, 'opsPerSecond'),
        threads: threadsOf(r),
      }))
      .sort((a, b) => b.opsPerSecond - a.opsPerSecond)[0];
    if (reach)
      log(
        `the generator drives the floor at up to ${reach.opsPerSecond.toFixed(0)} loads/s (${reach.phase}, ` +
          `${reach.threads} generator thread${reach.threads > 1 ? 's' : ''})`,
      );
    const ts = targets(results);
    if (ts.length)
      printTable(
        "issue 11's targets (from the medians)",
        ['phase', 'measure', 'value', 'target', ''],
        ts.map((t) => [t.phase, t.what, `${fmt(t.value, 2)}x`, t.goal, t.met ? 'met' : 'NOT MET']),
      );
    const date = new Date();
    const out = {
      ...runRecord('raw', date, versions, { loadAverageAtStart: load0, benchSeconds: seconds }),
      machine,
      objects: data.objects,
      encoding: ENCODING_NAME,
      secondsPerPhase: SECONDS,
      warmupSeconds: WARMUP,
      rounds: ROUNDS,
      generatorThreadsMax: THREADS,
      commitObjects: COMMIT_OBJECTS,
      floorDataBytes: dataBytes,
      generatorReach: reach,
      servers: SERVERS,
      targets: ts,
      results: results.map((r) => ({
        phase: r.phase.name,
        title: r.phase.title,
        connections: r.phase.connections,
        depth: r.phase.depth,
        medians: Object.fromEntries(
          Object.entries(r.runs).map(([kind, runs]) => [
            kind,
            {
              opsPerSecond: med(runs, 'opsPerSecond'),
              serverCpuUsPerOp: med(runs, 'serverCpuUsPerOp'),
              p50us: med(runs, 'p50us'),
              p99us: med(runs, 'p99us'),
            },
          ]),
        ),
        runs: Object.fromEntries(
          Object.entries(r.runs).map(([kind, runs]) => [kind, runs.map(({ monotonic: _m, ...f }) => f)]),
        ),
      })),
    };
    writeResult('raw', date, out, seconds);
    const svgFile = resolve(repoRoot, `bench/results/raw-${date.toISOString().replace(/[:.]/g, '-')}.svg`);
    writeFileSync(
      svgFile,
      rawChartSvg(
        `zeo-ts raw bench ${date.toISOString().slice(0, 16)}Z: ${String(machine.cores)} CPUs, load ${load0.toFixed(1)}`,
        results.map((r) => ({
          phase: r.phase.title,
          values: Object.fromEntries(
            Object.entries(r.runs).map(([kind, runs]) => [
              kind,
              { opsPerSecond: med(runs, 'opsPerSecond'), cpuUsPerOp: med(runs, 'serverCpuUsPerOp') },
            ]),
          ),
        })),
      ),
    );
    log(`wrote ${relative(repoRoot, svgFile)}`);
  } finally {
    await Promise.all(started.map((s) => s.stop()));
    if (KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
