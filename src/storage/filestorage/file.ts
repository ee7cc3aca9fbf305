// Positional file I/O for the FileStorage, over node:fs/promises (the libuv thread pool, never a sync call
// on the event loop). Reads and writes name a file position, so concurrent loads need no shared seek
// pointer; short reads and short writes are looped over; every error names the file and the offset.
//
// For the hot path, a caller may pass the Buffer to read into (and reuse it): no buffer is allocated then.
// Durability is the caller's: a commit is acknowledged only after `sync()` (fsync) or `datasync()`
// (fdatasync, enough for appended data: it flushes the size too) resolves, and a rename (index file, pack)
// is durable only after `fsyncDirectory()` of its directory.

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

export class RandomAccessFile {
  #end: number;
  #closed = false;

  /** Wraps an open handle; `end` is the file size (use `RandomAccessFile.open`, which stats it). */
  constructor(
    readonly handle: FileHandle,
    readonly path: string,
    end: number,
  ) {
    this.#end = end;
  }

  /**
   * Opens `path` with node's `flags` ('r' read-only, 'r+' read/write, 'w+' create or truncate, 'wx+' create
   * new). Append flags are refused: on Linux they make positional writes append.
   */
  static async open(path: string, flags: string = 'r', mode?: number): Promise<RandomAccessFile> {
    if (flags.includes('a'))
      throw new RangeError(`open ${path}: append mode ('${flags}') ignores write positions`);
    let fh: FileHandle;
    try {
      fh = await open(path, flags, mode);
    } catch (e) {
      throw ioError('open', path, null, null, e);
    }
    try {
      return new RandomAccessFile(fh, path, (await fh.stat()).size);
    } catch (e) {
      await fh.close().catch(() => {});
      throw ioError('stat', path, null, null, e);
    }
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
    while (done < length) {
      let n: number;
      try {
        n = (await this.handle.read(into, offset + done, length - done, pos + done)).bytesRead;
      } catch (e) {
        throw ioError('read', this.path, pos + done, length - done, e);
      }
      if (n === 0) break;
      done += n;
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
   * data, and the caller truncates (as an aborted commit does).
   */
  async write(pos: number, data: Uint8Array, offset = 0, length = data.length - offset): Promise<void> {
    this.#open('write');
    checkRange(`write ${this.path}`, pos, length);
    checkBuffer(`write ${this.path}`, data, offset, length);
    if (pos + length > this.#end) this.#end = pos + length;
    for (let done = 0; done < length;) {
      let n: number;
      try {
        n = (await this.handle.write(data, offset + done, length - done, pos + done)).bytesWritten;
      } catch (e) {
        throw ioError('write', this.path, pos + done, length - done, e);
      }
      if (n <= 0) {
        throw new FileIOError(
          `write ${this.path} at offset ${pos + done}: wrote nothing`,
          this.path,
          pos + done,
        );
      }
      done += n;
    }
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
    try {
      await this.handle.datasync();
    } catch (e) {
      throw ioError('fdatasync', this.path, null, null, e);
    }
  }

  /** fsync: data and metadata are on disk. */
  async sync(): Promise<void> {
    this.#open('fsync');
    try {
      await this.handle.sync();
    } catch (e) {
      throw ioError('fsync', this.path, null, null, e);
    }
  }

  /** Cuts (or extends with zeros) the file to `size` bytes; do not race it with writes. */
  async truncate(size: number): Promise<void> {
    this.#open('truncate');
    checkRange(`truncate ${this.path}`, size, 0);
    try {
      await this.handle.truncate(size);
    } catch (e) {
      throw ioError('truncate', this.path, size, null, e);
    }
    this.#end = size;
  }

  /** The size on disk (fstat); the known end is `end`. */
  async size(): Promise<number> {
    this.#open('stat');
    try {
      return (await this.handle.stat()).size;
    } catch (e) {
      throw ioError('stat', this.path, null, null, e);
    }
  }

  /** Closes the file; closing again does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.handle.close();
    } catch (e) {
      throw ioError('close', this.path, null, null, e);
    }
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
