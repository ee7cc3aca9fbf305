// The raw bench's pieces: the generator's pre-encoded loadBefore frames and its reading of replies (by msgid and
// flag only) agree with the codecs; it counts real loadBefore results of a real zeo serve and fails on error
// replies (a server answering errors cannot look fast); the floor answers any msgid, ints and Python's
// (oid, tid) pairs, with a reply the codec reads as a loadBefore result; the histogram and the SVG chart.

import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pyRepr, tuple, type PickleValue } from '../../src/pickle/index.js';
import { codecFor, type Encoding } from '../../src/protocol/index.js';
import { maxtid, p64, z64 } from '../../src/storage/ids.js';
import { rawChartSvg } from '../../bench/raw-chart.js';
import { cannedReply, msgidLength, msgidStart, startFloor } from '../../bench/raw-floor.js';
import {
  FIRST_LOAD_MSGID,
  GenConnection,
  LeanLoads,
  Rng,
  bucketOf,
  checkLoadReply,
  isOk,
  loadTemplate,
  percentile,
  readMsgid,
  replyShape,
  writeMsgid,
  writeOid,
  type Sink,
} from '../../bench/raw-generator.js';
import { RawClient } from '../helpers/raw-client.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';

const ENCODINGS: Encoding[] = ['Z', 'M'];

/** A record of a PersistentMapping (any bytes would do: the server does not read them). */
const RECORD = Buffer.from(
  '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e80037d710158040000006461746171027d7103732e',
  'hex',
);

/** Counts the operations of some lean loads; `reached` resolves at `n` of them. */
function countingSink(n: number): Sink & { ops: number; checks: number; reached: Promise<void> } {
  let done: () => void = () => {};
  const reached = new Promise<void>((r) => (done = r));
  let claimed = 0;
  const sink = {
    ops: 0,
    checks: 0,
    reached,
    op() {
      if (++sink.ops === n) done();
    },
    checked() {
      sink.checks++;
    },
    claim(k: number) {
      const can = Math.min(k, n - claimed);
      claimed += can;
      return can;
    },
  };
  return sink;
}

describe('the generator frames', () => {
  for (const e of ENCODINGS) {
    test(`${e}: a patched template is a loadBefore call of its msgid and oid`, () => {
      const t = loadTemplate(e);
      const codec = codecFor(e, 'server');
      const f = Buffer.from(t.frame);
      writeMsgid(f, t.msgidAt, FIRST_LOAD_MSGID + 7, e);
      writeOid(f, t.oidAt, 29_999);
      assert.equal(f.readUInt32BE(0), f.length - 4);
      const m = codec.decode(f.subarray(4));
      assert.equal(m.name, 'loadBefore');
      assert.equal(m.msgid, FIRST_LOAD_MSGID + 7);
      assert.equal(m.flag, false);
      assert.deepEqual(Buffer.from(m.args[0] as Uint8Array), Buffer.from(p64(29_999)));
      assert.deepEqual(Buffer.from(m.args[1] as Uint8Array), Buffer.from(maxtid));
    });

    test(`${e}: a reply's msgid and flag are read where the server codec puts them`, () => {
      const shape = replyShape(e);
      const codec = codecFor(e, 'server');
      for (const msgid of [FIRST_LOAD_MSGID, 0x7fffffff, 1_000_000]) {
        const ok = Buffer.from(codec.encodeReply(msgid, tuple<PickleValue>(RECORD, p64(3), null)));
        assert.equal(readMsgid(ok, shape.msgidAt, e), msgid);
        assert.ok(isOk(shape, ok, 0));
        const err = Buffer.from(
          codec.encodeError(msgid, 'ZODB.POSException.POSKeyError', tuple<PickleValue>(p64(5))),
        );
        assert.equal(readMsgid(err, shape.msgidAt, e), msgid);
        assert.ok(!isOk(shape, err, 0), 'an error reply is not a result');
      }
    });
  }

  test('checkLoadReply takes (data, start, end) of its msgid and nothing else', () => {
    const codec = codecFor('Z', 'client');
    const server = codecFor('Z', 'server');
    const reply = (msgid: number, v: PickleValue): ReturnType<typeof codec.decode> =>
      codec.decode(server.encodeReply(msgid, v));
    assert.deepEqual(
      Buffer.from(checkLoadReply(reply(70000, tuple<PickleValue>(RECORD, p64(3), null)), 70000)),
      RECORD,
    );
    assert.throws(
      () => checkLoadReply(reply(70001, tuple<PickleValue>(RECORD, p64(3), null)), 70000),
      /msgid/,
    );
    assert.throws(() => checkLoadReply(reply(70000, null), 70000), /not \(data, start, end\)/);
    assert.throws(
      () => checkLoadReply(reply(70000, tuple<PickleValue>(RECORD, p64(3))), 70000),
      /not \(data/,
    );
    const err = codec.decode(
      server.encodeError(70000, 'ZODB.POSException.POSKeyError', tuple<PickleValue>(z64)),
    );
    assert.throws(() => checkLoadReply(err, 70000), /not its result/);
  });

  test('Rng draws every oid of a small range, and only those', () => {
    const rng = new Rng(42);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(rng.below(10));
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
  });
});

describe('the latency histogram', () => {
  test('percentiles fall in the bucket of the sample (6% wide)', () => {
    const counts = new Array<number>(300).fill(0);
    for (let i = 0; i < 98; i++) counts[bucketOf(100)]++;
    counts[bucketOf(5000)]++;
    counts[bucketOf(20_000)]++;
    const p50 = percentile(counts, 0.5);
    assert.ok(p50 > 94 && p50 < 106, String(p50));
    const p99 = percentile(counts, 0.99);
    assert.ok(p99 > 4700 && p99 < 5300, String(p99));
    assert.ok(Number.isNaN(percentile(new Array<number>(300).fill(0), 0.5)));
    assert.equal(bucketOf(0.2), 0);
    assert.equal(bucketOf(1e12), 299);
  });
});

describe('the floor', () => {
  for (const e of ENCODINGS) {
    test(`${e}: msgidLength spans ints of every size and (oid, tid) pairs`, () => {
      const codec = codecFor(e, 'client');
      const ids: PickleValue[] = [0, 5, 200, 300, 70000, 0x7fffffff, tuple<PickleValue>(p64(9), maxtid)];
      for (const id of ids) {
        const p = Buffer.from(codec.encodeCall(id, false, 'loadBefore', [p64(9), maxtid]));
        const at = msgidStart(e);
        const len = msgidLength(p, at, e);
        assert.ok(len > 0, `msgid ${pyRepr(id)}`);
        // the msgid's bytes are those of the same value in a reply
        const reply = Buffer.from(codecFor(e, 'server').encodeReply(id, null));
        assert.deepEqual(p.subarray(at, at + len), reply.subarray(at, at + len));
      }
    });

    test(`${e}: its canned reply is a loadBefore result`, () => {
      const { prefix, suffix } = cannedReply(e, 150);
      const server = codecFor(e, 'server');
      const bare = Buffer.from(server.encodeReply(300, null));
      const at = msgidStart(e);
      const msgid = bare.subarray(at, at + msgidLength(bare, at, e));
      const m = codecFor(e, 'client').decode(Buffer.concat([prefix, msgid, suffix]));
      assert.equal(checkLoadReply(m, 300).length, 150);
    });
  }

  describe('served', () => {
    let floor: Server;
    let port: number;
    before(async () => {
      floor = await startFloor(0, 'Z', 120);
      port = (floor.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((r) => floor.close(() => r())));

    test("answers the generator's lean loads with results of their msgids", async () => {
      const c = await GenConnection.open('127.0.0.1', port, 'Z');
      try {
        const sink = countingSink(5000);
        const l = new LeanLoads(c, loadTemplate('Z'), replyShape('Z'), 32, new Rng(1), 100, sink);
        c.startLoads(l);
        l.start();
        await sink.reached;
        assert.equal(sink.ops, 5000);
        assert.ok(sink.checks >= 5, `${sink.checks} replies checked in full`);
      } finally {
        c.close();
      }
    });

    test("answers Python ZEO's (oid, tid) msgids, and other calls decoded", async () => {
      const c = await RawClient.open({ host: '127.0.0.1', port }, { register: '1' });
      try {
        const id = tuple<PickleValue>(p64(4), maxtid);
        c.sendFrame(c.codec!.encodeCall(id, false, 'loadBefore', [p64(4), maxtid]));
        const m = await c.nextMessage();
        assert.deepEqual(m.msgid, id);
        const r = m.body as PickleValue[];
        assert.equal((r[0] as Uint8Array).length, 120);
        assert.equal(await c.call('get_info', []), null);
      } finally {
        c.socket.destroy();
      }
    });
  });
});

describe('the generator against zeo serve', () => {
  let s: TestServer;
  const OBJECTS = 4;
  before(async () => {
    s = await startServer();
    const { host, port } = s.address as { host: string; port: number };
    const c = await GenConnection.open(host, port, 'Z');
    try {
      c.callAsync('tpc_begin', [1, Buffer.from(''), Buffer.from(''), new Map(), null, ' ']);
      for (let i = 0; i < OBJECTS; i++) c.callAsync('storea', [p64(i), z64, RECORD, 1]);
      await c.call('vote', [1]);
      const tid = await c.call('tpc_finish', [1]);
      assert.ok(tid instanceof Uint8Array && tid.length === 8);
    } finally {
      c.close();
    }
  });
  after(() => s.stop());

  for (const e of ENCODINGS) {
    test(`${e}: lean loads of existing oids are counted, their results checked`, async () => {
      const { host, port } = s.address as { host: string; port: number };
      const c = await GenConnection.open(host, port, e);
      try {
        const sink = countingSink(2500);
        const l = new LeanLoads(c, loadTemplate(e), replyShape(e), 8, new Rng(2), OBJECTS - 1, sink);
        c.startLoads(l);
        l.start();
        await sink.reached;
        assert.ok(sink.checks >= 3);
      } finally {
        c.close();
      }
    });
  }

  test('an error reply (POSKeyError of a missing oid) fails the connection, not counted as a load', async () => {
    const { host, port } = s.address as { host: string; port: number };
    const c = await GenConnection.open(host, port, 'Z');
    const failed = new Promise<Error>((r) => (c.onFail = r));
    const sink = countingSink(1000);
    // oids 0..999: most missing
    const l = new LeanLoads(c, loadTemplate('Z'), replyShape('Z'), 1, new Rng(3), 999, sink);
    c.startLoads(l);
    l.start();
    const e = await failed;
    assert.match(e.message, /POSKeyError/);
    assert.ok(sink.ops < 1000);
    c.close();
  });
});

test('opening a connection to a server that closes before its greeting fails, and does not hang', async () => {
  const server = createServer((c) => c.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    await assert.rejects(GenConnection.open('127.0.0.1', port, 'Z'), /closed the connection/);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

describe('the chart', () => {
  test('one bar per server and phase in each panel, text escaped', () => {
    const svg = rawChartSvg('a <b> & c', [
      {
        phase: 'loads',
        values: { zeo: { opsPerSecond: 100, cpuUsPerOp: 5 }, runzeo: { opsPerSecond: 10, cpuUsPerOp: 50 } },
      },
      { phase: 'commits', values: { zeo: { opsPerSecond: 3, cpuUsPerOp: NaN } } },
    ]);
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.ok(svg.includes('a &lt;b&gt; &amp; c'));
    // background, 2 legend squares, 3 bars in each of 2 panels
    assert.equal(svg.match(/<rect /g)!.length, 1 + 2 + 6);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assert.ok(!svg.includes('NaN'));
  });
});
