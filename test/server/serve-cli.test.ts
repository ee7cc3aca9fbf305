// `zeo serve` as runzeo's replacement, run as a child process (`node bin/zeo serve ...`) the way a supervisor
// runs runzeo: the default configuration, -a/-f, -C zeo.conf with several storages, the pid file, signals
// (SIGTERM while a Python client commits, SIGHUP, SIGUSR2), refusals at start and runzeo's log format.
// Every server listens on 127.0.0.1 port 0 or a unix socket in a temp dir.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { serveCommand } from '../../src/cli/serve.js';
import { defaultConfig, type ServeOptions } from '../../src/server/config.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, oraclePython, repoRoot, type Oracle } from '../helpers/oracle.js';
import {
  logRecords,
  ruok,
  ServerProcess,
  sleep,
  stopLeftovers,
  withTimeout,
} from '../helpers/server-process.js';
import { waitUntil } from '../helpers/wait.js';

const root = mkdtempSync(join(tmpdir(), 'zeo-ts-serve-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
function newDir(): string {
  return mkdtempSync(join(root, 't-'));
}

// ---------------------------------------------------------------------------------------------------------
// A `zeo serve` child

after(stopLeftovers);

function serve(args: string[], options: { cwd?: string; logFile?: string } = {}): ServerProcess {
  return new ServerProcess({ kind: 'zeo-ts', args, cwd: options.cwd ?? root, logFile: options.logFile });
}

function py<T>(oracle: Oracle, call: string, args: unknown = null): Promise<T> {
  return oracle.json<T>(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import zeo_serve_clients as c\nresult = c.${call}`,
    undefined,
    args,
  );
}

/** runzeo's record format: "------" then "<date> LEVEL LOGGER message" (the message may go on for lines). */
const RECORD_HEAD =
  /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (CRITICAL|ERROR|WARNING|INFO|BLATHER|DEBUG|TRACE) [\w.]+ /;

function records(text: string): string[] {
  assert.ok(
    text === '' || text.startsWith('------\n'),
    `log text starts with "------":\n${text.slice(0, 300)}`,
  );
  return logRecords(text);
}

// ---------------------------------------------------------------------------------------------------------
// Configuration and start-up

test('the default configuration: ./var/Data.fs as storage 1 on 127.0.0.1:8100', () => {
  const c = defaultConfig({});
  assert.deepEqual(c.address, { kind: 'tcp', host: '127.0.0.1', port: 8100 });
  assert.equal(c.storages.length, 1);
  const s = c.storages[0];
  assert.equal(s.kind, 'filestorage');
  assert.equal(s.name, '1');
  assert.equal(s.kind === 'filestorage' && s.path, './var/Data.fs');
  assert.equal(c.readOnly, false);
  assert.equal(c.pidFilename, null);
  assert.equal(c.eventlog, null);
});

test("every runzeo option (ZEO/runzeo.py, zdaemon's -C and -X), short and long, and zeo-ts's own, are declared", () => {
  const parse = (argv: string[]): ServeOptions => {
    const cmd = serveCommand().exitOverride();
    const { operands, unknown } = cmd.parseOptions(argv);
    assert.deepEqual([operands, unknown], [[], []], argv.join(' '));
    return cmd.opts<ServeOptions>();
  };
  const expected: ServeOptions = {
    configure: 'zeo.conf',
    address: '127.0.0.1:0',
    filename: ['a.fs', 'b.fs'],
    timeout: '30',
    pidFile: 'zeo.pid',
    override: ['zeo/read-only=on', 'zeo/msgpack=true'],
    readOnly: true,
    logFormat: 'json',
    maxMessageSize: '64MB',
    maxBlobUpload: '1GB',
  };
  const short = ['-C', 'zeo.conf', '-a', '127.0.0.1:0', '-f', 'a.fs', '-f', 'b.fs', '-t', '30'];
  const rest = ['--pid-file', 'zeo.pid', '-X', 'zeo/read-only=on', '-X', 'zeo/msgpack=true'];
  const ours = ['--log-format', 'json', '--max-message-size', '64MB', '--max-blob-upload', '1GB'];
  assert.deepEqual(parse([...short, ...rest, '-r', ...ours]), expected);
  const long = ['--configure', 'zeo.conf', '--address', '127.0.0.1:0', '--filename', 'a.fs'];
  const long2 = ['--filename', 'b.fs', '--timeout', '30', '--pid-file', 'zeo.pid'];
  const long3 = ['--override', 'zeo/read-only=on', '--override', 'zeo/msgpack=true', '--read-only'];
  assert.deepEqual(parse([...long, ...long2, ...long3, ...ours]), expected);
});

test('no -f: zeo serve creates ./var/Data.fs in its working directory and serves it as storage 1', async () => {
  const cwd = newDir();
  const child = serve(['-a', '127.0.0.1:0'], { cwd });
  const port = await child.port();
  const { proto, status } = await ruok({ port });
  assert.equal(proto, 'Z5');
  assert.deepEqual(Object.keys(status as object), ['1']);
  assert.ok(existsSync(join(cwd, 'var', 'Data.fs')), 'var/Data.fs created');
  assert.deepEqual(await child.stop(), { code: 0, signal: null });
  assert.ok(existsSync(join(cwd, 'var', 'Data.fs.index')), 'the index is written at exit');
  assert.match(child.stderr, /opening storage '1' using FileStorage/);
});

test('-a 127.0.0.1:0 -f PATH: the bound port is in the "listening on" log line', async () => {
  const dir = newDir();
  const child = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs')]);
  const port = await child.port();
  assert.ok(port > 0);
  const { status } = await ruok({ port });
  const st = (status as Record<string, Record<string, unknown>>)['1'];
  assert.equal(st['last-transaction'], '0000000000000000');
  assert.deepEqual(await child.stop('SIGINT'), { code: 0, signal: null });
  assert.ok(existsSync(join(dir, 'Data.fs')));
});

test('npm start -- -a HOST:PORT -f PATH: the checkout serves at once, with no npx install or second build', async () => {
  // README's first command is `npm ci && npm start`: the start script runs bin/zeo serve on the dist/ that
  // npm ci's prepare built (npx zeo serve copied the checkout into npx's cache and built it again, ~11 s);
  // through its #! line, so it gets the same node flags as an installed `zeo` command
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  assert.equal(pkg.scripts.start, 'bin/zeo serve');
  const dir = newDir();
  const started = performance.now();
  // its own process group: npm, the shell and the server get the SIGTERM together, as from a terminal
  const npm = spawn('npm', ['start', '--', '-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs')], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, INSTANCE_HOME: '' },
  });
  let out = '';
  let err = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => npm.on('exit', (code) => r(code)));
  try {
    const listening = /INFO ZEO\.asyncio\.server listening on \('127\.0\.0\.1', (\d+)\)/;
    await waitUntil(
      () => listening.test(err) || npm.exitCode !== null,
      () => `npm start did not serve:\n${out}\n${err}`,
      20_000,
    );
    const ms = performance.now() - started;
    const port = Number(listening.exec(err)?.[1]);
    assert.ok(port > 0, `npm start serves:\n${out}\n${err}`);
    const { status } = await ruok({ port });
    assert.deepEqual(Object.keys(status as object), ['1']);
    // npm itself takes a few hundred ms; building or installing would take seconds
    assert.ok(ms < 5000, `npm start took ${Math.round(ms)} ms to serve`);
    assert.match(out, /> bin\/zeo serve -a 127\.0\.0\.1:0 -f /);
    process.kill(-npm.pid!, 'SIGTERM');
    await withTimeout(exited, 20_000, () => `npm start did not stop:\n${out}\n${err}`);
    await waitUntil(
      () => /INFO ZEO\.runzeo .*closed$/m.test(err),
      () => `the server did not close:\n${err}`,
    );
  } finally {
    if (npm.exitCode === null) process.kill(-npm.pid!, 'SIGKILL');
  }
  assert.ok(existsSync(join(dir, 'Data.fs.index')), 'closed cleanly: the index is written at exit');
});

test('-r/--read-only: the server is read-only, and writes no pid file (as runzeo with read-only true)', async () => {
  const dir = newDir();
  const path = join(dir, 'Data.fs');
  // a writable server creates the file; the read-only one then serves it
  const rw = serve(['-a', '127.0.0.1:0', '-f', path]);
  await rw.port();
  assert.deepEqual(await rw.stop(), { code: 0, signal: null });
  for (const flag of ['-r', '--read-only']) {
    const pid = join(dir, `${flag}.pid`);
    const child = serve([flag, '-a', '127.0.0.1:0', '-f', path, '--pid-file', pid]);
    const port = await child.port();
    // runzeo's line for a read-only server: the server RO, the storage itself RW
    assert.match(child.stderr, /StorageServer created RO with storages: 1:RW:/, flag);
    const { status } = await ruok({ port });
    assert.deepEqual(Object.keys(status as object), ['1']);
    assert.ok(!existsSync(pid), `${flag}: no pid file for a read-only server`);
    assert.deepEqual(await child.stop(), { code: 0, signal: null });
  }
});

test('bad --log-format and --max-message-size values: refused at start, naming the option', async () => {
  const dir = newDir();
  for (const [args, reason] of [
    [['--log-format', 'xml'], /invalid value for --log-format 'xml': must be one of text, json/],
    [
      ['--max-message-size', '12QB'],
      /invalid value for --max-message-size '12QB': invalid literal for int\(\)/,
    ],
    [['--max-message-size', '0'], /invalid value for --max-message-size '0': must be more than 0 bytes/],
  ] as const) {
    const child = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs'), ...args]);
    const exit = await withTimeout(child.exited, 20_000, () => `did not exit:\n${child.diag()}`);
    assert.deepEqual(exit, { code: 2, signal: null }, child.diag());
    assert.match(child.stderr, reason);
  }
  assert.ok(!existsSync(join(dir, 'Data.fs')), 'nothing was opened');
});

interopTest(
  '-C zeo.conf with a filestorage and a mappingstorage: each reachable by its name',
  async (oracle) => {
    const dir = newDir();
    const conf = join(dir, 'zeo.conf');
    writeFileSync(
      conf,
      `<zeo>\n  address 127.0.0.1:0\n</zeo>\n` +
        `<filestorage main>\n  path ${dir}/main.fs\n  blob-dir ${dir}/blobs\n</filestorage>\n` +
        `<mappingstorage scratch>\n</mappingstorage>\n`,
    );
    const child = serve(['-C', conf]);
    try {
      const port = await child.port();
      const { status } = await ruok({ port });
      assert.deepEqual(Object.keys(status as object).sort(), ['main', 'scratch']);
      type RT = { root: Record<string, { value: unknown }>; last: string };
      const main = await py<RT>(oracle, 'roundtrip(("127.0.0.1", args), "main", "a", "in main")', port);
      const scratch = await py<RT>(
        oracle,
        'roundtrip(("127.0.0.1", args), "scratch", "b", [1, "in scratch"])',
        port,
      );
      assert.deepEqual(main.root, { a: { value: 'in main' } });
      assert.deepEqual(scratch.root, { b: { value: [1, 'in scratch'] } });
      assert.notEqual(main.last, '0000000000000000');
      assert.notEqual(scratch.last, '0000000000000000');
      assert.match(child.stderr, /opening storage 'main' using FileStorage/);
      assert.match(child.stderr, /opening storage 'scratch' using MappingStorage/);
    } finally {
      assert.deepEqual(await child.stop(), { code: 0, signal: null });
    }
    assert.ok(existsSync(join(dir, 'main.fs.index')));
  },
);

test('--pid-file and pid-filename: the pid written at start, removed at exit; none when read-only', async () => {
  const dir = newDir();
  // --pid-file
  const pid1 = join(dir, 'one.pid');
  const a = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'a.fs'), '--pid-file', pid1]);
  await a.port();
  await waitUntil(() => existsSync(pid1), 'pid file written');
  assert.equal(readFileSync(pid1, 'utf8').trim(), String(a.pid));
  assert.deepEqual(await a.stop(), { code: 0, signal: null });
  assert.ok(!existsSync(pid1), 'the pid file is removed at exit');

  // pid-filename in zeo.conf
  const pid2 = join(dir, 'two.pid');
  const conf = join(dir, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:0\n  pid-filename ${pid2}\n</zeo>\n<filestorage>\n  path ${dir}/b.fs\n</filestorage>\n`,
  );
  const b = serve(['-C', conf]);
  await b.port();
  await waitUntil(() => existsSync(pid2), 'pid file written');
  assert.equal(readFileSync(pid2, 'utf8').trim(), String(b.pid));
  assert.deepEqual(await b.stop('SIGHUP'), { code: 1, signal: null });
  assert.ok(!existsSync(pid2), 'the pid file is removed at exit (SIGHUP too)');

  // read-only true: runzeo writes no pid file, from the file or from --pid-file
  const pid3 = join(dir, 'three.pid');
  const roConf = join(dir, 'ro.conf');
  writeFileSync(
    roConf,
    `<zeo>\n  address 127.0.0.1:0\n  read-only true\n  pid-filename ${pid3}\n</zeo>\n` +
      `<filestorage>\n  path ${dir}/b.fs\n</filestorage>\n`,
  );
  const pid4 = join(dir, 'four.pid');
  const c = serve(['-C', roConf]);
  const d = serve(['-C', roConf, '-f', join(dir, 'a.fs'), '--pid-file', pid4]);
  await c.port();
  await d.port();
  await sleep(300);
  assert.ok(!existsSync(pid3), 'no pid file for a read-only server');
  assert.ok(!existsSync(pid4), 'no pid file for a read-only server (--pid-file)');
  assert.deepEqual(await c.stop(), { code: 0, signal: null });
  assert.deepEqual(await d.stop(), { code: 0, signal: null });
});

test('SIGHUP exits 1 (a supervisor restarts it), SIGINT and SIGTERM exit 0', async () => {
  const dir = newDir();
  const a = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'a.fs')]);
  const b = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'b.fs')]);
  await Promise.all([a.port(), b.port()]);
  assert.deepEqual(await a.stop('SIGHUP'), { code: 1, signal: null });
  assert.deepEqual(await b.stop('SIGINT'), { code: 0, signal: null });
  assert.ok(existsSync(join(dir, 'a.fs.index')) && existsSync(join(dir, 'b.fs.index')));
});

test('an unknown key in zeo.conf: refused at start, naming the file, the line and the reason', async () => {
  const dir = newDir();
  const conf = join(dir, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:0\n  read_only true\n</zeo>\n<filestorage>\n  path ${dir}/Data.fs\n</filestorage>\n`,
  );
  const child = serve(['-C', conf]);
  const exit = await withTimeout(child.exited, 20_000, () => `did not exit:\n${child.diag()}`);
  assert.notEqual(exit.code, 0);
  assert.equal(exit.signal, null);
  assert.ok(child.stderr.includes(conf), `stderr names the file: ${child.stderr}`);
  assert.match(child.stderr, /line 3\b/);
  assert.match(child.stderr, /'read_only' is not a known key name/);
  assert.ok(!existsSync(join(dir, 'Data.fs')), 'nothing was opened');
});

test('an address already in use (TCP): refused at start', async () => {
  const dir = newDir();
  const taken = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (taken.address() as net.AddressInfo).port;
    const child = serve(['-a', `127.0.0.1:${port}`, '-f', join(dir, 'Data.fs')]);
    const exit = await withTimeout(child.exited, 20_000, () => `did not exit:\n${child.diag()}`);
    assert.notEqual(exit.code, 0);
    assert.equal(exit.signal, null);
    assert.match(child.stderr, /already in use/);
  } finally {
    taken.close();
  }
});

test('an address already in use (a unix socket another server listens on): refused at start', async () => {
  const dir = newDir();
  const sock = join(dir, 'zeo.sock');
  const first = serve(['-a', sock, '-f', join(dir, 'a.fs')]);
  try {
    await first.waitForLog(/listening on /);
    const second = serve(['-a', sock, '-f', join(dir, 'b.fs')]);
    const exit = await Promise.race([second.exited, sleep(4000).then(() => null)]);
    second.kill();
    // runzeo: "Error: address '/.../zeo.sock' already in use", exit status 2, before opening any storage
    assert.ok(exit !== null, `the second server should refuse to start; it is serving:\n${second.diag()}`);
    assert.notEqual(exit.code, 0);
    assert.match(second.stderr, /already in use/);
    // the first server is still reachable on its socket
    const { status } = await ruok({ path: sock });
    assert.deepEqual(Object.keys(status as object), ['1']);
  } finally {
    await first.stop();
  }
});

// ---------------------------------------------------------------------------------------------------------
// SIGTERM while a client commits

interopTest(
  'SIGTERM while a Python client commits in a loop: exit 0, then ZODB opens Data.fs cleanly with its index',
  async (oracle) => {
    const dir = newDir();
    const path = join(dir, 'Data.fs');
    const child = serve(['-a', '127.0.0.1:0', '-f', path]);
    const port = await child.port();
    const client = spawn(
      oraclePython(),
      ['-u', join(fixturesDir, 'zeo_serve_clients.py'), 'commit-loop', '127.0.0.1', String(port)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    client.stdout.on('data', (d: Buffer) => (out += d.toString()));
    client.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const clientExit = new Promise<number | null>((r) => client.on('exit', (code) => r(code)));
    type Line = { i?: number; tid?: string; error?: string; closed?: number; connected?: boolean };
    const lines = (): Line[] =>
      out
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as Line);
    const acked = (): Line[] => lines().filter((l) => l.tid !== undefined);
    try {
      await waitUntil(
        () => acked().length >= 25 || client.exitCode !== null,
        () => `the client did not commit:\n${out}\n${err}`,
        30_000,
      );
      assert.equal(client.exitCode, null, `the client stopped early:\n${out}\n${err}`);
      const exit = await child.stop('SIGTERM');
      assert.deepEqual(exit, { code: 0, signal: null }, child.diag());
      await withTimeout(clientExit, 40_000, () => `the client did not stop:\n${out}\n${err}`);
    } finally {
      client.kill('SIGKILL');
    }
    const done = acked();
    assert.ok(done.length >= 25);
    // the loop ends on the disconnection, with an error from the commit it was in
    assert.ok(
      lines().some((l) => l.error !== undefined),
      `the client saw the server go away:\n${out}\n${err}`,
    );
    assert.match(child.stderr, /terminated by SIGTERM/);

    const keys = done.map((l) => `k${String(l.i).padStart(5, '0')}`);
    const r = await py<{
      size: number;
      tr0: boolean;
      tr0_after_open: boolean;
      index_exists: boolean;
      index_pos: number | null;
      fstest: string | null;
      used_index: number;
      log: string[];
      last: string;
      tids: string[];
      root: Record<string, number>;
      n: number;
    }>(oracle, 'check_file(args[0], args[1])', [path, keys]);
    assert.equal(r.fstest, null, 'fstest finds no damage');
    assert.equal(r.tr0, false);
    assert.equal(r.tr0_after_open, false, 'no truncation on open');
    assert.ok(r.index_exists, 'Data.fs.index written at exit');
    assert.equal(r.index_pos, r.size, 'the index covers the whole file');
    assert.equal(r.used_index, 1, 'ZODB opened Data.fs with the index, without rebuilding it');
    assert.deepEqual(
      r.log.filter((l) => !/^(DEBUG|INFO|BLATHER|TRACE) /.test(l)),
      [],
      'ZODB logged nothing about the file',
    );
    // every acknowledged transaction is there
    const tids = new Set(r.tids);
    for (const l of done)
      assert.ok(tids.has(l.tid!), `acknowledged transaction ${l.tid} (i=${l.i}) is in Data.fs`);
    for (const l of done) assert.equal(r.root[`k${String(l.i).padStart(5, '0')}`], l.i);
    assert.ok(r.n >= done[done.length - 1].i!);
    assert.equal(r.last, r.tids[r.tids.length - 1]);
  },
  { timeout: 120_000 },
);

// ---------------------------------------------------------------------------------------------------------
// Logs

test("without <eventlog>: runzeo's format on stderr", async () => {
  const dir = newDir();
  const child = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs')]);
  const port = await child.port();
  await ruok({ port });
  assert.deepEqual(await child.stop(), { code: 0, signal: null });
  assert.equal(child.stdout, '');
  const recs = records(child.stderr);
  assert.ok(recs.length >= 3);
  for (const r of recs) assert.match(r, RECORD_HEAD);
  const listening = recs.filter((r) => / ZEO\.asyncio\.server listening on /.test(r));
  assert.equal(listening.length, 1);
  assert.match(
    listening[0],
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d INFO ZEO\.asyncio\.server listening on \('127\.0\.0\.1', \d+\)$/,
  );
  assert.ok(recs.some((r) => / INFO ZEO\.runzeo .*terminated by SIGTERM$/.test(r)));
});

test("runzeo's own messages: '(pid) ' before each ZEO.runzeo message, 'restarted by SIGHUP'", async () => {
  const dir = newDir();
  const child = serve(['-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs')]);
  await child.port();
  await child.stop('SIGHUP');
  // runzeo: "INFO ZEO.runzeo (12345) opening storage '1' using FileStorage", "... (12345) restarted by SIGHUP"
  for (const r of records(child.stderr).filter((x) => / ZEO\.runzeo /.test(x)))
    assert.match(r, new RegExp(` ZEO\\.runzeo \\(${child.pid}\\) `));
  assert.match(child.stderr, /restarted by SIGHUP/);
});

test('<eventlog><logfile>: lines go to the file; SIGUSR2 reopens it after a rotation', async () => {
  const dir = newDir();
  const logFile = join(dir, 'zeo.log');
  const conf = join(dir, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:0\n</zeo>\n<filestorage>\n  path ${dir}/Data.fs\n</filestorage>\n` +
      `<eventlog>\n  level INFO\n  <logfile>\n    path ${logFile}\n  </logfile>\n</eventlog>\n`,
  );
  const child = serve(['-C', conf], { logFile });
  const port = await child.port();
  assert.equal(child.stderr, '', 'nothing on stderr');
  // logrotate: move the file, then SIGUSR2
  renameSync(logFile, `${logFile}.1`);
  child.proc.kill('SIGUSR2');
  await waitUntil(
    () => existsSync(logFile),
    () => `no new log file after SIGUSR2:\n${child.diag()}`,
  );
  // new lines land in the new file
  await ruok({ port });
  assert.deepEqual(await child.stop(), { code: 0, signal: null });
  const old = readFileSync(`${logFile}.1`, 'utf8');
  const now = readFileSync(logFile, 'utf8');
  for (const r of [...records(old), ...records(now)]) assert.match(r, RECORD_HEAD);
  assert.match(old, /INFO ZEO\.asyncio\.server listening on \('127\.0\.0\.1', \d+\)/);
  assert.doesNotMatch(old, /terminated by SIGTERM/);
  assert.match(now, /INFO ZEO\.runzeo .*terminated by SIGTERM/);
  assert.doesNotMatch(now, /listening on/);
  assert.equal(child.stderr, '');
});
