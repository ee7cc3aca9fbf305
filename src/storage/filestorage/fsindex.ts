// The in-memory index of a FileStorage: oid -> file position of the object's current data record (ZODB's
// fsIndex). Compact, as ZODB's is: no JS object or Map entry per oid.
//
// Layout: oids are grouped in pages of 4096 consecutive oids (the oid without its low 12 bits, a number below
// 2^52, names the page; pages are found through a Map and, for ordered walks, a sorted list of page numbers
// built lazily). A page is either
//   - sparse: one sorted Float64Array of entries `low12 * 2^41 + position` (the low 12 bits of the oid above
//     a position below 2^41, in a double's 53 exact bits: sorting the numbers sorts the oids), grown by half,
//     used up to 2048 entries: 8 bytes an entry plus the growth slack, and inserts move at most 16 KB; or
//   - dense: one Float64Array(4096) of positions indexed by the low 12 bits, 0 meaning absent (no record
//     lives at position 0): 32 KB, so 8 bytes an entry when full, 16 at worst. A page holding a position
//     from 2^41 (2 TiB) on is always dense.
// ZODB allocates oids from a counter, so real indexes are almost all dense pages: about 8 bytes an object;
// oids thinned out by packs make sparse pages (1 live oid in 100: about 17 bytes an object). Positions are
// limited to 48 bits, as in ZODB's fsIndex (and its index file).
//
// Pages filled from an index file (setBucket) start out unread: a dense page that only refers to its part of
// the file's bucket bytes (2-byte suffixes, 6-byte positions: 8 bytes an entry, as a read page), read into
// its Float64Array the first time the page is used. Opening a storage from its index file then costs no work
// per object (ZODB's fsBucket.fromString is a memcpy in C; a loop over a million entries is not free in JS,
// least of all before the JIT has warmed up). The file's bytes stay referenced until the last such page is
// read; a position of 0 in them (an index file that is not ZODB's: no record lives at 0) reads as absent.
//
// Buckets may also be deferred (deferBucket): their bytes are still in the index file, read in the
// background or when first needed (a BucketSource, see indexfile.ts), so that opening a storage reads only
// the index file's structure. Their oids count in `size`, but nothing else may touch them before they are
// attached: `pending(hi, lo)` (or pendingOid) gives the promise to await first (null when there is nothing
// to wait for), `pendingAll()` the one for every bucket; get, set and delete of an oid in a deferred bucket,
// and every walk in oid order while buckets are deferred, throw.

import type { Oid } from '../ids.js';

const PAGE_BITS = 12;
const PAGE_SIZE = 1 << PAGE_BITS;
const LOW_MASK = PAGE_SIZE - 1;
/** hi * this + (lo >>> PAGE_BITS) is the page number */
const HI_MUL = 2 ** (32 - PAGE_BITS);
/** a sparse entry is low * SPAN + position */
const SPAN = 2 ** 41;
/** a sparse page that would grow past this many entries becomes dense */
const SPARSE_MAX = 2048;
/** a dense page that shrinks below this many entries becomes sparse (when its positions allow) */
const SPARSE_MIN = 512;
const FIRST_CAPACITY = 4;
/** a sparse page growing past this many entries, holding at least every other oid so far, becomes dense */
const EARLY_DENSE = 256;
/** ZODB's fsIndex keeps 6-byte positions */
export const MAX_INDEX_POS = 2 ** 48 - 1;

const NO_VALS = new Float64Array(0);

class Page {
  /** entries in the page */
  n = 0;
  dense: boolean;
  /** sparse: sorted entries low * SPAN + position (valid up to n); dense: PAGE_SIZE positions, 0 = absent */
  vals: Float64Array;
  /**
   * An unread page (dense, vals empty): the bucket bytes holding its entries, which are entries
   * [rawFrom, rawFrom + n) of a bucket of rawCount entries. null once read (see FsIndex.read).
   */
  raw: DataView | null = null;
  rawFrom = 0;
  rawCount = 0;
  /** the page's 4 high suffix bits: entries of the bucket bytes without them are not the page's */
  rawBits = 0;

  constructor(dense: boolean, capacity = FIRST_CAPACITY) {
    this.dense = dense;
    this.vals = capacity === 0 ? NO_VALS : new Float64Array(dense ? PAGE_SIZE : capacity);
  }

  clone(): Page {
    const p = new Page(this.dense, 0);
    p.n = this.n;
    if (this.raw !== null) {
      // the bucket bytes are never written: share them
      p.raw = this.raw;
      p.rawFrom = this.rawFrom;
      p.rawCount = this.rawCount;
      p.rawBits = this.rawBits;
      return p;
    }
    p.vals = this.dense ? this.vals.slice() : this.vals.slice(0, Math.max(FIRST_CAPACITY, this.n));
    return p;
  }
}

/** The index of the first sparse entry of a key >= k in vals[0..n) (n when none). */
function lowerBound(vals: Float64Array, n: number, k: number): number {
  const x = k * SPAN;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (vals[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function keyOf(e: number): number {
  return Math.floor(e / SPAN);
}

function posOf(e: number): number {
  return e % SPAN;
}

function oidHi(oid: Uint8Array): number {
  if (oid.length !== 8) throw new RangeError(`an oid has 8 bytes, not ${oid.length}`);
  return ((oid[0] << 24) | (oid[1] << 16) | (oid[2] << 8) | oid[3]) >>> 0;
}

function oidLo(oid: Uint8Array): number {
  return ((oid[4] << 24) | (oid[5] << 16) | (oid[6] << 8) | oid[7]) >>> 0;
}

function makeOid(prefix: number, low: number): Oid {
  const hi = Math.floor(prefix / HI_MUL);
  const lo = (((prefix % HI_MUL) << PAGE_BITS) | low) >>> 0;
  const out = new Uint8Array(8);
  out[0] = hi >>> 24;
  out[1] = (hi >>> 16) & 0xff;
  out[2] = (hi >>> 8) & 0xff;
  out[3] = hi & 0xff;
  out[4] = lo >>> 24;
  out[5] = (lo >>> 16) & 0xff;
  out[6] = (lo >>> 8) & 0xff;
  out[7] = lo & 0xff;
  return out;
}

function checkPos(pos: number): void {
  if (!(pos >= 1 && pos <= MAX_INDEX_POS && Number.isInteger(pos))) {
    throw new RangeError(`an index position is an integer from 1 to 2^48-1, not ${pos}`);
  }
}

/**
 * Where the bytes of an index's deferred buckets are (an index file being read: see indexfile.ts). Buckets are
 * named by their key: the top 48 bits of their oids, hi * 65536 + mid.
 */
export interface BucketSource {
  /** Reads the bucket and attaches it (FsIndex.attachBucket); rejects, leaving it deferred, when it cannot. */
  load(key: number): Promise<void>;
  /** Loads every deferred bucket. */
  loadAll(): Promise<void>;
  /**
   * The position of the oid with 2-byte suffix `suffix` in the deferred bucket, -1 when absent, read without
   * loading the bucket (a few small synchronous reads: for the checks made while a storage opens).
   */
  probe(key: number, suffix: number): number;
  /** The deferred bucket's last entry, [suffix, position], read as probe() reads. */
  probeLast(key: number): [number, number];
  /** Stops reading (reads in flight finish first); loads asked for afterwards reject. */
  close(): Promise<void>;
}

/** An oid in a deferred bucket was used before the bucket was loaded: await FsIndex.pending() first. */
export class IndexNotLoadedError extends Error {
  override name = 'IndexNotLoadedError';
}

/** oid -> file position, in oid order. Positions are >= 1; get() answers -1 for an absent oid. */
export class FsIndex {
  private pages = new Map<number, Page>();
  /** deferred buckets (see the top of this file): key -> number of entries; null when there are none */
  private deferred: Map<number, number> | null = null;
  private source: BucketSource | null = null;
  /** the page numbers in order, or null when they must be sorted again */
  private sorted: number[] | null = [];
  private count = 0;
  // the page of the last lookup, for runs of oids in the same page
  private lastPrefix = -1;
  private lastPage: Page | undefined = undefined;

  /** The number of oids. */
  get size(): number {
    return this.count;
  }

  get(oid: Oid): number {
    return this.getHiLo(oidHi(oid), oidLo(oid));
  }

  has(oid: Oid): boolean {
    return this.getHiLo(oidHi(oid), oidLo(oid)) !== -1;
  }

  set(oid: Oid, pos: number): void {
    this.setHiLo(oidHi(oid), oidLo(oid), pos);
  }

  /** Removes the oid; false when it was absent. */
  delete(oid: Oid): boolean {
    return this.deleteHiLo(oidHi(oid), oidLo(oid));
  }

  clear(): void {
    this.checkLoaded('clear');
    this.pages.clear();
    this.sorted = [];
    this.count = 0;
    this.lastPrefix = -1;
    this.lastPage = undefined;
  }

  /** get() for the oid given as its high and low 32 bits (unsigned): no allocation. */
  getHiLo(hi: number, lo: number): number {
    const prefix = hi * HI_MUL + (lo >>> PAGE_BITS);
    let page: Page | undefined;
    if (prefix === this.lastPrefix) {
      page = this.lastPage;
    } else {
      page = this.pages.get(prefix);
      this.lastPrefix = prefix;
      this.lastPage = page;
    }
    if (page === undefined) {
      if (this.deferred !== null) this.checkNotDeferred(hi, lo);
      return -1;
    }
    if (page.raw !== null) this.read(page);
    const k = lo & LOW_MASK;
    const vals = page.vals;
    if (page.dense) {
      const v = vals[k];
      return v === 0 ? -1 : v;
    }
    const n = page.n;
    const i = lowerBound(vals, n, k);
    if (i < n) {
      const e = vals[i];
      const rel = e - k * SPAN;
      if (rel < SPAN) return rel;
    }
    return -1;
  }

  /** set() for the oid given as its high and low 32 bits (unsigned). */
  setHiLo(hi: number, lo: number, pos: number): void {
    checkPos(pos);
    const prefix = hi * HI_MUL + (lo >>> PAGE_BITS);
    let page: Page | undefined;
    if (prefix === this.lastPrefix) {
      page = this.lastPage;
    } else {
      page = this.pages.get(prefix);
    }
    if (page === undefined) {
      if (this.deferred !== null) this.checkNotDeferred(hi, lo);
      page = new Page(pos >= SPAN);
      this.pages.set(prefix, page);
      const sorted = this.sorted;
      if (sorted !== null) {
        if (sorted.length === 0 || prefix > sorted[sorted.length - 1]) sorted.push(prefix);
        else this.sorted = null;
      }
    } else if (page.raw !== null) {
      this.read(page);
    }
    this.lastPrefix = prefix;
    this.lastPage = page;
    const k = lo & LOW_MASK;
    if (!page.dense) {
      let vals = page.vals;
      const n = page.n;
      const e = k * SPAN + pos;
      let i: number;
      if (n === 0 || vals[n - 1] < k * SPAN) {
        i = n; // appending: the usual case, oids come from a counter
      } else {
        i = lowerBound(vals, n, k);
        if (i < n && vals[i] - k * SPAN < SPAN) {
          if (pos < SPAN) {
            vals[i] = e;
            return;
          }
          i = -1; // a position that needs the dense form
        }
      }
      if (i >= 0 && n < SPARSE_MAX && pos < SPAN) {
        if (n === vals.length) {
          // a page filling up from its start (a counter's oids): dense now rather than after more copies
          if (n >= EARLY_DENSE && i === n && k < 2 * n) {
            toDense(page);
            vals = page.vals;
            vals[k] = pos;
            page.n = n + 1;
            this.count++;
            return;
          }
          const grown = new Float64Array(Math.max(FIRST_CAPACITY, n + (n >> 1)));
          grown.set(vals);
          page.vals = vals = grown;
        }
        if (i < n) vals.copyWithin(i + 1, i, n);
        vals[i] = e;
        page.n = n + 1;
        this.count++;
        return;
      }
      toDense(page);
    }
    const vals = page.vals;
    if (vals[k] === 0) {
      page.n++;
      this.count++;
    }
    vals[k] = pos;
  }

  /**
   * Sets the oids of one ZODB index group (fsIndex's prefix -> fsBucket): the oids whose top 48 bits are
   * `hi` and `mid` (16 bits), whose 2-byte suffixes are `bucket[0 .. 2n)` in increasing order, followed by
   * their 6-byte positions (fsBucket.toString()). A run of entries that has a page to itself is kept unread
   * (a view of `bucket`, which must not change after) until the page is first used; other entries are set
   * at once (RangeError for a position of 0 among them).
   */
  setBucket(hi: number, mid: number, bucket: Uint8Array, zeroIsAbsent = false): void {
    const n = bucket.length >>> 3;
    if (bucket.length !== n * 8) throw new RangeError('an fsBucket string has 8 bytes per entry');
    // DataView reads: one call per 2-, 4- or 6-byte field instead of a load and a shift per byte (this loop
    // is what reading Data.fs.index costs: a million entries for a million objects)
    const dv = new DataView(bucket.buffer, bucket.byteOffset, bucket.byteLength);
    const posBase = 2 * n;
    const loHigh = (mid << 16) >>> 0;
    let i = 0;
    while (i < n) {
      const suffix = dv.getUint16(2 * i);
      const lo = (loHigh | suffix) >>> 0;
      const prefix = hi * HI_MUL + (lo >>> PAGE_BITS);
      // the run of entries in this page: the suffixes are in order, so a binary search finds its end (a
      // loop over every entry here would cost what the unread pages save)
      const pageBits = suffix >>> PAGE_BITS;
      let j = i + 1;
      let hiJ = n;
      while (j < hiJ) {
        const m = (j + hiJ) >>> 1;
        if (dv.getUint16(2 * m) >>> PAGE_BITS === pageBits) j = m + 1;
        else hiJ = m;
      }
      if (j - i > EARLY_DENSE && !this.pages.has(prefix)) {
        // a page of its own: left unread (see the top of this file)
        const page = new Page(true, 0);
        page.raw = dv;
        page.rawFrom = i;
        page.rawCount = n;
        page.rawBits = pageBits;
        page.n = j - i;
        this.count += j - i;
        this.pages.set(prefix, page);
        const sorted = this.sorted;
        if (sorted !== null) {
          if (sorted.length === 0 || prefix > sorted[sorted.length - 1]) sorted.push(prefix);
          else this.sorted = null;
        }
        this.lastPrefix = -1;
        this.lastPage = undefined;
      } else {
        for (let e = i, o = posBase + 6 * i; e < j; e++, o += 6) {
          const pos = dv.getUint16(o) * 0x100000000 + dv.getUint32(o + 2);
          if (pos === 0 && zeroIsAbsent) continue;
          this.setHiLo(hi, (loHigh | dv.getUint16(2 * e)) >>> 0, pos);
        }
      }
      i = j;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // deferred buckets

  /**
   * Registers the bucket of the oids whose top 48 bits are `hi` and `mid` (16 bits) as deferred: its `n`
   * entries are in `source`, which attaches them later (attachBucket). RangeError when the index already has
   * oids there.
   */
  deferBucket(hi: number, mid: number, n: number, source: BucketSource): void {
    const key = hi * 65536 + mid;
    const first = hi * HI_MUL + mid * 16;
    let taken = this.deferred?.has(key) ?? false;
    for (let i = 0; i < 16 && !taken; i++) taken = this.pages.has(first + i);
    if (taken) throw new RangeError(`the index already has oids of bucket ${key}`);
    if (this.source !== null && this.source !== source)
      throw new RangeError('one source of deferred buckets');
    this.deferred ??= new Map();
    this.deferred.set(key, n);
    this.source = source;
    this.count += n;
  }

  /**
   * The bytes of a deferred bucket (as setBucket takes them), from its source: the bucket becomes an ordinary
   * one. A position of 0 in them reads as absent (no record lives at 0: not an index ZODB wrote).
   */
  attachBucket(hi: number, mid: number, bucket: Uint8Array): void {
    const key = hi * 65536 + mid;
    const n = this.deferred?.get(key);
    if (n === undefined) throw new RangeError(`bucket ${key} is not deferred`);
    this.deferred!.delete(key);
    if (this.deferred!.size === 0) this.deferred = null;
    this.count -= n;
    this.setBucket(hi, mid, bucket, true);
  }

  /** Every bucket is in memory (none deferred). */
  get loaded(): boolean {
    return this.deferred === null;
  }

  /** What to await before using the oid (hi, lo): its bucket's load; null when it is there (or absent). */
  pending(hi: number, lo: number): Promise<void> | null {
    if (this.deferred === null) return null;
    const key = hi * 65536 + (lo >>> 16);
    return this.deferred.has(key) ? this.source!.load(key) : null;
  }

  /** pending() for an oid. */
  pendingOid(oid: Oid): Promise<void> | null {
    if (this.deferred === null) return null;
    return this.pending(oidHi(oid), oidLo(oid));
  }

  /** What to await before using the whole index: the load of every deferred bucket; null when none is. */
  pendingAll(): Promise<void> | null {
    return this.deferred === null ? null : this.source!.loadAll();
  }

  /** Releases the source of deferred buckets (see BucketSource.close); they can no longer be loaded. */
  async dispose(): Promise<void> {
    const source = this.source;
    this.source = null;
    if (source !== null) {
      await source.close();
      // (buckets still deferred stay so: using them throws, loads reject)
      if (this.deferred !== null) this.source = source;
    }
  }

  /**
   * get() while a storage opens: an oid in a deferred bucket is looked up in the source (BucketSource.probe)
   * without loading the bucket. Same answer as get() once it is loaded, for buckets as ZODB writes them
   * (suffixes in increasing order).
   */
  peekHiLo(hi: number, lo: number): number {
    if (this.deferred !== null) {
      const key = hi * 65536 + (lo >>> 16);
      if (this.deferred.has(key)) return this.source!.probe(key, lo & 0xffff);
    }
    return this.getHiLo(hi, lo);
  }

  /**
   * maxOid() while buckets are deferred, when it can be told without loading any: the highest bucket is a
   * deferred one whose last entry has a position (probed). Null when it cannot: load everything, then ask
   * maxOid().
   */
  peekMaxOid(): Oid | null {
    if (this.deferred === null) return this.maxOid();
    let top = -1;
    for (const key of this.deferred.keys()) if (key > top) top = key;
    // pages above every deferred bucket: the largest oid is in the highest of them that has one
    const above: number[] = [];
    for (const prefix of this.pages.keys()) if (Math.floor(prefix / 16) > top) above.push(prefix);
    above.sort((a, b) => b - a);
    for (const prefix of above) {
      const k = lastInPage(this.pageAt(prefix), LOW_MASK);
      if (k >= 0) return makeOid(prefix, k);
    }
    const [suffix, pos] = this.source!.probeLast(top);
    if (pos <= 0) return null;
    const hi = Math.floor(top / 65536);
    const lo = ((top % 65536) * 65536 + suffix) >>> 0;
    return makeOid(hi * HI_MUL + (lo >>> PAGE_BITS), lo & LOW_MASK);
  }

  private checkNotDeferred(hi: number, lo: number): void {
    if (this.deferred!.has(hi * 65536 + (lo >>> 16))) {
      throw new IndexNotLoadedError(
        `the index bucket of oid ${hi}:${lo} is not loaded yet (await FsIndex.pending first)`,
      );
    }
  }

  private checkLoaded(what: string): void {
    if (this.deferred !== null) {
      throw new IndexNotLoadedError(
        `${what}: ${this.deferred.size} index buckets are not loaded yet (await FsIndex.pendingAll first)`,
      );
    }
  }

  // ------------------------------------------------------------------------------------------------------

  /** Reads an unread page's entries from its bucket bytes into a dense Float64Array. */
  private read(page: Page): void {
    const dv = page.raw!;
    const vals = new Float64Array(PAGE_SIZE);
    const posBase = 2 * page.rawCount;
    const end = page.rawFrom + page.n;
    let added = 0;
    const bits = page.rawBits;
    for (let e = page.rawFrom, o = posBase + 6 * page.rawFrom; e < end; e++, o += 6) {
      const pos = dv.getUint16(o) * 0x100000000 + dv.getUint32(o + 2);
      const suffix = dv.getUint16(2 * e);
      // (bucket bytes out of order, which ZODB never writes, would put another page's entry here: left out)
      if (suffix >>> PAGE_BITS !== bits) continue;
      const k = suffix & LOW_MASK;
      if (vals[k] === 0 && pos !== 0) added++;
      vals[k] = pos;
    }
    this.count += added - page.n;
    page.n = added;
    page.vals = vals;
    // (a page of nothing but zeros stays, empty: harmless, and walks in progress keep their page list)
    page.raw = null;
  }

  /** The page `prefix` names, read (it must exist). */
  private pageAt(prefix: number): Page {
    const page = this.pages.get(prefix)!;
    if (page.raw !== null) this.read(page);
    return page;
  }

  /** Reads every unread page (see the top of this file): afterwards the bucket bytes are not referenced. */
  readAll(): void {
    this.checkLoaded('readAll');
    for (const page of [...this.pages.values()]) if (page.raw !== null) this.read(page);
  }

  /** delete() for the oid given as its high and low 32 bits. */
  deleteHiLo(hi: number, lo: number): boolean {
    const prefix = hi * HI_MUL + (lo >>> PAGE_BITS);
    const page = this.pages.get(prefix);
    if (page === undefined) {
      if (this.deferred !== null) this.checkNotDeferred(hi, lo);
      return false;
    }
    if (page.raw !== null) this.read(page);
    const k = lo & LOW_MASK;
    const vals = page.vals;
    if (page.dense) {
      if (vals[k] === 0) return false;
      vals[k] = 0;
      page.n--;
    } else {
      const n = page.n;
      const i = lowerBound(vals, n, k);
      if (i === n || vals[i] - k * SPAN >= SPAN) return false;
      vals.copyWithin(i, i + 1, n);
      page.n = n - 1;
    }
    this.count--;
    if (page.n === 0) {
      this.pages.delete(prefix);
      this.lastPrefix = -1;
      this.lastPage = undefined;
      const sorted = this.sorted;
      if (sorted !== null) sorted.splice(lowerBoundNumbers(sorted, prefix), 1);
    } else if (page.dense && page.n < SPARSE_MIN) {
      toSparse(page);
    }
    return true;
  }

  private sortedPrefixes(): number[] {
    this.checkLoaded('a walk in oid order');
    if (this.sorted === null) this.sorted = [...this.pages.keys()].sort((a, b) => a - b);
    return this.sorted;
  }

  /**
   * The smallest oid >= `from` (the smallest oid when from is null/undefined), or null when there is none.
   * fsIndex.minKey, except that it answers null where ZODB raises ValueError.
   */
  minKey(from?: Oid | null): Oid | null {
    const sorted = this.sortedPrefixes();
    if (sorted.length === 0) return null;
    let start = 0;
    let fromPrefix = -1;
    let fromLow = 0;
    if (from != null) {
      const hi = oidHi(from);
      const lo = oidLo(from);
      fromPrefix = hi * HI_MUL + (lo >>> PAGE_BITS);
      fromLow = lo & LOW_MASK;
      start = lowerBoundNumbers(sorted, fromPrefix);
    }
    for (let j = start; j < sorted.length; j++) {
      const prefix = sorted[j];
      const page = this.pageAt(prefix);
      const low = prefix === fromPrefix ? fromLow : 0;
      const k = firstInPage(page, low);
      if (k >= 0) return makeOid(prefix, k);
    }
    return null;
  }

  /** The largest oid <= `upTo` (the largest oid when upTo is null/undefined), or null when there is none. */
  maxKey(upTo?: Oid | null): Oid | null {
    const sorted = this.sortedPrefixes();
    if (sorted.length === 0) return null;
    let start = sorted.length - 1;
    let toPrefix = -1;
    let toLow = LOW_MASK;
    if (upTo != null) {
      const hi = oidHi(upTo);
      const lo = oidLo(upTo);
      toPrefix = hi * HI_MUL + (lo >>> PAGE_BITS);
      toLow = lo & LOW_MASK;
      start = lowerBoundNumbers(sorted, toPrefix + 1) - 1;
    }
    for (let j = start; j >= 0; j--) {
      const prefix = sorted[j];
      const page = this.pageAt(prefix);
      const k = lastInPage(page, prefix === toPrefix ? toLow : LOW_MASK);
      if (k >= 0) return makeOid(prefix, k);
    }
    return null;
  }

  /** The largest oid, or 8 zero bytes for an empty index (what read_index returns as maxoid). */
  maxOid(): Oid {
    return this.maxKey() ?? new Uint8Array(8);
  }

  /**
   * Calls fn(hi, lo, pos) for every oid in order (hi and lo: the oid's two 32-bit halves), from `from` on
   * when given. The index must not change during the walk.
   */
  forEach(fn: (hi: number, lo: number, pos: number) => void, from?: Oid | null): void {
    const sorted = this.sortedPrefixes();
    let start = 0;
    let fromPrefix = -1;
    let fromLow = 0;
    if (from != null) {
      const lo = oidLo(from);
      fromPrefix = oidHi(from) * HI_MUL + (lo >>> PAGE_BITS);
      fromLow = lo & LOW_MASK;
      start = lowerBoundNumbers(sorted, fromPrefix);
    }
    for (let j = start; j < sorted.length; j++) {
      const prefix = sorted[j];
      const page = this.pageAt(prefix);
      const hi = Math.floor(prefix / HI_MUL);
      const loBase = (prefix % HI_MUL) * PAGE_SIZE;
      const minLow = prefix === fromPrefix ? fromLow : 0;
      const vals = page.vals;
      if (page.dense) {
        for (let k = minLow; k < PAGE_SIZE; k++) {
          const v = vals[k];
          if (v !== 0) fn(hi, loBase + k, v);
        }
      } else {
        for (let i = minLow ? lowerBound(vals, page.n, minLow) : 0; i < page.n; i++) {
          const e = vals[i];
          const k = keyOf(e);
          fn(hi, loBase + k, e - k * SPAN);
        }
      }
    }
  }

  /** [oid, position] pairs in oid order, from `from` on when given (fsIndex.iteritems; itemsFrom). */
  *entries(from?: Oid | null): IterableIterator<[Oid, number]> {
    const sorted = this.sortedPrefixes().slice();
    let start = 0;
    let fromPrefix = -1;
    let fromLow = 0;
    if (from != null) {
      const lo = oidLo(from);
      fromPrefix = oidHi(from) * HI_MUL + (lo >>> PAGE_BITS);
      fromLow = lo & LOW_MASK;
      start = lowerBoundNumbers(sorted, fromPrefix);
    }
    for (let j = start; j < sorted.length; j++) {
      const prefix = sorted[j];
      let low = prefix === fromPrefix ? fromLow : 0;
      // look the page up again after each yield: the caller may have changed the index in between
      for (;;) {
        const page = this.pages.get(prefix);
        if (page === undefined) break;
        if (page.raw !== null) this.read(page);
        const k = firstInPage(page, low);
        if (k < 0) break;
        yield [makeOid(prefix, k), this.getInPage(page, k)];
        low = k + 1;
        if (low > LOW_MASK) break;
      }
    }
  }

  /** entries() from the first oid >= `from`. */
  itemsFrom(from: Oid | null): IterableIterator<[Oid, number]> {
    return this.entries(from);
  }

  *keys(): IterableIterator<Oid> {
    for (const [oid] of this.entries()) yield oid;
  }

  [Symbol.iterator](): IterableIterator<[Oid, number]> {
    return this.entries();
  }

  private getInPage(page: Page, k: number): number {
    if (page.dense) return page.vals[k];
    return posOf(page.vals[lowerBound(page.vals, page.n, k)]);
  }

  /** An independent copy. */
  clone(): FsIndex {
    this.checkLoaded('clone');
    const c = new FsIndex();
    for (const [prefix, page] of this.pages) c.pages.set(prefix, page.clone());
    c.sorted = this.sorted === null ? null : this.sorted.slice();
    c.count = this.count;
    return c;
  }

  /** Sets every entry of `src` (another index, or [oid, position] pairs) in this one. */
  update(src: FsIndex | Iterable<readonly [Oid, number]>): void {
    if (src instanceof FsIndex) {
      if (src === this) return;
      src.forEach((hi, lo, pos) => this.setHiLo(hi, lo, pos));
      return;
    }
    for (const [oid, pos] of src) this.set(oid, pos);
  }

  /** The bytes held by the typed arrays of the pages (the index's memory, without small per-page objects). */
  arrayBytes(): number {
    let n = 0;
    for (const page of this.pages.values()) n += page.raw !== null ? 8 * page.n : page.vals.byteLength;
    return n;
  }

  /** Number of pages (for tests and measurements). */
  pageCount(): number {
    return this.pages.size;
  }
}

function firstInPage(page: Page, low: number): number {
  const vals = page.vals;
  if (page.dense) {
    for (let k = low; k < PAGE_SIZE; k++) if (vals[k] !== 0) return k;
    return -1;
  }
  const i = lowerBound(vals, page.n, low);
  return i < page.n ? keyOf(vals[i]) : -1;
}

function lastInPage(page: Page, high: number): number {
  const vals = page.vals;
  if (page.dense) {
    for (let k = high; k >= 0; k--) if (vals[k] !== 0) return k;
    return -1;
  }
  const i = lowerBound(vals, page.n, high + 1) - 1;
  return i >= 0 ? keyOf(vals[i]) : -1;
}

function toDense(page: Page): void {
  const dense = new Float64Array(PAGE_SIZE);
  const vals = page.vals;
  for (let i = 0; i < page.n; i++) {
    const e = vals[i];
    const k = keyOf(e);
    dense[k] = e - k * SPAN;
  }
  page.dense = true;
  page.vals = dense;
}

/** Makes a dense page sparse again, unless it holds a position the sparse form cannot. */
function toSparse(page: Page): void {
  const dense = page.vals;
  for (let k = 0; k < PAGE_SIZE; k++) if (dense[k] >= SPAN) return;
  const vals = new Float64Array(Math.max(FIRST_CAPACITY, page.n + (page.n >> 1)));
  let j = 0;
  for (let k = 0; k < PAGE_SIZE; k++) {
    const v = dense[k];
    if (v !== 0) vals[j++] = k * SPAN + v;
  }
  page.dense = false;
  page.vals = vals;
}

function lowerBoundNumbers(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
