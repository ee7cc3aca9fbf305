// /metrics through the real HTTP listener (its access control in front): the token gets the exposition, in
// Prometheus's text format, whose counters move as a Python client commits; no token gets a 401 and no metric.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { request } from '../../helpers/http.js';
import { interopTest } from '../../helpers/oracle.js';
import { parsePrometheusText } from '../../helpers/prometheus-text.js';
import { startServer } from '../../helpers/server-fixture.js';
import { ServerProcess, stopLeftovers } from '../../helpers/server-process.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-metrics-'));
after(() => rmSync(dir, { recursive: true, force: true }));
after(stopLeftovers);

const PY_COMMIT = `
import ZODB, transaction
from ZEO.ClientStorage import ClientStorage
from BTrees.OOBTree import OOBTree
db = ZODB.DB(ClientStorage(tuple(args), wait_timeout=30))
conn = db.open()
root = conn.root()
root['tree'] = t = OOBTree()
for i in range(50):
    t['k%03d' % i] = 'v' * i
transaction.commit()
result = len(conn.root()['tree'])
conn.close()
db.close()
`;

function commits(text: string): number {
  const f = parsePrometheusText(text).get('zeo_commits_total');
  assert.ok(f && f.type === 'counter');
  const s = f.samples.find((x) => x.labels.storage === '1');
  assert.ok(s, 'zeo_commits_total{storage="1"}');
  return s.value;
}

interopTest(
  'GET /metrics with the token: the exposition, moving as a Python client commits',
  async (oracle) => {
    const s = await startServer({ http: {} });
    try {
      const { url, token } = s.http!;
      const auth = { authorization: `Bearer ${token}` };
      const before = await fetch(`${url}/metrics`, { headers: auth });
      assert.equal(before.status, 200);
      assert.equal(before.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(commits(await before.text()), 0);

      const addr = ['127.0.0.1', (s.address as { port: number }).port];
      assert.equal(await oracle.json(PY_COMMIT, undefined, addr), 50);
      const after = await fetch(`${url}/metrics`, { headers: auth });
      const text = await after.text();
      assert.equal(commits(text), s.server.storages.get('1')!.stats.commits);
      assert.ok(commits(text) >= 1);

      // HEAD: the headers alone
      const head = await fetch(`${url}/metrics`, { method: 'HEAD', headers: auth });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), '');

      // no token, or a wrong one: 401 and not a metric
      for (const headers of [{}, { authorization: 'Bearer wrong' }] as Array<Record<string, string>>) {
        const refused = await fetch(`${url}/metrics`, { headers });
        assert.equal(refused.status, 401);
        assert.doesNotMatch(await refused.text(), /zeo_/);
      }
    } finally {
      await s.stop();
    }
  },
);

interopTest('zeo serve --http: its /metrics, its commits and its own process', async (oracle) => {
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'metrics-token-0123456789\n');
  const child = new ServerProcess({
    kind: 'zeo-ts',
    args: [
      '-a',
      '127.0.0.1:0',
      '-f',
      join(dir, 'Data.fs'),
      '--http',
      '127.0.0.1:0',
      '--http-token-file',
      tokenFile,
    ],
    cwd: dir,
  });
  try {
    const port = await child.port();
    const [, url] = await child.waitForLog(/INFO ZEO\.http HTTP listener on (http:\/\/127\.0\.0\.1:\d+)/);
    assert.equal(await oracle.json(PY_COMMIT, undefined, ['127.0.0.1', port]), 50);
    const res = await request(`${url}/metrics`, { token: 'metrics-token-0123456789' });
    assert.equal(res.status, 200);
    assert.ok(commits(res.body) >= 1);
    const families = parsePrometheusText(res.body);
    const pid = families.get('process_start_time_seconds');
    assert.ok(pid && pid.samples.length === 1, "the server process's own metrics");
    assert.equal((await request(`${url}/metrics`)).status, 401);
    await child.stopCleanly();
  } finally {
    child.kill();
  }
});

// The official Prometheus client's own parser (prometheus_client, from PyPI in the oracle) reads the whole
// exposition, and sees the counters move as a Python client loads and commits; the same figures as ours.
const PY_SCRAPE = `
import urllib.request
from prometheus_client.parser import text_string_to_metric_families
import ZODB, transaction
from ZEO.ClientStorage import ClientStorage

url, token, host, port = args

def scrape():
    req = urllib.request.Request(url + '/metrics', headers={'Authorization': 'Bearer ' + token})
    with urllib.request.urlopen(req) as res:
        text = res.read().decode('utf-8')
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get('storage', '1') == '1':
                samples[s.name] = s.value
    return text, samples

_, before = scrape()
db = ZODB.DB(ClientStorage((host, port), wait_timeout=30))
conn = db.open()
conn.root()['n'] = 1
transaction.commit()
db.cacheMinimize()
conn.root()['n']
conn.close()
db.close()
text, after = scrape()
keys = ['zeo_loads_total', 'zeo_stores_total', 'zeo_commits_total', 'zeo_received_bytes_total',
        'zeo_sent_bytes_total', 'zeo_vote_duration_seconds_count', 'zeo_finish_duration_seconds_count',
        'zeo_fsync_duration_seconds_count', 'zeo_commit_lock_hold_seconds_count']
result = {'before': {k: before.get(k) for k in keys}, 'after': {k: after.get(k) for k in keys},
          'names': len(after), 'text': text}
`;

interopTest("Prometheus's own Python parser reads /metrics, and its counters move", async (oracle) => {
  const s = await startServer({ http: {} });
  try {
    const { url, token } = s.http!;
    const port = (s.address as { port: number }).port;
    const r = await oracle.json<{
      before: Record<string, number | null>;
      after: Record<string, number | null>;
      names: number;
      text: string;
    }>(PY_SCRAPE, undefined, [url, token, '127.0.0.1', port]);
    for (const [name, value] of Object.entries(r.after)) {
      assert.equal(typeof value, 'number', `${name} parsed`);
      assert.ok(value! > (r.before[name] ?? 0), `${name} moved: ${r.before[name]} -> ${value}`);
    }
    assert.ok(r.names > 50, `${r.names} samples parsed`);
    // both parsers read the same value for every sample of storage 1 that Python listed
    const ours = parsePrometheusText(r.text);
    assert.equal(commits(r.text), r.after.zeo_commits_total);
    assert.equal(
      ours.get('zeo_loads_total')!.samples.find((x) => x.labels.storage === '1')!.value,
      r.after.zeo_loads_total,
    );
  } finally {
    await s.stop();
  }
});
