// Read-only snapshots of a running server for the dashboard: its storages and configuration, its clients,
// each storage's commit lock, and its recent transactions. Everything here only reads the server's state;
// every list is bounded (a server with 100,000 clients answers with the first MAX_LISTED and the count).

import type { ListenAddress, ServerConfig, StorageConfig } from './config.js';
import type { StorageServer } from './server.js';
import type { ServedStorage } from './served-storage.js';
import type { RecentTransaction } from './recent-transactions.js';
import { idHex, z64 } from '../storage/ids.js';
import { tidTime } from '../storage/timestamp.js';
import type {
  ClientSnapshot,
  ConfigSnapshot,
  ConfigValue,
  LockSnapshot,
  ServerSnapshot,
  StorageSummary,
  TransactionSummary,
} from './introspect-types.js';

/** the most clients or lock waiters one answer lists */
export const MAX_LISTED = 1000;
/** the most transactions one answer lists */
export const MAX_TRANSACTIONS = 100;
/** a transaction of more records is listed without its size when that would mean reading them all */
const MAX_RECORDS_READ = 10_000;

const utf8 = new TextDecoder('utf-8', { fatal: false });

function text(b: Uint8Array): string {
  return utf8.decode(b);
}

function iso(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString();
}

export function addressText(a: ListenAddress): string {
  return a.kind === 'unix' ? a.path : `${a.host || '0.0.0.0'}:${a.port}`;
}

// ---------------------------------------------------------------------------------------------------------
// the server

/** The engine's name: the configuration's section type when known, else the storage's class. */
function engineOf(served: ServedStorage, config: ServerConfig | null): string {
  const section = config?.storages.find((s) => s.name === served.name);
  if (section) return section.kind;
  return served.storage.constructor.name;
}

function storageSummary(served: ServedStorage, config: ServerConfig | null): StorageSummary {
  const s = served.storage;
  const last = s.lastTransaction();
  const empty = idHex(last) === idHex(z64);
  return {
    name: served.name,
    description: s.getName(),
    engine: engineOf(served, config),
    readOnly: s.isReadOnly(),
    sizeBytes: s.getSize(),
    objects: s.len(),
    lastTransaction: empty ? null : { tid: idHex(last), time: iso(tidTime(last)) },
    stats: {
      loads: served.stats.loads,
      stores: served.stats.stores,
      commits: served.stats.commits,
      aborts: served.stats.aborts,
      conflicts: served.stats.conflicts,
      activeTransactions: served.stats.activeTxns,
      clients: served.clients.size,
      lockWaiting: served.lock.waiting,
      invalidationQueue: served.invalidations.length,
    },
  };
}

export function serverSnapshot(
  server: StorageServer,
  config: ServerConfig | null,
  info: { version: string; startedAt: number },
): ServerSnapshot {
  return {
    version: info.version,
    startedAt: new Date(info.startedAt).toISOString(),
    uptimeSeconds: Math.max(0, (Date.now() - info.startedAt) / 1000),
    addresses: server.listening ? [addressText(server.listening)] : [],
    readOnly: server.readOnly,
    msgpack: server.msgpack,
    clients: server.connectionCount,
    storages: [...server.storages.values()].map((s) => storageSummary(s, config)),
    config: config ? configSnapshot(config) : null,
  };
}

// ---------------------------------------------------------------------------------------------------------
// the configuration

/** camelCase → zeo.conf's dashed names (invalidationQueueSize → invalidation-queue-size) */
function dashed(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** A token's value is never shown, whatever its key; a file naming it is fine. */
function isSecretKey(key: string): boolean {
  return /token|secret|password/i.test(key) && !/file|function/i.test(key);
}

/** A PostgreSQL DSN with its password as ***: keyword form (password=...) and URI form (user:pw@). */
export function redactDsn(dsn: string): string {
  return dsn
    .replace(/(^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)/gi, '$1$2***')
    .replace(/^(postgres(?:ql)?:\/\/[^:/@?#]*:)[^@/?#]*@/i, '$1***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***');
}

function flatten(value: unknown): ConfigValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'object' && 'kind' in value && (value.kind === 'tcp' || value.kind === 'unix')) {
    return addressText(value as ListenAddress);
  }
  return JSON.stringify(value);
}

function settingsOf(obj: object, skip: ReadonlySet<string>): Record<string, ConfigValue> {
  const out: Record<string, ConfigValue> = {};
  for (const [key, value] of Object.entries(obj) as Array<[string, unknown]>) {
    if (skip.has(key) || value === undefined) continue;
    if (isSecretKey(key)) {
      if (value !== null && value !== '') out[dashed(key)] = '***';
      continue;
    }
    if (value !== null && typeof value === 'object' && !('kind' in value) && !Array.isArray(value)) {
      // a nested section (<ssl>): its keys under its name; the listener's settings by their zeo.conf names
      // (http-address, http-token-file)
      const join = key === 'http' ? '-' : '.';
      for (const [k, v] of Object.entries(settingsOf(value, new Set()))) out[`${dashed(key)}${join}${k}`] = v;
      continue;
    }
    out[dashed(key)] = flatten(value);
  }
  return out;
}

const NOT_ZEO_SETTINGS = new Set(['storages', 'eventlog', 'sources']);

function storageSettings(s: StorageConfig): Record<string, ConfigValue> {
  if (s.kind !== 'postgresql') return settingsOf(s, new Set(['kind', 'name']));
  const out = settingsOf(s.options, new Set(['dsn']));
  return { dsn: redactDsn(s.options.dsn), ...out, ignored: s.ignored.join(', ') || null };
}

export function configSnapshot(config: ServerConfig): ConfigSnapshot {
  return {
    zeo: settingsOf(config, NOT_ZEO_SETTINGS),
    storages: config.storages.map((s) => ({ type: s.kind, name: s.name, settings: storageSettings(s) })),
  };
}

// ---------------------------------------------------------------------------------------------------------
// clients

export function clientsSnapshot(server: StorageServer): { total: number; clients: ClientSnapshot[] } {
  const clients: ClientSnapshot[] = [];
  for (const conn of server.clientConnections()) {
    if (clients.length >= MAX_LISTED) break;
    const session = conn.session;
    const served = session.served;
    const lock = served
      ? served.lock.locked === session
        ? 'holder'
        : served.lock.isWaiting(session)
          ? 'waiting'
          : null
      : null;
    clients.push({
      address: conn.label,
      storage: served?.name ?? null,
      protocol: conn.protocol,
      encoding: conn.protocol === null ? null : conn.protocol.startsWith('M') ? 'msgpack' : 'pickle',
      readOnly: session.isReadOnly,
      connectedSince: new Date(conn.connectedAt).toISOString(),
      callsInFlight: conn.callsInFlight,
      bytesWaiting: conn.outputBytes,
      inTransaction: session.inTransaction,
      lock,
    });
  }
  return { total: server.connectionCount, clients };
}

// ---------------------------------------------------------------------------------------------------------
// commit locks

export function locksSnapshot(server: StorageServer): LockSnapshot[] {
  return [...server.storages.values()].map((served) => {
    const lock = served.lock;
    const holder = lock.locked;
    const queued = lock.queued();
    return {
      storage: served.name,
      holder:
        holder === null ? null : { client: holder.label, since: iso(lock.lockTime ?? Date.now() / 1000) },
      waiting: queued.slice(0, MAX_LISTED).map((w) => ({ client: w.client.label, since: iso(w.since) })),
      waitingTotal: queued.length,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// recent transactions

/**
 * What a commit did not tell about `e` (seeded at start, or another writer's): read once from the storage,
 * one transaction (FileStorage finds a recent one from the file's end), and kept in the entry.
 */
async function fillInfo(served: ServedStorage, e: RecentTransaction): Promise<void> {
  const storage = served.storage;
  if (!storage.capabilities.iteration) return;
  for await (const t of storage.iterator(e.tid, e.tid)) {
    if (idHex(t.tid) !== idHex(e.tid)) break;
    // a transaction's records are read for its size only up to a bound: a request does bounded work
    let size: number | null = 0;
    if (e.records <= MAX_RECORDS_READ) {
      for await (const r of t.records) size += r.data?.length ?? 0;
    } else size = null;
    e.info = { user: t.user, description: t.description, size };
    break;
  }
}

export async function recentTransactions(
  served: ServedStorage,
  limit: number,
): Promise<TransactionSummary[]> {
  const entries = served.recent.newest(Math.min(Math.max(limit, 0), MAX_TRANSACTIONS));
  const out: TransactionSummary[] = [];
  for (const e of entries) {
    if (e.info === null && !e.unknown) {
      try {
        await fillInfo(served, e);
      } catch {
        // unreadable now: shown without it
      }
      if (e.info === null) e.unknown = true;
    }
    out.push({
      tid: idHex(e.tid),
      time: iso(tidTime(e.tid)),
      user: e.info ? text(e.info.user) : null,
      description: e.info ? text(e.info.description) : null,
      size: e.info ? e.info.size : null,
      records: e.records,
    });
  }
  return out;
}
