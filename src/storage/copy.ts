// ZODB.BaseStorage.copy (copyTransactionsFrom) and ZODB.blob.copyTransactionsFromTo: every transaction of a
// source storage restored into a destination with its tid, status, metadata (the extension's bytes as stored)
// and back pointers, and the blob file of each blob record when both storages keep blobs. copyStorage adds
// zodbconvert's rules: a destination with transactions is refused unless the copy is incremental, and an
// incremental copy continues after the destination's last transaction only when the source has it.

import { copyFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isBlobRecord } from './blobs/index.js';
import { POSKeyError, Unsupported } from './errors.js';
import { compareIds, idCopy, idEquals, p64, tidRepr, u64, z64, type Tid } from './ids.js';
import { TimeStamp } from './timestamp.js';
import { TransactionMetaData, type Storage, type TransactionRecord } from './interfaces.js';

/** A copy that cannot (or must not) be made; nothing was written when it is raised before the first transaction. */
export class CopyError extends Error {
  override name = 'CopyError';
}

/** What a copy reports after each transaction (for a progress bar). */
export interface CopyProgress {
  /** transactions copied so far */
  transactions: number;
  /** data records copied so far */
  records: number;
  /** blob files copied so far */
  blobs: number;
  /** bytes of the source read so far: the file position where the source tells it, else an estimate */
  bytes: number;
  /** the tid of the transaction just copied */
  tid: Tid;
}

export interface CopyOptions {
  /** the first tid to copy (the source's iterator start); null: from the beginning */
  start?: Tid | null;
  /** copy blob files when both storages keep blobs (default true) */
  blobs?: boolean;
  onTransaction?: (progress: CopyProgress) => void;
  /**
   * restore a transaction's records in one call where the destination offers it (restoreRecords; default
   * true); false: restore() one by one (the general path, the same bytes)
   */
  bulk?: boolean;
  /** checked between transactions: an aborted copy stops after the transaction in hand */
  signal?: AbortSignal;
}

export interface CopyResult {
  transactions: number;
  records: number;
  blobs: number;
  /** the source's tid of the first transaction copied, null when there was none */
  first: Tid | null;
  /** of the last transaction copied */
  last: Tid | null;
}

// FileStorage's header sizes: the byte estimate of a source that does not say where its transactions are
const TXN_HEADER = 23;
const DATA_HEADER = 42;

function txnBytes(txn: TransactionRecord, dataBytes: number, records: number): number {
  return (
    TXN_HEADER +
    txn.user.length +
    txn.description.length +
    txn.extensionBytes.length +
    records * DATA_HEADER +
    dataBytes +
    8
  );
}

/** Copies all transactions of `source` (from options.start on) into `dest`; returns how many. */
export async function copyTransactions(
  source: Storage,
  dest: Storage,
  options?: CopyOptions,
): Promise<number> {
  return (await copyTransactionsDetailed(source, dest, options)).transactions;
}

/** copyTransactions, with counts of records and blobs and the tids copied. */
export async function copyTransactionsDetailed(
  source: Storage,
  dest: Storage,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const withBlobs = (options.blobs ?? true) && source.capabilities.blobs && dest.capabilities.blobs;
  // (blob records go one by one: each needs its file copied first)
  const bulk = !withBlobs && (options.bulk ?? true) && dest.restoreRecords !== undefined;
  // a destination that already has transactions (incremental): later tids stay later than its last
  const destLast = dest.lastTransaction();
  let last: TimeStamp | null = idEquals(destLast, z64) ? null : new TimeStamp(destLast);
  const result: CopyResult = { transactions: 0, records: 0, blobs: 0, first: null, last: null };
  let bytes = 0;
  for await (const txn of source.iterator(options.start ?? null)) {
    if (options.signal?.aborted) throw options.signal.reason;
    let ts = new TimeStamp(txn.tid);
    // tids out of order in the source (damaged or hand-made files): keep the destination's order, as ZODB does
    if (last !== null && ts.compare(last) <= 0) ts = ts.laterThan(last);
    last = ts;
    const tid = ts.raw();
    const meta = new TransactionMetaData(txn.user, txn.description, txn.extension, txn.extensionBytes);
    let records = 0;
    let dataBytes = 0;
    let blobs = 0;
    await dest.tpcBegin(meta, tid, txn.status);
    try {
      if (bulk) {
        // the destination restores the whole transaction in one step (FileStorage: no promise, copy or
        // read-cache write per record)
        ({ records, dataBytes } = await dest.restoreRecords!(txn.records, meta));
      } else {
        for await (const r of txn.records) {
          const blob = withBlobs && isBlobRecord(r.data) ? await blobOf(source, r.oid, r.tid) : null;
          if (blob !== null) {
            const copy = await copyBlobFile(blob, dest);
            try {
              await dest.restoreBlob(r.oid, tid, r.data!, copy, r.dataTxn, meta);
            } catch (e) {
              await unlink(copy).catch(() => {});
              if (e instanceof Unsupported) {
                throw new CopyError(
                  `the destination cannot restore blob files (${e.message}): copy the blob records without ` +
                    'their files (--no-blobs)',
                );
              }
              throw e;
            }
            blobs++;
          } else {
            await dest.restore(r.oid, tid, r.data, r.dataTxn, meta);
          }
          records++;
          dataBytes += r.data?.length ?? 8;
        }
      }
      await dest.tpcVote(meta);
      await dest.tpcFinish(meta);
    } catch (e) {
      await dest.tpcAbort(meta);
      throw e;
    }
    result.transactions++;
    result.records += records;
    result.blobs += blobs;
    // (an iterator's ids may be views of its buffers: keep copies)
    result.first ??= idCopy(txn.tid);
    result.last = idCopy(txn.tid);
    // a FileStorage's iterator says where the transaction is: the exact share of the file read so far
    const pos = (txn as { pos?: unknown }).pos;
    bytes =
      typeof pos === 'number'
        ? Math.max(bytes, pos + txnBytes(txn, dataBytes, records))
        : bytes + txnBytes(txn, dataBytes, records);
    options.onTransaction?.({
      transactions: result.transactions,
      records: result.records,
      blobs: result.blobs,
      bytes,
      tid,
    });
  }
  return result;
}

/** The committed blob file of a record, or null when the source has none (ZODB: a POSKeyError is skipped). */
async function blobOf(source: Storage, oid: Uint8Array, serial: Tid): Promise<string | null> {
  try {
    return await source.loadBlob(oid, serial);
  } catch (e) {
    if (e instanceof POSKeyError) return null;
    throw e;
  }
}

/** A copy of a source blob file in the destination's temporary directory (restoreBlob moves it in). */
async function copyBlobFile(file: string, dest: Storage): Promise<string> {
  const target = join(dest.temporaryDirectory(), `CTFT${randomBytes(6).toString('hex')}.tmp`);
  await copyFile(file, target);
  return target;
}

/** The first transaction of a storage at or after `start` (null: none). */
async function firstTid(
  storage: Storage,
  start: Tid | null = null,
  stop: Tid | null = null,
): Promise<Tid | null> {
  for await (const txn of storage.iterator(start, stop)) return idCopy(txn.tid);
  return null;
}

/**
 * Where an incremental copy continues (zodbconvert --incremental): the tid after the destination's last
 * transaction; null when the destination is empty. CopyError when the destination has transactions the
 * source lacks (its first or last transaction is not in the source): the two have different histories.
 */
export async function incrementalStart(source: Storage, dest: Storage): Promise<Tid | null> {
  const destLast = dest.lastTransaction();
  if (idEquals(destLast, z64)) return null;
  const destFirst = await firstTid(dest);
  for (const [which, tid] of [
    ['last', destLast],
    ['first', destFirst],
  ] as const) {
    if (tid === null) continue;
    const found = await firstTid(source, tid, tid);
    if (found === null || !idEquals(found, tid)) {
      throw new CopyError(
        `the destination has transactions the source lacks: its ${which} transaction ${tidRepr(tid)} is not ` +
          `in the source (last ${tidRepr(source.lastTransaction())}); they do not share a history`,
      );
    }
  }
  return p64(u64(destLast) + 1n);
}

export interface CopyStorageOptions extends Omit<CopyOptions, 'start'> {
  /** continue after the destination's last transaction (else the destination must be empty) */
  incremental?: boolean;
}

/**
 * zodbconvert: copies `source` into `dest`. Without `incremental` the destination must have no transactions;
 * with it, the copy continues after the destination's last transaction (see incrementalStart), which is
 * `after` in the result (null: the copy started from the beginning).
 */
export async function copyStorage(
  source: Storage,
  dest: Storage,
  options: CopyStorageOptions = {},
): Promise<CopyResult & { after: Tid | null }> {
  if (dest.isReadOnly()) throw new CopyError('the destination is read-only');
  if (!dest.capabilities.restore) throw new CopyError('the destination cannot restore transactions');
  if (!source.capabilities.iteration) throw new CopyError('the source cannot iterate over its transactions');
  const blobs = options.blobs ?? source.capabilities.blobs;
  if (blobs && source.capabilities.blobs && !dest.capabilities.blobs) {
    // the records would arrive without their files
    throw new CopyError(
      'the source keeps blobs and the destination does not: give a Data.fs destination a blob directory ' +
        '(a ZEO server cannot take blob files: ZEO has no restoreBlob), or copy the blob records without ' +
        'their files (--no-blobs)',
    );
  }
  let start: Tid | null = null;
  let after: Tid | null = null;
  if (options.incremental) {
    start = await incrementalStart(source, dest);
    if (start !== null) after = dest.lastTransaction();
  } else if (compareIds(dest.lastTransaction(), z64) !== 0) {
    throw new CopyError(
      `the destination has transactions (the last ${tidRepr(dest.lastTransaction())}): ` +
        'copy into an empty storage, or continue a copy with --incremental',
    );
  }
  const { incremental: _incremental, ...copyOptions } = options;
  return {
    ...(await copyTransactionsDetailed(source, dest, {
      ...copyOptions,
      blobs: blobs && dest.capabilities.blobs,
      start,
    })),
    after,
  };
}
