// ZODB/tests/PersistentStorage.py: what was committed is there after close() and open().
import assert from 'node:assert/strict';
import { storageSuite, storageTest, type StorageFactory } from './factory.js';
import { assertBytes, assertId, dostore } from './helpers.js';

export function persistentStorageTests(name: string, factory: StorageFactory): void {
  storageSuite(
    `${name}: PersistentStorage`,
    !factory.persistent && 'the data does not survive close()',
    () => {
      storageTest(factory, 'checkUpdatesPersist', async (ctx) => {
        let s = ctx.storage;
        const oids: Uint8Array[] = [];
        const newOid = async () => {
          const oid = await s.newOid();
          oids.push(oid);
          return oid;
        };
        await dostore(s, { oid: await newOid() });
        await dostore(s, { oid: await newOid() });
        const oid = await newOid();
        let revid = await dostore(s, { oid, data: 1 });
        revid = await dostore(s, { oid, revid, data: 2 });
        await dostore(s, { oid, revid, data: 3 });
        const objects = [];
        for (const o of oids) objects.push({ oid: o, ...(await s.load(o)) });
        const last = s.lastTransaction();
        s = await ctx.reopen();
        for (const { oid: o, data, serial } of objects) {
          const r = await s.load(o);
          assertBytes(r.data, data);
          assertId(r.serial, serial);
        }
        assertId(s.lastTransaction(), last);
        // new oids do not reuse old ones
        const fresh = await s.newOid();
        assert.ok(!oids.some((o) => Buffer.from(o).equals(fresh)));
      });
    },
  );
}
