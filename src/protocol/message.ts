// ZEO messages (spec §3): every frame after the handshake is one 4-tuple (msgid, flag, name, args), pickled
// ('Z') or msgpacked ('M'). Calls carry a boolean flag (true = one-way); replies are named '.reply' and carry 0
// (result) or 2 (error: (class name, exception args)); the heartbeat is (-1, 0, '.reply', None).
import {
  anyGlobal,
  overBudget,
  PickleError,
  PyFloat,
  Tuple,
  tuple,
  PickleStackLimitError,
  Unpickler,
  zeoServerGlobals,
  type DecodeBudget,
  type GlobalPolicy,
  type PickleValue,
} from '../pickle/index.js';
import { MessageRefused, ProtocolError } from './errors.js';
import type { Encoding } from './handshake.js';
import { MsgpackWriter, NestedTooDeeply, unpack, unpackMessageHead } from './msgpack.js';
import { ZeoPickleWriter } from './zpickle.js';

export const REPLY = '.reply';
/** Reply flags. */
export const REPLY_OK = 0;
export const REPLY_ERROR = 2;

export interface Message {
  /** Echoed verbatim in the reply: an int, or a tuple (loadBefore's (oid, tid)), or anything. */
  msgid: PickleValue;
  /** As sent: a boolean in calls (true = one-way), the int 0 or 2 in replies and 0 in heartbeats. */
  flag: PickleValue;
  name: string;
  /** A call's positional arguments (the tuple, or list, as sent); [] for a reply, whose value is `body`. */
  args: PickleValue[];
  /** The fourth element as sent: the arguments of a call, the result (or (class, args) error pair) of a reply. */
  body: PickleValue;
}

/** Python's truth value of the flag: a truthy call flag means one-way (async); a truthy reply flag an error. */
export function isAsync(m: Message): boolean {
  return pyTruthy(m.flag);
}

/** The client's keep-alive: any message with msgid -1, ignored before any other check (server.py). */
export function isHeartbeat(m: Message): boolean {
  const id = m.msgid;
  return id === -1 || id === -1n || (id instanceof PyFloat && id.value === -1);
}

export function pyTruthy(v: PickleValue): boolean {
  if (v === null || v === false) return false;
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'number':
      return v !== 0;
    case 'bigint':
      return v !== 0n;
    case 'string':
      return v.length !== 0;
    default:
      break;
  }
  if (v instanceof PyFloat) return v.value !== 0; // NaN is true, as in Python
  if (v instanceof Uint8Array || Array.isArray(v)) return v.length !== 0;
  if (v instanceof Map || v instanceof Set) return v.size !== 0;
  return true;
}

/**
 * Encoders return the payload without its length prefix (see framing.ts), in memory no other message shares
 * (up to 256 KiB a view of a shared slab, so never transfer or pool its ArrayBuffer). Decoded bytes are views of
 * the payload: copy what outlives it.
 */
export interface MessageCodec {
  readonly encoding: Encoding;
  readonly role: 'server' | 'client';
  /** One frame payload to a Message; a ProtocolError for anything the reference would fail to decode. */
  decode(payload: Uint8Array): Message;
  /** (msgid, async, name, tuple(args)). */
  encodeCall(msgid: PickleValue, async: boolean, name: string, args: PickleValue[]): Uint8Array;
  /** (msgid, 0, '.reply', result). */
  encodeReply(msgid: PickleValue, result: PickleValue): Uint8Array;
  /**
   * encodeReply's payload as pieces to write in order (one frame): large byte strings of the result (object
   * records) are referenced, not copied, so a reply costs no second copy of its record while it waits to be
   * written. The result's bytes must not change until then.
   */
  encodeReplyParts(msgid: PickleValue, result: PickleValue): Uint8Array[];
  /**
   * encodeReply's bytes without their copy out of the codec's own buffer: valid only until the codec's next
   * encode, so the caller copies them at once (the server's fast loads, into the channel's batch).
   */
  encodeReplyTransient(msgid: PickleValue, result: PickleValue): Uint8Array;
  /** (msgid, 2, '.reply', (className, excArgs)). */
  encodeError(msgid: PickleValue, className: string, excArgs: PickleValue): Uint8Array;
  /** A one-way call: (0, True, name, tuple(args)); everything the server sends on its own. */
  encodeAsync(name: string, args: PickleValue[]): Uint8Array;
}

interface Writer {
  /** One Buffer; with `parts`, pieces to write in order (Output.finishParts). */
  message(
    msgid: PickleValue,
    flag: PickleValue,
    name: string,
    body: PickleValue,
    bodyIsArgs: boolean,
    parts?: boolean | 'view',
  ): Buffer | Buffer[];
}

abstract class BaseCodec implements MessageCodec {
  abstract readonly encoding: Encoding;
  protected abstract readonly writer: Writer;

  constructor(readonly role: 'server' | 'client') {}

  protected abstract decodeValue(payload: Uint8Array): PickleValue;

  decode(payload: Uint8Array): Message {
    let v: PickleValue;
    try {
      v = this.decodeValue(payload);
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      // whatever else a reader throws on hostile input is still the peer's fault
      throw new ProtocolError(`cannot decode the message: ${(e as Error).message ?? String(e)}`, {
        cause: e,
      });
    }
    const msg = toMessage(v);
    if (!withinAnyBudget(msg.body)) {
      const over = overBudget(msg.body, messageBudget(payload.length));
      if (over) throw new MessageRefused(msg.msgid, msg.flag, msg.name, over);
    }
    return msg;
  }

  encodeCall(msgid: PickleValue, async: boolean, name: string, args: PickleValue[]): Uint8Array {
    return this.writer.message(msgid, async, name, args, true) as Buffer;
  }

  encodeReply(msgid: PickleValue, result: PickleValue): Uint8Array {
    return this.writer.message(msgid, REPLY_OK, REPLY, result, false) as Buffer;
  }

  encodeReplyParts(msgid: PickleValue, result: PickleValue): Uint8Array[] {
    return this.writer.message(msgid, REPLY_OK, REPLY, result, false, true) as Buffer[];
  }

  encodeReplyTransient(msgid: PickleValue, result: PickleValue): Uint8Array {
    return this.writer.message(msgid, REPLY_OK, REPLY, result, false, 'view') as Buffer;
  }

  encodeError(msgid: PickleValue, className: string, excArgs: PickleValue): Uint8Array {
    return this.writer.message(
      msgid,
      REPLY_ERROR,
      REPLY,
      tuple<PickleValue>(className, excArgs),
      false,
    ) as Buffer;
  }

  encodeAsync(name: string, args: PickleValue[]): Uint8Array {
    return this.writer.message(0, true, name, args, true) as Buffer;
  }
}

/**
 * The bound on a decoded message (its arguments, or a reply's value): containers nested at most
 * MESSAGE_MAX_DEPTH deep (the arguments tuple at depth 1: with the message's own tuple, the 1024 levels
 * msgpack's unpacker takes), and at most one element per byte of the message plus MESSAGE_ELEMENT_SLACK.
 * Without the memo every element takes at least a byte, so only memo references that stand for many elements,
 * or nesting, pass it.
 */
export const MESSAGE_MAX_DEPTH = 1023;
export const MESSAGE_ELEMENT_SLACK = 1024;
/**
 * While a pickled message is read, at most this many values may wait on the unpickler's stack when a container
 * begins (LoadOptions.maxStack): deep nesting is refused before it is built. Python's pickler appends and sets
 * items in batches of 1000, so a real message keeps far fewer there; only a tuple of more elements built with
 * MARK, and holding containers, could need more.
 */
export const MESSAGE_MAX_STACK = 65536;

/**
 * A body no message budget refuses, found without walking it: a scalar, bytes, or a sequence of at most
 * MESSAGE_ELEMENT_SLACK - 1 of them (one level deep, and fewer elements than the slack alone allows): most
 * calls and replies (loadBefore's (data, start, end)).
 */
function withinAnyBudget(body: PickleValue): boolean {
  if (body === null || typeof body !== 'object' || body instanceof Uint8Array) return true;
  if (!Array.isArray(body) || body.length >= MESSAGE_ELEMENT_SLACK) return false;
  for (let i = 0; i < body.length; i++) {
    const x: PickleValue = body[i];
    if (x !== null && typeof x === 'object' && !(x instanceof Uint8Array)) return false;
  }
  return true;
}

export function messageBudget(bytes: number): DecodeBudget {
  return { maxDepth: MESSAGE_MAX_DEPTH, maxElements: bytes + MESSAGE_ELEMENT_SLACK };
}

/** Checks the 4-tuple shape (server.py unpacks it and looks the name up; client.py does the same). */
function toMessage(v: PickleValue): Message {
  if (!(v instanceof Tuple) || v.length !== 4) {
    throw new ProtocolError(`a message is a 4-tuple (msgid, flag, name, args), not ${kind(v)}`);
  }
  const [msgid, flag, name, body] = v as Tuple;
  if (typeof name !== 'string') throw new ProtocolError(`a message's name is a str, not ${kind(name)}`);
  let args: PickleValue[];
  if (name === REPLY) {
    args = [];
  } else if (Array.isArray(body)) {
    args = body;
  } else {
    throw new ProtocolError(`the arguments of call ${JSON.stringify(name)} are a tuple, not ${kind(body)}`);
  }
  return { msgid, flag, name, args, body };
}

function kind(v: PickleValue): string {
  if (v === null) return 'None';
  if (v instanceof Tuple) return `a ${v.length}-tuple`;
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Map) return 'a dict';
  if (v instanceof PyFloat) return 'a float';
  switch (typeof v) {
    case 'number':
    case 'bigint':
      return 'an int';
    case 'boolean':
      return 'a bool';
    case 'string':
      return 'a str';
    default:
      return `a ${(Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null)?.constructor?.name ?? 'value'}`;
  }
}

class PickleCodec extends BaseCodec {
  readonly encoding = 'Z' as const;
  protected readonly writer = new ZeoPickleWriter();
  private readonly globals: GlobalPolicy;

  constructor(role: 'server' | 'client') {
    super(role);
    // server: marshal.server_find_global's modules; client: globals are kept as Global values, never imported
    this.globals = role === 'server' ? zeoServerGlobals : anyGlobal;
  }

  protected decodeValue(payload: Uint8Array): PickleValue {
    // zodbpickle's Unpickler defaults: Python 2 str opcodes decode as ASCII, strictly
    const u = new Unpickler(payload, {
      globals: this.globals,
      encoding: 'ASCII',
      errors: 'strict',
      maxStack: MESSAGE_MAX_STACK,
    });
    let v: PickleValue;
    try {
      v = u.load();
    } catch (e) {
      // nested too deep: refused before it was built, and still a call the sender can be answered about when
      // the message's tuple (MARK msgid flag name args) got as far as its name
      if (e instanceof PickleStackLimitError) {
        const [msgid, flag, name] = e.stackBottom as PickleValue[];
        if (e.stackBottom.length >= 3 && typeof name === 'string') {
          throw new MessageRefused(msgid, flag, name, e.message);
        }
      }
      if (e instanceof PickleError) throw new ProtocolError(`bad pickle: ${e.message}`, { cause: e });
      throw e;
    }
    // Python's load() ignores what follows STOP; a ZEO peer never sends any, so it is refused here
    if (u.position !== payload.length) {
      throw new ProtocolError(
        `${payload.length - u.position} bytes after the pickle's STOP (at byte ${u.position})`,
      );
    }
    return v;
  }
}

class MsgpackCodec extends BaseCodec {
  readonly encoding = 'M' as const;
  protected readonly writer: MsgpackWriter;

  constructor(role: 'server' | 'client') {
    super(role);
    // the server passes default=server_default to packb; the client passes none
    this.writer = new MsgpackWriter({ serverDefault: role === 'server' });
  }

  protected decodeValue(payload: Uint8Array): PickleValue {
    try {
      return unpack(payload);
    } catch (e) {
      // past msgpack's own stack: still a call the sender can be answered about, when its head reads
      const head = e instanceof NestedTooDeeply ? unpackMessageHead(payload) : null;
      if (head) throw new MessageRefused(head.msgid, head.flag, head.name, (e as Error).message);
      throw e;
    }
  }
}

/**
 * The 'Z' codec: zodbpickle protocol 3 in fast mode, byte for byte (marshal.encoder); decoding with the server's
 * global whitelist (role 'server') or keeping any global as a Global value (role 'client'). Decoded bytes are
 * views of the payload. Encoders are synchronous and not reentrant; a codec may be shared by any number of
 * connections.
 */
export function pickleCodec(options: { role: 'server' | 'client' }): MessageCodec {
  return new PickleCodec(options.role);
}

/** The 'M' codec: packb(use_bin_type=True) / unpackb(raw=False, use_list=False), byte for byte. */
export function msgpackCodec(options: { role: 'server' | 'client' }): MessageCodec {
  return new MsgpackCodec(options.role);
}

const shared = new Map<string, MessageCodec>();

/** The shared codec for an encoding (the client's handshake letter) and a role. */
export function codecFor(encoding: Encoding, role: 'server' | 'client'): MessageCodec {
  const key = encoding + role;
  let c = shared.get(key);
  if (!c) {
    if (encoding === 'Z') c = pickleCodec({ role });
    else if (encoding === 'M') c = msgpackCodec({ role });
    else throw new ProtocolError(`unknown encoding ${JSON.stringify(encoding)}`);
    shared.set(key, c);
  }
  return c;
}
