// The persistent client cache across client restarts, against zeo serve and runzeo: a cache file survives the
// restart and is used (no loads reach the server), is verified against what changed meanwhile (getInvalidations:
// the changed objects are forgotten, the others still served), is dropped when the server's invalidation queue
// no longer reaches back to it (runzeo's `invalidation-queue-size`, our server's invalidationQueueSize), and a
// cache that has seen more than the server refuses the connection with an error that says what to do.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClientStorage, ClientDisconnected, type ClientStorageOptions } from '../../src/client/index.js';
import { PyFloat, type PickleValue } from '../../src/pickle/index.js';
import { compareIds, idHex, type Oid, type Tid } from '../../src/storage/ids.js';
import { interopDisabled } from '../helpers/oracle.js';
import { startServer, type TestServer } from '../helpers/server-fixture.js';
import { freePort, ServerProcess, stopLeftovers } from '../helpers/server-process.js';
import { dostore, minpoValue } from '../storage/contract/helpers.js';

after(() => stopLeftovers());

/** The server's count of loads for our storage (server_status). */
async function serverLoads(s: ClientStorage): Promise<number> {
  const status = (await s.serverStatus()) as Map<PickleValue, PickleValue>;
  const v = status.get('loads');
  return v instanceof PyFloat ? v.value : Number(v);
}

interface Server {
  address: ClientStorageOptions['server'];
  stop(): Promise<void>;
}

/** Queue size 3: a client that missed more than 3 transactions cannot be told what changed. */
const QUEUE = 3;

async function zeoServe(): Promise<Server> {
  const s: TestServer = await startServer({ invalidationQueueSize: QUEUE });
  return { address: s.address, stop: () => s.stop() };
}

async function runzeo(dir: string): Promise<Server> {
  const port = await freePort();
  const conf = join(dir, 'zeo.conf');
  await writeFile(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n  invalidation-queue-size ${QUEUE}\n</zeo>\n` +
      `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
  );
  const p = new ServerProcess({ kind: 'runzeo', conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
  await p.port();
  return { address: { host: '127.0.0.1', port }, stop: () => p.stopCleanly() };
}

for (const kind of ['zeo serve', 'runzeo'] as const) {
  // runzeo comes from the Python oracle: skipped (and said so) only with ZEO_TS_SKIP_INTEROP=1
  const skip = kind === 'runzeo' && interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false;
  describe(`the persistent cache against ${kind}`, { skip }, () => {
    let dir: string;
    let server: Server;
    /** a writer with no cache: the other application */
    let other: ClientStorage;
    const oids: Oid[] = [];
    const tids = new Map<string, Tid>();

    const open = (extra: Partial<ClientStorageOptions> = {}): Promise<ClientStorage> =>
      ClientStorage.open({ server: server.address, client: 'app', var: dir, waitTimeout: 5000, ...extra });

    const write = async (oid: Oid, value: number): Promise<Tid> => {
      const tid = await dostore(other, { oid, revid: tids.get(idHex(oid)), data: value });
      tids.set(idHex(oid), tid);
      return tid;
    };

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'zeo-ts-cache-verify-'));
      server = kind === 'runzeo' ? await runzeo(dir) : await zeoServe();
      other = await ClientStorage.open({ server: server.address, cacheSize: 0 });
      for (let i = 0; i < 4; i++) {
        const oid = await other.newOid();
        oids.push(oid);
        await write(oid, i);
      }
    });
    after(async () => {
      await other?.close();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    test('the cache file survives a restart and serves the loads; a changed object is forgotten on verification', async () => {
      const first = await open();
      assert.equal(first.verifyResult, 'empty cache');
      for (const oid of oids) await first.load(oid);
      await first.close();

      // nothing changed: the cache is up to date and answers every load
      const second = await open();
      assert.equal(second.cacheDropReason, null);
      assert.equal(second.verifyResult, 'Cache up to date');
      const loads = await serverLoads(second);
      for (const [i, oid] of oids.entries()) assert.equal(minpoValue((await second.load(oid)).data), i);
      assert.equal(await serverLoads(second), loads, 'no load reached the server');
      await second.close();

      // one object changes while the client is away: quick verification forgets it, and only it
      const tid = await write(oids[1], 11);
      const invalidated: Array<{ tid: Tid; oids: Oid[] }> = [];
      const third = await open({ wait: false });
      third.on('invalidations', (inv: { tid: Tid; oids: Oid[] }) => invalidated.push(inv));
      await third.serverSync();
      assert.equal(third.verifyResult, 'quick verification');
      assert.deepEqual(
        invalidated.map((inv) => inv.oids.map(idHex)),
        [[idHex(oids[1])]],
      );
      assert.equal(compareIds(third.lastTransaction(), tid), 0);
      const before3 = await serverLoads(third);
      const r = await third.load(oids[1]);
      assert.equal(minpoValue(r.data), 11, 'the new revision, not the cached one');
      assert.equal(compareIds(r.serial, tid), 0);
      for (const i of [0, 2, 3]) assert.equal(minpoValue((await third.load(oids[i])).data), i);
      assert.equal(await serverLoads(third), before3 + 1, 'only the changed object was loaded');
      await third.close();
    });

    test('a cache the server cannot verify (more transactions than its invalidation queue) is dropped', async () => {
      const c = await open();
      for (const oid of oids) await c.load(oid);
      await c.close();
      for (let i = 0; i < QUEUE + 2; i++) await write(oids[0], 100 + i);
      const cleared: string[] = [];
      const again = await open({ wait: false });
      again.on('cacheCleared', (why: string) => cleared.push(why));
      await again.serverSync();
      assert.equal(again.verifyResult, 'cache too old, clearing');
      assert.deepEqual(cleared, ['cache too old, clearing']);
      const loads = await serverLoads(again);
      assert.equal(minpoValue((await again.load(oids[0])).data), 100 + QUEUE + 1);
      assert.equal(minpoValue((await again.load(oids[2])).data), 2);
      assert.equal(await serverLoads(again), loads + 2, 'nothing came from the dropped cache');
      await again.close();
    });

    test('dropCacheRatherVerify drops a stale cache instead of asking what changed', async () => {
      const c = await open();
      for (const oid of oids) await c.load(oid);
      await c.close();
      await write(oids[3], 33);
      const again = await open({ dropCacheRatherVerify: true });
      assert.equal(again.verifyResult, 'cache dropped rather than verified');
      assert.equal(again.cacheStats().entries, 0);
      assert.equal(minpoValue((await again.load(oids[3])).data), 33);
      await again.close();
    });

    test('a cache newer than the server refuses the connection and says what to do', async () => {
      // the application's cache has seen this server's history; a new, empty server has not
      const c = await open();
      await c.load(oids[0]);
      await c.close();
      const empty = kind === 'runzeo' ? await runzeo(await mkdtemp(join(dir, 'empty-'))) : await zeoServe();
      try {
        await assert.rejects(
          ClientStorage.open({ server: empty.address, client: 'app', var: dir, waitTimeout: 1500 }),
          (e: unknown) => {
            assert.ok(e instanceof ClientDisconnected, String(e));
            assert.match(e.message, /client cache is out of sync with the server/);
            assert.match(e.message, /remove the cache file \(.*app-1\.zec\)/);
            return true;
          },
        );
      } finally {
        await empty.stop();
      }
      // the file was left alone: the right server still takes it
      const back = await open();
      assert.notEqual(back.verifyResult, 'cache too old, clearing');
      await back.close();
    });
  });
}
