// ClientBlobs against real servers: zeo serve (in this process) and Python's runzeo, in pickle and msgpack,
// with a shared blob directory and with blob caches. Blobs of 0 bytes, a few bytes and several MB go up with
// storeBlob and come back with loadBlob, byte for byte; a cache fetches a revision once however many loads
// (in this process, or in several processes sharing the cache) want it, and stays within its bound; Python's
// ClientStorage reads what we stored and we read what it stored.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ClientBlobs } from '../../src/client/blobs.js';
import { ClientStorage } from '../../src/client/client-storage.js';
import { ClientConnection, type ServerAddress } from '../../src/client/connection.js';
import { ClientDisconnected } from '../../src/client/errors.js';
import type { PickleValue } from '../../src/pickle/index.js';
import { POSKeyError } from '../../src/storage/errors.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { idFromHex, idHex, p64, u64, z64, type Oid, type Tid } from '../../src/storage/ids.js';
import { interopDisabled, Oracle } from '../helpers/oracle.js';
import { startServer } from '../helpers/server-fixture.js';
import { stopLeftovers } from '../helpers/server-process.js';
import { startZeoServer, type RunningZeoServer, type ZeoServerKind } from '../helpers/zeo-servers.js';
import { relay } from '../helpers/relay.js';
import { scriptedServer as startScripted, type ScriptedServer } from '../helpers/scripted-server.js';

after(stopLeftovers);

/** What ZODB writes for a Blob: the class ZODB.blob.Blob, and no state. */
const BLOB_RECORD = Buffer.from('\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.', 'latin1');
const MB = 1 << 20;

type Running = RunningZeoServer & { blobDir: string };

async function startServerOf(kind: ZeoServerKind, msgpack: boolean): Promise<Running> {
  const s = await startZeoServer(kind, { msgpack });
  return s as Running; // (a blob directory by default)
}

/** Runs `fn` with a started server and a work directory; stops and removes both after. */
async function withServer(
  starting: Promise<Running>,
  fn: (server: Running, work: string) => Promise<void>,
): Promise<void> {
  const server = await starting;
  const work = await mkdtemp(join(tmpdir(), 'zeo-ts-blobs-'));
  try {
    await fn(server, work);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}

const startOurs = (msgpack: boolean): Promise<Running> => startServerOf('zeo-ts', msgpack);
const startRunzeo = (msgpack: boolean): Promise<Running> => startServerOf('runzeo', msgpack);

const SERVERS = [
  { name: 'zeo serve', start: startOurs, interop: false },
  { name: 'runzeo', start: startRunzeo, interop: true },
];

/** A registered connection whose receiveBlob* calls go to `blobs`; counts the blobs the server sent. */
class Client {
  received = 0;
  private txn = 0;
  private constructor(
    readonly conn: ClientConnection,
    readonly blobs: ClientBlobs,
  ) {}

  static async open(address: ServerAddress, blobs: ClientBlobs): Promise<Client> {
    let self: Client | null = null;
    const conn = await ClientConnection.connect(address, {
      timeout: 60_000,
      onServerCall: async (name, args) => {
        if (name === 'receiveBlobStart') self!.received++;
        await blobs.onServerCall(name, args);
      },
    });
    self = new Client(conn, blobs);
    await conn.call('register', ['1', false]);
    return self;
  }

  async newOids(n: number): Promise<Oid[]> {
    return (await this.conn.call('new_oids', [n])) as Oid[];
  }

  /** One transaction storing each file as a new revision of its oid (oldSerial z64: a new object). */
  async commit(items: Array<{ oid: Oid; file: string; oldSerial?: Tid }>): Promise<Tid> {
    const id = ++this.txn;
    const c = this.conn;
    c.callAsync('tpc_begin', [
      id,
      new Uint8Array(0),
      new Uint8Array(Buffer.from('blobs')),
      new Map(),
      null,
      ' ',
    ]);
    const stored: Array<{ oid: Oid; filename: string }> = [];
    for (const it of items) {
      const serial = it.oldSerial ?? z64;
      c.callAsync('storea', [it.oid, serial, BLOB_RECORD, id]);
      const filename = await this.blobs.storeBlob(c, it.oid, serial, BLOB_RECORD, it.file, id);
      stored.push({ oid: it.oid, filename });
    }
    await c.call('vote', [id]);
    const tid = (await c.call('tpc_finish', [id])) as Tid;
    await this.blobs.committed(tid, stored);
    return tid;
  }

  async read(oid: Oid, serial: Tid): Promise<Buffer> {
    return readFile(await this.blobs.loadBlob(this.conn, oid, serial));
  }

  async close(): Promise<void> {
    await this.blobs.close();
    await this.conn.close();
  }
}

function cache(dir: string, name: string, size: number | null = null): ClientBlobs {
  return new ClientBlobs({
    blobDir: join(dir, name),
    sharedBlobDir: false,
    blobCacheSize: size,
    blobCacheSizeCheck: 10,
  });
}

function shared(server: Running): ClientBlobs {
  return new ClientBlobs({
    blobDir: server.blobDir,
    sharedBlobDir: true,
    blobCacheSize: null,
    blobCacheSizeCheck: 10,
  });
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Two ClientBlobs on one server: 0 bytes, a few and 5 MB stored by one, loaded back by both. */
async function clientBlobsPhase(server: Running, work: string, isShared: boolean): Promise<void> {
  const clients: Client[] = [];
  try {
    const a = await Client.open(server.address, isShared ? shared(server) : cache(work, 'a'));
    clients.push(a);
    const b = await Client.open(server.address, isShared ? shared(server) : cache(work, 'b'));
    clients.push(b);
    const contents = [Buffer.alloc(0), Buffer.from('a few bytes of blob'), randomBytes(5 * MB + 12_345)];
    const oids = await a.newOids(contents.length);
    const files: string[] = [];
    for (let i = 0; i < contents.length; i++) {
      // the application's file, in the temporary directory as ZODB's Blob writes it
      files.push(join(a.blobs.temporaryDirectory(), `upload-${i}`));
      await writeFile(files[i], contents[i]);
    }
    const tid = await a.commit(oids.map((oid, i) => ({ oid, file: files[i] })));
    for (const f of files) assert.ok(!existsSync(f), 'storeBlob took the file over');

    // the writer reads its own blobs: from its cache (moved there on commit) or the shared directory
    for (let i = 0; i < contents.length; i++) {
      const path = await a.blobs.loadBlob(a.conn, oids[i], tid);
      assert.equal(path, a.blobs.blobFilename(oids[i], tid));
      assert.equal(sha(await readFile(path)), sha(contents[i]), `blob ${i}, read by its writer`);
      assert.equal((await stat(path)).mode & 0o222, 0, 'a committed blob file is read-only');
    }
    assert.equal(a.received, 0, 'the writer had its blobs already');
    if (!isShared) {
      // nothing left of the uploads in the cache's oid directories
      for (const oid of oids) {
        const names = await readdir(a.blobs.blobDirectoryOf(oid));
        assert.deepEqual(
          names.filter((n) => !n.endsWith('.blob') && n !== '.lock'),
          [],
        );
      }
    }

    // another client: from the server (each blob once, though the big one is asked for three times at once)
    const reads = await Promise.all([
      b.read(oids[0], tid),
      b.read(oids[1], tid),
      b.read(oids[2], tid),
      b.read(oids[2], tid),
      b.read(oids[2], tid),
    ]);
    assert.deepEqual(
      reads.map(sha),
      [0, 1, 2, 2, 2].map((i) => sha(contents[i])),
    );
    assert.equal(b.received, isShared ? 0 : 3, 'one sendBlob per revision');
    assert.equal(sha(await b.read(oids[2], tid)), sha(contents[2]));
    assert.equal(b.received, isShared ? 0 : 3, 'a cached revision is not fetched again');
    const fh = await b.blobs.openCommittedBlobFile(b.conn, oids[1], tid);
    try {
      assert.equal(sha(await fh.readFile()), sha(contents[1]), 'openCommittedBlobFile');
    } finally {
      await fh.close();
    }
    await assert.rejects(b.blobs.openCommittedBlobFile(b.conn, oids[1], p64(99)), POSKeyError);

    // a revision the server does not have: POSKeyError, and nothing left behind
    const missing = p64(0x0123456789n);
    await assert.rejects(b.blobs.loadBlob(b.conn, oids[1], missing), (e: unknown) => {
      assert.ok(e instanceof POSKeyError, `POSKeyError, not ${String(e)}`);
      return true;
    });
    await assert.rejects(b.blobs.loadBlob(b.conn, p64(0xfff_fffn), tid), POSKeyError);
    if (!isShared) {
      const dir = b.blobs.blobDirectoryOf(oids[1]);
      assert.deepEqual(
        (await readdir(dir)).filter((n) => n.endsWith('.dl')),
        [],
        'no partial download',
      );
    }

    // a second revision of the big blob, stored by the other client
    const next = join(b.blobs.temporaryDirectory(), 'next');
    const nextContent = randomBytes(2 * MB);
    await writeFile(next, nextContent);
    const tid2 = await b.commit([{ oid: oids[2], file: next, oldSerial: tid }]);
    assert.equal(sha(await a.read(oids[2], tid2)), sha(nextContent));
    assert.equal(sha(await a.read(oids[2], tid)), sha(contents[2]), 'the old revision is still there');
    if (isShared) assert.ok(existsSync(join(server.blobDir, '.layout')));
  } finally {
    for (const c of clients) await c.close();
  }
}

/** Python's ClientStorage reads what Node stored, and Node reads what Python stored. */
async function pythonPhase(server: Running, work: string, isShared: boolean): Promise<void> {
  // PY_CLIENT's client(): Python's own blob directory (or the server's, shared)
  const pyClient = {
    address: server.pyAddress,
    blob_dir: isShared ? server.blobDir : join(work, 'python'),
    shared: isShared,
  };
  const oracle = new Oracle();
  let node: Client | null = null;
  try {
    node = await Client.open(server.address, isShared ? shared(server) : cache(work, 'node'));
    const ours = [Buffer.alloc(0), randomBytes(3 * MB + 1)];
    const oids = await node.newOids(ours.length);
    const files = ours.map((_, i) => join(node!.blobs.temporaryDirectory(), `n${i}`));
    for (let i = 0; i < ours.length; i++) await writeFile(files[i], ours[i]);
    const tid = await node.commit(oids.map((oid, i) => ({ oid, file: files[i] })));

    // Python opens the objects as Blobs and reads them
    const pyRead = await oracle.json<string[]>(
      PY_CLIENT +
        `
import hashlib
cs = client(args['blob_dir'], args['shared'])
db = ZODB.DB(cs)
try:
    c = db.open()
    result = []
    for o in args['oids']:
        b = c.get(bytes.fromhex(o))
        assert isinstance(b, ZODB.blob.Blob), b
        with b.open('r') as f:
            result.append(hashlib.sha256(f.read()).hexdigest())
        assert b._p_serial == bytes.fromhex(args['tid']), b._p_serial
    c.close()
finally:
    db.close()
`,
      undefined,
      { ...pyClient, oids: oids.map(idHex), tid: idHex(tid) },
    );
    assert.deepEqual(pyRead, ours.map(sha));

    // Python stores blobs (under the root); Node loads them by oid and serial
    const theirs = [randomBytes(2 * MB + 7), Buffer.from('small')];
    const stored = await oracle.json<Array<[string, string]>>(
      PY_CLIENT +
        `
import base64
cs = client(args['blob_dir'], args['shared'])
db = ZODB.DB(cs)
try:
    c = db.open()
    root = c.root()
    bs = []
    for i, d in enumerate(args['data']):
        b = ZODB.blob.Blob(base64.b64decode(d))
        root['b%d' % i] = b
        bs.append(b)
    transaction.commit()
    # (committed blobs are ghosts again: their serial is the transaction's)
    result = [[b._p_oid.hex(), cs.lastTransaction().hex()] for b in bs]
    c.close()
finally:
    db.close()
`,
      undefined,
      { ...pyClient, data: theirs.map((b) => b.toString('base64')) },
    );
    for (let i = 0; i < theirs.length; i++) {
      const [oid, serial] = stored[i];
      const got: Buffer = await node.read(idFromHex(oid), idFromHex(serial));
      assert.equal(sha(got), sha(theirs[i]), `Python's blob ${i}`);
    }
    assert.equal(node.received, isShared ? 0 : theirs.length);
    if (!isShared) {
      // one cache for both: Python's ClientStorage finds what Node fetched where it looks, and uses it
      const nodePaths = stored.map(([o, t]) => node!.blobs.blobFilename(idFromHex(o), idFromHex(t)));
      const pyPaths = await oracle.json<string[]>(
        PY_CLIENT +
          `
cs = client(args['blob_dir'], False)
try:
    result = [cs.loadBlob(bytes.fromhex(o), bytes.fromhex(t)) for o, t in args['stored']]
finally:
    cs.close()
`,
        undefined,
        { address: server.pyAddress, blob_dir: node.blobs.blobDir, stored },
      );
      assert.deepEqual(pyPaths, nodePaths);
    }
  } finally {
    oracle.close();
    await node?.close();
  }
}

/** Two ClientStorages with blobDir: storeBlob, loadBlob, an aborted upload. */
async function clientStoragePhase(server: Running, work: string, isShared: boolean): Promise<void> {
  const storages: ClientStorage[] = [];
  const open = async (cacheName: string): Promise<ClientStorage> => {
    const s = await ClientStorage.open({
      server: server.address,
      blobDir: isShared ? server.blobDir : join(work, cacheName),
      sharedBlobDir: isShared,
      blobCacheSize: isShared ? null : 64 * MB,
      waitTimeout: 20_000,
    });
    storages.push(s);
    return s;
  };
  try {
    const a = await open('a');
    const b = await open('b');
    assert.equal(a.capabilities.blobs, true);
    const contents = [Buffer.alloc(0), Buffer.from('small'), randomBytes(3 * MB + 5)];
    const oids: Oid[] = [];
    const t = new TransactionMetaData();
    await a.tpcBegin(t);
    for (const content of contents) {
      const oid = await a.newOid();
      oids.push(oid);
      const file = join(a.temporaryDirectory(), `up-${oids.length}`);
      await writeFile(file, content);
      await a.storeBlob(oid, z64, BLOB_RECORD, file, t);
      assert.ok(!existsSync(file), 'the storage took the file over');
    }
    await a.tpcVote(t);
    const tid = await a.tpcFinish(t);
    for (let i = 0; i < contents.length; i++) {
      assert.equal(
        sha(await readFile(await a.loadBlob(oids[i], tid))),
        sha(contents[i]),
        `writer, blob ${i}`,
      );
      assert.equal(
        sha(await readFile(await b.loadBlob(oids[i], tid))),
        sha(contents[i]),
        `reader, blob ${i}`,
      );
      const loaded = await b.load(oids[i]);
      assert.deepEqual(Buffer.from(loaded.data), BLOB_RECORD);
    }
    await assert.rejects(b.loadBlob(oids[1], p64(0x77)), POSKeyError);

    // an aborted transaction: its upload goes, nothing is committed
    const t2 = new TransactionMetaData();
    await a.tpcBegin(t2);
    const file = join(a.temporaryDirectory(), 'aborted');
    await writeFile(file, randomBytes(100_000));
    await a.storeBlob(oids[2], tid, BLOB_RECORD, file, t2);
    await a.tpcAbort(t2);
    const dir = a.blobDirectoryOf(oids[2]);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('.tmp')),
      [],
      'no upload left in the oid directory',
    );
    assert.deepEqual(a.lastTransaction(), tid, 'the aborted transaction committed nothing');
  } finally {
    for (const s of storages) await s.close();
  }
}

for (const target of SERVERS) {
  for (const msgpack of [false, true]) {
    const skip = target.interop && interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false;
    // Python's client once per server: zeo serve in pickle, runzeo in msgpack
    const withPython = msgpack === target.interop && !interopDisabled;
    test(`${target.name}, ${msgpack ? 'msgpack' : 'pickle'}`, { skip, timeout: 180_000 }, async (t) => {
      await withServer(target.start(msgpack), async (server, work) => {
        for (const isShared of [false, true]) {
          const mode = isShared ? 'shared blob directory' : 'blob caches';
          const dir = (phase: string): string => join(work, `${phase}-${isShared ? 'shared' : 'cached'}`);
          await t.test(`${mode}: blobs of 0 bytes, a few bytes and 5 MB stored and loaded back`, () =>
            clientBlobsPhase(server, dir('blobs'), isShared),
          );
          await t.test(`${mode}: through ClientStorage: storeBlob, loadBlob, abort`, () =>
            clientStoragePhase(server, dir('storage'), isShared),
          );
          if (withPython)
            await t.test(`${mode}: Python reads the blobs Node stored, Node reads Python’s`, () =>
              pythonPhase(server, dir('python'), isShared),
            );
        }
      });
    });
  }
}

test('an aborted transaction’s uploads are removed; a load cut off by a lost connection leaves no partial file', async () => {
  await withServer(startOurs(false), async (server, work) => {
    const a = await Client.open(server.address, cache(work, 'a'));
    const [oid] = await a.newOids(1);
    const file = join(a.blobs.temporaryDirectory(), 'f');
    await writeFile(file, randomBytes(300_000));
    const c = a.conn;
    c.callAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.callAsync('storea', [oid, z64, BLOB_RECORD, 1]);
    const uploaded = await a.blobs.storeBlob(c, oid, z64, BLOB_RECORD, file, 1);
    assert.ok(existsSync(uploaded));
    await c.call('tpc_abort', [1]);
    await a.blobs.aborted([{ oid, filename: uploaded }]);
    assert.ok(!existsSync(uploaded));

    const big = join(a.blobs.temporaryDirectory(), 'big');
    await writeFile(big, randomBytes(8 * MB));
    const tid = await a.commit([{ oid, file: big }]);
    await a.close();

    const b = await Client.open(server.address, cache(work, 'b'));
    const loading = b.blobs.loadBlob(b.conn, oid, tid);
    // cut the connection while the blob streams in
    setImmediate(() => void b.conn.close('cut by the test'));
    await loading.then(
      () => {}, // it may have finished first: then the file is whole (checked below)
      (e: unknown) => assert.match(String(e), /ClientDisconnected|cut by the test/),
    );
    const dir = b.blobs.blobDirectoryOf(oid);
    const names = await readdir(dir);
    assert.deepEqual(
      names.filter((n) => n.endsWith('.dl')),
      [],
      'the partial download is gone',
    );
    const path = b.blobs.blobFilename(oid, tid);
    if (existsSync(path)) assert.equal((await stat(path)).size, 8 * MB);
    await b.blobs.close();
  });
});

// ---------------------------------------------------------------------------------------------------------
// several processes on one cache

const child = fileURLToPath(new URL('./blobs-child.js', import.meta.url));
const run = promisify(execFile);

interface ChildReport {
  loads: number;
  received: number;
  bad: string[];
}

async function runChildren(n: number, job: Record<string, unknown>): Promise<ChildReport[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const { stdout } = await run(process.execPath, [child, JSON.stringify({ ...job, seed: i + 1 })], {
        timeout: 120_000,
      });
      return JSON.parse(stdout) as ChildReport;
    }),
  );
}

async function storeMany(server: Running, work: string, count: number, size: number) {
  const a = await Client.open(server.address, cache(work, 'writer'));
  try {
    const oids = await a.newOids(count);
    const items = [];
    const contents: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      contents.push(randomBytes(size + i));
      const file = join(a.blobs.temporaryDirectory(), `f${i}`);
      await writeFile(file, contents[i]);
      items.push({ oid: oids[i], file });
    }
    const tid = await a.commit(items);
    return oids.map((oid, i) => ({ oid: idHex(oid), serial: idHex(tid), sha256: sha(contents[i]) }));
  } finally {
    await a.close();
  }
}

test(
  'several processes (Node and Python) loading the same blobs into one cache: each revision fetched once, never seen partly written',
  { timeout: 120_000 },
  async () => {
    await withServer(startOurs(false), async (server, work) => {
      const blobs = await storeMany(server, work, 12, 400_000);
      const blobDir = join(work, 'shared-cache');
      // Python's ClientStorage joins in on the same cache (unless interop is off): ZEO's locks are ours
      const oracle = interopDisabled ? null : new Oracle();
      try {
        const [reports, python] = await Promise.all([
          runChildren(3, {
            address: server.address,
            blobDir,
            blobCacheSize: null,
            blobCacheSizeCheck: 10,
            blobs,
            rounds: 2,
          }),
          oracle?.json<ChildReport>(
            `
import ZEO.ClientStorage as CS, hashlib
n = [0]
orig = CS.ClientStorage.receiveBlobStart
def counting(self, oid, serial):
    n[0] += 1
    return orig(self, oid, serial)
CS.ClientStorage.receiveBlobStart = counting
try:
    cs = CS.ClientStorage(args['address'], blob_dir=args['blob_dir'], wait_timeout=30)
    bad = []
    for b in args['blobs']:
        with cs.openCommittedBlobFile(bytes.fromhex(b['oid']), bytes.fromhex(b['serial'])) as f:
            if hashlib.sha256(f.read()).hexdigest() != b['sha256']:
                bad.append(b['oid'])
    cs.close()
finally:
    CS.ClientStorage.receiveBlobStart = orig
result = {'loads': len(args['blobs']), 'received': n[0], 'bad': bad}
`,
            undefined,
            { address: server.pyAddress, blob_dir: blobDir, blobs },
          ),
        ]);
        const all = python ? [...reports, python] : reports;
        assert.deepEqual(
          all.flatMap((r) => r.bad),
          [],
          'every load read the whole blob',
        );
        assert.equal(
          reports.reduce((s, r) => s + r.loads, 0),
          3 * 2 * 12,
        );
        assert.equal(
          all.reduce((s, r) => s + r.received, 0),
          12,
          'each revision came from the server once, for all the processes (Python’s too)',
        );
      } finally {
        oracle?.close();
      }
    });
  },
);

test(
  'several processes on one bounded cache: it stays near its bound, and the next client brings it under',
  { timeout: 120_000 },
  async () => {
    await withServer(startOurs(true), async (server, work) => {
      const size = 200_000;
      const blobs = await storeMany(server, work, 20, size);
      const bound = 1_000_000;
      const check = bound / 10;
      const dir = join(work, 'bounded-cache');
      const n = 3;
      const reports = await runChildren(n, {
        address: server.address,
        blobDir: dir,
        blobCacheSize: bound,
        blobCacheSizeCheck: 10,
        blobs,
        rounds: 2,
      });
      assert.deepEqual(
        reports.flatMap((r) => r.bad),
        [],
        'every load read the whole blob, evictions or not',
      );
      const received = reports.reduce((s, r) => s + r.received, 0);
      assert.ok(received > 20, `evicted blobs were fetched again (${received} fetches of 20 blobs)`);
      const probe = new ClientBlobs({
        blobDir: dir,
        sharedBlobDir: false,
        blobCacheSize: null,
        blobCacheSizeCheck: 10,
      });
      const left = await probe.cacheBytes();
      // each process may have written up to a check's worth, plus the blob a check ran beside, since its last check
      assert.ok(left <= bound + n * (check + size + 20), `${left} bytes left in a cache bounded at ${bound}`);
      // a client opening the cache checks its size at once, as ZEO's does
      const next = new ClientBlobs({
        blobDir: dir,
        sharedBlobDir: false,
        blobCacheSize: bound,
        blobCacheSizeCheck: 10,
      });
      await next.close();
      const after = await probe.cacheBytes();
      assert.ok(after <= bound - check, `${after} bytes after the opening check (target ${bound - check})`);
      assert.ok(after > 0, 'the most recently used blobs stay');
    });
  },
);

// ---------------------------------------------------------------------------------------------------------
// with Python's ClientStorage

const PY_CLIENT = `
import ZEO.ClientStorage, ZODB, transaction, ZODB.blob
def client(blob_dir, shared):
    return ZEO.ClientStorage.ClientStorage(args['address'], blob_dir=blob_dir, shared_blob_dir=shared, wait_timeout=30)
`;

// ---------------------------------------------------------------------------------------------------------
// pacing and cancelling

test(
  'an upload goes no further than two windows ahead of the server’s answers (never the whole file in memory)',
  { timeout: 60_000 },
  async () => {
    await withServer(startOurs(false), async (server, work) => {
      const r = await relay(server.address as { host: string; port: number });
      try {
        const a = await Client.open(r.address, cache(work, 'a'));
        const [oid] = await a.newOids(1);
        const content = randomBytes(24 * MB);
        const file = join(a.blobs.temporaryDirectory(), 'big');
        await writeFile(file, content);
        const c = a.conn;
        c.callAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
        c.callAsync('storea', [oid, z64, BLOB_RECORD, 1]);
        const before = r.fromClient;
        r.hold();
        let done = false;
        const storing = a.blobs.storeBlob(c, oid, z64, BLOB_RECORD, file, 1).then((f) => {
          done = true;
          return f;
        });
        await new Promise((resolve) => setTimeout(resolve, 700));
        const sent = r.fromClient - before;
        assert.equal(done, false, 'the upload waits for the server');
        assert.ok(sent <= 3 * MB, `${sent} bytes sent while the server's answers were held`);
        assert.ok(sent >= MB, `it did send the first window (${sent} bytes)`);
        r.release();
        const uploaded = await storing;
        await c.call('vote', [1]);
        const tid = (await c.call('tpc_finish', [1])) as Tid;
        await a.blobs.committed(tid, [{ oid, filename: uploaded }]);
        await a.close();
        const b = await Client.open(server.address, cache(work, 'b'));
        assert.equal(sha(await b.read(oid, tid)), sha(content));
        await b.close();
      } finally {
        await r.close();
      }
    });
  },
);

test('a load given a signal stops waiting when it aborts; the fetch it started still fills the cache', async () => {
  await withServer(startOurs(false), async (server, work) => {
    const a = await Client.open(server.address, cache(work, 'a'));
    const [oid] = await a.newOids(1);
    const content = randomBytes(4 * MB);
    const file = join(a.blobs.temporaryDirectory(), 'f');
    await writeFile(file, content);
    const tid = await a.commit([{ oid, file }]);
    await a.close();
    const b = await Client.open(server.address, cache(work, 'b'));
    const ac = new AbortController();
    const loading = b.blobs.loadBlob(b.conn, oid, tid, { signal: ac.signal });
    ac.abort(new Error('the user went away'));
    await assert.rejects(loading, /the user went away/);
    assert.equal(sha(await b.read(oid, tid)), sha(content));
    assert.equal(b.received, 1, 'one fetch, shared by the aborted load and the next');
    const already = new AbortController();
    already.abort(new Error('aborted before'));
    await assert.rejects(b.blobs.loadBlob(b.conn, oid, tid, { signal: already.signal }), /aborted before/);
    await b.close();
  });
});

// ---------------------------------------------------------------------------------------------------------
// a server that answers sendBlob wrongly

type Step = [string, PickleValue[]] | 'reply' | 'cut';

/** Greets in pickle mode, answers register with z64 and ping with None; sendBlob gets the scripted steps. */
function scriptedServer(onSendBlob: (oid: Oid, serial: Tid) => Step[]): Promise<ScriptedServer> {
  return startScripted('Z5', (msg, srv, sock) => {
    if (msg.name === 'register') srv.reply(sock, msg.msgid, z64);
    else if (msg.name === 'ping') srv.reply(sock, msg.msgid, null);
    else if (msg.name === 'sendBlob') {
      const [oid, serial] = msg.args as [Oid, Tid];
      for (const step of onSendBlob(oid, serial)) {
        if (step === 'reply') srv.reply(sock, msg.msgid, null);
        else if (step === 'cut') sock.destroy();
        else srv.notify(sock, step[0], step[1]);
      }
    }
  });
}

test('bad blob transfers from a server fail the load clearly, leave no file behind, and keep the connection', async () => {
  const other = p64(77);
  const srv = await scriptedServer((oid, serial) => {
    const n = Number(u64(oid));
    const start: Step = ['receiveBlobStart', [oid, serial]];
    const chunk: Step = ['receiveBlobChunk', [oid, serial, Buffer.from('part')]];
    const stop: Step = ['receiveBlobStop', [oid, serial]];
    switch (n) {
      case 1: // a chunk that is not bytes
        return [start, chunk, ['receiveBlobChunk', [oid, serial, 'text']], stop, 'reply'];
      case 2: // only another blob's calls: nothing for this load
        return [
          ['receiveBlobStart', [other, serial]],
          ['receiveBlobChunk', [other, serial, Buffer.from('x')]],
          ['receiveBlobStop', [other, serial]],
          'reply',
        ];
      case 3: // a stop without a start, and calls naming no oid
        return [stop, ['receiveBlobChunk', ['x', 1, 2]], 'reply'];
      case 4: // the server goes away mid-transfer
        return [start, chunk, 'cut'];
      default: // a proper transfer
        return [
          start,
          chunk,
          ['receiveBlobChunk', [oid, serial, Buffer.from(' and the rest')]],
          stop,
          'reply',
        ];
    }
  });
  const work = await mkdtemp(join(tmpdir(), 'zeo-ts-blobs-'));
  try {
    const blobs = cache(work, 'c');
    const client = await Client.open(srv.address, blobs);
    const serial = p64(0x1234);
    const noFiles = async (oid: Oid): Promise<void> => {
      const dir = blobs.blobDirectoryOf(oid);
      const names = existsSync(dir) ? await readdir(dir) : [];
      assert.deepEqual(
        names.filter((n) => n !== '.lock'),
        [],
        `nothing left in ${dir}`,
      );
    };
    await assert.rejects(blobs.loadBlob(client.conn, p64(1), serial), /receiveBlobChunk without bytes/);
    await noFiles(p64(1));
    await assert.rejects(blobs.loadBlob(client.conn, p64(2), serial), POSKeyError);
    await noFiles(p64(2));
    await noFiles(other);
    await assert.rejects(
      blobs.loadBlob(client.conn, p64(3), serial),
      /receiveBlobStop before receiveBlobStart/,
    );
    await noFiles(p64(3));
    // the connection still works
    assert.equal(
      (await readFile(await blobs.loadBlob(client.conn, p64(5), serial))).toString(),
      'part and the rest',
    );
    await assert.rejects(blobs.loadBlob(client.conn, p64(4), serial), ClientDisconnected);
    await noFiles(p64(4));
    await client.close();
  } finally {
    await srv.close();
    await rm(work, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------------------
// through ClientStorage

test(
  'ClientStorage with blobCacheSize: loads of many blobs leave the cache within its bound',
  { timeout: 60_000 },
  async () => {
    await withServer(startOurs(false), async (server, work) => {
      const bound = 1_000_000;
      const open = (name: string, size: number | null): Promise<ClientStorage> =>
        ClientStorage.open({
          server: server.address,
          blobDir: join(work, name),
          blobCacheSize: size,
          blobCacheSizeCheck: 20,
          waitTimeout: 20_000,
        });
      const writer = await open('writer', null);
      const reader = await open('reader', bound);
      try {
        const t = new TransactionMetaData();
        await writer.tpcBegin(t);
        const oids: Oid[] = [];
        const contents: Buffer[] = [];
        for (let i = 0; i < 15; i++) {
          oids.push(await writer.newOid());
          contents.push(randomBytes(150_000));
          const file = join(writer.temporaryDirectory(), `f${i}`);
          await writeFile(file, contents[i]);
          await writer.storeBlob(oids[i], z64, BLOB_RECORD, file, t);
        }
        await writer.tpcVote(t);
        const tid = await writer.tpcFinish(t);
        for (let i = 0; i < oids.length; i++) {
          assert.equal(sha(await readFile(await reader.loadBlob(oids[i], tid))), sha(contents[i]));
        }
        await reader.close(); // waits for the size check under way
        const probe = new ClientBlobs({
          blobDir: join(work, 'reader'),
          sharedBlobDir: false,
          blobCacheSize: null,
          blobCacheSizeCheck: 10,
        });
        const left = await probe.cacheBytes();
        // each check brings it to 80% of the bound; a check's worth (20%) and the blob being fetched come after
        assert.ok(left <= bound + 150_000, `${left} bytes left in a cache bounded at ${bound}`);
        assert.ok(left < (15 * 150_000) / 2, 'blobs were evicted');
      } finally {
        await writer.close();
        await reader.close();
      }
    });
  },
);

test(
  'an upload cut off by a lost connection fails with ClientDisconnected and leaves no file behind',
  { timeout: 60_000 },
  async () => {
    await withServer(startOurs(false), async (server, work) => {
      const r = await relay(server.address as { host: string; port: number });
      try {
        const a = await Client.open(r.address, cache(work, 'a'));
        const [oid] = await a.newOids(1);
        const file = join(a.blobs.temporaryDirectory(), 'big');
        await writeFile(file, randomBytes(8 * MB));
        const c = a.conn;
        c.callAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
        c.callAsync('storea', [oid, z64, BLOB_RECORD, 1]);
        r.hold();
        const storing = a.blobs.storeBlob(c, oid, z64, BLOB_RECORD, file, 1);
        await new Promise((resolve) => setTimeout(resolve, 200));
        await r.close(); // the connection goes while the upload waits for the server
        await assert.rejects(storing, ClientDisconnected);
        const names = await readdir(a.blobs.blobDirectoryOf(oid));
        assert.deepEqual(
          names.filter((n) => n !== '.lock'),
          [],
          'the taken-over file is gone',
        );
        await a.blobs.close();
      } finally {
        await r.close();
      }
    });
  },
);

test(
  'ClientStorage: a load while the server restarts waits for the new connection and gets the blob over it',
  { timeout: 60_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-blobs-restart-'));
    let server = await startServer({ dir });
    const port = (server.address as { port: number }).port;
    const s = await ClientStorage.open({
      server: server.address,
      blobDir: join(dir, 'client-cache'),
      waitTimeout: 30_000,
      minDisconnectPoll: 50,
      maxDisconnectPoll: 200,
    });
    try {
      const t = new TransactionMetaData();
      await s.tpcBegin(t);
      const oid = await s.newOid();
      const content = randomBytes(MB + 3);
      const file = join(s.temporaryDirectory(), 'f');
      await writeFile(file, content);
      await s.storeBlob(oid, z64, BLOB_RECORD, file, t);
      await s.tpcVote(t);
      const tid = await s.tpcFinish(t);
      await rm(s.blobDirectoryOf(oid), { recursive: true }); // not cached: the load must ask the server
      await server.stop();
      const loading = s.loadBlob(oid, tid);
      await new Promise((r) => setTimeout(r, 300));
      server = await startServer({ dir, port });
      assert.equal(sha(await readFile(await loading)), sha(content));
    } finally {
      await s.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
