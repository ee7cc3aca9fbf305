// The dashboard's JSON API (/api/server, /api/clients, /api/locks, /api/transactions) over the real HTTP
// listener, against a server that real Python ZODB clients (ZEO's ClientStorage, ZODB's DB, BTrees) commit to:
// the transactions they made, newest first, with what Python's own iterator says of them; the clients and how
// they speak; a raw client holding the commit lock while another waits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TransactionSummary } from '../../../src/server/introspect-types.js';
import { p64, z64 } from '../../../src/storage/ids.js';
import { request } from '../../helpers/http.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';
import { RawClient } from '../../helpers/raw-client.js';
import { startServer, type TestServer } from '../../helpers/server-fixture.js';
import { waitUntil } from '../../helpers/wait.js';

/** Python clients kept open between snippets (the oracle's process lives as long as the test). */
const PY_OPEN = `
import builtins, transaction
from ZEO.ClientStorage import ClientStorage
from ZODB.DB import DB
from BTrees.OOBTree import OOBTree
addr = tuple(args['addr'])
builtins._dash = d = {}
d['db'] = DB(ClientStorage(addr, wait_timeout=30))
d['ro'] = ClientStorage(addr, read_only=True, wait_timeout=30)
result = None
`;

const PY_COMMIT = `
import builtins, transaction
from BTrees.OOBTree import OOBTree
d = builtins._dash
conn = d['db'].open()
tm = conn.transaction_manager
t = tm.begin()
t.user = args['user']
t.description = args['description']
root = conn.root()
tree = root.get('tree')
if tree is None:
    tree = root['tree'] = OOBTree()
for i in range(args['n']):
    tree['k%d' % (len(tree) + i)] = 'v' * 50
tm.commit()
tid = conn._storage.lastTransaction().hex()
conn.close()
result = tid
`;

/** what Python's own iterator (over ZEO) says of a transaction: user, description, data bytes, records */
const PY_TXN = `
import builtins
from ZODB.utils import p64, u64
d = builtins._dash
tid = bytes.fromhex(args['tid'])
out = None
for t in d['ro'].iterator(tid, tid):
    recs = list(t)
    out = {'user': t.user.decode(), 'description': t.description.decode(),
           'size': sum(len(r.data or b'') for r in recs), 'records': len(recs)}
result = out
`;

const PY_CLOSE = `
import builtins
d = builtins._dash
d['db'].close(); d['ro'].close()
result = None
`;

async function api<T>(fx: TestServer, path: string): Promise<T> {
  const r = await request(`${fx.http!.url}${path}`, { token: fx.http!.token });
  assert.equal(r.status, 200, `${path}: ${r.status} ${r.body}`);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  return JSON.parse(r.body) as T;
}

interopTest(
  'the API shows Python clients, their transactions newest first, and the commit lock',
  async (oracle: Oracle) => {
    const fx = await startServer({ http: {} });
    const raws: RawClient[] = [];
    let pythonOpen = false;
    try {
      const port = (fx.address as { port: number }).port;
      await oracle.json(PY_OPEN, undefined, { addr: ['127.0.0.1', port] });
      pythonOpen = true;
      const tids: string[] = [];
      tids.push(
        await oracle.json<string>(PY_COMMIT, undefined, {
          user: 'alice',
          description: 'first: a tree',
          n: 3,
        }),
      );
      tids.push(
        await oracle.json<string>(PY_COMMIT, undefined, {
          user: 'bob',
          description: 'second: more keys',
          n: 20,
        }),
      );

      // recent transactions, newest first, as Python's iterator sees them
      const { storage, transactions } = await api<{ storage: string; transactions: TransactionSummary[] }>(
        fx,
        '/api/transactions?storage=1&limit=10',
      );
      assert.equal(storage, '1');
      assert.deepEqual(
        transactions.slice(0, 2).map((t) => t.tid),
        [tids[1], tids[0]],
      );
      for (const t of transactions.slice(0, 2)) {
        const py = await oracle.json<{ user: string; description: string; size: number; records: number }>(
          PY_TXN,
          undefined,
          { tid: t.tid },
        );
        assert.deepEqual({ user: t.user, description: t.description, size: t.size, records: t.records }, py);
        assert.ok(!Number.isNaN(Date.parse(t.time)));
      }
      assert.equal(transactions[0].user, 'bob');
      // the root's creation (by the first Python client) is the oldest
      assert.equal(transactions.length, 3);
      const one = await api<{ transactions: TransactionSummary[] }>(fx, '/api/transactions?limit=1');
      assert.deepEqual(
        one.transactions.map((t) => t.tid),
        [tids[1]],
      );

      // the server
      const server = await api<{
        version: string;
        addresses: string[];
        clients: number;
        storages: Array<{ name: string; engine: string; objects: number; lastTransaction: { tid: string } }>;
      }>(fx, '/api/server');
      assert.match(server.version, /^\d+\.\d+\.\d+/);
      assert.deepEqual(server.addresses, [`127.0.0.1:${port}`]);
      assert.equal(server.storages[0].name, '1');
      assert.equal(server.storages[0].lastTransaction.tid, tids[1]);
      // the root and the tree (a small OOBTree keeps its one bucket in its own record)
      assert.equal(server.storages[0].objects, 2);

      // the clients: the Python ones (pickle, one read-only) and a raw msgpack one
      const raw = await RawClient.open(fx.address, { encoding: 'M' });
      raws.push(raw);
      const rawLabel = `${raw.socket.localAddress}:${raw.socket.localPort}`;
      await waitUntil(() => fx.server.connectionCount === 3, 'three clients');
      const clients = await api<{
        total: number;
        clients: Array<{
          address: string;
          encoding: string;
          protocol: string;
          readOnly: boolean;
          storage: string;
        }>;
      }>(fx, '/api/clients');
      assert.equal(clients.total, 3);
      const python = clients.clients.filter((c) => c.address !== rawLabel);
      assert.deepEqual(python.map((c) => [c.storage, c.protocol, c.encoding, c.readOnly]).sort(), [
        ['1', 'Z5', 'pickle', false],
        ['1', 'Z5', 'pickle', true],
      ]);
      const m = clients.clients.find((c) => c.address === rawLabel)!;
      assert.deepEqual([m.protocol, m.encoding, m.readOnly], ['M5', 'msgpack', false]);

      // the commit lock: a raw client that voted holds it, a second voter waits
      const second = await RawClient.open(fx.address);
      raws.push(second);
      const secondLabel = `${second.socket.localAddress}:${second.socket.localPort}`;
      raw.sendAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
      raw.sendAsync('storea', [p64(1000), z64, new Uint8Array([1, 2, 3]), 1]);
      await raw.call('vote', [1]);
      second.sendAsync('tpc_begin', [2, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
      second.sendAsync('storea', [p64(1001), z64, new Uint8Array([4]), 2]);
      const secondVote = second.call('vote', [2]);
      await waitUntil(() => fx.server.storages.get('1')!.lock.waiting === 1, 'the second voter waits');
      const locks = await api<{
        storages: Array<{
          storage: string;
          holder: { client: string } | null;
          waiting: Array<{ client: string }>;
        }>;
      }>(fx, '/api/locks');
      assert.equal(locks.storages[0].holder?.client, rawLabel);
      assert.deepEqual(
        locks.storages[0].waiting.map((w) => w.client),
        [secondLabel],
      );
      const during = await api<{
        clients: Array<{ address: string; lock: string | null; inTransaction: boolean }>;
      }>(fx, '/api/clients');
      assert.deepEqual(
        during.clients
          .filter((c) => c.lock !== null)
          .map((c) => [c.address, c.lock, c.inTransaction])
          .sort(),
        [
          [rawLabel, 'holder', true],
          [secondLabel, 'waiting', true],
        ].sort(),
      );
      await raw.call('tpc_abort', [1]);
      await secondVote;
      await second.call('tpc_abort', [2]);
      const free = await api<{ storages: Array<{ holder: unknown; waiting: unknown[] }> }>(fx, '/api/locks');
      assert.deepEqual([free.storages[0].holder, free.storages[0].waiting], [null, []]);
    } finally {
      for (const r of raws) r.close();
      if (pythonOpen) await oracle.json(PY_CLOSE);
      await fx.stop();
    }
  },
);

test('bad requests get a clear error; without the token, nothing', async () => {
  const fx = await startServer({ http: {} });
  try {
    const url = fx.http!.url;
    const token = fx.http!.token;
    for (const limit of ['0', '101', 'x', '-1', '1.5']) {
      const r = await request(`${url}/api/transactions?limit=${limit}`, { token });
      assert.equal(r.status, 400, limit);
      assert.match(
        (JSON.parse(r.body) as { error: string }).error,
        /limit must be a whole number from 1 to 100/,
      );
    }
    const missing = await request(`${url}/api/transactions?storage=nope`, { token });
    assert.equal(missing.status, 404);
    assert.match(missing.body, /no such storage: nope/);
    for (const path of ['/api/server', '/api/clients', '/api/locks', '/api/transactions', '/']) {
      const r = await request(`${url}${path}`);
      assert.equal(r.status, 401, path);
      assert.ok(!r.body.includes('"storages"') && !r.body.includes('<html'), path);
    }
    // the page and its files
    const page = await request(`${url}/`, { token });
    assert.equal(page.status, 200);
    assert.match(page.body, /<script type="module" src="\/ui\/js\/dashboard.js">/);
    const script = await request(`${url}/ui/js/dashboard.js`, { token });
    assert.equal(script.status, 200);
    assert.match(String(script.headers['content-type']), /^text\/javascript/);
    const css = await request(`${url}/ui/style.css`, { token });
    assert.equal(css.status, 200);
    assert.equal((await request(`${url}/ui/js/../../package.json`, { token })).status, 404);
  } finally {
    await fx.stop();
  }
});
