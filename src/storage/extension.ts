// A transaction's extension, as ZODB stores it (ZODB.Connection.TransactionMetaData.extension_bytes and
// .extension): the bytes are the ones read from a storage when the transaction carries them (copy, restore),
// else the protocol 3 pickle of the extension dict, or empty bytes for an empty dict. Reading back, empty bytes
// are an empty dict; storages give the dict unpickled from the bytes (FileStorage's iterator, history, undoLog).

import { dumps, loads, type PyDict } from '../pickle/index.js';
import type { TransactionMetaData } from './interfaces.js';

const EMPTY = new Uint8Array(0);

/** The bytes a storage writes for `txn`'s extension. */
export function extensionBytes(txn: TransactionMetaData): Uint8Array {
  if (txn.extensionBytes !== null) return txn.extensionBytes;
  return txn.extension.size ? new Uint8Array(dumps(txn.extension, 3)) : EMPTY;
}

/**
 * The extension dict of stored bytes. Bytes that do not unpickle to a dict give an empty one, as FileStorage's
 * readers do (they catch any error from loads).
 */
export function decodeExtension(bytes: Uint8Array): PyDict {
  if (bytes.length === 0) return new Map();
  try {
    const v = loads(bytes, { copyBytes: true });
    return v instanceof Map ? v : (new Map() as PyDict);
  } catch {
    return new Map();
  }
}
