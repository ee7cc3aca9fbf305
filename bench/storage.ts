// npm run bench -- storage [--objects N] [--rebuild] [--rounds N] [--seconds S]
// FileStorage beside Python's (ZODB's FileStorage, in the oracle venv) on the same files, in the same run:
//   - index memory per object: ours (FsIndex: the growth of V8's heap and array buffers) as opened from
//     Data.fs.index (pages unread), after every page is read, and as built by a scan; ZODB's fsIndex (the
//     growth of the process's resident set) loaded from the index file and built by a scan; target <= 24;
//   - time to open a Data.fs of N objects (default 1M) read-only, with and without Data.fs.index: warm (the
//     median of several opens in one process) and cold (the first open in a fresh process, the modules already
//     imported); target: at most half of Python's;
//   - open with the index file and then one loadBefore (the time to a first answer: our open leaves the
//     index's big buckets in Data.fs.index, loaded in the background or when a load needs one);
//   - loadBefore per second from the page cache (current revisions), one at a time (as Python calls it)
//     and, ours, 16 at a time (the server's case: loads are async), for three workloads, each side warmed
//     the same way: uniform random oids over all N objects (a fresh oid each time: our record cache cannot
//     help, every load is a read from the thread pool), a working set of 100,000 random oids and a hot set
//     of 10,000, each read once through before timing (they fit our default 64 MiB cache); with our cache's
//     hit rate and memory;
//   - `zeo verify` beside ZODB's fstest on the whole file;
//   - small commits per second, each durable before it returns (ours: one fdatasync at finish, through the
//     thread pool, as the bench sets no mayFlushInline; ZODB: fsync at finish).
// The Data.fs is built by Python (FileStorage, transactions of 50,000 new objects, then every 10th object
// changed) once and kept in the system's temp directory (--rebuild builds it again).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { verifyDataFile } from '../src/storage/filestorage/fstest.js';
import { dumps, tuple } from '../src/pickle/index.js';
import { DEFAULT_CACHE_BYTES, FileStorage } from '../src/storage/filestorage/file-storage.js';
import { scanDataPath } from '../src/storage/filestorage/scan.js';
import { p64, u64, z64 } from '../src/storage/ids.js';
import { TransactionMetaData } from '../src/storage/interfaces.js';
import { Oracle, oraclePython, repoRoot } from '../test/helpers/oracle.js';
import { printTable } from './report.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const OBJECTS = arg('objects', 1_000_000);
const ROUNDS = arg('rounds', 15);
const SECONDS = arg('seconds', 2);
const REBUILD = process.argv.includes('--rebuild');

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const now = (): number => performance.now();
const log = (s: string): void => void process.stderr.write(s + '\n');

const PY_BUILD = `
import time
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import p64, z64
from ZODB._compat import dumps
path, n = args['path'], args['n']
fs = FileStorage(path, create=True)
def rec(i, extra=''):
    return (dumps(('persistent.mapping', 'PersistentMapping'), 3)
            + dumps({'data': {'i': i, 'name': 'object %d%s' % (i, extra)}}, 3))
per = 50000
serials = {}
for start in range(0, n, per):
    t = TransactionMetaData(b'bench', b'batch %d' % start)
    fs.tpc_begin(t)
    for i in range(start, min(n, start + per)):
        fs.store(p64(i), z64, rec(i), '', t)
    fs.tpc_vote(t)
    tid = fs.tpc_finish(t)
    for i in range(start, min(n, start + per)):
        serials[i] = tid
ids = list(range(0, n, 10))
for k in range(0, len(ids), 20000):
    t = TransactionMetaData(b'bench', b'update')
    fs.tpc_begin(t)
    for i in ids[k:k + 20000]:
        fs.store(p64(i), serials[i], rec(i, ' changed'), '', t)
    fs.tpc_vote(t)
    fs.tpc_finish(t)
fs.close()
result = None
`;

const PY_OPEN = `
import time
from ZODB.FileStorage import FileStorage
ts = []
for i in range(args['rounds']):
    t0 = time.perf_counter()
    fs = FileStorage(args['path'], read_only=True)
    t1 = time.perf_counter()
    used = fs._used_index
    fs.close()
    ts.append(t1 - t0)
result = {'times': ts, 'usedIndex': used}
`;

// BTrees allocates with malloc, which tracemalloc does not see: the growth of the resident set it is, in a
// fresh process (in a process that has freed an index before, the allocator reuses that memory)
const PY_MEMORY = `
import gc, json, os, sys
args = json.loads(sys.argv[1])
from ZODB.fsIndex import fsIndex
from ZODB.FileStorage import FileStorage
def rss():
    gc.collect()
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
out = {}
if args['mode'] == 'load':
    base = rss()
    info = fsIndex.load(args['path'] + '.index')
    out['bytes'] = rss() - base
    out['n'] = len(info['index'])
    del info
else:
    base = rss()
    fs = FileStorage(args['path'], read_only=True)
    out['bytes'] = rss() - base
    out['n'] = len(fs._index)
    fs.close()
print(json.dumps(out))
`;

// the workloads of loads(): 'uniform' draws a fresh oid for each load (a list of UNIFORM_OIDS, gone through
// once, more than either side loads in the time); a set of `size` oids is read once through, then cycled
const UNIFORM_OIDS = 500_000;
const PY_LOADS = `
import time, random
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64, u64
fs = FileStorage(args['path'], read_only=True)
try:
    tid = p64(u64(fs.lastTransaction()) + 1)
    rnd = random.Random(1)
    size = args['size']
    oids = [p64(rnd.randrange(args['n'])) for _ in range(size)]
    if args['warm']:
        for o in oids:
            fs.loadBefore(o, tid)
    count = 0
    i = 0
    t0 = time.perf_counter()
    while True:
        for o in oids[i:i + 10000]:
            fs.loadBefore(o, tid)
        count += 10000
        i = (i + 10000) % size
        dt = time.perf_counter() - t0
        if dt >= args['seconds']:
            break
    result = count / dt
finally:
    fs.close()
`;

const PY_OPEN_LOAD = `
import time
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64, u64
ts = []
for i in range(args['rounds']):
    t0 = time.perf_counter()
    fs = FileStorage(args['path'], read_only=True)
    fs.loadBefore(p64(args['oid']), p64(u64(fs.lastTransaction()) + 1))
    t1 = time.perf_counter()
    fs.close()
    ts.append(t1 - t0)
result = ts
`;

const PY_COMMITS = `
import time
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import p64, z64
from ZODB._compat import dumps
fs = FileStorage(args['path'], create=True)
try:
    data = dumps(('persistent.mapping', 'PersistentMapping'), 3) + dumps({'data': {'x': 'y' * 60}}, 3)
    serial = z64
    oid = p64(1)
    count = 0
    t0 = time.perf_counter()
    while True:
        t = TransactionMetaData(b'bench', b'small commit')
        fs.tpc_begin(t)
        fs.store(oid, serial, data, '', t)
        fs.tpc_vote(t)
        serial = fs.tpc_finish(t)
        count += 1
        dt = time.perf_counter() - t0
        if dt >= args['seconds']:
            break
    result = count / dt
finally:
    fs.close()
`;

function memory(): number {
  for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** The first open in a fresh process (modules imported first, not timed), ms; the median of `n` processes. */
function coldOpens(path: string, n: number): { ours: number; python: number } {
  const fsUrl = pathToFileURL(resolve(repoRoot, 'dist/src/storage/filestorage/file-storage.js')).href;
  const nodeScript =
    `const { FileStorage } = await import(${JSON.stringify(fsUrl)});\n` +
    `const t0 = performance.now();\n` +
    `const fs = await FileStorage.open(${JSON.stringify(path)}, { readOnly: true });\n` +
    `const dt = performance.now() - t0;\n` +
    `await fs.close();\n` +
    `console.log(dt);\n`;
  const pyScript =
    `import time\nfrom ZODB.FileStorage import FileStorage\n` +
    `t0 = time.perf_counter()\nfs = FileStorage(${JSON.stringify(path)}, read_only=True)\n` +
    `dt = time.perf_counter() - t0\nfs.close()\nprint(dt * 1000)\n`;
  const ours: number[] = [];
  const python: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = spawnSync(process.execPath, ['--input-type=module', '-e', nodeScript], { encoding: 'utf8' });
    if (a.status !== 0) throw new Error(`cold open (node) failed: ${a.stderr}`);
    ours.push(Number(a.stdout.trim()));
    const b = spawnSync(oraclePython(), ['-c', pyScript], { encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`cold open (python) failed: ${b.stderr}`);
    python.push(Number(b.stdout.trim()));
  }
  return { ours: median(ours), python: median(python) };
}

function pyMemory(path: string, mode: 'load' | 'scan'): { bytes: number; n: number } {
  const r = spawnSync(oraclePython(), ['-c', PY_MEMORY, JSON.stringify({ path, mode })], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`python memory (${mode}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { bytes: number; n: number };
}

async function warmOpens(path: string, rounds: number): Promise<{ ms: number; usedIndex: boolean }> {
  const times: number[] = [];
  let usedIndex = false;
  for (let i = 0; i < rounds + 1; i++) {
    const t0 = now();
    const fs = await FileStorage.open(path, { readOnly: true });
    const dt = now() - t0;
    await fs.close();
    if (i > 0) times.push(dt); // the first is the cold one
    usedIndex = statSync(path + '.index', { throwIfNoEntry: false }) !== undefined;
  }
  return { ms: median(times), usedIndex };
}

interface LoadFigures {
  perSecond: number;
  hitRate: number;
  /** the cache's allocated bytes at the end (its bound: its capacity) */
  cacheBytes: number;
  cacheEntries: number;
}

async function ourLoads(
  path: string,
  concurrency: number,
  size: number,
  warm: boolean,
): Promise<LoadFigures> {
  const fs = await FileStorage.open(path, { readOnly: true });
  try {
    const tid = p64(u64(fs.lastTransaction()) + 1n);
    let x = 1;
    const oids = Array.from({ length: size }, () => {
      x = (x * 48271) % 2147483647;
      return p64(x % OBJECTS);
    });
    const runBatch = async (from: number, count: number): Promise<void> => {
      if (concurrency === 1) {
        for (let i = from; i < from + count; i++) await fs.loadBefore(oids[i % size], tid);
        return;
      }
      let next = from;
      const worker = async (): Promise<void> => {
        while (next < from + count) await fs.loadBefore(oids[next++ % size], tid);
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
    };
    if (warm) await runBatch(0, size);
    const before = fs.cacheStats();
    let done = 0;
    const t0 = now();
    for (;;) {
      await runBatch(done, 10_000);
      done += 10_000;
      const dt = (now() - t0) / 1000;
      if (dt >= SECONDS) {
        const after = fs.cacheStats();
        const hits = (after?.hits ?? 0) - (before?.hits ?? 0);
        const misses = (after?.misses ?? 0) - (before?.misses ?? 0);
        return {
          perSecond: done / dt,
          hitRate: hits + misses ? hits / (hits + misses) : 0,
          cacheBytes: after?.allocated ?? 0,
          cacheEntries: after?.entries ?? 0,
        };
      }
    }
  } finally {
    await fs.close();
  }
}

/** open, then one loadBefore of `oid` (the median of `rounds`, after one not counted), ms */
async function ourOpenLoad(path: string, oid: number, rounds: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds + 1; i++) {
    const t0 = now();
    const fs = await FileStorage.open(path, { readOnly: true });
    await fs.loadBefore(p64(oid), p64(u64(fs.lastTransaction()) + 1n));
    const dt = now() - t0;
    await fs.close();
    if (i > 0) times.push(dt);
  }
  return median(times);
}

async function ourCommits(path: string): Promise<number> {
  const fs = await FileStorage.open(path, { create: true });
  try {
    // the same record as the Python side's
    const data = Buffer.concat([
      dumps(tuple('persistent.mapping', 'PersistentMapping'), 3),
      dumps(new Map([['data', new Map([['x', 'y'.repeat(60)]])]]), 3),
    ]);
    const oid = p64(1);
    let serial = z64;
    let count = 0;
    const t0 = now();
    for (;;) {
      const txn = new TransactionMetaData(Buffer.from('bench'), Buffer.from('small commit'));
      await fs.tpcBegin(txn);
      await fs.store(oid, serial, data, txn);
      await fs.tpcVote(txn);
      serial = await fs.tpcFinish(txn);
      count++;
      const dt = (now() - t0) / 1000;
      if (dt >= SECONDS) return count / dt;
    }
  } finally {
    await fs.close();
  }
}

async function main(): Promise<void> {
  const dir = join(tmpdir(), 'zeo-ts-bench-storage');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${OBJECTS}.fs`);
  const marker = path + '.built';
  const oracle = new Oracle();
  try {
    if (REBUILD || !existsSync(marker) || !existsSync(path + '.index')) {
      for (const s of ['', '.index', '.lock', '.tmp', '.built']) rmSync(path + s, { force: true });
      log(`building ${path} (${OBJECTS} objects) with Python's FileStorage...`);
      const t0 = now();
      await oracle.run(PY_BUILD, undefined, { path, n: OBJECTS });
      writeFileSync(marker, JSON.stringify({ objects: OBJECTS, seconds: (now() - t0) / 1000 }) + '\n');
    }
    const size = statSync(path).size;
    const indexSize = statSync(path + '.index').size;
    log(`${path}: ${(size / 1e6).toFixed(1)} MB, index ${(indexSize / 1e6).toFixed(1)} MB`);
    const pyVersion = await oracle.json<string>(
      `import sys, ZODB, importlib.metadata as m\nresult = '%s, ZODB %s' % (sys.version.split()[0], m.version('ZODB'))`,
    );

    // --- memory per object
    log('index memory...');
    let m0 = memory();
    let scan: Awaited<ReturnType<typeof scanDataPath>> | null = await scanDataPath(path);
    if (!scan.usedIndexFile) throw new Error('the index file was not used');
    const n = scan.index.size;
    const oursLazy = (memory() - m0) / n;
    scan.index.readAll();
    const oursRead = (memory() - m0) / n;
    const oursArrays = scan.index.arrayBytes() / n;
    scan = null;
    m0 = memory();
    scan = await scanDataPath(path, { useIndexFile: false });
    const oursScanned = (memory() - m0) / n;
    scan = null;
    const pyLoad = pyMemory(path, 'load');

    // --- open with the index file
    log('opens with the index file...');
    const warmWith = await warmOpens(path, ROUNDS);
    const pyWith = await oracle.json<{ times: number[]; usedIndex: number }>(PY_OPEN, undefined, {
      path,
      rounds: ROUNDS,
    });
    if (!pyWith.usedIndex) throw new Error('Python did not use the index file');
    const coldWith = coldOpens(path, 5);
    // an oid in the middle of the file: in a bucket our open left in Data.fs.index
    const probeOid = Math.floor(OBJECTS / 2) + 7;
    const openLoad = await ourOpenLoad(path, probeOid, ROUNDS);
    const pyOpenLoad = median(
      await oracle.json<number[]>(PY_OPEN_LOAD, undefined, { path, rounds: ROUNDS, oid: probeOid }),
    );

    // --- open without it (moved aside; read-only opens do not write one)
    log('opens without the index file (scans)...');
    renameSync(path + '.index', path + '.index.aside');
    let warmWithout: { ms: number };
    let pyWithout: { times: number[]; usedIndex: number };
    let coldWithout: { ours: number; python: number };
    let pyScan: { bytes: number; n: number };
    try {
      warmWithout = await warmOpens(path, Math.max(3, Math.floor(ROUNDS / 2)));
      pyWithout = await oracle.json(PY_OPEN, undefined, {
        path,
        rounds: Math.max(3, Math.floor(ROUNDS / 2)),
      });
      coldWithout = coldOpens(path, 3);
      pyScan = pyMemory(path, 'scan');
    } finally {
      renameSync(path + '.index.aside', path + '.index');
    }

    // --- zeo verify against fstest, on the whole file
    log('verify / fstest...');
    const v0 = now();
    const verified = await verifyDataFile(path);
    const verifyMs = now() - v0;
    if (verified.error) throw verified.error;
    const fstestMs = await oracle.json<number>(
      `import time\nfrom ZODB.scripts.fstest import check\nt0 = time.perf_counter()\ncheck(args['path'])\n` +
        `result = (time.perf_counter() - t0) * 1000`,
      undefined,
      { path },
    );

    // --- loads
    log('loadBefore...');
    const workloads = [
      { name: `uniform random over ${OBJECTS.toLocaleString('en-US')}`, size: UNIFORM_OIDS, warm: false },
      { name: 'working set of 100,000, warmed', size: 100_000, warm: true },
      { name: 'hot set of 10,000, warmed', size: 10_000, warm: true },
    ];
    const loads: Array<{ name: string; one: LoadFigures; sixteen: LoadFigures; python: number }> = [];
    for (const w of workloads) {
      const one = await ourLoads(path, 1, w.size, w.warm);
      const sixteen = await ourLoads(path, 16, w.size, w.warm);
      const python = await oracle.json<number>(PY_LOADS, undefined, {
        path,
        n: OBJECTS,
        seconds: SECONDS,
        size: w.size,
        warm: w.warm,
      });
      loads.push({ name: w.name, one, sixteen, python });
    }

    // --- commits (a small file of its own, on the same file system)
    log('small commits...');
    const cpath = join(dir, 'commits.fs');
    const commits = await ourCommits(cpath);
    for (const s of ['', '.index', '.lock', '.tmp']) rmSync(cpath + s, { force: true });
    const pyCommits = await oracle.json<number>(PY_COMMITS, undefined, { path: cpath, seconds: SECONDS });
    for (const s of ['', '.index', '.lock', '.tmp']) rmSync(cpath + s, { force: true });

    const pyWithMs = median(pyWith.times) * 1000;
    const pyWithoutMs = median(pyWithout.times) * 1000;
    const x = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
    const rows: Array<Array<string | number>> = [
      [
        'index bytes/object, opened from Data.fs.index',
        oursLazy.toFixed(1),
        (pyLoad.bytes / pyLoad.n).toFixed(1),
        x(pyLoad.bytes / pyLoad.n, oursLazy),
        '<= 24',
      ],
      [
        'index bytes/object, every page read',
        `${oursRead.toFixed(1)} (arrays ${oursArrays.toFixed(1)})`,
        '',
        '',
        '<= 24',
      ],
      [
        'index bytes/object, built by a scan',
        oursScanned.toFixed(1),
        (pyScan.bytes / pyScan.n).toFixed(1),
        x(pyScan.bytes / pyScan.n, oursScanned),
        '<= 24',
      ],
      [
        'open with index, warm (ms)',
        warmWith.ms.toFixed(1),
        pyWithMs.toFixed(1),
        x(pyWithMs, warmWith.ms),
        '>= 2x',
      ],
      [
        'open with index, cold process (ms)',
        coldWith.ours.toFixed(1),
        coldWith.python.toFixed(1),
        x(coldWith.python, coldWith.ours),
        '>= 2x',
      ],
      [
        'open with index + one loadBefore, warm (ms)',
        openLoad.toFixed(2),
        (pyOpenLoad * 1000).toFixed(2),
        x(pyOpenLoad * 1000, openLoad),
        '',
      ],
      [
        'open without index (scan), warm (ms)',
        warmWithout.ms.toFixed(0),
        pyWithoutMs.toFixed(0),
        x(pyWithoutMs, warmWithout.ms),
        '>= 2x',
      ],
      [
        'open without index (scan), cold process (ms)',
        coldWithout.ours.toFixed(0),
        coldWithout.python.toFixed(0),
        x(coldWithout.python, coldWithout.ours),
        '>= 2x',
      ],
      [
        'zeo verify / fstest, whole file (ms)',
        verifyMs.toFixed(0),
        fstestMs.toFixed(0),
        x(fstestMs, verifyMs),
        '',
      ],
      ...loads.flatMap((l) => [
        [
          `loadBefore/s, ${l.name}, one at a time (cache hits ${(l.one.hitRate * 100).toFixed(0)}%)`,
          l.one.perSecond.toFixed(0),
          l.python.toFixed(0),
          x(l.one.perSecond, l.python),
          '>= 1x',
        ],
        [
          `loadBefore/s, ${l.name}, 16 concurrent (cache hits ${(l.sixteen.hitRate * 100).toFixed(0)}%)`,
          l.sixteen.perSecond.toFixed(0),
          '',
          x(l.sixteen.perSecond, l.python),
          '',
        ],
      ]),
      [
        'read cache: bound / allocated after the 100,000 set (MiB)',
        `${(DEFAULT_CACHE_BYTES / 2 ** 20).toFixed(0)} / ${(loads[1].one.cacheBytes / 2 ** 20).toFixed(1)}`,
        '',
        '',
        '',
      ],
      ['small commits/s (durable)', commits.toFixed(0), pyCommits.toFixed(0), x(commits, pyCommits), ''],
    ];
    printTable(
      `storage: Data.fs of ${n.toLocaleString('en-US')} objects, ${(size / 1e6).toFixed(0)} MB ` +
        `(Node ${process.version}, Python ${pyVersion}); ratio > 1: zeo-ts better`,
      ['measure', 'zeo-ts', 'Python', 'ratio', 'target'],
      rows,
    );
    const out = {
      bench: 'storage',
      date: new Date().toISOString(),
      node: process.version,
      python: pyVersion,
      objects: n,
      dataFsBytes: size,
      indexFileBytes: indexSize,
      indexBytesPerObject: {
        zeoTs: {
          openedFromIndexFile: oursLazy,
          everyPageRead: oursRead,
          arrays: oursArrays,
          builtByScan: oursScanned,
        },
        python: { loadedFromIndexFile: pyLoad.bytes / pyLoad.n, builtByScan: pyScan.bytes / pyScan.n },
      },
      openMs: {
        withIndex: {
          zeoTsWarm: warmWith.ms,
          pythonWarm: pyWithMs,
          zeoTsCold: coldWith.ours,
          pythonCold: coldWith.python,
        },
        withoutIndex: {
          zeoTsWarm: warmWithout.ms,
          pythonWarm: pyWithoutMs,
          zeoTsCold: coldWithout.ours,
          pythonCold: coldWithout.python,
        },
      },
      openWithIndexThenLoadMs: { zeoTsWarm: openLoad, pythonWarm: pyOpenLoad * 1000 },
      verifyMs: { zeoTs: verifyMs, fstest: fstestMs },
      loadBeforePerSecond: loads.map((l) => ({
        workload: l.name,
        zeoTs: l.one.perSecond,
        zeoTsHitRate: l.one.hitRate,
        zeoTs16Concurrent: l.sixteen.perSecond,
        zeoTs16ConcurrentHitRate: l.sixteen.hitRate,
        python: l.python,
      })),
      readCache: {
        capacityBytes: DEFAULT_CACHE_BYTES,
        allocatedBytesAfterWorkingSet: loads[1].one.cacheBytes,
        entriesAfterWorkingSet: loads[1].one.cacheEntries,
      },
      durableCommitsPerSecond: { zeoTs: commits, python: pyCommits },
    };
    mkdirSync(resolve(repoRoot, 'bench/results'), { recursive: true });
    writeFileSync(resolve(repoRoot, 'bench/results/storage.json'), JSON.stringify(out, null, 2) + '\n');
    log('wrote bench/results/storage.json');
  } finally {
    oracle.close();
  }
}

await main();
