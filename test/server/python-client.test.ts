// A Python ZODB application (the real ZEO ClientStorage and ZODB of the oracle venv) against `zeo serve`,
// in pickle (Z5) and msgpack (M5) modes: test/fixtures/python/zeo_scenarios.py plays each scenario.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { fixturesDir } from '../helpers/corpus.js';
import {
  fileStorageConfig,
  startServer,
  type TestServer,
  type TestServerOptions,
} from '../helpers/server-fixture.js';

function scenario<T>(oracle: Oracle, call: string, args: unknown = null): Promise<T> {
  return oracle.json<T>(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import zeo_scenarios as s\nresult = s.${call}`,
    undefined,
    args,
  );
}

async function withServer(options: TestServerOptions, fn: (s: TestServer) => Promise<void>): Promise<void> {
  const s = await startServer(options);
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}

function addrArg(s: TestServer): unknown {
  return 'path' in s.address ? s.address.path : ['127.0.0.1', s.address.port];
}

for (const msgpack of [false, true]) {
  const mode = msgpack ? 'msgpack (M5)' : 'pickle (Z5)';

  interopTest(`${mode}: two Python clients read and write mappings and BTrees`, async (oracle) => {
    await withServer({ msgpack }, async (s) => {
      const r = await scenario<{ len: number; text: string; last: string }>(
        oracle,
        'basic(args)',
        addrArg(s),
      );
      assert.equal(r.text, 'héllo');
      assert.ok(r.len > 3);
      assert.equal(
        r.last,
        Buffer.from(s.server.storages.get('1')!.storage.lastTransaction()).toString('hex'),
      );
      const status = s.server.storages.get('1')!.status();
      assert.equal(status.get('commits'), 4);
      assert.equal(status.get('active_txns'), 0);
    });
  });

  interopTest(
    `${mode}: a ConflictError reaches the application; Length conflicts are resolved`,
    async (oracle) => {
      await withServer({ msgpack }, async (s) => {
        const r = await scenario<{ raised: string | null; length: number; pm: number }>(
          oracle,
          'conflicts(args)',
          addrArg(s),
        );
        assert.equal(r.raised, 'ConflictError');
        assert.equal(r.pm, 1);
        assert.equal(r.length, 12);
      });
    },
  );
}

interopTest(
  'concurrent BTree inserts and Length increments from several clients',
  async (oracle) => {
    await withServer({}, async (s) => {
      const r = await scenario<{ errors: string[]; keys: number; count: number; retries: number }>(
        oracle,
        'concurrent_btree(args, clients=3, per_client=40)',
        addrArg(s),
      );
      assert.deepEqual(r.errors, []);
      assert.equal(r.keys, 120);
      assert.equal(r.count, 120);
    });
  },
  { timeout: 240_000 },
);

interopTest('blobs: streamed through ZEO and through a shared blob directory', async (oracle) => {
  await withServer({}, async (s) => {
    const r = await scenario<{ streamed: boolean; second: boolean; shared: string }>(
      oracle,
      'blobs(args[0], args[1])',
      [addrArg(s), join(s.dir, 'blobs')],
    );
    assert.deepEqual(r, { streamed: true, second: true, shared: 'shared data' });
  });
});

interopTest('DB.undo and DB.pack through the server', async (oracle) => {
  await withServer({}, async (s) => {
    const r = await scenario<{
      after_undo: number;
      after_pack: number;
      undo_info: number;
      old_gone: number;
      revisions_before_pack: number;
    }>(oracle, 'undo_and_pack(args)', addrArg(s));
    assert.equal(r.after_undo, 1);
    assert.equal(r.after_pack, 1);
    assert.equal(r.undo_info, 1);
    assert.ok(r.revisions_before_pack >= 4);
    assert.equal(r.old_gone, r.revisions_before_pack - 1);
  });
});

interopTest('a unix socket address', async (oracle) => {
  await withServer({ unix: true }, async (s) => {
    const r = await scenario<{ text: string }>(oracle, 'basic(args)', addrArg(s));
    assert.equal(r.text, 'héllo');
  });
});

interopTest(
  'read-only: a read-only server refuses writes; a read-only storage serves fallback clients',
  async (oracle) => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-ro-'));
    try {
      await withServer({ dir }, async (s) => {
        await scenario(oracle, 'basic(args)', addrArg(s));
      });
      await withServer({ dir, readOnly: true }, async (s) => {
        const r = await scenario<{ keys: string[]; refused: boolean; is_read_only: boolean }>(
          oracle,
          'read_only(args)',
          addrArg(s),
        );
        assert.deepEqual(r, { keys: ['m', 'tree'], refused: true, is_read_only: true });
      });
      await withServer(
        { dir, storages: (d) => [fileStorageConfig(d, '1', { readOnly: true })] },
        async (s) => {
          const r = await scenario<{ is_read_only: boolean }>(oracle, 'read_only_fallback(args)', addrArg(s));
          assert.equal(r.is_read_only, true);
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);

interopTest(
  'a client with a persistent cache reconnects after a server restart and verifies its cache',
  async (oracle) => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-restart-'));
    const cacheDir = join(dir, 'cache');
    try {
      // a port outside the kernel's ephemeral range: while this server is down, no other test's port-0
      // server can take it and receive the waiting client
      let s = await startServerOnPort(dir, () => 20000 + Math.floor(Math.random() * 10000));
      const port = 'port' in s.address ? s.address.port : 0;
      await scenario(oracle, 'restart_open(args[0], args[1])', [addrArg(s), cacheDir]);
      await s.stop();
      assert.equal(await scenario<boolean>(oracle, 'restart_disconnected()'), true);
      // the same port again: the client keeps trying it
      s = await startServerOnPort(dir, () => port);
      try {
        await scenario(oracle, 'restart_commit_elsewhere(args)', addrArg(s));
        const r = await scenario<{ value: number; ok: boolean }>(oracle, 'restart_check()');
        assert.deepEqual(r, { value: 2, ok: true });
      } finally {
        await s.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);

async function startServerOnPort(dir: string, port: () => number): Promise<TestServer> {
  for (let i = 0; ; i++) {
    try {
      return await startServer({ dir, port: port() });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i > 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
