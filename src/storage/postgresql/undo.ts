// Undo on RelStorage's history-preserving schema (its adapters/packundo.py verify_undoable and undo, storage/
// history.py undoLog), in our own SQL:
//
//   - undoLog lists the transactions that are not packed, newest first (RelStorage's iter_transactions), with
//     RelStorage's ids: base64 of the tid without its newline (FileStorage's too), so an id from either works
//     with the other;
//   - undoing transaction T writes, for each object T changed, the state T replaced (the state at its
//     prev_tid; none when T created the object: the creation is undone), when the object's current state is
//     T's (RelStorage compares the md5 columns). RelStorage refuses otherwise; we first try conflict
//     resolution, as FileStorage does (the state T replaced, merged with the current one, from T's state), and
//     refuse (UndoError) only when that fails. The root object's creation is never undone (RelStorage's rule).
//     A blob's rows are copied forward with its state (the large object is shared, as RelStorage shares it).
//
// Where it differs from RelStorage: RelStorage takes the pack lock and the commit lock in undo() and writes
// the rows there, holding the commit lock until the transaction ends; here undo() reads and decides, and its
// records are written at the vote like stores, under the object locks (so a writer that changed an object
// since undo() read it is a ConflictError, not a lost update), and the vote takes the pack lock (tried) once it
// holds the commit lock, and checks that no undone transaction was packed meanwhile.

import { createHash } from 'node:crypto';
import type pg from 'pg';
import { undoLogEntry } from '../base.js';
import { MultipleUndoErrors, UndoError } from '../errors.js';
import { decodeExtension } from '../extension.js';
import { p64, type Oid, type Tid } from '../ids.js';
import type { UndoLogEntry } from '../interfaces.js';
import { namedQuery, type NamedQuery } from './sql.js';

const q = namedQuery;

/** transactions read per query by undoLog (its filter may pass few: it reads on, a page at a time) */
const UNDO_LOG_PAGE = 100;

export const UNDO_SQL = {
  /** up to $2 unpacked transactions before $1, newest first */
  undoLogPage: q(
    'undo_log_page',
    `SELECT tid, username, description, extension FROM "transaction"
      WHERE tid > 0 AND tid < $1::bigint AND NOT packed ORDER BY tid DESC LIMIT $2::bigint`,
  ),
  undoable: q('undoable', `SELECT packed FROM "transaction" WHERE tid = $1::bigint`),
  /**
   * The states transaction $1 wrote, each with the object's current revision (its tid, md5 and, when $2, its
   * state, for conflict resolution) and the state it replaced (at prev_tid), and whether that one has a blob.
   */
  undoStates: q(
    'undo_states',
    `SELECT u.zoid, u.prev_tid, u.md5, c.tid AS cur_tid, cs.md5 AS cur_md5,
            CASE WHEN $2::boolean THEN cs.state END AS cur_state,
            p.tid IS NOT NULL AS prev_found, p.state AS prev_state,
            EXISTS (SELECT 1 FROM blob_chunk b WHERE b.zoid = u.zoid AND b.tid = u.prev_tid) AS prev_blob
       FROM object_state u
       LEFT JOIN current_object c ON c.zoid = u.zoid
       LEFT JOIN object_state cs ON cs.zoid = c.zoid AND cs.tid = c.tid
       LEFT JOIN object_state p ON p.zoid = u.zoid AND p.tid = u.prev_tid AND u.prev_tid <> 0
      WHERE u.tid = $1::bigint ORDER BY u.zoid`,
  ),
} as const;

/**
 * The statements of an undo transaction's vote, under the commit lock: the pack lock, tried (a pack holds it
 * while it runs; RelStorage's hold_pack_lock), and how many of the undone transactions are still unpacked.
 */
export const undoVoteCheck = (undone: readonly bigint[]): string =>
  `SELECT pg_try_advisory_xact_lock(-2) AS got,
          (SELECT count(*) FROM "transaction" WHERE NOT packed AND tid = ANY('{${undone.join(',')}}'::bigint[]))
            AS unpacked`;

/** Copies the blob rows of the undone states forward to $1 (the large objects are shared). */
export const COPY_BLOBS_FORWARD = q(
  'copy_blobs_forward',
  `INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk)
   SELECT b.zoid, $1::bigint, b.chunk_num, b.chunk
     FROM unnest($2::bigint[], $3::bigint[]) AS f(zoid, tid)
     JOIN blob_chunk b ON b.zoid = f.zoid AND b.tid = f.tid`,
);

type Query = <R extends pg.QueryResultRow>(sql: NamedQuery, values: unknown[]) => Promise<R[]>;

/** undoLog: entries `first` to `last` (negative: a count) of the unpacked transactions that pass `filter`. */
export async function undoLogOf(
  query: Query,
  first: number,
  last: number,
  filter: ((entry: UndoLogEntry) => boolean) | undefined,
): Promise<UndoLogEntry[]> {
  if (last < 0) last = first - last;
  const out: UndoLogEntry[] = [];
  let i = 0;
  let before = 1n << 63n;
  while (i < last) {
    const rows = await query<{
      tid: string;
      username: Buffer;
      description: Buffer;
      extension: Buffer | null;
    }>(UNDO_SQL.undoLogPage, [(before - 1n).toString(), UNDO_LOG_PAGE]);
    for (const r of rows) {
      const entry = undoLogEntry(
        p64(BigInt(r.tid)),
        new Uint8Array(r.username),
        new Uint8Array(r.description),
        decodeExtension(r.extension ? new Uint8Array(r.extension) : new Uint8Array(0)),
      );
      if (filter && !filter(entry)) continue;
      if (i >= first) out.push(entry);
      if (++i >= last) break;
    }
    if (rows.length < UNDO_LOG_PAGE) break;
    before = BigInt(rows[rows.length - 1].tid);
  }
  return out;
}

export function md5Hex(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

/** What a transaction holds for an object before an undo: its record (data null: deleted). */
export interface CurrentInTxn {
  readonly data: Uint8Array | null;
  /** the object's committed serial the transaction's record is based on */
  readonly oldSerial: bigint;
}

/** A record an undo writes. */
export interface UndoRecord {
  readonly oid: Oid;
  readonly zoid: bigint;
  /** the object's current serial as undo() read it (the vote checks it still is) */
  readonly oldSerial: bigint;
  readonly data: Uint8Array | null;
  /** the tid whose blob rows go with the state (copied forward), else null */
  readonly blobFrom: bigint | null;
}

export interface UndoPlanContext {
  query: Query;
  /** the transaction's own record of an object (an earlier undo or store in it), if any */
  inTxn(zoid: bigint): CurrentInTxn | undefined;
  /** the transaction's tid, as the current serial of what it holds */
  selfTid: Tid;
  /** whether conflicts may be resolved (a resolver is set) */
  resolves: boolean;
  resolve(
    oid: Oid,
    committedSerial: Tid,
    oldSerial: Tid,
    newData: Uint8Array,
    committedData: Uint8Array | null,
  ): Promise<Uint8Array | null>;
}

/** The records that undo transaction `tid`; UndoError (MultipleUndoErrors for the objects) when it cannot be. */
export async function planUndo(ctx: UndoPlanContext, tid: bigint): Promise<UndoRecord[]> {
  const txn = await ctx.query<{ packed: boolean }>(UNDO_SQL.undoable, [tid.toString()]);
  if (txn.length === 0 || txn[0].packed || tid === 0n) throw new UndoError('Transaction not found or packed');
  const rows = await ctx.query<{
    zoid: string;
    prev_tid: string;
    md5: string | null;
    cur_tid: string | null;
    cur_md5: string | null;
    cur_state: Buffer | null;
    prev_found: boolean;
    prev_state: Buffer | null;
    prev_blob: boolean;
  }>(UNDO_SQL.undoStates, [tid.toString(), ctx.resolves]);
  const out: UndoRecord[] = [];
  const failures: UndoError[] = [];
  for (const r of rows) {
    const zoid = BigInt(r.zoid);
    const oid = p64(zoid);
    const prevTid = BigInt(r.prev_tid);
    try {
      if (zoid === 0n && prevTid === 0n)
        throw new UndoError("Can't undo the creation of the root object", oid);
      if (r.cur_tid === null) throw new UndoError('Transaction not found or packed', oid);
      const mine = ctx.inTxn(zoid);
      const curMd5 = mine ? (mine.data === null ? null : md5Hex(mine.data)) : r.cur_md5;
      const oldSerial = mine ? mine.oldSerial : BigInt(r.cur_tid);
      if (prevTid !== 0n && !r.prev_found) throw new UndoError('_loadBack() failed', oid);
      const prevData = r.prev_state === null ? null : new Uint8Array(r.prev_state);
      if (curMd5 === r.md5) {
        // the object is as the undone transaction left it: the state it replaced comes back
        out.push({ oid, zoid, oldSerial, data: prevData, blobFrom: r.prev_blob ? prevTid : null });
        continue;
      }
      if (prevTid === 0n) {
        throw new UndoError("Can't undo an add transaction followed by conflicting transactions.", oid);
      }
      const curData = mine ? mine.data : r.cur_state === null ? null : new Uint8Array(r.cur_state);
      const resolved =
        prevData === null || curData === null
          ? null
          : await ctx.resolve(oid, mine ? ctx.selfTid : p64(BigInt(r.cur_tid)), p64(tid), prevData, curData);
      if (!resolved) throw new UndoError('Some data were modified by a later transaction', oid);
      out.push({ oid, zoid, oldSerial, data: resolved, blobFrom: null });
    } catch (e) {
      if (!(e instanceof UndoError)) throw e;
      failures.push(e);
    }
  }
  if (failures.length) throw new MultipleUndoErrors(failures);
  return out;
}
