// The shapes of the object browser's JSON API (/api/browse/, src/server/http/browse-routes.ts), as the page
// reads them.

export interface TreeNode {
  type: string;
  repr?: string;
  length?: number;
  truncated?: boolean;
  items?: TreeNode[];
  entries?: Array<[TreeNode, TreeNode]>;
  class?: string;
  args?: TreeNode;
  state?: TreeNode;
  oid?: string;
  kind?: string;
  database?: string;
  broken?: boolean;
  reason?: string;
}

export interface StorageInfo {
  name: string;
  lastTransaction: string;
  objects: number;
  size: number;
  undo: boolean;
  iteration: boolean;
}

export interface ContainerKind {
  kind: 'btree' | 'treeset' | 'bucket' | 'set' | 'mapping' | 'list';
  family?: string;
  values: boolean;
}

export interface ObjectView {
  oid: string;
  tid: string;
  time: number;
  end: string | null;
  at: string | null;
  size: number;
  compression: 'zlib' | null;
  class: { module: string; name: string; form: string | null };
  args?: TreeNode;
  state?: TreeNode;
  error?: string;
  raw?: { hex: string; text: string; length: number };
  opcodes?: { ops: Array<{ pos: number; name: string; arg?: string }>; stopped?: string };
  isBlob: boolean;
  blob: { size: number | null } | null;
  refs: Array<{ oid: string; class: string | null; broken: boolean }>;
  refsTruncated: boolean;
  container: ContainerKind | null;
}

export interface ContainerPage {
  container: ContainerKind;
  at: string;
  items: Array<{ key: TreeNode; value?: TreeNode }>;
  next: string | null;
  length: number | null;
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

export interface TransactionView extends TransactionSummary {
  status: string;
  records: Array<{
    oid: string;
    class: string;
    size: number;
    deleted: boolean;
    dataTxn: string | null;
    blob: boolean;
  }>;
  offset: number;
  next: number | null;
}

export interface UndoLogPage {
  entries: Array<TransactionSummary & { id: string }>;
  first: number;
  last: number;
}
