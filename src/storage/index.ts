// zeo-ts/storage: the storage contract (ZODB's IStorage and friends) and its engines.
export * from './interfaces.js';
export * from './ids.js';
export * from './errors.js';
export { TimeStamp, newTid, tidTime } from './timestamp.js';
export { CommitLock, type Release } from './commit-lock.js';
export { extensionBytes, decodeExtension } from './extension.js';
export {
  copyStorage,
  copyTransactions,
  copyTransactionsDetailed,
  CopyError,
  incrementalStart,
  type CopyOptions,
  type CopyProgress,
  type CopyResult,
  type CopyStorageOptions,
} from './copy.js';
export { MemoryStorage } from './memory/memory-storage.js';
export { FileStorage, FileStorageError, type FileStorageOptions } from './filestorage/index.js';
export { BlobDirectory } from './blobs/index.js';
