// The invalidations as an async iterator: each subscriber gets every transaction the server reports from the
// moment it subscribed, in order; the iteration ends when the storage closes or the subscriber stops. A
// subscriber that stops reading cannot grow memory without bound: past `maxQueued` transactions waiting, its
// queue is dropped and its iteration fails with InvalidationsLost (it must drop what it cached, as ZODB's
// invalidateCache, and subscribe again).

import type { Oid, Tid } from '../storage/ids.js';

/** How many transactions a subscriber may leave unread by default. */
export const DEFAULT_MAX_QUEUED = 10_000;

/** A subscriber fell too far behind: the invalidations it did not read are gone. */
export class InvalidationsLost extends Error {
  override name = 'InvalidationsLost';
  constructor(readonly maxQueued: number) {
    super(
      `more than ${maxQueued} transactions' invalidations were left unread: they are dropped; ` +
        'drop what was cached from this storage and subscribe again',
    );
  }
}

export interface Invalidation {
  tid: Tid;
  oids: Oid[];
}

class Subscriber implements AsyncIterableIterator<Invalidation> {
  private readonly queued: Invalidation[] = [];
  private head = 0;
  private waiting: ((r: IteratorResult<Invalidation>) => void) | null = null;
  private ended = false;
  private lost: InvalidationsLost | null = null;

  constructor(
    private readonly unsubscribe: (s: Subscriber) => void,
    private readonly maxQueued: number,
  ) {}

  push(inv: Invalidation): void {
    if (this.ended) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: inv, done: false });
    } else if (this.queued.length - this.head >= this.maxQueued) {
      this.queued.length = 0;
      this.head = 0;
      this.lost = new InvalidationsLost(this.maxQueued);
      this.end();
    } else this.queued.push(inv);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.unsubscribe(this);
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<Invalidation>> {
    if (this.head < this.queued.length) {
      const inv = this.queued[this.head++];
      // an index instead of shift(): compact once the read part is the larger half
      if (this.head > 1024 && this.head * 2 > this.queued.length) {
        this.queued.splice(0, this.head);
        this.head = 0;
      }
      return Promise.resolve({ value: inv, done: false });
    }
    if (this.lost) {
      const e = this.lost;
      this.lost = null;
      return Promise.reject(e);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<Invalidation>> {
    this.queued.length = 0;
    this.head = 0;
    this.lost = null;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Invalidation> {
    return this;
  }
}

export class InvalidationFeed {
  private readonly subscribers = new Set<Subscriber>();
  private closed = false;

  /** every transaction from now on; at most `maxQueued` left unread (else InvalidationsLost) */
  subscribe(maxQueued = DEFAULT_MAX_QUEUED): AsyncIterableIterator<Invalidation> {
    const s = new Subscriber((x) => this.subscribers.delete(x), maxQueued);
    if (this.closed) s.end();
    else this.subscribers.add(s);
    return s;
  }

  publish(inv: Invalidation): void {
    for (const s of this.subscribers) s.push(inv);
  }

  close(): void {
    this.closed = true;
    for (const s of [...this.subscribers]) s.end();
  }
}
