// `zeo copy` with a postgresql:// side: a Data.fs into a database in RelStorage's schema and back out into a
// new Data.fs: the same history as Python's iterator sees it, as RelStorage's schema keeps it (an undo as a
// copy of the state, not a back pointer; a transaction's records in oid order), and from then on the same
// bytes. Refusals (bad URLs, a destination with transactions) exit 1 with the reason.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { pyHistory, type PyTransaction } from '../helpers/history.js';
import { interopTest } from '../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { runZeo } from '../helpers/zeo-servers.js';
import { PY_BUILD, withTempDir } from '../storage/filestorage/fs-oracle.js';

/** Python writes a Data.fs without undo: metadata of every kind, BTrees, a deleted object. */
const PY_PLAIN = `
import transaction, ZODB
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from persistent.mapping import PersistentMapping
from BTrees.OOBTree import OOBTree
db = ZODB.DB(FileStorage(args['path']))
conn = db.open()
root = conn.root()
root['tree'] = OOBTree()
transaction.get().note('the tree')
transaction.get().setUser('someone')
transaction.commit()
for i in range(40):
    root['tree']['k%03d' % i] = PersistentMapping({'i': i, 'text': 'h\\u00e9llo %d' % i})
    if i % 7 == 6:
        t = transaction.get()
        t.note('batch %d' % i)
        t.setExtendedInfo('n', i)
        t.setExtendedInfo('b', b'\\x00\\xff')
        transaction.commit()
transaction.commit()
for k in list(root['tree'].keys())[::3]:
    root['tree'][k]['x'] = 'changed'
transaction.commit()
orphan = PersistentMapping()
conn.add(orphan)
transaction.commit()
oid, serial = orphan._p_oid, orphan._p_serial
conn.close()
t = TransactionMetaData(description=b'delete the orphan')
fs = db.storage
fs.tpc_begin(t)
fs.deleteObject(oid, serial, t)
fs.tpc_vote(t)
fs.tpc_finish(t)
db.close()
result = None
`;

/**
 * The history as RelStorage's schema keeps it: an undo's back pointer resolved to a copy of the state, and a
 * transaction's records in oid order (object_state has no order within a transaction).
 */
function asRelStorageKeepsIt(h: PyTransaction[]): PyTransaction[] {
  const data = new Map<string, string | null>();
  for (const t of h) for (const r of t.records) data.set(`${r.oid}@${r.tid}`, r.data);
  return h.map((t) => ({
    ...t,
    records: t.records
      .map((r) => ({
        ...r,
        data: r.dataTxn ? (data.get(`${r.oid}@${r.dataTxn}`) ?? null) : r.data,
        dataTxn: null,
      }))
      .sort((a, b) => (a.oid < b.oid ? -1 : a.oid > b.oid ? 1 : 0)),
  }));
}

describe('zeo copy with a postgresql:// side', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  let n = 0;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  async function newDatabase(): Promise<string> {
    const name = `copy_${++n}`;
    const admin = new pg.Client(cluster.connection());
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return name;
  }
  const url = (db: string, query = ''): string =>
    `postgresql://zeo@${encodeURIComponent(cluster.socketDir)}:${cluster.port}/${db}${query}`;

  interopTest(
    'Data.fs -> PostgreSQL -> Data.fs: the same history, then the same bytes; file: and postgres:// URLs',
    async (oracle) => {
      await withTempDir(async (dir) => {
        const src = join(dir, 'src.fs');
        await oracle.run(PY_PLAIN, undefined, { path: src });
        const db = await newDatabase();
        const into = await runZeo([
          'copy',
          `file://${src}`,
          url(db, '?application_name=zeo-copy&pool_size=2'),
        ]);
        assert.equal(into.status, 0, into.stderr);
        const history = await pyHistory(oracle, { path: src });
        assert.match(into.stdout, new RegExp(`^zeo copy: copied ${history.length} transactions, `));
        const back = join(dir, 'back.fs');
        // postgres:// and the socket directory as a query parameter: the same database
        const out = await runZeo([
          'copy',
          `postgres://zeo@/${db}?host=${encodeURIComponent(cluster.socketDir)}&read_only=true`,
          back,
        ]);
        assert.equal(out.status, 0, out.stderr);
        assert.match(out.stdout, new RegExp(`^zeo copy: copied ${history.length} transactions, `));
        assert.deepEqual(await pyHistory(oracle, { path: back }), asRelStorageKeepsIt(history));
        // that Data.fs, through another database and back: the same bytes
        const db2 = await newDatabase();
        const into2 = await runZeo(['copy', back, url(db2)]);
        assert.equal(into2.status, 0, into2.stderr);
        const back2 = join(dir, 'back2.fs');
        const out2 = await runZeo(['copy', url(db2), `file:${back2}`]);
        assert.equal(out2.status, 0, out2.stderr);
        assert.ok(
          readFileSync(back2).equals(readFileSync(back)),
          'the Data.fs written back is byte-identical',
        );

        // a plain copy into a database with transactions is refused
        const again = await runZeo(['copy', src, url(db)]);
        assert.equal(again.status, 1);
        assert.match(again.stderr, /^zeo copy: the destination has transactions/);
      });
    },
  );

  interopTest(
    'undo: the same history, undo records as copies of the state; --incremental from PostgreSQL',
    async (oracle) => {
      await withTempDir(async (dir) => {
        const src = join(dir, 'src.fs');
        await oracle.run(PY_BUILD, undefined, { path: src, n: 30, pack: false });
        const history = await pyHistory(oracle, { path: src });
        assert.ok(history.some((t) => t.records.some((r) => r.dataTxn)));
        const db = await newDatabase();
        const into = await runZeo(['copy', src, url(db)]);
        assert.equal(into.status, 0, into.stderr);
        const back = join(dir, 'back.fs');
        const out = await runZeo(['copy', url(db), back]);
        assert.equal(out.status, 0, out.stderr);
        assert.deepEqual(await pyHistory(oracle, { path: back }), asRelStorageKeepsIt(history));

        // more transactions in the Data.fs: --incremental brings them into the database, then out again
        await oracle.run(PY_PLAIN, undefined, { path: src });
        const more = await pyHistory(oracle, { path: src });
        const inc = await runZeo(['copy', '--incremental', src, url(db)]);
        assert.equal(inc.status, 0, inc.stderr);
        assert.match(inc.stdout, new RegExp(`copied ${more.length - history.length} transactions`));
        const inc2 = await runZeo(['copy', '--incremental', url(db), back]);
        assert.equal(inc2.status, 0, inc2.stderr);
        assert.deepEqual(await pyHistory(oracle, { path: back }), asRelStorageKeepsIt(more));
      });
    },
  );

  test('bad URLs and unreachable databases: exit 1 with the reason', async () => {
    await withTempDir(async (dir) => {
      const fs = join(dir, 'x.fs');
      await (await FileStorage.open(fs, { create: true })).close();
      for (const [dest, why] of [
        [
          url('x', '?read_only=maybe'),
          /^zeo copy: invalid value for read_only "maybe": not a valid boolean value/,
        ],
        [url('x', '?cache_local_mb=5'), /^zeo copy: invalid URI query parameter: "cache_local_mb"/],
        ['postgresql://h1,h2/db', /^zeo copy: host=h1,h2: several hosts are not supported/],
        [url('x', '?keep_history=false'), /^zeo copy: .*history/i],
        [url('no_such_db'), /^zeo copy: .*no_such_db/],
      ] as const) {
        const r = await runZeo(['copy', fs, dest]);
        assert.equal(r.status, 1, `${dest}: ${r.stdout}`);
        assert.match(r.stderr, why, dest);
      }
    });
  });
});
