// `zeo pack` (src/cli/pack.ts) as ZEO's zeopack: against zeo serve and runzeo, a pack to now removes the old
// revisions a Python client wrote (Python's history and loadSerial say so), --days keeps what is younger;
// unix sockets with -u; TLS; zeopack's exit statuses for no arguments, bad specifications, unreachable
// servers, a pack the server refuses. On a terminal: zeo serve's progress as a bar per phase, runzeo's ticker.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  PackProgressView,
  PackTicker,
  packTargets,
  packTime,
  runPack,
  targetRepr,
} from '../../src/cli/pack.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { serverTlsOptions } from '../../src/transport/tls.js';
import { noOpenssl, selfSignedPair } from '../helpers/openssl.js';
import { buildPackable } from '../helpers/pack-data.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { fileStorageConfig, startServer } from '../helpers/server-fixture.js';
import { stopLeftovers } from '../helpers/server-process.js';
import { runZeo, startZeoServer, type RunningZeoServer, type ZeoServerKind } from '../helpers/zeo-servers.js';
import { withTempDir } from '../storage/filestorage/fs-oracle.js';

after(stopLeftovers);

/** Python writes three revisions of root['x'] through ClientStorage; returns the serials, oldest first. */
const PY_REVISIONS = `
import time, transaction, ZODB
from ZEO.ClientStorage import ClientStorage
from persistent.mapping import PersistentMapping
a = args['address']
cs = ClientStorage(('127.0.0.1', a) if isinstance(a, int) else a, wait_timeout=30)
db = ZODB.DB(cs)
conn = db.open()
root = conn.root()
x = root['x'] = PersistentMapping()
serials = []
for i in range(3):
    x['i'] = i
    transaction.commit()
    serials.append(x._p_serial.hex())
oid = x._p_oid.hex()
conn.close()
db.close()
time.sleep(0.05)
result = dict(oid=oid, serials=serials)
`;

/** Which of the serials the server can still load (loadSerial), and the history's length. */
const PY_SURVIVORS = `
from ZEO.ClientStorage import ClientStorage
from ZODB.POSException import POSKeyError
a = args['address']
cs = ClientStorage(('127.0.0.1', a) if isinstance(a, int) else a, wait_timeout=30, read_only=True)
oid = bytes.fromhex(args['oid'])
alive = []
for s in args['serials']:
    try:
        cs.loadSerial(oid, bytes.fromhex(s))
        alive.append(s)
    except POSKeyError:
        pass
result = dict(alive=alive, history=len(cs.history(oid, 10)))
cs.close()
`;

async function survivors(oracle: Oracle, s: RunningZeoServer, w: { oid: string; serials: string[] }) {
  return oracle.json<{ alive: string[]; history: number }>(PY_SURVIVORS, undefined, {
    address: s.pyAddress,
    ...w,
  });
}

for (const [kind, msgpack, unix] of [
  ['zeo-ts', false, false],
  ['zeo-ts', true, true],
  ['runzeo', false, false],
  ['runzeo', true, false],
] as Array<[ZeoServerKind, boolean, boolean]>) {
  const label = `${kind === 'runzeo' ? 'runzeo' : 'zeo serve'} (${msgpack ? 'msgpack' : 'pickle'}${unix ? ', unix socket' : ''})`;
  interopTest(
    `zeo pack against ${label}: --days keeps young revisions, a pack to now removes them`,
    async (oracle) => {
      const server = await startZeoServer(kind, { msgpack, unix, blobs: false });
      try {
        const w = await oracle.json<{ oid: string; serials: string[] }>(PY_REVISIONS, undefined, {
          address: server.pyAddress,
        });
        const where = unix ? ['-u', `${server.spec}:1`] : [`${server.spec}:1`];
        const young = await runZeo(['pack', '--days', '1', ...where]);
        assert.equal(young.status, 0, young.stderr);
        assert.equal(young.stderr, '');
        assert.deepEqual(await survivors(oracle, server, w), { alive: w.serials, history: 3 });
        const r = await runZeo(['pack', ...where]);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout + r.stderr, '');
        assert.deepEqual(await survivors(oracle, server, w), { alive: [w.serials[2]], history: 1 });
      } finally {
        await server.stop();
      }
    },
  );
}

test('zeo pack: no arguments print the help; bad specifications exit 1 with "Error:"; bad values exit 2', async () => {
  const help = await runZeo(['pack']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: zeo pack \[options\] \[servers\]/);
  for (const [args, message] of [
    [['localhost'], "Invalid server specification: 'localhost'"],
    [['a:b:c:d'], "Invalid server specification: 'a:b:c:d'"],
    [['localhost:http'], "Invalid port in server specification: 'localhost:http'"],
    [['-u', 'a:b:c'], "Invalid server specification: 'a:b:c'"],
    [['-h', 'localhost'], 'If host (-h) is specified then a port (-p) must be specified as well.'],
    [['-t', '1:2:3:4', 'x:1'], "Invalid time value: '1:2:3:4'"],
    [['-d', '3'], 'No servers specified.'],
  ] as Array<[string[], string]>) {
    const r = await runZeo(['pack', ...args]);
    assert.equal(r.status, 1, args.join(' '));
    assert.equal(r.stderr, `Error:\n${message}\n`);
  }
  const bad = await runZeo(['pack', '-d', 'soon', 'x:1']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /zeo pack: error: option -d: invalid integer value: 'soon'/);
});

test('zeo pack: an unreachable server is reported and skipped; none reachable exits 1', async () => {
  const r = await runZeo(['pack', '-w', '0.2', '127.0.0.1:1', '-u', '/nonexistent/zeo.sock:2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^Couldn't connect to: \(\('127\.0\.0\.1', 1\), '1'\)\n {2}\(.*ECONNREFUSED.*\)\n/);
  assert.match(r.stderr, /Couldn't connect to: \('\/nonexistent\/zeo\.sock', '2'\)\n/);
  assert.match(r.stderr, /Error:\nCannot connect to any of the configured ZEO servers\.\n$/);
});

interopTest('zeo pack: a storage name the server does not have cannot be packed', async () => {
  const server = await startZeoServer('zeo-ts', { blobs: false });
  try {
    const r = await runZeo(['pack', '-w', '0.2', `${server.spec}:nosuch`]);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      new RegExp(`^Couldn't connect to: \\(\\('127\\.0\\.0\\.1', \\d+\\), 'nosuch'\\)\n`),
    );
    assert.match(r.stderr, /nosuch/);
  } finally {
    await server.stop();
  }
});

test('pack time and targets as zeopack computes them', () => {
  const now = new Date(2026, 11, 6, 15, 30, 45, 500);
  assert.equal(packTime(0, undefined, now), now.getTime() / 1000);
  assert.equal(packTime(2, undefined, now), now.getTime() / 1000 - 2 * 86400);
  assert.equal(packTime(0, '7', now), new Date(2026, 11, 6, 7, 0, 0).getTime() / 1000);
  assert.equal(packTime(1, '7:05:09', now), new Date(2026, 11, 6, 7, 5, 9).getTime() / 1000 - 86400);
  // -S names the storage of a server given without one (zeopack would pack '1' there)
  assert.deepEqual(packTargets(['db:8100'], { name: 'main', unix: ['/s'] }).map(targetRepr), [
    "(('db', 8100), 'main')",
    "('/s', 'main')",
  ]);
  const t = packTargets(['db:8100', 'db:8101:two'], {
    name: '1',
    host: 'h',
    port: '9',
    unixDeprecated: '/s0',
    unix: ['/s1', '/s2:three'],
  });
  assert.deepEqual(t.map(targetRepr), [
    "(('h', 9), '1')",
    "('/s0', '1')",
    "(('db', 8100), '1')",
    "(('db', 8101), 'two')",
    "('/s1', '1')",
    "('/s2', 'three')",
  ]);
});

test(
  'zeo pack over TLS: a client certificate, the server checked against its CA',
  { skip: noOpenssl },
  async () => {
    await withTempDir(async (dir) => {
      const ssl = selfSignedPair(dir);
      const s = await startServer({ tls: serverTlsOptions(ssl('server', 'client')) });
      try {
        const port = (s.address as { port: number }).port;
        const c = ssl('client', 'server');
        const args = ['--ssl-certificate', c.certificate!, '--ssl-key', c.key!];
        const r = await runZeo(['pack', ...args, '--ssl-authenticate', c.authenticate!, `127.0.0.1:${port}`]);
        assert.equal(r.status, 0, r.stderr);
        assert.ok(
          s.logs.some((l) => /pack\(time=[\d.]+\) complete/.test(l)),
          'the server packed',
        );
        // without TLS options the server is not reached
        const plain = await runZeo(['pack', '-w', '1', `127.0.0.1:${port}`]);
        assert.equal(plain.status, 1);
        assert.match(plain.stderr, /Cannot connect to any of the configured ZEO servers/);
      } finally {
        await s.stop();
      }
    });
  },
);

test('zeo pack: a pack the server refuses exits 1 with the error and "Error packing storage"', async () => {
  await withTempDir(async (dir) => {
    await (await FileStorage.open(join(dir, 'Data.fs'))).close();
    const s = await startServer({
      dir,
      storages: (d) => [fileStorageConfig(d, '1', { readOnly: true, blobDir: null })],
    });
    try {
      const port = (s.address as { port: number }).port;
      const r = await runZeo(['pack', `127.0.0.1:${port}`]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^ReadOnlyError: /);
      assert.match(
        r.stderr,
        new RegExp(`Error:\nError packing storage 1 in \\('127\\.0\\.0\\.1', ${port}\\)\n$`),
      );
    } finally {
      await s.stop();
    }
  });
});

test('on a terminal, a pack shows the storage and the time it has taken, and erases the line at the end', () => {
  let t = 0;
  const out: string[] = [];
  const tty = { isTTY: true, columns: 60, write: (c: string) => out.push(c) };
  const ticker = new PackTicker("pack ('127.0.0.1', 8100), '1'", tty, () => t).run(3_600_000);
  t = 42_000;
  ticker.draw();
  t = 3_723_000;
  ticker.draw();
  ticker.stop();
  assert.deepEqual(out, [
    "\rpack ('127.0.0.1', 8100), '1'  0:00\x1b[K",
    "\rpack ('127.0.0.1', 8100), '1'  0:42\x1b[K",
    "\rpack ('127.0.0.1', 8100), '1'  1:02:03\x1b[K",
    '\r\x1b[K',
  ]);
  // off a terminal: nothing at all
  const pipe: string[] = [];
  const quiet = new PackTicker('pack x', { write: (c: string) => pipe.push(c) }, () => t).run();
  quiet.stop();
  assert.deepEqual(pipe, []);
});

test("a pack's line: the ticker until the server tells, then a bar per phase, erased at the end", () => {
  let t = 0;
  const out: string[] = [];
  const tty = { isTTY: true, columns: 100, write: (c: string) => out.push(c) };
  const target = { address: { host: '127.0.0.1', port: 8100 }, name: 'main' };
  const view = new PackProgressView(target, tty, () => t);
  t = 1000;
  view.progress(0, 4096, 'reachability');
  t = 1050;
  view.progress(1024, 4096, 'reachability'); // throttled: under 100 ms since the last line
  t = 2000;
  view.progress(4096, 4096, 'reachability');
  view.progress(4096, 4096, 'copy');
  view.stop();
  assert.deepEqual(out, [
    "\rpack (('127.0.0.1', 8100), 'main')  0:00\x1b[K",
    '\r\x1b[K',
    '\rpack main: reachability   0% [.........................]      0 B / 4.00 KiB      -- B/s  ETA --:--\x1b[K',
    '\rpack main: reachability 100% [#########################] 4.00 KiB / 4.00 KiB  4.00 KiB/s  ETA  0:00\x1b[K',
    '\r\x1b[K',
    '\rpack main: copy 100% [#################################] 4.00 KiB / 4.00 KiB      -- B/s  ETA --:--\x1b[K',
    '\r\x1b[K',
  ]);
  // off a terminal: nothing, whatever the server tells
  const pipe: string[] = [];
  const quiet = new PackProgressView(target, { write: (c: string) => pipe.push(c) }, () => t);
  quiet.progress(4096, 4096, 'copy');
  quiet.stop();
  assert.deepEqual(pipe, []);
});

for (const kind of ['zeo-ts', 'runzeo'] as ZeoServerKind[]) {
  interopTest(
    `on a terminal, zeo pack against ${kind === 'runzeo' ? 'runzeo shows the ticker' : 'zeo serve shows a bar per phase of the pack'}; off one, nothing`,
    async () => {
      const server = await startZeoServer(kind, {
        blobs: false,
        prepare: async (path) => (await buildPackable(path, 2000, 4096)).close(),
      });
      try {
        const target = { address: server.address, name: '1' };
        const out: string[] = [];
        const errs: string[] = [];
        const tty = { isTTY: true, columns: 100, write: (c: string) => out.push(c) };
        const packt = Date.now() / 1000 + 1;
        const status = await runPack([target], packt, {
          waitMs: 30_000,
          progress: tty,
          err: (e) => errs.push(e),
        });
        assert.equal(status, 0, errs.join(''));
        assert.equal(errs.join(''), '');
        // the line is erased at the end
        assert.equal(out.at(-1), '\r\x1b[K');
        const bars = out.filter((c) => c.startsWith('\rpack 1: '));
        if (kind === 'runzeo') {
          // ZEO tells nothing of the pack: the storage and the time spent
          assert.deepEqual(bars, []);
          assert.equal(out[0], `\rpack ${targetRepr(target)}  0:00\x1b[K`);
        } else {
          // each phase reached 100% (the server always sends a phase's end), reachability first
          const full = (phase: string): number =>
            bars.findIndex((c) => new RegExp(`^\\rpack 1: ${phase} 100% \\[#+\\] `).test(c));
          assert.ok(full('reachability') >= 0, JSON.stringify(out));
          assert.ok(full('copy') > full('reachability'), JSON.stringify(out));
          for (const c of out) assert.ok(c.length <= 2 + 99 + 3, `cut to the width: ${JSON.stringify(c)}`);
        }
        // off a terminal (a script reading zeopack's output): nothing at all, and the pack works
        const pipe: string[] = [];
        const again = await runPack([target], packt + 1, {
          waitMs: 30_000,
          progress: { write: (c: string) => pipe.push(c) },
          err: (e) => errs.push(e),
        });
        assert.equal(again, 0, errs.join(''));
        assert.deepEqual(pipe, []);
      } finally {
        await server.stop();
      }
    },
  );
}
