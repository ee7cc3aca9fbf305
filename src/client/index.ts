// zeo-ts/client: the Node client of a ZEO server: ClientStorage (our storage contract over the network) and
// the connection layer under it.
export {
  ClientStorage,
  type CacheStats,
  type ClientCacheLike,
  type ClientStorageOptions,
  type ResolverRegistry,
} from './client-storage.js';
export {
  ClientConnection,
  type CallOptions,
  type ClientConnectionOptions,
  type ServerAddress,
  type ServerCallHandler,
} from './connection.js';
export { CallTimeoutError, ClientDisconnected } from './errors.js';
export { type Invalidation } from './invalidations.js';
export { CacheAheadOfServerError, type VerifyResult } from './verify.js';
