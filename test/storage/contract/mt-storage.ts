// ZODB/tests/MTStorage.py: several clients using one storage at once. In Node the "threads" are concurrent async
// clients that yield at every step, so their calls interleave; the commit lock must serialize the commits.
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { ConflictError } from '../../../src/storage/errors.js';
import type { Oid, Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import { tupleFrom, type PickleValue } from '../../../src/pickle/index.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  Db,
  hex,
  mappingOf,
  mappingRecord,
  minpo,
  minpoValue,
  readAll,
  ref,
  refOid,
  z64,
} from './helpers.js';

/** A few ticks of the event loop: the async "thread" lets the others run (SHORT_DELAY). */
async function pause(): Promise<void> {
  const n = Math.floor(Math.random() * 3);
  for (let i = 0; i < n; i++) await tick();
}

/** StorageClientThread: `commits` new objects, each in its own transaction, then checks them. */
async function storageClient(
  s: Storage,
  name: string,
  commits: number,
  ops?: Array<(oids: Map<string, [Oid, Tid]>) => Promise<void>>,
) {
  const oids = new Map<string, [Oid, Tid]>();
  const dostore = async (i: number) => {
    const data = minpo(tupleFrom<PickleValue>([name, i]));
    const t = new TransactionMetaData();
    const oid = await s.newOid();
    await pause();
    await s.tpcBegin(t);
    await pause();
    await s.store(oid, z64, data, t);
    await pause();
    await s.tpcVote(t);
    await pause();
    const revid = await s.tpcFinish(t);
    await pause();
    oids.set(hex(oid), [oid, revid]);
  };
  await dostore(0);
  for (let i = 1; i < commits; i++) {
    if (ops?.length) await ops[Math.floor(Math.random() * ops.length)](oids);
    await dostore(i);
  }
  for (const [oid, revid] of oids.values()) {
    const { data, serial } = await s.load(oid);
    assert.equal(hex(serial), hex(revid));
    const value = minpoValue(data);
    assert.ok(Array.isArray(value) && value[0] === name);
  }
  return oids;
}

/**
 * ZODBClientThread: puts its own mapping under the root (retrying on the conflicts that all clients writing the
 * root cause), then commits `commits` keys into it.
 */
async function zodbClient(s: Storage, name: string, commits: number) {
  const db = new Db(s);
  const mine = await s.newOid();
  for (let attempt = 0; ; attempt++) {
    assert.ok(attempt < 1000, 'exceeded 1000 attempts to store');
    try {
      const { data, serial } = await s.load(z64);
      db.serials.set(hex(z64), serial);
      const entries = [...mappingOf(data)];
      entries.push([name, ref(mine, 'persistent.mapping', 'PersistentMapping')]);
      await pause();
      await db.commit([
        [z64, mappingRecord(entries)],
        [mine, mappingRecord([])],
      ]);
      break;
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      await pause();
    }
  }
  const d = refOid(mappingOf((await s.load(z64)).data).get(name));
  assert.equal(hex(d), hex(mine));
  const keys: Array<[PickleValue, PickleValue]> = [];
  for (let i = 0; i < commits; i++) {
    keys.push([i, Date.now() / 1000]);
    await pause();
    await db.commit([[mine, mappingRecord(keys)]]);
    await pause();
  }
  assert.deepEqual(
    [...mappingOf((await s.load(mine)).data).keys()].sort((a, b) => Number(a) - Number(b)),
    Array.from({ length: commits }, (_, i) => i),
  );
}

export function mtStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: MTStorage`, false, () => {
    const nZodbThreads =
      (n: number) =>
      async ({ storage: s }: { storage: Storage }) => {
        await Db.open(s);
        await Promise.all(Array.from({ length: n }, (_, i) => zodbClient(s, `T${i}`, 10)));
        assert.equal(mappingOf((await s.load(z64)).data).size, n, 'every client got its mapping in');
      };
    const nStorageThreads =
      (n: number) =>
      async ({ storage: s }: { storage: Storage }) => {
        const results = await Promise.all(Array.from({ length: n }, (_, i) => storageClient(s, `T${i}`, 10)));
        const tids = results.flatMap((m) => [...m.values()].map(([, t]) => hex(t)));
        assert.equal(new Set(tids).size, n * 10, 'every commit got its own tid');
        assert.equal(s.len(), n * 10);
      };

    storageTest(factory, 'check2ZODBThreads', nZodbThreads(2));
    storageTest(factory, 'check7ZODBThreads', nZodbThreads(7));
    storageTest(factory, 'check2StorageThreads', nStorageThreads(2));
    storageTest(factory, 'check7StorageThreads', nStorageThreads(7));

    storageTest(factory, 'check4ExtStorageThread', async ({ storage: s }) => {
      const pick = (oids: Map<string, [Oid, Tid]>) =>
        [...oids.values()][Math.floor(Math.random() * oids.size)];
      const ops: Array<(oids: Map<string, [Oid, Tid]>) => Promise<void>> = [
        async (oids) => void (await s.load(pick(oids)[0])),
      ];
      if (factory.supportsUndo) {
        ops.push(
          async (oids) => {
            const [oid, revid] = pick(oids);
            await s.loadSerial(oid, revid);
          },
          async () => void (await s.undoLog(0, -20)),
        );
      }
      if (factory.supportsIterator) ops.push(async () => void (await readAll(s)));
      await Promise.all([0, 1, 2, 3].map((i) => storageClient(s, `T${i}`, 10, ops)));
      assert.equal(s.len(), 40);
    });
  });
}
