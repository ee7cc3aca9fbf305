#!/usr/bin/env node
// `npm test` after build and lint: prepares the Python oracle, then runs every compiled test file
// with node's test runner. ZEO_TS_SKIP_INTEROP=1 skips the oracle (interop tests then report as skipped).
import { readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureOracleVenv } from './oracle-venv.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = { ...process.env };
if (env.ZEO_TS_SKIP_INTEROP === '1') {
  console.error('ZEO_TS_SKIP_INTEROP=1: interop tests against the Python oracle are skipped');
} else {
  try {
    env.ZEO_TS_ORACLE_PYTHON = ensureOracleVenv();
  } catch (e) {
    console.error(`npm test: ${e.message}`);
    process.exit(1);
  }
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const only = process.argv.slice(2);
let files = findTests(join(root, 'dist', 'test'));
if (only.length) files = files.filter((f) => only.some((o) => relative(root, f).includes(o)));
if (!files.length) {
  console.error('npm test: no test files found under dist/test (did the build run?)');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env,
  cwd: root,
});
process.exit(r.status ?? 1);
