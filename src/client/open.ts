// A storage named on a command line: a Data.fs path opens our FileStorage; a zeo:// URL (zodburi's form,
// zeo://host:port?storage=1 or zeo:///path/to/socket) connects a ClientStorage to that server.

import { FileStorage } from '../storage/filestorage/file-storage.js';
import type { Storage } from '../storage/interfaces.js';
import type { TlsSection } from '../transport/tls.js';
import { ClientStorage, type ClientStorageOptions } from './client-storage.js';

export interface OpenSpecOptions {
  /** open for reading only (a source) */
  readOnly?: boolean;
  /** a Data.fs's blob directory (none: no blobs) */
  blobDir?: string | null;
  /** a zeo:// server's TLS: client certificate and key, the CA that signs the server's certificate */
  ssl?: TlsSection | null;
  /** ms a zeo:// storage waits for its server before ClientDisconnected */
  waitTimeout?: number;
  /** a Data.fs's open-time scan: bytes scanned, bytes to scan */
  onProgress?: (done: number, total: number) => void;
}

/** True for a zeo:// URL, false for a path. */
export function isZeoUrl(spec: string): boolean {
  return /^zeo:\/\//i.test(spec);
}

/**
 * The ClientStorage options of a zeo:// URL: the server (host:port, or the socket path of zeo:///path) and
 * the storage name (?storage=, default 1).
 */
export function zeoUrlOptions(url: string): ClientStorageOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`not a zeo:// URL: ${url}`);
  }
  const storage = u.searchParams.get('storage') ?? '1';
  if (u.host === '') {
    const path = decodeURIComponent(u.pathname);
    if (path === '' || path === '/')
      throw new Error(`${url}: no server address (zeo://host:port or zeo:///socket)`);
    return { server: { path }, storage };
  }
  const port = Number(u.port);
  if (u.port === '' || !Number.isInteger(port)) throw new Error(`${url}: no port (zeo://host:port)`);
  // (an IPv6 literal comes bracketed)
  return { server: { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port }, storage };
}

/** Opens the storage `spec` names (see the file's comment); the caller closes it. */
export async function openStorage(spec: string, options: OpenSpecOptions = {}): Promise<Storage> {
  if (isZeoUrl(spec)) {
    return ClientStorage.open({
      ...zeoUrlOptions(spec),
      readOnly: options.readOnly ?? false,
      waitTimeout: options.waitTimeout ?? 30_000,
      ...(options.ssl ? { ssl: options.ssl } : {}),
    });
  }
  return FileStorage.open(spec, {
    readOnly: options.readOnly ?? false,
    blobDir: options.blobDir ?? null,
    onProgress: options.onProgress,
  });
}
