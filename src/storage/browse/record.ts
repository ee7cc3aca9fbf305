// The object browser's view of one record: its class and state decoded into a JSON tree with persistent
// references as links, bounded (depth, items, string length) whatever the record holds. Reads only.
import {
  ByteArray,
  FrozenSet,
  Global,
  PersistentRef,
  PickleBuffer,
  PickleError,
  PyFloat,
  PyObject,
  classifyPersistentId,
  decodeRecord,
  decompressRecord,
  getPickleMetadata,
  isTuple,
  isZlibRecord,
  pyBytesRepr,
  pyRepr,
  pyStrRepr,
  type PickleValue,
} from '../../pickle/index.js';
import { constants, inflateSync } from 'node:zlib';
import { idHex } from '../ids.js';
import { opcodeSummary } from './opcodes.js';
import type { RecordView, TreeNode } from './types.js';

/** How much of a value the tree shows. */
export interface TreeLimits {
  /** containers within containers; deeper ones show as {type: 'cut'} */
  maxDepth: number;
  /** items shown of each container (the rest counted in `length`) */
  maxItems: number;
  /** characters of a str, bytes shown of a bytes (the rest counted in `length`) */
  maxString: number;
  /** nodes in the whole tree; past it, containers show as {type: 'cut'} */
  maxNodes: number;
}

export const DEFAULT_TREE_LIMITS: TreeLimits = {
  maxDepth: 12,
  maxItems: 100,
  maxString: 1024,
  maxNodes: 5000,
};

/** The hex oid of a persistent reference, or null (an unknown form). */
export function refOidHex(ref: PersistentRef): string | null {
  const r = classifyPersistentId(ref.id);
  return r.kind === 'unknown' || r.oid.length !== 8 ? null : idHex(r.oid);
}

function className(meta: PickleValue | undefined): string | null {
  if (meta instanceof Global) return `${meta.module}.${meta.name}`;
  if (isTuple(meta) && meta[0] instanceof Global) return `${meta[0].module}.${meta[0].name}`;
  return null;
}

/** Builds trees of values under one node budget (a record's state and its class args share it). */
export class TreeBuilder {
  private nodes = 0;
  /** every 'ref' node made, so that the caller can mark broken ones */
  readonly refs: TreeNode[] = [];
  /** whether some container was shown in part or not at all (its references may then be missing from `refs`) */
  partial = false;

  constructor(readonly limits: TreeLimits = DEFAULT_TREE_LIMITS) {}

  /** nodes built so far (of `limits.maxNodes`) */
  get nodeCount(): number {
    return this.nodes;
  }

  build(v: PickleValue | undefined, depth = 0): TreeNode {
    this.nodes++;
    if (v === undefined) return { type: 'NoneType', repr: 'None' };
    if (v === null) return { type: 'NoneType', repr: 'None' };
    if (typeof v === 'boolean') return { type: 'bool', repr: v ? 'True' : 'False' };
    if (typeof v === 'number' || typeof v === 'bigint') return { type: 'int', repr: String(v) };
    if (v instanceof PyFloat) return { type: 'float', repr: pyRepr(v) };
    if (typeof v === 'string') return this.text(v);
    if (v instanceof Global) return { type: 'global', repr: `${v.module}.${v.name}` };
    if (v instanceof PickleBuffer) return this.bytes(v.data, 'PickleBuffer');
    if (v instanceof Uint8Array && !(v instanceof ByteArray)) return this.bytes(v, 'bytes');
    if (v instanceof PersistentRef) return this.ref(v);
    if (depth >= this.limits.maxDepth || this.nodes > this.limits.maxNodes) {
      this.partial = true;
      return { type: 'cut', reason: depth >= this.limits.maxDepth ? 'nested too deep' : 'too many values' };
    }
    if (v instanceof ByteArray) return this.bytes(v, 'bytearray');
    if (Array.isArray(v)) return this.seq(isTuple(v) ? 'tuple' : 'list', v, depth);
    if (v instanceof Set) return this.seq(v instanceof FrozenSet ? 'frozenset' : 'set', v, depth);
    if (v instanceof Map) {
      const entries: Array<[TreeNode, TreeNode]> = [];
      for (const [k, x] of v) {
        if (entries.length >= this.limits.maxItems || this.nodes > this.limits.maxNodes) break;
        entries.push([this.build(k, depth + 1), this.build(x, depth + 1)]);
      }
      return this.sized({ type: 'dict', entries }, v.size, entries.length);
    }
    if (v instanceof PyObject) {
      const node: TreeNode = {
        type: 'object',
        class: v.global ? `${v.global.module}.${v.global.name}` : pyRepr(v.callable),
        args: this.build(v.args, depth + 1),
      };
      if (v.state !== undefined) node.state = this.build(v.state, depth + 1);
      if (v.listItems) node.items = this.seq('list', v.listItems, depth).items;
      if (v.dictItems) node.entries = this.build(new Map(v.dictItems), depth).entries;
      return node;
    }
    return { type: 'unknown', repr: String(v) };
  }

  private sized(node: TreeNode, length: number, shown: number): TreeNode {
    if (shown < length) {
      this.partial = true;
      node.truncated = true;
      node.length = length;
    }
    return node;
  }

  private seq(type: string, v: Iterable<PickleValue> & { length?: number; size?: number }, depth: number) {
    const items: TreeNode[] = [];
    for (const x of v) {
      if (items.length >= this.limits.maxItems || this.nodes > this.limits.maxNodes) break;
      items.push(this.build(x, depth + 1));
    }
    return this.sized({ type, items }, v.length ?? v.size ?? items.length, items.length);
  }

  private text(s: string): TreeNode {
    if (s.length <= this.limits.maxString) return { type: 'str', repr: pyStrRepr(s) };
    return {
      type: 'str',
      repr: pyStrRepr(s.slice(0, this.limits.maxString)),
      truncated: true,
      length: s.length,
    };
  }

  private bytes(b: Uint8Array, type: string): TreeNode {
    if (b.length <= this.limits.maxString) return { type, repr: pyBytesRepr(b) };
    return {
      type,
      repr: pyBytesRepr(b.subarray(0, this.limits.maxString)),
      truncated: true,
      length: b.length,
    };
  }

  private ref(v: PersistentRef): TreeNode {
    const r = classifyPersistentId(v.id);
    const node: TreeNode = { type: 'ref', kind: r.kind };
    if (r.kind === 'unknown' || r.oid.length !== 8) {
      node.repr = pyRepr(v.id);
      node.broken = true;
      return node;
    }
    node.oid = idHex(r.oid);
    const cls = className(r.classMeta);
    if (cls) node.class = cls;
    if (r.database !== undefined) node.database = r.database;
    this.refs.push(node);
    return node;
  }
}

/** A record's first bytes as hex and as printable text, for a record that does not decode. */
export function rawSummary(data: Uint8Array, max = 256): { hex: string; text: string; length: number } {
  const head = Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, max));
  const text = head.toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return { hex: head.toString('hex'), text, length: data.length };
}

/**
 * The most a compressed record is inflated to for display (the browser's ceiling for records as stored, too):
 * a zc.zlibstorage record of a few KB can inflate to gigabytes, which must never be allocated.
 */
export const MAX_INFLATED = 64 * 1024 * 1024;

/**
 * Decodes a record (as a storage returns it) for display. Never throws for a bad record: it shows the error
 * and the raw summary instead, with the class names as ZODB's get_pickle_metadata reads them.
 */
export function viewRecord(stored: Uint8Array, builder = new TreeBuilder()): RecordView {
  const compression = isZlibRecord(stored) ? 'zlib' : null;
  let data: Uint8Array;
  try {
    data = compression ? decompressRecord(stored, MAX_INFLATED) : stored;
  } catch (e) {
    return {
      compression,
      size: stored.length,
      class: { module: '', name: '', form: null },
      error: `cannot decompress: ${(e as Error).message}`,
      raw: rawSummary(stored),
      isBlob: false,
    };
  }
  try {
    const { classMeta, state } = decodeRecord(data);
    const view: RecordView = {
      compression,
      size: stored.length,
      class: { module: classMeta.module, name: classMeta.name, form: classMeta.form },
      isBlob: classMeta.module === 'ZODB.blob' && classMeta.name === 'Blob',
    };
    if (classMeta.args !== null) view.args = builder.build(classMeta.args);
    view.state = builder.build(state);
    return view;
  } catch (e) {
    if (!(e instanceof PickleError)) throw e;
    const [module, name] = getPickleMetadata(data);
    return {
      compression,
      size: stored.length,
      class: { module, name, form: null },
      error: e.message,
      raw: rawSummary(data),
      opcodes: opcodeSummary(data),
      isBlob: false,
    };
  }
}

/**
 * A record's first bytes, decompressed when zc.zlibstorage compressed it: only the first KB of the compressed
 * bytes are inflated (at most some MB out), so that reading a class name never inflates a whole huge record on
 * the event loop. Empty when they do not inflate.
 */
export function recordHead(stored: Uint8Array, max = 64 * 1024): Uint8Array {
  if (!isZlibRecord(stored)) return stored.subarray(0, max);
  try {
    const out = inflateSync(stored.subarray(2, 2 + 4096), { finishFlush: constants.Z_SYNC_FLUSH });
    return new Uint8Array(out.buffer, out.byteOffset, Math.min(out.length, max));
  } catch {
    return new Uint8Array(0);
  }
}

/** The dotted class name of a record, as ZODB's get_pickle_metadata reads it (from its head). */
export function recordClassName(stored: Uint8Array): string {
  const [module, name] = getPickleMetadata(isZlibRecord(stored) ? recordHead(stored) : stored);
  return name ? `${module}.${name}` : module;
}
