// The ad-hoc server (ZEO.server(), ZEO/_forker.py): a StorageServer started in this process for an application
// or a test, over a FileStorage (a path) or a MemoryStorage, on a port the OS chooses (or a unix socket); it
// answers with the address to give clients and a stop().
import type tls from 'node:tls';
import type { Storage } from '../storage/interfaces.js';
import { MemoryStorage } from '../storage/memory/memory-storage.js';
import { serverTlsOptions, type TlsSection } from '../transport/tls.js';
import { fileStorageDefaults, type ListenAddress } from './config.js';
import { createLogger, type Logger } from './log.js';
import { openStorages } from './open-storages.js';
import { StorageServer, type StorageServerOptions } from './server.js';

export interface AdhocServerOptions extends Omit<StorageServerOptions, 'storages' | 'log' | 'readOnly'> {
  /** a FileStorage to serve (created when absent); without it (and without `storage`), a new MemoryStorage */
  path?: string;
  /** 'memory': a new MemoryStorage (the default without `path`); or a Storage of the application's (closed by stop) */
  storage?: 'memory' | Storage;
  /** the FileStorage's blob directory */
  blobDir?: string | null;
  /** the storage's name for clients (ZEO's `storage` option); default '1' */
  name?: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0: one the OS chooses (the address returned says which) */
  port?: number;
  /** a unix socket path to listen on instead of TCP */
  unix?: string;
  /** a read-only server (and a read-only FileStorage) */
  readOnly?: boolean;
  /** serve TLS: an <ssl> section (certificate, key, authenticate: the CA clients' certificates are checked against), or Node's options */
  tls?: TlsSection | tls.TlsOptions | null;
  /** where the server logs (ZEO's logger names below it); default: nowhere */
  log?: Logger;
}

export interface AdhocServer {
  server: StorageServer;
  /** what a client connects to: { host, port } (the bound port) or { path } */
  address: { host: string; port: number } | { path: string };
  /** stops serving and closes the storage (idempotent) */
  stop(): Promise<void>;
}

function isTlsSection(t: TlsSection | tls.TlsOptions): t is TlsSection {
  return 'authenticate' in t || 'passwordFunction' in t;
}

/** Starts a server; resolves once it listens. The server emits 'serving' and 'closed' (StorageServer). */
export async function startServer(options: AdhocServerOptions = {}): Promise<AdhocServer> {
  const {
    path,
    storage,
    blobDir,
    name = '1',
    host = '127.0.0.1',
    port = 0,
    unix,
    readOnly = false,
    tls: tlsOption,
    log,
    ...settings
  } = options;
  if (path !== undefined && storage !== undefined) {
    throw new TypeError('startServer: give path (a FileStorage) or storage, not both');
  }
  if (blobDir && path === undefined) {
    throw new TypeError('startServer: blobDir is for a FileStorage (give path too)');
  }
  const tlsOptions = tlsOption ? (isTlsSection(tlsOption) ? serverTlsOptions(tlsOption) : tlsOption) : null;
  const quiet = log ? null : createLogger({ level: 'CRITICAL', handlers: [] });
  const root = log ?? quiet!.root;

  let served: Storage;
  if (path !== undefined) {
    const config = { ...fileStorageDefaults(name, path), blobDir: blobDir ?? null, readOnly };
    [{ storage: served }] = await openStorages([config], root.child('ZEO.runzeo'));
  } else if (storage === undefined || storage === 'memory') {
    served = new MemoryStorage({ readOnly });
  } else {
    served = storage;
  }

  let server: StorageServer;
  try {
    server = await StorageServer.create({
      ...settings,
      readOnly,
      storages: [{ name, storage: served }],
      log: root,
    });
  } catch (e) {
    await served.close().catch(() => {});
    throw e;
  }
  const listen: ListenAddress =
    unix !== undefined ? { kind: 'unix', path: unix } : { kind: 'tcp', host, port };
  let bound: ListenAddress;
  try {
    bound = await server.listen(listen, tlsOptions);
  } catch (e) {
    await server.close().catch(() => {});
    await quiet?.close();
    throw e;
  }
  return {
    server,
    address:
      bound.kind === 'unix' ? { path: bound.path } : { host: bound.host || '127.0.0.1', port: bound.port },
    async stop() {
      await server.close();
      await quiet?.close();
    },
  };
}
