// The server's fast path for loadBefore (ServerConnection.onMessage, readLoadBefore, loadBeforeCached) against
// the general path: one server serves two copies of one Data.fs, '1' with its read cache (loads of cached
// records take the fast path) and '2' without (every load takes the general path). The same request frames,
// in both encodings, with int and (oid, tid) msgids, get byte-identical replies from both: current and older
// revisions, a tid before the object's creation (None), back pointers, a deleted object and a missing oid
// (POSKeyError), and bad arguments (their errors).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tuple, type PickleValue } from '../../src/pickle/index.js';
import { codecFor, type Encoding } from '../../src/protocol/index.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { p64, u64, type Tid } from '../../src/storage/ids.js';
import { RawClient } from '../helpers/raw-client.js';
import { REVISED_OBJECTS, serveRevisionsTwice } from '../helpers/revisions.js';

describe('loadBefore: the fast path answers as the general path', () => {
  let served: Awaited<ReturnType<typeof serveRevisionsTwice>>;
  let tids: Tid[];
  let cached: FileStorage;
  let address: { host: string; port: number };

  before(async () => {
    served = await serveRevisionsTwice('zeo-ts-fast-load-');
    ({ cached, address } = served);
    tids = served.tids;
  });

  after(async () => {
    await served?.close();
  });

  for (const enc of ['Z', 'M'] as Encoding[]) {
    it(`${enc}: the same bytes for every load, found or not, and for bad arguments`, async () => {
      const fast = await RawClient.open(address, { encoding: enc, register: '1' });
      const general = await RawClient.open(address, { encoding: enc, register: '2' });
      const codec = codecFor(enc, 'client');
      try {
        const asks: Tid[] = [p64(1n)];
        for (const t of tids) asks.push(t, p64(u64(t) + 1n));
        asks.push(p64(0x7fffffffffffffffn));
        const frames: Uint8Array[] = [];
        let msgid = 250;
        for (let i = 0; i <= REVISED_OBJECTS + 1; i++) {
          const oid = p64(BigInt(i));
          for (const tid of asks) {
            // int msgids of every width, and Python's (oid, tid)
            frames.push(codec.encodeCall(msgid, false, 'loadBefore', [oid, tid]));
            frames.push(codec.encodeCall(tuple<PickleValue>(oid, tid), false, 'loadBefore', [oid, tid]));
            msgid = msgid < 70000 ? msgid * 2 + 1 : 250;
          }
        }
        const oid = p64(15n);
        const now = p64(0x7fffffffffffffffn);
        for (const args of [
          [oid, now.subarray(0, 7)],
          [oid, 'xxxxxxxx'],
          [oid, null],
          ['xxxxxxxx', now],
          [oid.subarray(0, 7), now],
          [oid],
          [oid, now, now],
        ] as PickleValue[][]) {
          frames.push(codec.encodeCall(7, false, 'loadBefore', args));
        }
        let answeredFast = 0;
        // twice: the first load of a record reads it (at once or in the thread pool), the second finds it cached
        for (let round = 0; round < 2; round++) {
          for (const f of frames) {
            const call = codec.decode(f);
            const [o, t] = call.args;
            const inMemory =
              o instanceof Uint8Array &&
              o.length === 8 &&
              t instanceof Uint8Array &&
              t.length === 8 &&
              cached.loadBeforeCached(o, t) !== undefined;
            if (inMemory) answeredFast++;
            fast.sendFrame(f);
            general.sendFrame(f);
            const a = await fast.nextFrame();
            const b = await general.nextFrame();
            assert.deepEqual(a, b, `${Buffer.from(f).toString('hex')}`);
          }
        }
        // the fast path was there to take for most of the second round
        assert.ok(answeredFast > frames.length / 2, `${answeredFast} of ${frames.length * 2}`);
      } finally {
        fast.close();
        general.close();
      }
    });
  }

  it('loads in frames split over reads, and many in one read, get the bytes of the general path', async () => {
    for (const enc of ['Z', 'M'] as Encoding[]) {
      const fast = await RawClient.open(address, { encoding: enc, register: '1' });
      const general = await RawClient.open(address, { encoding: enc, register: '2' });
      const codec = codecFor(enc, 'client');
      try {
        const now = p64(0x7fffffffffffffffn);
        // warm: the records in memory
        for (let i = 11; i <= 20; i++) await fast.call('loadBefore', [p64(BigInt(i)), now]);
        const framed = (i: number): Buffer => {
          const p = codec.encodeCall(500 + i, false, 'loadBefore', [p64(BigInt(11 + (i % 10))), now]);
          const h = Buffer.alloc(4);
          h.writeUInt32BE(p.length);
          return Buffer.concat([h, Buffer.from(p)]);
        };
        const all = Buffer.concat(Array.from({ length: 40 }, (_, i) => framed(i)));
        // the same bytes in one write to the general connection, and in pieces cutting frames (and their
        // headers) anywhere to the fast one
        general.sendRaw(all);
        for (let at = 0; at < all.length;) {
          const n = 1 + ((at * 7919) % 97);
          fast.sendRaw(all.subarray(at, at + n));
          at += n;
          await new Promise((r) => setImmediate(r));
        }
        for (let i = 0; i < 40; i++) assert.deepEqual(await fast.nextFrame(), await general.nextFrame());
      } finally {
        fast.close();
        general.close();
      }
    }
  });

  it('pipelined loads get their replies in order, behind a reply that waits', async () => {
    const c = await RawClient.open(address, { encoding: 'Z', register: '1' });
    const codec = codecFor('Z', 'client');
    try {
      const now = p64(0x7fffffffffffffffn);
      // warm: the records of objects 11..20 in memory
      for (let i = 11; i <= 20; i++) await c.call('loadBefore', [p64(BigInt(i)), now]);
      // a record not in the cache (a back pointer's target is read from the file) between fast ones
      const ids: number[] = [];
      const batch: Buffer[] = [];
      for (let i = 0; i < 30; i++) {
        const oid = i === 3 ? p64(2n) : p64(BigInt(11 + (i % 10)));
        const p = codec.encodeCall(1000 + i, false, 'loadBefore', [oid, now]);
        const h = Buffer.alloc(4);
        h.writeUInt32BE(p.length);
        batch.push(h, Buffer.from(p));
        ids.push(1000 + i);
      }
      c.sendRaw(Buffer.concat(batch));
      const got: PickleValue[] = [];
      for (let i = 0; i < ids.length; i++) got.push((await c.nextMessage()).msgid);
      assert.deepEqual(got, ids);
    } finally {
      c.close();
    }
  });
});
