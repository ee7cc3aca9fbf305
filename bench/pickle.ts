// npm run bench -- pickle [--scale N] [--rounds N]
// Decode and encode throughput on real ZODB records (the record-test workload: BTrees, mappings, blobs,
// application classes), ours beside Python's C unpickler/pickler (stdlib _pickle, and zodbpickle, which
// ZODB uses) on the same records in the same run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { dumps, Unpickler, type PickleValue } from '../src/pickle/index.js';
import { zodbRecords } from '../test/helpers/corpus.js';
import { Oracle, packList, repoRoot } from '../test/helpers/oracle.js';
import { printTable, ratio } from './report.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const scale = arg('scale', 1);
const rounds = arg('rounds', 7);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Median seconds per pass of fn over the corpus: a second of warm-up (the JIT needs many passes over a small
 * corpus), then `rounds` rounds of at least 0.2 s each.
 */
function timeIt(fn: () => void): number {
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  for (const t0 = now(); now() - t0 < 1;) fn();
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = now();
    let passes = 0;
    do {
      fn();
      passes++;
    } while (now() - t0 < 0.2);
    times.push((now() - t0) / passes);
  }
  return median(times);
}

const PY_BENCH = `
import io, sys, time, pickle, statistics
sys.path.insert(0, args['fixtures'])
import zodbpickle.pickle as zpickle
import struct
def unpack_list(b):
    (n,) = struct.unpack_from('>I', b, 0); p = 4; out = []
    for _ in range(n):
        (l,) = struct.unpack_from('>I', b, p); out.append(bytes(b[p+4:p+4+l])); p += 4 + l
    return out
records = unpack_list(input)
class Ref:
    __slots__ = ('pid',)
    def __init__(self, pid): self.pid = pid

def decode_all(mod):
    out = []
    for rec in records:
        u = mod.Unpickler(io.BytesIO(rec))
        u.persistent_load = Ref
        out.append((u.load(), u.load()))
    return out

def encode_all(mod, objs):
    for meta, state in objs:
        f = io.BytesIO()
        p = mod.Pickler(f, 3)
        p.persistent_id = lambda o: o.pid if type(o) is Ref else None
        p.dump(meta)
        p.dump(state)
        f.getvalue()

def timeit(fn, rounds):
    # the same schedule as the TypeScript side: a second of warm-up, then rounds of at least 0.2 s
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1:
        fn()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter(); passes = 0
        while True:
            fn(); passes += 1
            if time.perf_counter() - t0 >= 0.2:
                break
        ts.append((time.perf_counter() - t0) / passes)
    return statistics.median(ts)

def decodable():
    # instances of persistent classes (ZODB.persistentclass) need ZODB's own class loading, which a plain
    # unpickler lacks: both sides leave those records out
    ok = []
    for i, rec in enumerate(records):
        try:
            u = pickle.Unpickler(io.BytesIO(rec))
            u.persistent_load = Ref
            u.load(), u.load()
            ok.append(i)
        except Exception:
            pass
    return ok

def run():
    out = {'python': sys.version.split()[0]}
    for label, mod in (('pickle', pickle), ('zodbpickle', zpickle)):
        objs = decode_all(mod)
        out[label] = {
            'decode': timeit(lambda: decode_all(mod), args['rounds']),
            'encode': timeit(lambda: encode_all(mod, objs), args['rounds']),
        }
    return out

result = decodable() if args.get('select') else run()
`;

async function main(): Promise<void> {
  const oracle = new Oracle();
  try {
    process.stderr.write(`building the ZODB workload (scale ${scale}) with Python ZODB...\n`);
    const corpus = (await zodbRecords(oracle, { scale })).records;
    const fixtures = resolve(repoRoot, 'test/fixtures/python');
    const selected = await oracle.json<number[]>(PY_BENCH, packList(corpus), { select: true, fixtures });
    const records = selected.map((i) => corpus[i]);
    const excluded = corpus.length - records.length;
    const bytes = records.reduce((n, r) => n + r.length, 0);
    process.stderr.write(
      `${records.length} records, ${(bytes / 1e6).toFixed(1)} MB; timing ${rounds} rounds each\n`,
    );

    let decoded: Array<[PickleValue, PickleValue]> = [];
    const decodeAll = () => {
      decoded = new Array<[PickleValue, PickleValue]>(records.length);
      for (let i = 0; i < records.length; i++) {
        const u = new Unpickler(records[i]);
        decoded[i] = [u.load(), u.load()];
      }
    };
    const tsDecode = timeIt(decodeAll);
    // Encode what we decoded; PersistentRef values pickle back as BINPERSID, as ZODB's ObjectWriter writes them.
    const tsEncode = timeIt(() => {
      for (const [meta, state] of decoded) {
        dumps(meta);
        dumps(state);
      }
    });

    const py = await oracle.json<{
      pickle: { decode: number; encode: number };
      zodbpickle: { decode: number; encode: number };
      python: string;
    }>(PY_BENCH, packList(records), { rounds, fixtures });

    const mbps = (s: number) => bytes / s / 1e6;
    const rps = (s: number) => records.length / s;
    const rows = [
      ['decode', tsDecode, py.pickle.decode, py.zodbpickle.decode],
      ['encode', tsEncode, py.pickle.encode, py.zodbpickle.encode],
    ] as const;
    printTable(
      `pickle: ${records.length} ZODB records, ${(bytes / 1e6).toFixed(1)} MB` +
        (excluded ? ` (${excluded} instances of persistent classes left out)` : '') +
        ` (Node ${process.version}, Python ${py.python})`,
      [
        'operation',
        'zeo-ts MB/s',
        'zeo-ts rec/s',
        'C pickle MB/s',
        'zodbpickle MB/s',
        'vs C pickle',
        'vs zodbpickle',
      ],
      rows.map(([op, ts, p, z]) => [
        op,
        mbps(ts).toFixed(1),
        rps(ts).toFixed(0),
        mbps(p).toFixed(1),
        mbps(z).toFixed(1),
        ratio(p, ts),
        ratio(z, ts),
      ]),
    );
    const out = {
      bench: 'pickle',
      date: new Date().toISOString(),
      node: process.version,
      python: py.python,
      records: records.length,
      excludedPersistentClassInstances: excluded,
      bytes,
      rounds,
      seconds: {
        zeoTs: { decode: tsDecode, encode: tsEncode },
        pythonPickle: py.pickle,
        zodbpickle: py.zodbpickle,
      },
      ratios: {
        decodeVsPickle: py.pickle.decode / tsDecode,
        decodeVsZodbpickle: py.zodbpickle.decode / tsDecode,
        encodeVsPickle: py.pickle.encode / tsEncode,
        encodeVsZodbpickle: py.zodbpickle.encode / tsEncode,
      },
    };
    mkdirSync(resolve(repoRoot, 'bench/results'), { recursive: true });
    writeFileSync(resolve(repoRoot, 'bench/results/pickle.json'), JSON.stringify(out, null, 2) + '\n');
    process.stderr.write('wrote bench/results/pickle.json\n');
  } finally {
    oracle.close();
  }
}

await main();
