// Client cache access traces, replayed the same way through our ClientCache and through ZEO's (the oracle), to
// compare hit rates at the same byte size. A trace is what a ZEO client does to its cache: a load per access
// (stored as the current revision on a miss), and commits by others that invalidate some oids and move the
// last tid.

import { ClientCache } from '../../src/client/cache.js';
import { p64 } from '../../src/storage/ids.js';
import type { Oracle } from './oracle.js';
import { mulberry32 } from './prng.js';

export interface TraceOptions {
  seed: number;
  /** distinct oids */
  objects: number;
  accesses: number;
  /** the Zipf exponent of the access skew (0: uniform) */
  skew: number;
  /** chance per access that a commit (of 1..3 oids, drawn with the same skew) comes in first */
  writeRate: number;
  /** object sizes are log-uniform in [minSize, maxSize] */
  minSize?: number;
  maxSize?: number;
  /** the popular set moves: every `shiftEvery` accesses the ranks rotate by `shiftBy` (0: never) */
  shiftEvery?: number;
  shiftBy?: number;
  /** every `scanEvery` accesses, a sequential scan of `scanLength` oids from a random place (0: none) */
  scanEvery?: number;
  scanLength?: number;
}

export interface Trace {
  /** 13 bytes per op: kind u8 (0 access, 1 invalidate, 2 set last tid), oid u32, tid u32, size u32 */
  ops: Buffer;
  count: number;
  /** the bytes of every object once: cache sizes are given as a share of it */
  totalBytes: number;
}

export const ACCESS = 0;
export const INVALIDATE = 1;
export const SET_LAST_TID = 2;

export function makeTrace(o: TraceOptions): Trace {
  const rnd = mulberry32(o.seed);
  const n = o.objects;
  const minSize = o.minSize ?? 64;
  const maxSize = o.maxSize ?? 4096;
  const sizes = new Uint32Array(n);
  let totalBytes = 0;
  for (let i = 0; i < n; i++) {
    sizes[i] = Math.floor(Math.exp(Math.log(minSize) + rnd() * (Math.log(maxSize) - Math.log(minSize))));
    totalBytes += sizes[i];
  }
  // rank -> oid: a random permutation, so popularity is not in oid order
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += 1 / Math.pow(i + 1, o.skew);
    cdf[i] = acc;
  }
  const rank = (): number => {
    const x = rnd() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const startTid = new Uint32Array(n).fill(1);
  let tid = 1;
  let shift = 0;
  const ops: number[] = [];
  const push = (kind: number, oid: number, t: number, size: number): void => {
    ops.push(kind, oid, t, size);
  };
  push(SET_LAST_TID, 0, tid, 0);
  const access = (oid: number): void => push(ACCESS, oid, startTid[oid], sizes[oid]);
  for (let i = 0; i < o.accesses; i++) {
    if (o.shiftEvery && i > 0 && i % o.shiftEvery === 0) shift = (shift + (o.shiftBy ?? 1)) % n;
    if (o.scanEvery && i > 0 && i % o.scanEvery === 0) {
      const from = Math.floor(rnd() * n);
      for (let k = 0; k < (o.scanLength ?? 0); k++) access((from + k) % n);
    }
    if (rnd() < o.writeRate) {
      tid++;
      const k = 1 + Math.floor(rnd() * 3);
      for (let j = 0; j < k; j++) {
        const oid = perm[(rank() + shift) % n];
        if (startTid[oid] === tid) continue;
        startTid[oid] = tid;
        push(INVALIDATE, oid, tid, 0);
      }
      push(SET_LAST_TID, 0, tid, 0);
    }
    access(perm[(rank() + shift) % n]);
  }
  const count = ops.length / 4;
  const buf = Buffer.alloc(count * 13);
  for (let i = 0; i < count; i++) {
    buf[i * 13] = ops[i * 4];
    buf.writeUInt32BE(ops[i * 4 + 1], i * 13 + 1);
    buf.writeUInt32BE(ops[i * 4 + 2], i * 13 + 5);
    buf.writeUInt32BE(ops[i * 4 + 3], i * 13 + 9);
  }
  return { ops: buf, count, totalBytes };
}

export interface ReplayResult {
  hits: number;
  loads: number;
  hitRate: number;
  /** wall time of the replay, ms */
  ms: number;
}

/** Replays a trace through our ClientCache of `size` bytes. */
export function replayOurs(trace: Trace, size: number): ReplayResult {
  const cache = new ClientCache({ size });
  const oids: Uint8Array[] = [];
  const datas = new Map<number, Uint8Array>();
  const b = trace.ops;
  let hits = 0;
  let loads = 0;
  const t0 = performance.now();
  for (let i = 0; i < trace.count; i++) {
    const p = i * 13;
    const kind = b[p];
    const oidN = b.readUInt32BE(p + 1);
    const tid = b.readUInt32BE(p + 5);
    if (kind === ACCESS) {
      const oid = (oids[oidN] ??= p64(oidN));
      loads++;
      if (cache.load(oid)) {
        hits++;
      } else {
        const size = b.readUInt32BE(p + 9);
        let data = datas.get(size);
        if (!data) datas.set(size, (data = new Uint8Array(size)));
        cache.store(oid, p64(tid), null, data);
      }
    } else if (kind === INVALIDATE) {
      cache.invalidate((oids[oidN] ??= p64(oidN)), p64(tid));
    } else {
      cache.setLastTid(p64(tid));
    }
  }
  const ms = performance.now() - t0;
  return { hits, loads, hitRate: hits / loads, ms };
}

/** Replays a trace through ZEO's own ZEO.cache.ClientCache (a temporary file of `size` bytes) in the oracle. */
export async function replayZeo(oracle: Oracle, trace: Trace, size: number): Promise<ReplayResult> {
  const r = await oracle.json<[number, number, number]>(
    `
import struct, time, ZEO.cache
from ZODB.utils import p64
c = ZEO.cache.ClientCache(None, args)
hits = loads = 0
datas = {}
unpack = struct.unpack_from
t0 = time.perf_counter()
for i in range(0, len(input), 13):
    kind, oid, tid, size = unpack('>BIII', input, i)
    if kind == 0:
        o = p64(oid)
        loads += 1
        if c.load(o) is not None:
            hits += 1
        else:
            d = datas.get(size)
            if d is None:
                d = datas[size] = b'x' * size
            c.store(o, p64(tid), None, d)
    elif kind == 1:
        c.invalidate(p64(oid), p64(tid))
    else:
        c.setLastTid(p64(tid))
ms = (time.perf_counter() - t0) * 1000
c.close()
result = [hits, loads, ms]
`,
    trace.ops,
    size,
  );
  return { hits: r[0], loads: r[1], hitRate: r[0] / r[1], ms: r[2] };
}
