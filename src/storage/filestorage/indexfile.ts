// Data.fs.index: ZODB's saved index (ZODB/fsIndex.py fsIndex.save/load), read and written byte for byte as
// ZODB does, so runzeo and zeo-ts take turns on one Data.fs without rebuilding the index.
//
// The file is pickles back to back, protocol 3, written by a pickler in fast mode (no memo):
//   the position up to which the index is valid (an int: the end of the last committed transaction);
//   per group of oids sharing their first 6 bytes, in order, the tuple (prefix: 6 bytes, bucket: bytes),
//     bucket being the group's 2-byte suffixes in order, then their 6-byte big-endian positions (what
//     BTrees.fsBTree.fsBucket.toString() returns);
//   None.
// Older files hold one pickle instead: a dict {'pos': int, 'index': ...} whose index is a dict
// {oid: position} or an fsIndex instance (its state {'state_version': 1, '_data': [(prefix, bucket), ...]});
// FileStorage._restore_index converts those, and so do we.
//
// ZODB writes `Data.fs.index.index_tmp` and renames it to `Data.fs.index`.

import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import {
  Global,
  isBytes,
  isList,
  Pickler,
  PyObject,
  Tuple,
  tuple,
  Unpickler,
  type PickleValue,
} from '../../pickle/index.js';
import { FsIndex, MAX_INDEX_POS } from './fsindex.js';

/** The suffix ZODB adds to the data file's name for its index. */
export const INDEX_SUFFIX = '.index';
/** The suffix ZODB adds to the index file's name while writing it. */
export const INDEX_TMP_SUFFIX = '.index_tmp';

/** An index file that cannot be used (ZODB logs it and rebuilds the index by scanning the data file). */
export class IndexFileError extends Error {
  override name = 'IndexFileError';
}

export interface IndexFileContents {
  /** the data file position up to which the index is valid */
  pos: number;
  index: FsIndex;
  /** 'stream': fsIndex.save's pickles; 'legacy': the old one-dict form */
  format: 'stream' | 'legacy';
}

const G_FSINDEX = Global.of('ZODB.fsIndex', 'fsIndex');
/** Groups of oids written per dumpsMany call while saving. */
const GROUPS_PER_BATCH = 64;

function isEmpty(v: unknown[] | Uint8Array | Map<unknown, unknown>): boolean {
  return v instanceof Map ? v.size === 0 : v.length === 0;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function bytesOf(v: PickleValue, what: string): Uint8Array {
  // fsIndex.ensure_bytes: Python 2 str (kept as str by the reader when it is ASCII) becomes bytes
  if (isBytes(v)) return v;
  if (typeof v === 'string' && isAscii(v)) return Buffer.from(v, 'latin1');
  throw new IndexFileError(`${what} is not bytes`);
}

function addBucket(index: FsIndex, prefix: Uint8Array, bucket: Uint8Array): void {
  if (prefix.length !== 6) throw new IndexFileError(`an oid prefix has 6 bytes, not ${prefix.length}`);
  if (bucket.length % 8 !== 0) throw new IndexFileError('state string of wrong size'); // fsBucket's words
  const hi = ((prefix[0] << 24) | (prefix[1] << 16) | (prefix[2] << 8) | prefix[3]) >>> 0;
  try {
    index.setBucket(hi, (prefix[4] << 8) | prefix[5], bucket);
  } catch (e) {
    // a position of 0 (no record lives there)
    if (e instanceof RangeError) throw new IndexFileError(e.message);
    throw e;
  }
}

function posOf(v: PickleValue | undefined): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_INDEX_POS) {
    throw new IndexFileError('the saved position is not a file position');
  }
  return v;
}

/** The old one-pickle form: {'pos': ..., 'index': dict or fsIndex}. */
function decodeLegacy(info: PickleValue): IndexFileContents {
  if (!(info instanceof Map)) throw new IndexFileError('neither a position nor a dict');
  const pos = posOf(info.get('pos'));
  const raw = info.get('index');
  if (raw === undefined || raw === null) throw new IndexFileError('no index in the dict');
  const index = new FsIndex();
  if (raw instanceof Map) {
    // a plain dict {oid: position}
    for (const [k, v] of raw) {
      const oid = bytesOf(k, 'an oid');
      if (oid.length !== 8) throw new IndexFileError(`an oid has 8 bytes, not ${oid.length}`);
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_INDEX_POS) {
        throw new IndexFileError('a position is not a file position');
      }
      index.set(oid, v);
    }
  } else if (raw instanceof PyObject && raw.callable === G_FSINDEX && raw.state instanceof Map) {
    const state = raw.state;
    if (state.get('state_version') !== 1) throw new IndexFileError('an fsIndex state of an unknown version');
    const data = state.get('_data');
    if (!isList(data)) throw new IndexFileError('an fsIndex state without its _data list');
    for (const item of data) {
      if (!(item instanceof Tuple) || item.length !== 2)
        throw new IndexFileError('an fsIndex item is not a pair');
      addBucket(index, bytesOf(item[0], 'an oid prefix'), bytesOf(item[1], 'a bucket'));
    }
  } else {
    throw new IndexFileError('an index of a form this reader does not know');
  }
  return { pos, index, format: 'legacy' };
}

// The fast path: what fsIndex.save writes (protocol 3, fast mode, so no memo opcodes) parsed without the
// general unpickler, each bucket going straight from the file's bytes into the index (no copy, no pickle
// values):
//   PROTO 3, the position (BININT1 | BININT2 | BININT | LONG1), STOP;
//   per group: PROTO 3, the prefix (SHORT_BINBYTES 6), the bucket (SHORT_BINBYTES | BINBYTES | BINBYTES8),
//     TUPLE2, STOP;
//   PROTO 3, NONE, STOP.
// Anything else (another protocol, a memo, Python 2 strings, the legacy dict, a cut-short file) makes it give
// up, and the general unpickler reads the file from the start into a fresh index: same results, same errors.

const OP_PROTO = 0x80;
const OP_STOP = 0x2e; // '.'
const OP_NONE = 0x4e; // 'N'
const OP_BININT = 0x4a; // 'J'
const OP_BININT1 = 0x4b; // 'K'
const OP_BININT2 = 0x4d; // 'M'
const OP_LONG1 = 0x8a;
const OP_SHORT_BINBYTES = 0x43; // 'C'
const OP_BINBYTES = 0x42; // 'B'
const OP_BINBYTES8 = 0x8e;
const OP_TUPLE2 = 0x86;

/** The stream form read by the fast path, or null when the bytes are not exactly what fsIndex.save writes. */
function decodeIndexStreamFast(b: Uint8Array): IndexFileContents | null {
  const n = b.length;
  if (n < 3 || b[0] !== OP_PROTO || b[1] !== 3) return null;
  let p = 2;
  let pos: number;
  switch (b[p++]) {
    case OP_BININT1:
      if (p + 2 > n) return null;
      pos = b[p];
      p += 1;
      break;
    case OP_BININT2:
      if (p + 3 > n) return null;
      pos = b[p] | (b[p + 1] << 8);
      p += 2;
      break;
    case OP_BININT:
      if (p + 5 > n) return null;
      pos = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24); // signed, as pickle's BININT
      p += 4;
      break;
    case OP_LONG1: {
      // a little-endian two's complement integer of 1 to 7 bytes (positions are below 2^48)
      const len = b[p++];
      if (len < 1 || len > 7 || p + len + 1 > n) return null;
      pos = 0;
      for (let i = len - 1; i >= 0; i--) pos = pos * 256 + b[p + i];
      if (b[p + len - 1] & 0x80) return null; // negative: the general path says why
      p += len;
      break;
    }
    default:
      return null;
  }
  if (b[p++] !== OP_STOP || pos < 0 || pos > MAX_INDEX_POS) return null;
  const index = new FsIndex();
  for (;;) {
    if (p + 3 > n || b[p] !== OP_PROTO || b[p + 1] !== 3) return null;
    p += 2;
    if (b[p] === OP_NONE) {
      if (b[p + 1] !== OP_STOP) return null;
      return { pos, index, format: 'stream' };
    }
    // the prefix: C 6 bytes
    if (p + 8 > n || b[p] !== OP_SHORT_BINBYTES || b[p + 1] !== 6) return null;
    const prefix = p + 2;
    p += 8;
    if (p + 2 > n) return null;
    let len: number;
    const op = b[p++];
    if (op === OP_SHORT_BINBYTES) {
      len = b[p];
      p += 1;
    } else if (op === OP_BINBYTES) {
      if (p + 4 > n) return null;
      len = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
      p += 4;
    } else if (op === OP_BINBYTES8) {
      if (p + 8 > n) return null;
      len = readUint64LE(b, p);
      p += 8;
    } else {
      return null;
    }
    if (len > n - p - 2) return null;
    const bucket = p;
    p += len;
    if (b[p] !== OP_TUPLE2 || b[p + 1] !== OP_STOP) return null;
    p += 2;
    if (len % 8 !== 0) throw new IndexFileError('state string of wrong size'); // fsBucket's words
    const hi = ((b[prefix] << 24) | (b[prefix + 1] << 16) | (b[prefix + 2] << 8) | b[prefix + 3]) >>> 0;
    try {
      index.setBucket(hi, (b[prefix + 4] << 8) | b[prefix + 5], b.subarray(bucket, bucket + len));
    } catch (e) {
      // a position of 0 (no record lives there)
      if (e instanceof RangeError) throw new IndexFileError(e.message);
      throw e;
    }
  }
}

function readUint64LE(b: Uint8Array, p: number): number {
  const lo = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  const hi = (b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24)) >>> 0;
  return hi * 0x100000000 + lo;
}

/**
 * Reads the contents of an index file (fsIndex.load plus _restore_index's conversions). IndexFileError (or a
 * PickleError) when it is not a usable index. The index keeps views of `data` (pages not read yet, see
 * FsIndex.setBucket): `data` must not change afterwards.
 */
export function decodeIndexFile(data: Uint8Array): IndexFileContents {
  const fast = decodeIndexStreamFast(data);
  if (fast !== null) return fast;
  const u = new Unpickler(data, { encoding: 'bytes' });
  const first = u.load();
  if (typeof first !== 'number') {
    if (typeof first === 'bigint') throw new IndexFileError('the saved position is not a file position');
    return decodeLegacy(first);
  }
  const pos = posOf(first);
  const index = new FsIndex();
  for (;;) {
    const v = u.load();
    // fsIndex.load: `if not v: break`
    if (
      v === null ||
      v === false ||
      v === 0 ||
      v === '' ||
      ((Array.isArray(v) || v instanceof Uint8Array || v instanceof Map) && isEmpty(v))
    ) {
      break;
    }
    if (!(v instanceof Tuple) || v.length !== 2) throw new IndexFileError('an index item is not a pair');
    addBucket(index, bytesOf(v[0], 'an oid prefix'), bytesOf(v[1], 'a bucket'));
  }
  return { pos, index, format: 'stream' };
}

/**
 * The index file's bytes, in batches of whole pickles, exactly as fsIndex.save(pos) writes them.
 */
export function* encodeIndexFileChunks(index: FsIndex, pos: number): Generator<Buffer> {
  const pickler = new Pickler(3, { memo: false });
  posOf(pos);
  yield pickler.dumps(pos);
  let batch: PickleValue[] = [];
  // the group being filled: oids sharing their top 48 bits
  let gHi = -1;
  let gMid = -1;
  let n = 0;
  const suffixes = new Uint16Array(65536);
  const positions = new Float64Array(65536);
  const groups: Array<[Uint8Array, Uint8Array]> = [];
  const flushGroup = (): void => {
    const prefix = Buffer.allocUnsafe(6);
    prefix.writeUInt32BE(gHi, 0);
    prefix.writeUInt16BE(gMid, 4);
    const bucket = Buffer.allocUnsafe(8 * n);
    for (let i = 0; i < n; i++) {
      bucket.writeUInt16BE(suffixes[i], 2 * i);
      bucket.writeUIntBE(positions[i], 2 * n + 6 * i, 6);
    }
    groups.push([prefix, bucket]);
    n = 0;
  };
  index.forEach((hi, lo, p) => {
    const mid = lo >>> 16;
    if (hi !== gHi || mid !== gMid) {
      if (n > 0) flushGroup();
      gHi = hi;
      gMid = mid;
    }
    suffixes[n] = lo & 0xffff;
    positions[n++] = p;
  });
  if (n > 0) flushGroup();
  // forEach cannot yield: the groups were gathered above; pickle them in batches
  for (const [prefix, bucket] of groups) {
    batch.push(tuple<PickleValue>(prefix, bucket));
    if (batch.length >= GROUPS_PER_BATCH) {
      yield pickler.dumpsMany(batch);
      batch = [];
    }
  }
  batch.push(null);
  yield pickler.dumpsMany(batch);
}

/** The whole index file as fsIndex.save(pos, name) writes it. */
export function encodeIndexFile(index: FsIndex, pos: number): Buffer {
  return Buffer.concat([...encodeIndexFileChunks(index, pos)]);
}

/** The index file's path for a data file (ZODB: file_name + '.index'). */
export function indexPathFor(dataPath: string): string {
  return dataPath + INDEX_SUFFIX;
}

/**
 * Reads `<dataPath>.index`: null when there is none; IndexFileError (or PickleError) when it cannot be used.
 */
export async function readIndexFile(dataPath: string): Promise<IndexFileContents | null> {
  let fh: FileHandle;
  try {
    fh = await open(indexPathFor(dataPath), 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  // one read of the whole file (readFile reads in 512 KiB steps, a round trip to the thread pool each); the
  // index keeps views of these bytes (FsIndex.setBucket), so they get a buffer of their own, not a pool slice
  let data: Buffer;
  try {
    const size = (await fh.stat()).size;
    data = Buffer.allocUnsafeSlow(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(data, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < size) data = data.subarray(0, got);
  } finally {
    await fh.close();
  }
  return decodeIndexFile(data);
}

export interface WriteIndexOptions {
  /** fsync the new index before renaming it into place (default true; ZODB does not) */
  fsync?: boolean;
}

/**
 * FileStorage._save_index: writes `<dataPath>.index.index_tmp`, then renames it to `<dataPath>.index`. `pos` is
 * the end of the last committed transaction the index covers.
 */
export async function writeIndexFile(
  dataPath: string,
  index: FsIndex,
  pos: number,
  options: WriteIndexOptions = {},
): Promise<void> {
  const indexPath = indexPathFor(dataPath);
  const tmpPath = indexPath + INDEX_TMP_SUFFIX;
  const fh = await open(tmpPath, 'w');
  try {
    try {
      for (const chunk of encodeIndexFileChunks(index, pos)) await fh.write(chunk);
      if (options.fsync ?? true) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmpPath, indexPath);
  } catch (e) {
    await unlink(tmpPath).catch(() => {});
    throw e;
  }
}
