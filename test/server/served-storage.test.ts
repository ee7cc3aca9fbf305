// get_info, which the server makes of what each storage declares (Storage.capabilities), and what a client
// may then ask, against the real runzeo's for the same configuration: a FileStorage with blobs, one without, a read-only one, and a
// MappingStorage. A ZEO client decides from this answer what it may ask (undo, record_iternext, blobs...).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { PickleValue, PyDict } from '../../src/pickle/index.js';
import { FileStorage } from '../../src/storage/filestorage/index.js';
import { interopTest } from '../helpers/oracle.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { fileStorageConfig, startServer } from '../helpers/server-fixture.js';
import { freePort, ServerProcess, stopLeftovers } from '../helpers/server-process.js';

const root = mkdtempSync(join(tmpdir(), 'zeo-ts-served-storage-'));
after(() => rmSync(root, { recursive: true, force: true }));
after(stopLeftovers);

/** The storages of both servers: name, and whether a client registers read-only. */
const STORAGES: Array<[string, boolean]> = [
  ['1', false], // FileStorage with a blob directory
  ['2', false], // FileStorage without
  ['3', false], // MappingStorage
  ['4', true], // FileStorage opened read-only
];

/** An empty Data.fs for the read-only storage. */
async function readOnlyFile(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'ro.fs');
  await (await FileStorage.open(path)).close();
  return path;
}

/** get_info of each storage, with what depends on the storage's place (its name: the path) left out. */
async function infos(address: {
  host: string;
  port: number;
}): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, readOnly] of STORAGES) {
    const c = await RawClient.open(address, { register: name, readOnly });
    try {
      const info = (await c.call('get_info')) as PyDict;
      const entry: Record<string, unknown> = {};
      for (const [k, v] of info) {
        if (k === 'name' && name !== '3') continue;
        entry[k as string] =
          k === 'interfaces' ? (v as PickleValue[]).map((p) => (p as string[]).join('.')) : v;
      }
      // what a client may then ask: undoLog (nothing without undo), record_iternext (no such method without it)
      entry.undoLog = await c.call('undoLog', [0, 20]);
      // (on an empty FileStorage runzeo's answer is ZODB's ValueError of an empty tree, ours a POSKeyError: only
      // whether the method is there is compared)
      entry.record_iternext = await c.call('record_iternext', []).then(
        () => 'served',
        (e: ServerError) => (e.className === 'builtins.AttributeError' ? 'no such method' : 'served'),
      );
      out[name] = entry;
    } finally {
      c.close();
    }
  }
  return out;
}

interopTest("get_info: each storage's answer is runzeo's for the same kind of storage", async () => {
  // runzeo
  const rz = join(root, 'runzeo');
  const rzReadOnly = await readOnlyFile(rz);
  const port = await freePort();
  const conf = join(rz, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n` +
      `<filestorage 1>\n  path ${rz}/Data.fs\n  blob-dir ${rz}/blobs\n</filestorage>\n` +
      `<filestorage 2>\n  path ${rz}/2.fs\n</filestorage>\n` +
      `<mappingstorage 3>\n</mappingstorage>\n` +
      `<filestorage 4>\n  path ${rzReadOnly}\n  read-only true\n</filestorage>\n`,
  );
  const runzeo = new ServerProcess({ kind: 'runzeo', conf, cwd: rz, env: { ZEO_MSGPACK: '' } });
  let theirs;
  try {
    await runzeo.port();
    theirs = await infos({ host: '127.0.0.1', port });
  } finally {
    await runzeo.stopCleanly();
  }

  // zeo-ts, the same storages
  const ours = join(root, 'zeo-ts');
  const oursReadOnly = await readOnlyFile(ours);
  const s = await startServer({
    dir: ours,
    storages: (d) => [
      fileStorageConfig(d, '1'),
      fileStorageConfig(d, '2', { blobDir: null }),
      { kind: 'mappingstorage', name: '3', description: 'Mapping Storage' },
      fileStorageConfig(d, '4', { path: oursReadOnly, blobDir: null, readOnly: true, create: false }),
    ],
  });
  let mine;
  try {
    mine = await infos(s.address as { host: string; port: number });
  } finally {
    await s.stop();
  }

  assert.deepEqual(mine, theirs);
  // what the comparison stands on: the kinds differ as ZODB's do
  assert.equal(theirs['1'].supportsUndo, true);
  assert.equal(theirs['3'].supportsUndo, false);
  assert.equal(theirs['3'].supports_record_iternext, false);
  assert.equal(theirs['3'].record_iternext, 'no such method');
  assert.equal(theirs['1'].record_iternext, 'served');
  assert.deepEqual(theirs['3'].interfaces, [
    'ZODB.interfaces.IStorage',
    'ZODB.interfaces.IStorageIteration',
    'zope.interface.Interface',
  ]);
  assert.equal((theirs['1'].interfaces as string[])[0], 'ZODB.interfaces.IBlobStorageRestoreable');
  assert.equal((theirs['2'].interfaces as string[])[0], 'ZODB.interfaces.IStorageRestoreable');
});
