// Pack of a PostgreSQL database on RelStorage's history-preserving schema, with the result RelStorage 4.3's pack
// leaves (relstorage/adapters/packundo.py HistoryPreservingPackUndo, storage/pack.py Pack), in our own SQL:
//
//   0. the pack lock: the session advisory lock -2 (RelStorage's hold_pack_lock), tried, never waited for: a
//      second pack (or a RelStorage undo) fails at once with a StorageError;
//   1. the pack transaction: the newest unpacked transaction at or before `packTid` (none: only the cleanup of
//      step 4 runs, as RelStorage's pack does then);
//   2. pre-pack, which removes nothing:
//      - with gc: object_ref gets the references (referencesf) of every state of each transaction not yet in
//        object_refs_added; pack_object gets each object with a state at or before the pack tid, keep_tid its
//        newest such state, keep false; kept: the root (zoid 0), objects changed after the pack tid, objects
//        referenced by states after it, and everything reachable from those through the references of their
//        states from keep_tid on (keep and visited true);
//      - without gc: pack_object as above, every object kept;
//      then pack_state lists the states to remove: with gc those of unkept objects (tid in (0, pack tid]),
//      without gc each object's newest state when that is a deletion (state NULL); and, for kept objects, their
//      states at or before the pack tid other than keep_tid; pack_state_tid the distinct tids of pack_state;
//   3. pack, a batch of transactions (oldest first) at a time, each batch its own database transaction that
//      holds the commit lock (advisory -1) only while it runs, so commits go on between batches: the listed
//      current_object and object_state rows go (their blob_chunk rows follow by the foreign key's ON DELETE
//      CASCADE, their large objects by the blob_chunk_delete trigger), states at or before the pack tid whose
//      prev_tid was a packed transaction get prev_tid 0, and each transaction up to the pack tid is marked
//      packed, and is_empty when no state of it is left;
//   4. cleanup: object_ref and object_refs_added rows of empty transactions, then the empty packed transactions
//      themselves, are deleted, and the pack tables emptied.
//
// Where it differs from RelStorage 4.3 (the rows left are the same; the tests compare them):
//   - RelStorage's pack takes no commit lock at all, and commits every pack_batch_timeout (15 s); ours holds
//     the commit lock for each batch, so a batch never runs beside a commit's move into the tables, and bounds
//     a batch by transactions and states (packTuning), so a commit waits for one short batch at most;
//   - a batch deletes its transactions' states in one statement each, not transaction by transaction;
//   - the transactions to analyse are listed a page at a time, so one committed during the analysis is
//     analysed too (RelStorage lists them once);
//   - the walk runs in the database, not in the client (RelStorage's TreeMarker);
//   - an unreadable state (referencesf throws) is a StorageError naming the object and transaction.
//
// Memory stays bounded: transactions, states and references are read a page at a time, and the reachability
// walk runs in the database (a recursive query over a temporary table of the references that count).

import type pg from 'pg';
import { StorageError } from '../errors.js';
import { u64 } from '../ids.js';
import type { ReferencesFinder } from '../interfaces.js';

/** RelStorage's advisory lock ids on PostgreSQL (adapters/postgresql/locker.py) */
const COMMIT_LOCK = -1;
const PACK_LOCK = -2;

/** Sizes of the units of work; tests make the batches small to see them. */
export const packTuning = {
  /** transactions listed per page while filling object_ref */
  refTransactionsPerPage: 100,
  /** states read per query while filling object_ref */
  refStatesPerRead: 500,
  /** object_ref rows per INSERT */
  refRowsPerInsert: 5000,
  /** a pack batch (one database transaction holding the commit lock) ends after this many transactions... */
  batchTransactions: 500,
  /** ...or once it has removed at least this many states */
  batchStates: 5000,
  /** empty packed transactions deleted per database transaction (RelStorage: 1000) */
  deleteTransactionsPerBatch: 1000,
};

export interface PackOptions {
  gc: boolean;
  log?: (msg: string) => void;
}

/**
 * Packs the database to `packTid` (history at or before it goes, except what is current at it), with or
 * without garbage collection. Throws a StorageError when another pack holds the pack lock.
 */
export async function packPostgreSQL(
  pool: pg.Pool,
  packTid: bigint,
  referencesf: ReferencesFinder,
  options: PackOptions,
): Promise<void> {
  const log = options.log ?? (() => {});
  const client = await pool.connect();
  // a connection in an unknown state (an error mid-transaction, the pack lock maybe still held) is destroyed,
  // not given back to the pool: closing the session also releases its advisory locks
  let broken: Error | undefined;
  try {
    const locked = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [
      PACK_LOCK,
    ]);
    if (!locked.rows[0].locked) {
      client.release();
      throw new StorageError('A pack or undo operation is in progress');
    }
  } catch (e) {
    if (!(e instanceof StorageError)) client.release(e as Error);
    throw e;
  }
  try {
    await new Packer(client, referencesf, options.gc, log).run(packTid);
    await client.query('SELECT pg_advisory_unlock($1)', [PACK_LOCK]);
  } catch (e) {
    broken = e as Error;
    throw e;
  } finally {
    client.release(broken);
  }
}

class Packer {
  constructor(
    private readonly db: pg.PoolClient,
    private readonly referencesf: ReferencesFinder,
    private readonly gc: boolean,
    private readonly log: (msg: string) => void,
  ) {}

  private async inTransaction<T>(work: () => Promise<T>): Promise<T> {
    await this.db.query('BEGIN');
    const result = await work();
    await this.db.query('COMMIT');
    return result;
  }

  async run(requested: bigint): Promise<void> {
    const chosen = await this.db.query<{ tid: string }>(
      'SELECT tid FROM "transaction" WHERE tid > 0 AND tid <= $1 AND NOT packed ORDER BY tid DESC LIMIT 1',
      [requested.toString()],
    );
    if (chosen.rows.length === 0) {
      this.log(`pack: no unpacked transaction at or before ${requested}: nothing to pack`);
    } else {
      const packTid = chosen.rows[0].tid;
      this.log(`pack: packing to tid ${packTid} (${this.gc ? 'with' : 'without'} gc)`);
      await this.prePack(packTid);
      await this.pack(packTid);
    }
    await this.cleanup();
    this.log('pack: finished');
  }

  // --- pre-pack ---

  private async prePack(packTid: string): Promise<void> {
    if (this.gc) await this.fillObjectRefs();
    await this.inTransaction(async () => {
      await this.db.query('TRUNCATE pack_object');
      await this.db.query(
        `INSERT INTO pack_object (zoid, keep, keep_tid)
         SELECT zoid, $2, max(tid) FROM object_state WHERE tid > 0 AND tid <= $1 GROUP BY zoid`,
        [packTid, !this.gc],
      );
      await this.db.query('UPDATE pack_object SET keep = true WHERE zoid = 0');
    });
    if (this.gc) await this.inTransaction(() => this.markReachable(packTid));
    await this.inTransaction(async () => {
      await this.db.query('TRUNCATE pack_state');
      const removed = this.gc
        ? await this.db.query(
            `INSERT INTO pack_state (tid, zoid)
             SELECT s.tid, s.zoid FROM object_state s JOIN pack_object p USING (zoid)
             WHERE NOT p.keep AND s.tid > 0 AND s.tid <= $1`,
            [packTid],
          )
        : // objects whose newest state deletes them (an undone creation, say)
          await this.db.query(
            `INSERT INTO pack_state (tid, zoid)
             SELECT s.tid, s.zoid FROM object_state s
             WHERE s.state IS NULL AND s.tid = (SELECT max(i.tid) FROM object_state i WHERE i.zoid = s.zoid)`,
          );
      const history = await this.db.query(
        `INSERT INTO pack_state (tid, zoid)
         SELECT s.tid, s.zoid FROM object_state s JOIN pack_object p USING (zoid)
         WHERE p.keep AND s.tid > 0 AND s.tid <> p.keep_tid AND s.tid <= $1`,
        [packTid],
      );
      await this.db.query('TRUNCATE pack_state_tid');
      await this.db.query('INSERT INTO pack_state_tid (tid) SELECT DISTINCT tid FROM pack_state');
      this.log(`pre_pack: will remove ${(removed.rowCount ?? 0) + (history.rowCount ?? 0)} object state(s)`);
    });
  }

  /** object_ref and object_refs_added for every transaction not analysed yet, a page of them at a time */
  private async fillObjectRefs(): Promise<void> {
    let after = '-1';
    let done = 0;
    for (;;) {
      const page = await this.db.query<{ tid: string }>(
        `SELECT t.tid FROM "transaction" t
         WHERE t.tid > $1 AND NOT EXISTS (SELECT 1 FROM object_refs_added a WHERE a.tid = t.tid)
         ORDER BY t.tid LIMIT $2`,
        [after, packTuning.refTransactionsPerPage],
      );
      if (page.rows.length === 0) break;
      const tids = page.rows.map((r) => r.tid);
      after = tids[tids.length - 1];
      await this.inTransaction(() => this.addRefs(tids));
      done += tids.length;
    }
    this.log(`pre_pack: analysed references in ${done} transaction(s)`);
  }

  private async addRefs(tids: string[]): Promise<void> {
    // rows left by an interrupted pre-pack
    await this.db.query('DELETE FROM object_ref WHERE tid = ANY($1::bigint[])', [tids]);
    const from: string[] = [];
    const at: string[] = [];
    const to: string[] = [];
    const flush = async (): Promise<void> => {
      if (from.length === 0) return;
      await this.db.query(
        `INSERT INTO object_ref (zoid, tid, to_zoid)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])`,
        [from, at, to],
      );
      from.length = at.length = to.length = 0;
    };
    let lastTid = '-1';
    let lastZoid = '-1';
    for (;;) {
      const states = await this.db.query<{ zoid: string; tid: string; state: Buffer | null }>(
        `SELECT zoid, tid, state FROM object_state
         WHERE tid = ANY($1::bigint[]) AND (tid, zoid) > ($2::bigint, $3::bigint)
         ORDER BY tid, zoid LIMIT $4`,
        [tids, lastTid, lastZoid, packTuning.refStatesPerRead],
      );
      for (const { zoid, tid, state } of states.rows) {
        if (!state || state.length === 0) continue;
        let refs;
        try {
          refs = this.referencesf(state);
        } catch (e) {
          throw new StorageError(
            `pre_pack: can't unpickle object ${zoid} in transaction ${tid} (state length ${state.length}): ` +
              (e as Error).message,
            { cause: e },
          );
        }
        // each (zoid, tid, to_zoid) once: the table's primary key
        for (const ref of new Set(refs.map((r) => u64(r).toString()))) {
          from.push(zoid);
          at.push(tid);
          to.push(ref);
        }
        if (from.length >= packTuning.refRowsPerInsert) await flush();
      }
      if (states.rows.length < packTuning.refStatesPerRead) break;
      const last = states.rows[states.rows.length - 1];
      lastTid = last.tid;
      lastZoid = last.zoid;
    }
    await flush();
    await this.db.query('INSERT INTO object_refs_added (tid) SELECT unnest($1::bigint[])', [tids]);
  }

  /** pack_object.keep for what the pack must keep with gc (RelStorage's temp_pack_visit steps and TreeMarker) */
  private async markReachable(packTid: string): Promise<void> {
    // changed after the pack tid, or referenced by a state after it
    await this.db.query(
      'UPDATE pack_object SET keep = true WHERE zoid IN (SELECT zoid FROM current_object WHERE tid > $1)',
      [packTid],
    );
    await this.db.query(
      'UPDATE pack_object SET keep = true WHERE zoid IN (SELECT to_zoid FROM object_ref WHERE tid > $1)',
      [packTid],
    );
    // the references that count: from an object's states at and after its keep_tid
    await this.db.query(
      `CREATE TEMPORARY TABLE temp_pack_ref ON COMMIT DROP AS
       SELECT DISTINCT r.zoid, r.to_zoid FROM object_ref r JOIN pack_object p USING (zoid)
       WHERE r.tid >= p.keep_tid`,
    );
    await this.db.query('CREATE INDEX temp_pack_ref_zoid ON temp_pack_ref (zoid)');
    await this.db.query('ANALYZE temp_pack_ref');
    const marked = await this.db.query(
      `WITH RECURSIVE reachable (zoid) AS (
         SELECT zoid FROM pack_object WHERE keep
         UNION
         SELECT r.to_zoid FROM temp_pack_ref r JOIN reachable USING (zoid)
       )
       UPDATE pack_object SET keep = true, visited = true FROM reachable WHERE pack_object.zoid = reachable.zoid`,
    );
    this.log(`pre_pack: ${marked.rowCount ?? 0} object(s) reachable`);
  }

  // --- pack ---

  private async pack(packTid: string): Promise<void> {
    let after = '0';
    let batches = 0;
    let transactions = 0;
    let states = 0;
    for (;;) {
      // the next transactions to pack, oldest first, with how many states of each go (null: none listed)
      const page = await this.db.query<{ tid: string; removable: string | null }>(
        `SELECT t.tid, (SELECT count(*) FROM pack_state s WHERE s.tid = t.tid) AS removable
         FROM "transaction" t
         WHERE t.tid > $1 AND t.tid <= $2
           AND (NOT t.packed OR EXISTS (SELECT 1 FROM pack_state_tid p WHERE p.tid = t.tid))
         ORDER BY t.tid LIMIT $3`,
        [after, packTid, packTuning.batchTransactions],
      );
      if (page.rows.length === 0) break;
      let n = 0;
      let removable = 0;
      while (n < page.rows.length && removable < packTuning.batchStates)
        removable += Number(page.rows[n++].removable);
      const batch = page.rows.slice(0, n).map((r) => r.tid);
      after = batch[batch.length - 1];
      await this.inTransaction(async () => {
        await this.db.query('SELECT pg_advisory_xact_lock($1)', [COMMIT_LOCK]);
        await this.db.query(
          `DELETE FROM current_object c USING pack_state s
           WHERE s.tid = ANY($1::bigint[]) AND c.zoid = s.zoid AND c.tid = s.tid`,
          [batch],
        );
        const removed = await this.db.query(
          `DELETE FROM object_state o USING pack_state s
           WHERE s.tid = ANY($1::bigint[]) AND o.zoid = s.zoid AND o.tid = s.tid`,
          [batch],
        );
        states += removed.rowCount ?? 0;
        // the history chains now end at the kept states
        await this.db.query(
          `UPDATE object_state SET prev_tid = 0
           WHERE prev_tid IN (SELECT tid FROM pack_state_tid WHERE tid = ANY($1::bigint[])) AND tid <= $2`,
          [batch, packTid],
        );
        await this.db.query(
          `UPDATE "transaction" t
           SET packed = true, is_empty = NOT EXISTS (SELECT 1 FROM object_state o WHERE o.tid = t.tid)
           WHERE t.tid = ANY($1::bigint[])`,
          [batch],
        );
      });
      batches++;
      transactions += batch.length;
      this.log(`pack: batch ${batches}: packed ${transactions} transaction(s), removed ${states} state(s)`);
    }
  }

  // --- cleanup ---

  private async cleanup(): Promise<void> {
    await this.inTransaction(async () => {
      await this.db.query(
        'DELETE FROM object_refs_added WHERE tid IN (SELECT tid FROM "transaction" WHERE is_empty)',
      );
      await this.db.query(
        'DELETE FROM object_ref WHERE tid IN (SELECT tid FROM "transaction" WHERE is_empty)',
      );
    });
    let deleted = 0;
    for (;;) {
      const r = await this.db.query(
        `DELETE FROM "transaction" WHERE tid IN (
           SELECT tid FROM "transaction" WHERE packed AND is_empty ORDER BY tid LIMIT $1)`,
        [packTuning.deleteTransactionsPerBatch],
      );
      deleted += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < packTuning.deleteTransactionsPerBatch) break;
    }
    this.log(`pack: removed ${deleted} empty transaction(s)`);
    await this.db.query('TRUNCATE pack_object, pack_state, pack_state_tid');
  }
}
