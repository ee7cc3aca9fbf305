// ZODB's repozo and FileStorage iterator as the oracle runs them, for the backup tests (test/storage/filestorage/
// repozo.test.ts, test/cli/backup.test.ts): repozo.main with the time its files are named by fixed (its
// gen_filedate hook), and the history Python's iterator reads from a data file.

import { resolve } from 'node:path';
import type { Oracle } from './oracle.js';
import { repoRoot } from './oracle.js';

/** The venv's repozo script (the real command line). */
export const repozoScript = resolve(repoRoot, '.venv-oracle/bin/repozo');

/** A UTC time as repozo's gen_filedate returns it (gmtime()[:6]) and the same as a Date. */
export function utc(
  y: number,
  mo: number,
  d: number,
  h: number,
  mi: number,
  s: number,
): {
  tuple: number[];
  date: Date;
} {
  return { tuple: [y, mo, d, h, mi, s], date: new Date(Date.UTC(y, mo - 1, d, h, mi, s)) };
}

/** repozo.main(argv) in the oracle, its files named by `now` (a gen_filedate tuple); its error or null. */
export async function runRepozo(oracle: Oracle, argv: string[], now?: number[]): Promise<string | null> {
  return oracle.json<string | null>(
    `
from ZODB.scripts import repozo
if not hasattr(repozo, '_real_gen_filedate'):
    repozo._real_gen_filedate = repozo.gen_filedate
repozo.gen_filedate = (lambda options: tuple(args['now'])) if args['now'] else repozo._real_gen_filedate
try:
    repozo.main(args['argv'])
    result = None
except SystemExit as e:
    result = str(e.code)
except Exception as e:
    # repozo lets some errors through (EOFError from a truncated .fsz)
    result = '%s: %s' % (type(e).__name__, e)
`,
    undefined,
    { argv, now: now ?? null },
  );
}

export interface PyTxn {
  tid: string;
  status: string;
  user: string;
  description: string;
  extension: string;
  records: Array<{ oid: string; data: string | null; dataTxn: string | null }>;
}

/** Python's FileStorage iterator over `path` (read-only): every transaction and record, bytes as hex. */
export async function pyHistory(oracle: Oracle, path: string): Promise<PyTxn[]> {
  return oracle.json<PyTxn[]>(
    `
from ZODB.FileStorage import FileStorage
fs = FileStorage(args['path'], read_only=True)
out = []
try:
    for t in fs.iterator():
        out.append(dict(
            tid=t.tid.hex(), status=t.status,
            user=t.user.hex() if isinstance(t.user, bytes) else t.user.encode('utf-8').hex(),
            description=t.description.hex() if isinstance(t.description, bytes) else t.description.encode('utf-8').hex(),
            extension=repr(sorted(t.extension.items())),
            records=[dict(oid=r.oid.hex(), data=None if r.data is None else r.data.hex(),
                          dataTxn=None if r.data_txn is None else r.data_txn.hex()) for r in t]))
finally:
    fs.close()
result = out
`,
    undefined,
    { path },
  );
}

/** ZODB's fstest on `path`: null when sound, else its message. */
export async function pyFstest(oracle: Oracle, path: string): Promise<string | null> {
  return oracle.json<string | null>(
    `
from ZODB.scripts.fstest import check, FormatError
try:
    check(args['path'])
    result = None
except FormatError as e:
    result = str(e)
`,
    undefined,
    { path },
  );
}

/** Python commits `n` transactions to the FileStorage at `path` (objects of the root's BTree 'backup_tree'). */
export async function pyCommit(oracle: Oracle, path: string, n: number, tag: string): Promise<void> {
  await oracle.json(
    `
import transaction, ZODB
from ZODB.FileStorage import FileStorage
from BTrees.OOBTree import OOBTree
db = ZODB.DB(FileStorage(args['path']))
try:
    conn = db.open()
    root = conn.root()
    if 'backup_tree' not in root:
        root['backup_tree'] = OOBTree()
    for i in range(args['n']):
        root['backup_tree']['%s-%d' % (args['tag'], i)] = 'x' * (50 + i)
        t = transaction.get()
        t.note('%s %d' % (args['tag'], i))
        t.setUser('backup-test')
        transaction.commit()
    conn.close()
finally:
    db.close()
result = None
`,
    undefined,
    { path, n, tag },
  );
}

/** Packs the FileStorage at `path` to now (Python's DB.pack). */
export async function pyPack(oracle: Oracle, path: string): Promise<void> {
  await oracle.json(
    `
import time, ZODB
from ZODB.FileStorage import FileStorage
db = ZODB.DB(FileStorage(args['path']))
try:
    time.sleep(0.01)
    db.pack(time.time())
finally:
    db.close()
result = None
`,
    undefined,
    { path },
  );
}

/**
 * Whether `indexPath` (fsIndex.save's format) holds exactly what Python's FileStorage builds by scanning the
 * data file at `dataPath` from scratch: the same position and the same oid → position map.
 */
export async function pyIndexMatches(
  oracle: Oracle,
  indexPath: string,
  dataPath: string,
): Promise<string | null> {
  return oracle.json<string | null>(
    `
import os, shutil, tempfile
from ZODB.fsIndex import fsIndex
from ZODB.FileStorage import FileStorage
saved = fsIndex.load(args['index'])
tmp = tempfile.mkdtemp()
try:
    p = os.path.join(tmp, 'scan.fs')
    shutil.copyfile(args['data'], p)
    fs = FileStorage(p, read_only=True)
    rebuilt = dict(fs._index.items())
    pos = fs._pos
    fs.close()
finally:
    shutil.rmtree(tmp)
if saved['pos'] != pos:
    result = 'the index ends at %d, the data file at %d' % (saved['pos'], pos)
elif dict(saved['index'].items()) != rebuilt:
    result = 'the index differs from a scan of the data file'
else:
    result = None
`,
    undefined,
    { index: indexPath, data: dataPath },
  );
}
