// The HTTP listener's access control and limits, over real sockets: a test server's listener (the fixture's
// `http`) and listeners started directly with a test route, on TCP, on a unix socket and over TLS with client
// certificates made by openssl.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HttpListener, type HttpListenerOptions } from '../../../src/server/http/listener.js';
import { sendText, type HttpRoute } from '../../../src/server/http/routes.js';
import { createLogger } from '../../../src/server/log.js';
import { serverTlsOptions } from '../../../src/transport/tls.js';
import { request } from '../../helpers/http.js';
import { noOpenssl, selfSignedPair } from '../../helpers/openssl.js';
import { startServer, type TestServer } from '../../helpers/server-fixture.js';
import { waitUntil } from '../../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-http-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SECURITY = {
  'content-security-policy': "default-src 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

function assertSecurityHeaders(headers: http.IncomingHttpHeaders): void {
  for (const [k, v] of Object.entries(SECURITY)) assert.equal(headers[k], v, k);
}

/** A route that says who asked, for the listeners started directly. */
const hello: HttpRoute = {
  path: '/hello',
  handle(_req, res) {
    sendText(res, 200, 'text/plain; charset=utf-8', 'hello\n');
  },
};

const quiet = createLogger(null, { stderr: { write: () => true } as unknown as NodeJS.WritableStream });

/** A listener serving `hello` on 127.0.0.1, any port, with token 't' unless told otherwise. */
function listen(options: Partial<HttpListenerOptions> = {}): Promise<HttpListener> {
  return HttpListener.start({
    address: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    routes: [hello],
    log: quiet.root,
    token: 't',
    ...options,
  });
}

describe('the test server with its HTTP listener', () => {
  let fx: TestServer;
  let url: string;
  let token: string;
  before(async () => {
    fx = await startServer({ http: { token: 'sesame-0123456789' } });
    url = fx.http!.url;
    token = fx.http!.token;
  });
  after(() => fx.stop());

  test('listens on 127.0.0.1 at the port it reports', () => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(token, 'sesame-0123456789');
    assert.ok(fx.logs.some((l) => l.includes(`HTTP listener on ${url}`)));
  });

  test('no credentials: 401 with WWW-Authenticate, a short body and nothing else', async () => {
    const a = await request(`${url}/metrics`);
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Bearer realm="zeo"');
    assert.equal(a.body, '401 Unauthorized\n');
    assert.equal(a.headers['set-cookie'], undefined);
    assertSecurityHeaders(a.headers);
  });

  test('an unauthenticated request never learns whether a path exists', async () => {
    const paths = ['/', '/metrics', '/api/server', '/ui/style.css', '/browse', '/no/such/page', '/%2e%2e/x'];
    const answers = await Promise.all(paths.map((p) => request(`${url}${p}`)));
    for (const a of answers) {
      assert.equal(a.status, 401);
      assert.equal(a.body, '401 Unauthorized\n');
      const { date: _date, ...headers } = a.headers;
      const { date: _date0, ...first } = answers[0].headers;
      assert.deepEqual(headers, first);
    }
    // nor by the method
    const post = await request(`${url}/metrics`, { method: 'POST' });
    assert.equal(post.status, 401);
  });

  test('a wrong bearer token, a wrong cookie or a wrong ?token=: 401', async () => {
    assert.equal((await request(`${url}/x`, { token: 'sesame-012345678' })).status, 401);
    assert.equal((await request(`${url}/x`, { token: `${token}0` })).status, 401);
    assert.equal((await request(`${url}/x`, { headers: { authorization: `Basic ${token}` } })).status, 401);
    const port = new URL(url).port;
    assert.equal(
      (await request(`${url}/x`, { headers: { cookie: `zeo_session_${port}=${token}` } })).status,
      401,
    );
    const wrongQuery = await request(`${url}/?token=nope`);
    assert.equal(wrongQuery.status, 401);
    assert.equal(wrongQuery.headers['set-cookie'], undefined);
    // a right header does not make a wrong ?token= right
    assert.equal((await request(`${url}/?token=nope`, { token })).status, 401);
  });

  test('the right bearer token: an unknown path is a 404, after authentication', async () => {
    const a = await request(`${url}/no/such/page`, { token });
    assert.equal(a.status, 404);
    assert.deepEqual(JSON.parse(a.body), { error: 'no such page: /no/such/page' });
    assertSecurityHeaders(a.headers);
    const lower = await request(`${url}/no/such/page`, { headers: { authorization: `bearer ${token}` } });
    assert.equal(lower.status, 404);
  });

  test('a malformed percent-escape is a 404 like any unknown file, not a 500; a path starting with // is that path', async () => {
    for (const path of ['/ui/%ff', '/ui/%', '/ui/js/%e0%80.js']) {
      const a = await request(`${url}${path}`, { token });
      assert.equal(a.status, 404, path);
      assert.match((JSON.parse(a.body) as { error: string }).error, /no such file/);
    }
    // '//metrics' is not /metrics, nor the page of a host named 'metrics'
    const slashes = await request(`${url}//metrics`, { token });
    assert.equal(slashes.status, 404);
    assert.deepEqual(JSON.parse(slashes.body), { error: 'no such page: //metrics' });
  });

  test('?token= sets a session cookie and redirects to the URL without it; the cookie alone then works', async () => {
    const a = await request(`${url}/some/page?a=1&token=${encodeURIComponent(token)}&b=2`);
    assert.equal(a.status, 303);
    assert.equal(a.headers.location, '/some/page?a=1&b=2');
    assertSecurityHeaders(a.headers);
    const cookie = a.headers['set-cookie']?.[0] ?? '';
    const port = new URL(url).port;
    assert.match(
      cookie,
      new RegExp(`^zeo_session_${port}=[A-Za-z0-9_-]+; Path=/; HttpOnly; SameSite=Strict$`),
    );
    const value = cookie.split(';')[0];
    assert.ok(!value.includes(token), 'the cookie is not the token');
    const b = await request(`${url}/some/page`, { headers: { cookie: `other=1; ${value}` } });
    assert.equal(b.status, 404);
    // a URL that was only the token redirects to its path
    const c = await request(`${url}/?token=${token}`);
    assert.equal(c.headers.location, '/');
    // no open redirect through a path that looks like a host
    const d = await request(`${url}//evil.example/x?token=${token}`);
    assert.equal(d.headers.location, '/evil.example/x');
  });

  test('POST, PUT, DELETE, PATCH: 405 with Allow, without waiting for (or reading) the body', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      // a body announced and never sent: the answer comes all the same, and the connection closes
      const a = await request(`${url}/metrics`, {
        method,
        token,
        headers: { 'content-length': String(10 * 1024 * 1024) },
        timeout: 5000,
      });
      assert.equal(a.status, 405, method);
      assert.equal(a.headers.allow, 'GET, HEAD');
      assert.equal(a.headers.connection, 'close');
      assertSecurityHeaders(a.headers);
    }
  });

  test('a GET with a body is refused without reading it', async () => {
    const a = await request(`${url}/metrics`, {
      token,
      headers: { 'content-length': '1000000' },
      timeout: 5000,
    });
    assert.equal(a.status, 400);
    assert.equal(a.headers.connection, 'close');
  });

  test('oversized request headers: 431', async () => {
    const a = await request(`${url}/x`, { token, headers: { 'x-big': 'a'.repeat(20 * 1024) } });
    assert.equal(a.status, 431);
  });

  test('HEAD answers as GET without a body', async () => {
    const a = await request(`${url}/x`, { method: 'HEAD' });
    assert.equal(a.status, 401);
    assert.equal(a.body, '');
  });
});

test('the listener closes with the test server, keep-alive connections too', async () => {
  const fx = await startServer({ http: {} });
  const { url, token } = fx.http!;
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  const port = Number(new URL(url).port);
  // a keep-alive connection left open
  const agent = new http.Agent({ keepAlive: true });
  await new Promise<void>((resolve, reject) => {
    http
      .get(`${url}/x`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      })
      .on('error', reject);
  });
  await fx.stop();
  agent.destroy();
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
  assert.ok(refused, 'nothing listens after stop');
});

test('a listener on a unix socket', async () => {
  const path = join(dir, 'http.sock');
  const listener = await listen({ address: { kind: 'unix', path }, token: 'unix-token' });
  try {
    assert.equal(listener.url, `http+unix:${path}`);
    const ok = await request('http://localhost/hello', { socketPath: path, token: 'unix-token' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'hello\n');
    assertSecurityHeaders(ok.headers);
    assert.equal((await request('http://localhost/hello', { socketPath: path })).status, 401);
  } finally {
    await listener.close();
  }
  // a second listener takes the path over once the first is gone, never while it lives
  const again = await listen({ address: { kind: 'unix', path } });
  try {
    await assert.rejects(listen({ address: { kind: 'unix', path } }), /already in use/);
  } finally {
    await again.close();
  }
});

test('a token with +, / and = (openssl rand -base64) works in ?token=, as typed or percent-encoded', async () => {
  const token = 'ab+cd/ef=';
  const listener = await listen({ token });
  try {
    for (const query of [token, encodeURIComponent(token)]) {
      const login = await request(`${listener.url}/hello?x=1&token=${query}`);
      assert.equal(login.status, 303, query);
      assert.equal(login.headers.location, '/hello?x=1');
      const cookie = login.headers['set-cookie']![0].split(';')[0];
      assert.equal((await request(`${listener.url}/hello`, { headers: { cookie } })).status, 200);
    }
    // a '+' is not a space here (a token has none): 'ab cd/ef=' is another token
    assert.equal((await request(`${listener.url}/hello?token=ab%20cd/ef=`)).status, 401);
    assert.equal((await request(`${listener.url}/hello?token=ab%ZZ`)).status, 401);
  } finally {
    await listener.close();
  }
});

test('a listener with a route serves GET and HEAD to the token', async () => {
  const listener = await listen({ token: 't0ken' });
  try {
    const get = await request(`${listener.url}/hello`, { token: 't0ken' });
    assert.equal(get.status, 200);
    assert.equal(get.body, 'hello\n');
    assertSecurityHeaders(get.headers);
    const head = await request(`${listener.url}/hello`, { token: 't0ken', method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '6');
    assert.equal(head.body, '');
  } finally {
    await listener.close();
  }
});

describe('over TLS, with client certificates', { skip: noOpenssl }, () => {
  // `ssl('server', 'client')`: the server's certificate, trusting the client's (self-signed: its own CA)
  let ssl: ReturnType<typeof selfSignedPair>;
  const file = (d: string, name: string): Buffer => readFileSync(join(d, name));
  // another pair's client certificate: signed by a CA the server does not trust
  const otherDir = join(dir, 'other');
  before(() => {
    ssl = selfSignedPair(dir);
    mkdirSync(otherDir);
    selfSignedPair(otherDir);
  });

  async function withListener(
    token: string | null,
    body: (url: string) => Promise<void>,
    certificates = true,
  ): Promise<void> {
    const listener = await listen({ token, tls: serverTlsOptions(ssl('server', 'client')), certificates });
    try {
      assert.match(listener.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      await body(listener.url);
    } finally {
      await listener.close();
    }
  }

  test('certificates only: the CA-signed certificate is served, another CA or none gets 403', async () => {
    await withListener(null, async (url) => {
      const ca = file(dir, 'server.pem');
      const good = await request(`${url}/hello`, {
        tls: { ca, cert: file(dir, 'client.pem'), key: file(dir, 'client.key') },
      });
      assert.equal(good.status, 200);
      assert.equal(good.body, 'hello\n');
      assertSecurityHeaders(good.headers);
      const wrong = await request(`${url}/hello`, {
        tls: { ca, cert: file(otherDir, 'client.pem'), key: file(otherDir, 'client.key') },
      });
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body, '403 Forbidden\n');
      const none = await request(`${url}/hello`, { tls: { ca } });
      assert.equal(none.status, 403);
      // a token means nothing to a listener without one
      assert.equal((await request(`${url}/hello`, { tls: { ca }, token: 'x' })).status, 403);
    });
  });

  test('certificates and a token: either serves; a cookie from ?token= is Secure', async () => {
    await withListener('tls-token', async (url) => {
      const ca = file(dir, 'server.pem');
      assert.equal((await request(`${url}/hello`, { tls: { ca }, token: 'tls-token' })).status, 200);
      const cert = { ca, cert: file(dir, 'client.pem'), key: file(dir, 'client.key') };
      assert.equal((await request(`${url}/hello`, { tls: cert })).status, 200);
      assert.equal((await request(`${url}/hello`, { tls: { ca } })).status, 401);
      const login = await request(`${url}/hello?token=tls-token`, { tls: { ca } });
      assert.equal(login.status, 303);
      assert.match(login.headers['set-cookie']?.[0] ?? '', /; Secure$/);
    });
  });

  test('HTTPS without certificates as a credential (<ssl> authenticate DYNAMIC): only the token', async () => {
    await withListener(
      'tls-token',
      async (url) => {
        const ca = file(dir, 'server.pem');
        const cert = { ca, cert: file(dir, 'client.pem'), key: file(dir, 'client.key') };
        assert.equal((await request(`${url}/hello`, { tls: cert })).status, 401);
        assert.equal((await request(`${url}/hello`, { tls: { ca }, token: 'tls-token' })).status, 200);
      },
      false,
    );
  });
});

/** A raw TCP connection to the listener, its bytes gathered; `closed` resolves when the listener ends it. */
function rawConnection(port: number): { socket: net.Socket; data: () => string; closed: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, data: () => text, closed };
}

test('a request head that never ends is answered 408 and closed after the head timeout', async () => {
  const listener = await listen({ limits: { headersTimeout: 300, requestTimeout: 300 } });
  try {
    const c = rawConnection((listener.address as { port: number }).port);
    c.socket.write('GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    await c.closed;
    assert.match(c.data(), /^HTTP\/1\.1 408 /);
  } finally {
    await listener.close();
  }
});

test('connections past the cap are dropped; the ones open are served', async () => {
  const listener = await listen({ limits: { maxConnections: 2 } });
  const port = (listener.address as { port: number }).port;
  const open = [rawConnection(port), rawConnection(port)];
  try {
    await Promise.all(open.map((c) => new Promise((r) => c.socket.once('connect', r))));
    // (the listener counts a connection once it has accepted it)
    await waitUntil(() => listener.connections === 2, 'two connections accepted');
    const third = rawConnection(port);
    await third.closed;
    assert.equal(third.data(), '', 'the third connection got nothing');
    open[0].socket.write('GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n');
    await waitUntil(() => open[0].data().includes('hello\n'), 'the first connection served');
    assert.match(open[0].data(), /^HTTP\/1\.1 200 /);
  } finally {
    for (const c of open) c.socket.destroy();
    await listener.close();
  }
});
