// A ZEO client's configuration (src/client/config.ts): `<zeoclient>` and `<clientstorage>` texts (ZEO's and
// ZODB's documented examples and their tests' variations) read to the options real ZConfig and ZODB.config pass
// to ZEO's ClientStorage (captured in the oracle), in our units; zeo:// URLs as zodburi reads them (its test
// table, and Python's urlsplit for the address part).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  clientOptionsFromConfig,
  clientOptionsFromSection,
  parseZeoUrl,
  resolveZeoUrl,
  ZeoUrlError,
  type ClientConfigOptions,
} from '../../src/client/config.js';
import { ClientStorage } from '../../src/client/client-storage.js';
import { startServer } from '../../src/server/adhoc.js';
import { z64 } from '../../src/storage/ids.js';
import { ConfigError, readConfig, ZODB_CONFIG_SCHEMA } from '../../src/zconfig/index.js';
import { interopTest } from '../helpers/oracle.js';

// What ZODB.config / ZEO.zconfig hand to ClientStorage: the class (and the <ssl> datatype, which would build an
// SSLContext from real files) replaced by recorders, the configuration read by the real ZConfig.
const PY_CAPTURE = `
import io, json, ZConfig, ZODB.config, ZEO.ClientStorage, ZEO.zconfig
def _capture(*a, **kw):
    return {'args': [list(x) if isinstance(x, tuple) else x for x in a[0]], 'kw': kw}
ZEO.ClientStorage.ClientStorage = _capture
def _client_ssl(section):
    return ({'certificate': section.certificate, 'key': section.key,
             'passwordFunction': section.password_function, 'authenticate': section.authenticate,
             'checkHostname': section.check_hostname}, section.server_hostname)
ZEO.zconfig.client_ssl = _client_ssl
text = args['text']
if '<zodb' in text:
    config, _ = ZConfig.loadConfigFile(ZODB.config.getDbSchema(), io.StringIO(text))
    db = config.database[0].config
    out = db.storage.open()
    out['db'] = {k: getattr(db, k) for k in ('database_name', 'cache_size', 'cache_size_bytes', 'pool_size',
        'pool_timeout', 'historical_pool_size', 'historical_cache_size', 'historical_cache_size_bytes',
        'historical_timeout', 'large_record_size', 'allow_implicit_cross_references')}
else:
    out = ZODB.config.storageFromString(text)
result = out
`;

interface Captured {
  args: Array<[string, number] | string>;
  kw: Record<string, unknown>;
  db?: Record<string, unknown>;
}

/** What ZEO's ClientStorage keyword arguments are in our options (the mapping config.ts documents). */
function expected(py: Captured, text: string): ClientConfigOptions {
  const kw = py.kw;
  const o: ClientConfigOptions = {
    server: py.args.map((a) => (typeof a === 'string' ? { path: a } : { host: a[0], port: a[1] })),
    storage: kw.storage as string,
    cacheSize: kw.cache_size as number,
    blobDir: kw.blob_dir as string | null,
    sharedBlobDir: kw.shared_blob_dir as boolean,
    readOnly: kw.read_only as boolean,
    readOnlyFallback: kw.read_only_fallback as boolean,
  };
  if (kw.name) o.name = kw.name as string;
  if ('blob_cache_size' in kw) o.blobCacheSize = kw.blob_cache_size as number;
  if ('blob_cache_size_check' in kw) o.blobCacheSizeCheck = kw.blob_cache_size_check as number;
  if ('client_label' in kw) o.clientLabel = kw.client_label as string;
  if ('wait' in kw) {
    // <zeoclient>
    o.client = kw.client as string | null;
    if (kw.var !== null) o.var = kw.var as string;
    o.wait = kw.wait as boolean;
    o.dropCacheRatherVerify = kw.drop_cache_rather_verify as boolean;
    // ZEO 5 ignores these; we keep them only when written
    if (/min-disconnect-poll/.test(text)) o.minDisconnectPoll = (kw.min_disconnect_poll as number) * 1000;
    if (/max-disconnect-poll/.test(text)) o.maxDisconnectPoll = (kw.max_disconnect_poll as number) * 1000;
  } else {
    if (kw.cache !== null) o.cachePath = kw.cache as string;
    o.serverSync = kw.server_sync as boolean;
    o.waitTimeout = (kw.wait_timeout as number) * 1000;
    if ('ssl' in kw) {
      // ZEO.zconfig.ClientStorageConfig: ssl=context, ssl_server_hostname=the section's server-hostname
      o.ssl = { ...(kw.ssl as object), serverHostname: kw.ssl_server_hostname } as ClientConfigOptions['ssl'];
    }
  }
  return o;
}

const tmp = mkdtempSync(join(tmpdir(), 'zeots-config-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

// ZEO/tests/testConfig.py's client with each of its variations, testssl.py's client <ssl> settings, testZEO.py's
// client-label example, ZODB's <zodb><zeoclient> (component.xml's keys, all of them), unix sockets, IPv6.
const CLIENTSTORAGE_VARIATIONS: Record<string, string | number | boolean> = {
  cache_size: 4200,
  cache_path: 'test',
  blob_dir: 'blobs',
  blob_cache_size: 424242,
  read_only: true,
  read_only_fallback: true,
  server_sync: true,
  wait_timeout: 33,
  client_label: 'test_client',
  name: 'Test',
};

function clientstorage(settings: string): string {
  return `%import ZEO\n\n<clientstorage>\nserver 127.0.0.1:8200\n${settings}\n</clientstorage>\n`;
}

const TEXTS: string[] = [
  clientstorage(''),
  ...Object.entries(CLIENTSTORAGE_VARIATIONS).map(([k, v]) => clientstorage(`${k.replace(/_/g, '-')} ${v}`)),
  clientstorage('blob-cache-size 424242\nblob-cache-size-check 50'),
  clientstorage('cache-size 100MB\nblob-dir /var/blobs\nshared-blob-dir yes\nstorage main'),
  clientstorage(
    `<ssl>\ncertificate ${tmp}/client.pem\nkey ${tmp}/client_key.pem\nauthenticate ${tmp}/server.pem\n</ssl>`,
  ),
  clientstorage(
    `<ssl>\ncertificate ${tmp}/client.pem\nauthenticate ${tmp}\ncheck-hostname false\nserver-hostname zodb.example.com\n</ssl>`,
  ),
  `%import ZEO\n<clientstorage>\nserver 127.0.0.1:8200\nserver ${tmp}/zeo.sock\nserver [::1]:8201\nserver :8202\n</clientstorage>`,
  `<zodb>\n   <zeoclient>\n      server :8100\n      client-label test-label-2\n   </zeoclient>\n</zodb>\n`,
  `<zodb main>
  cache-size 10000
  pool-size 3
  pool-timeout 2m
  database-name main
  <zeoclient>
    server localhost:8100
    server ${tmp}/zeo.sock
    storage other
    cache-size 50MB
    name the-db
    client cachefile
    var ${tmp}
    min-disconnect-poll 2
    max-disconnect-poll 60
    wait off
    read-only on
    read-only-fallback off
    username u
    password p
    realm r
    drop-cache-rather-verify on
    client-label label
    blob-dir ${tmp}/blobs
    shared-blob-dir off
    blob-cache-size 1GB
    blob-cache-size-check 20
  </zeoclient>
</zodb>
`,
  `<zeoclient>\nserver 8100\n</zeoclient>`,
];

interopTest(
  '<zeoclient> and <clientstorage> give what ZODB.config and ZEO pass to ClientStorage',
  async (oracle) => {
    for (const text of TEXTS) {
      const py = await oracle.json<Captured>(PY_CAPTURE, undefined, { text });
      const ours = clientOptionsFromConfig(text);
      assert.deepEqual(ours.options, expected(py, text), text);
      if (py.db) {
        const d = py.db;
        assert.deepEqual(ours.database, {
          databaseName: d.database_name,
          cacheSize: d.cache_size,
          cacheSizeBytes: d.cache_size_bytes,
          poolSize: d.pool_size,
          poolTimeout: d.pool_timeout === null ? null : (d.pool_timeout as number) * 1000,
          historicalPoolSize: d.historical_pool_size,
          historicalCacheSize: d.historical_cache_size,
          historicalCacheSizeBytes: d.historical_cache_size_bytes,
          historicalTimeout: (d.historical_timeout as number) * 1000,
          largeRecordSize: d.large_record_size,
          allowImplicitCrossReferences: d.allow_implicit_cross_references ?? false,
        });
      } else assert.equal(ours.database, null);
    }
    // the units: ZEO's seconds are our milliseconds
    const o = clientOptionsFromConfig(clientstorage('wait-timeout 33')).options;
    assert.equal(o.waitTimeout, 33_000);
    const all = clientOptionsFromConfig(TEXTS[TEXTS.length - 2]);
    assert.equal(all.options.minDisconnectPoll, 2000);
    assert.equal(all.options.blobCacheSize, 1024 ** 3);
    assert.equal(all.database?.poolTimeout, 120_000);
  },
);

interopTest('configurations ZConfig refuses are refused, with ZConfig’s reason', async (oracle) => {
  const bad = [
    '<zeoclient>\n</zeoclient>', // server is required
    '<zeoclient>\nserver 127.0.0.1:8200\ncache-size lots\n</zeoclient>',
    '<zeoclient>\nserver 127.0.0.1:8200\nserver-sync on\n</zeoclient>', // <clientstorage>'s key, not <zeoclient>'s
    '<clientstorage>\nserver 127.0.0.1:8200\n</clientstorage>', // without %import ZEO
    clientstorage('<ssl>\nkey /x/y\n</ssl>'), // certificate is required
    clientstorage('<ssl>\ncertificate /no/such/dir/cert.pem\n</ssl>'),
  ];
  for (const text of bad) {
    const py = await oracle.json(PY_CAPTURE, undefined, { text }).then(
      () => assert.fail(`Python accepts ${text}`),
      (e: Error) => e.message.split('\n')[0],
    );
    let ours: unknown;
    try {
      clientOptionsFromConfig(text, 'client.conf');
    } catch (e) {
      ours = e;
    }
    assert.ok(ours instanceof ConfigError, text);
    // ZConfig's reason, without Python's exception name and line (DataConversionError's without the key's name)
    const reason = py.replace(/^python: \w+: /, '').replace(/ \(line \d+\)$/, '');
    assert.ok(ours.reason === reason || ours.reason.endsWith(`: ${reason}`), `${ours.reason} | ${py}`);
  }
});

test('what ZEO would take and then fail on is refused up front, saying what to write', () => {
  // no port: ZEO's ClientStorage would get (host, None)
  assert.throws(
    () => clientOptionsFromConfig('<zeoclient>\nserver localhost\n</zeoclient>', 'c.conf'),
    (e: Error) =>
      e instanceof ConfigError &&
      /server localhost: no port/.test(e.message) &&
      /c\.conf, line 1/.test(e.message),
  );
  assert.throws(() => clientOptionsFromConfig('', 'empty.conf'), /no ZEO client configured/);
  assert.throws(() => clientOptionsFromConfig('<zodb>\n</zodb>'), /has no storage/);
  assert.throws(
    () => clientOptionsFromConfig('<zodb>\n<filestorage>\npath Data.fs\n</filestorage>\n</zodb>'),
    ConfigError,
  );
  assert.throws(
    () =>
      clientOptionsFromConfig(
        '<zodb>\n<zeoclient>\nserver 1\n</zeoclient>\n</zodb>\n<zeoclient>\nserver 2\n</zeoclient>',
      ),
    /one or the other/,
  );
  // clientOptionsFromSection takes the reader's section, and only a client's
  const top = readConfig('<zodb>\n<zeoclient>\nserver 9\n</zeoclient>\n</zodb>', ZODB_CONFIG_SCHEMA);
  const zodb = (top.sections.get('database') as NonNullable<ReturnType<typeof readConfig>>[])[0];
  assert.deepEqual(clientOptionsFromSection(zodb.sections.get('storage') as typeof zodb).server, [
    { host: '127.0.0.1', port: 9 },
  ]);
  assert.throws(() => clientOptionsFromSection(zodb), /<zodb> is not a ZEO client section/);
});

// zodburi's own table (zodburi/tests/test_resolvers.py: test_client_resolver___call___), in our options
test('zeo:// URLs read as zodburi reads them', () => {
  assert.deepEqual(parseZeoUrl('zeo://localhost'), {
    server: [{ host: 'localhost', port: 9991 }],
    storage: '1',
  });
  assert.deepEqual(parseZeoUrl('zeo://localhost:8080?debug=true'), {
    server: [{ host: 'localhost', port: 8080 }],
    storage: '1',
  });
  assert.deepEqual(parseZeoUrl('zeo://:1234?debug=true').server, [{ host: '', port: 1234 }]);
  assert.deepEqual(parseZeoUrl('zeo://[::1]').server, [{ host: '::1', port: 9991 }]);
  assert.deepEqual(parseZeoUrl('zeo://[::1]:9990?debug=true').server, [{ host: '::1', port: 9990 }]);
  assert.deepEqual(parseZeoUrl('zeo:///var/sock?debug=true').server, [{ path: '/var/sock' }]);
  assert.deepEqual(parseZeoUrl('zeo:///var/nosuchfile?wait=false'), {
    server: [{ path: '/var/nosuchfile' }],
    storage: '1',
    wait: false,
  });
  const all =
    'zeo:///var/nosuchfile?storage=main&cache_size=1kb&name=foo&client=bar&var=baz&min_disconnect_poll=2&' +
    'max_disconnect_poll=3&wait_for_server_on_startup=true&wait=4&wait_timeout=5&read_only=6&' +
    'read_only_fallback=7&drop_cache_rather_verify=true&username=monty&password=python&realm=blat&' +
    'blob_dir=some/dir&shared_blob_dir=true&blob_cache_size=1kb&blob_cache_size_check=8&client_label=fink&';
  assert.deepEqual(parseZeoUrl(all), {
    server: [{ path: '/var/nosuchfile' }],
    storage: 'main',
    cacheSize: 1024,
    name: 'foo',
    client: 'bar',
    var: 'baz',
    minDisconnectPoll: 2000,
    maxDisconnectPoll: 3000,
    wait: true,
    waitTimeout: 5000,
    readOnly: true,
    readOnlyFallback: true,
    dropCacheRatherVerify: true,
    blobDir: 'some/dir',
    sharedBlobDir: true,
    blobCacheSize: 1024,
    blobCacheSizeCheck: 8,
    clientLabel: 'fink',
  });
  // test_client_resolver___call___check_dbkw: the database's keys
  assert.deepEqual(
    resolveZeoUrl('zeo://localhost:8080?connection_pool_size=1&connection_cache_size=1&database_name=dbname')
      .database,
    { poolSize: 1, cacheSize: 1, databaseName: 'dbname' },
  );
  assert.deepEqual(
    resolveZeoUrl('zeo://h?connection_cache_size_bytes=2mb&connection_historical_timeout=60&cache_size=20MB'),
    {
      options: { server: [{ host: 'h', port: 9991 }], storage: '1', cacheSize: 20 * 1024 * 1024 },
      database: { cacheSizeBytes: 2 * 1024 * 1024, historicalTimeout: 60_000 },
    },
  );
  // the alias of wait does not override wait; blank values are dropped as parse_qsl drops them
  assert.equal(parseZeoUrl('zeo://h?wait=0&wait_for_server_on_startup=1').wait, false);
  assert.equal(parseZeoUrl('zeo://h?wait_for_server_on_startup=no').wait, false);
  assert.deepEqual(parseZeoUrl('zeo://h?read_only=&storage='), {
    server: [{ host: 'h', port: 9991 }],
    storage: '1',
  });
  assert.equal(parseZeoUrl('zeo://h?storage=a%20b+c').storage, 'a b c');
});

test('zeo:// URLs zodburi refuses are refused, naming the URL and the reason', () => {
  const bad: Array<[string, RegExp]> = [
    ['zeo://h?colour=blue', /Unrecognized database keyword\(s\): colour/],
    ['zeo://h?cache_size=lots', /cache_size=lots: not an integer/],
    ['zeo://h?wait_timeout=soon', /wait_timeout=soon/],
    ['zeo://h:99999', /not a port number/],
    ['zeo://h:http', /not a port number/],
    ['zeo://[::1', /Invalid IPv6 URL/],
    ['zeo://h?demostorage=true', /demostorage/],
    ['file:///Data.fs', /not a zeo:\/\/ URL/],
  ];
  for (const [url, re] of bad) {
    assert.throws(
      () => parseZeoUrl(url),
      (e: Error) => e instanceof ZeoUrlError && re.test(e.message) && e.message.startsWith(url),
      url,
    );
  }
});

interopTest(
  'zeo:// addresses split as Python’s urlsplit splits them (host lowercased, default port, normpath)',
  async (oracle) => {
    const urls = [
      'zeo://LocalHost:8100',
      'zeo://user:pw@db.example.com:8100?storage=1',
      'zeo://[FE80::1]:99',
      'zeo://10.0.0.1',
      'zeo://host:?storage=x#frag',
      'zeo:///var//run/./zeo/../zeo.sock?storage=2',
      'zeo:///tmp/zeo.sock/',
      'zeo://host/ignored/path',
    ];
    const py = await oracle.json<Array<[string, number] | string>>(
      `
import os
from urllib.parse import urlsplit
out = []
for uri in args['urls']:
    u = urlsplit(uri.replace('zeo://', 'http://', 1))
    if u.netloc:
        out.append([u.hostname or '', u.port if u.port is not None else 9991])
    else:
        out.append(os.path.normpath(u.path))
result = out
`,
      undefined,
      { urls },
    );
    assert.deepEqual(
      urls.map((u) => parseZeoUrl(u).server[0]),
      py.map((a) => (typeof a === 'string' ? { path: a } : { host: a[0], port: a[1] })),
    );
  },
);

test('the options open a ClientStorage: a <zeoclient> text and a zeo:// URL reach the ad-hoc server', async () => {
  const server = await startServer({ name: 'main' });
  const { port } = server.address as { port: number };
  const sock = await startServer({ unix: join(tmp, 'adhoc.sock') });
  try {
    const fromText = clientOptionsFromConfig(
      `<zodb>\n<zeoclient>\nserver 127.0.0.1:${port}\nstorage main\ncache-size 1MB\n</zeoclient>\n</zodb>`,
    ).options;
    for (const options of [fromText, parseZeoUrl(`zeo://127.0.0.1:${port}?storage=main&cache_size=1MB`)]) {
      const cs = await ClientStorage.open(options);
      try {
        assert.equal(cs.isConnected(), true);
        // registered with storage 'main' (another name would be refused), which is empty
        assert.equal(cs.getInfo().name, 'MemoryStorage');
        assert.deepEqual(cs.lastTransaction(), z64);
      } finally {
        await cs.close();
      }
    }
    const cs = await ClientStorage.open(parseZeoUrl(`zeo://${join(tmp, 'adhoc.sock')}`));
    assert.equal(cs.isConnected(), true);
    await cs.close();
  } finally {
    await server.stop();
    await sock.stop();
  }
});
