// undoInfo's specification: ZODB matches it against each undo-log entry seen as the dict Python returns
// (id, time, user_name, [size,] description, then the extension's keys, which may replace those).
import { PyFloat, pyEquals, type PickleValue, type PyDict } from '../pickle/index.js';
import { UndoError } from './errors.js';
import type { Tid } from './ids.js';
import type { UndoLogEntry } from './interfaces.js';

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
