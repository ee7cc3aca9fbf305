// zeo-ts/client: the Node client of a ZEO server: ClientStorage (our storage contract over the network) and
// the connection layer under it (the connection manager, one connection).
export { ClientStorage, type ClientStorageOptions } from './client-storage.js';
export {
  ClientConnection,
  DEFAULT_MAX_MESSAGE_SIZE,
  describeAddress,
  type CallOptions,
  type ClientConnectionOptions,
  type ServerAddress,
  type ServerCallHandler,
} from './connection.js';
export { CallTimeoutError, ClientDisconnected } from './errors.js';
export { DEFAULT_MAX_QUEUED, InvalidationsLost, type Invalidation } from './invalidations.js';
export { ConnectionManager, type ConnectEvent, type ConnectionManagerOptions } from './manager.js';
export { CacheAheadOfServerError, type VerifyResult } from './verify.js';
export {
  ClientCache,
  ClientCacheError,
  ENTRY_OVERHEAD,
  type CacheStats,
  type ClientCacheOptions,
} from './cache.js';
export { CacheFileError } from './cache-file.js';
export {
  ConflictResolverRegistry,
  defaultResolvers,
  PersistentReference,
  type StateResolver,
} from './conflict.js';
export {
  clientOptionsFromConfig,
  clientOptionsFromSection,
  parseZeoUrl,
  resolveZeoUrl,
  ZeoUrlError,
  type ClientConfigOptions,
  type DatabaseConfig,
} from './config.js';
export { BLOB_CHUNK, ClientBlobs, type ClientBlobsOptions } from './blobs.js';
export {
  BlobCacheError,
  cacheBlobFilePath,
  cacheOidPath,
  checkBlobCacheSize,
  type BlobCacheCheckResult,
} from './blob-cache.js';
