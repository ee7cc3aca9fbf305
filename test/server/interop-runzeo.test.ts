// zeo serve and the real runzeo (ZEO 6.2 in the oracle venv) take turns serving one Data.fs with its blob
// directory and index, a Python client writing under each and reading everything back; their `ruok` answers
// and ZEO's zeo-nagios check agree. Every server listens on 127.0.0.1.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import {
  freePort,
  ruok as rawRuok,
  ServerProcess,
  stopLeftovers,
  type RuokStatus,
  type ServerKind,
} from '../helpers/server-process.js';

const root = mkdtempSync(join(tmpdir(), 'zeo-ts-interop-runzeo-'));
after(() => rmSync(root, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------------
// Server processes

after(stopLeftovers);

/** A server in the temp dir, as runzeo is run here: no INSTANCE_HOME, no ZEO_MSGPACK. */
function startServer(kind: ServerKind, conf: string): ServerProcess {
  return new ServerProcess({ kind, conf, cwd: root, env: { ZEO_MSGPACK: '' } });
}

function writeConf(dir: string, name: string, port: number, storages: string): string {
  const conf = join(dir, name);
  writeFileSync(conf, `<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n${storages}`);
  return conf;
}

type Status = RuokStatus;

/** A raw `ruok` exchange: the protocol frame, then the JSON status; the server closes. */
async function ruok(port: number): Promise<{ proto: string; text: string; status: Status }> {
  const r = await rawRuok({ port });
  assert.equal(r.excess, 0, 'two frames, then the server closes');
  return r;
}

function typeOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/** Same storages, same keys in the same order, same JSON types (and the fixed values runzeo shows). */
function assertSameShape(ours: Status, theirs: Status): void {
  assert.deepEqual(Object.keys(ours), Object.keys(theirs));
  for (const name of Object.keys(theirs)) {
    const o = ours[name];
    const t = theirs[name];
    assert.deepEqual(Object.keys(o), Object.keys(t), `status keys of storage ${name}`);
    for (const k of Object.keys(t)) assert.equal(typeOf(o[k]), typeOf(t[k]), `type of ${name}.${k}`);
    assert.equal(o['timeout-thread-is-alive'], t['timeout-thread-is-alive']);
    assert.match(String(o.start), /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$/);
    assert.match(String(t.start), /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$/);
    assert.match(String(o['last-transaction']), /^[0-9a-f]{16}$/);
  }
}

function py<T>(oracle: Oracle, call: string, args: unknown = null): Promise<T> {
  return oracle.json<T>(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import zeo_serve_clients as c\nresult = c.${call}`,
    undefined,
    args,
  );
}

/** blob_bytes of zeo_serve_clients.py */
function blobBytes(phase: string, size: number): Buffer {
  const parts: Buffer[] = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const d = createHash('sha256').update(`${phase}${i}`).digest();
    parts.push(d);
    n += d.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

type Readout = Record<
  string,
  {
    n: number;
    s: string;
    l: unknown[];
    history: string[];
    done: boolean;
    tree: unknown[];
    blob: [number, string];
  }
>;
interface Phase {
  before_last: string;
  before: Readout;
  written_last: string;
  after_last: string;
  after: Readout;
}
interface FileCheck {
  size: number;
  index_pos: number | null;
  used_index: number;
  fstest: string | null;
  log: string[];
  tr0_after_open: boolean;
  last: string;
  tids: string[];
}

/** Data.fs.index's identity: a server that rebuilds the index at open (ZODB's _save_index) replaces it. */
function indexStamp(path: string): string {
  const st = statSync(`${path}.index`, { bigint: true });
  return `${st.ino}:${st.mtimeNs}:${st.size}`;
}

function checkFile(r: FileCheck, who: string): void {
  assert.equal(r.fstest, null, `fstest on the Data.fs ${who} left`);
  assert.equal(r.index_pos, r.size, `the index ${who} wrote covers the file`);
  assert.equal(r.used_index, 1, `ZODB opens the Data.fs ${who} left with its index`);
  assert.deepEqual(
    r.log.filter((l) => !/^(DEBUG|INFO|BLATHER|TRACE) /.test(l)),
    [],
  );
  assert.equal(r.tr0_after_open, false);
  assert.equal(r.last, r.tids[r.tids.length - 1]);
}

// ---------------------------------------------------------------------------------------------------------

interopTest(
  'one Data.fs with blobs served by runzeo, then zeo serve, then runzeo: every value, blob and tid survives',
  async (oracle, t) => {
    const dir = mkdtempSync(join(root, 'turns-'));
    const path = join(dir, 'Data.fs');
    const storages = `<filestorage 1>\n  path ${path}\n  blob-dir ${dir}/blobs\n</filestorage>\n`;
    const runzeoConf = writeConf(dir, 'runzeo.conf', await freePort(), storages);
    const oursConf = writeConf(dir, 'zeo.conf', 0, storages);
    const phases: Phase[] = [];
    const statuses: Array<{ who: string; status: Status }> = [];

    const turn = async (kind: ServerKind, name: string, blobSize: number): Promise<Phase> => {
      const prev = phases[phases.length - 1];
      const stampBefore = prev ? indexStamp(path) : null;
      const server = startServer(kind, kind === 'runzeo' ? runzeoConf : oursConf);
      try {
        const port = await server.port(30_000);
        const first = await ruok(port);
        assert.equal(first.proto, 'Z5');
        assert.equal(first.status['1']['last-transaction'], prev ? prev.after_last : '0000000000000000');
        const p = await py<Phase>(oracle, 'phase(("127.0.0.1", args[0]), args[1], args[2])', [
          port,
          name,
          blobSize,
        ]);
        // the index the other server wrote at exit was used as it was, not rebuilt at open
        if (stampBefore) assert.equal(indexStamp(path), stampBefore, `${kind} rebuilt the index at open`);
        const after = await ruok(port);
        assert.equal(after.status['1']['last-transaction'], p.after_last);
        statuses.push({ who: kind, status: after.status });
        if (kind === 'zeo-ts') {
          const nagios = await py<{ status: number | null; output: string }>(
            oracle,
            'nagios("127.0.0.1:%d" % args)',
            port,
          );
          assert.deepEqual(nagios, { status: null, output: 'OK\n' });
        }
        phases.push(p);
        return p;
      } finally {
        await server.stopCleanly();
        assert.doesNotMatch(server.stderr, /Ignoring index|loading index|truncat|Traceback/, server.stderr);
      }
    };

    // runzeo starts from nothing
    const p1 = await turn('runzeo', 'p1-runzeo', 300_000);
    // (opening the DB created the root object: one transaction before the phase wrote)
    assert.notEqual(p1.before_last, '0000000000000000');
    assert.deepEqual(p1.before, {});
    assert.deepEqual(Object.keys(p1.after), ['p1-runzeo']);
    assert.deepEqual(p1.after['p1-runzeo'].blob, [
      300_000,
      createHash('sha256').update(blobBytes('p1-runzeo', 300_000)).digest('hex'),
    ]);
    assert.equal(p1.after_last, p1.written_last);
    checkFile(await py<FileCheck>(oracle, 'check_copy(args)', path), 'runzeo');

    // zeo serve sees exactly what runzeo left, and its writes are read back
    const p2 = await turn('zeo-ts', 'p2-zeots', 1_500_000);
    assert.equal(p2.before_last, p1.after_last);
    assert.deepEqual(p2.before, p1.after);
    assert.equal(p2.after_last, p2.written_last);
    assert.ok(p2.after_last > p1.after_last);
    assert.deepEqual(Object.keys(p2.after), ['p1-runzeo', 'p2-zeots']);
    assert.deepEqual(p2.after['p1-runzeo'].history, ['p2-zeots']);
    assert.deepEqual(p2.after['p1-runzeo'].blob, [
      1000,
      createHash('sha256').update(blobBytes('p1-runzeo/p2-zeots', 1000)).digest('hex'),
    ]);
    assert.deepEqual(p2.after['p2-zeots'].blob, [
      1_500_000,
      createHash('sha256').update(blobBytes('p2-zeots', 1_500_000)).digest('hex'),
    ]);
    assert.deepEqual(p2.after['p2-zeots'].tree, [25, 'p2-zeots-0000', 'p2-zeots-0024', 72]);
    assert.equal(p2.after['p2-zeots'].s, 'p2-zeots — héllo');
    assert.equal(p2.after['p2-zeots'].done, true);
    checkFile(await py<FileCheck>(oracle, 'check_copy(args)', path), 'zeo serve');

    // runzeo again: zeo-ts's Data.fs, index and blob files
    const p3 = await turn('runzeo', 'p3-runzeo', 50_000);
    assert.equal(p3.before_last, p2.after_last);
    assert.deepEqual(p3.before, p2.after);
    assert.deepEqual(Object.keys(p3.after), ['p1-runzeo', 'p2-zeots', 'p3-runzeo']);
    assert.deepEqual(p3.after['p1-runzeo'].history, ['p2-zeots', 'p3-runzeo']);
    assert.deepEqual(p3.after['p2-zeots'].history, ['p3-runzeo']);
    const final = await py<FileCheck>(oracle, 'check_copy(args)', path);
    checkFile(final, 'runzeo');
    assert.equal(final.last, p3.after_last);
    // the root's creation, then two transactions per phase
    assert.equal(final.tids.length, 7);
    assert.deepEqual(
      [final.tids[2], final.tids[4], final.tids[6]],
      [p1.after_last, p2.after_last, p3.after_last],
    );

    // ruok: zeo serve's status has runzeo's keys, in runzeo's order, with runzeo's types
    const theirs = statuses.find((s) => s.who === 'runzeo')!.status;
    const ours = statuses.find((s) => s.who === 'zeo-ts')!.status;
    t.diagnostic(`runzeo ruok: ${JSON.stringify(theirs)}`);
    t.diagnostic(`zeo serve ruok: ${JSON.stringify(ours)}`);
    assertSameShape(ours, theirs);
  },
  { timeout: 180_000 },
);

interopTest(
  'ruok and zeo-nagios answer as runzeo does ("Empty storage", then OK); the same work gives the same counters, records and blob files',
  async (oracle, t) => {
    const dir = mkdtempSync(join(root, 'empty-'));
    const storages = (tag: string): string =>
      `<filestorage 1>\n  path ${dir}/${tag}.fs\n  blob-dir ${dir}/${tag}-blobs\n</filestorage>\n` +
      `<mappingstorage scratch>\n</mappingstorage>\n`;
    const theirs = startServer('runzeo', writeConf(dir, 'runzeo.conf', await freePort(), storages('runzeo')));
    const ours = startServer('zeo-ts', writeConf(dir, 'zeo.conf', 0, storages('ours')));
    try {
      const [theirPort, ourPort] = await Promise.all([theirs.port(30_000), ours.port(30_000)]);
      const [a, b] = await Promise.all([ruok(theirPort), ruok(ourPort)]);
      assertSameShape(b.status, a.status);
      assert.equal(b.proto, a.proto);
      // json.dumps's separators
      assert.match(b.text, /^\{"1": \{"[^"]+": /);
      for (const name of ['1', 'scratch']) {
        assert.equal(b.status[name]['last-transaction'], '0000000000000000');
        for (const k of ['connections', 'loads', 'stores', 'commits', 'aborts', 'active_txns', 'waiting'])
          assert.equal(b.status[name][k], a.status[name][k], `${name}.${k}`);
      }
      type Nagios = { status: number | null; output: string };
      const nagios = (port: number, ...opts: string[]): Promise<Nagios> =>
        py<Nagios>(oracle, 'nagios("127.0.0.1:%d" % args[0], *args[1])', [port, opts]);
      const expected = await nagios(theirPort);
      assert.deepEqual(expected, { status: 1, output: "Empty storage '1'\nEmpty storage 'scratch'\n" });
      assert.deepEqual(await nagios(ourPort), expected);
      assert.deepEqual(await nagios(ourPort, '-m'), await nagios(theirPort, '-m'));

      // the same client work on both: the same counters, and nagios says OK
      for (const port of [theirPort, ourPort]) {
        await py(oracle, 'roundtrip(("127.0.0.1", args), "1", "a", "one")', port);
        await py(oracle, 'roundtrip(("127.0.0.1", args), "scratch", "b", "two")', port);
      }
      const idle = async (port: number): Promise<Status> => {
        for (let i = 0; ; i++) {
          const { status } = await ruok(port);
          if (Object.values(status).every((s) => s.connections === 0) || i > 100) return status;
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      const [c, d] = await Promise.all([idle(theirPort), idle(ourPort)]);
      const counters = (st: Status): unknown =>
        Object.fromEntries(
          Object.entries(st).map(([name, s]) => [
            name,
            Object.fromEntries(Object.entries(s).filter(([k]) => !['start', 'last-transaction'].includes(k))),
          ]),
        );
      assert.deepEqual(counters(d), counters(c));
      t.diagnostic(`after the same work: ${JSON.stringify(counters(d))}`);
      assert.deepEqual(await nagios(ourPort), { status: null, output: 'OK\n' });
      assert.deepEqual(await nagios(ourPort, '-m'), await nagios(theirPort, '-m'));

      // and the same with blobs
      for (const port of [theirPort, ourPort]) {
        await py(oracle, 'phase(("127.0.0.1", args), "b1", 3000)', port);
        await py(oracle, 'phase(("127.0.0.1", args), "b2", 200000)', port);
      }
      const [e, f] = await Promise.all([idle(theirPort), idle(ourPort)]);
      assert.deepEqual(counters(f), counters(e));
    } finally {
      await Promise.all([theirs.stopCleanly(), ours.stopCleanly()]);
    }
    // the same records in the same transactions (a blob's record twice, as ZEO's server stores it), the same
    // blob files
    type Layout = { txns: number[][]; blobs: Record<string, string[]> };
    const theirLayout = await py<Layout>(oracle, 'layout(args[0], args[1])', [
      join(dir, 'runzeo.fs'),
      join(dir, 'runzeo-blobs'),
    ]);
    const ourLayout = await py<Layout>(oracle, 'layout(args[0], args[1])', [
      join(dir, 'ours.fs'),
      join(dir, 'ours-blobs'),
    ]);
    assert.deepEqual(ourLayout, theirLayout);
    assert.ok(Object.keys(theirLayout.blobs).length >= 2);
  },
  { timeout: 120_000 },
);
