// The PostgreSQL storage's cache of current object states (RelStorage's local cache, kept exact): for an oid,
// the record current as of the storage's lastTransaction() (its tid and state), so that a load a ZEO client
// makes on a miss of its own cache needs no query. The storage keeps it exact with what it already sees in
// tid order: its own commits replace the records they wrote, other writers' transactions drop theirs, both in
// the run that advances lastTransaction(); a pack clears it.
//
// The entries live in a ReadCache (filestorage/file.ts: bounded in bytes, LRU in slab-sized steps) keyed by
// zoid, each the 8-byte tid followed by the state. A record read from the database is kept only if nothing
// dropped its oid while the query ran (fill's `since`): a read racing a commit may hold the state that commit
// replaced.

import { MIN_CACHE_BYTES, ReadCache, type ReadCacheStats } from '../filestorage/file.js';

/** RelStorage's cache-local-mb is 10; zeo-ts's FileStorage keeps 64 MiB of records */
export const DEFAULT_STATE_CACHE_BYTES = 64 << 20;

/** drops remembered for fill() (more since a read began: the read is not kept) */
const DROP_LOG = 256;

/** zoids from here on are not cached (the ReadCache's keys are safe integers, plus one) */
const MAX_ZOID = Number.MAX_SAFE_INTEGER - 1;

/** The key of the zoid in bytes[at..at+8], or -1 when it is not cached (too large). */
export function zoidKeyAt(bytes: Uint8Array, at: number): number {
  const hi = ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
  const lo = ((bytes[at + 4] << 24) | (bytes[at + 5] << 16) | (bytes[at + 6] << 8) | bytes[at + 7]) >>> 0;
  const n = hi * 0x100000000 + lo;
  return n <= MAX_ZOID ? n : -1;
}

/** The cache's size from the option (absent: the default; 0: none; else at least ReadCache's smallest). */
export function stateCacheBytes(option: number | undefined): number {
  const n = option ?? DEFAULT_STATE_CACHE_BYTES;
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`cacheBytes: ${n} is not a size`);
  return n === 0 ? 0 : Math.max(n, MIN_CACHE_BYTES);
}

/** A zoid as the cache's key, or -1 when it is not cached (too large). */
export function zoidKey(zoid: bigint | string): number {
  const n = Number(zoid);
  return n >= 0 && n <= MAX_ZOID ? n : -1;
}

export class StateCache {
  private readonly cache: ReadCache;
  /** counts drops (a clear counts DROP_LOG): what fill() compares `since` with */
  generation = 0;
  private readonly dropped = new Float64Array(DROP_LOG);

  constructor(bytes: number) {
    this.cache = new ReadCache(bytes);
  }

  /**
   * The entry of `key` (the tid at found[at..at+8], the state after it, foundLen bytes in all, valid until the
   * cache is changed: copy what is kept): its offset in `found`, or -1 (a miss, counted).
   */
  locate(key: number): number {
    const at = this.cache.locate(key);
    if (at < 0) this.cache.misses++;
    return at;
  }

  get found(): Buffer {
    return this.cache.found;
  }

  get foundLen(): number {
    return this.cache.foundLen;
  }

  /**
   * Keeps `state` as `key`'s current record at `tid` (8 bytes), read from the database when the generation
   * was `since`; not if the oid was dropped since (or too much was to tell).
   */
  fill(key: number, tid: Uint8Array, state: Uint8Array, since: number): void {
    if (key < 0) return;
    const g = this.generation;
    if (g !== since) {
      if (g - since >= DROP_LOG) return;
      for (let i = since + 1; i <= g; i++) if (this.dropped[i % DROP_LOG] === key) return;
    }
    this.cache.put(key, tid, state);
  }

  /** `key`'s current record is now (tid, state): a commit of this storage's. */
  replace(key: number, tid: Uint8Array, state: Uint8Array): void {
    if (key < 0) return;
    this.drop(key);
    this.cache.put(key, tid, state);
  }

  /** `key` changed (another writer's transaction, a delete): its entry goes, and reads racing it are not kept. */
  drop(key: number): void {
    if (key < 0) return;
    this.dropped[++this.generation % DROP_LOG] = key;
    this.cache.delete(key);
  }

  /** Drops everything (a pack), and every read in progress is not kept. */
  clear(): void {
    this.generation += DROP_LOG;
    this.cache.clear();
  }

  stats(): ReadCacheStats {
    return this.cache.stats();
  }
}
