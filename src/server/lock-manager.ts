// The server's commit lock for one storage (StorageServer's LockManager): the session that votes first replays
// its transaction into the storage and holds the lock until tpc_finish or tpc_abort; later voters wait in
// FIFO order and their vote replies are deferred. Unlike the reference, a transaction-timeout really aborts
// the transaction and frees the lock (the reference closes the connection but leaves the lock held).

import { pyStrRepr } from '../pickle/index.js';
import { StorageTransactionError } from '../storage/errors.js';
import type { Logger } from './log.js';

export interface LockClient {
  /** false once the client's connection is gone */
  readonly connected: boolean;
  readonly label: string;
}

interface Waiter<C> {
  client: C;
  grant: () => void;
  /** epoch seconds at which it began to wait */
  since: number;
}

export class LockManager<C extends LockClient> {
  private holder: C | null = null;
  private readonly queue: Waiter<C>[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** epoch seconds at which the holder got the lock (server_status's lock_time) */
  lockTime: number | null = null;

  constructor(
    private readonly storageName: string,
    private readonly log: Logger,
    private readonly timeoutSeconds: number | null,
    /** called when the holder exceeded the transaction timeout: it must abort and release */
    private readonly onTimeout: (client: C) => void,
  ) {}

  get locked(): C | null {
    return this.holder;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** whether a timeout watchdog exists (server_status's 'timeout-thread-is-alive': 'stub' without one) */
  get hasTimeout(): boolean {
    return this.timeoutSeconds !== null;
  }

  /** the waiting clients in order, with when each began to wait (epoch seconds): the dashboard's view */
  queued(): Array<{ client: C; since: number }> {
    return this.queue.map((w) => ({ client: w.client, since: w.since }));
  }

  isWaiting(client: C): boolean {
    return this.queue.some((w) => w.client === client);
  }

  /**
   * Takes the lock now (true) or queues the client (false; `grant` runs when its turn comes). A client that
   * already holds or waits gets StorageTransactionError, as the reference says it.
   */
  acquire(client: C, grant: () => void): boolean {
    if (this.holder === client) throw new StorageTransactionError('Already voting (locked)');
    if (this.isWaiting(client)) throw new StorageTransactionError('Already voting (waiting)');
    if (this.holder === null && this.queue.length === 0) {
      this.take(client);
      return true;
    }
    this.queue.push({ client, grant, since: Date.now() / 1000 });
    this.logWaiting(client, 'queue lock');
    return false;
  }

  /** Gives up the lock, or the client's place in the queue. Doing it twice does nothing. */
  release(client: C): void {
    if (this.holder === client) {
      this.holder = null;
      this.lockTime = null;
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.logWaiting(client, 'unlock');
      this.handOver();
      return;
    }
    const i = this.queue.findIndex((w) => w.client === client);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.logWaiting(client, 'dequeue lock');
      // the head of the queue may have been waiting behind a holder that is gone by now
      this.handOver();
    }
  }

  private handOver(): void {
    while (this.holder === null && this.queue.length > 0) {
      const next = this.queue.shift()!;
      if (!next.client.connected) continue;
      this.take(next.client);
      next.grant();
    }
  }

  private take(client: C): void {
    this.holder = client;
    this.lockTime = Date.now() / 1000;
    this.logWaiting(client, 'lock');
    if (this.timeoutSeconds !== null) {
      const seconds = this.timeoutSeconds;
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.holder !== client) return;
        this.log.critical(`(${client.label}) Transaction timeout after ${seconds} seconds`);
        this.onTimeout(client);
      }, seconds * 1000);
      this.timer.unref();
    }
  }

  private logWaiting(client: C, what: string): void {
    const n = this.queue.length;
    // on every commit: build the message only when it will be written
    if (n <= 3 && !this.log.isLevelEnabled('DEBUG')) return;
    const msg = `(${client.label}) (${pyStrRepr(this.storageName)}) ${what}: transactions waiting: ${n}`;
    if (n > 9) this.log.critical(msg);
    else if (n > 3) this.log.warn(msg);
    else this.log.debug(msg);
  }
}
