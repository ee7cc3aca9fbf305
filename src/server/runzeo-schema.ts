// runzeo's schema as data: ZEO's schema.xml (the top level) and server.xml (<zeo>, <ssl>), ZODB's
// component.xml (storage sections), zdaemon's <runner>, ZConfig's logger component (<eventlog>, handlers),
// zc.zlibstorage's component.xml for `%import zc.zlibstorage`, RelStorage's component.xml for
// `%import relstorage` (<relstorage> with its <postgresql> adapter), and zeo-ts's own <postgresql> storage
// section. What zeo-ts cannot serve is here too, with the reason it is refused.
import {
  boolean,
  byteSize,
  dottedName,
  DatatypeError,
  escapedString,
  existingDirpath,
  existingPath,
  expanduser,
  httpHandlerUrl,
  inetAddress,
  integer,
  isDir,
  key as k,
  keys,
  float,
  logFormatStyle,
  loggingLevel,
  oneOf,
  pyDirname,
  pyInt,
  pyOctal,
  rangeChecked,
  stringList,
  repr,
  socketBindingAddress,
  string,
  type ConvContext,
  type Schema,
  type SectionSlot,
  type SectionType,
  type KeyInfo,
} from '../zconfig/index.js';
import { DsnError, pgClientConfig } from '../storage/postgresql/options.js';
import { DEFAULT_DATE_FORMAT, levelFromNumber, RUNZEO_DEFAULT_FORMAT, type LogLevel } from './log.js';

/** Where the server listens: TCP (host '' is every interface; port 0 an ephemeral port) or a unix socket. */
export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** socket-binding-address as runzeo listens on it: port 0 (ephemeral) when none is given. */
export function listenAddress(s: string): ListenAddress {
  const a = socketBindingAddress(s);
  return a.family === 'unix'
    ? { kind: 'unix', path: a.path }
    : { kind: 'tcp', host: a.host, port: a.port ?? 0 };
}

/**
 * http-address (zeo-ts's HTTP listener): read as `address` is, except that a bare port listens on loopback
 * (127.0.0.1) rather than on every interface; ':PORT' still means every interface.
 */
export function httpListenAddress(s: string): ListenAddress {
  if (/^\s*\d+\s*$/.test(s)) {
    // (ZConfig would take an out-of-range number for a host name)
    const port = Number(s);
    if (port > 65535) throw new DatatypeError(`port number out of range: ${repr(s.trim())}`);
    return { kind: 'tcp', host: '127.0.0.1', port };
  }
  return listenAddress(s);
}

const logLevel = (v: string): LogLevel => levelFromNumber(loggingLevel(v));

// zdaemon's datatypes, for <runner>
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

const listOfInts = (v: string): number[] => (v ? v.split(',').map((x) => pyInt(x)) : []);

const LOG_HANDLER_BASE: KeyInfo[] = [
  k('formatter', dottedName),
  k('dateformat', string, { default: DEFAULT_DATE_FORMAT }),
  k('level', logLevel, { default: 'notset' }),
  k('style', logFormatStyle, { default: 'classic' }),
  k('arbitrary-fields', boolean, { default: 'false' }),
];

const NOT_A_HANDLER = 'log handlers are not supported by zeo-ts; use <logfile> (a file, STDOUT or STDERR)';
const BASE_LOGGER: KeyInfo[] = [k('level', logLevel, { default: 'info' })];
const HANDLERS: SectionSlot = { type: 'zconfig.logger.handler', attr: 'handlers', multi: true };

// a handler ZConfig's logger component defines and zeo-ts refuses: its keys are checked all the same
// (inside <runner>, which runzeo ignores, a bad value is still an error)
function refusedHandler(name: string, keys: KeyInfo[]): SectionType {
  return {
    name,
    implements: 'zconfig.logger.handler',
    keys: [...LOG_HANDLER_BASE, ...keys],
    sections: [],
    refuse: `<${name}> ${NOT_A_HANDLER}`,
  };
}

const TYPES: SectionType[] = [
  // ZEO's server.xml
  {
    name: 'zeo',
    keys: [
      k('address', listenAddress, { required: true }),
      k('read-only', boolean, { default: 'false' }),
      k('invalidation-queue-size', integer, { default: '100' }),
      k('invalidation-age', float),
      k('transaction-timeout', integer),
      k('pid-filename', existingDirpath),
      k('client-conflict-resolution', boolean, { default: 'false' }),
      k('msgpack', boolean),
      // zeo-ts's own: the HTTP listener (metrics, dashboard, object browser)
      k('http-address', httpListenAddress),
      k('http-token-file', existingDirpath),
    ],
    sections: [{ type: 'ssl', attr: 'ssl' }],
  },
  {
    name: 'ssl',
    keys: [
      k('certificate', existingDirpath, { required: true }),
      k('key', existingDirpath),
      k('password-function', string),
      k('authenticate', string, { required: true }),
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
      k('create', boolean),
      k('read-only', boolean),
      k('quota', byteSize),
      k('packer', string),
      k('pack-gc', boolean, { default: 'true' }),
      k('pack-keep-old', boolean, { default: 'true' }),
    ],
    sections: [],
  },
  {
    name: 'mappingstorage',
    implements: 'zodb.storage',
    keys: [k('name', string, { default: 'Mapping Storage' })],
    sections: [],
  },
  {
    name: 'blobstorage',
    implements: 'zodb.storage',
    keys: [k('blob-dir', string, { required: true })],
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
    ignoreContent: true,
    keys: [
      k('program', stringList, { required: true }),
      k('start-test-program', stringList),
      ...keys(existingPath, { python: null, zdrun: null }),
      k('socket-name', existingParentDirpath, { default: 'zdsock' }),
      k('directory', existingParentDirectory),
      ...keys(boolean, {
        daemon: 'on',
        forever: 'false',
        'hang-around': 'false',
        'default-to-interactive': 'true',
      }),
      ...keys(integer, { 'backoff-limit': '10', 'start-timeout': '300', 'stop-timeout': '300' }),
      k('exit-codes', listOfInts, { default: '0,2' }),
      k('umask', pyOctal, { default: '022' }),
      ...keys(existingDirpath, { logfile: null, transcript: null }),
      ...keys(string, { user: null, prompt: null }),
    ],
    sections: [{ type: 'zconfig.logger.log', attr: 'eventlog' }],
  },
  { name: 'environment', keys: [], sections: [] },
  // ZConfig's logger components
  { name: 'eventlog', implements: 'zconfig.logger.log', keys: BASE_LOGGER, sections: [HANDLERS] },
  {
    name: 'logger',
    implements: 'zconfig.logger.log',
    keys: [...BASE_LOGGER, k('propagate', boolean, { default: 'true' }), k('name', dottedName)],
    sections: [HANDLERS],
  },
  { name: 'zconfig.logger.base-logger', keys: BASE_LOGGER, sections: [HANDLERS] },
  { name: 'zconfig.logger.base-log-handler', keys: LOG_HANDLER_BASE, sections: [] },
  {
    name: 'logfile',
    implements: 'zconfig.logger.handler',
    keys: [
      ...LOG_HANDLER_BASE,
      k('path', string, { required: true }),
      k('old-files', integer, { default: '0' }),
      k('max-size', byteSize, { default: '0' }),
      k('when', string, { default: '' }),
      k('interval', integer, { default: '0' }),
      k('format', escapedString, { default: RUNZEO_DEFAULT_FORMAT.replace('\n', '\\n') }),
      k('encoding', string),
      k('delay', boolean, { default: 'false' }),
    ],
    sections: [],
  },
  refusedHandler('syslog', [
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
  ]),
  refusedHandler('win32-eventlog', [
    k('appname', string, { default: 'Zope' }),
    k('format', escapedString, { default: '%(levelname)s %(name)s %(message)s' }),
  ]),
  refusedHandler('http-logger', [
    k('url', httpHandlerUrl, { default: 'http://localhost/' }),
    k(
      'method',
      oneOf(
        ['GET', 'POST'],
        (v) => `method must be "GET" or "POST", instead received: ${repr(v.toUpperCase())}`,
        true,
      ),
      { default: 'GET' },
    ),
    k('format', escapedString, { default: '%(asctime)s %(levelname)s %(name)s %(message)s' }),
  ]),
  refusedHandler('email-notifier', [
    k('from', string, { required: true }),
    k('to', string, { required: true, multi: true }),
    k('subject', string, { default: 'Message from Zope' }),
    k('smtp-server', (v) => inetAddress(v), { default: 'localhost' }),
    k('smtp-username', string, { default: '' }),
    k('smtp-password', string, { default: '' }),
    k('format', escapedString, { default: '%(asctime)s %(levelname)s %(name)s %(message)s' }),
  ]),
];

// zc.zlibstorage's component.xml, for `%import zc.zlibstorage`
const ZLIB_TYPES: SectionType[] = [
  {
    name: 'zlibstorage',
    implements: 'zodb.storage',
    keys: [k('compress', boolean)],
    sections: [{ type: 'zodb.storage', attr: 'base', required: true }],
    refuse:
      '<zlibstorage> (compression by the server) is not supported by zeo-ts; use <serverzlibstorage>, with zc.zlibstorage on the clients',
  },
  {
    name: 'serverzlibstorage',
    implements: 'zodb.storage',
    keys: [k('compress', boolean)],
    sections: [{ type: 'zodb.storage', attr: 'base', required: true }],
  },
];

// RelStorage's component.xml: <relstorage>'s keys, every one RelStorage accepts (what each means to zeo-ts:
// config.ts), and its adapters, of which zeo-ts has PostgreSQL's
const RELSTORAGE_KEYS: KeyInfo[] = [
  k('name', string),
  k('read-only', boolean, { default: 'false' }),
  k('blob-dir', string),
  k('shared-blob-dir', boolean, { default: 'false' }),
  k('blob-cache-size', byteSize),
  k('blob-cache-size-check', integer),
  k('blob-cache-size-check-external', boolean, { default: 'false' }),
  k('blob-chunk-size', byteSize),
  k('keep-history', boolean, { default: 'true' }),
  k('replica-conf', string),
  k('ro-replica-conf', string),
  k('replica-timeout', float, { default: '600.0' }),
  k('revert_when_stale', boolean, { default: 'false' }),
  k('poll-interval', float),
  k('pack-gc', boolean, { default: 'true' }),
  k('pack-prepack-only', boolean, { default: 'false' }),
  k('pack-skip-prepack', boolean, { default: 'false' }),
  k('pack-batch-timeout', float),
  k('pack-commit-busy-delay', float),
  k('cache-servers', string),
  k('cache-module-name', string),
  k('cache-prefix', string),
  k('cache-local-mb', integer),
  k('cache-local-storage', dottedName),
  k('cache-local-dir', string),
  k('cache-local-dir-count', integer),
  k('cache-local-dir-read-count', integer),
  k('cache-local-dir-compress', boolean),
  k('cache-local-dir-write-max-size', byteSize),
  k('cache-local-object-max', byteSize),
  k('cache-local-compression', string),
  k('cache-delta-size-limit', integer),
  k('commit-lock-timeout', integer),
  k('commit-lock-id', integer),
  k('create-schema', boolean, { default: 'true' }),
];

/** A DSN (keyword/value or postgresql:// URI) as written, refused here when libpq's reading refuses it. */
function dsn(v: string, cx: ConvContext): string {
  try {
    pgClientConfig(v, cx.env);
  } catch (e) {
    if (e instanceof DsnError) throw new DatatypeError(e.message);
    throw e;
  }
  return v;
}

const PG_ADAPTER_KEYS: KeyInfo[] = [k('driver', string, { default: 'auto' }), k('dsn', dsn, { default: '' })];

const notAnAdapter = (what: string): string =>
  `${what} is not supported by zeo-ts: it serves RelStorage's PostgreSQL databases only (<postgresql>)`;

// `%import relstorage`: its <postgresql> (the adapter, dsn and driver only) takes the place of zeo-ts's own
const RELSTORAGE_TYPES: SectionType[] = [
  {
    name: 'relstorage',
    implements: 'zodb.storage',
    keys: RELSTORAGE_KEYS,
    sections: [{ type: 'relstorage.adapter', attr: 'adapter' }],
  },
  { name: 'postgresql', implements: 'relstorage.adapter', keys: PG_ADAPTER_KEYS, sections: [] },
  {
    name: 'mysql',
    implements: 'relstorage.adapter',
    keys: [],
    sections: [],
    refuse: notAnAdapter('<mysql> (RelStorage on MySQL)'),
  },
  {
    name: 'oracle',
    implements: 'relstorage.adapter',
    keys: [],
    sections: [],
    refuse: notAnAdapter('<oracle> (RelStorage on Oracle)'),
  },
  {
    name: 'sqlite3',
    implements: 'relstorage.adapter',
    keys: [],
    sections: [],
    refuse: notAnAdapter('<sqlite3> (RelStorage on SQLite)'),
  },
];

/**
 * zeo-ts's <postgresql> storage section: <relstorage> and its <postgresql> adapter in one (dsn, driver and
 * RelStorage's keys), and the connection pool's size.
 */
const POSTGRESQL_STORAGE: SectionType = {
  name: 'postgresql',
  implements: 'zodb.storage',
  keys: [...PG_ADAPTER_KEYS, ...RELSTORAGE_KEYS, k('pool-size', rangeChecked(integer, 1, null))],
  sections: [],
};

export const RUNZEO_SCHEMA: Schema = {
  // ZEO's schema.xml: the top level
  top: {
    name: '(top level)',
    keys: [],
    sections: [
      { type: 'zeo', attr: 'zeo', required: true },
      { type: 'runner', attr: 'runner' },
      { type: 'zodb.storage', attr: 'storages', required: true, multi: true },
      { type: 'eventlog', attr: 'eventlog' },
    ],
  },
  types: [...TYPES, POSTGRESQL_STORAGE],
  abstractTypes: ['zodb.storage', 'zodb.database', 'zconfig.logger.log', 'zconfig.logger.handler'],
  // those runzeo's schema already has (importing them again is a no-op), and zc.zlibstorage, whose
  // <serverzlibstorage> zeo-ts implements
  packages: {
    ZODB: {},
    'ZConfig.components.logger': {},
    zdaemon: {},
    'zc.zlibstorage': { types: ZLIB_TYPES },
    relstorage: { types: RELSTORAGE_TYPES, abstractTypes: ['relstorage.adapter'] },
    ZEO: { refuse: `%import ZEO: type name cannot be redefined: 'ssl' (runzeo refuses it too)` },
  },
  unknownPackage: (pkg) =>
    `%import ${pkg}: zeo-ts cannot load Python packages; the packages it knows are ZODB, ZConfig.components.logger, zdaemon, zc.zlibstorage and relstorage`,
};

/** The section types of runzeo's schema, with %import zc.zlibstorage's, by name. */
export const RUNZEO_TYPES = new Map<string, SectionType>([...TYPES, ...ZLIB_TYPES].map((t) => [t.name, t]));

/** The keys of RelStorage's <relstorage> section (zeo-ts's <postgresql> has them too). */
export const RELSTORAGE_KEY_NAMES: readonly string[] = RELSTORAGE_KEYS.map((ki) => ki.name);
