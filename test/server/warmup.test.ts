// The server's self warm-up (src/server/warmup.ts): it drives a private server on a scratch storage and
// leaves no trace in the served one (counters, storage, log, connections, files); beside a served server it
// runs only while that one is idle, stops once the served loads are enough, and when told to; a `zeo serve`
// that warms up serves as before, at once.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { jsonDumps } from '../../src/pickle/index.js';
import { maxtid, z64 } from '../../src/storage/ids.js';
import { warmUp, warmUpBudget, DEFAULT_WARMUP_MS, WARM_UP_COMMITS } from '../../src/server/warmup.js';
import { RawClient } from '../helpers/raw-client.js';
import { startServer } from '../helpers/server-fixture.js';
import { ruok, ServerProcess, stopLeftovers } from '../helpers/server-process.js';

after(stopLeftovers);

test('the warm-up touches nothing of a served server: counters, storage, log, connections; its files go', async () => {
  const served = await startServer();
  const scratch = await mkdtemp(join(tmpdir(), 'zeo-ts-warmup-test-'));
  try {
    const dataFs = join(served.dir, 'Data.fs');
    const before = {
      status: jsonDumps(served.server.statusAll()),
      logs: served.logs.length,
      size: (await stat(dataFs)).size,
      last: served.server.storages.get('1')!.storage.lastTransaction(),
    };
    const r = await warmUp(100, { tmp: scratch });
    assert.ok(r.loads > 0, 'loads were answered');
    assert.ok(r.commits > 0, 'commits were made');
    assert.equal(jsonDumps(served.server.statusAll()), before.status);
    assert.equal(served.logs.length, before.logs, 'nothing logged');
    assert.equal(served.server.connectionCount, 0);
    assert.equal((await stat(dataFs)).size, before.size);
    assert.deepEqual(served.server.storages.get('1')!.storage.lastTransaction(), before.last);
    assert.deepEqual(await readdir(scratch), [], 'the scratch storage is removed');
  } finally {
    await served.stop();
    await rm(scratch, { recursive: true, force: true });
  }
});

test('the rounds make all the commits, of 1 to 300 objects in both encodings, a conflict among them', async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'zeo-ts-warmup-test-'));
  try {
    // (an idle server beside: the rounds stop when the loads are enough, the commits are done well before)
    const r = await warmUp(60_000, { tmp: scratch, beside: { activity: () => 0, servedLoads: () => 0 } });
    assert.equal(r.commits, WARM_UP_COMMITS);
    assert.equal(r.conflicts, 2, 'one conflict reported to each encoding');
    assert.ok(r.loads > 0);
    assert.deepEqual(await readdir(scratch), [], 'the scratch storages are removed');
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('stopped while its commits are under way: it resolves at once, its files gone', async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'zeo-ts-warmup-test-'));
  try {
    const stop = new AbortController();
    let looks = 0;
    const running = warmUp(60_000, {
      tmp: scratch,
      // idle throughout; told to stop after a few rounds (a transaction is then most likely half sent)
      beside: {
        activity: () => {
          if (++looks === 12) stop.abort();
          return 0;
        },
        servedLoads: () => 0,
      },
      signal: stop.signal,
    });
    const r = await running;
    assert.ok(r.commits < WARM_UP_COMMITS, `stopped early (${r.commits} commits)`);
    assert.ok(r.loads > 0);
    assert.deepEqual(await readdir(scratch), [], 'the scratch storages are removed');
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('beside a server: nothing while it is busy, nothing once its own loads are enough, a stop when told', async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'zeo-ts-warmup-test-'));
  try {
    // a server whose clients send something between every two looks: no round, until stopped
    let traffic = 0;
    const stop = new AbortController();
    const busy = warmUp(100, {
      tmp: scratch,
      beside: { activity: () => traffic++, servedLoads: () => 0 },
      signal: stop.signal,
    });
    await new Promise((r) => setTimeout(r, 50));
    stop.abort();
    assert.deepEqual(await busy, { loads: 0, commits: 0, conflicts: 0, cpuMs: 0 });
    assert.ok(traffic > 1, 'it looked more than once');
    // a server whose clients made enough loads: no warm-up
    const warmed = await warmUp(100, {
      tmp: scratch,
      beside: { activity: () => 0, servedLoads: () => 1_000_000 },
    });
    assert.deepEqual(warmed, { loads: 0, commits: 0, conflicts: 0, cpuMs: 0 });
    // an idle server: rounds, counted with its loads
    const idle = await warmUp(50, { tmp: scratch, beside: { activity: () => 7, servedLoads: () => 0 } });
    assert.ok(idle.loads > 0);
    assert.deepEqual(await readdir(scratch), [], 'the scratch storages are removed');
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('ZEO_TS_WARMUP_MS: the budget in CPU milliseconds, 0 for none; anything else is refused', async () => {
  assert.equal(warmUpBudget({}), DEFAULT_WARMUP_MS);
  assert.equal(warmUpBudget({ ZEO_TS_WARMUP_MS: '' }), DEFAULT_WARMUP_MS);
  assert.equal(warmUpBudget({ ZEO_TS_WARMUP_MS: '0' }), 0);
  assert.equal(warmUpBudget({ ZEO_TS_WARMUP_MS: '400' }), 400);
  assert.throws(() => warmUpBudget({ ZEO_TS_WARMUP_MS: 'soon' }), /ZEO_TS_WARMUP_MS/);
  assert.throws(() => warmUpBudget({ ZEO_TS_WARMUP_MS: '-1' }), /ZEO_TS_WARMUP_MS/);
  assert.deepEqual(await warmUp(0), { loads: 0, commits: 0, conflicts: 0, cpuMs: 0 });
});

test("the server's activity changes with its clients' connections and requests; its loads are counted", async () => {
  const served = await startServer();
  try {
    const a0 = served.server.activity();
    const c = await RawClient.open(served.address);
    try {
      const a1 = served.server.activity();
      assert.notEqual(a1, a0);
      const [oid] = (await c.call('new_oids', [1])) as Uint8Array[];
      assert.notEqual(served.server.activity(), a1);
      const l0 = served.server.servedLoads();
      await c.call('loadBefore', [oid, maxtid]).catch(() => {});
      assert.equal(served.server.servedLoads(), l0 + 1);
    } finally {
      c.close();
    }
  } finally {
    await served.stop();
  }
});

test('a zeo serve that warms up starts with zero counters, logs nothing of it, serves, and stops', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-served-'));
  // the warm-up's scratch storage goes here: nothing of it is left once the server has stopped
  const scratch = await mkdtemp(join(tmpdir(), 'zeo-ts-warmup-tmp-'));
  const child = new ServerProcess({
    kind: 'zeo-ts',
    args: ['-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs')],
    env: { ZEO_TS_WARMUP_MS: '200', TMPDIR: scratch },
  });
  try {
    const port = await child.port();
    const st = (await ruok({ port })).status['1'];
    for (const k of ['connections', 'loads', 'stores', 'commits', 'aborts'] as const)
      assert.equal(st[k], 0, k);
    assert.equal(st['last-transaction'], '0000000000000000');
    const c = await RawClient.open({ host: '127.0.0.1', port });
    try {
      const [oid] = (await c.call('new_oids', [1])) as Uint8Array[];
      const data = Buffer.from('80037d71002e', 'hex');
      c.sendAsync('tpc_begin', [1, Buffer.from(''), Buffer.from(''), new Map(), null, ' ']);
      c.sendAsync('storea', [oid, z64, data, 1]);
      await c.call('vote', [1]);
      const tid = (await c.call('tpc_finish', [1])) as Uint8Array;
      const r = (await c.call('loadBefore', [oid, maxtid])) as [Uint8Array, Uint8Array, null];
      assert.deepEqual(Buffer.from(r[0]), data);
      assert.deepEqual(Buffer.from(r[1]), Buffer.from(tid));
      assert.equal(r[2], null);
    } finally {
      c.close();
    }
    const log = child.stderr;
    assert.doesNotMatch(log, /warm/i);
    // one line each for the ruok and the client's connections, none for the warm-up's
    assert.equal(log.match(/Connected ZEO\.asyncio\.server\.ServerProtocol/g)?.length, 2);
    assert.equal(log.match(/StorageServer created/g)?.length, 1);
    await child.stopCleanly();
    assert.deepEqual(await readdir(scratch), []);
    // stopped as soon as it listens (the warm-up under way, or not started): a clean exit all the same
    const early = new ServerProcess({
      kind: 'zeo-ts',
      args: ['-a', '127.0.0.1:0', '-f', join(dir, 'Data.fs')],
      env: { ZEO_TS_WARMUP_MS: '5000', TMPDIR: scratch },
    });
    await early.port();
    await early.stopCleanly();
    assert.deepEqual(await readdir(scratch), []);
  } finally {
    await child.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
});
