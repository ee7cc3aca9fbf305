// The HTTP listener beside the ZEO port: metrics, the dashboard and the object browser (their routes come from
// app.ts). Every request is authenticated before anything else (auth.ts), only GET and HEAD are served, no
// request body is ever read, and the work a client can cause is bounded (header size, timeouts, connections).

import http from 'node:http';
import https from 'node:https';
import { unlink } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import type tls from 'node:tls';
import type { ListenAddress } from '../config.js';
import type { Logger } from '../log.js';
import { addressInUse, canConnect } from '../server.js';
import { Authenticator } from './auth.js';
import { dispatch, requestUrl, type HttpRoute } from './routes.js';

export interface HttpLimits {
  /** the largest request head, in bytes (a larger one gets 431) */
  maxHeaderSize: number;
  /** ms to receive a request's head */
  headersTimeout: number;
  /** ms to receive a whole request */
  requestTimeout: number;
  /** ms an idle keep-alive connection stays open */
  keepAliveTimeout: number;
  /** requests one connection may make before it is closed */
  maxRequestsPerSocket: number;
  /** connections open at once; more are dropped */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxHeaderSize: 16 * 1024,
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  maxRequestsPerSocket: 1000,
  maxConnections: 64,
};

export interface HttpListenerOptions {
  /** TCP (port 0: any free one) or a unix socket path */
  address: ListenAddress;
  routes: readonly HttpRoute[];
  log: Logger;
  /** the bearer token; null: TLS client certificates are the only credential (needs `tls`) */
  token: string | null;
  /** HTTPS with these options (serverTlsOptions of <ssl>): client certificates are then checked per request */
  tls?: tls.TlsOptions | null;
  /** whether a client certificate the TLS CA signed is a credential (default: with `tls`; not for <ssl>'s DYNAMIC) */
  certificates?: boolean;
  limits?: Partial<HttpLimits>;
}

/** Sent with every answer: nothing from elsewhere, no sniffing, no framing, no referrer. */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

const REFUSAL_LOG_INTERVAL_MS = 60_000;

export class HttpListener {
  /** the bound address (the real port when 0 was asked for) */
  readonly address: ListenAddress;
  /** http(s)://HOST:PORT (a unix socket: http+unix:PATH), without a trailing slash */
  readonly url: string;
  private readonly auth: Authenticator;
  private readonly sockets = new Set<Socket>();
  private readonly refusedAt = new Map<string, number>();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly server: http.Server,
    private readonly options: HttpListenerOptions,
    address: ListenAddress,
    cookieName: string,
  ) {
    this.address = address;
    const scheme = options.tls ? 'https' : 'http';
    this.url =
      address.kind === 'unix'
        ? `${scheme}+unix:${address.path}`
        : `${scheme}://${urlHost(address.host)}:${address.port}`;
    this.auth = new Authenticator({
      token: options.token,
      certificates: !!options.tls && (options.certificates ?? true),
      cookieName,
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('error', (e) => options.log.error(`HTTP listener error: ${e.message}`, e));
  }

  /** Listens at `options.address`; refuses a live server's address, removes a stale unix socket file. */
  static async start(options: HttpListenerOptions): Promise<HttpListener> {
    const limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
    const serverOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeout,
      requestTimeout: limits.requestTimeout,
      keepAliveTimeout: limits.keepAliveTimeout,
      // how often the head and request timeouts are checked (node's default, 30 s, would let a slow head stay that long)
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeout),
    };
    // the handshake lets any certificate through; each request is then refused (403) or served, so a
    // browser without one is told why instead of seeing a failed handshake
    const server: http.Server = options.tls
      ? https.createServer({ ...options.tls, ...serverOptions, requestCert: true, rejectUnauthorized: false })
      : http.createServer(serverOptions);
    server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
    server.maxConnections = limits.maxConnections;
    const address = options.address;
    if (address.kind === 'unix') {
      if (await canConnect(address)) throw addressInUse(address);
      await unlink(address.path).catch(() => {});
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        resolve();
      };
      if (address.kind === 'unix') server.listen(address.path, done);
      else server.listen({ host: address.host || undefined, port: address.port, exclusive: true }, done);
    });
    const bound: ListenAddress =
      address.kind === 'unix'
        ? address
        : { kind: 'tcp', host: address.host, port: (server.address() as AddressInfo).port };
    // browsers share cookies between the ports of a host: each listener its own cookie
    const cookieName = bound.kind === 'tcp' ? `zeo_session_${bound.port}` : 'zeo_session';
    return new HttpListener(server, options, bound, cookieName);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    // a request body is never read: the connection closes after the answer instead
    const hasBody =
      req.headers['transfer-encoding'] !== undefined ||
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    if (hasBody) res.setHeader('connection', 'close');
    let url: URL;
    try {
      url = requestUrl(req);
    } catch {
      plain(res, 400, 'bad request URL');
      return;
    }
    const verdict = this.auth.check(req, url);
    if (!verdict.ok) {
      this.logRefusal(req, url, `${verdict.status} ${verdict.why}`);
      const headers: Record<string, string> =
        verdict.status === 401 ? { 'www-authenticate': 'Bearer realm="zeo"' } : {};
      plain(res, verdict.status, verdict.status === 401 ? 'Unauthorized' : 'Forbidden', headers);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('connection', 'close');
      plain(res, 405, 'Method Not Allowed', { allow: 'GET, HEAD' });
      return;
    }
    if (hasBody) {
      plain(res, 400, 'a GET or HEAD request has no body');
      return;
    }
    if (verdict.via === 'query') {
      // the token leaves the address bar (and the history); the cookie carries the session from now on
      url.searchParams.delete('token');
      const location = (url.pathname + url.search).replace(/^\/+/, '/');
      res.setHeader('set-cookie', this.auth.sessionCookie(!!this.options.tls));
      res.setHeader('location', location);
      plain(res, 303, 'See Other');
      return;
    }
    void dispatch(this.options.routes, req, res, (e, u) =>
      this.options.log.error(`HTTP ${req.method} ${u.pathname} failed`, e),
    );
  }

  /** One info line per client address a minute (then debug): a scanner cannot flood the log. Never the token. */
  private logRefusal(req: http.IncomingMessage, url: URL, why: string): void {
    const who = req.socket.remoteAddress ?? 'unix socket';
    const path = url.pathname.length > 200 ? `${url.pathname.slice(0, 200)}...` : url.pathname;
    const message = `HTTP ${req.method} ${path} from ${who} refused: ${why}`;
    const now = Date.now();
    const last = this.refusedAt.get(who);
    if (last !== undefined && now - last < REFUSAL_LOG_INTERVAL_MS) {
      this.options.log.debug(message);
      return;
    }
    if (this.refusedAt.size > 10_000) this.refusedAt.clear();
    this.refusedAt.set(who, now);
    this.options.log.info(message);
  }

  /** the connections open now */
  get connections(): number {
    return this.sockets.size;
  }

  /** Stops listening and closes every connection, keep-alive ones too. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const s of this.sockets) s.destroy();
    }).then(async () => {
      for (const r of this.options.routes) if (r.close) await r.close();
    });
    return this.closing;
  }
}

/** A short plain-text answer (its status line said again) and nothing else. */
function plain(
  res: http.ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  const body = Buffer.from(`${status} ${text}\n`);
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function urlHost(host: string): string {
  if (host === '' || host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
