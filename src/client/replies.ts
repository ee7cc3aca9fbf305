// The server's answers in the shapes of our storage contract: history and undo dicts, iterator tuples. A
// reply that does not have the shape ZEO's server gives is a ProtocolError naming the call, never a crash.

import { isBytes, PyFloat, type PickleValue, type PyDict } from '../pickle/index.js';
import { ProtocolError } from '../protocol/index.js';
import { idCopy, type Oid, type Tid } from '../storage/ids.js';
import type { DataRecord, HistoryEntry, UndoLogEntry } from '../storage/interfaces.js';

export function badReply(call: string, why: string): ProtocolError {
  return new ProtocolError(`the server's answer to ${call} ${why}`);
}

/** An 8-byte id (copied: a decoded bin is a view of its frame). */
export function idOf(v: PickleValue, call: string): Uint8Array {
  if (!isBytes(v) || v.length !== 8) throw badReply(call, 'has an id that is not 8 bytes');
  return idCopy(v);
}

export function idOrNull(v: PickleValue, call: string): Uint8Array | null {
  return v === null || v === undefined ? null : idOf(v, call);
}

export function bytesOf(v: PickleValue, call: string): Uint8Array {
  if (isBytes(v)) return v;
  if (typeof v === 'string') return new Uint8Array(Buffer.from(v, 'utf8'));
  if (v === null || v === undefined) return new Uint8Array(0);
  throw badReply(call, 'has a value that is not bytes');
}

export function numberOf(v: PickleValue | undefined): number {
  if (v instanceof PyFloat) return v.value;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return 0;
}

export function sequenceOf(v: PickleValue, call: string): PickleValue[] {
  if (!Array.isArray(v)) throw badReply(call, 'is not a sequence');
  return v;
}

export function dictOf(v: PickleValue, call: string): PyDict {
  if (!(v instanceof Map)) throw badReply(call, 'is not a dict');
  return v;
}

function take(d: PyDict, key: string): PickleValue | undefined {
  return d.get(key);
}

/** history(): ZODB's dicts (tid, time, user_name, description, size, and the extension's keys). */
export function historyEntry(v: PickleValue): HistoryEntry {
  const d = dictOf(v, 'history');
  const known = new Set(['tid', 'time', 'user_name', 'description', 'size', 'serial', 'version']);
  const extension: PyDict = new Map();
  for (const [k, x] of d) if (typeof k !== 'string' || !known.has(k)) extension.set(k, x);
  return {
    tid: idOf(take(d, 'tid') ?? null, 'history'),
    time: numberOf(take(d, 'time')),
    userName: bytesOf(take(d, 'user_name') ?? null, 'history'),
    description: bytesOf(take(d, 'description') ?? null, 'history'),
    extension,
    size: numberOf(take(d, 'size')),
  };
}

/** undoLog()/undoInfo(): ZODB's dicts (id, time, user_name, description, [size,] the extension's keys). */
export function undoEntry(v: PickleValue, call: string): UndoLogEntry {
  const d = dictOf(v, call);
  const known = new Set(['id', 'time', 'user_name', 'description', 'size']);
  const extension: PyDict = new Map();
  for (const [k, x] of d) if (typeof k !== 'string' || !known.has(k)) extension.set(k, x);
  const id = take(d, 'id');
  const entry: UndoLogEntry = {
    id: isBytes(id) ? new Uint8Array(id) : bytesOf(id ?? null, call),
    time: numberOf(take(d, 'time')),
    userName: bytesOf(take(d, 'user_name') ?? null, call),
    description: bytesOf(take(d, 'description') ?? null, call),
    extension,
  };
  const size = take(d, 'size');
  if (size !== undefined) entry.size = numberOf(size);
  return entry;
}

/** iterator_record_next: (oid, tid, data, data_txn). */
export function dataRecord(v: PickleValue): DataRecord {
  const r = sequenceOf(v, 'iterator_record_next');
  if (r.length < 4) throw badReply('iterator_record_next', 'is not (oid, tid, data, data_txn)');
  const data = r[2];
  return {
    oid: idOf(r[0], 'iterator_record_next'),
    tid: idOf(r[1], 'iterator_record_next'),
    data: data === null ? null : bytesOf(data, 'iterator_record_next'),
    dataTxn: idOrNull(r[3], 'iterator_record_next'),
  };
}

/** A conflict vote reports: {'oid', 'serials': (committed, read), 'data'}. */
export interface VoteConflict {
  oid: Oid;
  committed: Tid;
  read: Tid;
  data: Uint8Array;
}

export function voteConflict(d: PyDict): VoteConflict {
  const serials = sequenceOf(d.get('serials') ?? null, 'vote');
  if (serials.length !== 2) throw badReply('vote', 'has a conflict whose serials are not a pair');
  return {
    oid: idOf(d.get('oid') ?? null, 'vote'),
    committed: idOf(serials[0], 'vote'),
    read: idOf(serials[1], 'vote'),
    data: bytesOf(d.get('data') ?? null, 'vote'),
  };
}
