// One object as the browser shows it: its record (current, or the revision current at a tid) decoded, its
// references resolved to the classes they point at (or marked broken), its blob's size. Reads only.
import { stat } from 'node:fs/promises';
import { decompressRecord, isZlibRecord, PickleError, scanReferences } from '../../pickle/index.js';
import { POSKeyError } from '../errors.js';
import { idFromHex, idHex, type Oid, type Tid } from '../ids.js';
import type { Storage } from '../interfaces.js';
import { tidTime } from '../timestamp.js';
import { loadAt } from './read.js';
import { containerKindOf } from './containers.js';
import { recordClassName, TreeBuilder, viewRecord } from './record.js';
import type { ObjectView, RefInfo } from './types.js';

/** Whether the record refers to an object (other than by a weak or cross-database reference) not in `listed`. */
function hasOtherReferences(stored: Uint8Array, listed: ReadonlyMap<string, RefInfo>): boolean {
  let other = false;
  try {
    scanReferences(isZlibRecord(stored) ? decompressRecord(stored) : stored, (buf, start, end) => {
      if (
        !other &&
        !listed.has(Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('hex'))
      ) {
        other = true;
      }
    });
  } catch (e) {
    // (a record the tree decoded but referencesf refuses: the tree's references are all that can be told)
    if (!(e instanceof PickleError)) throw e;
  }
  return other;
}

/** How many references an object view resolves (each is a load). */
export const MAX_REFS = 200;

/**
 * The object `oid` as of `at` (null: current). POSKeyError when it does not exist (then). Each reference is
 * looked up at the same time, at most MAX_REFS of them; a missing one is marked broken, in the tree too.
 */
export async function inspectObject(storage: Storage, oid: Oid, at: Tid | null = null): Promise<ObjectView> {
  const rev = await loadAt(storage, oid, at);
  const builder = new TreeBuilder();
  const view = viewRecord(rev.data, builder);
  const seen = new Map<string, RefInfo>();
  let refsTruncated = false;
  for (const node of builder.refs) {
    const hex = node.oid!;
    let info = seen.get(hex);
    if (!info) {
      if (seen.size >= MAX_REFS) {
        refsTruncated = true;
        continue;
      }
      info = { oid: hex, class: node.class ?? null, broken: false };
      seen.set(hex, info);
      if (node.database === undefined) {
        try {
          const target = await loadAt(storage, idFromHex(hex), at);
          info.class ??= recordClassName(target.data) || null;
        } catch (e) {
          if (!(e instanceof POSKeyError)) throw e;
          info.broken = true;
        }
      }
    }
    if (info.broken) node.broken = true;
    if (!node.class && info.class) node.class = info.class;
  }
  // the tree shows a bounded part of the state: references beyond it are in the record but not in `refs`
  if (!refsTruncated && builder.partial && !view.error) refsTruncated = hasOtherReferences(rev.data, seen);
  let blob: ObjectView['blob'] = null;
  if (view.isBlob) {
    blob = { size: null };
    if (storage.capabilities.blobs) {
      try {
        blob.size = (await stat(await storage.loadBlob(oid, rev.tid))).size;
      } catch (e) {
        if (!(e instanceof POSKeyError) && (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  }
  return {
    ...view,
    oid: idHex(oid),
    tid: idHex(rev.tid),
    time: tidTime(rev.tid),
    end: rev.end ? idHex(rev.end) : null,
    at: at ? idHex(at) : null,
    refs: [...seen.values()],
    refsTruncated,
    blob,
    container: containerKindOf(view),
  };
}
