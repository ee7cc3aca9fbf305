// A corpus of real ZODB records: the workload of test/fixtures/python/zodb_workload.py built by the oracle's
// ZODB, every data record of its Data.fs, and what Python says about each (ZODB.serialize.referencesf, the
// class as ObjectReader.getClassName reads it). Built once per process and scale, then cached.
import { resolve } from 'node:path';
import { PY_LIST_HELPERS, repoRoot, unpackList, type Oracle } from './oracle.js';

export const fixturesDir = resolve(repoRoot, 'test/fixtures/python');

/** The class of a record as Python reads it (see zodbRecords). */
export interface PyClassInfo {
  /** ZODB.serialize.ObjectReader.getClassName: "module.name" (null when Python could not name it) */
  dotted: string | null;
  module: string | null;
  name: string | null;
  /** 'class' | 'class-args' | 'names-args' (the forms of ClassMeta) */
  form: string;
  /** repr() of the args of (class, args) metadata, None when absent; globals as <global m.n> */
  argsRepr: string;
}

export interface ZodbCorpus {
  /** every data record of the Data.fs (FileStorage iterator over all transactions, data not None), in order */
  records: Buffer[];
  oids: Buffer[];
  tids: Buffer[];
  /** for each record, what ZODB.serialize.referencesf(record) returns */
  refs: Buffer[][];
  classes: PyClassInfo[];
  /** the size of the Data.fs the records come from */
  fileSize: number;
  /** the directory holding Data.fs (kept only when `dir` was given) */
  dir: string | null;
}

export interface CorpusOptions {
  scale?: number;
  /** build in this directory and keep the files (Data.fs, Data.fs.blobs, Data.fs.other); default: a temp dir, removed */
  dir?: string;
}

const PY_CORPUS = `${PY_LIST_HELPERS}
import json, os, shutil, sys, tempfile
if args['fixtures'] not in sys.path:
    sys.path.insert(0, args['fixtures'])
import zodb_workload
from ZODB.FileStorage import FileStorage
from ZODB.serialize import ObjectReader, referencesf

class _Meta(type):
    def __repr__(cls):
        return '<global %s.%s>' % (cls.__module__, cls.__name__)

def _factory(conn, module, name):
    return _Meta(name, (), {'__module__': module})

class _PRef:
    def __init__(self, pid):
        self.pid = pid
    def __repr__(self):
        return '<persistent %r>' % (self.pid,)

class _Reader(ObjectReader):
    def _persistent_load(self, reference):
        return _PRef(reference)

_reader = _Reader(None, None, _factory)

def class_info(p):
    try:
        dotted = _reader.getClassName(p)
    except Exception:
        dotted = None
    klass = _reader._get_unpickler(p).load()
    form, args, module, name = 'class', None, None, None
    if isinstance(klass, tuple):
        klass, args = klass
        form = 'class-args'
        if isinstance(klass, tuple):
            form = 'names-args'
            module, name = klass
    if module is None and isinstance(klass, type):
        module, name = klass.__module__, klass.__name__
    return dict(dotted=dotted, module=module, name=name, form=form, argsRepr=repr(args))

tmp = args['dir'] or tempfile.mkdtemp(prefix='zeots-corpus-')
try:
    path = os.path.join(tmp, 'Data.fs')
    zodb_workload.build_workload(path, args['scale'])
    records, oids, tids, refs, classes = [], [], [], [], []
    fs = FileStorage(path, read_only=True)
    try:
        for txn in fs.iterator():
            for r in txn:
                if r.data is None:
                    continue
                records.append(r.data)
                oids.append(r.oid.hex())
                tids.append(r.tid.hex())
                refs.append([o.hex() for o in referencesf(r.data)])
                classes.append(class_info(r.data))
    finally:
        fs.close()
    head = json.dumps(dict(oids=oids, tids=tids, refs=refs, classes=classes, fileSize=os.path.getsize(path)))
    result = pack_list([head.encode()] + records)
finally:
    if not args['dir']:
        shutil.rmtree(tmp, ignore_errors=True)
`;

const cache = new Map<string, Promise<ZodbCorpus>>();

/**
 * Builds the workload Data.fs with the oracle's ZODB (zodb_workload.build_workload) and returns every data
 * record with what Python's referencesf and getClassName say of it. Cached per scale (and dir) in this
 * process: the second call costs nothing, whichever oracle it is given.
 */
export function zodbRecords(oracle: Oracle, opts: CorpusOptions = {}): Promise<ZodbCorpus> {
  const scale = opts.scale ?? 1;
  const key = `${scale}\n${opts.dir ?? ''}`;
  let p = cache.get(key);
  if (!p) {
    p = build(oracle, scale, opts.dir ?? null);
    cache.set(key, p);
    // (a failed build is not kept; the caller gets its error from p)
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function build(oracle: Oracle, scale: number, dir: string | null): Promise<ZodbCorpus> {
  const parts = unpackList(await oracle.bytes(PY_CORPUS, undefined, { fixtures: fixturesDir, scale, dir }));
  const head = JSON.parse(parts[0].toString('utf8')) as {
    oids: string[];
    tids: string[];
    refs: string[][];
    classes: PyClassInfo[];
    fileSize: number;
  };
  const hex = (h: string): Buffer => Buffer.from(h, 'hex');
  return {
    // copies, so that the records do not pin the oracle's whole answer
    records: parts.slice(1).map((b) => Buffer.from(b)),
    oids: head.oids.map(hex),
    tids: head.tids.map(hex),
    refs: head.refs.map((r) => r.map(hex)),
    classes: head.classes,
    fileSize: head.fileSize,
    dir,
  };
}
