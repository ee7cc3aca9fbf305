// What Python's FileStorage makes of a Data.fs, for the FileStorage format tests: its _pos, _ltid, _oid,
// _index, whether it used the index file (and where read_index started), and what it logged.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PY_LIST_HELPERS, unpackList, type Oracle } from '../../helpers/oracle.js';

export interface PyOpen {
  /** the exception Python raised opening the file ("Name: message"), else null */
  error: string | null;
  pos: number;
  ltid: string;
  oid: string;
  usedIndex: number;
  /** the `start` of each read_index call (4 when it scanned from the beginning) */
  starts: number[];
  len: number;
  log: string;
  /** oid hex -> position */
  index: Map<string, number>;
}

const PY_OPEN = `${PY_LIST_HELPERS}
import io, json, logging, struct, sys
from ZODB.FileStorage import FileStorage
# the module (ZODB.FileStorage.FileStorage is also the name of the class the package exports)
FSmod = sys.modules['ZODB.FileStorage.FileStorage']

stream = io.StringIO()
handler = logging.StreamHandler(stream)
handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
zlog = logging.getLogger('ZODB')
zlog.addHandler(handler)
old_level = zlog.level
zlog.setLevel(logging.DEBUG)
starts = []
orig_read_index = FSmod.read_index
def spy(*a, **k):
    starts.append(k.get('start', 4))
    return orig_read_index(*a, **k)
FSmod.read_index = spy
items = b''
try:
    try:
        stop = bytes.fromhex(args['stop']) if args.get('stop') else None
        fs = FileStorage(args['path'], read_only=args.get('read_only', True), stop=stop)
    except Exception as e:
        head = dict(error='%s: %s' % (type(e).__name__, e))
    else:
        try:
            items = b''.join(oid + struct.pack('>Q', pos) for oid, pos in fs._index.iteritems())
            head = dict(error=None, pos=fs._pos, ltid=fs._ltid.hex(), oid=fs._oid.hex(),
                        usedIndex=fs._used_index, starts=starts, len=len(fs._index))
        finally:
            fs.close()
finally:
    FSmod.read_index = orig_read_index
    zlog.removeHandler(handler)
    zlog.setLevel(old_level)
head['log'] = stream.getvalue()
result = pack_list([json.dumps(head).encode(), items])
`;

/** Opens `path` with Python's FileStorage (read-only unless told) and reports its state. */
export async function pyOpen(
  oracle: Oracle,
  path: string,
  opts: { readOnly?: boolean; stop?: string | null } = {},
): Promise<PyOpen> {
  const parts = unpackList(
    await oracle.bytes(PY_OPEN, undefined, {
      path,
      read_only: opts.readOnly ?? true,
      stop: opts.stop ?? null,
    }),
  );
  const head = JSON.parse(parts[0].toString('utf8')) as Omit<PyOpen, 'index'>;
  const index = new Map<string, number>();
  const items = parts[1];
  for (let p = 0; p < items.length; p += 16) {
    index.set(items.subarray(p, p + 8).toString('hex'), Number(items.readBigUInt64BE(p + 8)));
  }
  return { ...head, index };
}

/**
 * A Data.fs of `n` objects built by Python in a few transactions, with overwrites, an undo (back pointers),
 * deleteObject (back pointer 0) and, when `pack`, a pack (status 'p'). Returns nothing: the file is `path`
 * (and its index, written at close).
 */
export const PY_BUILD = `
import time, transaction, ZODB
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from persistent.mapping import PersistentMapping
from BTrees.IOBTree import IOBTree
n = args['n']
fs = FileStorage(args['path'])
db = ZODB.DB(fs)
conn = db.open()
root = conn.root()
tree = root['tree'] = IOBTree()
transaction.commit()
per = max(1, n // 8)
objs = []
for i in range(n):
    o = PersistentMapping({'i': i})
    objs.append(o)
    tree[i] = o
    if (i + 1) % per == 0:
        transaction.get().note('batch %d' % i)
        transaction.commit()
transaction.commit()
for o in objs[::5]:
    o['x'] = 'changed'
transaction.commit()
root['doomed'] = PersistentMapping()
transaction.commit()
undo_id = db.undoLog(0, 1)[0]['id']
db.undo(undo_id)
transaction.commit()
if args.get('pack'):
    time.sleep(0.01)
    db.pack(time.time())
for o in objs[1::97]:
    o['y'] = 2
transaction.commit()
# deleteObject: an orphan object deleted (a record with back pointer 0)
orphan = PersistentMapping()
conn.add(orphan)
transaction.commit()
oid, serial = orphan._p_oid, orphan._p_serial
conn.close()
t = TransactionMetaData()
fs.tpc_begin(t)
fs.deleteObject(oid, serial, t)
fs.tpc_vote(t)
fs.tpc_finish(t)
db.close()
result = None
`;

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'zeots-fs-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function indexAsMap(entries: Iterable<[Uint8Array, number]>): Map<string, number> {
  const m = new Map<string, number>();
  for (const [oid, pos] of entries) m.set(Buffer.from(oid).toString('hex'), pos);
  return m;
}

export const hex = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
