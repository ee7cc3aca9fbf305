// zeo-ts's backups (src/storage/filestorage/repozo.ts) against ZODB's repozo on the same data files: the same
// file names, .dat lines and .index bytes; each restores the other's repository, incrementals by one continue
// the other's chain; -D restores an earlier state; a pack forces a full backup; a damaged repository is an error
// that writes nothing. Python's FileStorage iterator is the judge of what a restored file holds.
import assert from 'node:assert/strict';
import {
  appendFile,
  copyFile,
  mkdir,
  readdir,
  readFile,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  backup,
  findFiles,
  NoFiles,
  restore,
  timestampOf,
  TransactionCutter,
  untilSeconds,
  VerificationFail,
  verifyRepository,
} from '../../../src/storage/filestorage/repozo.js';
import { FileStorage } from '../../../src/storage/filestorage/index.js';
import { verifyDataFile } from '../../../src/storage/filestorage/fstest.js';
import { tidTime, TimeStamp } from '../../../src/storage/timestamp.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import {
  pyCommit,
  pyFstest,
  pyHistory,
  pyIndexMatches,
  pyPack,
  runRepozo,
  utc,
} from '../../helpers/repozo.js';
import { PY_BUILD, withTempDir } from './fs-oracle.js';

const T1 = utc(2026, 3, 1, 10, 0, 0);
const T2 = utc(2026, 3, 1, 10, 0, 5);
const T3 = utc(2026, 3, 1, 11, 30, 0);
const T4 = utc(2026, 3, 2, 9, 0, 0);

async function build(oracle: Oracle, path: string, n = 120, pack = false): Promise<void> {
  await oracle.json(PY_BUILD, undefined, { path, n, pack });
}

/** A temporary directory with a Data.fs Python built (PY_BUILD) and an empty repository directory. */
async function withDataFile(
  oracle: Oracle,
  o: { n?: number; pack?: boolean; repo?: string },
  fn: (p: { dir: string; fs: string; repo: string }) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const fs = join(dir, 'Data.fs');
    const repo = join(dir, o.repo ?? 'repo');
    await mkdir(repo);
    await build(oracle, fs, o.n ?? 120, o.pack ?? false);
    await fn({ dir, fs, repo });
  });
}

/** The restored file is the data file's first `size` bytes, Python reads the same history, and both checks pass. */
async function assertRestored(oracle: Oracle, restored: string, original: Buffer): Promise<void> {
  const got = await readFile(restored);
  assert.ok(got.length <= original.length);
  assert.ok(got.equals(original.subarray(0, got.length)), 'the restored file is a prefix of the data file');
  assert.equal(await pyFstest(oracle, restored), null);
  const ours = await verifyDataFile(restored);
  assert.equal(ours.error, null);
}

/** Python's history of `restored` is the original's history up to the restored file's last transaction. */
async function assertSameHistory(oracle: Oracle, restored: string, originalCopy: string, n: number) {
  const want = (await pyHistory(oracle, originalCopy)).slice(0, n);
  const got = await pyHistory(oracle, restored);
  assert.equal(got.length, n);
  assert.deepEqual(got, want);
}

const sizeOf = async (p: string) => (await stat(p)).size;
const txnCount = async (oracle: Oracle, p: string) => (await pyHistory(oracle, p)).length;

interopTest(
  'file names, .dat lines and .index files are the same as repozo makes from the same Data.fs',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const fs = join(dir, 'Data.fs');
      await build(oracle, fs);
      const theirs = join(dir, 'theirs');
      const ours = join(dir, 'ours');
      await mkdir(theirs);
      await mkdir(ours);
      assert.equal(await runRepozo(oracle, ['-B', '-r', theirs, '-f', fs], T1.tuple), null);
      const r1 = await backup({ repository: ours, file: fs, now: T1.date });
      assert.equal(r1.kind, 'full');
      assert.equal(r1.name, `${timestampOf(T1.date)}.fs`);
      assert.equal(r1.end, await sizeOf(fs));
      await pyCommit(oracle, fs, 3, 'more');
      assert.equal(await runRepozo(oracle, ['-B', '-z', '-r', theirs, '-f', fs], T2.tuple), null);
      const r2 = await backup({ repository: ours, file: fs, gzip: true, now: T2.date });
      assert.equal(r2.kind, 'incremental');
      assert.deepEqual(await readdir(ours), await readdir(theirs));
      assert.deepEqual((await readdir(ours)).sort(), [
        '2026-03-01-10-00-00.dat',
        '2026-03-01-10-00-00.fs',
        '2026-03-01-10-00-00.index',
        '2026-03-01-10-00-05.deltafsz',
        '2026-03-01-10-00-05.index',
      ]);
      const dat = (repo: string) => readFile(join(repo, '2026-03-01-10-00-00.dat'), 'utf8');
      // the lines name the file by the repository's path: the same but for that
      assert.equal(
        (await dat(ours)).split(ours).join('REPO'),
        (await dat(theirs)).split(theirs).join('REPO'),
      );
      assert.equal((await dat(ours)).split('\n').length, 3);
      for (const name of ['2026-03-01-10-00-00.fs', '2026-03-01-10-00-00.index', '2026-03-01-10-00-05.index'])
        assert.ok((await readFile(join(ours, name))).equals(await readFile(join(theirs, name))), name);
      const delta = (repo: string) => readFile(join(repo, '2026-03-01-10-00-05.deltafsz')).then(gunzipSync);
      assert.ok((await delta(ours)).equals(await delta(theirs)));
      // nothing new: neither writes a file
      const r3 = await backup({ repository: ours, file: fs, now: T3.date });
      assert.equal(r3.kind, 'none');
      assert.equal(await runRepozo(oracle, ['-B', '-r', theirs, '-f', fs], T3.tuple), null);
      assert.deepEqual(await readdir(ours), await readdir(theirs));
      // each verifies the other's repository
      assert.equal(await runRepozo(oracle, ['-V', '-r', ours]), null);
      assert.equal((await verifyRepository({ repository: theirs })).length, 2);
    });
  },
);

interopTest(
  'zeo restore restores repozo backups (full, incrementals, gzip and not), and -D an earlier state',
  async (oracle) => {
    await withDataFile(oracle, { n: 150, pack: true }, async ({ dir, fs, repo }) => {
      const sizes: number[] = [];
      const counts: number[] = [];
      assert.equal(await runRepozo(oracle, ['-B', '-r', repo, '-f', fs], T1.tuple), null);
      sizes.push(await sizeOf(fs));
      counts.push(await txnCount(oracle, fs));
      await pyCommit(oracle, fs, 4, 'a');
      assert.equal(await runRepozo(oracle, ['-B', '-z', '-r', repo, '-f', fs], T2.tuple), null);
      sizes.push(await sizeOf(fs));
      counts.push(await txnCount(oracle, fs));
      await pyCommit(oracle, fs, 5, 'b');
      assert.equal(await runRepozo(oracle, ['-B', '-r', repo, '-f', fs], T3.tuple), null);
      sizes.push(await sizeOf(fs));
      counts.push(await txnCount(oracle, fs));
      await pyCommit(oracle, fs, 2, 'after'); // not backed up
      const original = await readFile(fs);

      const out = join(dir, 'restored.fs');
      const r = await restore({ repository: repo, output: out });
      assert.deepEqual(r.files, [
        '2026-03-01-10-00-00.fs',
        '2026-03-01-10-00-05.deltafsz',
        '2026-03-01-11-30-00.deltafs',
      ]);
      assert.equal(r.bytes, sizes[2]);
      assert.equal(r.index, true);
      assert.ok(
        (await readFile(out + '.index')).equals(await readFile(join(repo, '2026-03-01-11-30-00.index'))),
      );
      await assertRestored(oracle, out, original);
      await assertSameHistory(oracle, out, fs, counts[2]);

      // -D: the newest backup at or before the date (a prefix of a name is before it, as repozo compares)
      const cases: Array<[string, number]> = [
        ['2026-03-01-10-00-04', 0],
        ['2026-03-01-10-00-05', 1],
        ['2026-03-01-11', 1],
        ['2026-03-01-11-30', 1],
        ['2026-03-02', 2],
      ];
      for (const [date, i] of cases) {
        const at = join(dir, `at-${i}-${date}.fs`);
        const ri = await restore({ repository: repo, output: at, date });
        assert.equal(ri.bytes, sizes[i], date);
        await assertRestored(oracle, at, original);
        await assertSameHistory(oracle, at, fs, counts[i]);
        // repozo agrees
        const theirs = join(dir, `theirs-${i}-${date}.fs`);
        assert.equal(await runRepozo(oracle, ['-R', '-r', repo, '-o', theirs, '-D', date]), null);
        assert.ok((await readFile(theirs)).equals(await readFile(at)), date);
      }
      await assert.rejects(
        restore({ repository: repo, output: join(dir, 'x.fs'), date: '2026-02-28' }),
        NoFiles,
      );
      await assert.rejects(
        restore({ repository: repo, output: join(dir, 'x.fs'), date: 'yesterday' }),
        /invalid date/,
      );
    });
  },
);

interopTest(
  'repozo restores zeo backups; incrementals by one continue the chain of the other (-Q too)',
  async (oracle) => {
    await withDataFile(oracle, {}, async ({ dir, fs, repo }) => {
      assert.equal((await backup({ repository: repo, file: fs, gzip: true, now: T1.date })).kind, 'full');
      await pyCommit(oracle, fs, 3, 'a');
      assert.equal(await runRepozo(oracle, ['-B', '-r', repo, '-f', fs], T2.tuple), null);
      await pyCommit(oracle, fs, 3, 'b');
      const r3 = await backup({ repository: repo, file: fs, quick: true, now: T3.date });
      assert.equal(r3.kind, 'incremental');
      await pyCommit(oracle, fs, 3, 'c');
      assert.equal(await runRepozo(oracle, ['-B', '-Q', '-z', '-r', repo, '-f', fs], T4.tuple), null);
      const names = await findFiles(repo);
      assert.deepEqual(names, [
        '2026-03-01-10-00-00.fsz',
        '2026-03-01-10-00-05.deltafs',
        '2026-03-01-11-30-00.deltafs',
        '2026-03-02-09-00-00.deltafsz',
      ]);
      const original = await readFile(fs);
      const theirs = join(dir, 'theirs.fs');
      assert.equal(await runRepozo(oracle, ['-R', '-w', '-r', repo, '-o', theirs]), null);
      assert.ok((await readFile(theirs)).equals(original), 'repozo restores the whole file');
      const ours = join(dir, 'ours.fs');
      await restore({ repository: repo, output: ours });
      assert.ok((await readFile(ours)).equals(original));
      await assertSameHistory(oracle, ours, fs, await txnCount(oracle, fs));
      // repozo reads the index we wrote
      const opened = await oracle.json<boolean>(
        `
from ZODB.FileStorage import FileStorage
fs = FileStorage(args['path'], read_only=True)
result = bool(fs._used_index)
fs.close()
`,
        undefined,
        { path: ours },
      );
      assert.equal(opened, true);
    });
  },
);

interopTest('after a pack the next backup is a full one (and -k removes the older chain)', async (oracle) => {
  await withTempDir(async (dir) => {
    const fs = join(dir, 'Data.fs');
    await build(oracle, fs);
    const repos = [join(dir, 'repo'), join(dir, 'quick')];
    for (const repo of repos) {
      await mkdir(repo);
      assert.equal((await backup({ repository: repo, file: fs, now: T1.date })).kind, 'full');
    }
    await pyCommit(oracle, fs, 3, 'a');
    for (const repo of repos)
      assert.equal((await backup({ repository: repo, file: fs, now: T2.date })).kind, 'incremental');
    await pyPack(oracle, fs);
    await pyCommit(oracle, fs, 40, 'grow'); // larger than before the pack: only the md5 tells
    for (const [i, repo] of repos.entries()) {
      const quick = i === 1;
      const r = await backup({ repository: repo, file: fs, quick, now: T3.date, killOld: quick });
      assert.equal(r.kind, 'full', `quick=${quick}: ${r.reason}`);
      assert.match(r.reason, /pack/);
    }
    // -k kept only the newest full backup
    assert.equal((await readdir(repos[0])).length, 3 + 2 + 3);
    assert.deepEqual((await readdir(repos[1])).sort(), [
      '2026-03-01-11-30-00.dat',
      '2026-03-01-11-30-00.fs',
      '2026-03-01-11-30-00.index',
    ]);
    for (const repo of repos) {
      const out = join(repo, '..', 'out.fs');
      await restore({ repository: repo, output: out });
      assert.ok((await readFile(out)).equals(await readFile(fs)));
      await assertSameHistory(oracle, out, fs, await txnCount(oracle, fs));
      assert.equal(await pyIndexMatches(oracle, out + '.index', out), null);
    }
  });
});

interopTest('only complete transactions are backed up, as repozo does', async (oracle) => {
  await withTempDir(async (dir) => {
    const fs = join(dir, 'Data.fs');
    await build(oracle, fs);
    const complete = await sizeOf(fs);
    await pyCommit(oracle, fs, 1, 'partial');
    const whole = await readFile(fs);
    // the last transaction cut in the middle, as a server's file is while it writes one
    await truncate(fs, complete + Math.floor((whole.length - complete) / 2));
    await unlink(fs + '.index');
    for (const who of ['ours', 'theirs']) {
      const repo = join(dir, who);
      await mkdir(repo);
      if (who === 'ours')
        assert.equal((await backup({ repository: repo, file: fs, now: T1.date })).end, complete);
      else assert.equal(await runRepozo(oracle, ['-B', '-r', repo, '-f', fs], T1.tuple), null);
      assert.equal(await sizeOf(join(repo, '2026-03-01-10-00-00.fs')), complete, who);
    }
    assert.ok(
      (await readFile(join(dir, 'ours', '2026-03-01-10-00-00.index'))).equals(
        await readFile(join(dir, 'theirs', '2026-03-01-10-00-00.index')),
      ),
    );
    // the data file was only read
    assert.equal(await sizeOf(fs), complete + Math.floor((whole.length - complete) / 2));
  });
});

interopTest(
  'a damaged or incomplete repository is an error that leaves the output as it was',
  async (oracle) => {
    await withDataFile(oracle, {}, async ({ dir, fs, repo }) => {
      await backup({ repository: repo, file: fs, now: T1.date });
      await pyCommit(oracle, fs, 3, 'a');
      await backup({ repository: repo, file: fs, gzip: true, now: T2.date });
      await pyCommit(oracle, fs, 3, 'b');
      await backup({ repository: repo, file: fs, now: T3.date });
      const out = join(dir, 'out.fs');
      const before = Buffer.from('the old data file\n');
      const check = async (what: string, re: RegExp) => {
        await writeFile(out, before);
        await writeFile(out + '.index', 'old index');
        await assert.rejects(restore({ repository: repo, output: out }), (e: Error) => {
          assert.ok(e instanceof VerificationFail, `${what}: ${e.name}: ${e.message}`);
          assert.match(e.message, re, what);
          return true;
        });
        assert.ok((await readFile(out)).equals(before), `${what}: the output is untouched`);
        assert.equal(await readFile(out + '.index', 'utf8'), 'old index');
        assert.deepEqual(
          (await readdir(dir)).filter((n) => n.includes('.part')),
          [],
          `${what}: no .part left`,
        );
        await assert.rejects(verifyRepository({ repository: repo }), VerificationFail, what);
        assert.notEqual(await runRepozo(oracle, ['-V', '-r', repo]), null, `${what}: repozo -V fails too`);
      };
      const full = join(repo, '2026-03-01-10-00-00.fs');
      const good = await readFile(full);
      const flipped = Buffer.from(good);
      flipped[good.length >> 1] ^= 0x20;
      await writeFile(full, flipped);
      await check('a byte changed', /checksum [0-9a-f]{32} instead of/);
      await writeFile(full, good.subarray(0, good.length - 10));
      await check('a truncated full backup', /is \d+ bytes, should be \d+ bytes/);
      await writeFile(full, good);
      const delta = join(repo, '2026-03-01-10-00-05.deltafsz');
      const gz = await readFile(delta);
      await writeFile(delta, gz.subarray(0, gz.length - 12));
      await check('a truncated gzip incremental', /cannot be uncompressed|bytes, should be/);
      await writeFile(delta, gz);
      const last = join(repo, '2026-03-01-11-30-00.deltafs');
      const lastBytes = await readFile(last);
      await unlink(last);
      await check('a missing incremental', /2026-03-01-11-30-00\.deltafs is missing/);
      await writeFile(last, lastBytes);
      await appendFile(last, 'x');
      await check('an incremental that grew', /more than|should be/);
      await writeFile(last, lastBytes);
      // repaired: it restores
      await restore({ repository: repo, output: out });
      assert.ok((await readFile(out)).equals(await readFile(fs)));
      await copyFile(out, join(dir, 'copy.fs'));
    });
  },
);

interopTest('a repository whose path holds spaces', async (oracle) => {
  await withDataFile(oracle, { n: 30, repo: 'my backups' }, async ({ dir, fs, repo }) => {
    await backup({ repository: repo, file: fs, now: T1.date });
    await pyCommit(oracle, fs, 2, 'a');
    assert.equal(await runRepozo(oracle, ['-B', '-r', repo, '-f', fs], T2.tuple), null);
    const dat = await readFile(join(repo, '2026-03-01-10-00-00.dat'), 'utf8');
    assert.ok(dat.startsWith(`${repo}/2026-03-01-10-00-00.fs 0 `), dat);
    const out = join(dir, 'out.fs');
    const r = await restore({ repository: repo, output: out });
    assert.equal(r.files.length, 2);
    assert.ok((await readFile(out)).equals(await readFile(fs)));
    assert.equal(await runRepozo(oracle, ['-R', '-r', repo, '-o', join(dir, 'theirs.fs')]), null);
    assert.ok((await readFile(join(dir, 'theirs.fs'))).equals(await readFile(fs)));
  });
});

interopTest(
  '--until: the state as of any time the backups cover, cut after its last transaction',
  async (oracle) => {
    await withDataFile(oracle, { n: 60, pack: true }, async ({ dir, fs, repo }) => {
      await backup({ repository: repo, file: fs, now: T1.date });
      await pyCommit(oracle, fs, 4, 'a');
      await backup({ repository: repo, file: fs, gzip: true, now: T2.date });
      await pyCommit(oracle, fs, 4, 'b');
      await backup({ repository: repo, file: fs, now: T3.date });
      const original = await readFile(fs);
      const history = await pyHistory(oracle, fs);
      const n = history.length;
      // the time of a transaction as --until takes it: microseconds, rounded up past the tid
      const at = (k: number): string => {
        const us = Math.ceil(tidTime(Buffer.from(history[k].tid, 'hex')) * 1e6) + 1;
        const secs = Math.floor(us / 1e6);
        return `${timestampOf(new Date(secs * 1000))}.${String(us - secs * 1e6).padStart(6, '0')}`;
      };
      // in the full backup, at its end, in each incremental, the last
      for (const k of [0, 3, n - 9, n - 7, n - 4, n - 2, n - 1]) {
        const out = join(dir, `until-${k}.fs`);
        const r = await restore({ repository: repo, output: out, until: at(k) });
        assert.equal(r.cut, k < n - 1, `k=${k}`);
        assert.equal(r.index, k === n - 1);
        await assertRestored(oracle, out, original);
        assert.equal(r.bytes, await sizeOf(out));
        assert.deepEqual(await pyHistory(oracle, out), history.slice(0, k + 1), `k=${k}`);
        // the same cut when the headers straddle chunks (7 bytes at a time)
        const cutter = new TransactionCutter(TimeStamp.fromTime(untilSeconds(at(k))).raw());
        let kept = 0;
        for (let p = 0; p < original.length; p += 7) kept += cutter.feed(original.subarray(p, p + 7), p);
        assert.equal(cutter.cut ?? kept, r.bytes, `k=${k}: chunked`);
        assert.ok(kept >= r.bytes && kept < r.bytes + 16, `k=${k}: at most a header past the cut`);
      }
      // before the first transaction: an empty storage
      const empty = join(dir, 'empty.fs');
      const r = await restore({ repository: repo, output: empty, until: '2000-01-01' });
      assert.deepEqual([r.cut, r.bytes, r.files], [true, 4, ['2026-03-01-10-00-00.fs']]);
      assert.deepEqual(await pyHistory(oracle, empty), []);
      await assert.rejects(
        restore({ repository: repo, output: empty, until: at(1), date: '2026-03-02' }),
        /not both/,
      );
    });
  },
);

interopTest(
  'restore refuses to replace a data file a running storage holds (its .lock is locked)',
  async (oracle) => {
    await withDataFile(oracle, {}, async ({ dir, fs, repo }) => {
      await backup({ repository: repo, file: fs, now: T1.date });
      const live = join(dir, 'live.fs');
      await copyFile(fs, live);
      await pyCommit(oracle, live, 3, 'live');
      const before = await readFile(live);
      // a server serving live.fs: renaming a restored file over it would leave the server writing to a file that is
      // gone from the directory, and every commit from then on lost at its next start
      const storage = await FileStorage.open(live);
      try {
        await assert.rejects(restore({ repository: repo, output: live }), /in use.*live\.fs\.lock/);
        assert.ok((await readFile(live)).equals(before), 'the live data file is untouched');
        assert.deepEqual(
          (await readdir(dir)).filter((n) => n.endsWith('.part')),
          [],
        );
      } finally {
        await storage.close();
      }
      // once the storage is closed, the restore goes ahead (and leaves the lock file as ZODB does)
      await restore({ repository: repo, output: live });
      assert.ok((await readFile(live)).equals(await readFile(fs)));
    });
  },
);
