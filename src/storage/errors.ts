// ZODB's storage exceptions (ZODB.POSException), as typed classes. The ZEO server marshals them to clients
// under their Python names (`pythonName`), so Python applications catch what they always caught.

import type { Oid, Tid } from './ids.js';
import { oidRepr, tidRepr } from './ids.js';

export class POSError extends Error {
  /** the Python class, module.name, that a ZEO client raises for this error */
  readonly pythonName: string = 'ZODB.POSException.POSError';
  override name = 'POSError';
}

/** An oid (and serial) the storage does not have. Python's POSKeyError is a KeyError too. */
export class POSKeyError extends POSError {
  override readonly pythonName: string = 'ZODB.POSException.POSKeyError';
  override name = 'POSKeyError';
  constructor(
    readonly oid: Oid,
    readonly serial: Tid | null = null,
  ) {
    super(serial ? `${oidRepr(oid)} ${tidRepr(serial)}` : oidRepr(oid));
  }
}

export class StorageError extends POSError {
  override readonly pythonName: string = 'ZODB.POSException.StorageError';
  override name = 'StorageError';
}

/** The transaction given is not the one in progress, or 2PC calls came out of order. */
export class StorageTransactionError extends StorageError {
  override readonly pythonName: string = 'ZODB.POSException.StorageTransactionError';
  override name = 'StorageTransactionError';
}

export class StorageSystemError extends StorageError {
  override readonly pythonName: string = 'ZODB.POSException.StorageSystemError';
  override name = 'StorageSystemError';
}

export class ReadOnlyError extends StorageError {
  override readonly pythonName: string = 'ZODB.POSException.ReadOnlyError';
  override name = 'ReadOnlyError';
  constructor(message = 'storage is read-only') {
    super(message);
  }
}

export class UndoError extends POSError {
  override readonly pythonName: string = 'ZODB.POSException.UndoError';
  override name = 'UndoError';
  constructor(
    reason: string,
    readonly oid: Oid | null = null,
  ) {
    super(oid ? `${oidRepr(oid)}: ${reason}` : reason);
  }
}

export class MultipleUndoErrors extends UndoError {
  override readonly pythonName: string = 'ZODB.POSException.MultipleUndoErrors';
  override name = 'MultipleUndoErrors';
  constructor(readonly errors: UndoError[]) {
    super(errors.map((e) => e.message).join('; '));
  }
}

export class Unsupported extends POSError {
  override readonly pythonName: string = 'ZODB.POSException.Unsupported';
  override name = 'Unsupported';
}

/**
 * A write conflict: the object changed since the serial the transaction read. `serials` is (current, old)
 * as ZODB's ConflictError carries them; `data` the rejected record, for client-side resolution.
 */
export class ConflictError extends POSError {
  override readonly pythonName: string = 'ZODB.POSException.ConflictError';
  override name = 'ConflictError';
  /**
   * The transaction's other write conflicts found with this one: a storage that finds conflicts at the vote
   * (PostgreSQL) reports them all, so the ZEO server sends them to the client to resolve in one round.
   */
  readonly others: ConflictError[] = [];
  constructor(
    readonly oid: Oid | null = null,
    readonly serials: readonly [Tid, Tid] | null = null,
    readonly data: Uint8Array | null = null,
    message = 'database conflict error',
  ) {
    super(
      message +
        (oid
          ? ` (oid ${oidRepr(oid)}` +
            (serials
              ? `, serial this txn started with ${tidRepr(serials[1])} < current serial ${tidRepr(serials[0])}`
              : '') +
            ')'
          : ''),
    );
  }
}

/** checkCurrentSerialInTransaction: an object read by the transaction changed before it committed. */
export class ReadConflictError extends ConflictError {
  override readonly pythonName: string = 'ZODB.POSException.ReadConflictError';
  override name = 'ReadConflictError';
  constructor(oid: Oid | null = null, serials: readonly [Tid, Tid] | null = null) {
    super(oid, serials, null, 'database read conflict error');
  }
}

/** A storage file that is damaged: names the file and the offset. */
export class CorruptedError extends StorageError {
  override readonly pythonName: string = 'ZODB.FileStorage.FileStorage.CorruptedError';
  override name = 'CorruptedError';
  constructor(
    readonly file: string,
    readonly offset: number,
    reason: string,
  ) {
    super(`${file}: ${reason} (at byte ${offset})`);
  }
}
