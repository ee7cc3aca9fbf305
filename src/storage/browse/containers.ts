// Pages of a container's items, as the browser shows them: BTrees (every family: OO, IO, OI, II, LO, OL, LL,
// IF, LF, QQ, ...), TreeSets, Buckets and Sets walked bucket by bucket through their persistent links (never the
// whole tree in memory), and PersistentMapping / PersistentDict / PersistentList sliced from their one record.
// A page is at most MAX_PAGE items; its cursor (opaque to callers) names the bucket, the index in it and the
// tid the walk reads at, so that every page of one walk sees the same snapshot. Reads only.
import { idFromHex, idHex, type Oid, type Tid } from '../ids.js';
import type { Storage } from '../interfaces.js';
import { bucketRecord, containerRecord, ITEM_LIMITS, type ItemsSlice } from './decode.js';
import type { RecordDecoder } from './offload.js';
import { BrowseInputError, loadAt } from './read.js';
import type { ContainerItem, ContainerPage } from './types.js';

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

interface Cursor {
  /** the bucket (or the mapping, list, or tree with its one bucket inline) */
  oid: Oid;
  index: number;
  at: Tid;
  /** items before this page, for display */
  offset: number;
}

function encodeCursor(c: Cursor): string {
  return `${idHex(c.oid)}.${c.index}.${idHex(c.at)}.${c.offset}`;
}

function decodeCursor(text: string): Cursor {
  const m = /^([0-9a-f]{16})\.(\d{1,9})\.([0-9a-f]{16})\.(\d{1,15})$/.exec(text);
  if (!m) throw new BrowseInputError(`bad cursor ${JSON.stringify(text.slice(0, 60))}`);
  return { oid: idFromHex(m[1]), index: Number(m[2]), at: idFromHex(m[3]), offset: Number(m[4]) };
}

/** A page size from the caller: DEFAULT_PAGE when absent, 1..MAX_PAGE. */
export function pageLimit(text: string | null, max = MAX_PAGE, dflt = DEFAULT_PAGE): number {
  if (text === null || text === '') return dflt;
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new BrowseInputError(`bad limit ${JSON.stringify(text.slice(0, 20))}: expected 1 to ${max}`);
  }
  return Number(text);
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * A page of the container `oid`'s items, from `cursor` (null: the first page, read at `at`, default the
 * storage's last transaction). BrowseInputError when it is no container or the cursor does not parse.
 */
export async function containerPage(
  storage: Storage,
  oid: Oid,
  options: { cursor?: string | null; limit?: number; at?: Tid | null; decoder?: RecordDecoder | null } = {},
): Promise<ContainerPage> {
  const limit = Math.min(Math.max(options.limit ?? DEFAULT_PAGE, 1), MAX_PAGE);
  const given = options.cursor ? decodeCursor(options.cursor) : null;
  const at = given?.at ?? options.at ?? storage.lastTransaction();
  const decoder = options.decoder ?? null;
  const rev = await loadAt(storage, oid, at);
  // the page starts in the container's own record (a mapping, a list, an inline or lone bucket)
  const own = !given || sameId(given.oid, oid);
  const hex = idHex(oid);
  const args = { oid: hex, index: own ? (given?.index ?? 0) : 0, limit, own, budget: ITEM_LIMITS.maxNodes };
  const top = decoder ? await decoder.run('container', rev.data, args) : containerRecord(rev.data, args);
  const container = top.container;
  if (!container)
    throw new BrowseInputError(`object ${hex} (${top.class.module}.${top.class.name}) is no container`);
  const items: ContainerItem[] = [];
  const offset = given?.offset ?? 0;
  const page = (next: Cursor | null, length: number | null): ContainerPage => ({
    container,
    at: idHex(at),
    items,
    next: next ? encodeCursor(next) : null,
    length,
    offset,
  });

  if (container.kind === 'mapping' || container.kind === 'list') {
    if (!own || !top.slice) throw new BrowseInputError('the cursor is for another object');
    items.push(...top.slice.items);
    const end = args.index + items.length;
    const length = top.slice.n;
    return page(end < length ? { oid, index: end, at, offset: offset + items.length } : null, length);
  }

  let bucket: Oid | null = given ? given.oid : top.first ? idFromHex(top.first) : null;
  let index = given?.index ?? 0;
  let nodes = 0;
  // bounded: each bucket load yields items, except for (rare) empty buckets
  for (let loads = 0; bucket && loads <= limit + 1; loads++) {
    let slice: ItemsSlice;
    if (loads === 0 && top.slice && sameId(bucket, oid)) {
      slice = top.slice;
    } else {
      const data = (await loadAt(storage, bucket, at)).data;
      const b = {
        oid: idHex(bucket),
        index,
        limit: limit - items.length,
        budget: ITEM_LIMITS.maxNodes - nodes,
        values: container.values,
      };
      slice = decoder ? await decoder.run('bucket', data, b) : bucketRecord(data, b);
    }
    items.push(...slice.items);
    nodes += slice.nodes;
    index += slice.items.length;
    const next = slice.next ? idFromHex(slice.next) : null;
    if (items.length >= limit) {
      if (index < slice.n) return page({ oid: bucket, index, at, offset: offset + items.length }, null);
      return page(next ? { oid: next, index: 0, at, offset: offset + items.length } : null, null);
    }
    bucket = next;
    index = 0;
  }
  return page(bucket ? { oid: bucket, index, at, offset: offset + items.length } : null, null);
}
