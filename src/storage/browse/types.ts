// The object browser's answers, as plain JSON shapes: the core (this folder) builds them, the HTTP API
// (src/server/http/browse-routes.ts) sends them, and the page (web/src/browse*.ts) reads them with these same
// types. Types only, importing nothing, so the browser's TypeScript project can include this file.

/**
 * A node of a decoded value: `type` is Python's type name (or 'ref' for a persistent reference, 'object' for
 * an instance of a class we only know by name, 'cut' where the limits stopped the tree). Atoms have `repr`;
 * containers `items` (or `entries` for a dict), with `length` the full count when not all are shown.
 */
export interface TreeNode {
  type: string;
  repr?: string;
  /** the full length (items, characters, bytes) when `truncated` */
  length?: number;
  truncated?: boolean;
  items?: TreeNode[];
  entries?: Array<[TreeNode, TreeNode]>;
  /** 'object': its class (dotted), and what the pickle applied to it */
  class?: string;
  args?: TreeNode;
  state?: TreeNode;
  /** 'ref': the referenced object, its class when the reference names it, and whether it exists */
  oid?: string;
  kind?: string;
  database?: string;
  broken?: boolean;
  /** 'cut': why */
  reason?: string;
}

/** A record decoded for display. */
export interface RecordView {
  /** 'zlib' when the record was compressed by zc.zlibstorage */
  compression: 'zlib' | null;
  /** the record's size as stored */
  size: number;
  class: { module: string; name: string; form: string | null };
  /** the class metadata's args (`__getnewargs__`), when there are some */
  args?: TreeNode;
  state?: TreeNode;
  /** when the record does not decode: why, and its bytes and opcodes instead of the tree */
  error?: string;
  raw?: { hex: string; text: string; length: number };
  opcodes?: OpcodeSummary;
  isBlob: boolean;
}

export interface OpcodeLine {
  /** the opcode's offset in the record */
  pos: number;
  name: string;
  /** its argument, shortened */
  arg?: string;
}

export interface OpcodeSummary {
  ops: OpcodeLine[];
  /** why the walk stopped before the end of the record, if it did */
  stopped?: string;
}

export interface ContainerKind {
  /** btree and treeset have buckets linked below them; bucket and set are one bucket (and those after it) */
  kind: 'btree' | 'treeset' | 'bucket' | 'set' | 'mapping' | 'list';
  /** BTrees' two-letter family (OO, IO, LL...), for BTrees' classes */
  family?: string;
  /** items are key/value pairs (else keys, or a list's items) */
  values: boolean;
}

export interface ContainerItem {
  /** a list's index, or a key */
  key: TreeNode;
  value?: TreeNode;
}

export interface ContainerPage {
  container: ContainerKind;
  /** the tid the walk reads at */
  at: string;
  items: ContainerItem[];
  /** the cursor of the next page, null after the last */
  next: string | null;
  /** the number of items, where it is known without walking the tree (mappings, lists) */
  length: number | null;
  /** the position of this page's first item */
  offset: number;
}

export interface TransactionSummary {
  tid: string;
  time: number;
  user: string;
  description: string;
  extension: TreeNode | null;
  size?: number;
}

export interface TransactionRecordInfo {
  oid: string;
  /** the record's class, '' when it has none (deleted) or it cannot be read */
  class: string;
  size: number;
  /** deleted, or its creation undone */
  deleted: boolean;
  /** a back pointer: the tid whose data this record reuses (undo, copies) */
  dataTxn: string | null;
  blob: boolean;
}

export interface TransactionView extends TransactionSummary {
  status: string;
  records: TransactionRecordInfo[];
  /** the position of the first record listed, and of the next page's (null after the last) */
  offset: number;
  next: number | null;
}

export interface UndoLogPage {
  entries: Array<TransactionSummary & { id: string }>;
  first: number;
  last: number;
}

export interface RefInfo {
  oid: string;
  /** the class of the object it points at (from the reference, else from that object's record) */
  class: string | null;
  /** the object does not exist (at that time): a dangling reference */
  broken: boolean;
}

export interface ObjectView extends RecordView {
  oid: string;
  /** the transaction that wrote this revision, its time (seconds since the epoch) */
  tid: string;
  time: number;
  /** the tid of the next revision when this one is not current */
  end: string | null;
  /** the tid this view was read at (null: current) */
  at: string | null;
  /** the objects it refers to, in order, without duplicates, at most `maxRefs` */
  refs: RefInfo[];
  /** more references than `refs` lists */
  refsTruncated: boolean;
  blob: { size: number | null } | null;
  container: ContainerKind | null;
}

/** A storage the browser can open (/api/browse/storages). */
export interface StorageInfo {
  name: string;
  lastTransaction: string;
  objects: number;
  size: number;
  undo: boolean;
  iteration: boolean;
}
