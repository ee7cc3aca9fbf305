// npm run bench -- postgresql [--objects N] [--seconds S] [--warmup S] [--rounds R] [--clients 1,4]
//                             [--phases loads,commits] [--setups zeo1,zeo2,runzeo,relstorage] [--free]
//                             [--rebuild] [--keep] [--profile PHASE:CLIENTS]
// One private PostgreSQL cluster (test/helpers/postgres.ts, fsync on: a commit is on disk when it returns), one
// database in RelStorage's history-preserving schema holding the server bench's objects (N PersistentMappings,
// default 30,000, and 16 client slots: the Data.fs Python's ZODB builds for `npm run bench -- server`, copied
// in with `zeo copy`), and the same Python client workload (test/fixtures/python/pg_bench_client.py: N client
// processes started together behind a barrier, after W seconds of warm-up, default 2) in four setups, in one
// run, on that one database:
//   - 1 zeo serve: every client a ZEO 6 ClientStorage of one `zeo serve` over the database;
//   - 2 zeo serve: two `zeo serve` over the same database, the clients split over both (client i on server
//     i mod 2), each server pushing the other's commits to its clients (LISTEN/NOTIFY and its poll);
//   - runzeo (RelStorage): ZEO's own Python server (runzeo, ZEO 6) serving RelStorage over the database, the
//     reference for zeo serve (RelStorage's local cache at 64 MB, as zeo serve's state cache's 64 MiB default);
//   - RelStorage: every client RelStorage 4.x's own storage, talking SQL to PostgreSQL directly (no server
//     between; its defaults, history-preserving).
// (--setups zeo1,zeo2,runzeo,relstorage: which of them run, default all.)
// Phases (S seconds each, default 5):
//   - loads: one load at a time of a random oid, what a client asks on a cache miss (ZEO: loadBefore(oid,
//     maxtid) to the server, which answers from its own cache of current states once it holds the object;
//     RelStorage: its load_current query, which always reaches the database);
//   - commits: ZODB transactions each changing 2 objects of the client's own slot (no conflicts).
// Each setup runs R times (default 3, the setups' order rotating from round to round), its servers started
// for the run and stopped after (the RelStorage setup has none). For each: operations per second (all
// clients), the server processes' CPU per operation (utime + stime from /proc, both servers together in the
// 2-server setup), PostgreSQL's (the postmaster and its backends) and the clients', the median of the R runs.
// Prints the tables (ratios of throughput: zeo serve's over RelStorage's client's and over runzeo's) and writes bench/results/postgresql-<timestamp>.json
// with every run. With 1 client there is no 2-server setup (one client uses one server). --free: clients not
// kept on a CPU each (by default client i keeps to CPU i mod cores, as the server bench does: a Python client
// is GIL-bound, and left free its threads' placement varies the figures more than the server does).
// --profile PHASE:CLIENTS (e.g. loads:1) instead runs only that phase, against one `zeo serve` under
// --cpu-prof, and prints its top functions by self time over the phase (bench/report.ts printProfile).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { repoRoot } from '../test/helpers/oracle.js';
import { startPostgres, type PostgresCluster } from '../test/helpers/postgres.js';
import { relstorageDsn } from '../test/helpers/relstorage.js';
import { freePort, ServerProcess, type ServerKind } from '../test/helpers/server-process.js';
import { runZeo } from '../test/helpers/zeo-servers.js';
import {
  arg,
  benchDataFs,
  machineDescription,
  median,
  oracleVersions,
  printProfile,
  printTable,
  runPython,
  runRecord,
  withRange,
  writeResult,
  type ClientsRun,
} from './report.js';

const OBJECTS = Number(arg('objects') ?? 30_000);
const SECONDS = Number(arg('seconds') ?? 5);
const WARMUP = Number(arg('warmup') ?? 2);
const ROUNDS = Number(arg('rounds') ?? 3);
const CLIENTS = (arg('clients') ?? '1,4').split(',').map(Number);
const REBUILD = process.argv.includes('--rebuild');
const KEEP = process.argv.includes('--keep');
const FREE = process.argv.includes('--free');
const PROFILE = arg('profile');
/** client slots in the Data.fs (the server bench's): the most clients a phase can have */
const SLOTS = 16;
for (const c of CLIENTS)
  if (!(Number.isInteger(c) && c >= 1 && c <= SLOTS)) throw new Error(`--clients: 1 to ${SLOTS}, not ${c}`);
if (!(SECONDS > 0 && WARMUP >= 0 && Number.isInteger(ROUNDS) && ROUNDS >= 1))
  throw new Error('--seconds > 0, --warmup >= 0, --rounds a positive integer');

type Phase = 'loads' | 'commits';
const PHASES = (arg('phases') ?? 'loads,commits').split(',').filter(Boolean) as Phase[];
for (const p of PHASES)
  if (p !== 'loads' && p !== 'commits') throw new Error(`--phases loads,commits, not ${String(p)}`);
const PHASE_NAMES: Record<Phase, string> = { loads: 'loads', commits: 'small commits (2 objects)' };

type Setup = 'zeo1' | 'zeo2' | 'runzeo' | 'relstorage';
const ALL_SETUPS: Setup[] = ['zeo1', 'zeo2', 'runzeo', 'relstorage'];
const SETUPS = (arg('setups') ?? ALL_SETUPS.join(',')).split(',').filter(Boolean) as Setup[];
for (const s of SETUPS)
  if (!ALL_SETUPS.includes(s)) throw new Error(`--setups ${ALL_SETUPS.join(',')}, not ${String(s)}`);
/** short names, for the tables' headers */
const SHORT: Record<Setup, string> = { zeo1: '1 zs', zeo2: '2 zs', runzeo: 'runzeo', relstorage: 'RS' };
const SETUP_NAMES: Record<Setup, string> = {
  runzeo: 'runzeo (RelStorage)',
  zeo1: '1 zeo serve',
  zeo2: '2 zeo serve',
  relstorage: 'RelStorage',
};

const CLIENT_PY = resolve(repoRoot, 'test/fixtures/python/pg_bench_client.py');
const log = (s: string): void => void process.stderr.write(s + '\n');

interface Run extends ClientsRun {
  /** every server process of the setup, together (0 for RelStorage) */
  serverCpu: number;
  pgCpu: number;
}

interface Figures {
  opsPerSecond: number;
  serverCpuUsPerOp: number;
  pgCpuUsPerOp: number;
  clientCpuUsPerOp: number;
  run: Run;
}

interface Bench {
  cluster: PostgresCluster;
  database: string;
  postmasterPid: number;
  maxOid: number;
  work: string;
}

/** The database: the server bench's Data.fs copied in by `zeo copy`, then opened once by RelStorage. */
async function prepareDatabase(cluster: PostgresCluster, database: string): Promise<{ maxOid: number }> {
  const data = benchDataFs(OBJECTS, SLOTS, REBUILD);
  const admin = new pg.Client(cluster.connection());
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  log(`copying ${data.path} (${data.objects} objects) into PostgreSQL with zeo copy...`);
  const url = `postgresql://${cluster.user}@${encodeURIComponent(cluster.socketDir)}:${cluster.port}/${database}`;
  const copied = await runZeo(['copy', `file://${data.path}`, url]);
  if (copied.status !== 0) throw new Error(`zeo copy failed (${copied.status}):\n${copied.stderr}`);
  log(copied.stdout.trim());
  // RelStorage installs its procedures in a database it opens: done here, not in the first measured run
  runPython([CLIENT_PY, 'prepare', relstorageDsn(cluster, database)], 300_000);
  return { maxOid: data.maxOid };
}

/**
 * `count` servers over the database, each on a free loopback port: `zeo serve` with its <postgresql> section,
 * or runzeo serving RelStorage (history-preserving, its local cache the size of zeo serve's state cache).
 */
async function startServers(
  b: Bench,
  kind: ServerKind,
  count: number,
  nodeFlags: string[] = [],
): Promise<Array<{ server: ServerProcess; port: number }>> {
  const started: Array<{ server: ServerProcess; port: number }> = [];
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const dir = join(b.work, `${kind}-${i}`);
      mkdirSync(dir, { recursive: true });
      const conf = join(dir, 'zeo.conf');
      const dsn = relstorageDsn(b.cluster, b.database);
      const zeo = `<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n`;
      writeFileSync(
        conf,
        kind === 'runzeo'
          ? `%import relstorage\n${zeo}<relstorage>\n  keep-history true\n  cache-local-mb 64\n` +
              `  <postgresql>\n    dsn ${dsn}\n  </postgresql>\n</relstorage>\n`
          : `${zeo}<postgresql>\n  dsn ${dsn}\n</postgresql>\n`,
      );
      const server = new ServerProcess({
        kind,
        conf,
        cwd: dir,
        env: { ZEO_MSGPACK: '' },
        nodeFlags,
      });
      started.push({ server, port: await server.port(60_000) });
    }
    return started;
  } catch (e) {
    for (const s of started) s.server.kill();
    throw e;
  }
}

async function runSetup(
  b: Bench,
  setup: Setup,
  phase: Phase,
  clients: number,
  seed: number,
  serverNodeFlags: string[] = [],
): Promise<Figures> {
  const servers =
    setup === 'relstorage'
      ? []
      : await startServers(
          b,
          setup === 'runzeo' ? 'runzeo' : 'zeo-ts',
          setup === 'zeo2' ? 2 : 1,
          serverNodeFlags,
        );
  const args = {
    target: setup === 'relstorage' ? 'relstorage' : 'zeo',
    servers: servers.map((s) => ['127.0.0.1', s.port]),
    dsn: relstorageDsn(b.cluster, b.database),
    serverPids: servers.map((s) => s.server.pid),
    postmasterPid: b.postmasterPid,
    phase,
    clients,
    seconds: SECONDS,
    warmup: WARMUP,
    maxOid: b.maxOid,
    seed,
    clientCpus: FREE ? null : cpus().map((_, i) => i),
  };
  let out: string;
  try {
    out = runPython([CLIENT_PY, 'run', JSON.stringify(args)], (SECONDS + WARMUP + 300) * 1000);
  } catch (e) {
    const logs = servers.map(
      (s, i) => `${s.server.label} ${i}:\n${s.server.stderr.split('\n').slice(-20).join('\n')}`,
    );
    throw new Error(`${(e as Error).message}\n${logs.join('\n')}`, { cause: e });
  } finally {
    for (const s of servers) await s.server.stop();
  }
  const run = JSON.parse(out) as Run;
  if (!(run.ops > 0)) throw new Error(`${phase} x${clients}, ${SETUP_NAMES[setup]}: no operations`);
  return {
    opsPerSecond: run.ops / run.wall,
    serverCpuUsPerOp: (run.serverCpu / run.ops) * 1e6,
    pgCpuUsPerOp: (run.pgCpu / run.ops) * 1e6,
    clientCpuUsPerOp: (run.clientCpu / run.ops) * 1e6,
    run,
  };
}

/** One phase at one client count: every run of each setup, in run order (zeo2 empty with 1 client). */
interface Compared {
  phase: Phase;
  clients: number;
  runs: Record<Setup, Figures[]>;
}

type FigureKey = 'opsPerSecond' | 'serverCpuUsPerOp' | 'pgCpuUsPerOp' | 'clientCpuUsPerOp';

const med = (runs: Figures[], key: FigureKey): number => median(runs.map((f) => f[key]));

/** A setup's median figure as text ('-': the setup did not run). */
function cell(r: Compared, setup: Setup, key: FigureKey, digits: number): string {
  return r.runs[setup].length ? med(r.runs[setup], key).toFixed(digits) : '-';
}

/** `ours`'s throughput over `theirs`'s (medians), with the runs' own ratios paired in round order. */
function throughputRatio(r: Compared, setup: Setup, other: Setup): string {
  const ours = r.runs[setup];
  const theirs = r.runs[other];
  if (!ours.length || !theirs.length) return '-';
  return withRange(
    med(ours, 'opsPerSecond') / med(theirs, 'opsPerSecond'),
    ours.map((f, i) => f.opsPerSecond / theirs[i].opsPerSecond),
  );
}

function summary(f: Figures): Record<string, number> {
  return {
    opsPerSecond: f.opsPerSecond,
    serverCpuUsPerOp: f.serverCpuUsPerOp,
    pgCpuUsPerOp: f.pgCpuUsPerOp,
    clientCpuUsPerOp: f.clientCpuUsPerOp,
    ops: f.run.ops,
    wallSeconds: f.run.wall,
    serverCpuSeconds: f.run.serverCpu,
    pgCpuSeconds: f.run.pgCpu,
    clientCpuSeconds: f.run.clientCpu,
  };
}

/** The cluster (fsync on), its bench database prepared; PostgreSQL's version. */
async function openBench(cluster: PostgresCluster, work: string): Promise<{ b: Bench; pgVersion: string }> {
  const database = 'bench';
  const { maxOid } = await prepareDatabase(cluster, database);
  const postmasterPid = Number(
    readFileSync(join(cluster.socketDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0],
  );
  const c = new pg.Client(cluster.connection(database));
  await c.connect();
  try {
    const { rows } = await c.query<{ server_version: string }>('SHOW server_version');
    return { b: { cluster, database, postmasterPid, maxOid, work }, pgVersion: rows[0].server_version };
  } finally {
    await c.end();
  }
}

/** --profile PHASE:CLIENTS: that phase only, against one `zeo serve` under --cpu-prof; its top functions. */
async function profile(b: Bench, spec: string): Promise<void> {
  const [phase, clients] = spec.split(':');
  if ((phase !== 'loads' && phase !== 'commits') || !(Number(clients) >= 1))
    throw new Error(`--profile PHASE:CLIENTS (loads or commits), not ${spec}`);
  const profDir = join(b.work, 'cpu-prof');
  log(`profiling zeo serve: ${phase} x${clients}, ${SECONDS} s...`);
  const f = await runSetup(b, 'zeo1', phase, Number(clients), 1, ['--cpu-prof', '--cpu-prof-dir', profDir]);
  log(
    `${phase} x${clients} (under --cpu-prof): ${f.opsPerSecond.toFixed(0)} ops/s, zeo serve ` +
      `${f.serverCpuUsPerOp.toFixed(1)} CPU µs/op, PostgreSQL ${f.pgCpuUsPerOp.toFixed(1)} CPU µs/op`,
  );
  const files = readdirSync(profDir).filter((x) => x.endsWith('.cpuprofile'));
  if (files.length !== 1) throw new Error(`expected one profile in ${profDir}, found ${files.join(', ')}`);
  printProfile(join(profDir, files[0]), `${PHASE_NAMES[phase]} x${clients}`, f.run.monotonic);
  if (KEEP) log(`profile: ${join(profDir, files[0])}`);
}

async function main(): Promise<void> {
  const versions = oracleVersions();
  const relstorageVersion = runPython(
    ['-c', "import importlib.metadata as m; print(m.version('RelStorage'))"],
    60_000,
  ).trim();
  const load0 = loadavg()[0];
  const t0 = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'zeo-ts-bench-pg-'));
  log('starting a private PostgreSQL cluster (fsync on)...');
  const cluster = await startPostgres({ fsync: true });
  const results: Compared[] = [];
  let pgVersion: string;
  try {
    const opened = await openBench(cluster, work);
    pgVersion = opened.pgVersion;
    const b = opened.b;
    if (PROFILE) return await profile(b, PROFILE);
    let k = 0;
    for (const phase of PHASES) {
      for (const clients of CLIENTS) {
        const r: Compared = { phase, clients, runs: { zeo1: [], zeo2: [], runzeo: [], relstorage: [] } };
        const setups = SETUPS.filter((s) => s !== 'zeo2' || clients > 1);
        for (let round = 0; round < ROUNDS; round++) {
          // rotate the order from round to round (and phase to phase)
          const shift = (k + round) % setups.length;
          for (const setup of [...setups.slice(shift), ...setups.slice(0, shift)]) {
            log(`${phase} x${clients}, ${SETUP_NAMES[setup]} (run ${round + 1} of ${ROUNDS})...`);
            // every setup gets the same seed in a round: the same oids
            r.runs[setup].push(await runSetup(b, setup, phase, clients, k * ROUNDS + round + 1));
          }
        }
        results.push(r);
        k++;
      }
    }
  } finally {
    await cluster.stop();
    if (KEEP) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  const ratios: Array<[Setup, Setup]> = (
    [
      ['zeo1', 'relstorage'],
      ['zeo2', 'relstorage'],
      ['zeo1', 'runzeo'],
    ] as Array<[Setup, Setup]>
  ).filter(([a, b]) => SETUPS.includes(a) && SETUPS.includes(b));
  printTable(
    `postgresql: Python clients (ZEO ${versions.ZEO}, RelStorage ${relstorageVersion}) on one PostgreSQL ` +
      `${pgVersion} database (fsync on) of ${OBJECTS.toLocaleString('en-US')} objects, through ` +
      `${SETUPS.map((s) => SETUP_NAMES[s]).join(', ')} (zs: zeo serve, RS: RelStorage's own client; with 2 zeo ` +
      `serve the clients are split over both); ${SECONDS} s per phase after ${WARMUP} s of ` +
      `warm-up, median of ${ROUNDS} runs each (Node ${process.version}, Python ${versions.python}; ` +
      `${cpus().length} CPUs, ${FREE ? 'nothing pinned' : 'each client on one CPU'}; load average ` +
      `${load0.toFixed(1)} at start); a ratio > 1: the first faster (in parentheses: the ratios of the runs, ` +
      `paired in order)`,
    [
      'phase',
      'clients',
      ...SETUPS.map((s) => `${SHORT[s]} ops/s`),
      ...ratios.map(([a, b]) => `${SHORT[a]}/${SHORT[b]}`),
    ],
    results.map((r) => [
      PHASE_NAMES[r.phase],
      r.clients,
      ...SETUPS.map((s) => cell(r, s, 'opsPerSecond', 0)),
      ...ratios.map(([a, b]) => throughputRatio(r, a, b)),
    ]),
  );
  const servers = SETUPS.filter((s) => s !== 'relstorage');
  printTable(
    'CPU per operation, µs (medians): the server processes (both together with 2 zeo serve), PostgreSQL ' +
      '(postmaster and backends) and the Python clients',
    [
      'phase',
      'clients',
      ...servers.map((s) => `server (${SHORT[s]})`),
      ...SETUPS.map((s) => `PostgreSQL (${SHORT[s]})`),
      ...SETUPS.map((s) => `client (${SHORT[s]})`),
    ],
    results.map((r) => [
      PHASE_NAMES[r.phase],
      r.clients,
      ...servers.map((s) => cell(r, s, 'serverCpuUsPerOp', 1)),
      ...SETUPS.map((s) => cell(r, s, 'pgCpuUsPerOp', 1)),
      ...SETUPS.map((s) => cell(r, s, 'clientCpuUsPerOp', 1)),
    ]),
  );
  const date = new Date();
  writeResult(
    'postgresql',
    date,
    {
      ...runRecord('postgresql', date, versions, { loadAverageAtStart: load0, benchSeconds: seconds }),
      relstorage: relstorageVersion,
      postgresql: pgVersion,
      fsync: true,
      machine: machineDescription(),
      objects: OBJECTS,
      secondsPerPhase: SECONDS,
      warmupSeconds: WARMUP,
      rounds: ROUNDS,
      clientsPinned: !FREE,
      setups: SETUPS,
      results: results.map((r) => ({
        phase: r.phase,
        clients: r.clients,
        ...Object.fromEntries(SETUPS.map((s) => [s, r.runs[s].map(summary)])),
      })),
    },
    seconds,
  );
}

await main();
