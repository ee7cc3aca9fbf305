// One object as the browser shows it: its record (current, or the revision current at a tid) decoded, its
// references resolved to the classes they point at (or marked broken), its blob's size. Reads only. The decoding
// is the decoder's (inline for a small record, in the worker for a big one); the loads stay here.
import { stat } from 'node:fs/promises';
import { POSKeyError } from '../errors.js';
import { idFromHex, idHex, type Oid, type Tid } from '../ids.js';
import type { Storage } from '../interfaces.js';
import { tidTime } from '../timestamp.js';
import { analyzeRecord, containerKindOf, MAX_REFS } from './decode.js';
import type { RecordDecoder } from './offload.js';
import { loadAt } from './read.js';
import { recordClassName } from './record.js';
import type { ObjectView, RefInfo } from './types.js';

/**
 * The object `oid` as of `at` (null: current). POSKeyError when it does not exist (then). Each reference is
 * looked up at the same time, at most MAX_REFS of them; a missing one is marked broken, in the tree too.
 * Without a decoder the record decodes inline.
 */
export async function inspectObject(
  storage: Storage,
  oid: Oid,
  at: Tid | null = null,
  decoder: RecordDecoder | null = null,
): Promise<ObjectView> {
  const rev = await loadAt(storage, oid, at);
  const { view, refs, refsTruncated } = decoder
    ? await decoder.run('view', rev.data, null)
    : analyzeRecord(rev.data);
  const seen = new Map<string, RefInfo>();
  for (const node of refs) {
    const hex = node.oid!;
    let info = seen.get(hex);
    if (!info) {
      if (seen.size >= MAX_REFS) continue;
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
    // (a record above the ceiling is not listed either)
    container: decoder && rev.data.length > decoder.ceiling ? null : containerKindOf(view),
  };
}
