// ZConfig's datatypes (ZConfig/datatypes.py and its logger component's), with Python's conversions under
// them: a datatype takes the value as written and returns what it means, or throws a DatatypeError whose
// message is the one Python gives, so a refusal reads as runzeo's does.
import { statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { pyStrRepr } from '../pickle/index.js';
import { DatatypeError } from './errors.js';

/** What a datatype may look at besides the value: the environment ($HOME for `~`). */
export interface ConvContext {
  env: NodeJS.ProcessEnv;
}

/** A datatype: the value as written to what it means. */
export type Datatype<T = unknown> = (value: string, cx: ConvContext) => T;

/** Python's repr of a str (for messages in ZConfig's wording). */
export const repr = (s: string): string => pyStrRepr(s);

// ---------------------------------------------------------------------------------------------------------
// Python's str and number conversions

// str.strip()/split() whitespace
const PY_SPACE =
  ' \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const isPySpace = (ch: string): boolean => PY_SPACE.includes(ch);

export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isPySpace(s[a])) a++;
  while (b > a && isPySpace(s[b - 1])) b--;
  return s.slice(a, b);
}

export function pyRstrip(s: string): string {
  let b = s.length;
  while (b > 0 && isPySpace(s[b - 1])) b--;
  return s.slice(0, b);
}

/** str.split() with no separator. */
export function pySplit(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const ch of s) {
    if (isPySpace(ch)) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}

// int() and float() take any Unicode decimal digit; Unicode lays each Nd run out as 0..9
function asciiDigits(s: string): string {
  let out = '';
  for (const ch of s) {
    if (ch >= '0' && ch <= '9') out += ch;
    else if (/\p{Nd}/u.test(ch)) {
      const cp = ch.codePointAt(0)!;
      let zero = cp;
      while (zero > 0 && /\p{Nd}/u.test(String.fromCodePoint(zero - 1))) zero--;
      out += String((cp - zero) % 10);
    } else out += ch;
  }
  return out;
}

/** int(s): decimal, optional sign, single underscores between digits, surrounding whitespace. */
export function pyInt(s: string): number {
  const t = asciiDigits(pyStrip(s));
  if (!/^[+-]?\d(?:_?\d)*$/.test(t))
    throw new DatatypeError(`invalid literal for int() with base 10: ${repr(s)}`);
  return Number(BigInt(t.replace(/_/g, '')));
}

/** float(s). */
export function pyFloat(s: string): number {
  const t = asciiDigits(pyStrip(s)).toLowerCase();
  const digits = String.raw`\d(?:_?\d)*`;
  const num = new RegExp(`^[+-]?(?:(?:${digits})?\\.${digits}|${digits}\\.?)(?:e[+-]?${digits})?$`);
  if (num.test(t)) return Number(t.replace(/_/g, ''));
  const m = /^([+-]?)(inf|infinity|nan)$/.exec(t);
  if (m) return m[2] === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  throw new DatatypeError(`could not convert string to float: ${repr(s)}`);
}

/** int(s, 8), as zdaemon's octal-type reads a umask. */
export function pyOctal(v: string): number {
  const t = pyStrip(v);
  if (!/^[+-]?(?:0[oO])?[0-7](?:_?[0-7])*$/.test(t))
    throw new DatatypeError(`invalid literal for int() with base 8: ${repr(v)}`);
  return parseInt(t.replace(/_/g, '').replace(/0[oO]/, ''), 8);
}

// ---------------------------------------------------------------------------------------------------------
// The stock datatypes

export const string = (v: string): string => v;
export const integer = (v: string): number => pyInt(v);
export const float = (v: string): number => pyFloat(v);
export const stringList = (v: string): string[] => pySplit(v);

/** ZConfig's boolean: yes/no, true/false, on/off, in any case. */
export function boolean(s: string): boolean {
  const v = s.toLowerCase();
  if (v === 'yes' || v === 'true' || v === 'on') return true;
  if (v === 'no' || v === 'false' || v === 'off') return false;
  throw new DatatypeError(`not a valid boolean value: ${repr(s)}`);
}

/** ZConfig's RangeCheckedConversion: `conv`, then inclusive bounds. */
export function rangeChecked<C>(
  conv: (v: string, cx: C) => number,
  min: number | null,
  max: number | null,
): (v: string, cx: C) => number {
  return (v, cx) => {
    const n = conv(v, cx);
    if (min !== null && n < min) throw new DatatypeError(`${n} is below lower bound (${min})`);
    if (max !== null && n > max) throw new DatatypeError(`${n} is above upper bound (${max})`);
    return n;
  };
}

/** ZConfig's SuffixMultiplier: an int with an optional unit suffix (case-insensitive). */
function suffixMultiplier(units: Record<string, number>): (v: string) => number {
  const size = Object.keys(units)[0].length;
  return (s) => {
    const v = s.toLowerCase();
    for (const [suffix, mult] of Object.entries(units)) {
      if (v.slice(-size) === suffix) return pyInt(v.slice(0, -size)) * mult;
    }
    return pyInt(v);
  };
}

/** byte-size: `1024`, `200KB`, `1MB`, `2GB` (powers of 1024), as a number of bytes. */
export const byteSize = suffixMultiplier({ kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 });

/** time-interval: `10`, `10s`, `5m`, `2h`, `1d`, as a number of seconds. */
export const timeInterval = suffixMultiplier({ s: 1, m: 60, h: 3600, d: 86400 });

export const portNumber = rangeChecked((v: string) => pyInt(v), 0, 0xffff);

export interface InetAddress {
  host: string;
  /** null when the value gives none */
  port: number | null;
}

/**
 * ZConfig's InetAddress: 'host:port', '[v6]:port', 'port', ':port', 'host', an unbracketed IPv6 address
 * (no port); hosts lowercased, `defaultHost` when none is given ('' for binding, 127.0.0.1 for connecting).
 */
export function inetAddress(s: string, defaultHost = ''): InetAddress {
  let host = '';
  let port: number | null = null;
  if (s.includes(':')) {
    const i = s.lastIndexOf(':');
    host = s.slice(0, i);
    let p: string | null = s.slice(i + 1);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    else if (host.includes(':')) {
      // an unbracketed IPv6 address: the last part is not a port
      host = s;
      p = null;
    }
    if (p) port = portNumber(p, null);
    host = host.toLowerCase();
  } else {
    try {
      port = portNumber(s, null);
    } catch (e) {
      if (!(e instanceof DatatypeError)) throw e;
      // not a port (even '-5' or '99999'): a host name
      if (pySplit(s).length !== 1) throw new DatatypeError(`not a valid host name: ${repr(s)}`);
      host = s.toLowerCase();
    }
  }
  return { host: host || defaultHost, port };
}

export const inetBindingAddress = (s: string): InetAddress => inetAddress(s, '');
export const inetConnectionAddress = (s: string): InetAddress => inetAddress(s, '127.0.0.1');

export type SocketAddress =
  { family: 'unix'; path: string } | { family: 'inet' | 'inet6'; host: string; port: number | null };

function socketAddress(s: string, defaultHost: string): SocketAddress {
  // anything with a '/' is a unix socket path
  if (s.includes('/')) return { family: 'unix', path: s };
  const { host, port } = inetAddress(s, defaultHost);
  return { family: host.includes(':') ? 'inet6' : 'inet', host, port };
}

/** socket-binding-address: a unix path, or an inet address whose host defaults to '' (all interfaces). */
export const socketBindingAddress = (s: string): SocketAddress => socketAddress(s, '');
/** socket-connection-address: a unix path, or an inet address whose host defaults to 127.0.0.1. */
export const socketConnectionAddress = (s: string): SocketAddress => socketAddress(s, '127.0.0.1');

/** ZConfig's RegularExpressionConversion: the whole value must match. */
export function regexConv(source: string, reason = 'value did not match regular expression') {
  const re = new RegExp(`^(?:${source})`);
  return (v: string): string => {
    const m = re.exec(v);
    if (m && m[0] === v) return v;
    throw new DatatypeError(`${reason}: ${repr(v)}`);
  };
}

const IDENT = '[_a-zA-Z][_a-zA-Z0-9]*';
export const identifier = regexConv(IDENT, 'not a valid Python identifier');
export const dottedName = regexConv(`${IDENT}(?:\\.${IDENT})*`, 'not a valid dotted name');
const basicKeyRe = regexConv('[a-zA-Z][-._a-zA-Z0-9]*');

/** basic-key: how key names and -X paths are normalised (lowercased). */
export const basicKey = (v: string): string => basicKeyRe(v).toLowerCase();

// ---------------------------------------------------------------------------------------------------------
// Paths (os.path's expanduser and dirname; existence checked as the datatype runs)

export function expanduser(p: string, env: NodeJS.ProcessEnv): string {
  if (!p.startsWith('~')) return p;
  let i = p.indexOf('/', 1);
  if (i < 0) i = p.length;
  let home: string;
  if (i === 1) home = env.HOME ?? homedir();
  else {
    let me: string | null;
    try {
      me = userInfo().username;
    } catch {
      me = null;
    }
    if (p.slice(1, i) !== me) return p; // another user's home: Python asks pwd; we leave it as written
    home = homedir();
  }
  home = home.replace(/\/+$/, '');
  return home + p.slice(i) || '/';
}

export function pyDirname(p: string): string {
  const i = p.lastIndexOf('/') + 1;
  let head = p.slice(0, i);
  if (head && head !== '/'.repeat(head.length)) head = head.replace(/\/+$/, '');
  return head;
}

export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

// ZConfig's existing-* checks: the path (after ~ expansion) passes `test`
function existing(test: (path: string) => boolean, what: string): Datatype<string> {
  return (v, cx) => {
    const nv = expanduser(v, cx.env);
    if (test(nv)) return nv;
    throw new DatatypeError(`${v} is not an existing ${what}`);
  };
}

export const existingDirectory = existing(isDir, 'directory');
export const existingPath = existing(exists, 'path');
/** existing-file: ZConfig checks only that something is there */
export const existingFile = existing(exists, 'file');

/** existing-dirpath: the directory the path names a file in must exist. */
export function existingDirpath(v: string, cx: ConvContext): string {
  const nv = expanduser(v, cx.env);
  const dir = pyDirname(nv);
  if (!dir || isDir(dir)) return nv;
  throw new DatatypeError(`The directory named as part of the path ${v} does not exist.`);
}

// ---------------------------------------------------------------------------------------------------------
// The logger component's datatypes (ZConfig/components/logger)

const LEVEL_NAMES: Record<string, number> = {
  critical: 50,
  fatal: 50,
  error: 40,
  warn: 30,
  warning: 30,
  info: 20,
  blather: 15,
  debug: 10,
  trace: 5,
  all: 1,
  notset: 0,
};

/** logging-level: a level name or a number 0..50, as Python's logging number. */
export function loggingLevel(v: string): number {
  const s = v.toLowerCase();
  const n = s in LEVEL_NAMES ? LEVEL_NAMES[s] : pyInt(s);
  if (n < 0 || n > 50) throw new DatatypeError(`log level not in range: ${n}`);
  return n;
}

/** The escapes a log format may use: these five, replaced in this order. */
export function escapedString(v: string): string {
  return v
    .replaceAll('\\n', '\n')
    .replaceAll('\\t', '\t')
    .replaceAll('\\b', '\b')
    .replaceAll('\\f', '\f')
    .replaceAll('\\r', '\r');
}

export function logFormatStyle(v: string): string {
  const styles = ['classic', 'format', 'safe-template', 'template'];
  if (styles.includes(v.toLowerCase())) return v.toLowerCase();
  throw new DatatypeError(
    `log_format_style must be one of ${styles.map((s) => repr(s)).join(', ')}; found ${repr(v)}`,
  );
}

export function httpHandlerUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new DatatypeError('url must be an http url');
  }
  if (u.protocol !== 'http:') throw new DatatypeError('url must be an http url');
  if (!u.host) throw new DatatypeError('url must specify a location');
  return v;
}

/** One of `values`, compared lowercased (or uppercased); `message` says what else was given. */
export function oneOf(values: string[], message: (v: string) => string, upper = false) {
  return (v: string): string => {
    const n = upper ? v.toUpperCase() : v.toLowerCase();
    if (values.includes(n)) return n;
    throw new DatatypeError(message(v));
  };
}
