// npm run bench -- shootout [--objects N] [--concurrency 1,4,16] [--encodings pickle,msgpack]
//                           [--phases add,update,cold,warm,hot] [--processes P] [--values V] [--warmups W]
//                           [--loops L] [--rounds R] [--keep]
//                           [--driver N]
// zodbshootout, the benchmark ZODB users know (PyPI, 0.8.0, the latest release), against runzeo (ZEO's own
// server, from the oracle venv) and `zeo serve`, in one run, with its table side by side.
//
// zodbshootout and what its ZEO mode needs (pyperf, six) are installed into the oracle venv on first use, at
// pinned versions and without their other dependencies (`pip install --no-deps`: RelStorage and the database
// drivers are for its other modes). It needs two patches to run on today's pyperf, applied at run time by
// test/fixtures/python/zodbshootout_run.py (which imports the installed package; nothing of it is vendored).
//
// For each encoding (pickle: the default; msgpack: `msgpack true` in both servers' <zeo>, which ZEO's client
// follows from the server's greeting) and each concurrency (zodbshootout's -c: that many client processes,
// each with its own ZEO ClientStorage), both servers are started afresh on empty Data.fs files, at their
// defaults (durable commits: each syncs Data.fs before a commit returns), and one zodbshootout run benchmarks
// both, one after the other for each of its benchmarks (the order of the two alternates from run to run):
//   add     add N objects in one transaction         update  change N objects in one transaction
//   cold    read N objects, every cache emptied       warm    write N objects, then read them back
//   hot     read N objects from the client's cache (the connection's pickle cache emptied): no request reaches
//           the server while it is timed, so its ratio shows the machine's noise, not the server
// N is --objects (its --object-counts; default 200). Each figure is zodbshootout's: seconds per operation (one
// transaction, or one pass over the N objects), the median of its values (pyperf's -p processes x -n values,
// after -w warm-up values each, -l loops per value or calibrated when 0; defaults 1, 3, 1, 1: one worker
// process per benchmark and server and no calibration run, so that the whole run takes about 10 minutes on 2
// cores; each value is zodbshootout's inner loops: 10 operations (100 when N <= 100: 100 objects per transaction
// make a run five times as long), and warm's one operation). Also each server's CPU time over the run (utime + stime from /proc/<pid>/stat: it
// is idle while the other's benchmark runs). Prints the table (ratio > 1: zeo serve faster) with the issue's
// targets (every phase at least as fast as runzeo; cold reads at least 1.5x), and writes
// bench/results/shootout-<timestamp>.json with the machine's description, zodbshootout's version and the
// patches applied.
// --rounds R (default 1): each encoding and concurrency is run R times, on fresh servers each time, the order of
// the two alternating from round to round (runzeo first, then zeo serve first, ...); a figure is the median of
// the values of all rounds. With 3 values per server and benchmark, one server's values spread by 20-40% on a
// machine others use (hot, which the servers take no part in, moves by as much): the table shows each side's
// spread, and a ratio whose two spreads overlap is marked "(overlap)", not told apart from the noise.
// --driver N: instead of zodbshootout, test/fixtures/python/shootout_phases.py does what each benchmark times
// (zodbshootout's speedtest code and data), N operations per server, in one client process against both
// servers, alternating from one operation to the next: a comparison the machine's noise reaches alike (at
// concurrency 1; --concurrency is not used). Reports each side's median and first quartile, and each server's
// CPU per operation (all its threads, from /proc/<pid>/task/*/schedstat) over the phase.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { oraclePython, repoRoot } from '../test/helpers/oracle.js';
import {
  arg,
  median,
  oracleVersions,
  printTable,
  processCpuSeconds,
  runPython,
  runRecord,
  startManagedServer,
  writeResult,
  type ManagedServer,
} from './report.js';

const list = (s: string): string[] => s.split(',').filter(Boolean);

type ServerKind = 'runzeo' | 'zeo-ts';
type Encoding = 'pickle' | 'msgpack';
type Phase = 'add' | 'update' | 'cold' | 'warm' | 'hot';

const OBJECTS = Number(arg('objects') ?? 200);
const CONCURRENCY = list(arg('concurrency') ?? '1,4,16').map(Number);
const ENCODINGS = list(arg('encodings') ?? 'pickle,msgpack') as Encoding[];
const PHASES = list(arg('phases') ?? 'add,update,cold,warm,hot') as Phase[];
const PYPERF = {
  processes: Number(arg('processes') ?? 1),
  values: Number(arg('values') ?? 3),
  warmups: Number(arg('warmups') ?? 1),
  loops: Number(arg('loops') ?? 1),
};
const KEEP = process.argv.includes('--keep');
const ROUNDS = Number(arg('rounds') ?? 1);
const DRIVER = Number(arg('driver') ?? 0);
if (!(DRIVER >= 0)) throw new Error(`--driver: not a count: ${DRIVER}`);
if (!(ROUNDS >= 1)) throw new Error(`--rounds: not a count: ${ROUNDS}`);

const PHASE_NAMES: Record<Phase, string> = {
  add: `add ${OBJECTS} objects`,
  update: `update ${OBJECTS} objects`,
  cold: `read ${OBJECTS} cold objects`,
  warm: `write/read ${OBJECTS} objects`,
  hot: `read ${OBJECTS} hot objects`,
};
/** The issue's targets: zeo serve's speed over runzeo's, at least. */
const TARGET: Record<Phase, number> = { add: 1, update: 1, cold: 1.5, warm: 1, hot: 1 };
for (const p of PHASES) if (!PHASE_NAMES[p]) throw new Error(`--phases: unknown phase ${p}`);
for (const e of ENCODINGS as string[])
  if (e !== 'pickle' && e !== 'msgpack') throw new Error(`--encodings: unknown ${e}`);
for (const c of CONCURRENCY) if (!(c >= 1)) throw new Error(`--concurrency: not a count: ${c}`);

/** zodbshootout's ZEO mode and what it imports, pinned (installed with --no-deps into the oracle venv). */
const PINS: Record<string, string> = { zodbshootout: '0.8.0', pyperf: '2.4.1', six: '1.17.0' };
const RUNNER_PY = resolve(repoRoot, 'test/fixtures/python/zodbshootout_run.py');
const log = (s: string): void => void process.stderr.write(s + '\n');

/** Installs the pinned packages into the oracle venv when any is missing or at another version. */
function ensureZodbshootout(): void {
  const installed = JSON.parse(
    runPython(
      [
        '-c',
        'import json, importlib.metadata as m\n' +
          'def v(p):\n  try: return m.version(p)\n  except m.PackageNotFoundError: return None\n' +
          `print(json.dumps({p: v(p) for p in ${JSON.stringify(Object.keys(PINS))}}))`,
      ],
      60_000,
    ),
  ) as Record<string, string | null>;
  const wanted = Object.entries(PINS).filter(([p, v]) => installed[p] !== v);
  if (wanted.length === 0) return;
  const specs = wanted.map(([p, v]) => `${p}==${v}`);
  log(`shootout: installing ${specs.join(' ')} into the oracle venv (pip install --no-deps; done once)...`);
  runPython(
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-deps', ...specs],
    600_000,
  );
}

type Server = ManagedServer;

/** runzeo or `zeo serve` on an empty Data.fs in `dir` (with `msgpack true` for msgpack). */
const startServer = (kind: ServerKind, encoding: Encoding, dir: string): Promise<Server> =>
  startManagedServer(kind, dir, `  msgpack ${encoding === 'msgpack'}\n`);

/** Runs the patched zodbshootout with `args`, its output to `logPath`; fails with the log's tail. */
function runShootout(args: string[], logPath: string, timeoutMs: number): Promise<void> {
  const fd = openSync(logPath, 'w');
  const env = { ...process.env, ZEO_MSGPACK: '' };
  const child = spawn(oraclePython(), [RUNNER_PY, ...args], {
    cwd: repoRoot,
    stdio: ['ignore', fd, fd],
    env,
  });
  closeSync(fd);
  return new Promise((resolveRun, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolveRun();
      const tail = readFileSync(logPath, 'utf8').split('\n').slice(-40).join('\n');
      reject(new Error(`zodbshootout exited (${code ?? signal}):\n${tail}`));
    });
  });
}

interface PyperfSuite {
  benchmarks: Array<{
    metadata: { name: string; inner_loops?: number; loops?: number };
    runs: Array<{ values?: number[] }>;
  }>;
}

interface Figure {
  /** seconds per operation: the median of zodbshootout's values */
  seconds: number;
  values: number[];
  /** zodbshootout's result when a benchmark failed (it logs the error and reports 666 s) */
  failed: boolean;
}

interface Run {
  encoding: Encoding;
  concurrency: number;
  order: ServerKind[];
  wallSeconds: number;
  serverCpuSeconds: Record<ServerKind, number>;
  figures: Record<ServerKind, Partial<Record<Phase, Figure>>>;
}

/** zodbshootout's per-database suite (<output>.d/<name>_<objects>.json: benchmarks named add, cold, ...). */
function readSuite(outDir: string, kind: ServerKind): Partial<Record<Phase, Figure>> {
  const suite = JSON.parse(readFileSync(join(outDir, `${kind}_${OBJECTS}.json`), 'utf8')) as PyperfSuite;
  const figures: Partial<Record<Phase, Figure>> = {};
  for (const b of suite.benchmarks) {
    const phase = b.metadata.name as Phase;
    if (!PHASES.includes(phase)) continue;
    const values = b.runs.flatMap((r) => r.values ?? []);
    if (values.length === 0) throw new Error(`zodbshootout: no values for ${kind} ${phase}`);
    // 666 is zodbshootout's _MAGIC_NUMBER, what a benchmark that raised returns (--fail-fast not given)
    figures[phase] = { seconds: median(values), values, failed: values.some((v) => v === 666) };
  }
  return figures;
}

async function runOne(
  work: string,
  encoding: Encoding,
  concurrency: number,
  k: number,
  round: number,
): Promise<Run> {
  const dir = join(work, `${encoding}-c${concurrency}${round ? `-${round + 1}` : ''}`);
  const order: ServerKind[] = k % 2 === 0 ? ['runzeo', 'zeo-ts'] : ['zeo-ts', 'runzeo'];
  const servers = {} as Record<ServerKind, Server>;
  try {
    for (const kind of order) servers[kind] = await startServer(kind, encoding, join(dir, kind));
    // one <zodb> per server, in this run's order: zodbshootout runs each benchmark against them in turn
    const conf = join(dir, 'shootout.conf');
    writeFileSync(
      conf,
      '%import ZEO\n' +
        order
          .map(
            (kind) =>
              `<zodb ${kind}>\n  <zeoclient>\n    server 127.0.0.1:${servers[kind].port}\n  </zeoclient>\n</zodb>\n`,
          )
          .join(''),
    );
    const out = join(dir, 'results.json');
    const args = [
      ...['-p', String(PYPERF.processes), '-n', String(PYPERF.values), '-w', String(PYPERF.warmups)],
      ...['-l', String(PYPERF.loops), '--include-mapping', 'false', '--object-counts', String(OBJECTS)],
      ...['-c', String(concurrency), '-o', out, conf, ...PHASES],
    ];
    const of = ROUNDS > 1 ? ` (round ${round + 1} of ${ROUNDS})` : '';
    log(`${encoding}, concurrency ${concurrency}${of}: zodbshootout against ${order.join(', then ')}...`);
    const cpu0 = {
      runzeo: processCpuSeconds(servers.runzeo.process.pid),
      'zeo-ts': processCpuSeconds(servers['zeo-ts'].process.pid),
    };
    const t0 = performance.now();
    await runShootout(args, join(dir, 'zodbshootout.log'), 30 * 60_000);
    const wallSeconds = (performance.now() - t0) / 1000;
    const serverCpuSeconds = {
      runzeo: processCpuSeconds(servers.runzeo.process.pid) - cpu0.runzeo,
      'zeo-ts': processCpuSeconds(servers['zeo-ts'].process.pid) - cpu0['zeo-ts'],
    };
    const outDir = join(dir, 'results.d');
    return {
      encoding,
      concurrency,
      order,
      wallSeconds,
      serverCpuSeconds,
      figures: { runzeo: readSuite(outDir, 'runzeo'), 'zeo-ts': readSuite(outDir, 'zeo-ts') },
    };
  } finally {
    for (const s of Object.values(servers)) await s.process.stop('SIGTERM', 30_000);
  }
}

/** What the results record about this machine. */
function machine(): Record<string, unknown> {
  const cpuInfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuInfo)?.[1] ?? cpus()[0]?.model,
    cpus: cpus().length,
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    kernel: release(),
    loadAverage: loadavg(),
  };
}

const ms = (s: number): string => (s * 1000 < 10 ? (s * 1000).toFixed(2) : (s * 1000).toFixed(1));
/** the lowest and highest of a server's values, ms */
const spread = (values: number[]): string => `${ms(Math.min(...values))}-${ms(Math.max(...values))}`;

/** One server's figures for a benchmark over the rounds of an encoding and concurrency: their values pooled. */
function pooled(runs: Run[], kind: ServerKind, phase: Phase): Figure {
  const figures = runs.map((r) => r.figures[kind][phase]);
  if (figures.some((f) => !f)) throw new Error(`zodbshootout reported no ${phase} for ${kind}`);
  const values = figures.flatMap((f) => f!.values);
  return { seconds: median(values), values, failed: figures.some((f) => f!.failed) };
}

function compare(runs: Run[]) {
  const groups = new Map<string, Run[]>();
  for (const r of runs) {
    const k = `${r.encoding} ${r.concurrency}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].flatMap((rounds) =>
    PHASES.map((phase) => {
      const a = pooled(rounds, 'runzeo', phase);
      const b = pooled(rounds, 'zeo-ts', phase);
      const speedRatio = a.seconds / b.seconds;
      const met = !a.failed && !b.failed && speedRatio >= TARGET[phase];
      // the two servers' values overlap: this ratio is not told apart from the machine's noise
      const overlap =
        Math.min(...a.values) <= Math.max(...b.values) && Math.min(...b.values) <= Math.max(...a.values);
      const { encoding, concurrency } = rounds[0];
      return {
        encoding,
        concurrency,
        rounds: rounds.length,
        phase,
        name: PHASE_NAMES[phase],
        speedRatio,
        target: TARGET[phase],
        met,
        overlap,
        runzeo: a,
        zeoTs: b,
      };
    }),
  );
}

/** A process's CPU seconds over all its threads (ns precision: /proc/<pid>/task/<tid>/schedstat). */
function threadsCpuSeconds(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // (a thread that ended meanwhile)
    }
  }
  return ns / 1e9;
}

const DRIVER_PY = resolve(repoRoot, 'test/fixtures/python/shootout_phases.py');
const quantile = (v: number[], q: number): number =>
  [...v].sort((a, b) => a - b)[Math.floor(q * (v.length - 1))];

interface DriverSide {
  median: number;
  q1: number;
  values: number[];
  cpuPerOp: number;
}

/** What a run records at its start, and its work directory. */
function beginRun() {
  return {
    versions: oracleVersions(),
    load0: loadavg()[0],
    machineAtStart: machine(),
    work: mkdtempSync(join(tmpdir(), 'zeo-ts-bench-shootout-')),
    date: new Date(),
    t0: performance.now(),
  };
}

/** --driver N: the phases op by op, both servers alternating, in one client process (see the header). */
async function runDriver(): Promise<void> {
  const { versions, load0, machineAtStart, work, date, t0 } = beginRun();
  const rows: Array<{ encoding: Encoding; phase: Phase; runzeo: DriverSide; zeoTs: DriverSide }> = [];
  const kinds: ServerKind[] = ['runzeo', 'zeo-ts'];
  try {
    for (const encoding of ENCODINGS) {
      const servers = {} as Record<ServerKind, Server>;
      try {
        for (const kind of kinds)
          servers[kind] = await startServer(kind, encoding, join(work, `${encoding}-driver`, kind));
        for (const phase of PHASES) {
          log(
            `${encoding}, ${phase}: ${DRIVER} operations per server, alternating (runzeo at port ` +
              `${servers.runzeo.port}, zeo serve at ${servers['zeo-ts'].port})...`,
          );
          const cpu0 = kinds.map((k) => threadsCpuSeconds(servers[k].process.pid));
          const ports = kinds.map((k) => String(servers[k].port));
          const out = JSON.parse(
            runPython([DRIVER_PY, phase, String(DRIVER), ...ports], 30 * 60_000),
          ) as Record<string, number[]>;
          // (the driver's connections, its populate and 3 untimed operations per server are in the CPU too)
          const side = (i: number): DriverSide => {
            const v = out[ports[i]];
            const cpu = threadsCpuSeconds(servers[kinds[i]].process.pid) - cpu0[i];
            return { median: median(v), q1: quantile(v, 0.25), values: v, cpuPerOp: cpu / (DRIVER + 3) };
          };
          rows.push({ encoding, phase, runzeo: side(0), zeoTs: side(1) });
        }
      } finally {
        for (const s of Object.values(servers)) await s.process.stop('SIGTERM', 30_000);
      }
    }
  } finally {
    if (KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  writeResult(
    'shootout',
    date,
    {
      ...runRecord('shootout', date, versions, { loadAverageAtStart: load0, benchSeconds: seconds }),
      mode: 'driver',
      machine: { ...machineAtStart, loadAverageAtEnd: loadavg() },
      zodbshootout: { zodbshootout: PINS.zodbshootout },
      objectsPerTransaction: OBJECTS,
      operationsPerServer: DRIVER,
      results: rows,
    },
    seconds,
  );
  printTable(
    `zodbshootout's benchmarks op by op (test/fixtures/python/shootout_phases.py, ZEO ${versions.ZEO} client, ` +
      `one process), runzeo and zeo serve alternating, ${DRIVER} operations each, ${OBJECTS} objects; ms per ` +
      `operation and each server's CPU per operation; load average ${load0.toFixed(1)} at start; ratio > 1: zeo ` +
      `serve faster or cheaper`,
    [
      'encoding',
      'benchmark',
      'runzeo ms',
      'zeo-ts ms',
      'ratio',
      'q1 ratio',
      'runzeo CPU ms',
      'zeo-ts CPU ms',
      'CPU ratio',
    ],
    rows.map(({ encoding, phase, runzeo: a, zeoTs: b }) => [
      encoding,
      PHASE_NAMES[phase],
      ms(a.median),
      ms(b.median),
      `${(a.median / b.median).toFixed(2)}x`,
      `${(a.q1 / b.q1).toFixed(2)}x`,
      (a.cpuPerOp * 1000).toFixed(2),
      (b.cpuPerOp * 1000).toFixed(2),
      `${(a.cpuPerOp / b.cpuPerOp).toFixed(2)}x`,
    ]),
  );
  if (PHASES.includes('hot'))
    console.log("(hot: no request reaches the server while it is timed; its ratio is the client's noise)");
}

async function main(): Promise<void> {
  ensureZodbshootout();
  if (DRIVER > 0) return runDriver();
  const patches = JSON.parse(runPython([RUNNER_PY, '--list-patches'], 60_000)) as Record<string, string>;
  const { versions, load0, machineAtStart, work, date, t0 } = beginRun();
  const runs: Run[] = [];
  // written again after each zodbshootout run: a run cut short keeps what it measured
  const write = (complete: boolean): void => {
    const seconds = (performance.now() - t0) / 1000;
    writeResult(
      'shootout',
      date,
      {
        ...runRecord('shootout', date, versions, { loadAverageAtStart: load0, benchSeconds: seconds }),
        complete,
        machine: { ...machineAtStart, loadAverageAtEnd: loadavg() },
        zodbshootout: { ...PINS, patches },
        objectsPerTransaction: OBJECTS,
        pyperf: PYPERF,
        rounds: ROUNDS,
        runs: runs.map((r) => ({
          encoding: r.encoding,
          concurrency: r.concurrency,
          order: r.order,
          wallSeconds: r.wallSeconds,
          serverCpuSeconds: r.serverCpuSeconds,
        })),
        results: compare(runs),
      },
      seconds,
    );
  };
  try {
    let k = 0;
    for (const encoding of ENCODINGS)
      for (const concurrency of CONCURRENCY)
        for (let round = 0; round < ROUNDS; round++) {
          runs.push(await runOne(work, encoding, concurrency, k++, round));
          write(runs.length === ENCODINGS.length * CONCURRENCY.length * ROUNDS);
        }
  } finally {
    if (KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }

  const results = compare(runs);
  printTable(
    `zodbshootout ${PINS.zodbshootout} (ZEO ${versions.ZEO} clients, Python ${versions.python}) against runzeo and ` +
      `zeo serve (Node ${process.version}), ${OBJECTS} objects per transaction, ms per operation (the median ` +
      `of ${ROUNDS > 1 ? `${ROUNDS} rounds x ` : ''}${PYPERF.processes} x ${PYPERF.values} values after ${PYPERF.warmups} warm-up, ` +
      `${PYPERF.loops ? `${PYPERF.loops} loops` : 'calibrated loops'}); ${cpus().length} CPUs, load average ` +
      `${load0.toFixed(1)} at start; ratio > 1: zeo serve faster`,
    [
      'encoding',
      'clients',
      'benchmark',
      'runzeo ms',
      'zeo-ts ms',
      'runzeo spread',
      'zeo-ts spread',
      'ratio',
      'target',
    ],
    results.map((r) => [
      r.encoding,
      r.concurrency,
      r.name,
      ms(r.runzeo.seconds) + (r.runzeo.failed ? ' (failed)' : ''),
      ms(r.zeoTs.seconds) + (r.zeoTs.failed ? ' (failed)' : ''),
      spread(r.runzeo.values),
      spread(r.zeoTs.values),
      `${r.speedRatio.toFixed(2)}x${r.overlap ? ' (overlap)' : ''}`,
      `>= ${r.target.toFixed(1)}x: ${r.met ? 'met' : 'NOT MET'}`,
    ]),
  );
  printTable(
    "context: each server's CPU time over its zodbshootout run (both benchmarked in one run, one at a time)",
    ['encoding', 'clients', 'first', 'run s', 'runzeo CPU s', 'zeo-ts CPU s', 'ratio'],
    runs.map((r) => [
      r.encoding,
      r.concurrency,
      r.order[0],
      r.wallSeconds.toFixed(0),
      r.serverCpuSeconds.runzeo.toFixed(2),
      r.serverCpuSeconds['zeo-ts'].toFixed(2),
      `${(r.serverCpuSeconds.runzeo / r.serverCpuSeconds['zeo-ts']).toFixed(2)}x`,
    ]),
  );
  const notMet = results.filter((r) => !r.met);
  console.log(
    notMet.length === 0
      ? 'every target met'
      : `targets not met: ${notMet.map((r) => `${r.encoding} c=${r.concurrency} ${r.phase} ${r.speedRatio.toFixed(2)}x${r.overlap ? ' (overlap)' : ''}`).join(', ')}`,
  );
  if (notMet.some((r) => r.overlap))
    console.log(
      "(overlap: the two servers' values overlap; --rounds R pools R runs, alternating which server goes first)",
    );
  if (PHASES.includes('hot'))
    console.log("(hot: no request reaches the server while it is timed; its ratio is the clients' noise)");
}

await main();
