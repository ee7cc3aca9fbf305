// A blob upload that never ends, or grows past the server's bound (issue 9, item 8): chunks are written with
// backpressure (the connection is not read while more than a few MiB of chunks wait to be written), so server
// memory stays flat; the upload fails the transaction's vote with a clear error once over the bound; its
// temporary file goes when the transaction or the connection ends; every other client keeps being served.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { PickleValue } from '../../src/pickle/index.js';
import { p64, u64, z64 } from '../../src/storage/ids.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { waitUntil } from '../helpers/wait.js';

const MiB = 1024 * 1024;
const BOUND = 256 * MiB;
const ROOT_RECORD = new Uint8Array(
  Buffer.from(
    '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e80037d710158040000006461746171027d7103732e',
    'hex',
  ),
);

function begin(c: RawClient, id: number): void {
  c.sendAsync('tpc_begin', [id, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
}

/** Sends `total` bytes of storeBlobChunk in 1 MiB chunks, as fast as the socket takes them. */
async function stream(c: RawClient, total: number): Promise<void> {
  const chunk = new Uint8Array(MiB).fill(0x42);
  for (let sent = 0; sent < total && !c.closed; sent += chunk.length) {
    const frame = c.codec!.encodeCall(0, true, 'storeBlobChunk', [chunk]);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(frame.length);
    c.socket.write(header);
    if (!c.socket.write(frame)) await new Promise((r) => c.socket.once('drain', r));
  }
}

describe('blob uploads', () => {
  let s: TestServer;
  let good: RawClient;
  let rootTid: Uint8Array = z64;
  let tmp: string;

  const uploads = (): string[] => readdirSync(tmp);

  before(async () => {
    s = await startServer({ maxBlobUpload: BOUND });
    tmp = s.server.storages.get('1')!.storage.temporaryDirectory();
    good = await RawClient.open(s.address);
  });

  after(async () => {
    good.close();
    await s.stop();
  });

  /** The well-behaved client still commits and loads. */
  async function othersStillServed(): Promise<void> {
    const id = Math.floor(Math.random() * 1e9);
    begin(good, id);
    good.sendAsync('storea', [z64, rootTid, ROOT_RECORD, id]);
    await good.call('vote', [id]);
    rootTid = (await good.call('tpc_finish', [id])) as Uint8Array;
    const r = (await good.call('loadBefore', [z64, p64(u64(rootTid) + 1n)])) as PickleValue[];
    assert.deepEqual(Buffer.from(r[1] as Uint8Array), Buffer.from(rootTid));
  }

  test('an upload streamed without end past the bound: memory stays flat, the vote fails, nothing is left', async (t) => {
    const c = await RawClient.open(s.address);
    begin(c, 1);
    c.sendAsync('storeBlobStart', []);
    await waitUntil(() => uploads().length === 1, 'the upload file is created');
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      // 512 MiB: the first 256 written as fast as the disk takes them, not faster; the rest neither kept nor written
      await stream(c, 512 * MiB);
      // the file went as soon as the bound was passed, while the client still streams
      await waitUntil(() => uploads().length === 0, 'the upload file is removed once over the bound');
      await othersStillServed();
    } finally {
      clearInterval(sampler);
    }
    t.diagnostic(`rss grew by ${((peak - rss0) / MiB).toFixed(0)} MiB streaming 512 MiB`);
    // both ends are in this process: the client's own buffers count too
    assert.ok(peak - rss0 < 128 * MiB, `rss grew by ${((peak - rss0) / MiB).toFixed(0)} MiB`);
    c.sendAsync('storeBlobEnd', [p64(1), z64, ROOT_RECORD, 1]);
    await assert.rejects(c.call('vote', [1]), (e: ServerError) => {
      assert.equal(e.className, 'ZODB.POSException.StorageTransactionError');
      assert.match((e.args as string[])[0], /blob upload .* larger than .*268435456 bytes/);
      return true;
    });
    assert.equal(await c.call('tpc_abort', [1]), null);
    assert.equal(c.closed, false);
    assert.equal(await c.call('ping'), null);
    assert.deepEqual(uploads(), []);
    assert.ok(s.logs.some((l) => /blob upload/.test(l)));
    c.close();
    await othersStillServed();
  });

  /** A client with 4 MiB of an upload on disk and no storeBlobEnd. */
  async function unfinishedUpload(id: number): Promise<RawClient> {
    const c = await RawClient.open(s.address);
    begin(c, id);
    c.sendAsync('storeBlobStart', []);
    await stream(c, 4 * MiB);
    await waitUntil(() => uploads().length === 1, 'the upload file exists');
    return c;
  }

  test('an unfinished upload is removed when the transaction is aborted', async () => {
    const c = await unfinishedUpload(2);
    assert.equal(await c.call('tpc_abort', [2]), null);
    await waitUntil(() => uploads().length === 0, 'the upload file is removed on abort');
    assert.equal(await c.call('ping'), null);
    c.close();
    await othersStillServed();
  });

  test('an unfinished upload is removed when the connection ends', async () => {
    (await unfinishedUpload(3)).close();
    await waitUntil(() => uploads().length === 0, 'the upload file is removed on disconnect');
    await othersStillServed();
  });

  test('an upload within the bound commits and loads back', async () => {
    const c = await RawClient.open(s.address);
    const oid = ((await c.call('new_oids', [1])) as Uint8Array[])[0];
    begin(c, 4);
    c.sendAsync('storeBlobStart', []);
    await stream(c, 8 * MiB);
    c.sendAsync('storeBlobEnd', [oid, z64, ROOT_RECORD, 4]);
    await c.call('vote', [4]);
    const tid = (await c.call('tpc_finish', [4])) as Uint8Array;
    assert.deepEqual(uploads(), []);
    await c.call('sendBlob', [oid, tid]);
    let size = 0;
    for (const m of c.others) if (m.name === 'receiveBlobChunk') size += (m.args[2] as Uint8Array).length;
    assert.equal(size, 8 * MiB);
    c.close();
    await othersStillServed();
  });
});
