// The configuration of `zeo serve`: runzeo's zeo.conf (ZConfig syntax, read as runzeo's schema reads it:
// ZEO's schema.xml and server.xml, ZODB's storage sections, ZConfig's <eventlog>, zdaemon's <runner>) and
// runzeo's command line (-C, -a, -f, -t, --pid-file, -X). What runzeo accepts we accept and read the same
// way; what it refuses we refuse; what only Python can do (packers, DemoStorage, ZEO-client storages,
// other %imported packages, syslog handlers...) is refused here, at parse time, saying so.
import { readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pyStrRepr } from '../pickle/index.js';
import {
  checkLogFormat,
  DEFAULT_DATE_FORMAT,
  levelFromNumber,
  RUNZEO_DEFAULT_FORMAT,
  type EventLogConfig,
  type LogLevel,
} from './log.js';

export { levelNumber, type LogLevel } from './log.js';

// ---------------------------------------------------------------------------------------------------------
// The result

export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface SslConfig {
  certificate: string;
  key: string | null;
  /** a Python dotted name in runzeo; zeo-ts cannot call Python, so the server must decide what to do with it */
  passwordFunction: string | null;
  /** CA file, CA directory, or 'DYNAMIC' */
  authenticate: string;
}

export type StorageConfig =
  | {
      kind: 'filestorage';
      name: string;
      path: string;
      blobDir: string | null;
      create: boolean;
      readOnly: boolean;
      quota: number | null;
      packGc: boolean;
      packKeepOld: boolean;
      /** wrapped in zc.zlibstorage's <serverzlibstorage>: records stay as clients compress them; pack decompresses to find references */
      zlib: boolean;
    }
  | {
      kind: 'mappingstorage';
      name: string;
      /** its `name` key, default 'Mapping Storage' */ description: string;
    };

export interface ServerConfig {
  address: ListenAddress;
  readOnly: boolean;
  invalidationQueueSize: number;
  invalidationAge: number | null;
  transactionTimeout: number | null;
  pidFilename: string | null;
  clientConflictResolution: boolean;
  msgpack: boolean;
  ssl: SslConfig | null;
  storages: StorageConfig[];
  eventlog: EventLogConfig | null;
  /** where each <zeo> setting came from, for messages: "zeo.conf, line 3", "-a", "ZEO_MSGPACK", "default" */
  sources?: Partial<Record<ZeoSetting, string>>;
}

type ZeoSetting =
  | 'address'
  | 'readOnly'
  | 'invalidationQueueSize'
  | 'invalidationAge'
  | 'transactionTimeout'
  | 'pidFilename'
  | 'clientConflictResolution'
  | 'msgpack'
  | 'ssl';

/** A configuration runzeo would refuse, or one zeo-ts cannot serve; the message names file and line. */
export class ConfigError extends Error {
  readonly file: string | null;
  readonly line: number | null;
  /** the message without the position */
  readonly reason: string;

  constructor(reason: string, file: string | null = null, line: number | null = null) {
    super(file && line ? `${file}, line ${line}: ${reason}` : file ? `${file}: ${reason}` : reason);
    this.name = 'ConfigError';
    this.file = file;
    this.line = line;
    this.reason = reason;
  }
}

export const DEFAULT_ADDRESS: ListenAddress = { kind: 'tcp', host: '127.0.0.1', port: 8100 };

/** `zeo serve` with no options: ./var/Data.fs as storage '1' on 127.0.0.1:8100 (creating ./var is the caller's job). */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  return {
    address: { ...DEFAULT_ADDRESS },
    readOnly: false,
    invalidationQueueSize: 100,
    invalidationAge: null,
    transactionTimeout: null,
    pidFilename: defaultPidFile(env),
    clientConflictResolution: false,
    msgpack: !!env.ZEO_MSGPACK,
    ssl: null,
    storages: [fileStorageDefaults('1', './var/Data.fs')],
    eventlog: null,
    sources: { address: 'default', msgpack: env.ZEO_MSGPACK ? 'ZEO_MSGPACK' : 'default' },
  };
}

// runzeo writes $INSTANCE_HOME/var/ZEO.pid when no pid file is configured and INSTANCE_HOME is set
function defaultPidFile(env: NodeJS.ProcessEnv): string | null {
  return env.INSTANCE_HOME ? join(env.INSTANCE_HOME, 'var', 'ZEO.pid') : null;
}

// ---------------------------------------------------------------------------------------------------------
// Python's conversions (ZConfig's datatypes call int(), float(), str.lower()...)

/** A ValueError from a datatype: the message is Python's. */
class DatatypeError extends Error {}

// str.strip()/split() whitespace
const PY_SPACE =
  ' \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const isPySpace = (ch: string): boolean => PY_SPACE.includes(ch);

function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isPySpace(s[a])) a++;
  while (b > a && isPySpace(s[b - 1])) b--;
  return s.slice(a, b);
}

function pyRstrip(s: string): string {
  let b = s.length;
  while (b > 0 && isPySpace(s[b - 1])) b--;
  return s.slice(0, b);
}

function pySplit(s: string): string[] {
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

/** Python's repr of a str (for messages in ZConfig's wording). */
const repr = (s: string): string => pyStrRepr(s);

// int() and float() take any Unicode decimal digit; Unicode lays each Nd run out as 0..9
function asciiDigits(s: string): string {
  let out = '';
  for (const ch of s) {
    if (ch >= '0' && ch <= '9') out += ch;
    else if (/\p{Nd}/u.test(ch)) {
      let cp = ch.codePointAt(0)!;
      let zero = cp;
      while (zero > 0 && /\p{Nd}/u.test(String.fromCodePoint(zero - 1))) zero--;
      cp = (cp - zero) % 10;
      out += String(cp);
    } else out += ch;
  }
  return out;
}

/** int(s): decimal, optional sign, single underscores between digits, surrounding whitespace. */
function pyInt(s: string): number {
  const t = asciiDigits(pyStrip(s));
  if (!/^[+-]?\d(?:_?\d)*$/.test(t))
    throw new DatatypeError(`invalid literal for int() with base 10: ${repr(s)}`);
  return Number(BigInt(t.replace(/_/g, '')));
}

/** float(s). */
function pyFloat(s: string): number {
  const t = asciiDigits(pyStrip(s)).toLowerCase();
  const digits = String.raw`\d(?:_?\d)*`;
  const num = new RegExp(`^[+-]?(?:(?:${digits})?\\.${digits}|${digits}\\.?)(?:e[+-]?${digits})?$`);
  if (num.test(t)) return Number(t.replace(/_/g, ''));
  const m = /^([+-]?)(inf|infinity|nan)$/.exec(t);
  if (m) return m[2] === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  throw new DatatypeError(`could not convert string to float: ${repr(s)}`);
}

function pyBool(s: string): boolean {
  const v = s.toLowerCase();
  if (v === 'yes' || v === 'true' || v === 'on') return true;
  if (v === 'no' || v === 'false' || v === 'off') return false;
  throw new DatatypeError(`not a valid boolean value: ${repr(s)}`);
}

function byteSize(s: string): number {
  const v = s.toLowerCase();
  const suffixes: Record<string, number> = { kb: 1024, mb: 1024 * 1024, gb: 1024 * 1024 * 1024 };
  for (const [suffix, mult] of Object.entries(suffixes)) {
    if (v.slice(-2) === suffix) return pyInt(v.slice(0, -2)) * mult;
  }
  return pyInt(v);
}

interface ConvContext {
  env: NodeJS.ProcessEnv;
}

function expanduser(p: string, env: NodeJS.ProcessEnv): string {
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

function pyDirname(p: string): string {
  const i = p.lastIndexOf('/') + 1;
  let head = p.slice(0, i);
  if (head && head !== '/'.repeat(head.length)) head = head.replace(/\/+$/, '');
  return head;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** ZConfig's existing-dirpath: the directory the path names a file in must exist. */
function existingDirpath(v: string, cx: ConvContext): string {
  const nv = expanduser(v, cx.env);
  const dir = pyDirname(nv);
  if (!dir || isDir(dir)) return nv;
  throw new DatatypeError(`The directory named as part of the path ${v} does not exist.`);
}

function existingPath(v: string, cx: ConvContext): string {
  const nv = expanduser(v, cx.env);
  if (exists(nv)) return nv;
  throw new DatatypeError(`${v} is not an existing path`);
}

// zdaemon's variants, for <runner>
function existingParentDirpath(v: string, cx: ConvContext): string {
  const nv = expanduser(v, cx.env);
  const parent = pyDirname(pyDirname(nv));
  if (!parent || isDir(parent)) return nv;
  throw new DatatypeError(`The directory named as part of the path ${v} does not exist.`);
}

function existingParentDirectory(v: string, cx: ConvContext): string {
  const nv = expanduser(v, cx.env);
  if (isDir(nv) || isDir(pyDirname(nv))) return nv;
  throw new DatatypeError(`${v} is not an existing directory`);
}

function regexConv(re: RegExp, reason: string) {
  return (v: string): string => {
    const m = re.exec(v);
    if (m && m[0] === v) return v;
    throw new DatatypeError(`${reason}: ${repr(v)}`);
  };
}

const IDENT = '[_a-zA-Z][_a-zA-Z0-9]*';
const dottedName = regexConv(new RegExp(`^${IDENT}(?:\\.${IDENT})*`), 'not a valid dotted name');

/** ZConfig's basic-key: how key names and -X paths are normalised. */
function basicKey(v: string): string {
  const m = /^[a-zA-Z][-._a-zA-Z0-9]*/.exec(v);
  if (m && m[0] === v) return v.toLowerCase();
  throw new DatatypeError(`value did not match regular expression: ${repr(v)}`);
}

function portNumber(p: string): number {
  const n = pyInt(p);
  if (n < 0) throw new DatatypeError(`${n} is below lower bound (0)`);
  if (n > 0xffff) throw new DatatypeError(`${n} is above upper bound (65535)`);
  return n;
}

/** ZConfig's inet-binding-address: (host, port), port null when not given. */
function inetAddress(s: string): { host: string; port: number | null } {
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
    if (p) port = portNumber(p);
    host = host.toLowerCase();
  } else {
    try {
      port = portNumber(s);
    } catch (e) {
      if (!(e instanceof DatatypeError)) throw e;
      // not a port (even '-5' or '99999'): a host name, listening on an ephemeral port
      if (pySplit(s).length !== 1) throw new DatatypeError(`not a valid host name: ${repr(s)}`);
      host = s.toLowerCase();
    }
  }
  return { host, port };
}

function socketBindingAddress(s: string): ListenAddress {
  if (s.includes('/')) return { kind: 'unix', path: s };
  const { host, port } = inetAddress(s);
  // runzeo binds port 0 when none is given
  return { kind: 'tcp', host, port: port ?? 0 };
}

/**
 * A listen address as runzeo reads `address` and -a: 'host:port', '[v6]:port', 'port', ':port' (all
 * interfaces: host ''), anything containing '/' is a Unix socket path; 'host:', a bare host name or port 0
 * give an ephemeral port (0). Host names are lowercased.
 */
export function parseAddress(value: string): ListenAddress {
  try {
    return socketBindingAddress(value);
  } catch (e) {
    if (e instanceof DatatypeError) throw new ConfigError(e.message);
    throw e;
  }
}

function loggingLevel(v: string): LogLevel {
  const names: Record<string, number> = {
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
  const s = v.toLowerCase();
  const n = s in names ? names[s] : pyInt(s);
  if (n < 0 || n > 50) throw new DatatypeError(`log level not in range: ${n}`);
  return levelFromNumber(n);
}

// ZConfig's escaped_string for log formats: these five escapes, replaced in this order
function escapedString(v: string): string {
  return v
    .replaceAll('\\n', '\n')
    .replaceAll('\\t', '\t')
    .replaceAll('\\b', '\b')
    .replaceAll('\\f', '\f')
    .replaceAll('\\r', '\r');
}

function logFormatStyle(v: string): string {
  const styles = ['classic', 'format', 'safe-template', 'template'];
  if (styles.includes(v.toLowerCase())) return v.toLowerCase();
  throw new DatatypeError(
    `log_format_style must be one of ${styles.map((s) => repr(s)).join(', ')}; found ${repr(v)}`,
  );
}

function listOfInts(v: string): number[] {
  return v ? v.split(',').map((x) => pyInt(x)) : [];
}

function octal(v: string): number {
  const t = pyStrip(v);
  if (!/^[+-]?(?:0[oO])?[0-7](?:_?[0-7])*$/.test(t))
    throw new DatatypeError(`invalid literal for int() with base 8: ${repr(v)}`);
  return parseInt(t.replace(/_/g, '').replace(/0[oO]/, ''), 8);
}

function oneOf(values: string[], message: (v: string) => string, upper = false) {
  return (v: string): string => {
    const n = upper ? v.toUpperCase() : v.toLowerCase();
    if (values.includes(n)) return n;
    throw new DatatypeError(message(v));
  };
}

const str = (v: string): string => v;

// ---------------------------------------------------------------------------------------------------------
// The schema: runzeo's, as far as a zeo.conf can reach it

type Conv = (value: string, cx: ConvContext) => unknown;

interface KeyInfo {
  name: string;
  conv: Conv;
  required?: boolean;
  default?: string;
  multi?: boolean;
}

interface SectionSlot {
  /** a concrete section type, or an abstract one any implementing type matches */
  type: string;
  attr: string;
  required?: boolean;
  multi?: boolean;
}

interface SectionType {
  name: string;
  implements?: string;
  keys: KeyInfo[];
  sections: SectionSlot[];
  /** zeo-ts cannot serve this: why (not said inside <runner>, whose content runzeo ignores) */
  refuse?: string;
}

const k = (name: string, conv: Conv, extra: Partial<KeyInfo> = {}): KeyInfo => ({ name, conv, ...extra });

const LOG_HANDLER_BASE: KeyInfo[] = [
  k('formatter', dottedName),
  k('dateformat', str, { default: DEFAULT_DATE_FORMAT }),
  k('level', loggingLevel, { default: 'notset' }),
  k('style', logFormatStyle, { default: 'classic' }),
  k('arbitrary-fields', pyBool, { default: 'false' }),
];

const NOT_A_HANDLER = 'log handlers are not supported by zeo-ts; use <logfile> (a file, STDOUT or STDERR)';
const BASE_LOGGER: KeyInfo[] = [k('level', loggingLevel, { default: 'info' })];
const HANDLERS: SectionSlot = { type: 'zconfig.logger.handler', attr: 'handlers', multi: true };

const TYPES: SectionType[] = [
  // ZEO's server.xml
  {
    name: 'zeo',
    keys: [
      k('address', socketBindingAddress, { required: true }),
      k('read-only', pyBool, { default: 'false' }),
      k('invalidation-queue-size', pyInt, { default: '100' }),
      k('invalidation-age', pyFloat),
      k('transaction-timeout', pyInt),
      k('pid-filename', existingDirpath),
      k('client-conflict-resolution', pyBool, { default: 'false' }),
      k('msgpack', pyBool),
    ],
    sections: [{ type: 'ssl', attr: 'ssl' }],
  },
  {
    name: 'ssl',
    keys: [
      k('certificate', existingDirpath, { required: true }),
      k('key', existingDirpath),
      k('password-function', str),
      k('authenticate', str, { required: true }),
    ],
    sections: [],
  },
  // ZODB's component.xml
  {
    name: 'filestorage',
    implements: 'zodb.storage',
    keys: [
      k('path', existingDirpath, { required: true }),
      k('blob-dir', existingDirpath),
      k('create', pyBool),
      k('read-only', pyBool),
      k('quota', byteSize),
      k('packer', str),
      k('pack-gc', pyBool, { default: 'true' }),
      k('pack-keep-old', pyBool, { default: 'true' }),
    ],
    sections: [],
  },
  {
    name: 'mappingstorage',
    implements: 'zodb.storage',
    keys: [k('name', str, { default: 'Mapping Storage' })],
    sections: [],
  },
  {
    name: 'blobstorage',
    implements: 'zodb.storage',
    keys: [k('blob-dir', str, { required: true })],
    sections: [{ type: 'zodb.storage', attr: 'base' }],
  },
  {
    name: 'demostorage',
    implements: 'zodb.storage',
    keys: [],
    sections: [],
    refuse:
      '<demostorage> is not supported by zeo-ts (DemoStorage is Python-only); serve a <filestorage> or a <mappingstorage>',
  },
  {
    name: 'zeoclient',
    implements: 'zodb.storage',
    keys: [],
    sections: [],
    refuse: "<zeoclient> (serving another ZEO server's storage) is not supported by zeo-ts",
  },
  {
    name: 'fullstorage',
    implements: 'zodb.storage',
    keys: [],
    sections: [],
    refuse: '<fullstorage> (BerkeleyDB storage) is not supported by zeo-ts',
  },
  {
    name: 'minimalstorage',
    implements: 'zodb.storage',
    keys: [],
    sections: [],
    refuse: '<minimalstorage> (BerkeleyDB storage) is not supported by zeo-ts',
  },
  { name: 'zodb', implements: 'zodb.database', keys: [], sections: [] },
  // zdaemon's component.xml: runzeo accepts <runner> and ignores it (it is zdaemon's), so do we
  {
    name: 'runner',
    keys: [
      k('program', (v) => pySplit(v), { required: true }),
      k('python', existingPath),
      k('zdrun', existingPath),
      k('socket-name', existingParentDirpath, { default: 'zdsock' }),
      k('daemon', pyBool, { default: 'on' }),
      k('directory', existingParentDirectory),
      k('backoff-limit', pyInt, { default: '10' }),
      k('forever', pyBool, { default: 'false' }),
      k('exit-codes', listOfInts, { default: '0,2' }),
      k('start-test-program', (v) => pySplit(v)),
      k('start-timeout', pyInt, { default: '300' }),
      k('stop-timeout', pyInt, { default: '300' }),
      k('user', str),
      k('umask', octal, { default: '022' }),
      k('hang-around', pyBool, { default: 'false' }),
      k('default-to-interactive', pyBool, { default: 'true' }),
      k('logfile', existingDirpath),
      k('transcript', existingDirpath),
      k('prompt', str),
    ],
    sections: [{ type: 'zconfig.logger.log', attr: 'eventlog' }],
  },
  { name: 'environment', keys: [], sections: [] },
  // ZConfig's logger components
  { name: 'eventlog', implements: 'zconfig.logger.log', keys: BASE_LOGGER, sections: [HANDLERS] },
  {
    name: 'logger',
    implements: 'zconfig.logger.log',
    keys: [...BASE_LOGGER, k('propagate', pyBool, { default: 'true' }), k('name', dottedName)],
    sections: [HANDLERS],
  },
  { name: 'zconfig.logger.base-logger', keys: BASE_LOGGER, sections: [HANDLERS] },
  { name: 'zconfig.logger.base-log-handler', keys: LOG_HANDLER_BASE, sections: [] },
  {
    name: 'logfile',
    implements: 'zconfig.logger.handler',
    keys: [
      ...LOG_HANDLER_BASE,
      k('path', str, { required: true }),
      k('old-files', pyInt, { default: '0' }),
      k('max-size', byteSize, { default: '0' }),
      k('when', str, { default: '' }),
      k('interval', pyInt, { default: '0' }),
      k('format', escapedString, { default: RUNZEO_DEFAULT_FORMAT.replace('\n', '\\n') }),
      k('encoding', str),
      k('delay', pyBool, { default: 'false' }),
    ],
    sections: [],
  },
  {
    name: 'syslog',
    implements: 'zconfig.logger.handler',
    keys: [
      ...LOG_HANDLER_BASE,
      k(
        'facility',
        oneOf(
          'auth authpriv cron daemon kern local0 local1 local2 local3 local4 local5 local6 local7 lpr mail news security syslog user uucp'.split(
            ' ',
          ),
          () =>
            'Syslog facility must be one of auth, authpriv, cron, daemon, kern, local0, local1, local2, local3, local4, local5, local6, local7, lpr, mail, news, security, syslog, user, uucp',
        ),
        { default: 'user' },
      ),
      k('address', (v) => (v.includes('/') ? v : inetAddress(v)), { default: 'localhost:514' }),
      k('format', escapedString, { default: '%(name)s %(message)s' }),
    ],
    sections: [],
    refuse: `<syslog> ${NOT_A_HANDLER}`,
  },
  {
    name: 'win32-eventlog',
    implements: 'zconfig.logger.handler',
    keys: [
      ...LOG_HANDLER_BASE,
      k('appname', str, { default: 'Zope' }),
      k('format', escapedString, { default: '%(levelname)s %(name)s %(message)s' }),
    ],
    sections: [],
    refuse: `<win32-eventlog> ${NOT_A_HANDLER}`,
  },
  {
    name: 'http-logger',
    implements: 'zconfig.logger.handler',
    keys: [
      ...LOG_HANDLER_BASE,
      k('url', httpHandlerUrl, { default: 'http://localhost/' }),
      k(
        'method',
        oneOf(
          ['GET', 'POST'],
          (v) => `method must be "GET" or "POST", instead received: ${repr(v.toUpperCase())}`,
          true,
        ),
        {
          default: 'GET',
        },
      ),
      k('format', escapedString, { default: '%(asctime)s %(levelname)s %(name)s %(message)s' }),
    ],
    sections: [],
    refuse: `<http-logger> ${NOT_A_HANDLER}`,
  },
  {
    name: 'email-notifier',
    implements: 'zconfig.logger.handler',
    keys: [
      ...LOG_HANDLER_BASE,
      k('from', str, { required: true }),
      k('to', str, { required: true, multi: true }),
      k('subject', str, { default: 'Message from Zope' }),
      k('smtp-server', (v) => inetAddress(v), { default: 'localhost' }),
      k('smtp-username', str, { default: '' }),
      k('smtp-password', str, { default: '' }),
      k('format', escapedString, { default: '%(asctime)s %(levelname)s %(name)s %(message)s' }),
    ],
    sections: [],
    refuse: `<email-notifier> ${NOT_A_HANDLER}`,
  },
];

function httpHandlerUrl(v: string): string {
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

// zc.zlibstorage's component.xml, for `%import zc.zlibstorage`
const ZLIB_TYPES: SectionType[] = [
  {
    name: 'zlibstorage',
    implements: 'zodb.storage',
    keys: [k('compress', pyBool)],
    sections: [{ type: 'zodb.storage', attr: 'base', required: true }],
    refuse:
      '<zlibstorage> (compression by the server) is not supported by zeo-ts; use <serverzlibstorage>, with zc.zlibstorage on the clients',
  },
  {
    name: 'serverzlibstorage',
    implements: 'zodb.storage',
    keys: [k('compress', pyBool)],
    sections: [{ type: 'zodb.storage', attr: 'base', required: true }],
  },
];

const TYPES_BY_NAME = new Map<string, SectionType>([...TYPES, ...ZLIB_TYPES].map((t) => [t.name, t]));
const ABSTRACT = new Set(['zodb.storage', 'zodb.database', 'zconfig.logger.log', 'zconfig.logger.handler']);

// ZEO's schema.xml: the top level
const TOP: SectionType = {
  name: '(top level)',
  keys: [],
  sections: [
    { type: 'zeo', attr: 'zeo', required: true },
    { type: 'runner', attr: 'runner' },
    { type: 'zodb.storage', attr: 'storages', required: true, multi: true },
    { type: 'eventlog', attr: 'eventlog' },
  ],
};

// Packages a zeo.conf may %import: those runzeo's schema already has (importing them again is a no-op)
// and zc.zlibstorage, whose <serverzlibstorage> zeo-ts implements.
const HARMLESS_IMPORTS = new Set(['ZODB', 'ZConfig.components.logger', 'zdaemon']);

// ---------------------------------------------------------------------------------------------------------
// Parsing (ZConfig's cfgparser, matcher and cmdline, for this schema)

interface Position {
  file: string | null;
  line: number | null;
  /** for -X overrides: the specifier, which stands in for file and line */
  override?: string;
}

function fail(reason: string, pos: Position | null): never {
  if (pos?.override) throw new ConfigError(`-X ${pos.override}: ${reason}`);
  throw new ConfigError(reason, pos?.file ?? null, pos?.line ?? null);
}

function convFail(key: string, e: unknown, pos: Position): never {
  if (e instanceof DatatypeError) fail(`invalid value for '${key}': ${e.message}`, pos);
  throw e;
}

interface RawValue {
  raw: string;
  pos: Position;
}

interface SectionValue {
  type: string;
  name: string | null;
  start: Position;
  /** converted key values by key name ('read-only'), null when absent without default */
  keys: Map<string, unknown>;
  keyPos: Map<string, Position>;
  /** section slots by attribute: a SectionValue, null, or an array for multisections */
  sections: Map<string, SectionValue | SectionValue[] | null>;
}

interface OverrideItem {
  path: string[];
  value: string;
  pos: Position;
}

/** ZConfig's OptionBag: -X values for one section and the ones for its subsections. */
class OptionBag {
  readonly keys = new Map<string, Array<{ value: string; pos: Position }>>();
  sectionItems: OverrideItem[] = [];

  constructor(items: OverrideItem[]) {
    for (const item of items) {
      if (item.path.length === 1) {
        let name: string;
        try {
          name = basicKey(item.path[0]);
        } catch (e) {
          convFail(item.path[0], e, item.pos);
        }
        const list = this.keys.get(name) ?? [];
        list.push({ value: item.value, pos: item.pos });
        this.keys.set(name, list);
      } else this.sectionItems.push(item);
    }
  }

  /** The items for a subsection, matched by its name or its type (the first such section takes them). */
  forSection(type: string, name: string | null): OptionBag | null {
    const mine: OverrideItem[] = [];
    const rest: OverrideItem[] = [];
    for (const item of this.sectionItems) {
      const s = item.path[0];
      let bk: string | null;
      try {
        bk = basicKey(s);
      } catch {
        bk = null;
      }
      if ((name && s.toLowerCase() === name) || bk === type) mine.push({ ...item, path: item.path.slice(1) });
      else rest.push(item);
    }
    if (!mine.length) return null;
    this.sectionItems = rest;
    return new OptionBag(mine);
  }

  unconsumed(): string[] {
    return [
      ...this.sectionItems.map((i) => i.pos.override!),
      ...[...this.keys.values()].flat().map((v) => v.pos.override!),
    ];
  }
}

class Matcher {
  private readonly values = new Map<string, RawValue | RawValue[]>();
  private readonly sections = new Map<string, SectionValue | SectionValue[]>();
  private readonly sectionNames = new Set<string>();

  constructor(
    readonly schema: Schema,
    readonly type: SectionType,
    readonly name: string | null,
    readonly start: Position,
    /** inside <runner>: checked as runzeo checks it, never used */
    readonly ignored: boolean,
    readonly bag: OptionBag | null,
  ) {}

  addValue(key: string, raw: string, pos: Position, fromBag = false): void {
    let realKey: string;
    try {
      realKey = basicKey(key);
    } catch (e) {
      convFail(key, e, pos);
    }
    // a -X override replaces what the file says
    if (!fromBag && this.bag?.keys.has(realKey)) return;
    const info = this.type.keys.find((ki) => ki.name === realKey);
    if (!info) fail(`${repr(key)} is not a known key name`, pos);
    const existing = this.values.get(realKey);
    if (info.multi) {
      const list = (existing as RawValue[] | undefined) ?? [];
      list.push({ raw, pos });
      this.values.set(realKey, list);
    } else {
      if (existing) fail(`${repr(key)} does not support multiple values`, pos);
      this.values.set(realKey, { raw, pos });
    }
  }

  slotFor(type: string, name: string | null, pos: Position): SectionSlot {
    for (const slot of this.type.sections) {
      if (slot.type === type) return slot;
      if (ABSTRACT.has(slot.type) && this.schema.types.get(type)?.implements === slot.type) return slot;
    }
    fail(`no matching section defined for type='${type}', name='${name ?? 'None'}'`, pos);
  }

  createChild(typeName: string, name: string | null, pos: Position): Matcher {
    if (ABSTRACT.has(typeName)) {
      fail(
        `concrete sections cannot match abstract section types; found abstract type ${repr(typeName)}`,
        pos,
      );
    }
    const type = this.schema.types.get(typeName);
    if (!type) fail(`unknown type name: ${repr(typeName)}`, pos);
    const slot = this.slotFor(typeName, name, pos);
    if (name === '*' || name === '+')
      fail(`${repr(name)} is not an allowed name for ${repr(slot.type)} sections`, pos);
    const ignored = this.ignored || typeName === 'runner';
    if (type.refuse && !ignored) fail(type.refuse, pos);
    return new Matcher(this.schema, type, name, pos, ignored, this.bag?.forSection(typeName, name) ?? null);
  }

  addSection(value: SectionValue, pos: Position): void {
    if (value.name) {
      if (this.sectionNames.has(value.name)) {
        fail(`section names must not be re-used within the same container:${repr(value.name)}`, value.start);
      }
      this.sectionNames.add(value.name);
    }
    const slot = this.slotFor(value.type, value.name, pos);
    const existing = this.sections.get(slot.attr);
    if (slot.multi) {
      const list = (existing as SectionValue[] | undefined) ?? [];
      list.push(value);
      this.sections.set(slot.attr, list);
    } else {
      if (existing) fail(`too many instances of ${repr(value.type)} section`, value.start);
      this.sections.set(slot.attr, value);
    }
  }

  finish(cx: ConvContext): SectionValue {
    if (this.bag) {
      for (const [key, list] of [...this.bag.keys]) {
        this.bag.keys.delete(key);
        for (const { value, pos } of list) this.addValue(key, value, pos, true);
      }
      const left = this.bag.unconsumed();
      if (left.length) {
        throw new ConfigError(
          `not all command line options were consumed: ${left.map((s) => `-X ${s}`).join(', ')} (no such section)`,
        );
      }
    }
    const result: SectionValue = {
      type: this.type.name,
      name: this.name,
      start: this.start,
      keys: new Map(),
      keyPos: new Map(),
      sections: new Map(),
    };
    const where = this.start;
    for (const info of this.type.keys) {
      const given = this.values.get(info.name);
      if (!given && info.required) fail(`no values for ${repr(info.name)}; 1 required`, where);
      const convert = (rv: RawValue): unknown => {
        try {
          return info.conv(rv.raw, cx);
        } catch (e) {
          convFail(info.name, e, rv.pos);
        }
      };
      if (info.multi) {
        result.keys.set(info.name, ((given as RawValue[] | undefined) ?? []).map(convert));
      } else if (given) {
        result.keys.set(info.name, convert(given as RawValue));
        result.keyPos.set(info.name, (given as RawValue).pos);
      } else {
        result.keys.set(info.name, info.default === undefined ? null : info.conv(info.default, cx));
      }
    }
    for (const slot of this.type.sections) {
      const v = this.sections.get(slot.attr);
      const what = `section type ${repr(slot.type)}`;
      if (slot.multi) {
        const list = (v as SectionValue[] | undefined) ?? [];
        if (slot.required && !list.length) fail(`not enough values for ${what}; 0 found, 1 required`, where);
        result.sections.set(slot.attr, list);
      } else {
        if (!v && slot.required) fail(`no values for ${what}; 1 required`, where);
        result.sections.set(slot.attr, (v as SectionValue | undefined) ?? null);
      }
    }
    checkSection(result, this.ignored);
    return result;
  }
}

class Schema {
  readonly types = new Map<string, SectionType>(TYPES.map((t) => [t.name, t]));
  private zlib = false;

  import(pkg: string, pos: Position): void {
    if (HARMLESS_IMPORTS.has(pkg)) return;
    if (pkg === 'zc.zlibstorage') {
      if (!this.zlib) for (const t of ZLIB_TYPES) this.types.set(t.name, t);
      this.zlib = true;
      return;
    }
    if (pkg === 'ZEO') fail(`%import ZEO: type name cannot be redefined: 'ssl' (runzeo refuses it too)`, pos);
    fail(
      `%import ${pkg}: zeo-ts cannot load Python packages; the packages it knows are ZODB, ZConfig.components.logger, zdaemon and zc.zlibstorage`,
      pos,
    );
  }
}

// ZConfig's substitution: $name and ${name} from %define (names case-insensitive), $(NAME) from the
// environment, $$ for a dollar
function substitute(s: string, defines: Map<string, string>, env: NodeJS.ProcessEnv, pos: Position): string {
  if (!s.includes('$')) return s;
  let out = '';
  let i = 0;
  const nameAt = (j: number): string | null => /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(j))?.[0] ?? null;
  while (i < s.length) {
    const d = s.indexOf('$', i);
    if (d < 0) {
      out += s.slice(i);
      break;
    }
    out += s.slice(i, d);
    const c = s[d + 1];
    if (c === undefined) fail("illegal lone '$' at end of source", pos);
    if (c === '$') {
      out += '$';
      i = d + 2;
      continue;
    }
    let name: string | null;
    let value: string | undefined;
    if (c === '{' || c === '(') {
      const close = c === '{' ? '}' : ')';
      name = nameAt(d + 2);
      if (!name) fail(`'$${c}' not followed by name`, pos);
      if (s[d + 2 + name.length] !== close) fail(`'$${c}${name}' not followed by '${close}'`, pos);
      i = d + 3 + name.length;
      value = c === '{' ? defines.get(name.toLowerCase()) : env[name];
    } else {
      name = nameAt(d + 1);
      if (!name) fail("'$' not followed by '$' or name", pos);
      i = d + 1 + name.length;
      value = defines.get(name.toLowerCase());
    }
    if (value === undefined) fail(`no replacement for ${repr(name)}`, pos);
    out += value;
  }
  return out;
}

const NAME = String.raw`[^\s()]+`;
const KEY_VALUE = new RegExp(`^(${NAME})\\s*(\\S.*)?$`, 's');
const SECTION_START = new RegExp(`^(${NAME})(?:\\s+(${NAME}))?$`);

interface ParseState {
  schema: Schema;
  defines: Map<string, string>;
  env: NodeJS.ProcessEnv;
  cx: ConvContext;
  /** files being read, to refuse an %include loop */
  including: string[];
}

function parseResource(text: string, file: string | null, top: Matcher, st: ParseState): void {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const stack: Array<{ type: string; name: string | null; parent: Matcher; pos: Position }> = [];
  let section = top;
  let lineno = 0;
  for (const rawLine of lines) {
    lineno++;
    const pos: Position = { file, line: lineno };
    const line = pyStrip(rawLine);
    if (line === '' || line[0] === '#') continue;
    if (line.startsWith('</')) {
      if (line[line.length - 1] !== '>') fail('malformed section end', pos);
      if (!stack.length) fail('unexpected section end', pos);
      const type = pyRstrip(line.slice(2, -1)).toLowerCase();
      const open = stack.pop()!;
      if (type !== open.type) fail('unbalanced section end', pos);
      open.parent.addSection(section.finish(st.cx), pos);
      section = open.parent;
    } else if (line[0] === '<') {
      if (line[line.length - 1] !== '>') fail('malformed section start', pos);
      let rest = line.slice(1, -1);
      const empty = rest.endsWith('/');
      if (empty) rest = rest.slice(0, -1);
      const m = SECTION_START.exec(pyRstrip(rest));
      if (!m) fail('malformed section header', pos);
      const type = m[1].toLowerCase();
      const name = m[2] ? m[2].toLowerCase() : null;
      const child = section.createChild(type, name, pos);
      if (empty) section.addSection(child.finish(st.cx), pos);
      else {
        stack.push({ type, name, parent: section, pos });
        section = child;
      }
    } else if (line[0] === '%') {
      const m = KEY_VALUE.exec(line.slice(1));
      if (!m) fail('missing or unrecognized directive', pos);
      const [, directive, arg] = m;
      if (directive !== 'define' && directive !== 'import' && directive !== 'include') {
        fail(`unknown directive: ${repr(directive)}`, pos);
      }
      if (!arg) fail(`missing argument to %${directive} directive`, pos);
      if (directive === 'define') {
        const parts = pySplit(arg);
        const defname = parts[0].toLowerCase();
        const afterName = arg.slice(arg.indexOf(parts[0]) + parts[0].length);
        const defvalue = parts.length > 1 ? pyStrip(afterName) : '';
        if (st.defines.has(defname) && st.defines.get(defname) !== defvalue)
          fail(`cannot redefine ${repr(defname)}`, pos);
        if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(defname))
          fail(`not a substitution legal name: ${repr(defname)}`, pos);
        st.defines.set(defname, substitute(defvalue, st.defines, st.env, pos));
      } else if (directive === 'import') {
        st.schema.import(substitute(pyStrip(arg), st.defines, st.env, pos), pos);
      } else {
        const target = substitute(pyStrip(arg), st.defines, st.env, pos);
        const path = resolveInclude(target, file, pos);
        if (st.including.includes(path)) fail(`%include ${target}: the file includes itself`, pos);
        let included: string;
        try {
          included = readFileSync(path, 'utf8');
        } catch (e) {
          fail(`error opening file ${path}: ${(e as Error).message}`, pos);
        }
        st.including.push(path);
        parseResource(included, path, section, st);
        st.including.pop();
      }
    } else {
      const m = KEY_VALUE.exec(line);
      if (!m) fail('malformed configuration data', pos);
      const [, key, value] = m;
      section.addValue(key, value ? substitute(value, st.defines, st.env, pos) : '', pos);
    }
  }
  if (stack.length) fail('unclosed sections not allowed', { file, line: lineno });
}

function resolveInclude(target: string, from: string | null, pos: Position): string {
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(target)) {
    if (target.startsWith('file:')) return fileURLToPath(target);
    fail(`%include ${target}: zeo-ts reads configuration from files only`, pos);
  }
  return resolve(from ? dirname(from) : process.cwd(), target);
}

// ---------------------------------------------------------------------------------------------------------
// What only the server can check: what a section means to zeo-ts

function keyPos(sv: SectionValue, key: string): Position {
  return sv.keyPos.get(key) ?? sv.start;
}

const UTF8_NAMES = new Set(['utf-8', 'utf8', 'utf_8', 'u8', 'utf', 'cp65001']);

/** Checks a finished section; `ignored` (inside <runner>) keeps only the checks runzeo itself makes. */
function checkSection(sv: SectionValue, ignored: boolean): void {
  if (TYPES_BY_NAME.get(sv.type)?.implements === 'zconfig.logger.handler') checkLogHandler(sv, ignored);
  if (ignored) return;
  switch (sv.type) {
    case 'filestorage': {
      const packer = sv.keys.get('packer') as string | null;
      if (packer) {
        fail(
          `'packer' names a Python packer (${repr(packer)}), which zeo-ts cannot load; remove it (zeo-ts packs as ZODB's FileStorage packer does)`,
          keyPos(sv, 'packer'),
        );
      }
      break;
    }
    case 'blobstorage':
      if (!sv.sections.get('base'))
        fail('<blobstorage> needs the storage section it adds blobs to', sv.start);
      if (!sv.keys.get('blob-dir'))
        fail("<blobstorage> needs a non-empty 'blob-dir'", keyPos(sv, 'blob-dir'));
      break;
    case 'ssl': {
      // runzeo's SSL context loads these files at start-up and fails when they are missing
      const cert = sv.keys.get('certificate') as string;
      if (!exists(cert)) fail(`certificate file ${cert} does not exist`, keyPos(sv, 'certificate'));
      const key = sv.keys.get('key') as string | null;
      if (key && !exists(key)) fail(`key file ${key} does not exist`, keyPos(sv, 'key'));
      const auth = sv.keys.get('authenticate') as string;
      if (!auth)
        fail("'authenticate' must name a CA file or directory, or be DYNAMIC", keyPos(sv, 'authenticate'));
      if (auth !== 'DYNAMIC' && !exists(auth)) {
        fail(
          `authenticate: ${auth} is neither a CA file nor a CA directory (nor DYNAMIC)`,
          keyPos(sv, 'authenticate'),
        );
      }
      break;
    }
  }
}

function checkLogHandler(sv: SectionValue, ignored: boolean): void {
  const style = sv.keys.get('style') as string;
  const format = sv.keys.get('format') as string;
  if (sv.type === 'logfile') {
    // ZConfig's own refusals for the standard streams
    const path = sv.keys.get('path') as string;
    const std = path === 'STDOUT' || path === 'STDERR';
    const rotating =
      (sv.keys.get('max-size') as number) ||
      (sv.keys.get('old-files') as number) ||
      (sv.keys.get('when') as string);
    if (std && rotating) fail(`cannot rotate ${path}`, sv.start);
    if (std && sv.keys.get('delay')) fail(`cannot delay opening ${path}`, sv.start);
    if (std && sv.keys.get('encoding')) fail(`cannot specify encoding for ${path}`, sv.start);
    if (!ignored && (rotating || (sv.keys.get('interval') as number))) {
      fail(
        'log rotation by <logfile> (max-size, old-files, when, interval) is not supported by zeo-ts; rotate with logrotate and send SIGUSR2, which reopens the log files',
        sv.start,
      );
    }
    // runzeo opens its log files as it reads the configuration, and dies when it cannot
    if (!ignored && !std && !isDir(pyDirname(path) || '.')) {
      fail(`cannot open the log file ${path}: its directory does not exist`, keyPos(sv, 'path'));
    }
    const encoding = sv.keys.get('encoding') as string | null;
    if (!ignored && encoding && !UTF8_NAMES.has(encoding.toLowerCase())) {
      fail(`zeo-ts writes log files in UTF-8 only, not ${repr(encoding)}`, keyPos(sv, 'encoding'));
    }
  }
  if (!ignored) {
    if (style !== 'classic') {
      fail(
        `log format style ${repr(style)} is not supported by zeo-ts; use the classic %-style format`,
        keyPos(sv, 'style'),
      );
    }
    const formatter = sv.keys.get('formatter') as string | null;
    // zope.exceptions' formatter only adds Python traceback supplements, which JS errors do not have
    if (formatter && formatter !== 'logging.Formatter' && formatter !== 'zope.exceptions.log.Formatter') {
      fail(`formatter ${repr(formatter)} is a Python class zeo-ts cannot load`, keyPos(sv, 'formatter'));
    }
  }
  // runzeo checks a classic format against a sample record as it reads the file (and dies with a
  // traceback when it does not fit; we say why); the handlers it starts also need a %(field) in it
  if (style === 'classic') {
    const problem = checkLogFormat(format, !ignored);
    if (problem) fail(problem, keyPos(sv, 'format'));
  }
}

// ---------------------------------------------------------------------------------------------------------
// From sections to ServerConfig

function where(pos: Position): string {
  if (pos.override) return `-X ${pos.override}`;
  return pos.file && pos.line
    ? `${pos.file}, line ${pos.line}`
    : pos.line
      ? `line ${pos.line}`
      : (pos.file ?? 'configuration');
}

function storageFrom(sv: SectionValue, name: string): StorageConfig {
  let zlib = false;
  let blobDir: string | null = null;
  let cur = sv;
  for (;;) {
    switch (cur.type) {
      case 'serverzlibstorage':
        zlib = true;
        cur = cur.sections.get('base') as SectionValue;
        continue;
      case 'blobstorage':
        if (blobDir !== null)
          fail(
            'a <blobstorage> inside a <blobstorage>: only one blob directory can serve a storage',
            cur.start,
          );
        blobDir = cur.keys.get('blob-dir') as string;
        cur = cur.sections.get('base') as SectionValue;
        continue;
      case 'filestorage': {
        const own = (cur.keys.get('blob-dir') as string | null) || null;
        if (own && blobDir !== null) {
          fail(
            `this <filestorage> has its own blob-dir and is inside a <blobstorage>: give the blob directory once`,
            cur.start,
          );
        }
        return {
          kind: 'filestorage',
          name,
          path: cur.keys.get('path') as string,
          blobDir: own ?? blobDir,
          create: (cur.keys.get('create') as boolean | null) ?? false,
          readOnly: (cur.keys.get('read-only') as boolean | null) ?? false,
          quota: cur.keys.get('quota') as number | null,
          packGc: cur.keys.get('pack-gc') as boolean,
          packKeepOld: cur.keys.get('pack-keep-old') as boolean,
          zlib,
        };
      }
      case 'mappingstorage':
        if (blobDir !== null)
          fail(
            'a <mappingstorage> cannot store blobs in zeo-ts; use a <filestorage> with blob-dir',
            cur.start,
          );
        if (zlib)
          fail(
            '<serverzlibstorage> around a <mappingstorage> is not supported by zeo-ts; wrap a <filestorage>',
            cur.start,
          );
        return { kind: 'mappingstorage', name, description: cur.keys.get('name') as string };
      default:
        fail(`<${cur.type}> is not supported by zeo-ts`, cur.start);
    }
  }
}

function toServerConfig(top: SectionValue, env: NodeJS.ProcessEnv, withStorages: boolean): ServerConfig {
  const zeo = top.sections.get('zeo') as SectionValue;
  const storageSections = top.sections.get('storages') as SectionValue[];
  let storages: StorageConfig[] = [];
  if (withStorages) {
    // runzeo's rule for the one unnamed storage
    const unnamed = storageSections.filter((s) => s.name === null);
    if (unnamed.length > 1) fail('No more than one storage may be unnamed.', unnamed[1].start);
    if (unnamed.length && storageSections.some((s) => s.name === '1')) {
      fail("Can't have an unnamed storage and a storage named 1.", unnamed[0].start);
    }
    storages = storageSections.map((s) => storageFrom(s, s.name ?? '1'));
  }

  const sources: Partial<Record<ZeoSetting, string>> = {};
  const setting = <T>(setting: ZeoSetting, key: string): T => {
    const pos = zeo.keyPos.get(key);
    sources[setting] = pos ? where(pos) : 'default';
    return zeo.keys.get(key) as T;
  };
  const sslSection = zeo.sections.get('ssl') as SectionValue | null;
  let ssl: SslConfig | null = null;
  if (sslSection) {
    ssl = {
      certificate: sslSection.keys.get('certificate') as string,
      key: (sslSection.keys.get('key') as string | null) || null,
      passwordFunction: (sslSection.keys.get('password-function') as string | null) || null,
      authenticate: sslSection.keys.get('authenticate') as string,
    };
    sources.ssl = where(sslSection.start);
  }
  let msgpack = setting<boolean | null>('msgpack', 'msgpack');
  if (msgpack === null) {
    // runzeo: unset in the file → the environment decides
    msgpack = !!env.ZEO_MSGPACK;
    sources.msgpack = env.ZEO_MSGPACK ? 'ZEO_MSGPACK' : 'default';
  }
  let pidFilename = setting<string | null>('pidFilename', 'pid-filename') || null;
  if (pidFilename === null) pidFilename = defaultPidFile(env);

  const ev = top.sections.get('eventlog') as SectionValue | null;
  const eventlog: EventLogConfig | null = ev
    ? {
        level: ev.keys.get('level') as LogLevel,
        handlers: (ev.sections.get('handlers') as SectionValue[]).map((h) => ({
          path: h.keys.get('path') as string,
          format: h.keys.get('format') as string,
          level: h.keys.get('level') as LogLevel,
          dateformat: h.keys.get('dateformat') as string,
        })),
      }
    : null;

  return {
    address: setting<ListenAddress>('address', 'address'),
    readOnly: setting<boolean>('readOnly', 'read-only'),
    invalidationQueueSize: setting<number>('invalidationQueueSize', 'invalidation-queue-size'),
    invalidationAge: setting<number | null>('invalidationAge', 'invalidation-age'),
    transactionTimeout: setting<number | null>('transactionTimeout', 'transaction-timeout'),
    pidFilename,
    clientConflictResolution: setting<boolean>('clientConflictResolution', 'client-conflict-resolution'),
    msgpack,
    ssl,
    storages,
    eventlog,
    sources,
  };
}

function parseOverrides(specs: string[]): OverrideItem[] {
  return specs.map((spec) => {
    const pos: Position = { file: null, line: null, override: spec };
    const eq = spec.indexOf('=');
    if (eq < 0) fail('invalid configuration specifier (expected section/key=value)', pos);
    const path = spec.slice(0, eq).split('/');
    if (path.includes('')) fail("'//' is not allowed in an option path", pos);
    return { path, value: spec.slice(eq + 1), pos };
  });
}

/**
 * Reads a zeo.conf as runzeo does. `fileName` names it in messages and anchors %include; `env` supplies
 * $(NAME), ZEO_MSGPACK, INSTANCE_HOME and HOME; `overrides` are -X section/key=value specifiers.
 */
export function parseZConfig(
  text: string,
  options: { fileName?: string; env?: NodeJS.ProcessEnv; overrides?: string[] } = {},
): ServerConfig {
  return parse(text, options, true);
}

// withStorages false: -f replaces the file's storages, and runzeo then never looks at their names
function parse(
  text: string,
  options: { fileName?: string; env?: NodeJS.ProcessEnv; overrides?: string[] },
  withStorages: boolean,
): ServerConfig {
  const env = options.env ?? process.env;
  const file = options.fileName ?? null;
  const schema = new Schema();
  const items = parseOverrides(options.overrides ?? []);
  const bag = items.length ? new OptionBag(items) : null;
  const top = new Matcher(schema, TOP, null, { file, line: null }, false, bag);
  const st: ParseState = {
    schema,
    defines: new Map(),
    env,
    cx: { env },
    including: file ? [resolve(file)] : [],
  };
  parseResource(text, file, top, st);
  return toServerConfig(top.finish(st.cx), env, withStorages);
}

/** A FileStorage with ZODB's defaults (no blobs; the path is not checked), as runzeo's -f makes one. */
export function fileStorageDefaults(name: string, path: string): StorageConfig {
  return {
    kind: 'filestorage',
    name,
    path,
    blobDir: null,
    create: false,
    readOnly: false,
    quota: null,
    packGc: true,
    packKeepOld: true,
    zlib: false,
  };
}

/**
 * runzeo's command line for `zeo serve`: -C/--configure FILE, -a/--address, -f/--filename (repeatable;
 * replaces the file's storages, as runzeo does), -t/--timeout (float seconds), --pid-file, -X
 * section/key=value (only with -C), and --read-only (ours: runzeo has no switch for it). Without -C, a missing
 * -a or -f takes the default (127.0.0.1:8100, ./var/Data.fs) where runzeo would stop with a usage error.
 */
export function serveOptionsToConfig(
  opts: {
    configure?: string;
    address?: string;
    filename?: string[];
    timeout?: string;
    pidFile?: string;
    override?: string[];
    readOnly?: boolean;
  },
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig {
  if (opts.override?.length && !opts.configure) {
    throw new ConfigError('configuration overrides (-X) cannot be used without a configuration file');
  }
  let config: ServerConfig;
  if (opts.configure) {
    let path = opts.configure;
    if (/^[a-zA-Z][a-zA-Z0-9+.-]+:/.test(path)) {
      if (!path.startsWith('file:'))
        throw new ConfigError(`-C ${path}: zeo-ts reads configuration from files only`);
      path = fileURLToPath(path);
    }
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new ConfigError(`error opening file ${path}: ${(e as Error).message}`);
    }
    config = parse(text, { fileName: path, env, overrides: opts.override ?? [] }, !opts.filename?.length);
  } else {
    config = defaultConfig(env);
  }
  const sources = (config.sources ??= {});
  if (opts.address !== undefined) {
    try {
      config.address = socketBindingAddress(opts.address);
    } catch (e) {
      if (e instanceof DatatypeError)
        throw new ConfigError(`invalid value for -a ${repr(opts.address)}: ${e.message}`);
      throw e;
    }
    sources.address = '-a';
  }
  if (opts.filename?.length) {
    config.storages = opts.filename.map((f, i) => fileStorageDefaults(String(i + 1), f));
  }
  if (opts.timeout !== undefined) {
    try {
      config.transactionTimeout = pyFloat(opts.timeout);
    } catch (e) {
      if (e instanceof DatatypeError)
        throw new ConfigError(`invalid value for -t ${repr(opts.timeout)}: ${e.message}`);
      throw e;
    }
    sources.transactionTimeout = '-t';
  }
  if (opts.pidFile !== undefined) {
    config.pidFilename = opts.pidFile || defaultPidFile(env);
    sources.pidFilename = '--pid-file';
  }
  if (opts.readOnly) {
    config.readOnly = true;
    sources.readOnly = '--read-only';
  }
  return config;
}
