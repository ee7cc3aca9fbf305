// The invalidation queue (StorageServer's invq): the oids written by the last N committed transactions, newest
// first, so a client reconnecting with a persistent cache can catch up by dropping just those objects
// (getInvalidations) instead of its whole cache.

import type { Oid, Tid } from '../storage/ids.js';
import { compareIds } from '../storage/ids.js';

export interface InvalidationEntry {
  tid: Tid;
  /** null: a sentinel that only says "the storage was at tid" (a storage without lastInvalidations) */
  oids: Oid[] | null;
}

export class InvalidationQueue {
  /** newest first */
  private entries: InvalidationEntry[] = [];

  constructor(readonly size: number) {}

  /** Fills the queue at start-up; `entries` newest first, as lastInvalidations gives them. */
  seed(entries: InvalidationEntry[]): void {
    this.entries = entries.slice(0, Math.max(this.size, 1));
  }

  push(tid: Tid, oids: Oid[]): void {
    this.entries.unshift({ tid, oids });
    if (this.entries.length > this.size) this.entries.length = Math.max(this.size, 0);
  }

  /** the tid of the newest entry, null when the queue is empty */
  get newest(): Tid | null {
    return this.entries.length > 0 ? this.entries[0].tid : null;
  }

  get length(): number {
    return this.entries.length;
  }

  /**
   * getInvalidations(tid): the newest tid and every oid committed after `tid`, when the queue reaches back that
   * far; null when it does not (the client must drop its cache).
   */
  since(tid: Tid): { tid: Tid; oids: Oid[] } | null {
    const entries = this.entries;
    if (entries.length === 0) return null;
    if (compareIds(entries[entries.length - 1].tid, tid) > 0) return null;
    const seen = new Set<string>();
    const oids: Oid[] = [];
    for (const e of entries) {
      if (compareIds(e.tid, tid) <= 0) break;
      // a sentinel newer than the client's tid cannot say what changed
      if (e.oids === null) return null;
      for (const oid of e.oids) {
        const key = Buffer.from(oid.buffer, oid.byteOffset, 8).toString('latin1');
        if (seen.has(key)) continue;
        seen.add(key);
        oids.push(oid);
      }
    }
    return { tid: entries[0].tid, oids };
  }
}
