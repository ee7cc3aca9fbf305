// The Data.fs layout codecs (src/storage/filestorage/format.ts): round trips, the checks, and byte parity with
// the transactions Python's FileStorage writes (restore with given tids, back pointers included).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { Pickler } from '../../../src/pickle/index.js';
import { CorruptedError } from '../../../src/storage/errors.js';
import { p64 } from '../../../src/storage/ids.js';
import {
  checkDataHeader,
  checkFileHeader,
  checkTransaction,
  checkTxnHeader,
  DATA_HDR_LEN,
  dataRecordLen,
  decodeDataHeader,
  decodeRecord,
  decodeTransaction,
  decodeTxnHeader,
  decodeTxnHeaderFull,
  encodeDataHeader,
  encodeTransaction,
  encodeTxnHeader,
  FILE_MAGIC,
  fileMagic,
  readU64,
  TRANS_HDR_LEN,
  txnHeaderLen,
  writeU64,
  type RecordToWrite,
} from '../../../src/storage/filestorage/format.js';
import '../../helpers/arbitraries.js';
import { interopTest, packList, PY_LIST_HELPERS } from '../../helpers/oracle.js';
import { hex, withTempDir } from './fs-oracle.js';

const F = 'Data.fs';

test('u64: round trips over the safe integers, big-endian', () => {
  const b = new Uint8Array(8);
  for (const n of [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 48 - 1, Number.MAX_SAFE_INTEGER]) {
    writeU64(b, 0, n);
    assert.equal(readU64(b, 0), n);
    assert.equal(Buffer.from(b).readBigUInt64BE(0), BigInt(n));
  }
  assert.throws(() => writeU64(b, 0, -1), RangeError);
  assert.throws(() => writeU64(b, 0, 2 ** 53), RangeError);
  assert.throws(() => writeU64(b, 0, 1.5), RangeError);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => {
      writeU64(b, 0, n);
      return readU64(b, 0) === n;
    }),
  );
});

test('file header: FS30 and FS21 accepted, anything else a CorruptedError at 0', () => {
  assert.equal(fileMagic(FILE_MAGIC), 'FS30');
  assert.equal(fileMagic(Buffer.from('FS21')), 'FS21');
  assert.equal(checkFileHeader(Buffer.from('FS30rest'), F), 'FS30');
  for (const bad of ['FS31', 'fs30', 'FS', '', 'PK\x03\x04', 'FS3']) {
    assert.equal(fileMagic(Buffer.from(bad, 'latin1')), null);
    assert.throws(
      () => checkFileHeader(Buffer.from(bad, 'latin1'), F),
      (e: unknown) =>
        e instanceof CorruptedError && e.offset === 0 && e.file === F && /not a FileStorage/.test(e.message),
    );
  }
});

const tidArb = fc.uint8Array({ minLength: 8, maxLength: 8 });
const metaArb = fc.uint8Array({ maxLength: 40 });
const recordArb: fc.Arbitrary<RecordToWrite> = fc.record({
  oid: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  prev: fc.integer({ min: 0, max: 2 ** 40 }),
  data: fc.option(fc.uint8Array({ minLength: 1, maxLength: 300 }), { nil: null }),
  back: fc.integer({ min: 0, max: 2 ** 40 }),
});

test('transactions: encode then decode gives back header, metadata, records and positions', () => {
  fc.assert(
    fc.property(
      tidArb,
      fc.constantFrom(' ', 'p', 'u'),
      metaArb,
      metaArb,
      metaArb,
      fc.array(recordArb, { maxLength: 8 }),
      fc.integer({ min: 4, max: 2 ** 45 }),
      (tid, status, user, description, extension, records, tpos) => {
        // decodeTransaction checks that pointers point backwards
        const recs = records.map((r) => ({
          ...r,
          prev: Math.min(r.prev, tpos - 1),
          back: Math.min(r.back ?? 0, tpos - 1),
        }));
        const enc = encodeTransaction({ tid, status, user, description, extension, records: recs }, tpos);
        assert.equal(enc.bytes.length, enc.tl + 8);
        assert.equal(readU64(enc.bytes, 8), enc.tl);
        assert.equal(readU64(enc.bytes, enc.tl), enc.tl);
        const prefix = 7;
        const buf = Buffer.concat([Buffer.alloc(prefix, 0xee), enc.bytes, Buffer.alloc(3, 0xdd)]);
        const d = decodeTransaction(buf, prefix, F, tpos);
        assert.deepEqual(d.tid, tid);
        assert.equal(d.status, status);
        assert.equal(d.tl, enc.tl);
        assert.deepEqual(Buffer.from(d.user), Buffer.from(user));
        assert.deepEqual(Buffer.from(d.description), Buffer.from(description));
        assert.deepEqual(Buffer.from(d.extension), Buffer.from(extension));
        assert.equal(d.records.length, recs.length);
        recs.forEach((r, i) => {
          const got = d.records[i];
          assert.equal(got.pos, enc.positions[i]);
          assert.deepEqual(got.oid, r.oid);
          assert.deepEqual(got.tid, tid);
          assert.equal(got.prev, r.prev);
          assert.equal(got.tloc, tpos);
          if (r.data === null) {
            assert.equal(got.data, null);
            assert.equal(got.plen, 0);
            assert.equal(got.back, r.back ?? 0);
          } else {
            assert.deepEqual(Buffer.from(got.data!), Buffer.from(r.data));
            assert.equal(got.back, 0);
          }
          // the single-header codecs agree with the whole-transaction one
          const off = prefix + (got.pos - tpos);
          const dh = decodeDataHeader(buf, off, F, got.pos);
          assert.deepEqual(
            encodeDataHeader(dh),
            buf.subarray(off, off + (dh.plen ? DATA_HDR_LEN : DATA_HDR_LEN + 8)),
          );
        });
        const th = decodeTxnHeaderFull(buf, prefix, F, tpos);
        assert.deepEqual(encodeTxnHeader(th), buf.subarray(prefix, prefix + txnHeaderLen(th)));
        // the iterator's way: the checks alone, then each record decoded where decodeTransaction found it
        const checked = checkTransaction(buf, prefix, F, tpos);
        const { records: _, pos: __, ...header } = d;
        assert.deepEqual(checked, { ...header, backPointers: recs.some((r) => r.data === null && r.back) });
        for (const r of d.records) assert.deepEqual(decodeRecord(buf, prefix + (r.pos - tpos), F, r.pos), r);
      },
    ),
  );
});

test('encoding refuses what the format cannot hold', () => {
  const tid = p64(1);
  assert.throws(
    () => encodeTransaction({ tid, user: new Uint8Array(65536), records: [] }, 4),
    /user name too long/,
  );
  assert.throws(
    () => encodeTransaction({ tid, description: new Uint8Array(65536), records: [] }, 4),
    /description/,
  );
  assert.throws(
    () => encodeTransaction({ tid, extension: new Uint8Array(65536), records: [] }, 4),
    /extension/,
  );
  assert.throws(
    () => encodeTransaction({ tid, records: [{ oid: p64(1), prev: 0, data: new Uint8Array(0) }] }, 4),
    /0 bytes/,
  );
  assert.throws(() => encodeTransaction({ tid: new Uint8Array(7), records: [] }, 4), RangeError);
  assert.throws(() => encodeTransaction({ tid, status: 'cc', records: [] }, 4), RangeError);
  assert.throws(
    () => encodeTransaction({ tid, records: [{ oid: new Uint8Array(9), prev: 0, data: null }] }, 4),
    RangeError,
  );
  assert.throws(
    () => encodeTransaction({ tid, records: [{ oid: p64(1), prev: -1, data: null }] }, 4),
    RangeError,
  );
});

test('checks: checkTxn and checkData of format.py, as CorruptedErrors naming the offset', () => {
  const tid = p64(100);
  const enc = encodeTransaction(
    { tid, user: Buffer.from('u'), records: [{ oid: p64(1), prev: 50, data: Buffer.from('x'.repeat(20)) }] },
    1000,
  );
  const h = decodeTxnHeader(enc.bytes, 0, F, 1000);
  checkTxnHeader(h, 1000, F, p64(99));
  const fails = (fn: () => void, offset: number, re: RegExp): void =>
    assert.throws(
      fn,
      (e: unknown) => e instanceof CorruptedError && e.offset === offset && re.test(e.message),
    );
  fails(() => checkTxnHeader(h, 1000, F, p64(100)), 1000, /time-stamp reduction/);
  fails(() => checkTxnHeader({ ...h, status: 'c' }, 1000, F, null), 1000, /checkpoint flag/);
  fails(() => checkTxnHeader({ ...h, status: 'x' }, 1000, F, null), 1000, /invalid transaction status/);
  fails(
    () => checkTxnHeader({ ...h, tl: TRANS_HDR_LEN }, 1000, F, null),
    1000,
    /txnlen \(23\) < headerlen\(24\)/,
  );
  const dpos = 1000 + TRANS_HDR_LEN + 1;
  const dh = decodeDataHeader(enc.bytes, dpos - 1000, F, dpos);
  checkDataHeader(h, 1000, dh, dpos, F);
  fails(
    () => checkDataHeader(h, 1000, { ...dh, tloc: 999 }, dpos, F),
    dpos,
    /does not point to transaction header/,
  );
  fails(() => checkDataHeader(h, 1000, { ...dh, plen: 100 }, dpos, F), dpos, /exceeds transaction size/);
  fails(() => checkDataHeader(h, 1000, { ...dh, prev: dpos }, dpos, F), dpos, /invalid previous pointer/);
  fails(
    () => checkDataHeader(h, 1000, { ...dh, plen: 0, back: dpos + 5 }, dpos, F),
    dpos,
    /invalid back pointer/,
  );
  fails(() => checkDataHeader(h, 1000, { ...dh, back: 8 }, dpos, F), dpos, /back pointer and data/);
  // decoding: truncated headers, versions, a wrong trailing length
  fails(() => decodeTxnHeader(enc.bytes.subarray(0, 22), 0, F, 1000), 1000, /truncated/);
  fails(() => decodeTxnHeaderFull(enc.bytes.subarray(0, 23), 0, F, 1000), 1000, /truncated/);
  fails(
    () => decodeDataHeader(enc.bytes.subarray(0, dpos - 1000 + 41), dpos - 1000, F, dpos),
    dpos,
    /truncated/,
  );
  const versioned = Buffer.from(enc.bytes);
  versioned[dpos - 1000 + 33] = 1;
  fails(() => decodeDataHeader(versioned, dpos - 1000, F, dpos), dpos, /version/);
  const badTrailer = Buffer.from(enc.bytes);
  badTrailer[badTrailer.length - 1] ^= 1;
  const shortTl = Buffer.from(enc.bytes);
  writeU64(shortTl, 8, enc.tl - 1);
  const badPrev = Buffer.from(enc.bytes);
  writeU64(badPrev, dpos - 1000 + 16, dpos);
  // (checkTransaction, the iterator's, refuses what decodeTransaction refuses)
  for (const whole of [decodeTransaction, checkTransaction]) {
    fails(() => whole(badTrailer, 0, F, 1000), 1000 + enc.tl, /redundant transaction length/);
    fails(() => whole(enc.bytes.subarray(0, enc.bytes.length - 1), 0, F, 1000), 1000, /runs past/);
    assert.throws(() => whole(shortTl, 0, F, 1000), CorruptedError);
    fails(() => whole(badPrev, 0, F, 1000), dpos, /invalid previous pointer/);
    fails(() => whole(versioned, 0, F, 1000), dpos, /version/);
  }
  assert.equal(dataRecordLen(0), 50);
  assert.equal(dataRecordLen(7), 49);
});

/**
 * Python writes transactions through FileStorage.restore (given tids, data or back pointers); the same
 * transactions encoded by encodeTransaction make the same file, byte for byte.
 */
const PY_RESTORE = `${PY_LIST_HELPERS}
import json
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
spec = json.loads(unpack_list(input)[0])
fs = FileStorage(args['path'], create=True)
for t in spec:
    ext = {'k': 1} if t['ext'] else {}
    meta = TransactionMetaData(t['user'], t['desc'], ext)
    tid = bytes.fromhex(t['tid'])
    fs.tpc_begin(meta, tid, ' ')
    for r in t['records']:
        data = bytes.fromhex(r['data']) if r['data'] is not None else None
        prev_txn = bytes.fromhex(r['prev_txn']) if r['prev_txn'] else None
        fs.restore(bytes.fromhex(r['oid']), tid, data, '', prev_txn, meta)
    fs.tpc_vote(meta)
    fs.tpc_finish(meta)
fs.close()
result = None
`;

interopTest(
  'transactions encoded here are byte for byte those FileStorage.restore writes',
  async (oracle) => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'Data.fs');
      // a deterministic history: creations, overwrites, back pointers to earlier data, undone creations
      let seed = 7;
      const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), (seed >>> 12) % n);
      // data null and no prevTxn: an undone creation (back pointer 0); prevTxn: a back pointer to that
      // transaction's record of the oid, whose data Python's restore wants too (_data_find compares it)
      type Rec = { oid: number; data: Buffer | null; prevTxn: number | null };
      const txns: Array<{ tid: number; user: string; desc: string; ext: boolean; records: Rec[] }> = [];
      for (let t = 0; t < 40; t++) {
        const records: Rec[] = [];
        const used = new Set<number>();
        for (let i = 0; i < 1 + rnd(6); i++) {
          const oid = rnd(25);
          if (used.has(oid)) continue;
          used.add(oid);
          const kind = rnd(10);
          // a back pointer to the data this oid had in an earlier transaction that wrote it
          const earlier = txns.findIndex((x) =>
            x.records.some((r) => r.oid === oid && r.data !== null && r.prevTxn === null),
          );
          if (kind === 0 && earlier >= 0) {
            const data = txns[earlier].records.find((r) => r.oid === oid)!.data;
            records.push({ oid, data, prevTxn: earlier });
          } else if (kind === 1) records.push({ oid, data: null, prevTxn: null });
          else
            records.push({ oid, data: Buffer.from(`data ${t} ${oid} `.repeat(1 + rnd(20))), prevTxn: null });
        }
        txns.push({
          tid: 0x03e0000000000000 + t * 1000,
          user: t % 3 ? `user${t}` : '',
          desc: `txn ${t}`,
          ext: t % 4 === 0,
          records,
        });
      }
      assert.ok(
        txns.some((t) => t.records.some((r) => r.prevTxn !== null)),
        'no back pointer in the history',
      );
      assert.ok(
        txns.some((t) => t.records.some((r) => r.data === null)),
        'no undone creation in the history',
      );
      const tidOf = (t: number): Uint8Array => p64(BigInt(0x03e0000000000000) + BigInt(t * 1000));
      const spec = txns.map((t, i) => ({
        tid: hex(tidOf(i)),
        user: t.user,
        desc: t.desc,
        ext: t.ext,
        records: t.records.map((r) => ({
          oid: hex(p64(r.oid)),
          data: r.data ? r.data.toString('hex') : null,
          prev_txn: r.prevTxn !== null ? hex(tidOf(r.prevTxn)) : null,
        })),
      }));
      await oracle.run(PY_RESTORE, packList([Buffer.from(JSON.stringify(spec))]), { path });
      const pyFile = await readFile(path);

      // the same with encodeTransaction
      const parts: Buffer[] = [FILE_MAGIC];
      let pos = 4;
      const current = new Map<number, number>(); // oid -> position of its current record
      const dataPosIn = new Map<string, number>(); // "txn oid" -> position of a record holding data
      const extBytes = new Pickler(3).dumps(new Map([['k', 1]]));
      txns.forEach((t, i) => {
        const records: RecordToWrite[] = t.records.map((r) => ({
          oid: p64(r.oid),
          prev: current.get(r.oid) ?? 0,
          data: r.prevTxn !== null ? null : r.data,
          back: r.prevTxn !== null ? dataPosIn.get(`${r.prevTxn} ${r.oid}`)! : 0,
        }));
        const enc = encodeTransaction(
          {
            tid: tidOf(i),
            user: Buffer.from(t.user),
            description: Buffer.from(t.desc),
            extension: t.ext ? extBytes : new Uint8Array(0),
            records,
          },
          pos,
        );
        t.records.forEach((r, j) => {
          current.set(r.oid, enc.positions[j]);
          if (r.prevTxn === null && r.data) dataPosIn.set(`${i} ${r.oid}`, enc.positions[j]);
        });
        parts.push(enc.bytes);
        pos += enc.bytes.length;
      });
      const ours = Buffer.concat(parts);
      assert.equal(ours.length, pyFile.length);
      assert.ok(ours.equals(pyFile), 'the encoded transactions differ from the ones Python wrote');

      // and every transaction decodes, as written
      let p = 4;
      let last: Uint8Array | null = null;
      for (let i = 0; i < txns.length; i++) {
        const d = decodeTransaction(pyFile, p, path, p, last);
        assert.deepEqual(d.tid, tidOf(i));
        assert.equal(d.records.length, txns[i].records.length);
        last = d.tid;
        p += d.tl + 8;
      }
      assert.equal(p, pyFile.length);
    });
  },
);
