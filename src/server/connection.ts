// One client connection: the handshake, frames in, replies and async calls out, in an order that keeps the
// reference's guarantees. Every sync call reserves its place in the output queue when it arrives, so replies
// go out in request order, and an invalidation queued by a commit waits behind the replies to loads that
// arrived before it (a load that read the old revision must reach the client before the invalidation that
// ends it: ZEO issues 155/166). Replies that may wait long (vote behind the commit lock, pack, undo logs) do
// not reserve a place; they are queued when ready, as the reference's delayed replies are.

import type { Socket } from 'node:net';
import { jsonDumps, pyRepr, pyStrRepr, tuple, type PickleValue } from '../pickle/index.js';
import {
  codecFor,
  errorPayload,
  FrameTooLargeError,
  isAsync,
  isHeartbeat,
  PythonError,
  MessageRefused,
  parseClientHello,
  pyTruthy,
  LoadBeforeAt,
  loadBeforeReplyLength,
  replyParts,
  scanLoadBefore,
  writeLoadBeforeReply,
  serverGreeting,
  type Message,
  type MessageCodec,
} from '../protocol/index.js';
import { ConflictError, POSKeyError } from '../storage/errors.js';
import { LoadBeforeHit } from '../storage/interfaces.js';
import {
  ChannelClosedError,
  MessageChannel,
  type ChannelLimits,
  type OutputSlot,
  type Payload,
} from '../transport/channel.js';
import type { Logger } from './log.js';
import type { AsyncCall } from './served-storage.js';
import { Session, type ReplySlot, type SessionConnection, type SessionServer } from './session.js';

export interface ConnectionLimits extends ChannelLimits {
  /** a client that lets this many bytes pile up (invalidations it does not read) is disconnected */
  maxOutputBytes: number;
}

export interface ConnectionServer extends SessionServer {
  readonly msgpack: boolean;
  readonly limits: ConnectionLimits;
  readonly protocolLog: Logger;
  connectionClosed(conn: ServerConnection): void;
  /** a large frame was handled, or a connection with a large backlog ended: garbage to collect once quiet */
  memoryBurst(): void;
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

/** A frame this large leaves garbage worth collecting (its decoded form, the reply). */
const LARGE_FRAME = 1 << 20;

export class ServerConnection implements SessionConnection {
  readonly session: Session;
  private readonly channel: MessageChannel;
  private codec: MessageCodec | null = null;
  /** a large frame came in: its garbage is worth a collection when the connection ends */
  private heavy = false;
  /** calls that must finish before the connection is let go on shutdown (tpc_finish) */
  readonly critical = new Set<Promise<unknown>>();
  /** when the client connected (epoch ms), and the protocol it chose ('Z5', 'M5'; null before the handshake) */
  readonly connectedAt = Date.now();
  protocol: string | null = null;

  constructor(
    socket: Socket,
    private readonly server: ConnectionServer,
    readonly label: string,
  ) {
    this.channel = new MessageChannel(socket, server.limits, {
      frame: (payload) => {
        if (this.codec) this.onMessage(payload);
        else this.onHello(payload);
        if (payload.length >= LARGE_FRAME) {
          this.heavy = true;
          server.memoryBurst();
        }
      },
      frameAt: (chunk, start, length) => this.codec !== null && this.fastLoad(chunk, start, length),
      closing: (reason) => this.onClosing(reason),
      closed: () => this.onClosed(),
    });
    this.session = new Session(server, this);
    this.channel.send(serverGreeting(server.msgpack));
  }

  get connected(): boolean {
    return this.channel.connected;
  }

  /** calls whose replies are not ready yet, and bytes queued for the client (the dashboard's view) */
  get callsInFlight(): number {
    return this.channel.callsInFlight;
  }

  get outputBytes(): number {
    return this.channel.outputBytes;
  }

  private get log(): Logger {
    return this.server.protocolLog;
  }

  // ----------------------------------------------------------------------------------------------------
  // input

  private onHello(payload: Buffer): void {
    const hello = parseClientHello(payload);
    if (hello.kind === 'ruok') {
      this.channel.send(Buffer.from(jsonDumps(this.server.statusAll()), 'ascii'));
      this.close('ruok answered');
      return;
    }
    if (hello.kind === 'bad') {
      this.log.error(`bad handshake ${pyRepr(new Uint8Array(payload.subarray(0, 40)))}`);
      this.close('bad handshake');
      return;
    }
    this.log.info(`received handshake '${hello.encoding}${hello.version}'`);
    this.codec = codecFor(hello.encoding, 'server');
    this.protocol = `${hello.encoding}${hello.version}`;
  }

  /**
   * The hot path: a loadBefore (req[start .. start + length]) whose record is in memory is answered here,
   * without the general decoding and call machinery and without an object of its own: read in place, looked
   * up into reused fields, its reply written straight into the channel's batch. The same bytes as the general
   * path's reply, at the same place in the output (taken now, as a sync call's is on arrival). False for
   * anything else, or a load that needs the file: the general way.
   */
  private fastLoad(req: Buffer, start: number, length: number): boolean {
    const encoding = this.codec!.encoding;
    const call = this.loadAt;
    if (!scanLoadBefore(encoding, req, start, length, call)) return false;
    const r = this.session.loadBeforeNow(req, call.oidAt, call.tidAt, this.hit);
    if (r < 0) return false;
    const found = r > 0 ? this.hit : null;
    const n = loadBeforeReplyLength(encoding, call, found);
    const channel = this.channel;
    const at = channel.batchFrame(n);
    if (at >= 0) {
      writeLoadBeforeReply(encoding, channel.batchBuffer, at, req, call, found);
    } else {
      // behind a reply not sent yet, or large: a frame of its own (the record is copied: the cache's view
      // is valid only until the storage is used again)
      const out = Buffer.allocUnsafe(n);
      writeLoadBeforeReply(encoding, out, 0, req, call, found);
      channel.send(out);
    }
    return true;
  }

  private readonly loadAt = new LoadBeforeAt();
  private readonly hit = new LoadBeforeHit();

  private onMessage(payload: Buffer): void {
    // (a loadBefore in a frame spread over several reads comes here: the fast path all the same)
    if (this.fastLoad(payload, 0, payload.length)) return;
    let msg: Message;
    try {
      msg = this.codec!.decode(payload);
    } catch (e) {
      if (e instanceof MessageRefused && !pyTruthy(e.flag as PickleValue)) {
        // too large once decoded, but a call we can answer: an error reply (logged), and the connection stays
        const stub = { msgid: e.msgid as PickleValue, flag: false, name: e.call, args: [], body: null };
        // a TypeError: of the builtins, the one ZEO's client raises as itself (others become ServerException)
        this.replyError(null, stub, new PythonError('builtins.TypeError', tuple(e.message)));
        return;
      }
      this.log.error(`(${this.label}) Can't deserialize message`, e);
      this.close('protocol error');
      return;
    }
    if (isHeartbeat(msg)) return;
    const session = this.session;
    const spec = session.method(msg.name);
    if (!spec) {
      this.log.error(`(${this.label}) Invalid method, ${pyStrRepr(msg.name)}`);
      this.close('protocol error');
      return;
    }
    if (isAsync(msg)) {
      this.runAsync(spec, msg);
      return;
    }
    const slot = spec.deferred ? null : this.channel.reserve();
    const replySlot = slot ? this.slotApi(slot, msg) : null;
    let result: unknown;
    try {
      result = session.call(spec, msg.name, msg.args, replySlot);
    } catch (e) {
      this.replyError(slot, msg, e);
      return;
    }
    if (result instanceof Promise) {
      this.server.callsInFlight++;
      const p = result.then(
        (v: unknown) => this.reply(slot, msg, (v ?? null) as PickleValue),
        (e: unknown) => this.replyError(slot, msg, e),
      );
      const done = p.finally(() => {
        this.server.callsInFlight--;
        this.critical.delete(done);
      });
      this.channel.track(done);
      if (msg.name === 'tpc_finish') this.critical.add(done);
    } else {
      this.reply(slot, msg, (result ?? null) as PickleValue);
    }
  }

  private runAsync(spec: NonNullable<ReturnType<Session['method']>>, msg: Message): void {
    const fail = (e: unknown): void => {
      if (!unlogged(e)) this.log.error(`(${this.label}) async ${pyStrRepr(msg.name)} raised exception:`, e);
      // a one-way call has no way to report its failure
      this.close('one-way call failed');
    };
    try {
      const r = this.session.call(spec, msg.name, msg.args, null);
      // a one-way call still running (a blob chunk being written): read nothing more until it is done
      if (r instanceof Promise) this.channel.holdReading(r.catch(fail));
    } catch (e) {
      fail(e);
    }
  }

  /** The reply to `msg` at its place (or, for a deferred call, behind everything queued now). */
  private reply(slot: OutputSlot | null, msg: Message, result: PickleValue): void {
    // (a slot answered early, through ReplySlot.reply, is ended)
    if (!this.channel.connected || slot?.ended) return;
    this.endSlot(slot, replyParts(this.codec!, msg.msgid, result, this.unencodable));
  }

  private readonly unencodable = (e: unknown): void =>
    this.log.error(`(${this.label}) Unpicklable response`, e);

  private replyError(slot: OutputSlot | null, msg: Message, e: unknown): void {
    if (!unlogged(e)) {
      this.log.error(`(${this.label}) ${pyStrRepr(msg.name)} raised exception:`, e);
    }
    if (!this.channel.connected || slot?.ended) return;
    this.endSlot(slot, errorPayload(this.codec!, msg.msgid, e, this.unencodable));
  }

  private endSlot(slot: OutputSlot | null, payload: Payload): void {
    if (slot) slot.end(payload);
    else this.channel.send(payload);
  }

  private slotApi(slot: OutputSlot, msg: Message): ReplySlot {
    return {
      append: (name, args) => {
        if (!this.channel.connected || slot.ended) return;
        slot.write(this.codec!.encodeCall(0, true, name, args));
      },
      appendCall: (call) => {
        if (!this.channel.connected || slot.ended) return;
        slot.write(call.encode(this.codec!));
      },
      reply: (result) => {
        this.reply(slot, msg, result);
        this.channel.uncork();
      },
    };
  }

  // ----------------------------------------------------------------------------------------------------
  // output

  sendAsync(name: string, args: PickleValue[], now = false): void {
    if (!this.channel.connected || !this.codec) return;
    this.sendEncoded(this.codec.encodeCall(0, true, name, args), now);
  }

  sendCall(call: AsyncCall): void {
    if (!this.channel.connected || !this.codec) return;
    this.sendEncoded(call.encode(this.codec), false);
  }

  flushOutput(): void {
    this.channel.uncork();
  }

  private sendEncoded(payload: Uint8Array, now: boolean): void {
    const waiting = this.channel.outputBytes + payload.length + 4;
    if (waiting > this.server.limits.maxOutputBytes) {
      this.log.error(
        `(${this.label}) client is not reading: ${waiting} bytes wait for it; closing the connection`,
      );
      // nothing queued for it can be delivered in time: drop it now rather than after a grace period
      this.channel.destroy('client is not reading');
      return;
    }
    this.channel.send(payload);
    if (now) this.channel.uncork();
  }

  /** Resolves once what we wrote to the socket is below the high-water mark. */
  writable(): Promise<void> {
    return this.channel.writable();
  }

  /** Stops reading this client's calls until `p` settles (backpressure for a write the session waits for). */
  holdReading(p: Promise<unknown>): void {
    this.channel.holdReading(p);
  }

  // ----------------------------------------------------------------------------------------------------
  // closing

  /** Closes after what is queued has been written; the session's transaction is aborted when it is gone. */
  close(reason = 'closed by the server'): void {
    this.channel.close(reason);
  }

  /** Drops the connection at once (server shutdown). */
  destroy(): void {
    this.channel.destroy('server shutdown');
  }

  private onClosing(reason: Error): void {
    if (reason instanceof FrameTooLargeError) {
      this.log.error(`(${this.label}) ${reason.message}; closing the connection`);
    } else if (reason instanceof ChannelClosedError) {
      this.log.debug(`(${this.label}) closing: ${reason.message}`);
    } else {
      // a socket error other than a reset
      this.log.error(`Disconnected ${reason.name}:${reason.message}`);
    }
  }

  private onClosed(): void {
    const done = this.session
      .disconnected()
      .catch((e) => this.log.error(`(${this.label}) disconnect failed`, e));
    // (done does not reject: the catch above logs)
    void done.finally(() => {
      this.server.connectionClosed(this);
      // what a client that took its output slowly, or sent large frames, leaves behind
      if (this.heavy || this.channel.reachedHighWater) this.server.memoryBurst();
    });
  }
}
