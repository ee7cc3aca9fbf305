// One ZEO message channel over a stream socket (TCP, unix or TLS), for the server's connections and the client's:
// ZEO's asyncio/base.py in our terms. Frames in (the pure FrameDecoder of protocol/framing.ts), frames out in
// the order their places were taken, batched into one writev per tick, with backpressure (reading stops while
// too many bytes wait to be written, too many calls run, or the owner holds it), and a close with a reason the
// owner sees. The channel knows nothing of codecs or calls: the owner decodes what it gets.

import type { Socket } from 'node:net';
import { checkLength, FrameDecoder, frameHeader } from '../protocol/framing.js';

export interface ChannelLimits {
  /** the largest frame the peer may send (its 4-byte length is checked before anything is buffered) */
  maxMessageSize: number;
  /** stop reading while this many bytes wait to be written ... */
  outputHighWater: number;
  /** ... or this many tracked calls run */
  maxInFlight: number;
}

/** Why a channel closed: 'closed by peer', 'frame too large', the owner's reason, or the socket's error. */
export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface ChannelHandlers {
  /** A complete frame payload (a view of the received bytes: copy what outlives the call). */
  frame(payload: Buffer): void;
  /**
   * Optional, tried before `frame` for a frame that lies whole in one received chunk, while nothing waits
   * before it: the payload is chunk[start .. start + length] (read it now: the chunk is not kept). True when
   * it was handled (then `frame` is not called). The server's fast loads: no object per frame.
   */
  frameAt?(chunk: Buffer, start: number, length: number): boolean;
  /** Called once, when the channel starts closing, for whatever reason (before `closed`). */
  closing?(reason: Error): void;
  /** Called once, when the socket is gone; what was queued and not written is dropped. */
  closed(reason: Error): void;
}

/** A frame's payload: one buffer, or pieces written one after the other (an encoder's uncopied parts). */
export type Payload = Uint8Array | readonly Uint8Array[];

/** A place in the output order: what is written to it goes out after every earlier place, before later ones. */
export interface OutputSlot {
  /** Queues a frame at this place (written at once when this is the first open place). */
  write(payload: Payload): void;
  /** Closes the place (after writing `payload`, if given): the places behind it may go out. */
  end(payload?: Payload): void;
  readonly ended: boolean;
}

class Slot implements OutputSlot {
  /** frames waiting for this place's turn */
  frames: Payload[] = [];
  bytes = 0;
  ended = false;
  constructor(private readonly channel: MessageChannel) {}
  write(payload: Payload): void {
    if (this.ended) throw new Error('write to an ended output slot');
    this.channel.queue(this, payload);
  }
  end(payload?: Payload): void {
    if (this.ended) return;
    if (payload) this.channel.queue(this, payload);
    this.ended = true;
    this.channel.flush();
  }
}

/** A net.Socket (or tls.TLSSocket) carrying ZEO frames. */
export class MessageChannel {
  private readonly decoder: FrameDecoder;
  /** Frames received but not yet handed out: reading stopped in the middle of a chunk. */
  private inbox: Buffer[] = [];
  private inboxAt = 0;
  private readonly slots: Slot[] = [];
  /** Bytes queued in slots that wait behind an open one (not yet given to the socket). */
  private queuedBytes = 0;
  private inFlight = 0;
  private holds = 0;
  private paused = false;
  private outputWasHigh = false;
  private corked = false;
  /**
   * Small frames sent this tick with sendCopy, copied one after the other (header and payload) into one
   * buffer: the bytes from batchStart to batchPos go to the socket as one write at the end of the tick, or
   * before anything sent after them. The rest of the buffer is used by the next ticks.
   */
  private batch: Buffer | null = null;
  private batchStart = 0;
  private batchPos = 0;
  /** a batchTick is queued */
  private batchDue = false;
  private delivering = false;
  private closingReason: Error | null = null;
  private closedReason: Error | null = null;
  private readonly drainWaiters: Array<() => void> = [];
  /** Settles with the close reason once the socket is gone. */
  readonly whenClosed: Promise<Error>;
  private resolveClosed!: (reason: Error) => void;

  constructor(
    readonly socket: Socket,
    private readonly limits: ChannelLimits,
    private readonly handlers: ChannelHandlers,
  ) {
    this.decoder = new FrameDecoder(limits.maxMessageSize);
    this.whenClosed = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    // (a peer's end is not a close yet: the frames it sent before are still handed out; 'close' follows)
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.startClosing(
        e.code === 'ECONNRESET' || e.code === 'EPIPE'
          ? new ChannelClosedError('closed by peer', { cause: e })
          : e,
      );
    });
    socket.on('close', () => this.onClose());
  }

  /** Open: neither closing nor closed. */
  get connected(): boolean {
    return this.closingReason === null;
  }

  /** Why the channel is closing or closed, or null while open. */
  get closeReason(): Error | null {
    return this.closedReason ?? this.closingReason;
  }

  /** Bytes waiting to be written: in our queue and in the socket's. */
  get outputBytes(): number {
    return this.queuedBytes + this.batchPos - this.batchStart + this.socket.writableLength;
  }

  /** calls whose replies are still being computed (what track() counts): the dashboard's calls in flight */
  get callsInFlight(): number {
    return this.inFlight;
  }

  /** Whether output ever waited above the high-water mark (a peer slow to read, or large replies). */
  get reachedHighWater(): boolean {
    return this.outputWasHigh;
  }

  /** Whether reading is stopped by backpressure. */
  get readingPaused(): boolean {
    return this.paused;
  }

  // ------------------------------------------------------------------------------------------------------
  // input

  private onData(chunk: Buffer): void {
    const handlers = this.handlers;
    if (
      handlers.frameAt !== undefined &&
      this.decoder.bufferedBytes === 0 &&
      this.inboxAt >= this.inbox.length &&
      !this.delivering
    ) {
      // the frames lying whole in the chunk handed out in place, in one pass, until one does not fit or
      // reading stops; the rest goes the general way (the decoder, the inbox)
      const end = chunk.length;
      const max = this.limits.maxMessageSize;
      let pos = 0;
      this.delivering = true;
      try {
        while (end - pos >= 4 && !this.paused && this.closingReason === null) {
          const n =
            ((chunk[pos] << 24) | (chunk[pos + 1] << 16) | (chunk[pos + 2] << 8) | chunk[pos + 3]) >>> 0;
          if (n > max || end - pos - 4 < n) break;
          const start = pos + 4;
          pos = start + n;
          if (!handlers.frameAt(chunk, start, n)) handlers.frame(chunk.subarray(start, pos));
        }
      } finally {
        this.delivering = false;
      }
      if (pos === end) return;
      if (pos > 0) chunk = chunk.subarray(pos);
    }
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      // FrameTooLargeError: the rest of the stream cannot be read
      this.close(e as Error);
      return;
    }
    if (frames.length === 0) return;
    if (this.inboxAt < this.inbox.length) this.inbox.push(...frames);
    else {
      this.inbox = frames;
      this.inboxAt = 0;
    }
    this.deliver();
  }

  /** Hands out received frames until reading is paused, one at a time, so a pause stops the next call. */
  private deliver(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.inboxAt < this.inbox.length && !this.paused && this.closingReason === null) {
        const f = this.inbox[this.inboxAt];
        this.inbox[this.inboxAt++] = EMPTY;
        this.handlers.frame(f);
      }
      if (this.inboxAt >= this.inbox.length) {
        this.inbox = [];
        this.inboxAt = 0;
      }
    } finally {
      this.delivering = false;
    }
  }

  /** Counts `p` as a running call until it settles (reading stops at maxInFlight of them). */
  track(p: Promise<unknown>): void {
    this.countWhile(p, 'inFlight');
  }

  /** Stops reading until `p` settles (a blob chunk being written, for one). */
  holdReading(p: Promise<unknown>): void {
    this.countWhile(p, 'holds');
  }

  private countWhile(p: Promise<unknown>, counter: 'inFlight' | 'holds'): void {
    this[counter]++;
    this.checkPause();
    const done = (): void => {
      this[counter]--;
      this.checkPause();
    };
    p.then(done, done);
  }

  /** Backpressure: stop reading a peer that does not take its output, has too many calls running, or is held. */
  private checkPause(): void {
    if (this.closedReason) return;
    const high = this.outputBytes >= this.limits.outputHighWater;
    if (high) this.outputWasHigh = true;
    const busy = high || this.inFlight >= this.limits.maxInFlight || this.holds > 0;
    if (busy && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!busy && this.paused) {
      this.paused = false;
      this.socket.resume();
      // frames read before the pause come first
      if (this.inboxAt < this.inbox.length) queueMicrotask(() => this.deliver());
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // output

  /** Takes the next place in the output order. */
  reserve(): OutputSlot {
    const s = new Slot(this);
    this.slots.push(s);
    return s;
  }

  /** Sends a frame after everything queued before it. */
  send(payload: Payload): void {
    if (this.slots.length > 0) {
      this.reserve().end(payload);
      return;
    }
    // (nothing waits: no place to take)
    if (this.closedReason) return;
    const length = payloadLength(payload);
    checkLength(length);
    this.writeFrame(payload, length);
    this.checkPause();
  }

  /**
   * send() for a small payload the caller may reuse at once (it is copied now): gathered with the other small
   * frames of this tick into one buffer, so a frame costs no objects of its own on the way to the socket.
   */
  sendCopy(payload: Uint8Array): void {
    const n = payload.length;
    const at = this.batchFrame(n);
    if (at < 0) {
      // behind a place not written yet (its turn first), or too large to batch: copied all the same, as the
      // caller may reuse its buffer at once
      if (this.closedReason === null) this.send(Buffer.from(payload));
      return;
    }
    const b = this.batchBuffer;
    if (n <= 64) for (let i = 0; i < n; i++) b[at + i] = payload[i];
    else b.set(payload, at);
  }

  /**
   * Room for a frame of n payload bytes in this tick's batch (see sendCopy), for a caller that writes its
   * payload straight there: the offset in batchBuffer where the n bytes go, at once (the frame's header is
   * written); -1 when it cannot be batched (behind a place not written yet, too large, closed): send it.
   */
  batchFrame(n: number): number {
    if (this.closedReason !== null || this.slots.length > 0 || n > BATCH_MAX) return -1;
    const at = this.batchRoom(4 + n);
    const b = this.batch!;
    b[at] = n >>> 24;
    b[at + 1] = (n >>> 16) & 0xff;
    b[at + 2] = (n >>> 8) & 0xff;
    b[at + 3] = n & 0xff;
    this.batchPos = at + 4 + n;
    if (this.batchPos - this.batchStart >= this.limits.outputHighWater) this.checkPause();
    return at + 4;
  }

  /** The buffer batchFrame's offsets are in (valid until the next batchFrame or sendCopy). */
  get batchBuffer(): Buffer {
    return this.batch!;
  }

  /**
   * Room for `n` bytes at the end of the tick's batch (a new buffer when the current one is full, the bytes
   * before written first); where they go. The batch goes to the socket at the end of the tick.
   */
  private batchRoom(n: number): number {
    if (this.batch === null || this.batchPos + n > this.batch.length) {
      this.writeBatch();
      // (writeBatch may have made room by starting the buffer over)
      if (this.batch === null || this.batchPos + n > this.batch.length) {
        // a connection's first buffer is small (most connections send a few replies a tick; each buffer is
        // memory outside V8's heap, which a server accepting thousands of connections a second pays for in
        // GCs); one that filled it gets a full-size one
        this.batch = Buffer.allocUnsafeSlow(this.batch === null ? FIRST_BATCH_SIZE : BATCH_SIZE);
        this.batchStart = this.batchPos = 0;
      }
    }
    if (!this.batchDue) {
      this.batchDue = true;
      process.nextTick(this.batchTick);
    }
    return this.batchPos;
  }

  /**
   * Gives the socket a frame whose turn has come: a small one is copied into the tick's batch (one write for
   * all of them at the end of the tick, no objects per frame); a large one is written by reference, after
   * the batch, gathered with the tick's other writes into one writev.
   */
  private writeFrame(payload: Payload, length: number): void {
    if (this.closedReason !== null) return;
    if (length <= BATCH_MAX) {
      let at = this.batchRoom(4 + length);
      const b = this.batch!;
      b.writeUInt32BE(length, at);
      at += 4;
      if (payload instanceof Uint8Array) b.set(payload, at);
      else
        for (const p of payload) {
          b.set(p, at);
          at += p.length;
        }
      this.batchPos += 4 + length;
      return;
    }
    this.corkForTick();
    this.writeBatch();
    this.socket.write(frameHeader(length));
    if (payload instanceof Uint8Array) this.socket.write(payload);
    else for (const p of payload) this.socket.write(p);
  }

  /** The end of a tick with frames from sendCopy: one write (no cork: nothing else to gather with it). */
  private readonly batchTick = (): void => {
    this.batchDue = false;
    if (this.batchPos === this.batchStart) return;
    this.writeBatch();
    // (sendCopy does not look at the output on each frame: the socket may now hold more than the peer reads)
    this.checkPause();
  };

  /** Gathers what is written in this tick into one writev, at the end of the tick. */
  private corkForTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => this.uncork());
  }

  /** Gives the socket the frames gathered by sendCopy (before anything sent after them). */
  private writeBatch(): void {
    if (this.batchPos === this.batchStart) return;
    const b = this.batch!;
    const from = this.batchStart;
    this.batchStart = this.batchPos;
    if (this.closedReason !== null) return;
    const socket = this.socket;
    socket.write(b.subarray(from, this.batchPos));
    // the kernel took it all at once (nothing waits in the socket, which holds no reference then): the
    // buffer is used again from its start, so that its first few KiB stay in the CPU's cache
    if (socket.writableLength === 0) this.batchStart = this.batchPos = 0;
  }

  /** @internal (Slot) */
  queue(slot: Slot, payload: Payload): void {
    if (this.closedReason) return;
    const length = payloadLength(payload);
    checkLength(length);
    if (this.slots[0] === slot) {
      // its turn has come
      this.writeFrame(payload, length);
      this.checkPause();
      return;
    }
    slot.frames.push(payload);
    slot.bytes += length + 4;
    this.queuedBytes += length + 4;
  }

  /** @internal (Slot) Gives the socket every frame whose turn has come. */
  flush(): void {
    const slots = this.slots;
    while (slots.length > 0) {
      const head = slots[0];
      if (head.frames.length > 0) {
        for (const f of head.frames) this.writeFrame(f, payloadLength(f));
        this.queuedBytes -= head.bytes;
        head.bytes = 0;
        head.frames = [];
      }
      if (!head.ended) break;
      slots.shift();
    }
    this.checkPause();
  }

  /** Writes out what was gathered since the cork now rather than at the end of the tick. */
  uncork(): void {
    this.writeBatch();
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  /** Resolves once the bytes given to the socket are below the high-water mark (or the channel is closed). */
  writable(): Promise<void> {
    if (this.closedReason || this.socket.writableLength < this.limits.outputHighWater)
      return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private onDrain(): void {
    for (const w of this.drainWaiters.splice(0)) w();
    this.checkPause();
  }

  // ------------------------------------------------------------------------------------------------------
  // closing

  private startClosing(reason: Error): boolean {
    if (this.closingReason !== null) return false;
    this.closingReason = reason;
    this.handlers.closing?.(reason);
    return true;
  }

  /**
   * Closes after what is queued has been written (a peer that never reads is dropped after `graceMs`); the
   * reason is what `closing`/`closed` report.
   */
  close(reason: Error | string = 'closed', graceMs = 5000): void {
    if (!this.startClosing(typeof reason === 'string' ? new ChannelClosedError(reason) : reason)) return;
    this.uncork();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), graceMs).unref();
  }

  /** Drops the connection at once, and what is queued with it. */
  destroy(reason: Error | string = 'destroyed'): void {
    this.startClosing(typeof reason === 'string' ? new ChannelClosedError(reason) : reason);
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closedReason) return;
    this.startClosing(new ChannelClosedError('closed by peer'));
    const reason = this.closingReason!;
    this.closedReason = reason;
    // let go of everything a vanished peer would have been sent, and of frames it sent
    this.slots.length = 0;
    this.queuedBytes = 0;
    this.batch = null;
    this.batchStart = this.batchPos = 0;
    this.inbox = [];
    this.inboxAt = 0;
    for (const w of this.drainWaiters.splice(0)) w();
    this.resolveClosed(reason);
    this.handlers.closed(reason);
  }
}

const EMPTY = Buffer.alloc(0);

function payloadLength(payload: Payload): number {
  if (payload instanceof Uint8Array) return payload.length;
  let n = 0;
  for (const p of payload) n += p.length;
  return n;
}
/** sendCopy's buffer: frames of several ticks (loadBefore replies of a few hundred bytes) share one */
const BATCH_SIZE = 64 << 10;
/** payloads larger than this go out by reference (send), not copied */
const BATCH_MAX = 4096;
/** a connection's first batch buffer (room for a frame of BATCH_MAX and its header) */
const FIRST_BATCH_SIZE = 8 << 10;
