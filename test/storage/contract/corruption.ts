// ZODB/tests/Corruption.py (FileStorage only): a truncated or damaged index file is rebuilt on open; the data
// is all there. Applies when the factory names an index file.
import { open, stat } from 'node:fs/promises';
import { storageSuite, storageTest, type StorageFactory, type StorageTestContext } from './factory.js';
import { assertId, dostore } from './helpers.js';

export function corruptionTests(name: string, factory: StorageFactory): void {
  const doStores = async (ctx: StorageTestContext) => {
    const oids: Array<[Uint8Array, Uint8Array]> = [];
    for (let i = 0; i < 5; i++) {
      const oid = await ctx.storage.newOid();
      oids.push([oid, await dostore(ctx.storage, { oid })]);
    }
    return oids;
  };
  const checkStores = async (ctx: StorageTestContext, oids: Array<[Uint8Array, Uint8Array]>) => {
    for (const [oid, revid] of oids) assertId((await ctx.storage.load(oid)).serial, revid);
  };

  storageSuite(`${name}: FileStorageCorruptTests`, !factory.indexFile && 'no index file', () => {
    storageTest(factory, 'checkTruncatedIndex', async (ctx) => {
      const oids = await doStores(ctx);
      await ctx.storage.close();
      const index = factory.indexFile!(ctx.dir);
      const { size } = await stat(index);
      const f = await open(index, 'r+');
      await f.truncate(Math.floor(size / 2));
      await f.close();
      ctx.storage = await ctx.open(ctx.dir);
      await checkStores(ctx, oids);
    });

    storageTest(factory, 'checkCorruptedIndex', async (ctx) => {
      const oids = await doStores(ctx);
      await ctx.storage.close();
      const index = factory.indexFile!(ctx.dir);
      const { size } = await stat(index);
      const f = await open(index, 'r+');
      // zero a byte every so often, as the Python test does at random strides
      for (
        let pos = 1 + Math.floor(Math.random() * (size / 10));
        pos < size;
        pos += 1 + Math.floor(Math.random() * (size / 10))
      ) {
        await f.write(new Uint8Array(1), 0, 1, pos);
      }
      await f.close();
      ctx.storage = await ctx.open(ctx.dir);
      await checkStores(ctx, oids);
    });
  });
}
