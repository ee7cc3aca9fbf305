// Bad input, each its own case: the offending connection gets an error reply or is closed with one log line;
// every other client keeps working; committed data is never lost.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pyRepr, tuple, type PickleValue } from '../../src/pickle/index.js';
import { p64, u64, z64 } from '../../src/storage/ids.js';
import { interopTest } from '../helpers/oracle.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { freePort, ServerProcess } from '../helpers/server-process.js';
import { waitUntil } from '../helpers/wait.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import type { StorageConfig } from '../../src/server/config.js';

const TXN = 139897414211984;
const ROOT_RECORD = new Uint8Array(
  Buffer.from(
    '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e80037d710158040000006461746171027d7103732e',
    'hex',
  ),
);

/** Commits one store of the root through a raw client; returns the tid. */
async function commitRoot(c: RawClient, serial: Uint8Array, id: number = TXN): Promise<Uint8Array> {
  c.sendAsync('tpc_begin', [id, new Uint8Array(0), new Uint8Array(Buffer.from('t')), new Map(), null, ' ']);
  c.sendAsync('storea', [z64, serial, ROOT_RECORD, id]);
  const voted = await c.call('vote', [id]);
  assert.deepEqual([...(voted as PickleValue[])], []);
  return (await c.call('tpc_finish', [id])) as Uint8Array;
}

describe('bad input', () => {
  let s: TestServer;
  let good: RawClient;
  let lastTid: Uint8Array;
  /** the tid of the root's current revision */
  let rootTid: Uint8Array;

  before(async () => {
    s = await startServer({
      limits: { maxMessageSize: 1024 * 1024, maxOutputBytes: 2 * 1024 * 1024 },
    });
    good = await RawClient.open(s.address);
    lastTid = rootTid = await commitRoot(good, z64);
  });

  after(async () => {
    good.close();
    await s.stop();
  });

  /** The well-behaved client still loads the committed root and can commit. */
  async function othersStillServed(): Promise<void> {
    const r = (await good.call('loadBefore', [
      z64,
      new Uint8Array(Buffer.from('7fffffffffffffff', 'hex')),
    ])) as PickleValue[];
    assert.deepEqual(Buffer.from(r[0] as Uint8Array), Buffer.from(ROOT_RECORD));
    assert.deepEqual(Buffer.from(r[1] as Uint8Array), Buffer.from(rootTid));
    lastTid = rootTid = await commitRoot(good, rootTid);
  }

  async function expectClosed(c: RawClient): Promise<void> {
    await Promise.race([
      c.closedPromise,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the server did not close the connection')), 5000),
      ),
    ]);
  }

  test('a frame that is not a pickle closes that connection', async () => {
    const c = await RawClient.open(s.address);
    c.sendFrame(Buffer.from('this is not a pickle'));
    await expectClosed(c);
    assert.ok(s.logs.some((l) => l.includes("Can't deserialize message")));
    await othersStillServed();
  });

  test('a truncated pickle closes that connection', async () => {
    const c = await RawClient.open(s.address);
    const p = c.codec!.encodeCall(5, false, 'lastTransaction', []);
    c.sendFrame(p.subarray(0, p.length - 3));
    await expectClosed(c);
    await othersStillServed();
  });

  test('a 4 GiB length prefix is refused before anything is buffered', async () => {
    const c = await RawClient.open(s.address);
    c.sendRaw(Buffer.from('ffffffff', 'hex'));
    c.sendRaw(Buffer.alloc(64 * 1024, 0x41));
    await expectClosed(c);
    assert.ok(
      s.logs.some((l) => /4294967295/.test(l)),
      'the log names the announced length',
    );
    await othersStillServed();
  });

  test('a message over the configured size limit closes the connection', async () => {
    const c = await RawClient.open(s.address);
    c.sendFrame(c.codec!.encodeCall(3, false, 'loadBefore', [new Uint8Array(2 * 1024 * 1024), z64]));
    await expectClosed(c);
    await othersStillServed();
  });

  test('invalid msgpack closes that connection', async () => {
    const c = await RawClient.open(s.address, { encoding: 'M' });
    c.sendFrame(Buffer.from([0x94, 0x01, 0xc2, 0xc1, 0x90]));
    await expectClosed(c);
    await othersStillServed();
  });

  test('msgpack with invalid UTF-8 in a str closes that connection', async () => {
    const c = await RawClient.open(s.address, { encoding: 'M' });
    c.sendFrame(Buffer.from([0x94, 0x01, 0xc2, 0xa2, 0xff, 0xfe, 0x90]));
    await expectClosed(c);
    await othersStillServed();
  });

  test('a pickle naming a forbidden global closes that connection', async () => {
    const c = await RawClient.open(s.address, { encoding: 'Z' });
    // (1, False, 'ping', (os.getcwd(),)) -- never imported or called
    const p = Buffer.concat([
      Buffer.from('8003284b0189580400000070696e67', 'hex'),
      Buffer.from('cos\ngetcwd\n)R\x85t.', 'latin1'),
    ]);
    c.sendFrame(p);
    await expectClosed(c);
    await othersStillServed();
  });

  /** A 'Z' call frame: (msgid, False, name, (arg,)) with `arg` as raw pickle opcodes. */
  function pickledCall(msgid: number, name: string, arg: string): Buffer {
    const n = Buffer.alloc(4);
    n.writeUInt32LE(name.length);
    return Buffer.concat([
      Buffer.from([0x80, 0x03, 0x28, 0x4b, msgid, 0x89, 0x58]),
      n,
      Buffer.from(name + arg + '\x85t.', 'latin1'),
    ]);
  }

  /** The call gets a TypeError reply naming the bound, and the connection keeps being served. */
  async function expectRefused(c: RawClient, msgid: number, bound: RegExp): Promise<void> {
    const r = await c.reply(msgid);
    assert.equal(r.flag, 2);
    const [className, args] = r.result as PickleValue[];
    assert.equal(className, 'builtins.TypeError');
    assert.match((args as string[])[0], bound);
    assert.equal(c.closed, false);
    assert.equal(await c.call('ping'), null);
  }

  test('a 400k-deep nested list in a call is refused with an error reply; the connection stays', async () => {
    const c = await RawClient.open(s.address);
    const depth = 400_000;
    c.sendFrame(pickledCall(7, 'loadBefore', ']'.repeat(depth) + 'a'.repeat(depth - 1)));
    // refused while it is read: 65536 unfinished lists on the unpickler's stack, not 400k
    await expectRefused(c, 7, /more than 65536 values wait on the stack/);
    // not so deep that the reading stops it, but deeper than the bound: refused once read
    c.sendFrame(pickledCall(17, 'loadBefore', ']'.repeat(5000) + 'a'.repeat(4999)));
    await expectRefused(c, 17, /nested deeper than 1023/);
    c.close();
    await othersStillServed();
  });

  test('a memo reference repeated 400k times is refused with an error reply; the connection stays', async () => {
    const c = await RawClient.open(s.address, { encoding: 'Z' });
    // a list of 100 ints, memoized, then a list of 400k references to it: 800 KB standing for 4*10^7 values
    const inner = ']q\x00(' + 'K\x01'.repeat(100) + 'e';
    c.sendFrame(pickledCall(8, 'loadBefore', inner + '0](' + 'h\x00'.repeat(400_000) + 'e'));
    await expectRefused(c, 8, /more than \d+ elements/);
    c.close();
    await othersStillServed();
  });

  test('a msgpack nested array bomb is refused with an error reply; the connection stays', async () => {
    const c = await RawClient.open(s.address, { encoding: 'M' });
    // [9, False, 'ping', [[[...]]]] 500k deep
    c.sendFrame(
      Buffer.concat([
        Buffer.from([0x94, 0x09, 0xc2, 0xa4, ...Buffer.from('ping')]),
        Buffer.alloc(500_000, 0x91),
        Buffer.from([0x90]),
      ]),
    );
    await expectRefused(c, 9, /nested too deeply/);
    c.close();
    await othersStillServed();
  });

  test('legit large messages pass the bound: a 10 MiB record, a 10k-oid invalidation list', async () => {
    const big = await startServer({ msgpack: true });
    try {
      for (const encoding of ['Z', 'M'] as const) {
        const writer = await RawClient.open(big.address, { encoding });
        const reader = await RawClient.open(big.address, { encoding });
        const oids = (await Promise.all(
          Array.from({ length: 100 }, () => writer.call('new_oids', [100])),
        )) as Uint8Array[][];
        const all = oids.flat();
        const record = new Uint8Array(10 * 1024 * 1024).fill(7);
        const id = 4242;
        writer.sendAsync('tpc_begin', [id, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
        writer.sendAsync('storea', [all[0], z64, record, id]);
        for (const o of all.slice(1)) writer.sendAsync('storea', [o, z64, ROOT_RECORD, id]);
        await writer.call('vote', [id]);
        const tid = (await writer.call('tpc_finish', [id])) as Uint8Array;
        // the reader is sent the 10k oids, and decodes them within the bound
        const inv = await reader.nextMessage(20_000);
        assert.equal(inv.name, 'invalidateTransaction');
        assert.equal((inv.args[1] as PickleValue[]).length, 10_000);
        const r = (await reader.call('loadBefore', [all[0], p64(u64(tid) + 1n)])) as PickleValue[];
        assert.equal((r[0] as Uint8Array).length, record.length);
        writer.close();
        reader.close();
      }
    } finally {
      await big.stop();
    }
  });

  test('unknown and private method names close the connection without a reply', async () => {
    for (const name of ['frobnicate', '_vote', '__init__', 'register', 'undo', 'load', 'ruok']) {
      const c = await RawClient.open(s.address);
      c.send(name, []);
      await expectClosed(c);
      assert.equal(c.received.length, 0, `no reply to ${name}`);
    }
    assert.ok(s.logs.some((l) => l.includes("Invalid method, 'frobnicate'")));
    await othersStillServed();
  });

  test('any method before register closes the connection', async () => {
    const c = await RawClient.open(s.address, { register: null });
    c.send('lastTransaction', []);
    await expectClosed(c);
  });

  test('register of an unknown storage is an error reply; the client may register again', async () => {
    const c = await RawClient.open(s.address, { register: null });
    await assert.rejects(c.call('register', ['nosuch', false]), (e: ServerError) => {
      assert.equal(e.className, 'builtins.ValueError');
      assert.deepEqual([...(e.args as PickleValue[])], ['unknown storage: nosuch']);
      return true;
    });
    assert.deepEqual(
      Buffer.from((await c.call('register', ['1', false])) as Uint8Array),
      Buffer.from(lastTid),
    );
    c.close();
  });

  test('wrong argument counts get a TypeError reply and the connection stays', async () => {
    const c = await RawClient.open(s.address);
    await assert.rejects(c.call('history', []), (e: ServerError) => {
      assert.equal(e.className, 'builtins.TypeError');
      assert.deepEqual(
        [...(e.args as PickleValue[])],
        ["ZEOStorage.history() missing 1 required positional argument: 'tid'"],
      );
      return true;
    });
    await assert.rejects(c.call('loadBefore', [z64, z64, z64]), (e: ServerError) => {
      assert.equal(e.className, 'builtins.TypeError');
      assert.deepEqual(
        [...(e.args as PickleValue[])],
        ['ZEOStorage.loadBefore() takes 3 positional arguments but 4 were given'],
      );
      return true;
    });
    await assert.rejects(c.call('get_info', [1]), (e: ServerError) => e.className === 'builtins.TypeError');
    // an oid that is not bytes: fsIndex's assertion, as runzeo
    await assert.rejects(
      c.call('loadBefore', ['x', z64]),
      (e: ServerError) => e.className === 'builtins.AssertionError',
    );
    assert.equal(c.closed, false);
    assert.equal(await c.call('ping'), null);
    c.close();
  });

  test('2PC calls out of order', async () => {
    const c = await RawClient.open(s.address);
    // vote without tpc_begin: StorageTransactionError(None, id)
    await assert.rejects(c.call('vote', [42]), (e: ServerError) => {
      assert.equal(e.className, 'ZODB.POSException.StorageTransactionError');
      assert.deepEqual([...(e.args as PickleValue[])], [null, 42]);
      return true;
    });
    // tpc_finish and tpc_abort of an unknown transaction: None
    assert.equal(await c.call('tpc_finish', [42]), null);
    assert.equal(await c.call('tpc_abort', [42]), null);
    // tpc_finish before vote
    c.sendAsync('tpc_begin', [7, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    await assert.rejects(c.call('tpc_finish', [7]), (e: ServerError) => {
      assert.equal(e.className, 'builtins.AssertionError');
      assert.deepEqual([...(e.args as PickleValue[])], ['finished called wo lock']);
      return true;
    });
    // vote with another id
    await assert.rejects(c.call('vote', [8]), (e: ServerError) => {
      assert.deepEqual([...(e.args as PickleValue[])], [7, 8]);
      return true;
    });
    assert.equal(await c.call('tpc_abort', [7]), null);
    // a store without a transaction is a failed one-way call: the connection closes
    c.sendAsync('storea', [z64, lastTid, ROOT_RECORD, 9]);
    await expectClosed(c);
    await othersStillServed();
  });

  test('a second tpc_begin with another id closes the connection; its transaction is aborted', async () => {
    const c = await RawClient.open(s.address);
    c.sendAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.sendAsync('tpc_begin', [2, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    await expectClosed(c);
    await othersStillServed();
    const st = s.server.storages.get('1')!.status();
    assert.equal(st.get('active_txns'), 0);
  });

  test('a client that vanishes holding the commit lock does not wedge the others', async () => {
    const c = await RawClient.open(s.address);
    c.sendAsync('tpc_begin', [11, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.sendAsync('storea', [z64, rootTid, ROOT_RECORD, 11]);
    await c.call('vote', [11]);
    // the good client votes behind it
    const pending = commitRoot(good, rootTid, 12);
    await waitUntil(() => s.server.storages.get('1')!.status().get('waiting') === 1, 'the good vote waits');
    c.close();
    lastTid = rootTid = await pending;
    await othersStillServed();
  });

  test('a client that stops reading is disconnected when its output piles up; others are unaffected', async () => {
    // a unix socket: its kernel buffers are small, so the pile-up reaches the server's own bound quickly
    const us = await startServer({ unix: true, limits: { maxOutputBytes: 256 * 1024 } });
    try {
      const slow = await RawClient.open(us.address);
      const writer = await RawClient.open(us.address);
      slow.socket.pause();
      const oids = Array.from({ length: 500 }, (_, i) => p64(1000 + i));
      let serial: Uint8Array = z64;
      const dropped = (): boolean => us.logs.some((l) => l.includes('client is not reading'));
      for (let i = 0; i < 400 && !dropped(); i++) {
        const id = 1000 + i;
        writer.sendAsync('tpc_begin', [id, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
        for (const o of oids) writer.sendAsync('storea', [o, serial, ROOT_RECORD, id]);
        await writer.call('vote', [id]);
        serial = (await writer.call('tpc_finish', [id])) as Uint8Array;
      }
      assert.ok(dropped(), 'the server dropped the client that does not read');
      slow.socket.resume();
      await expectClosed(slow);
      // the writer was never slowed down by it, and its data is all there
      const r = (await writer.call('loadBefore', [oids[499], p64(u64(serial) + 1n)])) as PickleValue[];
      assert.deepEqual(Buffer.from(r[1] as Uint8Array), Buffer.from(serial));
      writer.close();
    } finally {
      await us.stop();
    }
    await othersStillServed();
  });

  test('a client pipelining loads without reading is paused, not buffered without bound', async () => {
    const c = await RawClient.open(s.address);
    c.socket.pause();
    const big = new Uint8Array(200_000);
    // one big object to load many times
    const oid = ((await good.call('new_oids', [1])) as Uint8Array[])[0];
    good.sendAsync('tpc_begin', [77, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    good.sendAsync('storea', [oid, z64, big, 77]);
    await good.call('vote', [77]);
    lastTid = (await good.call('tpc_finish', [77])) as Uint8Array;
    const maxtid = new Uint8Array(Buffer.from('7fffffffffffffff', 'hex'));
    for (let i = 0; i < 2000; i++) c.send('loadBefore', [oid, maxtid], tuple(i, 0));
    await new Promise((r) => setTimeout(r, 500));
    const rss = process.memoryUsage().rss;
    // 2000 replies of 200 KB would be 400 MB if buffered; the server stopped reading the client instead
    assert.ok(rss < 600 * 1024 * 1024, `rss ${rss}`);
    c.socket.resume();
    let replies = 0;
    while (replies < 2000) {
      const m = await c.nextMessage(10000);
      if (m.name === '.reply') replies++;
    }
    assert.equal(replies, 2000);
    c.close();
    await othersStillServed();
  });

  test('a thousand idle connections', async () => {
    const before = process.memoryUsage();
    const clients: RawClient[] = [];
    for (let i = 0; i < 1000; i++) clients.push(await RawClient.open(s.address));
    await othersStillServed();
    const afterOpen = process.memoryUsage();
    assert.ok(s.server.connectionCount >= 1001);
    // both ends live in this process: the per-connection cost here counts the client side too
    const perConnection =
      (afterOpen.heapUsed + afterOpen.external - before.heapUsed - before.external) / 1000;
    assert.ok(perConnection < 64 * 1024, `per connection ${perConnection} bytes`);
    for (const c of clients) c.close();
    await new Promise((r) => setTimeout(r, 200));
    await othersStillServed();
  });
});

/**
 * runzeo (in a temp dir, over `storage`: a zeo.conf storage section given the dir) and a zeo-ts server started
 * with `ours`, for one test; both stopped after it.
 */
async function besideRunzeo(
  storage: (dir: string) => string,
  ours: Parameters<typeof startServer>[0],
  fn: (runzeo: TestServer['address'], ours: TestServer) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-beside-runzeo-'));
  const conf = join(dir, 'zeo.conf');
  writeFileSync(conf, `<zeo>\n  address 127.0.0.1:${await freePort()}\n</zeo>\n${storage(dir)}`);
  const runzeo = new ServerProcess({ kind: 'runzeo', conf, cwd: dir });
  const server = await startServer(ours);
  try {
    await fn({ host: '127.0.0.1', port: await runzeo.port(30_000) }, server);
  } finally {
    await server.stop();
    await runzeo.stop().catch(() => runzeo.kill());
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The one-way store calls with a str where bytes go (ZEO's own checkTransactionBufferCleanup stores data 'foo'
 * and aborts): runzeo logs them unchecked and its vote fails on them with a TypeError reply, keeping the
 * connection; the same sequence against both servers.
 */
interopTest(
  'a str where a store call takes bytes: the vote fails with a TypeError, the connection stays, as runzeo',
  async () => {
    await besideRunzeo(
      (dir) => `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
      {},
      async (runzeo, ours) => {
        const sequence = async (address: TestServer['address']): Promise<PickleValue[]> => {
          const c = await RawClient.open(address);
          try {
            const seen: PickleValue[] = [];
            for (const [name, args] of [
              ['storea', [z64, z64, 'foo']],
              ['undoa', ['not bytes']],
            ] as Array<[string, PickleValue[]]>) {
              c.sendAsync('tpc_begin', [TXN, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
              c.sendAsync(name, [...args, TXN]);
              await assert.rejects(c.call('vote', [TXN]), (e: ServerError) => {
                seen.push(`${name}: ${e.className}`);
                return true;
              });
              seen.push(await c.call('tpc_abort', [TXN]));
            }
            // the connection is still served, and nothing was committed
            seen.push(Buffer.from((await c.call('lastTransaction', [])) as Uint8Array).toString('hex'));
            assert.equal(c.closed, false);
            return seen;
          } finally {
            c.close();
          }
        };
        const expected = [
          'storea: builtins.TypeError',
          null,
          'undoa: builtins.TypeError',
          null,
          '0000000000000000',
        ];
        assert.deepEqual(await sequence(runzeo), expected);
        assert.deepEqual(await sequence(ours.address), expected);
        assert.equal(ours.server.storages.get('1')!.status().get('active_txns'), 0);
      },
    );
  },
);

/**
 * Every method with an argument of the wrong type, against runzeo and zeo-ts: the same error class (runzeo's
 * is whatever Python raises on the value: a TypeError for `new_oids('many')`, a KeyError for an unknown
 * iterator id), and the connection stays.
 */
const WRONG_TYPES: Array<[string, PickleValue[]]> = [
  ['new_oids', ['many']],
  ['new_oids', [1.5]],
  ['new_oids', [null]],
  ['getInvalidations', ['x']],
  ['getInvalidations', [5]],
  ['loadBefore', ['x', z64]],
  ['loadBefore', [z64, 5]],
  ['loadBefore', [5, z64]],
  ['loadSerial', ['x', z64]],
  ['loadSerial', [z64, 5]],
  ['getTid', [5]],
  ['history', [z64, 'x']],
  ['history', [5]],
  ['history', [null, null]],
  ['getTid', [null]],
  ['record_iternext', [5]],
  ['undoLog', ['a', 'b']],
  ['undoLog', [null, null]],
  ['undoInfo', ['a', 'b', null]],
  ['undoInfo', [0, 10, 'spec']],
  ['iterator_start', ['x', null]],
  ['iterator_start', [5, null]],
  ['iterator_next', ['x']],
  ['iterator_record_start', ['x', z64]],
  ['iterator_record_next', ['x']],
  ['iterator_gc', [5]],
  ['sendBlob', ['x', z64]],
  ['set_client_label', [5]],
  ['tpc_begin', [TXN, 5, '', new Map(), null, ' ']],
  ['tpc_begin', [TXN, '', 5, new Map(), null, ' ']],
  ['tpc_begin', [TXN, '', '', 5, null, ' ']],
  ['tpc_begin', [TXN, '', '', new Map(), 5, ' ']],
  ['tpc_begin', [TXN, '', '', new Map(), null, 5]],
  ['vote', [new Map()]],
  ['tpc_finish', [new Map()]],
  ['tpc_abort', [new Map()]],
];

for (const kind of ['filestorage', 'mappingstorage'] as const) {
  interopTest(
    `a wrong argument type to any method is the error reply runzeo gives, and the connection stays (${kind})`,
    async () => {
      await besideRunzeo(
        (dir) =>
          kind === 'filestorage'
            ? `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n  blob-dir ${join(dir, 'blobs')}\n</filestorage>\n`
            : '<mappingstorage 1/>\n',
        kind === 'filestorage'
          ? {}
          : {
              storages: () =>
                [{ kind: 'mappingstorage', name: '1', description: 'Mapping Storage' }] as StorageConfig[],
            },
        async (runzeo, ours) => {
          const answers = async (address: TestServer['address']): Promise<string[]> => {
            const seen: string[] = [];
            for (const [name, args] of WRONG_TYPES) {
              const c = await RawClient.open(address);
              try {
                let answer: string;
                try {
                  await c.call(name, args);
                  answer = 'ok';
                } catch (e) {
                  answer = e instanceof ServerError ? e.className : `failed: ${(e as Error).message}`;
                }
                // a tpc_begin that was taken leaves a transaction: its vote, then end it
                if (name === 'tpc_begin' && answer === 'ok') {
                  try {
                    await c.call('vote', [TXN]);
                    answer += ', vote ok';
                  } catch (e) {
                    answer += `, vote ${e instanceof ServerError ? e.className : (e as Error).message}`;
                  }
                  await c.call('tpc_abort', [TXN]);
                }
                assert.equal(await c.call('ping'), null, `${name} keeps the connection`);
                seen.push(`${name}(${args.map((a) => pyRepr(a)).join(', ')}): ${answer}`);
              } finally {
                c.close();
              }
            }
            return seen;
          };
          const theirs = await answers(runzeo);
          // Where we differ on purpose: runzeo votes a transaction whose extension is not a dict, or whose status
          // is not a str or bytes, and tpc_finish would then write a Data.fs its own FileStorage cannot read (an
          // extension that unpickles to an int, a status byte '5'); zeo-ts fails that vote with a TypeError.
          const deliberate = new Map([
            [
              "tpc_begin(139897414211984, '', '', 5, None, ' '): ok, vote ok",
              "tpc_begin(139897414211984, '', '', 5, None, ' '): ok, vote builtins.TypeError",
            ],
            [
              "tpc_begin(139897414211984, '', '', {}, None, 5): ok, vote ok",
              "tpc_begin(139897414211984, '', '', {}, None, 5): ok, vote builtins.TypeError",
            ],
          ]);
          if (kind === 'filestorage') {
            for (const k of deliberate.keys()) assert.ok(theirs.includes(k), `runzeo still answers ${k}`);
          }
          assert.deepEqual(
            await answers(ours.address),
            theirs.map((a) => deliberate.get(a) ?? a),
          );
        },
      );
    },
  );
}

interopTest(
  'the Python client raises the TypeError a too deeply nested call gets, and keeps working',
  async (oracle) => {
    const ours = await startServer();
    try {
      const address = ours.address as { host: string; port: number };
      const result = await oracle.json(
        `
import sys
import ZEO.ClientStorage
from ZODB.utils import z64
sys.setrecursionlimit(20000)
st = ZEO.ClientStorage.ClientStorage(tuple(args['addr']), wait_timeout=30)
try:
    deep = []
    for _ in range(5000):
        deep = [deep]
    try:
        st._server.call('loadBefore', deep, z64)
        raised = None
    except TypeError as e:
        raised = ['TypeError', str(e)]
    result = [raised, st.is_connected(), st.lastTransaction().hex()]
finally:
    st.close()
`,
        undefined,
        { addr: [address.host, address.port] },
      );
      const [raised, connected, last] = result as [[string, string], boolean, string];
      assert.equal(raised[0], 'TypeError');
      assert.match(raised[1], /nested deeper than 1023/);
      assert.equal(connected, true);
      assert.equal(last, '0000000000000000');
    } finally {
      await ours.stop();
    }
  },
);
