// The storage commit lock: one transaction at a time between tpcBegin and tpcFinish/tpcAbort (ZODB's
// _commit_lock). An async mutex with a FIFO queue: the lock passes straight to the oldest waiter on release, so
// no late caller can barge in ahead of one that has waited. A waiter can leave the queue through an AbortSignal
// (a ZEO client that disconnects while waiting for its turn must not take the lock later and hold it forever).

/** Gives the lock back. Calling it again does nothing (it never releases someone else's hold). */
export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
}

export class CommitLock {
  private held = false;
  private readonly queue: Waiter[] = [];

  /** Whether some caller holds the lock. */
  get locked(): boolean {
    return this.held;
  }

  /** How many callers wait for it. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Resolves with a release function once the lock is ours. Rejects with the signal's reason if `signal`
   * aborts first (the waiter then leaves the queue and never gets the lock).
   */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (!this.held) {
      this.held = true;
      return Promise.resolve(this.releaser());
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(abortReason(signal!));
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      this.queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * acquire() with a cancel function in place of an AbortSignal (no controller and listener for every wait, as
   * tpcBegin waits on every contended commit): cancel() before the lock is granted takes the waiter out of the
   * queue and rejects `granted`; after, it does nothing.
   */
  wait(): { granted: Promise<Release>; cancel: () => void } {
    if (!this.held) {
      this.held = true;
      return { granted: Promise.resolve(this.releaser()), cancel: () => {} };
    }
    let cancel!: () => void;
    const granted = new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = { grant: resolve };
      this.queue.push(waiter);
      cancel = () => {
        const i = this.queue.indexOf(waiter);
        if (i < 0) return;
        this.queue.splice(i, 1);
        reject(new DOMException('The operation was aborted', 'AbortError'));
      };
    });
    return { granted, cancel };
  }

  /** The lock at once if it is free and nobody waits, else null. */
  tryAcquire(): Release | null {
    if (this.held) return null;
    this.held = true;
    return this.releaser();
  }

  /** Runs `fn` holding the lock, and releases it however `fn` ends. */
  async runExclusive<T>(fn: () => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      // hand over without unlocking: `held` stays true for the next owner
      if (next) next.grant(this.releaser());
      else this.held = false;
    };
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new DOMException('The operation was aborted', 'AbortError');
}
