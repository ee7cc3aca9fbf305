// ZODB/tests/ReadOnlyStorage.py: a storage opened read-only reads what is there and refuses every write with
// ReadOnlyError.
import assert from 'node:assert/strict';
import { referencesf } from '../../../src/pickle/index.js';
import { ReadOnlyError } from '../../../src/storage/errors.js';
import type { Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import { storageSuite, storageTest, type StorageFactory, type StorageTestContext } from './factory.js';
import { assertBytes, assertId, dostore, hex, minpo, z64 } from './helpers.js';

export function readOnlyStorageTests(name: string, factory: StorageFactory): void {
  const makeReadOnly = async (ctx: StorageTestContext) => {
    const s = await ctx.reopen({ readOnly: true });
    assert.equal(s.isReadOnly(), true);
    return s;
  };

  storageSuite(`${name}: ReadOnlyStorage`, !factory.persistent && 'the data does not survive close()', () => {
    storageTest(factory, 'checkReadMethods', async (ctx) => {
      const oids = new Map<string, [Uint8Array, Tid]>();
      for (let i = 0; i < 10; i++) {
        const oid = await ctx.storage.newOid();
        oids.set(hex(oid), [oid, await dostore(ctx.storage, { oid, data: i })]);
      }
      const s = await makeReadOnly(ctx);
      for (const [oid, revid] of oids.values()) {
        const { data, serial } = await s.load(oid);
        assertId(serial, revid);
        assertBytes(await s.loadSerial(oid, revid), data);
      }
      assert.equal((await s.history([...oids.values()][0][0], 5)).length, 1);
    });

    storageTest(factory, 'checkWriteMethods', async (ctx) => {
      await dostore(ctx.storage);
      const s = await makeReadOnly(ctx);
      await assert.rejects(s.newOid(), ReadOnlyError);
      const t = new TransactionMetaData();
      await assert.rejects(s.tpcBegin(t), ReadOnlyError);
      await assert.rejects(s.store(z64, z64, new Uint8Array(0), t), ReadOnlyError);
      await assert.rejects(s.undo(z64, t), ReadOnlyError);
      // not in ZODB's test, refused by FileStorage all the same
      await assert.rejects(s.restore(z64, z64, minpo(1), null, t), ReadOnlyError);
      await assert.rejects(s.deleteObject(z64, z64, t), ReadOnlyError);
      if (!factory.readOnlyMayPack)
        await assert.rejects(s.pack(Date.now() / 1000, referencesf), ReadOnlyError);
    });
  });
}
