// The HTTP listener never writes to a storage: a Python client (ZEO's ClientStorage, ZODB's DB, BTrees) commits
// real data, stays connected, and then every route httpRoutes(ctx) lists (with sample paths below each prefix
// route, and every method) is asked for; Data.fs, the blob directory and the last transaction stay as they were.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { httpRoutes } from '../../../src/server/http/app.js';
import { createLogger } from '../../../src/server/log.js';
import { request } from '../../helpers/http.js';
import { interopTest } from '../../helpers/oracle.js';
import { startServer } from '../../helpers/server-fixture.js';

/**
 * The URLs asked for besides each route's own path: for a prefix route, paths below it (it must have some),
 * for any route, query variants. The one list to extend as routes land (`{oid}` is the root's oid, `{tid}`
 * the last transaction's id, `{tree}` the BTree's oid, all in hex).
 */
export const SAMPLE_URLS: Record<string, string[]> = {
  '/ui/': ['/ui/style.css', '/ui/browse.css', '/ui/no-such-file.css', '/ui/../package.json'],
  '/ui/js/': ['/ui/js/common.js', '/ui/js/dashboard.js', '/ui/js/browse.js', '/ui/js/nope.js'],
  // (the browser's API names are its own: these reach its handler whatever it answers)
  '/api/browse/': [
    '/api/browse/storages',
    '/api/browse/1/object/{oid}',
    '/api/browse/1/object/{oid}?tid={tid}',
    '/api/browse/1/object/{tree}/items?limit=1000',
    '/api/browse/1/object/{tree}/history?limit=1000',
    '/api/browse/1/transaction/{tid}?offset=0&limit=1000',
    '/api/browse/1/undo-log?first=0&last=1000',
    '/api/browse/1/object/zz',
    '/api/browse/1/undo',
  ],
  '/metrics': ['/metrics?name[]=zeo_loads_total'],
};

/** Paths of the URL space asked for whether or not a route serves them yet. */
const ALWAYS = ['/', '/metrics', '/browse', '/api/server', '/api/clients', '/api/locks', '/api/transactions'];

const COMMIT = `
import ZEO, ZODB, transaction
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
addr = args if isinstance(args, str) else tuple(args)
db = ZODB.DB(ZEO.client(addr, wait_timeout=30))
conn = db.open()
root = conn.root()
root['tree'] = tree = OOBTree()
for i in range(300):
    tree['k%04d' % i] = PersistentMapping({'n': i, 'text': 'x' * i})
root['note'] = 'written by Python'
transaction.get().note('the first')
transaction.commit()
for i in range(5):
    tree['k%04d' % i]['n'] = -i
    transaction.get().note('change %d' % i)
    transaction.commit()
result = {'root': conn.get(b'\\0' * 8)._p_oid.hex(), 'tree': tree._p_oid.hex(), 'last': db.lastTransaction().hex()}
_keep = (db, conn)  # connected while the routes are asked for
import builtins
builtins._http_never_writes = _keep
`;

const CLOSE = `
import builtins
db, conn = builtins._http_never_writes
conn.close(); db.close()
result = True
`;

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const st = await stat(p);
        out[p] = `${st.size} ${createHash('sha256')
          .update(await readFile(p))
          .digest('hex')}`;
      }
    }
  };
  await walk(dir);
  return out;
}

interopTest(
  'the HTTP routes never write: every route, every method, while a Python client is connected',
  async (oracle) => {
    const fx = await startServer({ http: {} });
    try {
      const ids = await oracle.json<{ root: string; tree: string; last: string }>(COMMIT, undefined, [
        '127.0.0.1',
        (fx.address as { port: number }).port,
      ]);
      assert.equal(ids.root, '0000000000000000');
      const storage = fx.server.storages.get('1')!.storage;
      assert.equal(Buffer.from(storage.lastTransaction()).toString('hex'), ids.last);
      const before = await snapshot(fx.dir);
      assert.ok(Object.keys(before).some((p) => p.endsWith('Data.fs')));

      const quiet = createLogger(null, { stderr: { write: () => true } as unknown as NodeJS.WritableStream });
      const routes = httpRoutes({ server: fx.server, config: null, log: quiet.root });
      const fill = (u: string): string =>
        u.replaceAll('{oid}', ids.root).replaceAll('{tree}', ids.tree).replaceAll('{tid}', ids.last);
      const urls = new Set(ALWAYS);
      for (const r of routes) {
        const samples = SAMPLE_URLS[r.path];
        if (r.prefix) {
          assert.ok(
            samples && samples.length > 0,
            `prefix route ${r.path} has no sample URLs: add some to SAMPLE_URLS in ${import.meta.url}`,
          );
        } else urls.add(r.path);
        for (const u of samples ?? []) urls.add(fill(u));
      }
      const { url, token } = fx.http!;
      const statuses: string[] = [];
      for (const u of urls) {
        for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']) {
          // (the head is enough, and a stream of events never ends)
          const a = await request(`${url}${u}`, { method, token, headOnly: method === 'GET' });
          statuses.push(`${method} ${u} ${a.status}`);
          if (method !== 'GET' && method !== 'HEAD') assert.equal(a.status, 405, `${method} ${u}`);
          else assert.ok(a.status < 500, `${method} ${u}: ${a.status}`);
        }
      }
      assert.ok(statuses.length >= ALWAYS.length * 6);

      assert.equal(Buffer.from(storage.lastTransaction()).toString('hex'), ids.last);
      assert.deepEqual(await snapshot(fx.dir), before, 'nothing in the storage directory changed');
      assert.equal(await oracle.json<boolean>(CLOSE), true);
    } finally {
      await fx.stop();
    }
  },
);
