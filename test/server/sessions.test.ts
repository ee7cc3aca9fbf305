// Server semantics through a bare protocol client: the commit lock and its timeout, invalidation ordering,
// getInvalidations, and the methods' answers (get_info, server_status, iteration, history, new_oids, ...).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PyFloat, type PickleValue, type PyDict } from '../../src/pickle/index.js';
import { codecFor } from '../../src/protocol/index.js';
import { maxtid, p64, u64, z64 } from '../../src/storage/ids.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';

const rec = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n & 0xff, 0x2e]);
const empty = new Uint8Array(0);

function hex(b: PickleValue): string {
  return Buffer.from(b as Uint8Array).toString('hex');
}

async function commit(
  c: RawClient,
  id: number,
  stores: Array<[Uint8Array, Uint8Array, Uint8Array]>,
): Promise<Uint8Array> {
  c.sendAsync('tpc_begin', [id, empty, new Uint8Array(Buffer.from(`txn ${id}`)), new Map(), null, ' ']);
  for (const [oid, serial, data] of stores) c.sendAsync('storea', [oid, serial, data, id]);
  const v = (await c.call('vote', [id])) as PickleValue[];
  assert.equal(v.length, 0);
  return (await c.call('tpc_finish', [id])) as Uint8Array;
}

describe('sessions', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ transactionTimeout: 1, invalidationQueueSize: 3 });
  });
  after(async () => {
    await s.stop();
  });

  test('get_info and server_status answer with the reference keys', async () => {
    const c = await RawClient.open(s.address);
    const info = (await c.call('get_info')) as PyDict;
    assert.deepEqual(
      [...info.keys()],
      ['length', 'size', 'name', 'supportsUndo', 'supports_record_iternext', 'interfaces'],
    );
    assert.equal(info.get('supportsUndo'), true);
    assert.equal(info.get('supports_record_iternext'), true);
    const ifaces = (info.get('interfaces') as PickleValue[]).map((p) => (p as string[]).join('.'));
    assert.deepEqual(ifaces, [
      'ZODB.interfaces.IBlobStorageRestoreable',
      'ZODB.interfaces.IBlobStorage',
      'ZODB.interfaces.IStorageRestoreable',
      'ZODB.interfaces.IStorageIteration',
      'ZODB.interfaces.IStorageUndoable',
      'ZODB.interfaces.IStorageCurrentRecordIteration',
      'ZODB.interfaces.IExternalGC',
      'ZODB.interfaces.IStorage',
      'zope.interface.Interface',
    ]);
    const status = (await c.call('server_status')) as PyDict;
    assert.deepEqual(
      [...status.keys()],
      [
        'connections',
        'loads',
        'stores',
        'commits',
        'aborts',
        'active_txns',
        'lock_time',
        'conflicts',
        'conflicts_resolved',
        'start',
        'waiting',
        'timeout-thread-is-alive',
        'last-transaction',
      ],
    );
    assert.equal(status.get('timeout-thread-is-alive'), true);
    assert.match(status.get('start') as string, /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$/);
    assert.equal(await c.call('ping'), null);
    await assert.rejects(c.call('new_oid'), (e: ServerError) => e.className === 'builtins.AttributeError');
    c.close();
  });

  test('new_oids: at most 100, at least 1, increasing', async () => {
    const c = await RawClient.open(s.address);
    const a = (await c.call('new_oids')) as Uint8Array[];
    const b = (await c.call('new_oids', [0])) as Uint8Array[];
    const d = (await c.call('new_oids', [500])) as Uint8Array[];
    assert.equal(a.length, 100);
    assert.equal(b.length, 1);
    assert.equal(d.length, 100);
    for (let i = 1; i < a.length; i++) assert.equal(u64(a[i]), u64(a[i - 1]) + 1n);
    assert.ok(u64(b[0]) > u64(a[99]));
    c.close();
  });

  test('a transaction that times out is aborted and its lock goes to the next voter', async () => {
    const holder = await RawClient.open(s.address);
    const other = await RawClient.open(s.address);
    const [oidA, oidB] = (await holder.call('new_oids', [2])) as Uint8Array[];
    holder.sendAsync('tpc_begin', [1, empty, empty, new Map(), null, ' ']);
    holder.sendAsync('storea', [oidA, z64, rec(1), 1]);
    await holder.call('vote', [1]);
    // the holder never finishes; the other client's vote waits, then gets the lock when the timeout fires
    const started = Date.now();
    const tid = await commit(other, 2, [[oidB, z64, rec(2)]]);
    const waited = Date.now() - started;
    assert.ok(waited >= 800, `waited ${waited} ms`);
    await holder.closedPromise;
    assert.ok(
      s.logs.some((l) => l.includes('CRITICAL') && l.includes('Transaction timeout after 1 seconds')),
    );
    // the timed-out transaction left nothing behind
    await assert.rejects(
      other.call('loadBefore', [oidA, maxtid]),
      (e: ServerError) => e.className === 'ZODB.POSException.POSKeyError',
    );
    const r = (await other.call('loadBefore', [oidB, maxtid])) as PickleValue[];
    assert.equal(hex(r[1]), hex(tid));
    const status = s.server.storages.get('1')!.status();
    assert.equal(status.get('lock_time'), null);
    assert.equal(status.get('active_txns'), 0);
    other.close();
  });

  test("a commit's flush may block the event loop only when the tpc_finish calls it covers are all that runs", async () => {
    const storage = s.server.storages.get('1')!.storage;
    const policy = storage.mayFlushInline!;
    // each answer, with the calls in progress when the flush was about to start
    const asked: Array<[boolean, number]> = [];
    storage.mayFlushInline = (commits) => {
      const r = policy(commits);
      asked.push([r, s.server.callsInFlight]);
      return r;
    };
    const begin = async (c: RawClient, id: number, oid: Uint8Array, n: number): Promise<void> => {
      c.sendAsync('tpc_begin', [id, empty, empty, new Map(), null, ' ']);
      const serial = ((await c.call('loadBefore', [oid, maxtid])) as PickleValue[])[1];
      c.sendAsync('storea', [oid, serial, rec(n), id]);
    };
    try {
      const a = await RawClient.open(s.address);
      const b = await RawClient.open(s.address);
      const c = await RawClient.open(s.address);
      const [oidA, oidB, oidC] = (await a.call('new_oids', [3])) as Uint8Array[];
      await commit(a, 5, [
        [oidA, z64, rec(1)],
        [oidB, z64, rec(1)],
        [oidC, z64, rec(1)],
      ]);
      assert.deepEqual(asked, [[true, 1]], 'a lone commit');
      await begin(a, 6, oidA, 2);
      await begin(b, 7, oidB, 2);
      await begin(c, 8, oidC, 2);
      await a.call('vote', [6]);
      // b and c wait for the lock a holds
      const bVote = b.call('vote', [7]);
      const cVote = c.call('vote', [8]);
      while (s.server.callsInFlight < 2) await new Promise((r) => setTimeout(r, 5));
      // a's finish hands the lock to b, whose vote is answered in the same turn, before a's flush starts; c
      // still waits (for b's tpc_finish, a round trip away): a's flush must not hold it up
      await a.call('tpc_finish', [6]);
      assert.deepEqual(asked.slice(1), [[false, 2]], 'with another call in progress');
      assert.deepEqual(await bVote, []);
      await b.call('tpc_finish', [7]);
      assert.deepEqual(await cVote, []);
      await c.call('tpc_finish', [8]);
      assert.deepEqual(asked.slice(2), [
        [true, 1],
        [true, 1],
      ]);
      assert.equal(s.server.callsInFlight, 0);
      a.close();
      b.close();
      c.close();
    } finally {
      storage.mayFlushInline = policy;
    }
  });

  test('invalidations reach other clients in commit order, never the committer; info precedes the tid', async () => {
    const a = await RawClient.open(s.address);
    const b = await RawClient.open(s.address);
    const oids = (await a.call('new_oids', [3])) as Uint8Array[];
    const t1 = await commit(a, 10, [
      [oids[0], z64, rec(1)],
      [oids[1], z64, rec(2)],
    ]);
    const t2 = await commit(a, 11, [[oids[0], t1, rec(3)]]);
    // the committer got info before each tpc_finish reply and no invalidation
    assert.deepEqual(
      a.others.map((m) => m.name),
      ['info', 'info'],
    );
    const got: Array<[string, string[]]> = [];
    while (got.length < 2) {
      const m = await b.nextMessage();
      if (m.name === 'invalidateTransaction')
        got.push([hex(m.args[0]), (m.args[1] as Uint8Array[]).map(hex)]);
    }
    assert.deepEqual(got, [
      [hex(t1), [hex(oids[0]), hex(oids[1])]],
      [hex(t2), [hex(oids[0])]],
    ]);
    a.close();
    b.close();
  });

  test("a transaction's invalidation, encoded once, reaches pickle and msgpack clients as each codec encodes it", async () => {
    const a = await RawClient.open(s.address, { encoding: 'Z' });
    const others = [
      await RawClient.open(s.address, { encoding: 'Z' }),
      await RawClient.open(s.address, { encoding: 'M' }),
      await RawClient.open(s.address, { encoding: 'Z' }),
      await RawClient.open(s.address, { encoding: 'M' }),
    ];
    const oids = (await a.call('new_oids', [2])) as Uint8Array[];
    const tids = [
      await commit(a, 60, [
        [oids[0], z64, rec(1)],
        [oids[1], z64, rec(2)],
      ]),
    ];
    tids.push(await commit(a, 61, [[oids[1], tids[0], rec(3)]]));
    const expected = (enc: 'Z' | 'M', i: number): Buffer =>
      Buffer.from(
        codecFor(enc, 'server').encodeCall(0, true, 'invalidateTransaction', [
          tids[i],
          i === 0 ? [oids[0], oids[1]] : [oids[1]],
        ]),
      );
    for (const [k, c] of others.entries()) {
      const enc = k % 2 === 0 ? 'Z' : 'M';
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(await c.nextFrame(), expected(enc, i), `client ${k} (${enc}), transaction ${i}`);
      }
      c.close();
    }
    assert.deepEqual(
      a.others.map((m) => m.name),
      ['info', 'info'],
    );
    a.close();
  });

  test('a load that read the old revision is answered before the invalidation that ends it', async () => {
    const a = await RawClient.open(s.address);
    const b = await RawClient.open(s.address);
    const [oid] = (await a.call('new_oids', [1])) as Uint8Array[];
    let serial = await commit(a, 20, [[oid, z64, rec(0)]]);
    // many loads by b in flight while a commits: every reply must precede the invalidation of a later tid
    for (let round = 0; round < 20; round++) {
      const ids: PickleValue[] = [];
      for (let i = 0; i < 30; i++) ids.push(b.send('loadBefore', [oid, maxtid]));
      serial = await commit(a, 21 + round, [[oid, serial, rec(round + 1)]]);
      let invalidated: string | null = null;
      let replies = 0;
      while (replies < ids.length || invalidated === null) {
        const m = await b.nextMessage();
        if (m.name === 'invalidateTransaction') {
          invalidated = hex(m.args[0]);
          continue;
        }
        replies++;
        const [, start] = m.body as PickleValue[];
        // a reply that follows the invalidation must already show the new revision (#155)
        if (invalidated !== null) assert.equal(hex(start), invalidated);
      }
    }
    a.close();
    b.close();
  });

  test('getInvalidations: from the queue, (last, []) when current, None when too old', async () => {
    const a = await RawClient.open(s.address);
    const oids = (await a.call('new_oids', [5])) as Uint8Array[];
    const tids: Uint8Array[] = [];
    for (let i = 0; i < 5; i++) tids.push(await commit(a, 40 + i, [[oids[i], z64, rec(i)]]));
    const last = tids[4];
    const current = (await a.call('getInvalidations', [last])) as PickleValue[];
    assert.equal(hex(current[0]), hex(last));
    assert.deepEqual(current[1], []);
    const recent = (await a.call('getInvalidations', [tids[2]])) as PickleValue[];
    assert.equal(hex(recent[0]), hex(last));
    assert.deepEqual((recent[1] as Uint8Array[]).map(hex).sort(), [hex(oids[3]), hex(oids[4])].sort());
    // the queue holds 3 transactions: tids[1] is older than its oldest entry
    assert.equal(await a.call('getInvalidations', [tids[0]]), null);
    a.close();
  });

  test('history, loadSerial, getTid, record_iternext and the iterator methods', async () => {
    const a = await RawClient.open(s.address);
    const [oid] = (await a.call('new_oids', [1])) as Uint8Array[];
    const t1 = await commit(a, 60, [[oid, z64, rec(7)]]);
    const t2 = await commit(a, 61, [[oid, t1, rec(8)]]);
    const h = (await a.call('history', [oid, 5])) as PyDict[];
    assert.equal(h.length, 2);
    assert.deepEqual([...h[0].keys()], ['time', 'user_name', 'description', 'tid', 'size']);
    assert.equal(hex(h[0].get('tid')!), hex(t2));
    assert.ok(h[0].get('time') instanceof PyFloat);
    assert.equal(Buffer.from(h[1].get('description') as Uint8Array).toString(), 'txn 60');
    assert.deepEqual([...((await a.call('loadSerial', [oid, t1])) as Uint8Array)], [...rec(7)]);
    assert.equal(hex(await a.call('getTid', [oid])), hex(t2));
    await assert.rejects(
      a.call('loadSerial', [oid, p64(1)]),
      (e: ServerError) => e.className === 'ZODB.POSException.POSKeyError',
    );
    const first = (await a.call('record_iternext', [])) as PickleValue[];
    assert.equal(first.length, 4);
    // transaction iteration: the two transactions of this test, with their records
    const iid = await a.call('iterator_start', [t1, t2]);
    const seen: string[] = [];
    for (;;) {
      const t = (await a.call('iterator_next', [iid])) as PickleValue[] | null;
      if (t === null) break;
      assert.equal(t[1], ' ');
      const rid = await a.call('iterator_record_start', [iid, t[0]]);
      for (;;) {
        const r = (await a.call('iterator_record_next', [rid])) as PickleValue[] | null;
        if (r === null) break;
        seen.push(`${hex(t[0])}:${hex(r[0])}:${(r[2] as Uint8Array)[3]}`);
      }
    }
    assert.deepEqual(seen, [`${hex(t1)}:${hex(oid)}:7`, `${hex(t2)}:${hex(oid)}:8`]);
    await assert.rejects(a.call('iterator_next', [999]), (e: ServerError) => {
      assert.equal(e.className, 'builtins.KeyError');
      assert.deepEqual([...(e.args as PickleValue[])], [999]);
      return true;
    });
    a.sendAsync('iterator_gc', [[iid, 12345]]);
    assert.equal(await a.call('ping'), null);
    a.close();
  });

  test('sendBlob of a missing blob is a POSKeyError with no blob messages', async () => {
    const a = await RawClient.open(s.address);
    await assert.rejects(
      a.call('sendBlob', [p64(424242), p64(1)]),
      (e: ServerError) => e.className === 'ZODB.POSException.POSKeyError',
    );
    assert.equal(a.others.length, 0);
    a.close();
  });

  test('a read-only session refuses new_oids and closes on tpc_begin', async () => {
    const a = await RawClient.open(s.address, { readOnly: true });
    await assert.rejects(a.call('new_oids'), (e: ServerError) => {
      assert.equal(e.className, 'ZODB.POSException.ReadOnlyError');
      assert.deepEqual([...(e.args as PickleValue[])], []);
      return true;
    });
    a.sendAsync('tpc_begin', [1, empty, empty, new Map(), null, ' ']);
    await a.closedPromise;
  });
});

test('a transaction larger than the commit-log threshold spills to disk and commits whole', async () => {
  const s = await startServer({ commitLogThreshold: 4096 });
  try {
    const c = await RawClient.open(s.address);
    const oids = (await c.call('new_oids', [100])) as Uint8Array[];
    const record = (i: number): Uint8Array => {
      const r = new Uint8Array(1000);
      r.set([0x80, 0x03, 0x42], 0);
      new DataView(r.buffer).setUint32(3, 1000 - 8, true);
      r.fill(i, 7, 999);
      r[999] = 0x2e;
      return r;
    };
    const tid = await commit(
      c,
      1,
      oids.map((o, i) => [o, z64, record(i)]),
    );
    for (let i = 0; i < oids.length; i += 17) {
      const r = (await c.call('loadBefore', [oids[i], maxtid])) as PickleValue[];
      assert.deepEqual(Buffer.from(r[0] as Uint8Array), Buffer.from(record(i)));
      assert.equal(hex(r[1]), hex(tid));
    }
    c.close();
  } finally {
    await s.stop();
  }
});
