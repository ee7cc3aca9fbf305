// The client connection against real servers (zeo serve in this process, Python's runzeo as a child process, in
// pickle and msgpack), and against bad servers on a raw socket: garbage, replies nobody waits for, wrong reply
// shapes, a cut mid-frame, silence. Every failure reaches the calls it concerns, and nothing is left behind.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { getEventListeners } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  CallTimeoutError,
  ClientConnection,
  ClientDisconnected,
  DEFAULT_MAX_MESSAGE_SIZE,
} from '../../src/client/index.js';
import { dumps, pyRepr, tuple, type PickleValue } from '../../src/pickle/index.js';
import { codecFor, encodeFrame, FrameDecoder, type Message } from '../../src/protocol/index.js';
import { POSKeyError } from '../../src/storage/errors.js';
import { maxtid, p64, z64 } from '../../src/storage/ids.js';
import { serverTlsOptions } from '../../src/transport/tls.js';
import { noOpenssl, selfSignedPair } from '../helpers/openssl.js';
import { scriptedServer } from '../helpers/scripted-server.js';
import { interopDisabled } from '../helpers/oracle.js';
import { startServer } from '../helpers/server-fixture.js';
import { runzeo } from '../helpers/runzeo.js';
import { stopLeftovers } from '../helpers/server-process.js';
import { waitUntil } from '../helpers/wait.js';

after(stopLeftovers);

type Address = { host: string; port: number } | { path: string };

interface Running {
  address: Address;
  stop(): Promise<void>;
}

async function startRunzeo(msgpack: boolean): Promise<Running> {
  const r = await runzeo({ msgpack });
  return { address: r.address, stop: () => r.dispose() };
}

async function startOurs(msgpack: boolean, unix: boolean): Promise<Running> {
  const s = await startServer({ msgpack, unix });
  return { address: s.address, stop: () => s.stop() };
}

const rec = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n & 0xff, 0x2e]);
const empty = new Uint8Array(0);

function field(d: PickleValue, key: string): PickleValue | undefined {
  assert.ok(d instanceof Map, `a dict, not ${pyRepr(d)}`);
  return d.get(key);
}

/** Timers this process holds (a leaked call timeout or heartbeat would show here). */
function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

const servers: Array<{ name: string; start(msgpack: boolean): Promise<Running>; interop: boolean }> = [
  { name: 'zeo serve (TCP)', start: (m) => startOurs(m, false), interop: false },
  { name: 'zeo serve (unix socket)', start: (m) => startOurs(m, true), interop: false },
  { name: 'runzeo', start: startRunzeo, interop: true },
];

for (const target of servers) {
  for (const msgpack of [false, true]) {
    const name = `${target.name}, ${msgpack ? 'msgpack' : 'pickle'}: register, reads, a commit, and the invalidation another connection receives`;
    const skip = target.interop && interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false;
    test(name, { skip, timeout: 60_000 }, async () => {
      const server = await target.start(msgpack);
      const received: Array<[string, PickleValue[]]> = [];
      let a: ClientConnection | null = null;
      let b: ClientConnection | null = null;
      try {
        a = await ClientConnection.connect(server.address, { timeout: 20_000 });
        b = await ClientConnection.connect(server.address, {
          timeout: 20_000,
          onServerCall: (n, args) => void received.push([n, args]),
        });
        assert.equal(a.encoding, msgpack ? 'M' : 'Z');
        const registered = await a.call('register', ['1', false]);
        assert.deepEqual(registered, z64, 'an empty storage: register returns z64');
        await b.call('register', ['1', false]);
        assert.deepEqual(await a.call('lastTransaction'), z64);

        const info = await a.call('get_info');
        assert.equal(field(info, 'supportsUndo'), true);
        assert.equal(typeof field(info, 'name'), 'string');
        assert.equal(typeof field(info, 'size'), 'number');

        const oids = (await a.call('new_oids', [3])) as Uint8Array[];
        assert.equal(oids.length, 3);
        assert.equal(new Set(oids.map((o) => Buffer.from(o).toString('hex'))).size, 3);

        const missing = p64(123_456n);
        await assert.rejects(a.call('loadBefore', [missing, maxtid]), (e: unknown) => {
          assert.ok(e instanceof POSKeyError, `POSKeyError, not ${String(e)}`);
          assert.deepEqual(Buffer.from(e.oid), Buffer.from(missing));
          return true;
        });

        // a commit: begin, store and the one-way calls, then vote and finish (sync)
        const oid = oids[0];
        a.callAsync('tpc_begin', [1, empty, new Uint8Array(Buffer.from('t1')), new Map(), null, ' ']);
        a.callAsync('storea', [oid, z64, rec(7), 1]);
        await a.call('vote', [1]);
        const tid = (await a.call('tpc_finish', [1])) as Uint8Array;
        assert.equal(tid.length, 8);
        assert.deepEqual(await a.call('lastTransaction'), tid);
        const loaded = (await a.call('loadBefore', [oid, maxtid])) as PickleValue[];
        assert.deepEqual(
          [Buffer.from(loaded[0] as Uint8Array), Buffer.from(loaded[1] as Uint8Array), loaded[2]],
          [Buffer.from(rec(7)), Buffer.from(tid), null],
        );

        await waitUntil(() => received.length > 0, 'the invalidation reaches the other connection');
        assert.equal(received.length, 1);
        const [callName, args] = received[0];
        assert.equal(callName, 'invalidateTransaction');
        assert.deepEqual(Buffer.from(args[0] as Uint8Array), Buffer.from(tid));
        assert.deepEqual(
          (args[1] as Uint8Array[]).map((o) => Buffer.from(o)),
          [Buffer.from(oid)],
        );
        assert.equal(a.pendingCalls, 0);

        const reason = await a.close();
        assert.ok(reason instanceof ClientDisconnected);
        assert.equal(a.connected, false);
        await assert.rejects(a.call('lastTransaction'), ClientDisconnected);
      } finally {
        await a?.close();
        await b?.close();
        await server.stop();
      }
    });
  }
}

test(
  'TLS: the server checked against its certificate and its name (unless check-hostname is off), a client certificate presented; a wrong CA is refused',
  { skip: noOpenssl, timeout: 60_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-client-tls-'));
    const p = (name: string): string => join(dir, name);
    // self-signed both: each side's certificate is the other's CA
    const ssl = selfSignedPair(dir);
    const s = await startServer({ tls: serverTlsOptions(ssl('server', 'client')) });
    try {
      const c = await ClientConnection.connect(s.address, { tls: ssl('client', 'server') });
      assert.deepEqual(await c.call('register', ['1', false]), z64);
      assert.deepEqual(await c.call('lastTransaction'), z64);
      await c.close();
      // hostname checking (<ssl> check-hostname, server-hostname): the certificate names localhost and 127.0.0.1
      const named = await ClientConnection.connect(s.address, {
        tls: { ...ssl('client', 'server'), serverHostname: 'localhost' },
      });
      await named.close();
      const otherName = { ...ssl('client', 'server'), serverHostname: 'db.example.org' };
      await assert.rejects(ClientConnection.connect(s.address, { tls: otherName }), (e: Error) => {
        assert.ok(e instanceof ClientDisconnected);
        assert.match(e.message, /does not match certificate's altnames|db\.example\.org/);
        return true;
      });
      const unchecked = await ClientConnection.connect(s.address, {
        tls: { ...otherName, checkHostname: false },
      });
      assert.deepEqual(await unchecked.call('register', ['1', false]), z64);
      await unchecked.close();
      // a certificate file that is not there: connect rejects (it does not throw)
      const missing = { ...ssl('client', 'server'), certificate: p('nowhere.pem') };
      await assert.rejects(ClientConnection.connect(s.address, { tls: missing }), /ENOENT/);
      // the client trusting only its own certificate refuses the server's
      await assert.rejects(
        ClientConnection.connect(s.address, { tls: ssl('client', 'client') }),
        (e: Error) => {
          assert.ok(e instanceof ClientDisconnected);
          assert.match(e.message, /self[- ]signed certificate/i);
          return true;
        },
      );
    } finally {
      await s.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

// ---------------------------------------------------------------------------------------------------------
// Bad servers: a raw socket that greets properly, then misbehaves

const badServer = scriptedServer;

describe('bad servers', () => {
  test('garbage after the greeting fails every waiting call with ClientDisconnected', async () => {
    const t0 = timers();
    const bad = await badServer('Z5', (_m, s) => {
      if (s.calls.length === 2) s.send(new Uint8Array([1, 2, 3, 4]));
    });
    const c = await ClientConnection.connect(bad.address, { timeout: 10_000 });
    const calls = [c.call('lastTransaction'), c.call('get_info')];
    for (const p of calls) await assert.rejects(p, /ClientDisconnected|protocol error: cannot decode/);
    const reason = await c.closed;
    assert.ok(reason instanceof ClientDisconnected);
    assert.equal(reason.transient, true);
    assert.equal(reason.pythonName, 'ZEO.Exceptions.ClientDisconnected');
    assert.match(reason.message, /protocol error: cannot decode a message from the server/);
    assert.equal(c.pendingCalls, 0);
    assert.equal(timers(), t0, 'no timer left');
    await bad.close();
  });

  test('a reply to a msgid nobody waits for ends the connection', async () => {
    const bad = await badServer('Z5', (m, s) => s.send(s.codec.encodeReply(Number(m.msgid) + 1000, null)));
    const c = await ClientConnection.connect(bad.address);
    await assert.rejects(c.call('lastTransaction'), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /a reply to msgid 1001, which no call is waiting for/);
      return true;
    });
    assert.equal(c.pendingCalls, 0);
    await bad.close();
  });

  test('an error reply that is not a (class, args) pair, and a message that is not a 4-tuple', async () => {
    const bad = await badServer('Z5', (m, s) => {
      if (m.name === 'a') s.send(s.codec.encodeError(m.msgid, 'builtins.KeyError', tuple('k')));
      if (m.name === 'b') s.send(pickledTuple(m.msgid, 2, '.reply', 'just a string'));
    });
    const c = await ClientConnection.connect(bad.address);
    await assert.rejects(c.call('a'), (e: Error) => {
      // a well-formed error reply fails only its call
      assert.equal(e.name, 'ServerException');
      assert.match(e.message, /KeyError/);
      return true;
    });
    assert.equal(c.connected, true);
    const other = c.call('lastTransaction');
    await assert.rejects(c.call('b'), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /an error reply to b is not a \(class name, args\) pair/);
      return true;
    });
    await assert.rejects(other, ClientDisconnected, 'the other waiting call fails too');
    assert.equal(c.pendingCalls, 0);
    await bad.close();

    const bad2 = await badServer('Z5', (_m, s) => s.send(pickledTuple(1, 0, '.reply')));
    const c2 = await ClientConnection.connect(bad2.address);
    await assert.rejects(c2.call('lastTransaction'), /a message is a 4-tuple/);
    await bad2.close();
  });

  test('a cut in the middle of a reply fails the waiting calls', async () => {
    const bad = await badServer('Z5', (m, _s, sock) => {
      const reply = encodeFrame(codecFor('Z', 'server').encodeReply(m.msgid, new Uint8Array(1000)));
      sock.end(reply.subarray(0, 100));
    });
    const c = await ClientConnection.connect(bad.address);
    await assert.rejects(c.call('loadBefore', [z64, maxtid]), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /closed by peer/);
      return true;
    });
    assert.match((await c.closed).message, /closed by peer/);
    assert.equal(c.pendingCalls, 0);
    await bad.close();
  });

  test('a server that stops answering: the call times out or is aborted alone; late replies are ignored', async () => {
    const t0 = timers();
    const held: Message[] = [];
    const bad = await badServer('Z5', (m, s) => {
      if (m.name === 'answer') {
        // the late replies first, then this one
        for (const h of held) s.send(s.codec.encodeReply(h.msgid, 'late'));
        s.send(s.codec.encodeReply(m.msgid, 'on time'));
      } else held.push(m);
    });
    const c = await ClientConnection.connect(bad.address, { timeout: 60_000 });
    const started = Date.now();
    await assert.rejects(c.call('silent', [], { timeout: 50 }), (e: Error) => {
      assert.ok(e instanceof CallTimeoutError);
      assert.match(e.message, /no reply to silent within 50 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
    const ac = new AbortController();
    const aborted = c.call('silent', [], { signal: ac.signal });
    ac.abort(new Error('the caller gave up'));
    await assert.rejects(aborted, /the caller gave up/);
    const pre = new AbortController();
    pre.abort(new Error('before it started'));
    await assert.rejects(c.call('never sent', [], { signal: pre.signal }), /before it started/);
    assert.equal(c.pendingCalls, 0);
    await waitUntil(() => held.length === 2, 'the server got both calls');
    const kept = new AbortController();
    assert.equal(
      await c.call('answer', [], { signal: kept.signal, timeout: 5000 }),
      'on time',
      'the connection still works after the late replies',
    );
    assert.equal(getEventListeners(kept.signal, 'abort').length, 0, 'the abort listener is removed');
    assert.equal(c.connected, true);
    await c.close();
    assert.equal(c.pendingCalls, 0);
    assert.equal(timers(), t0, 'no timer left');
    await bad.close();
  });

  test('the server calling the client for a reply is a protocol error; its one-way calls come in order', async () => {
    const got: string[] = [];
    let release!: () => void;
    const bad = await badServer('Z5', (m, s) => {
      if (m.name === 'go') {
        s.send(s.codec.encodeAsync('info', [1]));
        s.send(s.codec.encodeAsync('info', [2]));
        s.send(s.codec.encodeReply(m.msgid, null));
      } else s.send(s.codec.encodeCall(9, false, 'invalidateTransaction', [z64, []]));
    });
    const c = await ClientConnection.connect(bad.address, {
      onServerCall: (n, args) => {
        got.push(`${n} ${pyRepr(args[0])}`);
        // the first is slow: the second, and the reply behind it, wait for it
        if (args[0] === 1) return new Promise<void>((r) => (release = r));
      },
    });
    const go = c.call('go');
    await waitUntil(() => got.length === 1, 'the first one-way call');
    let done = false;
    void go.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(got, ['info 1']);
    assert.equal(done, false, 'the reply waits behind the one-way call being handled');
    release();
    assert.equal(await go, null);
    assert.deepEqual(got, ['info 1', 'info 2']);
    await assert.rejects(c.call('sync please'), /the server called invalidateTransaction expecting a reply/);
    await bad.close();
  });

  test("a handler that fails on the server's one-way call ends the connection", async () => {
    const bad = await badServer('Z5', (m, s) => {
      s.send(s.codec.encodeAsync('info', [new Map()]));
      s.send(s.codec.encodeReply(m.msgid, null));
    });
    const c = await ClientConnection.connect(bad.address, {
      onServerCall: () => {
        throw new Error('cannot take it');
      },
    });
    await assert.rejects(c.call('lastTransaction'), /handling the server's info failed: cannot take it/);
    assert.match((await c.closed).message, /cannot take it/);
    await bad.close();
  });

  test('a bad or missing greeting rejects connect', async () => {
    const old = await badServer('Z4');
    await assert.rejects(ClientConnection.connect(old.address), /older than protocol 5/);
    await old.close();
    const mute = await badServer(null);
    await assert.rejects(
      ClientConnection.connect(mute.address, { connectTimeout: 100 }),
      /no greeting from 127\.0\.0\.1:\d+ within 100 ms/,
    );
    await mute.close();
    const port = mute.address.port;
    await assert.rejects(ClientConnection.connect({ host: '127.0.0.1', port }), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /ECONNREFUSED/);
      return true;
    });
  });

  test('a frame over the bounded default maxMessageSize (or a configured one) ends the connection', async () => {
    assert.equal(DEFAULT_MAX_MESSAGE_SIZE, 256 * 1024 * 1024);
    // only the 4-byte header of a 300 MiB frame: refused before anything is buffered
    const huge = await badServer('Z5', (_m, _s, sock) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(300 * 1024 * 1024);
      sock.write(head);
    });
    const c = await ClientConnection.connect(huge.address);
    await assert.rejects(c.call('loadBefore', [z64, maxtid]), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /frame of 314572800 bytes announced, more than the limit of 268435456/);
      return true;
    });
    await huge.close();
    const big = await badServer('Z5', (m, s) => s.send(s.codec.encodeReply(m.msgid, new Uint8Array(5000))));
    const small = await ClientConnection.connect(big.address, { limits: { maxMessageSize: 4096 } });
    await assert.rejects(small.call('loadBefore', [z64, maxtid]), /more than the limit of 4096/);
    const roomy = await ClientConnection.connect(big.address, { limits: { maxMessageSize: 8192 } });
    assert.equal(((await roomy.call('loadBefore', [z64, maxtid])) as Uint8Array).length, 5000);
    await roomy.close();
    await big.close();
  });

  test('connect gives up when its signal aborts', async () => {
    const t0 = timers();
    const mute = await badServer(null);
    const ac = new AbortController();
    const connecting = ClientConnection.connect(mute.address, { signal: ac.signal, connectTimeout: 60_000 });
    await waitUntil(() => mute.sockets.length === 1, 'the server accepted');
    ac.abort(new Error('not needed any more'));
    await assert.rejects(connecting, (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /given up: Error: not needed any more/);
      return true;
    });
    await assert.rejects(
      ClientConnection.connect(mute.address, { signal: ac.signal }),
      /not needed any more/,
    );
    assert.equal(timers(), t0, 'no timer left');
    await mute.close();
  });

  test('heartbeatTimeout: a server that keeps the socket but stops answering is given up; one that answers is kept', async () => {
    const t0 = timers();
    // it answers register, then nothing
    const silent = await badServer('Z5', (m, s) => {
      if (m.name === 'register') s.send(s.codec.encodeReply(m.msgid, z64));
    });
    const c = await ClientConnection.connect(silent.address, { heartbeatInterval: 20, heartbeatTimeout: 60 });
    // no ping before register is answered (servers hang up on any other call before it)
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      silent.calls.map((m) => m.name),
      [],
    );
    assert.deepEqual(await c.call('register', ['1', false]), z64);
    const started = Date.now();
    await assert.rejects(c.call('lastTransaction'), (e: Error) => {
      assert.ok(e instanceof ClientDisconnected);
      assert.match(e.message, /the server stopped answering: no reply to a ping within \d+ ms/);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
    assert.ok(
      silent.calls.some((m) => m.name === 'ping'),
      'it pinged',
    );
    assert.equal(c.pendingCalls, 0);
    await silent.close();
    assert.equal(timers(), t0, 'no timer left');

    const s = await startServer();
    try {
      // (pings every 20 ms; a loaded machine may take a while to answer one, hence the roomy timeout)
      const ok = await ClientConnection.connect(s.address, { heartbeatInterval: 20, heartbeatTimeout: 2000 });
      // a connection waiting a while for its turn to register is not pinged (the server would hang up)
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(ok.connected, true, 'unregistered and idle, still there');
      await ok.call('register', ['1', false]);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(ok.connected, true, 'a server answering its pings is kept');
      // (at most the ping of this moment is out)
      assert.ok(ok.pendingCalls <= 1, `${ok.pendingCalls} calls waiting`);
      await ok.close();
      assert.equal(ok.pendingCalls, 0);
    } finally {
      await s.stop();
    }
  });

  test('the heartbeat is (-1, 0, ".reply", None), sent every interval', async () => {
    const beats: Buffer[] = [];
    const srv = net.createServer((sock) => {
      const dec = new FrameDecoder(1 << 20);
      sock.on('data', (d) => {
        for (const f of dec.push(d)) beats.push(Buffer.from(f));
      });
      sock.write(encodeFrame(Buffer.from('M5')));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const c = await ClientConnection.connect(
      { host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port },
      { heartbeatInterval: 20 },
    );
    await waitUntil(() => beats.length >= 3, 'the handshake and two heartbeats');
    assert.equal(beats[0].toString(), 'M5');
    const codec = codecFor('M', 'server');
    const m = codec.decode(beats[1]);
    assert.deepEqual([m.msgid, m.flag, m.name, m.body], [-1, 0, '.reply', null]);
    assert.deepEqual(beats[2], beats[1]);
    // an argument msgpack has no form for fails that call alone, before anything is sent
    await assert.rejects(c.call('store', [2n ** 70n]), /cannot encode/);
    assert.equal(c.pendingCalls, 0);
    assert.equal(c.connected, true);
    await c.close();
    const count = beats.length;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(beats.length, count, 'no heartbeat after close');
    await new Promise((r) => srv.close(r));
  });
});

/** A message the codecs would never write, pickled by hand: a 4-tuple with a bad error body, or a 3-tuple. */
function pickledTuple(...items: PickleValue[]): Uint8Array {
  return dumps(tuple(...items));
}
