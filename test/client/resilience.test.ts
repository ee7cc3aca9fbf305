// The resilience bullets, through ClientStorage: a server restart and a failover between two addresses
// cost the application only transient errors it can retry, committed data is all there afterwards and
// invalidations resume; a server answering badly (garbage, a reply nobody asked for, a wrong reply shape, a cut
// mid-reply, silence) fails the affected calls with clear errors, leaks nothing, and the client reconnects.
// The bad answers come from a proxy in front of a real server that misbehaves once, on request.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  CallTimeoutError,
  ClientDisconnected,
  ClientStorage,
  type ClientStorageOptions,
  type Invalidation,
} from '../../src/client/index.js';
import { ProtocolError, codecFor, encodeFrame, FrameDecoder } from '../../src/protocol/index.js';
import { idHex, maxtid, z64, type Oid, type Tid } from '../../src/storage/ids.js';
import { POSKeyError } from '../../src/storage/errors.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { interopDisabled } from '../helpers/oracle.js';
import { runzeo } from '../helpers/runzeo.js';
import { freePort, sleep, stopLeftovers } from '../helpers/server-process.js';
import { assertNoLeaks, handles } from '../helpers/leaks.js';
import { waitUntil } from '../helpers/wait.js';

after(stopLeftovers);

type Address = { host: string; port: number };

const record = (n: number): Uint8Array =>
  new Uint8Array([0x80, 0x03, 0x4a, n & 0xff, (n >> 8) & 0xff, 0, 0, 0x2e]);

/** Quick reconnects, and calls that give up soon while disconnected. */
function options(
  server: ClientStorageOptions['server'],
  more: Partial<ClientStorageOptions> = {},
): ClientStorageOptions {
  return {
    server,
    cacheSize: 0,
    waitTimeout: 5000,
    minDisconnectPoll: 20,
    maxDisconnectPoll: 100,
    ...more,
  };
}

/** One new object in its own transaction; any failure aborts the transaction and is thrown. */
async function commitNew(s: ClientStorage, n: number): Promise<{ oid: Oid; tid: Tid; data: Uint8Array }> {
  const oid = await s.newOid();
  const data = record(n);
  const t = new TransactionMetaData();
  await s.tpcBegin(t);
  try {
    await s.store(oid, z64, data, t);
    await s.tpcVote(t);
    return { oid, tid: await s.tpcFinish(t), data };
  } catch (e) {
    await s.tpcAbort(t).catch((abortError: unknown) => {
      throw new Error(`tpcAbort failed: ${String(abortError)}`, { cause: abortError });
    });
    throw e;
  }
}

/** Retries an operation on transient errors (as an application would), collecting them. */
async function retrying<T>(errors: Error[], op: () => Promise<T>, deadlineMs = 20_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await op();
    } catch (e) {
      const err = e as Error & { transient?: boolean };
      assert.equal(err.transient, true, `only transient errors, not ${err.name}: ${err.message}`);
      errors.push(err);
      if (Date.now() > deadline) throw e;
      await sleep(10);
    }
  }
}

async function assertAllThere(
  s: ClientStorage,
  committed: Array<{ oid: Oid; tid: Tid; data: Uint8Array }>,
): Promise<void> {
  for (const c of committed) {
    const r = await s.loadBefore(c.oid, maxtid);
    assert.ok(r, `oid ${idHex(c.oid)} is there`);
    assert.deepEqual(Buffer.from(r.data), Buffer.from(c.data));
    assert.equal(idHex(r.start), idHex(c.tid));
  }
}

test(
  'a server restart costs the application only transient errors; data all there, invalidations resume',
  { timeout: 60_000 },
  async () => {
    const h0 = handles();
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-resilience-'));
    let server: TestServer | null = await startServer({ dir });
    const address = server.address as Address;
    const a = await ClientStorage.open(options(address, { waitTimeout: 100 }));
    const b = await ClientStorage.open(options(address));
    const seen: Invalidation[] = [];
    a.on('invalidations', (inv: Invalidation) => seen.push(inv));
    const events: string[] = [];
    a.on('connect', () => events.push('connect'));
    a.on('disconnect', (reason: unknown) => {
      assert.ok(reason instanceof ClientDisconnected);
      events.push('disconnect');
    });
    const committed: Array<{ oid: Oid; tid: Tid; data: Uint8Array }> = [];
    const errors: Error[] = [];
    try {
      // a writer that keeps committing while the server goes away and comes back
      let stop = false;
      const writer = (async () => {
        for (let n = 0; !stop; n++) committed.push(await retrying(errors, () => commitNew(a, n)));
      })();
      await waitUntil(() => committed.length >= 5, 'five commits before the restart');
      await server.stop();
      server = null;
      await waitUntil(() => errors.length >= 2, 'the writer sees the server gone');
      server = await startServer({ dir, port: address.port });
      const before = committed.length;
      await waitUntil(() => committed.length >= before + 5, 'five commits after the restart', 20_000);
      stop = true;
      await writer;
      assert.ok(errors.every((e) => e instanceof ClientDisconnected || e instanceof CallTimeoutError));
      assert.ok(events.includes('disconnect') && events.at(-1) === 'connect', events.join(', '));
      await assertAllThere(a, committed);

      // b reconnected too, and its commits reach a again
      const other = await retrying([], () => commitNew(b, 1000));
      await waitUntil(() => seen.some((i) => idHex(i.tid) === idHex(other.tid)), "a sees b's commit");
      assert.equal(idHex(a.lastTransaction()), idHex(other.tid));
      await assertAllThere(b, committed);
    } finally {
      await a.close();
      await b.close();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    }
    await assertNoLeaks(h0);
  },
);

test('failover between two addresses: a standby taking over the same data', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-failover-'));
  let primary: TestServer | null = await startServer({ dir });
  const standbyAddr = { host: '127.0.0.1', port: await freePort() };
  let standby: TestServer | null = null;
  const s = await ClientStorage.open(options([primary.address, standbyAddr], { waitTimeout: 100 }));
  const seen: Invalidation[] = [];
  s.on('invalidations', (inv: Invalidation) => seen.push(inv));
  const committed: Array<{ oid: Oid; tid: Tid; data: Uint8Array }> = [];
  const errors: Error[] = [];
  try {
    for (let n = 0; n < 5; n++) committed.push(await retrying(errors, () => commitNew(s, n)));
    assert.equal(errors.length, 0);
    // the primary goes; the standby comes up on its own address over the same files
    await primary.stop();
    primary = null;
    standby = await startServer({ dir, port: standbyAddr.port });
    for (let n = 5; n < 10; n++) committed.push(await retrying(errors, () => commitNew(s, n)));
    assert.ok(errors.every((e) => e instanceof ClientDisconnected));
    await assertAllThere(s, committed);
    // invalidations from another client of the standby reach us
    const other = await ClientStorage.open(options(standbyAddr));
    try {
      const c = await commitNew(other, 99);
      await waitUntil(
        () => seen.some((i) => idHex(i.tid) === idHex(c.tid)),
        'the invalidation via the standby',
      );
    } finally {
      await other.close();
    }
  } finally {
    await s.close();
    await primary?.stop();
    await standby?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------------------
// A proxy that misbehaves once, on the next loadBefore

type Misbehaviour = 'garbage' | 'unknown msgid' | 'wrong shape' | 'cut mid-reply' | 'silence';

interface Proxy {
  address: Address;
  /** the next reply to loadBefore is replaced by this misbehaviour */
  arm(how: Misbehaviour): void;
  /** connections open through it now */
  readonly open: number;
  /** while true, new connections are closed at once (the server looks down) */
  refuse: boolean;
  /** cuts every connection through it */
  cut(): void;
  close(): Promise<void>;
}

async function startProxy(target: Address): Promise<Proxy> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let armed: Misbehaviour | null = null;
  const server = net.createServer((client) => {
    if (proxy.refuse) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    const calls = new Map<number, string>();
    let silent = false;
    let firstUp = true;
    const fromClient = new FrameDecoder(1 << 28);
    client.on('data', (d: Buffer) => {
      for (const f of fromClient.push(d)) {
        if (silent) continue;
        if (firstUp) firstUp = false;
        else {
          const m = codecFor('Z', 'server').decode(Buffer.from(f));
          if (typeof m.msgid === 'number' && m.msgid > 0) calls.set(m.msgid, m.name);
        }
        upstream.write(encodeFrame(f));
      }
    });
    let firstDown = true;
    const fromServer = new FrameDecoder(1 << 28);
    upstream.on('data', (d: Buffer) => {
      for (const f of fromServer.push(d)) {
        if (silent) continue;
        if (firstDown) {
          firstDown = false;
          client.write(encodeFrame(f));
          continue;
        }
        const m = codecFor('Z', 'client').decode(Buffer.from(f));
        const name = typeof m.msgid === 'number' ? calls.get(m.msgid) : undefined;
        if (m.name === '.reply' && name === 'loadBefore' && armed) {
          const how = armed;
          armed = null;
          const codec = codecFor('Z', 'server');
          if (how === 'garbage') client.write(encodeFrame(new Uint8Array([0xde, 0xad, 0xbe, 0xef])));
          else if (how === 'unknown msgid')
            client.write(encodeFrame(codec.encodeReply(Number(m.msgid) + 1000, null)));
          else if (how === 'wrong shape')
            client.write(encodeFrame(codec.encodeReply(m.msgid, 'not a record')));
          else if (how === 'cut mid-reply') {
            const whole = encodeFrame(f);
            client.end(whole.subarray(0, Math.floor(whole.length / 2)));
            upstream.destroy();
          } else silent = true;
          continue;
        }
        client.write(encodeFrame(f));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxy: Proxy = {
    address: { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port },
    arm(how) {
      armed = how;
    },
    get open() {
      return pairs.size;
    },
    refuse: false,
    cut() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await new Promise((r) => server.close(r));
    },
  };
  return proxy;
}

/** A server, the proxy in front of it, and a ClientStorage through the proxy; all gone after, leaking nothing. */
async function throughProxy(
  more: Partial<ClientStorageOptions>,
  body: (s: ClientStorage, proxy: Proxy) => Promise<void>,
): Promise<void> {
  const h0 = handles();
  const server = await startServer();
  const proxy = await startProxy(server.address as Address);
  const s = await ClientStorage.open(options(proxy.address, more)).catch(async (e: unknown) => {
    await proxy.close();
    await server.stop();
    throw e;
  });
  try {
    await body(s, proxy);
  } finally {
    await s.close();
    await proxy.close();
    await server.stop();
  }
  await assertNoLeaks(h0);
}

const cases: Array<{ how: Misbehaviour; error: (e: Error) => boolean; reconnects: boolean }> = [
  {
    how: 'garbage',
    error: (e) =>
      e instanceof ClientDisconnected &&
      /protocol error: cannot decode a message from the server/.test(e.message),
    reconnects: true,
  },
  {
    how: 'unknown msgid',
    error: (e) =>
      e instanceof ClientDisconnected && /a reply to msgid \d+, which no call is waiting for/.test(e.message),
    reconnects: true,
  },
  {
    how: 'wrong shape',
    error: (e) => e instanceof ProtocolError && /loadBefore/.test(e.message),
    reconnects: false,
  },
  {
    how: 'cut mid-reply',
    error: (e) => e instanceof ClientDisconnected && /closed by peer/.test(e.message),
    reconnects: true,
  },
  {
    how: 'silence',
    error: (e) =>
      e instanceof ClientDisconnected && /the server stopped answering: no reply to a ping/.test(e.message),
    reconnects: true,
  },
];

for (const c of cases) {
  test(
    `a bad server answer (${c.how}) fails the affected call clearly, leaks nothing, and the client goes on`,
    { timeout: 30_000 },
    () =>
      // (a heartbeat this quick would give up a busy server too: only where silence is what is tested)
      throughProxy({ heartbeatInterval: c.how === 'silence' ? 50 : 60_000 }, async (s, proxy) => {
        let disconnects = 0;
        s.on('disconnect', () => disconnects++);
        const { oid, tid, data } = await commitNew(s, 7);
        proxy.arm(c.how);
        await assert.rejects(s.loadBefore(oid, maxtid), (e: Error) => {
          assert.ok(c.error(e), `${c.how}: ${e.name}: ${e.message}`);
          return true;
        });
        // the next load works: on the same connection, or on a new one
        const r = await retrying([], () => s.loadBefore(oid, maxtid));
        assert.ok(r);
        assert.deepEqual(Buffer.from(r.data), Buffer.from(data));
        assert.equal(idHex(r.start), idHex(tid));
        assert.equal(disconnects, c.reconnects ? 1 : 0);
        await waitUntil(() => proxy.open === 1, 'one connection through the proxy');
        // and commits too
        await retrying([], () => commitNew(s, 8));
      }),
  );
}

test(
  'a call with a timeout on a silent server fails alone with a transient CallTimeoutError',
  { timeout: 30_000 },
  () =>
    // the heartbeat would notice only after a minute: the call's own timeout speaks first
    throughProxy({ timeout: 200 }, async (s, proxy) => {
      const { oid } = await commitNew(s, 1);
      proxy.arm('silence');
      await assert.rejects(s.loadBefore(oid, maxtid), (e: Error) => {
        assert.ok(e instanceof CallTimeoutError, `${e.name}: ${e.message}`);
        assert.equal(e.transient, true);
        assert.match(e.message, /no reply to loadBefore within 200 ms/);
        return true;
      });
      assert.equal(s.isConnected(), true);
    }),
);

test(
  'read-only fallback through ClientStorage: read-only until the writable server comes, then writes and invalidations',
  { timeout: 30_000 },
  async () => {
    const ro = await startServer({ readOnly: true });
    const rwAddr = { host: '127.0.0.1', port: await freePort() };
    let rw: TestServer | null = null;
    const s = await ClientStorage.open(options([rwAddr, ro.address], { readOnlyFallback: true }));
    const seen: Invalidation[] = [];
    s.on('invalidations', (inv: Invalidation) => seen.push(inv));
    const events: string[] = [];
    s.on('connect', (e: { readOnly: boolean }) => events.push(e.readOnly ? 'connect read-only' : 'connect'));
    s.on('disconnect', () => events.push('disconnect'));
    try {
      assert.equal(s.isReadOnly(), true);
      await assert.rejects(commitNew(s, 1), (e: Error) => e.name === 'ReadOnlyError');
      rw = await startServer({ port: rwAddr.port });
      await waitUntil(
        () => events.includes('connect'),
        () => `the switch: ${events.join(', ')}`,
      );
      assert.deepEqual(events, ['disconnect', 'connect']);
      assert.equal(s.isReadOnly(), false);
      const mine = await commitNew(s, 2);
      await assertAllThere(s, [mine]);
      const other = await ClientStorage.open(options(rwAddr));
      try {
        const theirs = await commitNew(other, 3);
        await waitUntil(
          () => seen.some((i) => idHex(i.tid) === idHex(theirs.tid)),
          'their invalidation reaches us',
        );
        assert.equal(idHex(s.lastTransaction()), idHex(theirs.tid));
      } finally {
        await other.close();
      }
    } finally {
      await s.close();
      await ro.stop();
      await rw?.stop();
    }
  },
);

test(
  'with a cache: what changed while the client was away is not served stale once it is back',
  { timeout: 30_000 },
  async () => {
    const h0 = handles();
    const server = await startServer();
    const proxy = await startProxy(server.address as Address);
    const a = await ClientStorage.open(options(proxy.address, { cacheSize: 1 << 20 }));
    const b = await ClientStorage.open(options(server.address));
    const seen: Invalidation[] = [];
    a.on('invalidations', (inv: Invalidation) => seen.push(inv));
    const events: string[] = [];
    a.on('connect', () => events.push('connect'));
    a.on('disconnect', () => events.push('disconnect'));
    try {
      const first = await commitNew(a, 1);
      const loaded = await a.loadBefore(first.oid, maxtid);
      assert.deepEqual(Buffer.from(loaded!.data), Buffer.from(first.data));
      // a is cut off; b changes the object meanwhile
      proxy.refuse = true;
      proxy.cut();
      await waitUntil(() => events.includes('disconnect'), 'a notices');
      const t = new TransactionMetaData();
      await b.tpcBegin(t);
      await b.store(first.oid, first.tid, record(2), t);
      await b.tpcVote(t);
      const tid2 = await b.tpcFinish(t);
      // while away, a read waits and fails transiently (waitTimeout), or is served from the cache as of then
      proxy.refuse = false;
      await waitUntil(() => events.at(-1) === 'connect', 'a is back');
      const now = await a.loadBefore(first.oid, maxtid);
      assert.deepEqual(
        Buffer.from(now!.data),
        Buffer.from(record(2)),
        'the new revision, not the cached one',
      );
      assert.equal(idHex(now!.start), idHex(tid2));
      assert.equal(idHex(a.lastTransaction()), idHex(tid2));
      assert.ok(
        seen.some((i) => i.oids.some((o) => idHex(o) === idHex(first.oid))),
        'the change reached the application as an invalidation',
      );
      // the old revision is still there for MVCC readers
      const old = await a.loadBefore(first.oid, tid2);
      assert.deepEqual(Buffer.from(old!.data), Buffer.from(first.data));
    } finally {
      await a.close();
      await b.close();
      await proxy.close();
      await server.stop();
    }
    await assertNoLeaks(h0);
  },
);

test(
  'a transaction cut by a restart fails transiently, aborts cleanly, and leaves nothing behind',
  { timeout: 30_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-resilience-'));
    let server: TestServer | null = await startServer({ dir });
    const address = server.address as Address;
    const s = await ClientStorage.open(options(address));
    try {
      const oid = await s.newOid();
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      await s.store(oid, z64, record(5), t);
      await server.stop();
      server = null;
      await assert.rejects(s.tpcVote(t), (e: Error & { transient?: boolean }) => {
        assert.ok(e instanceof ClientDisconnected, `${e.name}: ${e.message}`);
        assert.equal(e.transient, true);
        return true;
      });
      await s.tpcAbort(t);
      server = await startServer({ dir, port: address.port });
      // the retry, as an application's transaction manager would do it
      const done = await retrying([], () => commitNew(s, 6));
      await assertAllThere(s, [done]);
      await assert.rejects(s.loadBefore(oid, maxtid), POSKeyError, 'the cut transaction left nothing');
    } finally {
      await s.close();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test(
  "runzeo (msgpack): a restart of Python's server costs only transient errors; data and invalidations as before",
  { skip: interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false, timeout: 60_000 },
  async () => {
    const py = await runzeo({ msgpack: true });
    const address = py.address;
    const a = await ClientStorage.open(options(address, { waitTimeout: 100 }));
    const b = await ClientStorage.open(options(address));
    const seen: Invalidation[] = [];
    a.on('invalidations', (inv: Invalidation) => seen.push(inv));
    const errors: Error[] = [];
    const committed: Array<{ oid: Oid; tid: Tid; data: Uint8Array }> = [];
    try {
      for (let n = 0; n < 3; n++) committed.push(await retrying(errors, () => commitNew(a, n)));
      await py.stop();
      await assert.rejects(commitNew(a, 99), (e: Error & { transient?: boolean }) => e.transient === true);
      await py.start();
      for (let n = 3; n < 6; n++) committed.push(await retrying(errors, () => commitNew(a, n)));
      assert.ok(errors.every((e) => e instanceof ClientDisconnected));
      await assertAllThere(a, committed);
      const theirs = await retrying([], () => commitNew(b, 7));
      await waitUntil(() => seen.some((i) => idHex(i.tid) === idHex(theirs.tid)), "b's commit reaches a");
      await assertAllThere(b, committed);
    } finally {
      await a.close();
      await b.close();
      await py.dispose();
    }
  },
);
