// The object browser's HTTP API (/api/browse/) and page (/browse) on the listener of a running server, over
// data Python's ZODB wrote through ZEO: the answers, their errors (400 bad input, 404 missing), the
// credentials they need, and that nothing they do writes to the storage.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { browseRoutes } from '../../../src/server/http/browse-routes.js';
import { HttpListener } from '../../../src/server/http/listener.js';
import { createLogger } from '../../../src/server/log.js';
import { containerPage, inspectObject, RecordDecoder } from '../../../src/storage/browse/index.js';
import { idHex, p64 } from '../../../src/storage/ids.js';
import { MemoryStorage } from '../../../src/storage/memory/memory-storage.js';
import { storeBigRecords } from '../../helpers/big-records.js';
import { makeBrowseData, treeKeys, type BrowseData } from '../../helpers/browse-data.js';
import { interopTest } from '../../helpers/oracle.js';
import { RawClient } from '../../helpers/raw-client.js';
import { startServer, type TestServer } from '../../helpers/server-fixture.js';
import { waitUntil } from '../../helpers/wait.js';

interface Answer<T> {
  status: number;
  body: T;
}

async function get<T = Record<string, unknown>>(
  s: TestServer,
  path: string,
  auth = true,
): Promise<Answer<T>> {
  const res = await fetch(`${s.http!.url}${path}`, {
    headers: auth ? { authorization: `Bearer ${s.http!.token}` } : {},
  });
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) body = JSON.parse(text);
  return { status: res.status, body: body as T };
}

async function checkApi(s: TestServer, d: BrowseData): Promise<void> {
  const storages = await get<{ storages: Array<{ name: string; lastTransaction: string }> }>(
    s,
    '/api/browse/storages',
  );
  assert.equal(storages.status, 200);
  assert.deepEqual(
    storages.body.storages.map((x) => [x.name, x.lastTransaction]),
    [['1', d.last]],
  );

  const root = await get<{ class: { name: string }; refs: Array<{ oid: string }>; container: unknown }>(
    s,
    `/api/browse/1/object/${d.root}`,
  );
  assert.equal(root.status, 200);
  assert.equal(root.body.class.name, 'PersistentMapping');
  assert.ok(root.body.refs.some((r) => r.oid === d.tree));

  // the OOBTree, every page through the cursors
  const keys: string[] = [];
  let cursor = '';
  for (let n = 0; n < 20; n++) {
    const page = await get<{ items: Array<{ key: { repr: string } }>; next: string | null }>(
      s,
      `/api/browse/1/object/${d.tree}/items?limit=1000${cursor ? `&cursor=${cursor}` : ''}`,
    );
    assert.equal(page.status, 200);
    keys.push(...page.body.items.map((i) => i.key.repr));
    if (!page.body.next) break;
    cursor = page.body.next;
  }
  assert.deepEqual(
    keys,
    treeKeys().map((k) => `'${k}'`),
  );

  const history = await get<{ history: Array<{ tid: string }> }>(
    s,
    `/api/browse/1/object/${d.revised}/history?limit=10`,
  );
  assert.deepEqual(
    history.body.history.map((h) => h.tid),
    [...d.revision_tids].reverse(),
  );
  const old = await get<{ tid: string; end: string }>(
    s,
    `/api/browse/1/object/${d.revised}?tid=${d.revision_tids[1]}`,
  );
  assert.equal(old.body.tid, d.revision_tids[1]);
  assert.equal(old.body.end, d.revision_tids[2]);

  const txn = await get<{ description: string; records: Array<{ oid: string }> }>(
    s,
    `/api/browse/1/transaction/${d.revision_tids[2]}`,
  );
  assert.equal(txn.body.description, 'revision 2');
  assert.deepEqual(
    txn.body.records.map((r) => r.oid),
    [d.revised],
  );

  const log = await get<{ entries: Array<{ description: string }> }>(
    s,
    '/api/browse/1/undo-log?first=0&last=20',
  );
  assert.deepEqual(
    log.body.entries.map((e) => e.description),
    d.undo_log.map((e) => e.description),
  );

  // bad input: 400 with a message; missing: 404
  const cases: Array<[string, number, RegExp]> = [
    ['/api/browse/1/object/zz', 400, /bad oid/],
    ['/api/browse/1/object/00000000000000000', 400, /bad oid/],
    [`/api/browse/1/object/${d.root}?tid=nope`, 400, /bad tid/],
    [`/api/browse/1/object/${d.tree}/items?cursor=x`, 400, /bad cursor/],
    [`/api/browse/1/object/${d.tree}/items?limit=0`, 400, /bad limit/],
    [`/api/browse/1/object/${d.tree}/items?limit=1001`, 400, /bad limit/],
    [`/api/browse/1/object/${d.gadget}/items`, 400, /no container/],
    ['/api/browse/1/undo-log?first=0&last=100000', 400, /at most/],
    [
      '/api/browse/1/undo-log?first=1000000001&last=1000000002',
      400,
      /bad first .*: expected 0 to 1000000000/,
    ],
    ['/api/browse/1/transaction/xyz', 400, /bad tid/],
    ['/api/browse/1/object/00000000000fffff', 404, /no such object/],
    [`/api/browse/1/object/${d.orphan}`, 404, /no such object/],
    [`/api/browse/1/object/${d.root}?tid=0000000000000001`, 404, /no such object/],
    ['/api/browse/1/transaction/0000000000000001', 404, /no transaction/],
    ['/api/browse/nosuch/object/0000000000000000', 404, /no storage/],
    ['/api/browse/1/nothing', 404, /no such page/],
    ['/api/browse/%E0%A4%A/object/0000000000000000', 400, /bad escape/],
  ];
  for (const [path, status, message] of cases) {
    const r = await get<{ error: string }>(s, path);
    assert.equal(r.status, status, path);
    assert.match(r.body.error, message, path);
  }
  // the largest range the messages allow is allowed (it lists nothing: the log is shorter)
  const farthest = await get<{ entries: unknown[] }>(
    s,
    '/api/browse/1/undo-log?first=999999000&last=1000000000',
  );
  assert.equal(farthest.status, 200);
  assert.deepEqual(farthest.body.entries, []);

  // the page itself
  const page = await get<string>(s, '/browse');
  assert.equal(page.status, 200);
  assert.match(page.body, /<script type="module" src="\/ui\/js\/browse.js">/);
}

interopTest('the object browser API over a running server', async (oracle) => {
  const s = await startServer({ http: {} });
  try {
    const d = await makeBrowseData(oracle, ['127.0.0.1', (s.address as { port: number }).port]);
    const fs = s.server.storages.get('1')!.storage;
    const before = {
      last: Buffer.from(fs.lastTransaction()).toString('hex'),
      size: (await stat(join(s.dir, 'Data.fs'))).size,
    };

    await checkApi(s, d);

    // credentials: none, or a wrong token, gets 401 and no data
    for (const path of ['/browse', '/api/browse/storages', `/api/browse/1/object/${d.root}`]) {
      const r = await fetch(`${s.http!.url}${path}`);
      assert.equal(r.status, 401, path);
      assert.doesNotMatch(await r.text(), /PersistentMapping|storages/);
      const wrong = await fetch(`${s.http!.url}${path}`, { headers: { authorization: 'Bearer wrong' } });
      assert.equal(wrong.status, 401, path);
    }
    // nothing but GET/HEAD
    const post = await fetch(`${s.http!.url}/api/browse/1/undo-log`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.http!.token}` },
    });
    assert.equal(post.status, 405);

    // the browser read, and wrote nothing
    assert.equal(Buffer.from(fs.lastTransaction()).toString('hex'), before.last);
    assert.equal((await stat(join(s.dir, 'Data.fs'))).size, before.size);
  } finally {
    await s.stop();
  }
});

test('big records decode off the event loop: the same answers, ZEO pings answered meanwhile, 503 when busy, 422 above the ceiling, no worker once the listener closes', async () => {
  const mem = new MemoryStorage();
  const big = await storeBigRecords(mem);
  const s = await startServer({ opened: [{ name: '1', storage: mem }], http: {} });
  const logging = createLogger(null, { stderr: { write: () => true } as unknown as NodeJS.WritableStream });
  const ctx = { server: s.server, config: null, log: logging.root };
  const listen = (decoder: RecordDecoder): Promise<HttpListener> =>
    HttpListener.start({
      address: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      routes: browseRoutes(ctx, decoder),
      log: logging.root,
      token: 'T',
    });
  const decoder = new RecordDecoder();
  // no room in its queue, and a ceiling of 1 MB
  const small = new RecordDecoder({ maxJobs: 0, ceiling: 1_000_000 });
  const one = await listen(decoder);
  const other = await listen(small);
  const client = await RawClient.open(s.address);
  const fetchFrom = (l: HttpListener, path: string): Promise<Response> =>
    fetch(`${l.url}${path}`, { headers: { authorization: 'Bearer T' } });
  try {
    const list = idHex(big.list);
    const tree = idHex(big.tree);
    // the server's own listener (its decoder the default one): what inline decoding answers
    const json = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
    const view = await get(s, `/api/browse/1/object/${list}`);
    assert.equal(view.status, 200);
    assert.deepEqual(view.body, json(await inspectObject(mem, big.list)));
    const at = idHex(mem.lastTransaction());
    for (const [oid, cursor] of [
      [big.list, `${list}.50000.${at}.50000`],
      [big.tree, `${idHex(big.bucket)}.19500.${at}.19500`],
    ] as const) {
      const page = await get(s, `/api/browse/1/object/${idHex(oid)}/items?limit=1000&cursor=${cursor}`);
      assert.equal(page.status, 200);
      assert.deepEqual(page.body, json(await containerPage(mem, oid, { limit: 1000, cursor })));
    }

    // a ZEO client's ping, sent while the worker decodes a page, is answered before the page
    const order: string[] = [];
    const page = fetchFrom(one, `/api/browse/1/object/${list}/items?limit=1000`).then(async (r) => {
      order.push('page');
      return { status: r.status, body: (await r.json()) as { items: unknown[] } };
    });
    await waitUntil(() => decoder.pending === 1, 'the page given to the worker');
    assert.equal(await client.call('ping'), null);
    order.push('ping');
    const answered = await page;
    assert.equal(answered.status, 200);
    assert.equal(answered.body.items.length, 1000);
    assert.deepEqual(order, ['ping', 'page']);

    // busy: 503 for a record the worker would decode, a small one still answered inline
    const busy = await fetchFrom(other, `/api/browse/1/object/${idHex(big.bucket)}`);
    assert.equal(busy.status, 503);
    assert.match(((await busy.json()) as { error: string }).error, /busy/);
    assert.equal((await fetchFrom(other, `/api/browse/1/object/${idHex(p64(1000))}`)).status, 200);
    // above the ceiling: the view from its head, the items refused
    const head = await fetchFrom(other, `/api/browse/1/object/${list}`);
    assert.equal(head.status, 200);
    assert.match(((await head.json()) as { error: string }).error, /not decoded/);
    const refused = await fetchFrom(other, `/api/browse/1/object/${list}/items`);
    assert.equal(refused.status, 422);
    assert.match(((await refused.json()) as { error: string }).error, /items are not listed/);
    assert.equal((await fetchFrom(other, `/api/browse/1/object/${tree}/items`)).status, 503);

    assert.equal(decoder.hasWorker, true);
    await one.close();
    assert.equal(decoder.hasWorker, false);
  } finally {
    client.socket.destroy();
    await one.close();
    await other.close();
    await s.stop();
    await logging.close();
  }
});
