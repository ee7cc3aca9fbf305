// The ad-hoc server (src/server/adhoc.ts, `zeo-ts/server`), as ZEO.server(): started in this process over a
// FileStorage or a MemoryStorage on port 0 or a unix socket, its address known from what it returns and from
// StorageServer's 'serving' event, stopped with 'closed'; Python's ClientStorage is the client.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startServer, StorageServer, type ListenAddress } from '../../src/server/index.js';
import { createLogger } from '../../src/server/log.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { MemoryStorage } from '../../src/storage/memory/memory-storage.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zeo-ts-adhoc-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** Python's ClientStorage on `addr`: commits root[key] = value, then reads back every root key. */
const PY_CLIENT = `
import ZEO, transaction
a = args['addr']
addr = a['path'] if 'path' in a else (a['host'], a['port'])
db = ZEO.DB(addr, storage=args.get('storage', '1'), read_only=args.get('ro', False), wait_timeout=10)
try:
    if args.get('key'):
        with db.transaction() as conn:
            conn.root()[args['key']] = args['value']
    with db.transaction() as conn:
        result = {'root': dict(conn.root()), 'name': db.storage._info['name'], 'ro': db.storage.isReadOnly(),
                  'undo': bool(db.storage.supportsUndo())}
finally:
    db.close()
`;

interface PyView {
  root: Record<string, unknown>;
  /** the served storage's getName(), from get_info */
  name: string;
  ro: boolean;
  undo: boolean;
}

function python(oracle: Oracle, addr: unknown, extra: Record<string, unknown> = {}): Promise<PyView> {
  return oracle.json<PyView>(PY_CLIENT, undefined, { addr, ...extra });
}

interopTest(
  'a FileStorage served on a port the OS chose: Python commits, the Data.fs keeps it after stop',
  async (oracle) => {
    const path = join(dir, 'file', 'Data.fs');
    const s = await startServer({ path, blobDir: join(dir, 'file', 'blobs') });
    assert.ok('port' in s.address && s.address.port > 0, `a real port: ${JSON.stringify(s.address)}`);
    assert.equal((s.address as { host: string }).host, '127.0.0.1');
    const first = await python(oracle, s.address, { key: 'a', value: 1 });
    assert.deepEqual(first.root, { a: 1 });
    assert.equal(first.undo, true, 'a FileStorage undoes');
    const closed = once(s.server, 'closed');
    await s.stop();
    await closed;
    await s.stop(); // idempotent
    // the port is free again, and the file holds the commit: a second server over it serves it
    const again = await startServer({ path });
    try {
      assert.deepEqual((await python(oracle, again.address, { key: 'b', value: 2 })).root, { a: 1, b: 2 });
    } finally {
      await again.stop();
    }
    assert.ok(existsSync(path));
  },
);

interopTest('a MemoryStorage on a unix socket, named and read-only as asked', async (oracle) => {
  const sock = join(dir, 'mem.sock');
  const s = await startServer({ unix: sock, name: 'main' });
  try {
    assert.deepEqual(s.address, { path: sock });
    const v = await python(oracle, s.address, { key: 'k', value: 'v', storage: 'main' });
    assert.deepEqual(v.root, { k: 'v' });
    assert.equal(v.undo, true, 'the MemoryStorage has undo');
  } finally {
    await s.stop();
  }
  assert.ok(!existsSync(sock), 'the socket file is removed');

  // an application's own storage, served as it is (and closed by stop)
  const own = new MemoryStorage({ name: 'own' });
  const app = await startServer({ storage: own });
  try {
    assert.equal((await python(oracle, app.address, { key: 'o', value: 1 })).name, 'own');
  } finally {
    await app.stop();
  }
  await assert.rejects(own.tpcBegin(new TransactionMetaData()), /is closed/);

  // read-only: a FileStorage made by a first server, then served read-only
  const path = join(dir, 'ro', 'Data.fs');
  const rw = await startServer({ path });
  await python(oracle, rw.address, { key: 'x', value: 1 });
  await rw.stop();
  const ro = await startServer({ path, readOnly: true });
  try {
    // a read-only registration is served (a writable one would wait for a writable server, as ZEO's)
    const v = await python(oracle, ro.address, { ro: true });
    assert.equal(v.ro, true);
    assert.deepEqual(v.root, { x: 1 });
    await assert.rejects(python(oracle, ro.address, { key: 'y', value: 2, ro: true }), /ReadOnlyError/);
  } finally {
    await ro.stop();
  }
});

interopTest("StorageServer's 'serving' event gives the bound port, 'closed' its end", async (oracle) => {
  const logging = createLogger({ level: 'CRITICAL', handlers: [] });
  const server = await StorageServer.create({
    storages: [{ name: '1', storage: new MemoryStorage() }],
    log: logging.root,
  });
  const serving = once(server, 'serving') as Promise<[ListenAddress]>;
  const listened = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const [bound] = await serving;
  assert.equal(bound.kind, 'tcp');
  assert.deepEqual(bound, listened);
  const port = (bound as { port: number }).port;
  assert.ok(port > 0);
  assert.deepEqual((await python(oracle, { host: '127.0.0.1', port }, { key: 'n', value: 3 })).root, {
    n: 3,
  });
  let closedEvents = 0;
  server.on('closed', () => closedEvents++);
  await server.close();
  await server.close();
  assert.equal(closedEvents, 1);
  await logging.close();
});

test('bad arguments and a busy port fail clearly, leaving nothing open', async () => {
  await assert.rejects(
    startServer({ path: join(dir, 'x.fs'), storage: 'memory' }),
    /path .* or storage, not both/,
  );
  await assert.rejects(startServer({ blobDir: join(dir, 'b') }), /blobDir is for a FileStorage/);
  // a port something listens on: the error is the listen error, and the FileStorage is closed again (its lock freed)
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as net.AddressInfo).port;
  const path = join(dir, 'busy', 'Data.fs');
  try {
    await assert.rejects(startServer({ path, port }), /EADDRINUSE|in use/);
  } finally {
    blocker.close();
  }
  const s = await startServer({ path });
  await s.stop();
});

test('zeo-ts/server is a public entry point', async () => {
  const entry = await import('zeo-ts/server');
  assert.equal(entry.startServer, startServer);
  assert.equal(entry.StorageServer, StorageServer);
});
