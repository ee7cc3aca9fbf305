// The PostgreSQL storage's options, and its DSN read as libpq reads one: a keyword/value string
// (`dbname=zodb user=zeo host=/var/run/postgresql`) or a postgresql:// URI, with libpq's quoting, its
// environment variables (PGHOST, PGUSER, ...) for what the DSN leaves out and its defaults (the OS user, the
// local socket directory), turned into node-postgres's ClientConfig. A DSN that RelStorage (psycopg2, libpq)
// accepts connects zeo-ts to the same database; what node-postgres cannot honour is refused, saying so,
// rather than quietly connecting with less (no failover host lists, no service files...).
import { existsSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import type { ClientConfig } from 'pg';
import { boolean, byteSize, DatatypeError, pyFloat, pyInt } from '../../zconfig/index.js';

/** How a PostgreSQLStorage is opened: RelStorage's options where they mean the same. */
export interface PostgreSQLOptions {
  /** a libpq keyword=value string or a postgresql:// (postgres://) URI; '' is libpq's defaults */
  dsn: string;
  /** the storage's name (getName); RelStorage's `name` */
  name?: string;
  readOnly?: boolean;
  /** install RelStorage's schema in a database that has none (default true) */
  createSchema?: boolean;
  /** only true (history-preserving) is supported */
  keepHistory?: boolean;
  /** seconds between polls for other writers' transactions (the upper bound without a notification) */
  pollInterval?: number;
  /** seconds to wait for the commit lock (RelStorage's default: 30) */
  commitLockTimeout?: number;
  /** bytes per blob_chunk row (RelStorage's default: 1 MiB) */
  blobChunkSize?: number;
  /** where blob files are kept for the server (null or absent: no blobs) */
  blobDir?: string | null;
  /** database connections in the pool */
  poolSize?: number;
  /** pack removes unreachable objects (default true) */
  packGc?: boolean;
  /** seconds to wait for a connection (absent: the DSN's connect_timeout) */
  connectTimeout?: number;
  /**
   * bytes of current object states kept in memory for loads (state-cache.ts; default 64 MiB, 0 for none,
   * else at least 64 KiB): a bound on all of that cache's memory
   */
  cacheBytes?: number;
}

/** A DSN that cannot be read, or asks for what zeo-ts cannot do. */
export class DsnError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DsnError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// libpq's keywords: each with its environment variable, and what zeo-ts does with it

// 'used': read into ClientConfig; 'tuning': tuning node-postgres has no equivalent for, without effect on
// what is connected to or how safely; any other text: refused, saying why
type Use = string;

const KEYWORDS: Record<string, { env?: string; use: Use }> = {
  host: { env: 'PGHOST', use: 'used' },
  hostaddr: { env: 'PGHOSTADDR', use: 'used' },
  port: { env: 'PGPORT', use: 'used' },
  dbname: { env: 'PGDATABASE', use: 'used' },
  user: { env: 'PGUSER', use: 'used' },
  password: { env: 'PGPASSWORD', use: 'used' },
  connect_timeout: { env: 'PGCONNECT_TIMEOUT', use: 'used' },
  client_encoding: { env: 'PGCLIENTENCODING', use: 'used' },
  options: { env: 'PGOPTIONS', use: 'used' },
  application_name: { env: 'PGAPPNAME', use: 'used' },
  fallback_application_name: { use: 'used' },
  keepalives: { use: 'used' },
  keepalives_idle: { use: 'used' },
  keepalives_interval: { use: 'tuning' },
  keepalives_count: { use: 'tuning' },
  tcp_user_timeout: { use: 'tuning' },
  sslmode: { env: 'PGSSLMODE', use: 'used' },
  sslnegotiation: { env: 'PGSSLNEGOTIATION', use: 'used' },
  sslcompression: { env: 'PGSSLCOMPRESSION', use: 'tuning' },
  sslcert: { env: 'PGSSLCERT', use: 'used' },
  sslkey: { env: 'PGSSLKEY', use: 'used' },
  sslpassword: { use: 'used' },
  sslrootcert: { env: 'PGSSLROOTCERT', use: 'used' },
  sslcrl: { env: 'PGSSLCRL', use: 'used' },
  sslsni: { env: 'PGSSLSNI', use: 'tuning' },
  ssl_min_protocol_version: { env: 'PGSSLMINPROTOCOLVERSION', use: 'used' },
  ssl_max_protocol_version: { env: 'PGSSLMAXPROTOCOLVERSION', use: 'used' },
  // checked: the values that ask for nothing node-postgres lacks are accepted
  channel_binding: { env: 'PGCHANNELBINDING', use: 'used' },
  gssencmode: { env: 'PGGSSENCMODE', use: 'used' },
  sslcertmode: { env: 'PGSSLCERTMODE', use: 'used' },
  target_session_attrs: { env: 'PGTARGETSESSIONATTRS', use: 'used' },
  load_balance_hosts: { env: 'PGLOADBALANCEHOSTS', use: 'used' },
  krbsrvname: { env: 'PGKRBSRVNAME', use: 'tuning' },
  gsslib: { env: 'PGGSSLIB', use: 'tuning' },
  gssdelegation: { env: 'PGGSSDELEGATION', use: 'tuning' },
  passfile: {
    env: 'PGPASSFILE',
    use: 'node-postgres reads the password file PGPASSFILE names (default ~/.pgpass): set PGPASSFILE in the environment instead',
  },
  service: {
    env: 'PGSERVICE',
    use: 'zeo-ts does not read pg_service.conf: write the service settings in the DSN',
  },
  requirepeer: {
    env: 'PGREQUIREPEER',
    use: 'node-postgres cannot check the user of the server process over the socket',
  },
  require_auth: { env: 'PGREQUIREAUTH', use: 'node-postgres cannot restrict the authentication method' },
  sslcrldir: { env: 'PGSSLCRLDIR', use: 'name one revocation list file with sslcrl instead' },
  replication: { use: 'a replication connection cannot serve a storage' },
};

// ---------------------------------------------------------------------------------------------------------
// Reading the two forms into keyword -> value

const URI_PREFIXES = ['postgresql://', 'postgres://'];

/** True when `dsn` is a postgresql:// or postgres:// URI (libpq's test: the prefix, case-sensitive). */
export function isPostgresUri(dsn: string): boolean {
  return URI_PREFIXES.some((p) => dsn.startsWith(p));
}

/**
 * The keyword/value pairs a DSN gives, as libpq reads them (a later duplicate wins), with unknown keywords
 * refused. Nothing is looked up: no environment, no defaults, no files.
 */
export function parseDsn(dsn: string): Map<string, string> {
  const pairs = isPostgresUri(dsn) ? parseUri(dsn) : parseKeywordValue(dsn);
  for (const [k, v] of pairs) {
    if (k === 'dbname' && (v.includes('=') || isPostgresUri(v))) {
      throw new DsnError(
        'a connection string as dbname is not supported by zeo-ts: write its settings in the DSN itself',
      );
    }
  }
  return pairs;
}

const isSpace = (c: string | undefined): boolean =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';

// libpq's conninfo_parse: `keyword = value` pairs; a value is bare (a backslash takes the next character
// literally) or in single quotes (backslash escapes, spaces kept)
function parseKeywordValue(s: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  for (;;) {
    while (isSpace(s[i])) i++;
    if (i >= s.length) break;
    const start = i;
    while (i < s.length && s[i] !== '=' && !isSpace(s[i])) i++;
    const keyword = s.slice(start, i);
    while (isSpace(s[i])) i++;
    if (s[i] !== '=') throw new DsnError(`missing "=" after "${keyword}" in connection info string`);
    i++;
    while (isSpace(s[i])) i++;
    let value = '';
    if (s[i] === "'") {
      i++;
      for (;;) {
        if (i >= s.length) throw new DsnError('unterminated quoted string in connection info string');
        const c = s[i++];
        if (c === "'") break;
        if (c === '\\') {
          if (i >= s.length) throw new DsnError('unterminated quoted string in connection info string');
          value += s[i++];
        } else value += c;
      }
    } else {
      while (i < s.length && !isSpace(s[i])) {
        const c = s[i++];
        if (c === '\\') {
          if (i < s.length) value += s[i++];
        } else value += c;
      }
    }
    if (!Object.hasOwn(KEYWORDS, keyword)) throw new DsnError(`invalid connection option "${keyword}"`);
    out.set(keyword, value);
  }
  return out;
}

function percentDecode(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length;) {
    if (s[i] === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new DsnError(`invalid percent-encoded token: "${s}"`);
      const b = parseInt(hex, 16);
      if (b === 0) throw new DsnError(`forbidden value %00 in percent-encoded value: "${s}"`);
      bytes.push(b);
      i += 3;
    } else {
      bytes.push(...Buffer.from(s[i], 'utf8'));
      i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

// libpq's conninfo_uri_parse: postgresql://[user[:password]@][host][:port][,...][/dbname][?keyword=value&...]
function parseUri(uri: string): Map<string, string> {
  const out = new Map<string, string>();
  const prefix = URI_PREFIXES.find((p) => uri.startsWith(p))!;
  let rest = uri.slice(prefix.length);
  const at = rest.search(/[@/]/);
  if (at >= 0 && rest[at] === '@') {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(':');
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user) out.set('user', percentDecode(user));
    if (colon >= 0 && colon + 1 < userinfo.length)
      out.set('password', percentDecode(userinfo.slice(colon + 1)));
    rest = rest.slice(at + 1);
  }
  // the host list: host[:port] or [v6]:port, comma-separated
  const hosts: string[] = [];
  const ports: string[] = [];
  let i = 0;
  for (;;) {
    let host: string;
    if (rest[i] === '[') {
      const close = rest.indexOf(']', i);
      if (close < 0) {
        throw new DsnError(
          `end of string reached when looking for matching "]" in IPv6 host address in URI: "${uri}"`,
        );
      }
      host = percentDecode(rest.slice(i + 1, close));
      if (!host) throw new DsnError(`IPv6 host address may not be empty in URI: "${uri}"`);
      i = close + 1;
      if (i < rest.length && !':/?,'.includes(rest[i])) {
        throw new DsnError(
          `unexpected character "${rest[i]}" at position ${prefix.length + i + 1} in URI (expected ":" or "/"): "${uri}"`,
        );
      }
    } else {
      const start = i;
      while (i < rest.length && !':/?,'.includes(rest[i])) i++;
      host = percentDecode(rest.slice(start, i));
    }
    let port = '';
    if (rest[i] === ':') {
      const start = ++i;
      while (i < rest.length && !'/?,'.includes(rest[i])) i++;
      port = percentDecode(rest.slice(start, i));
    }
    hosts.push(host);
    ports.push(port);
    if (rest[i] !== ',') break;
    i++;
  }
  if (hosts.some((h) => h) || hosts.length > 1) out.set('host', hosts.join(','));
  if (ports.some((p) => p) || ports.length > 1) out.set('port', ports.join(','));
  if (rest[i] === '/') {
    const start = ++i;
    while (i < rest.length && rest[i] !== '?') i++;
    const dbname = rest.slice(start, i);
    if (dbname) out.set('dbname', percentDecode(dbname));
  }
  if (rest[i] === '?') {
    const params = rest.slice(i + 1).split('&');
    // a trailing '&' (or a bare '?') ends the list; an empty parameter before another is refused
    if (params[params.length - 1] === '') params.pop();
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq < 0) throw new DsnError(`missing key/value separator "=" in URI query parameter: "${param}"`);
      if (param.indexOf('=', eq + 1) >= 0)
        throw new DsnError(`extra key/value separator "=" in URI query parameter: "${param.slice(0, eq)}"`);
      let keyword = percentDecode(param.slice(0, eq));
      let value = percentDecode(param.slice(eq + 1));
      // libpq's JDBC compatibility
      if (keyword === 'ssl' && value === 'true') [keyword, value] = ['sslmode', 'require'];
      if (!Object.hasOwn(KEYWORDS, keyword)) throw new DsnError(`invalid URI query parameter: "${keyword}"`);
      out.set(keyword, value);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// keyword -> value to node-postgres's ClientConfig

/** libpq's default socket directory: Debian's and Ubuntu's builds use /var/run/postgresql, others /tmp. */
export function defaultSocketDir(): string {
  return existsSync('/var/run/postgresql') ? '/var/run/postgresql' : '/tmp';
}

function intValue(keyword: string, v: string): number {
  if (!/^\s*[+-]?\d+\s*$/.test(v))
    throw new DsnError(`invalid integer value "${v}" for connection option "${keyword}"`);
  return Number(v);
}

function oneOf(keyword: string, v: string, values: string[]): string {
  if (!values.includes(v)) throw new DsnError(`invalid ${keyword} value: "${v}"`);
  return v;
}

function refuseValue(keyword: string, v: string, why: string): never {
  throw new DsnError(`${keyword}=${v} is not supported by zeo-ts: ${why}`);
}

function readPem(keyword: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new DsnError(`could not read the file ${keyword} names (${path}): ${(e as Error).message}`);
  }
}

const TLS_VERSIONS: Record<string, ConnectionOptions['minVersion']> = {
  TLSv1: 'TLSv1',
  'TLSv1.1': 'TLSv1.1',
  'TLSv1.2': 'TLSv1.2',
  'TLSv1.3': 'TLSv1.3',
};

/**
 * node-postgres's connection settings for a DSN (either form), as libpq would connect with it: what the DSN
 * leaves out comes from libpq's environment variables in `env`, then libpq's defaults (the OS user; the
 * local socket directory; port 5432; dbname = user). TLS follows sslmode: disable, allow and prefer connect
 * without TLS (node-postgres cannot fall back from one to the other), require encrypts (and verifies the
 * server against a root certificate when there is one, as libpq does), verify-ca and verify-full verify.
 * A password not given is left to node-postgres (PGPASSFILE or ~/.pgpass). Throws DsnError.
 */
export function pgClientConfig(dsn: string, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const given = parseDsn(dsn);
  // what the DSN gives, else libpq's environment variable; an empty value is libpq's default
  const values = new Map<string, string>();
  const source = new Map<string, string>();
  for (const [k, { env: name }] of Object.entries(KEYWORDS)) {
    const v = given.get(k) ?? (name ? env[name] : undefined);
    if (v === undefined || v === '') continue;
    values.set(k, v);
    source.set(k, given.has(k) ? `${k}=${v}` : `${name}=${v} (libpq's ${k})`);
  }
  for (const k of values.keys()) {
    const use = KEYWORDS[k].use;
    if (use !== 'used' && use !== 'tuning')
      throw new DsnError(`${source.get(k)} is not supported by zeo-ts: ${use}`);
  }

  for (const k of ['host', 'hostaddr', 'port']) {
    const v = values.get(k);
    if (v?.includes(',')) {
      throw new DsnError(
        `${k}=${v}: several hosts are not supported by zeo-ts (node-postgres connects to one): name one`,
      );
    }
  }
  let host = values.get('host');
  const hostaddr = values.get('hostaddr');
  if (host?.startsWith('@'))
    throw new DsnError(`host=${host}: abstract unix sockets are not supported by zeo-ts`);
  if (hostaddr !== undefined && isIP(hostaddr) === 0)
    throw new DsnError(`could not parse network address "${hostaddr}"`);
  const socket = hostaddr === undefined && (host === undefined || host.startsWith('/'));
  if (socket && host === undefined) host = defaultSocketDir();

  const portText = values.get('port');
  let port = 5432;
  if (portText !== undefined) {
    port = /^\s*\d+\s*$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new DsnError(`invalid port number: "${portText}"`);
  }
  const user = values.get('user') ?? userInfo().username;
  const config: ClientConfig = {
    host: hostaddr ?? host,
    port,
    user,
    database: values.get('dbname') ?? user,
  };
  const password = values.get('password');
  if (password !== undefined) config.password = password;

  const timeout = values.get('connect_timeout');
  if (timeout !== undefined) {
    const t = intValue('connect_timeout', timeout);
    // libpq: zero or less waits for ever; less than 2 seconds is 2
    if (t > 0) config.connectionTimeoutMillis = Math.max(t, 2) * 1000;
  }
  for (const k of ['application_name', 'fallback_application_name', 'options', 'client_encoding'] as const) {
    const v = values.get(k);
    if (v !== undefined) config[k] = v;
  }
  // libpq keeps TCP keepalives on unless told otherwise
  if (!socket) {
    config.keepAlive =
      values.get('keepalives') === undefined || intValue('keepalives', values.get('keepalives')!) !== 0;
    const idle = values.get('keepalives_idle');
    if (idle !== undefined) config.keepAliveInitialDelayMillis = intValue('keepalives_idle', idle) * 1000;
  }
  for (const k of ['keepalives_interval', 'keepalives_count', 'tcp_user_timeout'] as const) {
    const v = values.get(k);
    if (v !== undefined) intValue(k, v);
  }

  const channelBinding = values.get('channel_binding');
  if (channelBinding !== undefined) {
    oneOf('channel_binding', channelBinding, ['disable', 'prefer', 'require']);
    if (channelBinding === 'require')
      refuseValue('channel_binding', 'require', 'node-postgres cannot insist on channel binding');
  }
  const gssencmode = values.get('gssencmode');
  if (gssencmode !== undefined) {
    oneOf('gssencmode', gssencmode, ['disable', 'prefer', 'require']);
    if (gssencmode === 'require')
      refuseValue('gssencmode', 'require', 'node-postgres has no GSSAPI encryption');
  }
  const sslcertmode = values.get('sslcertmode');
  if (sslcertmode !== undefined) {
    oneOf('sslcertmode', sslcertmode, ['disable', 'allow', 'require']);
    if (sslcertmode === 'require')
      refuseValue(
        'sslcertmode',
        'require',
        'node-postgres cannot insist that the server asks for a certificate',
      );
  }
  const tsa = values.get('target_session_attrs');
  if (tsa !== undefined) {
    oneOf('target_session_attrs', tsa, [
      'any',
      'read-write',
      'read-only',
      'primary',
      'standby',
      'prefer-standby',
    ]);
    if (tsa !== 'any')
      refuseValue(
        'target_session_attrs',
        tsa,
        'node-postgres connects to the one host named, whatever it is',
      );
  }
  const lbh = values.get('load_balance_hosts');
  if (lbh !== undefined) oneOf('load_balance_hosts', lbh, ['disable', 'random']);

  const ssl = tlsOptions(values, socket, host, hostaddr, env.HOME || homedir());
  config.ssl = ssl;
  const negotiation = values.get('sslnegotiation');
  if (negotiation !== undefined) {
    oneOf('sslnegotiation', negotiation, ['postgres', 'direct']);
    if (negotiation === 'direct' && !ssl)
      throw new DsnError(
        'weak sslmode "prefer" may not be used with sslnegotiation=direct (use "require", "verify-ca", or "verify-full")',
      );
    config.sslnegotiation = negotiation as 'postgres' | 'direct';
  }
  return config;
}

function tlsOptions(
  values: Map<string, string>,
  socket: boolean,
  host: string | undefined,
  hostaddr: string | undefined,
  home: string,
): false | ConnectionOptions {
  const mode = oneOf('sslmode', values.get('sslmode') ?? 'prefer', [
    'disable',
    'allow',
    'prefer',
    'require',
    'verify-ca',
    'verify-full',
  ]);
  const rootcert = values.get('sslrootcert');
  if (rootcert === 'system' && mode !== 'verify-full') {
    throw new DsnError(`weak sslmode "${mode}" may not be used with sslrootcert=system (use "verify-full")`);
  }
  const versions: ConnectionOptions = {};
  for (const [k, field] of [
    ['ssl_min_protocol_version', 'minVersion'],
    ['ssl_max_protocol_version', 'maxVersion'],
  ] as const) {
    const v = values.get(k);
    if (v === undefined) continue;
    if (!Object.hasOwn(TLS_VERSIONS, v)) throw new DsnError(`invalid ${k} value: "${v}"`);
    versions[field] = TLS_VERSIONS[v];
  }
  // libpq: sslmode does not apply to unix sockets
  if (socket || mode === 'disable' || mode === 'allow' || mode === 'prefer') return false;

  const dir = join(home, '.postgresql');
  const ssl: ConnectionOptions = { minVersion: 'TLSv1.2', ...versions };
  // the server's certificate: verified against sslrootcert (or ~/.postgresql/root.crt; 'system': the
  // system's roots); with require, only when such a file exists, as libpq does
  let verify = mode !== 'require';
  if (rootcert !== 'system') {
    const file = rootcert ?? join(dir, 'root.crt');
    if (existsSync(file)) {
      ssl.ca = readPem('sslrootcert', file);
      verify = true;
    } else if (verify) {
      throw new DsnError(
        `root certificate file "${file}" does not exist\nEither provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification.`,
      );
    }
  }
  ssl.rejectUnauthorized = verify;
  // verify-ca checks the chain only; verify-full also the name (host, when hostaddr is what is dialled)
  if (verify && mode !== 'verify-full') ssl.checkServerIdentity = () => undefined;
  if (hostaddr !== undefined && host !== undefined && !host.startsWith('/')) ssl.servername = host;

  const cert = values.get('sslcert') ?? join(dir, 'postgresql.crt');
  if (values.has('sslcert') || existsSync(cert)) {
    ssl.cert = readPem('sslcert', cert);
    ssl.key = readPem('sslkey', values.get('sslkey') ?? join(dir, 'postgresql.key'));
  } else if (values.has('sslkey')) {
    ssl.key = readPem('sslkey', values.get('sslkey')!);
  }
  const passphrase = values.get('sslpassword');
  if (passphrase !== undefined) ssl.passphrase = passphrase;
  const crl = values.get('sslcrl');
  if (crl !== undefined) ssl.crl = readPem('sslcrl', crl);
  return ssl;
}

/** Where a DSN connects, for messages (never the password): "dbname zodb on /var/run/postgresql:5432 as zeo". */
export function describeConnection(config: ClientConfig): string {
  return `database ${config.database} on ${config.host}:${config.port} as ${config.user}`;
}

// ---------------------------------------------------------------------------------------------------------
// `zeo copy` URLs: a postgresql:// URI whose query may also carry the storage's options

type OptionReader = (o: PostgreSQLOptions, v: string) => void;

const positive = (what: string, n: number): number => {
  if (!(n > 0)) throw new DatatypeError(`${what} must be more than 0`);
  return n;
};

/** The storage options a postgresql:// URL's query may give, with RelStorage's (zodburi's) names. */
const URL_OPTIONS: Record<string, OptionReader> = {
  name: (o, v) => (o.name = v),
  read_only: (o, v) => (o.readOnly = urlBoolean(v)),
  create_schema: (o, v) => (o.createSchema = urlBoolean(v)),
  keep_history: (o, v) => (o.keepHistory = urlBoolean(v)),
  pack_gc: (o, v) => (o.packGc = urlBoolean(v)),
  poll_interval: (o, v) => (o.pollInterval = positive('poll_interval', pyFloat(v))),
  commit_lock_timeout: (o, v) => (o.commitLockTimeout = pyInt(v)),
  blob_chunk_size: (o, v) => (o.blobChunkSize = positive('blob_chunk_size', byteSize(v))),
  blob_dir: (o, v) => (o.blobDir = v || null),
  pool_size: (o, v) => (o.poolSize = positive('pool_size', pyInt(v))),
};

// zodburi's boolean: 0 and 1 besides ZConfig's words
function urlBoolean(v: string): boolean {
  return v === '1' ? true : v === '0' ? false : boolean(v);
}

/**
 * A postgresql:// (postgres://) URL to the storage's options: query parameters named as RelStorage's
 * options (read_only, create_schema, keep_history, pack_gc, poll_interval, commit_lock_timeout,
 * blob_chunk_size, blob_dir, pool_size, name; '-' may stand for '_') are the storage's; the rest of the
 * URL is the DSN. Throws DsnError.
 */
export function postgresqlUrlOptions(url: string): PostgreSQLOptions {
  if (!isPostgresUri(url)) throw new DsnError(`not a postgresql:// URL: ${url}`);
  const q = url.indexOf('?');
  const options: PostgreSQLOptions = { dsn: url };
  if (q < 0) {
    pgClientConfig(url);
    return options;
  }
  const kept: string[] = [];
  for (const param of url.slice(q + 1).split('&')) {
    const eq = param.indexOf('=');
    const name = eq < 0 ? param : param.slice(0, eq);
    let key: string;
    try {
      key = percentDecode(name).replaceAll('-', '_');
    } catch {
      key = name;
    }
    const read = Object.hasOwn(URL_OPTIONS, key) ? URL_OPTIONS[key] : undefined;
    if (!read) {
      kept.push(param);
      continue;
    }
    const value = percentDecode(eq < 0 ? '' : param.slice(eq + 1));
    try {
      read(options, value);
    } catch (e) {
      if (e instanceof DatatypeError) throw new DsnError(`invalid value for ${key} "${value}": ${e.message}`);
      throw e;
    }
  }
  options.dsn = kept.length ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q);
  pgClientConfig(options.dsn);
  return options;
}
