// The SQL of the PostgreSQL storage, in one place (RelStorage's history-preserving tables; see schema.ts). The
// hot queries are named, so node-postgres prepares each once per connection. Ids travel as bigint text.

/** The channel our commits notify (inside the committing transaction: the notification goes at COMMIT). */
export const COMMIT_CHANNEL = 'zodb_commit';

/** RelStorage's advisory lock keys (its locker.py): the commit lock; object locks are the zoids themselves. */
export const COMMIT_LOCK_KEY = -1;

export interface NamedQuery {
  readonly name: string;
  readonly text: string;
}

/** A named (prepared) statement; our names start with zeo_ so they never meet another client's. */
export const namedQuery = (name: string, text: string): NamedQuery => ({ name: `zeo_${name}`, text });
const q = namedQuery;

export const SQL = {
  load: q(
    'load',
    `SELECT c.tid, o.state FROM current_object c
       JOIN object_state o ON o.zoid = c.zoid AND o.tid = c.tid
      WHERE c.zoid = $1::bigint`,
  ),
  /** the revision before $2 (none: NULLs), and the tid of the next one (or NULL) */
  loadBefore: q(
    'load_before',
    `SELECT b.tid, b.state, b.found,
            (SELECT min(n.tid) FROM object_state n WHERE n.zoid = $1::bigint AND n.tid >= $2::bigint) AS next
       FROM (SELECT 1) x
       LEFT JOIN LATERAL (
         SELECT tid, state, TRUE AS found FROM object_state
          WHERE zoid = $1::bigint AND tid < $2::bigint ORDER BY tid DESC LIMIT 1
       ) b ON TRUE`,
  ),
  loadSerial: q('load_serial', `SELECT state FROM object_state WHERE zoid = $1::bigint AND tid = $2::bigint`),
  history: q(
    'history',
    `SELECT o.tid, o.state_size, t.username, t.description, t.extension
       FROM object_state o JOIN "transaction" t ON t.tid = o.tid
      WHERE o.zoid = $1::bigint ORDER BY o.tid DESC LIMIT $2::bigint`,
  ),
  /** one value of the sequence stands for 16 oids (RelStorage's oidallocator: n*16-15 .. n*16) */
  newOids: q('new_oids', `SELECT nextval('zoid_seq') AS n`),
  lastTid: q('last_tid', `SELECT COALESCE(max(tid), 0) AS tid FROM "transaction"`),
  counts: q(
    'counts',
    `SELECT (SELECT count(*) FROM current_object) AS objects,
            pg_total_relation_size('object_state') AS size`,
  ),
  /**
   * The commit lock, then (a statement of its own, so it reads what committed while it waited) the last tid
   * and the database's clock: the new tid comes from them.
   */
  commitLockAndClock: `SELECT pg_advisory_xact_lock(${COMMIT_LOCK_KEY});
    SELECT COALESCE(max(tid), 0) AS max_tid, EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now FROM "transaction"`,
  /** the same without waiting (got: whether the lock is ours; when not, the clock is of no use) */
  tryCommitLockAndClock: `SELECT pg_try_advisory_xact_lock(${COMMIT_LOCK_KEY}) AS got;
    SELECT COALESCE(max(tid), 0) AS max_tid, EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now FROM "transaction"`,
  /**
   * The transaction, its object states (prev_tid: the revision current under the object lock), the current
   * objects, and the notification; `added`: the objects that are new.
   */
  writeTransaction: q(
    'write_transaction',
    `WITH txn AS (
       INSERT INTO "transaction" (tid, packed, username, description, extension)
       VALUES ($1::bigint, $2::boolean, $3::bytea, $4::bytea, $5::bytea)
     ), rec AS (
       SELECT r.zoid, COALESCE(c.tid, 0) AS prev, r.md5, r.state
         FROM unnest($6::bigint[], $7::text[], $8::bytea[]) AS r(zoid, md5, state)
         LEFT JOIN current_object c ON c.zoid = r.zoid
     ), st AS (
       INSERT INTO object_state (zoid, tid, prev_tid, md5, state_size, state)
       SELECT zoid, $1::bigint, prev, md5, COALESCE(length(state), 0), state FROM rec
     ), cur AS (
       INSERT INTO current_object (zoid, tid) SELECT zoid, $1::bigint FROM rec
       ON CONFLICT (zoid) DO UPDATE SET tid = excluded.tid
       RETURNING (xmax = 0) AS inserted
     )
     SELECT (SELECT count(*) FROM cur WHERE inserted) AS added,
            pg_notify('${COMMIT_CHANNEL}', ($1::bigint)::text) AS notified`,
  ),
  /** up to $3 transactions after $1 (and before $2), with the oids they wrote: what other writers committed */
  transactionsAfter: q(
    'transactions_after',
    `SELECT t.tid, array_remove(array_agg(o.zoid ORDER BY o.zoid), NULL) AS zoids
       FROM "transaction" t LEFT JOIN object_state o ON o.tid = t.tid
      WHERE t.tid IN (
        SELECT tid FROM "transaction" WHERE tid > $1::bigint AND tid < $2::bigint ORDER BY tid LIMIT $3::bigint
      )
      GROUP BY t.tid ORDER BY t.tid`,
  ),
  /** the newest $1 transactions, with their oids */
  lastTransactions: q(
    'last_transactions',
    `SELECT t.tid, array_remove(array_agg(o.zoid ORDER BY o.zoid), NULL) AS zoids
       FROM (SELECT tid FROM "transaction" WHERE tid > 0 ORDER BY tid DESC LIMIT $1::bigint) t
       LEFT JOIN object_state o ON o.tid = t.tid
      GROUP BY t.tid ORDER BY t.tid DESC`,
  ),
  /** up to $3 transactions from $1 to $2 */
  iterTransactions: q(
    'iter_transactions',
    `SELECT tid, packed, username, description, extension FROM "transaction"
      WHERE tid >= $1::bigint AND tid <= $2::bigint AND tid > 0 ORDER BY tid LIMIT $3::bigint`,
  ),
  iterRecords: q(
    'iter_records',
    `SELECT zoid, tid, state FROM object_state WHERE tid = ANY($1::bigint[]) ORDER BY tid, zoid`,
  ),
  /** the current record at or after $1, and the next oid */
  recordIternext: q(
    'record_iternext',
    `SELECT c.zoid, c.tid, o.state FROM current_object c
       JOIN object_state o ON o.zoid = c.zoid AND o.tid = c.tid
      WHERE c.zoid >= $1::bigint AND o.state IS NOT NULL ORDER BY c.zoid LIMIT 2`,
  ),
} as const;

/** A bigint[] literal of ids (digits only: safe to put in the text of a statement). */
function ids(values: readonly bigint[]): string {
  return `'{${values.join(',')}}'::bigint[]`;
}

/**
 * The statements of a vote, with their ids written into them, so that several go in one round trip (a
 * simple query of several statements: each reads what committed before it began, as it would alone).
 */
export const VOTE_SQL = {
  begin: (lockTimeoutMs: number): string => `BEGIN; SET LOCAL lock_timeout = ${Math.round(lockTimeoutMs)}`,
  /** readCurrent's check: the first object whose current tid is not the one read (or that is missing) */
  readCurrentStale: (zoids: readonly bigint[], tids: readonly bigint[]): string =>
    `SELECT t.zoid, c.tid FROM unnest(${ids(zoids)}, ${ids(tids)}) AS t(zoid, tid)
       LEFT JOIN current_object c ON c.zoid = t.zoid
      WHERE c.tid IS DISTINCT FROM t.tid ORDER BY t.zoid LIMIT 1`,
  /** readCurrent's shared locks, tried in zoid order (no wait): the zoids whose lock a writer holds */
  readCurrentLock: (zoids: readonly bigint[]): string =>
    `SELECT zoid FROM (
       SELECT z AS zoid, pg_try_advisory_xact_lock_shared(z) AS got FROM unnest(${ids(zoids)}) AS z ORDER BY z
     ) x WHERE NOT got`,
  /** the object locks of the stored objects that exist, in zoid order (waits up to lock_timeout) */
  lockObjects: (zoids: readonly bigint[]): string =>
    `SELECT pg_advisory_xact_lock(zoid) FROM current_object WHERE zoid = ANY(${ids(zoids)}) ORDER BY zoid`,
  /**
   * The stored objects whose current tid is not the one the store read, with the current state when asked:
   * write conflicts (and deletes of objects that are gone).
   */
  conflicts: (zoids: readonly bigint[], prevs: readonly bigint[], withState: boolean): string =>
    `SELECT t.zoid, c.tid, ${withState ? 'o.state' : 'NULL::bytea AS state'}
       FROM unnest(${ids(zoids)}, ${ids(prevs)}) AS t(zoid, prev)
       LEFT JOIN current_object c ON c.zoid = t.zoid
       LEFT JOIN object_state o ON o.zoid = c.zoid AND o.tid = c.tid
      WHERE c.tid IS DISTINCT FROM t.prev AND (c.tid IS NOT NULL OR t.prev <> 0)`,
  /** makes the sequence pass range n (RelStorage's set_min_oid: stored oids that it did not hand out) */
  setMinOidRange: (n: bigint): string =>
    `SELECT CASE WHEN ${n} > nextval('zoid_seq') THEN setval('zoid_seq', ${n}) ELSE 0 END`,
} as const;
