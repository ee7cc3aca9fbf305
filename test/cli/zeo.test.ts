import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { interopTest, repoRoot } from '../helpers/oracle.js';

const zeo = resolve(repoRoot, 'bin/zeo');

function run(args: string[], input?: Uint8Array) {
  const r = spawnSync(process.execPath, [zeo, ...args], { input, encoding: 'buffer' });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test('zeo --version prints the package version', () => {
  const pkg = JSON.parse(readFileSync(resolve(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const r = run(['--version']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('zeo --help lists the subcommands', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /Usage: zeo/);
  assert.match(r.stdout, /pickle/);
});

test('zeo pickle show refuses a truncated pickle with the offset and a non-zero exit', () => {
  const r = run(['pickle', 'show'], Buffer.from('80035d7100284b01', 'hex'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^zeo pickle show: .*at byte \d+/);
});

interopTest('zeo pickle show prints a pickle and a ZODB record as Python sees them', async (oracle) => {
  const pickled = await oracle.bytes(`
import pickle
result = pickle.dumps({'a': (1, 2.5, b'x'), 'b': [None, True]}, 2)
`);
  const shown = run(['pickle', 'show', '--hex'], Buffer.from(pickled.toString('hex') + '\n'));
  assert.equal(shown.status, 0, shown.stderr);
  assert.equal(shown.stdout.trim(), "{'a': (1, 2.5, b'x'), 'b': [None, True]}");

  const record = await oracle.bytes(`
import io
from persistent.mapping import PersistentMapping
from ZODB.serialize import ObjectWriter
pm = PersistentMapping({'k': 'v'})
result = ObjectWriter().serialize(pm)
`);
  const r = run(['pickle', 'show', '--record'], record);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^class: persistent\.mapping\.PersistentMapping\n/);
  assert.match(r.stdout, /state: \{'data': \{'k': 'v'\}\}/);
});
