// <serverzlibstorage>: clients (zc.zlibstorage) send records compressed as '.z' + zlib; the server stores
// them as they come and decompresses them only to find references when pack collects garbage.

import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { test } from 'node:test';
import { dumps, Global, PersistentRef, tuple, type PickleValue } from '../../src/pickle/index.js';
import { maxtid, p64, z64 } from '../../src/storage/ids.js';
import { parseZConfig } from '../../src/server/config.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { startServer } from '../helpers/server-fixture.js';

/** A PersistentMapping record whose 'data' refers to the given oids, compressed as zc.zlibstorage does. */
function compressedRecord(refs: Uint8Array[]): Uint8Array {
  const klass = dumps(Global.of('persistent.mapping', 'PersistentMapping'), 3);
  const data = new Map<PickleValue, PickleValue>(
    refs.map((oid, i) => [`k${i}`, new PersistentRef(tuple(oid, null))]),
  );
  const state = dumps(new Map<PickleValue, PickleValue>([['data', data]]), 3);
  const raw = Buffer.concat([klass, state]);
  return new Uint8Array(Buffer.concat([Buffer.from('.z'), deflateSync(raw)]));
}

test('%import zc.zlibstorage with <serverzlibstorage> configures a FileStorage with zlib records', () => {
  const config = parseZConfig(
    [
      '%import zc.zlibstorage',
      '<zeo>',
      '  address 127.0.0.1:0',
      '</zeo>',
      '<serverzlibstorage>',
      '  <filestorage>',
      '    path /tmp/Data.fs',
      '  </filestorage>',
      '</serverzlibstorage>',
    ].join('\n'),
    { fileName: 'zeo.conf' },
  );
  assert.equal(config.storages.length, 1);
  const st = config.storages[0];
  assert.equal(st.kind, 'filestorage');
  assert.equal(st.kind === 'filestorage' && st.zlib, true);
});

test('pack with GC follows references inside compressed records', async () => {
  const s = await startServer();
  try {
    const c = await RawClient.open(s.address);
    const [a, b, orphan] = [p64(1), p64(2), p64(3)];
    const id = 1;
    c.sendAsync('tpc_begin', [id, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.sendAsync('storea', [z64, z64, compressedRecord([a]), id]);
    c.sendAsync('storea', [a, z64, compressedRecord([b]), id]);
    c.sendAsync('storea', [b, z64, compressedRecord([]), id]);
    c.sendAsync('storea', [orphan, z64, compressedRecord([]), id]);
    await c.call('vote', [id]);
    await c.call('tpc_finish', [id]);
    await new Promise((r) => setTimeout(r, 20));
    await c.call('pack', [Date.now() / 1000 + 1, 1]);
    for (const oid of [z64, a, b]) {
      const r = (await c.call('loadBefore', [oid, maxtid])) as PickleValue[];
      assert.deepEqual(
        Buffer.from(r[0] as Uint8Array)
          .subarray(0, 2)
          .toString(),
        '.z',
        'stored as the client sent it',
      );
    }
    await assert.rejects(
      c.call('loadBefore', [orphan, maxtid]),
      (e: ServerError) => e.className === 'ZODB.POSException.POSKeyError',
    );
    c.close();
  } finally {
    await s.stop();
  }
});
