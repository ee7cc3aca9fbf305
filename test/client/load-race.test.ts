// A load that invalidations overtake (ZEO#155), made deterministic with a scripted server on a raw socket: the
// reply to loadBefore comes after two invalidations of the object and shows the revision of the first. What
// it read is not current (the second one changed the object again): the cache must not keep it as current.
// test/client/interop.test.ts's race finds this against real servers, now and then; this one always does.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { ClientStorage } from '../../src/client/client-storage.js';
import { tuple, type PickleValue } from '../../src/pickle/index.js';
import { codecFor, encodeFrame, FrameDecoder, type Message } from '../../src/protocol/index.js';
import { idHex, maxtid, p64 } from '../../src/storage/ids.js';

const oid = p64(1);
const [t1, t2, t3] = [p64(0x100), p64(0x200), p64(0x300)];
const record = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n, 0x2e]); // a pickle of n

/**
 * A server that registers any client at t1 and answers loadBefore with `onLoad`, which may send one-way calls
 * first (invalidateTransaction) and returns the reply.
 */
async function scriptedServer(
  onLoad: (args: PickleValue[], invalidate: (tid: Uint8Array) => void) => PickleValue,
): Promise<{ port: number; loads: PickleValue[][]; close(): Promise<void> }> {
  const codec = codecFor('Z', 'server');
  const loads: PickleValue[][] = [];
  const sockets: net.Socket[] = [];
  const srv = net.createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => {});
    const decoder = new FrameDecoder(1 << 24);
    let hello = true;
    const send = (payload: Uint8Array): boolean => sock.write(encodeFrame(payload));
    sock.on('data', (d: Buffer) => {
      for (const f of decoder.push(d)) {
        if (hello) {
          hello = false;
          continue;
        }
        const m: Message = codec.decode(Buffer.from(f));
        if (m.msgid === -1 || m.flag) continue;
        let reply: PickleValue = null;
        if (m.name === 'register' || m.name === 'lastTransaction') reply = t1;
        else if (m.name === 'get_info') reply = new Map<PickleValue, PickleValue>([['name', 'scripted']]);
        else if (m.name === 'loadBefore') {
          loads.push(m.args);
          reply = onLoad(m.args, (tid) =>
            send(codec.encodeCall(0, true, 'invalidateTransaction', [tid, [oid]])),
          );
        }
        send(codec.encodeReply(m.msgid, reply));
      }
    });
    sock.write(encodeFrame(Buffer.from('Z5', 'latin1')));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    loads,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

test('a load overtaken by two invalidations is not cached as current', async () => {
  const server = await scriptedServer((args, invalidate) => {
    if (server.loads.length === 1) {
      // read while t2 was current; the reply leaves after the invalidations of t2 and t3
      invalidate(t2);
      invalidate(t3);
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
