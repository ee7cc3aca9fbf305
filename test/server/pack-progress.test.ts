// A pack's progress through the server (src/server/session.ts pack): the client that asked for the pack gets
// ZEO's `info` message {'pack_progress': (done, total, phase)} while it runs, which Python's ClientStorage.info
// just adds to its info dict: a real Python ClientStorage (and ZEO's own zeopack) packs a 20 MB Data.fs through
// zeo serve, pickle and msgpack, and everything goes on working. zeo_pack_progress_ratio shows the pack.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after } from 'node:test';
import { serverMetrics } from '../../src/server/metrics.js';
import type { ReferencesFinder, StoragePackOptions } from '../../src/storage/interfaces.js';
import { interopTest, oraclePython } from '../helpers/oracle.js';
import { buildPackable } from '../helpers/pack-data.js';
import { parsePrometheusText } from '../helpers/prometheus-text.js';
import { startServer } from '../helpers/server-fixture.js';
import { stopLeftovers } from '../helpers/server-process.js';
import { withTempDir } from '../storage/filestorage/fs-oracle.js';

after(stopLeftovers);

/** 5000 revisions of 4 KiB: a Data.fs of about 20 MB. */
const REVISIONS = 5000;

/** Python packs through ClientStorage, then loads, commits and reads the history; what it saw. */
const PY_PACK = `
import time, transaction, ZODB
from ZEO.ClientStorage import ClientStorage
from ZODB.utils import p64
seen = []
class Recording(ClientStorage):
    # what the server told, then ClientStorage.info as it is
    def info(self, dict):
        if 'pack_progress' in dict:
            seen.append(list(dict['pack_progress']))
        ClientStorage.info(self, dict)
a = args['address']
cs = Recording(('127.0.0.1', a) if isinstance(a, int) else a, wait_timeout=30)
before = len(cs.history(p64(1), 10))
cs.pack(time.time() + 1, wait=True)
progress = cs._info.get('pack_progress')
db = ZODB.DB(cs)
conn = db.open()
root = conn.root()
root['y'] = 'after the pack'
transaction.commit()
assert root['x']._p_oid == p64(1)
history = len(cs.history(p64(1), 10))
conn.close()
db.close()
result = dict(before=before, progress=list(progress) if progress is not None else None, history=history,
              seen=seen)
`;

for (const msgpack of [false, true]) {
  interopTest(
    `a Python ClientStorage packs through zeo serve while told the progress (${msgpack ? 'msgpack' : 'pickle'})`,
    async (oracle) => {
      await withTempDir(async (dir) => {
        const built = await buildPackable(join(dir, 'Data.fs'), REVISIONS, 4096);
        const size = built.getSize();
        await built.close();
        const s = await startServer({ dir, msgpack });
        try {
          const r = await oracle.json<{
            before: number;
            progress: unknown[] | null;
            history: number;
            seen: Array<[number, number, string]>;
          }>(PY_PACK, undefined, { address: (s.address as { port: number }).port });
          const { seen, ...rest } = r;
          // the last report: the copy's end, the whole file; the pack removed all but the last revision
          assert.deepEqual(rest, { before: 10, progress: [size, size, 'copy'], history: 1 });
          // the first report went at once (the reachability pass's first transaction), each phase's end too
          assert.equal(seen[0][2], 'reachability');
          assert.ok(seen[0][0] < seen[0][1], JSON.stringify(seen));
          assert.deepEqual(
            seen.filter(([done, total]) => done === total),
            [
              [size, size, 'reachability'],
              [size, size, 'copy'],
            ],
          );
          assert.ok(s.logs.some((l) => /pack\(time=[\d.]+\) complete/.test(l)));
          assert.ok(!s.logs.some((l) => /^(ERROR|CRITICAL)/.test(l)), s.logs.join(''));
        } finally {
          await s.stop();
        }
      });
    },
  );
}

interopTest("ZEO's zeopack packs through zeo serve while told the progress", async () => {
  await withTempDir(async (dir) => {
    const built = await buildPackable(join(dir, 'Data.fs'), REVISIONS, 4096);
    const size = built.getSize();
    await built.close();
    const s = await startServer({ dir });
    try {
      const port = (s.address as { port: number }).port;
      const zeopack = join(dirname(oraclePython()), 'zeopack');
      // (a child of its own: the server runs in this process)
      const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(oraclePython(), [zeopack, `127.0.0.1:${port}`], { timeout: 60_000 }, (e, stdout, stderr) =>
          resolve({ status: e ? ((e as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout + r.stderr, '');
      assert.ok(s.logs.some((l) => /pack\(time=[\d.]+\) complete/.test(l)));
      assert.ok(s.server.storages.get('1')!.storage.getSize() < size / 10, 'packed');
    } finally {
      await s.stop();
    }
  });
});

interopTest('zeo_pack_progress_ratio: the running pack, 0 when none runs', async () => {
  await withTempDir(async (dir) => {
    const built = await buildPackable(join(dir, 'Data.fs'), 200);
    const served = { name: '1', storage: built };
    // what /metrics says as the storage's pack ends, before the server hears it ended
    let during: string | null = null;
    const pack = built.pack.bind(built);
    built.pack = async (t: number, refs: ReferencesFinder, options?: StoragePackOptions): Promise<void> => {
      await pack(t, refs, options);
      during = await metrics.text();
    };
    const s = await startServer({ dir, opened: [served] });
    const metrics = serverMetrics(s.server);
    const ratio = async (): Promise<number | undefined> =>
      parsePrometheusText(await metrics.text())
        .get('zeo_pack_progress_ratio')
        ?.samples.find((x) => x.labels.storage === '1')?.value;
    try {
      assert.equal(await ratio(), 0);
      const { ClientStorage } = await import('../../src/client/client-storage.js');
      const c = await ClientStorage.open({ server: s.address, storage: '1', cacheSize: 0 });
      const told: Array<{ done: number; total: number; phase: string }> = [];
      try {
        await c.pack(Date.now() / 1000 + 1, undefined, {
          onProgress: (done, total, phase) => told.push({ done, total, phase }),
        });
      } finally {
        await c.close();
      }
      // our client heard each phase end (the server always sends it), and the metrics saw the copy's end
      const ends = told.filter((x) => x.done === x.total);
      assert.deepEqual(
        ends.map((x) => x.phase),
        ['reachability', 'copy'],
      );
      assert.ok(during !== null);
      const sample = parsePrometheusText(during)
        .get('zeo_pack_progress_ratio')
        ?.samples.find((x) => x.labels.storage === '1');
      assert.equal(sample?.value, 1);
      assert.equal(await ratio(), 0);
    } finally {
      await s.stop();
    }
  });
});
