// record_iternext's fast path (Session.recordIternext with FileStorage.recordIternextCached) against the
// general path: one server serves two copies of one Data.fs, '1' with its read cache (plain current records are
// answered at once) and '2' without (every call awaits recordIternext). The same request frames, in both
// encodings, get byte-identical replies from both: a walk over the whole storage (plain records, back
// pointers, a deleted object: POSKeyError), oids between and past the objects, and bad arguments.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PickleValue } from '../../src/pickle/index.js';
import { codecFor, encodeFrame, type Encoding } from '../../src/protocol/index.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { p64 } from '../../src/storage/ids.js';
import { RawClient } from '../helpers/raw-client.js';
import { REVISED_OBJECTS, serveRevisionsTwice } from '../helpers/revisions.js';

describe('record_iternext: the fast path answers as the general path', () => {
  let served: Awaited<ReturnType<typeof serveRevisionsTwice>>;
  let cached: FileStorage;
  let address: { host: string; port: number };

  before(async () => {
    served = await serveRevisionsTwice('zeo-ts-fast-iternext-');
    ({ cached, address } = served);
  });

  after(async () => {
    await served?.close();
  });

  for (const enc of ['Z', 'M'] as Encoding[]) {
    it(`${enc}: the same bytes for every step, found or not, and for bad arguments`, async () => {
      const fast = await RawClient.open(address, { encoding: enc, register: '1' });
      const general = await RawClient.open(address, { encoding: enc, register: '2' });
      const codec = codecFor(enc, 'client');
      try {
        const argLists: PickleValue[][] = [[], [null], [p64(0xffffffffffffffffn)]];
        for (let i = 0; i <= REVISED_OBJECTS + 2; i++) argLists.push([p64(BigInt(i))]);
        argLists.push([p64(5n).subarray(0, 7)], ['xxxxxxxx'], [7], [p64(5n), null]);
        const frames = argLists.map((args, i) => codec.encodeCall(300 + i, false, 'record_iternext', args));
        let answeredFast = 0;
        // twice: the first step to a record reads it (at once or in the thread pool), the second finds it cached
        for (let round = 0; round < 2; round++) {
          for (const [i, f] of frames.entries()) {
            const [next] = argLists[i];
            if (next instanceof Uint8Array && next.length === 8 && cached.recordIternextCached(next))
              answeredFast++;
            fast.sendFrame(f);
            general.sendFrame(f);
            const a = await fast.nextFrame();
            const b = await general.nextFrame();
            assert.deepEqual(a, b, `${Buffer.from(f).toString('hex')}`);
          }
        }
        // the plain records (objects 11..20) and the oids before them were answered at once
        assert.ok(answeredFast >= REVISED_OBJECTS, `${answeredFast} answered at once`);
      } finally {
        fast.close();
        general.close();
      }
    });
  }

  it('a walk of pipelined calls gets its replies in order, fast ones behind one that waits', async () => {
    const c = await RawClient.open(address, { encoding: 'Z', register: '1' });
    const codec = codecFor('Z', 'client');
    try {
      // objects 2..10 point back (read in the thread pool), 11..20 are plain (at once); all sent in one write
      const oids = Array.from({ length: REVISED_OBJECTS - 1 }, (_, i) => i + 2);
      c.sendRaw(
        Buffer.concat(
          oids.map((n) =>
            encodeFrame(codec.encodeCall(1000 + n, false, 'record_iternext', [p64(BigInt(n))])),
          ),
        ),
      );
      const replies: Array<[PickleValue, number]> = [];
      for (const _ of oids) {
        const m = await c.nextMessage();
        replies.push([m.msgid, Buffer.from((m.body as PickleValue[])[0] as Uint8Array).readUInt32BE(4)]);
      }
      // in the order asked, each with its own oid
      assert.deepEqual(
        replies,
        oids.map((n) => [1000 + n, n]),
      );
    } finally {
      c.close();
    }
  });
});
