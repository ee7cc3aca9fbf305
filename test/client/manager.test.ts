// The ConnectionManager against real servers started and stopped by each test (zeo serve in this process, and
// Python's runzeo as a child process): reconnecting after a restart, failing over between two addresses, the
// read-only fallback and the move back to a writable server, newAddr, waitTimeout, and close() leaving nothing.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ClientConnection, ClientDisconnected } from '../../src/client/index.js';
import {
  ConnectionManager,
  type ConnectEvent,
  type ConnectionManagerOptions,
} from '../../src/client/manager.js';
import type { PickleValue } from '../../src/pickle/index.js';
import { encodeFrame } from '../../src/protocol/index.js';
import { ReadOnlyError } from '../../src/storage/errors.js';
import { z64 } from '../../src/storage/ids.js';
import { interopDisabled } from '../helpers/oracle.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { runzeo } from '../helpers/runzeo.js';
import { freePort, stopLeftovers } from '../helpers/server-process.js';
import { assertNoLeaks, handles } from '../helpers/leaks.js';
import { waitUntil } from '../helpers/wait.js';

after(stopLeftovers);

type Address = { host: string; port: number };

interface Recorder {
  manager: ConnectionManager;
  events: string[];
  connects: ConnectEvent[];
  calls: Array<[string, PickleValue[]]>;
  registered: Array<{ address: string; readOnly: boolean }>;
  /** each 'disconnect': the connection left, and the manager's connection at that moment */
  disconnects: Array<{ left: ClientConnection; current: ClientConnection | null }>;
}

/** A manager whose register step calls `register` on the wire, recording what happens. */
function manage(
  options: Partial<ConnectionManagerOptions> & { addresses: ConnectionManagerOptions['addresses'] },
): Recorder {
  const rec: Recorder = {
    manager: null!,
    events: [],
    connects: [],
    calls: [],
    registered: [],
    disconnects: [],
  };
  rec.manager = new ConnectionManager({
    readOnly: false,
    readOnlyFallback: false,
    waitTimeout: 10_000,
    minDisconnectPoll: 20,
    maxDisconnectPoll: 200,
    async register(conn, readOnly) {
      await conn.call('register', ['1', readOnly]);
      rec.registered.push({ address: String(conn.encoding), readOnly });
    },
    onServerCall(_conn, name, args) {
      rec.calls.push([name, args]);
    },
    ...options,
  });
  rec.manager.on('connect', (e: ConnectEvent) => {
    rec.connects.push(e);
    rec.events.push(`connect ${port(e.address)}${e.readOnly ? ' read-only' : ''}`);
  });
  rec.manager.on('disconnect', (reason: ClientDisconnected, left: ClientConnection) => {
    assert.ok(reason instanceof ClientDisconnected);
    assert.ok(left instanceof ClientConnection);
    rec.disconnects.push({ left, current: rec.manager.connection });
    rec.events.push('disconnect');
  });
  return rec;
}

function port(a: unknown): number {
  return (a as Address).port;
}

/** A free port with nothing listening on it (for a server started later). */
async function deadAddress(): Promise<Address> {
  return { host: '127.0.0.1', port: await freePort() };
}

/** Commits one record through a connection of its own, so that registered clients get an invalidation. */
async function commitOne(address: Address): Promise<Uint8Array> {
  const c = await ClientConnection.connect(address, { timeout: 10_000 });
  try {
    await c.call('register', ['1', false]);
    const [oid] = (await c.call('new_oids', [1])) as Uint8Array[];
    c.callAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.callAsync('storea', [oid, z64, new Uint8Array([0x80, 0x03, 0x4b, 1, 0x2e]), 1]);
    await c.call('vote', [1]);
    return (await c.call('tpc_finish', [1])) as Uint8Array;
  } finally {
    await c.close();
  }
}

test(
  'reconnects after a server restart; callers wait, and the current connection gets invalidations',
  { timeout: 30_000 },
  async () => {
    const h0 = handles();
    // a directory of our own: the data outlives the first server
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-manager-'));
    let server: TestServer = await startServer({ dir });
    const address = server.address as Address;
    const rec = manage({ addresses: [address] });
    const m = rec.manager;
    try {
      m.start();
      const c1 = await m.ready();
      assert.equal(m.connection, c1);
      assert.equal(m.readOnly, false);
      assert.deepEqual(m.address, address);
      assert.deepEqual(rec.events, [`connect ${address.port}`]);
      const tid = await commitOne(address);
      await waitUntil(() => rec.calls.length === 1, 'the invalidation');
      assert.equal(rec.calls[0][0], 'invalidateTransaction');
      assert.deepEqual(Buffer.from(rec.calls[0][1][0] as Uint8Array), Buffer.from(tid));

      // the server goes away: the connection is dropped, callers wait (and time out) with the reason
      await server.stop();
      await waitUntil(() => rec.events.length === 2, 'the disconnect event');
      assert.equal(rec.events[1], 'disconnect');
      assert.equal(m.connection, null);
      const started = Date.now();
      await assert.rejects(m.ready({ timeout: 150 }), (e: Error) => {
        assert.ok(e instanceof ClientDisconnected);
        assert.equal(e.transient, true);
        assert.match(e.message, /no connection to a server within 150 ms/);
        assert.match(e.message, new RegExp(`servers: 127\\.0\\.0\\.1:${address.port}`));
        return true;
      });
      assert.ok(Date.now() - started >= 140);
      // a caller waiting now gets the connection once the server is back (same port, same data)
      const waiting = m.ready();
      server = await startServer({ port: address.port, dir });
      const c2 = await waiting;
      assert.notEqual(c2, c1);
      assert.equal(c1.connected, false);
      assert.deepEqual(rec.events, [`connect ${address.port}`, 'disconnect', `connect ${address.port}`]);
      assert.deepEqual(await c2.call('lastTransaction'), tid, 'committed data is there after the restart');
      assert.deepEqual(rec.disconnects, [{ left: c1, current: null }]);
    } finally {
      await m.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(m.ready(), /the client is closed/);
    await assertNoLeaks(h0);
  },
);

test('fails over between two addresses, and back', { timeout: 30_000 }, async () => {
  const servers: Array<TestServer | null> = [await startServer(), await startServer()];
  const addrs = servers.map((s) => s!.address as Address);
  const rec = manage({ addresses: addrs });
  const m = rec.manager;
  const at = (): number => addrs.findIndex((a) => a.port === port(m.address));
  try {
    m.start();
    await m.ready();
    const first = at();
    assert.ok(first >= 0);
    // only one connection stays: the other attempt stopped (the server counts its connections)
    await waitUntil(
      () => servers.reduce((n, s) => n + s!.server['connections'].size, 0) === 1,
      'one connection between the two servers',
    );
    // stop the one we are on: the client moves to the other
    await servers[first]!.stop();
    servers[first] = null;
    const c = await m.ready();
    assert.equal(at(), 1 - first);
    assert.equal(await c.call('ping'), null);
    // the first comes back and the second goes: back to the first
    servers[first] = await startServer({ port: addrs[first].port });
    await servers[1 - first]!.stop();
    servers[1 - first] = null;
    const back = await m.ready();
    assert.equal(at(), first);
    assert.equal(await back.call('ping'), null);
    const ports = addrs.map((a) => a.port);
    assert.deepEqual(rec.events, [
      `connect ${ports[first]}`,
      'disconnect',
      `connect ${ports[1 - first]}`,
      'disconnect',
      `connect ${ports[first]}`,
    ]);
  } finally {
    await m.close();
    for (const s of servers) await s?.stop();
  }
});

test(
  'read-only fallback: a read-only server for now, then the writable one when it comes',
  { timeout: 30_000 },
  async () => {
    const h0 = handles();
    const ro = await startServer({ readOnly: true });
    const rwAddr = await deadAddress();
    const rec = manage({ addresses: [rwAddr, ro.address], readOnlyFallback: true });
    const m = rec.manager;
    let rw: TestServer | null = null;
    try {
      m.start();
      const c1 = await m.ready();
      assert.equal(m.readOnly, true);
      assert.deepEqual(rec.events, [`connect ${port(ro.address)} read-only`]);
      assert.deepEqual(
        rec.registered.map((r) => r.readOnly),
        [true],
        'the writable registration failed with ReadOnlyError, the read-only one took',
      );
      await assert.rejects(c1.call('new_oids', [1]), ReadOnlyError);
      // the writable server comes up: the client switches to it and closes the read-only connection
      rw = await startServer({ port: rwAddr.port });
      await waitUntil(
        () => rec.events.length === 3,
        () => `the switch: ${rec.events.join(', ')}`,
      );
      assert.deepEqual(rec.events, [
        `connect ${port(ro.address)} read-only`,
        'disconnect',
        `connect ${rwAddr.port}`,
      ]);
      const c2 = await m.ready();
      assert.equal(m.readOnly, false);
      assert.equal(((await c2.call('new_oids', [1])) as Uint8Array[]).length, 1);
      await c1.closed;
      assert.equal(c1.connected, false);
      assert.deepEqual(
        rec.disconnects,
        [{ left: c1, current: c2 }],
        'a switch: the new one is current already',
      );
      // it stopped looking: the read-only server holds no connection from us
      await waitUntil(() => ro.server['connections'].size === 0, 'the read-only server is left');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(ro.server['connections'].size, 0, 'and not tried again');
    } finally {
      await m.close();
      await ro.stop();
      await rw?.stop();
    }
    await assertNoLeaks(h0);
  },
);

test(
  'without the fallback a read-only server is a failed attempt; readOnly registers read-only anywhere',
  { timeout: 30_000 },
  async () => {
    const ro = await startServer({ readOnly: true });
    const rw = await startServer();
    try {
      const strict = manage({ addresses: [ro.address], waitTimeout: 300 });
      strict.manager.start();
      await assert.rejects(strict.manager.ready(), (e: Error) => {
        assert.ok(e instanceof ClientDisconnected);
        assert.match(e.message, /no connection to a server within 300 ms/);
        assert.match(e.message, /last error: 127\.0\.0\.1:\d+ is read-only/);
        return true;
      });
      assert.deepEqual(strict.events, []);
      await strict.manager.close();

      for (const server of [ro, rw]) {
        const reader = manage({ addresses: [server.address], readOnly: true });
        reader.manager.start();
        const c = await reader.manager.ready();
        assert.equal(reader.manager.readOnly, true);
        assert.deepEqual(reader.registered, [{ address: c.encoding, readOnly: true }]);
        await assert.rejects(c.call('new_oids', [1]), ReadOnlyError);
        await reader.manager.close();
      }
    } finally {
      await ro.stop();
      await rw.stop();
    }
  },
);

test(
  'newAddr switches servers while running, and gives a disconnected client somewhere to go',
  { timeout: 30_000 },
  async () => {
    const a = await startServer();
    const b = await startServer();
    const dead = await deadAddress();
    const rec = manage({ addresses: [a.address] });
    const m = rec.manager;
    try {
      m.start();
      await m.ready();
      // the same address kept: nothing happens
      m.newAddr([a.address, dead]);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(rec.events, [`connect ${port(a.address)}`]);
      // the current address gone: dropped, and the new list tried
      m.newAddr([b.address]);
      await waitUntil(() => rec.events.length === 3, 'the move to b');
      assert.deepEqual(rec.events, [
        `connect ${port(a.address)}`,
        'disconnect',
        `connect ${port(b.address)}`,
      ]);
      assert.deepEqual(m.address, b.address);
      await waitUntil(() => a.server['connections'].size === 0, 'a is left');
      // disconnected, trying a dead address: a new list gets it connected
      m.newAddr([dead]);
      await waitUntil(() => rec.events.length === 4, 'the drop from b');
      await assert.rejects(m.ready({ timeout: 100 }), /ECONNREFUSED/);
      m.newAddr([a.address]);
      const c = await m.ready({ timeout: 5000 });
      assert.equal(await c.call('ping'), null);
      assert.deepEqual(m.address, a.address);
    } finally {
      await m.close();
      await a.stop();
      await b.stop();
    }
  },
);

test(
  'waitTimeout: a caller waits that long, then ClientDisconnected with the last error; close() fails waiters and leaves nothing',
  { timeout: 30_000 },
  async () => {
    const h0 = handles();
    const dead = await deadAddress();
    const rec = manage({ addresses: [dead], waitTimeout: 250 });
    const m = rec.manager;
    m.start();
    const started = Date.now();
    await assert.rejects(m.ready(), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.equal(e.transient, true);
      assert.match(
        e.message,
        new RegExp(
          `no connection to a server within 250 ms \\(servers: 127\\.0\\.0\\.1:${dead.port}\\); last error: .*ECONNREFUSED`,
        ),
      );
      return true;
    });
    const waited = Date.now() - started;
    assert.ok(waited >= 240 && waited < 5000, `waited ${waited} ms`);
    assert.match(String(m.lastConnectError?.message), /ECONNREFUSED/);
    // a call timeout of 0 (no limit on the reply) still waits only waitTimeout for a connection
    await assert.rejects(m.ready({ timeout: 0 }), /no connection to a server within 250 ms/);
    const impatient = manage({ addresses: [dead], waitTimeout: 0 });
    impatient.manager.start();
    await assert.rejects(impatient.manager.ready(), /^ClientDisconnected: not connected \(servers: /);
    await impatient.manager.close();
    // a signal ends the wait early with its reason
    const ac = new AbortController();
    const aborted = m.ready({ signal: ac.signal });
    ac.abort(new Error('the caller gave up'));
    await assert.rejects(aborted, /the caller gave up/);
    // close() fails the callers still waiting and stops the attempts
    const waiting = m.ready({ timeout: 60_000 });
    await m.close();
    await assert.rejects(waiting, (e: Error) => e instanceof ClientDisconnected && /closed/.test(e.message));
    await assertNoLeaks(h0);
    assert.deepEqual(rec.events, []);
  },
);

test(
  'server calls that arrive while a connection registers wait for it, then come in order',
  { timeout: 30_000 },
  async () => {
    const s = await startServer();
    const address = s.address as Address;
    let duringRegister = -1;
    const rec = manage({
      addresses: [address],
      async register(conn, readOnly) {
        await conn.call('register', ['1', readOnly]);
        // another client commits; its invalidation reaches us before the reply to the call after it
        await commitOne(address);
        await commitOne(address);
        await conn.call('lastTransaction');
        duringRegister = rec.calls.length;
      },
    });
    try {
      rec.manager.start();
      await rec.manager.ready();
      assert.equal(duringRegister, 0, 'nothing delivered while registering');
      await waitUntil(() => rec.calls.length === 2, 'the two held invalidations');
      const tids = rec.calls.map(([n, args]) => `${n} ${Buffer.from(args[0] as Uint8Array).toString('hex')}`);
      assert.ok(tids[0] < tids[1], `in order: ${tids.join(', ')}`);
      const tid = await commitOne(address);
      await waitUntil(() => rec.calls.length === 3, 'a later invalidation');
      assert.deepEqual(Buffer.from(rec.calls[2][1][0] as Uint8Array), Buffer.from(tid));
    } finally {
      await rec.manager.close();
      await s.stop();
    }
  },
);

test(
  "runzeo: a client on Python's server fails over to zeo serve when it stops",
  { skip: interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false, timeout: 60_000 },
  async () => {
    const py = await runzeo();
    const pyAddr = py.address;
    const ours = await startServer();
    const rec = manage({ addresses: [pyAddr] });
    const m = rec.manager;
    try {
      m.start();
      const c1 = await m.ready();
      const tid = await commitOne(pyAddr);
      await waitUntil(() => rec.calls.length === 1, 'the invalidation from runzeo');
      assert.deepEqual(await c1.call('lastTransaction'), tid);
      m.newAddr([pyAddr, ours.address]);
      assert.deepEqual(m.address, pyAddr, 'still on runzeo');
      await py.stop();
      const c2 = await m.ready();
      assert.deepEqual(m.address, ours.address);
      assert.deepEqual(await c2.call('lastTransaction'), z64);
      assert.deepEqual(rec.events, [`connect ${pyAddr.port}`, 'disconnect', `connect ${port(ours.address)}`]);
    } finally {
      await m.close();
      await py.dispose();
      await ours.stop();
    }
  },
);

test(
  'a unix socket address (a plain path), reconnected after its server restarts',
  { timeout: 30_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-manager-unix-'));
    let server: TestServer | null = await startServer({ unix: true, dir });
    const path = (server.address as { path: string }).path;
    const rec = manage({ addresses: [path] });
    const m = rec.manager;
    try {
      m.start();
      const c1 = await m.ready();
      assert.equal(m.address, path);
      assert.deepEqual(await c1.call('lastTransaction'), z64);
      await server.stop();
      server = null;
      await waitUntil(() => rec.events.includes('disconnect'), 'the disconnect');
      server = await startServer({ unix: true, dir });
      const c2 = await m.ready();
      assert.notEqual(c2, c1);
      assert.equal(await c2.call('ping'), null);
    } finally {
      await m.close();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test(
  'a server that never answers register holds the others back only registerTimeout',
  { timeout: 30_000 },
  async () => {
    const h0 = handles();
    const registers: net.Socket[] = [];
    const mute = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.once('data', () => registers.push(sock));
      sock.write(encodeFrame(Buffer.from('Z5')));
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    const muteAddr = { host: '127.0.0.1', port: (mute.address() as net.AddressInfo).port };
    const good = await startServer();
    const rec = manage({ addresses: [muteAddr], registerTimeout: 300 });
    const m = rec.manager;
    try {
      m.start();
      await waitUntil(() => registers.length === 1, 'the mute server got the handshake');
      // the good server is added while the mute one's registration runs: it waits its turn, then wins
      const started = Date.now();
      m.newAddr([muteAddr, good.address]);
      const c = await m.ready({ timeout: 10_000 });
      assert.ok(Date.now() - started < 5000);
      assert.deepEqual(m.address, good.address);
      assert.match(String(m.lastConnectError?.message), /registering with 127\.0\.0\.1:\d+ took over 300 ms/);
      assert.equal(await c.call('ping'), null);
    } finally {
      await m.close();
      await good.stop();
      for (const s of registers) s.destroy();
      await new Promise((r) => mute.close(r));
    }
    await assertNoLeaks(h0);
  },
);
