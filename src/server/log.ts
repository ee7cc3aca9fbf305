// runzeo-compatible logging: records go through pino (level filtering, child loggers) into a destination
// that formats each one with the handler's Python logging format string, so a zeo-ts log reads like
// runzeo's (ZConfig's <eventlog>/<logfile>, or runzeo's stderr default when there is no <eventlog>).
import { openSync } from 'node:fs';
import { threadId, isMainThread } from 'node:worker_threads';
import { inspect } from 'node:util';
import pino from 'pino';
import { pyStrRepr } from '../pickle/index.js';

// ---------------------------------------------------------------------------------------------------------
// The configuration (ZConfig's <eventlog> and its <logfile> handlers, as zeo.conf gives them)

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
// Python values, as far as %-formatting of a LogRecord needs them

/** A Python float (a plain JS number stands for a Python int). */
export class PyFloat {
  constructor(readonly value: number) {}
}
/** The empty tuple (a record's `args`: our messages come preformatted). */
export const EMPTY_TUPLE: unique symbol = Symbol('()');
export type PyValue = string | number | PyFloat | null | typeof EMPTY_TUPLE;

function typeName(v: PyValue): string {
  if (typeof v === 'string') return 'str';
  if (typeof v === 'number') return 'int';
  if (v instanceof PyFloat) return 'float';
  if (v === null) return 'NoneType';
  return 'tuple';
}

/** Python's repr of a str (ascii() with `asciiOnly`). */
export const pyRepr = pyStrRepr;

// Exact decimal rounding of a double, half to even as CPython's float formatting does (JS's toFixed and
// toExponential round ties away from zero, so '%.0f' % 2.5 would differ).
function decompose(x: number): { mant: bigint; exp: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const e = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  if (e === 0) return { mant: frac, exp: -1074 };
  return { mant: frac | (1n << 52n), exp: e - 1075 };
}

/** round(|x| * 10**k) to the nearest integer, ties to even. */
function scaledRound(x: number, k: number): bigint {
  const { mant, exp } = decompose(x);
  let num = mant;
  let den = 1n;
  if (exp >= 0) num <<= BigInt(exp);
  else den <<= BigInt(-exp);
  if (k >= 0) num *= 10n ** BigInt(k);
  else den *= 10n ** BigInt(-k);
  const q = num / den;
  const r2 = (num % den) * 2n;
  if (r2 > den || (r2 === den && q % 2n === 1n)) return q + 1n;
  return q;
}

function fixedDigits(x: number, prec: number): string {
  const digits = scaledRound(x, prec)
    .toString()
    .padStart(prec + 1, '0');
  return prec > 0 ? digits.slice(0, -prec) + '.' + digits.slice(-prec) : digits;
}

/** Digits and exponent of |x| rounded to `sig` significant digits. */
function sigDigits(x: number, sig: number): { digits: string; exp: number } {
  if (x === 0) return { digits: '0'.repeat(sig), exp: 0 };
  let exp = Math.floor(Math.log10(Math.abs(x)));
  let q = scaledRound(x, sig - 1 - exp);
  // log10 may be off by one near powers of ten; the rounded digit count tells
  if (q >= 10n ** BigInt(sig)) {
    exp += 1;
    q = scaledRound(x, sig - 1 - exp);
  } else if (q < 10n ** BigInt(sig - 1)) {
    exp -= 1;
    q = scaledRound(x, sig - 1 - exp);
    if (q >= 10n ** BigInt(sig)) {
      exp += 1;
      q = scaledRound(x, sig - 1 - exp);
    }
  }
  return { digits: q.toString(), exp };
}

function expSuffix(exp: number, upper: boolean): string {
  return (upper ? 'E' : 'e') + (exp < 0 ? '-' : '+') + String(Math.abs(exp)).padStart(2, '0');
}

function formatFloat(x: number, conv: string, prec: number | null, alt: boolean): string {
  const upper = conv === 'E' || conv === 'F' || conv === 'G';
  if (Number.isNaN(x)) return upper ? 'NAN' : 'nan';
  if (!Number.isFinite(x)) return upper ? 'INF' : 'inf';
  const c = conv.toLowerCase();
  let p = prec ?? 6;
  if (c === 'f') {
    const s = fixedDigits(x, p);
    return alt && p === 0 ? s + '.' : s;
  }
  if (c === 'e') {
    const { digits, exp } = sigDigits(x, p + 1);
    const mant = digits.length > 1 ? digits[0] + '.' + digits.slice(1) : alt ? digits + '.' : digits;
    return mant + expSuffix(exp, upper);
  }
  // 'g': fixed or exponential by the exponent, trailing zeros removed unless '#'
  if (p === 0) p = 1;
  const { digits, exp } = sigDigits(x, p);
  let body: string;
  if (exp >= -4 && exp < p) {
    body = fixedDigits(x, p - 1 - exp);
    if (!alt && body.includes('.')) body = body.replace(/\.?0+$/, '');
    else if (alt && !body.includes('.')) body += '.';
    return body;
  }
  let mant = digits.length > 1 ? digits[0] + '.' + digits.slice(1) : digits;
  if (!alt && mant.includes('.')) mant = mant.replace(/\.?0+$/, '');
  else if (alt && !mant.includes('.')) mant += '.';
  return mant + expSuffix(exp, upper);
}

/** Python's repr of a float. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  // toExponential() gives the shortest round-tripping digits, as Python's repr does
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(x.toExponential())!;
  const sign = m[1];
  const digits = m[2] + (m[3] ?? '');
  const exp = Number(m[4]);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return sign + '0.' + '0'.repeat(-exp - 1) + digits;
    const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
    const fracPart = digits.slice(exp + 1);
    return sign + intPart + '.' + (fracPart || '0');
  }
  const mant = digits.length > 1 ? digits[0] + '.' + digits.slice(1) : digits;
  return sign + mant + expSuffix(exp, false);
}

function pyStr(v: PyValue): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v).toString() : String(v);
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (v === null) return 'None';
  return '()';
}

/** A %-format the way Python's `fmt % mapping` fails: ValueError, KeyError or TypeError, with its message. */
export class PercentFormatError extends Error {
  constructor(
    readonly kind: 'ValueError' | 'KeyError' | 'TypeError',
    message: string,
  ) {
    super(message);
    this.name = 'PercentFormatError';
  }
}

interface Spec {
  key: string | null;
  flags: string;
  width: number | null;
  prec: number | null;
  conv: string;
}

type Piece = string | Spec;

const parsedFormats = new Map<string, Piece[]>();

function parsePercent(fmt: string): Piece[] {
  const cached = parsedFormats.get(fmt);
  if (cached) return cached;
  const pieces: Piece[] = [];
  let lit = '';
  let i = 0;
  while (i < fmt.length) {
    const ch = fmt[i];
    if (ch !== '%') {
      lit += ch;
      i++;
      continue;
    }
    i++;
    if (i >= fmt.length) throw new PercentFormatError('ValueError', 'incomplete format');
    if (fmt[i] === '%') {
      lit += '%';
      i++;
      continue;
    }
    let key: string | null = null;
    if (fmt[i] === '(') {
      // the key runs to the matching ')', parentheses nesting as in CPython
      let depth = 1;
      const start = ++i;
      while (i < fmt.length && depth > 0) {
        if (fmt[i] === '(') depth++;
        else if (fmt[i] === ')') depth--;
        i++;
      }
      if (depth > 0) throw new PercentFormatError('ValueError', 'incomplete format key');
      key = fmt.slice(start, i - 1);
    }
    let flags = '';
    while (i < fmt.length && '-+ #0'.includes(fmt[i])) flags += fmt[i++];
    let width: number | null = null;
    if (fmt[i] === '*') throw new PercentFormatError('TypeError', '* wants int');
    while (i < fmt.length && fmt[i] >= '0' && fmt[i] <= '9') width = (width ?? 0) * 10 + Number(fmt[i++]);
    let prec: number | null = null;
    if (fmt[i] === '.') {
      i++;
      if (fmt[i] === '*') throw new PercentFormatError('TypeError', '* wants int');
      prec = 0;
      while (i < fmt.length && fmt[i] >= '0' && fmt[i] <= '9') prec = prec * 10 + Number(fmt[i++]);
    }
    while (i < fmt.length && 'hlL'.includes(fmt[i])) i++;
    if (i >= fmt.length) throw new PercentFormatError('ValueError', 'incomplete format');
    const conv = fmt[i];
    if (!'diouxXeEfFgGcrsa'.includes(conv)) {
      const code = conv.codePointAt(0)!;
      throw new PercentFormatError(
        'ValueError',
        `unsupported format character '${conv}' (0x${code.toString(16)}) at index ${i}`,
      );
    }
    i++;
    if (lit) pieces.push(lit);
    lit = '';
    if (key === null) {
      // Python would format the whole mapping here, or fail for want of arguments; a log format never means that
      throw new PercentFormatError('TypeError', 'format requires a mapping');
    }
    pieces.push({ key, flags, width, prec, conv });
  }
  if (lit) pieces.push(lit);
  if (parsedFormats.size > 100) parsedFormats.clear();
  parsedFormats.set(fmt, pieces);
  return pieces;
}

function pad(body: string, sign: string, spec: Spec, numeric: boolean): string {
  const width = spec.width ?? 0;
  const len = sign.length + [...body].length;
  if (len >= width) return sign + body;
  if (spec.flags.includes('-')) return sign + body + ' '.repeat(width - len);
  if (numeric && spec.flags.includes('0')) return sign + '0'.repeat(width - len) + body;
  return ' '.repeat(width - len) + sign + body;
}

function signOf(negative: boolean, flags: string): string {
  if (negative) return '-';
  if (flags.includes('+')) return '+';
  if (flags.includes(' ')) return ' ';
  return '';
}

function formatOne(spec: Spec, v: PyValue): string {
  const { conv, flags, prec } = spec;
  switch (conv) {
    case 's':
    case 'r':
    case 'a': {
      let s = conv === 's' ? pyStr(v) : typeof v === 'string' ? pyRepr(v, conv === 'a') : pyStr(v);
      if (prec !== null) s = [...s].slice(0, prec).join('');
      return pad(s, '', spec, false);
    }
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o': {
      let n: bigint;
      if (typeof v === 'number') n = BigInt(v);
      else if (v instanceof PyFloat && (conv === 'd' || conv === 'i' || conv === 'u')) {
        if (!Number.isFinite(v.value)) {
          throw new PercentFormatError('ValueError', `cannot convert float ${pyStr(v)} to integer`);
        }
        n = BigInt(Math.trunc(v.value));
      } else if (conv === 'd' || conv === 'i' || conv === 'u') {
        throw new PercentFormatError(
          'TypeError',
          `%${conv} format: a real number is required, not ${typeName(v)}`,
        );
      } else {
        throw new PercentFormatError(
          'TypeError',
          `%${conv} format: an integer is required, not ${typeName(v)}`,
        );
      }
      const neg = n < 0n;
      const abs = neg ? -n : n;
      let digits =
        conv === 'x' || conv === 'X' ? abs.toString(16) : conv === 'o' ? abs.toString(8) : abs.toString();
      if (conv === 'X') digits = digits.toUpperCase();
      if (prec !== null) digits = digits.padStart(prec, '0');
      let prefix = '';
      if (flags.includes('#')) prefix = conv === 'x' ? '0x' : conv === 'X' ? '0X' : conv === 'o' ? '0o' : '';
      return pad(digits, signOf(neg, flags) + prefix, spec, true);
    }
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G': {
      let x: number;
      if (typeof v === 'number') x = v;
      else if (v instanceof PyFloat) x = v.value;
      else throw new PercentFormatError('TypeError', `must be real number, not ${typeName(v)}`);
      const neg = x < 0 || Object.is(x, -0);
      const body = formatFloat(Math.abs(x), conv, prec, flags.includes('#'));
      return pad(body, signOf(neg && !Number.isNaN(x), flags), spec, true);
    }
    case 'c': {
      if (typeof v === 'number') {
        if (v < 0 || v > 0x10ffff)
          throw new PercentFormatError('ValueError', '%c arg not in range(0x110000)');
        return pad(String.fromCodePoint(v), '', spec, false);
      }
      if (typeof v === 'string' && [...v].length === 1) return pad(v, '', spec, false);
      throw new PercentFormatError('TypeError', '%c requires int or char');
    }
  }
  throw new PercentFormatError('ValueError', `unsupported format character '${conv}'`);
}

/** Python's `fmt % mapping` for the fields of a log record. */
export function percentFormat(fmt: string, fields: (key: string) => PyValue | undefined): string {
  let out = '';
  for (const piece of parsePercent(fmt)) {
    if (typeof piece === 'string') {
      out += piece;
      continue;
    }
    const v = fields(piece.key!);
    if (v === undefined) throw new PercentFormatError('KeyError', pyRepr(piece.key!));
    out += formatOne(piece, v);
  }
  return out;
}

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
      return `unknown log record field ${e.message} in the log format ${pyRepr(format)}`;
    return `invalid log format ${pyRepr(format)}: ${e.message}`;
  }
  if (asHandler && !VALIDATION_PATTERN.test(format)) return `Invalid format ${pyRepr(format)} for '%' style`;
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// time.strftime (glibc, C locale) on local time

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

function dayOfYear(d: Date): number {
  return (
    Math.round(
      (Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(d.getFullYear(), 0, 1)) / 86400000,
    ) + 1
  );
}

function isoWeek(d: Date): { year: number; week: number } {
  const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const wd = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - wd);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  return { year: t.getUTCFullYear(), week: Math.ceil(((t.getTime() - yearStart) / 86400000 + 1) / 7) };
}

const tzNames = new Map<string, Intl.DateTimeFormat>();
function tzAbbrev(d: Date): string {
  const tz = process.env.TZ ?? '';
  let f = tzNames.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' });
    tzNames.set(tz, f);
  }
  return f.formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? '';
}

/**
 * Python's time.strftime(fmt, time.localtime(t)) as glibc does it in the C locale: the conversions,
 * the flags - _ 0 ^ #, a field width, the E and O modifiers (ignored); unknown conversions are kept.
 * (%Z comes from Intl, which may name a zone differently from the tz database abbreviation, e.g. 'GMT+1'.)
 */
export function strftime(fmt: string, d: Date): string {
  let out = '';
  for (let i = 0; i < fmt.length; i++) {
    if (fmt[i] !== '%') {
      out += fmt[i];
      continue;
    }
    const start = i;
    i++;
    let flag = '';
    while (i < fmt.length && '-_0^#'.includes(fmt[i])) flag += fmt[i++];
    let width: number | null = null;
    while (i < fmt.length && fmt[i] >= '0' && fmt[i] <= '9') width = (width ?? 0) * 10 + Number(fmt[i++]);
    while (i < fmt.length && (fmt[i] === 'E' || fmt[i] === 'O')) i++;
    if (i >= fmt.length) {
      out += fmt.slice(start);
      break;
    }
    const c = fmt[i];
    // the last of - _ 0 decides the padding: none (spaces up to an explicit width), spaces, zeros
    const padFlag = [...flag].reverse().find((f) => f === '-' || f === '_' || f === '0');
    const num = (n: number, w: number, padc = '0'): string => {
      const sign = n < 0 ? '-' : '';
      const s = String(Math.abs(n));
      const p =
        padFlag === '_'
          ? ' '
          : padFlag === '0'
            ? '0'
            : padFlag === '-'
              ? width !== null
                ? ' '
                : null
              : padc;
      return p === null ? sign + s : sign + s.padStart((width ?? w) - sign.length, p);
    };
    const alpha = (s: string, swapToUpper = true): string => {
      if (flag.includes('^')) s = s.toUpperCase();
      else if (flag.includes('#')) s = swapToUpper ? s.toUpperCase() : s.toLowerCase();
      if (width !== null && s.length < width) s = (padFlag === '0' ? '0' : ' ').repeat(width - s.length) + s;
      return s;
    };
    const h = d.getHours();
    const h12 = h % 12 === 0 ? 12 : h % 12;
    let r: string | null;
    switch (c) {
      case 'a':
        r = alpha(DAYS[d.getDay()].slice(0, 3));
        break;
      case 'A':
        r = alpha(DAYS[d.getDay()]);
        break;
      case 'b':
      case 'h':
        r = alpha(MONTHS[d.getMonth()].slice(0, 3));
        break;
      case 'B':
        r = alpha(MONTHS[d.getMonth()]);
        break;
      case 'c':
        r = alpha(strftime('%a %b %e %H:%M:%S %Y', d));
        break;
      case 'C':
        r = num(Math.floor(d.getFullYear() / 100), 2);
        break;
      case 'd':
        r = num(d.getDate(), 2);
        break;
      case 'D':
      case 'x':
        r = alpha(strftime('%m/%d/%y', d));
        break;
      case 'e':
        r = num(d.getDate(), 2, ' ');
        break;
      case 'F':
        r = alpha(strftime('%Y-%m-%d', d));
        break;
      case 'g':
        r = num(isoWeek(d).year % 100, 2);
        break;
      case 'G':
        r = num(isoWeek(d).year, 1);
        break;
      case 'H':
        r = num(h, 2);
        break;
      case 'I':
        r = num(h12, 2);
        break;
      case 'j':
        r = num(dayOfYear(d), 3);
        break;
      case 'k':
        r = num(h, 2, ' ');
        break;
      case 'l':
        r = num(h12, 2, ' ');
        break;
      case 'm':
        r = num(d.getMonth() + 1, 2);
        break;
      case 'M':
        r = num(d.getMinutes(), 2);
        break;
      case 'n':
        r = '\n';
        break;
      case 'p':
        r = alpha(h < 12 ? 'AM' : 'PM', false);
        break;
      case 'P':
        r = alpha(h < 12 ? 'am' : 'pm');
        break;
      case 'r':
        r = alpha(strftime('%I:%M:%S %p', d));
        break;
      case 'R':
        r = alpha(strftime('%H:%M', d));
        break;
      case 's':
        r = num(Math.floor(d.getTime() / 1000), 1);
        break;
      case 'S':
        r = num(d.getSeconds(), 2);
        break;
      case 't':
        r = '\t';
        break;
      case 'T':
      case 'X':
        r = alpha(strftime('%H:%M:%S', d));
        break;
      case 'u':
        r = num(d.getDay() || 7, 1);
        break;
      case 'U':
        r = num(Math.floor((dayOfYear(d) - 1 + 7 - d.getDay()) / 7), 2);
        break;
      case 'V':
        r = num(isoWeek(d).week, 2);
        break;
      case 'w':
        r = num(d.getDay(), 1);
        break;
      case 'W':
        r = num(Math.floor((dayOfYear(d) - 1 + 7 - ((d.getDay() + 6) % 7)) / 7), 2);
        break;
      case 'y':
        r = num(d.getFullYear() % 100, 2);
        break;
      case 'Y':
        r = num(d.getFullYear(), 1);
        break;
      case 'z': {
        const off = -d.getTimezoneOffset();
        const a = Math.abs(off);
        r =
          (off < 0 ? '-' : '+') +
          String(Math.floor(a / 60)).padStart(2, '0') +
          String(a % 60).padStart(2, '0');
        break;
      }
      case 'Z':
        r = alpha(tzAbbrev(d), false);
        break;
      case '%':
        r = alpha('%');
        break;
      default:
        r = null;
    }
    out += r ?? fmt.slice(start, i + 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Records and formatting

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

/**
 * logging.Formatter(format, dateformat).format(record): the format applied to the record's attributes,
 * %(asctime)s by the date format (or Python's default '2026-11-25 10:00:00,123' when it is empty), and the
 * exception text on the following lines.
 */
export function formatRecord(format: string, dateformat: string, record: LogRecord): string {
  const attrs = recordAttributes(record);
  if (format.includes('%(asctime)')) {
    const date = new Date(Math.floor(record.created) * 1000);
    attrs.asctime = dateformat
      ? strftime(dateformat, date)
      : strftime('%Y-%m-%d %H:%M:%S', date) +
        ',' +
        String(Math.trunc((attrs.msecs as PyFloat).value)).padStart(3, '0');
  }
  let s = percentFormat(format, (k) => attrs[k]);
  if (record.excText) {
    if (!s.endsWith('\n')) s += '\n';
    s += record.excText;
  }
  return s;
}

/** An exception as the lines logging appends after the message: the stack, and its causes first as Python chains them. */
export function formatException(err: unknown, seen = new Set<unknown>()): string {
  seen.add(err);
  let text: string;
  if (err instanceof Error) {
    text = err.stack ?? `${err.name}: ${err.message}`;
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

// ---------------------------------------------------------------------------------------------------------
// Loggers

/** runzeo's logging when there is no <eventlog>: stderr, INFO, this format and ZConfig's date format. */
export const RUNZEO_DEFAULT_FORMAT = '------\n%(asctime)s %(levelname)s %(name)s %(message)s';
export const DEFAULT_DATE_FORMAT = '%Y-%m-%dT%H:%M:%S';

export type Logger = {
  trace(msg: string, err?: unknown): void;
  debug(msg: string, err?: unknown): void;
  blather(msg: string, err?: unknown): void;
  info(msg: string, err?: unknown): void;
  warn(msg: string, err?: unknown): void;
  error(msg: string, err?: unknown): void;
  critical(msg: string, err?: unknown): void;
  /** The logger `name` below this one (Python's getChild: below the root it is just `name`, e.g. 'ZEO.runzeo'). */
  child(name: string): Logger;
  isLevelEnabled(level: LogLevel): boolean;
};

// pino's levels are Python's numbers, so pino's filtering is logging's
const PINO_LEVELS = {
  notset: 0,
  all: 1,
  trace: 5,
  debug: 10,
  blather: 15,
  info: 20,
  warning: 30,
  error: 40,
  critical: 50,
} as const;
type PinoLevel = keyof typeof PINO_LEVELS;

function pinoLevel(level: LogLevel): PinoLevel {
  return level.toLowerCase() as PinoLevel;
}

interface Sink {
  handler: LogHandlerConfig;
  levelno: number;
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
class FileSink {
  private dest: ReturnType<typeof pino.destination>;
  private closing: Array<Promise<void>> = [];
  closed = false;

  constructor(readonly path: string) {
    this.dest = this.open();
  }

  private open(): ReturnType<typeof pino.destination> {
    const fd = openSync(this.path, 'a');
    const dest = pino.destination({ fd, sync: false });
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
 * The loggers of `zeo serve`. With an <eventlog>: its level, and one sink per <logfile> (a file, or STDOUT /
 * STDERR), each with its own level and format; without: runzeo's default (stderr, INFO). `reopen()` reopens
 * the log files (SIGUSR2, for logrotate); `close()` flushes and closes them. Records still buffered when the
 * process exits are written synchronously then.
 */
export function createLogger(
  config: EventLogConfig | null,
  options: { stderr?: NodeJS.WritableStream; stdout?: NodeJS.WritableStream } = {},
): { root: Logger; reopen(): void; close(): Promise<void> } {
  const handlers: LogHandlerConfig[] = config
    ? config.handlers
    : [{ path: 'STDERR', format: RUNZEO_DEFAULT_FORMAT, level: 'NOTSET', dateformat: DEFAULT_DATE_FORMAT }];
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
      sinks.push({ handler, levelno: levelNumber(handler.level), write });
    }
  } catch (e) {
    for (const f of files) void f.close();
    throw e;
  }

  // pino serialises each record to a JSON line; this destination turns it back into the Python-style
  // lines of every handler whose level lets it through
  const destination = {
    write(json: string): void {
      const o = JSON.parse(json) as {
        level: number;
        time: number;
        name?: string;
        msg?: string;
        exc_text?: string;
      };
      const record: LogRecord = {
        name: o.name ?? 'root',
        levelno: o.level,
        message: o.msg ?? '',
        created: o.time / 1000,
        msecs: o.time % 1000,
        excText: o.exc_text ?? null,
      };
      for (const sink of sinks) {
        if (o.level < sink.levelno) continue;
        let line: string;
        try {
          line = formatRecord(sink.handler.format, sink.handler.dateformat, record);
        } catch (e) {
          // a format that passed the config check cannot fail; report like logging's handleError if it does
          line = `--- Logging error ---\n${formatException(e)}\nMessage: ${pyRepr(record.message)}`;
        }
        sink.write(line + '\n');
      }
    },
  };
  const base = pino<PinoLevel>(
    {
      customLevels: PINO_LEVELS,
      useOnlyCustomLevels: true,
      level: pinoLevel(config ? config.level : 'INFO'),
      base: null,
    },
    destination,
  );

  const loggers = new Map<string, Logger>();
  const make = (name: string): Logger => {
    const existing = loggers.get(name);
    if (existing) return existing;
    const p = name ? base.child({ name }) : base;
    const emit =
      (level: PinoLevel) =>
      (msg: string, err?: unknown): void => {
        if (!p.isLevelEnabled(level)) return;
        if (err === undefined) p[level](msg);
        else p[level]({ exc_text: formatException(err) }, msg);
      };
    const logger: Logger = {
      trace: emit('trace'),
      debug: emit('debug'),
      blather: emit('blather'),
      info: emit('info'),
      warn: emit('warning'),
      error: emit('error'),
      critical: emit('critical'),
      child: (child: string) => make(name ? `${name}.${child}` : child),
      isLevelEnabled: (level: LogLevel) => p.isLevelEnabled(pinoLevel(level)),
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
