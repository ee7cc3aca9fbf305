// The capabilities a storage declares (Storage.capabilities): consistent with its interface list and with
// the factory's, and true to its behaviour: what it declares works, what it does not raises Unsupported.
// (That the interface lists are runzeo's for the same storage kind: test/server/served-storage.test.ts.)
import assert from 'node:assert/strict';
import { Unsupported } from '../../../src/storage/errors.js';
import { CAPABILITY_INTERFACES, type Storage } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import { dostore, hex, minpo, readAll, txnMeta, z64 } from './helpers.js';

/** What the factory says of the storage, as capabilities. */
function expected(factory: StorageFactory): Record<keyof typeof CAPABILITY_INTERFACES, boolean> {
  return {
    undo: factory.supportsUndo,
    blobs: factory.supportsBlobs,
    iteration: factory.supportsIterator,
    recordIternext: factory.supportsRecordIternext ?? factory.supportsIterator,
    restore: factory.supportsRestore,
    deleteObject: factory.supportsDeleteObject,
  };
}

/** Runs `fn` in a transaction that is aborted afterwards. */
async function inTransaction(
  s: Storage,
  fn: (t: ReturnType<typeof txnMeta>) => Promise<void>,
): Promise<void> {
  const t = txnMeta();
  await s.tpcBegin(t);
  try {
    await fn(t);
  } finally {
    await s.tpcAbort(t);
  }
}

export function capabilitiesTests(name: string, factory: StorageFactory): void {
  storageSuite(`${name}: Capabilities`, false, () => {
    storageTest(
      factory,
      'the declared capabilities agree with the interface list and the factory',
      async (ctx) => {
        const caps = ctx.storage.capabilities;
        const ifaces = caps.interfaces;
        assert.equal(new Set(ifaces).size, ifaces.length, 'no interface twice');
        assert.ok(ifaces.includes('ZODB.interfaces.IStorage'));
        assert.equal(ifaces.at(-1), 'zope.interface.Interface');
        for (const [cap, iface] of Object.entries(CAPABILITY_INTERFACES)) {
          const c = cap as keyof typeof CAPABILITY_INTERFACES;
          assert.equal(caps[c], ifaces.includes(iface), `${cap} declared iff ${iface} is provided`);
          assert.equal(caps[c], expected(factory)[c], `${cap} as the factory says`);
        }
        assert.equal(ifaces.includes('ZODB.interfaces.IBlobStorageRestoreable'), caps.blobs);
        assert.equal(ctx.storage.supportsUndo(), caps.undo);
        // fixed once open: a reopened storage declares the same
        assert.deepEqual(await ctx.reopen().then((s) => s.capabilities), caps);
      },
    );

    storageTest(
      factory,
      'undo, undoLog, undoInfo: work when declared, else Unsupported',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const tid1 = await dostore(s, { oid, data: 1 });
        await dostore(s, { oid, revid: tid1, data: 2 });
        if (s.capabilities.undo) {
          const log = await s.undoLog(0, 20);
          assert.equal(log.length, 2);
          assert.equal((await s.undoInfo(0, 20)).length, 2);
          await inTransaction(s, async (t) => {
            const r = await s.undo(log[0].id, t);
            assert.deepEqual(r.oids.map(hex), [hex(oid)]);
          });
        } else {
          await assert.rejects(s.undoLog(0, 20), Unsupported);
          await assert.rejects(s.undoInfo(0, 20), Unsupported);
          await inTransaction(s, (t) => assert.rejects(s.undo(new Uint8Array(8), t), Unsupported));
        }
      },
    );

    storageTest(
      factory,
      'restore and deleteObject: work when declared, else Unsupported',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const tid = await dostore(s, { oid, data: 1 });
        await inTransaction(s, async (t) => {
          const restore = s.restore(await s.newOid(), tid, minpo(2), null, t);
          if (s.capabilities.restore) {
            // (the serial must be the transaction's: here it is not, which the storage refuses otherwise)
            await restore.catch((e: unknown) => assert.ok(!(e instanceof Unsupported), String(e)));
          } else await assert.rejects(restore, Unsupported);
        });
        await inTransaction(s, async (t) => {
          const del = s.deleteObject(oid, tid, t);
          if (s.capabilities.deleteObject) await del;
          else await assert.rejects(del, Unsupported);
        });
      },
    );

    storageTest(
      factory,
      'iterator, recordIternext, lastInvalidations: as declared',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const tid = await dostore(s, { oid, data: 1 });
        if (s.capabilities.iteration) {
          const txns = await readAll(s);
          assert.deepEqual(
            txns.map((t) => hex(t.txn.tid)),
            [hex(tid)],
          );
        }
        if (s.capabilities.recordIternext) {
          const r = await s.recordIternext(null);
          assert.equal(hex(r.oid), hex(oid));
          assert.equal(r.next, null);
        } else await assert.rejects(s.recordIternext(null), Unsupported);
        if (s.capabilities.lastInvalidations) {
          const last = await s.lastInvalidations(5);
          assert.deepEqual(
            last.map((e) => [hex(e.tid), e.oids.map(hex)]),
            [[hex(tid), [hex(oid)]]],
          );
        } else await assert.rejects(s.lastInvalidations(5), Unsupported);
      },
    );

    storageTest(
      factory,
      'blobs: a temporary directory and blob files when declared, else Unsupported',
      async ({ storage: s }) => {
        const oid = await s.newOid();
        const tid = await dostore(s, { oid, data: 1 });
        if (s.capabilities.blobs) {
          assert.equal(typeof s.temporaryDirectory(), 'string');
          assert.ok(s.blobDirectoryOf(oid).length > 0);
          // a record without a blob has no blob file
          await assert.rejects(s.loadBlob(oid, tid), (e: Error) => !(e instanceof Unsupported));
        } else {
          assert.throws(() => s.temporaryDirectory(), Unsupported);
          assert.throws(() => s.blobDirectoryOf(oid), Unsupported);
          await assert.rejects(s.loadBlob(oid, tid), Unsupported);
          await inTransaction(s, async (t) => {
            await assert.rejects(s.storeBlob(oid, tid, minpo(2), '/nonexistent', t), Unsupported);
            await assert.rejects(s.restoreBlob(oid, tid, minpo(2), '/nonexistent', z64, t), Unsupported);
          });
        }
      },
    );
  });
}
