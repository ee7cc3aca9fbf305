// The HTTP listener put together: every part's routes (metrics, dashboard, object browser), and how `zeo serve`
// (and the test fixture) starts it: the token from http-token-file, or TLS client certificates, or a random token
// logged once as the dashboard's URL.

import { stat } from 'node:fs/promises';
import type tls from 'node:tls';
import type { HttpConfig } from '../config.js';
import { describeAddress } from '../server.js';
import { randomToken, readTokenFile } from './auth.js';
import { browseRoutes } from './browse-routes.js';
import { dashboardRoutes } from './dashboard-routes.js';
import { HttpListener } from './listener.js';
import { metricsRoutes } from './metrics-routes.js';
import type { HttpContext, HttpRoute } from './routes.js';

/** Every route of the listener, first match wins. Each part adds its own line here. */
export function httpRoutes(ctx: HttpContext): HttpRoute[] {
  return [...metricsRoutes(ctx), ...dashboardRoutes(ctx), ...browseRoutes(ctx)];
}

/** The listener's credential: the token file's token, none (TLS client certificates only), or a random one. */
export interface HttpCredentials {
  token: string | null;
  /** made up at start: the URL with it is logged, the only way anyone learns it */
  generated: boolean;
  /** whether TLS client certificates (signed by the <ssl> CA) are a credential too */
  certificates: boolean;
  /** said in the log at start (a token file others can read) */
  warning?: string;
}

/**
 * Reads the token before the server starts (a bad http-token-file stops it before any storage opens). With TLS
 * client certificates (an <ssl> CA, not DYNAMIC) and no token file, certificates are the only credential.
 */
export async function httpCredentials(
  http: HttpConfig,
  options: { clientCertificates: boolean; source?: string },
): Promise<HttpCredentials> {
  if (http.tokenFile !== null) {
    try {
      const token = await readTokenFile(http.tokenFile);
      // (a token others can read is everyone's)
      const mode = (await stat(http.tokenFile)).mode;
      if (mode & 0o077) {
        const warning = `http-token-file ${http.tokenFile} can be read by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 it`;
        return { token, generated: false, certificates: options.clientCertificates, warning };
      }
      return { token, generated: false, certificates: options.clientCertificates };
    } catch (e) {
      const where = options.source ? ` (${options.source})` : '';
      throw new Error(`${(e as Error).message}${where}`, { cause: e });
    }
  }
  if (options.clientCertificates) return { token: null, generated: false, certificates: true };
  return { token: randomToken(), generated: true, certificates: false };
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
      certificates: credentials.certificates,
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
      : tlsOptions && credentials.certificates
        ? 'a bearer token or TLS client certificates'
        : 'a bearer token';
  log.info(`HTTP listener on ${listener.url} (${how})`);
  if (credentials.warning) log.warn(credentials.warning);
  if (credentials.generated && listener.address.kind === 'tcp') {
    log.info(`the dashboard, with its access token: ${listener.url}/?token=${credentials.token}`);
  } else if (credentials.generated) {
    log.info(`the HTTP listener's access token (Authorization: Bearer): ${credentials.token}`);
  }
  return listener;
}
