// `zeo status ADDRESS [--json]` against `zeo serve` (in this process, on TCP and on a unix socket) and against the
// real runzeo, each after a Python client committed: the table names every storage with its figures, --json is
// what the server sent, and an unreachable server exits 2 with the reason on stderr.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { formatStatus, parseStatusAddress } from '../../src/cli/status.js';
import { serverTlsOptions } from '../../src/transport/tls.js';
import { noOpenssl, selfSignedPair } from '../helpers/openssl.js';
import { interopTest, repoRoot, type Oracle } from '../helpers/oracle.js';
import { runzeo } from '../helpers/runzeo.js';
import { fileStorageConfig, startServer } from '../helpers/server-fixture.js';
import { freePort, ruok } from '../helpers/server-process.js';
import { waitUntil } from '../helpers/wait.js';

const zeo = resolve(repoRoot, 'bin/zeo');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** bin/zeo as a child, without blocking this process (the server under test may live in it). */
function run(args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [zeo, ...args], { timeout: 30_000 }, (e, stdout, stderr) => {
      const code = e ? (typeof e.code === 'number' ? e.code : null) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** Two transactions from a Python client (ZEO's ClientStorage, ZODB's DB) on storage `name`. */
async function commit(oracle: Oracle, address: unknown, name = '1'): Promise<string> {
  return oracle.json<string>(
    `
import ZEO, ZODB, transaction
from BTrees.OOBTree import OOBTree
addr = args[0] if isinstance(args[0], str) else tuple(args[0])
db = ZODB.DB(ZEO.client(addr, storage=args[1], wait_timeout=30))
conn = db.open()
conn.root()['tree'] = OOBTree({'a': 1})
transaction.commit()
conn.root()['tree']['b'] = 2
transaction.commit()
result = db.lastTransaction().hex()
conn.close(); db.close()
`,
    undefined,
    [address, name],
  );
}

test('the table: a row per figure, a column per storage', () => {
  const now = 1_765_000_000;
  const text = formatStatus(
    {
      '1': {
        connections: 2,
        loads: 120,
        stores: 30,
        commits: 6,
        aborts: 1,
        active_txns: 1,
        lock_time: now - 0.25,
        conflicts: 3,
        conflicts_resolved: 0,
        start: 'Wed Dec 16 18:20:00 2026',
        waiting: 1,
        // TimeStamp(2026, 12, 6, 18, 21, 24.5)
        'last-transaction': '040d858d68888888',
      },
      big: {
        connections: 0,
        loads: 0,
        stores: 0,
        commits: 0,
        aborts: 0,
        active_txns: 0,
        lock_time: null,
        conflicts: 0,
        conflicts_resolved: 2,
        start: 'Wed Dec 16 18:20:00 2026',
        waiting: 0,
        'last-transaction': '0000000000000000',
      },
    },
    now,
  );
  const lines = text.split('\n');
  assert.equal(lines.pop(), '');
  assert.deepEqual(
    lines.map((l) => l.split(/ {2,}/)),
    [
      ['storage', '1', 'big'],
      ['connections', '2', '0'],
      ['loads', '120', '0'],
      ['stores', '30', '0'],
      ['commits', '6', '0'],
      ['aborts', '1', '0'],
      ['active transactions', '1', '0'],
      ['conflicts', '3', '0 (2 resolved)'],
      ['waiting for the lock', '1', '0'],
      ['commit lock', 'held for 0.250 s (since 2025-12-06T05:46:39.750Z)', 'free'],
      [
        'last transaction',
        '040d858d68888888 (2026-12-06 18:21:24.500000 UTC)',
        '0000000000000000 (none yet)',
      ],
      ['started', 'Wed Dec 16 18:20:00 2026', 'Wed Dec 16 18:20:00 2026'],
    ],
  );
  // the columns line up
  const col = lines[0].indexOf('1');
  for (const l of lines) assert.notEqual(l[col], ' ', l);
  assert.equal(formatStatus({}), 'the server serves no storage\n');
});

test('addresses: HOST:PORT, PORT on 127.0.0.1, [V6]:PORT, a unix socket path; no port is refused', () => {
  assert.deepEqual(parseStatusAddress('zeo.example:8100'), { host: 'zeo.example', port: 8100 });
  assert.deepEqual(parseStatusAddress('8100'), { host: '127.0.0.1', port: 8100 });
  assert.deepEqual(parseStatusAddress('[::1]:8100'), { host: '::1', port: 8100 });
  assert.deepEqual(parseStatusAddress('/run/zeo/zeo.sock'), { path: '/run/zeo/zeo.sock' });
  assert.throws(() => parseStatusAddress('localhost'), /no port/);
});

interopTest('zeo status against zeo serve: the table, and --json as the server sent it', async (oracle) => {
  const fx = await startServer({
    storages: (d) => [fileStorageConfig(d, '1'), fileStorageConfig(d, 'other')],
  });
  try {
    const port = (fx.address as { port: number }).port;
    const last = await commit(oracle, ['127.0.0.1', port]);
    // (the Python client has closed; the server sees it go)
    await waitUntil(() => fx.server.connectionCount === 0, 'the Python client disconnected');
    const table = await run(['status', `127.0.0.1:${port}`]);
    assert.equal(table.code, 0, table.stderr);
    assert.equal(table.stderr, '');
    const rows = new Map(
      table.stdout
        .trimEnd()
        .split('\n')
        .map((l) => [l.split(/ {2,}/)[0], l.split(/ {2,}/).slice(1)]),
    );
    assert.deepEqual(rows.get('storage'), ['1', 'other']);
    assert.deepEqual(rows.get('commits'), ['3', '0']); // the root's, and two
    assert.deepEqual(rows.get('connections'), ['0', '0']);
    assert.deepEqual(rows.get('commit lock'), ['free', 'free']);
    assert.match(
      rows.get('last transaction')![0],
      new RegExp(`^${last} \\(\\d{4}-\\d\\d-\\d\\d [0-9:.]+ UTC\\)$`),
    );
    assert.equal(rows.get('last transaction')![1], '0000000000000000 (none yet)');

    const json = await run(['status', String(port), '--json']);
    assert.equal(json.code, 0, json.stderr);
    const sent = await ruok({ port });
    assert.deepEqual(JSON.parse(json.stdout), sent.status);
    assert.deepEqual(Object.keys(JSON.parse(json.stdout) as object), ['1', 'other']);
  } finally {
    await fx.stop();
  }
});

test('zeo status over a unix socket', async () => {
  const fx = await startServer({ unix: true });
  try {
    const path = (fx.address as { path: string }).path;
    const r = await run(['status', path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^storage {2,}1\n/);
    assert.match(r.stdout, /\nlast transaction {2,}0{16} \(none yet\)\n/);
  } finally {
    await fx.stop();
  }
});

interopTest('zeo status against the real runzeo: the same table and JSON', async (oracle) => {
  const r = await runzeo();
  try {
    const last = await commit(oracle, ['127.0.0.1', r.address.port]);
    const table = await run(['status', `127.0.0.1:${r.address.port}`]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^storage {2,}1\n/);
    assert.match(table.stdout, /\ncommits {2,}3\n/);
    assert.match(
      table.stdout,
      new RegExp(`\\nlast transaction {2,}${last} \\(\\d{4}-\\d\\d-\\d\\d [0-9:.]+ UTC\\)\\n`),
    );
    assert.match(table.stdout, /\ncommit lock {2,}free\n/);
    assert.match(table.stdout, /\nstarted {2,}\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n/);
    const json = await run(['status', `127.0.0.1:${r.address.port}`, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const sent = await ruok({ port: r.address.port });
    assert.deepEqual(JSON.parse(json.stdout), sent.status);
  } finally {
    await r.dispose();
  }
});

test('unreachable: exit 2 (nagios CRITICAL), the reason on stderr, nothing on stdout', async () => {
  const port = await freePort();
  const r = await run(['status', `127.0.0.1:${port}`]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^zeo status: ruok to .*ECONNREFUSED/);
  const bad = await run(['status', 'localhost']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^zeo status: no port in the address "localhost"\n$/);
});

test('zeo status over TLS, with the --ssl-* options zeo copy takes', { skip: noOpenssl }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-status-tls-'));
  const ssl = selfSignedPair(dir);
  const fx = await startServer({ tls: serverTlsOptions(ssl('server', 'client')) });
  try {
    const port = String((fx.address as { port: number }).port);
    const client = ssl('client', 'server');
    const tlsArgs = ['--ssl-certificate', client.certificate!, '--ssl-key', client.key!];
    const ok = await run(['status', port, ...tlsArgs, '--ssl-authenticate', client.authenticate!]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^storage {2,}1\n/);
    // the server's certificate not trusted: no answer
    const untrusted = await run(['status', port, ...tlsArgs, '--ssl-authenticate', client.certificate!]);
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.stderr, /^zeo status: ruok to .*certificate/);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
