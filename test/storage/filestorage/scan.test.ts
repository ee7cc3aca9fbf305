// The open-time scan (src/storage/filestorage/scan.ts) against Python's FileStorage: index contents, end
// position, last tid and max oid for real files; truncation at many offsets (a recovery, never an error);
// damage in the middle (a CorruptedError naming file and offset); ZODB's truncation of a damaged tail.
import assert from 'node:assert/strict';
import { copyFile, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptedError } from '../../../src/storage/errors.js';
import { decodeTransaction, readU64, writeU64 } from '../../../src/storage/filestorage/format.js';
import {
  scanDataPath,
  truncateDamagedTail,
  type LogLevel,
  type OpenScanResult,
  type ScanOptions,
} from '../../../src/storage/filestorage/scan.js';
import { fixturesDir } from '../../helpers/corpus.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import { hex, indexAsMap, PY_BUILD, pyOpen, withTempDir, type PyOpen } from './fs-oracle.js';

interface TxnInfo {
  pos: number;
  end: number; // just past its trailing length
  tl: number;
  tid: Uint8Array;
  records: Array<{ pos: number; plen: number; back: number; prev: number }>;
}

/** The transactions of a healthy Data.fs, by our own decoder. */
function walk(buf: Buffer): TxnInfo[] {
  const out: TxnInfo[] = [];
  let p = 4;
  let last: Uint8Array | null = null;
  while (p < buf.length) {
    const d = decodeTransaction(buf, p, 'walk', p, last);
    out.push({
      pos: p,
      end: p + d.tl + 8,
      tl: d.tl,
      tid: d.tid,
      records: d.records.map((r) => ({ pos: r.pos, plen: r.plen, back: r.back, prev: r.prev })),
    });
    last = d.tid;
    p += d.tl + 8;
  }
  return out;
}

async function scan(
  path: string,
  opts: ScanOptions = {},
): Promise<OpenScanResult & { logs: Array<[LogLevel, string]> }> {
  const logs: Array<[LogLevel, string]> = [];
  const r = await scanDataPath(path, { useIndexFile: false, ...opts, log: (l, m) => logs.push([l, m]) });
  return { ...r, logs };
}

function assertSame(ours: OpenScanResult, py: PyOpen, what: string): void {
  assert.equal(py.error, null, `${what}: Python failed: ${py.error}`);
  assert.equal(ours.pos, py.pos, `${what}: end position`);
  assert.equal(ours.index.size, py.len, `${what}: number of objects`);
  assert.deepEqual(indexAsMap(ours.index.entries()), py.index, `${what}: index contents`);
  assert.equal(hex(ours.maxOid), py.oid, `${what}: max oid`);
}

async function buildFile(oracle: Oracle, path: string, n: number, pack: boolean): Promise<void> {
  await oracle.run(PY_BUILD, undefined, { path, n, pack });
}

async function expectCorrupted(
  path: string,
  offset: number,
  re: RegExp,
  opts: ScanOptions = {},
): Promise<void> {
  await assert.rejects(scan(path, opts), (e: unknown) => {
    assert.ok(e instanceof CorruptedError, `not a CorruptedError: ${String(e)}`);
    assert.equal(e.file, path);
    assert.equal(e.offset, offset, `offset in: ${e.message}`);
    assert.match(e.message, re);
    assert.ok(e.message.includes(path) && e.message.includes(String(offset)));
    return true;
  });
}

interopTest(
  'real files: the workload Data.fs, its pre-pack .old, 20k packed objects: as Python reads them',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const wl = join(dir, 'Data.fs');
      await oracle.run(
        `import sys\nif args['fixtures'] not in sys.path: sys.path.insert(0, args['fixtures'])\n` +
          `import zodb_workload\nzodb_workload.build_workload(args['path'], 1)\nresult = None`,
        undefined,
        { fixtures: fixturesDir, path: wl },
      );
      const big = join(dir, 'big.fs');
      await buildFile(oracle, big, 20000, true);
      for (const path of [wl, wl + '.old', big, big + '.old']) {
        const py = await pyOpen(oracle, path);
        const ours = await scan(path);
        assertSame(ours, py, path);
        assert.equal(hex(ours.lastTid), py.ltid);
        assert.equal(ours.recovery, null);
        assert.equal(ours.magic, 'FS30');
        assert.equal(ours.usedIndexFile, false);
        assert.equal(ours.fileSize, (await readFile(path)).length);
        assert.deepEqual(ours.logs, []);
        // the same with tiny reads (records straddle the chunks) and with the index file
        const small = await scan(path, { chunkSize: 4096 });
        assert.deepEqual(indexAsMap(small.index.entries()), py.index);
        assert.equal(small.pos, py.pos);
        if (!path.endsWith('.old')) {
          const withIndex = await scan(path, { useIndexFile: true });
          assert.equal(withIndex.usedIndexFile, true, `${path}: index file not used`);
          assert.equal(withIndex.transactionsScanned, 0);
          assertSame(withIndex, py, `${path} with its index`);
          assert.equal(hex(withIndex.lastTid), py.ltid);
        }
      }
      // the transactions and records scanned are all of them
      for (const path of [big, big + '.old']) {
        const txns = walk(await readFile(path));
        const ours = await scan(path);
        assert.equal(ours.transactionsScanned, txns.length);
        assert.equal(
          ours.recordsScanned,
          txns.reduce((n, t) => n + t.records.length, 0),
        );
      }
      // the history before the pack has back pointers (undo) and a deleted object
      const txns = walk(await readFile(big + '.old'));
      assert.ok(
        txns.some((t) => t.records.some((r) => r.plen === 0 && r.back === 0)),
        'no deleteObject record',
      );
      assert.ok(
        txns.some((t) => t.records.some((r) => r.plen === 0 && r.back !== 0)),
        'no back pointer',
      );
    });
  },
);

interopTest(
  'truncated at any offset: a recovery to the last whole transaction, as Python reads it',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'src.fs');
      await buildFile(oracle, src, 150, false);
      const full = await readFile(src);
      const txns = walk(full);
      const boundaries = [4, ...txns.map((t) => t.end)];
      const cut = join(dir, 'Data.fs');
      // the index at each boundary, from a scan of the file cut there
      const atBoundary = new Map<number, Map<string, number>>();
      for (const b of boundaries) {
        await writeFile(cut, full.subarray(0, b));
        const r = await scan(cut);
        assert.equal(r.recovery, null);
        assert.equal(r.pos, b);
        atBoundary.set(b, indexAsMap(r.index.entries()));
      }
      const check = async (offset: number, py: boolean): Promise<void> => {
        await writeFile(cut, full.subarray(0, offset));
        const r = await scan(cut);
        const b = Math.max(...boundaries.filter((x) => x <= offset));
        assert.equal(r.pos, b, `cut at ${offset}`);
        assert.deepEqual(indexAsMap(r.index.entries()), atBoundary.get(b), `cut at ${offset}`);
        const t = txns.find((x) => x.pos === b);
        if (offset === b) {
          assert.equal(r.recovery, null, `cut at ${offset}`);
        } else {
          assert.ok(r.recovery, `cut at ${offset}: no recovery reported`);
          assert.equal(r.recovery.pos, b);
          assert.deepEqual(r.recovery.tid, offset - b >= 23 ? t!.tid : null);
          assert.ok(
            r.logs.some(([l, m]) => l === 'warning' && m.includes(`truncated`) && m.includes(String(b))),
          );
        }
        const prev = txns.filter((x) => x.end <= b).pop();
        assert.deepEqual(r.lastTid, prev ? prev.tid : new Uint8Array(8));
        if (py) {
          const p = await pyOpen(oracle, cut);
          assertSame(r, p, `cut at ${offset}`);
          // ZODB's _ltid is the tid of the cut transaction when its header is whole
          assert.equal(p.ltid, hex(r.recovery?.tid ?? r.lastTid));
        }
      };
      // every offset in the last two transactions, a stride through the rest
      const lastTwo = txns[txns.length - 2].pos;
      for (let off = lastTwo; off <= full.length; off++) await check(off, false);
      for (let off = 5; off < lastTwo; off += 97) await check(off, false);
      // against Python: around the boundaries of a few transactions, in headers, records and trailers
      const probes = new Set<number>();
      for (const t of [txns[0], txns[1], txns[Math.floor(txns.length / 2)], txns[txns.length - 1]]) {
        for (const d of [0, 1, 8, 16, 22, 23, 24, 30, 60, t.tl - 1, t.tl, t.tl + 4, t.tl + 7])
          probes.add(t.pos + d);
        if (t.records.length) probes.add(t.records[0].pos + 45);
      }
      for (const off of [...probes].filter((o) => o > 4 && o <= full.length)) await check(off, true);
    });
  },
);

interopTest('recovery of an interrupted commit, and ZODB truncating it (Data.fs.tr0)', async (oracle) => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src.fs');
    await buildFile(oracle, src, 100, false);
    const full = await readFile(src);
    const txns = walk(full);
    const last = txns[txns.length - 1];
    const cases: Array<[string, Buffer, string]> = [];
    // the status still 'c': tpc_vote wrote it, tpc_finish never ran
    const c = Buffer.from(full);
    c[last.pos + 16] = 0x63;
    cases.push(['checkpoint', c, 'checkpoint flag']);
    // half of it written
    cases.push(['cut', full.subarray(0, last.pos + Math.floor(last.tl / 2)), 'runs past the end']);
    // garbage at the end: a header whose length is below its header length (read_index's "turd")
    const turd = Buffer.concat([full, Buffer.alloc(40, 0)]);
    turd.set(Buffer.from('0000000000000001', 'hex'), full.length); // tid, then tl 0 < 23
    cases.push(['turd', turd, 'invalid']);
    // the last block never reached the disk: the trailing copy of the length is zeros
    const z = Buffer.from(full);
    z.fill(0, z.length - 8);
    cases.push(['trailer', z, 'wrong copy of its length']);

    for (const [name, bytes, reason] of cases) {
      const path = join(dir, `${name}.fs`);
      await writeFile(path, bytes);
      const r = await scan(path);
      const at = name === 'turd' ? full.length : last.pos;
      assert.ok(r.recovery, name);
      assert.equal(r.recovery.pos, at, name);
      assert.match(r.recovery.reason, new RegExp(reason));
      assert.equal(r.pos, at);
      const ro = await scan(path, { readOnly: true });
      assert.equal(ro.recovery?.pos, at);
      assert.ok(
        !ro.logs.some(([, m]) => m.includes('truncated,')),
        `${name}: a read-only scan announces no truncation`,
      );

      if (name === 'trailer') {
        // ZODB refuses this file (zeo-ts treats it as the crash it is)
        const py = await pyOpen(oracle, path);
        assert.match(py.error ?? '', /redundant transaction length check failed/);
        continue;
      }
      const py = await pyOpen(oracle, path);
      assertSame(r, py, `${name}, read-only`);
      // a writable open: Python moves the tail to Data.fs.tr0 and truncates; truncateDamagedTail does the same
      const pyPath = join(dir, `${name}-py.fs`);
      await writeFile(pyPath, bytes);
      const pw = await pyOpen(oracle, pyPath, { readOnly: false });
      assert.equal(pw.pos, at);
      assert.match(
        pw.log,
        /truncated, possibly due to damaged records at|truncated to recover from bad data/,
      );
      assert.match(pw.log, /Writing truncated data from .* to .*\.tr0/);
      const fh = await open(path, 'r+');
      const logs: string[] = [];
      let copy: string;
      try {
        copy = await truncateDamagedTail(fh, path, r.recovery.pos, (_l, m) => logs.push(m));
      } finally {
        await fh.close();
      }
      assert.equal(copy, path + '.tr0');
      assert.deepEqual(logs, [`Writing truncated data from ${path} to ${path}.tr0`]);
      assert.ok((await readFile(path)).equals(await readFile(pyPath)), `${name}: truncated file`);
      assert.ok((await readFile(copy)).equals(await readFile(pyPath + '.tr0')), `${name}: the .tr0 copy`);
      // a second truncation goes to .tr1
      await writeFile(path, bytes);
      const fh2 = await open(path, 'r+');
      try {
        assert.equal(await truncateDamagedTail(fh2, path, r.recovery.pos), path + '.tr1');
      } finally {
        await fh2.close();
      }
      // and the truncated file is healthy
      const again = await scan(path);
      assert.equal(again.recovery, null);
      assert.equal(again.pos, at);
    }
  });
});

interopTest(
  'damage in the middle of the file: a CorruptedError naming the file and the offset',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'src.fs');
      await buildFile(oracle, src, 200, false);
      const full = await readFile(src);
      const txns = walk(full);
      const mid = txns[Math.floor(txns.length / 2)];
      const path = join(dir, 'Data.fs');
      const variant = async (change: (b: Buffer) => void): Promise<Buffer> => {
        const b = Buffer.from(full);
        change(b);
        await writeFile(path, b);
        return b;
      };
      const py = async (): Promise<PyOpen> => pyOpen(oracle, path);
      /** Python refuses the file too (CorruptedTransactionError, or the ValueError a garbage header raises) */
      const pyRefuses = async (): Promise<void> => {
        const r = await py();
        assert.match(r.error ?? '', /CorruptedTransactionError|ValueError|CorruptedDataError/);
      };

      // a length flipped larger, still inside the file: the next "record" is the trailing length
      await variant((b) => writeU64(b, mid.pos + 8, mid.tl + 1000));
      await expectCorrupted(path, mid.end - 8, /data record/);
      await pyRefuses();
      // a length flipped smaller: the records overrun it
      await variant((b) => writeU64(b, mid.pos + 8, mid.tl - 20));
      await assert.rejects(scan(path), CorruptedError);
      await pyRefuses();
      // a length flipped below the header length, with transactions after it (read_index's panic)
      await variant((b) => writeU64(b, mid.pos + 8, 5));
      await expectCorrupted(path, mid.pos, /invalid transaction header/);
      await pyRefuses();
      // a length flipped past the end of the file: ZODB would truncate everything from here (a read-only
      // Python open silently stops there); a transaction still ends the file after it, so this is damage
      await variant((b) => writeU64(b, mid.pos + 8, full.length * 2));
      await expectCorrupted(path, mid.pos, /runs past the end of the file/);
      assert.equal((await py()).pos, mid.pos);
      // a high bit flipped in the length
      await variant((b) => (b[mid.pos + 8] ^= 0x80));
      await expectCorrupted(path, mid.pos, /runs past the end of the file/);
      // the checkpoint status in the middle of the file (ZODB would truncate here too)
      await variant((b) => (b[mid.pos + 16] = 0x63));
      await expectCorrupted(path, mid.pos, /checkpoint/);
      // the trailing copy of a length in the middle
      await variant((b) => (b[mid.end - 1] ^= 1));
      await expectCorrupted(path, mid.end - 8, /redundant transaction length/);
      assert.match((await py()).error ?? '', /redundant transaction length check failed/);
      // a record that does not point to its transaction
      const rec = mid.records[0];
      await variant((b) => writeU64(b, rec.pos + 24, mid.pos + 1));
      await expectCorrupted(path, rec.pos, /does not point to its transaction/);
      await pyRefuses();
      // a data length flipped: the record exceeds its transaction
      await variant((b) => writeU64(b, rec.pos + 34, readU64(b, rec.pos + 34) + 100000));
      await expectCorrupted(path, rec.pos, /exceeds transaction record/);
      // a version length (versions are long gone)
      await variant((b) => (b[rec.pos + 33] = 3));
      await expectCorrupted(path, rec.pos, /version/);
      // a previous pointer outside the file (ZODB only logs this)
      const withPrev = txns.flatMap((t) => t.records).find((r) => r.prev !== 0)!;
      await variant((b) => writeU64(b, withPrev.pos + 16, full.length + 100));
      await expectCorrupted(path, withPrev.pos, /invalid previous pointer/);
      assert.match((await py()).log, /incorrect previous pointer/);
      await variant((b) => writeU64(b, withPrev.pos + 16, withPrev.pos));
      await expectCorrupted(path, withPrev.pos, /invalid previous pointer/);
      // a back pointer outside the file
      const withBack = txns.flatMap((t) => t.records).find((r) => r.plen === 0 && r.back !== 0)!;
      await variant((b) => writeU64(b, withBack.pos + 42, full.length + 8));
      await expectCorrupted(path, withBack.pos, /invalid back pointer/);
      // an incorrect (but backwards) previous pointer: logged, as ZODB does
      await variant((b) => writeU64(b, withPrev.pos + 16, withPrev.prev - 1));
      const r = await scan(path);
      assert.ok(
        r.logs.some(
          ([l, m]) => l === 'error' && m === `${path} incorrect previous pointer at ${withPrev.pos}`,
        ),
      );
      assert.equal(r.recovery, null);
      // a time-stamp reduction: logged
      await variant((b) => b.set(txns[0].tid, mid.pos));
      const t = await scan(path);
      assert.ok(
        t.logs.some(([l, m]) => l === 'warning' && m === `${path} time-stamp reduction at ${mid.pos}`),
      );
      assert.match((await py()).log, /time-stamp reduction/);
      // an unknown status: logged, the transaction is read
      await variant((b) => (b[mid.pos + 16] = 0x78));
      const s = await scan(path);
      assert.ok(s.logs.some(([l, m]) => l === 'warning' && m.includes('has invalid status, "x"')));
      assert.equal(s.pos, full.length);
    });
  },
);

interopTest('not a Data.fs, empty, FS21, time travel (stop), progress', async (oracle) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'Data.fs');
    for (const bytes of [
      Buffer.from('hello, this is not a FileStorage\n'),
      Buffer.from('FS'),
      Buffer.from('FS30x').subarray(0, 3),
    ]) {
      await writeFile(path, bytes);
      await expectCorrupted(path, 0, /not a FileStorage data file/);
      assert.match((await pyOpen(oracle, path)).error ?? '', /FileStorageFormatError/);
    }
    await writeFile(path, Buffer.alloc(0));
    const empty = await scan(path);
    assert.equal(empty.magic, null);
    assert.equal(empty.pos, 4);
    assert.equal(empty.index.size, 0);
    assert.deepEqual(empty.lastTid, new Uint8Array(8));
    await writeFile(path, Buffer.from('FS30'));
    const headerOnly = await scan(path);
    assert.equal(headerOnly.magic, 'FS30');
    assert.equal(headerOnly.pos, 4);

    await buildFile(oracle, path, 300, false);
    await rm(path + '.index');
    const full = await readFile(path);
    const txns = walk(full);
    // a Python 2 file: the same layout under FS21
    const fs21 = join(dir, 'py2.fs');
    await writeFile(fs21, Buffer.concat([Buffer.from('FS21'), full.subarray(4)]));
    const r21 = await scan(fs21);
    assert.equal(r21.magic, 'FS21');
    assert.equal(r21.pos, full.length);

    // stop: the transactions before a tid, as FileStorage(stop=...) reads them
    for (const k of [1, Math.floor(txns.length / 2), txns.length - 1]) {
      const stop = txns[k].tid;
      const r = await scan(path, { stop });
      assert.equal(r.stopped, true);
      assert.equal(r.pos, txns[k].pos);
      assert.deepEqual(r.lastTid, txns[k - 1].tid);
      const py = await pyOpen(oracle, path, { stop: hex(stop) });
      assertSame(r, py, `stop at ${k}`);
    }

    // progress: from 0 to the whole, never backwards
    const calls: Array<[number, number]> = [];
    await scan(path, { chunkSize: 8192, onProgress: (d, t) => calls.push([d, t]) });
    assert.ok(calls.length > 3);
    assert.deepEqual(calls[calls.length - 1], [full.length - 4, full.length - 4]);
    for (let i = 1; i < calls.length; i++) assert.ok(calls[i][0] >= calls[i - 1][0]);

    // nothing is written while scanning (even with damage to report)
    const cutPath = join(dir, 'cut.fs');
    await copyFile(path, cutPath);
    const cutBytes = full.subarray(0, full.length - 5);
    await writeFile(cutPath, cutBytes);
    const cut = await scan(cutPath, { useIndexFile: true });
    assert.ok(cut.recovery);
    assert.ok((await readFile(cutPath)).equals(cutBytes));
  });
});

test('scan messages name the file as given', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'x.fs');
    await writeFile(path, Buffer.from('FS30\x00\x00'));
    const r = await scan(path);
    assert.equal(r.recovery?.pos, 4);
    assert.deepEqual(r.logs, [['warning', `${path} truncated at 4`]]);
  });
});
