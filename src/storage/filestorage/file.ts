// Positional file I/O for the FileStorage, over the libuv thread pool. Reads and writes name a file position,
// so concurrent loads need no shared seek pointer; short reads and short writes are looped over; every error
// names the file and the offset. Two synchronous calls, each for a caller that knows it does not hold up
// anything else: writeNow, for a small write into the page cache (a commit's records), which costs a few
// microseconds where a thread-pool round trip costs tens, and datasyncNow (see FileStorage's commit flush).
//
// For the hot path, a caller may pass the Buffer to read into (and reuse it): no buffer is allocated then.
// A file may carry a ReadCache (RandomAccessFile.cache): the records the storage keeps in it are dropped
// wherever the file is written or truncated.
// Durability is the caller's: a commit is acknowledged only after `sync()` (fsync), `datasync()` (fdatasync,
// enough for appended data: it flushes the size too) or `writeDurable()` resolves, and a rename (index file,
// pack) is durable only after `fsyncDirectory()` of its directory.

import {
  close as fsClose,
  closeSync,
  constants as fsConstants,
  fdatasync as fsFdatasync,
  fdatasyncSync as fsFdatasyncSync,
  fstat as fsFstat,
  fstatSync,
  fsync as fsFsync,
  ftruncate as fsFtruncate,
  open as fsOpen,
  openSync,
  read as fsRead,
  write as fsWrite,
  readSync as fsReadSync,
  writeSync as fsWriteSync,
} from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** An I/O error naming the file and, for reads and writes, the offset. `code` is the errno name. */
export class FileIOError extends Error {
  override name = 'FileIOError';
  readonly code: string | undefined;
  constructor(
    message: string,
    readonly path: string,
    readonly position: number | null,
    options: { cause?: unknown; code?: string } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
  }
}

/** The file ended before `wanted` bytes could be read at `position`. */
export class ShortReadError extends FileIOError {
  override name = 'ShortReadError';
  constructor(
    path: string,
    position: number,
    readonly wanted: number,
    readonly got: number,
  ) {
    super(
      `short read in ${path} at offset ${position}: wanted ${wanted} bytes, got ${got} (the file ends at ${position + got})`,
      path,
      position,
    );
  }
}

function ioError(op: string, path: string, position: number | null, length: number | null, cause: unknown) {
  const e = cause as NodeJS.ErrnoException | undefined;
  const where = position === null ? '' : ` at offset ${position}`;
  const size = length === null ? '' : ` (${length} bytes)`;
  return new FileIOError(`${op} ${path}${where}${size}: ${e?.message ?? String(cause)}`, path, position, {
    cause,
    code: e?.code,
  });
}

/** The bytes a write call moved; moving none is an error naming the file and the offset. */
function moved(path: string, at: number, n: number): number {
  if (n <= 0) throw new FileIOError(`write ${path} at offset ${at}: wrote nothing`, path, at);
  return n;
}

function checkRange(what: string, pos: number, length: number): void {
  if (!Number.isSafeInteger(pos) || pos < 0) throw new RangeError(`${what}: bad file position ${pos}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`${what}: bad length ${length}`);
  if (!Number.isSafeInteger(pos + length)) throw new RangeError(`${what}: ${pos} + ${length} is too large`);
}

function checkBuffer(what: string, buf: Uint8Array, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > buf.length) {
    throw new RangeError(
      `${what}: ${length} bytes at buffer offset ${offset} do not fit a ${buf.length}-byte buffer`,
    );
  }
}

export const DEFAULT_CHUNK = 1 << 20;
/** a synchronous read taking longer than this went to the disk (see readNow) */
export const SLOW_SYNC_READ_MS = 0.5;
/**
 * ... and then readNow reads nothing for this long, doubled for each slow read in a row up to
 * SYNC_READS_OFF_MAX_MS (a fast one starts again from here): a file whose records are not in the page cache
 * is read in the thread pool with a probe now and then, while one slow read (a freshly started server's first
 * reads, a preempted syscall on a busy machine) leaves the page cache's reads synchronous a moment later.
 */
export const SYNC_READS_OFF_MS = 10;
export const SYNC_READS_OFF_MAX_MS = 1000;

/**
 * The positional system calls a RandomAccessFile makes; each resolves with the bytes moved, which may be fewer
 * than asked (the caller loops). The default goes through node:fs's callback API on the file's descriptor: one
 * thread-pool request per call, without the promise API's FileHandle bookkeeping (about 3 times the reads per
 * second at 16 concurrent reads, and a shorter round trip for one at a time). Tests pass stingier ones.
 * (Function properties, not methods: they are called without `this`.)
 */
export interface PositionalIO {
  read: (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => Promise<number>;
  write: (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => Promise<number>;
  /** the synchronous read, for readNow (absent: readNow reads nothing) */
  readSync?: (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => number;
  /** the synchronous write, for writeNow (absent: writeNow is not offered) */
  writeSync?: (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => number;
  /** fdatasync (default: node:fs's; tests make it fail) */
  datasync?: (fd: number) => Promise<void>;
  /** the synchronous fdatasync, for datasyncNow (absent: datasyncNow is not offered) */
  datasyncSync?: (fd: number) => void;
}

export const fdIO: PositionalIO = {
  read(fd, buf, offset, length, position) {
    return new Promise((resolve, reject) => {
      fsRead(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  },
  write(fd, buf, offset, length, position) {
    return new Promise((resolve, reject) => {
      fsWrite(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  },
  readSync(fd, buf, offset, length, position) {
    return fsReadSync(fd, buf, offset, length, position);
  },
  writeSync(fd, buf, offset, length, position) {
    return fsWriteSync(fd, buf, offset, length, position);
  },
  datasyncSync(fd) {
    fsFdatasyncSync(fd);
  },
};

/** A callback-style fs call on a descriptor as a promise. */
function call<T = void>(fn: (cb: (err: NodeJS.ErrnoException | null, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

export interface RandomAccessFileOptions {
  /**
   * Bytes for a ReadCache of records (see ReadCache), 0 or absent for none. It is this file's own: its
   * entries are dropped where the file is written or truncated, and it goes when the file is closed.
   */
  cacheBytes?: number;
  /** the system calls (tests) */
  io?: PositionalIO;
}

export class RandomAccessFile {
  #end: number;
  #closed = false;
  readonly #fd: number;
  readonly #io: PositionalIO;
  /** requests on #fd in flight: close() waits for them, so a descriptor is never closed (and reused) under one */
  #inflight = 0;
  #drained: Array<() => void> = [];
  /**
   * a second descriptor opened with O_DSYNC, for writeDurable (null: not opened yet; false: none, as for a
   * file not opened for writing by open() or openSync())
   */
  #dsync: number | null | false = false;
  /** see RandomAccessFileOptions.cacheBytes; null when there is none */
  readonly cache: ReadCache | null;
  /** readNow reads nothing before this time (performance.now()): a read of its was slow (see readNow) */
  #syncReadsOffUntil = 0;
  /** how long the next slow read turns sync reads off */
  #syncReadsOffMs = SYNC_READS_OFF_MS;

  /**
   * Wraps an open descriptor, which the object then owns (it closes it); `end` is the file size (use
   * `RandomAccessFile.open`, which stats it).
   */
  constructor(
    fd: number,
    readonly path: string,
    end: number,
    options: RandomAccessFileOptions = {},
  ) {
    this.#end = end;
    this.#fd = fd;
    this.#io = options.io ?? fdIO;
    this.cache = options.cacheBytes ? ReadCache.create(options.cacheBytes) : null;
  }

  /**
   * Opens `path` with node's `flags` ('r' read-only, 'r+' read/write, 'w+' create or truncate, 'wx+' create
   * new). Append flags are refused: on Linux they make positional writes append.
   */
  static async open(
    path: string,
    flags: string = 'r',
    mode?: number,
    options: RandomAccessFileOptions = {},
  ): Promise<RandomAccessFile> {
    checkFlags(path, flags);
    let fd: number;
    try {
      fd = await call<number>((cb) => fsOpen(path, flags, mode, cb));
    } catch (e) {
      throw ioError('open', path, null, null, e);
    }
    try {
      const st = await call<{ size: number }>((cb) => fsFstat(fd, cb));
      return new RandomAccessFile(fd, path, st.size, options).#writable(flags);
    } catch (e) {
      fsClose(fd, () => {});
      throw ioError('stat', path, null, null, e);
    }
  }

  /**
   * open() with synchronous system calls (an open and an fstat): for a storage opening, before it serves
   * anyone, where two round trips to the thread pool would cost more than the calls (see openIndexFile).
   */
  static openSync(
    path: string,
    flags: string = 'r',
    mode?: number,
    options: RandomAccessFileOptions = {},
  ): RandomAccessFile {
    checkFlags(path, flags);
    let fd: number;
    try {
      fd = openSync(path, flags, mode);
    } catch (e) {
      throw ioError('open', path, null, null, e);
    }
    try {
      return new RandomAccessFile(fd, path, fstatSync(fd).size, options).#writable(flags);
    } catch (e) {
      closeSync(fd);
      throw ioError('stat', path, null, null, e);
    }
  }

  /** Lets writeDurable open its O_DSYNC descriptor when `flags` open the file for writing. */
  #writable(flags: string): this {
    if (flags.includes('+') || flags.includes('w')) this.#dsync = null;
    return this;
  }

  /** The file descriptor (for reads of one's own: do not close it). */
  get fd(): number {
    return this.#fd;
  }

  /** The end of the file as this object knows it: its size at open, grown by writes, set by truncate. */
  get end(): number {
    return this.#end;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #open(op: string): void {
    if (this.#closed) throw new FileIOError(`${op} ${this.path}: the file is closed`, this.path, null);
  }

  #enter(): void {
    this.#inflight++;
  }

  #leave(): void {
    if (--this.#inflight === 0 && this.#drained.length) for (const d of this.#drained.splice(0)) d();
  }

  /**
   * readAtMost as one synchronous read, for a small read the caller would otherwise wait for (a load's
   * record): the bytes read, or -1 when it read nothing and readAtMost must (no synchronous read in the file's
   * io, an error, or sync reads off for now). A read from the page cache costs ~2 us of CPU where a thread-pool
   * round trip costs ~18 (measured on 4 KiB reads); one that had to wait for the disk (longer than
   * SLOW_SYNC_READ_MS) stalls the event loop, so sync reads stop for a while (SYNC_READS_OFF_MS, longer while
   * they keep being slow) and reads wait in the thread pool meanwhile.
   */
  readNow(pos: number, into: Uint8Array, offset: number, length: number): number {
    const readSync = this.#io.readSync;
    if (readSync === undefined || this.#closed) return -1;
    const start = performance.now();
    if (start < this.#syncReadsOffUntil) return -1;
    checkRange(`read ${this.path}`, pos, length);
    checkBuffer(`read ${this.path}`, into, offset, length);
    let n: number;
    try {
      n = readSync(this.#fd, into, offset, length, pos);
    } catch {
      // (readAtMost reads again and reports the error)
      return -1;
    }
    const end = performance.now();
    if (end - start > SLOW_SYNC_READ_MS) {
      this.#syncReadsOffUntil = end + this.#syncReadsOffMs;
      this.#syncReadsOffMs = Math.min(2 * this.#syncReadsOffMs, SYNC_READS_OFF_MAX_MS);
    } else this.#syncReadsOffMs = SYNC_READS_OFF_MS;
    return n;
  }

  /**
   * Reads up to `length` bytes at `pos` into `into` at `offset`, stopping early only at the end of the file;
   * resolves with the number of bytes read.
   */
  async readAtMost(
    pos: number,
    into: Uint8Array,
    offset = 0,
    length = into.length - offset,
  ): Promise<number> {
    this.#open('read');
    checkRange(`read ${this.path}`, pos, length);
    checkBuffer(`read ${this.path}`, into, offset, length);
    let done = 0;
    this.#enter();
    try {
      while (done < length) {
        let n: number;
        try {
          n = await this.#io.read(this.#fd, into, offset + done, length - done, pos + done);
        } catch (e) {
          throw ioError('read', this.path, pos + done, length - done, e);
        }
        if (n === 0) break;
        done += n;
      }
    } finally {
      this.#leave();
    }
    return done;
  }

  /**
   * Reads exactly `length` bytes at `pos`: into `into` at `offset` when given (resolving with `into`, nothing
   * allocated), else into a new Buffer. ShortReadError, naming the file and offset, if the file ends first.
   */
  readExact(pos: number, length: number): Promise<Buffer>;
  readExact<T extends Uint8Array>(pos: number, length: number, into: T, offset?: number): Promise<T>;
  async readExact(pos: number, length: number, into?: Uint8Array, offset = 0): Promise<Uint8Array> {
    const buf = into ?? Buffer.allocUnsafe(length);
    const got = await this.readAtMost(pos, buf, into ? offset : 0, length);
    if (got < length) throw new ShortReadError(this.path, pos, length, got);
    return buf;
  }

  /**
   * Reads `length` bytes at `pos` in chunks of at most `chunkSize` bytes (or the size of `buffer`), yielding
   * views into one reused buffer: each is valid until the next is asked for. ShortReadError if the file ends.
   */
  async *chunks(
    pos: number,
    length: number,
    options: { chunkSize?: number; buffer?: Uint8Array } = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    checkRange(`read ${this.path}`, pos, length);
    if (length === 0) return;
    const buf = options.buffer ?? Buffer.allocUnsafe(Math.min(options.chunkSize ?? DEFAULT_CHUNK, length));
    if (buf.length === 0) throw new RangeError(`read ${this.path}: empty chunk buffer`);
    for (let done = 0; done < length;) {
      const n = Math.min(buf.length, length - done);
      await this.readExact(pos + done, n, buf, 0);
      yield buf.subarray(0, n);
      done += n;
    }
  }

  /** Copies `length` bytes at `pos` to `dest` at `destPos`, in chunks (see `chunks`). */
  async copyTo(
    dest: RandomAccessFile,
    pos: number,
    length: number,
    destPos: number,
    options: { chunkSize?: number; buffer?: Uint8Array } = {},
  ): Promise<void> {
    let at = destPos;
    for await (const chunk of this.chunks(pos, length, options)) {
      await dest.write(at, chunk);
      at += chunk.length;
    }
  }

  /**
   * Writes all of `data` (or `length` bytes of it from `offset`) at `pos`, looping over short writes. The
   * known end grows at once, before the write completes; after a failed write the file may hold part of the
   * data, and the caller truncates (as an aborted commit does). Cached records the write overlaps are dropped.
   */
  async write(pos: number, data: Uint8Array, offset = 0, length = data.length - offset): Promise<void> {
    this.#open('write');
    checkRange(`write ${this.path}`, pos, length);
    checkBuffer(`write ${this.path}`, data, offset, length);
    await this.#writeTo(this.#fd, pos, data, offset, length);
  }

  /** writeNow is offered (the file's system calls have a synchronous write). */
  get writesNow(): boolean {
    return this.#io.writeSync !== undefined;
  }

  /**
   * write() with synchronous system calls, for small writes only: they land in the page cache at once, where
   * a round trip through the thread pool would cost tens of microseconds and two thread wake-ups (a commit's
   * records, see FileStorage's tpcVote). Not for big writes: the event loop waits for it. Throws where
   * `writesNow` is false.
   */
  writeNow(pos: number, data: Uint8Array, offset = 0, length = data.length - offset): void {
    this.#open('write');
    checkRange(`write ${this.path}`, pos, length);
    checkBuffer(`write ${this.path}`, data, offset, length);
    const writeSync = this.#io.writeSync;
    if (!writeSync) throw new FileIOError(`write ${this.path}: no synchronous write`, this.path, pos);
    if (pos + length > this.#end) this.#end = pos + length;
    this.cache?.invalidate(pos, pos + length);
    for (let done = 0; done < length;) {
      const at = pos + done;
      let n: number;
      try {
        n = writeSync(this.#fd, data, offset + done, length - done, at);
      } catch (e) {
        throw ioError('write', this.path, at, length - done, e);
      }
      done += moved(this.path, at, n);
    }
  }

  async #writeTo(fd: number, pos: number, data: Uint8Array, offset: number, length: number): Promise<void> {
    if (pos + length > this.#end) this.#end = pos + length;
    this.cache?.invalidate(pos, pos + length);
    this.#enter();
    try {
      for (let done = 0; done < length;) {
        const at = pos + done;
        const n = await this.#io.write(fd, data, offset + done, length - done, at).catch((e: unknown) => {
          throw ioError('write', this.path, at, length - done, e);
        });
        done += moved(this.path, at, n);
      }
    } finally {
      this.#leave();
    }
  }

  /**
   * write() and datasync() in one: the data (and the size, when it grows the file) are on disk when this
   * resolves. Through a second descriptor opened with O_DSYNC where the system has it, so the write and the
   * flush are one request to the thread pool instead of two (a new Data.fs's header goes this way); else a
   * write then an fdatasync. Either way the flush covers only the bytes written here (O_DSYNC flushes the
   * range written): other unflushed writes to the file need a datasync() of their own.
   */
  async writeDurable(
    pos: number,
    data: Uint8Array,
    offset = 0,
    length = data.length - offset,
  ): Promise<void> {
    this.#open('write');
    checkRange(`write ${this.path}`, pos, length);
    checkBuffer(`write ${this.path}`, data, offset, length);
    const fd = await this.#dsyncFd();
    if (fd === false) {
      await this.#writeTo(this.#fd, pos, data, offset, length);
      await this.datasync();
      return;
    }
    await this.#writeTo(fd, pos, data, offset, length);
  }

  async #dsyncFd(): Promise<number | false> {
    if (this.#dsync !== null) return this.#dsync;
    const O_DSYNC = fsConstants.O_DSYNC as number | undefined;
    let fd: number | false = false;
    if (O_DSYNC) {
      try {
        const d = await call<number>((cb) => fsOpen(this.path, fsConstants.O_WRONLY | O_DSYNC, cb));
        fd = d;
        // the path must still name this file (it does while the storage holds its lock: packs rename only
        // before the storage reopens)
        const [a, b] = await Promise.all([
          call<{ dev: number; ino: number }>((cb) => fsFstat(this.#fd, cb)),
          call<{ dev: number; ino: number }>((cb) => fsFstat(d, cb)),
        ]);
        if (a.dev !== b.dev || a.ino !== b.ino) {
          fsClose(d, () => {});
          fd = false;
        }
      } catch {
        if (fd !== false) fsClose(fd, () => {});
        fd = false; // (a read-only file, or a system without it: write() and datasync() then)
      }
    }
    if (this.#closed && fd !== false) {
      fsClose(fd, () => {});
      this.#open('write');
    }
    if (this.#dsync === null) this.#dsync = fd;
    else if (fd !== false) fsClose(fd, () => {}); // opened twice at once: keep the first
    return this.#dsync;
  }

  /**
   * Writes `data` at the known end and resolves with the position it went to. The position is taken when
   * append is called, so appends started together land one after the other, in call order.
   */
  async append(data: Uint8Array, offset = 0, length = data.length - offset): Promise<number> {
    const at = this.#end;
    await this.write(at, data, offset, length);
    return at;
  }

  /** fdatasync: the data and what is needed to read it back (the size) are on disk. */
  async datasync(): Promise<void> {
    this.#open('fdatasync');
    this.#enter();
    try {
      if (this.#io.datasync) await this.#io.datasync(this.#fd);
      else await call((cb) => fsFdatasync(this.#fd, cb));
    } catch (e) {
      throw ioError('fdatasync', this.path, null, null, e);
    } finally {
      this.#leave();
    }
  }

  /** datasyncNow is offered (the file's system calls have a synchronous fdatasync). */
  get datasyncsNow(): boolean {
    return this.#io.datasyncSync !== undefined;
  }

  /**
   * datasync() with a synchronous system call: the event loop waits for the disk. Only for a caller that
   * knows nothing else waits and the flush is fast (FileStorage's commit flush, see Storage.mayFlushInline).
   * Throws where `datasyncsNow` is false.
   */
  datasyncNow(): void {
    this.#open('fdatasync');
    const datasyncSync = this.#io.datasyncSync;
    if (!datasyncSync)
      throw new FileIOError(`fdatasync ${this.path}: no synchronous fdatasync`, this.path, null);
    try {
      datasyncSync(this.#fd);
    } catch (e) {
      throw ioError('fdatasync', this.path, null, null, e);
    }
  }

  /** fsync: data and metadata are on disk. */
  async sync(): Promise<void> {
    this.#open('fsync');
    this.#enter();
    try {
      await call((cb) => fsFsync(this.#fd, cb));
    } catch (e) {
      throw ioError('fsync', this.path, null, null, e);
    } finally {
      this.#leave();
    }
  }

  /**
   * Cuts (or extends with zeros) the file to `size` bytes; do not race it with writes. Cached records from
   * `size` on are dropped.
   */
  async truncate(size: number): Promise<void> {
    this.#open('truncate');
    checkRange(`truncate ${this.path}`, size, 0);
    this.cache?.invalidate(size, Infinity);
    this.#enter();
    try {
      await call((cb) => fsFtruncate(this.#fd, size, cb));
    } catch (e) {
      throw ioError('truncate', this.path, size, null, e);
    } finally {
      this.#leave();
    }
    this.#end = size;
  }

  /** The size on disk (fstat); the known end is `end`. */
  async size(): Promise<number> {
    this.#open('stat');
    this.#enter();
    try {
      return (await call<{ size: number }>((cb) => fsFstat(this.#fd, cb))).size;
    } catch (e) {
      throw ioError('stat', this.path, null, null, e);
    } finally {
      this.#leave();
    }
  }

  /** Closes the file (after the reads and writes in flight); closing again does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inflight > 0) await new Promise<void>((resolve) => this.#drained.push(resolve));
    this.cache?.clear();
    const dsync = this.#dsync;
    this.#dsync = false;
    if (typeof dsync === 'number') await new Promise<void>((resolve) => fsClose(dsync, () => resolve()));
    try {
      await call((cb) => fsClose(this.#fd, cb));
    } catch (e) {
      throw ioError('close', this.path, null, null, e);
    }
  }
}

function checkFlags(path: string, flags: string): void {
  if (flags.includes('a'))
    throw new RangeError(`open ${path}: append mode ('${flags}') ignores write positions`);
}

// ---------------------------------------------------------------------------------------------------------
// the read cache

/** bytes before each entry in a slab: its file position (8) and length (4) */
const ENTRY_HEAD = 12;
const TWO32 = 0x100000000;
/** invalidations remembered for put() (see ReadCache.generation) */
const INV_LOG = 16;
/** the smallest cache worth having */
export const MIN_CACHE_BYTES = 64 << 10;

export interface ReadCacheStats {
  /** the bound: the cache never holds more (its table and slabs together) */
  capacity: number;
  /** bytes allocated now (table and slabs), at most `capacity` */
  allocated: number;
  entries: number;
  /** bytes of cached records (without their 12-byte slab headers) */
  bytes: number;
  hits: number;
  misses: number;
}

/**
 * A bounded cache of immutable byte ranges of one file, keyed by their file position: the FileStorage keeps
 * whole data records in it (header and data), so a load it has seen needs no read from the thread pool.
 *
 * Records, not pages: a load reads one record of about a hundred bytes at a random place, so a cache of
 * aligned blocks would hold a block (4 to 64 KiB) for every record it serves; 10,000 records spread over a
 * file of 180 MB touch nearly every 64 KiB block of it. Keyed by record, 64 MiB holds about 250,000 of them.
 *
 * Safety: a record at a given position of a given file never changes once committed (ZODB appends; only an
 * abort or a crash recovery truncates, and only after the committed end; a pack writes a new file). The file
 * drops the entries a write or a truncate overlaps (RandomAccessFile.write, truncate), and a put() of bytes
 * read before such a change that overlaps it is refused (`generation`): what the cache gives is what the file
 * holds.
 *
 * Memory: everything is in typed arrays sized from `capacity`, which bounds it exactly: an open-addressing
 * table of positions (at most 1/8 of the capacity: 16 bytes a slot, at most half of them used) and slabs
 * holding the entries one after the other (the rest). When full, the oldest slab is dropped whole (its
 * entries leave the table); an entry found in the older half of the slabs is copied to the newest (a second
 * chance), so what is used often stays: LRU, in slab-sized steps.
 */
export class ReadCache {
  readonly capacity: number;
  readonly slabSize: number;
  readonly maxSlabs: number;
  /** entries larger than this are not kept */
  readonly maxEntry: number;
  private readonly maxSlots: number;
  private slabs: Buffer[] = [];
  /** bytes used in each slab */
  private used: number[] = [];
  /** when each slab became the current one (see curSeq) */
  private seq: number[] = [];
  /** the slabs holding entries, oldest first; the last is the current one */
  private order: number[] = [];
  /** emptied slabs, to be used before the oldest is dropped */
  private free: number[] = [];
  private cur = -1;
  private curSeq = 0;
  /**
   * The slots, two numbers each, side by side (a lookup touches one cache line, not two): the file position
   * + 1 of the slot's entry (0: an empty slot), and slab * 2^32 + offset of the entry in its slab.
   */
  private table: Float64Array = new Float64Array(0);
  /** the number of slots (table.length / 2) */
  private slots = 0;
  private mask = 0;
  private shift = 0;
  private count = 0;
  private dataBytes = 0;
  /** an upper bound of the end of every entry: writes and truncates past it have nothing to drop */
  private maxEnd = 0;
  /** counts invalidate() calls; the ranges of the last INV_LOG of them are kept for put() */
  generation = 0;
  private readonly invFrom = new Float64Array(INV_LOG);
  private readonly invTo = new Float64Array(INV_LOG);
  hits = 0;
  misses = 0;

  /** A cache of `capacity` bytes (at least MIN_CACHE_BYTES). */
  static create(capacity: number): ReadCache {
    return new ReadCache(capacity);
  }

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < MIN_CACHE_BYTES) {
      throw new RangeError(`a read cache has at least ${MIN_CACHE_BYTES} bytes, not ${capacity}`);
    }
    this.capacity = capacity;
    let slots = 1024;
    while (slots * 2 * 16 <= capacity / 8) slots *= 2;
    this.maxSlots = slots;
    const rest = capacity - slots * 16;
    let slab = 4096;
    while (slab * 2 <= Math.min(1 << 20, rest / 16)) slab *= 2;
    this.slabSize = slab;
    this.maxSlabs = Math.floor(rest / slab);
    this.maxEntry = slab / 4 - ENTRY_HEAD;
  }

  private hash(pos: number): number {
    const lo = pos >>> 0;
    const hi = (pos / TWO32) >>> 0;
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }

  private find(pos: number): number {
    if (this.count === 0) return -1;
    const k = pos + 1;
    const table = this.table;
    const mask = this.mask;
    for (let i = this.hash(pos); ; i = (i + 1) & mask) {
      const x = table[2 * i];
      if (x === k) return i;
      if (x === 0) return -1;
    }
  }

  /**
   * The bytes cached at `pos` (a view into the cache, valid until the next put() or invalidate(): copy what
   * you keep), or undefined. `countMiss` false: the caller reads on through get() when this misses (the
   * server's synchronous loads), so the miss is counted there, once.
   */
  get(pos: number, countMiss = true): Buffer | undefined {
    const at = this.locate(pos);
    if (at < 0) {
      if (countMiss) this.misses++;
      return undefined;
    }
    return this.found.subarray(at, at + this.foundLen);
  }

  /** The slab of the entry locate() found last. */
  found: Buffer = Buffer.alloc(0);
  /** The length of the entry locate() found last. */
  foundLen = 0;

  /**
   * get() without a view (the server's loads: no object per hit): the offset of the entry at `pos` in
   * `found`, its length in `foundLen`, valid as get()'s view is; -1 when it is not cached (not counted as a
   * miss: the caller counts it).
   */
  locate(pos: number): number {
    const i = this.find(pos);
    if (i < 0) return -1;
    this.hits++;
    const v = this.table[2 * i + 1];
    const s = Math.floor(v / TWO32);
    const off = v - s * TWO32;
    const slab = this.slabs[s];
    const len = slab[off + 8] | (slab[off + 9] << 8) | (slab[off + 10] << 16) | (slab[off + 11] << 24);
    if (
      (this.slabs.length === this.maxSlabs || this.slots === this.maxSlots) &&
      this.curSeq - this.seq[s] > this.order.length >> 1
    ) {
      // full (what comes next pushes the oldest out), and in the older half: a second chance in the newest
      // slab (copied out first: making room may reuse the slab it is in)
      const copy = Buffer.from(slab.subarray(off + ENTRY_HEAD, off + ENTRY_HEAD + len));
      this.removeSlot(i);
      this.dataBytes -= len;
      this.store(pos, copy, null);
      const j = this.find(pos);
      if (j < 0) {
        // (not kept: no room in the table) the copy is the answer
        this.found = copy;
        this.foundLen = len;
        return 0;
      }
      const w = this.table[2 * j + 1];
      const t = Math.floor(w / TWO32);
      this.found = this.slabs[t];
      this.foundLen = len;
      return w - t * TWO32 + ENTRY_HEAD;
    }
    this.found = slab;
    this.foundLen = len;
    return off + ENTRY_HEAD;
  }

  /**
   * Keeps `a` followed by `b` as the bytes at `pos` (copied). `generation`: the cache's generation when the
   * bytes were read; if an invalidate() since then overlapped them (the read may have raced a write or a
   * truncate), or too many came to tell, they are not kept. Entries larger than maxEntry are not kept; a
   * position already cached is left as is.
   */
  put(pos: number, a: Uint8Array, b: Uint8Array | null = null, generation = this.generation): void {
    const len = a.length + (b === null ? 0 : b.length);
    if (generation !== this.generation) {
      if (this.generation - generation >= INV_LOG) return;
      for (let g = generation + 1; g <= this.generation; g++) {
        if (pos < this.invTo[g % INV_LOG] && pos + len > this.invFrom[g % INV_LOG]) return;
      }
    }
    if (len > this.maxEntry || this.find(pos) >= 0) return;
    this.store(pos, a, b);
  }

  private store(pos: number, a: Uint8Array, b: Uint8Array | null): void {
    const len = a.length + (b === null ? 0 : b.length);
    if (this.count + 1 > this.slots >>> 1 && !this.makeRoom()) return;
    const need = ENTRY_HEAD + len;
    if (this.cur < 0 || this.used[this.cur] + need > this.slabSize) this.nextSlab();
    const at = this.used[this.cur];
    const slab = this.slabs[this.cur];
    slab.writeUInt32LE(pos >>> 0, at);
    slab.writeUInt32LE((pos / TWO32) >>> 0, at + 4);
    slab.writeUInt32LE(len, at + 8);
    slab.set(a, at + ENTRY_HEAD);
    if (b !== null) slab.set(b, at + ENTRY_HEAD + a.length);
    this.used[this.cur] = at + need;
    this.insert(pos, this.cur * TWO32 + at);
    this.dataBytes += len;
    if (pos + len > this.maxEnd) this.maxEnd = pos + len;
  }

  /** Makes an empty slab the current one: a free one, a new one, or the oldest, dropped. */
  private nextSlab(): void {
    let s: number;
    if (this.free.length) s = this.free.pop()!;
    else if (this.slabs.length < this.maxSlabs) {
      s = this.slabs.length;
      this.slabs.push(Buffer.allocUnsafeSlow(this.slabSize));
      this.used.push(0);
      this.seq.push(0);
    } else {
      s = this.order.shift()!;
      this.evict(s);
    }
    this.order.push(s);
    this.cur = s;
    this.seq[s] = ++this.curSeq;
  }

  /** Room in the table for one more entry: grows it, or drops the oldest slabs. False if it cannot. */
  private makeRoom(): boolean {
    if (this.slots < this.maxSlots) {
      this.rehash(Math.max(1024, this.slots * 2));
      return true;
    }
    while (this.order.length > 1 && this.count + 1 > this.slots >>> 1) {
      const s = this.order.shift()!;
      this.evict(s);
      this.free.push(s);
    }
    return this.count + 1 <= this.slots >>> 1;
  }

  private insert(pos: number, v: number): void {
    const k = pos + 1;
    const table = this.table;
    const mask = this.mask;
    let i = this.hash(pos);
    while (table[2 * i] !== 0) i = (i + 1) & mask;
    table[2 * i] = k;
    table[2 * i + 1] = v;
    this.count++;
  }

  private rehash(slots: number): void {
    const old = this.table;
    this.table = new Float64Array(2 * slots);
    this.slots = slots;
    this.mask = slots - 1;
    this.shift = 32 - Math.log2(slots);
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0) this.insert(old[i] - 1, old[i + 1]);
  }

  /** Removes the entry in slot i (backward-shift deletion: no tombstones). */
  private removeSlot(i: number): void {
    const table = this.table;
    const mask = this.mask;
    table[2 * i] = 0;
    this.count--;
    for (let j = (i + 1) & mask; table[2 * j] !== 0; j = (j + 1) & mask) {
      const h = this.hash(table[2 * j] - 1);
      // the entry at j stays unless its home slot h lies cyclically outside (i, j]
      const stays = i <= j ? i < h && h <= j : i < h || h <= j;
      if (!stays) {
        table[2 * i] = table[2 * j];
        table[2 * i + 1] = table[2 * j + 1];
        table[2 * j] = 0;
        i = j;
      }
    }
  }

  /** Drops the entries of slab s that are still in the table, and empties it. */
  private evict(s: number): void {
    this.dropIn(s, 0, Infinity);
    this.used[s] = 0;
  }

  /** Drops the entries of slab s (still in the table) that overlap [from, to). */
  private dropIn(s: number, from: number, to: number): void {
    const slab = this.slabs[s];
    const end = this.used[s];
    for (let off = 0; off < end;) {
      const pos = slab.readUInt32LE(off) + slab.readUInt32LE(off + 4) * TWO32;
      const len = slab.readUInt32LE(off + 8);
      if (pos < to && pos + len > from) {
        const i = this.find(pos);
        if (i >= 0 && this.table[2 * i + 1] === s * TWO32 + off) {
          this.removeSlot(i);
          this.dataBytes -= len;
        }
      }
      off += ENTRY_HEAD + len;
    }
  }

  /**
   * Drops the entry at `pos`, if cached (its bytes stay in their slab until it is reused). Not logged for
   * put()'s `generation`: a caller keying entries otherwise (not by file range) keeps its own log.
   */
  delete(pos: number): void {
    const i = this.find(pos);
    if (i < 0) return;
    const v = this.table[2 * i + 1];
    const s = Math.floor(v / TWO32);
    this.dataBytes -= this.slabs[s].readUInt32LE(v - s * TWO32 + 8);
    this.removeSlot(i);
  }

  /** Drops the entries overlapping the file range [from, to). */
  invalidate(from: number, to: number): void {
    this.generation++;
    this.invFrom[this.generation % INV_LOG] = from;
    this.invTo[this.generation % INV_LOG] = to;
    if (from >= this.maxEnd || this.count === 0) return;
    for (let s = 0; s < this.slabs.length; s++) this.dropIn(s, from, to);
    if (to >= this.maxEnd) this.maxEnd = from;
  }

  /** Drops everything and frees the memory. */
  clear(): void {
    this.generation++;
    this.invFrom[this.generation % INV_LOG] = 0;
    this.invTo[this.generation % INV_LOG] = Infinity;
    this.slabs = [];
    this.used = [];
    this.seq = [];
    this.order = [];
    this.free = [];
    this.cur = -1;
    this.table = new Float64Array(0);
    this.slots = 0;
    this.count = 0;
    this.dataBytes = 0;
    this.maxEnd = 0;
  }

  stats(): ReadCacheStats {
    return {
      capacity: this.capacity,
      allocated: this.slabs.length * this.slabSize + this.table.byteLength,
      entries: this.count,
      bytes: this.dataBytes,
      hits: this.hits,
      misses: this.misses,
    };
  }
}

/**
 * fsyncs a directory, making renames and new or removed entries in it durable (after writing
 * Data.fs.index.index_tmp and renaming it, or moving Data.fs.pack into place). File systems that cannot
 * sync a directory (EINVAL, ENOTSUP) are let be; other errors name the directory.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(dir, 'r');
  } catch (e) {
    throw ioError('open directory', dir, null, null, e);
  }
  try {
    await fh.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') {
      throw ioError('fsync directory', dir, null, null, e);
    }
  } finally {
    await fh.close();
  }
}
