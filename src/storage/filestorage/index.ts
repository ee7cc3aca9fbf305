// zeo-ts FileStorage: ZODB's Data.fs, byte-compatible with Python's FileStorage.
export {
  FileStorage,
  FileStorageError,
  FileStorageQuotaError,
  type FileDataRecord,
  type FileStorageOptions,
  type FileTransactionRecord,
  type FileUndoLogEntry,
} from './file-storage.js';
export {
  packFileStorage,
  RedundantPackWarning,
  PackError,
  type PackTarget,
  type PackedFile,
  type PackOptions,
  type PackResult,
} from './pack.js';
export { FsIndex } from './fsindex.js';
export { RandomAccessFile, FileIOError, ShortReadError, fsyncDirectory } from './file.js';
export { LockFile, LockError } from './lockfile.js';
export { readIndexFile, writeIndexFile, indexPathFor } from './indexfile.js';
export {
  scanDataFile,
  scanDataPath,
  truncateDamagedTail,
  type LogLevel,
  type OpenScanResult,
  type ScanLog,
  type ScanOptions,
} from './scan.js';
export { decodeUndoId, encodeUndoId } from '../undo-log.js';
