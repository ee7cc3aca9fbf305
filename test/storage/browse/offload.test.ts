// The object browser's decode worker (src/storage/browse/offload.ts): a big record decodes in the worker with
// the same answer as inline, while the server's event loop goes on answering ZEO clients; its queue is bounded;
// a record above the ceiling is shown from its head only; close() ends the worker.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PickleError } from '../../../src/pickle/index.js';
import {
  BrowseBusyError,
  BrowseInputError,
  containerPage,
  DECODE_THRESHOLD,
  inspectObject,
  RecordDecoder,
  recordClassName,
  RecordTooLargeError,
  type ContainerPage,
} from '../../../src/storage/browse/index.js';
import { idHex, p64, type Oid } from '../../../src/storage/ids.js';
import { MemoryStorage } from '../../../src/storage/memory/memory-storage.js';
import { BUCKET_ITEMS, LIST_REFS, storeBigRecords, type BigRecords } from '../../helpers/big-records.js';
import { RawClient } from '../../helpers/raw-client.js';
import { startServer, type TestServer } from '../../helpers/server-fixture.js';
import { waitUntil } from '../../helpers/wait.js';

/** Every page of a container's items through the cursors, as JSON. */
async function allPages(
  storage: MemoryStorage,
  oid: Oid,
  limit: number,
  decoder: RecordDecoder | null,
  maxPages: number,
): Promise<string> {
  const pages: ContainerPage[] = [];
  let cursor: string | null = null;
  do {
    const page: ContainerPage = await containerPage(storage, oid, { cursor, limit, decoder });
    pages.push(page);
    cursor = page.next;
  } while (cursor && pages.length < maxPages);
  return JSON.stringify(pages);
}

describe('the decode worker', () => {
  const mem = new MemoryStorage();
  let big: BigRecords;
  // everything above 0 bytes in the worker, and an inline one that never makes a worker
  const worker = new RecordDecoder({ threshold: 0 });
  const inline = new RecordDecoder({ threshold: Infinity });

  before(async () => {
    big = await storeBigRecords(mem);
    assert.ok(big.listSize > 2_000_000 && big.bucketSize > DECODE_THRESHOLD);
  });
  after(async () => {
    await worker.close();
    await inline.close();
    await mem.close();
  });

  test('a big record decodes in the worker with the same answer as inline', async () => {
    for (const oid of [big.list, big.zlibList, big.broken, big.tree, big.bucket]) {
      const there = await inspectObject(mem, oid, null, worker);
      const here = await inspectObject(mem, oid, null, inline);
      assert.deepEqual(JSON.parse(JSON.stringify(there)), JSON.parse(JSON.stringify(here)));
      // without a decoder at all: the same again (the costliest, the list, once is enough)
      if (oid !== big.zlibList) assert.deepEqual(here, await inspectObject(mem, oid));
    }
    assert.equal(inline.hasWorker, false);
    assert.equal(worker.hasWorker, true);
    const list = await inspectObject(mem, big.list, null, worker);
    assert.equal(list.class.name, 'PersistentList');
    // the first 100 items shown (each a reference, resolved on the main thread), the rest said to exist
    assert.equal(list.refs.length, 100);
    assert.ok(list.refs.every((r) => r.class === 'persistent.mapping.PersistentMapping' && !r.broken));
    assert.equal(list.refsTruncated, true);
    assert.equal((await inspectObject(mem, big.broken, null, worker)).error !== undefined, true);
  });

  test('items pages of a big list and of a big bucket are the same from the worker', async () => {
    // (each page of the list decodes its whole record again: two pages of it, every page of the bucket)
    for (const [oid, limit, maxPages, count] of [
      [big.list, 1000, 2, 2000],
      [big.tree, 1000, 100, BUCKET_ITEMS],
      [big.bucket, 777, 100, BUCKET_ITEMS],
    ] as const) {
      const there = await allPages(mem, oid, limit, worker, maxPages);
      assert.equal(there, await allPages(mem, oid, limit, inline, maxPages));
      if (oid !== big.list) assert.equal(there, await allPages(mem, oid, limit, null, maxPages));
      const pages = JSON.parse(there) as ContainerPage[];
      assert.equal(
        pages.reduce((n, p) => n + p.items.length, 0),
        count,
      );
    }
    const last = await containerPage(mem, big.list, {
      cursor: `${idHex(big.list)}.${LIST_REFS - 10}.${idHex(mem.lastTransaction())}.${LIST_REFS - 10}`,
      decoder: worker,
    });
    assert.deepEqual([last.items.length, last.next, last.length], [10, null, LIST_REFS]);
  });

  test("the worker's errors are the caller's: a record that does not decode, a record that is no container", async () => {
    await assert.rejects(containerPage(mem, big.broken, { decoder: worker }), PickleError);
    await assert.rejects(containerPage(mem, big.broken, { decoder: inline }), PickleError);
    // a tree's walk led to the list as if it were a bucket: the worker says it is none
    const at = idHex(mem.lastTransaction());
    await assert.rejects(
      containerPage(mem, big.tree, { cursor: `${idHex(big.list)}.0.${at}.0`, decoder: worker }),
      (e) => e instanceof BrowseInputError && /is not a bucket/.test(e.message),
    );
  });

  test('a small zlib record that inflates past the threshold decodes in the worker too', async () => {
    const d = new RecordDecoder();
    try {
      const rev = await mem.load(big.inflating);
      assert.ok(rev.data.length < DECODE_THRESHOLD);
      const view = d.run('view', rev.data, null);
      assert.equal(d.pending, 1);
      assert.equal((await view).view.compression, 'zlib');
      // a small one is decoded inline
      const listView = d.run('view', (await mem.load(p64(1000))).data, null);
      assert.equal(d.pending, 0);
      await listView;
    } finally {
      await d.close();
    }
  });

  test('too many decodes waiting: busy, and the ones taken still finish', async () => {
    const one = new RecordDecoder({ threshold: 0, maxJobs: 2 });
    try {
      const rev = await mem.load(big.list);
      const taken = [one.run('view', rev.data, null), one.run('view', rev.data, null)];
      await assert.rejects(one.run('view', rev.data, null), BrowseBusyError);
      assert.equal(one.pending, 2);
      for (const r of await Promise.all(taken)) assert.equal(r.view.class.name, 'PersistentList');
      assert.equal(one.pending, 0);
      // room again
      assert.equal((await one.run('view', rev.data, null)).view.class.name, 'PersistentList');
    } finally {
      await one.close();
    }
  });

  test('a record above the ceiling is shown from its head, not decoded, and not listed', async () => {
    const small = new RecordDecoder({ ceiling: 1_000_000 });
    try {
      const view = await inspectObject(mem, big.list, null, small);
      assert.deepEqual(view.class, { module: 'persistent.list', name: 'PersistentList', form: null });
      assert.equal(view.size, big.listSize);
      assert.match(view.error!, /above the browser's limit of 1\.0 MiB: it is not decoded/);
      assert.equal(view.state, undefined);
      assert.ok(view.opcodes!.ops.length > 0);
      assert.equal(view.raw!.length, big.listSize);
      assert.deepEqual(view.refs, []);
      assert.equal(view.refsTruncated, true);
      assert.equal(view.container, null);
      await assert.rejects(containerPage(mem, big.list, { decoder: small }), RecordTooLargeError);
      // a compressed one: its class from the first compressed bytes
      const z = await inspectObject(mem, big.zlibList, null, new RecordDecoder({ ceiling: 1000 }));
      assert.equal(z.compression, 'zlib');
      assert.equal(z.class.name, 'PersistentList');
      // (a reference's class, read the same way: from the first compressed bytes only)
      assert.equal(recordClassName((await mem.load(big.zlibList)).data), 'persistent.list.PersistentList');
      assert.equal(small.hasWorker, false);
    } finally {
      await small.close();
    }
  });

  test('close() ends the worker: a decode in flight fails, later ones run inline', async () => {
    const d = new RecordDecoder({ threshold: 0 });
    const rev = await mem.load(big.list);
    const inFlight = d.run('view', rev.data, null);
    assert.equal(d.hasWorker, true);
    await d.close();
    await assert.rejects(inFlight, /decode worker/);
    assert.equal(d.hasWorker, false);
    assert.equal((await d.run('view', rev.data, null)).view.class.name, 'PersistentList');
    assert.equal(d.hasWorker, false);
  });
});

describe('while the worker decodes, the server answers its ZEO clients', () => {
  let fx: TestServer;
  let big: BigRecords;
  const mem = new MemoryStorage();
  before(async () => {
    big = await storeBigRecords(mem);
    fx = await startServer({ opened: [{ name: '1', storage: mem }] });
  });
  after(async () => {
    await fx.stop();
  });

  test('a ping sent while a big view decodes is answered before the view', async () => {
    const client = await RawClient.open(fx.address);
    const decoder = new RecordDecoder();
    try {
      const order: string[] = [];
      const view = inspectObject(mem, big.list, null, decoder).then((v) => {
        order.push('view');
        return v;
      });
      await waitUntil(() => decoder.pending === 1, 'the view given to the worker');
      assert.equal(await client.call('ping'), null);
      order.push('ping');
      assert.equal((await view).refs.length, 100);
      assert.deepEqual(order, ['ping', 'view']);
    } finally {
      client.socket.destroy();
      await decoder.close();
    }
  });
});

// A zlib bomb: a zc.zlibstorage record of a few hundred KB that inflates to 96 MiB is never inflated past the
// browser's ceiling, inline or in the worker: the view says why, and nothing of that size is allocated.
test('a zc.zlibstorage record that inflates past the ceiling is refused, not inflated', async () => {
  const { deflateSync } = await import('node:zlib');
  const { MAX_INFLATED, viewRecord } = await import('../../../src/storage/browse/index.js');
  const inflated = MAX_INFLATED + 32 * 1024 * 1024;
  const bomb = Buffer.concat([Buffer.from('.z'), deflateSync(Buffer.alloc(inflated))]);
  assert.ok(bomb.length < 1024 * 1024, `${bomb.length} bytes stored`);
  const view = viewRecord(bomb);
  assert.equal(view.compression, 'zlib');
  assert.match(view.error ?? '', /inflates past 67108864 bytes/);
  const decoder = new RecordDecoder({ threshold: 1024 });
  try {
    const offloaded = await decoder.run('view', bomb, null);
    assert.match(JSON.stringify(offloaded), /inflates past 67108864 bytes/);
  } finally {
    await decoder.close();
  }
});
