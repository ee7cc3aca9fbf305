// The test suites shipped in the Python packages — ZEO's own server tests (ZEO.tests.testZEO,
// testConnection, testConfig, testssl) and ZODB's generic storage test classes and race tests as ZEO mixes
// them into its test classes — run by the real Python ClientStorage against `zeo serve`.
// test/fixtures/python/zeo_suites/run_suites.py replaces ZEO's test server starter with one that runs
// `node bin/zeo serve -C <the zeo.conf the test asked for>`, runs the suites and prints a JSON summary;
// its exclusions.py lists, with reasons, the few tests that reach into the Python server's internals.
// The same suites run a second time with every FileStorage the tests ask for served from a PostgreSQL
// database of a private cluster (run_suites.py --storage postgresql: RelStorage's <relstorage> section, a
// database per FileStorage path), with the same exclusions and exclusions.py's PG_* tables.
// Run the runner by hand to debug one test: see the usage at the top of run_suites.py.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, type TestContext } from 'node:test';
import { interopTest, oraclePython, repoRoot } from '../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';

const suitesDir = resolve(repoRoot, 'test/fixtures/python/zeo_suites');
const SUMMARY_MARKER = 'ZEO_SUITES_SUMMARY ';

interface SuiteSummary {
  name: string;
  description: string;
  tests: number;
  passed: number;
  failed: number;
  errors: number;
  skipped: number;
  expected_failures: number;
  /** over PostgreSQL: failed as exclusions.PG_PENDING expects (a stated difference of the PostgreSQL engine) */
  pending?: number;
  excluded: number;
  seconds: number;
}

interface FailureRecord {
  id: string;
  suite: string;
  status: 'fail' | 'error';
  seconds: number | null;
  traceback: string | null;
  server_log: string[] | null;
}

interface Summary {
  target: string;
  /** what zeo serve served the tests' FileStorages from: 'filestorage' or 'postgresql' */
  storage: string;
  seconds: number;
  suites: SuiteSummary[];
  failures: FailureRecord[];
  excluded: Array<{ id: string; suite: string; reason: string }>;
  not_run: Array<{ what: string; reason: string }>;
  skipped: Array<{ id: string; reason: string | null }>;
  expected_failures: Array<{ id: string; reason: string | null }>;
  pending?: Array<{ id: string; reason: string | null }>;
  root_adjustments: Array<{ id: string; example: string; reason: string }>;
  stale_exclusions: string[];
  load_errors: Array<{ suite: string; traceback: string }>;
  server_events: Array<{ id: string | null; message: string }>;
  aborted: string | null;
  slowest: Array<{ id: string; seconds: number }>;
}

/**
 * The test-only packages ZEO's test modules import (zope.testing, manuel), installed with the oracle venv's
 * pip into a directory next to the venv (so a rebuilt venv gets them again), once per pin set.
 */
function ensureTestDeps(python: string): string {
  const venvDir = dirname(dirname(python));
  const target = join(venvDir, 'zeo-suites-deps');
  const requirements = join(suitesDir, 'requirements.txt');
  const want = createHash('sha256').update(readFileSync(requirements)).digest('hex');
  const stamp = join(target, '.zeo-ts-pins');
  const upToDate = (): boolean => existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === want;
  if (upToDate()) return target;
  const lock = `${target}.lock`;
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (Date.now() - statSync(lock).mtimeMs > 5 * 60_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`, { cause: e });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
  try {
    if (upToDate()) return target;
    rmSync(target, { recursive: true, force: true });
    const r = spawnSync(
      python,
      [
        '-m',
        'pip',
        'install',
        '--quiet',
        '--disable-pip-version-check',
        '--no-deps',
        '--target',
        target,
        '-r',
        requirements,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) {
      rmSync(target, { recursive: true, force: true });
      throw new Error(
        `could not install the test-only packages of ${requirements} with the oracle's pip ` +
          `(it needs PyPI, as the oracle venv does; ZEO_TS_SKIP_INTEROP=1 skips interop tests):\n${r.stderr}`,
      );
    }
    writeFileSync(stamp, want + '\n');
    return target;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** The start and the end of a traceback: where it was raised from and what was raised. */
function tracebackHead(tb: string | null, max = 30): string {
  if (!tb) return '(no traceback)';
  const lines = tb.trimEnd().split('\n');
  if (lines.length <= max) return lines.join('\n');
  return [...lines.slice(0, 4), `    ... (${lines.length - max + 4} lines)`, ...lines.slice(-(max - 4))].join(
    '\n',
  );
}

function describeFailures(summary: Summary, logFile: string): string {
  const out: string[] = [];
  if (summary.aborted) out.push(`the run was aborted: ${summary.aborted}`);
  for (const f of summary.failures) {
    out.push(`${f.status === 'fail' ? 'FAIL' : 'ERROR'} ${f.id} [${f.suite}, ${f.seconds ?? '?'}s]`);
    out.push(tracebackHead(f.traceback).replace(/^/gm, '    '));
    if (f.server_log?.length) {
      out.push('    zeo serve logged:');
      out.push(f.server_log.slice(0, 12).join('\n').replace(/^/gm, '      '));
    }
  }
  for (const e of summary.load_errors)
    out.push(`could not load suite ${e.suite}:\n${tracebackHead(e.traceback)}`);
  for (const s of summary.stale_exclusions) out.push(`exclusions.py names a test no suite has (stale): ${s}`);
  for (const e of summary.server_events)
    out.push(`server problem during ${e.id ?? '(between tests)'}: ${e.message}`);
  out.push(`(the runner's per-test log: ${logFile})`);
  return out.join('\n');
}

/**
 * Runs run_suites.py (with `extra` arguments) and fails with every failing test's traceback and server log, or
 * when the run was aborted, a suite did not load, an exclusion is stale or a server misbehaved.
 */
async function runSuites(t: TestContext, extra: string[]): Promise<Summary> {
  const python = oraclePython();
  const deps = ensureTestDeps(python);
  const logDir = await mkdtemp(join(tmpdir(), 'zeo-ts-python-suites-'));
  const logFile = join(logDir, 'suites.log');
  const args = [
    '-u',
    join(suitesDir, 'run_suites.py'),
    '--zeo',
    resolve(repoRoot, 'bin/zeo'),
    '--node',
    process.execPath,
    '--log',
    logFile,
    // two runners share the suites: most of their time is spent waiting (reconnects, timeouts, threads)
    '--jobs',
    '2',
    ...extra,
  ];
  // ZEO_MSGPACK passes through: with it set, the suites and zeo serve run in msgpack mode, as ZEO's CI does
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: deps, PYTHONDONTWRITEBYTECODE: '1' };
  const child = spawn(python, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const kill = (): void => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  t.signal.addEventListener('abort', kill);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolveExit, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolveExit(c));
  });
  t.signal.removeEventListener('abort', kill);

  const line = stdout.split('\n').find((l) => l.startsWith(SUMMARY_MARKER));
  if (!line) {
    assert.fail(
      `run_suites.py exited with ${code} without a summary\nstdout:\n${stdout.slice(-4000)}\n` +
        `stderr:\n${stderr.slice(-4000)}\nlog: ${logFile}`,
    );
  }
  const summary = JSON.parse(line.slice(SUMMARY_MARKER.length)) as Summary;

  for (const s of summary.suites) {
    t.diagnostic(
      `${s.name}: ${s.tests} run, ${s.passed} passed, ${s.failed} failed, ${s.errors} errors, ` +
        `${s.skipped} skipped, ${s.expected_failures} expected failures, ` +
        `${s.pending ? `${s.pending} failed over PostgreSQL as expected, ` : ''}${s.excluded} excluded, ${s.seconds}s`,
    );
  }
  t.diagnostic(`total ${summary.seconds}s; ${summary.excluded.length} tests excluded (exclusions.py)`);
  for (const s of summary.skipped) t.diagnostic(`skipped ${s.id}: ${s.reason}`);
  for (const x of summary.expected_failures) t.diagnostic(`failed as expected: ${x.id}: ${x.reason}`);
  // (counted by reason; exclusions.PG_PENDING names them)
  const pending = new Map<string, number>();
  for (const x of summary.pending ?? []) pending.set(x.reason ?? '', (pending.get(x.reason ?? '') ?? 0) + 1);
  for (const [reason, n] of pending)
    t.diagnostic(`failed over PostgreSQL as expected (PG_PENDING), ${n} tests: ${reason}`);
  for (const a of summary.root_adjustments)
    t.diagnostic(`as root, dropped from ${a.id}: ${a.example}: ${a.reason}`);

  const bad =
    summary.failures.length > 0 ||
    summary.aborted !== null ||
    summary.load_errors.length > 0 ||
    summary.stale_exclusions.length > 0 ||
    summary.server_events.length > 0;
  if (bad) {
    assert.fail(
      `${summary.failures.length} of the Python suites' tests failed against zeo serve` +
        `${summary.storage === 'postgresql' ? ' over PostgreSQL' : ''}:\n` +
        describeFailures(summary, logFile),
    );
  }
  assert.equal(code, 0, `run_suites.py exited with ${code}\n${stderr.slice(-2000)}`);
  assert.ok(
    summary.suites.every((s) => s.tests > 0),
    'every suite ran tests',
  );
  rmSync(logDir, { recursive: true, force: true });
  return summary;
}

interopTest(
  "ZEO's and ZODB's own test suites pass through the Python ClientStorage against zeo serve",
  async (_oracle, t) => {
    const summary = await runSuites(t, []);
    assert.equal(summary.storage, 'filestorage');
  },
  { timeout: 20 * 60_000 },
);

// The same suites with every FileStorage a test asks for served from a PostgreSQL database of a private
// cluster (RelStorage's schema, through a <relstorage> section), the same exclusions plus the few of
// exclusions.PG_EXCLUSIONS (tests of FileStorage's files themselves)
describe('over PostgreSQL', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  interopTest(
    "ZEO's and ZODB's own test suites pass through the Python ClientStorage against zeo serve over PostgreSQL",
    async (_oracle, t) => {
      const dsn = `host=${cluster.socketDir} port=${cluster.port} user=${cluster.user}`;
      const summary = await runSuites(t, ['--storage', 'postgresql', '--pg-dsn', dsn]);
      assert.equal(summary.storage, 'postgresql');
    },
    { timeout: 20 * 60_000 },
  );
});
