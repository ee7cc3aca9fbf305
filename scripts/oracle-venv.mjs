#!/usr/bin/env node
// Creates (or re-creates, when oracle/requirements.txt changed) the Python oracle:
// an ignored virtualenv with the pinned ZODB, ZEO and msgpack from PyPI.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const venvDir = resolve(root, process.env.ZEO_TS_ORACLE_VENV ?? '.venv-oracle');
export const venvPython = join(venvDir, 'bin', 'python');
const requirements = join(root, 'oracle', 'requirements.txt');
const stamp = join(venvDir, '.zeo-ts-pins');

function pinsHash() {
  return createHash('sha256').update(readFileSync(requirements)).digest('hex');
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
}

function upToDate(want) {
  return existsSync(venvPython) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === want;
}

// A lock directory keeps two processes (parallel test runs, a developer and CI) from building one venv at once.
function withLock(fn) {
  const lock = venvDir + '.lock';
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      // a lock older than the deadline belongs to a process that died
      if (Date.now() - statSync(lock).mtimeMs > 10 * 60_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`, { cause: e });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Returns the oracle's python, building the venv first when it is missing or its pins changed. */
export function ensureOracleVenv({ quiet = false } = {}) {
  const want = pinsHash();
  if (upToDate(want)) return venvPython;
  return withLock(() => (upToDate(want) ? venvPython : buildVenv(want, quiet)));
}

function buildVenv(want, quiet) {
  const python = process.env.ZEO_TS_PYTHON ?? 'python3';
  if (!quiet)
    console.error(`oracle: creating ${venvDir} with ${python} and the pins in oracle/requirements.txt`);
  rmSync(venvDir, { recursive: true, force: true });
  try {
    run(python, ['-m', 'venv', venvDir]);
    run(venvPython, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements]);
  } catch (e) {
    rmSync(venvDir, { recursive: true, force: true });
    throw new Error(
      `could not create the Python oracle virtualenv (${e.message}).\n` +
        `It needs python3 with the venv module and access to PyPI. ` +
        `Set ZEO_TS_SKIP_INTEROP=1 to run without the interop tests.`,
      { cause: e },
    );
  }
  writeFileSync(stamp, want + '\n');
  return venvPython;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    console.log(ensureOracleVenv());
  } catch (e) {
    console.error(`oracle: ${e.message}`);
    process.exit(1);
  }
}
