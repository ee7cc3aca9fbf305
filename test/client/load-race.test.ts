// Loads racing invalidations (ZEO#155), made deterministic with a scripted server on a raw socket:
// - the reply to loadBefore comes after two invalidations of the object and shows the revision of the first:
//   what it read is not current (the second changed the object again), the cache must not keep it as current;
// - a reply shows a revision newer than the cache's current one before that revision's invalidation came.
// test/client/interop.test.ts's race finds both against real servers, now and then; these always do.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClientStorage } from '../../src/client/client-storage.js';
import { tuple, type PickleValue } from '../../src/pickle/index.js';
import { idHex, maxtid, p64 } from '../../src/storage/ids.js';
import { scriptedServer as startScripted } from '../helpers/scripted-server.js';

const oid = p64(1);
const [t1, t2, t3] = [p64(0x100), p64(0x200), p64(0x300)];
const record = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n, 0x2e]); // a pickle of n

interface Script {
  /** sends invalidateTransaction(tid, [oid]) */
  invalidate(tid: Uint8Array): void;
  /** replies to a held loadBefore */
  reply(msgid: PickleValue, value: PickleValue): void;
}

/**
 * A server (test/helpers/scripted-server.ts) that registers any client at t1 and answers loadBefore with `onLoad`,
 * which may send one-way calls first (invalidateTransaction) and returns the reply, or undefined to hold it
 * (reply later with script.reply).
 */
async function scriptedServer(
  onLoad: (args: PickleValue[], script: Script, msgid: PickleValue) => PickleValue | undefined,
): Promise<{ port: number; loads: PickleValue[][]; close(): Promise<void> }> {
  const loads: PickleValue[][] = [];
  const srv = await startScripted('Z5', (m, s, sock) => {
    if (m.flag) return;
    let reply: PickleValue | undefined = null;
    if (m.name === 'register' || m.name === 'lastTransaction') reply = t1;
    else if (m.name === 'get_info') reply = new Map<PickleValue, PickleValue>([['name', 'scripted']]);
    else if (m.name === 'loadBefore') {
      loads.push(m.args);
      const script: Script = {
        invalidate: (tid) => s.notify(sock, 'invalidateTransaction', [tid, [oid]]),
        reply: (msgid, value) => s.reply(sock, msgid, value),
      };
      reply = onLoad(m.args, script, m.msgid);
    }
    if (reply !== undefined) s.reply(sock, m.msgid, reply);
  });
  return { port: srv.address.port, loads, close: () => srv.close() };
}

test('a load overtaken by two invalidations is not cached as current', async () => {
  const server = await scriptedServer((_args, script) => {
    if (server.loads.length === 1) {
      // read while t2 was current; the reply leaves after the invalidations of t2 and t3
      script.invalidate(t2);
      script.invalidate(t3);
      return tuple(record(2), t2, null);
    }
    return tuple(record(3), t3, null);
  });
  const cs = await ClientStorage.open({
    server: { host: '127.0.0.1', port: server.port },
    waitTimeout: 5000,
  });
  try {
    const first = await cs.load(oid);
    assert.equal(idHex(first.serial), idHex(t2), 'what the server read');
    assert.equal(idHex(cs.lastTransaction()), idHex(t3));
    // t3 changed the object after what we read: the current revision is t3's, not t2's
    const second = await cs.load(oid);
    assert.equal(idHex(second.serial), idHex(t3), 'a load after t3 is known returns t3, not the cached t2');
    assert.equal(server.loads.length, 2, 'the second load asked the server');
    // t2's revision is still right for a snapshot before t3
    const before = await cs.loadBefore(oid, t3);
    assert.equal(idHex(before!.start), idHex(t2));
    assert.deepEqual(
      server.loads[0].map((x) => idHex(x as Uint8Array)),
      [oid, maxtid].map(idHex),
    );
  } finally {
    await cs.close();
    await server.close();
  }
});

test('a load showing a newer current revision than the cached one, ahead of its invalidation, is not an error', async () => {
  // two loads at once, for different snapshots: the server reads the second while t1 is current, then t3
  // commits and it reads the first, whose reply leaves before t3's invalidation (a server that finishes
  // commits in a thread while it serves loads: the cache then already holds t1 as current)
  let held: PickleValue = null;
  const server = await scriptedServer((_args, script, msgid) => {
    if (server.loads.length === 1) {
      held = msgid;
      return undefined;
    }
    if (server.loads.length > 2) return tuple(record(3), t3, null);
    // the second: what was current then; then the first's reply, then the invalidation, each in a packet
    // of its own (the client handles each before the next comes)
    script.reply(msgid, tuple(record(1), t1, null));
    setTimeout(() => script.reply(held, tuple(record(3), t3, null)), 30);
    setTimeout(() => script.invalidate(t3), 60);
    return undefined;
  });
  const cs = await ClientStorage.open({
    server: { host: '127.0.0.1', port: server.port },
    waitTimeout: 5000,
  });
  try {
    const [current, snapshot] = await Promise.all([cs.load(oid), cs.loadBefore(oid, p64(0x101))]);
    assert.equal(idHex(snapshot!.start), idHex(t1));
    assert.equal(idHex(current.serial), idHex(t3), 'the load returns what the server read');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(idHex(cs.lastTransaction()), idHex(t3));
    assert.equal(idHex((await cs.load(oid)).serial), idHex(t3));
  } finally {
    await cs.close();
    await server.close();
  }
});
