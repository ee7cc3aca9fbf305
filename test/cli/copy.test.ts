// `zeo copy SOURCE DEST` (src/cli/copy.ts) as a user runs it: Data.fs to Data.fs with blob directories, and
// both ways between a local Data.fs and a server (runzeo in pickle and msgpack modes, zeo serve), Python's
// iterator seeing the same history on both sides; --incremental; refusals with exit 1 and a clear message.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { PY_ADD_BLOBS, pyHistory } from '../helpers/history.js';
import { interopTest } from '../helpers/oracle.js';
import { runZeo } from '../helpers/zeo-servers.js';
import { PY_BUILD, withTempDir } from '../storage/filestorage/fs-oracle.js';

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
