// zeo-ts/client: the Node client of a ZEO server. So far the connection layer (the wire protocol's client side).
export {
  ClientConnection,
  type CallOptions,
  type ClientConnectionOptions,
  type ServerAddress,
  type ServerCallHandler,
} from './connection.js';
export { CallTimeoutError, ClientDisconnected } from './errors.js';
export {
  ClientCache,
  ClientCacheError,
  ENTRY_OVERHEAD,
  type CacheStats,
  type ClientCacheOptions,
} from './cache.js';
export { CacheFileError } from './cache-file.js';
