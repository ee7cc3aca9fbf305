// The HTTP listener's routes (metrics, dashboard, object browser), kept apart from the listener itself so each
// part registers its own: the listener authenticates, refuses every method but GET and HEAD, and then asks
// dispatch() for the first route whose path matches.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { StorageServer } from '../server.js';

/** What a part of the HTTP listener is given to build its routes: the running server, read-only. */
export interface HttpContext {
  server: StorageServer;
  /** the configuration the server was started with (null when a test builds a server directly) */
  config: ServerConfig | null;
  log: Logger;
}

export interface HttpRoute {
  /** '/metrics' matches only itself; with prefix, '/api/objects/' matches everything below it too */
  path: string;
  prefix?: boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL): void | Promise<void>;
  /** what the route holds (a worker thread) released when the listener closes */
  close?(): Promise<void>;
}

/** An error a route throws to answer with this status and message (anything else is a 500). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

function matches(route: HttpRoute, pathname: string): boolean {
  return route.prefix ? pathname.startsWith(route.path) : pathname === route.path;
}

/**
 * The request's URL. Its target is a path even when it starts with '//' (resolved against a base, '//metrics'
 * would name a host 'metrics'); throws on a target that is no URL.
 */
export function requestUrl(req: IncomingMessage): URL {
  const target = req.url ?? '/';
  return new URL(target.startsWith('/') ? `http://localhost${target}` : target);
}

/**
 * Answers the request with the first matching route; 404 when none matches. A route's HttpError becomes its
 * status with a JSON body {error}; any other failure a 500 whose detail goes to `onError`, not to the client.
 */
export async function dispatch(
  routes: readonly HttpRoute[],
  req: IncomingMessage,
  res: ServerResponse,
  onError: (e: unknown, url: URL) => void,
): Promise<void> {
  let url: URL;
  try {
    url = requestUrl(req);
  } catch {
    sendJson(res, 400, { error: 'bad request URL' });
    return;
  }
  const route = routes.find((r) => matches(r, url.pathname));
  try {
    if (!route) throw new HttpError(404, `no such page: ${url.pathname}`);
    await route.handle(req, res, url);
  } catch (e) {
    const status = e instanceof HttpError ? e.status : 500;
    if (status === 500) onError(e, url);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, status, { error: e instanceof HttpError ? e.message : 'internal error' });
  }
}

/** A JSON reply; nothing is cached (every answer is about the server now). */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  const body = Buffer.from(text);
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': body.length,
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json; charset=utf-8',
};

/**
 * Files of `dir` under the URL prefix `urlPath` (ending in '/'): only names with a known extension, never
 * outside `dir` (no '..', no dot files), streamed.
 */
export function staticFiles(urlPath: string, dir: string): HttpRoute {
  const root = path.resolve(dir);
  return {
    path: urlPath,
    prefix: true,
    async handle(_req, res, url) {
      let rel: string;
      try {
        rel = decodeURIComponent(url.pathname.slice(urlPath.length));
      } catch {
        throw new HttpError(404, `no such file: ${url.pathname}`); // (a malformed %-escape names no file)
      }
      const type = CONTENT_TYPES[path.extname(rel)];
      const file = path.resolve(root, rel);
      if (!type || rel.split('/').some((p) => p.startsWith('.')) || !file.startsWith(root + path.sep)) {
        throw new HttpError(404, `no such file: ${url.pathname}`);
      }
      const st = await stat(file).catch(() => null);
      if (!st?.isFile()) throw new HttpError(404, `no such file: ${url.pathname}`);
      res.writeHead(200, { 'content-type': type, 'content-length': st.size, 'cache-control': 'no-cache' });
      if (res.req.method === 'HEAD') {
        res.end();
        return;
      }
      await new Promise<void>((resolve, reject) => {
        createReadStream(file).on('error', reject).pipe(res).on('finish', resolve).on('error', reject);
      });
    },
  };
}

/** The web UI's files: its pages and styles (web/static) and its compiled scripts (dist/web/web/src: web/tsconfig.json's rootDir is the repository, for the shared API types). */
export const WEB_STATIC_DIR = new URL('../../../../web/static/', import.meta.url);
export const WEB_SCRIPT_DIR = new URL('../../../web/web/src/', import.meta.url);
