// The dashboard's answers (/api/server, /api/clients, /api/locks, /api/transactions), as plain JSON shapes:
// src/server/introspect.ts builds them and the page (web/src/dashboard.ts) reads them with these same types.
// Types only, importing nothing, so the browser's TypeScript project can include this file.

export interface StorageSummary {
  name: string;
  /** what the storage calls itself (getName) */
  description: string;
  engine: string;
  readOnly: boolean;
  sizeBytes: number;
  objects: number;
  /** null for an empty storage */
  lastTransaction: { tid: string; time: string } | null;
  /** server_status's counters since start (the page charts their rates when /metrics is not there) */
  stats: {
    loads: number;
    stores: number;
    commits: number;
    aborts: number;
    conflicts: number;
    activeTransactions: number;
    clients: number;
    lockWaiting: number;
    invalidationQueue: number;
  };
}

export interface ServerSnapshot {
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  addresses: string[];
  readOnly: boolean;
  msgpack: boolean;
  clients: number;
  storages: StorageSummary[];
  /** the configuration as given (null when the server was built without one), secrets redacted */
  config: ConfigSnapshot | null;
}

export type ConfigValue = string | number | boolean | null;

export interface ConfigSnapshot {
  /** every <zeo> setting, by its name in zeo.conf */
  zeo: Record<string, ConfigValue>;
  /** each storage section: its type, name and keys */
  storages: Array<{ type: string; name: string; settings: Record<string, ConfigValue> }>;
}

export interface ClientSnapshot {
  address: string;
  /** null before it registered */
  storage: string | null;
  /** 'Z5', 'M5'; null before the handshake */
  protocol: string | null;
  encoding: 'pickle' | 'msgpack' | null;
  readOnly: boolean;
  connectedSince: string;
  callsInFlight: number;
  bytesWaiting: number;
  inTransaction: boolean;
  /** 'holder' of its storage's commit lock, 'waiting' for it, or null */
  lock: 'holder' | 'waiting' | null;
}

export interface LockSnapshot {
  storage: string;
  /** who holds the commit lock (a session that voted), since when */
  holder: { client: string; since: string } | null;
  /** the clients waiting to vote, in the order they will get it */
  waiting: Array<{ client: string; since: string }>;
  waitingTotal: number;
}

export interface TransactionSummary {
  tid: string;
  time: string;
  /** null when the storage could not say (it does not iterate, or the transaction was packed away) */
  user: string | null;
  description: string | null;
  /** bytes of record data */
  size: number | null;
  records: number;
}
