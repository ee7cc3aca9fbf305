// One client connection: the handshake, frames in, replies and async calls out, in an order that keeps the
// reference's guarantees. Every sync call reserves its place in the output queue when it arrives, so replies
// go out in request order, and an invalidation queued by a commit waits behind the replies to loads that
// arrived before it (a load that read the old revision must reach the client before the invalidation that
// ends it: ZEO issues 155/166). Replies that may wait long (vote behind the commit lock, pack, undo logs) do
// not reserve a place; they are queued when ready, as the reference's delayed replies are.

import type { Socket } from 'node:net';
import { isBytes, PyFloat, pyRepr, pyStrRepr, tuple, type PickleValue } from '../pickle/index.js';
import {
  codecFor,
  FrameDecoder,
  FrameTooLargeError,
  frameHeader,
  isAsync,
  isHeartbeat,
  PythonError,
  marshalError,
  parseClientHello,
  serverGreeting,
  type Message,
  type MessageCodec,
} from '../protocol/index.js';
import { ConflictError, POSKeyError } from '../storage/errors.js';
import type { Logger } from './log.js';
import { Session, type ReplySlot, type SessionConnection, type SessionServer } from './session.js';

export interface ConnectionLimits {
  /** the largest frame a client may send (its 4-byte length is checked before anything is buffered) */
  maxMessageSize: number;
  /** stop reading from a client while this many bytes wait to be written to it, or this many calls run */
  outputHighWater: number;
  maxInFlight: number;
  /** a client that lets this many bytes pile up (invalidations it does not read) is disconnected */
  maxOutputBytes: number;
}

export interface ConnectionServer extends SessionServer {
  readonly msgpack: boolean;
  readonly limits: ConnectionLimits;
  readonly protocolLog: Logger;
  connectionClosed(conn: ServerConnection): void;
  /** sync calls of every connection still running */
  callsInFlight: number;
}

/** What the reference does not log: a missing object or a conflict is the client's business. */
function unlogged(e: unknown): boolean {
  if (e instanceof POSKeyError || e instanceof ConflictError) return true;
  return (
    e instanceof PythonError &&
    /^ZODB\.POSException\.(POSKeyError|ConflictError|ReadConflictError)$/.test(e.className)
  );
}

class Slot {
  parts: Uint8Array[] = [];
  bytes = 0;
  done = false;
}

export class ServerConnection implements SessionConnection {
  readonly session: Session;
  private readonly decoder: FrameDecoder;
  private codec: MessageCodec | null = null;
  private handshakeDone = false;
  private readonly slots: Slot[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private paused = false;
  private corked = false;
  private closing = false;
  private closedFlag = false;
  private readonly drainWaiters: Array<() => void> = [];
  /** calls that must finish before the connection is let go on shutdown (tpc_finish) */
  readonly critical = new Set<Promise<unknown>>();

  constructor(
    private readonly socket: Socket,
    private readonly server: ConnectionServer,
    readonly label: string,
  ) {
    this.decoder = new FrameDecoder(server.limits.maxMessageSize);
    this.session = new Session(server, this);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE')
        this.log.error(`Disconnected ${e.name}:${e.message}`);
    });
    socket.on('close', () => this.onClose());
    this.writeFrame(serverGreeting(server.msgpack));
  }

  get connected(): boolean {
    return !this.closedFlag && !this.closing;
  }

  private get log(): Logger {
    return this.server.protocolLog;
  }

  // ----------------------------------------------------------------------------------------------------
  // input

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      if (e instanceof FrameTooLargeError) {
        this.log.error(`(${this.label}) ${e.message}; closing the connection`);
      } else {
        this.log.error(`(${this.label}) bad frame; closing the connection`, e);
      }
      this.close();
      return;
    }
    for (const f of frames) {
      if (this.closing) return;
      if (!this.handshakeDone) this.onHello(f);
      else this.onMessage(f);
    }
  }

  private onHello(payload: Buffer): void {
    const hello = parseClientHello(payload);
    if (hello.kind === 'ruok') {
      this.writeFrame(Buffer.from(pythonJson(this.server.statusAll()), 'ascii'));
      this.close();
      return;
    }
    if (hello.kind === 'bad') {
      this.log.error(`bad handshake ${pyRepr(new Uint8Array(payload.subarray(0, 40)))}`);
      this.close();
      return;
    }
    this.log.info(`received handshake '${hello.encoding}${hello.version}'`);
    this.codec = codecFor(hello.encoding, 'server');
    this.handshakeDone = true;
  }

  private onMessage(payload: Buffer): void {
    let msg: Message;
    try {
      msg = this.codec!.decode(payload);
    } catch (e) {
      this.log.error(`(${this.label}) Can't deserialize message`, e);
      this.close();
      return;
    }
    if (isHeartbeat(msg)) return;
    const session = this.session;
    const spec = session.method(msg.name);
    if (!spec) {
      this.log.error(`(${this.label}) Invalid method, ${pyStrRepr(msg.name)}`);
      this.close();
      return;
    }
    if (isAsync(msg)) {
      this.runAsync(spec, msg);
      return;
    }
    const slot = spec.deferred ? null : this.reserve();
    const replySlot = slot ? this.slotApi(slot, msg) : null;
    let result: unknown;
    try {
      result = session.call(spec, msg.name, msg.args, replySlot);
    } catch (e) {
      this.replyError(slot, msg, e);
      return;
    }
    if (result instanceof Promise) {
      this.inFlight++;
      this.server.callsInFlight++;
      this.checkPause();
      const p = result.then(
        (v: unknown) => this.reply(slot, msg, (v ?? null) as PickleValue),
        (e: unknown) => this.replyError(slot, msg, e),
      );
      const done = p.finally(() => {
        this.inFlight--;
        this.server.callsInFlight--;
        this.critical.delete(done);
        this.checkPause();
      });
      if (msg.name === 'tpc_finish') this.critical.add(done);
    } else {
      this.reply(slot, msg, (result ?? null) as PickleValue);
    }
  }

  private runAsync(spec: NonNullable<ReturnType<Session['method']>>, msg: Message): void {
    const fail = (e: unknown): void => {
      if (!unlogged(e)) this.log.error(`(${this.label}) async ${pyStrRepr(msg.name)} raised exception:`, e);
      // a one-way call has no way to report its failure
      this.close();
    };
    try {
      const r = this.session.call(spec, msg.name, msg.args, null);
      if (r instanceof Promise) r.catch(fail);
    } catch (e) {
      fail(e);
    }
  }

  private reply(slot: Slot | null, msg: Message, result: PickleValue): void {
    // (a slot answered early, through ReplySlot.reply, is done)
    if (this.closedFlag || slot?.done) return;
    let payload: Uint8Array;
    try {
      payload = this.codec!.encodeReply(msg.msgid, result);
    } catch (e) {
      this.log.error(`(${this.label}) Unpicklable response`, e);
      payload = this.codec!.encodeError(msg.msgid, 'builtins.ValueError', tuple("Couldn't pickle response"));
    }
    this.finishSlot(slot, payload);
  }

  private replyError(slot: Slot | null, msg: Message, e: unknown): void {
    if (!unlogged(e)) {
      this.log.error(`(${this.label}) ${pyStrRepr(msg.name)} raised exception:`, e);
    }
    if (this.closedFlag || slot?.done) return;
    const { className, args } = marshalError(e);
    let payload: Uint8Array;
    try {
      payload = this.codec!.encodeError(msg.msgid, className, args);
    } catch (err) {
      this.log.error(`(${this.label}) Unpicklable response`, err);
      payload = this.codec!.encodeError(msg.msgid, 'builtins.ValueError', tuple("Couldn't pickle response"));
    }
    this.finishSlot(slot, payload);
  }

  // ----------------------------------------------------------------------------------------------------
  // output

  private reserve(): Slot {
    const s = new Slot();
    this.slots.push(s);
    return s;
  }

  private slotApi(slot: Slot, msg: Message): ReplySlot {
    return {
      append: (name, args) => {
        if (this.closedFlag || slot.done) return;
        this.addToSlot(slot, this.codec!.encodeCall(0, true, name, args));
        this.flush();
      },
      reply: (result) => {
        this.reply(slot, msg, result);
        this.uncork();
      },
    };
  }

  private addToSlot(slot: Slot, payload: Uint8Array): void {
    slot.parts.push(frameHeader(payload.length), payload);
    slot.bytes += payload.length + 4;
    this.queuedBytes += payload.length + 4;
  }

  private finishSlot(slot: Slot | null, payload: Uint8Array): void {
    const s = slot ?? this.reserve();
    this.addToSlot(s, payload);
    s.done = true;
    this.flush();
  }

  sendAsync(name: string, args: PickleValue[]): void {
    if (this.closing || this.closedFlag || !this.codec) return;
    const s = this.reserve();
    this.addToSlot(s, this.codec.encodeCall(0, true, name, args));
    s.done = true;
    if (this.queuedBytes + this.socket.writableLength > this.server.limits.maxOutputBytes) {
      this.log.error(
        `(${this.label}) client is not reading: ${this.queuedBytes + this.socket.writableLength} bytes wait for it; closing the connection`,
      );
      // nothing queued for it can be delivered in time: drop it now rather than after a grace period
      this.closing = true;
      this.socket.destroy();
      return;
    }
    this.flush();
  }

  /** Resolves once what we wrote to the socket is below the high-water mark. */
  writable(): Promise<void> {
    if (this.closedFlag || this.socket.writableLength < this.server.limits.outputHighWater)
      return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private flush(): void {
    const slots = this.slots;
    while (slots.length > 0) {
      const head = slots[0];
      if (head.parts.length > 0) {
        if (!this.corked) {
          // gather everything written in this tick into one writev
          this.corked = true;
          this.socket.cork();
          process.nextTick(() => this.uncork());
        }
        for (const p of head.parts) this.socket.write(p);
        this.queuedBytes -= head.bytes;
        head.bytes = 0;
        head.parts = [];
      }
      if (!head.done) break;
      slots.shift();
    }
    this.checkPause();
  }

  /** Writes out what was gathered since the cork, now rather than at the end of the tick. */
  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  private writeFrame(payload: Uint8Array): void {
    const s = this.reserve();
    this.addToSlot(s, payload);
    s.done = true;
    this.flush();
  }

  private onDrain(): void {
    for (const w of this.drainWaiters.splice(0)) w();
    this.checkPause();
  }

  /** Backpressure: stop reading a client whose replies it does not take, or that has too many calls running. */
  private checkPause(): void {
    if (this.closedFlag) return;
    const limits = this.server.limits;
    const busy =
      this.socket.writableLength + this.queuedBytes >= limits.outputHighWater ||
      this.inFlight >= limits.maxInFlight;
    if (busy && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!busy && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  // ----------------------------------------------------------------------------------------------------
  // closing

  /** Closes after what is queued has been written; the session's transaction is aborted when it is gone. */
  close(reason?: string): void {
    if (this.closing || this.closedFlag) return;
    this.closing = true;
    if (reason) this.log.debug(`(${this.label}) closing: ${reason}`);
    this.socket.end();
    // a client that never reads would keep a half-closed socket forever
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  /** Drops the connection at once (server shutdown). */
  destroy(): void {
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.closing = true;
    this.slots.length = 0;
    this.queuedBytes = 0;
    for (const w of this.drainWaiters.splice(0)) w();
    const done = this.session
      .disconnected()
      .catch((e) => this.log.error(`(${this.label}) disconnect failed`, e));
    // (done does not reject: the catch above logs)
    void done.finally(() => this.server.connectionClosed(this));
  }
}

/** json.dumps with Python's default separators, for ruok's answer. */
export function pythonJson(v: PickleValue): string {
  if (v === null) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (v instanceof PyFloat) return v.toString();
  if (typeof v === 'string')
    return JSON.stringify(v).replace(
      /[\u007f-\uffff]/g,
      (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
    );
  if (isBytes(v)) throw new TypeError('Object of type bytes is not JSON serializable');
  if (Array.isArray(v)) return '[' + v.map((x) => pythonJson(x)).join(', ') + ']';
  if (v instanceof Map) {
    return (
      '{' +
      [...v]
        .map(([k, x]) => `${pythonJson(typeof k === 'string' ? k : pythonJson(k))}: ${pythonJson(x)}`)
        .join(', ') +
      '}'
    );
  }
  throw new TypeError(`not JSON serializable: ${pyRepr(v)}`);
}
