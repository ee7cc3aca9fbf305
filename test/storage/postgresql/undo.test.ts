// PostgreSQLStorage's undo (src/storage/postgresql/undo.ts) beside RelStorage 4.3 (the Python reference) on one
// database: the same undo log with the same ids, an id from either undoes through the other, both refuse an
// undo a later change conflicts with; and what the vote checks, since undo() only reads: a change made between
// undo() and the vote is a ConflictError, an undone transaction packed meanwhile an UndoError, and a pack
// holding the pack lock makes the vote fail; nothing is written in each case.
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { referencesf } from '../../../src/pickle/index.js';
import { ConflictError, StorageError, UndoError } from '../../../src/storage/errors.js';
import { idHex, z64 } from '../../../src/storage/ids.js';
import type { PostgreSQLStorage } from '../../../src/storage/postgresql/index.js';
import { repoRoot } from '../../helpers/oracle.js';
import { skipRelStorage, untilSeen, useRelStorageFixture, type Spec } from '../../helpers/relstorage.js';
import { mappingRecord, minpo, minpoValue, txnMeta } from '../contract/helpers.js';

/** RelStorage's undoLog, or an undo through its two-phase commit (UndoError reported, not raised). */
const PY_UNDO = `
import sys
if args['fixtures'] not in sys.path:
    sys.path.insert(0, args['fixtures'])
import relstorage_ops as ops
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import UndoError
st = ops.open_storage(args['dsn'])
try:
    if args['op'] == 'log':
        result = [dict(id=e['id'].decode('ascii'), description=ops.text(e['description']),
                       user=ops.text(e['user_name']), time=e['time'])
                  for e in st.undoLog(0, -1000)]
    else:
        t = TransactionMetaData(description=args['description'].encode())
        st.tpc_begin(t)
        try:
            st.undo(args['id'].encode('ascii'), t)
            st.tpc_vote(t)
            st.tpc_finish(t)
            result = dict(tid=ops.h(st.lastTransaction()))
        except UndoError as e:
            st.tpc_abort(t)
            result = dict(error=str(e))
finally:
    st.close()
`;

interface LogEntry {
  id: string;
  description: string;
  user: string;
  time: number;
}

describe('PostgreSQLStorage undo, beside RelStorage 4.3', { skip: skipRelStorage }, () => {
  const fx = useRelStorageFixture();
  const { rs } = fx;
  const fixtures = resolve(repoRoot, 'test/fixtures/python');

  const py = <T>(args: Record<string, unknown>): Promise<T> =>
    rs.oracle.json<T>(PY_UNDO, undefined, { fixtures, ...args });
  const theirLog = (dsn: string) => py<LogEntry[]>({ op: 'log', dsn });
  const theirUndo = (dsn: string, id: string, description: string) =>
    py<{ tid?: string; error?: string }>({ op: 'undo', dsn, id, description });

  async function ourLog(s: PostgreSQLStorage): Promise<LogEntry[]> {
    return (await s.undoLog(0, -1000)).map((e) => ({
      id: Buffer.from(e.id).toString('latin1'),
      description: Buffer.from(e.description).toString('utf8'),
      user: Buffer.from(e.userName).toString('utf8'),
      time: e.time,
    }));
  }

  async function ourUndo(s: PostgreSQLStorage, id: string, description: string) {
    const t = txnMeta({ description });
    await s.tpcBegin(t);
    try {
      const r = await s.undo(Buffer.from(id, 'latin1'), t);
      await s.tpcVote(t);
      return { oids: r.oids.map(idHex), tid: idHex(await s.tpcFinish(t)) };
    } catch (e) {
      await s.tpcAbort(t);
      throw e;
    }
  }

  const value = async (dsn: string): Promise<Spec> =>
    ((await rs.tree(dsn)) as { $mapping: { a: { $mapping: { v: Spec } } } }).$mapping.a.$mapping.v;

  it('the same undo log and ids as RelStorage; an id from either undoes through the other; both refuse a conflicting undo', async () => {
    const { dsn } = await fx.database('undo');
    await rs.create(dsn);
    const [, two] = await rs.commit(dsn, [
      { description: 'one', user: 'ann', set: [[['a'], { $mapping: { v: 1 } }]] },
      { description: 'two', user: 'bob', set: [[['a', 'v'], 2]] },
    ]);
    const { storage: s } = await fx.openWatched(dsn);
    await untilSeen(s, two);
    const log = await theirLog(dsn);
    assert.deepEqual(
      log.map((e) => e.description),
      ['two', 'one', 'initial database creation'],
    );
    const ours = await ourLog(s);
    assert.deepEqual(
      ours.map(({ time: _, ...e }) => e),
      log.map(({ time: _, ...e }) => e),
    );
    for (let i = 0; i < log.length; i++) assert.ok(Math.abs(ours[i].time - log[i].time) < 1e-6);

    // RelStorage's id of 'two', undone through us
    const undone = await ourUndo(s, log[0].id, 'our undo');
    assert.equal(undone.oids.length, 1);
    assert.equal(await value(dsn), 1);
    // our id of our undo, undone through RelStorage
    const [mine] = await ourLog(s);
    assert.equal(mine.description, 'our undo');
    assert.equal(mine.id, Buffer.from(undone.tid, 'hex').toString('base64'));
    const redo = await theirUndo(dsn, mine.id, 'their undo');
    assert.ok(redo.tid, JSON.stringify(redo));
    await untilSeen(s, redo.tid);
    assert.equal(await value(dsn), 2);
    assert.deepEqual(
      (await theirLog(dsn)).map((e) => e.description),
      ['their undo', 'our undo', 'two', 'one', 'initial database creation'],
    );

    // a later change to the object: undoing 'two' now is refused by both
    const [three] = await rs.commit(dsn, [{ description: 'three', set: [[['a', 'v'], 3]] }]);
    await untilSeen(s, three);
    const twoId = (await ourLog(s)).find((e) => e.description === 'two')!.id;
    await assert.rejects(ourUndo(s, twoId, 'refused'), UndoError);
    const theirs = await theirUndo(dsn, twoId, 'refused');
    assert.match(theirs.error ?? '', /modified by a later transaction/);
    assert.equal(await value(dsn), 3);
    // and the root's creation is never undone
    const creation = (await ourLog(s)).find((e) => e.description === 'initial database creation')!.id;
    await assert.rejects(ourUndo(s, creation, 'refused'), UndoError);
    assert.ok((await theirUndo(dsn, creation, 'refused')).error);
    assert.equal((await ourLog(s))[0].description, 'three');
  });

  /** A database with one object (oid, written twice by us), and the undo id of its second revision. */
  async function twoRevisions() {
    const { dsn, name } = await fx.database('undovote');
    const { storage: s } = await fx.openWatched(dsn);
    const { storage: other } = await fx.openWatched(dsn);
    const t0 = txnMeta({ description: 'root' });
    await s.tpcBegin(t0);
    await s.store(z64, z64, mappingRecord([]), t0);
    const oid = await s.newOid();
    await s.store(oid, z64, minpo(1), t0);
    await s.tpcVote(t0);
    const r1 = await s.tpcFinish(t0);
    const t1 = txnMeta({ description: 'second' });
    await s.tpcBegin(t1);
    await s.store(oid, r1, minpo(2), t1);
    await s.tpcVote(t1);
    const r2 = await s.tpcFinish(t1);
    const [{ id }] = await s.undoLog(0, 1);
    return { dsn, name, s, other, oid, r2, id };
  }

  it('a change between undo() and the vote is a ConflictError; nothing is written', async () => {
    const { s, other, oid, r2, id } = await twoRevisions();
    const t = txnMeta({ description: 'undo' });
    await s.tpcBegin(t);
    await s.undo(id, t);
    const t2 = txnMeta();
    await other.tpcBegin(t2);
    await other.store(oid, r2, minpo(3), t2);
    await other.tpcVote(t2);
    const r3 = await other.tpcFinish(t2);
    await assert.rejects(s.tpcVote(t), ConflictError);
    await s.tpcAbort(t);
    assert.equal(minpoValue((await s.load(oid)).data), 3);
    assert.equal(idHex((await s.load(oid)).serial), idHex(r3));
  });

  it('an undone transaction packed after undo(): UndoError at the vote; a pack running: the vote fails', async () => {
    const { s, other, oid, id, name } = await twoRevisions();
    const t = txnMeta({ description: 'undo' });
    await s.tpcBegin(t);
    await s.undo(id, t);
    await other.pack(Date.now() / 1000 + 1, referencesf, { gc: false });
    await assert.rejects(s.tpcVote(t), UndoError);
    await s.tpcAbort(t);
    assert.equal(minpoValue((await s.load(oid)).data), 2);
    assert.deepEqual(await s.undoLog(0, -20), []);

    // a new revision to undo, while a session holds the pack lock (as packPostgreSQL does)
    const r3 = (await s.load(oid)).serial;
    const t3 = txnMeta({ description: 'third' });
    await s.tpcBegin(t3);
    await s.store(oid, r3, minpo(3), t3);
    await s.tpcVote(t3);
    await s.tpcFinish(t3);
    const [{ id: thirdId }] = await s.undoLog(0, 1);
    const locker = new pg.Client(fx.cluster.connection(name));
    await locker.connect();
    try {
      await locker.query('SELECT pg_advisory_lock(-2)');
      const t4 = txnMeta({ description: 'undo during a pack' });
      await s.tpcBegin(t4);
      await s.undo(thirdId, t4);
      await assert.rejects(s.tpcVote(t4), (e: Error) => e instanceof StorageError && /pack/.test(e.message));
      await s.tpcAbort(t4);
      assert.equal(minpoValue((await s.load(oid)).data), 3);
      await locker.query('SELECT pg_advisory_unlock(-2)');
    } finally {
      await locker.end();
    }
    // and once the pack lock is free, the undo goes through
    const t5 = txnMeta({ description: 'undo' });
    await s.tpcBegin(t5);
    await s.undo(thirdId, t5);
    await s.tpcVote(t5);
    await s.tpcFinish(t5);
    assert.equal(minpoValue((await s.load(oid)).data), 2);
  });
});
