// A storage named on a command line: a Data.fs path (or a file: URL) opens our FileStorage; a zeo:// URL
// (zodburi's form, zeo://host:port?storage=1&blob_dir=... or zeo:///path/to/socket; see config.ts's
// parseZeoUrl) connects a ClientStorage to that server; a postgresql:// (postgres://) URL opens a
// PostgreSQLStorage on that database (libpq's URI, with RelStorage's option names in its query: see
// postgresqlUrlOptions).

import { fileURLToPath } from 'node:url';
import { FileStorage } from '../storage/filestorage/file-storage.js';
import type { Storage } from '../storage/interfaces.js';
import type { TlsSection } from '../transport/tls.js';
import { parseZeoUrl } from './config.js';

export interface OpenSpecOptions {
  /** open for reading only (a source) */
  readOnly?: boolean;
  /** a Data.fs's blob directory (none: no blobs); a zeo:// storage's blob cache unless its URL names one */
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
  return spec.startsWith('zeo://');
}

/** True for a postgresql:// or postgres:// URL. */
export function isPostgresqlUrl(spec: string): boolean {
  return spec.startsWith('postgresql://') || spec.startsWith('postgres://');
}

/** A Data.fs path: `spec` itself, or a file: URL's (file:///abs/Data.fs percent-decoded; file:rel/Data.fs). */
function dataFsPath(spec: string): string {
  if (spec.startsWith('file://')) return fileURLToPath(spec);
  if (spec.startsWith('file:')) return spec.slice('file:'.length);
  return spec;
}

/** Opens the storage `spec` names (see the file's comment); the caller closes it. */
export async function openStorage(spec: string, options: OpenSpecOptions = {}): Promise<Storage> {
  if (isZeoUrl(spec)) {
    const url = parseZeoUrl(spec);
    // (the client's modules load only for a zeo:// URL: ~25 ms of a Data.fs copy's start otherwise)
    const { ClientStorage } = await import('./client-storage.js');
    return ClientStorage.open({
      ...url,
      // a source is read: whatever the URL says, register read-only
      readOnly: options.readOnly === true ? true : (url.readOnly ?? false),
      waitTimeout: options.waitTimeout ?? url.waitTimeout ?? 30_000,
      blobDir: url.blobDir ?? options.blobDir ?? null,
      ...(options.ssl ? { ssl: options.ssl } : {}),
    });
  }
  if (isPostgresqlUrl(spec)) {
    // node-postgres and the engine load only for a postgresql:// URL
    const [{ postgresqlUrlOptions }, { PostgreSQLStorage }] = await Promise.all([
      import('../storage/postgresql/options.js'),
      import('../storage/postgresql/postgresql-storage.js'),
    ]);
    const pgOptions = postgresqlUrlOptions(spec);
    return PostgreSQLStorage.open({
      ...pgOptions,
      // a source is read: whatever the URL says, open it read-only
      readOnly: options.readOnly === true ? true : (pgOptions.readOnly ?? false),
      blobDir: pgOptions.blobDir ?? options.blobDir ?? null,
    });
  }
  return FileStorage.open(dataFsPath(spec), {
    readOnly: options.readOnly ?? false,
    blobDir: options.blobDir ?? null,
    onProgress: options.onProgress,
  });
}
