// The client side of one ZEO connection (ZEO's asyncio/client.py Protocol in our terms): the handshake that
// follows the server's greeting, synchronous calls matched to their replies by msgid, one-way calls, the
// server's one-way calls handed to the owner in the order they came, and the heartbeat. Anything the server
// sends that the reference would not accept ends the connection, and every waiting call fails with
// ClientDisconnected carrying the reason. Reconnecting, registering and the cache belong to ClientStorage.

import net from 'node:net';
import tls from 'node:tls';
import { pyRepr, type PickleValue } from '../pickle/index.js';
import {
  chooseClientProtocol,
  codecFor,
  isAsync,
  isHeartbeat,
  ProtocolError,
  pyTruthy,
  REPLY,
  unmarshalError,
  type Message,
  type MessageCodec,
} from '../protocol/index.js';
import { MessageChannel, type ChannelLimits } from '../transport/channel.js';
import { clientTlsOptions, type TlsSection } from '../transport/tls.js';
import { CallTimeoutError, ClientDisconnected } from './errors.js';

/** A TCP address, or a unix socket path. */
export type ServerAddress = { host: string; port: number } | { path: string } | string;

/** A one-way call from the server (invalidateTransaction, info, receiveBlobStart...). */
export type ServerCallHandler = (name: string, args: PickleValue[]) => void | Promise<void>;

export interface ClientConnectionOptions {
  /** ms a call waits for its reply unless it says otherwise; 0 (the default): no limit */
  timeout?: number;
  /** ms between heartbeats (ZEO's heartbeat_interval, 60 s); 0: none */
  heartbeatInterval?: number;
  /**
   * ms the server may leave a `ping` unanswered before the connection is given up as dead (0, the default:
   * never). Once a call has been answered (register), a heartbeat that finds the server silent for a whole
   * interval sends a `ping` instead; a server that keeps its socket open but answers nothing is noticed within
   * about two intervals plus this.
   */
  heartbeatTimeout?: number;
  /** ms for the socket, TLS and the server's greeting (default 10 s) */
  connectTimeout?: number;
  /** TLS as an <ssl> section, or Node's options as they are */
  tls?: TlsSection | tls.ConnectionOptions;
  /** the server's one-way calls, one at a time in order (a returned promise holds the next one back) */
  onServerCall?: ServerCallHandler;
  /** the channel's limits; maxMessageSize defaults to DEFAULT_MAX_MESSAGE_SIZE */
  limits?: Partial<ChannelLimits>;
  /** gives up connecting (before the greeting) with the signal's reason */
  signal?: AbortSignal;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** ms; overrides the connection's default (0: no limit) */
  timeout?: number;
}

/**
 * The largest frame the client accepts from a server unless told otherwise: a record this size or larger is
 * beyond what a sane database holds (blobs travel in chunks), and a bounded default keeps a broken or hostile
 * server from making us buffer 2 GiB. The same default as our server's max-message-size.
 */
export const DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024;

const DEFAULT_LIMITS: ChannelLimits = {
  maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
  // never stop reading because our own output waits: a server that pauses reading while its replies wait
  // for us would otherwise wait on us forever (ZEO's client keeps reading too)
  outputHighWater: Number.POSITIVE_INFINITY,
  maxInFlight: Number.MAX_SAFE_INTEGER,
};

interface Pending {
  name: string;
  resolve(v: PickleValue): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout | null;
  signal: AbortSignal | null;
  onAbort: (() => void) | null;
}

/** How many abandoned (timed out, aborted) msgids are remembered so that their late replies are ignored. */
const ABANDONED_MAX = 10_000;

function isSection(t: TlsSection | tls.ConnectionOptions): t is TlsSection {
  return 'authenticate' in t && 'certificate' in t;
}

/** An address as people write it: host:port, or the socket path. */
export function describeAddress(address: ServerAddress): string {
  if (typeof address === 'string') return address;
  return 'path' in address ? address.path : `${address.host}:${address.port}`;
}

export class ClientConnection {
  /** the encoding the server chose ('Z' pickle, 'M' msgpack) */
  readonly encoding: 'Z' | 'M';
  /** settles with the reason once the connection is gone */
  readonly closed: Promise<ClientDisconnected>;
  private readonly pending = new Map<number, Pending>();
  private readonly abandoned = new Set<number>();
  private lastMsgid = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  /** when the last frame came (or a server call we held reading for finished) */
  private lastReceived = Date.now();
  private lastBeat = Date.now();
  /** when the unanswered liveness ping went out (0: none out) */
  private pingSent = 0;
  /** server calls being handled (reading is held: the server's silence is ours) */
  private handling = 0;
  /**
   * a call has been answered (not with an error): registered, so a ping is safe (ZEO's server, and ours, hang up
   * on any call but register before it)
   */
  private answered = false;
  private closeReason: ClientDisconnected | null = null;

  private constructor(
    private readonly channel: MessageChannel,
    private readonly codec: MessageCodec,
    private readonly options: ClientConnectionOptions,
    closed: Promise<ClientDisconnected>,
  ) {
    this.encoding = codec.encoding;
    this.closed = closed;
  }

  /**
   * Connects, reads the server's greeting and answers it with the protocol ZEO's client would choose; resolves
   * once calls can be made (register first, as ZEO's client does).
   */
  static connect(address: ServerAddress, options: ClientConnectionOptions = {}): Promise<ClientConnection> {
    const where = describeAddress(address);
    const tcp = typeof address === 'object' && 'host' in address ? address : null;
    const path = typeof address === 'string' ? address : 'path' in address ? address.path : null;
    // (in the executor: a TLS section whose files cannot be read rejects, too)
    const signal = options.signal;
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason, as fetch does
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      let socket: net.Socket;
      if (options.tls) {
        const opts = isSection(options.tls) ? clientTlsOptions(options.tls) : options.tls;
        socket = tcp
          ? tls.connect({ ...opts, host: tcp.host, port: tcp.port })
          : tls.connect({ ...opts, path: path! });
      } else {
        socket = tcp ? net.connect(tcp.port, tcp.host) : net.connect(path!);
      }
      let conn: ClientConnection | null = null;
      let failed: ClientDisconnected | null = null;
      let resolveClosed!: (r: ClientDisconnected) => void;
      const closed = new Promise<ClientDisconnected>((r) => (resolveClosed = r));
      const reasonOf = (e: Error): ClientDisconnected =>
        e instanceof ClientDisconnected
          ? e
          : new ClientDisconnected(`connection to ${where} lost: ${e.message}`, { cause: e });
      const channel = new MessageChannel(
        socket,
        { ...DEFAULT_LIMITS, ...options.limits },
        {
          frame: (payload) => {
            if (conn) {
              conn.onFrame(payload);
              return;
            }
            const chosen = chooseClientProtocol(payload);
            if ('error' in chosen) {
              channel.destroy(new ClientDisconnected(`${where}: ${chosen.error}`));
              return;
            }
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            channel.send(chosen.reply);
            conn = new ClientConnection(channel, codecFor(chosen.encoding, 'client'), options, closed);
            conn.startHeartbeat();
            resolve(conn);
          },
          closing: (reason) => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            const r = reasonOf(reason);
            if (conn) conn.onClosing(r);
            else failed = r;
          },
          closed: (reason) => {
            // (a connect that failed rejects once its socket is gone: nothing of it outlives the promise)
            if (failed) reject(failed);
            resolveClosed(conn?.closeReason ?? reasonOf(reason));
          },
        },
      );
      const ms = options.connectTimeout ?? 10_000;
      const timer = setTimeout(
        () => channel.destroy(new ClientDisconnected(`no greeting from ${where} within ${ms} ms`)),
        ms,
      );
      const onAbort = (): void => {
        const r: unknown = signal!.reason;
        channel.destroy(
          r instanceof ClientDisconnected
            ? r
            : new ClientDisconnected(`connecting to ${where} given up: ${String(r)}`, { cause: r }),
        );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get connected(): boolean {
    return this.closeReason === null;
  }

  /** Calls waiting for a reply (0 once the connection is closed). */
  get pendingCalls(): number {
    return this.pending.size;
  }

  /** A synchronous call: resolves with the reply's value, rejects with the error rebuilt from an error reply. */
  call(name: string, args: PickleValue[] = [], options?: CallOptions): Promise<PickleValue> {
    if (this.closeReason) return Promise.reject(this.closeReason);
    const signal = options?.signal ?? null;
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason, as fetch does
    if (signal?.aborted) return Promise.reject(signal.reason);
    const msgid = ++this.lastMsgid;
    let payload: Uint8Array;
    try {
      payload = this.codec.encodeCall(msgid, false, name, args);
    } catch (e) {
      // arguments with no form in the encoding: only this call fails (with the encoder's ProtocolError)
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the encoder's own error
      return Promise.reject(e);
    }
    return new Promise<PickleValue>((resolve, reject) => {
      const p: Pending = { name, resolve, reject, timer: null, signal, onAbort: null };
      const ms = options?.timeout ?? this.options.timeout ?? 0;
      if (ms > 0) p.timer = setTimeout(() => this.abandon(msgid, new CallTimeoutError(name, ms)), ms);
      if (signal) {
        p.onAbort = () => this.abandon(msgid, signal.reason);
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(msgid, p);
      this.channel.send(payload);
    });
  }

  /** Reads (and hands out) nothing more from the server until `until` settles: replies and calls wait in order. */
  holdReading(until: Promise<unknown>): void {
    if (this.closeReason) return;
    this.channel.holdReading(until.catch(() => undefined));
  }

  /** A one-way call: no reply (the server closes the connection if it fails). */
  callAsync(name: string, args: PickleValue[] = []): void {
    if (this.closeReason) throw this.closeReason;
    this.channel.send(this.codec.encodeCall(0, true, name, args));
  }

  /** Closes (what is queued is written first); resolves once the socket is gone. */
  async close(reason = 'closed by the client'): Promise<ClientDisconnected> {
    this.channel.close(new ClientDisconnected(reason));
    return this.closed;
  }

  // ------------------------------------------------------------------------------------------------------

  private startHeartbeat(): void {
    const every = this.options.heartbeatInterval ?? 60_000;
    if (every <= 0) return;
    // (-1, 0, '.reply', None), which the server ignores: it keeps idle connections (and NATs) alive
    const beat = this.codec.encodeReply(-1, null);
    const deadAfter = this.options.heartbeatTimeout ?? 0;
    this.heartbeat = setInterval(() => {
      const now = Date.now();
      // a late tick means our own event loop stalled: the server's replies may be waiting unread
      const stalled = now - this.lastBeat > every * 1.5;
      this.lastBeat = now;
      if (deadAfter > 0 && this.handling === 0 && this.answered) {
        if (this.pingSent > 0) {
          if (!stalled && now - this.pingSent > deadAfter) {
            this.channel.destroy(
              new ClientDisconnected(
                `the server stopped answering: no reply to a ping within ${now - this.pingSent} ms`,
              ),
            );
            return;
          }
        } else if (now - this.lastReceived >= every) {
          this.pingSent = now;
          // any answer will do, an error reply too (a server may refuse calls before register)
          const done = (): void => {
            this.pingSent = 0;
          };
          this.call('ping', [], { timeout: 0 }).then(done, done);
          return;
        }
      }
      this.channel.send(beat);
    }, every);
    this.heartbeat.unref();
  }

  /** Takes a call out of the table; its late reply will be ignored. */
  private abandon(msgid: number, error: unknown): void {
    const p = this.take(msgid);
    if (!p) return;
    this.abandoned.add(msgid);
    if (this.abandoned.size > ABANDONED_MAX) this.abandoned.delete(this.abandoned.values().next().value!);
    p.reject(error);
  }

  private take(msgid: number): Pending | undefined {
    const p = this.pending.get(msgid);
    if (!p) return undefined;
    this.pending.delete(msgid);
    if (p.timer) clearTimeout(p.timer);
    if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
    return p;
  }

  private protocolError(message: string, cause?: unknown): void {
    this.channel.destroy(new ClientDisconnected(`protocol error: ${message}`, { cause }));
  }

  private onFrame(payload: Buffer): void {
    this.lastReceived = Date.now();
    let msg: Message;
    try {
      msg = this.codec.decode(payload);
    } catch (e) {
      this.protocolError(`cannot decode a message from the server: ${(e as Error).message}`, e);
      return;
    }
    if (msg.name === REPLY) this.onReply(msg);
    else this.onServerCall(msg);
  }

  private onReply(msg: Message): void {
    if (isHeartbeat(msg)) return;
    const id = msg.msgid;
    const msgid = typeof id === 'number' ? id : typeof id === 'bigint' ? Number(id) : NaN;
    const p = this.take(msgid);
    if (!p) {
      if (this.abandoned.delete(msgid)) return;
      this.protocolError(`a reply to msgid ${pyRepr(id)}, which no call is waiting for`);
      return;
    }
    if (!pyTruthy(msg.flag)) {
      this.answered = true;
      p.resolve(msg.body);
      return;
    }
    // an error reply: (class name, exception args)
    const body = msg.body;
    if (!Array.isArray(body) || body.length !== 2 || typeof body[0] !== 'string') {
      const e = new ProtocolError(`an error reply to ${p.name} is not a (class name, args) pair`);
      p.reject(new ClientDisconnected(`protocol error: ${e.message}`, { cause: e }));
      this.protocolError(e.message);
      return;
    }
    p.reject(unmarshalError(body[0], body[1]));
  }

  private onServerCall(msg: Message): void {
    if (!isAsync(msg)) {
      this.protocolError(
        `the server called ${msg.name} expecting a reply (a client only takes one-way calls)`,
      );
      return;
    }
    const handler = this.options.onServerCall;
    if (!handler) return;
    const fail = (e: unknown): void =>
      this.protocolError(
        `handling the server's ${msg.name} failed: ${(e as Error)?.message ?? String(e)}`,
        e,
      );
    try {
      const r = handler(msg.name, msg.args);
      // (read nothing more until it is done: the next call waits its turn)
      if (r instanceof Promise) {
        this.handling++;
        this.channel.holdReading(
          r.catch(fail).finally(() => {
            this.handling--;
            this.lastReceived = Date.now();
          }),
        );
      }
    } catch (e) {
      fail(e);
    }
  }

  private onClosing(reason: ClientDisconnected): void {
    this.closeReason = reason;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.abandoned.clear();
    for (const msgid of [...this.pending.keys()]) this.take(msgid)!.reject(reason);
  }
}
