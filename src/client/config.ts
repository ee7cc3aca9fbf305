// A ZEO client's configuration, in the two forms Python applications write it: ZODB's `<zeoclient>` section
// and ZEO's `<clientstorage>` (`%import ZEO`, with its `<ssl>`), read by our ZConfig reader, and zodburi's
// `zeo://` URLs. Both give the options of ClientStorage (CLIENT-API.md), in the JS API's units: ZEO's seconds
// become milliseconds, sizes stay bytes.
//
// What ZODB.config.ZEOClient and ZEO.zconfig.ClientStorageConfig pass to ClientStorage is passed here too, with
// these differences, each because ZEO 5 ignores the value: min-disconnect-poll and max-disconnect-poll carry
// over only when written (ZODB's defaults, 5 s and 300 s, are ZEO 4's and would slow our reconnection), and
// username, password and realm are dropped.
import { readConfig, ZODB_CONFIG_SCHEMA, type Schema, type SectionValue } from '../zconfig/index.js';
import { fail, type Position } from '../zconfig/errors.js';
import type { SocketAddress } from '../zconfig/datatypes.js';
import type { TlsSection } from '../transport/tls.js';
import type { ClientStorageOptions } from './client-storage.js';
import type { ServerAddress } from './connection.js';

/** What a configuration says of a ZEO client: ClientStorage's options, the server list and storage name always given. */
export interface ClientConfigOptions extends ClientStorageOptions {
  server: ServerAddress[];
  storage: string;
}

/** The `<zodb>` section's settings (ZODB.DB's keyword arguments, camelCase; durations in ms). */
export interface DatabaseConfig {
  databaseName: string | null;
  cacheSize: number;
  cacheSizeBytes: number;
  poolSize: number;
  poolTimeout: number | null;
  historicalPoolSize: number;
  historicalCacheSize: number;
  historicalCacheSizeBytes: number;
  historicalTimeout: number;
  largeRecordSize: number;
  allowImplicitCrossReferences: boolean;
}

const CLIENT_TYPES = new Set(['zeoclient', 'clientstorage']);

function position(section: SectionValue, key?: string): Position {
  return (key && section.keyPos.get(key)) || section.start;
}

function serverAddress(a: SocketAddress, section: SectionValue): ServerAddress {
  if (a.family === 'unix') return { path: a.path };
  if (a.port === null) {
    fail(`server ${a.host}: no port (write host:port)`, position(section, 'server'));
  }
  return { host: a.host, port: a.port };
}

function tlsSection(ssl: SectionValue): TlsSection {
  const s = (key: string): string | null => (ssl.keys.get(key) as string | null) ?? null;
  return {
    certificate: s('certificate'),
    key: s('key'),
    passwordFunction: s('password-function'),
    authenticate: s('authenticate'),
    checkHostname: ssl.keys.get('check-hostname') as boolean,
    serverHostname: s('server-hostname'),
  };
}

/** ClientStorage's options from a `<zeoclient>` or `<clientstorage>` section as our ZConfig reader returns it. */
export function clientOptionsFromSection(section: SectionValue): ClientConfigOptions {
  if (!CLIENT_TYPES.has(section.type)) {
    fail(`<${section.type}> is not a ZEO client section (<zeoclient> or <clientstorage>)`, section.start);
  }
  const get = <T>(key: string): T => section.keys.get(key) as T;
  const given = (key: string): boolean => section.keyPos.has(key) && section.keys.get(key) != null;
  const options: ClientConfigOptions = {
    server: get<SocketAddress[]>('server').map((a) => serverAddress(a, section)),
    storage: get<string>('storage'),
    cacheSize: get<number>('cache-size'),
    blobDir: get<string | null>('blob-dir'),
    sharedBlobDir: get<boolean>('shared-blob-dir'),
    readOnly: get<boolean>('read-only'),
    readOnlyFallback: get<boolean>('read-only-fallback'),
  };
  // ZEO: `name or str(addr)`: an empty name is no name
  if (get<string>('name')) options.name = get<string>('name');
  if (get('blob-cache-size') != null) options.blobCacheSize = get<number>('blob-cache-size');
  if (get('blob-cache-size-check') != null) options.blobCacheSizeCheck = get<number>('blob-cache-size-check');
  if (get('client-label') != null) options.clientLabel = get<string>('client-label');
  if (section.type === 'zeoclient') {
    options.client = get<string | null>('client');
    if (get('var') != null) options.var = get<string>('var');
    options.wait = get<boolean>('wait');
    options.dropCacheRatherVerify = get<boolean>('drop-cache-rather-verify');
    if (given('min-disconnect-poll')) options.minDisconnectPoll = get<number>('min-disconnect-poll') * 1000;
    if (given('max-disconnect-poll')) options.maxDisconnectPoll = get<number>('max-disconnect-poll') * 1000;
  } else {
    if (get('cache-path') != null) options.cachePath = get<string>('cache-path');
    options.serverSync = get<boolean>('server-sync');
    options.waitTimeout = get<number>('wait-timeout') * 1000;
    const ssl = section.sections.get('ssl') as SectionValue | null;
    if (ssl) options.ssl = tlsSection(ssl);
  }
  return options;
}

function databaseConfig(zodb: SectionValue): DatabaseConfig {
  const get = <T>(key: string): T => zodb.keys.get(key) as T;
  const poolTimeout = get<number | null>('pool-timeout');
  return {
    databaseName: get<string | null>('database-name'),
    cacheSize: get<number>('cache-size'),
    cacheSizeBytes: get<number>('cache-size-bytes'),
    poolSize: get<number>('pool-size'),
    poolTimeout: poolTimeout === null ? null : poolTimeout * 1000,
    historicalPoolSize: get<number>('historical-pool-size'),
    historicalCacheSize: get<number>('historical-cache-size'),
    historicalCacheSizeBytes: get<number>('historical-cache-size-bytes'),
    historicalTimeout: get<number>('historical-timeout') * 1000,
    largeRecordSize: get<number>('large-record-size'),
    allowImplicitCrossReferences: get<boolean | null>('allow-implicit-cross-references') ?? false,
  };
}

// ZODB/config.py's two schemas at once: a database configuration (<zodb> sections: databaseFromString) or a
// lone storage section (storageFromString)
const CLIENT_CONFIG_SCHEMA: Schema = {
  ...ZODB_CONFIG_SCHEMA,
  top: {
    name: '(top level)',
    keys: [],
    sections: [
      { type: 'zodb.database', attr: 'database', multi: true },
      { type: 'zodb.storage', attr: 'storage' },
    ],
  },
};

/**
 * Reads a configuration text: ZODB's database configuration (the first `<zodb>` section, as
 * databaseFromString opens it, whose storage must be a ZEO client), or a lone `<zeoclient>`/`<clientstorage>`
 * (as storageFromString reads it; `database` is null then). `file` names the text in errors and anchors
 * %include. ConfigError for anything ZConfig would refuse, or a storage that is not a ZEO client.
 */
export function clientOptionsFromConfig(
  text: string,
  file?: string,
): { options: ClientConfigOptions; database: DatabaseConfig | null } {
  const top = readConfig(text, CLIENT_CONFIG_SCHEMA, { fileName: file });
  const databases = (top.sections.get('database') as SectionValue[] | null) ?? [];
  const lone = top.sections.get('storage') as SectionValue | null;
  const where: Position = { file: file ?? null, line: null };
  if (databases.length && lone) {
    fail('a <zodb> section and a storage section at the top level: write one or the other', where);
  }
  if (databases.length) {
    const storage = databases[0].sections.get('storage') as SectionValue | null;
    if (!storage)
      fail('the <zodb> section has no storage: add a <zeoclient> section in it', databases[0].start);
    return { options: clientOptionsFromSection(storage), database: databaseConfig(databases[0]) };
  }
  if (!lone) fail('no ZEO client configured: write a <zeoclient> section (or <zodb> with one in it)', where);
  return { options: clientOptionsFromSection(lone), database: null };
}

// ---------------------------------------------------------------------------------------------------------
// zeo:// URLs (zodburi's ClientStorageURIResolver)

/** zodburi's query keys, by how it converts them; the database's connection_* and database_name aside. */
const URL_INT_KEYS = new Set([
  'debug',
  'min_disconnect_poll',
  'max_disconnect_poll',
  'wait_for_server_on_startup',
  'wait',
  'wait_timeout',
  'read_only',
  'read_only_fallback',
  'shared_blob_dir',
  'demostorage',
  'drop_cache_rather_verify',
  'blob_cache_size_check',
]);
const URL_STRING_KEYS = new Set([
  'storage',
  'name',
  'client',
  'var',
  'username',
  'password',
  'realm',
  'blob_dir',
  'client_label',
]);
const URL_BYTESIZE_KEYS = new Set(['cache_size', 'blob_cache_size']);
/** zodburi's database keys: connection_<ZODB.DB keyword>, and database_name */
const URL_DATABASE_KEYS: Record<string, keyof DatabaseConfig> = {
  database_name: 'databaseName',
  connection_pool_size: 'poolSize',
  connection_pool_timeout: 'poolTimeout',
  connection_cache_size: 'cacheSize',
  connection_cache_size_bytes: 'cacheSizeBytes',
  connection_historical_pool_size: 'historicalPoolSize',
  connection_historical_cache_size: 'historicalCacheSize',
  connection_historical_cache_size_bytes: 'historicalCacheSizeBytes',
  connection_historical_timeout: 'historicalTimeout',
  connection_large_record_size: 'largeRecordSize',
};
const URL_DATABASE_BYTES = new Set(['cacheSizeBytes', 'historicalCacheSizeBytes', 'largeRecordSize']);
/** zodburi's default port */
const ZEO_DEFAULT_PORT = 9991;

export class ZeoUrlError extends Error {
  override name = 'ZeoUrlError';
  constructor(
    readonly url: string,
    reason: string,
  ) {
    super(`${url}: ${reason}`);
  }
}

/** Python's int() of a query value: optional sign, digits, underscores between digits, surrounding spaces. */
function pyIntOf(v: string, url: string, key: string): number {
  const t = v.trim();
  if (!/^[-+]?\d+(_\d+)*$/.test(t)) throw new ZeoUrlError(url, `${key}=${v}: not an integer`);
  return Number(t.replace(/_/g, ''));
}

/** zodburi's convert_int: booleans too. */
function urlInt(v: string, url: string, key: string): number {
  const l = v.toLowerCase();
  if (['', '0', 'off', 'false', 'f', 'no'].includes(l)) return 0;
  if (['1', 'on', 'true', 't', 'yes'].includes(l)) return 1;
  return pyIntOf(v, url, key);
}

/** zodburi's convert_bytesize: a KB, MB or GB suffix (any case), else bytes. */
function urlBytes(v: string, url: string, key: string): number {
  const m = /^(.+?)(kb|mb|gb)$/i.exec(v.length > 2 ? v : '');
  if (!m) return pyIntOf(v, url, key);
  const unit = { kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[m[2].toLowerCase() as 'kb' | 'mb' | 'gb'];
  return pyIntOf(m[1], url, key) * unit;
}

/** zodburi's _parse_bytes for the database's byte sizes: '<n>kb' style (spaces allowed), else int(). */
function dbBytes(v: string, url: string, key: string): number {
  const m = /^\s*(\d+)\s*([kmg])b\s*$/.exec(v.toLowerCase());
  if (!m) return pyIntOf(v, url, key);
  return Number(m[1]) * { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2] as 'k' | 'm' | 'g'];
}

/** Python's urllib.parse.parse_qsl (blank values dropped), as a dict: the last value of a key wins. */
function parseQuery(query: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of query.split(/[&]/)) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq < 0) continue; // no '=': a blank value, dropped
    const value = part.slice(eq + 1);
    if (!value) continue;
    const unquote = (s: string): string => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        return s.replace(/\+/g, ' ');
      }
    };
    out.set(unquote(part.slice(0, eq)), unquote(value));
  }
  return out;
}

/** os.path.normpath for a POSIX path. */
function normpath(p: string): string {
  if (!p) return '.';
  const initial = p.startsWith('//') && !p.startsWith('///') ? 2 : p.startsWith('/') ? 1 : 0;
  const parts: string[] = [];
  for (const c of p.split('/')) {
    if (!c || c === '.') continue;
    if (c !== '..' || (!initial && !parts.length) || (parts.length && parts[parts.length - 1] === '..')) {
      parts.push(c);
    } else if (parts.length) parts.pop();
  }
  const joined = '/'.repeat(initial) + parts.join('/');
  return joined || '.';
}

/**
 * A zeo:// URL as zodburi reads it: `zeo://host:port?storage=1&cache_size=100MB...` (TCP; port 9991 when
 * absent; `[::1]` for IPv6) or `zeo:///path/to/socket?...` (a unix socket), the query keys being
 * ClientStorage's keyword arguments, plus the database's (`database_name`, `connection_cache_size`,
 * `connection_pool_size`...). ZeoUrlError for a key zodburi does not know (as its UnknownDatabaseKeywords), a
 * value that does not convert, or what we cannot do (demostorage).
 */
export function resolveZeoUrl(url: string): {
  options: ClientConfigOptions;
  database: Partial<DatabaseConfig>;
} {
  if (!url.startsWith('zeo://')) throw new ZeoUrlError(url, 'not a zeo:// URL');
  // urlsplit's parts: netloc up to / ? #, then path, query, fragment
  let rest = url.slice('zeo://'.length);
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  const query = q >= 0 ? rest.slice(q + 1) : '';
  if (q >= 0) rest = rest.slice(0, q);
  const slash = rest.indexOf('/');
  const netloc = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash) : '';

  let server: ServerAddress;
  if (netloc) {
    const hostport = netloc.slice(netloc.lastIndexOf('@') + 1);
    let host: string;
    let portText: string;
    if (hostport.startsWith('[')) {
      const close = hostport.indexOf(']');
      if (close < 0) throw new ZeoUrlError(url, 'Invalid IPv6 URL');
      host = hostport.slice(1, close);
      const after = hostport.slice(close + 1);
      portText = after.startsWith(':') ? after.slice(1) : '';
    } else {
      const colon = hostport.indexOf(':');
      host = colon >= 0 ? hostport.slice(0, colon) : hostport;
      portText = colon >= 0 ? hostport.slice(colon + 1) : '';
    }
    let port = ZEO_DEFAULT_PORT;
    if (portText) {
      if (!/^\d+$/.test(portText) || Number(portText) > 65535) {
        throw new ZeoUrlError(url, `port ${portText} is not a port number (0-65535)`);
      }
      port = Number(portText);
    }
    server = { host: host.toLowerCase(), port };
  } else {
    server = { path: normpath(path) };
  }

  const options: ClientConfigOptions = { server: [server], storage: '1' };
  const database: Partial<DatabaseConfig> = {};
  const unknown: string[] = [];
  const params = parseQuery(query);
  for (const [key, value] of params) {
    if (URL_INT_KEYS.has(key)) {
      const n = urlInt(value, url, key);
      switch (key) {
        case 'debug':
          break; // ZEO 4's, gone
        case 'wait':
          options.wait = n !== 0;
          break;
        case 'wait_for_server_on_startup':
          // the deprecated alias of wait, which wins when both are given
          if (!params.has('wait')) options.wait = n !== 0;
          break;
        case 'wait_timeout':
          options.waitTimeout = n * 1000;
          break;
        case 'min_disconnect_poll':
          options.minDisconnectPoll = n * 1000;
          break;
        case 'max_disconnect_poll':
          options.maxDisconnectPoll = n * 1000;
          break;
        case 'read_only':
          options.readOnly = n !== 0;
          break;
        case 'read_only_fallback':
          options.readOnlyFallback = n !== 0;
          break;
        case 'shared_blob_dir':
          options.sharedBlobDir = n !== 0;
          break;
        case 'drop_cache_rather_verify':
          options.dropCacheRatherVerify = n !== 0;
          break;
        case 'blob_cache_size_check':
          options.blobCacheSizeCheck = n;
          break;
        case 'demostorage':
          if (n) throw new ZeoUrlError(url, 'demostorage: a DemoStorage over the client is not supported');
          break;
      }
    } else if (URL_STRING_KEYS.has(key)) {
      switch (key) {
        case 'storage':
          options.storage = value;
          break;
        case 'name':
          options.name = value;
          break;
        case 'client':
          options.client = value;
          break;
        case 'var':
          options.var = value;
          break;
        case 'blob_dir':
          options.blobDir = value;
          break;
        case 'client_label':
          options.clientLabel = value;
          break;
        default:
          break; // username, password, realm: ZEO 5 ignores them
      }
    } else if (URL_BYTESIZE_KEYS.has(key)) {
      const n = urlBytes(value, url, key);
      if (key === 'cache_size') options.cacheSize = n;
      else options.blobCacheSize = n;
    } else if (Object.hasOwn(URL_DATABASE_KEYS, key)) {
      const name = URL_DATABASE_KEYS[key];
      if (name === 'databaseName') database.databaseName = value;
      else if (URL_DATABASE_BYTES.has(name))
        (database as Record<string, number>)[name] = dbBytes(value, url, key);
      else {
        const n = pyIntOf(value, url, key);
        (database as Record<string, number>)[name] =
          name === 'poolTimeout' || name === 'historicalTimeout' ? n * 1000 : n;
      }
    } else unknown.push(key);
  }
  if (unknown.length) throw new ZeoUrlError(url, `Unrecognized database keyword(s): ${unknown.join(', ')}`);
  return { options, database };
}

/** The ClientStorage options of a zeo:// URL (resolveZeoUrl without the database's settings). */
export function parseZeoUrl(url: string): ClientConfigOptions {
  return resolveZeoUrl(url).options;
}
