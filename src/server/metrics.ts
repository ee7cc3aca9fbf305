// The server's Prometheus metrics: one prom-client Registry per StorageServer (several servers live in one test
// process, so never the global one). What the server counts already (ServedStorage.stats, the sockets' byte
// counts, the record caches' hits) is read when /metrics is scraped, never counted again on the hot path; the
// histograms are observed once per vote, finish, flush and commit-lock hand-over.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { u64 } from '../storage/ids.js';
import { tidTime } from '../storage/timestamp.js';
import type { ServedStorage } from './served-storage.js';
import type { StorageServer } from './server.js';

/** 0.5 ms to 10 s: a fast commit's flush to a commit stuck behind a slow disk */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

const STORAGE = ['storage'] as const;

let processRegistry: Registry | null = null;

/**
 * prom-client's process and Node.js metrics, in one registry for the process: their collectors (a GC observer,
 * an event-loop delay monitor) watch the whole process and cannot be stopped, so they are made once.
 */
function processMetrics(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The server's metrics (a registry of its own: several servers live in one test process), made on first use:
 * the HTTP listener asks for them when it starts, so a server without one never loads prom-client.
 */
export function serverMetrics(server: StorageServer): ZeoMetrics {
  return (server.metrics ??= new ZeoMetrics(server));
}

export class ZeoMetrics {
  /** the server's own metrics */
  readonly registry = new Registry();
  /** what /metrics shows: the server's and the process's */
  private readonly exposed: Registry;

  constructor(private readonly server: StorageServer) {
    const registers = [this.registry];
    const storages = (): ServedStorage[] => [...server.storages.values()];

    type PerStorage = (s: ServedStorage) => number | null;
    /** `value` of each storage (none when null), as `put` records it */
    const each = (value: PerStorage, put: (labels: { storage: string }, v: number) => void): void => {
      for (const s of storages()) {
        const v = value(s);
        if (v !== null) put({ storage: s.name }, v);
      }
    };
    // counters and gauges read from the server when scraped
    const counter = (name: string, help: string, value: PerStorage): void => {
      const collect = function (this: Counter<'storage'>): void {
        this.reset();
        each(value, (l, v) => this.inc(l, v));
      };
      new Counter({ name, help, labelNames: STORAGE, registers, collect });
    };
    const gauge = (name: string, help: string, value: PerStorage): void => {
      const collect = function (this: Gauge<'storage'>): void {
        this.reset();
        each(value, (l, v) => this.set(l, v));
      };
      new Gauge({ name, help, labelNames: STORAGE, registers, collect });
    };

    counter(
      'zeo_loads_total',
      'Objects loaded by clients (loadBefore calls answered).',
      (s) => s.stats.loads,
    );
    counter('zeo_stores_total', 'Object records clients stored in transactions.', (s) => s.stats.stores);
    counter('zeo_commits_total', 'Transactions committed (tpc_finish calls).', (s) => s.stats.commits);
    counter('zeo_aborts_total', 'Transactions aborted.', (s) => s.stats.aborts);
    counter(
      'zeo_conflicts_total',
      'Conflicts found at vote: those sent back for the client to resolve and those raised.',
      (s) => s.stats.conflicts + s.stats.clientConflicts,
    );
    // (traffic() walks the connections: once per storage and scrape)
    counter(
      'zeo_received_bytes_total',
      'Bytes received from the clients registered on the storage.',
      (s) => server.traffic().get(s.name)?.received ?? 0,
    );
    counter(
      'zeo_sent_bytes_total',
      'Bytes sent to the clients registered on the storage.',
      (s) => server.traffic().get(s.name)?.sent ?? 0,
    );
    counter(
      'zeo_cache_hits_total',
      "Loads the storage's record cache answered.",
      (s) => s.storage.cacheStats?.()?.hits ?? 0,
    );
    counter(
      'zeo_cache_misses_total',
      "Loads the storage's record cache could not answer.",
      (s) => s.storage.cacheStats?.()?.misses ?? 0,
    );

    const histogram = (name: string, help: string): Histogram<'storage'> =>
      new Histogram({ name, help, labelNames: STORAGE, buckets: DURATION_BUCKETS, registers });
    const vote = histogram(
      'zeo_vote_duration_seconds',
      "Time a vote took: the transaction's replay into the storage.",
    );
    const finish = histogram(
      'zeo_finish_duration_seconds',
      'Time tpc_finish took, until the commit was durable.',
    );
    const flush = histogram(
      'zeo_fsync_duration_seconds',
      "Time each flush that makes commits durable took (FileStorage's fdatasync, PostgreSQL's COMMIT).",
    );
    const lockWait = histogram('zeo_commit_lock_wait_seconds', 'Time a voter waited for the commit lock.');
    const lockHold = histogram(
      'zeo_commit_lock_hold_seconds',
      'Time the commit lock was held, vote to finish.',
    );

    gauge('zeo_clients', 'Clients registered on the storage.', (s) => s.clients.size);
    gauge(
      'zeo_pack_progress_ratio',
      "How far the running pack's current phase is, 0 to 1 (0 when no pack runs).",
      (s) => (s.packProgress && s.packProgress.total > 0 ? s.packProgress.done / s.packProgress.total : 0),
    );
    new Gauge({
      name: 'zeo_connections',
      help: 'Client connections open, registered or not.',
      registers,
      collect() {
        this.set(server.connectionCount);
      },
    });
    gauge('zeo_commit_lock_waiting', 'Voters queued for the commit lock.', (s) => s.lock.waiting);
    gauge('zeo_commit_lock_held', '1 while a transaction holds the commit lock.', (s) =>
      s.lock.locked ? 1 : 0,
    );
    gauge(
      'zeo_active_transactions',
      'Transactions begun and not yet finished or aborted.',
      (s) => s.stats.activeTxns,
    );
    gauge(
      'zeo_invalidation_queue_transactions',
      'Transactions in the invalidation queue (what a reconnecting client can catch up from).',
      (s) => s.invalidations.length,
    );
    gauge(
      'zeo_cache_size_bytes',
      "Bytes of records in the storage's record cache.",
      (s) => s.storage.cacheStats?.()?.bytes ?? null,
    );
    gauge(
      'zeo_cache_capacity_bytes',
      "The bound of the storage's record cache.",
      (s) => s.storage.cacheStats?.()?.capacity ?? null,
    );
    gauge('zeo_storage_size_bytes', 'The size of the storage (getSize).', (s) => s.storage.getSize());
    gauge('zeo_storage_objects', 'Objects in the storage (len).', (s) => s.storage.len());
    gauge(
      'zeo_last_transaction_timestamp_seconds',
      'When the last transaction committed (its tid), epoch seconds.',
      (s) => {
        const tid = s.storage.lastTransaction();
        return u64(tid) === 0n ? null : tidTime(tid);
      },
    );

    // the events, from now on
    for (const s of storages()) {
      const labels = { storage: s.name };
      // (every series from the start, at zero)
      for (const h of [vote, finish, lockWait, lockHold]) h.zero(labels);
      const v = vote.labels(labels);
      const f = finish.labels(labels);
      s.timings = { vote: (t) => v.observe(t), finish: (t) => f.observe(t) };
      const w = lockWait.labels(labels);
      const h = lockHold.labels(labels);
      s.lock.observer = { waited: (t) => w.observe(t), held: (t) => h.observe(t) };
      // (a storage that flushes nothing, as MemoryStorage, has no such series)
      if ('onFlush' in s.storage) {
        flush.zero(labels);
        const fl = flush.labels(labels);
        s.storage.onFlush = (t) => fl.observe(t);
      }
    }
    this.exposed = Registry.merge([this.registry, processMetrics()]);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text format (0.0.4) of every metric now. */
  text(): Promise<string> {
    return this.exposed.metrics();
  }
}
