// The windowed file reader that walks a Data.fs (pack, fstest, fsdump): a window of the file read in one
// positional read, views of it handed out until the next read, and the records read through it (ZODB's
// FileStorageFormatter._read_txn_header, _read_data_header, _loadBack_impl over the window).

import type { FileHandle } from 'node:fs/promises';
import { CorruptedError } from '../errors.js';
import { idEquals, idHex, type Oid, type Tid } from '../ids.js';
import {
  DATA_HDR_LEN,
  decodeDataHeader,
  decodeTxnHeaderFull,
  readU64,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  txnHeaderLen,
  type DataHeader,
  type TxnHeaderFull,
} from './format.js';

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

  /** The 8-byte number at `pos` (a transaction's trailing length). */
  async num(pos: number): Promise<number> {
    return readU64(await this.get(pos, TRAILER_LEN, 'transaction length'), 0);
  }

  /** The transaction header at `pos` with copies of its user, description and extension. */
  async txnHeader(pos: number): Promise<TxnHeaderFull> {
    const head = await this.get(pos, TRANS_HDR_LEN, 'transaction header');
    const hlen = txnHeaderLen({
      ulen: (head[17] << 8) | head[18],
      dlen: (head[19] << 8) | head[20],
      elen: (head[21] << 8) | head[22],
    });
    const h = decodeTxnHeaderFull(await this.get(pos, hlen, 'transaction header'), 0, this.file, pos);
    // views into the window: copy what outlives the next read
    return {
      ...h,
      user: new Uint8Array(h.user),
      description: new Uint8Array(h.description),
      extension: new Uint8Array(h.extension),
    };
  }

  /** The data record header at `pos` (with its back pointer); `oid`, when given, must be the record's. */
  async dataHeader(pos: number, oid?: Oid): Promise<DataHeader> {
    const head = await this.get(pos, DATA_HDR_LEN, 'data record header');
    const plen = readU64(head, 34);
    const b = plen === 0 ? await this.get(pos, DATA_HDR_LEN + 8, 'data record') : head;
    const h = decodeDataHeader(b, 0, this.file, pos);
    if (oid && !idEquals(oid, h.oid)) {
      throw new CorruptedError(this.file, pos, `back pointer to a record of another oid (${idHex(h.oid)})`);
    }
    return h;
  }

  /**
   * FileStorageFormatter._loadBack_impl(oid, back, fail=False) with getTxnFromData: the data at the end of the
   * back pointer chain from `back` (a view, or null when the chain ends in a 0: an undone creation), and the
   * tid of the record `back` points to, which must be `oid`'s when given.
   */
  async followBack(back: number, oid?: Oid): Promise<{ data: Uint8Array | null; tid: Tid }> {
    const first = await this.dataHeader(back, oid);
    const seen = new Set<number>();
    let h = first;
    for (let at = back; ;) {
      if (h.plen) return { data: await this.get(at + DATA_HDR_LEN, h.plen, 'data'), tid: first.tid };
      if (h.back === 0) return { data: null, tid: first.tid };
      seen.add(at);
      at = h.back;
      if (seen.has(at)) throw new CorruptedError(this.file, back, 'back pointers in a loop');
      h = await this.dataHeader(at);
    }
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

/**
 * The position of a whole transaction that ends the file and starts after `after`: its header's length agrees
 * with the file's last 8 bytes (a crash leaves nothing after the transaction it cut short; a damaged length,
 * whole transactions). With its status byte; null when there is none.
 */
export async function transactionEndingFile(
  read: (pos: number, n: number) => Promise<Uint8Array>,
  size: number,
  after: number,
): Promise<{ pos: number; status: number } | null> {
  if (size < 4 + TRANS_HDR_LEN + TRAILER_LEN) return null;
  const t = await read(size - TRAILER_LEN, TRAILER_LEN);
  const tl = readU64(t, 0);
  const q = size - TRAILER_LEN - tl;
  if (!(q > after) || tl < TRANS_HDR_LEN) return null;
  const h = await read(q, TRANS_HDR_LEN);
  if (h.length < TRANS_HDR_LEN || readU64(h, 8) !== tl) return null;
  return { pos: q, status: h[16] };
}
