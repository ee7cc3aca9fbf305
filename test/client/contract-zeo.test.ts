// The storage contract suite through ClientStorage against zeo serve (in this process), in both encodings:
// pickle (Z5) and msgpack (M5). One server per encoding serves a storage per test.
import { after, before, describe } from 'node:test';
import { fileStorageConfig, startServer, type TestServer } from '../helpers/server-fixture.js';
import { storageContractTests } from '../storage/contract/index.js';
import { storageNames, zeoFactory } from './zeo-factory.js';

const STORAGES = 400;

for (const msgpack of [false, true]) {
  const label = msgpack ? 'msgpack' : 'pickle';
  describe(`ClientStorage against zeo serve (${label})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer({
        msgpack,
        storages: (dir) => storageNames(STORAGES).map((n) => fileStorageConfig(dir, n)),
      });
    });
    after(async () => {
      await server?.stop();
    });
    storageContractTests(`ZEO ${label}`, zeoFactory({ address: () => server.address, storages: STORAGES }));
  });
}
