// The invalidations as an async iterator: each subscriber gets every transaction the server reports from the
// moment it subscribed, in order; the iteration ends when the storage closes or the subscriber stops.

import type { Oid, Tid } from '../storage/ids.js';

export interface Invalidation {
  tid: Tid;
  oids: Oid[];
}

class Subscriber implements AsyncIterableIterator<Invalidation> {
  private readonly queued: Invalidation[] = [];
  private waiting: ((r: IteratorResult<Invalidation>) => void) | null = null;
  private ended = false;

  constructor(private readonly unsubscribe: (s: Subscriber) => void) {}

  push(inv: Invalidation): void {
    if (this.ended) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: inv, done: false });
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
    const inv = this.queued.shift();
    if (inv) return Promise.resolve({ value: inv, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<Invalidation>> {
    this.queued.length = 0;
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

  subscribe(): AsyncIterableIterator<Invalidation> {
    const s = new Subscriber((x) => this.subscribers.delete(x));
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
