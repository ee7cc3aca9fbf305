// The dashboard's part of the HTTP listener: its page (/), the web UI's files (/ui/ from web/static, /ui/js/
// from the compiled dist/web), and the JSON it reads (/api/server, /api/clients, /api/locks,
// /api/transactions): read-only snapshots from ../introspect.ts, each bounded.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import {
  clientsSnapshot,
  locksSnapshot,
  MAX_TRANSACTIONS,
  recentTransactions,
  serverSnapshot,
} from '../introspect.js';
import {
  HttpError,
  sendJson,
  staticFiles,
  WEB_SCRIPT_DIR,
  WEB_STATIC_DIR,
  type HttpContext,
  type HttpRoute,
} from './routes.js';

let version: Promise<string> | null = null;

/** zeo-ts's version, from package.json (read once, without blocking). */
function packageVersion(): Promise<string> {
  version ??= readFile(new URL('../../../../package.json', import.meta.url), 'utf8').then(
    (t) => (JSON.parse(t) as { version: string }).version,
    () => 'unknown',
  );
  return version;
}

/** ?limit=N: a whole number from 1 to MAX_TRANSACTIONS (default 20). */
export function parseLimit(value: string | null): number {
  if (value === null || value === '') return 20;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_TRANSACTIONS) {
    throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_TRANSACTIONS}`);
  }
  return Number(value);
}

export function dashboardRoutes(ctx: HttpContext): HttpRoute[] {
  const startedAt = Date.now();
  const pages = staticFiles('/ui/', fileURLToPath(WEB_STATIC_DIR));
  const scripts = staticFiles('/ui/js/', fileURLToPath(WEB_SCRIPT_DIR));
  const { server, config } = ctx;
  return [
    {
      path: '/',
      handle: (req, res, url) => pages.handle(req, res, new URL('/ui/index.html', url)),
    },
    scripts,
    pages,
    {
      path: '/api/server',
      handle: async (_req, res) => {
        sendJson(res, 200, serverSnapshot(server, config, { version: await packageVersion(), startedAt }));
      },
    },
    {
      path: '/api/clients',
      handle: (_req, res) => sendJson(res, 200, clientsSnapshot(server)),
    },
    {
      path: '/api/locks',
      handle: (_req, res) => sendJson(res, 200, { storages: locksSnapshot(server) }),
    },
    {
      path: '/api/transactions',
      handle: async (_req, res, url) => {
        const limit = parseLimit(url.searchParams.get('limit'));
        const name = url.searchParams.get('storage') ?? [...server.storages.keys()][0];
        const served = name === undefined ? undefined : server.storages.get(name);
        if (!served) throw new HttpError(404, `no such storage: ${name ?? ''}`);
        sendJson(res, 200, { storage: served.name, transactions: await recentTransactions(served, limit) });
      },
    },
  ];
}
