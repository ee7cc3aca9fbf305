// ZEO's framing (smp.py): every message is a 4-byte big-endian payload length, then the payload. Nothing else:
// no magic, no type, no checksum, and the reference has no size limit, so ours is the caller's.
import { ProtocolError } from './errors.js';

/** A header announced a frame larger than the limit; raised before any of its payload is buffered. */
export class FrameTooLargeError extends ProtocolError {
  override name = 'FrameTooLargeError';
  constructor(
    /** the payload length the header announced */
    readonly length: number,
    readonly maxFrameSize: number,
  ) {
    super(`frame of ${length} bytes announced, more than the limit of ${maxFrameSize}`);
  }
}

/** The largest length a header can carry (4 GiB - 1). */
export const MAX_FRAME_LENGTH = 0xffffffff;

/**
 * Splits a byte stream into frame payloads. Feed it every chunk the socket gives, in order; it returns the
 * payloads completed by that chunk. A payload that lies inside one chunk is a view of the chunk (no copy), so
 * the caller must not reuse a chunk buffer it has pushed (net.Socket gives a fresh one per read; with `onread`
 * and a static buffer, copy first). Only a frame spread over several chunks is copied, once, when complete.
 * A FrameTooLargeError is thrown by the push that completes the header (frames completed earlier in the same
 * chunk go with it: the connection is closing), and by every later push.
 */
export class FrameDecoder {
  private readonly maxFrameSize: number;
  /** A header split across chunks. */
  private readonly head = Buffer.alloc(4);
  private headFill = 0;
  /** The payload length of the frame being read, or -1 while reading a header. */
  private expect = -1;
  /** The pieces of a payload spread over chunks. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  private failed: FrameTooLargeError | null = null;

  constructor(maxFrameSize: number) {
    if (!Number.isInteger(maxFrameSize) || maxFrameSize < 0) {
      throw new RangeError(`maxFrameSize must be a non-negative integer, not ${maxFrameSize}`);
    }
    this.maxFrameSize = maxFrameSize;
  }

  /** Bytes received but not yet returned as a payload (a partial header or payload). */
  get bufferedBytes(): number {
    return this.headFill + this.partsLen;
  }

  push(chunk: Buffer): Buffer[] {
    if (this.failed) throw this.failed;
    const out: Buffer[] = [];
    const end = chunk.length;
    let pos = 0;
    for (;;) {
      if (this.expect < 0) {
        let len: number;
        if (this.headFill === 0 && end - pos >= 4) {
          len = chunk.readUInt32BE(pos);
          pos += 4;
        } else {
          while (this.headFill < 4 && pos < end) this.head[this.headFill++] = chunk[pos++];
          if (this.headFill < 4) return out;
          this.headFill = 0;
          len = this.head.readUInt32BE(0);
        }
        if (len > this.maxFrameSize) {
          this.failed = new FrameTooLargeError(len, this.maxFrameSize);
          throw this.failed;
        }
        this.expect = len;
      }
      const avail = end - pos;
      if (this.partsLen === 0 && avail >= this.expect) {
        out.push(chunk.subarray(pos, pos + this.expect));
        pos += this.expect;
        this.expect = -1;
        continue;
      }
      if (avail === 0) return out;
      const take = Math.min(avail, this.expect - this.partsLen);
      this.parts.push(chunk.subarray(pos, pos + take));
      this.partsLen += take;
      pos += take;
      if (this.partsLen === this.expect) {
        out.push(Buffer.concat(this.parts, this.partsLen));
        this.parts = [];
        this.partsLen = 0;
        this.expect = -1;
      }
    }
  }
}

/** The 4-byte length prefix of a payload. */
export function frameHeader(length: number): Buffer {
  checkLength(length);
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(length, 0);
  return h;
}

/**
 * A payload as a frame without copying it: [header, payload], for `socket.cork(); write(h); write(p);
 * uncork()` or writev, so that a large record is never copied again on its way out. The payload is returned
 * as a Buffer view of the same memory; do not change it before it is written.
 */
export function frame(payload: Uint8Array): [Buffer, Buffer] {
  const body = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return [frameHeader(body.length), body];
}

/** A payload as one framed Buffer (a copy): simplest for small messages such as the handshake. */
export function encodeFrame(payload: Uint8Array): Buffer {
  checkLength(payload.length);
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}

/** Throws when `length` bytes do not fit in one frame. */
export function checkLength(length: number): void {
  if (length > MAX_FRAME_LENGTH) {
    throw new ProtocolError(`cannot frame ${length} bytes: a frame holds at most ${MAX_FRAME_LENGTH}`);
  }
}
