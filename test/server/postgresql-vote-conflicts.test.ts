// A PostgreSQL storage finds write conflicts at the vote (under its object locks), not at each store as a
// FileStorage does. Served by zeo serve (client conflict resolution), the vote must still send the client
// every conflict of the transaction at once, as for a FileStorage: the client resolves them and votes again,
// at most 9 times (ClientStorage.tpc_vote), so one conflict per vote failed transactions with more than 9
// conflicting objects (ZEO's testConnection checkConcurrentLargeUpdates over PostgreSQL).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { PickleValue } from '../../src/pickle/index.js';
import { PostgreSQLStorage } from '../../src/storage/postgresql/index.js';
import { maxtid, z64 } from '../../src/storage/ids.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { RawClient } from '../helpers/raw-client.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';

const rec = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n & 0xff, 0x2e]);
const empty = new Uint8Array(0);
const hex = (b: PickleValue): string => Buffer.from(b as Uint8Array).toString('hex');

async function commit(
  c: RawClient,
  id: number,
  stores: Array<[Uint8Array, Uint8Array, Uint8Array]>,
): Promise<Uint8Array> {
  c.sendAsync('tpc_begin', [id, empty, empty, new Map(), null, ' ']);
  for (const [oid, serial, data] of stores) c.sendAsync('storea', [oid, serial, data, id]);
  assert.deepEqual(await c.call('vote', [id]), []);
  return (await c.call('tpc_finish', [id])) as Uint8Array;
}

describe('zeo serve over PostgreSQL: conflicts found at the vote', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  let server: TestServer;
  before(async () => {
    cluster = await startPostgres();
    const admin = new pg.Client(cluster.connection('postgres'));
    await admin.connect();
    await admin.query('CREATE DATABASE conflicts');
    await admin.end();
    const storage = await PostgreSQLStorage.open({
      dsn: `host=${cluster.socketDir} port=${cluster.port} user=${cluster.user} dbname=conflicts`,
      poolSize: 3,
    });
    server = await startServer({ opened: [{ name: '1', storage }] });
  });
  after(async () => {
    await server?.stop();
    await cluster?.stop();
  });

  test('every conflicting object of the transaction is sent to the client in one vote', async () => {
    const a = await RawClient.open(server.address);
    const b = await RawClient.open(server.address);
    try {
      const oids = (await a.call('new_oids', [12])) as Uint8Array[];
      const t1 = await commit(
        a,
        1,
        oids.map((oid) => [oid, z64, rec(1)]),
      );
      // a changes the odd ones; b, having read t1, changes all: the odd ones conflict
      const odd = oids.filter((_, i) => i % 2 === 1);
      const t2 = await commit(
        a,
        2,
        odd.map((oid) => [oid, t1, rec(2)]),
      );
      b.sendAsync('tpc_begin', [1, empty, empty, new Map(), null, ' ']);
      for (const oid of oids) b.sendAsync('storea', [oid, t1, rec(3), 1]);
      const conflicts = (await b.call('vote', [1])) as Array<Map<string, PickleValue>>;
      assert.deepEqual(conflicts.map((c) => hex(c.get('oid')!)).sort(), odd.map(hex).sort());
      for (const c of conflicts) {
        assert.deepEqual((c.get('serials') as Uint8Array[]).map(hex), [hex(t2), hex(t1)]);
        assert.equal(hex(c.get('data')!), hex(rec(3)));
      }
      // the client resolves them all (here: takes its own data) and votes once more: the commit goes through
      for (const oid of odd) b.sendAsync('storea', [oid, t2, rec(4), 1]);
      assert.deepEqual(await b.call('vote', [1]), []);
      const t3 = (await b.call('tpc_finish', [1])) as Uint8Array;
      for (const [i, oid] of oids.entries()) {
        const r = (await a.call('loadBefore', [oid, maxtid])) as PickleValue[];
        assert.equal(hex(r[0]), hex(i % 2 === 1 ? rec(4) : rec(3)));
        assert.equal(hex(r[1]), hex(t3));
      }
    } finally {
      a.close();
      b.close();
    }
  });
});
