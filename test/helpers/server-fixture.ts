// A real zeo-ts server for tests: in this process, on 127.0.0.1 with port 0 (or a unix socket in a temp
// dir), serving FileStorages in a temp dir unless told otherwise; stopped by the test.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsOptions } from 'node:tls';
import { fileStorageDefaults, type StorageConfig } from '../../src/server/config.js';
import { randomToken } from '../../src/server/http/auth.js';
import { startHttpListener } from '../../src/server/http/app.js';
import type { HttpListener } from '../../src/server/http/listener.js';
import { createLogger } from '../../src/server/log.js';
import { openStorages, type OpenedStorage } from '../../src/server/open-storages.js';
import { StorageServer, type StorageServerOptions } from '../../src/server/server.js';

/** the server's own options (read-only, msgpack, limits...), as StorageServer takes them */
type ServerSettings = Omit<StorageServerOptions, 'storages' | 'log'>;

export interface TestServerOptions extends ServerSettings {
  /** storage sections; default one FileStorage '1' at <dir>/Data.fs with blobs in <dir>/blobs */
  storages?: (dir: string) => StorageConfig[];
  /** storages opened by the test, served instead of `storages` (closed when the server stops) */
  opened?: OpenedStorage[];
  /** serve on a unix socket in the temp dir instead of TCP */
  unix?: boolean;
  /** a fixed TCP port (default 0: any free one) */
  port?: number;
  /** an existing directory to serve from (kept on stop) */
  dir?: string;
  /** serve TLS with these options (serverTlsOptions of an <ssl> section; the HTTP listener is then HTTPS) */
  tls?: TlsOptions;
  /** also start the HTTP listener (every route of httpRoutes) on 127.0.0.1, port 0; token default: a random one */
  http?: { token?: string };
}

/** The running HTTP listener of a test server. */
export interface TestHttp {
  /** 'http://127.0.0.1:PORT' (https with `tls`), no trailing slash */
  url: string;
  token: string;
  listener: HttpListener;
}

export interface TestServer {
  server: StorageServer;
  dir: string;
  /** for Python: a port number, or the unix socket path */
  address: { host: string; port: number } | { path: string };
  /** the address as Python's ClientStorage takes it, as Python source */
  pyAddress: string;
  /** every log line the server wrote */
  logs: string[];
  /** the HTTP listener, when asked for with `http` (stopped with the server) */
  http?: TestHttp;
  stop(): Promise<void>;
}

export function fileStorageConfig(
  dir: string,
  name = '1',
  extra: Partial<StorageConfig> = {},
): StorageConfig {
  return {
    ...fileStorageDefaults(name, join(dir, name === '1' ? 'Data.fs' : `${name}.fs`)),
    blobDir: join(dir, name === '1' ? 'blobs' : `${name}-blobs`),
    ...extra,
  } as StorageConfig;
}

export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'zeo-ts-server-')));
  const logs: string[] = [];
  const sink = {
    write(line: string | Uint8Array): boolean {
      logs.push(String(line));
      if (process.env.ZEO_TS_TEST_LOG === '1') process.stderr.write(line);
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  const logging = createLogger(
    {
      level: 'DEBUG',
      handlers: [
        {
          path: 'STDERR',
          format: '%(levelname)s %(name)s %(message)s',
          level: 'DEBUG',
          dateformat: '%Y-%m-%dT%H:%M:%S',
        },
      ],
    },
    { stderr: sink },
  );
  const storages =
    options.opened ??
    (await openStorages(
      (options.storages ?? ((d: string) => [fileStorageConfig(d)]))(dir),
      logging.root.child('ZEO.runzeo'),
    ));
  const {
    storages: _sections,
    opened: _opened,
    unix: _unix,
    port: _port,
    dir: _dir,
    tls,
    http: httpOptions,
    ...settings
  } = options;
  const server = await StorageServer.create({ ...settings, storages, log: logging.root });
  let bound;
  try {
    bound = await server.listen(
      options.unix
        ? { kind: 'unix', path: join(dir, 'zeo.sock') }
        : { kind: 'tcp', host: '127.0.0.1', port: options.port ?? 0 },
      tls ?? null,
    );
  } catch (e) {
    await server.close();
    await logging.close();
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }
  let http: TestHttp | undefined;
  if (httpOptions) {
    const token = httpOptions.token ?? randomToken();
    try {
      const listener = await startHttpListener(
        { server, config: null, log: logging.root },
        { address: { kind: 'tcp', host: '127.0.0.1', port: 0 }, tokenFile: null },
        { token, generated: false, certificates: !!tls },
        tls ?? null,
      );
      http = { url: listener.url, token, listener };
    } catch (e) {
      await server.close();
      await logging.close();
      if (ownDir) await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }
  const address = bound.kind === 'unix' ? { path: bound.path } : { host: '127.0.0.1', port: bound.port };
  const pyAddress = 'path' in address ? JSON.stringify(address.path) : `('127.0.0.1', ${address.port})`;
  return {
    server,
    dir,
    address,
    pyAddress,
    logs,
    http,
    async stop() {
      await http?.listener.close();
      await server.close();
      await logging.close();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}
