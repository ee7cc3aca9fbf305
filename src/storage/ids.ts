// Object ids and transaction ids: 8 bytes, big-endian unsigned (ZODB's p64/u64), so byte order is numeric order.

export type Oid = Uint8Array;
export type Tid = Uint8Array;

/** Eight zero bytes: the root object's oid, and "no serial" for a new object. */
export const z64: Uint8Array = new Uint8Array(8);

/** The largest tid, as ZODB's maxtid (used as "current" in loadBefore). */
export const maxtid: Uint8Array = new Uint8Array([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export function p64(n: bigint | number): Uint8Array {
  const out = new Uint8Array(8);
  if (typeof n === 'number' && n >= 0 && n <= Number.MAX_SAFE_INTEGER && Number.isInteger(n)) {
    // (no BigInt nor DataView for the common case: oids are made by the thousand)
    const hi = Math.floor(n / 0x100000000);
    const lo = n >>> 0;
    out[1] = hi >>> 16;
    out[2] = hi >>> 8;
    out[3] = hi;
    out[4] = lo >>> 24;
    out[5] = lo >>> 16;
    out[6] = lo >>> 8;
    out[7] = lo;
    return out;
  }
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

export function u64(b: Uint8Array): bigint {
  if (b.length !== 8) throw new RangeError(`an oid or tid has 8 bytes, not ${b.length}`);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
}

/** Compares two 8-byte ids as numbers: <0, 0, >0. */
export function compareIds(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 8; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return 0;
}

export function idEquals(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** 16 hex digits, as `zeo dump --json` and logs print ids. */
export function idHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, 8).toString('hex');
}

export function idFromHex(s: string): Uint8Array {
  if (!/^[0-9a-fA-F]{16}$/.test(s)) throw new RangeError(`an id is 16 hex digits, not ${JSON.stringify(s)}`);
  return new Uint8Array(Buffer.from(s, 'hex'));
}

/** ZODB.utils.oid_repr / tid_repr: '0x' and the hex digits without leading zeros, at least two. */
export function oidRepr(b: Uint8Array): string {
  const hex = u64(b).toString(16);
  return '0x' + (hex.length % 2 ? '0' + hex : hex);
}
export const tidRepr = oidRepr;

/** A copy that owns its bytes (ids read from a file or a frame are views that must not be kept). */
export function idCopy(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(8);
  // (a loop: a subarray view to set from costs more than the eight bytes)
  for (let i = 0; i < 8; i++) out[i] = b[i];
  return out;
}
