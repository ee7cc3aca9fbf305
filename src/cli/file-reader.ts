// Sequential reads of a file through one growing buffer, with small random reads on the side: what
// `zeo verify` and `zeo dump` walk a Data.fs with.
import type { FileHandle } from 'node:fs/promises';

/** Sequential reads of a file through one buffer, with random reads on the side. */
export class FileReader {
  buf: Buffer;
  start = 0;
  end = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    private readonly chunk: number,
    private readonly onRead: (pos: number) => void,
  ) {
    this.buf = Buffer.allocUnsafe(Math.max(64, Math.min(chunk, size)));
  }

  /** Makes [p, p + n) available in buf, or as much of it as the file holds; the offset of p in buf. */
  async ensure(p: number, n: number): Promise<number> {
    if (p >= this.start && p + n <= this.end) return p - this.start;
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
    const want = Math.min(Math.max(n, this.chunk, this.buf.length), this.buf.length, this.size - p);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.fh.read(this.buf, got, want - got, p + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    this.start = p;
    this.end = p + got;
    this.onRead(p);
    return 0;
  }

  /** bytes available from p (after ensure) */
  avail(p: number): number {
    return this.end - p;
  }

  /** `n` bytes at `p`, read on the side (the buffer is left as it is) */
  async readAt(p: number, n: number): Promise<Buffer> {
    if (p >= this.start && p + n <= this.end) return this.buf.subarray(p - this.start, p - this.start + n);
    const b = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.fh.read(b, got, n - got, p + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return b.subarray(0, got);
  }
}
