// The configuration of `zeo serve`: runzeo's zeo.conf, read by the ZConfig reader (src/zconfig) against
// runzeo's schema (runzeo-schema.ts: ZEO's schema.xml and server.xml, ZODB's storage sections, ZConfig's
// <eventlog>, zdaemon's <runner>), and runzeo's command line (ServeOptions: -C, -a, -f, -t, --pid-file, -X,
// and zeo-ts's own). What runzeo accepts we accept and read the same way; what it refuses we refuse; what only
// Python can do (packers, DemoStorage, ZEO-client storages, other %imported packages, syslog handlers...) is
// refused here, at parse time, saying so.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  byteSize,
  ConfigError,
  DatatypeError,
  exists,
  fail,
  isDir,
  pyDirname,
  pyFloat,
  readConfig,
  repr,
  type Position,
  type SectionValue,
} from '../zconfig/index.js';
import type { PostgreSQLOptions } from '../storage/postgresql/options.js';
import { checkLogFormat, type EventLogConfig, type LogFormat, type LogLevel } from './log.js';
import {
  httpListenAddress,
  listenAddress,
  RUNZEO_SCHEMA,
  RUNZEO_TYPES,
  type ListenAddress,
} from './runzeo-schema.js';

export { ConfigError } from '../zconfig/index.js';
export {
  levelNumber,
  type EventLogConfig,
  type LogFormat,
  type LogHandlerConfig,
  type LogLevel,
} from './log.js';
export type { ListenAddress } from './runzeo-schema.js';

// ---------------------------------------------------------------------------------------------------------
// The result

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
    }
  | {
      /** RelStorage's <relstorage> with its <postgresql> adapter (after %import relstorage), or zeo-ts's <postgresql> */
      kind: 'postgresql';
      name: string;
      options: PostgreSQLOptions;
      /** settings given that mean nothing to zeo-ts, said once in the log when the storage opens */
      ignored: string[];
    };

/** The HTTP listener (metrics, dashboard, object browser): `http-address`/--http, `http-token-file`. */
export interface HttpConfig {
  /** a bare port listens on 127.0.0.1 (loopback unless an address says otherwise) */
  address: ListenAddress;
  /** a file whose first line is the bearer token (null: a random one, or TLS client certificates) */
  tokenFile: string | null;
}

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
  /** the log's output: runzeo's text lines (absent: 'text') or JSON lines, from --log-format */
  logFormat?: LogFormat;
  /** the largest message a client may send, from --max-message-size (absent: the server's default) */
  maxMessageSize?: number;
  /** the largest blob a client may upload in one transaction, from --max-blob-upload (absent: the default) */
  maxBlobUpload?: number;
  /** the HTTP listener, off when absent (zeo-ts's own <zeo> keys; runzeo refuses them) */
  http?: HttpConfig | null;
  /** where each <zeo> setting came from, for messages: "zeo.conf, line 3", "-a", "ZEO_MSGPACK", "default" */
  sources?: Partial<Record<ZeoSetting, string>>;
}

export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

type ZeoSetting =
  | 'address'
  | 'readOnly'
  | 'invalidationQueueSize'
  | 'invalidationAge'
  | 'transactionTimeout'
  | 'pidFilename'
  | 'clientConflictResolution'
  | 'msgpack'
  | 'ssl'
  | 'http'
  | 'httpTokenFile';

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
// What only the server can check: what a section means to zeo-ts

function keyPos(sv: SectionValue, key: string): Position {
  return sv.keyPos.get(key) ?? sv.start;
}

const UTF8_NAMES = new Set(['utf-8', 'utf8', 'utf_8', 'u8', 'utf', 'cp65001']);

/** Checks a finished section; `ignored` (inside <runner>) keeps only the checks runzeo itself makes. */
function checkSection(sv: SectionValue, ignored: boolean): void {
  if (RUNZEO_TYPES.get(sv.type)?.implements === 'zconfig.logger.handler') checkLogHandler(sv, ignored);
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
      case 'relstorage':
      case 'postgresql': {
        if (blobDir !== null) {
          fail(
            `a <blobstorage> around <${cur.type}>: RelStorage keeps blobs in the database; give its blob-dir instead`,
            cur.start,
          );
        }
        if (zlib) fail(`<serverzlibstorage> around <${cur.type}> is not supported by zeo-ts`, cur.start);
        return postgresqlFrom(cur, name);
      }
      default:
        fail(`<${cur.type}> is not supported by zeo-ts`, cur.start);
    }
  }
}

// RelStorage's keys that mean nothing to zeo-ts's server, and why
const IGNORED_RELSTORAGE_KEYS: Record<string, string> = {
  driver: 'zeo-ts connects with node-postgres',
  'blob-cache-size': 'zeo-ts does not prune blob-dir by size',
  'blob-cache-size-check': 'zeo-ts does not prune blob-dir by size',
  'blob-cache-size-check-external': 'zeo-ts does not prune blob-dir by size',
  'replica-conf': "zeo-ts connects to the dsn's host only",
  'ro-replica-conf': "zeo-ts connects to the dsn's host only",
  'replica-timeout': "zeo-ts connects to the dsn's host only",
  revert_when_stale: "zeo-ts connects to the dsn's host only",
  'pack-skip-prepack': 'zeo-ts packs with its own pack, which always runs the pre-pack',
  'pack-batch-timeout': 'zeo-ts packs with its own pack',
  'pack-commit-busy-delay': 'zeo-ts packs with its own pack',
  'cache-servers': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-module-name': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-prefix': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-mb': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-storage': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-dir': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-dir-count': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-dir-read-count': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-dir-compress': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-dir-write-max-size': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-object-max': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-local-compression': "RelStorage's caches are its clients'; ZEO clients have their own",
  'cache-delta-size-limit': "RelStorage's caches are its clients'; ZEO clients have their own",
  'commit-lock-id': 'RelStorage uses it on Oracle only',
};

/**
 * A <relstorage> (its keys, and its <postgresql> adapter's dsn and driver) or zeo-ts's <postgresql> (all in
 * one section, with pool-size) to the PostgreSQL storage's options.
 */
function postgresqlFrom(sv: SectionValue, name: string): StorageConfig {
  let adapter = sv;
  if (sv.type === 'relstorage') {
    const a = sv.sections.get('adapter') as SectionValue | null;
    if (!a) fail('<relstorage> needs its database adapter: a <postgresql> section with the dsn', sv.start);
    adapter = a;
  }
  const key = <T>(k: string): T => sv.keys.get(k) as T;
  const given = (k: string): boolean => sv.keyPos.has(k);
  const refuse = (k: string, why: string): never => fail(`${k} ${String(key(k))}: ${why}`, keyPos(sv, k));
  if (!key<boolean>('keep-history'))
    refuse(
      'keep-history',
      "zeo-ts serves RelStorage's history-preserving schema only, not a history-free database",
    );
  if (key<boolean>('shared-blob-dir')) {
    refuse(
      'shared-blob-dir',
      'zeo-ts keeps blobs in the database (blob_chunk), as RelStorage does without a shared blob directory',
    );
  }
  if (key<boolean>('pack-prepack-only'))
    refuse('pack-prepack-only', 'zeo-ts cannot pack without removing what the pack removes; leave it false');
  const ignored: string[] = [];
  const ignore = (k: string, pos: Position, why: string): void => {
    ignored.push(`${k} (${where(pos)}): ${why}`);
  };
  const options: PostgreSQLOptions = {
    dsn: adapter.keys.get('dsn') as string,
    readOnly: key<boolean>('read-only'),
    createSchema: key<boolean>('create-schema'),
    keepHistory: true,
    packGc: key<boolean>('pack-gc'),
  };
  if (given('name')) options.name = key<string>('name');
  const pollInterval = key<number | null>('poll-interval');
  if (pollInterval !== null) {
    if (pollInterval < 0 || Number.isNaN(pollInterval))
      refuse('poll-interval', 'must be a number of seconds, 0 or more');
    if (pollInterval > 0) options.pollInterval = pollInterval;
    else
      ignore(
        'poll-interval',
        keyPos(sv, 'poll-interval'),
        "0 asks RelStorage to poll at each transaction; zeo-ts polls at its default interval and is woken by the database's notifications",
      );
  }
  const lockTimeout = key<number | null>('commit-lock-timeout');
  if (lockTimeout !== null) {
    if (lockTimeout < 0) refuse('commit-lock-timeout', 'must be a number of seconds, 0 or more');
    options.commitLockTimeout = lockTimeout;
  }
  const chunk = key<number | null>('blob-chunk-size');
  if (chunk !== null) {
    if (chunk <= 0) refuse('blob-chunk-size', 'must be more than 0 bytes');
    options.blobChunkSize = chunk;
  }
  const blobDir = key<string | null>('blob-dir');
  if (blobDir) options.blobDir = blobDir;
  if (sv.type === 'postgresql' && given('pool-size')) options.poolSize = key<number>('pool-size');
  const driverPos = adapter.keyPos.get('driver');
  if (driverPos) ignore('driver', driverPos, IGNORED_RELSTORAGE_KEYS.driver);
  for (const [k, why] of Object.entries(IGNORED_RELSTORAGE_KEYS)) {
    if (k !== 'driver' && given(k)) ignore(k, keyPos(sv, k), why);
  }
  return { kind: 'postgresql', name, options, ignored };
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
  const httpAddress = setting<ListenAddress | null>('http', 'http-address');
  const httpTokenFile = setting<string | null>('httpTokenFile', 'http-token-file') || null;
  if (httpTokenFile && !httpAddress) {
    fail(
      'http-token-file is given without http-address: there is no HTTP listener to protect',
      keyPos(zeo, 'http-token-file'),
    );
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
    // (absent when off, as in a configuration built by hand)
    ...(httpAddress ? { http: { address: httpAddress, tokenFile: httpTokenFile } } : {}),
    storages,
    eventlog,
    sources,
  };
}

/**
 * A listen address as runzeo reads `address` and -a: 'host:port', '[v6]:port', 'port', ':port' (all
 * interfaces: host ''), anything containing '/' is a Unix socket path; 'host:', a bare host name or port 0
 * give an ephemeral port (0). Host names are lowercased.
 */
export function parseAddress(value: string): ListenAddress {
  try {
    return listenAddress(value);
  } catch (e) {
    if (e instanceof DatatypeError) throw new ConfigError(e.message);
    throw e;
  }
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
  const top = readConfig(text, RUNZEO_SCHEMA, { ...options, env, check: checkSection });
  return toServerConfig(top, env, withStorages);
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
 * `zeo serve`'s command line: runzeo's options (ZEO/runzeo.py and zdaemon's ZDOptions), and zeo-ts's own.
 * Values are as written; serveOptionsToConfig reads them.
 */
export interface ServeOptions {
  /** -C/--configure FILE: a zeo.conf (a path or a file: URL) */
  configure?: string;
  /** -a/--address: PORT, HOST:PORT, [V6]:PORT or a unix socket PATH (containing a '/') */
  address?: string;
  /** -f/--filename (repeatable): FileStorages named 1, 2, ...; replaces the file's storages, as runzeo does */
  filename?: string[];
  /** -t/--timeout: the transaction timeout in seconds (a float) */
  timeout?: string;
  /** --pid-file: where to write the pid ('' for runzeo's default, $INSTANCE_HOME/var/ZEO.pid) */
  pidFile?: string;
  /** -X section/key=value (repeatable, only with -C): a zeo.conf setting overridden */
  override?: string[];
  /** --read-only (zeo-ts; runzeo says `read-only true` in <zeo>): serve every storage read-only */
  readOnly?: boolean;
  /** --log-format text|json (zeo-ts): runzeo's text lines, or one JSON object a line for log shippers */
  logFormat?: string;
  /** --max-message-size (zeo-ts): the largest message a client may send, a ZConfig byte-size (256MB) */
  maxMessageSize?: string;
  /** --max-blob-upload (zeo-ts): the largest blob a client may upload, a ZConfig byte-size (4GB) */
  maxBlobUpload?: string;
  /** --http (zeo-ts): the HTTP listener's address, as http-address (a bare PORT is 127.0.0.1:PORT) */
  http?: string;
  /** --http-token-file (zeo-ts): the file whose first line is the HTTP listener's bearer token */
  httpTokenFile?: string;
}

/**
 * ServeOptions to the server's configuration, in one place. Without -C, a missing -a or -f takes the default
 * (127.0.0.1:8100, ./var/Data.fs) where runzeo would stop with a usage error.
 */
export function serveOptionsToConfig(opts: ServeOptions, env: NodeJS.ProcessEnv = process.env): ServerConfig {
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
    config.address = option('-a', opts.address, listenAddress);
    sources.address = '-a';
  }
  if (opts.filename?.length) {
    config.storages = opts.filename.map((f, i) => fileStorageDefaults(String(i + 1), f));
  }
  if (opts.timeout !== undefined) {
    config.transactionTimeout = option('-t', opts.timeout, pyFloat);
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
  if (opts.logFormat !== undefined) {
    const format = opts.logFormat.toLowerCase();
    if (!(LOG_FORMATS as readonly string[]).includes(format)) {
      throw new ConfigError(
        `invalid value for --log-format ${repr(opts.logFormat)}: must be one of ${LOG_FORMATS.join(', ')}`,
      );
    }
    config.logFormat = format as LogFormat;
  }
  if (opts.maxMessageSize !== undefined)
    config.maxMessageSize = positiveSize('--max-message-size', opts.maxMessageSize);
  if (opts.maxBlobUpload !== undefined)
    config.maxBlobUpload = positiveSize('--max-blob-upload', opts.maxBlobUpload);
  if (opts.http !== undefined) {
    config.http = {
      address: option('--http', opts.http, httpListenAddress),
      tokenFile: config.http?.tokenFile ?? null,
    };
    sources.http = '--http';
  }
  if (opts.httpTokenFile !== undefined) {
    if (!config.http) {
      throw new ConfigError(
        '--http-token-file is given without --http (or http-address): there is no HTTP listener to protect',
      );
    }
    config.http.tokenFile = opts.httpTokenFile;
    sources.httpTokenFile = '--http-token-file';
  }
  return config;
}

/** A byte-size flag (ZConfig's byte-size: 4096, 64MB) that must be more than 0. */
function positiveSize(flag: string, value: string): number {
  const size = option(flag, value, byteSize);
  if (size <= 0) throw new ConfigError(`invalid value for ${flag} ${repr(value)}: must be more than 0 bytes`);
  return size;
}

/** A command-line value read by a datatype; a refusal names the flag. */
function option<T>(flag: string, value: string, datatype: (v: string) => T): T {
  try {
    return datatype(value);
  } catch (e) {
    if (e instanceof DatatypeError)
      throw new ConfigError(`invalid value for ${flag} ${repr(value)}: ${e.message}`);
    throw e;
  }
}
