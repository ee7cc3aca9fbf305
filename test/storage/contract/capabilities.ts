// The capabilities a storage declares (Storage.capabilities): consistent with its interface list and with
// the factory's, and true to its behaviour: what it declares works, what it does not raises Unsupported.
// (That the interface lists are runzeo's for the same storage kind: test/server/served-storage.test.ts.)
import assert from 'node:assert/strict';
import { Unsupported } from '../../../src/storage/errors.js';
import type { Oid, Tid } from '../../../src/storage/ids.js';
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

    /** A test on a storage holding one object, committed twice (tids[0], tids[1]). */
    const withObject = (title: string, fn: (s: Storage, oid: Oid, tids: Tid[]) => Promise<void>): void =>
      storageTest(factory, title, async ({ storage: s }) => {
        const oid = await s.newOid();
        const first = await dostore(s, { oid, data: 1 });
        await fn(s, oid, [first, await dostore(s, { oid, revid: first, data: 2 })]);
      });

    withObject('undo, undoLog, undoInfo: work when declared, else Unsupported', async (s, oid) => {
      if (s.capabilities.undo) {
        const log = await s.undoLog(0, 20);
        assert.equal(log.length, 2);
        assert.equal((await s.undoInfo(0, 20)).length, 2);
        await inTransaction(s, async (t) => {
          const r = await s.undo(log[0].id, t);
          // a storage that undoes at vote reports the oids there
          const voted = factory.undoAtVote ? await s.tpcVote(t) : [];
          assert.deepEqual([...new Set([...r.oids, ...voted].map(hex))], [hex(oid)]);
        });
      } else {
        await assert.rejects(s.undoLog(0, 20), Unsupported);
        await assert.rejects(s.undoInfo(0, 20), Unsupported);
        await inTransaction(s, (t) => assert.rejects(s.undo(new Uint8Array(8), t), Unsupported));
      }
    });

    withObject('restore and deleteObject: work when declared, else Unsupported', async (s, oid, tids) => {
      await inTransaction(s, async (t) => {
        const restore = s.restore(await s.newOid(), tids[1], minpo(3), null, t);
        // (a serial that is not the transaction's tid may be refused, but not as unsupported)
        if (s.capabilities.restore)
          await restore.catch((e: unknown) => assert.ok(!(e instanceof Unsupported)));
        else await assert.rejects(restore, Unsupported);
      });
      await inTransaction(s, async (t) => {
        const del = s.deleteObject(oid, tids[1], t);
        if (s.capabilities.deleteObject) await del;
        else await assert.rejects(del, Unsupported);
      });
    });

    withObject('iterator, recordIternext, lastInvalidations: as declared', async (s, oid, tids) => {
      if (s.capabilities.iteration) {
        assert.deepEqual(
          (await readAll(s)).map((t) => hex(t.txn.tid)),
          tids.map(hex),
        );
      }
      if (s.capabilities.recordIternext) {
        const r = await s.recordIternext(null);
        assert.deepEqual([hex(r.oid), hex(r.tid), r.next], [hex(oid), hex(tids[1]), null]);
      } else await assert.rejects(s.recordIternext(null), Unsupported);
      if (s.capabilities.lastInvalidations) {
        const last = (await s.lastInvalidations(1)).map((e) => [hex(e.tid), e.oids.map(hex)]);
        assert.deepEqual(last, [[hex(tids[1]), [hex(oid)]]]);
      } else await assert.rejects(s.lastInvalidations(1), Unsupported);
    });

    withObject(
      'blobs: a temporary directory and blob files when declared, else Unsupported',
      async (s, oid, tids) => {
        if (s.capabilities.blobs) {
          assert.equal(typeof s.temporaryDirectory(), 'string');
          assert.ok(s.blobDirectoryOf(oid).length > 0);
          // a record without a blob has no blob file
          await assert.rejects(s.loadBlob(oid, tids[1]), (e: Error) => !(e instanceof Unsupported));
        } else {
          assert.throws(() => s.temporaryDirectory(), Unsupported);
          assert.throws(() => s.blobDirectoryOf(oid), Unsupported);
          await assert.rejects(s.loadBlob(oid, tids[1]), Unsupported);
          await inTransaction(s, async (t) => {
            await assert.rejects(s.storeBlob(oid, tids[1], minpo(3), '/nonexistent', t), Unsupported);
            await assert.rejects(s.restoreBlob(oid, tids[1], minpo(3), '/nonexistent', z64, t), Unsupported);
          });
        }
      },
    );
  });
}
