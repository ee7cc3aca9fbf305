// Exceptions on the wire (spec §3.3). The server sends (class name, exc_args) where exc_args is the Python
// exception's __dict__ when it has one, else its args (marshal.reduce_exception); the Python client rebuilds the
// few classes in client.py's exc_factories from exactly those shapes and turns every other class name into
// ZEO.Exceptions.ServerException(class_name, exc_args). So each storage error is sent in the shape its Python
// twin has when ZODB's FileStorage or ZEO's StorageServer raises it.
import { constants as osConstants } from 'node:os';
import { getPickleMetadata, Global, PyObject, pyRepr, tuple, type PickleValue } from '../pickle/index.js';
import {
  ConflictError,
  MultipleUndoErrors,
  POSError,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageError,
  StorageSystemError,
  StorageTransactionError,
  UndoError,
  Unsupported,
} from '../storage/errors.js';
import { oidRepr, tidRepr } from '../storage/ids.js';
import type { MessageCodec } from './message.js';

export interface MarshaledError {
  /** module.Class, as the Python client looks it up */
  className: string;
  /** the exception's __dict__ (a dict with str keys) when non-empty, else its args tuple */
  args: PickleValue;
}

/**
 * A Python exception to send as is: for the server's own checks whose exact class and args the reference
 * defines, e.g. new PythonError('builtins.TypeError',
 * tuple("ZEOStorage.history() missing 1 required positional argument: 'tid'")).
 */
export class PythonError extends Error {
  override name = 'PythonError';
  constructor(
    readonly className: string,
    readonly args: PickleValue,
  ) {
    super(`${className}: ${argsText(args)}`);
  }
}

/**
 * An error reply whose class the client does not rebuild (ZEO.Exceptions.ServerException, a StorageError):
 * the class name and exc_args as the server sent them.
 */
export class ServerException extends StorageError {
  override readonly pythonName: string = 'ZEO.Exceptions.ServerException';
  override name = 'ServerException';
  constructor(
    readonly className: string,
    readonly args: PickleValue,
  ) {
    super(`${className}: ${argsText(args)}`);
  }
}

const POSEXC = 'ZODB.POSException';
const RECON = Global.of(POSEXC, '_recon');
const UNDO_ERROR_CLASS = Global.of(POSEXC, 'UndoError');
const READ_ONLY_DEFAULT = new ReadOnlyError().message;

/** What the reference sends when a result or an exception cannot be encoded (server.py send_reply). */
export const UNENCODABLE_RESPONSE: Readonly<MarshaledError> = Object.freeze({
  className: 'builtins.ValueError',
  args: tuple<PickleValue>("Couldn't pickle response"),
});

/**
 * The (class name, exc_args) of an error raised while serving a call:
 *
 * - PythonError and ServerException: as given.
 * - ConflictError, ReadConflictError: the dict {message, oid, class_name, serials} (class_name from the
 *   rejected record's class pickle, as ZODB.utils.get_pickle_metadata; None without a record).
 * - POSKeyError: (oid,) (FileStorage raises POSKeyError(oid), also for a missing serial).
 * - ReadOnlyError: () (the reference always raises ReadOnlyError()), or (message,) for another message.
 * - UndoError: {'_reason', '_oid'}; MultipleUndoErrors: {'_reason', '_oid', '_errs'} as FileStorage builds it,
 *   list(failures.items()) of (oid, UndoError) pairs, the first pair also in _reason/_oid (ZODB's own swap).
 * - other storage errors (StorageTransactionError, Unsupported, StorageSystemError, CorruptedError, ...):
 *   their Python class and (message,).
 * - Node system errors (ENOENT, ENOSPC, ...): builtins.OSError or its subclass for the code, (errno, strerror),
 *   what Python's own I/O would have raised.
 * - any other error, or a thrown non-Error: builtins.RuntimeError, (text,). The reference would send whatever
 *   Python class failed; a JS TypeError is a bug of ours and is not sent as a Python TypeError, which the Python
 *   client would raise as its own TypeError. RuntimeError is Python's class for "fits no other category";
 *   the Python client makes a ServerException of it, as of every class outside its factories.
 */
export function marshalError(err: unknown): MarshaledError {
  if (err instanceof PythonError || err instanceof ServerException) {
    return { className: err.className, args: err.args };
  }
  if (err instanceof ConflictError) {
    const state = new Map<PickleValue, PickleValue>([
      ['message', conflictMessage(err)],
      ['oid', err.oid],
      ['class_name', err.data ? recordClassName(err.data) : null],
      ['serials', err.serials ? tuple<PickleValue>(err.serials[0], err.serials[1]) : null],
    ]);
    return { className: err.pythonName, args: state };
  }
  if (err instanceof POSKeyError) return { className: err.pythonName, args: tuple<PickleValue>(err.oid) };
  if (err instanceof ReadOnlyError) {
    return {
      className: err.pythonName,
      args: err.message === READ_ONLY_DEFAULT ? tuple() : tuple(err.message),
    };
  }
  if (err instanceof MultipleUndoErrors) {
    const errs = err.errors.map((e) => tuple<PickleValue>(e.oid, undoErrorObject(e)));
    const state = new Map<PickleValue, PickleValue>(
      errs.length
        ? [
            ['_reason', errs[0][0]],
            ['_oid', errs[0][1]],
          ]
        : [
            ['_reason', err.message],
            ['_oid', null],
          ],
    );
    state.set('_errs', errs);
    return { className: err.pythonName, args: state };
  }
  if (err instanceof UndoError) {
    return {
      className: err.pythonName,
      args: new Map<PickleValue, PickleValue>([
        ['_reason', undoReason(err)],
        ['_oid', err.oid],
      ]),
    };
  }
  if (err instanceof POSError) {
    return { className: err.pythonName, args: err.message ? tuple(err.message) : tuple() };
  }
  if (err instanceof Error) {
    const sys = systemError(err);
    if (sys) return sys;
    const text = err.name && err.name !== 'Error' ? `${err.name}: ${err.message}` : err.message;
    return { className: 'builtins.RuntimeError', args: tuple(text) };
  }
  return { className: 'builtins.RuntimeError', args: tuple(String(err)) };
}

/** The message ConflictError was made with (ours appends the oid and serials to it; Python keeps it apart). */
function conflictMessage(err: ConflictError): string {
  if (err instanceof ReadConflictError) return 'database read conflict error';
  const { oid, serials } = err;
  if (!oid) return err.message;
  const suffix =
    ` (oid ${oidRepr(oid)}` +
    (serials
      ? `, serial this txn started with ${tidRepr(serials[1])} < current serial ${tidRepr(serials[0])}`
      : '') +
    ')';
  return err.message.endsWith(suffix) ? err.message.slice(0, -suffix.length) : err.message;
}

/** ZODB.utils.get_pickle_metadata joined with '.', as ConflictError's class_name ('.' if none). */
export function recordClassName(data: Uint8Array): string {
  return getPickleMetadata(data).join('.');
}

/** The reason UndoError was made with (ours prefixes the oid to it). */
function undoReason(err: UndoError): string {
  if (!err.oid || err.oid.length !== 8) return err.message;
  const prefix = `${oidRepr(err.oid)}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

/**
 * An UndoError inside a value, as zodbpickle writes one (POSError.__reduce__: _recon(UndoError, state)); the
 * msgpack codec sends it as the server's default= hook does, (class name, __dict__).
 */
function undoErrorObject(err: UndoError): PyObject {
  const reason = undoReason(err);
  const state = new Map<PickleValue, PickleValue>([
    ['_reason', reason],
    ['_oid', err.oid],
    ['args', err.oid ? tuple<PickleValue>(reason, err.oid) : tuple<PickleValue>(reason)],
  ]);
  return new PyObject('reduce', RECON, tuple<PickleValue>(UNDO_ERROR_CLASS, state));
}

const OS_ERROR_CLASSES: Record<string, string> = {
  EAGAIN: 'BlockingIOError',
  EWOULDBLOCK: 'BlockingIOError',
  EALREADY: 'BlockingIOError',
  EINPROGRESS: 'BlockingIOError',
  ECHILD: 'ChildProcessError',
  EPIPE: 'BrokenPipeError',
  ESHUTDOWN: 'BrokenPipeError',
  ECONNABORTED: 'ConnectionAbortedError',
  ECONNREFUSED: 'ConnectionRefusedError',
  ECONNRESET: 'ConnectionResetError',
  EEXIST: 'FileExistsError',
  ENOENT: 'FileNotFoundError',
  EINTR: 'InterruptedError',
  EISDIR: 'IsADirectoryError',
  ENOTDIR: 'NotADirectoryError',
  EACCES: 'PermissionError',
  EPERM: 'PermissionError',
  ESRCH: 'ProcessLookupError',
  ETIMEDOUT: 'TimeoutError',
};

/** A Node system error as Python's OSError(errno, strerror) (whose args leave the filename out). */
function systemError(err: Error): MarshaledError | null {
  const e = err as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
  if (typeof e.code !== 'string' || typeof e.errno !== 'number' || typeof e.syscall !== 'string') return null;
  const errno = (osConstants.errno as Record<string, number>)[e.code] ?? Math.abs(e.errno);
  // Node: "ENOENT: no such file or directory, open 'x'"; the C library: "No such file or directory"
  const m = /^[A-Z0-9_]+: ([^,]+)/.exec(e.message);
  const text = m ? m[1] : e.message;
  const strerror = text.charAt(0).toUpperCase() + text.slice(1);
  return {
    className: `builtins.${OS_ERROR_CLASSES[e.code] ?? 'OSError'}`,
    args: tuple<PickleValue>(errno, strerror),
  };
}

/** Told why a reply could not be encoded, before the fallback goes out instead (the reference logs it). */
export type UnencodableHandler = (error: unknown) => void;

/**
 * An error reply payload for `err`, as server.py send_error: marshalError, and when that cannot be encoded,
 * ('builtins.ValueError', ("Couldn't pickle response",)).
 */
export function errorPayload(
  codec: MessageCodec,
  msgid: PickleValue,
  err: unknown,
  onUnencodable?: UnencodableHandler,
): Uint8Array {
  const m = marshalError(err);
  try {
    return codec.encodeError(msgid, m.className, m.args);
  } catch (e) {
    return unencodable(codec, msgid, e, onUnencodable);
  }
}

/** A reply payload for `result`, or the reference's "Couldn't pickle response" error reply when it has no encoding. */
export function replyPayload(
  codec: MessageCodec,
  msgid: PickleValue,
  result: PickleValue,
  onUnencodable?: UnencodableHandler,
  /** the bytes may be a view of the codec's buffer, valid until its next encode (encodeReplyTransient) */
  transient = false,
): Uint8Array {
  try {
    return transient ? codec.encodeReplyTransient(msgid, result) : codec.encodeReply(msgid, result);
  } catch (e) {
    return unencodable(codec, msgid, e, onUnencodable);
  }
}

/** replyPayload as pieces of one frame (MessageCodec.encodeReplyParts: large byte strings are not copied). */
export function replyParts(
  codec: MessageCodec,
  msgid: PickleValue,
  result: PickleValue,
  onUnencodable?: UnencodableHandler,
): Uint8Array[] {
  try {
    return codec.encodeReplyParts(msgid, result);
  } catch (e) {
    return [unencodable(codec, msgid, e, onUnencodable)];
  }
}

/** server.py send_reply: any failure to encode (a value with no form in the encoding, or a bug) gets the fallback. */
function unencodable(
  codec: MessageCodec,
  msgid: PickleValue,
  e: unknown,
  onUnencodable: UnencodableHandler | undefined,
): Uint8Array {
  onUnencodable?.(e);
  return codec.encodeError(msgid, UNENCODABLE_RESPONSE.className, UNENCODABLE_RESPONSE.args);
}

// --- the client side ---

const BTREES_CONFLICTS = [
  'Conflicting bucket split',
  'Conflicting changes',
  'Conflicting delete and change',
  'Conflicting delete and change',
  'Conflicting inserts or deletes',
  'Conflicting deletes',
  'Conflicting inserts',
  'Conflicting deletes, or delete and change',
  'Conflicting deletes, or delete and change',
  'Conflicting deletes',
  'Empty bucket from deleting all keys',
  'Conflicting changes in an internal BTree node',
  'Empty bucket in a transaction',
  'Delete of first key',
];

/**
 * The error a client raises for an error reply: our storage error classes for ZODB's (with the oid and serials
 * of a conflict, the oid of a POSKeyError), else a ServerException with the class name and args. The Python
 * client rebuilds fewer classes (the rest become ServerException there) and never completes the call when a
 * shape is wrong (a ConflictError without a dict); here a wrong shape gives a ServerException instead.
 */
export function unmarshalError(className: string, args: PickleValue): Error {
  const d = args instanceof Map ? args : null;
  const t = Array.isArray(args) ? args : null;
  switch (className) {
    case `${POSEXC}.POSKeyError`:
      if (t && isId(t[0])) return new POSKeyError(t[0]);
      if (t && t.length === 3 && isId(t[1])) return new POSKeyError(t[1], isId(t[2]) ? t[2] : null);
      break;
    case `${POSEXC}.ConflictError`:
    case `${POSEXC}.ReadConflictError`:
      if (d) {
        const oid = d.get('oid');
        const serials = d.get('serials');
        const message = d.get('message');
        const pair =
          Array.isArray(serials) && serials.length === 2 && isId(serials[0]) && isId(serials[1])
            ? ([serials[0], serials[1]] as const)
            : null;
        const id = isId(oid) ? oid : null;
        return className.endsWith('.ReadConflictError')
          ? new ReadConflictError(id, pair)
          : new ConflictError(id, pair, null, typeof message === 'string' ? message : undefined);
      }
      break;
    case `${POSEXC}.BTreesConflictError`:
      if (d) {
        const [p1, p2, p3, reason] = ['p1', 'p2', 'p3', 'reason'].map((k) => d.get(k));
        const why =
          typeof reason === 'number' ? (BTREES_CONFLICTS[reason] ?? String(reason)) : pyRepr(reason);
        const at = [p1, p2, p3].map((p) => pyRepr(p)).join('/');
        return new ConflictError(null, null, null, `BTrees conflict error at ${at}: ${why}`);
      }
      break;
    case `${POSEXC}.ReadOnlyError`:
      return t && t.length ? new ReadOnlyError(argsText(args)) : new ReadOnlyError();
    case `${POSEXC}.StorageTransactionError`:
      return new StorageTransactionError(argsText(args));
    case `${POSEXC}.StorageSystemError`:
      return new StorageSystemError(argsText(args));
    case `${POSEXC}.StorageError`:
      return new StorageError(argsText(args));
    case `${POSEXC}.Unsupported`:
      return new Unsupported(argsText(args));
    case `${POSEXC}.POSError`:
      return new POSError(argsText(args));
    case `${POSEXC}.UndoError`:
      if (d) return rebuildUndoError(d.get('_reason'), d.get('_oid'));
      break;
    case `${POSEXC}.MultipleUndoErrors`: {
      const errs = d?.get('_errs');
      if (Array.isArray(errs) && errs.every((p) => Array.isArray(p) && p.length === 2)) {
        return new MultipleUndoErrors(errs.map((p) => undoErrorOfPair(p as PickleValue[])));
      }
      break;
    }
    default:
      break;
  }
  return new ServerException(className, args);
}

function isId(v: PickleValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array && v.length === 8;
}

function rebuildUndoError(reason: PickleValue | undefined, oid: PickleValue | undefined): UndoError {
  return new UndoError(typeof reason === 'string' ? reason : pyRepr(reason), isId(oid) ? oid : null);
}

/** One (oid, UndoError) pair of _errs: the error is _recon(...) in a pickle, (class, dict) in msgpack. */
function undoErrorOfPair([oid, e]: PickleValue[]): UndoError {
  let state: PickleValue | undefined;
  if (e instanceof PyObject && e.callable === RECON && e.args.length === 2) state = e.args[1];
  else if (Array.isArray(e) && e.length === 2) state = e[1];
  if (state instanceof Map) return rebuildUndoError(state.get('_reason'), state.get('_oid') ?? oid);
  return rebuildUndoError(e, oid);
}

/** Python's str() of an exception with these args: '' for (), str(arg) for one, repr(args) for more. */
function argsText(args: PickleValue): string {
  if (Array.isArray(args)) {
    if (args.length === 0) return '';
    if (args.length === 1) return typeof args[0] === 'string' ? args[0] : pyRepr(args[0]);
  }
  return typeof args === 'string' ? args : pyRepr(args);
}
