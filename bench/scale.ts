// npm run bench -- scale [--objects N] [--rebuild] [--rounds N] [--loads N]
// Memory and time at scale (issue 11, deliverable 4): a Data.fs of N objects (default 1,000,000) opened and
// served by runzeo's storage and by ours, each in a fresh process, with its Data.fs.index and without (a full
// scan):
//   - the storage alone: Python's FileStorage(path, read_only=True) against our FileStorage.open(readOnly),
//     wall time of the open and the process's RSS after it (VmRSS) and at its peak (VmHWM), and the growth of
//     RSS over the open per object; ours also when every bucket of the index is read (our open leaves the big
//     buckets in Data.fs.index, read in the background right after);
//   - the server: runzeo against `zeo serve` on a copy of the files, the time from spawn until a client's
//     register is answered, RSS then, and RSS and the server's CPU after `--loads` loadBefore calls of
//     uniformly random oids (64 in flight on one connection); the same servers on an empty Data.fs give each
//     process's own footprint, so the growth per object is the index's and the data's.
// Each figure is the median of --rounds fresh processes, ours and Python's alternating.
// The Data.fs is built once by Python's FileStorage (kept under $TMPDIR/zeo-ts-bench-scale/): transactions of
// 200 new PersistentMapping-shaped objects (a title, counters, a list, a persistent reference to a parent),
// then a tenth of the objects changed once and a hundredth twice more, in transactions of 50.
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { p64 } from '../src/storage/ids.js';
import { oraclePython, repoRoot } from '../test/helpers/oracle.js';
import { RawClient } from '../test/helpers/raw-client.js';
import { freePort, zeoNodeFlags } from '../test/helpers/server-process.js';
import {
  arg,
  machineDescription,
  median,
  oracleVersions,
  printTable,
  processCpuSeconds,
  runPython,
  runRecord,
  sleep,
  stopProcess,
  writeResult,
} from './report.js';

const num = (name: string, dflt: number): number => Number(arg(name) ?? dflt);

const OBJECTS = num('objects', 1_000_000);
const ROUNDS = num('rounds', 3);
const LOADS = num('loads', 100_000);
/** loads one at a time right after the first reply (their CPU: a fresh server's, as short sessions see it) */
const FIRST_LOADS = 2000;
const REBUILD = process.argv.includes('--rebuild');
const ZEO_BIN = resolve(repoRoot, 'bin/zeo');
const log = (s: string): void => void process.stderr.write(s + '\n');

const PY_BUILD = `
import io, json, pickle, sys, time
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import p64, z64
path, n = sys.argv[1], int(sys.argv[2])
META = ('persistent.mapping', 'PersistentMapping')
class Ref:
    def __init__(self, oid): self.oid = oid
class P(pickle.Pickler):
    def persistent_id(self, obj):
        return (p64(obj.oid), META) if isinstance(obj, Ref) else None
def rec(i, rev):
    f = io.BytesIO()
    p = P(f, 3)
    p.dump(META)
    p.dump({'data': {'title': 'object %d' % i, 'rev': rev, 'count': i * 7 % 1000,
                     'tags': ['t%d' % (i % 13), 't%d' % (i % 31)], 'parent': Ref(i // 16)}})
    return f.getvalue()
t0 = time.time()
fs = FileStorage(path, create=True)
serials = {}
def commit(oids, rev, note):
    t = TransactionMetaData(b'bench', note)
    fs.tpc_begin(t)
    for i in oids:
        fs.store(p64(i), serials.get(i, z64), rec(i, rev), '', t)
    fs.tpc_vote(t)
    tid = fs.tpc_finish(t)
    for i in oids:
        serials[i] = tid
for start in range(0, n, 200):
    commit(range(start, min(n, start + 200)), 0, b'add')
for rev, step in ((1, 10), (2, 100), (3, 100)):
    ids = list(range(rev, n, step))
    for k in range(0, len(ids), 50):
        commit(ids[k:k + 50], rev, b'change')
records = n + len(range(1, n, 10)) + len(range(2, n, 100)) + len(range(3, n, 100))
fs.close()
print(json.dumps({'objects': n, 'records': records, 'seconds': time.time() - t0}))
`;

// the open in a fresh process (modules imported first, not timed): ms, RSS before and after, peak RSS
const PY_OPEN = `
import json, sys, time
from ZODB.FileStorage import FileStorage
def status():
    d = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('VmRSS', 'VmHWM', 'RssAnon'): d[k] = int(v.split()[0]) * 1024
    return d
before = status()['VmRSS']
t0 = time.perf_counter()
fs = FileStorage(sys.argv[1], read_only=True)
ms = (time.perf_counter() - t0) * 1000
s = status()
n = len(fs._index)
fs.close()
print(json.dumps({'ms': ms, 'rssBefore': before, 'rss': s['VmRSS'], 'peak': s['VmHWM'],
                  'fullMs': ms, 'fullRss': s['VmRSS'], 'fullAnon': s['RssAnon'], 'objects': n}))
`;

function nodeOpenScript(path: string): string {
  const fsUrl = pathToFileURL(resolve(repoRoot, 'dist/src/storage/filestorage/file-storage.js')).href;
  return `
import { readFileSync } from 'node:fs';
const { FileStorage } = await import(${JSON.stringify(fsUrl)});
const status = () => Object.fromEntries(readFileSync('/proc/self/status', 'utf8').split('\\n')
  .map((l) => l.split(':')).filter(([k]) => k === 'VmRSS' || k === 'VmHWM' || k === 'RssAnon')
  .map(([k, v]) => [k, parseInt(v) * 1024]));
const before = status().VmRSS;
const t0 = performance.now();
const fs = await FileStorage.open(${JSON.stringify(path)}, { readOnly: true });
const ms = performance.now() - t0;
const s = status();
// every bucket of the index read (open leaves the big ones in Data.fs.index, read in the background)
for (let w = fs.index.pendingAll(); w !== null; w = fs.index.pendingAll()) await w;
fs.index.readAll();
const fullMs = performance.now() - t0;
const f = status();
const objects = fs.len();
await fs.close();
console.log(JSON.stringify({ ms, rssBefore: before, rss: s.VmRSS, peak: f.VmHWM, fullMs, fullRss: f.VmRSS, fullAnon: f.RssAnon, objects }));
`;
}

/**
 * zeo-ts's read cache after the servers' random loads (the same oids, through loadBefore, in a storage alone in
 * a fresh process): the bytes it holds and allocates, the part of our server's RSS that runzeo leaves to the
 * system's page cache.
 */
function readCacheAfterLoads(
  path: string,
  loads: number,
): { allocated: number; bytes: number; capacity: number } {
  const fsUrl = pathToFileURL(resolve(repoRoot, 'dist/src/storage/filestorage/file-storage.js')).href;
  const idsUrl = pathToFileURL(resolve(repoRoot, 'dist/src/storage/ids.js')).href;
  const script = `
const { FileStorage } = await import(${JSON.stringify(fsUrl)});
const { p64 } = await import(${JSON.stringify(idsUrl)});
const fs = await FileStorage.open(${JSON.stringify(path)}, { readOnly: true });
const tid = p64(0x7fffffffffffffffn);
let x = 12345;
for (let i = 0; i < ${loads + 1 + FIRST_LOADS}; i++) {
  x = (x * 48271) % 2147483647;
  const oid = p64(x % ${OBJECTS});
  if (fs.loadBeforeCached(oid, tid) === undefined) await fs.loadBefore(oid, tid);
}
const c = fs.cacheStats();
await fs.close();
console.log(JSON.stringify({ allocated: c.allocated, bytes: c.bytes, capacity: c.capacity }));
`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`read cache measure failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { allocated: number; bytes: number; capacity: number };
}

interface OpenFigures {
  ms: number;
  rssBefore: number;
  rss: number;
  peak: number;
  fullMs: number;
  fullRss: number;
  /** RssAnon at the end: the process's own memory (VmRSS also counts the mapped executable and libraries) */
  fullAnon: number;
  objects: number;
}

function openOnce(kind: Kind, path: string): OpenFigures {
  const r =
    kind === 'runzeo'
      ? spawnSync(oraclePython(), ['-c', PY_OPEN, path], { encoding: 'utf8' })
      : spawnSync(process.execPath, ['--input-type=module', '-e', nodeOpenScript(path)], {
          encoding: 'utf8',
        });
  if (r.status !== 0) throw new Error(`open (${kind}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as OpenFigures;
}

type Kind = 'runzeo' | 'zeo-ts';

function procStatus(pid: number): { rss: number; peak: number; anon: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM'), anon: kb('RssAnon') };
}

interface ServeFigures {
  /** spawn until register answered */
  startMs: number;
  /** spawn until the first loadBefore (sent once registered) answered */
  firstReplyMs: number;
  /** server CPU per load over the first FIRST_LOADS loads, one at a time, right after the first */
  firstLoadsCpuUs: number;
  rss: number;
  peak: number;
  /** after the loads */
  servedRss: number;
  servedPeak: number;
  /** RssAnon after the loads */
  servedAnon: number;
  loadCpuUs: number;
  loadsPerSecond: number;
}

/** `kind` serving `dataFs` (copied, with its index when there is one), started, registered and loaded. */
async function serveOnce(
  kind: Kind,
  dataFs: string | null,
  dir: string,
  loads: number,
): Promise<ServeFigures> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'Data.fs');
  if (dataFs !== null) {
    copyFileSync(dataFs, path);
    if (existsSync(dataFs + '.index')) copyFileSync(dataFs + '.index', path + '.index');
  }
  const port = await freePort();
  const args = ['-a', `127.0.0.1:${port}`, '-f', path];
  const t0 = performance.now();
  const proc =
    kind === 'runzeo'
      ? spawn(oraclePython(), ['-m', 'ZEO.runzeo', ...args], { cwd: dir, stdio: 'ignore' })
      : spawn(process.execPath, [...zeoNodeFlags, ZEO_BIN, 'serve', ...args], { cwd: dir, stdio: 'ignore' });
  let exited = false;
  proc.on('exit', () => (exited = true));
  const pid = proc.pid!;
  try {
    let client: RawClient | null = null;
    while (client === null) {
      try {
        client = await RawClient.open({ host: '127.0.0.1', port });
      } catch {
        if (exited) throw new Error(`${kind} exited before answering register`);
        if (performance.now() - t0 > 600_000) throw new Error(`${kind} did not answer register`);
        await sleep(5);
      }
    }
    const startMs = performance.now() - t0;
    const started = procStatus(pid);
    let loadCpuUs = 0;
    let loadsPerSecond = 0;
    let firstReplyMs = 0;
    let firstLoadsCpuUs = 0;
    if (loads > 0) {
      const tid = p64(0x7fffffffffffffffn);
      let x = 12345;
      // what a short tool session sees: the first reply, then loads one at a time on a freshly started server
      const nextOid = (): Uint8Array => {
        x = (x * 48271) % 2147483647;
        return p64(x % OBJECTS);
      };
      await client.call('loadBefore', [nextOid(), tid]);
      firstReplyMs = performance.now() - t0;
      const f0 = processCpuSeconds(pid);
      for (let i = 0; i < FIRST_LOADS; i++) await client.call('loadBefore', [nextOid(), tid]);
      firstLoadsCpuUs = ((processCpuSeconds(pid) - f0) / FIRST_LOADS) * 1e6;
      const c0 = processCpuSeconds(pid);
      const l0 = performance.now();
      const DEPTH = 64;
      for (let done = 0; done < loads; done += DEPTH) {
        const ids = [];
        for (let k = 0; k < DEPTH; k++) {
          x = (x * 48271) % 2147483647;
          ids.push(client.send('loadBefore', [p64(x % OBJECTS), tid]));
        }
        for (const id of ids) {
          const r = await client.reply(id, 60_000);
          if (r.flag === 2) throw new Error(`${kind}: loadBefore failed: ${JSON.stringify(r.result)}`);
        }
      }
      loadsPerSecond = loads / ((performance.now() - l0) / 1000);
      loadCpuUs = ((processCpuSeconds(pid) - c0) / loads) * 1e6;
    }
    const served = procStatus(pid);
    client.close();
    return {
      startMs,
      firstReplyMs,
      firstLoadsCpuUs,
      rss: started.rss,
      peak: started.peak,
      servedRss: served.rss,
      servedPeak: served.peak,
      servedAnon: served.anon,
      loadCpuUs,
      loadsPerSecond,
    };
  } finally {
    await stopProcess(proc);
    rmSync(dir, { recursive: true, force: true });
  }
}

function buildDataFs(): { path: string; records: number; buildSeconds: number } {
  const dir = join(tmpdir(), 'zeo-ts-bench-scale');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${OBJECTS}.fs`);
  const marker = path + '.built';
  if (REBUILD || !existsSync(marker) || !existsSync(path + '.index')) {
    for (const s of ['', '.index', '.lock', '.tmp', '.built']) rmSync(path + s, { force: true });
    log(`building ${path} (${OBJECTS} objects) with Python's FileStorage...`);
    const out = runPython(['-c', PY_BUILD, path, String(OBJECTS)], 3_600_000);
    writeFileSync(marker, out.trim() + '\n');
  }
  const built = JSON.parse(readFileSync(marker, 'utf8')) as { records: number; seconds: number };
  return { path, records: built.records, buildSeconds: built.seconds };
}

const MB = 2 ** 20;

function medianOf<T>(runs: T[], key: keyof T): number {
  return median(runs.map((r) => r[key] as number));
}

async function main(): Promise<void> {
  const date = new Date();
  const t00 = performance.now();
  const loadAverageAtStart = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const versions = oracleVersions();
  const data = buildDataFs();
  const size = statSync(data.path).size;
  const indexSize = statSync(data.path + '.index').size;
  log(
    `${data.path}: ${(size / 1e6).toFixed(0)} MB, ${data.records} records, index ${(indexSize / 1e6).toFixed(1)} MB`,
  );
  const work = join(tmpdir(), 'zeo-ts-bench-scale', 'run');
  const kinds: Kind[] = ['runzeo', 'zeo-ts'];
  const alternate = (round: number): Kind[] => (round % 2 === 0 ? kinds : [...kinds].reverse());

  // --- the storage alone, with the index file and without (moved aside: read-only opens write none)
  const opens: Record<'withIndex' | 'withoutIndex', Record<Kind, OpenFigures[]>> = {
    withIndex: { runzeo: [], 'zeo-ts': [] },
    withoutIndex: { runzeo: [], 'zeo-ts': [] },
  };
  log('storage opens with the index file...');
  for (let r = 0; r < ROUNDS; r++)
    for (const k of alternate(r)) opens.withIndex[k].push(openOnce(k, data.path));
  log('storage opens without it (a full scan)...');
  renameSync(data.path + '.index', data.path + '.index.aside');
  try {
    for (let r = 0; r < ROUNDS; r++)
      for (const k of alternate(r)) opens.withoutIndex[k].push(openOnce(k, data.path));
  } finally {
    renameSync(data.path + '.index.aside', data.path + '.index');
  }
  for (const o of [...opens.withIndex.runzeo, ...opens.withoutIndex['zeo-ts']])
    if (o.objects !== OBJECTS) throw new Error(`opened ${o.objects} objects, not ${OBJECTS}`);

  // --- the servers: on an empty Data.fs (their own footprint), then on the big one with and without index
  const serves: Record<'empty' | 'withIndex' | 'withoutIndex', Record<Kind, ServeFigures[]>> = {
    empty: { runzeo: [], 'zeo-ts': [] },
    withIndex: { runzeo: [], 'zeo-ts': [] },
    withoutIndex: { runzeo: [], 'zeo-ts': [] },
  };
  log('servers on an empty Data.fs...');
  for (let r = 0; r < ROUNDS; r++)
    for (const k of alternate(r)) serves.empty[k].push(await serveOnce(k, null, join(work, k), 0));
  log(`servers with the index file, then ${LOADS} random loads...`);
  for (let r = 0; r < ROUNDS; r++)
    for (const k of alternate(r))
      serves.withIndex[k].push(await serveOnce(k, data.path, join(work, k), LOADS));
  log('servers without it...');
  const bare = join(tmpdir(), 'zeo-ts-bench-scale', 'noindex');
  mkdirSync(bare, { recursive: true });
  const bareFs = join(bare, 'Data.fs');
  copyFileSync(data.path, bareFs);
  try {
    for (let r = 0; r < ROUNDS; r++)
      for (const k of alternate(r))
        serves.withoutIndex[k].push(await serveOnce(k, bareFs, join(work, k), LOADS));
  } finally {
    rmSync(bare, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }

  log(`zeo-ts's read cache after the same loads...`);
  const readCache = readCacheAfterLoads(data.path, LOADS);

  // --- the table
  const x = (theirs: number, ours: number): string => `${(theirs / ours).toFixed(2)}x`;
  const perObject = (bytes: number): string => (bytes / OBJECTS).toFixed(1);
  const rows: Array<Array<string | number>> = [];
  const summary: Record<string, unknown> = {};
  for (const which of ['withIndex', 'withoutIndex'] as const) {
    const label = which === 'withIndex' ? 'with index' : 'without index (scan)';
    const py = opens[which].runzeo;
    const ts = opens[which]['zeo-ts'];
    const m = (runs: OpenFigures[], k: keyof OpenFigures): number => medianOf(runs, k);
    rows.push(
      [
        `storage open, ${label}: ms`,
        m(ts, 'ms').toFixed(0),
        m(py, 'ms').toFixed(0),
        x(m(py, 'ms'), m(ts, 'ms')),
        '>= 2x',
      ],
      [
        `storage open, ${label}: ms until every index bucket read`,
        m(ts, 'fullMs').toFixed(0),
        m(py, 'fullMs').toFixed(0),
        x(m(py, 'fullMs'), m(ts, 'fullMs')),
        '',
      ],
      [
        `storage open, ${label}: RSS after, MiB`,
        (m(ts, 'fullRss') / MB).toFixed(0),
        (m(py, 'fullRss') / MB).toFixed(0),
        x(m(py, 'fullRss'), m(ts, 'fullRss')),
        '> 1x',
      ],
      [
        `storage open, ${label}: RssAnon after (own memory), MiB`,
        (m(ts, 'fullAnon') / MB).toFixed(0),
        (m(py, 'fullAnon') / MB).toFixed(0),
        x(m(py, 'fullAnon'), m(ts, 'fullAnon')),
        '',
      ],
      [
        `storage open, ${label}: peak RSS, MiB`,
        (m(ts, 'peak') / MB).toFixed(0),
        (m(py, 'peak') / MB).toFixed(0),
        x(m(py, 'peak'), m(ts, 'peak')),
        '> 1x',
      ],
      [
        `storage open, ${label}: RSS growth, bytes/object`,
        perObject(m(ts, 'fullRss') - m(ts, 'rssBefore')),
        perObject(m(py, 'fullRss') - m(py, 'rssBefore')),
        x(m(py, 'fullRss') - m(py, 'rssBefore'), m(ts, 'fullRss') - m(ts, 'rssBefore')),
        '',
      ],
    );
    summary[`storage-${which}`] = {
      runzeo: {
        ms: m(py, 'ms'),
        rss: m(py, 'fullRss'),
        anon: m(py, 'fullAnon'),
        peak: m(py, 'peak'),
        rssBefore: m(py, 'rssBefore'),
      },
      zeoTs: {
        ms: m(ts, 'ms'),
        fullMs: m(ts, 'fullMs'),
        rss: m(ts, 'fullRss'),
        rssAtOpen: m(ts, 'rss'),
        anon: m(ts, 'fullAnon'),
        peak: m(ts, 'peak'),
        rssBefore: m(ts, 'rssBefore'),
      },
    };
  }
  const m = (runs: ServeFigures[], k: keyof ServeFigures): number => medianOf(runs, k);
  const e = serves.empty;
  rows.push(
    [
      'server on an empty Data.fs: start until register answered, ms',
      m(e['zeo-ts'], 'startMs').toFixed(0),
      m(e.runzeo, 'startMs').toFixed(0),
      x(m(e.runzeo, 'startMs'), m(e['zeo-ts'], 'startMs')),
      '',
    ],
    [
      'server on an empty Data.fs: RSS, MiB',
      (m(e['zeo-ts'], 'rss') / MB).toFixed(0),
      (m(e.runzeo, 'rss') / MB).toFixed(0),
      x(m(e.runzeo, 'rss'), m(e['zeo-ts'], 'rss')),
      '',
    ],
    [
      'server on an empty Data.fs: RssAnon (own memory), MiB',
      (m(e['zeo-ts'], 'servedAnon') / MB).toFixed(0),
      (m(e.runzeo, 'servedAnon') / MB).toFixed(0),
      x(m(e.runzeo, 'servedAnon'), m(e['zeo-ts'], 'servedAnon')),
      '',
    ],
  );
  for (const which of ['withIndex', 'withoutIndex'] as const) {
    const label = which === 'withIndex' ? 'with index' : 'without index';
    const py = serves[which].runzeo;
    const ts = serves[which]['zeo-ts'];
    rows.push(
      [
        `server ${label}: start until register answered, ms`,
        m(ts, 'startMs').toFixed(0),
        m(py, 'startMs').toFixed(0),
        x(m(py, 'startMs'), m(ts, 'startMs')),
        '>= 2x',
      ],
      [
        `server ${label}: start until the first load answered, ms`,
        m(ts, 'firstReplyMs').toFixed(0),
        m(py, 'firstReplyMs').toFixed(0),
        x(m(py, 'firstReplyMs'), m(ts, 'firstReplyMs')),
        '',
      ],
      [
        `server ${label}: CPU per load, the first ${FIRST_LOADS} one at a time after start, µs`,
        m(ts, 'firstLoadsCpuUs').toFixed(1),
        m(py, 'firstLoadsCpuUs').toFixed(1),
        x(m(py, 'firstLoadsCpuUs'), m(ts, 'firstLoadsCpuUs')),
        '>= 1x',
      ],
      [
        `server ${label}: RSS when registered, MiB`,
        (m(ts, 'rss') / MB).toFixed(0),
        (m(py, 'rss') / MB).toFixed(0),
        x(m(py, 'rss'), m(ts, 'rss')),
        '> 1x',
      ],
      [
        `server ${label}: RSS when registered over an idle server's on an empty Data.fs, MiB`,
        ((m(ts, 'rss') - m(e['zeo-ts'], 'rss')) / MB).toFixed(0),
        ((m(py, 'rss') - m(e.runzeo, 'rss')) / MB).toFixed(0),
        x(m(py, 'rss') - m(e.runzeo, 'rss'), m(ts, 'rss') - m(e['zeo-ts'], 'rss')),
        '',
      ],
      [
        `server ${label}: RSS after ${LOADS} random loads, MiB`,
        (m(ts, 'servedRss') / MB).toFixed(0),
        (m(py, 'servedRss') / MB).toFixed(0),
        x(m(py, 'servedRss'), m(ts, 'servedRss')),
        '> 1x',
      ],
      [
        `server ${label}: RSS after the loads over an idle server's on an empty Data.fs, MiB`,
        ((m(ts, 'servedRss') - m(e['zeo-ts'], 'rss')) / MB).toFixed(0),
        ((m(py, 'servedRss') - m(e.runzeo, 'rss')) / MB).toFixed(0),
        x(m(py, 'servedRss') - m(e.runzeo, 'rss'), m(ts, 'servedRss') - m(e['zeo-ts'], 'rss')),
        '',
      ],
      [
        `server ${label}: RssAnon after the loads (own memory), MiB`,
        (m(ts, 'servedAnon') / MB).toFixed(0),
        (m(py, 'servedAnon') / MB).toFixed(0),
        x(m(py, 'servedAnon'), m(ts, 'servedAnon')),
        '',
      ],
      [
        `server ${label}: peak RSS, MiB`,
        (m(ts, 'servedPeak') / MB).toFixed(0),
        (m(py, 'servedPeak') / MB).toFixed(0),
        x(m(py, 'servedPeak'), m(ts, 'servedPeak')),
        '> 1x',
      ],
      [
        `server ${label}: RSS over the empty server's after loads, bytes/object`,
        perObject(m(ts, 'servedRss') - m(e['zeo-ts'], 'rss')),
        perObject(m(py, 'servedRss') - m(e.runzeo, 'rss')),
        x(m(py, 'servedRss') - m(e.runzeo, 'rss'), m(ts, 'servedRss') - m(e['zeo-ts'], 'rss')),
        '',
      ],
      [
        `server ${label}: CPU per load (the ${LOADS} after those, 64 in flight), µs`,
        m(ts, 'loadCpuUs').toFixed(1),
        m(py, 'loadCpuUs').toFixed(1),
        x(m(py, 'loadCpuUs'), m(ts, 'loadCpuUs')),
        '',
      ],
    );
  }
  rows.push([
    `read cache after the servers' loads (a storage alone, the same loads): allocated (of its ${(readCache.capacity / MB).toFixed(0)} MiB bound) / record bytes, MiB`,
    `${(readCache.allocated / MB).toFixed(0)} / ${(readCache.bytes / MB).toFixed(0)}`,
    '-',
    '',
    '',
  ]);
  summary.readCache = readCache;
  printTable(
    `scale: Data.fs of ${OBJECTS.toLocaleString('en-US')} objects (${data.records.toLocaleString('en-US')} records, ` +
      `${(size / 1e6).toFixed(0)} MB, index ${(indexSize / 1e6).toFixed(0)} MB); medians of ${ROUNDS} fresh ` +
      `processes; runzeo = ZODB ${versions.ZODB}'s FileStorage / ZEO ${versions.ZEO}'s runzeo; ratio > 1: zeo-ts better`,
    ['measure', 'zeo-ts', 'runzeo', 'ratio', 'target'],
    rows,
  );
  const seconds = (performance.now() - t00) / 1000;
  writeResult(
    'scale',
    date,
    {
      ...runRecord('scale', date, versions, { loadAverageAtStart, benchSeconds: seconds }),
      machine: machineDescription(),
      objects: OBJECTS,
      records: data.records,
      dataFsBytes: size,
      indexFileBytes: indexSize,
      buildSeconds: data.buildSeconds,
      rounds: ROUNDS,
      loads: LOADS,
      medians: summary,
      opens,
      serves,
      table: rows,
    },
    seconds,
  );
}

await main();
