// The PostgreSQL storage engine on RelStorage's history-preserving schema (issue 12).
export { installSchema, schemaExists, schemaIsHistoryFree } from './schema.js';
export { PostgreSQLStorage, type PostgreSQLStorageOptions } from './postgresql-storage.js';
export { pgClientConfig, type PostgreSQLOptions } from './options.js';
export {
  StorageDisconnectedError,
  UnableToAcquireCommitLockError,
  UnableToLockRowsToModifyError,
  UnableToLockRowsToReadCurrentError,
} from './errors.js';
