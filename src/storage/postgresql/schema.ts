// RelStorage 4.x's history-preserving schema on PostgreSQL, written from what its tables must be (the same
// tables, columns, constraints, indexes, sequence and view, under the same names, so that RelStorage opens a
// database zeo-ts created and the other way round). RelStorage's stored procedures are not installed: zeo-ts
// runs its own SQL and takes the same locks; RelStorage installs its procedures itself when it opens the
// database. The blob_chunk trigger is installed under RelStorage's names, so RelStorage finds it and adds no
// second one.

import type pg from 'pg';

/** The tables and the rest, in dependency order; one database transaction (see installSchema). */
const SCHEMA_DDL = `
CREATE TABLE "transaction" (
  tid bigint NOT NULL,
  packed boolean NOT NULL DEFAULT FALSE,
  is_empty boolean NOT NULL DEFAULT FALSE,
  username bytea NOT NULL,
  description bytea NOT NULL,
  extension bytea,
  CONSTRAINT transaction_pkey PRIMARY KEY (tid)
);

CREATE TABLE object_state (
  zoid bigint NOT NULL,
  tid bigint NOT NULL,
  prev_tid bigint NOT NULL,
  md5 char(32),
  state_size bigint NOT NULL,
  state bytea,
  CONSTRAINT object_state_pk PRIMARY KEY (zoid, tid),
  CONSTRAINT object_state_tid_fkey FOREIGN KEY (tid) REFERENCES "transaction" (tid),
  CONSTRAINT object_state_prev_tid_fkey FOREIGN KEY (prev_tid) REFERENCES "transaction" (tid),
  CONSTRAINT object_state_tid_check CHECK (tid > 0),
  CONSTRAINT object_state_state_size_check CHECK (state_size >= 0)
);
CREATE INDEX object_state_tid ON object_state (tid);
CREATE INDEX object_state_prev_tid ON object_state (prev_tid);

CREATE TABLE current_object (
  zoid bigint NOT NULL,
  tid bigint NOT NULL,
  CONSTRAINT current_object_pkey PRIMARY KEY (zoid),
  CONSTRAINT current_object_zoid_tid_fkey FOREIGN KEY (zoid, tid) REFERENCES object_state (zoid, tid)
);
CREATE INDEX current_object_tid ON current_object (tid);

CREATE TABLE blob_chunk (
  zoid bigint NOT NULL,
  tid bigint NOT NULL,
  chunk_num bigint NOT NULL,
  chunk oid NOT NULL,
  CONSTRAINT blob_chunk_pk PRIMARY KEY (zoid, tid, chunk_num),
  CONSTRAINT blob_chunk_fk FOREIGN KEY (zoid, tid) REFERENCES object_state (zoid, tid) ON DELETE CASCADE
);
CREATE INDEX blob_chunk_lookup ON blob_chunk (zoid, tid);

CREATE TABLE commit_row_lock (
  tid bigint NOT NULL,
  CONSTRAINT commit_row_lock_pkey PRIMARY KEY (tid)
);

CREATE TABLE object_ref (
  zoid bigint NOT NULL,
  tid bigint NOT NULL,
  to_zoid bigint NOT NULL,
  CONSTRAINT object_ref_pkey PRIMARY KEY (tid, zoid, to_zoid)
);

CREATE TABLE object_refs_added (
  tid bigint NOT NULL,
  CONSTRAINT object_refs_added_pkey PRIMARY KEY (tid)
);

CREATE TABLE pack_object (
  zoid bigint NOT NULL,
  keep boolean NOT NULL,
  keep_tid bigint NOT NULL,
  visited boolean NOT NULL DEFAULT FALSE,
  CONSTRAINT pack_object_pkey PRIMARY KEY (zoid)
);
CREATE INDEX pack_object_keep_false ON pack_object (zoid) WHERE keep = FALSE;
CREATE INDEX pack_object_keep_true ON pack_object (visited) WHERE keep = TRUE;

CREATE TABLE pack_state (
  tid bigint NOT NULL,
  zoid bigint NOT NULL,
  CONSTRAINT pack_state_pkey PRIMARY KEY (tid, zoid)
);

CREATE TABLE pack_state_tid (
  tid bigint NOT NULL,
  CONSTRAINT pack_state_tid_pkey PRIMARY KEY (tid)
);

CREATE SEQUENCE zoid_seq;

CREATE VIEW current_object_state AS
  SELECT zoid, tid, state FROM object_state JOIN current_object USING (zoid, tid);

-- tid 0 stands for "no previous revision" (object_state.prev_tid of a new object); the one row of
-- commit_row_lock is what RelStorage's row-lock databases lock at commit
INSERT INTO "transaction" (tid, username, description)
  VALUES (0, 'system'::bytea, 'special transaction for object creation'::bytea);
INSERT INTO commit_row_lock (tid) VALUES (0);
`;

/**
 * A blob's large object is shared by the blob_chunk rows of the revisions that kept it (pack copies rows, not
 * data): it goes with the last row that names it.
 */
const BLOB_CHUNK_TRIGGER_DDL = `
CREATE OR REPLACE FUNCTION blob_chunk_delete_trigger() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM blob_chunk WHERE chunk = OLD.chunk AND ctid <> OLD.ctid) THEN
    PERFORM lo_unlink(OLD.chunk);
  END IF;
  RETURN OLD;
END;
$body$;

CREATE TRIGGER blob_chunk_delete BEFORE DELETE ON blob_chunk
  FOR EACH ROW EXECUTE FUNCTION blob_chunk_delete_trigger();
`;

/** 'zeo' in ASCII: the first key of the advisory lock installSchema holds */
const INSTALL_LOCK_KEY = 0x7a656f;

/** Whether the database has a RelStorage schema (of either kind: object_state is in both). */
export async function schemaExists(client: pg.ClientBase): Promise<boolean> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'object_state'`,
  );
  return Number(r.rows[0].n) > 0;
}

/** Whether the schema is history-free (no transaction table), which this engine refuses as RelStorage does. */
export async function schemaIsHistoryFree(client: pg.ClientBase): Promise<boolean> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_tables
      WHERE schemaname = current_schema() AND tablename IN ('transaction', 'current_object')`,
  );
  return Number(r.rows[0].n) === 0;
}

/**
 * Creates the history-preserving schema in an empty database, with its initial rows, in one database
 * transaction (all or nothing); a schema that is there already (another process won the race) is left as it is.
 */
export async function installSchema(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  try {
    // two processes creating one database: the second waits here, then finds the tables (a two-key advisory
    // lock: not in the key space of RelStorage's one-key locks)
    await client.query(`SELECT pg_advisory_xact_lock(${INSTALL_LOCK_KEY}, 0)`);
    if (await schemaExists(client)) {
      await client.query('ROLLBACK');
      return;
    }
    await client.query(SCHEMA_DDL);
    await client.query(BLOB_CHUNK_TRIGGER_DDL);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}
