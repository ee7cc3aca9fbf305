#!/usr/bin/env node
// `npm run bench -- NAME [args]`: runs dist/bench/NAME.js with the Python oracle ready (benchmarks compare
// against the Python implementation in the same run).
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureOracleVenv } from './oracle-venv.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const benchDir = join(root, 'dist', 'bench');
const available = existsSync(benchDir)
  ? readdirSync(benchDir)
      .filter((f) => f.endsWith('.js'))
      .map((f) => f.slice(0, -3))
  : [];
const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- NAME   (one of: ${available.join(', ') || 'none built'})`);
  process.exit(2);
}
let python;
try {
  python = ensureOracleVenv();
} catch (e) {
  console.error(`bench: ${e.message}`);
  process.exit(1);
}
const r = spawnSync(process.execPath, [join(benchDir, `${name}.js`), ...args], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, ZEO_TS_ORACLE_PYTHON: python },
});
process.exit(r.status ?? 1);
