// Which server the client talks to: ZEO 5's ClientIO (asyncio/client.py) in our terms. Every address is tried at
// once, each with its own backoff (minDisconnectPoll doubling up to maxDisconnectPoll); the first connection the
// storage registers wins and the others stop. A read-only server is taken, with readOnlyFallback, only until a
// writable one registers; then the client switches to that one. Registrations run one at a time (they verify
// the one cache). The server's one-way calls reach the storage for the current connection only, in order: those
// that arrive while a connection registers wait and follow its registration. A dropped connection starts the
// search again; callers wait for it up to waitTimeout, then get ClientDisconnected (transient).

import { EventEmitter } from 'node:events';
import type tls from 'node:tls';
import type { PickleValue } from '../pickle/index.js';
import { ReadOnlyError } from '../storage/errors.js';
import type { ChannelLimits } from '../transport/channel.js';
import type { TlsSection } from '../transport/tls.js';
import { ClientConnection, describeAddress, type ServerAddress } from './connection.js';
import { ClientDisconnected } from './errors.js';

export interface ConnectionManagerOptions {
  /** tried in order (all at once, as ZEO 5 does: the first to register wins) */
  addresses: ServerAddress[];
  /** register read-only */
  readOnly: boolean;
  /** accept a read-only server while no writable one answers; keep looking */
  readOnlyFallback: boolean;
  /** ms a call waits for a connection before ClientDisconnected (default 30_000; Infinity: no limit) */
  waitTimeout: number;
  /** backoff bounds in ms between attempts on one address (ZEO: 1 s .. 30 s) */
  minDisconnectPoll?: number;
  maxDisconnectPoll?: number;
  /** passed to ClientConnection */
  connectTimeout?: number;
  heartbeatInterval?: number;
  /** ms a server may leave a liveness ping unanswered before it is given up (default: heartbeatInterval, 60 s) */
  heartbeatTimeout?: number;
  timeout?: number;
  tls?: TlsSection | tls.ConnectionOptions;
  limits?: Partial<ChannelLimits>;
  /** ms the register step may take before the connection is given up (default 60_000) */
  registerTimeout?: number;
  /**
   * the storage's register step on a fresh connection (register, get_info, cache verification). It throws
   * ReadOnlyError when it asked for a writable registration and the server is read-only; the manager then
   * retries that server read-only if readOnlyFallback, else treats it as failed.
   */
  register(conn: ClientConnection, readOnly: boolean): Promise<void>;
  /** server one-way calls (invalidateTransaction, info, receiveBlob*...), in order, for the current connection only */
  onServerCall(conn: ClientConnection, name: string, args: PickleValue[]): void | Promise<void>;
}

export interface ConnectEvent {
  connection: ClientConnection;
  address: ServerAddress;
  readOnly: boolean;
}

/** One connection, from its greeting on. */
interface Link {
  conn: ClientConnection;
  address: ServerAddress;
  readOnly: boolean;
  /**
   * server calls held back while it registers, then delivered in order once it is current (null: none held,
   * they go straight to the storage); `done` settles when one that came after adoption has been delivered
   */
  queue: Array<{ name: string; args: PickleValue[]; done?: () => void }> | null;
  draining: boolean;
}

/** The connecting loop of one address. */
interface Attempt {
  address: ServerAddress;
  key: string;
  active: boolean;
  /** aborts a connect in flight and the backoff sleep */
  abort: AbortController;
  done: Promise<void>;
}

interface Waiter {
  resolve(conn: ClientConnection): void;
  reject(e: unknown): void;
}

const DEFAULT_MIN_POLL = 1000;
const DEFAULT_MAX_POLL = 30_000;

/**
 * Events: 'connect' (ConnectEvent), once a connection is registered and current; 'disconnect' (reason:
 * ClientDisconnected, connection: the ClientConnection left), when the current connection is lost, or left for a
 * writable one (then the new one is already `connection`, and its 'connect' follows).
 */
export class ConnectionManager extends EventEmitter {
  private addresses: ServerAddress[];
  private current: Link | null = null;
  private readonly attempts = new Map<string, Attempt>();
  /** every attempt loop still running, stopped or not (close() waits for them) */
  private readonly runs = new Set<Promise<void>>();
  /** every connection not yet closed, current or not (closed on close()) */
  private readonly links = new Set<Link>();
  private readonly waiters = new Set<Waiter>();
  /** registrations run one at a time */
  private registering: Promise<void> = Promise.resolve();
  private started = false;
  private closing = false;
  private lastError: Error | null = null;

  constructor(private readonly options: ConnectionManagerOptions) {
    super();
    this.addresses = [...options.addresses];
  }

  /** the registered connection, or null */
  get connection(): ClientConnection | null {
    return this.current?.conn ?? null;
  }

  /** the current connection registered read-only */
  get readOnly(): boolean {
    return this.current?.readOnly ?? false;
  }

  get address(): ServerAddress | null {
    return this.current?.address ?? null;
  }

  /** why the last attempt to connect or register failed (null: none failed yet) */
  get lastConnectError(): Error | null {
    return this.lastError;
  }

  /** Begins connecting, in the background. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.search();
  }

  /** The registered connection; waits up to waitTimeout (or the given timeout/signal), else ClientDisconnected. */
  ready(options: { signal?: AbortSignal; timeout?: number } = {}): Promise<ClientConnection> {
    if (this.closing) return Promise.reject(new ClientDisconnected('the client is closed'));
    if (this.current) return Promise.resolve(this.current.conn);
    const signal = options.signal;
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason, as fetch does
    if (signal?.aborted) return Promise.reject(signal.reason);
    // a call's timeout of 0 means no limit on its reply, not on the wait: waitTimeout then
    const ms =
      options.timeout !== undefined && options.timeout > 0
        ? options.timeout
        : (this.options.waitTimeout ?? 30_000);
    // (ZEO: a wait of 0 or less fails at once)
    if (ms <= 0) return Promise.reject(this.notConnected('not connected'));
    return new Promise<ClientConnection>((resolve, reject) => {
      const finish = (): void => {
        this.waiters.delete(waiter);
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        resolve: (conn) => {
          finish();
          resolve(conn);
        },
        reject: (e) => {
          finish();
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- a signal's own reason, as fetch does
          reject(e);
        },
      };
      const onAbort = (): void => waiter.reject(signal!.reason);
      const timer = Number.isFinite(ms)
        ? setTimeout(() => waiter.reject(this.notConnected(`no connection to a server within ${ms} ms`)), ms)
        : null;
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** Switches to other servers while running (ZEO's new_addr); drops the current connection if its address is gone. */
  newAddr(addresses: ServerAddress[]): void {
    if (this.closing) return;
    this.addresses = [...addresses];
    const keys = new Set(addresses.map(describeAddress));
    for (const a of this.attempts.values()) if (!keys.has(a.key)) this.stopAttempt(a);
    const cur = this.current;
    if (cur && !keys.has(describeAddress(cur.address))) {
      // its closed promise reports the disconnect and starts the search over the new list
      void cur.conn.close(`the address ${describeAddress(cur.address)} is no longer among the servers`);
      return;
    }
    if (this.started) this.search();
  }

  /** Stops everything: connections, attempts, backoff timers; waiting callers fail with ClientDisconnected. */
  async close(): Promise<void> {
    if (this.closing) {
      await this.settled();
      return;
    }
    this.closing = true;
    for (const a of this.attempts.values()) this.stopAttempt(a);
    const reason = new ClientDisconnected('the client is closed');
    for (const w of [...this.waiters]) w.reject(reason);
    for (const l of this.links) void l.conn.close('the client is closed');
    await this.settled();
  }

  // ------------------------------------------------------------------------------------------------------

  private async settled(): Promise<void> {
    await Promise.all([...this.runs]);
    await Promise.all([...this.links].map((l) => l.conn.closed));
    await this.registering;
  }

  /** true while the client wants (another) connection: none yet, or a read-only one with the fallback */
  private get wanting(): boolean {
    if (this.closing) return false;
    const cur = this.current;
    return cur === null || (cur.readOnly && this.fallback);
  }

  private get fallback(): boolean {
    return this.options.readOnlyFallback && !this.options.readOnly;
  }

  /** Starts a connecting loop for every address that has none (and is not the current connection's). */
  private search(): void {
    if (!this.wanting) return;
    const curKey = this.current ? describeAddress(this.current.address) : null;
    for (const address of this.addresses) {
      const key = describeAddress(address);
      if (key === curKey || this.attempts.has(key)) continue;
      const attempt: Attempt = {
        address,
        key,
        active: true,
        abort: new AbortController(),
        done: Promise.resolve(),
      };
      this.attempts.set(key, attempt);
      attempt.done = this.run(attempt)
        .catch((e: unknown) => {
          // (a bug, or a throwing 'connect' listener: this address is not tried again until the next search)
          this.lastError = e as Error;
        })
        .finally(() => {
          if (this.attempts.get(key) === attempt) this.attempts.delete(key);
          this.runs.delete(attempt.done);
        });
      this.runs.add(attempt.done);
    }
  }

  private listed(address: ServerAddress): boolean {
    const key = describeAddress(address);
    return this.addresses.some((a) => describeAddress(a) === key);
  }

  private stopAttempt(a: Attempt): void {
    if (!a.active) return;
    a.active = false;
    a.abort.abort(new ClientDisconnected(`stopped connecting to ${a.key}`));
    if (this.attempts.get(a.key) === a) this.attempts.delete(a.key);
  }

  private stopOtherAttempts(keep: Link): void {
    const key = describeAddress(keep.address);
    for (const a of [...this.attempts.values()]) if (a.key !== key) this.stopAttempt(a);
  }

  /** One address's loop: connect, register; on failure wait (growing) and try again, while still wanted. */
  private async run(attempt: Attempt): Promise<void> {
    const min = this.options.minDisconnectPoll ?? DEFAULT_MIN_POLL;
    const max = Math.max(min, this.options.maxDisconnectPoll ?? DEFAULT_MAX_POLL);
    let delay = min;
    while (attempt.active && this.wanting) {
      let conn: ClientConnection | null = null;
      const link: Link = {
        conn: null!,
        address: attempt.address,
        readOnly: false,
        queue: [],
        draining: false,
      };
      try {
        conn = await ClientConnection.connect(attempt.address, {
          timeout: this.options.timeout,
          heartbeatInterval: this.options.heartbeatInterval,
          heartbeatTimeout: this.options.heartbeatTimeout ?? this.options.heartbeatInterval ?? 60_000,
          connectTimeout: this.options.connectTimeout,
          tls: this.options.tls,
          limits: this.options.limits,
          signal: attempt.abort.signal,
          onServerCall: (name, args) => this.serverCall(link, name, args),
        });
      } catch (e) {
        if (!attempt.active) return;
        this.lastError = e as Error;
      }
      if (conn) {
        link.conn = conn;
        this.links.add(link);
        void conn.closed.then((reason) => this.lost(link, reason));
        if (!attempt.active || this.closing) {
          await conn.close('not needed');
          return;
        }
        const outcome = await this.enqueueRegistration(link);
        if (outcome === 'adopted' || outcome === 'unwanted') {
          if (this.attempts.get(attempt.key) === attempt) this.attempts.delete(attempt.key);
          attempt.active = false;
          return;
        }
      }
      if (!attempt.active) return;
      await this.sleep(delay + Math.random() * Math.min(delay, 1000) * 0.25, attempt.abort.signal);
      delay = Math.min(delay * 2, max);
    }
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private enqueueRegistration(link: Link): Promise<'adopted' | 'unwanted' | 'failed'> {
    const result = this.registering.then(() => this.registerLink(link));
    this.registering = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Registers a fresh connection (one at a time) and makes it current if it is still wanted. */
  private async registerLink(link: Link): Promise<'adopted' | 'unwanted' | 'failed'> {
    const conn = link.conn;
    if (!this.listed(link.address)) {
      // dropped by newAddr while it waited its turn
      await conn.close('the address is no longer among the servers');
      return 'unwanted';
    }
    if (!this.wanting || !conn.connected) {
      await conn.close(this.closing ? 'the client is closed' : 'another server was chosen');
      return this.wanting ? 'failed' : 'unwanted';
    }
    const cur = this.current;
    // replacing a read-only connection: only a writable registration will do
    const upgrading = cur !== null;
    let readOnly = this.options.readOnly;
    let ok = false;
    try {
      try {
        await this.registerOnce(link, readOnly);
      } catch (e) {
        if (!(e instanceof ReadOnlyError) || readOnly || !this.fallback || upgrading) throw e;
        // a read-only server: take it for now (ZEO's read-only fallback) and keep looking
        readOnly = true;
        await this.registerOnce(link, true);
      }
      ok = true;
    } catch (e) {
      this.lastError =
        e instanceof ReadOnlyError
          ? new ClientDisconnected(`${describeAddress(link.address)} is read-only: ${e.message}`, {
              cause: e,
            })
          : (e as Error);
      await conn.close(`registration failed: ${(e as Error)?.message ?? String(e)}`);
    }
    if (!ok) return 'failed';
    if (this.closing) {
      await conn.close('the client is closed');
      return 'unwanted';
    }
    // From here on the storage has taken this connection as its own (its register step is done): it is adopted,
    // or, if it died at once, the storage is told so and the search starts over from nothing.
    if (!conn.connected) {
      const reason = await conn.closed;
      this.lastError = reason;
      if (cur && this.current === cur) {
        this.current = null;
        void cur.conn.close('the connection replacing it was lost');
      }
      this.emit('disconnect', reason, conn);
      this.search();
      return 'failed';
    }
    link.readOnly = readOnly;
    const old = this.current;
    // the new one is current before the old one's 'disconnect': a listener can tell a switch from a loss
    this.current = link;
    if (old) {
      // (as ZEO's upgrade: what the old one still sends is not delivered, the new one's registration covers it)
      void old.conn.close(`switching to the writable server ${describeAddress(link.address)}`);
      this.emit(
        'disconnect',
        new ClientDisconnected(
          `left the read-only server ${describeAddress(old.address)} for the writable ${describeAddress(link.address)}`,
        ),
        old.conn,
      );
    }
    if (!readOnly || !this.fallback) this.stopOtherAttempts(link);
    const event: ConnectEvent = { connection: conn, address: link.address, readOnly };
    this.emit('connect', event);
    for (const w of [...this.waiters]) w.resolve(conn);
    void this.drain(link);
    // dropped by newAddr while it registered: leave it (its loss starts the search over the new list)
    if (!this.listed(link.address)) void conn.close('the address is no longer among the servers');
    return 'adopted';
  }

  /** The storage's register step, bounded in time and by the connection's life. */
  private async registerOnce(link: Link, readOnly: boolean): Promise<void> {
    const ms = this.options.registerTimeout ?? 60_000;
    const conn = link.conn;
    let timer: NodeJS.Timeout | undefined;
    const step = this.options.register(conn, readOnly);
    // (a step that fails after we stopped waiting for it must not be an unhandled rejection)
    step.catch(() => {});
    try {
      await Promise.race([
        step,
        conn.closed.then((reason) => {
          throw reason;
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ClientDisconnected(
                  `registering with ${describeAddress(link.address)} took over ${ms} ms`,
                ),
              ),
            ms,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A server one-way call: to the storage if its connection is current and nothing waits before it. */
  private serverCall(link: Link, name: string, args: PickleValue[]): void | Promise<void> {
    if (link.queue !== null) {
      if (this.current !== link) {
        // registering: held until it is current (the replies its registration waits for must go on)
        link.queue.push({ name, args });
        return;
      }
      // current, with held calls still being delivered: behind them, and nothing more is read meanwhile (a
      // reply must not overtake an invalidation sent before it)
      return new Promise<void>((done) => link.queue!.push({ name, args, done }));
    }
    if (this.current !== link) return;
    return this.options.onServerCall(link.conn, name, args);
  }

  /** Delivers the calls held back while a connection registered, in order; later ones queue behind them. */
  private async drain(link: Link): Promise<void> {
    if (link.draining) return;
    link.draining = true;
    try {
      while (link.queue && link.queue.length > 0 && this.current === link) {
        const { name, args, done } = link.queue.shift()!;
        try {
          await this.options.onServerCall(link.conn, name, args);
        } catch (e) {
          void link.conn.close(`handling the server's ${name} failed: ${(e as Error)?.message ?? String(e)}`);
          return;
        } finally {
          done?.();
        }
      }
    } finally {
      link.draining = false;
      if (link.queue?.length === 0) link.queue = null;
      else this.release(link);
    }
  }

  /** Drops the calls a connection still holds, letting its reading go on (it is closing, or not current). */
  private release(link: Link): void {
    const held = link.queue ?? [];
    link.queue = null;
    for (const h of held) h.done?.();
  }

  /** A connection is gone: if it was the current one, tell the storage and look again. */
  private lost(link: Link, reason: ClientDisconnected): void {
    this.links.delete(link);
    this.release(link);
    if (this.current !== link) return;
    this.current = null;
    this.lastError = reason;
    if (this.closing) return;
    this.emit('disconnect', reason, link.conn);
    this.search();
  }

  private notConnected(what: string): ClientDisconnected {
    const where = this.addresses.map(describeAddress).join(', ') || 'none';
    const last = this.lastError ? `; last error: ${this.lastError.message}` : '';
    return new ClientDisconnected(`${what} (servers: ${where})${last}`, {
      cause: this.lastError ?? undefined,
    });
  }
}
