// zeo-ts/server: the storage server for applications and tests (ZEO.server()), and the server itself.
export { startServer, type AdhocServer, type AdhocServerOptions } from './adhoc.js';
export { StorageServer, type StorageServerOptions } from './server.js';
export type { ListenAddress } from './config.js';
export type { TlsSection } from '../transport/tls.js';
