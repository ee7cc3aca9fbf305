// The server's Prometheus metrics (/metrics): the exposition parses strictly, and its counters, gauges and
// histograms move as real Python clients (ZEO's ClientStorage under ZODB's DB) load, commit, conflict and
// leave, per storage, on a FileStorage and a MappingStorage served together.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'node:test';
import { dispatch } from '../../src/server/http/routes.js';
import { metricsRoutes } from '../../src/server/http/metrics-routes.js';
import type { StorageServer } from '../../src/server/server.js';
import { tidTime } from '../../src/storage/timestamp.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { parsePrometheusText, type PromFamily, type PromSample } from '../helpers/prometheus-text.js';
import { fileStorageConfig, startServer, type TestServer } from '../helpers/server-fixture.js';
import { waitUntil } from '../helpers/wait.js';

type Families = Map<string, PromFamily>;

function parseExposition(text: string): Families {
  return parsePrometheusText(text);
}

/** The sample of `name` (a histogram: its _count) with these labels; undefined when there is none. */
function sample(
  families: Families,
  name: string,
  labels: Record<string, string> = {},
): PromSample | undefined {
  const f = families.get(name);
  assert.ok(f, `no metric ${name}`);
  const own = f.type === 'histogram' ? `${name}_count` : name;
  const want = JSON.stringify(Object.entries(labels).sort());
  return f.samples.find((s) => s.name === own && JSON.stringify(Object.entries(s.labels).sort()) === want);
}

function value(families: Families, name: string, storage?: string): number {
  const s = sample(families, name, storage === undefined ? {} : { storage });
  assert.ok(s, `no ${name}{storage="${storage}"}`);
  return s.value;
}

/** The metrics routes on an HTTP server of the test's own (the listener with its access control is `http`'s). */
async function serveMetrics(
  server: StorageServer,
): Promise<{ scrape(): Promise<Families>; close(): Promise<void> }> {
  const routes = metricsRoutes({ server, config: null, log: server.log });
  const h = http.createServer((req, res) => {
    void dispatch(routes, req, res, (e) => server.log.error('metrics route failed', e));
  });
  await new Promise<void>((resolve) => h.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(h.address() as AddressInfo).port}/metrics`;
  return {
    async scrape() {
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      return parseExposition(await res.text());
    },
    close: () => new Promise<void>((resolve) => h.close(() => resolve())),
  };
}

test('the parser is strict: a malformed line fails', () => {
  const good = '# HELP a_total A.\n# TYPE a_total counter\na_total{storage="1"} 3\n';
  assert.equal(value(parseExposition(good), 'a_total', '1'), 3);
  assert.equal(value(parseExposition(good.replace('} 3', '} Nan')), 'a_total', '1'), NaN);
  const histogram =
    '# TYPE h histogram\nh_bucket{le="0.5",storage="1"} 1\nh_bucket{le="+Inf",storage="1"} 2\n' +
    'h_sum{storage="1"} 0.7\nh_count{storage="1"} 2\n';
  assert.equal(value(parseExposition(histogram), 'h', '1'), 2);
  for (const bad of [
    good.replace('} 3', '} three'),
    good.replace('{storage="1"}', '{storage=1}'),
    good.replace('{storage="1"}', '{storage="1"'),
    good.replace(/a_total/g, 'a-total'),
    good.replace('# TYPE a_total counter', '# TYPE a_total countr'),
    good + 'a_total{storage="1"} 4\n',
    good + '# TYPE b gauge\nb 1\na_total{storage="2"} 4\n',
    good.slice(0, -1),
    histogram.replace('h_count{storage="1"} 2', 'h_count{storage="1"} 3'),
    histogram.replace('le="+Inf",storage="1"} 2', 'le="+Inf",storage="1"} 0'),
  ]) {
    assert.throws(() => parseExposition(bad), Error, bad);
  }
});

test('each server has a registry of its own, made once', async () => {
  const a = await startServer({ storages: () => [{ kind: 'mappingstorage', name: '1', description: 'a' }] });
  const b = await startServer({ storages: () => [{ kind: 'mappingstorage', name: '1', description: 'b' }] });
  try {
    assert.equal(a.server.metrics, a.server.metrics);
    assert.notEqual(a.server.metrics.registry, b.server.metrics.registry);
    const fa = parseExposition(await a.server.metrics.text());
    const fb = parseExposition(await b.server.metrics.text());
    assert.equal(value(fa, 'zeo_commits_total', '1'), 0);
    assert.equal(value(fb, 'zeo_commits_total', '1'), 0);
    // prom-client's own process and Node.js metrics
    assert.ok(value(fa, 'process_cpu_user_seconds_total') > 0);
    assert.ok(value(fa, 'nodejs_heap_size_total_bytes') > 0);
  } finally {
    await a.stop();
    await b.stop();
  }
});

/** ZODB on one storage of the server, kept open across calls (sys._metrics_dbs[key]). */
const PY_OPEN = `
import sys, ZODB, transaction
from ZEO.ClientStorage import ClientStorage
from persistent.mapping import PersistentMapping
dbs = sys.__dict__.setdefault('_metrics_dbs', {})
addr, storage, key = args
cs = ClientStorage(tuple(addr), storage=storage, wait_timeout=30)
db = ZODB.DB(cs)
tm = transaction.TransactionManager()
conn = db.open(tm)
dbs[key] = (db, tm, conn)
result = None
`;

/** `count` commits of a change to root['m'] (a PersistentMapping), then reads it back. */
const PY_COMMIT = `
import sys
from persistent.mapping import PersistentMapping
db, tm, conn = sys._metrics_dbs[args[0]]
root = conn.root()
for i in range(args[1]):
    m = root.get('m')
    if m is None:
        m = root['m'] = PersistentMapping()
    m['n'] = m.get('n', 0) + 1
    m['data'] = b'x' * 1000
    tm.commit()
result = root['m']['n']
`;

const PY_CLOSE = `
import sys
db, tm, conn = sys._metrics_dbs.pop(args[0])
tm.abort()
conn.close()
db.close()
result = None
`;

/** Two clients change the same object from the same state: the second's commit conflicts and is aborted. */
const PY_CONFLICT = `
import sys
from ZODB.POSException import ConflictError
(_, tm1, c1), (_, tm2, c2) = sys._metrics_dbs[args[0]], sys._metrics_dbs[args[1]]
tm1.begin(); tm2.begin()
m1, m2 = c1.root()['m'], c2.root()['m']
m1['n'] = m1['n'] + 100
m2['n'] = m2['n'] + 1000
tm1.commit()
try:
    tm2.commit()
    result = 'committed'
except ConflictError:
    tm2.abort()
    result = 'conflict'
`;

async function py(oracle: Oracle, code: string, ...args: unknown[]): Promise<unknown> {
  return oracle.json(code, undefined, args);
}

interopTest(
  'counters, gauges and histograms move as Python clients load, commit and conflict',
  async (oracle) => {
    const s: TestServer = await startServer({
      storages: (dir) => [
        fileStorageConfig(dir),
        { kind: 'mappingstorage', name: 'mem', description: 'mem' },
      ],
    });
    const web = await serveMetrics(s.server);
    const addr = ['127.0.0.1', (s.address as { port: number }).port];
    try {
      const m0 = await web.scrape();
      for (const storage of ['1', 'mem']) {
        assert.equal(value(m0, 'zeo_clients', storage), 0);
        assert.equal(value(m0, 'zeo_commits_total', storage), 0);
      }
      assert.equal(value(m0, 'zeo_connections'), 0);
      assert.equal(value(m0, 'zeo_vote_duration_seconds', '1'), 0);

      await py(oracle, PY_OPEN, addr, '1', 'a');
      assert.equal(await py(oracle, PY_COMMIT, 'a', 3), 3);
      const m1 = await web.scrape();
      const stats = s.server.storages.get('1')!.stats;
      // counted as server_status counts them, per storage
      assert.ok(stats.commits >= 3);
      assert.equal(value(m1, 'zeo_commits_total', '1'), stats.commits);
      assert.equal(value(m1, 'zeo_loads_total', '1'), stats.loads);
      assert.equal(value(m1, 'zeo_stores_total', '1'), stats.stores);
      assert.ok(stats.stores >= stats.commits, `${stats.stores} stores`);
      assert.equal(value(m1, 'zeo_clients', '1'), 1);
      assert.equal(value(m1, 'zeo_connections'), 1);
      assert.ok(value(m1, 'zeo_received_bytes_total', '1') > 3000, 'the records came in');
      assert.ok(value(m1, 'zeo_sent_bytes_total', '1') > 0);
      // one vote, finish, flush and lock hold per commit
      assert.equal(value(m1, 'zeo_vote_duration_seconds', '1'), stats.commits);
      assert.equal(value(m1, 'zeo_finish_duration_seconds', '1'), stats.commits);
      assert.ok(value(m1, 'zeo_fsync_duration_seconds', '1') >= 1);
      assert.ok(value(m1, 'zeo_fsync_duration_seconds', '1') <= stats.commits);
      assert.equal(value(m1, 'zeo_commit_lock_hold_seconds', '1'), stats.commits);
      assert.equal(value(m1, 'zeo_commit_lock_wait_seconds', '1'), stats.commits);
      assert.equal(value(m1, 'zeo_commit_lock_waiting', '1'), 0);
      // FileStorage's read cache: the commits wrote through into it
      assert.ok(value(m1, 'zeo_cache_size_bytes', '1') > 0);
      const fs = s.server.storages.get('1')!.storage;
      assert.equal(value(m1, 'zeo_storage_objects', '1'), fs.len());
      assert.equal(value(m1, 'zeo_storage_size_bytes', '1'), fs.getSize());
      assert.equal(value(m1, 'zeo_last_transaction_timestamp_seconds', '1'), tidTime(fs.lastTransaction()));
      assert.equal(value(m1, 'zeo_invalidation_queue_transactions', '1'), stats.commits);
      // nothing moved on the other storage; a MappingStorage has no flush and no record cache
      assert.equal(value(m1, 'zeo_commits_total', 'mem'), 0);
      assert.equal(value(m1, 'zeo_received_bytes_total', 'mem'), 0);
      assert.equal(sample(m1, 'zeo_fsync_duration_seconds', { storage: 'mem' }), undefined);
      assert.equal(sample(m1, 'zeo_cache_size_bytes', { storage: 'mem' }), undefined);
      assert.equal(sample(m1, 'zeo_last_transaction_timestamp_seconds', { storage: 'mem' }), undefined);

      // a second client loads what the first wrote: loads and cache hits move
      await py(oracle, PY_OPEN, addr, '1', 'b');
      assert.equal(await py(oracle, PY_COMMIT, 'b', 0), 3);
      const m2 = await web.scrape();
      assert.ok(value(m2, 'zeo_loads_total', '1') > value(m1, 'zeo_loads_total', '1'));
      assert.ok(value(m2, 'zeo_cache_hits_total', '1') > value(m1, 'zeo_cache_hits_total', '1'));
      assert.equal(value(m2, 'zeo_clients', '1'), 2);

      // the same object changed by both: one conflict, one abort
      assert.equal(await py(oracle, PY_CONFLICT, 'a', 'b'), 'conflict');
      const m3 = await web.scrape();
      assert.equal(value(m3, 'zeo_conflicts_total', '1'), value(m2, 'zeo_conflicts_total', '1') + 1);
      assert.ok(value(m3, 'zeo_aborts_total', '1') > value(m2, 'zeo_aborts_total', '1'));
      assert.equal(value(m3, 'zeo_commits_total', '1'), value(m2, 'zeo_commits_total', '1') + 1);

      // the MappingStorage, on its own label
      await py(oracle, PY_OPEN, addr, 'mem', 'c');
      assert.equal(await py(oracle, PY_COMMIT, 'c', 2), 2);
      const m4 = await web.scrape();
      const memStats = s.server.storages.get('mem')!.stats;
      assert.equal(value(m4, 'zeo_commits_total', 'mem'), memStats.commits);
      assert.ok(memStats.commits >= 2);
      assert.equal(value(m4, 'zeo_vote_duration_seconds', 'mem'), memStats.commits);
      assert.equal(value(m4, 'zeo_clients', 'mem'), 1);
      assert.ok(value(m4, 'zeo_received_bytes_total', 'mem') > 2000);
      assert.equal(value(m4, 'zeo_commits_total', '1'), value(m3, 'zeo_commits_total', '1'));

      // clients leave: the gauges follow, the byte counters keep what the closed connections moved
      for (const key of ['a', 'b', 'c']) await py(oracle, PY_CLOSE, key);
      await waitUntil(() => s.server.connectionCount === 0, 'the connections to close');
      const m5 = await web.scrape();
      assert.equal(value(m5, 'zeo_clients', '1'), 0);
      assert.equal(value(m5, 'zeo_clients', 'mem'), 0);
      assert.equal(value(m5, 'zeo_connections'), 0);
      assert.ok(value(m5, 'zeo_received_bytes_total', '1') >= value(m4, 'zeo_received_bytes_total', '1'));
      assert.ok(value(m5, 'zeo_sent_bytes_total', '1') >= value(m4, 'zeo_sent_bytes_total', '1'));
    } finally {
      await web.close();
      await s.stop();
    }
  },
);
