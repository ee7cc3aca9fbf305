// The output of the message encoders: a scratch buffer reused between messages, and one exact-size Buffer per
// message. Large byte strings (object records, blob chunks) never go through the scratch: their place is noted
// and they are copied once, straight into the result.

import { grownBuffer } from '../pickle/index.js';

/** Byte strings at least this long are copied only into the result. */
export const DEFER_MIN = 1024;
const INITIAL_SIZE = 4096;
/** A scratch buffer grown past this by one message is not kept for the next. */
const KEEP_SIZE = 1 << 20;
/**
 * Results up to this size are cut from a shared slab, as Node's own pool does below 4 KiB: a fresh ArrayBuffer
 * per 64 KiB reply costs more than copying the record into it. A slab lives as long as any message cut from it.
 */
const SLAB_MAX = 256 << 10;
const SLAB_SIZE = 2 << 20;

let slab: Buffer = Buffer.alloc(0);
let slabPos = 0;

/** n bytes of fresh memory no other message shares. */
function allocate(n: number): Buffer {
  if (n > SLAB_MAX) return Buffer.allocUnsafeSlow(n);
  if (slabPos + n > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabPos = 0;
  }
  const out = slab.subarray(slabPos, slabPos + n);
  slabPos = (slabPos + n + 7) & ~7;
  return out;
}

/** finishParts references the large byte strings instead of copying them once there is this much of them. */
const PARTS_MIN = 64 << 10;

function copyOut(buf: Buffer, start: number, end: number): Buffer {
  const out = allocate(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

export class Output {
  buf: Buffer = Buffer.allocUnsafe(INITIAL_SIZE);
  pos = 0;
  private deferred: Uint8Array[] = [];
  private deferredAt: number[] = [];
  private deferredLen = 0;

  /** Makes room for n more bytes at pos. */
  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  private grow(n: number): void {
    this.buf = grownBuffer(this.buf, this.pos, n);
  }

  byte(b: number): void {
    if (this.pos >= this.buf.length) this.grow(1);
    this.buf[this.pos++] = b;
  }

  /** Appends b (the caller wrote its header); large ones are only referenced until finish. */
  bytes(b: Uint8Array): void {
    const n = b.length;
    if (n >= DEFER_MIN) {
      this.deferredAt.push(this.pos);
      this.deferred.push(b);
      this.deferredLen += n;
      return;
    }
    this.ensure(n);
    const buf = this.buf;
    const p = this.pos;
    if (n <= 32) {
      // a loop beats TypedArray#set's call for a few bytes (oids, tids)
      for (let i = 0; i < n; i++) buf[p + i] = b[i];
    } else {
      buf.set(b, p);
    }
    this.pos = p + n;
  }

  /** The message written since the last finish or reset, in a fresh Buffer; resets. */
  finish(): Buffer {
    const n = this.pos + this.deferredLen;
    const out = allocate(n);
    if (this.deferred.length === 0) {
      this.buf.copy(out, 0, 0, this.pos);
    } else {
      let src = 0;
      let dst = 0;
      for (let i = 0; i < this.deferred.length; i++) {
        const at = this.deferredAt[i];
        dst += this.buf.copy(out, dst, src, at);
        src = at;
        const d = this.deferred[i];
        out.set(d, dst);
        dst += d.length;
      }
      this.buf.copy(out, dst, src, this.pos);
    }
    this.reset();
    return out;
  }

  /**
   * finish() without its copy: the message as a view of this Output's own buffer, valid only until the next
   * write (copy it at once); a message with deferred byte strings is finished as finish() does. Resets.
   */
  finishView(): Buffer {
    if (this.deferred.length !== 0) return this.finish();
    const view = this.buf.subarray(0, this.pos);
    // (a reset that drops a grown buffer leaves the view on the old one: still valid)
    this.reset();
    return view;
  }

  /**
   * The message written since the last finish or reset as pieces to be written in order, without copying its
   * large byte strings (they are referenced, so they must not change before the pieces are written); resets.
   * A message with little deferred is one piece, as finish() makes it.
   */
  finishParts(): Buffer[] {
    if (this.deferredLen < PARTS_MIN) return [this.finish()];
    const parts: Buffer[] = [];
    let src = 0;
    for (let i = 0; i < this.deferred.length; i++) {
      const at = this.deferredAt[i];
      if (at > src) parts.push(copyOut(this.buf, src, at));
      src = at;
      const d = this.deferred[i];
      parts.push(Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    }
    if (this.pos > src) parts.push(copyOut(this.buf, src, this.pos));
    this.reset();
    return parts;
  }

  /** Drops what was written (after a failed encode too). */
  reset(): void {
    this.pos = 0;
    if (this.deferred.length !== 0) {
      this.deferred = [];
      this.deferredAt = [];
      this.deferredLen = 0;
    }
    if (this.buf.length > KEEP_SIZE) this.buf = Buffer.allocUnsafe(INITIAL_SIZE);
  }

  /** Bytes written so far, deferred ones included. */
  get length(): number {
    return this.pos + this.deferredLen;
  }
}
