// `zeo copy SOURCE DEST` (src/cli/copy.ts) as a user runs it: Data.fs to Data.fs with blob directories, and
// both ways between a local Data.fs and a server (runzeo in pickle and msgpack modes, zeo serve), Python's
// iterator seeing the same history on both sides; --incremental; refusals with exit 1 and a clear message.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { PY_ADD_BLOBS, pyHistory } from '../helpers/history.js';
import { interopTest, repoRoot } from '../helpers/oracle.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { z64 } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { serverTlsOptions } from '../../src/transport/tls.js';
import { noOpenssl, selfSignedPair } from '../helpers/openssl.js';
import { startServer } from '../helpers/server-fixture.js';
import { runZeo, startZeoServer, type ZeoServerKind } from '../helpers/zeo-servers.js';
import { waitUntil } from '../helpers/wait.js';
import { PY_BUILD, withTempDir } from '../storage/filestorage/fs-oracle.js';

const zeoBin = resolve(repoRoot, 'bin/zeo');

interopTest('zeo copy Data.fs to Data.fs: every transaction and blob, then --incremental', async (oracle) => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src.fs');
    const srcBlobs = join(dir, 'src-blobs');
    const dst = join(dir, 'dst.fs');
    const dstBlobs = join(dir, 'dst-blobs');
    await oracle.run(PY_BUILD, undefined, { path: src, n: 30, pack: false });
    await oracle.run(PY_ADD_BLOBS, undefined, { path: src, blobDir: srcBlobs, tag: 'a' });
    const args = ['--source-blob-dir', srcBlobs, '--dest-blob-dir', dstBlobs];
    const r = await runZeo(['copy', src, dst, ...args]);
    assert.equal(r.status, 0, r.stderr);
    const before = await pyHistory(oracle, { path: src, blobDir: srcBlobs });
    assert.match(
      r.stdout,
      new RegExp(`^zeo copy: copied ${before.length} transactions, \\d+ data records, 6 blob files`),
    );
    assert.equal(r.stderr, '', 'no progress lines off a terminal for quick work');
    assert.deepEqual(await pyHistory(oracle, { path: dst, blobDir: dstBlobs }), before);

    // a second plain copy is refused: the destination has transactions
    const again = await runZeo(['copy', src, dst, ...args]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^zeo copy: the destination has transactions .*--incremental/);

    await oracle.run(PY_ADD_BLOBS, undefined, { path: src, blobDir: srcBlobs, tag: 'b' });
    const inc = await runZeo(['copy', '--incremental', src, dst, ...args]);
    assert.equal(inc.status, 0, inc.stderr);
    const now = await pyHistory(oracle, { path: src, blobDir: srcBlobs });
    assert.match(
      inc.stdout,
      new RegExp(
        `copied ${now.length - before.length} transactions, .* after tid ${before.at(-1)!.tid} ` +
          `\\(tids ${now[before.length].tid}\\.\\.${now.at(-1)!.tid}\\)`,
      ),
    );
    assert.deepEqual(await pyHistory(oracle, { path: dst, blobDir: dstBlobs }), now);
  });
});

test('zeo copy: a missing source, TLS options without a server: exit 1 with the reason', async () => {
  await withTempDir(async (dir) => {
    const r = await runZeo(['copy', join(dir, 'none.fs'), join(dir, 'dst.fs')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^zeo copy: .*none\.fs/);
    const t = await runZeo(['copy', '--ssl-authenticate', 'ca.pem', join(dir, 'a.fs'), join(dir, 'b.fs')]);
    assert.equal(t.status, 1);
    assert.match(t.stderr, /^zeo copy: TLS options are for a zeo:\/\/ side/);
  });
});

/** Python undoes the newest transaction it can (after a pack: back pointers again). */
const PY_UNDO_NEWEST = `
import transaction, ZODB
from ZODB.FileStorage import FileStorage
db = ZODB.DB(FileStorage(args['path']))
for e in db.undoLog(0, 20):
    try:
        db.undo(e['id'])
        transaction.commit()
        break
    except Exception:
        transaction.abort()
else:
    raise RuntimeError('nothing could be undone')
db.close()
result = None
`;

/** Python adds a few transactions through a ClientStorage (for --incremental from a server). */
const PY_COMMIT_MORE = `
import transaction, ZODB
from ZEO.ClientStorage import ClientStorage
from persistent.mapping import PersistentMapping
a = args['address']
db = ZODB.DB(ClientStorage(('127.0.0.1', a) if isinstance(a, int) else a, wait_timeout=30))
conn = db.open()
root = conn.root()
for i in range(3):
    root['more%d' % i] = PersistentMapping({'i': i})
    transaction.get().note('more %d' % i)
    transaction.get().setUser('user%d' % i)
    transaction.get().setExtendedInfo('n', i)
    transaction.commit()
conn.close()
db.close()
result = None
`;

for (const [kind, msgpack] of [
  ['runzeo', false],
  ['runzeo', true],
  ['zeo-ts', false],
  ['zeo-ts', true],
] as Array<[ZeoServerKind, boolean]>) {
  const label = `${kind === 'runzeo' ? 'runzeo' : 'zeo serve'} (${msgpack ? 'msgpack' : 'pickle'})`;
  interopTest(
    `zeo copy both ways between a Data.fs and ${label}; --incremental from the server`,
    async (oracle) => {
      await withTempDir(async (dir) => {
        const local = join(dir, 'local.fs');
        await oracle.run(PY_BUILD, undefined, { path: local, n: 30, pack: true });
        await oracle.run(PY_UNDO_NEWEST, undefined, { path: local });
        const server = await startZeoServer(kind, { msgpack, blobs: false });
        try {
          const url = `zeo://${server.spec}?storage=1`;
          const into = await runZeo(['copy', local, url]);
          assert.equal(into.status, 0, into.stderr);
          const before = await pyHistory(oracle, { path: local });
          assert.ok(
            before.some((t) => t.status === 'p') && before.some((t) => t.records.some((r) => r.dataTxn)),
          );
          assert.deepEqual(await pyHistory(oracle, { address: server.pyAddress }), before);
          // and back out, into a new Data.fs
          const back = join(dir, 'back.fs');
          const out = await runZeo(['copy', url, back]);
          assert.equal(out.status, 0, out.stderr);
          assert.match(out.stdout, new RegExp(`copied ${before.length} transactions`));
          assert.deepEqual(await pyHistory(oracle, { path: back }), before);
          // the server moves on; --incremental brings the new transactions over
          await oracle.run(PY_COMMIT_MORE, undefined, { address: server.pyAddress });
          const inc = await runZeo(['copy', '--incremental', url, back]);
          assert.equal(inc.status, 0, inc.stderr);
          assert.match(inc.stdout, /copied 3 transactions, 6 data records/);
          const now = await pyHistory(oracle, { address: server.pyAddress });
          assert.equal(now.length, before.length + 3);
          assert.match(now.at(-1)!.extension, /'n', 2/);
          assert.match(now.at(-1)!.user, /user2/);
          assert.deepEqual(await pyHistory(oracle, { path: back }), now);
          // a plain copy into the server, which has transactions now, is refused
          const again = await runZeo(['copy', local, url]);
          assert.equal(again.status, 1);
          assert.match(again.stderr, /the destination has transactions/);
        } finally {
          await server.stop();
        }
      });
    },
  );
}

test(
  'zeo copy over TLS: a client certificate, the server checked against its CA',
  { skip: noOpenssl },
  async () => {
    await withTempDir(async (dir) => {
      const ssl = selfSignedPair(dir);
      const local = join(dir, 'local.fs');
      const fs = await FileStorage.open(local);
      const txn = new TransactionMetaData(new Uint8Array(0), new TextEncoder().encode('over TLS'));
      await fs.tpcBegin(txn);
      await fs.store(z64, z64, new Uint8Array([0x80, 0x03, 0x4e, 0x2e]), txn);
      await fs.tpcVote(txn);
      const tid = await fs.tpcFinish(txn);
      await fs.close();
      const s = await startServer({ tls: serverTlsOptions(ssl('server', 'client')) });
      try {
        const url = `zeo://127.0.0.1:${(s.address as { port: number }).port}`;
        const client = ssl('client', 'server');
        const tlsArgs = ['--ssl-certificate', client.certificate!, '--ssl-key', client.key!];
        const r = await runZeo(['copy', ...tlsArgs, '--ssl-authenticate', client.authenticate!, local, url]);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /copied 1 transactions, 1 data records/);
        assert.deepEqual(s.server.storages.get('1')?.storage.lastTransaction(), tid);
        // trusting the wrong CA: refused, with the reason
        const bad = await runZeo([
          'copy',
          ...tlsArgs,
          '--ssl-authenticate',
          client.certificate!,
          '--wait-timeout',
          '2',
          local,
          url,
        ]);
        assert.equal(bad.status, 1);
        assert.match(bad.stderr, /^zeo copy: .*self[- ]signed certificate/im);
      } finally {
        await s.stop();
      }
    });
  },
);

for (const [kind, msgpack] of [
  ['runzeo', false],
  ['zeo-ts', true],
] as Array<[ZeoServerKind, boolean]>) {
  const label = `${kind === 'runzeo' ? 'runzeo' : 'zeo serve'} (${msgpack ? 'msgpack' : 'pickle'})`;
  interopTest(
    `zeo copy out of ${label} with blobs: the files come through the blob cache`,
    async (oracle) => {
      const server = await startZeoServer(kind, {
        msgpack,
        prepare: async (path, blobDir) => {
          await oracle.run(PY_ADD_BLOBS, undefined, { path, blobDir, tag: 'a' });
        },
      });
      try {
        await withTempDir(async (dir) => {
          const url = `zeo://${server.spec}`;
          const out = join(dir, 'out.fs');
          const outBlobs = join(dir, 'out-blobs');
          // without a blob directory for the copy: refused, nothing written
          const refused = await runZeo(['copy', url, out]);
          assert.equal(refused.status, 1);
          assert.match(refused.stderr, /the source keeps blobs and the destination does not.*--no-blobs/);
          const r = await runZeo(['copy', url, out, '--dest-blob-dir', outBlobs]);
          assert.equal(r.status, 0, r.stderr);
          assert.match(r.stdout, /, 6 blob files/);
          const theirs = await pyHistory(oracle, { address: server.pyAddress });
          assert.ok(theirs.some((t) => t.records.some((x) => x.blob !== null && x.blob !== 'missing')));
          assert.deepEqual(await pyHistory(oracle, { path: out, blobDir: outBlobs }), theirs);
          // into a server, blob files cannot go (ZEO has no restoreBlob): refused unless left out
          const into = await runZeo(['copy', '--source-blob-dir', outBlobs, out, url]);
          assert.equal(into.status, 1);
          assert.match(into.stderr, /a ZEO server cannot take blob files/);
        });
      } finally {
        await server.stop();
      }
    },
  );
}

test('zeo copy interrupted (SIGINT) stops after a transaction; --incremental finishes the copy', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src.fs');
    const dst = join(dir, 'dst.fs');
    const fs = await FileStorage.open(src, { fsync: false });
    const oid = await fs.newOid();
    let serial = z64;
    for (let i = 0; i < 1200; i++) {
      const txn = new TransactionMetaData();
      await fs.tpcBegin(txn);
      await fs.store(oid, serial, new TextEncoder().encode(`revision ${i}`), txn);
      await fs.tpcVote(txn);
      serial = await fs.tpcFinish(txn);
    }
    await fs.close();
    const child = spawn(process.execPath, [zeoBin, 'copy', src, dst], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    // once some transactions are in (each commit is synced: the copy takes a while)
    const size = (): number => (existsSync(dst) ? statSync(dst).size : 0);
    await waitUntil(
      () => size() > 10_000,
      () => `the copy to start: ${stderr}`,
      30_000,
    );
    child.kill('SIGINT');
    assert.equal(await exited, 1, stderr);
    const m =
      /^zeo copy: interrupted\nzeo copy: (\d+) transactions were copied before that \(the last ([0-9a-f]{16})\): --incremental continues from there\n$/.exec(
        stderr,
      );
    assert.ok(m, stderr);
    assert.ok(Number(m[1]) > 0 && Number(m[1]) < 1200);
    const rest = await runZeo(['copy', '--incremental', src, dst]);
    assert.equal(rest.status, 0, rest.stderr);
    assert.match(rest.stdout, new RegExp(`copied ${1200 - Number(m[1])} transactions, .* after tid ${m[2]}`));
    const check = await FileStorage.open(dst, { readOnly: true });
    try {
      assert.deepEqual(check.lastTransaction(), serial);
      assert.equal((await check.history(oid, 5000)).length, 1200);
    } finally {
      await check.close();
    }
  });
});
