// The object browser's pure work on one record: decoding it for an object view (the tree, its references) and
// slicing a container's items out of it. Nothing here reads a storage, so that a big record's decoding can run
// in the decode worker (offload.ts) instead of on the server's event loop, with the same result as inline.
import {
  decodeRecord,
  decompressRecord,
  getPickleMetadata,
  isList,
  isTuple,
  isZlibRecord,
  PersistentRef,
  PickleError,
  scanReferences,
  type PickleValue,
} from '../../pickle/index.js';

import { opcodeSummary } from './opcodes.js';
import { BrowseInputError } from './read.js';
import {
  MAX_INFLATED,
  rawSummary,
  recordHead,
  refOidHex,
  TreeBuilder,
  viewRecord,
  type TreeLimits,
} from './record.js';
import type { ContainerItem, ContainerKind, RecordView, TreeNode } from './types.js';

/** How many references an object view resolves (each is a load). */
export const MAX_REFS = 200;

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

/** Whether the record refers to an object (other than by a weak or cross-database reference) not in `listed`. */
function hasOtherReferences(stored: Uint8Array, listed: ReadonlySet<string>): boolean {
  let other = false;
  try {
    scanReferences(
      isZlibRecord(stored) ? decompressRecord(stored, MAX_INFLATED) : stored,
      (buf, start, end) => {
        if (
          !other &&
          !listed.has(Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('hex'))
        ) {
          other = true;
        }
      },
    );
  } catch (e) {
    // (a record the tree decoded but referencesf refuses: the tree's references are all that can be told)
    if (!(e instanceof PickleError)) throw e;
  }
  return other;
}

/**
 * A record decoded for an object view: the view, its 'ref' nodes (the same objects as in the view's tree, so
 * that the caller can mark them), and whether the record refers to more objects than the first MAX_REFS.
 */
export interface AnalyzedRecord {
  view: RecordView;
  refs: TreeNode[];
  refsTruncated: boolean;
}

export function analyzeRecord(stored: Uint8Array): AnalyzedRecord {
  const builder = new TreeBuilder();
  const view = viewRecord(stored, builder);
  const listed = new Set<string>();
  let refsTruncated = false;
  for (const node of builder.refs) {
    if (listed.has(node.oid!)) continue;
    if (listed.size >= MAX_REFS) {
      refsTruncated = true;
      break;
    }
    listed.add(node.oid!);
  }
  // the tree shows a bounded part of the state: references beyond it are in the record but not in `refs`
  if (!refsTruncated && builder.partial && !view.error) refsTruncated = hasOtherReferences(stored, listed);
  return { view, refs: builder.refs, refsTruncated };
}

/** How much of a record above the ceiling is read: its head only. */
const HEAD = 64 * 1024;

/**
 * A record too big to decode, shown from its head only (bounded memory): its size, its class as
 * get_pickle_metadata reads it, its first opcodes, and why there is no tree.
 */
export function hugeRecordAnalysis(stored: Uint8Array, ceiling: number): AnalyzedRecord {
  const compression = isZlibRecord(stored) ? 'zlib' : null;
  const head = recordHead(stored, HEAD);
  const [module, name] = getPickleMetadata(head);
  const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return {
    view: {
      compression,
      size: stored.length,
      class: { module, name, form: null },
      error:
        `the record is ${mib(stored.length)}, above the browser's limit of ${mib(ceiling)}: ` +
        'it is not decoded; its class and first opcodes are read from its head',
      raw: { ...rawSummary(head), length: stored.length },
      opcodes: opcodeSummary(head),
      isBlob: false,
    },
    refs: [],
    // (its references are not known)
    refsTruncated: true,
  };
}

/** How much of each item a container page shows; `maxNodes` is the whole page's budget. */
export const ITEM_LIMITS: TreeLimits = { maxDepth: 6, maxItems: 20, maxString: 200, maxNodes: 20 * 1000 };

/** Items cut from one record (a mapping's or list's data, or a bucket's), from `index`. */
export interface ItemsSlice {
  items: ContainerItem[];
  /** the items the record holds */
  n: number;
  /** a bucket's next bucket (hex oid) */
  next: string | null;
  /** tree nodes the items used of the page's budget */
  nodes: number;
}

interface SliceArgs {
  /** the record's oid, hex, for errors */
  oid: string;
  index: number;
  limit: number;
  /** nodes left of the page's budget */
  budget: number;
}

function builderFor(budget: number): TreeBuilder {
  return new TreeBuilder({ ...ITEM_LIMITS, maxNodes: budget });
}

/** A bucket's state `((k, v, ...), next?)` (or a set's `((k, ...), next?)`): its flat items and next bucket. */
function bucketParts(state: PickleValue, where: string): { flat: PickleValue[]; next: string | null } {
  if (state === null) return { flat: [], next: null };
  if (!isTuple(state) || state.length < 1 || state.length > 2 || !isTuple(state[0])) {
    throw new BrowseInputError(`object ${where} is not a bucket`);
  }
  let next: string | null = null;
  if (state.length === 2) {
    next = state[1] instanceof PersistentRef ? refOidHex(state[1]) : null;
    if (!next) throw new BrowseInputError(`bucket ${where} has a next bucket that is no reference`);
  }
  return { flat: state[0], next };
}

function sliceBucket(state: PickleValue, step: 1 | 2, a: SliceArgs): ItemsSlice {
  const { flat, next } = bucketParts(state, a.oid);
  const builder = builderFor(a.budget);
  const n = Math.floor(flat.length / step);
  const items: ContainerItem[] = [];
  for (let i = a.index; i < n && items.length < a.limit; i++) {
    items.push(
      step === 2
        ? { key: builder.build(flat[i * step]), value: builder.build(flat[i * step + 1]) }
        : { key: builder.build(flat[i * step]) },
    );
  }
  return { items, n, next, nodes: builder.nodeCount };
}

/**
 * Where a BTree's or TreeSet's items begin: its first bucket's oid, or the tree's own oid when its one bucket
 * is inline (`(((k, v, ...),),)`), or null when it is empty.
 */
function firstBucket(state: PickleValue, tree: string): string | null {
  if (state === null) return null;
  if (isTuple(state) && state.length === 1 && isTuple(state[0])) return state[0].length === 0 ? null : tree;
  if (isTuple(state) && state.length === 2 && state[1] instanceof PersistentRef) {
    const hex = refOidHex(state[1]);
    if (hex) return hex;
  }
  throw new BrowseInputError(`object ${tree} does not have a BTree's state`);
}

/** The bucket state inside a tree whose one bucket is inline. */
function inlineBucket(state: PickleValue): PickleValue {
  return isTuple(state) && state.length === 1 && isTuple(state[0]) ? (state[0][0] ?? null) : state;
}

/** The items of a PersistentMapping/PersistentDict (its `data`) or PersistentList (its `data`). */
function persistentData(state: PickleValue, oid: string): Map<PickleValue, PickleValue> | PickleValue[] {
  if (state instanceof Map) {
    const data = state.get('data') ?? state.get('_container');
    if (data instanceof Map || isList(data) || isTuple(data)) return data;
  }
  throw new BrowseInputError(`object ${oid} has no 'data' to list`);
}

/** A container's own record, as a page begins with it. */
export interface ContainerRecord {
  class: { module: string; name: string };
  container: ContainerKind | null;
  /** a tree's first bucket (its own oid when inline), a bucket's own oid; null when empty */
  first: string | null;
  /** the record's own items from `index` (a mapping, a list, an inline or a lone bucket), when `own` */
  slice: ItemsSlice | null;
}

/** Decodes a container's record; with `own`, slices its own items (the page starts in this record). */
export function containerRecord(stored: Uint8Array, a: SliceArgs & { own: boolean }): ContainerRecord {
  const { classMeta, state } = decodeRecord(decompressRecord(stored, MAX_INFLATED));
  const cls = { module: classMeta.module, name: classMeta.name };
  const container = containerKindOf({ class: { ...cls, form: null } });
  if (!container) return { class: cls, container, first: null, slice: null };
  if (container.kind === 'mapping' || container.kind === 'list') {
    if (!a.own) return { class: cls, container, first: a.oid, slice: null };
    const data = persistentData(state, a.oid);
    const builder = builderFor(a.budget);
    const items: ContainerItem[] = [];
    let i = 0;
    // a list's items are keyed by their index
    const entries: Iterable<[PickleValue, PickleValue]> = data instanceof Map ? data : data.entries();
    for (const [k, v] of entries) {
      if (i >= a.index + a.limit) break;
      if (i++ < a.index) continue;
      items.push({ key: builder.build(k), value: builder.build(v) });
    }
    const n = data instanceof Map ? data.size : data.length;
    return { class: cls, container, first: a.oid, slice: { items, n, next: null, nodes: builder.nodeCount } };
  }
  const step = container.values ? 2 : 1;
  if (container.kind === 'btree' || container.kind === 'treeset') {
    const first = firstBucket(state, a.oid);
    const slice = a.own && first === a.oid ? sliceBucket(inlineBucket(state), step, a) : null;
    return { class: cls, container, first, slice };
  }
  return { class: cls, container, first: a.oid, slice: a.own ? sliceBucket(state, step, a) : null };
}

/** A bucket's (or set's) items from `index`, and its next bucket. */
export function bucketRecord(stored: Uint8Array, a: SliceArgs & { values: boolean }): ItemsSlice {
  return sliceBucket(decodeRecord(decompressRecord(stored, MAX_INFLATED)).state, a.values ? 2 : 1, a);
}

/** The work a decoder runs, by name: inline, or in the worker with the same arguments. */
export const DECODE_JOBS = {
  view: (stored: Uint8Array, _args: null): AnalyzedRecord => analyzeRecord(stored),
  container: containerRecord,
  bucket: bucketRecord,
};
export type DecodeJobs = typeof DECODE_JOBS;
export type DecodeOp = keyof DecodeJobs;
export type DecodeArgs<K extends DecodeOp> = Parameters<DecodeJobs[K]>[1];
export type DecodeResult<K extends DecodeOp> = ReturnType<DecodeJobs[K]>;
