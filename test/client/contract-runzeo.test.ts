// The storage contract suite through ClientStorage against Python's runzeo (the reference server), in both
// encodings: pickle (Z5) and msgpack (M5, `msgpack true`). One runzeo per encoding serves a FileStorage per
// test; `client-conflict-resolution true` sends write conflicts to us, as zeo serve always does.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { interopDisabled } from '../helpers/oracle.js';
import { freePort, ServerProcess, stopLeftovers } from '../helpers/server-process.js';
import { storageContractTests } from '../storage/contract/index.js';
import { storageNames, zeoFactory } from './zeo-factory.js';

const STORAGES = 400;

after(() => stopLeftovers());

for (const msgpack of [false, true]) {
  const label = msgpack ? 'msgpack' : 'pickle';
  // runzeo comes from the Python oracle: skipped (and said so) only with ZEO_TS_SKIP_INTEROP=1
  describe(
    `ClientStorage against runzeo (${label})`,
    { skip: interopDisabled && 'ZEO_TS_SKIP_INTEROP=1' },
    () => {
      let server: ServerProcess;
      let port = 0;
      let dir = '';
      before(async () => {
        dir = mkdtempSync(join(tmpdir(), 'zeo-ts-runzeo-contract-'));
        port = await freePort();
        const storages = storageNames(STORAGES)
          .map(
            (n) =>
              `<filestorage ${n}>\n  path ${join(dir, `${n}.fs`)}\n  blob-dir ${join(dir, `${n}-blobs`)}\n</filestorage>\n`,
          )
          .join('');
        const conf = join(dir, 'zeo.conf');
        writeFileSync(
          conf,
          `<zeo>\n  address 127.0.0.1:${port}\n  msgpack ${msgpack}\n  client-conflict-resolution true\n</zeo>\n` +
            storages,
        );
        server = new ServerProcess({ kind: 'runzeo', conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
        await server.port(60_000);
      });
      after(async () => {
        await server?.stop();
        rmSync(dir, { recursive: true, force: true });
      });
      storageContractTests(
        `runzeo ${label}`,
        zeoFactory({ address: () => ({ host: '127.0.0.1', port }), storages: STORAGES }),
      );
    },
  );
}
