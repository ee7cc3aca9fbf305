// The last transactions of a served storage, newest first, for the dashboard: a fixed ring the server fills
// at each commit (with the committer's user, description and record bytes, known then at no cost) and at each
// transaction another writer commits (watchInvalidations: its tid and record count only), seeded at start
// from the storage's last transactions (lastInvalidations). What a commit did not tell (seeded entries, other
// writers') is read once, when first asked for, from the storage: one transaction each, never a scan.

import type { Tid } from '../storage/ids.js';

export interface RecentInfo {
  user: Uint8Array;
  description: Uint8Array;
  /** bytes of the transaction's record data */
  size: number;
}

export interface RecentTransaction {
  tid: Tid;
  /** data records written */
  records: number;
  /** null until read from the storage */
  info: RecentInfo | null;
}

export class RecentTransactions {
  private readonly ring: Array<RecentTransaction | undefined>;
  private next = 0;
  private count = 0;

  constructor(readonly capacity = 100) {
    this.ring = new Array<RecentTransaction | undefined>(capacity);
  }

  push(entry: RecentTransaction): void {
    if (this.capacity === 0) return;
    this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** Fills an empty ring from `entries`, newest first (as lastInvalidations gives them). */
  seed(entries: RecentTransaction[]): void {
    for (let i = Math.min(entries.length, this.capacity) - 1; i >= 0; i--) this.push(entries[i]);
  }

  get length(): number {
    return this.count;
  }

  /** the newest `limit` entries, newest first */
  newest(limit: number): RecentTransaction[] {
    const out: RecentTransaction[] = [];
    const n = Math.min(limit, this.count);
    for (let i = 1; i <= n; i++) out.push(this.ring[(this.next - i + this.capacity) % this.capacity]!);
    return out;
  }
}
