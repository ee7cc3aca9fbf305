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

import { closeSync, fstatSync, openSync, read as fsRead, readSync, close as fsClose } from 'node:fs';
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
import { FsIndex, MAX_INDEX_POS, type BucketSource } from './fsindex.js';

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
      const [prefix, bucket] = item as Tuple;
      addBucket(index, bytesOf(prefix, 'an oid prefix'), bytesOf(bucket, 'a bucket'));
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
  const head = parsePosition(b);
  if (head === null) return null;
  const pos = head[0];
  let p = head[1];
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
    const [prefix, bucket] = v as Tuple;
    addBucket(index, bytesOf(prefix, 'an oid prefix'), bytesOf(bucket, 'a bucket'));
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

// ---------------------------------------------------------------------------------------------------------
// opening an index file for a storage: its structure now, its buckets later

/** Index files up to this size are read whole at once (by readIndexFile's path). */
const WHOLE_READ_MAX = 64 << 10;
/** The structure is read in pieces of this size: a record's header, and the small records that follow it. */
const STRUCTURE_READ = 4096;
/** At most this many of them are synchronous (see openIndexFile); the rest go to the thread pool. */
const SYNC_READS = 256;
/** Deferred buckets read at once by loadAll. */
const PARALLEL_LOADS = 1;

/** The pickle of the saved position: PROTO 3, an int, STOP. [position, offset after it], null if not that. */
function parsePosition(b: Uint8Array): [number, number] | null {
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
  return [pos, p];
}

interface DeferredBucket {
  key: number;
  hi: number;
  mid: number;
  /** the bucket bytes' offset in the index file, and their length */
  at: number;
  len: number;
  loading: Promise<void> | null;
}

function readFully(fd: number, buf: Uint8Array, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const step = (): void => {
      fsRead(fd, buf, got, len - got, pos + got, (err, n) => {
        if (err) return reject(err);
        got += n;
        if (n === 0 || got === len) resolve(got);
        else step();
      });
    };
    step();
  });
}

function readFullySync(fd: number, buf: Uint8Array, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/**
 * Small synchronous reads through a window of 512 bytes: the sanity check's oids (those of the last
 * transaction, usually close together) are then found with two reads, not two each.
 */
class ProbeWindow {
  private readonly buf = Buffer.allocUnsafe(512);
  private start = -1;
  private len = 0;

  /** [buffer, offset] of the `n` bytes at `at` of the file. */
  at(fd: number, path: string, at: number, n: number): [Buffer, number] {
    if (!(at >= this.start && at + n <= this.start + this.len)) {
      this.start = Math.max(0, at - 128);
      this.len = readFullySync(fd, this.buf, this.buf.length, this.start);
      if (at + n > this.start + this.len)
        throw new IndexFileError(`${path} changed: it ends before ${at + n}`);
    }
    return [this.buf, at - this.start];
  }
}

/**
 * The buckets of an index file that openIndexFile left in the file: loaded when asked for (FsIndex.pending)
 * or all at once (loadAll, which the storage starts in the background after it opens). The descriptor is
 * closed when the last one is loaded, or by close(). A failed read rejects that load only (the bucket stays
 * deferred, and the next use tries again): for the storage, an unreadable index file is then what an
 * unreadable data file is, an error for the loads that need it.
 */
class IndexFileSource implements BucketSource {
  private fd: number | null;
  readonly buckets = new Map<number, DeferredBucket>();
  private all: Promise<void> | null = null;
  private inflight = 0;
  private drained: Array<() => void> = [];
  private closed = false;
  /** probe()'s reads go through two windows, one for suffixes and one for positions */
  private readonly windows = [new ProbeWindow(), new ProbeWindow()];

  constructor(
    fd: number,
    readonly path: string,
    readonly index: FsIndex,
  ) {
    this.fd = fd;
  }

  load(key: number): Promise<void> {
    const d = this.buckets.get(key);
    if (d === undefined) return Promise.resolve();
    if (d.loading === null) {
      // a load waits for this one: loadAll's next read waits for it (they would share two cores)
      this.asked++;
      d.loading = this.read(d);
      void d.loading.then(this.answered, this.answered);
    }
    return d.loading;
  }

  /** loads asked for (not by loadAll) and not done; loadAll's reads wait while there are some */
  private asked = 0;
  private askedDone: Array<() => void> = [];
  private readonly answered = (): void => {
    if (--this.asked === 0) for (const f of this.askedDone.splice(0)) f();
  };

  private async read(d: DeferredBucket): Promise<void> {
    if (this.closed || this.fd === null) {
      d.loading = null;
      throw new IndexFileError(`${this.path}: closed before its bucket at offset ${d.at} was read`);
    }
    const buf = Buffer.allocUnsafeSlow(d.len);
    this.inflight++;
    let got: number;
    try {
      got = await readFully(this.fd, buf, d.len, d.at);
    } catch (e) {
      d.loading = null;
      throw new IndexFileError(
        `reading ${this.path} at offset ${d.at} (${d.len} bytes): ${(e as Error).message}`,
        { cause: e },
      );
    } finally {
      if (--this.inflight === 0) for (const f of this.drained.splice(0)) f();
    }
    if (got < d.len) {
      d.loading = null;
      throw new IndexFileError(
        `${this.path} changed: its bucket at offset ${d.at} is cut short (${got} of ${d.len} bytes)`,
      );
    }
    this.buckets.delete(d.key);
    this.index.attachBucket(d.hi, d.mid, buf);
    if (this.buckets.size === 0) void this.close();
  }

  loadAll(): Promise<void> {
    this.all ??= (async () => {
      try {
        const keys = [...this.buckets.keys()];
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < keys.length) {
            while (this.asked > 0) await new Promise<void>((resolve) => this.askedDone.push(resolve));
            const d = this.buckets.get(keys[next++]);
            if (d === undefined) continue;
            d.loading ??= this.read(d);
            await d.loading;
          }
        };
        await Promise.all(Array.from({ length: Math.min(PARALLEL_LOADS, keys.length) }, worker));
      } finally {
        this.all = null;
      }
    })();
    return this.all;
  }

  private u16(at: number): number {
    const [b, o] = this.windows[0].at(this.fd!, this.path, at, 2);
    return b.readUInt16BE(o);
  }

  private u48(at: number): number {
    const [b, o] = this.windows[1].at(this.fd!, this.path, at, 6);
    return b.readUIntBE(o, 6);
  }

  probe(key: number, suffix: number): number {
    const d = this.buckets.get(key);
    if (d === undefined || this.fd === null) throw new IndexFileError(`bucket ${key} cannot be probed`);
    const n = d.len / 8;
    const at = (i: number): number => {
      const pos = this.u48(d.at + 2 * n + 6 * i);
      return pos === 0 ? -1 : pos;
    };
    // ZODB's oids come from a counter: in a full bucket the suffix is the entry's index, one read finds it
    let lo = 0;
    let hi = n;
    if (suffix < n) {
      const s = this.u16(d.at + 2 * suffix);
      if (s === suffix) return at(suffix);
      if (s < suffix) lo = suffix + 1;
      else hi = suffix;
    }
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      const s = this.u16(d.at + 2 * m);
      if (s === suffix) return at(m);
      if (s < suffix) lo = m + 1;
      else hi = m;
    }
    return -1;
  }

  probeLast(key: number): [number, number] {
    const d = this.buckets.get(key);
    if (d === undefined || this.fd === null) throw new IndexFileError(`bucket ${key} cannot be probed`);
    const n = d.len / 8;
    return [this.u16(d.at + 2 * n - 2), this.u48(d.at + 8 * n - 6)];
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.inflight > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) await new Promise<void>((resolve) => fsClose(fd, () => resolve()));
  }
}

/**
 * Opens `<dataPath>.index` as a storage opening its data file does: null when there is none; IndexFileError
 * (or a PickleError, or an I/O error) when it cannot be used, exactly as readIndexFile. The difference is the
 * buckets: a file as fsIndex.save writes it is read record by record, and a bucket that does not come whole
 * with its record's header (ZODB's buckets hold 65,536 oids: 512 KiB) is deferred (FsIndex.deferBucket): the
 * index holds its place, and its bytes are read when the storage first needs them or in the background
 * (FsIndex.pending, pendingAll). A million objects' index of 8 MB then costs 17 reads of 4 KiB at open instead
 * of reading 8 MB into memory. The file's structure is checked as decodeIndexFile checks it (each record's
 * header, sizes and order, the None at the end); a file that is not exactly what fsIndex.save writes is read
 * whole and decoded by decodeIndexFile. The buckets' contents were never checked at open beyond their size
 * (their positions are, 5 of them, by the storage's sanity check against the data file).
 *
 * The structure is read with synchronous reads (at most 256 of 4 KiB, then asynchronous ones): a storage
 * opens before it serves anyone, so no other client waits on this event loop meanwhile, and a round trip to
 * the thread pool for each 4 KiB would cost more than the read. Python's FileStorage reads the whole file
 * synchronously.
 */
export async function openIndexFile(dataPath: string): Promise<IndexFileContents | null> {
  const path = indexPathFor(dataPath);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let source: IndexFileSource | null = null;
  try {
    const size = fstatSync(fd).size;
    const contents = size > WHOLE_READ_MAX ? await readStructure(fd, path, size) : null;
    if (contents === null) {
      const data = Buffer.allocUnsafeSlow(size);
      const got = await readFully(fd, data, size, 0);
      return decodeIndexFile(got < size ? data.subarray(0, got) : data);
    }
    source = contents.source;
    return contents.contents;
  } finally {
    if (source === null) closeSync(fd);
  }
}

async function readStructure(
  fd: number,
  path: string,
  size: number,
): Promise<{ contents: IndexFileContents; source: IndexFileSource | null } | null> {
  let syncReads = SYNC_READS;
  /** up to STRUCTURE_READ bytes at `at` (fewer at the end), in a buffer of their own (pages keep views) */
  const readAt = async (at: number): Promise<Buffer> => {
    const len = Math.min(STRUCTURE_READ, size - at);
    const b = Buffer.allocUnsafeSlow(Math.max(len, 0));
    const got = syncReads-- > 0 ? readFullySync(fd, b, len, at) : await readFully(fd, b, len, at);
    return got < len ? b.subarray(0, got) : b;
  };
  let chunk = await readAt(0);
  let cs = 0; // chunk holds the file's bytes [cs, cs + chunk.length)
  const head = parsePosition(chunk);
  if (head === null) return null;
  const [pos, afterPos] = head;
  let p = afterPos; // the next record's offset in the file
  const index = new FsIndex();
  let source: IndexFileSource | null = null;
  let lastKey = -1;
  for (;;) {
    // a record's header is at most 2 + 8 + 9 bytes (a None record: 4)
    if (p + 19 > cs + chunk.length && cs + chunk.length < size) {
      chunk = await readAt(p);
      cs = p;
    }
    const b = chunk;
    const n = b.length;
    let o = p - cs;
    if (o + 4 > n || b[o] !== OP_PROTO || b[o + 1] !== 3) return null;
    if (b[o + 2] === OP_NONE) {
      if (b[o + 3] !== OP_STOP) return null;
      return { contents: { pos, index, format: 'stream' }, source };
    }
    if (o + 11 > n || b[o + 2] !== OP_SHORT_BINBYTES || b[o + 3] !== 6) return null;
    const hi = ((b[o + 4] << 24) | (b[o + 5] << 16) | (b[o + 6] << 8) | b[o + 7]) >>> 0;
    const mid = (b[o + 8] << 8) | b[o + 9];
    o += 10;
    let len: number;
    const op = b[o++];
    if (op === OP_SHORT_BINBYTES) {
      if (o + 1 > n) return null;
      len = b[o];
      o += 1;
    } else if (op === OP_BINBYTES) {
      if (o + 4 > n) return null;
      len = (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
      o += 4;
    } else if (op === OP_BINBYTES8) {
      if (o + 8 > n) return null;
      len = readUint64LE(b, o);
      o += 8;
    } else {
      return null;
    }
    const key = hi * 65536 + mid;
    // (a bucket of a wrong size, buckets out of order or repeated, a file cut short: decodeIndexFile says)
    if (len % 8 !== 0 || key <= lastKey) return null;
    lastKey = key;
    const at = cs + o;
    const end = at + len;
    if (end + 2 > size) return null;
    if (end + 2 <= cs + n) {
      if (b[end - cs] !== OP_TUPLE2 || b[end - cs + 1] !== OP_STOP) return null;
      try {
        index.setBucket(hi, mid, b.subarray(o, o + len));
      } catch (e) {
        if (e instanceof RangeError) throw new IndexFileError(e.message);
        throw e;
      }
    } else {
      // the bucket is left in the file; the record's end (TUPLE2 STOP) comes with the next read
      source ??= new IndexFileSource(fd, path, index);
      source.buckets.set(key, { key, hi, mid, at, len, loading: null });
      index.deferBucket(hi, mid, len / 8, source);
      chunk = await readAt(end);
      cs = end;
      if (chunk.length < 2 || chunk[0] !== OP_TUPLE2 || chunk[1] !== OP_STOP) return null;
    }
    p = end + 2;
  }
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
    // the write's error is the one to report
    await unlink(tmpPath).catch(() => {});
    throw e;
  }
}
