// zeo-ts/client: the Node client of a ZEO server. So far the connection layer (the wire protocol's client side).
export {
  ClientConnection,
  type CallOptions,
  type ClientConnectionOptions,
  type ServerAddress,
  type ServerCallHandler,
} from './connection.js';
export { CallTimeoutError, ClientDisconnected } from './errors.js';
export { BLOB_CHUNK, ClientBlobs, type ClientBlobsOptions } from './blobs.js';
export {
  BlobCacheError,
  cacheBlobFilePath,
  cacheOidPath,
  checkBlobCacheSize,
  type BlobCacheCheckResult,
} from './blob-cache.js';
