// Group commit through the server: while one transaction waits for its flush, the next voters replay, vote
// and finish, and their flushes are shared. Every client must still see the tids it is told of (other
// clients' invalidations, its own tpc_finish replies) strictly increasing: an invalidation of a transaction
// committed before the client's own goes out ahead of its tpc_finish reply, not behind it. The Python client
// rejects anything else (ZEO.cache: "new last tid must be greater than previous one").

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type PickleValue } from '../../src/pickle/index.js';
import { p64, z64 } from '../../src/storage/ids.js';
import { RawClient } from '../helpers/raw-client.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';

const CLIENTS = 8;
const COMMITS = 25;
const empty = new Uint8Array(0);
const rec = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n & 0xff, 0x2e]);
const hex = (b: PickleValue): string => Buffer.from(b as Uint8Array).toString('hex');

let s: TestServer;
before(async () => {
  s = await startServer();
});
after(async () => {
  await s.stop();
});

/**
 * Commits `COMMITS` times to the client's own object; its tids, each with how many other messages
 * (invalidations) the client had received before the reply.
 */
async function commitLoop(c: RawClient, client: number): Promise<Array<{ tid: string; after: number }>> {
  const own: Array<{ tid: string; after: number }> = [];
  const oid = p64(client + 1);
  let serial: Uint8Array = z64;
  for (let i = 1; i <= COMMITS; i++) {
    c.sendAsync('tpc_begin', [i, empty, empty, new Map(), null, ' ']);
    c.sendAsync('storea', [oid, serial, rec(i), i]);
    assert.deepEqual(await c.call('vote', [i]), []);
    const tid = (await c.call('tpc_finish', [i])) as Uint8Array;
    own.push({ tid: hex(tid), after: c.others.length });
    serial = tid;
  }
  return own;
}

/** The tids the client was told of, in the order it was told: invalidations and its own replies. */
function told(c: RawClient, own: Array<{ tid: string; after: number }>): string[] {
  const out: string[] = [];
  let k = 0;
  for (let i = 0; i <= c.others.length; i++) {
    while (k < own.length && own[k].after === i) out.push(own[k++].tid);
    const m = c.others[i];
    if (m?.name === 'invalidateTransaction') out.push(hex(m.args[0]));
  }
  return out;
}

test('concurrent commits from many connections: each client is told of tids in increasing order, and of every other commit once', async () => {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => RawClient.open(s.address)));
  try {
    const results = await Promise.all(clients.map((c, i) => commitLoop(c, i)));
    const all = new Set(results.flatMap((r) => r.map((o) => o.tid)));
    assert.equal(all.size, CLIENTS * COMMITS, 'every commit has its own tid');
    // (a call after every commit: each client has been told of all of them)
    await Promise.all(clients.map((c) => c.call('lastTransaction')));
    for (const [i, c] of clients.entries()) {
      const tids = told(c, results[i]);
      for (let k = 1; k < tids.length; k++) {
        assert.ok(tids[k] > tids[k - 1], `client ${i} was told of ${tids[k]} after ${tids[k - 1]}`);
      }
      assert.deepEqual(new Set(tids), all, `client ${i} was told of every commit`);
      assert.equal(tids.length, all.size, `client ${i} was told of each commit once`);
    }
    const last = [...all].sort().at(-1)!;
    assert.equal(hex(await clients[0].call('lastTransaction')), last);
  } finally {
    for (const c of clients) c.close();
  }
});
