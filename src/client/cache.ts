// The client cache: ZEO's ZEO/cache.py semantics (current and non-current revisions per oid, a last tid that
// only moves forward), bounded in bytes, with W-TinyLFU eviction (a small LRU window in front of a segmented
// LRU main area, admission to the main area decided by a count-min frequency sketch) instead of ZEO's circular
// file, which is a FIFO with a "copy forward when read far back" rule. Bookkeeping lives in typed arrays
// indexed by slot; the only per-entry objects are the data arrays themselves.
//
// The optional persistent file (cache-file.ts) is a snapshot written atomically by flush() and close().

import { LockFile } from '../storage/filestorage/lockfile.js';
import { compareIds, idHex, type Oid, type Tid } from '../storage/ids.js';
import { readCacheFile, writeCacheFile, type CacheFileEntry, type CacheSnapshot } from './cache-file.js';

export interface ClientCacheOptions {
  /** the bound, in bytes: each entry counts its data plus ENTRY_OVERHEAD */
  size: number;
  /** the persistent cache file (ZEO's `<var>/<client>-<storage>.zec`); null or absent: memory only */
  path?: string | null;
}

export interface CacheStats {
  hits: number;
  misses: number;
  /** hits / (hits + misses), 0 before the first lookup */
  hitRate: number;
  stores: number;
  evictions: number;
  invalidations: number;
  /** bytes charged now (data + ENTRY_OVERHEAD per entry) */
  bytes: number;
  entries: number;
  /** the bound */
  size: number;
}

/**
 * Bytes charged per entry beside its data, so the size bounds memory rather than data alone: the typed-array
 * bookkeeping (about 60 bytes, up to twice that while the tables have room to grow), the index Map's entry, and
 * the data's own Uint8Array and ArrayBuffer objects. `npm run bench -- cache` measures about 310 bytes of V8
 * heap and buffers per 100-byte revision beside its data. (ZEO's file counts 43 bytes per record; its
 * in-memory index is on top.)
 */
export const ENTRY_OVERHEAD = 256;

/** A cache misuse ZEO raises ValueError for (a second current revision, the last tid moving back). */
export class ClientCacheError extends Error {
  override name = 'ClientCacheError';
}

const FREE = 0;
const CURRENT = 1;
const NONCURRENT = 2;

// Segments; slot numbers 0..2 are the sentinels of their circular lists (index = segment - 1).
const WINDOW = 1;
const PROBATION = 2;
const PROTECTED = 3;
const FIRST_SLOT = 3;

// The window's share of the size starts at 1% (W-TinyLFU's best for skewed, stable popularity) and adapts
// from regret (see adapt()): bigger when recency pays (a moving working set), smaller when frequency does.
const WINDOW_SHARE_MIN = 0.01;
const WINDOW_SHARE_MAX = 0.99;
/** how far one regretted decision moves the window, in multiples of the entry's share of the size */
const GHOST_GAIN = 8;
const PROTECTED_SHARE = 0.8;

type Key = number | string;

/** A Map key for an oid: a number when it fits in 53 bits (every real oid), else 8 latin1 chars. */
function oidKey(o: Uint8Array): Key {
  const hi = ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
  const lo = ((o[4] << 24) | (o[5] << 16) | (o[6] << 8) | o[7]) >>> 0;
  if (hi < 0x200000) return hi * 4294967296 + lo;
  return String.fromCharCode(o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function oidHash(o: Uint8Array): number {
  const hi = (o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3];
  const lo = (o[4] << 24) | (o[5] << 16) | (o[6] << 8) | o[7];
  return fmix32(lo ^ fmix32((hi + 0x9e3779b9) | 0));
}

function checkId(b: Uint8Array, what: string): void {
  if (!(b instanceof Uint8Array) || b.length !== 8) {
    throw new TypeError(
      `${what} must be an 8-byte Uint8Array, not ${b instanceof Uint8Array ? b.length + ' bytes' : typeof b}`,
    );
  }
}

/**
 * Count-min sketch of 4-bit-range counters (saturating at 15), four per key, with conservative update and
 * periodic halving so old popularity fades (TinyLFU's reset).
 */
class FrequencySketch {
  private table: Uint8Array;
  private mask: number;
  private additions = 0;
  private sampleSize: number;

  constructor(expectedEntries: number) {
    const width = nextPow2(Math.max(256, Math.min(1 << 24, expectedEntries * 4)));
    this.table = new Uint8Array(width);
    this.mask = width - 1;
    // Halve every counter after 10 additions per expected entry (TinyLFU's reset), so popularity ages.
    this.sampleSize = Math.ceil(width * 2.5);
  }

  get width(): number {
    return this.table.length;
  }

  frequency(h: number): number {
    const t = this.table;
    const h2 = fmix32(h ^ 0x5bd1e995) | 1;
    let min = 15;
    for (let i = 0; i < 4; i++) {
      const c = t[(h + Math.imul(i, h2)) & this.mask];
      if (c < min) min = c;
    }
    return min;
  }

  increment(h: number): void {
    const t = this.table;
    const h2 = fmix32(h ^ 0x5bd1e995) | 1;
    const m = this.mask;
    const min = this.frequency(h);
    if (min >= 15) return;
    for (let i = 0; i < 4; i++) {
      const j = (h + Math.imul(i, h2)) & m;
      if (t[j] === min) t[j] = min + 1;
    }
    if (++this.additions >= this.sampleSize) {
      for (let j = 0; j < t.length; j++) t[j] >>>= 1;
      this.additions >>>= 1;
    }
  }
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** A revision as the file layer sees it: in eviction order, coldest first. */
export type { CacheFileEntry };

export class ClientCache {
  readonly size: number;
  private dropped: string | null = null;

  private cap = 0;
  /** per slot: oid (0..7), start tid (8..15), end tid (16..23) */
  private ids = new Uint8Array(0);
  private kind = new Uint8Array(0);
  private seg = new Uint8Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  /** the next older/newer non-current revision of the same oid (unordered chain), -1 at the end */
  private ncNext = new Int32Array(0);
  private charge = new Float64Array(0);
  private hash = new Uint32Array(0);
  private idle = new Uint8Array(0);
  private ghostCandidates = new Uint32Array(0);
  private ghostVictims = new Uint32Array(0);
  private ghostMask = 0;
  private keys: Key[] = [];
  private datas: Array<Uint8Array | null> = [];
  private freeSlots = new Int32Array(0);
  private freeTop = 0;

  private current = new Map<Key, number>();
  private noncurrent = new Map<Key, number>();
  private segBytes = [0, 0, 0, 0];
  private totalBytes = 0;
  private count = 0;
  private sketch: FrequencySketch;

  private lastTid: Tid | null = null;
  private nHits = 0;
  private nMisses = 0;
  private nStores = 0;
  private nEvictions = 0;
  private nInvalidations = 0;
  private windowShare = WINDOW_SHARE_MIN;

  private path: string | null = null;
  private lock: LockFile | null = null;
  private flushing: Promise<void> | null = null;
  private flushAgain = false;
  private closed = false;
  private closing: Promise<void> | null = null;

  /** A memory-only cache (ClientCache.open also reads and keeps a persistent file). */
  constructor(options: ClientCacheOptions) {
    const size = options.size;
    if (typeof size !== 'number' || !Number.isFinite(size) || size < 0) {
      throw new RangeError(`the cache size is a number of bytes >= 0, not ${String(size)}`);
    }
    this.size = Math.floor(size);
    this.sketch = new FrequencySketch(Math.ceil(this.size / 512));
    this.grow(64);
  }

  /**
   * Opens a cache; with `path`, takes its lock (`path.lock`, as ZEO's zc.lockfile: a second process gets
   * LockError) and loads the file. A torn, truncated, foreign or corrupt file is moved to `path.bad` and
   * not used (`dropReason` says why).
   */
  static async open(options: ClientCacheOptions): Promise<ClientCache> {
    const cache = new ClientCache(options);
    const path = options.path ?? null;
    if (path === null) return cache;
    cache.lock = await LockFile.acquire(path + '.lock');
    try {
      const r = await readCacheFile(path);
      cache.path = path;
      cache.dropped = r.dropReason;
      if (r.snapshot) cache.install(r.snapshot);
    } catch (e) {
      await cache.lock.release();
      cache.lock = null;
      throw e;
    }
    return cache;
  }

  /** why an existing cache file was not used (null: it was used, or there was none) */
  get dropReason(): string | null {
    return this.dropped;
  }

  get length(): number {
    return this.count;
  }

  // ---- lookups

  /** The current revision of oid, or null. The data is the cache's own: do not modify it. */
  load(oid: Oid): { data: Uint8Array; tid: Tid } | null {
    checkId(oid, 'oid');
    const slot = this.current.get(oidKey(oid));
    if (slot === undefined) {
      this.nMisses++;
      return null;
    }
    this.hit(slot);
    const o = slot * 24;
    return { data: this.datas[slot]!, tid: this.ids.slice(o + 8, o + 16) };
  }

  /**
   * The start tid of oid's current revision, or null; unlike load() it is not a lookup: no hit or miss is
   * counted and the entry's recency is untouched (for a client deciding whether a revision it read is news).
   */
  currentTid(oid: Oid): Tid | null {
    checkId(oid, 'oid');
    const slot = this.current.get(oidKey(oid));
    return slot === undefined ? null : this.ids.slice(slot * 24 + 8, slot * 24 + 16);
  }

  /**
   * The revision that was current just before `before` (start < before <= end), as ZEO's loadBefore: the
   * non-current revision with the greatest start below `before` when its end is at or after `before`, else
   * the current revision when its start is below `before` (end null). As in ZEO, the current revision is
   * taken as valid for any later `before`: the caller asks only for tids up to the last tid plus one.
   */
  loadBefore(oid: Oid, before: Tid): { data: Uint8Array; start: Tid; end: Tid | null } | null {
    checkId(oid, 'oid');
    checkId(before, 'before');
    const key = oidKey(oid);
    const ids = this.ids;
    let best = -1;
    for (let s = this.noncurrent.get(key) ?? -1; s >= 0; s = this.ncNext[s]) {
      if (cmpAt(ids, s * 24 + 8, before) < 0 && (best < 0 || cmpSlots(ids, s * 24 + 8, best * 24 + 8) > 0)) {
        best = s;
      }
    }
    if (best >= 0 && cmpAt(ids, best * 24 + 16, before) >= 0) {
      this.hit(best);
      const o = best * 24;
      return { data: this.datas[best]!, start: ids.slice(o + 8, o + 16), end: ids.slice(o + 16, o + 24) };
    }
    const cur = this.current.get(key);
    if (cur !== undefined && cmpAt(ids, cur * 24 + 8, before) < 0) {
      this.hit(cur);
      const o = cur * 24;
      return { data: this.datas[cur]!, start: ids.slice(o + 8, o + 16), end: null };
    }
    this.nMisses++;
    return null;
  }

  // ---- updates

  /**
   * Stores a revision: current when `end` is null, else non-current (valid for start <= tid < end). Storing
   * what is already there does nothing; a second, different current revision is an error (invalidate first),
   * as in ZEO. A revision larger than the whole cache is not kept.
   */
  store(oid: Oid, start: Tid, end: Tid | null, data: Uint8Array): void {
    checkId(oid, 'oid');
    checkId(start, 'start');
    if (end !== null) checkId(end, 'end');
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
    const key = oidKey(oid);
    const ids = this.ids;
    if (end === null) {
      const cur = this.current.get(key);
      if (cur !== undefined) {
        if (cmpAt(ids, cur * 24 + 8, start) === 0) return;
        throw new ClientCacheError(
          `the cache already has a current revision of oid ${idHex(oid)} (tid ${idHex(ids.subarray(cur * 24 + 8, cur * 24 + 16))}); ` +
            `invalidate it before storing tid ${idHex(start)}`,
        );
      }
    } else {
      if (compareIds(start, end) >= 0) {
        throw new ClientCacheError(
          `a non-current revision of oid ${idHex(oid)} must start before it ends (start ${idHex(start)}, end ${idHex(end)})`,
        );
      }
      for (let s = this.noncurrent.get(key) ?? -1; s >= 0; s = this.ncNext[s]) {
        if (cmpAt(ids, s * 24 + 8, start) === 0) return;
      }
    }
    const charge = data.length + ENTRY_OVERHEAD;
    if (charge > this.size) return;
    // Keep our own copy when data is a view into a larger buffer (a network frame), so it is not retained.
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    const h = oidHash(oid);
    this.sketch.increment(h);
    this.adapt(h, charge);
    const slot = this.allocate();
    const o = slot * 24;
    this.ids.set(oid, o);
    this.ids.set(start, o + 8);
    if (end === null) this.ids.fill(0, o + 16, o + 24);
    else this.ids.set(end, o + 16);
    this.keys[slot] = key;
    this.datas[slot] = own;
    this.charge[slot] = charge;
    this.hash[slot] = h;
    this.idle[slot] = 0;
    if (end === null) {
      this.kind[slot] = CURRENT;
      this.current.set(key, slot);
    } else {
      this.kind[slot] = NONCURRENT;
      this.ncNext[slot] = this.noncurrent.get(key) ?? -1;
      this.noncurrent.set(key, slot);
    }
    this.count++;
    this.nStores++;
    this.link(slot, WINDOW);
    this.evict();
  }

  /**
   * A transaction `tid` changed oid: the current revision becomes non-current, ending at tid. With tid null
   * (verification could not tell when it changed), everything about oid is forgotten; a tid at or below the
   * current revision's start forgets that revision.
   */
  invalidate(oid: Oid, tid: Tid | null): void {
    checkId(oid, 'oid');
    if (tid !== null) checkId(tid, 'tid');
    const key = oidKey(oid);
    const cur = this.current.get(key);
    if (tid === null) {
      let changed = false;
      if (cur !== undefined) {
        this.remove(cur);
        changed = true;
      }
      for (let s = this.noncurrent.get(key) ?? -1; s >= 0;) {
        const n = this.ncNext[s];
        this.remove(s);
        changed = true;
        s = n;
      }
      if (changed) this.nInvalidations++;
      return;
    }
    if (cur === undefined) return;
    const ids = this.ids;
    const c = cmpAt(ids, cur * 24 + 8, tid);
    this.nInvalidations++;
    if (c >= 0) {
      // By the transaction that wrote the revision we hold (ZEO drops it from its index too), or older than
      // it: the invalidation cannot bound it, so forget it rather than guess.
      this.remove(cur);
      return;
    }
    for (let s = this.noncurrent.get(key) ?? -1; s >= 0; s = this.ncNext[s]) {
      if (cmpSlots(ids, s * 24 + 8, cur * 24 + 8) === 0) {
        this.remove(s);
        break;
      }
    }
    this.current.delete(key);
    ids.set(tid, cur * 24 + 16);
    this.kind[cur] = NONCURRENT;
    this.ncNext[cur] = this.noncurrent.get(key) ?? -1;
    this.noncurrent.set(key, cur);
    // Readers at the current tid no longer want it: it is the next to go.
    this.unlink(cur);
    this.linkLru(cur, PROBATION);
  }

  getLastTid(): Tid | null {
    return this.lastTid === null ? null : this.lastTid.slice();
  }

  /**
   * The last transaction the cache has seen. It only moves forward, except on an empty cache (as ZEO, which
   * lets a fresh client follow whatever server it meets); 8 zero bytes are ignored.
   */
  setLastTid(tid: Tid): void {
    checkId(tid, 'tid');
    if (tid.every((b) => b === 0)) return;
    if (this.lastTid !== null) {
      const c = compareIds(tid, this.lastTid);
      if (c === 0) return;
      if (c < 0 && this.count > 0) {
        throw new ClientCacheError(
          `the cache's last tid cannot move back from ${idHex(this.lastTid)} to ${idHex(tid)}: ` +
            'the cache holds data newer than what it is asked to be valid for (a server that went back in time?); ' +
            'clear the cache (or remove its .zec file) to follow this server',
        );
      }
    }
    this.lastTid = tid.slice();
  }

  /** Forgets every entry (the last tid stays, as in ZEO). */
  clear(): void {
    for (let g = WINDOW; g <= PROTECTED; g++) {
      const head = g - 1;
      for (let s = this.next[head]; s !== head;) {
        const n = this.next[s];
        this.release(s);
        s = n;
      }
      this.next[head] = this.prev[head] = head;
      this.segBytes[g] = 0;
    }
    this.current.clear();
    this.noncurrent.clear();
    this.totalBytes = 0;
    this.count = 0;
  }

  stats(): CacheStats {
    const lookups = this.nHits + this.nMisses;
    return {
      hits: this.nHits,
      misses: this.nMisses,
      hitRate: lookups ? this.nHits / lookups : 0,
      stores: this.nStores,
      evictions: this.nEvictions,
      invalidations: this.nInvalidations,
      bytes: this.totalBytes,
      entries: this.count,
      size: this.size,
    };
  }

  /** Every revision, coldest first (the order eviction would take them), with copies of its ids. */
  snapshot(): CacheSnapshot {
    const entries: CacheFileEntry[] = [];
    const ids = this.ids;
    // Coldest first: probation's LRU end, then the window, then protected, each from its LRU end.
    for (const g of [PROBATION, WINDOW, PROTECTED]) {
      const head = g - 1;
      for (let s = this.prev[head]; s !== head; s = this.prev[s]) {
        const o = s * 24;
        entries.push({
          oid: ids.slice(o, o + 8),
          start: ids.slice(o + 8, o + 16),
          end: this.kind[s] === CURRENT ? null : ids.slice(o + 16, o + 24),
          data: this.datas[s]!,
          frequency: this.sketch.frequency(this.hash[s]),
        });
      }
    }
    return { lastTid: this.getLastTid(), entries };
  }

  /** Writes the persistent file (atomically: a temporary file renamed over it); nothing without a path. */
  flush(): Promise<void> {
    // After close() the file holds everything already (and its lock is given up): nothing to do.
    if (this.path === null || this.closed) return Promise.resolve();
    if (this.flushing) {
      // One more write after the running one, for changes it did not capture.
      this.flushAgain = true;
      return this.flushing;
    }
    const path = this.path;
    const run = async (): Promise<void> => {
      try {
        do {
          this.flushAgain = false;
          await writeCacheFile(path, this.snapshot(), this.size);
        } while (this.flushAgain);
      } finally {
        this.flushing = null;
      }
    };
    this.flushing = run();
    return this.flushing;
  }

  /** Flushes the file and releases its lock; the cache keeps answering from memory. Closing twice does nothing. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        if (this.flushing) await this.flushing.catch(() => undefined);
        await this.flush();
      } finally {
        this.closed = true;
        const lock = this.lock;
        this.lock = null;
        if (lock) await lock.release();
      }
    })();
    return this.closing;
  }

  /** Checks the bookkeeping (lists, byte counts, indexes) and throws on any inconsistency; for tests. */
  checkIntegrity(): void {
    let n = 0;
    let total = 0;
    for (let g = WINDOW; g <= PROTECTED; g++) {
      const head = g - 1;
      let bytes = 0;
      for (let s = this.next[head]; s !== head; s = this.next[s]) {
        if (this.seg[s] !== g || this.prev[this.next[s]] !== s)
          throw new Error(`slot ${s}: broken list ${g}`);
        const key = this.keys[s];
        if (this.kind[s] === CURRENT) {
          if (this.current.get(key) !== s) throw new Error(`slot ${s}: not the current index's`);
        } else {
          let t = this.noncurrent.get(key) ?? -1;
          while (t >= 0 && t !== s) t = this.ncNext[t];
          if (t !== s) throw new Error(`slot ${s}: not in its oid's non-current chain`);
        }
        bytes += this.charge[s];
        n++;
      }
      if (bytes !== this.segBytes[g])
        throw new Error(`segment ${g}: ${bytes} bytes, counted ${this.segBytes[g]}`);
      total += bytes;
    }
    let indexed = this.current.size;
    for (const head of this.noncurrent.values()) for (let t = head; t >= 0; t = this.ncNext[t]) indexed++;
    if (n !== this.count || indexed !== n)
      throw new Error(`${n} linked, ${indexed} indexed, counted ${this.count}`);
    if (total !== this.totalBytes || total > this.size)
      throw new Error(`${total} bytes, counted ${this.totalBytes}, size ${this.size}`);
  }

  // ---- internals

  private install(snap: CacheSnapshot): void {
    if (snap.lastTid) this.lastTid = snap.lastTid.slice();
    // Room for every entry first: growing later would start a fresh sketch and lose the restored popularity.
    const need = snap.entries.length + FIRST_SLOT;
    if (need > this.cap) this.grow(nextPow2(need));
    for (const e of snap.entries) {
      if (e.end === null && this.current.has(oidKey(e.oid))) continue;
      // Restore the popularity it had (store counts one more) before it competes for room.
      const h = oidHash(e.oid);
      for (let i = 1; i < e.frequency; i++) this.sketch.increment(h);
      this.store(e.oid, e.start, e.end, e.data);
    }
    this.nStores = 0;
    this.nEvictions = 0;
  }

  /**
   * Window sizing from regret, as ARC: a miss on an oid the admission filter recently turned away says the
   * window (recency) should be bigger; a miss on one it recently evicted in favour of a newcomer says smaller.
   */
  private adapt(h: number, charge: number): void {
    const i = h & this.ghostMask;
    const tag = h | 1;
    const step = (GHOST_GAIN * charge) / this.size;
    if (this.ghostCandidates[i] === tag) {
      this.ghostCandidates[i] = 0;
      this.windowShare = Math.min(WINDOW_SHARE_MAX, this.windowShare + step);
    } else if (this.ghostVictims[i] === tag) {
      this.ghostVictims[i] = 0;
      this.windowShare = Math.max(WINDOW_SHARE_MIN, this.windowShare - step);
    }
  }

  private hit(slot: number): void {
    this.nHits++;
    this.idle[slot] = 0;
    this.sketch.increment(this.hash[slot]);
    const g = this.seg[slot];
    this.unlink(slot);
    if (g === PROBATION) {
      this.link(slot, PROTECTED);
      const max = (this.size - this.windowMax()) * PROTECTED_SHARE;
      // Protected over its share: its LRU entries go back on probation.
      while (this.segBytes[PROTECTED] > max) {
        const v = this.prev[PROTECTED - 1];
        if (v === slot) break;
        this.unlink(v);
        this.link(v, PROBATION);
      }
    } else {
      this.link(slot, g);
    }
  }

  private windowMax(): number {
    return this.size * this.windowShare;
  }

  private evict(): void {
    const windowMax = this.windowMax();
    while (this.segBytes[WINDOW] > windowMax) {
      const cand = this.prev[WINDOW - 1];
      this.unlink(cand);
      this.link(cand, PROBATION);
      // Admission: the candidate competes with main's victims until it fits or loses.
      while (this.totalBytes > this.size) {
        const victim = this.mainVictim(cand);
        if (victim < 0) break;
        const vf = this.sketch.frequency(this.hash[victim]) >> this.idle[victim];
        if (this.sketch.frequency(this.hash[cand]) > vf) {
          this.ghostVictims[this.hash[victim] & this.ghostMask] = this.hash[victim] | 1;
          this.evictSlot(victim);
        } else {
          this.ghostCandidates[this.hash[cand] & this.ghostMask] = this.hash[cand] | 1;
          this.evictSlot(cand);
          if (this.seg[victim] === PROBATION) {
            // A victim that keeps winning without being read is stale popularity: it counts for less each time.
            if (this.idle[victim] < 4) this.idle[victim]++;
            this.unlink(victim);
            this.link(victim, PROBATION);
          }
          break;
        }
      }
    }
    while (this.totalBytes > this.size) {
      let v = this.prev[PROBATION - 1];
      if (v === PROBATION - 1) v = this.prev[PROTECTED - 1];
      if (v === PROTECTED - 1) v = this.prev[WINDOW - 1];
      if (v === WINDOW - 1) break;
      this.evictSlot(v);
    }
  }

  /** Main's coldest entry other than the candidate: probation's LRU end, else protected's; -1 if none. */
  private mainVictim(cand: number): number {
    let v = this.prev[PROBATION - 1];
    if (v === cand) v = this.prev[v];
    if (v !== PROBATION - 1) return v;
    v = this.prev[PROTECTED - 1];
    return v === PROTECTED - 1 ? -1 : v;
  }

  private evictSlot(slot: number): void {
    this.nEvictions++;
    this.remove(slot);
  }

  /** Drops a revision from every index and frees its slot. */
  private remove(slot: number): void {
    const key = this.keys[slot];
    if (this.kind[slot] === CURRENT) {
      this.current.delete(key);
    } else {
      const head = this.noncurrent.get(key)!;
      if (head === slot) {
        const n = this.ncNext[slot];
        if (n < 0) this.noncurrent.delete(key);
        else this.noncurrent.set(key, n);
      } else {
        let p = head;
        while (this.ncNext[p] !== slot) p = this.ncNext[p];
        this.ncNext[p] = this.ncNext[slot];
      }
    }
    this.unlink(slot);
    this.count--;
    this.release(slot);
  }

  private release(slot: number): void {
    this.kind[slot] = FREE;
    this.seg[slot] = 0;
    this.datas[slot] = null;
    this.keys[slot] = 0;
    this.freeSlots[this.freeTop++] = slot;
  }

  /** Links slot into segment g at its MRU end (right after the sentinel). */
  private link(slot: number, g: number): void {
    this.insertAfter(slot, g, g - 1);
  }

  /** Links slot into segment g at its LRU end: the next to go. */
  private linkLru(slot: number, g: number): void {
    this.insertAfter(slot, g, this.prev[g - 1]);
  }

  private insertAfter(slot: number, g: number, p: number): void {
    const n = this.next[p];
    this.next[slot] = n;
    this.prev[slot] = p;
    this.prev[n] = slot;
    this.next[p] = slot;
    this.seg[slot] = g;
    this.segBytes[g] += this.charge[slot];
    this.totalBytes += this.charge[slot];
  }

  private unlink(slot: number): void {
    const p = this.prev[slot];
    const n = this.next[slot];
    this.next[p] = n;
    this.prev[n] = p;
    const g = this.seg[slot];
    this.segBytes[g] -= this.charge[slot];
    this.totalBytes -= this.charge[slot];
    this.seg[slot] = 0;
  }

  private allocate(): number {
    if (this.freeTop === 0) this.grow(this.cap * 2);
    return this.freeSlots[--this.freeTop];
  }

  private grow(cap: number): void {
    const old = this.cap;
    const ids = new Uint8Array(cap * 24);
    ids.set(this.ids);
    this.ids = ids;
    this.kind = growU8(this.kind, cap);
    this.seg = growU8(this.seg, cap);
    this.idle = growU8(this.idle, cap);
    this.prev = growI32(this.prev, cap);
    this.next = growI32(this.next, cap);
    this.ncNext = growI32(this.ncNext, cap);
    const charge = new Float64Array(cap);
    charge.set(this.charge);
    this.charge = charge;
    const hash = new Uint32Array(cap);
    hash.set(this.hash);
    this.hash = hash;
    const free = new Int32Array(cap);
    free.set(this.freeSlots.subarray(0, this.freeTop));
    this.freeSlots = free;
    // Push new slots so the lowest is handed out first.
    for (let s = cap - 1; s >= Math.max(old, FIRST_SLOT); s--) this.freeSlots[this.freeTop++] = s;
    if (old === 0) {
      for (let h = 0; h < FIRST_SLOT; h++) this.prev[h] = this.next[h] = h;
    }
    this.cap = cap;
    // Keep the sketch about four counters per entry as the cache grows (losing its history, as Caffeine).
    if (cap * 4 > this.sketch.width * 2) this.sketch = new FrequencySketch(cap);
    if (cap > this.ghostCandidates.length) {
      // Regret memory: about one oid per slot of each kind, by hash (collisions just forget).
      const w = nextPow2(cap);
      this.ghostCandidates = new Uint32Array(w);
      this.ghostVictims = new Uint32Array(w);
      this.ghostMask = w - 1;
    }
  }
}

function growU8(a: Uint8Array, cap: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(cap);
  b.set(a);
  return b;
}

function growI32(a: Int32Array, cap: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(cap);
  b.set(a);
  return b;
}

/** Compares the 8 bytes at ids[off] with b, as numbers. */
function cmpAt(ids: Uint8Array, off: number, b: Uint8Array): number {
  for (let i = 0; i < 8; i++) {
    const d = ids[off + i] - b[i];
    if (d !== 0) return d;
  }
  return 0;
}

function cmpSlots(ids: Uint8Array, a: number, b: number): number {
  for (let i = 0; i < 8; i++) {
    const d = ids[a + i] - ids[b + i];
    if (d !== 0) return d;
  }
  return 0;
}
