// An object's history, a transaction's metadata and records, and the undo log, as the browser lists them:
// each bounded (a page of records, a slice of the log). Reads only: nothing here undoes or writes.
import { decodeUndoId } from '../undo-log.js';
import { compareIds, idEquals, idHex, type Oid, type Tid } from '../ids.js';
import type { HistoryEntry, Storage, UndoLogEntry } from '../interfaces.js';
import { tidTime } from '../timestamp.js';
import type { PyDict } from '../../pickle/index.js';
import { BrowseInputError } from './read.js';
import { recordClassName, TreeBuilder } from './record.js';
import { isBlobRecord } from '../blobs/index.js';
import type {
  TransactionRecordInfo,
  TransactionSummary,
  TransactionView,
  TreeNode,
  UndoLogPage,
} from './types.js';

/** Text as ZODB keeps it (bytes, UTF-8 by convention); bad bytes become U+FFFD. */
function text(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}

function extensionTree(ext: PyDict): TreeNode | null {
  return ext.size
    ? new TreeBuilder({ maxDepth: 6, maxItems: 50, maxString: 512, maxNodes: 500 }).build(ext)
    : null;
}

export const MAX_HISTORY = 1000;

/** The newest `limit` revisions of `oid`, newest first; POSKeyError when it has none. */
export async function objectHistory(
  storage: Storage,
  oid: Oid,
  limit: number,
): Promise<TransactionSummary[]> {
  const entries: HistoryEntry[] = await storage.history(oid, Math.min(limit, MAX_HISTORY));
  return entries.slice(0, limit).map((h) => ({
    tid: idHex(h.tid),
    time: h.time,
    user: text(h.userName),
    description: text(h.description),
    extension: extensionTree(h.extension),
    size: h.size,
  }));
}

/**
 * The transaction `tid`: its metadata and its records `offset` to `offset + limit`. Null when the storage has
 * no such transaction. BrowseInputError when the storage cannot iterate.
 */
export async function transactionView(
  storage: Storage,
  tid: Tid,
  offset: number,
  limit: number,
): Promise<TransactionView | null> {
  if (!storage.capabilities.iteration) {
    throw new BrowseInputError(`storage ${storage.getName()} cannot list its transactions`);
  }
  for await (const t of storage.iterator(tid, tid)) {
    if (compareIds(t.tid, tid) > 0) break;
    if (!idEquals(t.tid, tid)) continue;
    const records: TransactionRecordInfo[] = [];
    let i = 0;
    let next: number | null = null;
    for await (const r of t.records) {
      if (i >= offset + limit) {
        next = i;
        break;
      }
      if (i++ < offset) continue;
      records.push({
        oid: idHex(r.oid),
        class: r.data ? recordClassName(r.data) : '',
        size: r.data ? r.data.length : 0,
        deleted: r.data === null,
        dataTxn: r.dataTxn ? idHex(r.dataTxn) : null,
        blob: isBlobRecord(r.data),
      });
    }
    return {
      tid: idHex(t.tid),
      time: tidTime(t.tid),
      status: t.status,
      user: text(t.user),
      description: text(t.description),
      extension: extensionTree(t.extension),
      records,
      offset,
      next,
    };
  }
  return null;
}

export const MAX_UNDO_PAGE = 1000;

/** undoLog(first, last) (at most MAX_UNDO_PAGE entries), each with its tid; nothing is undone. */
export async function undoLogPage(storage: Storage, first: number, last: number): Promise<UndoLogPage> {
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last < first) {
    throw new BrowseInputError(`bad undo log range ${first} to ${last}`);
  }
  if (last - first > MAX_UNDO_PAGE)
    throw new BrowseInputError(`at most ${MAX_UNDO_PAGE} undo log entries at once`);
  if (!storage.capabilities.undo) return { entries: [], first, last };
  const log: UndoLogEntry[] = await storage.undoLog(first, last);
  return {
    first,
    last,
    entries: log.map((e) => {
      const tid = decodeUndoId(e.id);
      return {
        id: Buffer.from(e.id).toString('latin1'),
        tid: idHex(tid),
        time: e.time ?? tidTime(tid),
        user: text(e.userName),
        description: text(e.description),
        extension: extensionTree(e.extension),
        size: e.size,
      };
    }),
  };
}
