// zeo.conf and runzeo's command line: our reading against runzeo's own (ZEO.runzeo.ZEOOptions.realize in the
// oracle) on the same files and argument lists: the same values when it accepts, a refusal when it refuses.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  ConfigError,
  DEFAULT_ADDRESS,
  defaultConfig,
  levelNumber,
  parseAddress,
  parseZConfig,
  serveOptionsToConfig,
  type ServerConfig,
  type StorageConfig,
} from '../../src/server/config.js';
import { levelFromNumber } from '../../src/server/log.js';
import { interopTest, repoRoot, type Oracle } from '../helpers/oracle.js';

const fixtures = resolve(repoRoot, 'test/fixtures/zeoconf');

// A directory like the spec's VAR: the certificate files, a CA directory, room for storages and logs.
const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-config-'));
copyFileSync(join(fixtures, 'server.pem'), join(dir, 'server.pem'));
copyFileSync(join(fixtures, 'server_key.pem'), join(dir, 'server_key.pem'));
mkdirSync(join(dir, 'clients'));
copyFileSync(join(fixtures, 'server.pem'), join(dir, 'clients', 'ca.pem'));
mkdirSync(join(dir, 'ih', 'var'), { recursive: true });
after(() => rmSync(dir, { recursive: true, force: true }));

const specExample = readFileSync(join(fixtures, 'spec-example.conf'), 'utf8').replace('/var/lib/zeo', dir);
const specMinimal = readFileSync(join(fixtures, 'spec-minimal.conf'), 'utf8').replaceAll(
  '/tmp/zeocap/pk',
  dir,
);

const Z = '<zeo>\n  address 8100\n</zeo>\n';
const F = `<filestorage>\n  path ${dir}/Data.fs\n</filestorage>\n`;
const ENV: NodeJS.ProcessEnv = { HOME: process.env.HOME ?? '/root', ZCTEST: dir };

function parse(text: string, overrides: string[] = [], env: NodeJS.ProcessEnv = ENV): ServerConfig {
  return parseZConfig(text, { fileName: join(dir, 'zeo.conf'), env, overrides });
}

function fileStorage(name: string, path: string, extra: Partial<StorageConfig> = {}): StorageConfig {
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
    ...extra,
  } as StorageConfig;
}

function refuses(text: string, reason: RegExp, line: number | null, overrides: string[] = []): void {
  assert.throws(
    () => parse(text, overrides),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.reason, reason);
      assert.equal(e.line, line, `line of ${e.message}`);
      if (line !== null) {
        assert.equal(e.file, join(dir, 'zeo.conf'));
        assert.equal(e.message, `${join(dir, 'zeo.conf')}, line ${line}: ${e.reason}`);
      }
      return true;
    },
  );
}

describe('parseZConfig', () => {
  test('the full example of spec §8.5', () => {
    const c = parse(specExample);
    const { sources, ...rest } = c;
    assert.deepEqual(rest, {
      address: { kind: 'tcp', host: '127.0.0.1', port: 8100 },
      readOnly: false,
      invalidationQueueSize: 1000,
      invalidationAge: null,
      transactionTimeout: 300,
      pidFilename: `${dir}/zeo.pid`,
      clientConflictResolution: false,
      msgpack: false,
      ssl: {
        certificate: `${dir}/server.pem`,
        key: `${dir}/server_key.pem`,
        passwordFunction: null,
        authenticate: `${dir}/clients/`,
      },
      storages: [
        fileStorage('1', `${dir}/Data.fs`, { blobDir: `${dir}/blobs` }),
        fileStorage('catalog', `${dir}/Catalog.fs`),
      ],
      eventlog: {
        level: 'INFO',
        handlers: [
          {
            path: `${dir}/zeo.log`,
            format: '%(asctime)s %(levelname)s %(name)s %(message)s',
            level: 'NOTSET',
            dateformat: '%Y-%m-%dT%H:%M:%S',
          },
        ],
      },
    });
    assert.equal(sources?.address, `${join(dir, 'zeo.conf')}, line 7`);
    assert.equal(sources?.transactionTimeout, `${join(dir, 'zeo.conf')}, line 12`);
    assert.equal(sources?.invalidationAge, 'default');
  });

  test('the minimal example of spec §8.5', () => {
    const c = parse(specMinimal);
    assert.deepEqual(c.address, { kind: 'tcp', host: '127.0.0.1', port: 29101 });
    assert.deepEqual(c.storages, [fileStorage('1', `${dir}/Data.fs`, { blobDir: `${dir}/blobs` })]);
    assert.equal(c.readOnly, false);
    assert.equal(c.invalidationQueueSize, 100);
    assert.equal(c.eventlog, null);
    assert.equal(c.ssl, null);
    assert.equal(c.msgpack, false);
    assert.equal(c.pidFilename, null);
  });

  test('syntax: whole-line comments only, case-insensitive keys, types and names, - and _ distinct', () => {
    const c = parse(
      `# comment\n   # indented comment\n\n<ZEO>\n  ADDRESS 8100\n  Read-Only TRUE\n</ZeO  >\n<FileStorage Catalog>\n  PATH ${dir}/x.fs # note\n</filestorage>\n`,
    );
    assert.equal(c.readOnly, true);
    assert.deepEqual(c.address, { kind: 'tcp', host: '', port: 8100 });
    // section names are lowercased: clients must register 'catalog'
    assert.deepEqual(c.storages, [fileStorage('catalog', `${dir}/x.fs # note`)]);
    refuses(
      `<zeo>\n  address 8100\n  read_only true\n</zeo>\n${F}`,
      /^'read_only' is not a known key name$/,
      3,
    );
    refuses(`<zeo>\n  address 8100 # port\n</zeo>\n${F}`, /not a valid host name: '8100 # port'/, 2);
  });

  test('%define, $NAME, ${NAME}, $$ and $(ENV), %include, %import', () => {
    writeFileSync(join(dir, 'inc.conf'), Z);
    const c = parse(
      `%define VAR ${dir}\n%define Var2 \${VAR}/y\n%include inc.conf\n<filestorage>\n  path $VAR2.fs\n  blob-dir $(ZCTEST)/$$b\n</filestorage>\n` +
        `%import ZODB\n%import zdaemon\n%import ZConfig.components.logger\n`,
    );
    assert.deepEqual(c.storages, [fileStorage('1', `${dir}/y.fs`, { blobDir: `${dir}/$b` })]);
    refuses(`${Z}<filestorage>\n  path $NOPE/x\n</filestorage>\n`, /^no replacement for 'NOPE'$/, 5);
    refuses(`%define A 1\n%define A 2\n${Z}${F}`, /^cannot redefine 'a'$/, 2);
    refuses(`%define a-b 1\n${Z}${F}`, /^not a substitution legal name: 'a-b'$/, 1);
    refuses(`%DEFINE a 1\n${Z}${F}`, /^unknown directive: 'DEFINE'$/, 1);
    refuses(`%define\n${Z}${F}`, /^missing argument to %define directive$/, 1);
    refuses(`${Z}<filestorage>\n  path x$\n</filestorage>\n`, /^illegal lone '\$' at end of source$/, 5);
    refuses(`${Z}<filestorage>\n  path \${x\n</filestorage>\n`, /^'\$\{x' not followed by '\}'$/, 5);
    refuses(`${Z}<filestorage>\n  path $(1)\n</filestorage>\n`, /^'\$\(' not followed by name$/, 5);
    refuses(`%include nonexistent.conf\n${F}`, /^error opening file .*nonexistent\.conf/, 1);
    refuses(
      `%import tempstorage\n${Z}${F}`,
      /^%import tempstorage: zeo-ts cannot load Python packages; the packages it knows are ZODB, ZConfig.components.logger, zdaemon, zc.zlibstorage and relstorage$/,
      1,
    );
    refuses(`%import ZEO\n${Z}${F}`, /type name cannot be redefined: 'ssl'/, 1);
  });

  test('storage sections: filestorage keys, mappingstorage, blobstorage, serverzlibstorage', () => {
    const c = parse(
      `${Z}<filestorage a>\n  path ${dir}/a.fs\n  blob-dir ${dir}/blobs\n  create yes\n  read-only on\n  quota 10MB\n  pack-gc off\n  pack-keep-old NO\n</filestorage>\n` +
        `<mappingstorage m>\n  name hello world\n</mappingstorage>\n<mappingstorage/>\n` +
        `<blobstorage b>\n  blob-dir ${dir}/bb\n  <filestorage>\n    path ${dir}/b.fs\n  </filestorage>\n</blobstorage>\n`,
    );
    assert.deepEqual(c.storages, [
      fileStorage('a', `${dir}/a.fs`, {
        blobDir: `${dir}/blobs`,
        create: true,
        readOnly: true,
        quota: 10 * 1024 * 1024,
        packGc: false,
        packKeepOld: false,
      }),
      { kind: 'mappingstorage', name: 'm', description: 'hello world' },
      { kind: 'mappingstorage', name: '1', description: 'Mapping Storage' },
      fileStorage('b', `${dir}/b.fs`, { blobDir: `${dir}/bb` }),
    ]);
    const z = parse(
      `%import zc.zlibstorage\n${Z}<serverzlibstorage>\n  compress false\n  <filestorage>\n    path ${dir}/z.fs\n  </filestorage>\n</serverzlibstorage>\n`,
    );
    assert.deepEqual(z.storages, [fileStorage('1', `${dir}/z.fs`, { zlib: true })]);
    refuses(`${Z}<serverzlibstorage>\n</serverzlibstorage>\n`, /^unknown type name: 'serverzlibstorage'$/, 4);
    refuses(
      `%import zc.zlibstorage\n${Z}<serverzlibstorage>\n</serverzlibstorage>\n`,
      /^no values for section type 'zodb.storage'; 1 required$/,
      5,
    );
    refuses(
      `%import zc.zlibstorage\n${Z}<zlibstorage>\n</zlibstorage>\n`,
      /^<zlibstorage> \(compression by the server\) is not supported/,
      5,
    );
  });

  test('storage names: unique, at most one unnamed, which becomes 1', () => {
    refuses(
      `${Z}<filestorage a>\n  path x\n</filestorage>\n<mappingstorage A>\n</mappingstorage>\n`,
      /^section names must not be re-used within the same container:'a'$/,
      7,
    );
    refuses(
      `${Z}<filestorage 1>\n  path x\n</filestorage>\n${F}`,
      /^Can't have an unnamed storage and a storage named 1\.$/,
      7,
    );
    refuses(
      `${Z}${F}<mappingstorage>\n</mappingstorage>\n`,
      /^No more than one storage may be unnamed\.$/,
      7,
    );
    refuses(
      `<filestorage *>\n  path x\n</filestorage>\n${Z}`,
      /^'\*' is not an allowed name for 'zodb.storage' sections$/,
      1,
    );
  });

  test('what zeo-ts cannot do is refused at parse time, naming the line', () => {
    refuses(
      `${Z}<filestorage>\n  path x\n  packer foo.bar\n</filestorage>\n`,
      /^'packer' names a Python packer \('foo.bar'\)/,
      6,
    );
    refuses(`${Z}<demostorage>\n</demostorage>\n`, /^<demostorage> is not supported by zeo-ts/, 4);
    refuses(
      `${Z}<zeoclient>\n  server 8100\n</zeoclient>\n`,
      /^<zeoclient> .* is not supported by zeo-ts/,
      4,
    );
    refuses(
      `${Z}<blobstorage>\n  blob-dir x\n  <mappingstorage/>\n</blobstorage>\n`,
      /^a <mappingstorage> cannot store blobs/,
      6,
    );
    refuses(
      `${Z}<blobstorage>\n  blob-dir x\n</blobstorage>\n`,
      /^<blobstorage> needs the storage section/,
      4,
    );
    refuses(
      `${Z}${F}<eventlog>\n  <syslog>\n  </syslog>\n</eventlog>\n`,
      /^<syslog> log handlers are not supported by zeo-ts/,
      8,
    );
    refuses(
      `${Z}${F}<eventlog>\n  <logfile>\n    path ${dir}/r.log\n    max-size 1MB\n    old-files 3\n  </logfile>\n</eventlog>\n`,
      /^log rotation by <logfile> .* is not supported by zeo-ts; rotate with logrotate and send SIGUSR2/,
      8,
    );
    refuses(
      `${Z}${F}<eventlog>\n  <logfile>\n    path STDERR\n    style format\n    format {message}\n  </logfile>\n</eventlog>\n`,
      /^log format style 'format' is not supported by zeo-ts/,
      10,
    );
    refuses(
      `${Z}${F}<eventlog>\n  <logfile>\n    path ${dir}/e.log\n    encoding latin-1\n  </logfile>\n</eventlog>\n`,
      /^zeo-ts writes log files in UTF-8 only, not 'latin-1'$/,
      10,
    );
  });

  test('<zeo> keys, <ssl>, msgpack from ZEO_MSGPACK, the pid file from INSTANCE_HOME', () => {
    const c = parse(
      `<zeo>\n  address [::1]:8100\n  read-only yes\n  invalidation-queue-size +1_000\n  invalidation-age 1e3\n  transaction-timeout 30\n` +
        `  pid-filename zeo.pid\n  client-conflict-resolution on\n  msgpack off\n  <ssl>\n    certificate ${dir}/server.pem\n` +
        `    password-function my.module.pw\n    authenticate DYNAMIC\n  </ssl>\n</zeo>\n${F}`,
      [],
      { ...ENV, ZEO_MSGPACK: '1' },
    );
    assert.deepEqual(c.address, { kind: 'tcp', host: '::1', port: 8100 });
    assert.equal(c.readOnly, true);
    assert.equal(c.invalidationQueueSize, 1000);
    assert.equal(c.invalidationAge, 1000);
    assert.equal(c.transactionTimeout, 30);
    assert.equal(c.pidFilename, 'zeo.pid');
    assert.equal(c.clientConflictResolution, true);
    assert.equal(c.msgpack, false, 'the file says off: ZEO_MSGPACK does not apply');
    assert.deepEqual(c.ssl, {
      certificate: `${dir}/server.pem`,
      key: null,
      passwordFunction: 'my.module.pw',
      authenticate: 'DYNAMIC',
    });
    const e = parse(Z + F, [], { ...ENV, ZEO_MSGPACK: 'x', INSTANCE_HOME: `${dir}/ih` });
    assert.equal(e.msgpack, true);
    assert.equal(e.sources?.msgpack, 'ZEO_MSGPACK');
    assert.equal(e.pidFilename, `${dir}/ih/var/ZEO.pid`);
    assert.equal(parse(Z + F, [], { ...ENV, ZEO_MSGPACK: '' }).msgpack, false);
    refuses(
      `<zeo>\n  address 8100\n  <ssl>\n    authenticate DYNAMIC\n  </ssl>\n</zeo>\n${F}`,
      /^no values for 'certificate'; 1 required$/,
      3,
    );
    refuses(
      `<zeo>\n  address 8100\n  <ssl>\n    certificate ${dir}/nope.pem\n    authenticate DYNAMIC\n  </ssl>\n</zeo>\n${F}`,
      /^certificate file .*nope\.pem does not exist$/,
      4,
    );
    refuses(
      `<zeo>\n  address 8100\n  <ssl>\n    certificate ${dir}/server.pem\n    authenticate ${dir}/nope/\n  </ssl>\n</zeo>\n${F}`,
      /^authenticate: .* is neither a CA file nor a CA directory/,
      5,
    );
  });

  test('<eventlog>: levels by name or number, <logfile> defaults as ZConfig has them', () => {
    const c = parse(
      `${Z}${F}<eventlog>\n  level 25\n  <logfile>\n    path STDOUT\n    format %(levelname)-8s %(name)s: %(message)s\\t!\n    level warn\n    dateformat %H:%M\n  </logfile>\n` +
        `  <logfile>\n    path ${dir}/zeo.log\n  </logfile>\n</eventlog>\n`,
    );
    assert.deepEqual(c.eventlog, {
      level: 'WARNING',
      handlers: [
        {
          path: 'STDOUT',
          format: '%(levelname)-8s %(name)s: %(message)s\t!',
          level: 'WARNING',
          dateformat: '%H:%M',
        },
        {
          path: `${dir}/zeo.log`,
          format: '------\n%(asctime)s %(levelname)s %(name)s %(message)s',
          level: 'NOTSET',
          dateformat: '%Y-%m-%dT%H:%M:%S',
        },
      ],
    });
    assert.deepEqual(parse(`${Z}${F}<eventlog>\n</eventlog>\n`).eventlog, { level: 'INFO', handlers: [] });
    assert.equal(parse(`${Z}${F}<eventlog>\n  level fatal\n</eventlog>\n`).eventlog?.level, 'CRITICAL');
    assert.equal(parse(`${Z}${F}<eventlog>\n  level 0\n</eventlog>\n`).eventlog?.level, 'NOTSET');
    assert.equal(parse(`${Z}${F}<eventlog>\n  level 15\n</eventlog>\n`).eventlog?.level, 'BLATHER');
    refuses(
      `${Z}${F}<eventlog>\n  level 51\n</eventlog>\n`,
      /^invalid value for 'level': log level not in range: 51$/,
      8,
    );
    refuses(
      `${Z}${F}<eventlog>\n  <logfile>\n    path STDERR\n    format %(foo)s\n  </logfile>\n</eventlog>\n`,
      /^unknown log record field 'foo'/,
      10,
    );
  });

  test('errors name the line: syntax, structure, values', () => {
    refuses(`${Z}${F}<foo>\n</foo>\n`, /^unknown type name: 'foo'$/, 7);
    refuses(`address 8100\n${Z}${F}`, /^'address' is not a known key name$/, 1);
    refuses(`${Z}<filestorage>\n  path x\n`, /^unclosed sections not allowed$/, 5);
    refuses(`${Z}<filestorage>\n  path x\n</mappingstorage>\n`, /^unbalanced section end$/, 6);
    refuses(`${Z}<filestorage>\n  path x\n</filestorage\n`, /^malformed section end$/, 6);
    refuses(`${Z}<filestorage\n`, /^malformed section start$/, 4);
    refuses(`${Z}<filestorage a b>\n</filestorage>\n`, /^malformed section header$/, 4);
    refuses(`${Z}</filestorage>\n`, /^unexpected section end$/, 4);
    refuses(`${Z}(x) 1\n`, /^malformed configuration data$/, 4);
    refuses(
      `<zeo>\n  addr$ess 1\n</zeo>\n`,
      /^invalid value for 'addr\$ess': value did not match regular expression/,
      2,
    );
    refuses(
      `<zeo>\n  address 8100\n  address 8101\n</zeo>\n${F}`,
      /^'address' does not support multiple values$/,
      3,
    );
    refuses(F, /^no values for section type 'zeo'; 1 required$/, null);
    refuses(Z, /^not enough values for section type 'zodb.storage'; 0 found, 1 required$/, null);
    refuses(`${Z}${Z}${F}`, /^too many instances of 'zeo' section$/, 4);
    refuses(
      `<zeo>\n  address 8100\n  invalidation-queue-size 1x\n</zeo>\n${F}`,
      /invalid literal for int\(\) with base 10: '1x'$/,
      3,
    );
    refuses(`<zeo>\n  address 8100\n  transaction-timeout 30.5\n</zeo>\n${F}`, /'30.5'$/, 3);
    refuses(
      `<zeo>\n  address 8100\n  read-only\n</zeo>\n${F}`,
      /^invalid value for 'read-only': not a valid boolean value: ''$/,
      3,
    );
    refuses(
      `${Z}<filestorage>\n  path /nonexistent/x.fs\n</filestorage>\n`,
      /The directory named as part of the path/,
      5,
    );
    refuses(
      `${Z}${F}<logger>\n</logger>\n`,
      /^no matching section defined for type='logger', name='None'$/,
      7,
    );
    refuses(
      `${Z}${F}<zodb.storage>\n</zodb.storage>\n`,
      /^concrete sections cannot match abstract section types/,
      7,
    );
    refuses(`${Z}<filestorage>\n</filestorage>\n`, /^no values for 'path'; 1 required$/, 4);
    refuses(`${Z}${F}<runner>\n  daemon true\n</runner>\n`, /^no values for 'program'; 1 required$/, 7);
  });

  test('-X overrides: by section type or name, replacing the file value', () => {
    const text = `${Z}${F}<filestorage two>\n  path ${dir}/y.fs\n</filestorage>\n`;
    const c = parse(text, [
      'zeo/msgpack=true',
      'zeo/address=1.2.3.4:5',
      'TWO/read-only=true',
      'filestorage/path=/q.fs',
    ]);
    assert.equal(c.msgpack, true);
    assert.deepEqual(c.address, { kind: 'tcp', host: '1.2.3.4', port: 5 });
    assert.equal(c.sources?.address, '-X zeo/address=1.2.3.4:5');
    assert.deepEqual(c.storages, [
      fileStorage('1', '/q.fs'),
      fileStorage('two', `${dir}/y.fs`, { readOnly: true }),
    ]);
    const bad = (overrides: string[], reason: RegExp): void =>
      assert.throws(
        () => parse(text, overrides),
        (e: unknown) => e instanceof ConfigError && reason.test(e.message),
      );
    bad(['zeo/bogus=1'], /^-X zeo\/bogus=1: 'bogus' is not a known key name$/);
    bad(['nosuch/path=1'], /^not all command line options were consumed: -X nosuch\/path=1/);
    bad(
      ['zeo/read-only=maybe'],
      /^-X zeo\/read-only=maybe: invalid value for 'read-only': not a valid boolean value: 'maybe'$/,
    );
    bad(['zeo/read-only'], /invalid configuration specifier/);
    bad(['zeo//read-only=1'], /'\/\/' is not allowed in an option path/);
    bad(
      ['zeo/transaction-timeout=5', 'zeo/transaction-timeout=6'],
      /'transaction-timeout' does not support multiple values/,
    );
  });
});

describe('parseAddress', () => {
  test('runzeo reads addresses as ZConfig socket-binding-address', () => {
    const cases: Array<[string, unknown]> = [
      ['8100', { kind: 'tcp', host: '', port: 8100 }],
      [':8100', { kind: 'tcp', host: '', port: 8100 }],
      ['127.0.0.1:8100', { kind: 'tcp', host: '127.0.0.1', port: 8100 }],
      ['LocalHost:8100', { kind: 'tcp', host: 'localhost', port: 8100 }],
      ['[::1]:8100', { kind: 'tcp', host: '::1', port: 8100 }],
      ['[::]:0', { kind: 'tcp', host: '::', port: 0 }],
      ['host:', { kind: 'tcp', host: 'host', port: 0 }],
      ['localhost', { kind: 'tcp', host: 'localhost', port: 0 }],
      ['::1', { kind: 'tcp', host: '::1', port: 0 }],
      ['99999', { kind: 'tcp', host: '99999', port: 0 }],
      ['-5', { kind: 'tcp', host: '-5', port: 0 }],
      ['h: 81', { kind: 'tcp', host: 'h', port: 81 }],
      ['1.2.3.4:+80', { kind: 'tcp', host: '1.2.3.4', port: 80 }],
      ['1.2.3.4:8_0', { kind: 'tcp', host: '1.2.3.4', port: 80 }],
      ['1.2.3.4:\u0668\u0660', { kind: 'tcp', host: '1.2.3.4', port: 80 }],
      ['/var/run/zeo.sock', { kind: 'unix', path: '/var/run/zeo.sock' }],
      ['./zeo.sock', { kind: 'unix', path: './zeo.sock' }],
    ];
    for (const [value, expected] of cases) assert.deepEqual(parseAddress(value), expected, value);
    for (const [value, reason] of [
      ['a b', "not a valid host name: 'a b'"],
      ['', "not a valid host name: ''"],
      ['h:99999', '99999 is above upper bound (65535)'],
      ['h:-1', '-1 is below lower bound (0)'],
      ['h:x', "invalid literal for int() with base 10: 'x'"],
      ['h:0x10', "invalid literal for int() with base 10: '0x10'"],
    ]) {
      assert.throws(
        () => parseAddress(value),
        (e: unknown) => e instanceof ConfigError && e.message === reason,
        value,
      );
    }
  });
});

describe('serveOptionsToConfig and defaultConfig', () => {
  const conf = join(dir, 'two.conf');
  writeFileSync(conf, `${Z}${F}<filestorage two>\n  path ${dir}/y.fs\n</filestorage>\n`);

  test('no options: ./var/Data.fs as storage 1 on 127.0.0.1:8100', () => {
    const c = serveOptionsToConfig({}, {});
    assert.deepEqual(c.address, DEFAULT_ADDRESS);
    assert.deepEqual(c.storages, [fileStorage('1', './var/Data.fs')]);
    const { sources: _a, ...fromOptions } = c;
    const { sources: _b, ...defaults } = defaultConfig({});
    assert.deepEqual(fromOptions, defaults);
    assert.equal(defaultConfig({ ZEO_MSGPACK: '1' }).msgpack, true);
  });

  test('-a, -f, -t and --pid-file as runzeo reads them', () => {
    const c = serveOptionsToConfig({ address: '8200', filename: [`${dir}/a.fs`, 'b.fs'], timeout: '7' }, {});
    assert.deepEqual(c.address, { kind: 'tcp', host: '', port: 8200 });
    assert.deepEqual(c.storages, [fileStorage('1', `${dir}/a.fs`), fileStorage('2', 'b.fs')]);
    assert.equal(c.transactionTimeout, 7);
    const d = serveOptionsToConfig(
      { configure: conf, address: 'localhost:9000', timeout: '12.5', pidFile: 'rel/zeo.pid' },
      {},
    );
    assert.deepEqual(d.address, { kind: 'tcp', host: 'localhost', port: 9000 });
    assert.equal(d.transactionTimeout, 12.5);
    assert.equal(d.pidFilename, 'rel/zeo.pid');
    assert.equal(d.storages.length, 2);
    assert.equal(d.sources?.address, '-a');
    // -f replaces the file's storages
    assert.deepEqual(serveOptionsToConfig({ configure: conf, filename: ['z.fs'] }, {}).storages, [
      fileStorage('1', 'z.fs'),
    ]);
    assert.equal(serveOptionsToConfig({ configure: conf, readOnly: true }, {}).readOnly, true);
    assert.equal(
      serveOptionsToConfig({ configure: conf, override: ['zeo/read-only=on'] }, {}).readOnly,
      true,
    );
  });

  test('refusals: -X without -C, bad -t and -a values, a missing file', () => {
    const bad = (opts: Parameters<typeof serveOptionsToConfig>[0], reason: RegExp): void =>
      assert.throws(
        () => serveOptionsToConfig(opts, {}),
        (e: unknown) => e instanceof ConfigError && reason.test(e.message),
      );
    bad(
      { address: '8200', override: ['zeo/msgpack=true'] },
      /^configuration overrides \(-X\) cannot be used without a configuration file$/,
    );
    bad(
      { configure: conf, timeout: 'abc' },
      /^invalid value for -t 'abc': could not convert string to float: 'abc'$/,
    );
    bad({ address: 'a b' }, /^invalid value for -a 'a b': not a valid host name: 'a b'$/);
    bad({ configure: join(dir, 'nonexistent.conf') }, /^error opening file .*nonexistent\.conf/);
  });
});

describe("ServeOptions: the options zeo-ts adds to runzeo's", () => {
  test('--read-only, --log-format, --max-message-size and --max-blob-upload reach ServerConfig; absent, they are left out', () => {
    const plain = serveOptionsToConfig({ address: '8200' }, {});
    assert.equal(plain.readOnly, false);
    assert.equal('logFormat' in plain, false);
    assert.equal('maxMessageSize' in plain, false);
    assert.equal('maxBlobUpload' in plain, false);
    const c = serveOptionsToConfig(
      { address: '8200', readOnly: true, logFormat: 'JSON', maxMessageSize: '64MB', maxBlobUpload: '2GB' },
      {},
    );
    assert.equal(c.maxBlobUpload, 2 * 1024 ** 3);
    assert.equal(c.readOnly, true);
    assert.equal(c.sources?.readOnly, '--read-only');
    assert.equal(c.logFormat, 'json');
    assert.equal(c.maxMessageSize, 64 * 1024 * 1024);
    assert.equal(
      serveOptionsToConfig({ logFormat: 'text', maxMessageSize: '4096' }, {}).maxMessageSize,
      4096,
    );
  });

  test('refusals name the option and the value', () => {
    const bad = (opts: Parameters<typeof serveOptionsToConfig>[0], message: string): void =>
      assert.throws(
        () => serveOptionsToConfig(opts, {}),
        (e: unknown) => e instanceof ConfigError && e.message === message,
      );
    bad({ logFormat: 'xml' }, "invalid value for --log-format 'xml': must be one of text, json");
    bad(
      { maxMessageSize: '1.5MB' },
      "invalid value for --max-message-size '1.5MB': invalid literal for int() with base 10: '1.5'",
    );
    bad({ maxMessageSize: '0KB' }, "invalid value for --max-message-size '0KB': must be more than 0 bytes");
    bad({ maxBlobUpload: '0' }, "invalid value for --max-blob-upload '0': must be more than 0 bytes");
  });
});

// ---------------------------------------------------------------------------------------------------------
// The oracle: runzeo's ZEOOptions on the same files and command lines

const HARNESS = `
import json, logging, math, os
import ZEO.zconfig
from ZEO.runzeo import ZEOOptions

if not hasattr(ZEO.zconfig, '_zeots_server_ssl'):
    # keep runzeo's SSL checks, but let the section's values through
    ZEO.zconfig._zeots_server_ssl = ZEO.zconfig.server_ssl
    def _server_ssl(section):
        ZEO.zconfig._zeots_server_ssl(section)
        return [section.certificate, section.key, section.password_function, section.authenticate]
    ZEO.zconfig.server_ssl = _server_ssl

class _Usage(Exception):
    pass

def _num(x):
    # JSON has no inf or nan
    return x if not isinstance(x, float) or math.isfinite(x) else repr(x)

def _storage(s, name):
    if s is None:
        return None
    c = s.config
    kind = type(s).__name__
    get = lambda a: getattr(c, a, None)
    if kind == 'FileStorage':
        return {'kind': 'filestorage', 'name': name, 'path': c.path, 'blobDir': get('blob_dir') or None,
                'create': bool(get('create')), 'readOnly': bool(get('read_only')), 'quota': get('quota'),
                'packGc': getattr(c, 'pack_gc', True), 'packKeepOld': getattr(c, 'pack_keep_old', True), 'zlib': False,
                'packer': get('packer')}
    if kind == 'MappingStorage':
        return {'kind': 'mappingstorage', 'name': name, 'description': c.name}
    if kind == 'BlobStorage':
        base = _storage(c.base, name)
        if base is not None:
            base['blobDir'] = c.blob_dir
        return base
    return {'kind': kind, 'name': name}

def _realize(argv, env):
    saved_env = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if v is not None})
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    o = ZEOOptions()
    def usage(msg):
        raise _Usage(str(msg))
    o.usage = usage
    try:
        o.realize(argv, progname='runzeo')
    except _Usage as e:
        return {'refused': str(e)}
    except Exception as e:  # runzeo dies with a traceback: a refusal too
        return {'refused': '%s: %s' % (type(e).__name__, e), 'traceback': True}
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(saved_env)
    a = o.address
    r = {'address': ['unix', a] if isinstance(a, str) else ['tcp', a[0], a[1]],
         'readOnly': o.read_only, 'invalidationQueueSize': o.invalidation_queue_size,
         'invalidationAge': _num(o.invalidation_age), 'transactionTimeout': _num(o.transaction_timeout),
         'pidFile': o.pid_file, 'clientConflictResolution': o.client_conflict_resolution,
         'msgpack': o.msgpack if isinstance(o.msgpack, bool) else None,
         'ssl': o.ssl, 'storages': [_storage(s, s.name) for s in o.storages], 'eventlog': None}
    el = o.config_logger
    if el is not None:
        r['eventlog'] = {'level': el.level, 'handlers': [
            {'path': getattr(h.section, 'path', None), 'format': h.section.format,
             'dateformat': h.section.dateformat, 'level': h.section.level}
            for h in el.handler_factories]}
    return r

result = [_realize(c['argv'], c.get('env') or {}) for c in args]
`;

interface PyResult {
  refused?: string;
  traceback?: boolean;
  address: ['tcp', string, number | null] | ['unix', string];
  readOnly: boolean | number;
  invalidationQueueSize: number;
  invalidationAge: number | string | null;
  transactionTimeout: number | string | null;
  pidFile: string | null;
  clientConflictResolution: boolean | number;
  msgpack: boolean | null;
  ssl: [string, string | null, string | null, string] | null;
  storages: Array<Record<string, unknown>>;
  eventlog: null | {
    level: number;
    handlers: Array<{ path: string; format: string; dateformat: string; level: number }>;
  };
}

interface Case {
  name: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
  /** the file -C reads, written before the batch runs */
  text?: string;
}

function caseFile(name: string): string {
  return join(dir, `case-${name.replace(/[^a-zA-Z0-9]+/g, '-')}.conf`);
}

function withFile(name: string, text: string, extra: string[] = [], env?: NodeJS.ProcessEnv): Case {
  return { name, text, argv: ['-C', caseFile(name), ...extra], env };
}

async function runBoth(
  oracle: Oracle,
  cases: Case[],
): Promise<Array<{ c: Case; py: PyResult; ours: ServerConfig | ConfigError }>> {
  for (const c of cases) if (c.text !== undefined) writeFileSync(caseFile(c.name), c.text);
  const py = await oracle.json<PyResult[]>(
    HARNESS,
    undefined,
    cases.map((c) => ({ argv: c.argv, env: { ...ENV, ...c.env } })),
  );
  return cases.map((c, i) => {
    let ours: ServerConfig | ConfigError;
    try {
      ours = serveOptionsToConfig(argvToOptions(c.argv), { ...ENV, ...c.env });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      ours = e;
    }
    return { c, py: py[i], ours };
  });
}

// runzeo's getopt command line, as `zeo serve` takes it
function argvToOptions(argv: string[]): Parameters<typeof serveOptionsToConfig>[0] {
  const o: Parameters<typeof serveOptionsToConfig>[0] = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, v] = [argv[i], argv[i + 1]];
    if (flag === '-C') o.configure = v;
    else if (flag === '-a') o.address = v;
    else if (flag === '-f') (o.filename ??= []).push(v);
    else if (flag === '-t') o.timeout = v;
    else if (flag === '--pid-file') o.pidFile = v;
    else if (flag === '-X') (o.override ??= []).push(v);
    else throw new Error(`unexpected ${flag}`);
  }
  return o;
}

function pyNumber(v: number | string | null): number | null {
  if (typeof v !== 'string') return v;
  return v === 'nan' ? NaN : v === 'inf' ? Infinity : -Infinity;
}

/** What runzeo read, in our terms. */
function fromPython(py: PyResult, env: NodeJS.ProcessEnv): Omit<ServerConfig, 'sources'> {
  return {
    address:
      py.address[0] === 'unix'
        ? { kind: 'unix', path: py.address[1] }
        : { kind: 'tcp', host: py.address[1], port: py.address[2] ?? 0 },
    readOnly: !!py.readOnly,
    invalidationQueueSize: py.invalidationQueueSize,
    invalidationAge: pyNumber(py.invalidationAge),
    transactionTimeout: pyNumber(py.transactionTimeout),
    pidFilename: py.pidFile || (env.INSTANCE_HOME ? join(env.INSTANCE_HOME, 'var', 'ZEO.pid') : null),
    clientConflictResolution: !!py.clientConflictResolution,
    msgpack: py.msgpack ?? !!env.ZEO_MSGPACK,
    ssl: py.ssl && {
      certificate: py.ssl[0],
      key: py.ssl[1],
      passwordFunction: py.ssl[2],
      authenticate: py.ssl[3],
    },
    storages: py.storages.map(({ packer: _, ...s }) => s) as StorageConfig[],
    eventlog: py.eventlog && {
      level: levelFromNumber(py.eventlog.level),
      handlers: py.eventlog.handlers.map((h) => ({ ...h, level: levelFromNumber(h.level) })),
    },
  };
}

function assertSame(r: { c: Case; py: PyResult; ours: ServerConfig | ConfigError }): void {
  const { c, py, ours } = r;
  assert.equal(py.refused, undefined, `${c.name}: runzeo refused: ${py.refused}`);
  assert.ok(
    !(ours instanceof ConfigError),
    `${c.name}: we refused: ${ours instanceof ConfigError ? ours.message : ''}`,
  );
  const { sources: _, ...mine } = ours;
  assert.deepEqual(mine, fromPython(py, { ...ENV, ...c.env }), c.name);
}

function assertBothRefuse(r: { c: Case; py: PyResult; ours: ServerConfig | ConfigError }): void {
  assert.ok(r.py.refused !== undefined, `${r.c.name}: runzeo accepted it`);
  assert.ok(r.ours instanceof ConfigError, `${r.c.name}: we accepted it (runzeo: ${r.py.refused})`);
}

const LOGFILE = (body: string): string =>
  `${Z}${F}<eventlog>\n  <logfile>\n${body}  </logfile>\n</eventlog>\n`;
const SSL = (body: string): string => `<zeo>\n  address 8100\n  <ssl>\n${body}  </ssl>\n</zeo>\n${F}`;

interopTest('what runzeo accepts we accept, reading the same values', async (oracle) => {
  writeFileSync(join(dir, 'inc.conf'), Z);
  const cases: Case[] = [
    withFile('spec example', specExample),
    withFile('spec minimal', specMinimal),
    withFile(
      'case',
      `<ZEO>\n ADDRESS 8100\n Read-Only TRUE\n</ZeO  >\n<FileStorage Catalog>\n PATH ${dir}/x.fs # note\n</filestorage>\n`,
    ),
    withFile(
      'defines',
      `%define VAR ${dir}\n%define Var2 \${VAR}/y\n<zeo>\n\taddress\t$var:1\n  pid-filename $VAR2.pid\n</zeo>\n<filestorage>\n path $(ZCTEST)/a.fs\n blob-dir $VAR/$$b\n</filestorage>\n`,
    ),
    withFile(
      'include and imports',
      `%import ZODB\n%import zdaemon\n%import ZConfig.components.logger\n%include inc.conf\n${F}`,
    ),
    withFile(
      'blobstorage',
      `${Z}<blobstorage>\n blob-dir ${dir}/blobs\n <filestorage>\n  path ${dir}/x.fs\n </filestorage>\n</blobstorage>\n`,
    ),
    withFile(
      'filestorage keys',
      `${Z}<filestorage>\n path ${dir}/x.fs\n blob-dir ${dir}/blobs\n create yes\n read-only on\n quota 10 kb\n pack-gc off\n pack-keep-old NO\n packer\n</filestorage>\n`,
    ),
    withFile('quota', `${Z}<filestorage>\n path x.fs\n quota 1_000\n blob-dir\n</filestorage>\n`),
    withFile(
      'mappingstorage',
      `${Z}<mappingstorage m>\n name hello world\n</mappingstorage>\n<mappingstorage x/>\n`,
    ),
    withFile(
      'runner',
      `${Z}${F}<runner>\n program runzeo -C x\n socket-name ${dir}/zdsock\n daemon true\n exit-codes 0,1\n umask 077\n` +
        ` <eventlog>\n  <syslog>\n  </syslog>\n  <logfile>\n   path STDERR\n   style format\n   format {message}\n  </logfile>\n </eventlog>\n</runner>\n`,
    ),
    withFile(
      'zeo keys',
      `<zeo>\n address [::1]:8100\n read-only yes\n invalidation-queue-size +1_000\n invalidation-age 1e3\n transaction-timeout 30\n` +
        ` pid-filename zeo.pid\n client-conflict-resolution on\n msgpack off\n</zeo>\n${F}`,
      [],
      { ZEO_MSGPACK: '1' },
    ),
    withFile(
      'zeo named',
      `<zeo main>\n address 8100\n invalidation-age inf\n transaction-timeout -3\n</zeo>\n${F}`,
    ),
    withFile('msgpack from env', Z + F, [], { ZEO_MSGPACK: '1' }),
    withFile('pid file from INSTANCE_HOME', Z + F, [], { INSTANCE_HOME: `${dir}/ih` }),
    withFile(
      'eventlog',
      `${Z}${F}<eventlog>\n level 25\n <logfile>\n  path STDOUT\n  format %(levelname)-8s %(name)s: %(message)s\\t!\n  level warn\n  dateformat %H:%M\n </logfile>\n` +
        ` <logfile>\n  path ${dir}/zeo.log\n  delay true\n  encoding utf-8\n  formatter logging.Formatter\n  format 100%% %(message)s\n </logfile>\n</eventlog>\n`,
    ),
    withFile('eventlog empty', `${Z}${F}<eventlog>\n</eventlog>\n`),
    withFile('eventlog fatal', `${Z}${F}<eventlog>\n level FATAL\n</eventlog>\n`),
    withFile(
      'eventlog blather',
      `${Z}${F}<eventlog>\n level blather\n <logfile>\n  path STDERR\n  level 0\n </logfile>\n</eventlog>\n`,
    ),
    withFile(
      'log format fields',
      LOGFILE(
        '    path STDERR\n    format %(asctime)s %(msecs)03d %(created)f %(relativeCreated)d %(process)d %(thread)d %(threadName)s %(processName)s %(module)s %(filename)s %(pathname)s %(lineno)d %(funcName)s %(levelno)s %(exc_text)s %(stack_info)s %(msg)s %(args)s %(exc_info)s\n',
      ),
    ),
    withFile('log format escaped', LOGFILE('    path STDERR\n    format %%(message)s %(message)r\n')),
    withFile(
      'ssl capath',
      SSL(
        `    certificate ${dir}/server.pem\n    key ${dir}/server_key.pem\n    authenticate ${dir}/clients/\n`,
      ),
    ),
    withFile(
      'ssl cafile',
      SSL(
        `    certificate ${dir}/server.pem\n    key ${dir}/server_key.pem\n    authenticate ${dir}/clients/ca.pem\n`,
      ),
    ),
    withFile(
      'ssl dynamic',
      `<zeo>\n address 8100\n <ssl x>\n  certificate ~${dir}/server.pem\n  key ${dir}/server_key.pem\n  password-function os.getcwd\n  authenticate DYNAMIC\n </ssl>\n</zeo>\n${F}`,
      [],
      { HOME: '/' },
    ),
    ...[
      '8100',
      ':8100',
      'host:',
      '[::]:8100',
      '::1',
      'LocalHost',
      `${dir}/sock`,
      '99999',
      '-5',
      '0',
      'h: 81',
      '1.2.3.4:+80',
      '1.2.3.4:8_0',
      '1.2.3.4:\u0668\u0660',
    ].map((a, i) => withFile(`address ${i}`, `<zeo>\n address ${a}\n</zeo>\n${F}`)),
    // the command line
    { name: '-a -f -f', argv: ['-a', '8200', '-f', `${dir}/a.fs`, '-f', 'b.fs'] },
    { name: '-a -f -t', argv: ['-a', '8200', '-f', 'a.fs', '-t', '7'] },
    { name: '-a unix', argv: ['-a', `${dir}/sock`, '-f', 'a.fs', '--pid-file', 'x/y.pid'] },
    withFile('-C -a', `${Z}${F}<filestorage two>\n path ${dir}/y.fs\n</filestorage>\n`, [
      '-a',
      'localhost:9000',
    ]),
    withFile('-C -f', `${Z}${F}<filestorage two>\n path ${dir}/y.fs\n</filestorage>\n`, [
      '-f',
      `${dir}/z.fs`,
    ]),
    withFile('-C -f, two unnamed in the file', `${Z}${F}${F}`, ['-f', `${dir}/z.fs`]),
    withFile('-C -t --pid-file', `${Z}${F}`, ['-t', '12.5', '--pid-file', 'rel/zeo.pid']),
    withFile('-X', `${Z}${F}<filestorage two>\n path ${dir}/y.fs\n</filestorage>\n`, [
      '-X',
      'zeo/msgpack=true',
      '-X',
      'zeo/address=1.2.3.4:5',
      '-X',
      'TWO/read-only=true',
      '-X',
      `filestorage/path=${dir}/q.fs`,
    ]),
    withFile('-X new key', `${Z}${F}`, ['-X', 'zeo/transaction-timeout=9', '-X', 'filestorage/blob-dir=b']),
  ];
  const results = await runBoth(oracle, cases);
  for (const r of results) assertSame(r);
});

interopTest('what runzeo refuses we refuse', async (oracle) => {
  const cases: Case[] = [
    withFile('read_only', `<zeo>\n address 8100\n read_only true\n</zeo>\n${F}`),
    withFile('trailing comment', `<zeo>\n address 8100 # x\n</zeo>\n${F}`),
    withFile(
      'dup names',
      `${Z}<filestorage a>\n path x\n</filestorage>\n<mappingstorage A>\n</mappingstorage>\n`,
    ),
    withFile(
      'dup names across types',
      `${Z}<filestorage a>\n path x\n</filestorage>\n<eventlog a>\n</eventlog>\n`,
    ),
    withFile(
      'unnamed and 1',
      `${Z}<filestorage 1>\n path x\n</filestorage>\n<mappingstorage>\n</mappingstorage>\n`,
    ),
    withFile('two unnamed', `${Z}${F}<mappingstorage>\n</mappingstorage>\n`),
    withFile('star name', `${Z}<filestorage *>\n path x\n</filestorage>\n`),
    withFile('bad int', `<zeo>\n address 8100\n invalidation-queue-size 1x\n</zeo>\n${F}`),
    withFile('float timeout', `<zeo>\n address 8100\n transaction-timeout 30.5\n</zeo>\n${F}`),
    withFile('bad float', `<zeo>\n address 8100\n invalidation-age 1x\n</zeo>\n${F}`),
    withFile('empty bool', `<zeo>\n address 8100\n read-only\n</zeo>\n${F}`),
    withFile('bad bool', `<zeo>\n address 8100\n msgpack maybe\n</zeo>\n${F}`),
    withFile('empty address', `<zeo>\n address\n</zeo>\n${F}`),
    withFile('address with space', `<zeo>\n address a b\n</zeo>\n${F}`),
    withFile('port range', `<zeo>\n address h:99999\n</zeo>\n${F}`),
    withFile('port letters', `<zeo>\n address h:x\n</zeo>\n${F}`),
    withFile('no dir', `${Z}<filestorage>\n path /nonexistent/x.fs\n</filestorage>\n`),
    withFile(
      'no blob parent',
      `${Z}<filestorage>\n path x.fs\n blob-dir /nonexistent/blobs\n</filestorage>\n`,
    ),
    withFile('no pid dir', `<zeo>\n address 8100\n pid-filename /nonexistent/zeo.pid\n</zeo>\n${F}`),
    withFile('quota float', `${Z}<filestorage>\n path x\n quota 1.5MB\n</filestorage>\n`),
    withFile('undefined', `${Z}<filestorage>\n path $NOPE/x\n</filestorage>\n`),
    withFile('undefined env', `${Z}<filestorage>\n path $(ZEO_TS_NO_SUCH_VARIABLE)/x\n</filestorage>\n`),
    withFile('redefine', `%define A 1\n%define A 2\n${Z}${F}`),
    withFile('bad define name', `%define a-b 1\n${Z}${F}`),
    withFile('unknown directive', `%foo bar\n${Z}${F}`),
    withFile('no directive arg', `%define\n${Z}${F}`),
    withFile('lone dollar', `${Z}<filestorage>\n path x$\n</filestorage>\n`),
    withFile('brace', `${Z}<filestorage>\n path \${x\n</filestorage>\n`),
    withFile('import ZEO', `%import ZEO\n${Z}${F}`),
    withFile('import other', `%import nonexistent.pkg\n${Z}${F}`),
    withFile('multiple values', `<zeo>\n address 8100\n address 8101\n</zeo>\n${F}`),
    withFile('unknown section', `${Z}${F}<foo>\n</foo>\n`),
    withFile('key at top', `address 8100\n${Z}${F}`),
    withFile('unclosed', `${Z}<filestorage>\n path x\n`),
    withFile('unbalanced', `${Z}<filestorage>\n path x\n</mappingstorage>\n`),
    withFile('malformed end', `${Z}<filestorage>\n path x\n</filestorage\n`),
    withFile('malformed header', `${Z}<filestorage a b>\n path x\n</filestorage>\n`),
    withFile('unexpected end', `${Z}${F}</filestorage>\n`),
    withFile('malformed data', `${Z}${F}(x) 1\n`),
    withFile('bad key', `<zeo>\n address 8100\n addr$ess 1\n</zeo>\n${F}`),
    withFile('no zeo', F),
    withFile('no storage', Z),
    withFile('two zeo', `${Z}${Z}${F}`),
    withFile('no path', `${Z}<filestorage>\n</filestorage>\n`),
    withFile('logger', `${Z}${F}<logger>\n</logger>\n`),
    withFile('environment', `${Z}${F}<environment>\n</environment>\n`),
    withFile('zodb', `${Z}${F}<zodb>\n</zodb>\n`),
    withFile('abstract', `${Z}${F}<zodb.storage>\n</zodb.storage>\n`),
    withFile('storage in zeo', `<zeo>\n address 8100\n ${F}</zeo>\n${F}`),
    withFile('runner no program', `${Z}${F}<runner>\n daemon true\n</runner>\n`),
    withFile('runner bad key', `${Z}${F}<runner>\n program x\n frob 1\n</runner>\n`),
    withFile('runner bad value', `${Z}${F}<runner>\n program x\n backoff-limit x\n</runner>\n`),
    withFile('runner bad umask', `${Z}${F}<runner>\n program x\n umask 9\n</runner>\n`),
    withFile(
      'runner log format',
      `${Z}${F}<runner>\n program x\n <eventlog>\n  <logfile>\n   path STDERR\n   format %(foo)s\n  </logfile>\n </eventlog>\n</runner>\n`,
    ),
    withFile('ssl no auth', SSL(`    certificate ${dir}/server.pem\n`)),
    withFile('ssl no cert', SSL('    authenticate DYNAMIC\n')),
    withFile('ssl missing cert', SSL(`    certificate ${dir}/nope.pem\n    authenticate DYNAMIC\n`)),
    withFile(
      'ssl missing key',
      SSL(`    certificate ${dir}/server.pem\n    key ${dir}/nope.pem\n    authenticate DYNAMIC\n`),
    ),
    withFile('ssl missing ca', SSL(`    certificate ${dir}/server.pem\n    authenticate ${dir}/nope.pem\n`)),
    withFile(
      'ssl client key',
      SSL(`    certificate ${dir}/server.pem\n    authenticate DYNAMIC\n    check-hostname false\n`),
    ),
    withFile(
      'ssl twice',
      `<zeo>\n address 8100\n <ssl>\n  certificate ${dir}/server.pem\n  authenticate DYNAMIC\n </ssl>\n <ssl>\n  certificate ${dir}/server.pem\n  authenticate DYNAMIC\n </ssl>\n</zeo>\n${F}`,
    ),
    withFile('level 51', `${Z}${F}<eventlog>\n level 51\n</eventlog>\n`),
    withFile('level loud', `${Z}${F}<eventlog>\n level loud\n</eventlog>\n`),
    withFile('logfile no path', LOGFILE('    format x %(message)s\n')),
    withFile('logfile bad key', LOGFILE('    path STDERR\n    fmt x\n')),
    withFile('format unknown field', LOGFILE('    path STDERR\n    format %(foo)s\n')),
    withFile('format taskName', LOGFILE('    path STDERR\n    format %(taskName)s %(message)s\n')),
    withFile('format type', LOGFILE('    path STDERR\n    format %(levelname)d\n')),
    withFile('format type x', LOGFILE('    path STDERR\n    format %(created)x\n')),
    withFile('format conversion', LOGFILE('    path STDERR\n    format %(message)y\n')),
    withFile('format no field', LOGFILE('    path STDERR\n    format plain text\n')),
    withFile('format positional', LOGFILE('    path STDERR\n    format %(message)s %s\n')),
    withFile('format positional only', LOGFILE('    path STDERR\n    format %s\n')),
    withFile('format trailing percent', LOGFILE('    path STDERR\n    format %(message)s %\n')),
    withFile('format star', LOGFILE('    path STDERR\n    format %(message)*s\n')),
    withFile('rotate stderr', LOGFILE('    path STDERR\n    max-size 1MB\n')),
    withFile('delay stdout', LOGFILE('    path STDOUT\n    delay true\n')),
    withFile('encoding stderr', LOGFILE('    path STDERR\n    encoding utf-8\n')),
    withFile('style bad', LOGFILE('    path STDERR\n    style fancy\n')),
    withFile('logfile no dir', LOGFILE('    path /nonexistent/zeo.log\n')),
    // -X and the command line
    withFile('-X unknown key', `${Z}${F}`, ['-X', 'zeo/bogus=1']),
    withFile('-X no section', `${Z}${F}`, ['-X', 'nosuch/path=1']),
    withFile('-X bad value', `${Z}${F}`, ['-X', 'zeo/read-only=maybe']),
    withFile('-X no =', `${Z}${F}`, ['-X', 'zeo/read-only']),
    withFile('-X //', `${Z}${F}`, ['-X', 'zeo//read-only=1']),
    withFile('-X twice', `${Z}${F}`, ['-X', 'zeo/transaction-timeout=5', '-X', 'zeo/transaction-timeout=6']),
    withFile('-X no ssl', `${Z}${F}`, ['-X', 'zeo/ssl/authenticate=DYNAMIC']),
    withFile('-X no eventlog', `${Z}${F}`, ['-X', 'eventlog/level=debug']),
    withFile('-X no substitution', `${Z}${F}`, ['-X', 'zeo/pid-filename=$FOO/x']),
    withFile('-t abc', `${Z}${F}`, ['-t', 'abc']),
    { name: '-X without -C', argv: ['-a', '8200', '-f', 'a.fs', '-X', 'zeo/msgpack=true'] },
    { name: '-a a b', argv: ['-a', 'a b', '-f', 'a.fs'] },
    { name: '-a port range', argv: ['-a', 'h:99999', '-f', 'a.fs'] },
    { name: '-C missing', argv: ['-C', join(dir, 'nonexistent.conf')] },
  ];
  const results = await runBoth(oracle, cases);
  for (const r of results) assertBothRefuse(r);
  // where runzeo itself names a line, we name the same one; but for what it finds as it ends a section
  // (a name used twice, a missing key, a section's own checks: "line N, -1") it names the end, we the start
  for (const r of results) {
    const m = /\(line (\d+),? in /.exec(r.py.refused ?? '');
    const ours = r.ours as ConfigError;
    if (
      m &&
      !ours.message.startsWith('-X ') &&
      !/^section names|^too many|^no values|^not all/.test(ours.reason)
    ) {
      assert.equal(ours.line, Number(m[1]), `${r.c.name}: ${ours.message} vs ${r.py.refused}`);
    }
  }
});

interopTest('where zeo-ts deliberately differs from runzeo', async (oracle) => {
  const refusedByUsOnly: Case[] = [
    withFile('packer', `${Z}<filestorage>\n path x\n packer foo.bar\n</filestorage>\n`),
    withFile('demostorage', `${Z}<demostorage>\n</demostorage>\n`),
    withFile('zeoclient', `${Z}<zeoclient>\n server 8100\n</zeoclient>\n`),
    withFile(
      'blobs over mapping',
      `${Z}<blobstorage 7>\n blob-dir ${dir}/blobs\n <mappingstorage>\n </mappingstorage>\n</blobstorage>\n`,
    ),
    withFile('blobstorage without base', `${Z}<blobstorage>\n blob-dir ${dir}/blobs\n</blobstorage>\n`),
    withFile('syslog', `${Z}${F}<eventlog>\n <syslog>\n </syslog>\n</eventlog>\n`),
    withFile('rotation', LOGFILE(`    path ${dir}/r.log\n    max-size 1MB\n    old-files 3\n`)),
    withFile('style format', LOGFILE('    path STDERR\n    style format\n    format {message}\n')),
    withFile('encoding latin-1', LOGFILE(`    path ${dir}/e.log\n    encoding latin-1\n`)),
    withFile(
      'arbitrary fields',
      LOGFILE('    path STDERR\n    arbitrary-fields true\n    format %(foo)s %(message)s\n'),
    ),
  ];
  for (const r of await runBoth(oracle, refusedByUsOnly)) {
    assert.equal(r.py.refused, undefined, `${r.c.name}: runzeo refused it (${r.py.refused})`);
    assert.ok(r.ours instanceof ConfigError, `${r.c.name}: we accepted it`);
    assert.match(r.ours.message, /zeo-ts|not supported|cannot|unknown log record field|needs/, r.c.name);
  }
  // zc.zlibstorage is not installed in the oracle; zeo-ts implements <serverzlibstorage>
  const zlib = `%import zc.zlibstorage\n${Z}<serverzlibstorage>\n <filestorage>\n  path x\n </filestorage>\n</serverzlibstorage>\n`;
  // runzeo stops with a usage error without -a and -f; zeo serve takes the defaults
  const acceptedByUsOnly: Case[] = [
    withFile('zlib', zlib),
    { name: 'no options', argv: [] },
    { name: '-a only', argv: ['-a', '9'] },
    { name: '-f only', argv: ['-f', 'x.fs'] },
  ];
  for (const r of await runBoth(oracle, acceptedByUsOnly)) {
    assert.notEqual(r.py.refused, undefined, `${r.c.name}: runzeo accepted it`);
    assert.ok(
      !(r.ours instanceof ConfigError),
      `${r.c.name}: we refused it: ${r.ours instanceof ConfigError && r.ours.message}`,
    );
  }
});

test('levelNumber is Python logging numbering', () => {
  assert.deepEqual(
    (['CRITICAL', 'ERROR', 'WARNING', 'INFO', 'BLATHER', 'DEBUG', 'TRACE', 'ALL', 'NOTSET'] as const).map(
      levelNumber,
    ),
    [50, 40, 30, 20, 15, 10, 5, 1, 0],
  );
});
