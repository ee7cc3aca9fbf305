// Python's text conventions, in one place: repr of str, bytes and float (and the PyFloat that keeps a float a
// float), `fmt % mapping`, time.strftime and time.ctime, and json.dumps as Python writes them. The log, the
// config errors, the protocol and the CLI all write Python's text through these, so a zeo-ts line reads as
// the reference's does.

// ---------------------------------------------------------------------------------------------------------
// repr

/** A Python float. Boxed because a JS number cannot tell 1.0 from 1. */
export class PyFloat {
  constructor(readonly value: number) {}
  valueOf(): number {
    return this.value;
  }
  toString(): string {
    return pyFloatRepr(this.value);
  }
}

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

const NOT_PRINTABLE = /[\p{C}\p{Z}]/u;

/**
 * Python's repr of a str: what str.isprintable() refuses (control, format, surrogate, private, unassigned and
 * separator characters other than the space) escaped as \xhh, \uhhhh or \Uhhhhhhhh; with `asciiOnly`,
 * everything beyond ASCII too (ascii()).
 */
export function pyStrRepr(s: string, asciiOnly = false): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === quote || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if ((asciiOnly && c > 0x7f) || (c !== 0x20 && (c < 0x20 || c === 0x7f || NOT_PRINTABLE.test(ch)))) {
      if (c <= 0xff) out += '\\x' + c.toString(16).padStart(2, '0');
      else if (c <= 0xffff) out += '\\u' + c.toString(16).padStart(4, '0');
      else out += '\\U' + c.toString(16).padStart(8, '0');
    } else out += ch;
  }
  return out + quote;
}

/** Python's repr of bytes. */
export function pyBytesRepr(b: Uint8Array): string {
  let dq = false;
  let sq = false;
  for (const c of b) {
    if (c === 0x27) sq = true;
    if (c === 0x22) dq = true;
  }
  const quote = sq && !dq ? '"' : "'";
  let out = 'b' + quote;
  for (const c of b) {
    if (c === quote.charCodeAt(0) || c === 0x5c) out += '\\' + String.fromCharCode(c);
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20 || c >= 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += String.fromCharCode(c);
  }
  return out + quote;
}

// ---------------------------------------------------------------------------------------------------------
// fmt % mapping

/** The empty tuple (a log record's `args`: our messages come preformatted). */
export const EMPTY_TUPLE: unique symbol = Symbol('()');
/** What a %-format takes: str, int (a number or bigint), float, None and the empty tuple. */
export type PyValue = string | number | bigint | PyFloat | null | typeof EMPTY_TUPLE;

function typeName(v: PyValue): string {
  if (typeof v === 'string') return 'str';
  if (typeof v === 'number' || typeof v === 'bigint') return 'int';
  if (v instanceof PyFloat) return 'float';
  if (v === null) return 'NoneType';
  return 'tuple';
}

function pyStr(v: PyValue): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v).toString() : String(v);
  if (typeof v === 'bigint') return v.toString();
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
  // (a width counts code points; most fields have none, and a UTF-16 length at least the width is enough)
  if (sign.length + body.length >= width && (width === 0 || !/[\ud800-\udbff]/.test(body)))
    return sign + body;
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
      let s = conv === 's' ? pyStr(v) : typeof v === 'string' ? pyStrRepr(v, conv === 'a') : pyStr(v);
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
      if (typeof v === 'number' || typeof v === 'bigint') n = BigInt(v);
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
      else if (typeof v === 'bigint') x = Number(v);
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
    if (v === undefined) throw new PercentFormatError('KeyError', pyStrRepr(piece.key!));
    out += formatOne(piece, v);
  }
  return out;
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

const hour12 = (d: Date): number => d.getHours() % 12 || 12;

// The numeric conversions: the value, its width, and the padding when no flag says otherwise
const NUMERIC: Record<string, (d: Date) => [number, number, string?]> = {
  C: (d) => [Math.floor(d.getFullYear() / 100), 2],
  d: (d) => [d.getDate(), 2],
  e: (d) => [d.getDate(), 2, ' '],
  g: (d) => [isoWeek(d).year % 100, 2],
  G: (d) => [isoWeek(d).year, 1],
  H: (d) => [d.getHours(), 2],
  I: (d) => [hour12(d), 2],
  j: (d) => [dayOfYear(d), 3],
  k: (d) => [d.getHours(), 2, ' '],
  l: (d) => [hour12(d), 2, ' '],
  m: (d) => [d.getMonth() + 1, 2],
  M: (d) => [d.getMinutes(), 2],
  s: (d) => [Math.floor(d.getTime() / 1000), 1],
  S: (d) => [d.getSeconds(), 2],
  u: (d) => [d.getDay() || 7, 1],
  U: (d) => [Math.floor((dayOfYear(d) - 1 + 7 - d.getDay()) / 7), 2],
  V: (d) => [isoWeek(d).week, 2],
  w: (d) => [d.getDay(), 1],
  W: (d) => [Math.floor((dayOfYear(d) - 1 + 7 - ((d.getDay() + 6) % 7)) / 7), 2],
  y: (d) => [d.getFullYear() % 100, 2],
  Y: (d) => [d.getFullYear(), 1],
};

// The text conversions (the C locale's names and layouts)
const TEXT: Record<string, (d: Date) => string> = {
  a: (d) => DAYS[d.getDay()].slice(0, 3),
  A: (d) => DAYS[d.getDay()],
  b: (d) => MONTHS[d.getMonth()].slice(0, 3),
  h: (d) => MONTHS[d.getMonth()].slice(0, 3),
  B: (d) => MONTHS[d.getMonth()],
  c: (d) => strftime('%a %b %e %H:%M:%S %Y', d),
  D: (d) => strftime('%m/%d/%y', d),
  x: (d) => strftime('%m/%d/%y', d),
  F: (d) => strftime('%Y-%m-%d', d),
  p: (d) => (d.getHours() < 12 ? 'AM' : 'PM'),
  P: (d) => (d.getHours() < 12 ? 'am' : 'pm'),
  r: (d) => strftime('%I:%M:%S %p', d),
  R: (d) => strftime('%H:%M', d),
  T: (d) => strftime('%H:%M:%S', d),
  X: (d) => strftime('%H:%M:%S', d),
  Z: (d) => tzAbbrev(d),
  '%': () => '%',
};

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
    let r: string | null = null;
    const numeric = Object.hasOwn(NUMERIC, c) ? NUMERIC[c] : undefined;
    const text = Object.hasOwn(TEXT, c) ? TEXT[c] : undefined;
    if (numeric) {
      const [n, w, padc] = numeric(d);
      r = num(n, w, padc);
    } else if (text) {
      // %p and %Z: '#' makes them lower case, the others upper
      r = alpha(text(d), c !== 'p' && c !== 'Z');
    } else if (c === 'n') {
      r = '\n';
    } else if (c === 't') {
      r = '\t';
    } else if (c === 'z') {
      const off = -d.getTimezoneOffset();
      const m = Math.abs(off);
      r =
        (off < 0 ? '-' : '+') + String(Math.floor(m / 60)).padStart(2, '0') + String(m % 60).padStart(2, '0');
    }
    out += r ?? fmt.slice(start, i + 1);
  }
  return out;
}

/** Python's time.ctime(t): 'Tue Nov 24 23:28:54 2026', local time (asctime's layout, the day padded with a space). */
export function ctime(d: Date): string {
  return strftime('%a %b %e %H:%M:%S %Y', d);
}

// ---------------------------------------------------------------------------------------------------------
// json.dumps

export interface JsonDumpsOptions {
  /** escape everything beyond ASCII as \uXXXX (Python's default: true) */
  ensureAscii?: boolean;
  /** [item, key] separators; Python's default is [', ', ': '], or [',', ': '] with an indent */
  separators?: readonly [string, string];
  /** lines indented by this many spaces (null: all on one line) */
  indent?: number | null;
  /** keys in order (Python sorts the original keys, so mixed key types fail) */
  sortKeys?: boolean;
  /** write NaN and Infinity as JavaScript does, as Python's default; false refuses them (ValueError) */
  allowNan?: boolean;
}

/** json.dumps refusing a value: Python's TypeError or ValueError, with its message. */
export class JsonDumpsError extends Error {
  constructor(
    readonly kind: 'TypeError' | 'ValueError',
    message: string,
  ) {
    super(message);
    this.name = 'JsonDumpsError';
  }
}

// what json's encode_basestring(_ascii) escape by name
const JSON_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
};
// eslint-disable-next-line no-control-regex -- the control characters are what json escapes
const JSON_ESCAPE = /["\\\x00-\x1f]/g;
// eslint-disable-next-line no-control-regex -- as above, and everything beyond ASCII
const JSON_ESCAPE_ASCII = /["\\\x00-\x1f\x7f-\uffff]/g;

function jsonString(s: string, ensureAscii: boolean): string {
  const escape = (c: string): string =>
    JSON_ESCAPES[c] ?? '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
  // per UTF-16 unit, so a character beyond the BMP becomes its surrogate pair, as Python writes it
  return '"' + s.replace(ensureAscii ? JSON_ESCAPE_ASCII : JSON_ESCAPE, escape) + '"';
}

function jsonFloat(x: number, allowNan: boolean): string {
  if (Number.isFinite(x)) return pyFloatRepr(x);
  if (!allowNan) {
    // (Python 3.11's message; 3.13 appends the value)
    throw new JsonDumpsError('ValueError', 'Out of range float values are not JSON compliant');
  }
  return Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
}

function jsonTypeName(v: unknown): string {
  if (v instanceof Uint8Array) return v.constructor.name === 'ByteArray' ? 'bytearray' : 'bytes';
  if (v instanceof Set) return v.constructor.name === 'FrozenSet' ? 'frozenset' : 'set';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return v.constructor.name === 'Tuple' ? 'tuple' : 'list';
  if (v instanceof Map) return 'dict';
  const name = (v as object).constructor?.name;
  if (name === 'PyObject') {
    const callable = (v as { callable?: { name?: unknown } }).callable;
    if (typeof callable?.name === 'string') return callable.name;
  }
  if (name === 'Global') return 'type';
  return name ?? typeof v;
}

/** The code points of two strs compared as Python compares them (JS's < compares UTF-16 units). */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/**
 * Python's json.dumps of a value of the pickle value model: None, bool, int, float (PyFloat, or a number that is
 * not an integer), str, list and tuple, and dicts whose keys are str, int, float, bool or None; anything else
 * is the TypeError Python raises.
 */
export function jsonDumps(value: unknown, options: JsonDumpsOptions = {}): string {
  const ensureAscii = options.ensureAscii ?? true;
  const allowNan = options.allowNan ?? true;
  const indent = options.indent ?? null;
  const [itemSep, keySep] = options.separators ?? [indent === null ? ', ' : ',', ': '];
  const seen = new Set<object>();

  const key = (k: unknown): string => {
    if (typeof k === 'string') return k;
    if (k === null) return 'null';
    if (k === true) return 'true';
    if (k === false) return 'false';
    if (typeof k === 'bigint') return k.toString();
    if (typeof k === 'number') return Number.isInteger(k) ? BigInt(k).toString() : jsonFloat(k, allowNan);
    if (k instanceof PyFloat) return jsonFloat(k.value, allowNan);
    throw new JsonDumpsError(
      'TypeError',
      `keys must be str, int, float, bool or None, not ${jsonTypeName(k)}`,
    );
  };

  const encode = (v: unknown, level: number): string => {
    if (v === null) return 'null';
    if (v === true) return 'true';
    if (v === false) return 'false';
    if (typeof v === 'string') return jsonString(v, ensureAscii);
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v).toString() : jsonFloat(v, allowNan);
    if (v instanceof PyFloat) return jsonFloat(v.value, allowNan);
    const isList = Array.isArray(v);
    if (!isList && !(v instanceof Map)) {
      throw new JsonDumpsError('TypeError', `Object of type ${jsonTypeName(v)} is not JSON serializable`);
    }
    if (seen.has(v)) throw new JsonDumpsError('ValueError', 'Circular reference detected');
    let parts: string[];
    seen.add(v);
    try {
      if (isList) {
        parts = (v as unknown[]).map((x) => encode(x, level + 1));
      } else {
        let entries = [...(v as Map<unknown, unknown>)];
        if (options.sortKeys) entries = sortEntries(entries);
        parts = entries.map(([k, x]) => jsonString(key(k), ensureAscii) + keySep + encode(x, level + 1));
      }
    } finally {
      seen.delete(v);
    }
    const [open, close] = isList ? ['[', ']'] : ['{', '}'];
    if (parts.length === 0) return open + close;
    if (indent === null) return open + parts.join(itemSep) + close;
    const inner = '\n' + ' '.repeat(indent * (level + 1));
    return open + inner + parts.join(itemSep + inner) + '\n' + ' '.repeat(indent * level) + close;
  };
  return encode(value, 0);
}

// sorted(d.items()): keys of one kind (str, or numbers and bools), else Python's TypeError, which names the
// first key of another kind and the first key (what timsort's first comparison meets for two keys)
function sortEntries(entries: Array<[unknown, unknown]>): Array<[unknown, unknown]> {
  const typeOf = (k: unknown): string => {
    if (k === null) return 'NoneType';
    if (typeof k === 'boolean') return 'bool';
    if (typeof k === 'bigint') return 'int';
    if (typeof k === 'number') return Number.isInteger(k) ? 'int' : 'float';
    if (k instanceof PyFloat) return 'float';
    if (typeof k === 'string') return 'str';
    return jsonTypeName(k);
  };
  const numeric = (t: string): boolean => t === 'int' || t === 'float' || t === 'bool';
  if (entries.length > 1) {
    const t0 = typeOf(entries[0][0]);
    const ok = (t: string): boolean => (t0 === 'str' ? t === 'str' : numeric(t0) && numeric(t));
    for (const [k] of entries) {
      const t = typeOf(k);
      if (!ok(t) || !ok(t0)) {
        throw new JsonDumpsError('TypeError', `'<' not supported between instances of '${t}' and '${t0}'`);
      }
    }
  }
  const num = (k: unknown): number => (k instanceof PyFloat ? k.value : Number(k));
  return entries.sort(([a], [b]) =>
    typeof a === 'string' ? compareCodePoints(a, b as string) : num(a) - num(b),
  );
}
