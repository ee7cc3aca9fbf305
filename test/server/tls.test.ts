// `zeo serve` with TLS (zeo.conf <ssl>: certificate, key, authenticate = a CA file or a CA directory), as
// runzeo serves it (spec §7.6): client certificates are required and checked against the CA, strictly (ZEO
// sets VERIFY_X509_STRICT, and CRL leaf checks when the CA file holds CRLs). Certificates are made with the
// openssl CLI in a temp dir; servers listen on 127.0.0.1 port 0; clients are Python's ClientStorage with an
// ssl context (and raw Node TLS sockets for single handshakes).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { fixturesDir } from '../helpers/corpus.js';
import { noOpenssl } from '../helpers/openssl.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';
import { freePort, logRecords, ServerProcess, sleep, stopLeftovers } from '../helpers/server-process.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-tls-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const openssl = noOpenssl === false;

// ---------------------------------------------------------------------------------------------------------
// Certificates

const p = (name: string): string => join(dir, name);

function ossl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function key(name: string): void {
  ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', p(name));
}

function caCert(name: string, cn: string): void {
  key(`${name}.key`);
  ossl(
    'req', '-x509', '-new', '-key', p(`${name}.key`), '-out', p(`${name}.pem`), '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ); // prettier-ignore
}

let serial = 100;
function signed(name: string, cn: string, ca: string, ext: string): void {
  key(`${name}.key`);
  ossl('req', '-new', '-key', p(`${name}.key`), '-subj', `/CN=${cn}`, '-out', p(`${name}.csr`));
  writeFileSync(p(`${name}.ext`), ext);
  ossl(
    'x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${ca}.pem`), '-CAkey', p(`${ca}.key`),
    '-set_serial', String(serial++), '-days', '2', '-extfile', p(`${name}.ext`), '-out', p(`${name}.pem`),
  ); // prettier-ignore
}

const CLIENT_EXT =
  'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' +
  'subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n';

let caHash = '';

before(() => {
  if (!openssl) return;
  caCert('ca', 'zeo-ts test CA');
  caCert('other-ca', 'another CA');
  signed(
    'server',
    'localhost',
    'ca',
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' +
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  );
  signed('client', 'good client', 'ca', CLIENT_EXT);
  signed('intruder', 'intruder', 'other-ca', CLIENT_EXT);
  // a self-signed client certificate
  key('self.key');
  ossl(
    'req',
    '-x509',
    '-new',
    '-key',
    p('self.key'),
    '-out',
    p('self.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=self',
  );
  // signed by the CA but not valid under VERIFY_X509_STRICT: no authority key identifier
  signed(
    'lax',
    'lax client',
    'ca',
    CLIENT_EXT.replace('subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n', '') +
      'subjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n',
  );
  // signed by the CA, then revoked in a CRL that the CA file carries
  signed('revoked', 'revoked client', 'ca', CLIENT_EXT);
  mkdirSync(p('cadb'));
  writeFileSync(p('cadb/index.txt'), '');
  writeFileSync(p('cadb/crlnumber'), '1000\n');
  writeFileSync(
    p('ca.cnf'),
    `[ ca ]\ndefault_ca = test\n[ test ]\ndatabase = ${p('cadb/index.txt')}\ncrlnumber = ${p('cadb/crlnumber')}\n` +
      'default_md = sha256\ndefault_crl_days = 2\n',
  );
  const ca = ['-config', p('ca.cnf'), '-keyfile', p('ca.key'), '-cert', p('ca.pem')];
  ossl('ca', ...ca, '-revoke', p('revoked.pem'));
  ossl('ca', ...ca, '-gencrl', '-out', p('crl.pem'));
  writeFileSync(p('ca+crl.pem'), readFileSync(p('ca.pem'), 'utf8') + readFileSync(p('crl.pem'), 'utf8'));
  // a CA directory as OpenSSL's capath reads it: <subject hash>.0; other files are not looked at
  caHash = execFileSync('openssl', ['x509', '-hash', '-noout', '-in', p('ca.pem')], {
    encoding: 'utf8',
  }).trim();
  mkdirSync(p('cas'));
  copyFileSync(p('ca.pem'), p(`cas/${caHash}.0`));
  writeFileSync(p('cas/README.txt'), 'the CAs whose clients this server accepts\n');
  // not under its hash name: runzeo never finds it there
  copyFileSync(p('other-ca.pem'), p('cas/other-ca.pem'));
});

// ---------------------------------------------------------------------------------------------------------
// A `zeo serve -C zeo.conf` child with an <ssl> section

class Server extends ServerProcess {
  /** `zeo serve`, or the reference (runzeo, which logs port 0 when given 0: it gets a free port instead) */
  constructor(name: string, authenticate: string, runzeoPort: number | null = null) {
    const conf = p(`${name}.conf`);
    writeFileSync(
      conf,
      `<zeo>\n  address 127.0.0.1:${runzeoPort ?? 0}\n  <ssl>\n    certificate ${p('server.pem')}\n` +
        `    key ${p('server.key')}\n    authenticate ${authenticate}\n  </ssl>\n</zeo>\n` +
        `<filestorage 1>\n  path ${p(`${name}.fs`)}\n</filestorage>\n`,
    );
    super({ kind: runzeoPort === null ? 'zeo-ts' : 'runzeo', conf, env: { ZEO_MSGPACK: '' } });
  }

  /** The log records (runzeo's "------\n" separated format). */
  records(): string[] {
    return logRecords(this.stderr);
  }

  tlsFailures(): string[] {
    // what ZEO.asyncio.server logs besides listening and accepted handshakes
    return this.records().filter((r) =>
      /^\S+ \w+ ZEO\.asyncio\.server (?!received handshake|listening on)/.test(r),
    );
  }
}

after(stopLeftovers);

function py<T>(oracle: Oracle, call: string, args: unknown = null): Promise<T> {
  return oracle.json<T>(
    `import sys\nif ${JSON.stringify(fixturesDir)} not in sys.path: sys.path.insert(0, ${JSON.stringify(fixturesDir)})\n` +
      `import zeo_tls_client as c\nresult = c.${call}`,
    undefined,
    args,
  );
}

type Root = Record<string, { i: number; text: string }>;
type Refusal = { refused: boolean; error?: string; seconds: number };

/** A Python client with the certificate `name` (or none, or no TLS at all) tries to connect for 2 s. */
function tryClient(oracle: Oracle, port: number, name: string | null, plain = false): Promise<Refusal> {
  return py<Refusal>(oracle, 'refused(args[0], args[1], args[2], args[3], wait=2.0, plain=args[4])', [
    port,
    p('ca.pem'),
    name && p(`${name}.pem`),
    name && p(`${name}.key`),
    plain,
  ]);
}

/** One raw TLS handshake: what the client gets (the server's first frame, or the error) before the server closes. */
async function handshake(
  port: number,
  cert: string | null,
): Promise<{ frame: string | null; error: string | null; protocol: string | null }> {
  const sock = tls.connect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: readFileSync(p('ca.pem')),
    cert: cert ? readFileSync(p(`${cert}.pem`)) : undefined,
    key: cert ? readFileSync(p(`${cert}.key`)) : undefined,
  });
  let data = Buffer.alloc(0);
  let protocol: string | null = null;
  const error = await new Promise<string | null>((r) => {
    sock.on('secureConnect', () => (protocol = sock.getProtocol()));
    sock.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (data.length >= 4 && data.length >= 4 + data.readUInt32BE(0)) r(null);
    });
    sock.on('error', (e: Error) => r(e.message));
    sock.on('close', () => r('closed'));
    sock.setTimeout(10_000, () => r('timeout'));
  });
  sock.destroy();
  const frame = data.length >= 4 ? data.subarray(4, 4 + data.readUInt32BE(0)).toString('latin1') : null;
  return { frame, error: frame ? null : error, protocol };
}

// ---------------------------------------------------------------------------------------------------------

interopTest(
  'authenticate a CA file: a client with a CA-signed certificate commits and reads; others are refused',
  async (oracle, t) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const server = new Server('cafile', p('ca.pem'));
    try {
      const port = await server.port();
      const good = [port, p('ca.pem'), p('client.pem'), p('client.key')];
      const first = await py<{ root: Root; last: string }>(
        oracle,
        'open_client("good", args[0], args[1], args[2], args[3])',
        good,
      );
      assert.deepEqual(first.root, { good: { i: 0, text: 'héllo 0' } });

      // refused while the good client stays connected: another CA, self-signed, no certificate, no TLS
      for (const [who, cert, plain] of [
        ['a certificate from another CA', 'intruder', false],
        ['a self-signed certificate', 'self', false],
        ['no certificate', null, false],
        ['no TLS', null, true],
      ] as const) {
        // a repeated refusal from one address is logged at most once a second
        await sleep(1100);
        const before = server.tlsFailures().length;
        const r = await tryClient(oracle, port, cert, plain);
        assert.equal(r.refused, true, `a client with ${who} is refused`);
        assert.equal(r.error, 'ClientDisconnected');
        if (!plain) assert.ok(server.tlsFailures().length > before, `the refusal of ${who} is logged`);
        assert.equal(server.exit, null, 'the server keeps running');
      }

      // the good client goes on committing, and a new one reads it all
      const second = await py<{ root: Root; last: string }>(oracle, 'commit("good", 1)');
      assert.deepEqual(second.root, { good: { i: 1, text: 'héllo 1' } });
      assert.ok(second.last > first.last);
      assert.deepEqual(await py<Root>(oracle, 'read_all(*args)', good), { good: { i: 1, text: 'héllo 1' } });
      await py(oracle, 'close_client("good")');

      // refusals are warnings of ZEO.asyncio.server; nothing worse was logged
      const failures = server.tlsFailures();
      t.diagnostic(`${failures.length} TLS refusal records; first: ${JSON.stringify(failures[0])}`);
      for (const r of failures) assert.match(r, /^\S+ WARNING ZEO\.asyncio\.server /);
      assert.deepEqual(
        server.records().filter((r) => /^\S+ (ERROR|CRITICAL) /.test(r)),
        [],
      );
    } finally {
      await server.stopCleanly();
    }
  },
  { timeout: 90_000 },
);

interopTest(
  'authenticate a CA directory (hash-named, as OpenSSL capath reads it): the CA-signed client is served',
  async (oracle) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const server = new Server('cadir', p('cas'));
    try {
      const port = await server.port();
      const good = [port, p('ca.pem'), p('client.pem'), p('client.key')];
      const r = await py<{ root: Root }>(
        oracle,
        'open_client("dir", args[0], args[1], args[2], args[3])',
        good,
      );
      assert.deepEqual(r.root, { dir: { i: 0, text: 'héllo 0' } });
      assert.deepEqual((await tryClient(oracle, port, 'self')).refused, true);
      assert.deepEqual((await py<{ root: Root }>(oracle, 'commit("dir", 1)')).root, {
        dir: { i: 1, text: 'héllo 1' },
      });
      await py(oracle, 'close_client("dir")');
    } finally {
      await server.stopCleanly();
    }
  },
  { timeout: 60_000 },
);

test('single TLS handshakes: TLS >= 1.2 and Z5 inside for a good client; a refusal is one log record', async () => {
  if (noOpenssl) throw new Error(noOpenssl);
  const server = new Server('raw', p('ca.pem'));
  try {
    const port = await server.port();
    const ok = await handshake(port, 'client');
    assert.equal(ok.frame, 'Z5');
    assert.ok(ok.protocol === 'TLSv1.3' || ok.protocol === 'TLSv1.2', String(ok.protocol));
    for (const cert of [null, 'intruder', 'self']) {
      // the server logs a repeated refusal from one address at most once a second (see the flood test)
      await sleep(1100);
      const before = server.tlsFailures().length;
      const r = await handshake(port, cert);
      assert.equal(r.frame, null, `no Z5 for ${cert ?? 'no certificate'}`);
      const deadline = Date.now() + 5000;
      while (server.tlsFailures().length === before && Date.now() < deadline) await sleep(20);
      await sleep(100);
      assert.equal(
        server.tlsFailures().length,
        before + 1,
        `one record for the refused ${cert ?? 'no cert'}`,
      );
    }
    assert.equal((await handshake(port, 'client')).frame, 'Z5', 'still serving');
  } finally {
    await server.stopCleanly();
  }
});

test('a refused handshake is logged on one line', async () => {
  if (noOpenssl) throw new Error(noOpenssl);
  const server = new Server('oneline', p('ca.pem'));
  try {
    const port = await server.port();
    await handshake(port, null);
    await handshake(port, 'intruder');
    const deadline = Date.now() + 5000;
    while (server.tlsFailures().length < 2 && Date.now() < deadline) await sleep(20);
    for (const r of server.tlsFailures()) assert.doesNotMatch(r, /\n/, JSON.stringify(r));
  } finally {
    await server.stopCleanly();
  }
});

interopTest(
  'the reference: runzeo serves the CA-signed client and refuses the three below',
  async (oracle) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const dirServer = new Server('runzeo-dir', p('cas'), await freePort());
    const fileServer = new Server('runzeo-crl', p('ca+crl.pem'), await freePort());
    try {
      const [dirPort, filePort] = await Promise.all([dirServer.port(), fileServer.port()]);
      assert.equal((await tryClient(oracle, dirPort, 'client')).refused, false);
      assert.equal((await tryClient(oracle, filePort, 'client')).refused, false);
      const refusals = await Promise.all([
        tryClient(oracle, dirPort, 'intruder'),
        tryClient(oracle, filePort, 'lax'),
        tryClient(oracle, filePort, 'revoked'),
      ]);
      assert.deepEqual(
        refusals.map((r) => r.refused),
        [true, true, true],
      );
    } finally {
      await Promise.all([dirServer.stopCleanly(), fileServer.stopCleanly()]);
    }
  },
  { timeout: 60_000 },
);

// Where zeo serve accepts clients runzeo refuses (each checked against runzeo 6.2 / OpenSSL 3.0: refused there)

interopTest(
  'a CA directory: only hash-named CA files are trusted (a client of a CA stored as other-ca.pem is refused)',
  async (oracle) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const server = new Server('cadir2', p('cas'));
    try {
      const port = await server.port();
      assert.equal((await tryClient(oracle, port, 'client')).refused, false);
      // runzeo: refused (ClientDisconnected); zeo serve trusts every file of the directory
      assert.equal((await tryClient(oracle, port, 'intruder')).refused, true, 'the intruder is refused');
    } finally {
      await server.stopCleanly();
    }
  },
  { timeout: 60_000 },
);

interopTest(
  'strict X.509 checks (VERIFY_X509_STRICT): a CA-signed client certificate without an authority key id is refused',
  async (oracle) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const server = new Server('strict', p('ca.pem'));
    try {
      const port = await server.port();
      assert.equal((await tryClient(oracle, port, 'client')).refused, false);
      assert.equal(
        (await tryClient(oracle, port, 'lax')).refused,
        true,
        'the non-strict certificate is refused',
      );
    } finally {
      await server.stopCleanly();
    }
  },
  { timeout: 60_000 },
);

interopTest(
  'a CA file with a CRL: a revoked client certificate is refused (VERIFY_CRL_CHECK_LEAF)',
  async (oracle) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const server = new Server('crl', p('ca+crl.pem'));
    try {
      const port = await server.port();
      assert.equal((await tryClient(oracle, port, 'client')).refused, false);
      assert.equal(
        (await tryClient(oracle, port, 'revoked')).refused,
        true,
        'the revoked certificate is refused',
      );
    } finally {
      await server.stopCleanly();
    }
  },
  { timeout: 60_000 },
);

interopTest(
  'a refused Python client (it reconnects at once, hundreds of times a second) does not flood the log',
  async (oracle) => {
    if (noOpenssl) throw new Error(noOpenssl);
    const server = new Server('flood', p('ca.pem'));
    try {
      const port = await server.port();
      assert.equal((await tryClient(oracle, port, null)).refused, true);
      await sleep(200);
      // runzeo logs nothing for these; a few lines would do
      const n = server.tlsFailures().length;
      assert.ok(n <= 20, `${n} log records for one client refused for 2 s`);
    } finally {
      await server.stopCleanly();
    }
  },
  { timeout: 60_000 },
);
