// Pages of a container's items, as the browser shows them: BTrees (every family: OO, IO, OI, II, LO, OL, LL,
// IF, LF, QQ, ...), TreeSets, Buckets and Sets walked bucket by bucket through their persistent links (never the
// whole tree in memory), and PersistentMapping / PersistentDict / PersistentList sliced from their one record.
// A page is at most MAX_PAGE items; its cursor (opaque to callers) names the bucket, the index in it and the
// tid the walk reads at, so that every page of one walk sees the same snapshot. Reads only.
import {
  decodeRecord,
  decompressRecord,
  isList,
  isTuple,
  PersistentRef,
  type PickleValue,
} from '../../pickle/index.js';
import { idFromHex, idHex, type Oid, type Tid } from '../ids.js';
import type { Storage } from '../interfaces.js';
import { BrowseInputError, loadAt } from './read.js';
import { refOidHex, TreeBuilder } from './record.js';
import type { ContainerItem, ContainerKind, ContainerPage, RecordView } from './types.js';

const MAPPINGS = new Set([
  'persistent.mapping.PersistentMapping',
  'persistent.PersistentMapping',
  'ZODB.PersistentMapping.PersistentMapping',
  'persistent.dict.PersistentDict',
  'ZODB.PersistentDict.PersistentDict',
]);
const LISTS = new Set([
  'persistent.list.PersistentList',
  'persistent.PersistentList',
  'ZODB.PersistentList.PersistentList',
]);

const BTREE_KINDS: Record<string, ContainerKind['kind']> = {
  BTree: 'btree',
  TreeSet: 'treeset',
  Bucket: 'bucket',
  Set: 'set',
};

/** What kind of container a record's class is, or null. */
export function containerKindOf(view: Pick<RecordView, 'class'>): ContainerKind | null {
  const { module, name } = view.class;
  const dotted = `${module}.${name}`;
  if (MAPPINGS.has(dotted)) return { kind: 'mapping', values: true };
  if (LISTS.has(dotted)) return { kind: 'list', values: false };
  const m = /^BTrees\.(\w\w)BTree$/.exec(module);
  const n = /^(\w\w)(BTree|TreeSet|Bucket|Set)(?:Py)?$/.exec(name);
  if (!m || !n || m[1] !== n[1]) return null;
  const kind = BTREE_KINDS[n[2]];
  return { kind, family: n[1], values: kind === 'btree' || kind === 'bucket' };
}

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

async function stateAt(storage: Storage, oid: Oid, at: Tid): Promise<PickleValue> {
  const rev = await loadAt(storage, oid, at);
  return decodeRecord(decompressRecord(rev.data)).state;
}

/** A bucket's state `((k, v, ...), next?)` (or a set's `((k, ...), next?)`): its flat items and next bucket. */
function bucketParts(state: PickleValue, where: Oid): { flat: PickleValue[]; next: Oid | null } {
  if (state === null) return { flat: [], next: null };
  if (!isTuple(state) || state.length < 1 || state.length > 2 || !isTuple(state[0])) {
    throw new BrowseInputError(`object ${idHex(where)} is not a bucket`);
  }
  let next: Oid | null = null;
  if (state.length === 2) {
    const hex = state[1] instanceof PersistentRef ? refOidHex(state[1]) : null;
    if (!hex) throw new BrowseInputError(`bucket ${idHex(where)} has a next bucket that is no reference`);
    next = idFromHex(hex);
  }
  return { flat: state[0], next };
}

/**
 * Where a BTree's or TreeSet's items begin: its first bucket's oid, or the tree's own oid when its one bucket
 * is inline (`(((k, v, ...),),)`), or null when it is empty.
 */
function firstBucket(state: PickleValue, tree: Oid): Oid | null {
  if (state === null) return null;
  if (isTuple(state) && state.length === 1 && isTuple(state[0])) return state[0].length === 0 ? null : tree;
  if (isTuple(state) && state.length === 2 && state[1] instanceof PersistentRef) {
    const hex = refOidHex(state[1]);
    if (hex) return idFromHex(hex);
  }
  throw new BrowseInputError(`object ${idHex(tree)} does not have a BTree's state`);
}

/** The bucket state inside a tree whose one bucket is inline. */
function inlineBucket(state: PickleValue): PickleValue {
  return isTuple(state) && state.length === 1 && isTuple(state[0]) ? (state[0][0] ?? null) : state;
}

/** The items of a PersistentMapping/PersistentDict (its `data`) or PersistentList (its `data`). */
function persistentData(state: PickleValue, oid: Oid): Map<PickleValue, PickleValue> | PickleValue[] {
  if (state instanceof Map) {
    const data = state.get('data') ?? state.get('_container');
    if (data instanceof Map || isList(data) || isTuple(data)) return data;
  }
  throw new BrowseInputError(`object ${idHex(oid)} has no 'data' to list`);
}

/**
 * A page of the container `oid`'s items, from `cursor` (null: the first page, read at `at`, default the
 * storage's last transaction). BrowseInputError when it is no container or the cursor does not parse.
 */
export async function containerPage(
  storage: Storage,
  oid: Oid,
  options: { cursor?: string | null; limit?: number; at?: Tid | null } = {},
): Promise<ContainerPage> {
  const limit = Math.min(Math.max(options.limit ?? DEFAULT_PAGE, 1), MAX_PAGE);
  const given = options.cursor ? decodeCursor(options.cursor) : null;
  const at = given?.at ?? options.at ?? storage.lastTransaction();
  const rev = await loadAt(storage, oid, at);
  const { classMeta, state } = decodeRecord(decompressRecord(rev.data));
  const container = containerKindOf({ class: classMeta });
  if (!container)
    throw new BrowseInputError(
      `object ${idHex(oid)} (${classMeta.module}.${classMeta.name}) is no container`,
    );
  const builder = new TreeBuilder({ maxDepth: 6, maxItems: 20, maxString: 200, maxNodes: 20 * MAX_PAGE });
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
    if (given && !given.oid.every((b, i) => b === oid[i]))
      throw new BrowseInputError('the cursor is for another object');
    const data = persistentData(state, oid);
    const start = given?.index ?? 0;
    const length = data instanceof Map ? data.size : data.length;
    let i = 0;
    // a list's items are keyed by their index
    const entries: Iterable<[PickleValue, PickleValue]> = data instanceof Map ? data : data.entries();
    for (const [k, v] of entries) {
      if (i >= start + limit) break;
      if (i++ < start) continue;
      items.push({ key: builder.build(k), value: builder.build(v) });
    }
    const end = start + items.length;
    return page(end < length ? { oid, index: end, at, offset: offset + items.length } : null, length);
  }

  let bucket: Oid | null;
  let index = 0;
  if (given) {
    bucket = given.oid;
    index = given.index;
  } else if (container.kind === 'btree' || container.kind === 'treeset') {
    bucket = firstBucket(state, oid);
  } else {
    bucket = oid;
  }
  const step = container.values ? 2 : 1;
  // bounded: each bucket load yields items, except for (rare) empty buckets
  for (let loads = 0; bucket && loads <= limit + 1; loads++) {
    const bucketState = bucket.every((b, i) => b === oid[i])
      ? container.kind === 'btree' || container.kind === 'treeset'
        ? inlineBucket(state)
        : state
      : await stateAt(storage, bucket, at);
    const { flat, next } = bucketParts(bucketState, bucket);
    const n = Math.floor(flat.length / step);
    while (index < n && items.length < limit) {
      const k = flat[index * step];
      items.push(
        step === 2
          ? { key: builder.build(k), value: builder.build(flat[index * step + 1]) }
          : { key: builder.build(k) },
      );
      index++;
    }
    if (items.length >= limit) {
      if (index < n) return page({ oid: bucket, index, at, offset: offset + items.length }, null);
      return page(next ? { oid: next, index: 0, at, offset: offset + items.length } : null, null);
    }
    bucket = next;
    index = 0;
  }
  return page(bucket ? { oid: bucket, index, at, offset: offset + items.length } : null, null);
}
