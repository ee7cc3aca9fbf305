// What every view of the browser shares: reading an object as of a tid, and the caller's ids.
import { POSKeyError } from '../errors.js';
import { idFromHex, p64, u64, type Oid, type Tid } from '../ids.js';
import type { Storage } from '../interfaces.js';

/** Bad input from the browser's caller (an oid, tid, cursor or limit that does not parse): a 400. */
export class BrowseInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BrowseInputError';
  }
}

/** An 8-byte id from 16 hex digits, or a BrowseInputError naming what it should be. */
export function parseId(text: string, what: 'oid' | 'tid'): Uint8Array {
  try {
    return idFromHex(text);
  } catch {
    throw new BrowseInputError(`bad ${what} ${JSON.stringify(text.slice(0, 40))}: expected 16 hex digits`);
  }
}

/** loadBefore's bound for "as of tid": the revisions committed at or before it. */
export function justAfter(tid: Tid): Tid {
  return p64(u64(tid) + 1n);
}

/** The revision of `oid` current at `at` (null: now), or POSKeyError when there is none. */
export async function loadAt(
  storage: Storage,
  oid: Oid,
  at: Tid | null,
): Promise<{ data: Uint8Array; tid: Tid; end: Tid | null }> {
  if (!at) {
    const r = await storage.load(oid);
    return { data: r.data, tid: r.serial, end: null };
  }
  const r = await storage.loadBefore(oid, justAfter(at));
  if (!r) throw new POSKeyError(oid);
  return { data: r.data, tid: r.start, end: r.end };
}
