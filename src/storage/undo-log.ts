// undoInfo's specification: ZODB matches it against each undo-log entry seen as the dict Python returns
// (id, time, user_name, [size,] description, then the extension's keys, which may replace those).
import { PyFloat, pyEquals, type PickleValue, type PyDict } from '../pickle/index.js';
import { UndoError } from './errors.js';
import type { Tid } from './ids.js';
import type { UndoLogEntry } from './interfaces.js';

/** A transaction as the undo search sees it: its status, and its undo-log entry, made only when needed. */
export interface UndoCandidate<E extends UndoLogEntry> {
  status: string;
  entry(): E;
}

/** The entry as Python's undoLog dict, in its key order. */
export function undoEntryItems(e: UndoLogEntry): Array<[PickleValue, PickleValue]> {
  const out: Array<[PickleValue, PickleValue]> = [
    ['id', e.id],
    ['time', new PyFloat(e.time)],
    ['user_name', e.userName],
  ];
  if (e.size !== undefined) out.push(['size', e.size]);
  out.push(['description', e.description]);
  for (const [k, v] of e.extension) {
    const i = out.findIndex(([ok]) => pyEquals(ok, k));
    if (i >= 0) out[i] = [k, v];
    else out.push([k, v]);
  }
  return out;
}

/** The undoLog filter for an undoInfo specification: entries whose dict has every key with an equal value. */
export function undoInfoFilter(specification: PyDict): (entry: UndoLogEntry) => boolean {
  const spec = [...specification];
  return (entry) => {
    const items = undoEntryItems(entry);
    return spec.every(([k, v]) => {
      const found = items.find(([ik]) => pyEquals(ik, k));
      return pyEquals(found ? found[1] : null, v);
    });
  };
}

/** FileStorage's undo ids: base64 of the tid without the trailing newline (encodebytes(tid).rstrip()). */
export function encodeUndoId(tid: Tid): Uint8Array {
  return new Uint8Array(Buffer.from(Buffer.from(tid).toString('base64'), 'latin1'));
}

/** decodebytes(undo_id + b'\n'); UndoError when it is not the id of a tid. */
export function decodeUndoId(id: Uint8Array): Tid {
  const text = Buffer.from(id).toString('latin1');
  const tid = /^[A-Za-z0-9+/=\s]*$/.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  if (tid.length !== 8) throw new UndoError('Invalid transaction id');
  return new Uint8Array(tid);
}

/**
 * ZODB's UndoSearch over transactions newest first: entries `first` to `last` of the undoable ones that pass
 * `filter` (a negative `last` is a count, ZODB 3.4's fix of an off-by-one). Nothing at or before a packed
 * transaction can be undone, so the search stops there.
 */
export async function searchUndoLog<E extends UndoLogEntry>(
  first: number,
  last: number,
  filter: ((entry: UndoLogEntry) => boolean) | undefined,
  newestFirst: AsyncIterable<UndoCandidate<E>> | Iterable<UndoCandidate<E>>,
): Promise<E[]> {
  if (last < 0) last = first - last;
  const out: E[] = [];
  let i = 0;
  if (i >= last) return out;
  for await (const t of newestFirst) {
    if (t.status === 'p') break;
    if (t.status !== ' ') continue;
    const entry = t.entry();
    if (filter && !filter(entry)) continue;
    if (i >= first) out.push(entry);
    if (++i >= last) break;
  }
  return out;
}

/** undoInfo as undoLog with the specification's filter. */
export function undoInfoVia<E extends UndoLogEntry>(
  undoLog: (first: number, last: number, filter?: (entry: UndoLogEntry) => boolean) => Promise<E[]>,
  first: number,
  last: number,
  specification: PyDict | null | undefined,
): Promise<E[]> {
  return specification?.size ? undoLog(first, last, undoInfoFilter(specification)) : undoLog(first, last);
}
