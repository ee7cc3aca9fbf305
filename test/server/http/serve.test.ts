// `zeo serve` with its HTTP listener, as a child process: started after the ZEO port listens, the random token
// logged once as the dashboard's URL, a token file's token never logged, a unix socket, refusals at start
// (a bad token file stops it before any storage opens), and SIGTERM closing the listener with the server.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { request } from '../../helpers/http.js';
import { noOpenssl, selfSignedPair } from '../../helpers/openssl.js';
import { ServerProcess, stopLeftovers } from '../../helpers/server-process.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-http-serve-'));
after(() => rmSync(dir, { recursive: true, force: true }));
after(stopLeftovers);

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

test('--http 127.0.0.1:0: listens after the ZEO port, logs the URL with a random token once; SIGTERM closes it', async () => {
  const d = mkdtempSync(join(dir, 'a-'));
  const child = new ServerProcess({
    kind: 'zeo-ts',
    args: ['-a', '127.0.0.1:0', '-f', join(d, 'Data.fs'), '--http', '127.0.0.1:0'],
    cwd: d,
  });
  const zeoPort = await child.port();
  const [, url] = await child.waitForLog(
    /INFO ZEO\.http HTTP listener on (http:\/\/127\.0\.0\.1:\d+) \(a bearer token\)/,
  );
  const [, tokenUrl, token] = await child.waitForLog(
    /INFO ZEO\.http the dashboard, with its access token: (http:\/\/127\.0\.0\.1:\d+\/\?token=([A-Za-z0-9_-]{43}))$/m,
  );
  assert.ok(tokenUrl.startsWith(`${url}/`));
  const log = child.log();
  assert.equal(log.split(token).length - 1, 1, 'the token is logged once');
  assert.ok(log.indexOf('listening on') < log.indexOf('HTTP listener on'), 'after the ZEO port listens');
  assert.notEqual(Number(new URL(url).port), zeoPort);

  assert.equal((await request(`${url}/no/such/page`)).status, 401);
  assert.equal((await request(`${url}/no/such/page`, { token })).status, 404);
  const login = await request(tokenUrl);
  assert.equal(login.status, 303);
  assert.equal(login.headers.location, '/');
  // refusals are logged (once a minute per client at INFO), never with the token
  await child.waitForLog(/ZEO\.http HTTP GET \/no\/such\/page from 127\.0\.0\.1 refused: 401 no credentials/);
  assert.equal((await request(`${url}/?token=wrong-${token}`)).status, 401);
  assert.equal(child.log().split(token).length - 1, 1);

  await child.stopCleanly();
  assert.ok(await refusesConnections(Number(new URL(url).port)), 'the HTTP port is closed');
});

test('http-address on a unix socket and http-token-file in zeo.conf: the token is read from the file, never logged', async () => {
  const d = mkdtempSync(join(dir, 'b-'));
  const tokenFile = join(d, 'token');
  writeFileSync(tokenFile, 'file-token-0123456789\n');
  const sock = join(d, 'run', 'http.sock');
  const conf = join(d, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:0\n  http-address ${sock}\n  http-token-file ${tokenFile}\n</zeo>\n` +
      `<filestorage>\n  path ${d}/Data.fs\n</filestorage>\n`,
  );
  const child = new ServerProcess({ kind: 'zeo-ts', conf, cwd: d });
  await child.waitForLog(
    new RegExp(`INFO ZEO\\.http HTTP listener on http\\+unix:${sock} \\(a bearer token\\)`),
  );
  assert.doesNotMatch(child.log(), /file-token/);
  assert.doesNotMatch(child.log(), /access token/);
  const base = 'http://localhost/no/such/page';
  assert.equal((await request(base, { socketPath: sock })).status, 401);
  assert.equal((await request(base, { socketPath: sock, token: 'file-token-0123456789' })).status, 404);
  await child.stopCleanly();
  assert.ok(!existsSync(sock), 'the socket file is gone');
});

test('an empty or missing token file: the server does not start, says why, and opens no storage', async () => {
  const d = mkdtempSync(join(dir, 'c-'));
  const empty = join(d, 'empty');
  writeFileSync(empty, '\n');
  for (const [file, why] of [
    [empty, /http-token-file .*empty: its first line is empty; write the token there \(--http-token-file\)/],
    [join(d, 'missing'), /http-token-file .*missing: ENOENT/],
  ] as const) {
    const child = new ServerProcess({
      kind: 'zeo-ts',
      args: ['-a', '127.0.0.1:0', '-f', join(d, 'Data.fs'), '--http', '0', '--http-token-file', file],
      cwd: d,
    });
    const exit = await child.exited;
    assert.deepEqual(exit, { code: 1, signal: null }, child.diag());
    assert.match(child.stderr, why);
    assert.ok(!existsSync(join(d, 'Data.fs')), 'no storage was opened');
  }
});

test('--http-token-file without --http, and an HTTP address in use: refused at start', async () => {
  const d = mkdtempSync(join(dir, 'd-'));
  const noHttp = new ServerProcess({
    kind: 'zeo-ts',
    args: ['-a', '127.0.0.1:0', '-f', join(d, 'Data.fs'), '--http-token-file', join(d, 't')],
    cwd: d,
  });
  assert.deepEqual(await noHttp.exited, { code: 2, signal: null });
  assert.match(noHttp.stderr, /--http-token-file is given without --http/);

  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (busy.address() as net.AddressInfo).port;
    const child = new ServerProcess({
      kind: 'zeo-ts',
      args: ['-a', '127.0.0.1:0', '-f', join(d, 'Data.fs'), '--http', `127.0.0.1:${port}`],
      cwd: d,
    });
    assert.deepEqual(await child.exited, { code: 2, signal: null });
    assert.match(child.stderr, new RegExp(`HTTP address \\('127\\.0\\.0\\.1', ${port}\\) already in use`));
  } finally {
    await new Promise<void>((r) => busy.close(() => r()));
  }
});

test(
  'with <ssl>: HTTPS with the same certificate; client certificates alone, or a token file as well',
  { skip: noOpenssl },
  async () => {
    const d = mkdtempSync(join(dir, 'e-'));
    const ssl = selfSignedPair(d)('server', 'client');
    const tokenFile = join(d, 'token');
    writeFileSync(tokenFile, 'tls-file-token\n');
    const conf = (withToken: boolean): string => {
      const file = join(d, `zeo-${withToken}.conf`);
      writeFileSync(
        file,
        `<zeo>\n  address 127.0.0.1:0\n  http-address 127.0.0.1:0\n` +
          (withToken ? `  http-token-file ${tokenFile}\n` : '') +
          `  <ssl>\n    certificate ${ssl.certificate}\n    key ${ssl.key}\n    authenticate ${ssl.authenticate}\n  </ssl>\n` +
          `</zeo>\n<filestorage>\n  path ${d}/Data.fs\n</filestorage>\n`,
      );
      return file;
    };
    const ca = readFileSync(join(d, 'server.pem'));
    const cert = { ca, cert: readFileSync(join(d, 'client.pem')), key: readFileSync(join(d, 'client.key')) };

    const certOnly = new ServerProcess({ kind: 'zeo-ts', conf: conf(false), cwd: d });
    try {
      const [, url] = await certOnly.waitForLog(
        /INFO ZEO\.http HTTP listener on (https:\/\/127\.0\.0\.1:\d+) \(TLS client certificates\)/,
      );
      assert.doesNotMatch(
        certOnly.log(),
        /access token/,
        'no token is made when certificates are the credential',
      );
      assert.equal((await request(`${url}/no/such/page`, { tls: cert })).status, 404);
      assert.equal((await request(`${url}/no/such/page`, { tls: { ca } })).status, 403);
    } finally {
      await certOnly.stopCleanly();
    }

    const both = new ServerProcess({ kind: 'zeo-ts', conf: conf(true), cwd: d });
    try {
      const [, url] = await both.waitForLog(
        /INFO ZEO\.http HTTP listener on (https:\/\/127\.0\.0\.1:\d+) \(a bearer token or TLS client certificates\)/,
      );
      assert.equal((await request(`${url}/x`, { tls: { ca }, token: 'tls-file-token' })).status, 404);
      assert.equal((await request(`${url}/x`, { tls: cert })).status, 404);
      assert.equal((await request(`${url}/x`, { tls: { ca } })).status, 401);
    } finally {
      await both.stopCleanly();
    }
  },
);
