// The persistent client cache file (`<var>/<client>-<storage>.zec`): a snapshot of the cache, written whole
// to a temporary file, fsynced and renamed over the old one, so a reader sees the previous complete file or
// the new complete file, never a mix. Everything in it is checked before any of it is used: the magic and
// version, a header checksum, a checksum per record, and a trailer repeating the record count; the file must
// end right after the trailer. Any failure drops the whole file (the caller starts empty and says why).
//
// Layout (big-endian):
//   header  (40): magic "\x89ZEC-TS\n" (8), version u32, flags u32 (bit 0: has a last tid), last tid (8),
//                 record count u32, size of the cache that wrote it (u64, information only), crc32 of the above
//   record      : kind u8 (1 current, 2 non-current), frequency u8, 0 u16, data length u32, oid (8),
//                 start tid (8), end tid (8; zeros for current), data, crc32 of all of the record before it
//   trailer (16): "ZEC-END\n" (8), record count u32, crc32 of the header's crc and every record's crc
// The last tid is the one the content was valid for when it was captured: the client verifies the cache
// against the server from that tid when it connects.

import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { crc32 } from 'node:zlib';

export const CACHE_FILE_MAGIC = Buffer.from('\x89ZEC-TS\n', 'latin1');
export const CACHE_FILE_VERSION = 1;
const TRAILER_MAGIC = Buffer.from('ZEC-END\n', 'latin1');
const HEADER_SIZE = 40;
const RECORD_HEADER = 32;
const TRAILER_SIZE = 16;
const KIND_CURRENT = 1;
const KIND_NONCURRENT = 2;

export interface CacheFileEntry {
  oid: Uint8Array;
  start: Uint8Array;
  /** null: the current revision */
  end: Uint8Array | null;
  data: Uint8Array;
  /** the popularity estimate (0..15) it had */
  frequency: number;
}

/** What the file holds: entries coldest first, and the last tid they are valid for. */
export interface CacheSnapshot {
  lastTid: Uint8Array | null;
  entries: CacheFileEntry[];
}

/** The file is not a complete cache file of ours; the message says what is wrong. */
export class CacheFileError extends Error {
  override name = 'CacheFileError';
}

const ZERO8 = new Uint8Array(8);

/** The header, the records and the trailer, as buffers to write in order. */
export function encodeCacheFile(snap: CacheSnapshot, size = 0): Buffer[] {
  const out: Buffer[] = [];
  const header = Buffer.alloc(HEADER_SIZE);
  CACHE_FILE_MAGIC.copy(header, 0);
  header.writeUInt32BE(CACHE_FILE_VERSION, 8);
  header.writeUInt32BE(snap.lastTid ? 1 : 0, 12);
  if (snap.lastTid) header.set(snap.lastTid, 16);
  header.writeUInt32BE(snap.entries.length, 24);
  header.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(size))), 28);
  const headerCrc = crc32(header.subarray(0, 36));
  header.writeUInt32BE(headerCrc, 36);
  out.push(header);
  let all = crc32(header.subarray(36, 40));
  const crcBuf = Buffer.alloc(4);
  for (const e of snap.entries) {
    const rh = Buffer.alloc(RECORD_HEADER);
    rh[0] = e.end === null ? KIND_CURRENT : KIND_NONCURRENT;
    rh[1] = Math.max(0, Math.min(255, e.frequency | 0));
    rh.writeUInt32BE(e.data.length, 4);
    rh.set(e.oid, 8);
    rh.set(e.start, 16);
    rh.set(e.end ?? ZERO8, 24);
    const crc = crc32(e.data, crc32(rh));
    const tail = Buffer.alloc(4);
    tail.writeUInt32BE(crc, 0);
    out.push(rh, Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength), tail);
    crcBuf.writeUInt32BE(crc, 0);
    all = crc32(crcBuf, all);
  }
  const trailer = Buffer.alloc(TRAILER_SIZE);
  TRAILER_MAGIC.copy(trailer, 0);
  trailer.writeUInt32BE(snap.entries.length, 8);
  trailer.writeUInt32BE(all, 12);
  out.push(trailer);
  return out;
}

/** Reads a whole cache file; throws CacheFileError saying what is wrong when any of it does not check out. */
export function decodeCacheFile(buf: Uint8Array): CacheSnapshot {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 4 || !b.subarray(0, 4).equals(CACHE_FILE_MAGIC.subarray(0, 4))) {
    const what = b.subarray(0, 4).equals(Buffer.from('ZEC3'))
      ? "a ZEO (Python) cache file, not zeo-ts's"
      : 'not a zeo-ts cache file';
    throw new CacheFileError(`${what} (magic ${JSON.stringify(b.subarray(0, 8).toString('latin1'))})`);
  }
  if (b.length < HEADER_SIZE) throw new CacheFileError(`truncated in its header (${b.length} bytes)`);
  if (!b.subarray(0, 8).equals(CACHE_FILE_MAGIC)) {
    throw new CacheFileError('not a zeo-ts cache file (its magic is damaged: a text-mode copy?)');
  }
  const version = b.readUInt32BE(8);
  if (crc32(b.subarray(0, 36)) !== b.readUInt32BE(36))
    throw new CacheFileError('its header checksum does not match');
  if (version !== CACHE_FILE_VERSION) {
    throw new CacheFileError(
      `version ${version} of the cache file format; this zeo-ts reads version ${CACHE_FILE_VERSION}`,
    );
  }
  const flags = b.readUInt32BE(12);
  if (flags & ~1) throw new CacheFileError(`unknown header flags ${flags}`);
  const lastTid = flags & 1 ? new Uint8Array(b.subarray(16, 24)) : null;
  const n = b.readUInt32BE(24);
  if (n > 0 && lastTid === null) throw new CacheFileError(`${n} records but no last tid they are valid for`);
  let all = crc32(b.subarray(36, 40));
  let pos = HEADER_SIZE;
  const entries: CacheFileEntry[] = [];
  const currents = new Set<string>();
  for (let i = 0; i < n; i++) {
    if (pos + RECORD_HEADER + 4 > b.length)
      throw new CacheFileError(`truncated in record ${i} of ${n} (at byte ${pos})`);
    const kind = b[pos];
    const len = b.readUInt32BE(pos + 4);
    if (pos + RECORD_HEADER + len + 4 > b.length) {
      throw new CacheFileError(`truncated in record ${i} of ${n} (at byte ${pos}, ${len} bytes of data)`);
    }
    const end = pos + RECORD_HEADER + len;
    const crc = crc32(b.subarray(pos, end));
    if (crc !== b.readUInt32BE(end))
      throw new CacheFileError(`record ${i} (at byte ${pos}) fails its checksum`);
    if ((kind !== KIND_CURRENT && kind !== KIND_NONCURRENT) || b.readUInt16BE(pos + 2) !== 0) {
      throw new CacheFileError(`record ${i} (at byte ${pos}) has an unknown kind ${kind}`);
    }
    const oid = new Uint8Array(b.subarray(pos + 8, pos + 16));
    const start = new Uint8Array(b.subarray(pos + 16, pos + 24));
    let endTid: Uint8Array | null = null;
    if (kind === KIND_CURRENT) {
      const k = Buffer.from(oid).toString('hex');
      if (currents.has(k)) throw new CacheFileError(`record ${i} is a second current revision of oid ${k}`);
      currents.add(k);
    } else {
      endTid = new Uint8Array(b.subarray(pos + 24, pos + 32));
      if (Buffer.compare(start, endTid) >= 0) {
        throw new CacheFileError(`record ${i} (at byte ${pos}) ends before it starts`);
      }
    }
    entries.push({
      oid,
      start,
      end: endTid,
      // A copy, so the file's buffer is not kept alive by the entries that survive.
      data: new Uint8Array(b.subarray(pos + RECORD_HEADER, end)),
      frequency: b[pos + 1],
    });
    const crcBuf = Buffer.alloc(4);
    crcBuf.writeUInt32BE(crc, 0);
    all = crc32(crcBuf, all);
    pos = end + 4;
  }
  if (pos + TRAILER_SIZE > b.length)
    throw new CacheFileError(`truncated before its trailer (at byte ${pos})`);
  if (
    !b.subarray(pos, pos + 8).equals(TRAILER_MAGIC) ||
    b.readUInt32BE(pos + 8) !== n ||
    b.readUInt32BE(pos + 12) !== all
  ) {
    throw new CacheFileError(`its trailer (at byte ${pos}) does not match its header and records`);
  }
  if (pos + TRAILER_SIZE !== b.length) {
    throw new CacheFileError(`${b.length - pos - TRAILER_SIZE} unexpected bytes after its trailer`);
  }
  return { lastTid, entries };
}

export interface ReadCacheFileResult {
  /** null when there was no file or it was dropped */
  snapshot: CacheSnapshot | null;
  /** why an existing file was not used */
  dropReason: string | null;
}

/**
 * Reads the cache file at `path`. A file that does not check out is moved to `path.bad` (replacing an older
 * one, as ZEO does) so it is never read again, and its problem returned as dropReason.
 */
export async function readCacheFile(path: string): Promise<ReadCacheFileResult> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { snapshot: null, dropReason: null };
    throw e;
  }
  try {
    return { snapshot: decodeCacheFile(buf), dropReason: null };
  } catch (e) {
    if (!(e instanceof CacheFileError)) throw e;
    await rename(path, path + '.bad');
    return { snapshot: null, dropReason: `${path}: ${e.message}; moved to ${basename(path)}.bad` };
  }
}

/**
 * Writes the snapshot to `path` atomically: into `path.tmp`, fsynced, renamed over `path`, and the directory
 * fsynced, so a crash at any point leaves the previous complete file or the new one.
 */
export async function writeCacheFile(path: string, snap: CacheSnapshot, size = 0): Promise<void> {
  const tmp = path + '.tmp';
  const parts = encodeCacheFile(snap, size);
  let fh: FileHandle | null = await open(tmp, 'w');
  try {
    // writev takes at most IOV_MAX (1024) buffers at a time.
    for (let i = 0; i < parts.length; i += 1024) await writevAll(fh, parts.slice(i, i + 1024));
    await fh.sync();
    await fh.close();
    fh = null;
    await rename(tmp, path);
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await syncDirectory(dirname(path));
}

async function writevAll(fh: FileHandle, bufs: Buffer[]): Promise<void> {
  let total = 0;
  for (const x of bufs) total += x.length;
  let { bytesWritten } = await fh.writev(bufs);
  while (bytesWritten < total) {
    // A short write: write what is left, from where it stopped.
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const x of bufs) {
      if (skip >= x.length) skip -= x.length;
      else {
        rest.push(skip ? x.subarray(skip) : x);
        skip = 0;
      }
    }
    bufs = rest;
    total -= bytesWritten;
    ({ bytesWritten } = await fh.writev(bufs));
  }
}

async function syncDirectory(dir: string): Promise<void> {
  let fh: FileHandle | null = null;
  try {
    fh = await open(join(dir, '.'), 'r');
    await fh.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic there.
  } finally {
    await fh?.close();
  }
}
