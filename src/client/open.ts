// A storage named on a command line: a Data.fs path opens our FileStorage; a zeo:// URL (zodburi's form,
// zeo://host:port?storage=1 or zeo:///path/to/socket) connects a ClientStorage to that server.

import { FileStorage } from '../storage/filestorage/file-storage.js';
import type { Storage } from '../storage/interfaces.js';
import type { TlsSection } from '../transport/tls.js';

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

/** Opens the storage `spec` names (see the file's comment); the caller closes it. */
export async function openStorage(spec: string, options: OpenSpecOptions = {}): Promise<Storage> {
  if (isZeoUrl(spec)) throw new Error(`${spec}: zeo:// storages need the ClientStorage (not merged yet)`);
  return FileStorage.open(spec, {
    readOnly: options.readOnly ?? false,
    blobDir: options.blobDir ?? null,
    onProgress: options.onProgress,
  });
}
