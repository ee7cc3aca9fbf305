// Cache verification on (re)connect, as ZEO's ClientIO.verify: the cache's last tid against the server's.
// Newer than the server: refuse (the cache belongs to another history); equal: nothing to do; older: ask the
// server what changed since (getInvalidations) and forget those objects, or drop the whole cache when the
// server cannot say (its invalidation queue does not reach back that far).

import type { PickleValue } from '../pickle/index.js';
import { compareIds, tidRepr, type Oid, type Tid } from '../storage/ids.js';
import { idOf, sequenceOf } from './replies.js';

/** What verification needs of the cache (ClientCache's methods). */
export interface VerifiedCache {
  readonly length: number;
  getLastTid(): Tid | null;
  invalidate(oid: Oid, tid: Tid | null): void;
  clear(): void;
}

/** The cache has seen transactions the server has not: it belongs to another database (or a restored one). */
export class CacheAheadOfServerError extends Error {
  override name = 'CacheAheadOfServerError';
  constructor(
    readonly cacheTid: Tid,
    readonly serverTid: Tid,
    readonly cacheFile: string | null,
  ) {
    super(
      `the client cache is out of sync with the server: it has seen transaction ${tidRepr(cacheTid)}, the ` +
        `server's last is ${tidRepr(serverTid)}. If the server's data was restored or replaced on purpose, ` +
        `remove the cache file${cacheFile ? ` (${cacheFile})` : ' (the .zec file)'} and connect again; ` +
        `otherwise this client is talking to the wrong server.`,
    );
  }
}

export type VerifyResult =
  | 'empty cache'
  | 'Non-empty cache w/o tid'
  | 'Cache up to date'
  | 'quick verification'
  | 'cache too old, clearing'
  | 'cache dropped rather than verified';

export interface Verified {
  result: VerifyResult;
  /** the server's tid the cache is now valid for */
  serverTid: Tid;
  /** quick verification: the objects changed since the cache's tid (already forgotten by the cache) */
  invalidated: { tid: Tid; oids: Oid[] } | null;
  /** the cache was emptied: everything the application holds may be stale */
  cleared: boolean;
}

export async function verifyCache(
  cache: VerifiedCache | null,
  serverTid: Tid,
  getInvalidations: (tid: Tid) => Promise<PickleValue>,
  options: { dropCacheRatherVerify?: boolean; cacheFile?: string | null } = {},
): Promise<Verified> {
  const verified = (result: VerifyResult, cleared = false): Verified => ({
    result,
    serverTid,
    invalidated: null,
    cleared,
  });
  // as ZEO (`if cache:`): an empty cache has nothing to verify, whatever last tid it remembers; it follows the
  // server (an empty cache accepts any last tid)
  if (!cache || cache.length === 0) return verified('empty cache');
  const cacheTid = cache.getLastTid();
  if (cacheTid === null) {
    cache.clear();
    return verified('Non-empty cache w/o tid', true);
  }
  const order = compareIds(cacheTid, serverTid);
  if (order > 0) throw new CacheAheadOfServerError(cacheTid, serverTid, options.cacheFile ?? null);
  if (order === 0) return verified('Cache up to date');
  if (options.dropCacheRatherVerify) {
    cache.clear();
    return verified('cache dropped rather than verified', true);
  }
  const vdata = await getInvalidations(cacheTid);
  if (vdata === null || vdata === undefined || (Array.isArray(vdata) && vdata.length === 0)) {
    cache.clear();
    return verified('cache too old, clearing', true);
  }
  const [tidValue, oidsValue] = sequenceOf(vdata, 'getInvalidations');
  const tid = idOf(tidValue, 'getInvalidations');
  const oids = sequenceOf(oidsValue, 'getInvalidations').map((o) => idOf(o, 'getInvalidations'));
  for (const oid of oids) cache.invalidate(oid, null);
  return { result: 'quick verification', serverTid: tid, invalidated: { tid, oids }, cleared: false };
}
