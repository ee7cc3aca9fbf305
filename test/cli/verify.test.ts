// `zeo verify` (src/cli/verify.ts) against ZODB's fstest on the same files: sound files (the workload, a file
// with undo, deleteObject and a pack, an empty storage) pass both; each kind of damage fails both, ours naming
// the byte offset. Where verify checks more than fstest (back pointers, record tids), the difference is shown.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { verifyDataFile } from '../../src/storage/filestorage/fstest.js';
import { decodeTransaction, writeU64 } from '../../src/storage/filestorage/format.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, repoRoot, type Oracle } from '../helpers/oracle.js';
import { pyFstest as fstest } from '../helpers/repozo.js';
import { PY_BUILD, withTempDir } from '../storage/filestorage/fs-oracle.js';

const zeo = resolve(repoRoot, 'bin/zeo');

function run(args: string[]) {
  const r = spawnSync(process.execPath, [zeo, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Txn {
  pos: number;
  tl: number;
  hlen: number;
  records: Array<{ pos: number; plen: number; back: number }>;
}

function walk(buf: Buffer): Txn[] {
  const out: Txn[] = [];
  let p = 4;
  let last: Uint8Array | null = null;
  while (p < buf.length) {
    const d = decodeTransaction(buf, p, 'walk', p, last);
    out.push({
      pos: p,
      tl: d.tl,
      hlen: 23 + d.user.length + d.description.length + d.extension.length,
      records: d.records.map((r) => ({ pos: r.pos, plen: r.plen, back: r.back })),
    });
    last = d.tid;
    p += d.tl + 8;
  }
  return out;
}

async function buildWorkload(oracle: Oracle, path: string): Promise<void> {
  await oracle.run(
    `import sys\nif args['fixtures'] not in sys.path: sys.path.insert(0, args['fixtures'])\n` +
      `import zodb_workload\nzodb_workload.build_workload(args['path'], 1)\nresult = None`,
    undefined,
    { fixtures: fixturesDir, path },
  );
}

interopTest('sound files: exit 0 with a one-line summary, as fstest finds them sound', async (oracle) => {
  await withTempDir(async (dir) => {
    const wl = join(dir, 'Data.fs');
    await buildWorkload(oracle, wl);
    const built = join(dir, 'built.fs');
    await oracle.run(PY_BUILD, undefined, { path: built, n: 3000, pack: true });
    const unpacked = join(dir, 'unpacked.fs');
    await oracle.run(PY_BUILD, undefined, { path: unpacked, n: 500, pack: false });
    const empty = join(dir, 'empty.fs');
    await oracle.run(
      `from ZODB.FileStorage import FileStorage\nFileStorage(args['path']).close()\nresult = None`,
      undefined,
      { path: empty },
    );
    for (const path of [wl, wl + '.old', wl + '.other', built, unpacked, empty]) {
      assert.equal(await fstest(oracle, path), null, `fstest ${path}`);
      const bytes = await readFile(path);
      const txns = walk(bytes);
      const records = txns.reduce((n, t) => n + t.records.length, 0);
      const r = await verifyDataFile(path);
      assert.equal(r.error, null, `${path}: ${r.error?.message}`);
      assert.deepEqual(r.warnings, [], path);
      assert.equal(r.transactions, txns.length, path);
      assert.equal(r.records, records, path);
      assert.equal(r.bytes, bytes.length);
      const cli = run(['verify', path]);
      assert.equal(cli.status, 0, cli.stderr);
      assert.equal(cli.stderr, '');
      const n = (x: number) => x.toLocaleString('en-US');
      assert.equal(
        cli.stdout,
        `${path}: OK: ${n(txns.length)} transactions, ${n(records)} data records, ${n(bytes.length)} bytes ` +
          `(${cli.stdout.match(/\(([^)]*)\)\n$/)![1]})\n`,
      );
      const quiet = run(['verify', '--quiet', path]);
      assert.equal(quiet.status, 0);
      assert.equal(quiet.stdout + quiet.stderr, '');
    }
    // progress is reported up to the file size
    const seen: number[] = [];
    await verifyDataFile(built, { onProgress: (d, t) => seen.push(d, t), chunkSize: 4096 });
    const size = (await readFile(built)).length;
    assert.ok(seen.length > 10);
    assert.equal(seen[seen.length - 2], size);
    assert.equal(seen[seen.length - 1], size);
  });
});

interopTest(
  'damage: a non-zero exit naming the offset, where fstest fails too',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const good = join(dir, 'good.fs');
      await oracle.run(PY_BUILD, undefined, { path: good, n: 400, pack: true });
      const bytes = await readFile(good);
      const txns = walk(bytes);
      assert.ok(txns.length >= 8);
      const mid = txns[Math.floor(txns.length / 2)];
      const last = txns[txns.length - 1];
      // a transaction with a record holding data, in the middle
      const withData = txns.find(
        (t, i) => i > 2 && i < txns.length - 2 && t.records.some((r) => r.plen > 0),
      )!;
      const rec = withData.records.find((r) => r.plen > 0)!;

      const cases: Array<{
        name: string;
        bytes: Buffer;
        offset: number | [number, number];
        recoverable?: boolean;
      }> = [];
      const mutate = (fn: (b: Buffer) => void): Buffer => {
        const b = Buffer.from(bytes);
        fn(b);
        return b;
      };
      // truncated in the middle of a transaction in the middle of the file
      cases.push({
        name: 'truncated in the middle',
        bytes: bytes.subarray(0, mid.pos + Math.floor(mid.tl / 2)),
        offset: mid.pos,
        recoverable: true,
      });
      // truncated in a transaction header
      cases.push({ name: 'truncated in a header', bytes: bytes.subarray(0, mid.pos + 10), offset: mid.pos });
      // a transaction's length flipped (one bit, in the middle of the file)
      cases.push({
        name: 'flipped transaction length',
        bytes: mutate((b) => (b[mid.pos + 15] ^= 0x10)),
        offset: [mid.pos, mid.pos + mid.tl + 24],
      });
      // the redundant copy of the length flipped
      cases.push({
        name: 'flipped trailing length',
        bytes: mutate((b) => (b[mid.pos + mid.tl + 7] ^= 0x01)),
        offset: mid.pos + mid.tl,
      });
      // a data record's length pointing outside the file
      cases.push({
        name: 'record length outside the file',
        bytes: mutate((b) => writeU64(b, rec.pos + 34, bytes.length * 2)),
        offset: rec.pos,
      });
      // a data record's transaction pointer outside the file
      cases.push({
        name: 'record tloc outside the file',
        bytes: mutate((b) => writeU64(b, rec.pos + 24, bytes.length + 100)),
        offset: rec.pos,
      });
      // an invalid status in the middle
      cases.push({ name: 'invalid status', bytes: mutate((b) => (b[mid.pos + 16] = 0x78)), offset: mid.pos });
      // a checkpoint flag left in the middle, and on the last transaction (a crash: recoverable)
      cases.push({
        name: 'checkpoint in the middle',
        bytes: mutate((b) => (b[mid.pos + 16] = 0x63)),
        offset: mid.pos,
      });
      cases.push({
        name: 'checkpoint at the end',
        bytes: mutate((b) => (b[last.pos + 16] = 0x63)),
        offset: last.pos,
        recoverable: true,
      });
      // a tid going backwards
      cases.push({
        name: 'time-stamp reduction',
        bytes: mutate((b) => b.fill(0, mid.pos, mid.pos + 8)),
        offset: mid.pos,
      });
      // a transaction header whose length is below its header's
      cases.push({
        name: 'length below the header',
        bytes: mutate((b) => writeU64(b, mid.pos + 8, 10)),
        offset: mid.pos,
      });
      // a data record with a version (fstest reads one, misplacing the records after it)
      cases.push({
        name: 'a record with a version',
        bytes: mutate((b) => (b[rec.pos + 33] = 1)),
        offset: [rec.pos, withData.pos + withData.tl],
      });
      // not a Data.fs
      cases.push({
        name: 'not a Data.fs',
        bytes: Buffer.from('this is not a FileStorage\n'.repeat(20)),
        offset: 0,
      });
      cases.push({ name: 'empty file', bytes: Buffer.alloc(0), offset: 0 });

      for (const c of cases) {
        const path = join(dir, 'damaged.fs');
        await writeFile(path, c.bytes);
        const py = await fstest(oracle, path);
        assert.ok(py !== null, `${c.name}: fstest found nothing wrong`);
        const r = await verifyDataFile(path);
        assert.ok(r.error, `${c.name}: verify found nothing wrong (fstest: ${py})`);
        const [lo, hi] = typeof c.offset === 'number' ? [c.offset, c.offset] : c.offset;
        assert.ok(
          r.error.offset >= lo && r.error.offset <= hi,
          `${c.name}: offset ${r.error.offset} not in [${lo}, ${hi}]: ${r.error.message}`,
        );
        if (c.recoverable !== undefined) assert.equal(r.recoverable, c.recoverable, c.name);
        const cli = run(['verify', path]);
        assert.equal(cli.status, 1, `${c.name}: ${cli.stdout}${cli.stderr}`);
        assert.equal(cli.stdout, '');
        assert.match(
          cli.stderr,
          new RegExp(`^zeo verify: .*damaged\\.fs: .*\\(at byte ${r.error.offset}\\)\\n`),
          c.name,
        );
        const quiet = run(['verify', '-q', path]);
        assert.equal(quiet.status, 1);
        assert.equal(quiet.stderr.split('\n').filter(Boolean).length, 1, quiet.stderr);
      }
    });
  },
  { timeout: 180_000 },
);

interopTest(
  'verify and fstest differ: back pointers and record tids (checked here), FS21 (refused there)',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const good = join(dir, 'good.fs');
      await oracle.run(PY_BUILD, undefined, { path: good, n: 300, pack: false });
      const bytes = await readFile(good);
      const txns = walk(bytes);
      const backRec = txns.flatMap((t) => t.records).find((r) => r.plen === 0 && r.back > 0);
      assert.ok(backRec, 'the file has a back pointer (undo)');
      const dataRec = txns
        .slice(2)
        .flatMap((t) => t.records)
        .find((r) => r.plen > 0)!;
      const cases: Array<[string, Buffer, RegExp]> = [];
      let b = Buffer.from(bytes);
      writeU64(b, backRec.pos + 42, bytes.length + 1000);
      cases.push(['a back pointer past the end of the file', b, /invalid back pointer/]);
      b = Buffer.from(bytes);
      writeU64(b, backRec.pos + 42, txns[1].pos);
      cases.push(['a back pointer to a transaction header', b, /back pointer \d+ does not point/]);
      b = Buffer.from(bytes);
      b[dataRec.pos + 15] ^= 1;
      cases.push(["a record tid not its transaction's", b, /data record tid/]);
      for (const [name, damaged, why] of cases) {
        const path = join(dir, 'damaged.fs');
        await writeFile(path, damaged);
        // fstest does not look there
        assert.equal(await fstest(oracle, path), null, name);
        const cli = run(['verify', path]);
        assert.equal(cli.status, 1, name);
        assert.match(cli.stderr, why, name);
        assert.match(cli.stderr, /\(at byte \d+\)/, name);
      }
      // the other way round: a file from Python 2's ZODB (FS21), which fstest on Python 3 refuses
      b = Buffer.from(bytes);
      b.write('FS21', 0, 'latin1');
      const fs21 = join(dir, 'fs21.fs');
      await writeFile(fs21, b);
      assert.match((await fstest(oracle, fs21)) ?? '', /invalid file header/);
      const r21 = run(['verify', fs21]);
      assert.equal(r21.status, 0, r21.stderr);
      assert.match(r21.stdout, /OK: .*\(FS21: written by ZODB on Python 2\)\n$/);
      // a previous pointer that is not the oid's previous record: a warning (ZODB only logs it), exit 0
      const prevRec = txns
        .slice(3)
        .flatMap((t) => t.records)
        .find((r) => bytes.readBigUInt64BE(r.pos + 16) > 0n)!;
      b = Buffer.from(bytes);
      writeU64(b, prevRec.pos + 16, 4);
      const path = join(dir, 'prev.fs');
      await writeFile(path, b);
      const cli = run(['verify', path]);
      assert.equal(cli.status, 0, cli.stderr);
      assert.match(cli.stderr, new RegExp(`warning: .*previous pointer.*\\(at byte ${prevRec.pos}\\)`));
    });
  },
);

test('zeo verify of a file that is not there: exit 2', async () => {
  await withTempDir(async (dir) => {
    const r = run(['verify', join(dir, 'nope.fs')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /ENOENT/);
    await copyFile(resolve(repoRoot, 'package.json'), join(dir, 'x.fs'));
    const n = run(['verify', join(dir, 'x.fs')]);
    assert.equal(n.status, 1);
    assert.match(n.stderr, /not a FileStorage data file.*\(at byte 0\)/);
  });
});
