// One HTTP(S) request to a test server's HTTP listener, as raw as a test needs: any method, any headers, a unix
// socket, TLS client certificates; the answer's status, headers and body.

import http from 'node:http';
import https from 'node:https';

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  /** a bearer token, sent as Authorization: Bearer TOKEN */
  token?: string;
  /** over this unix socket (the URL's path and query are used) */
  socketPath?: string;
  /** https: the client certificate, key and the server's CA */
  tls?: { cert?: Buffer; key?: Buffer; ca: Buffer };
  /** ms before the request fails (default 10 s) */
  timeout?: number;
  /** written after the head (with a content-length the test sets, or not at all) */
  body?: string;
  /** answer once the head arrives (body ''), closing the connection: for streams that never end */
  headOnly?: boolean;
}

export function request(url: string, options: RequestOptions = {}): Promise<HttpAnswer> {
  const u = new URL(url);
  const headers = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const base = {
    method: options.method ?? 'GET',
    headers,
    path: u.pathname + u.search,
    agent: false as const,
    ...(options.socketPath ? { socketPath: options.socketPath } : { host: u.hostname, port: u.port }),
  };
  return new Promise((resolve, reject) => {
    const req =
      u.protocol === 'https:'
        ? https.request({ ...base, ...options.tls, servername: 'localhost' })
        : http.request(base);
    req.on('response', (res) => {
      if (options.headOnly) {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(options.timeout ?? 10_000, () => req.destroy(new Error(`no answer from ${url} in time`)));
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}
