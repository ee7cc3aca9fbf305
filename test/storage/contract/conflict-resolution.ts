// ZODB/tests/ConflictResolution.py, the storage's side: without resolution a stale store is a ConflictError
// carrying (oid, (current, old) serials, the rejected data); with a resolver, store() hands it the conflict,
// stores what it returns and tpcVote reports the oid; a resolver that refuses or fails leaves the conflict.
// Undo uses the same resolver (ConflictResolvingTransUndoStorage).
import assert from 'node:assert/strict';
import { ConflictError, UndoError } from '../../../src/storage/errors.js';
import { TransactionMetaData, type Storage } from '../../../src/storage/interfaces.js';
import type { Tid } from '../../../src/storage/ids.js';
import { storageSuite, storageTest, type StorageFactory, type StorageTestContext } from './factory.js';
import {
  assertBytes,
  assertId,
  beginUndosVote,
  dostore,
  hex,
  pcounter,
  pcounterResolver,
  pcounterValue,
  undoIds,
  z64,
  type ResolverCall,
} from './helpers.js';

/** Two clients read a counter at `base`; one commits +2, then the other +3 from the same base. */
async function twoIncrements(
  s: Storage,
  cls: string,
): Promise<{ oid: Uint8Array; base: Tid; theirs: Tid; mine: Uint8Array }> {
  const oid = await s.newOid();
  const base = await dostore(s, { oid, data: pcounter(1, cls) });
  const theirs = await dostore(s, { oid, revid: base, data: pcounter(3, cls) });
  return { oid, base, theirs, mine: pcounter(4, cls) };
}

export function conflictResolutionTests(name: string, factory: StorageFactory): void {
  const resolver = (ctx: StorageTestContext) => pcounterResolver(() => ctx.storage);
  // checkResolve looks at what its resolver was given
  const calls: ResolverCall[] = [];

  /** A store that must fail with the ConflictError of an unresolved conflict. */
  const assertUnresolved = async (s: Storage, cls: string) => {
    const { oid, base, theirs, mine } = await twoIncrements(s, cls);
    await assert.rejects(dostore(s, { oid, revid: base, data: mine }), (e: unknown) => {
      assert.ok(e instanceof ConflictError, String(e));
      assertId(e.oid, oid);
      assert.deepEqual(e.serials?.map(hex), [hex(theirs), hex(base)]);
      assertBytes(e.data, mine);
      return true;
    });
    assert.equal(pcounterValue((await s.load(oid)).data), 3);
  };

  storageSuite(`${name}: ConflictResolvingStorage`, false, () => {
    storageTest(
      factory,
      'checkResolve',
      async ({ storage: s }) => {
        const { oid, base, theirs, mine } = await twoIncrements(s, 'PCounter');
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        await s.store(oid, base, mine, t);
        assert.deepEqual((await s.tpcVote(t)).map(hex), [hex(oid)], 'vote reports the resolved oid');
        const tid = await s.tpcFinish(t);
        const { data, serial } = await s.load(oid);
        assertId(serial, tid);
        assert.equal(pcounterValue(data), 6, '1 + 2 + 3');
        // the resolver saw the conflict as tryToResolveConflict does
        assert.equal(calls.length, 1);
        const [c] = calls;
        assertId(c.oid, oid);
        assertId(c.committedSerial, theirs);
        assertId(c.oldSerial, base);
        assertBytes(c.newData, mine);
        assertBytes(c.committedData, pcounter(3));
      },
      { resolver: (ctx) => pcounterResolver(() => ctx.storage, calls) },
    );

    storageTest(factory, 'checkUnresolvable', ({ storage: s }) => assertUnresolved(s, 'PCounter2'), {
      resolver,
    });

    storageTest(factory, 'checkBuggyResolve1', ({ storage: s }) => assertUnresolved(s, 'PCounter3'), {
      resolver,
    });

    storageTest(factory, 'checkBuggyResolve2', ({ storage: s }) => assertUnresolved(s, 'PCounter4'), {
      resolver,
    });

    storageTest(factory, 'checkNoResolver (not a ZODB method)', async ({ storage: s }) => {
      // without a resolver even a resolvable class conflicts (the ZEO server passes none: clients resolve)
      await assertUnresolved(s, 'PCounter');
    });

    storageTest(
      factory,
      'checkResolvedThenAborted (not a ZODB method)',
      async ({ storage: s }) => {
        const { oid, base, mine } = await twoIncrements(s, 'PCounter');
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        await s.store(oid, base, mine, t);
        await s.tpcAbort(t);
        assert.equal(pcounterValue((await s.load(oid)).data), 3);
        // the next transaction reports no resolution of its own
        const t2 = new TransactionMetaData();
        await s.tpcBegin(t2);
        await s.store(await s.newOid(), z64, pcounter(1), t2);
        assert.deepEqual(await s.tpcVote(t2), []);
        await s.tpcFinish(t2);
      },
      { resolver },
    );
  });

  storageSuite(`${name}: ConflictResolvingTransUndoStorage`, !factory.supportsUndo && 'no undo', () => {
    storageTest(
      factory,
      'checkUndoConflictResolution',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const revidA = await dostore(s, { oid, data: pcounter(1) });
        const revidB = await dostore(s, { oid, revid: revidA, data: pcounter(2) });
        await dostore(s, { oid, revid: revidB, data: pcounter(3) });
        const info = await undoIds(s);
        const t = new TransactionMetaData();
        await s.tpcBegin(t);
        await s.undo(info[1], t);
        await s.tpcVote(t);
        await s.tpcFinish(t);
        // undoing the +1 of B from 3 leaves 2
        assert.equal(pcounterValue((await s.load(oid)).data), 2);
      },
      {
        resolver,
        skip:
          factory.resolverAppliesToUndo === false && "undo resolves conflicts with the server's resolvers",
      },
    );

    storageTest(
      factory,
      'checkUndoUnresolvable',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const revidA = await dostore(s, { oid, data: pcounter(1, 'PCounter2') });
        const revidB = await dostore(s, { oid, revid: revidA, data: pcounter(2, 'PCounter2') });
        await dostore(s, { oid, revid: revidB, data: pcounter(3, 'PCounter2') });
        const info = await undoIds(s);
        const t = new TransactionMetaData();
        await assert.rejects(beginUndosVote(s, t, info[1]), UndoError);
        await s.tpcAbort(t);
        assert.equal(pcounterValue((await s.load(oid)).data), 3);
      },
      { resolver },
    );
  });
}
