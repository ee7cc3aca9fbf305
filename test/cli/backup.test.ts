// `zeo backup` and `zeo restore` (src/cli/backup.ts, src/cli/restore.ts) as commands: backups of the Data.fs
// of a RUNNING `zeo serve` while Python ZEO clients keep committing, restored by the real repozo script (each
// backup's state with -D) and by `zeo restore`, judged by Python's FileStorage iterator, fstest and our verify;
// then the commands' messages and exit statuses on errors, --verify and -q.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { phaseBars } from '../../src/cli/backup.js';
import { timestampOf } from '../../src/storage/filestorage/repozo.js';
import { verifyDataFile } from '../../src/storage/filestorage/fstest.js';
import { interopTest, oraclePython, repoRoot, type Oracle } from '../helpers/oracle.js';
import { pyCommit, pyFstest, pyHistory, pyIndexMatches, repozoScript } from '../helpers/repozo.js';
import { ServerProcess, stopLeftovers, withTimeout } from '../helpers/server-process.js';
import { waitUntil } from '../helpers/wait.js';
import { withTempDir } from '../storage/filestorage/fs-oracle.js';

after(stopLeftovers);

const zeo = resolve(repoRoot, 'bin/zeo');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('exit', (status) => resolveRun({ status, stdout, stderr }));
  });
}

const zeoCmd = (...args: string[]) => run(process.execPath, [zeo, ...args]);
const repozo = (...args: string[]) => run(oraclePython(), [repozoScript, ...args]);

/** A Python ZEO client committing to storage '1' until its stdin closes; `commits` counts them. */
class Writer {
  readonly proc: ChildProcess;
  commits = 0;
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(port: number, tag: string) {
    const code = `
import sys, threading, transaction, ZODB
from ZEO.ClientStorage import ClientStorage
from BTrees.OOBTree import OOBTree
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
db = ZODB.DB(ClientStorage(('127.0.0.1', ${port}), wait_timeout=30))
conn = db.open()
tag = ${JSON.stringify(tag)}
i = 0
while not stop.is_set():
    try:
        root = conn.root()
        if tag not in root:
            root[tag] = OOBTree()
        root[tag][i] = 'data %d ' % i * (1 + i % 40)
        t = transaction.get()
        t.note('%s commit %d' % (tag, i))
        t.setUser(tag)
        transaction.commit()
        i += 1
        print(i, flush=True)
    except Exception as e:  # a conflict with the other writer: retry
        transaction.abort()
        print('retry', type(e).__name__, file=sys.stderr, flush=True)
conn.close()
db.close()
`;
    this.proc = spawn(oraclePython(), ['-c', code], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => {
      const lines = d.toString().trim().split('\n');
      this.commits = Number(lines[lines.length - 1]);
    });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((r) => this.proc.on('exit', (status) => r(status)));
  }

  async stop(): Promise<void> {
    this.proc.stdin!.end();
    const status = await withTimeout(this.exited, 20_000, () => `writer did not stop: ${this.stderr}`);
    assert.equal(status, 0, this.stderr);
  }
}

/** Waits until the clock names a later second than `stem` (repozo's file names are one a second). */
async function nextSecond(stem: string): Promise<void> {
  await waitUntil(() => timestampOf(new Date()) > stem, 'the next second', 5000);
}

async function sameHistoryPrefix(oracle: Oracle, restored: string, original: string): Promise<number> {
  const got = await pyHistory(oracle, restored);
  const want = await pyHistory(oracle, original);
  assert.ok(got.length > 0);
  assert.deepEqual(got, want.slice(0, got.length));
  return got.length;
}

interopTest(
  'repozo restores zeo backups of a running zeo serve while Python clients commit; zeo restore agrees',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const fs = join(dir, 'Data.fs');
      const repo = join(dir, 'repo');
      await mkdir(repo);
      const server = new ServerProcess({ kind: 'zeo-ts', args: ['-a', '127.0.0.1:0', '-f', fs] });
      const writers: Writer[] = [];
      try {
        const port = await server.port();
        // one writer first: ZODB.DB() on an empty storage commits the root object, and two doing it at once
        // conflict (the loser's DB() raises ConflictError before its loop can retry)
        writers.push(new Writer(port, 'alice'));
        await waitUntil(
          () => writers[0].commits >= 1,
          () => `the first writer committing: ${writers[0].stderr}`,
          20_000,
        );
        writers.push(new Writer(port, 'bob'));
        const backups: Array<{ name: string; end: number }> = [];
        const flags = [[], [], ['-z']];
        for (const [i, extra] of flags.entries()) {
          const least = 5 * (i + 1);
          await waitUntil(
            () => writers.every((w) => w.commits >= least),
            () => `writers committing: ${writers.map((w) => w.stderr).join('\n')}`,
            20_000,
          );
          if (backups.length) await nextSecond(backups[backups.length - 1].name.slice(0, 19));
          const r = await zeoCmd('backup', '-r', repo, '-f', fs, ...extra);
          assert.equal(r.status, 0, r.stderr);
          const m = /^(full|incremental) backup (\S+): bytes (\d+) to (\d+) /.exec(r.stdout);
          assert.ok(m, r.stdout);
          assert.equal(m[1], i === 0 ? 'full' : 'incremental');
          assert.equal(Number(m[3]), i === 0 ? 0 : backups[i - 1].end);
          backups.push({ name: m[2], end: Number(m[4]) });
        }
        assert.match(backups[2].name, /\.deltafsz$/);
        // the clients commit on after the last backup
        const last = writers.map((w) => w.commits);
        await waitUntil(
          () => writers.every((w, i) => w.commits > last[i]),
          'commits after the backups',
          20_000,
        );
        for (const w of writers) await w.stop();
        await server.stopCleanly();

        const original = await readFile(fs);
        assert.ok(original.length > backups[2].end);
        let previous = 0;
        for (const [i, b] of backups.entries()) {
          const out = join(dir, `repozo-${i}.fs`);
          const r = await repozo('-R', '-r', repo, '-o', out, '-D', b.name.slice(0, 19));
          assert.equal(r.status, 0, r.stderr);
          const restored = await readFile(out);
          assert.equal(restored.length, b.end);
          assert.ok(restored.equals(original.subarray(0, b.end)));
          assert.equal(await pyFstest(oracle, out), null);
          assert.equal((await verifyDataFile(out)).error, null);
          const n = await sameHistoryPrefix(oracle, out, fs);
          assert.ok(n > previous, 'each backup holds more transactions');
          previous = n;
          // zeo restore makes the same file and index
          const ours = join(dir, `zeo-${i}.fs`);
          const z = await zeoCmd('restore', '-q', '-r', repo, '-o', ours, '-D', b.name.slice(0, 19));
          assert.equal(z.status, 0, z.stderr);
          assert.equal(z.stdout, '');
          assert.ok((await readFile(ours)).equals(restored));
          assert.ok((await readFile(ours + '.index')).equals(await readFile(out + '.index')));
          // the index written while the server ran is the one Python builds from the restored bytes
          assert.equal(await pyIndexMatches(oracle, ours + '.index', ours), null);
        }
        const v = await repozo('-V', '-r', repo);
        assert.equal(v.status, 0, v.stderr);
      } finally {
        for (const w of writers) w.proc.kill();
        server.kill();
      }
    });
  },
  { timeout: 90_000 },
);

interopTest(
  "the commands' messages and exit statuses: --verify, -q, a damaged repository, bad options",
  async (oracle) => {
    await withTempDir(async (dir) => {
      const fs = join(dir, 'Data.fs');
      const repo = join(dir, 'repo');
      await mkdir(repo);
      await pyCommit(oracle, fs, 5, 'a');
      let r = await zeoCmd('backup', '-r', repo, '-f', fs, '-v');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^full backup \d{4}(-\d\d){5}\.fs: bytes 0 to \d+ \(.*\) of .*Data\.fs/);
      assert.match(r.stderr, /zeo backup: full backup: no full backup in the repository/);
      r = await zeoCmd('backup', '-q', '-r', repo, '-f', fs);
      assert.deepEqual([r.status, r.stdout, r.stderr], [0, '', '']);
      r = await zeoCmd('backup', '-r', repo, '-f', fs);
      assert.match(r.stdout, /no changes since the last backup, nothing to do/);
      r = await zeoCmd('backup', '--verify', '-r', repo);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /: OK: 1 files, \d+ bytes/);
      // --until before the first commit: an empty storage, no index
      const early = join(dir, 'early.fs');
      r = await zeoCmd('restore', '-r', repo, '-o', early, '--until', '2000-01-01');
      assert.equal(r.status, 0, r.stderr);
      assert.match(
        r.stdout,
        /early\.fs: restored 4 bytes .* up to the last transaction at or before 2000-01-01 \(no index/,
      );
      assert.equal((await readFile(early)).toString('latin1'), 'FS30');
      r = await zeoCmd('restore', '-r', repo, '-o', early, '--until', '2000-01-01', '-D', '2030-01-01');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /not both/);

      // a changed byte: --verify and restore fail, the output stays as it was
      const [name] = (await readdir(repo)).filter((n) => n.endsWith('.fs'));
      const bytes = await readFile(join(repo, name));
      bytes[100] ^= 1;
      await writeFile(join(repo, name), bytes);
      r = await zeoCmd('backup', '--verify', '-r', repo);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^zeo backup: .* has checksum [0-9a-f]{32} instead of [0-9a-f]{32}\n$/);
      const out = join(dir, 'out.fs');
      await writeFile(out, 'keep me');
      r = await zeoCmd('restore', '-r', repo, '-o', out);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^zeo restore: .* has checksum/);
      assert.equal(await readFile(out, 'utf8'), 'keep me');
      assert.deepEqual(
        (await readdir(dir)).filter((n) => n.startsWith('out')),
        ['out.fs'],
        'no out.fs.part, no out.fs.index',
      );

      r = await zeoCmd('restore', '-r', repo, '-o', out, '-D', 'last week');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /invalid date "last week": use yyyy-mm-dd\[-hh\[-mm\[-ss\]\]\] \(UTC\)/);
      r = await zeoCmd('restore', '-r', join(dir, 'empty'), '-o', out);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^zeo restore: /);
      r = await zeoCmd('backup', '-r', repo);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /--file is required/);
      r = await zeoCmd('backup', '-r', join(dir, 'nowhere'), '-f', fs);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /repository .*nowhere/);
      r = await zeoCmd('restore', '-r', repo);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /required option '-o, --output <path>' not specified/);
    });
  },
);

test('a progress bar per phase on a terminal (scan, then backup), none with -q', () => {
  const out: string[] = [];
  const tty = { isTTY: true, columns: 100, write: (c: string) => out.push(c) };
  const bars = phaseBars(true, tty);
  bars.onProgress('scan', 0, 1000);
  bars.onProgress('scan', 1000, 1000);
  bars.onProgress('copy', 0, 4096);
  bars.onProgress('copy', 4096, 4096);
  bars.finish();
  const text = out.join('');
  assert.match(text, /\rscan 100% \[#+\]/);
  // the scan's line is erased before the copy's is drawn
  assert.ok(text.includes('\r\x1b[K\rbackup   0% ['), text);
  assert.match(text, /\rbackup 100% \[#+\] +4\.00 KiB \/ 4\.00 KiB/);
  assert.ok(text.endsWith('\r\x1b[K'), 'the last line is erased');
  const none: string[] = [];
  const quiet = phaseBars(false, { isTTY: true, write: (c: string) => none.push(c) });
  quiet.onProgress('copy', 10, 10);
  quiet.finish();
  assert.deepEqual(none, []);
});
