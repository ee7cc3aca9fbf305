// What PostgreSQL's errors become (RelStorage's names where it has them: adapters/interfaces.py).
import { ConflictError, ReadConflictError, StorageError } from '../errors.js';

/** The commit lock was not granted within commitLockTimeout (RelStorage's UnableToAcquireCommitLockError). */
export class UnableToAcquireCommitLockError extends StorageError {
  override name = 'UnableToAcquireCommitLockError';
}

/** An object lock was not granted in time (RelStorage's UnableToLockRowsToModifyError, a ConflictError). */
export class UnableToLockRowsToModifyError extends ConflictError {
  override name = 'UnableToLockRowsToModifyError';
}

/** A writer holds an object read with readCurrent (RelStorage's UnableToLockRowsToReadCurrentError). */
export class UnableToLockRowsToReadCurrentError extends ReadConflictError {
  override name = 'UnableToLockRowsToReadCurrentError';
}

/**
 * The database cannot be reached, or the connection broke (the server restarted, failed over, or ended the
 * session): transient, the call may be tried again; the pool makes new connections.
 */
export class StorageDisconnectedError extends StorageError {
  override name = 'StorageDisconnectedError';
  readonly transient = true;
}

/** Where the error came from, when it is a lock wait that ended. */
export type LockPhase = 'commit-lock' | 'object-locks' | null;

/** A PostgreSQL or connection error as the storage error it means; others are returned as they are. */
export function mapDatabaseError(e: unknown, phase: LockPhase = null): unknown {
  if (!(e instanceof Error) || e instanceof StorageError || e instanceof ConflictError) return e;
  const code = (e as { code?: string }).code;
  if (code === '55P03' || code === '57014') {
    // lock_not_available (lock_timeout), query_canceled
    if (phase === 'commit-lock') return new UnableToAcquireCommitLockError(`the commit lock: ${e.message}`);
    if (phase === 'object-locks') return new UnableToLockRowsToModifyError(null, null, null, e.message);
  }
  if (code === '40P01' || code === '40001') return new ConflictError(null, null, null, e.message); // deadlock
  if (isConnectionError(e)) return new StorageDisconnectedError(`the database is unavailable: ${e.message}`);
  return e;
}

/** Whether the connection is gone (not a statement that failed on a working connection). */
export function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: string }).code ?? '';
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT'].includes(code)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(
    e.message,
  );
}
