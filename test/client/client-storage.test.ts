// ClientStorage beyond the storage contract, against zeo serve in this process: invalidations between two
// clients and their order with lastTransaction (ZEO#166), a load overtaken by an invalidation (ZEO#155),
// merged loads and prefetch, new_oids batches, iterator_gc, serverSync, conflicts and resolvers, per-call
// signals and timeouts, close, disconnects, and invalidations at or below register's tid dropped. A relay
// between client and server shows what the client sends and can hold back what the server answers.
import assert from 'node:assert/strict';
import net from 'node:net';
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
import { codecFor, encodeFrame, FrameDecoder, type Message } from '../../src/protocol/index.js';
import { ConflictError, ReadOnlyError, Unsupported } from '../../src/storage/errors.js';
import { compareIds, idHex, maxtid, p64, z64, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { waitUntil } from '../helpers/wait.js';
import {
  dostore,
  minpoValue,
  pcounter,
  pcounterValue,
  PCOUNTER_MODULE,
} from '../storage/contract/helpers.js';

type TcpAddress = { host: string; port: number };

/** A TCP relay that records the client's calls by name and can hold the server's frames, then let them go together. */
async function relay(to: TcpAddress) {
  const calls: string[] = [];
  const held: Buffer[] = [];
  let holding = false;
  const clients: net.Socket[] = [];
  const sockets: net.Socket[] = [];
  const codec = codecFor('Z', 'server');
  const proxy = net.createServer((client) => {
    const server = net.connect(to.port, to.host);
    sockets.push(client, server);
    clients.push(client);
    const decoder = new FrameDecoder(1 << 26);
    let handshake = true;
    client.on('data', (d: Buffer) => {
      for (const f of decoder.push(d)) {
        if (handshake) {
          handshake = false;
          continue;
        }
        const msg: Message = codec.decode(Buffer.from(f));
        if (msg.msgid !== -1) calls.push(msg.name);
      }
      server.write(d);
    });
    server.on('data', (d: Buffer) => {
      if (holding) held.push(d);
      else client.write(d);
    });
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  let closed = false;
  const handle = {
    address: { host: '127.0.0.1', port: (proxy.address() as net.AddressInfo).port },
    calls,
    count: (name: string) => calls.filter((c) => c === name).length,
    hold() {
      holding = true;
    },
    /** what was held goes to the client in one write (so it is read in one go) */
    release() {
      holding = false;
      const all = Buffer.concat(held.splice(0));
      if (all.length) clients[clients.length - 1].write(all);
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => proxy.close(r));
    },
  };
  opened.push(handle);
  return handle;
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
    // a scripted server: register answers tid 5, then invalidations for tids 3 and 6 come
    const codec = codecFor('Z', 'server');
    const sockets: net.Socket[] = [];
    const fake = net.createServer((sock) => {
      sockets.push(sock);
      sock.on('error', () => {});
      const decoder = new FrameDecoder(1 << 20);
      let hello = true;
      sock.on('data', (d: Buffer) => {
        for (const f of decoder.push(d)) {
          if (hello) {
            hello = false;
            continue;
          }
          const m = codec.decode(Buffer.from(f));
          const reply = (v: PickleValue) => sock.write(encodeFrame(codec.encodeReply(m.msgid, v)));
          if (m.name === 'register') reply(p64(5));
          else if (m.name === 'get_info') {
            reply(
              new Map<PickleValue, PickleValue>([
                ['length', 0],
                ['size', 0],
                ['interfaces', tuple()],
              ]),
            );
            sock.write(encodeFrame(codec.encodeCall(0, true, 'invalidateTransaction', [p64(3), [p64(1)]])));
            sock.write(encodeFrame(codec.encodeCall(0, true, 'invalidateTransaction', [p64(6), [p64(2)]])));
          } else if (m.name === 'ping') reply(null);
        }
      });
      sock.write(encodeFrame(Buffer.from('Z5')));
    });
    await new Promise<void>((res) => fake.listen(0, '127.0.0.1', res));
    const port = (fake.address() as net.AddressInfo).port;
    const seen: string[] = [];
    opened.push({
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise((res) => fake.close(res));
      },
    });
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
