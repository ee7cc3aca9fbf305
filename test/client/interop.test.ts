// Issue 10's interop acceptance for the Node ClientStorage, against both servers (zeo serve and Python's runzeo,
// each a child process over a FileStorage) in both encodings (pickle Z5, msgpack M5):
// - invalidations cross between a Python client and a Node client, both ways;
// - a randomized race in the spirit of ZODB's racetest (ZODB/tests/racetest.py: T2ObjectsInc,
//   check_race_load_vs_external_invalidate): Python clients commit obj1 += 1, obj2 += 1 together while Node
//   clients load through their cache; a Node client never returns stale data: a snapshot's two objects are
//   equal, a current load is never older than the last transaction the client knew before it, and once the
//   committers stop, the client's view is theirs. Seeded (ZEO_TS_SEED replays a run) and a few seconds long.
import assert from 'node:assert/strict';
import { execFile, type ExecFileException } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe } from 'node:test';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { ClientStorage } from '../../src/client/client-storage.js';
import type { Invalidation } from '../../src/client/invalidations.js';
import { decodeRecord, Global, Pickler, type PickleValue } from '../../src/pickle/index.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { compareIds, idFromHex, idHex, p64, u64, type Oid, type Tid } from '../../src/storage/ids.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopDisabled, interopTest, oraclePython, repoRoot } from '../helpers/oracle.js';
import { mulberry32 } from '../helpers/prng.js';
import { freePort, ServerProcess, stopLeftovers, type ServerKind } from '../helpers/server-process.js';
import { waitUntil } from '../helpers/wait.js';

const RACE_SCRIPT = resolve(repoRoot, 'test/fixtures/python/zeots_race.py');
/** how long the Python committers run in each race */
const RACE_SECONDS = 2.5;
const SEED = Number(process.env.ZEO_TS_SEED ?? 0) || 20261206;

after(() => stopLeftovers());

function python(args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolveRun, reject) => {
    execFile(
      oraclePython(),
      args,
      { timeout: timeoutMs, env: { ...process.env, PYTHONPATH: fixturesDir } },
      (err: ExecFileException | null, stdout: string, stderr: string) => {
        if (err) reject(new Error(`${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolveRun(stdout.trim());
      },
    );
  });
}

/** The Counter's value in a zeots_race.Counter record. */
function counterValue(data: Uint8Array): number {
  const { classMeta, state } = decodeRecord(data);
  assert.equal(`${classMeta.module}.${classMeta.name}`, 'zeots_race.Counter');
  return (state as Map<PickleValue, PickleValue>).get('value') as number;
}

/** A zeots_race.Counter record with `value`, as ZODB writes it (protocol 3, one memo). */
function counterRecord(value: number): Uint8Array {
  return new Pickler(3).dumpsMany([Global.of('zeots_race', 'Counter'), new Map([['value', value]])]);
}

function openClient(port: number): Promise<ClientStorage> {
  return ClientStorage.open({
    server: { host: '127.0.0.1', port },
    cacheSize: 1 << 20,
    waitTimeout: 10_000,
  });
}

/** What a Node reader checked, and what it found wrong. */
interface ReaderStats {
  snapshots: number;
  currentLoads: number;
  prefetches: number;
  problems: string[];
}

/**
 * Loads obj1 and obj2 until `until`, as an application would between commits of others: a snapshot at the last
 * transaction it knows (loadBefore both, sometimes prefetched first) must show them equal, each revision current
 * at that snapshot; a current load must be no older than that last transaction (every transaction writes both).
 */
async function reader(
  cs: ClientStorage,
  oids: [Oid, Oid],
  rng: () => number,
  until: number,
  stats: ReaderStats,
): Promise<void> {
  while (Date.now() < until && stats.problems.length < 10) {
    const head = cs.lastTransaction();
    const r = rng();
    if (r < 0.55) {
      const before = p64(u64(head) + 1n);
      if (r < 0.1) {
        await cs.prefetch([...oids], before);
        stats.prefetches++;
      }
      const [a, b] = await Promise.all(oids.map((o) => cs.loadBefore(o, before)));
      stats.snapshots++;
      if (!a || !b) {
        stats.problems.push(`snapshot at ${idHex(head)}: an object missing`);
        continue;
      }
      const [va, vb] = [counterValue(a.data), counterValue(b.data)];
      if (va !== vb) stats.problems.push(`snapshot at ${idHex(head)}: obj1 ${va} != obj2 ${vb}`);
      for (const x of [a, b]) {
        if (compareIds(x.start, head) > 0 || (x.end && compareIds(x.end, head) <= 0)) {
          stats.problems.push(
            `snapshot at ${idHex(head)}: revision ${idHex(x.start)}..${x.end ? idHex(x.end) : 'current'}`,
          );
        }
      }
    } else {
      const oid = oids[r < 0.8 ? 0 : 1];
      const { data, serial } = await cs.load(oid);
      stats.currentLoads++;
      if (compareIds(serial, head) < 0) {
        stats.problems.push(
          `stale load of ${idHex(oid)}: serial ${idHex(serial)} older than the last transaction ${idHex(head)} (value ${counterValue(data)})`,
        );
      }
    }
    const pause = rng();
    if (pause < 0.15) await sleep(Math.floor(pause * 20));
    else if (pause < 0.6) await immediate();
  }
}

const SERVERS: Array<{ kind: ServerKind; msgpack: boolean }> = [
  { kind: 'zeo-ts', msgpack: false },
  { kind: 'zeo-ts', msgpack: true },
  { kind: 'runzeo', msgpack: false },
  { kind: 'runzeo', msgpack: true },
];

for (const { kind, msgpack } of SERVERS) {
  const label = `${kind === 'runzeo' ? 'runzeo' : 'zeo serve'} (${msgpack ? 'msgpack' : 'pickle'})`;
  describe(
    `Python and Node clients of ${label}`,
    { skip: interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false },
    () => {
      let dir = '';
      let server: ServerProcess;
      let port = 0;
      let spec = '';
      let oids: [Oid, Oid];

      before(async () => {
        dir = mkdtempSync(join(tmpdir(), 'zeo-ts-interop-'));
        const conf = join(dir, 'zeo.conf');
        writeFileSync(
          conf,
          `<zeo>\n  address 127.0.0.1:${await freePort()}\n  msgpack ${msgpack}\n</zeo>\n` +
            `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
        );
        server = new ServerProcess({ kind, conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
        port = await server.port(60_000);
        spec = `127.0.0.1:${port}`;
        const made = JSON.parse(await python([RACE_SCRIPT, 'setup', spec])) as { obj1: string; obj2: string };
        oids = [idFromHex(made.obj1), idFromHex(made.obj2)];
      });
      after(async () => {
        await server?.stop();
        rmSync(dir, { recursive: true, force: true });
      });

      interopTest('a Python commit invalidates what the Node client cached', async (oracle) => {
        const cs = await openClient(port);
        try {
          const seen: Invalidation[] = [];
          cs.on('invalidations', (inv: Invalidation) => seen.push(inv));
          const cached = await cs.load(oids[0]);
          await cs.load(oids[0]); // now from the cache
          const { tid } = await oracle.json<{ tid: string }>(
            `
import sys
sys.path.insert(0, args['fixtures'])
import ZEO
db = ZEO.DB(('127.0.0.1', args['port']), wait_timeout=10)
with db.transaction() as conn:
    conn.root()['obj1'].value = 1000
    conn.root()['obj2'].value = 1000
result = {'tid': db.storage.lastTransaction().hex()}
db.close()
`,
            undefined,
            { port, fixtures: fixturesDir },
          );
          await waitUntil(
            () => seen.some((i) => idHex(i.tid) === tid),
            () => `the invalidation of ${tid} (seen: ${seen.map((i) => idHex(i.tid)).join(', ')})`,
          );
          const inv = seen.find((i) => idHex(i.tid) === tid)!;
          assert.deepEqual(inv.oids.map(idHex).sort(), oids.map(idHex).sort());
          assert.equal(idHex(cs.lastTransaction()), tid);
          const now = await cs.load(oids[0]);
          assert.equal(idHex(now.serial), tid);
          assert.equal(counterValue(now.data), 1000);
          // the old revision stays readable before the new one
          const old = await cs.loadBefore(oids[0], idFromHex(tid));
          assert.equal(idHex(old!.start), idHex(cached.serial));
          assert.equal(idHex(old!.end!), tid);
        } finally {
          await cs.close();
        }
      });

      interopTest('a Node commit invalidates what a Python client cached', async (oracle) => {
        // a Python client that has read obj1 (its ClientStorage cache and its Connection hold it)
        const PY_STATE = `
import sys, types
sys.path.insert(0, args['fixtures'])
state = sys.modules.setdefault('zeots_interop_state', types.ModuleType('zeots_interop_state'))
`;
        const before = await oracle.json<{ value: number; last: string }>(
          `${PY_STATE}
import ZEO, transaction
state.db = ZEO.DB(('127.0.0.1', args['port']), wait_timeout=10)
state.tm = transaction.TransactionManager()
state.conn = state.db.open(state.tm)
state.tm.begin()
result = {'value': state.conn.root()['obj1'].value, 'last': state.db.storage.lastTransaction().hex()}
`,
          undefined,
          { port, fixtures: fixturesDir },
        );
        const cs = await openClient(port);
        let tid: Tid;
        const value = before.value + 7;
        try {
          const txn = new TransactionMetaData();
          await cs.tpcBegin(txn);
          for (const oid of oids) await cs.store(oid, (await cs.load(oid)).serial, counterRecord(value), txn);
          await cs.tpcVote(txn);
          tid = await cs.tpcFinish(txn);
          assert.ok(compareIds(tid, idFromHex(before.last)) > 0);
        } finally {
          await cs.close();
        }
        const after = await oracle.json<{ value: number; data: string; serial: string; last: string }>(
          `${PY_STATE}
import time
from ZODB.utils import p64, u64
want = bytes.fromhex(args['tid'])
deadline = time.time() + 10
while state.db.storage.lastTransaction() < want and time.time() < deadline:
    time.sleep(0.001)
state.tm.begin()
obj = state.conn.root()['obj1']
data, serial = state.db.storage.load(obj._p_oid)
result = {'value': obj.value, 'data': data.hex(), 'serial': serial.hex(),
          'last': state.db.storage.lastTransaction().hex()}
state.conn.close()
state.db.close()
`,
          undefined,
          { tid: idHex(tid), fixtures: fixturesDir },
        );
        assert.equal(after.last, idHex(tid), 'the Python client heard of the Node commit');
        assert.equal(after.value, value, "its Connection sees the Node client's state");
        assert.equal(after.serial, idHex(tid));
        assert.equal(
          after.data,
          Buffer.from(counterRecord(value)).toString('hex'),
          'the record as Node wrote it',
        );
      });

      interopTest(
        `loads racing Python commits never return stale data (seed ${SEED})`,
        async (_oracle, t) => {
          const rng = mulberry32(SEED ^ (kind === 'runzeo' ? 0x5a5a : 0) ^ (msgpack ? 0xa5 : 0));
          const clients = [await openClient(port), await openClient(port)];
          try {
            const until = Date.now() + RACE_SECONDS * 1000;
            const committers = [1, 2].map((i) =>
              python([RACE_SCRIPT, 'commit', spec, String(RACE_SECONDS), String((SEED + i) >>> 0)]),
            );
            const stats: ReaderStats = { snapshots: 0, currentLoads: 0, prefetches: 0, problems: [] };
            const readers = clients.flatMap((cs) =>
              [0, 1].map(() => reader(cs, oids, mulberry32(rng() * 2 ** 32), until, stats)),
            );
            const [results] = await Promise.all([Promise.all(committers), Promise.all(readers)]);
            const done = results.map(
              (r) => JSON.parse(r) as { commits: number; conflicts: number; last: string },
            );
            const commits = done.reduce((n, r) => n + r.commits, 0);
            const last = done
              .map((r) => r.last)
              .sort()
              .at(-1)!;
            t.diagnostic(
              `${label}: ${commits} Python commits (${done.reduce((n, r) => n + r.conflicts, 0)} conflicts), ` +
                `${stats.snapshots} snapshots, ${stats.currentLoads} current loads, ${stats.prefetches} prefetches; ` +
                `cache hits ${clients.map((c) => c.cacheStats().hits).join('/')}`,
            );
            assert.deepEqual(stats.problems, [], `stale data (seed ${SEED})`);
            assert.ok(commits > 10, `the committers committed (${commits})`);
            assert.ok(stats.snapshots > 20 && stats.currentLoads > 20, 'the readers read');
            assert.ok(
              clients.every((c) => c.cacheStats().hits > 0),
              'loads went through the cache',
            );
            // once the committers stop, each client's view is theirs: the last transaction and the values
            for (const cs of clients) {
              await waitUntil(
                () => idHex(cs.lastTransaction()) >= last,
                () => `the client's last transaction ${idHex(cs.lastTransaction())} reaching ${last}`,
              );
              const [a, b] = await Promise.all(oids.map((o) => cs.load(o)));
              assert.equal(idHex(a.serial), last);
              assert.equal(counterValue(a.data), counterValue(b.data));
            }
            const [first] = await Promise.all(oids.map((o) => clients[0].load(o)));
            const fresh = await openClient(port);
            try {
              assert.equal(counterValue((await fresh.load(oids[0])).data), counterValue(first.data));
            } finally {
              await fresh.close();
            }
          } finally {
            for (const cs of clients) await cs.close();
          }
        },
        { timeout: 120_000 },
      );
    },
  );
}
