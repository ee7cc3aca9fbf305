// The storage server (StorageServer): listens on TCP or a unix socket, optionally TLS with client
// certificates, and serves its named storages to ZEO 5/6 clients.

import { EventEmitter } from 'node:events';
import { chmod, unlink } from 'node:fs/promises';
import net from 'node:net';
import type tls from 'node:tls';
import { pyStrRepr, type PickleValue, type PyDict } from '../pickle/index.js';
import type { Storage } from '../storage/interfaces.js';
import type { ListenAddress } from './config.js';
import { ServerConnection, type ConnectionLimits, type ConnectionServer } from './connection.js';
import type { Logger } from './log.js';
import { MemoryReclaimer } from './reclaim.js';
import { ServedStorage } from './served-storage.js';
import { strictX509Problem } from '../transport/tls.js';

export interface StorageServerOptions {
  storages: Array<{ name: string; storage: Storage }>;
  log: Logger;
  readOnly?: boolean;
  msgpack?: boolean;
  invalidationQueueSize?: number;
  invalidationAge?: number | null;
  transactionTimeout?: number | null;
  limits?: Partial<ConnectionLimits>;
  /** record bytes of one transaction kept in memory before the rest goes to a temporary file */
  commitLogThreshold?: number;
  /** the largest blob one storeBlobStart/Chunk/End upload may send; a larger one fails its transaction */
  maxBlobUpload?: number;
}

/** 4 GiB: a blob upload past it fails its transaction (--max-blob-upload). */
export const DEFAULT_MAX_BLOB_UPLOAD = 4 * 1024 * 1024 * 1024;

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxMessageSize: 256 * 1024 * 1024,
  outputHighWater: 4 * 1024 * 1024,
  maxInFlight: 64,
  maxOutputBytes: 64 * 1024 * 1024,
};

/**
 * Events, as ZEO's Serving and Closed: 'serving' (the bound ListenAddress: the real port when 0 was asked
 * for) once listen() listens, and 'closed' once close() has dropped every client and closed the storages.
 */
export class StorageServer extends EventEmitter implements ConnectionServer {
  readonly storages = new Map<string, ServedStorage>();
  readonly readOnly: boolean;
  readonly msgpack: boolean;
  readonly limits: ConnectionLimits;
  readonly commitLogThreshold: number;
  readonly maxBlobUpload: number;
  readonly log: Logger;
  readonly protocolLog: Logger;
  /** runzeo's 'Connected ...' line comes from ZEO.asyncio.base */
  private readonly baseLog: Logger;
  private readonly connections = new Set<ServerConnection>();
  /** the clients' sockets, and how many were accepted: what activity() looks at */
  private readonly sockets = new Set<net.Socket>();
  private accepted = 0;
  /** node:tls, loaded by a listen() with TLS options (a server without TLS does without it) */
  private tls: typeof tls | null = null;
  /** sync calls of every connection still running (their replies not ready yet) */
  callsInFlight = 0;
  private listener: net.Server | null = null;
  /** where listen() listens (the real port when 0 was asked for); null before */
  listening: ListenAddress | null = null;
  private readonly reclaimer = new MemoryReclaimer();
  private unixPath: string | null = null;
  private closed: Promise<void> | null = null;

  private constructor(options: StorageServerOptions) {
    super();
    this.readOnly = options.readOnly ?? false;
    this.msgpack = options.msgpack ?? false;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.commitLogThreshold = options.commitLogThreshold ?? 16 * 1024 * 1024;
    this.maxBlobUpload = options.maxBlobUpload ?? DEFAULT_MAX_BLOB_UPLOAD;
    this.log = options.log.child('ZEO.StorageServer');
    this.protocolLog = options.log.child('ZEO.asyncio.server');
    this.baseLog = options.log.child('ZEO.asyncio.base');
    for (const s of options.storages) {
      this.storages.set(
        s.name,
        new ServedStorage(s.name, s.storage, {
          log: this.log,
          invalidationQueueSize: options.invalidationQueueSize ?? 100,
          invalidationAge: options.invalidationAge ?? null,
          transactionTimeout: options.transactionTimeout ?? null,
        }),
      );
      // a commit's flush may block the event loop only when the tpc_finish calls it covers are all there is to do
      if ('mayFlushInline' in s.storage)
        s.storage.mayFlushInline = (commits) => this.callsInFlight <= commits;
    }
  }

  static async create(options: StorageServerOptions): Promise<StorageServer> {
    const server = new StorageServer(options);
    for (const s of server.storages.values()) await s.init();
    const desc = [...server.storages.values()]
      .map((s) => `${s.name}:${s.storage.isReadOnly() ? 'RO' : 'RW'}:${s.storage.getName()}`)
      .join(', ');
    server.log.info(`StorageServer created ${server.readOnly ? 'RO' : 'RW'} with storages: ${desc}`);
    return server;
  }

  /** Starts listening; resolves with the bound address (the real port when 0 was asked for). */
  async listen(address: ListenAddress, tlsOptions: tls.TlsOptions | null = null): Promise<ListenAddress> {
    const onSocket = (socket: net.Socket): void => this.accept(socket);
    if (tlsOptions) this.tls ??= (await import('node:tls')).default;
    const server: net.Server = tlsOptions
      ? this.tls!.createServer(tlsOptions, onSocket)
      : net.createServer(onSocket);
    server.maxConnections = 100_000;
    if (tlsOptions) {
      server.on('tlsClientError', (e: Error, socket: net.Socket) => this.tlsRefused(e, socket));
    }
    if (address.kind === 'unix') {
      // a stale socket file from an earlier run is removed first, but never a live server's
      if (await canConnect(address)) throw addressInUse(address);
      // (absent, most often; a file that cannot go shows as listen's EADDRINUSE)
      await unlink(address.path).catch(() => {});
      this.unixPath = address.path;
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (address.kind === 'unix') server.listen(address.path, () => resolve());
      else
        server.listen({ host: address.host || undefined, port: address.port, exclusive: true }, () =>
          resolve(),
        );
    });
    server.on('error', (e) => this.log.error(`listener error: ${e.message}`));
    this.listener = server;
    let bound: ListenAddress;
    if (address.kind === 'unix') {
      // (best effort: the socket serves this user whatever its mode)
      await chmod(address.path, 0o777).catch(() => {});
      bound = address;
      this.protocolLog.info(`listening on ${address.path}`);
    } else {
      const a = server.address() as net.AddressInfo;
      bound = { kind: 'tcp', host: address.host, port: a.port };
      this.protocolLog.info(`listening on ('${a.address}', ${a.port})`);
    }
    this.listening = bound;
    this.emit('serving', bound);
    return bound;
  }

  private readonly refusedAt = new Map<string, number>();

  /**
   * A refused TLS handshake: one warning per client address and reason a second. A refused Python client reconnects
   * at once, hundreds of times a second; runzeo logs none of them, we log the first so it can be found.
   */
  private tlsRefused(e: Error, socket: net.Socket): void {
    const who = socket.remoteAddress ?? this.unixPath ?? '';
    const now = Date.now();
    const reason = e.message.trim();
    let subject = '';
    try {
      const cert =
        this.tls && socket instanceof this.tls.TLSSocket ? socket.getPeerX509Certificate() : undefined;
      if (cert) subject = ` (certificate ${cert.subject.replace(/\n/g, ', ')})`;
    } catch {
      // no certificate to name
    }
    const key = `${who} ${subject} ${reason}`;
    const last = this.refusedAt.get(key);
    const message = `TLS handshake from ${who}${subject} refused: ${reason}`;
    if (last !== undefined && now - last < 1000) {
      this.protocolLog.debug(message);
      return;
    }
    if (this.refusedAt.size > 10_000) this.refusedAt.clear();
    this.refusedAt.set(key, now);
    this.protocolLog.warn(message);
  }

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (this.tls && socket instanceof this.tls.TLSSocket) {
      const problem = strictX509Problem(socket, 'client');
      if (problem) {
        this.tlsRefused(new Error(problem), socket);
        socket.destroy();
        return;
      }
    }
    const label =
      socket.remoteAddress !== undefined
        ? `${socket.remoteAddress}:${socket.remotePort}`
        : (this.unixPath ?? '');
    // runzeo's line, with the address repr'd as Python's (host, port) tuple or a unix socket's path
    const addr =
      socket.remoteAddress !== undefined
        ? `(${pyStrRepr(socket.remoteAddress)}, ${socket.remotePort})`
        : pyStrRepr(this.unixPath ?? '');
    this.baseLog.info(`Connected ZEO.asyncio.server.ServerProtocol(${addr})`);
    const conn = new ServerConnection(socket, this, label);
    this.connections.add(conn);
    this.accepted++;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /**
   * A number that changes whenever a client connects or sends anything (bytes read over the live sockets,
   * plus the connections accepted): the warm-up runs only while it stays the same.
   */
  activity(): number {
    let n = this.accepted;
    for (const s of this.sockets) n += s.bytesRead;
    return n;
  }

  /** loadBefore calls answered, over every storage */
  servedLoads(): number {
    let n = 0;
    for (const s of this.storages.values()) n += s.stats.loads;
    return n;
  }

  connectionClosed(conn: ServerConnection): void {
    this.connections.delete(conn);
  }

  memoryBurst(): void {
    this.reclaimer.burst();
  }

  /** the connected clients, for a read-only look (the dashboard) */
  clientConnections(): Iterable<ServerConnection> {
    return this.connections.values();
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  statusAll(): PyDict {
    const out = new Map<PickleValue, PickleValue>();
    for (const [name, s] of this.storages) out.set(name, s.status());
    return out;
  }

  /**
   * Stops serving: no new connections, lets a commit that is finishing complete, drops every client (their
   * transactions are aborted), and closes the storages (FileStorage writes its index).
   */
  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    const listener = this.listener;
    // the listener's close callback waits for every connection to end, so it is awaited after they are gone
    const stopped = listener
      ? new Promise<void>((resolve) => listener.close(() => resolve()))
      : Promise.resolve();
    const conns = [...this.connections];
    // waits for them to settle; their errors go to the clients that made the calls
    await Promise.all(conns.flatMap((c) => [...c.critical].map((p) => p.catch(() => {}))));
    for (const c of conns) c.destroy();
    // each closed connection aborts its session's transaction
    while (this.connections.size > 0) await new Promise((r) => setTimeout(r, 5));
    await stopped;
    for (const s of this.storages.values()) {
      if (s.packing) await s.packing;
      this.log.info(`closing storage '${s.name}'`);
      await s.storage.close();
    }
    // (a socket file left behind is removed by the next start)
    if (this.unixPath) await unlink(this.unixPath).catch(() => {});
    this.reclaimer.stop();
    this.emit('closed');
  }
}

/** Whether something accepts connections at the address (runzeo's check_socket). */
export function canConnect(address: ListenAddress): Promise<boolean> {
  if (address.kind === 'tcp' && address.port === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket =
      address.kind === 'unix'
        ? net.connect(address.path)
        : net.connect(address.port, address.host || '127.0.0.1');
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(2000, () => done(false));
  });
}

export function addressInUse(address: ListenAddress): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`address ${describeAddress(address)} already in use`);
  e.code = 'EADDRINUSE';
  return e;
}

/** As runzeo prints addresses: a path, or Python's repr of (host, port). */
export function describeAddress(address: ListenAddress): string {
  return address.kind === 'unix' ? `'${address.path}'` : `('${address.host}', ${address.port})`;
}
