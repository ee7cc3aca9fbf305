// The windowed file reader that walks a Data.fs (pack, fstest, fsdump): a window of the file read in one
// positional read, views of it handed out until the next read. The records read through it are records.ts's.

import type { FileHandle } from 'node:fs/promises';
import { CorruptedError } from '../errors.js';

/**
 * Reads a file through a window: `at` gives a view of [pos, pos + n), valid until the next call, reading a
 * window of `windowSize` bytes (or n, when more) from pos when it is not in the current one. Never reads at or
 * beyond `limit` (the file's size, or the committed end: then nothing it holds can change under it).
 */
export class WindowReader {
  #buf: Buffer;
  #start = 0;
  #len = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly file: string,
    public limit: number,
    windowSize: number,
    /** called with the position of each window read (a progress bar) */
    private readonly onRead: ((pos: number) => void) | null = null,
  ) {
    this.#buf = Buffer.allocUnsafe(Math.max(64, Math.min(windowSize, limit)));
  }

  /** Up to `n` bytes at `pos`: fewer only where the limit or the file ends first. */
  async at(pos: number, n: number): Promise<Uint8Array> {
    if (pos >= this.#start && pos + n <= this.#start + this.#len) {
      return this.#buf.subarray(pos - this.#start, pos - this.#start + n);
    }
    const want = Math.max(0, Math.min(Math.max(n, this.#buf.length), this.limit - pos));
    // a record bigger than the window is read on its own; the window stays as it is
    const buf = want > this.#buf.length ? Buffer.allocUnsafe(want) : this.#buf;
    const got = await readFully(this.fh, buf, want, pos);
    if (buf === this.#buf) {
      this.#start = pos;
      this.#len = got;
    }
    this.onRead?.(pos);
    return buf.subarray(0, Math.min(n, got));
  }

  /** Exactly `n` bytes at `pos`, or CorruptedError naming `what` when the data ends first. */
  async get(pos: number, n: number, what: string): Promise<Uint8Array> {
    if (pos + n > this.limit) {
      throw new CorruptedError(
        this.file,
        pos,
        `${what} runs past the end of the committed data (${this.limit})`,
      );
    }
    const b = await this.at(pos, n);
    if (b.length < n) {
      throw new CorruptedError(this.file, pos, `${what} truncated: the file ends at ${pos + b.length}`);
    }
    return b;
  }
}

/** Reads `n` bytes at `pos` into `buf` (fewer only at the end of the file); the bytes read. */
export async function readFully(fh: FileHandle, buf: Uint8Array, n: number, pos: number): Promise<number> {
  let got = 0;
  while (got < n) {
    const { bytesRead } = await fh.read(buf, got, n - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}
