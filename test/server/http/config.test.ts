// The HTTP listener's configuration: <zeo> http-address and http-token-file, `zeo serve --http` and
// `--http-token-file` (flags override the file, as -a does), and the credentials they give.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { serveCommand } from '../../../src/cli/serve.js';
import {
  ConfigError,
  parseZConfig,
  serveOptionsToConfig,
  type ServeOptions,
} from '../../../src/server/config.js';
import { httpCredentials } from '../../../src/server/http/app.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-http-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const conf = (zeoKeys: string): string =>
  `<zeo>\n  address 8100\n${zeoKeys}</zeo>\n<filestorage>\n  path ${dir}/Data.fs\n</filestorage>\n`;
const parse = (text: string): ReturnType<typeof parseZConfig> =>
  parseZConfig(text, { fileName: join(dir, 'zeo.conf'), env: {} });

test('http-address: off when absent; a bare port is loopback, :PORT every interface, a path a unix socket', () => {
  assert.equal(parse(conf('')).http, undefined);
  assert.deepEqual(parse(conf('  http-address 8080\n')).http, {
    address: { kind: 'tcp', host: '127.0.0.1', port: 8080 },
    tokenFile: null,
  });
  assert.deepEqual(parse(conf('  http-address :8080\n')).http?.address, {
    kind: 'tcp',
    host: '',
    port: 8080,
  });
  assert.deepEqual(parse(conf('  http-address 10.1.2.3:9000\n')).http?.address, {
    kind: 'tcp',
    host: '10.1.2.3',
    port: 9000,
  });
  assert.deepEqual(parse(conf('  http-address [::1]:0\n')).http?.address, {
    kind: 'tcp',
    host: '::1',
    port: 0,
  });
  assert.deepEqual(parse(conf(`  http-address ${dir}/http.sock\n`)).http?.address, {
    kind: 'unix',
    path: `${dir}/http.sock`,
  });
  // the ZEO port's bare port keeps runzeo's meaning (every interface)
  assert.deepEqual(parse(conf('')).address, { kind: 'tcp', host: '', port: 8100 });
  const c = parse(conf(`  http-address 8080\n  http-token-file ${dir}/token\n`));
  assert.deepEqual(c.http, {
    address: { kind: 'tcp', host: '127.0.0.1', port: 8080 },
    tokenFile: `${dir}/token`,
  });
  assert.equal(c.sources?.http, `${join(dir, 'zeo.conf')}, line 3`);
  assert.equal(c.sources?.httpTokenFile, `${join(dir, 'zeo.conf')}, line 4`);
});

test('bad http settings: refused, naming the line', () => {
  assert.throws(
    () => parse(conf('  http-address 127.0.0.1:99999\n')),
    (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /line 3/);
      return true;
    },
  );
  assert.throws(
    () => parse(conf(`  http-token-file ${dir}/token\n`)),
    /line 3: http-token-file is given without http-address/,
  );
  assert.throws(
    () => parse(conf(`  http-address 8080\n  http-token-file ${dir}/no/such/dir/token\n`)),
    /line 4/,
  );
});

test('--http and --http-token-file: declared, and overriding the file', () => {
  const cmd = serveCommand().exitOverride();
  const { operands, unknown } = cmd.parseOptions(['--http', '8081', '--http-token-file', 't.txt']);
  assert.deepEqual([operands, unknown], [[], []]);
  assert.deepEqual(cmd.opts<ServeOptions>(), { http: '8081', httpTokenFile: 't.txt' });

  const file = join(dir, 'zeo.conf');
  writeFileSync(file, conf(`  http-address 8080\n  http-token-file ${dir}/token\n`));
  const fromFile = serveOptionsToConfig({ configure: file }, {});
  assert.deepEqual(fromFile.http, {
    address: { kind: 'tcp', host: '127.0.0.1', port: 8080 },
    tokenFile: `${dir}/token`,
  });
  // --http replaces the address and keeps the file's token file; --http-token-file replaces that
  const flags = serveOptionsToConfig({ configure: file, http: '127.0.0.1:0' }, {});
  assert.deepEqual(flags.http, {
    address: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    tokenFile: `${dir}/token`,
  });
  assert.equal(flags.sources?.http, '--http');
  const both = serveOptionsToConfig({ configure: file, httpTokenFile: 'other' }, {});
  assert.equal(both.http?.tokenFile, 'other');
  assert.equal(both.sources?.httpTokenFile, '--http-token-file');
  // without -C
  assert.deepEqual(serveOptionsToConfig({ http: '9000' }, {}).http, {
    address: { kind: 'tcp', host: '127.0.0.1', port: 9000 },
    tokenFile: null,
  });
  assert.equal(serveOptionsToConfig({}, {}).http, undefined);
  assert.throws(
    () => serveOptionsToConfig({ httpTokenFile: 'x' }, {}),
    /--http-token-file is given without --http/,
  );
  assert.throws(() => serveOptionsToConfig({ http: 'a b' }, {}), /invalid value for --http 'a b'/);
  assert.throws(
    () => serveOptionsToConfig({ http: '99999' }, {}),
    /--http '99999': port number out of range/,
  );
});

test('credentials: the token file (first line, trimmed), certificates only, or a random token', async () => {
  const address = { kind: 'tcp' as const, host: '127.0.0.1', port: 0 };
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, '  s3cret-token \nsecond line\n', { mode: 0o600 });
  assert.deepEqual(await httpCredentials({ address, tokenFile }, { clientCertificates: true }), {
    token: 's3cret-token',
    generated: false,
    certificates: true,
  });
  chmodSync(tokenFile, 0o644);
  assert.deepEqual(await httpCredentials({ address, tokenFile }, { clientCertificates: false }), {
    token: 's3cret-token',
    generated: false,
    certificates: false,
    warning: `http-token-file ${tokenFile} can be read by other users (mode 644): chmod 600 it`,
  });
  assert.deepEqual(await httpCredentials({ address, tokenFile: null }, { clientCertificates: true }), {
    token: null,
    generated: false,
    certificates: true,
  });
  const a = await httpCredentials({ address, tokenFile: null }, { clientCertificates: false });
  const b = await httpCredentials({ address, tokenFile: null }, { clientCertificates: false });
  assert.equal(a.generated, true);
  assert.equal(a.certificates, false);
  assert.match(a.token!, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a.token, b.token);

  writeFileSync(tokenFile, '\n\n');
  await assert.rejects(
    httpCredentials({ address, tokenFile }, { clientCertificates: false, source: 'zeo.conf, line 4' }),
    new RegExp(`http-token-file ${tokenFile}: its first line is empty.*\\(zeo.conf, line 4\\)`),
  );
  writeFileSync(tokenFile, 'two words\n');
  await assert.rejects(
    httpCredentials({ address, tokenFile }, { clientCertificates: false }),
    /printable ASCII/,
  );
  await assert.rejects(
    httpCredentials({ address, tokenFile: join(dir, 'missing') }, { clientCertificates: false }),
    /http-token-file .*missing: ENOENT/,
  );
});
