// Data for the object browser's tests (issue 13), made by the real ZODB through a ZEO ClientStorage against a
// zeo-ts server: a root with a PersistentMapping, an OOBTree of 5,000 items (many buckets), an IOBTree, a
// PersistentList, an instance of a class no module names later, an object with several revisions, an undone
// transaction, a blob, and a reference left dangling by deleteObject (IExternalGC).
import type { Oracle } from './oracle.js';

export const TREE_SIZE = 5000;

/** The OOBTree's keys, as Python sorts them. */
export function treeKeys(): string[] {
  return Array.from({ length: TREE_SIZE }, (_, i) => `key${String(i).padStart(5, '0')}`).sort();
}

const PY = `
import sys, types, tempfile, shutil, transaction
from persistent import Persistent
from persistent.mapping import PersistentMapping
from persistent.list import PersistentList
from BTrees.OOBTree import OOBTree
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOTreeSet, OOBucket
from BTrees.LLBTree import LLTreeSet
from BTrees.IFBTree import IFBTree
from BTrees.QQBTree import QQBTree
from ZEO.ClientStorage import ClientStorage
from ZODB import DB
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.utils import u64

# a class that pickles (its module is in sys.modules now) but that nothing can import later
mod = types.ModuleType('browse_vanished')
class Gadget(Persistent):
    pass
Gadget.__module__ = 'browse_vanished'
mod.Gadget = Gadget
sys.modules['browse_vanished'] = mod

h = lambda b: b.hex()
text = lambda s: s.decode() if isinstance(s, bytes) else s
addr = tuple(args['addr']) if isinstance(args['addr'], list) else args['addr']
blob_dir = tempfile.mkdtemp()
cs = ClientStorage(addr, storage=args.get('storage', '1'), blob_dir=blob_dir, shared_blob_dir=False, wait_timeout=30)
db = DB(cs)
conn = db.open()
root = conn.root()
tm = conn.transaction_manager

def commit(note):
    t = tm.get()
    t.note(note)
    t.setUser('tester')
    t.commit()

deep = 'bottom'
for _ in range(20):
    deep = [deep]
families = dict(
    treeset=OOTreeSet('member%04d' % i for i in range(1000)),
    llset=LLTreeSet(2**40 + i for i in range(500)),
    iftree=IFBTree({i: i / 2 for i in range(10)}),
    qqtree=QQBTree({2**63 + i: i for i in range(5)}),
    bucket=OOBucket({'b%d' % i: i for i in range(7)}),
)
# a record nothing can decode without Python's copyreg extension registry: its class is pickled as EXT1 240
class Coded(Persistent):
    # (references to it are then its oid alone, so only its own record names the class)
    def __getnewargs__(self):
        return ()
Coded.__module__ = 'browse_vanished'
mod.Coded = Coded
import copyreg
copyreg.add_extension('browse_vanished', 'Coded', 240)
coded = Coded()
coded.note = 'pickled with an extension code'
families['coded'] = coded
root['mapping'] = PersistentMapping(dict(
    answer=42, name='héllo', nested={'xs': [1, 2.5, (3, b'\\x00\\xff')]},
    many=list(range(5000)), deep=deep, raw=bytes(3000), **families))
tree = OOBTree()
for i in range(${TREE_SIZE}):
    tree['key%05d' % i] = i * 2
root['tree'] = tree
itree = IOBTree()
for i in range(300):
    itree[i] = 'value %d' % i
root['itree'] = itree
root['list'] = PersistentList(range(250))
g = Gadget()
g.title = 'made by a class that is gone'
g.long = 'x' * 5000
root['gadget'] = g
revised = PersistentMapping({'rev': 0})
root['revised'] = revised
b = Blob()
with b.open('w') as f:
    f.write(b'blob-bytes ' * 1000)
root['blob'] = b
orphan = PersistentMapping({'doomed': True})
root['holder'] = PersistentMapping({'orphan': orphan})
commit('initial data')
copyreg.remove_extension('browse_vanished', 'Coded', 240)

revision_tids = [h(revised._p_serial)]
for n in (1, 2, 3):
    revised['rev'] = n
    commit('revision %d' % n)
    revision_tids.append(h(revised._p_serial))

root['undone'] = 'this is undone'
commit('to be undone')
undo_id = db.undoLog(0, 1)[0]['id']
db.undo(undo_id)
commit('undo it')

# leave the holder's reference dangling: delete the orphan through IExternalGC
t = TransactionMetaData(description=b'delete the orphan')
cs.tpc_begin(t)
cs.deleteObject(orphan._p_oid, orphan._p_serial, t)
cs.tpc_vote(t)
cs.tpc_finish(t)

bucket_count = 0
bucket = tree._firstbucket
while bucket is not None:
    bucket_count += 1
    bucket = bucket._next

result = dict(
    root='0000000000000000',
    mapping=h(root['mapping']._p_oid),
    families={k: h(v._p_oid) for k, v in families.items()},
    tree=h(tree._p_oid),
    tree_buckets=bucket_count,
    itree=h(itree._p_oid),
    list=h(root['list']._p_oid),
    gadget=h(g._p_oid),
    revised=h(revised._p_oid),
    revision_tids=revision_tids,
    blob=h(b._p_oid),
    holder=h(root['holder']._p_oid),
    orphan=h(orphan._p_oid),
    last=h(cs.lastTransaction()),
    undo_log=[dict(description=text(e['description']), time=e['time']) for e in db.undoLog(0, 20)],
)
conn.close()
db.close()
shutil.rmtree(blob_dir, ignore_errors=True)
`;

export interface BrowseData {
  root: string;
  mapping: string;
  /**
   * OOTreeSet treeset, LLTreeSet llset, IFBTree iftree (one inline bucket), QQBTree qqtree, OOBucket bucket; coded: an
   * object whose class is pickled as a copyreg extension code (EXT1), which nothing decodes without the registry
   */
  families: Record<'treeset' | 'llset' | 'iftree' | 'qqtree' | 'bucket' | 'coded', string>;
  tree: string;
  tree_buckets: number;
  itree: string;
  list: string;
  gadget: string;
  revised: string;
  /** the revised object's tids, oldest first */
  revision_tids: string[];
  blob: string;
  holder: string;
  orphan: string;
  last: string;
  undo_log: Array<{ description: string; time: number }>;
}

/** Makes the data through a ZEO server at `addr` (a port's [host, port] or a unix socket path). */
export function makeBrowseData(oracle: Oracle, addr: [string, number] | string): Promise<BrowseData> {
  return oracle.json<BrowseData>(PY, undefined, { addr });
}
