// ClientStorage beyond the storage contract, against zeo serve in this process: invalidations between two
// clients and their order with lastTransaction (ZEO#166), a load overtaken by an invalidation (ZEO#155),
// merged loads and prefetch, new_oids batches, iterator_gc, serverSync, conflicts and resolvers, per-call
// signals and timeouts, close, disconnects, and invalidations at or below register's tid dropped. A relay
// between client and server shows what the client sends and can hold back what the server answers.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  CallTimeoutError,
  ClientDisconnected,
  ClientStorage,
  ConflictResolverRegistry,
  type ClientStorageOptions,
  type Invalidation,
} from '../../src/client/index.js';
import { referencesf, tuple, type PickleValue } from '../../src/pickle/index.js';
import type { Message } from '../../src/protocol/index.js';
import { ConflictError, ReadOnlyError, Unsupported } from '../../src/storage/errors.js';
import { compareIds, idHex, maxtid, p64, z64, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { serverTlsOptions } from '../../src/transport/tls.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { noOpenssl, selfSignedPair } from '../helpers/openssl.js';
import { relay as openRelay, type Relay } from '../helpers/relay.js';
import { scriptedServer as startScripted } from '../helpers/scripted-server.js';
import { waitUntil } from '../helpers/wait.js';
import {
  dostore,
  minpoValue,
  pcounter,
  pcounterValue,
  PCOUNTER_MODULE,
} from '../storage/contract/helpers.js';

type TcpAddress = { host: string; port: number };

/** A relay (test/helpers/relay.ts) closed after the test. */
async function relay(to: TcpAddress): Promise<Relay> {
  const r = await openRelay(to);
  opened.push(r);
  return r;
}

let server: TestServer;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** What a test opened, closed after it whatever happened (a client left open would keep reconnecting). */
const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

async function open(extra: Partial<ClientStorageOptions> = {}): Promise<ClientStorage> {
  const s = await ClientStorage.open({ server: server.address, waitTimeout: 5000, ...extra });
  opened.push(s);
  return s;
}

const INFO = new Map<PickleValue, PickleValue>([
  ['length', 0],
  ['size', 0],
  ['interfaces', tuple()],
]);

/** A scripted server (test/helpers/scripted-server.ts, pickle): answers each call as `onCall` says; closed after the test. */
async function scriptedServer(
  onCall: (
    m: Message,
    reply: (v: PickleValue) => void,
    send: (name: string, args: PickleValue[]) => void,
  ) => void,
): Promise<number> {
  const s = await startScripted('Z5', (m, srv, sock) =>
    onCall(
      m,
      (v) => srv.reply(sock, m.msgid, v),
      (name, args) => srv.notify(sock, name, args),
    ),
  );
  opened.push(s);
  return s.address.port;
}

describe('invalidations', () => {
  test('cross between two clients; lastTransaction moves only after they are emitted (ZEO#166)', async () => {
    const a = await open();
    const b = await open();
    const feed = b.invalidations();
    const seen: Array<{ inv: Invalidation; lastThen: Tid }> = [];
    b.on('invalidations', (inv: Invalidation) => seen.push({ inv, lastThen: b.lastTransaction() }));
    const oid = await a.newOid();
    const tid = await dostore(a, { oid, data: 1 });
    await b.serverSync();
    assert.equal(seen.length, 1);
    assert.equal(compareIds(seen[0].inv.tid, tid), 0);
    assert.deepEqual(seen[0].inv.oids.map(idHex), [idHex(oid)]);
    assert.ok(compareIds(seen[0].lastThen, tid) < 0, 'not yet moved while the invalidation is emitted');
    assert.equal(compareIds(b.lastTransaction(), tid), 0);
    // the committer gets no invalidation for its own transaction, and its lastTransaction is the commit's
    assert.equal(compareIds(a.lastTransaction(), tid), 0);
    const first = await feed.next();
    assert.equal(compareIds((first.value as Invalidation).tid, tid), 0);
    // b's cache holds the new revision once loaded; a second commit invalidates it
    assert.equal(minpoValue((await b.load(oid)).data), 1);
    const tid2 = await dostore(a, { oid, revid: tid, data: 2 });
    await b.serverSync();
    assert.equal(minpoValue((await b.load(oid)).data), 2);
    assert.equal(compareIds((await b.load(oid)).serial, tid2), 0);
    await a.close();
    await b.close();
    assert.equal((await feed.next()).done, false, 'the second transaction was queued');
    assert.equal((await feed.next()).done, true, 'the iterator ends with the storage');
  });

  test('a load answered just before an invalidation of its object never caches stale data as current (ZEO#155)', async () => {
    const a = await open();
    const oid = await a.newOid();
    const t1 = await dostore(a, { oid, data: 1 });
    const r = await relay(server.address as TcpAddress);
    const b = await open({ server: r.address });
    // b's load is answered with revision 1; the invalidation of revision 2 follows it in the same read
    r.hold();
    const loading = b.load(oid);
    await waitUntil(() => r.count('loadBefore') === 1, 'the load sent');
    await new Promise((res) => setTimeout(res, 50));
    const t2 = await dostore(a, { oid, revid: t1, data: 2 });
    await new Promise((res) => setTimeout(res, 50));
    r.release();
    const old = await loading;
    assert.equal(compareIds(old.serial, t1), 0, 'the load read revision 1');
    await b.serverSync();
    const now = await b.load(oid);
    assert.equal(compareIds(now.serial, t2), 0, 'the current revision, not the stale one');
    assert.equal(minpoValue(now.data), 2);
    // what was read is kept as the revision that ended at t2
    const before = await b.loadBefore(oid, t2);
    assert.equal(compareIds(before!.start, t1), 0);
    assert.equal(compareIds(before!.end!, t2), 0);

    // a load answered after one commit and overtaken by the next one's invalidation: current until that one
    r.hold();
    const other = await a.newOid();
    const o1 = await dostore(a, { oid: other, data: 1 });
    const loading2 = b.load(other);
    await waitUntil(() => r.count('loadBefore') === 2, 'the second load sent');
    await new Promise((res) => setTimeout(res, 50));
    const o2 = await dostore(a, { oid: other, revid: o1, data: 2 });
    await new Promise((res) => setTimeout(res, 50));
    r.release();
    assert.equal(compareIds((await loading2).serial, o1), 0);
    await b.serverSync();
    assert.equal(compareIds((await b.load(other)).serial, o2), 0, 'not the revision o2 replaced');
    await a.close();
    await b.close();
    await r.close();
  });

  test('invalidations at or below the tid register returned are dropped', async () => {
    // register answers tid 5, then invalidations for tids 3 and 6 come
    const port = await scriptedServer((m, reply, send) => {
      if (m.name === 'register') reply(p64(5));
      else if (m.name === 'get_info') {
        reply(INFO);
        send('invalidateTransaction', [p64(3), [p64(1)]]);
        send('invalidateTransaction', [p64(6), [p64(2)]]);
      } else if (m.name === 'ping') reply(null);
    });
    const seen: string[] = [];
    const c = await ClientStorage.open({ server: { host: '127.0.0.1', port }, wait: false, cacheSize: 0 });
    opened.push(c);
    c.on('invalidations', (inv: Invalidation) => seen.push(idHex(inv.tid)));
    await c.serverSync();
    assert.deepEqual(seen, [idHex(p64(6))]);
    assert.equal(compareIds(c.lastTransaction(), p64(6)), 0);
  });
});

describe('reads', () => {
  test('loads of the same revision in flight are merged; prefetch sends at once and later loads wait for it', async () => {
    const a = await open();
    const oids = [await a.newOid(), await a.newOid(), await a.newOid()];
    for (const [i, oid] of oids.entries()) await dostore(a, { oid, data: i });
    const r = await relay(server.address as TcpAddress);
    const b = await open({ server: r.address });
    const [x, y] = await Promise.all([b.load(oids[0]), b.load(oids[0])]);
    assert.equal(r.count('loadBefore'), 1, 'one request for two loads');
    assert.equal(x.data, y.data);
    // prefetch the others; the loads that follow take what it fetched
    const prefetching = b.prefetch(oids.slice(1), maxtid);
    assert.equal(minpoValue((await b.load(oids[1])).data), 1);
    await prefetching;
    assert.equal(minpoValue((await b.load(oids[2])).data), 2);
    assert.equal(r.count('loadBefore'), 3, 'each object asked for once');
    // and from the cache afterwards
    await b.load(oids[1]);
    assert.equal(r.count('loadBefore'), 3);
    assert.ok(b.cacheStats().hits >= 1);
    await a.close();
    await b.close();
    await r.close();
  });

  test('a for-await that stops early closes the server iterator (iterator_gc)', async () => {
    const r = await relay(server.address as TcpAddress);
    const s = await open({ server: r.address });
    for (let i = 0; i < 3; i++) await dostore(s, { data: i });
    let n = 0;
    for await (const t of s.iterator()) {
      for await (const rec of t.records) assert.ok(rec.data);
      if (++n === 1) break;
    }
    await s.serverSync();
    assert.equal(r.count('iterator_start'), 1);
    assert.equal(r.count('iterator_gc'), 1);
    // one that runs out needs none
    let all = 0;
    for await (const _t of s.iterator()) all++;
    assert.ok(all >= 3);
    await s.serverSync();
    assert.equal(r.count('iterator_gc'), 1);
    await s.close();
    await r.close();
  });
});

test('an iteration dropped without being closed closes the server iterator once collected', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const r = await relay(server.address as TcpAddress);
  const s = await open({ server: r.address });
  for (let i = 0; i < 2; i++) await dostore(s, { data: i });
  await (async () => {
    // one step, then forgotten (no return(): a consumer that lost interest)
    const it = s.iterator();
    await it.next();
  })();
  // finalizers run some time after a collection: collect, then let a round trip carry what was sent
  for (let i = 0; i < 200 && r.count('iterator_gc') === 0; i++) {
    gc();
    await new Promise((res) => setTimeout(res, 10));
    await s.serverSync();
  }
  assert.equal(r.count('iterator_gc'), 1);
});

describe('writes', () => {
  test('newOid asks for 100 at a time; serverSync is a round trip at tpcBegin', async () => {
    const r = await relay(server.address as TcpAddress);
    const s = await open({ server: r.address, serverSync: true });
    const oids = new Set<string>();
    for (let i = 0; i < 101; i++) oids.add(idHex(await s.newOid()));
    assert.equal(oids.size, 101);
    assert.equal(r.count('new_oids'), 2);
    const pings = r.count('ping');
    const t = new TransactionMetaData();
    await s.tpcBegin(t);
    await s.tpcAbort(t);
    assert.equal(r.count('ping'), pings + 1);
    assert.ok(r.calls.lastIndexOf('ping') < r.calls.lastIndexOf('tpc_begin'));
    await s.close();
    await r.close();
  });

  test('a conflict nobody resolves is a ConflictError with the oid, the class and both serials; a registered resolver resolves it', async () => {
    const a = await open({ conflictResolvers: new ConflictResolverRegistry() });
    const oid = await a.newOid();
    const base = await dostore(a, { oid, data: pcounter(1) });
    const theirs = await dostore(a, { oid, revid: base, data: pcounter(3) });
    await assert.rejects(dostore(a, { oid, revid: base, data: pcounter(4) }), (e: unknown) => {
      assert.ok(e instanceof ConflictError);
      assert.equal(idHex(e.oid!), idHex(oid));
      assert.deepEqual(e.serials!.map(idHex), [idHex(theirs), idHex(base)]);
      assert.equal((e as ConflictError & { className: string }).className, `${PCOUNTER_MODULE}.PCounter`);
      assert.match(e.message, /ZODB\.tests\.ConflictResolution\.PCounter/);
      return true;
    });
    await a.close();
    const registry = new ConflictResolverRegistry().register(
      PCOUNTER_MODULE,
      'PCounter',
      (old, committed, mine) => {
        const v = (s: PickleValue) => Number((s as Map<PickleValue, PickleValue>).get('_value') ?? 0);
        return new Map<PickleValue, PickleValue>([['_value', v(committed) + v(mine) - v(old)]]);
      },
    );
    const b = await open({ conflictResolvers: registry });
    const t = new TransactionMetaData();
    await b.tpcBegin(t);
    await b.store(oid, base, pcounter(4), t);
    assert.deepEqual((await b.tpcVote(t)).map(idHex), [idHex(oid)]);
    const tid = await b.tpcFinish(t);
    const now = await b.load(oid);
    assert.equal(compareIds(now.serial, tid), 0);
    assert.equal(pcounterValue(now.data), 6, '1 + 2 + 3');
    await b.close();
  });

  test('read-only: writes refused on the client; pack cannot be asked without gc', async () => {
    const s = await open({ readOnly: true });
    assert.equal(s.isReadOnly(), true);
    await assert.rejects(s.newOid(), ReadOnlyError);
    await assert.rejects(s.tpcBegin(new TransactionMetaData()), ReadOnlyError);
    await assert.rejects(s.pack(Date.now() / 1000, referencesf, { gc: false }), Unsupported);
    await s.close();
  });
});

describe('calls, connection and close', () => {
  test('per-call signal and timeout end only that call; close fails the calls still waiting', async () => {
    const a = await open();
    const oid = await a.newOid();
    await dostore(a, { oid, data: 1 });
    const r = await relay(server.address as TcpAddress);
    const b = await open({ server: r.address, cacheSize: 0 });
    r.hold();
    const ac = new AbortController();
    const aborted = b.load(oid, { signal: ac.signal });
    ac.abort(new Error('changed my mind'));
    await assert.rejects(aborted, /changed my mind/);
    await assert.rejects(b.history(oid, 1, { timeout: 100 }), CallTimeoutError);
    const waiting = assert.rejects(b.loadSerial(oid, z64), ClientDisconnected);
    await b.close();
    await waiting;
    await assert.rejects(b.load(oid), ClientDisconnected);
    await a.close();
    await r.close();
  });

  test('answers of the wrong shape fail their call with a clear error; the connection serves the next', async () => {
    const port = await scriptedServer((m, reply) => {
      if (m.name === 'register') reply(z64);
      else if (m.name === 'get_info') reply(INFO);
      else if (m.name === 'loadBefore') reply('not a tuple');
      else if (m.name === 'history') reply(tuple(new Map([['tid', 'short']])));
      else if (m.name === 'new_oids') reply(tuple(p64(1), 'x'));
      else if (m.name === 'ping') reply(null);
    });
    const c = await ClientStorage.open({ server: { host: '127.0.0.1', port }, cacheSize: 0 });
    opened.push(c);
    await assert.rejects(c.load(z64), /the server's answer to loadBefore is not a sequence/);
    await assert.rejects(c.history(z64), /the server's answer to history has an id that is not 8 bytes/);
    await assert.rejects(c.newOid(), /the server's answer to new_oids has an id that is not 8 bytes/);
    await c.serverSync();
    assert.equal(c.isConnected(), true);
  });

  test('get_info, capabilities and names; an unknown storage name fails open with the reason', async () => {
    const s = await open();
    const info = s.getInfo();
    assert.equal(typeof info.size, 'number');
    assert.ok(s.capabilities.undo && s.capabilities.iteration && s.capabilities.restore);
    assert.equal(s.capabilities.blobs, false, 'no blob directory of ours');
    assert.equal(s.supportsUndo(), true);
    assert.match(s.getName(), /\(connected\)$/);
    assert.match(s.sortKey(), /^1:/);
    // ruok: the server's own answer, outside the protocol; server_status: ours, through it
    const status = (await s.ruok()) as Map<PickleValue, PickleValue>;
    const mine = status.get('1') as Map<PickleValue, PickleValue>;
    assert.ok(Number(mine.get('connections')) >= 1);
    const served = (await s.serverStatus()) as Map<PickleValue, PickleValue>;
    assert.deepEqual([...served.keys()], [...mine.keys()]);
    await s.close();
    assert.match(s.getName(), /\(disconnected\)$/);
    await assert.rejects(open({ storage: 'nope', waitTimeout: 1000 }), (e: unknown) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /unknown storage/);
      return true;
    });
  });

  test('clientLabel names the client in the server log (set_client_label); cachePath is the persistent cache file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-label-'));
    try {
      const cachePath = join(dir, 'mine.zec');
      const s = await open({ clientLabel: 'label-of-fink', cachePath });
      assert.equal(s.cacheFile, cachePath);
      const oid = await s.newOid();
      await dostore(s, { oid, data: 7 });
      await s.close();
      await waitUntil(
        () => server.logs.some((l) => l.includes('label-of-fink')),
        'the label in the log',
        5000,
      );
      const again = await open({ cachePath });
      assert.equal(again.verifyResult, 'Cache up to date');
      await again.load(oid);
      assert.equal(again.cacheStats().hits, 1, 'the reopened cache file answers the load');
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a lost server: disconnect event, calls fail after waitTimeout with ClientDisconnected (transient)', async () => {
    const own = await startServer();
    const s = await ClientStorage.open({ server: own.address, waitTimeout: 300, minDisconnectPoll: 50 });
    opened.push(s);
    const events: string[] = [];
    s.on('disconnect', () => events.push('disconnect'));
    await own.stop();
    await waitUntil(() => events.length === 1, 'the disconnect event');
    assert.equal(s.isConnected(), false);
    await assert.rejects(s.load(z64), (e: unknown) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.equal(e.transient, true);
      return true;
    });
    await s.close();
  });
});

describe('transports', () => {
  test(
    'a unix socket, and TLS with a client certificate: commit, load, ruok',
    { skip: noOpenssl },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-client-storage-tls-'));
      const ssl = selfSignedPair(dir);
      const unix = await startServer({ unix: true });
      const tlsServer = await startServer({ tls: serverTlsOptions(ssl('server', 'client')) });
      opened.push(
        { close: () => rm(dir, { recursive: true, force: true }) },
        { close: () => unix.stop() },
        { close: () => tlsServer.stop() },
      );
      for (const [server, extra] of [
        [unix, {}],
        [tlsServer, { ssl: ssl('client', 'server') }],
      ] as const) {
        const s = await ClientStorage.open({ server: server.address, waitTimeout: 5000, ...extra });
        opened.push(s);
        const oid = await s.newOid();
        const tid = await dostore(s, { oid, data: 5 });
        const r = await s.load(oid);
        assert.equal(compareIds(r.serial, tid), 0);
        assert.equal(minpoValue(r.data), 5);
        const status = (await s.ruok()) as Map<PickleValue, PickleValue>;
        assert.ok(status.has('1'));
        await s.close();
      }
    },
  );
});
