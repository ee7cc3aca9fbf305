// readLoadBefore (src/protocol/fastcall.ts), the server's reading of loadBefore frames by their bytes: for every
// frame it reads, the same msgid, oid and tid as the general decoder; for anything else, null (the general path
// decodes it), in both encodings. scanLoadBefore reads them in place, and writeLoadBeforeReply writes the reply
// the codec writes, byte for byte.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pyRepr, tuple, type PickleValue } from '../../src/pickle/index.js';
import {
  codecFor,
  LoadBeforeAt,
  loadBeforeReplyLength,
  readLoadBefore,
  scanLoadBefore,
  writeLoadBeforeReply,
  type Encoding,
  type LoadBeforeFound,
} from '../../src/protocol/index.js';
import { mulberry32 } from '../helpers/prng.js';

const ENCODINGS: Encoding[] = ['Z', 'M'];

function id8(rand: () => number): Uint8Array {
  const b = new Uint8Array(8);
  for (let i = 0; i < 8; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** msgids of every width the server reads (and msgpack's uint32), and Python's (oid, tid) */
function msgidMakers(enc: Encoding): Array<(oid: Uint8Array, tid: Uint8Array) => PickleValue> {
  const msgids: Array<(oid: Uint8Array, tid: Uint8Array) => PickleValue> = [
    () => 0,
    () => 1,
    () => 127,
    () => 128,
    () => 255,
    () => 256,
    () => 65535,
    () => 65536,
    () => 0x7fffffff,
    (oid, tid) => tuple<PickleValue>(oid, tid),
  ];
  if (enc === 'M') msgids.push(() => 0xffffffff);
  return msgids;
}

describe('readLoadBefore', () => {
  for (const enc of ENCODINGS) {
    const client = codecFor(enc, 'client');
    const server = codecFor(enc, 'server');

    it(`${enc}: reads what the general decoder reads, for int and (oid, tid) msgids`, () => {
      const rand = mulberry32(11);
      const msgids = msgidMakers(enc);
      for (const mk of msgids) {
        for (let i = 0; i < 20; i++) {
          const oid = id8(rand);
          const tid = id8(rand);
          const msgid = mk(oid, tid);
          const payload = client.encodeCall(msgid, false, 'loadBefore', [oid, tid]);
          const general = server.decode(payload);
          const fast = readLoadBefore(enc, payload);
          assert.ok(fast, `msgid ${pyRepr(msgid)}`);
          assert.deepEqual(fast.msgid, general.msgid);
          assert.equal(fast.msgid?.constructor, general.msgid?.constructor);
          assert.deepEqual(fast.oid, general.args[0]);
          assert.deepEqual(fast.tid, general.args[1]);
          // what the server encodes from either is the same reply
          const result = tuple<PickleValue>(oid, tid, null);
          assert.deepEqual(
            Buffer.from(server.encodeReply(fast.msgid, result)),
            Buffer.from(server.encodeReply(general.msgid, result)),
          );
        }
      }
    });

    it(`${enc}: leaves everything else to the general decoder`, () => {
      const oid = new Uint8Array(8).fill(1);
      const tid = new Uint8Array(8).fill(2);
      const others: Uint8Array[] = [
        // a one-way call, the heartbeat's msgid, other msgids, other calls
        client.encodeCall(1, true, 'loadBefore', [oid, tid]),
        client.encodeCall(-1, false, 'loadBefore', [oid, tid]),
        client.encodeCall(-5, false, 'loadBefore', [oid, tid]),
        client.encodeCall(2 ** 40, false, 'loadBefore', [oid, tid]),
        client.encodeCall('x', false, 'loadBefore', [oid, tid]),
        client.encodeCall(null, false, 'loadBefore', [oid, tid]),
        client.encodeCall(tuple<PickleValue>(oid), false, 'loadBefore', [oid, tid]),
        client.encodeCall(1, false, 'loadSerial', [oid, tid]),
        client.encodeCall(1, false, 'loadBeforX', [oid, tid]),
        // bad arguments: their errors come from the general path
        client.encodeCall(1, false, 'loadBefore', [oid]),
        client.encodeCall(1, false, 'loadBefore', [oid, tid, tid]),
        client.encodeCall(1, false, 'loadBefore', [oid.subarray(0, 7), tid]),
        client.encodeCall(1, false, 'loadBefore', [oid, new Uint8Array(9)]),
        client.encodeCall(1, false, 'loadBefore', [oid, 'xxxxxxxx']),
        client.encodeCall(1, false, 'loadBefore', [oid, null]),
        client.encodeCall(1, false, 'loadBefore', [[oid], tid]),
      ];
      for (const p of others) assert.equal(readLoadBefore(enc, p), null, Buffer.from(p).toString('hex'));
      // a good frame with a byte more, or one less, at any place
      const good = Buffer.from(client.encodeCall(300, false, 'loadBefore', [oid, tid]));
      assert.ok(readLoadBefore(enc, good));
      for (let at = 0; at <= good.length; at++) {
        const longer = Buffer.concat([good.subarray(0, at), Buffer.from([0]), good.subarray(at)]);
        const shorter = Buffer.concat([good.subarray(0, at), good.subarray(at + 1)]);
        if (readLoadBefore(enc, longer)) assert.deepEqual(readLoadBefore(enc, longer), decoded(longer));
        if (at < good.length && readLoadBefore(enc, shorter))
          assert.deepEqual(readLoadBefore(enc, shorter), decoded(shorter));
      }
      function decoded(p: Uint8Array): PickleValue {
        const m = server.decode(p);
        return { msgid: m.msgid, oid: m.args[0], tid: m.args[1] } as unknown as PickleValue;
      }
    });
  }

  it('reads the bytes Python ZEO 5 clients write ((oid, tid) msgid)', () => {
    // ZEO.asyncio.marshal.encoder(b'Z' / b'M')((oid, tid), False, 'loadBefore', (oid, tid)), oid 7, tid 0x7fff...ff
    const python = {
      Z:
        '8003284308000000000000000743087fffffffffffffff8689580a0000006c6f61644265666f7265' +
        '4308000000000000000743087fffffffffffffff86742e',
      M: '9492c4080000000000000007c4087fffffffffffffffc2aa6c6f61644265666f726592c4080000000000000007c4087fffffffffffffff',
    };
    for (const enc of ENCODINGS) {
      const r = readLoadBefore(enc, Buffer.from(python[enc], 'hex'));
      assert.ok(r);
      assert.deepEqual(Buffer.from(r.oid), Buffer.from('0000000000000007', 'hex'));
      assert.deepEqual(Buffer.from(r.tid), Buffer.from('7fffffffffffffff', 'hex'));
      assert.deepEqual(r.msgid, tuple<PickleValue>(r.oid, r.tid));
    }
  });
});

describe('scanLoadBefore and writeLoadBeforeReply', () => {
  for (const enc of ENCODINGS) {
    const client = codecFor(enc, 'client');
    const server = codecFor(enc, 'server');

    it(`${enc}: the reply written in place is encodeReply's, for every msgid and data size, found or None`, () => {
      const rand = mulberry32(23);
      const msgids = msgidMakers(enc);
      const sizes = [0, 1, 64, 65, 255, 256, 4096, 65535, 65536, 70000];
      for (const mk of msgids) {
        for (const size of sizes) {
          for (const hasEnd of [false, true]) {
            const oid = id8(rand);
            const tid = id8(rand);
            const msgid = mk(oid, tid);
            // the request inside a larger buffer (a socket's chunk), at an odd place
            const req = Buffer.from(client.encodeCall(msgid, false, 'loadBefore', [oid, tid]));
            const chunk = Buffer.concat([Buffer.alloc(7, 0xee), req, Buffer.alloc(5, 0xee)]);
            const at = new LoadBeforeAt();
            assert.ok(scanLoadBefore(enc, chunk, 7, req.length, at));
            assert.deepEqual(chunk.subarray(at.oidAt, at.oidAt + 8), Buffer.from(oid));
            assert.deepEqual(chunk.subarray(at.tidAt, at.tidAt + 8), Buffer.from(tid));
            // the record's data inside a larger buffer too (the read cache's slab)
            // (a Buffer, as the read cache gives, or a plain Uint8Array)
            const data = hasEnd ? Buffer.alloc(size + 9) : new Uint8Array(size + 9);
            for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
            const start = id8(rand);
            const end = id8(rand);
            const found: LoadBeforeFound = { data, dataAt: 9, dataLen: size, start, end, hasEnd };
            const result = tuple<PickleValue>(data.subarray(9), start, hasEnd ? end : null);
            for (const [f, r] of [
              [found, result],
              [null, null],
            ] as Array<[LoadBeforeFound | null, PickleValue]>) {
              const n = loadBeforeReplyLength(enc, at, f);
              const out = Buffer.alloc(n + 6, 0xdd);
              writeLoadBeforeReply(enc, out, 3, chunk, at, f);
              const want = Buffer.from(server.encodeReply(server.decode(req).msgid, r));
              assert.deepEqual(out.subarray(3, 3 + n), want, `msgid ${pyRepr(msgid)}, ${size} bytes`);
              assert.deepEqual(out.subarray(0, 3), Buffer.alloc(3, 0xdd));
              assert.deepEqual(out.subarray(3 + n), Buffer.alloc(3, 0xdd));
            }
          }
        }
      }
    });

    it(`${enc}: a frame not read as a loadBefore inside a chunk is refused, as readLoadBefore refuses it`, () => {
      const oid = new Uint8Array(8).fill(1);
      const tid = new Uint8Array(8).fill(2);
      const good = Buffer.from(client.encodeCall(300, false, 'loadBefore', [oid, tid]));
      const chunk = Buffer.concat([good, good]);
      const at = new LoadBeforeAt();
      // the length given is what bounds the frame, not the chunk's end
      assert.ok(scanLoadBefore(enc, chunk, good.length, good.length, at));
      assert.equal(scanLoadBefore(enc, chunk, 0, good.length + 1, at), false);
      assert.equal(scanLoadBefore(enc, chunk, 0, good.length - 1, at), false);
      const oneWay = Buffer.from(client.encodeCall(300, true, 'loadBefore', [oid, tid]));
      assert.equal(scanLoadBefore(enc, Buffer.concat([good, oneWay]), good.length, oneWay.length, at), false);
    });
  }
});
