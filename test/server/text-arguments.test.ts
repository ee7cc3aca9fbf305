// Bytes or str where Python's FileStorage takes either (issue 9, item 9): zodbtools' `zodb restore` sends
// tpc_begin's status as b' ' on Python 3, and a client may send user and description as str or bytes. runzeo
// takes them all; the same Python client against both servers must commit the same transactions.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { interopTest } from '../helpers/oracle.js';
import { startServer } from '../helpers/server-fixture.js';
import { freePort, ServerProcess, stopLeftovers } from '../helpers/server-process.js';

after(stopLeftovers);

/**
 * One transaction per (user, description, status), through ClientStorage's own tpc_begin, so what goes over
 * the wire is what a Python application sends; then what the storage's iterator reads back, and whether the
 * connection stayed.
 */
const COMMITS = `
import ZEO.ClientStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import z64

def text(v):
    return v.decode('latin-1') if isinstance(v, bytes) else v

st = ZEO.ClientStorage.ClientStorage(tuple(args['addr']), wait_timeout=30)
out = []
try:
    for user, desc, status in [
        (b'u1', b'd1', b' '),
        ('u2', 'd2', ' '),
        (b'u3', 'd3', b' '),
        ('u\\xe94', b'd4', ' '),
    ]:
        t = TransactionMetaData(user, desc)
        try:
            st.tpc_begin(t, None, status)
            oid = st.new_oid()
            st.store(oid, z64, b'data', '', t)
            st.tpc_vote(t)
            st.tpc_finish(t)
            out.append('committed')
        except Exception as e:
            st.tpc_abort(t)
            out.append('%s: %s' % (type(e).__name__, e))
    out.append(st.is_connected())
    out.extend([text(t.user), text(t.description), text(t.status)] for t in st.iterator())
finally:
    st.close()
result = out
`;

interopTest(
  'tpc_begin takes bytes or str for status, user and description, as runzeo does',
  async (oracle) => {
    const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-text-arguments-'));
    const conf = join(dir, 'zeo.conf');
    writeFileSync(
      conf,
      `<zeo>\n  address 127.0.0.1:${await freePort()}\n</zeo>\n<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
    );
    const runzeo = new ServerProcess({ kind: 'runzeo', conf, cwd: dir });
    const ours = await startServer();
    try {
      const theirs = await oracle.json(COMMITS, undefined, {
        addr: ['127.0.0.1', await runzeo.port(30_000)],
      });
      assert.deepEqual(theirs, [
        'committed',
        'committed',
        'committed',
        'committed',
        true,
        ['u1', 'd1', ' '],
        ['u2', 'd2', ' '],
        ['u3', 'd3', ' '],
        ['u\u00c3\u00a94', 'd4', ' '],
      ]);
      const address = ours.address as { host: string; port: number };
      assert.deepEqual(await oracle.json(COMMITS, undefined, { addr: [address.host, address.port] }), theirs);
    } finally {
      await ours.stop();
      await runzeo.stop().catch(() => runzeo.kill());
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
