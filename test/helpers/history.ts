// A storage's whole history as Python's iterator sees it (ZODB's FileStorage on a Data.fs, or ZEO's
// ClientStorage against a server): every transaction with its tid, status, metadata and records (oid, tid, a
// hash of the data, the back pointer's tid), and the hash of each blob record's file. Two storages with the
// same history compare equal (the copy tests).
import type { Oracle } from './oracle.js';

export interface PyRecord {
  oid: string;
  tid: string;
  /** sha1 of the data; null without data (a deleted object, an undone creation) */
  data: string | null;
  dataTxn: string | null;
  /** sha1 of the blob file of a blob record ('missing' when the storage has none); null otherwise */
  blob: string | null;
}

export interface PyTransaction {
  tid: string;
  status: string;
  user: string;
  description: string;
  /** repr of the extension's sorted items (text and bytes alike: ZEO's msgpack turns bytes into text) */
  extension: string;
  records: PyRecord[];
}

export type HistorySource =
  | { path: string; blobDir?: string | null }
  | { address: number | string; storage?: string; blobDir?: string | null };

const PY_HISTORY = `
import hashlib, tempfile, shutil
from ZODB.blob import is_blob_record
from ZODB.POSException import POSKeyError
def text(x):
    return x.decode('utf-8', 'surrogateescape') if isinstance(x, bytes) else x
def norm(v):
    if isinstance(v, bytes): return text(v)
    if isinstance(v, (list, tuple)): return [norm(i) for i in v]
    if isinstance(v, dict): return sorted((norm(k), norm(i)) for k, i in v.items())
    return v
tmp = None
if 'path' in args:
    from ZODB.FileStorage import FileStorage
    st = FileStorage(args['path'], read_only=True, blob_dir=args.get('blobDir'))
else:
    from ZEO.ClientStorage import ClientStorage
    a = args['address']
    addr = ('127.0.0.1', a) if isinstance(a, int) else a
    blob_dir = args.get('blobDir')
    if blob_dir is None:
        tmp = blob_dir = tempfile.mkdtemp()
    st = ClientStorage(addr, storage=args.get('storage') or '1', blob_dir=blob_dir, shared_blob_dir=False,
                       read_only=True, wait_timeout=30)
try:
    out = []
    for t in st.iterator():
        recs = []
        for r in t:
            blob = None
            if r.data and is_blob_record(r.data):
                try:
                    with open(st.loadBlob(r.oid, r.tid), 'rb') as f:
                        blob = hashlib.sha1(f.read()).hexdigest()
                except (POSKeyError, Exception) as e:
                    blob = 'missing' if isinstance(e, POSKeyError) or 'No blob' in str(e) else 'error %r' % (e,)
            recs.append(dict(oid=r.oid.hex(), tid=r.tid.hex(),
                             data=None if r.data is None else hashlib.sha1(r.data).hexdigest(),
                             dataTxn=r.data_txn.hex() if r.data_txn else None, blob=blob))
        out.append(dict(tid=t.tid.hex(), status=text(t.status), user=text(t.user),
                        description=text(t.description), extension=repr(norm(t.extension or {})),
                        records=recs))
    result = out
finally:
    st.close()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
`;

/** The history of a Data.fs (read-only) or of a server's storage, through Python. */
export function pyHistory(oracle: Oracle, source: HistorySource): Promise<PyTransaction[]> {
  return oracle.json<PyTransaction[]>(PY_HISTORY, undefined, source);
}

/**
 * Python builds blob transactions on a Data.fs (appending to what is there): blobs created, one rewritten,
 * a transaction with a blob undone, and a non-blob change, so a copy meets blob records with files, back
 * pointers to blob data and undo copies. `tag` varies the contents.
 */
export const PY_ADD_BLOBS = `
import transaction, ZODB
from ZODB.FileStorage import FileStorage
from ZODB.blob import Blob
from persistent.mapping import PersistentMapping
fs = FileStorage(args['path'], blob_dir=args['blobDir'])
db = ZODB.DB(fs)
conn = db.open()
root = conn.root()
tag = args.get('tag', 'a')
blobs = root.setdefault('blobs', PersistentMapping())
for i in range(3):
    b = Blob()
    with b.open('w') as f:
        f.write(('%s blob %d ' % (tag, i)).encode() * (100 + i * 1000))
    blobs['%s%d' % (tag, i)] = b
transaction.get().note('%s: blobs' % tag)
transaction.get().setExtendedInfo('tag', tag)
transaction.commit()
with blobs['%s1' % tag].open('w') as f:
    f.write(b'rewritten ' + tag.encode())
transaction.commit()
with blobs['%s2' % tag].open('w') as f:
    f.write(b'to be undone')
transaction.commit()
db.undo(db.undoLog(0, 1)[0]['id'])
transaction.commit()
root['plain-' + tag] = PersistentMapping({'x': 1})
transaction.commit()
conn.close()
db.close()
result = None
`;
