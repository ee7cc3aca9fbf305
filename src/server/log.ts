// runzeo-compatible logging. A log call makes a structured record (level, logger name, message, time,
// exception, fields) and hands it to each output whose level lets it through: runzeo's text (each handler's
// Python logging format string, so a zeo-ts log reads like runzeo's: ZConfig's <eventlog>/<logfile>, or
// runzeo's stderr default when there is no <eventlog>), or JSON lines for log shippers (--log-format json).
// An error is one line, as the last line of runzeo's traceback ("TypeError: ..."); a Node stack never goes
// into an output that does not let DEBUG through.
import { openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { inspect } from 'node:util';
import { isMainThread, threadId } from 'node:worker_threads';
import type pino from 'pino';
import {
  EMPTY_TUPLE,
  isTuple,
  percentFormat,
  PercentFormatError,
  PyFloat,
  pyRepr,
  pyStrRepr,
  strftime,
  type PyValue,
} from '../pickle/index.js';
import { PythonError, ServerException } from '../protocol/index.js';

// ---------------------------------------------------------------------------------------------------------
// Configuration (ZConfig's <eventlog>, read by config.ts)

export interface LogHandlerConfig {
  /** file path, or 'STDOUT' / 'STDERR' */
  path: string;
  format: string;
  level: LogLevel;
  dateformat: string;
}

export interface EventLogConfig {
  level: LogLevel;
  handlers: LogHandlerConfig[];
}

/** What each output writes: runzeo's text (the handler's format), or one JSON object per line. */
export type LogFormat = 'text' | 'json';

// ---------------------------------------------------------------------------------------------------------
// Levels

/** Python logging's level names, with ZODB's BLATHER and TRACE and ZConfig's ALL; NOTSET is a handler's default. */
export type LogLevel =
  'CRITICAL' | 'ERROR' | 'WARNING' | 'INFO' | 'BLATHER' | 'DEBUG' | 'TRACE' | 'ALL' | 'NOTSET';

const LEVELS: Record<LogLevel, number> = {
  CRITICAL: 50,
  ERROR: 40,
  WARNING: 30,
  INFO: 20,
  BLATHER: 15,
  DEBUG: 10,
  TRACE: 5,
  ALL: 1,
  NOTSET: 0,
};

/** The numeric level, as Python logging and ZConfig number them. */
export function levelNumber(level: LogLevel): number {
  return LEVELS[level];
}

/**
 * The named level that filters exactly like the numeric level `n` (0..50) does for our records: zeo-ts logs
 * only at named levels, so a threshold of 25 lets through what WARNING (30) lets through.
 */
export function levelFromNumber(n: number): LogLevel {
  let best: LogLevel = 'CRITICAL';
  for (const [name, value] of Object.entries(LEVELS) as Array<[LogLevel, number]>) {
    if (value >= n && value < LEVELS[best]) best = name;
  }
  return best;
}

/** Python's logging.getLevelName for a record's level (ZODB registers BLATHER and TRACE; ALL is unnamed). */
export function levelName(levelno: number): string {
  switch (levelno) {
    case 50:
      return 'CRITICAL';
    case 40:
      return 'ERROR';
    case 30:
      return 'WARNING';
    case 20:
      return 'INFO';
    case 15:
      return 'BLATHER';
    case 10:
      return 'DEBUG';
    case 5:
      return 'TRACE';
    case 0:
      return 'NOTSET';
    default:
      return `Level ${levelno}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Format check (ZConfig's, and logging.Formatter's)

// logging.PercentStyle.validation_pattern: logging.Formatter refuses a format with no field in it
const VALIDATION_PATTERN = /%\(\w+\)[#0+ -]*(\*|\d+)?(\.(\*|\d+))?[diouxefgcrsa%]/i;

// The attributes of a LogRecord as ZConfig's check fills them (Python 3.11, which has no taskName), with
// their Python types: a format must work with these before runzeo accepts it.
const SAMPLE_FIELDS: Record<string, PyValue> = {
  name: 'ZConfig.components.logger.formatter',
  msg: 'some message',
  args: EMPTY_TUPLE,
  levelname: 'DEBUG',
  levelno: 3,
  pathname: 'apath',
  filename: 'afile',
  module: 'amodule',
  exc_info: null,
  exc_text: null,
  stack_info: null,
  lineno: 1,
  funcName: 'fname',
  created: new PyFloat(1.1),
  msecs: new PyFloat(1.1),
  relativeCreated: new PyFloat(1.1),
  thread: 1,
  threadName: 'MainThread',
  processName: 'MainProcess',
  process: 1,
  message: 'amessage',
  asctime: 'atime',
};

/**
 * Checks a classic (%-style) log format the way ZConfig does as it reads the file, and (`asHandler`) as
 * logging.Formatter does when runzeo starts the handler; returns why it is refused, or null.
 */
export function checkLogFormat(format: string, asHandler = true): string | null {
  try {
    percentFormat(format, (k) => SAMPLE_FIELDS[k]);
  } catch (e) {
    if (!(e instanceof PercentFormatError)) throw e;
    if (e.kind === 'KeyError')
      return `unknown log record field ${e.message} in the log format ${pyStrRepr(format)}`;
    return `invalid log format ${pyStrRepr(format)}: ${e.message}`;
  }
  if (asHandler && !VALIDATION_PATTERN.test(format))
    return `Invalid format ${pyStrRepr(format)} for '%' style`;
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Records and formatting

/** Extra structured data of a record: written as the JSON output's "fields", not in the text. */
export type LogFields = Record<string, unknown>;

/** What a zeo-ts log call knows; the other LogRecord attributes derive from it. */
export interface LogRecord {
  name: string;
  levelno: number;
  message: string;
  /** seconds since the epoch (Python's record.created) */
  created: number;
  /** the formatted exception, appended on the following lines */
  excText?: string | null;
  /** the milliseconds part of `created`, when known exactly (else derived from `created` as Python 3.11 does) */
  msecs?: number;
  /** milliseconds since logging started (record.relativeCreated) */
  relativeCreated?: number;
  process?: number;
}

const loggingStart = Date.now();

/**
 * A record's attributes as %(...)s sees them. Python fills pathname, lineno and funcName from the calling
 * frame; JS has no cheap equivalent, so module, filename and pathname derive from the logger name (ZEO names
 * its loggers after modules: 'ZEO.StorageServer' → module 'StorageServer'), and lineno/funcName are what
 * Python logs when it cannot find the caller (0, '(unknown function)').
 */
export function recordAttributes(record: LogRecord): Record<string, PyValue> {
  const parts = record.name.split('.');
  const module = parts[parts.length - 1] || record.name;
  const created = record.created;
  return {
    name: record.name,
    msg: record.message,
    args: EMPTY_TUPLE,
    levelname: levelName(record.levelno),
    levelno: record.levelno,
    pathname: parts.join('/') + '.py',
    filename: module + '.py',
    module,
    exc_info: null,
    exc_text: null,
    stack_info: null,
    lineno: 0,
    funcName: '(unknown function)',
    created: new PyFloat(created),
    msecs: new PyFloat(record.msecs ?? Math.trunc((created - Math.trunc(created)) * 1000)),
    relativeCreated: new PyFloat(record.relativeCreated ?? created * 1000 - loggingStart),
    thread: threadId,
    threadName: isMainThread ? 'MainThread' : `Thread-${threadId}`,
    processName: 'MainProcess',
    process: record.process ?? process.pid,
    message: record.message,
  };
}

// the last date written, per date format: a busy log writes many records a second
const lastAsctime = new Map<string, { seconds: number; text: string; tz: string | undefined }>();

function asctimeOf(dateformat: string, seconds: number): string {
  const last = lastAsctime.get(dateformat);
  const tz = process.env.TZ;
  if (last && last.seconds === seconds && last.tz === tz) return last.text;
  const text = strftime(dateformat, new Date(seconds * 1000));
  if (lastAsctime.size > 16) lastAsctime.clear();
  lastAsctime.set(dateformat, { seconds, text, tz });
  return text;
}

/**
 * logging.Formatter(format, dateformat).format(record): the format applied to the record's attributes,
 * %(asctime)s by the date format (or Python's default '2026-11-25 10:00:00,123' when it is empty), and the
 * exception text on the following lines.
 */
export function formatRecord(format: string, dateformat: string, record: LogRecord): string {
  const attrs = recordAttributes(record);
  if (format.includes('%(asctime)')) {
    const seconds = Math.floor(record.created);
    const date = asctimeOf(dateformat || '%Y-%m-%d %H:%M:%S', seconds);
    attrs.asctime = dateformat
      ? date
      : date + ',' + String(Math.trunc((attrs.msecs as PyFloat).value)).padStart(3, '0');
  }
  let s = percentFormat(format, (k) => attrs[k]);
  if (record.excText) {
    if (!s.endsWith('\n')) s += '\n';
    s += record.excText;
  }
  return s;
}

/**
 * An exception as the one line Python's traceback ends with (traceback.format_exception_only): the class, by
 * the Python name the client gets it as ('builtins.' left out, as Python does), and str() of it.
 */
export function exceptionLine(err: unknown): string {
  if (!(err instanceof Error)) return typeof err === 'string' ? err : inspect(err, { breakLength: Infinity });
  let name: string;
  let text: string;
  if (err instanceof PythonError || err instanceof ServerException) {
    // a Python exception made here: str() of its args, KeyError's being the repr of its key
    name = err.className;
    const args = err.args;
    text =
      name === 'builtins.KeyError' && isTuple(args) && args.length === 1
        ? pyRepr(args[0])
        : err.message.slice(err.className.length + 2);
  } else {
    const pythonName = (err as { pythonName?: unknown }).pythonName;
    name = typeof pythonName === 'string' ? pythonName : err.name;
    text = err.message;
  }
  if (name.startsWith('builtins.')) name = name.slice('builtins.'.length);
  return text ? `${name}: ${text}` : name;
}

/** An exception with its Node stack, and its causes first as Python chains them: what DEBUG shows. */
export function formatException(err: unknown, seen = new Set<unknown>()): string {
  seen.add(err);
  let text: string;
  if (err instanceof Error) {
    text = err.stack ?? exceptionLine(err);
    const cause = (err as { cause?: unknown }).cause;
    if (cause !== undefined && !seen.has(cause)) {
      text =
        formatException(cause, seen) +
        '\n\nThe above exception was the direct cause of the following exception:\n\n' +
        text;
    }
  } else {
    text = typeof err === 'string' ? err : inspect(err);
  }
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/**
 * A record as one JSON line: time (ISO 8601, UTC), level, logger, message, then exception (its one line) and
 * stack (only with `stack`) when there is one, and fields when there are any.
 */
export function jsonRecord(record: LogRecord, err: unknown, stack: boolean, fields?: LogFields): string {
  const o: Record<string, unknown> = {
    time: new Date(record.created * 1000).toISOString(),
    level: levelName(record.levelno),
    logger: record.name,
    message: record.message,
  };
  if (err !== undefined) {
    o.exception = exceptionLine(err);
    if (stack) o.stack = formatException(err);
  }
  if (fields) o.fields = fields;
  try {
    return fields ? JSON.stringify(o, jsonValue) : JSON.stringify(o);
  } catch (e) {
    delete o.fields;
    o.fields_error = (e as Error).message;
    return JSON.stringify(o);
  }
}

// what JSON.stringify cannot write on its own: bigints as numbers' text, bytes as hex
function jsonValue(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (v instanceof PyFloat) return Number.isFinite(v.value) ? v.value : String(v);
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Loggers

/** runzeo's logging when there is no <eventlog>: stderr, INFO, this format and ZConfig's date format. */
export const RUNZEO_DEFAULT_FORMAT = '------\n%(asctime)s %(levelname)s %(name)s %(message)s';
export const DEFAULT_DATE_FORMAT = '%Y-%m-%dT%H:%M:%S';

/** A log call: the message, the exception if there is one, and structured fields for the JSON output. */
export type LogMethod = (msg: string, err?: unknown, fields?: LogFields) => void;

export type Logger = {
  trace: LogMethod;
  debug: LogMethod;
  blather: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  critical: LogMethod;
  /** The logger `name` below this one (Python's getChild: below the root it is just `name`, e.g. 'ZEO.runzeo'). */
  child(name: string): Logger;
  isLevelEnabled(level: LogLevel): boolean;
};

/** One output: a handler's level, how it writes a record, where the line goes. */
interface Sink {
  levelno: number;
  /** the line of a record (an exception's Node stack only where DEBUG records are written) */
  format(record: LogRecord, err: unknown, fields: LogFields | undefined): string;
  write(line: string): void;
}

/**
 * A log file: an fd opened synchronously in append mode (so a bad path fails at start-up, as it does for
 * runzeo, and logrotate's copytruncate keeps working) behind pino's SonicBoom, which buffers and writes
 * asynchronously. reopen() swaps in a new fd and lets the old one drain into the moved file and close.
 * At process exit what is buffered is written synchronously; a write SonicBoom has already handed to
 * libuv's thread pool is not waited for (nothing can wait at 'exit'), so only that last chunk is at risk,
 * and only when the process exits without close().
 */
// pino (~30 ms of module loading: its serializers, redaction and transports) is loaded when the first log
// file is opened, synchronously, so that runzeo's default logging to stderr starts without it
let pinoModule: typeof pino | null = null;
const loadPino = (): typeof pino => (pinoModule ??= createRequire(import.meta.url)('pino') as typeof pino);

class FileSink {
  private dest: ReturnType<typeof pino.destination>;
  private closing: Array<Promise<void>> = [];
  closed = false;

  constructor(readonly path: string) {
    this.dest = this.open();
  }

  private open(): ReturnType<typeof pino.destination> {
    const fd = openSync(this.path, 'a');
    const dest = loadPino().destination({ fd, sync: false });
    dest.on('error', (e: Error) => {
      process.stderr.write(`zeo: cannot write the log file ${this.path}: ${e.message}\n`);
    });
    return dest;
  }

  write(s: string): void {
    if (!this.closed) this.dest.write(s);
  }

  private end(dest: ReturnType<typeof pino.destination>): Promise<void> {
    return new Promise<void>((resolve) => {
      dest.once('close', () => resolve());
      dest.once('error', () => resolve());
      dest.end();
    });
  }

  reopen(): void {
    if (this.closed) return;
    const old = this.dest;
    try {
      this.dest = this.open();
    } catch (e) {
      // keep logging where we were rather than stop the server over a log file
      process.stderr.write(`zeo: cannot reopen the log file ${this.path}: ${(e as Error).message}\n`);
      return;
    }
    this.closing.push(this.end(old));
  }

  /** At process exit: write what is still buffered, synchronously (a write already in flight is the OS's). */
  flushSync(): void {
    if (this.closed) return;
    try {
      this.dest.flushSync();
    } catch {
      // not writable any more: nothing more we can do at exit
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.push(this.end(this.dest));
    await Promise.all(this.closing);
  }
}

/**
 * The loggers of `zeo serve`. With an <eventlog>: its level, and one output per <logfile> (a file, or STDOUT /
 * STDERR), each with its own level and format; without: runzeo's default (stderr, INFO). `format` 'json'
 * writes every output as JSON lines instead of the handlers' formats. `reopen()` reopens the log files
 * (SIGUSR2, for logrotate); `close()` flushes and closes them. Records still buffered when the process exits
 * are written synchronously then.
 */
export function createLogger(
  config: EventLogConfig | null,
  options: { stderr?: NodeJS.WritableStream; stdout?: NodeJS.WritableStream; format?: LogFormat } = {},
): { root: Logger; reopen(): void; close(): Promise<void> } {
  const handlers: LogHandlerConfig[] = config
    ? config.handlers
    : [{ path: 'STDERR', format: RUNZEO_DEFAULT_FORMAT, level: 'NOTSET', dateformat: DEFAULT_DATE_FORMAT }];
  const threshold = levelNumber(config ? config.level : 'INFO');
  const json = options.format === 'json';
  const files: FileSink[] = [];
  const sinks: Sink[] = [];
  try {
    for (const handler of handlers) {
      let write: (line: string) => void;
      if (handler.path === 'STDERR' || handler.path === 'STDOUT') {
        const stream =
          handler.path === 'STDERR' ? (options.stderr ?? process.stderr) : (options.stdout ?? process.stdout);
        write = (line) => void stream.write(line);
      } else {
        const file = new FileSink(handler.path);
        files.push(file);
        write = (line) => file.write(line);
      }
      const levelno = levelNumber(handler.level);
      const stack = Math.max(levelno, threshold) <= LEVELS.DEBUG;
      const format = json
        ? (record: LogRecord, err: unknown, fields: LogFields | undefined): string =>
            jsonRecord(record, err, stack, fields)
        : (record: LogRecord, err: unknown): string =>
            textLine(
              handler,
              err === undefined
                ? record
                : { ...record, excText: stack ? formatException(err) : exceptionLine(err) },
            );
      sinks.push({ levelno, format, write });
    }
  } catch (e) {
    for (const f of files) void f.close();
    throw e;
  }

  const emit = (name: string, levelno: number, msg: string, err: unknown, fields?: LogFields): void => {
    const now = Date.now();
    const record: LogRecord = {
      name: name || 'root',
      levelno,
      message: msg,
      created: now / 1000,
      msecs: now % 1000,
    };
    for (const sink of sinks) {
      if (levelno >= sink.levelno) sink.write(sink.format(record, err, fields) + '\n');
    }
  };

  const loggers = new Map<string, Logger>();
  const make = (name: string): Logger => {
    const existing = loggers.get(name);
    if (existing) return existing;
    const method =
      (levelno: number): LogMethod =>
      (msg, err, fields) => {
        if (levelno >= threshold) emit(name, levelno, msg, err, fields);
      };
    const logger: Logger = {
      trace: method(LEVELS.TRACE),
      debug: method(LEVELS.DEBUG),
      blather: method(LEVELS.BLATHER),
      info: method(LEVELS.INFO),
      warn: method(LEVELS.WARNING),
      error: method(LEVELS.ERROR),
      critical: method(LEVELS.CRITICAL),
      child: (child: string) => make(name ? `${name}.${child}` : child),
      isLevelEnabled: (level: LogLevel) => LEVELS[level] >= threshold,
    };
    loggers.set(name, logger);
    return logger;
  };

  const onExit = (): void => {
    for (const f of files) f.flushSync();
  };
  if (files.length) process.on('exit', onExit);

  return {
    root: make(''),
    reopen(): void {
      for (const f of files) f.reopen();
    },
    async close(): Promise<void> {
      process.removeListener('exit', onExit);
      await Promise.all(files.map((f) => f.close()));
    },
  };
}

/** A record in runzeo's text: the handler's format, or what logging's handleError writes if that fails. */
function textLine(handler: LogHandlerConfig, record: LogRecord): string {
  try {
    return formatRecord(handler.format, handler.dateformat, record);
  } catch (e) {
    // a format that passed the config check cannot fail; report like logging's handleError if it does
    return `--- Logging error ---\n${exceptionLine(e)}\nMessage: ${pyStrRepr(record.message)}`;
  }
}
