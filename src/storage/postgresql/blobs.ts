// Blobs in the database as RelStorage 4.x keeps them on PostgreSQL (adapters/postgresql/mover.py upload_blob,
// download_blob): each blob revision is one large object, named by a blob_chunk row (zoid, tid, chunk_num 0,
// chunk = the large object's oid). Older RelStorage databases may hold several chunks per revision: they are
// read in chunk_num order. A large object shared by several rows (undo copies rows forward; pack keeps them)
// is unlinked by the blob_chunk_delete trigger with its last row.
//
// The blob directory is a local cache (RelStorage's blob-dir with shared-blob-dir false): loadBlob gives the
// cached file, downloading it first when it is not there; storeBlob takes the upload into the directory's
// tmp/ at once (so the caller's file is ours), the vote writes it into a large object in the database
// transaction (before the locks: a big blob does not hold them longer), and once committed the file is
// renamed into the cache. Files are streamed a piece at a time both ways: memory stays bounded.

import { copyFile, open, rename, unlink } from 'node:fs/promises';
import type pg from 'pg';
import { BlobDirectory } from '../blobs/index.js';
import { POSKeyError } from '../errors.js';
import { u64, type Oid, type Tid } from '../ids.js';
import { namedQuery, type NamedQuery } from './sql.js';

const q = namedQuery;

/** bytes per lo_put / lo_get call */
const PIECE = 1 << 20;

export const BLOB_SQL = {
  /** the large objects of a blob revision, in order */
  chunks: q(
    'blob_chunks',
    `SELECT chunk FROM blob_chunk WHERE zoid = $1::bigint AND tid = $2::bigint ORDER BY chunk_num`,
  ),
  create: q('blob_lo_create', `SELECT lo_create(0) AS loid`),
  put: q('blob_lo_put', `SELECT lo_put($1::oid, $2::bigint, $3::bytea)`),
  get: q('blob_lo_get', `SELECT lo_get($1::oid, $2::bigint, $3::integer) AS data`),
  /** which of the revisions (zoids $1, tids $2) still have blob rows */
  kept: q(
    'blob_kept',
    `SELECT DISTINCT b.zoid, b.tid FROM blob_chunk b
     JOIN unnest($1::bigint[], $2::bigint[]) AS r(zoid, tid) ON b.zoid = r.zoid AND b.tid = r.tid`,
  ),
  /** the rows of the transaction $1's blobs (zoids $2, large objects $3) */
  insert: q(
    'blob_chunk_insert',
    `INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk)
     SELECT z, $1::bigint, 0, l FROM unnest($2::bigint[], $3::oid[]) AS b(z, l)`,
  ),
} as const;

async function run<R extends pg.QueryResultRow>(
  client: pg.ClientBase | pg.Pool,
  sql: NamedQuery,
  values: unknown[],
): Promise<R[]> {
  return (await client.query<R>({ name: sql.name, text: sql.text, values })).rows;
}

export class PostgreSQLBlobCache {
  /** downloads in progress, by path: a second loadBlob of the same revision waits for the first */
  private readonly downloads = new Map<string, Promise<string>>();

  private constructor(readonly dir: BlobDirectory) {}

  static async open(path: string): Promise<PostgreSQLBlobCache> {
    return new PostgreSQLBlobCache(await BlobDirectory.open(path));
  }

  /** Takes the caller's file into tmp/ (renamed, else copied and removed): the path it has now. */
  async adopt(file: string): Promise<string> {
    const tmp = await this.dir.tempFile('upload', '.blob');
    try {
      await rename(file, tmp);
    } catch {
      await copyFile(file, tmp);
      await unlink(file);
    }
    return tmp;
  }

  /** Writes the file into a new large object, in the client's transaction; its oid. */
  async upload(client: pg.ClientBase, file: string): Promise<string> {
    const [{ loid }] = await run<{ loid: string }>(client, BLOB_SQL.create, []);
    const fh = await open(file, 'r');
    try {
      const buf = Buffer.alloc(PIECE);
      for (let at = 0; ;) {
        const { bytesRead } = await fh.read(buf, 0, PIECE, at);
        if (bytesRead === 0) break;
        await run(client, BLOB_SQL.put, [loid, at, buf.subarray(0, bytesRead)]);
        at += bytesRead;
      }
    } finally {
      await fh.close();
    }
    return loid;
  }

  /** The blob_chunk rows of the transaction's blobs, once its object_state rows are written. */
  async insertRows(client: pg.ClientBase, tid: bigint, zoids: bigint[], loids: string[]): Promise<void> {
    if (zoids.length) await run(client, BLOB_SQL.insert, [tid.toString(), zoids.map(String), loids]);
  }

  /** After the commit: the uploads become the cached revisions (a failure only leaves them to download). */
  async committed(oid: Oid, tid: Tid, file: string): Promise<void> {
    await this.dir.commit(oid, tid, file).catch(() => unlink(file).catch(() => {}));
  }

  /**
   * After a pack: the cached revisions the database no longer has are removed, so a loadBlob of one is a
   * POSKeyError as the storage's other reads are (the cache is checked a batch of oids at a time).
   */
  async dropPacked(pool: pg.Pool): Promise<void> {
    let batch: Array<{ oid: Oid; tid: Tid }> = [];
    const check = async (): Promise<void> => {
      const rows = await run<{ zoid: string; tid: string }>(pool, BLOB_SQL.kept, [
        batch.map((r) => u64(r.oid).toString()),
        batch.map((r) => u64(r.tid).toString()),
      ]);
      const kept = new Set(rows.map((r) => `${r.zoid}.${r.tid}`));
      for (const r of batch) {
        if (!kept.has(`${u64(r.oid)}.${u64(r.tid)}`)) await this.dir.remove(r.oid, r.tid, { prune: true });
      }
      batch = [];
    };
    for await (const { oid } of this.dir.listOids()) {
      for (const tid of await this.dir.revisions(oid)) batch.push({ oid, tid });
      if (batch.length >= 1000) await check();
    }
    if (batch.length) await check();
  }

  /** The cached file of the revision, downloaded when missing; POSKeyError when the database has none. */
  async load(pool: pg.Pool, oid: Oid, serial: Tid): Promise<string> {
    const path = this.dir.path(oid, serial);
    if (await this.dir.exists(oid, serial)) return path;
    let pending = this.downloads.get(path);
    if (!pending) {
      pending = this.download(pool, oid, serial).finally(() => this.downloads.delete(path));
      this.downloads.set(path, pending);
    }
    return pending;
  }

  private async download(pool: pg.Pool, oid: Oid, serial: Tid): Promise<string> {
    const client = await pool.connect();
    const tmp = await this.dir.tempFile('download', '.blob');
    let done = false;
    let inTransaction = false;
    let broken: Error | undefined;
    try {
      // one snapshot: the rows and their large objects as of one moment (a pack may remove them meanwhile)
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      inTransaction = true;
      const chunks = await run<{ chunk: string }>(client, BLOB_SQL.chunks, [
        u64(oid).toString(),
        u64(serial).toString(),
      ]);
      if (chunks.length === 0) throw new POSKeyError(oid, serial);
      const fh = await open(tmp, 'w');
      try {
        let written = 0;
        for (const { chunk } of chunks) {
          for (let at = 0; ; at += PIECE) {
            const [{ data }] = await run<{ data: Buffer }>(client, BLOB_SQL.get, [chunk, at, PIECE]);
            if (data.length) await fh.write(data, 0, data.length, written);
            written += data.length;
            if (data.length < PIECE) break;
          }
        }
      } finally {
        await fh.close();
      }
      await client.query('COMMIT');
      inTransaction = false;
      const path = await this.dir.commit(oid, serial, tmp);
      done = true;
      return path;
    } catch (e) {
      if (!(e instanceof POSKeyError)) broken = e as Error;
      throw e;
    } finally {
      if (!done) await unlink(tmp).catch(() => {});
      if (inTransaction && !broken) await client.query('ROLLBACK').catch(() => {});
      client.release(broken);
    }
  }
}
