// ZODB/tests/PackableStorage.py (PackableStorage, PackableStorageWithOptionalGC, PackableUndoStorage) and
// IExternalGC.test: pack(t) keeps, of the objects reachable from the root at t, the newest revision at or before
// t, and everything after t; readers and writers go on during a pack.
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import {
  Global,
  PersistentRef,
  referencesf,
  tupleFrom,
  type PickleValue,
} from '../../../src/pickle/index.js';
import { ConflictError, POSKeyError, StorageError } from '../../../src/storage/errors.js';
import { idEquals, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import {
  assertBytes,
  assertId,
  Db,
  dostore,
  hex,
  mappingRecord,
  objectRecord,
  packTimeNow,
  readAll,
  ref,
  refOid,
  snooze,
  stateOf,
  undoIds,
  z64,
} from './helpers.js';

const MODULE = 'ZODB.tests.PackableStorage';

/** PackableStorage's Root: a plain object whose references are bare oids (its Objects' getoid()). */
function rootRecord(refs: Record<string, Oid>, value: number): Uint8Array {
  const state = new Map<PickleValue, PickleValue>(
    Object.entries(refs).map(([k, oid]) => [k, new PersistentRef(oid)]),
  );
  state.set('value', value);
  return objectRecord(MODULE, 'Root', state);
}

/** An Object revision pickled without persistent ids (pdumps): its state, no references. */
function objectRev(oid: Oid, value: number): Uint8Array {
  return objectRecord(
    MODULE,
    'Object',
    new Map<PickleValue, PickleValue>([
      ['_oid', oid],
      ['value', value],
    ]),
  );
}

function valueOf(data: Uint8Array): PickleValue {
  return stateOf(data).get('value') ?? null;
}

/** _initroot: an empty PersistentMapping root, unless there is one. */
async function initRoot(s: Storage): Promise<void> {
  try {
    await s.load(z64);
  } catch (e) {
    if (!(e instanceof POSKeyError)) throw e;
    await dostore(s, { oid: z64, data: mappingRecord([]), description: 'initial database creation' });
  }
}

const C = (value?: number) =>
  objectRecord(MODULE, 'C', new Map(value === undefined ? [] : [['value', value]]));
const minpoRef = (oid: Oid) => ref(oid, 'ZODB.tests.MinPO', 'MinPO');
const minpoObj = (value: PickleValue) =>
  objectRecord('ZODB.tests.MinPO', 'MinPO', new Map([['value', value]]));

/**
 * A ZODB client of _PackWhileWriting: `trips` times, points a random root[i] to a new MinPO (the old one becomes
 * garbage), retrying nothing on ConflictError but syncing its view.
 */
async function clientThread(s: Storage, holders: Oid[], trips: number, outcomes: string[]): Promise<void> {
  const db = new Db(s);
  for (const oid of holders) db.serials.set(hex(oid), (await s.load(oid)).serial);
  for (let j = 0; j < trips; j++) {
    const holder = holders[Math.floor(Math.random() * holders.length)];
    const fresh = await s.newOid();
    try {
      await db.commit([
        [holder, minpoObj(minpoRef(fresh))],
        [fresh, minpoObj(j)],
      ]);
      outcomes.push('OK');
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      outcomes.push('Conflict');
      await db.sync();
    }
    await tick();
  }
}

/**
 * `root[i].value = MinPO(i)`, ten rounds over the holders: each round leaves the previous MinPOs as garbage, and
 * every holder refers to one MinPO before the clients start, so how many objects stay reachable does not depend on
 * which holders the clients happen to pick.
 */
async function repointHolders(s: Storage, db: Db, holders: Oid[]): Promise<void> {
  for (let k = 0; k < 10; k++) {
    for (let i = 0; i < holders.length; i++) {
      const fresh = await s.newOid();
      await db.commit([
        [holders[i], minpoObj(minpoRef(fresh))],
        [fresh, minpoObj(i)],
      ]);
    }
  }
}

/** Every object reachable from the root loads (a pack must never leave a dangling reference). */
async function checkReachableLoad(s: Storage): Promise<number> {
  const seen = new Set<string>();
  const todo: Oid[] = [z64];
  while (todo.length) {
    const oid = todo.pop()!;
    if (seen.has(hex(oid))) continue;
    seen.add(hex(oid));
    const { data } = await s.load(oid);
    for (const r of referencesf(data)) todo.push(r);
  }
  return seen.size;
}

export function packableStorageTests(name: string, factory: StorageFactory): void {
  const noPack = !factory.supportsPack && 'no pack';
  const noUndo = noPack || (!factory.supportsUndo && 'no undo');

  const sanityCheck = async (s: Storage) => {
    if (factory.supportsIterator) await readAll(s);
  };

  /** _PackWhileWriting: 10 holders under the root, 100 revisions, then 3 clients writing during the pack. */
  const packWhileWriting =
    (packNow: boolean) =>
    async ({ storage: s }: { storage: Storage }) => {
      const db = await Db.open(s);
      const holders: Oid[] = [];
      for (let i = 0; i < 10; i++) holders.push(await s.newOid());
      await db.commit([
        [z64, mappingRecord(holders.map((oid, i) => [i, minpoRef(oid)]))],
        ...holders.map((oid, i): [Oid, Uint8Array] => [oid, minpoObj(i)]),
      ]);
      const packt = await packTimeNow();
      await repointHolders(s, db, holders);
      const outcomes: string[] = [];
      const clients = [0, 1, 2].map(() => clientThread(s, holders, 50, outcomes));
      await s.pack(packNow ? Date.now() / 1000 : packt, referencesf);
      await Promise.all(clients);
      assert.equal(outcomes.length, 150);
      assert.ok(outcomes.includes('OK'));
      await sanityCheck(s);
      // root, 10 holders, and the MinPO each refers to now
      assert.equal(await checkReachableLoad(s), 21);
    };

  storageSuite(`${name}: PackableStorage`, noPack, () => {
    storageTest(factory, 'checkPackEmptyStorage', async ({ storage: s }) => {
      await s.pack(Date.now() / 1000, referencesf);
      assert.equal(s.len(), 0);
    });

    storageTest(factory, 'checkPackTomorrow', async ({ storage: s }) => {
      await initRoot(s);
      const { serial } = await s.load(z64);
      await s.pack(Date.now() / 1000 + 10000, referencesf);
      assertId((await s.load(z64)).serial, serial);
      // a pack time in the future packs everything committed so far; new commits still work
      await dostore(s, { oid: z64, revid: serial, data: mappingRecord([]) });
      assert.equal((await s.history(z64, 10)).length, 2);
    });

    storageTest(factory, 'checkPackYesterday', async ({ storage: s }) => {
      await initRoot(s);
      const { serial } = await s.load(z64);
      await s.pack(Date.now() / 1000 - 10000, referencesf);
      // before the root existed: nothing to pack
      assertId((await s.load(z64)).serial, serial);
      assert.equal((await s.history(z64, 10)).length, 1);
    });

    storageTest(factory, 'checkPackWhileWriting', packWhileWriting(false));
    storageTest(factory, 'checkPackNowWhileWriting', packWhileWriting(true));

    storageTest(factory, 'checkPackLotsWhileWriting', async ({ storage: s }) => {
      const db = await Db.open(s);
      const holders: Oid[] = [];
      for (let i = 0; i < 10; i++) holders.push(await s.newOid());
      await db.commit([
        [z64, mappingRecord(holders.map((oid, i) => [i, minpoRef(oid)]))],
        ...holders.map((oid, i): [Oid, Uint8Array] => [oid, minpoObj(i)]),
      ]);
      let packt = await packTimeNow();
      await repointHolders(s, db, holders);
      const outcomes: string[] = [];
      let done = false;
      const client = clientThread(s, holders, 100, outcomes).finally(() => {
        done = true;
      });
      let packs = 0;
      while (!done) {
        await s.pack(packt, referencesf);
        packs++;
        await snooze();
        packt = Date.now() / 1000;
      }
      await client;
      assert.ok(packs >= 1);
      await sanityCheck(s);
      assert.equal(await checkReachableLoad(s), 21);
    });

    storageTest(factory, 'checkPackWithMultiDatabaseReferences', async ({ storage: s }) => {
      const db = await Db.open(s);
      const c = await s.newOid();
      await db.commit([
        [z64, mappingRecord([[1, ref(c, MODULE, 'C')]])],
        [c, C()],
      ]);
      await db.commit([[z64, mappingRecord([])]]);
      // a reference into another database ('o') is not followed (referencesf skips it)
      const crossDb = new PersistentRef([
        'm',
        tupleFrom<PickleValue>(['o', z64, Global.of('persistent.mapping', 'PersistentMapping')]),
      ]);
      await db.commit([[z64, mappingRecord([[2, crossDb]])]]);
      await s.pack(Date.now() / 1000 + 1, referencesf);
      assert.ok([0, 1].includes(s.len()), `len() is ${s.len()}`);
      await assert.rejects(s.load(c), POSKeyError, 'the unlinked object is gone');
      assert.ok((await db.root()).get(2) instanceof PersistentRef);
    });

    storageTest(factory, 'checkPackAllRevisions', async ({ storage: s }) => {
      await initRoot(s);
      const oid = await s.newOid();
      const revid1 = await dostore(s, { oid, data: objectRev(oid, 1) });
      const revid2 = await dostore(s, { oid, revid: revid1, data: objectRev(oid, 2) });
      const revid3 = await dostore(s, { oid, revid: revid2, data: objectRev(oid, 3) });
      assert.equal(valueOf(await s.loadSerial(oid, revid1)), 1);
      assert.equal(valueOf(await s.loadSerial(oid, revid2)), 2);
      assert.equal(valueOf(await s.loadSerial(oid, revid3)), 3);
      await s.pack(await packTimeNow(), referencesf);
      // nothing refers to the object from the root: every revision goes
      for (const r of [revid1, revid2, revid3]) await assert.rejects(s.loadSerial(oid, r), POSKeyError);
      await assert.rejects(s.load(oid), POSKeyError);
    });

    storageTest(factory, 'checkPackJustOldRevisions', async ({ storage: s }) => {
      const oid = await s.newOid();
      const revid0 = await dostore(s, { oid: z64, data: rootRecord({ obj: oid }, 0) });
      let [data, revid] = [(await s.load(z64)).data, (await s.load(z64)).serial];
      assertId(revid, revid0);
      assert.equal(valueOf(data), 0);
      const revid1 = await dostore(s, { oid, data: objectRev(oid, 1) });
      const revid2 = await dostore(s, { oid, revid: revid1, data: objectRev(oid, 2) });
      const revid3 = await dostore(s, { oid, revid: revid2, data: objectRev(oid, 3) });
      await s.pack(await packTimeNow(), referencesf);
      ({ data, serial: revid } = await s.load(z64));
      assertId(revid, revid0);
      assert.equal(valueOf(data), 0);
      await assert.rejects(s.loadSerial(oid, revid1), POSKeyError);
      await assert.rejects(s.loadSerial(oid, revid2), POSKeyError);
      assert.equal(valueOf(await s.loadSerial(oid, revid3)), 3);
      ({ data, serial: revid } = await s.load(oid));
      assertId(revid, revid3);
      assert.equal(valueOf(data), 3);
      assert.deepEqual(
        (await s.history(oid, 10)).map((h) => hex(h.tid)),
        [hex(revid3)],
      );
    });

    storageTest(factory, 'checkPackOnlyOneObject', async ({ storage: s }) => {
      const oid1 = await s.newOid();
      const oid2 = await s.newOid();
      const revid0 = await dostore(s, { oid: z64, data: rootRecord({ obj1: oid1, obj2: oid2 }, 0) });
      const revid1 = await dostore(s, { oid: oid1, data: objectRev(oid1, 1) });
      const revid2 = await dostore(s, { oid: oid1, revid: revid1, data: objectRev(oid1, 2) });
      const revid3 = await dostore(s, { oid: oid1, revid: revid2, data: objectRev(oid1, 3) });
      const revid4 = await dostore(s, { oid: oid2, data: objectRev(oid2, 11) });
      assert.equal(valueOf(await s.loadSerial(oid2, revid4)), 11);
      await s.pack(await packTimeNow(), referencesf);
      let r = await s.load(z64);
      assertId(r.serial, revid0);
      assert.equal(valueOf(r.data), 0);
      await assert.rejects(s.loadSerial(oid1, revid1), POSKeyError);
      await assert.rejects(s.loadSerial(oid1, revid2), POSKeyError);
      assert.equal(valueOf(await s.loadSerial(oid1, revid3)), 3);
      r = await s.load(oid1);
      assertId(r.serial, revid3);
      assert.equal(valueOf(r.data), 3);
      r = await s.load(oid2);
      assertId(r.serial, revid4);
      assert.equal(valueOf(r.data), 11);
      assert.equal(valueOf(await s.loadSerial(oid2, revid4)), 11);
    });

    storageTest(
      factory,
      'checkPackKeepsRevisionsAfterThePackTime (not a ZODB method)',
      async ({ storage: s }) => {
        // unreachable at the pack time, but written after it: kept whole, as FileStorage keeps every later record
        await initRoot(s);
        const early = await s.newOid();
        const e1 = await dostore(s, { oid: early, data: objectRev(early, 1) });
        const packtime = await packTimeNow();
        const e2 = await dostore(s, { oid: early, revid: e1, data: objectRev(early, 2) });
        const late = await s.newOid();
        const l1 = await dostore(s, { oid: late, data: objectRev(late, 1) });
        await s.pack(packtime, referencesf);
        if (factory.packRemovesHistoryOfObjectsChangedLater ?? true) {
          await assert.rejects(s.loadSerial(early, e1), POSKeyError, 'unreachable at the pack time');
        } else {
          // (RelStorage's pack keeps the revision current at the pack time of every object changed after it)
          assert.equal(valueOf(await s.loadSerial(early, e1)), 1);
        }
        assert.equal(valueOf(await s.loadSerial(early, e2)), 2);
        assert.equal(valueOf((await s.load(late)).data), 1);
        assertId((await s.load(late)).serial, l1);
        const before = await s.loadBefore(early, e2);
        if (factory.packRemovesHistoryOfObjectsChangedLater ?? true) {
          // the revision before e2 is gone: loadBefore has nothing to give
          assert.equal(before, null);
        } else {
          assertId(before!.start, e1);
          assert.equal(valueOf(before!.data), 1);
        }
      },
    );

    storageTest(
      factory,
      'checkPackAllRevisionsNoGC',
      async ({ storage: s }) => {
        await initRoot(s);
        const oid = await s.newOid();
        const revid1 = await dostore(s, { oid, data: objectRev(oid, 1) });
        const revid2 = await dostore(s, { oid, revid: revid1, data: objectRev(oid, 2) });
        const revid3 = await dostore(s, { oid, revid: revid2, data: objectRev(oid, 3) });
        await s.pack(await packTimeNow(), referencesf, { gc: false });
        // only old revisions go: no garbage collection
        await assert.rejects(s.loadSerial(oid, revid1), POSKeyError);
        await assert.rejects(s.loadSerial(oid, revid2), POSKeyError);
        assert.equal(valueOf(await s.loadSerial(oid, revid3)), 3);
      },
      { skip: !factory.supportsPackWithoutGc && 'no pack without gc' },
    );
  });

  storageSuite(`${name}: PackableUndoStorage`, noUndo, () => {
    storageTest(factory, 'checkPackUnlinkedFromRoot', async ({ storage: s }) => {
      const db = await Db.open(s);
      const packtime = await packTimeNow();
      const obj = await s.newOid();
      await db.commit(
        [
          [z64, mappingRecord([['obj', ref(obj, MODULE, 'C')]])],
          [obj, C(7)],
        ],
        { description: 'root -> o1' },
      );
      await db.commit([[z64, mappingRecord([])]], { description: 'root -x-> o1' });
      await s.pack(packtime, referencesf);
      const [log0] = await s.undoLog(0, -20);
      await db.undo([log0.id], 'undo root -x-> o1');
      await db.sync();
      assert.equal((await db.state(refOid((await db.root()).get('obj')))).get('value'), 7);
    });

    storageTest(factory, 'checkRedundantPack', async ({ storage: s }) => {
      // a pack time before an earlier pack's must not lose data the earlier pack made unreachable by time
      await initRoot(s);
      const db = await Db.open(s);
      const d = await s.newOid();
      await db.commit([
        [z64, mappingRecord([['d', ref(d, 'persistent.mapping', 'PersistentMapping')]])],
        [d, mappingRecord([])],
      ]);
      await snooze();
      const lost = await s.newOid();
      await db.commit([
        [d, mappingRecord([['obj', ref(lost, MODULE, 'C')]])],
        [lost, C(1)],
      ]);
      const packt1 = await packTimeNow();
      const another = await s.newOid();
      await db.commit([
        [
          d,
          mappingRecord([
            ['obj', ref(lost, MODULE, 'C')],
            ['anotherobj', ref(another, MODULE, 'C')],
          ]),
        ],
        [another, C(2)],
      ]);
      const packt2 = await packTimeNow();
      await s.pack(packt2, referencesf);
      try {
        await s.pack(packt1, referencesf);
      } catch (e) {
        assert.ok(e instanceof StorageError, `a StorageError, not ${String(e)}`);
      }
      // reachable: it must still load
      assert.equal(valueOf((await s.load(lost)).data), 1);
      assert.equal(valueOf((await s.load(another)).data), 2);
    });

    storageTest(factory, 'checkPackUndoLog', async ({ storage: s }) => {
      await initRoot(s);
      const oid = await s.newOid();
      const revid1 = await dostore(s, { oid, data: objectRev(oid, 1) });
      const packtime = await packTimeNow();
      await dostore(s, { oid, revid: revid1, data: objectRev(oid, 2) });
      assert.equal((await s.undoLog(0, -20)).length, 3);
      await s.pack(packtime, referencesf);
      // only the newest transaction is after the pack time
      assert.equal((await undoIds(s)).length, 1);
    });
  });

  storageSuite(`${name}: IExternalGC`, !factory.supportsDeleteObject && 'no deleteObject', () => {
    storageTest(factory, 'IExternalGC.test', async ({ storage: s }) => {
      const db = await Db.open(s);
      const oid0 = await s.newOid();
      const oid1 = await s.newOid();
      await db.commit([
        [
          z64,
          mappingRecord([
            [0, ref(oid0, 'persistent.mapping', 'PersistentMapping')],
            [1, ref(oid1, MODULE, 'C')],
          ]),
        ],
        [oid0, mappingRecord([])],
        [oid1, C(1)],
      ]);
      const rootSerial = await db.commit([[z64, mappingRecord([])]]);
      // garbage, but still there; a pack without gc keeps it
      const { data: p0, serial: s0 } = await s.load(oid0);
      const { data: p1, serial: s1 } = await s.load(oid1);
      assert.equal(s.len(), 3);
      // (a storage that always collects garbage when it packs, as a ZEO client's, skips this step)
      if (factory.supportsPackWithoutGc) {
        await s.pack(Date.now() / 1000 + 1, referencesf, { gc: false });
        assert.equal(s.len(), 3);
        assertBytes((await s.load(oid0)).data, p0);
        assertBytes((await s.load(oid1)).data, p1);
      }

      const txn = new TransactionMetaData();
      await s.tpcBegin(txn);
      await s.deleteObject(oid0, s0, txn);
      await s.deleteObject(oid1, s1, txn);
      await s.tpcVote(txn);
      const tid = await s.tpcFinish(txn);
      assertId(tid, s.lastTransaction());
      await assert.rejects(s.load(oid0), POSKeyError);
      await assert.rejects(s.load(oid1), POSKeyError);
      // still there before the deletion
      for (const [oid, p, serial] of [
        [oid0, p0, s0],
        [oid1, p1, s1],
      ] as Array<[Oid, Uint8Array, Tid]>) {
        const r = await s.loadBefore(oid, rootSerial);
        assert.ok(r);
        assertBytes(r.data, p);
        assertId(r.start, serial);
        assertId(r.end, tid);
      }
      // a pack after the deletion removes them for good (without gc: the deletion alone does it)
      // (a storage that does not pack yet skips this step)
      if (factory.supportsPack) {
        await s.pack(Date.now() / 1000 + 1, referencesf, factory.supportsPackWithoutGc ? { gc: false } : {});
        assert.equal(s.len(), 1);
        for (const oid of [oid0, oid1]) {
          await assert.rejects(s.load(oid), POSKeyError);
          await assert.rejects(s.loadBefore(oid, rootSerial), POSKeyError);
        }
      }

      // deleteObject with a serial that is not current: ConflictError
      const oid = await s.newOid();
      const badSerial = await db.commit([
        [z64, mappingRecord([[0, ref(oid, 'persistent.mapping', 'PersistentMapping')]])],
        [oid, mappingRecord([])],
      ]);
      await db.commit([[oid, mappingRecord([['x', 1]])]]);
      const t2 = new TransactionMetaData();
      await s.tpcBegin(t2);
      await assert.rejects(
        (async () => {
          await s.deleteObject(oid, badSerial, t2);
          await s.tpcVote(t2);
        })(),
        (e: unknown) => e instanceof ConflictError && idEquals(e.oid!, oid),
      );
      await s.tpcAbort(t2);
      assert.ok((await s.load(oid)).data.length > 0);
    });
  });
}
