// The dashboard's read-only snapshots (src/server/introspect.ts) of a real server with raw protocol clients:
// who is connected and how, who holds the commit lock and who waits, the recent transactions (from commits,
// and read back from the file after a restart), and the configuration with its secrets redacted.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultConfig, type ServerConfig } from '../../src/server/config.js';
import {
  clientsSnapshot,
  configSnapshot,
  locksSnapshot,
  recentTransactions,
  redactDsn,
  serverSnapshot,
} from '../../src/server/introspect.js';
import { RecentTransactions } from '../../src/server/recent-transactions.js';
import { p64, z64 } from '../../src/storage/ids.js';
import { RawClient } from '../helpers/raw-client.js';
import { startServer } from '../helpers/server-fixture.js';
import { waitUntil } from '../helpers/wait.js';

const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));

/** tpc_begin (with user and description) and stores, up to the vote (not sent) */
function begin(c: RawClient, id: number, user: string, description: string, records: Uint8Array[]): void {
  c.sendAsync('tpc_begin', [id, bytes(user), bytes(description), new Map(), null, ' ']);
  records.forEach((data, i) => c.sendAsync('storea', [p64(100 * id + i + 1), z64, data, id]));
}

async function commit(c: RawClient, id: number, user: string, description: string, records: Uint8Array[]) {
  begin(c, id, user, description, records);
  await c.call('vote', [id]);
  return (await c.call('tpc_finish', [id])) as Uint8Array;
}

test('clients: address, storage, protocol and encoding, read-only, transaction and lock', async () => {
  const fx = await startServer();
  const clients: RawClient[] = [];
  try {
    const msgpack = await RawClient.open(fx.address, { encoding: 'M' });
    const pickleRO = await RawClient.open(fx.address, { encoding: 'Z', readOnly: true });
    const unregistered = await RawClient.open(fx.address, { register: null });
    clients.push(msgpack, pickleRO, unregistered);
    await waitUntil(() => clientsSnapshot(fx.server).total === 3, 'three clients');
    await waitUntil(
      () => clientsSnapshot(fx.server).clients.every((c) => c.protocol !== null),
      'every handshake',
    );
    const snap = clientsSnapshot(fx.server);
    const local = (c: RawClient): string => `${c.socket.localAddress}:${c.socket.localPort}`;
    const byAddress = new Map(snap.clients.map((c) => [c.address, c]));
    const m = byAddress.get(local(msgpack))!;
    assert.deepEqual(
      [m.storage, m.protocol, m.encoding, m.readOnly, m.inTransaction, m.lock],
      ['1', 'M5', 'msgpack', false, false, null],
    );
    const p = byAddress.get(local(pickleRO))!;
    assert.deepEqual([p.storage, p.protocol, p.encoding, p.readOnly], ['1', 'Z5', 'pickle', true]);
    assert.equal(byAddress.get(local(unregistered))!.storage, null);
    assert.ok(Date.parse(m.connectedSince) <= Date.now());
    assert.equal(m.callsInFlight, 0);

    // a transaction in progress shows, and its holding the lock once voted
    begin(msgpack, 1, 'alice', 'first', [bytes('a')]);
    await waitUntil(
      () => clientsSnapshot(fx.server).clients.some((c) => c.address === local(msgpack) && c.inTransaction),
      'the transaction',
    );
    await msgpack.call('vote', [1]);
    const voted = clientsSnapshot(fx.server).clients.find((c) => c.address === local(msgpack))!;
    assert.equal(voted.lock, 'holder');
    await msgpack.call('tpc_finish', [1]);
  } finally {
    for (const c of clients) c.close();
    await fx.stop();
  }
});

test("locks: the voter holds the storage's commit lock, later voters wait in order", async () => {
  const fx = await startServer();
  const [a, b, c] = await Promise.all([1, 2, 3].map(() => RawClient.open(fx.address)));
  try {
    const label = (x: RawClient): string => `${x.socket.localAddress}:${x.socket.localPort}`;
    assert.deepEqual(locksSnapshot(fx.server), [
      { storage: '1', holder: null, waiting: [], waitingTotal: 0 },
    ]);
    begin(a, 1, 'a', 'holder', [bytes('x')]);
    await a.call('vote', [1]);
    begin(b, 2, 'b', 'second', [bytes('y')]);
    const bVote = b.call('vote', [2]);
    await waitUntil(() => fx.server.storages.get('1')!.lock.waiting === 1, 'b waits');
    begin(c, 3, 'c', 'third', [bytes('z')]);
    const cVote = c.call('vote', [3]);
    await waitUntil(() => fx.server.storages.get('1')!.lock.waiting === 2, 'c waits');

    const [lock] = locksSnapshot(fx.server);
    assert.equal(lock.holder?.client, label(a));
    assert.deepEqual(
      lock.waiting.map((w) => w.client),
      [label(b), label(c)],
    );
    assert.equal(lock.waitingTotal, 2);
    assert.ok(Date.parse(lock.holder.since) <= Date.parse(lock.waiting[0].since));
    const waiting = clientsSnapshot(fx.server).clients.find((x) => x.address === label(b))!;
    assert.equal(waiting.lock, 'waiting');

    // a's finish hands the lock to b, the first in the queue
    await a.call('tpc_finish', [1]);
    await bVote;
    const [after] = locksSnapshot(fx.server);
    assert.equal(after.holder?.client, label(b));
    assert.deepEqual(
      after.waiting.map((w) => w.client),
      [label(c)],
    );
    await b.call('tpc_finish', [2]);
    await cVote;
    await c.call('tpc_finish', [3]);
    assert.equal(locksSnapshot(fx.server)[0].holder, null);
  } finally {
    for (const x of [a, b, c]) x.close();
    await fx.stop();
  }
});

test('recent transactions: newest first with user, description, data bytes and records; read back after a restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-introspect-'));
  try {
    let fx = await startServer({ dir });
    const c = await RawClient.open(fx.address);
    const tids: string[] = [];
    tids.push(Buffer.from(await commit(c, 1, 'alice', 'one record', [bytes('12345')])).toString('hex'));
    tids.push(
      Buffer.from(await commit(c, 2, 'bob', 'two records, é', [bytes('abc'), bytes('defgh')])).toString(
        'hex',
      ),
    );
    const served = fx.server.storages.get('1')!;
    const fresh = await recentTransactions(served, 10);
    const expected = [
      { tid: tids[1], user: 'bob', description: 'two records, é', size: 8, records: 2 },
      { tid: tids[0], user: 'alice', description: 'one record', size: 5, records: 1 },
    ];
    assert.deepEqual(
      fresh.map(({ tid, user, description, size, records }) => ({ tid, user, description, size, records })),
      expected,
    );
    assert.ok(Math.abs(Date.parse(fresh[0].time) - Date.now()) < 60_000);
    assert.equal((await recentTransactions(served, 1)).length, 1);
    c.close();
    await fx.stop();

    // the ring is seeded from the file's last transactions; what they say is read from the file when asked
    fx = await startServer({ dir });
    try {
      const reread = await recentTransactions(fx.server.storages.get('1')!, 10);
      assert.deepEqual(
        reread.map(({ tid, user, description, size, records }) => ({
          tid,
          user,
          description,
          size,
          records,
        })),
        expected,
      );
      const summary = serverSnapshot(fx.server, null, { version: '9.9.9', startedAt: Date.now() - 5000 });
      assert.equal(summary.storages[0].lastTransaction?.tid, tids[1]);
      assert.equal(summary.storages[0].engine, 'FileStorage');
      assert.ok(summary.storages[0].objects === 3 && summary.storages[0].sizeBytes > 0);
      assert.ok(summary.uptimeSeconds >= 5);
      assert.deepEqual(summary.addresses, [`127.0.0.1:${(fx.address as { port: number }).port}`]);
    } finally {
      await fx.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the ring of recent transactions keeps the last ones, newest first', () => {
  const ring = new RecentTransactions(3);
  ring.seed([5, 4].map((n) => ({ tid: p64(n), records: n, info: null })));
  assert.deepEqual(
    ring.newest(10).map((e) => e.records),
    [5, 4],
  );
  for (const n of [6, 7, 8]) ring.push({ tid: p64(n), records: n, info: null });
  assert.deepEqual(
    ring.newest(10).map((e) => e.records),
    [8, 7, 6],
  );
  assert.deepEqual(
    ring.newest(2).map((e) => e.records),
    [8, 7],
  );
  assert.equal(new RecentTransactions(0).newest(5).length, 0);
});

test('the configuration: every <zeo> setting and storage section, DSN passwords and tokens redacted', () => {
  assert.equal(
    redactDsn('dbname=zodb user=zeo password=s3cret host=db'),
    'dbname=zodb user=zeo password=*** host=db',
  );
  assert.equal(redactDsn("password='a b' dbname=x"), 'password=*** dbname=x');
  assert.equal(redactDsn('postgresql://zeo:s3cret@db:5432/zodb'), 'postgresql://zeo:***@db:5432/zodb');
  assert.equal(
    redactDsn('postgres://db/zodb?user=zeo&password=s3cret'),
    'postgres://db/zodb?user=zeo&password=***',
  );
  assert.equal(redactDsn('dbname=zodb'), 'dbname=zodb');

  const config = {
    ...defaultConfig({}),
    ssl: {
      certificate: '/etc/zeo/cert.pem',
      key: '/etc/zeo/key.pem',
      passwordFunction: null,
      authenticate: '/ca',
    },
    storages: [
      {
        kind: 'postgresql',
        name: 'pg',
        options: { dsn: 'host=db password=hunter2', poolSize: 4 },
        ignored: [],
      },
    ],
    // what the listener's settings look like: a token file is shown, a token never
    httpTokenFile: '/etc/zeo/token',
    httpToken: 'abcdef',
  } as unknown as ServerConfig;
  const snap = configSnapshot(config);
  assert.equal(snap.zeo.address, '127.0.0.1:8100');
  assert.equal(snap.zeo['invalidation-queue-size'], 100);
  assert.equal(snap.zeo['read-only'], false);
  assert.equal(snap.zeo['ssl.certificate'], '/etc/zeo/cert.pem');
  assert.equal(snap.zeo['http-token-file'], '/etc/zeo/token');
  assert.equal(snap.zeo['http-token'], '***');
  assert.ok(!JSON.stringify(snap).includes('abcdef'));
  assert.ok(!JSON.stringify(snap).includes('hunter2'));
  assert.deepEqual(snap.storages, [
    {
      type: 'postgresql',
      name: 'pg',
      settings: { dsn: 'host=db password=***', 'pool-size': 4, ignored: null },
    },
  ]);
  assert.ok(!('storages' in snap.zeo) && !('sources' in snap.zeo));
});
