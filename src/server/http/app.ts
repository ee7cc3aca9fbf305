// The HTTP listener put together: every part's routes (metrics, dashboard, object browser), and how `zeo serve`
// (and the test fixture) starts it: the token from http-token-file, or TLS client certificates, or a random token
// logged once as the dashboard's URL.

import type tls from 'node:tls';
import type { HttpConfig } from '../config.js';
import { describeAddress } from '../server.js';
import { randomToken, readTokenFile } from './auth.js';
import { dashboardRoutes } from './dashboard-routes.js';
import { HttpListener } from './listener.js';
import { browseRoutes } from './browse-routes.js';
import type { HttpContext, HttpRoute } from './routes.js';

/** Every route of the listener, first match wins. Each part adds its own line here. */
export function httpRoutes(ctx: HttpContext): HttpRoute[] {
  return [...dashboardRoutes(ctx), ...browseRoutes(ctx)];
}

/** The listener's credential: the token file's token, none (TLS client certificates only), or a random one. */
export interface HttpCredentials {
  token: string | null;
  /** made up at start: the URL with it is logged, the only way anyone learns it */
  generated: boolean;
}

/**
 * Reads the token before the server starts (a bad http-token-file stops it before any storage opens). With TLS
 * client certificates (an <ssl> CA) and no token file, certificates are the only credential.
 */
export async function httpCredentials(
  http: HttpConfig,
  options: { clientCertificates: boolean; source?: string },
): Promise<HttpCredentials> {
  if (http.tokenFile !== null) {
    try {
      return { token: await readTokenFile(http.tokenFile), generated: false };
    } catch (e) {
      const where = options.source ? ` (${options.source})` : '';
      throw new Error(`${(e as Error).message}${where}`, { cause: e });
    }
  }
  if (options.clientCertificates) return { token: null, generated: false };
  return { token: randomToken(), generated: true };
}

/**
 * Starts the listener over `httpRoutes(ctx)` and logs where it is; a generated token is logged once, in the
 * dashboard's URL (as Jupyter does).
 */
export async function startHttpListener(
  ctx: HttpContext,
  http: HttpConfig,
  credentials: HttpCredentials,
  tlsOptions: tls.TlsOptions | null,
): Promise<HttpListener> {
  const log = ctx.log.child('ZEO.http');
  let listener: HttpListener;
  try {
    listener = await HttpListener.start({
      address: http.address,
      routes: httpRoutes(ctx),
      log,
      token: credentials.token,
      tls: tlsOptions,
    });
  } catch (e) {
    // (without the code: the ZEO port's EADDRINUSE message must not be given for it)
    throw new Error(
      `the HTTP listener cannot listen on ${describeAddress(http.address)}: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  const how =
    credentials.token === null
      ? 'TLS client certificates'
      : tlsOptions
        ? 'a bearer token or TLS client certificates'
        : 'a bearer token';
  log.info(`HTTP listener on ${listener.url} (${how})`);
  if (credentials.generated && listener.address.kind === 'tcp') {
    log.info(`the dashboard, with its access token: ${listener.url}/?token=${credentials.token}`);
  } else if (credentials.generated) {
    log.info(`the HTTP listener's access token (Authorization: Bearer): ${credentials.token}`);
  }
  return listener;
}
