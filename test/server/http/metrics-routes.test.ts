// /metrics through the real HTTP listener (its access control in front): the token gets the exposition, in
// Prometheus's text format, whose counters move as a Python client commits; no token gets a 401 and no metric.

import assert from 'node:assert/strict';
import { interopTest } from '../../helpers/oracle.js';
import { parsePrometheusText } from '../../helpers/prometheus-text.js';
import { startServer } from '../../helpers/server-fixture.js';

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
