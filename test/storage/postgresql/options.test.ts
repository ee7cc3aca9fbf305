// The PostgreSQL storage's DSN: read as libpq reads it (libpq itself, through psycopg2's parse_dsn in the
// oracle, decides what a DSN says and which are refused), turned into node-postgres's settings, and used:
// node-postgres and psycopg2 connect with the same DSN to the same database as the same user.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  defaultSocketDir,
  DsnError,
  parseDsn,
  pgClientConfig,
  postgresqlUrlOptions,
} from '../../../src/storage/postgresql/options.js';
import { interopTest } from '../../helpers/oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from '../../helpers/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-pgopts-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// a HOME without ~/.postgresql, so libpq's default certificate files are absent
const NO_ENV: NodeJS.ProcessEnv = { HOME: join(dir, 'home') };

function refused(f: () => unknown, message: string | RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof DsnError, String(e));
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

// Every libpq 17 keyword (PQconndefaults), and DSNs in both forms, accepted or refused
const LIBPQ_KEYWORDS = [
  'service', 'user', 'password', 'passfile', 'channel_binding', 'connect_timeout', 'dbname', 'host',
  'hostaddr', 'port', 'client_encoding', 'options', 'application_name', 'fallback_application_name',
  'keepalives', 'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout', 'sslmode',
  'sslnegotiation', 'sslcompression', 'sslcert', 'sslkey', 'sslcertmode', 'sslpassword', 'sslrootcert',
  'sslcrl', 'sslcrldir', 'sslsni', 'requirepeer', 'require_auth', 'ssl_min_protocol_version',
  'ssl_max_protocol_version', 'gssencmode', 'krbsrvname', 'gsslib', 'gssdelegation', 'replication',
  'target_session_attrs', 'load_balance_hosts',
]; // prettier-ignore

const DSNS = [
  '',
  '   ',
  'dbname=zodb',
  "host=a  port = 5 dbname='x y\\'z' user=a\\ b",
  "dbname = 'zodb'   user='zeo'\thost='/var/run/postgresql' password='p w\\\\d'",
  "password='' host=h",
  'host=',
  'host=a\\',
  'host=a host=b',
  "application_name='zeo serve' options='-c statement_timeout=0'",
  'dbname=a=b',
  'foo',
  'bar=1',
  "a='",
  "user='abc",
  "user='abc\\",
  '=x',
  'host = ',
  'sslmode=verify-full sslrootcert=system',
  'postgresql://',
  'postgres://',
  'postgresql://h',
  'postgresql:///d',
  'postgresql://u:p%41@[::1]:5/db?host=/tmp&ssl=true',
  'postgresql://h1:1,h2:2/d',
  'postgresql://h/?',
  'postgres://h/d?',
  'postgresql://h:5:6/d',
  'postgresql://[::1]x/d',
  'postgresql://[::1',
  'postgresql://[]/d',
  'postgresql://h/d?x',
  'postgresql://h/d?a=b=c',
  'postgresql://h/%zz',
  'postgresql://h/a%00',
  'postgresql://h/a%4',
  'postgresql://@h/d',
  'postgresql://u:@h',
  'postgresql://:p@h',
  'postgresql://:5/d',
  'postgresql://h?dbname=x&dbname=y',
  'postgresql://h/d?nope=1',
  'postgresql://h/d?application_name=zeo%20serve&&connect_timeout=10',
  'postgresql://h/d?application_name=zeo%20serve&connect_timeout=10&',
  'postgresql://h/d?&a=b',
  'postgresql://h/d?=b',
  'postgresql://%2Fvar%2Frun%2Fpostgresql/zodb',
  'postgresql://user%40x:p%3Aw@h:5433/db%2F1',
  'postgresql://h/d?ssl=false',
  'postgresql://h/d?sslmode=require&sslrootcert=/x',
  'postgresql://u@[fe80::1%25eth0]:5432/d',
  'postgresql://u@[fe80::1%zz]:5432/d',
  'postgresql://h,/d',
  'postgresql://h/d?%68ost=x',
  'POSTGRESQL://h/d',
];

interopTest(
  "parseDsn reads each DSN as libpq does, and refuses what libpq refuses, with libpq's words",
  async (oracle) => {
    const cases = [...DSNS, ...LIBPQ_KEYWORDS.map((k) => `${k}=1`)];
    const py = await oracle.json<Array<{ ok?: Record<string, string>; error?: string }>>(
      `
from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn
result = []
for d in args:
    try:
        result.append({'ok': parse_dsn(d)})
    except ProgrammingError as e:
        result.append({'error': str(e).strip()})
`,
      undefined,
      cases,
    );
    cases.forEach((dsn, i) => {
      const theirs = py[i];
      let ours: Map<string, string> | DsnError;
      try {
        ours = parseDsn(dsn);
      } catch (e) {
        if (!(e instanceof DsnError)) throw e;
        ours = e;
      }
      if (dsn === 'dbname=a=b') {
        // libpq expands a connection string given as dbname when it connects; zeo-ts refuses it
        assert.deepEqual(theirs.ok, { dbname: 'a=b' });
        assert.ok(ours instanceof DsnError && /dbname/.test(ours.message), dsn);
        return;
      }
      if (theirs.error !== undefined) {
        assert.ok(
          ours instanceof DsnError,
          `${JSON.stringify(dsn)}: libpq refuses (${theirs.error}), we read it`,
        );
        assert.equal(`invalid dsn: ${ours.message}`, theirs.error, JSON.stringify(dsn));
      } else {
        assert.ok(
          !(ours instanceof DsnError),
          `${JSON.stringify(dsn)}: we refuse (${ours instanceof DsnError ? ours.message : ''}), libpq reads it`,
        );
        assert.deepEqual(Object.fromEntries(ours), theirs.ok, JSON.stringify(dsn));
      }
    });
  },
);

describe('pgClientConfig', () => {
  test('libpq defaults: the local socket directory, port 5432, the OS user, dbname = user', () => {
    const me = userInfo().username;
    assert.deepEqual(pgClientConfig('', NO_ENV), {
      host: defaultSocketDir(),
      port: 5432,
      user: me,
      database: me,
      ssl: false,
    });
    assert.deepEqual(pgClientConfig('user=zeo', NO_ENV), {
      host: defaultSocketDir(),
      port: 5432,
      user: 'zeo',
      database: 'zeo',
      ssl: false,
    });
  });

  test('both forms give the same settings', () => {
    const kv = pgClientConfig(
      "dbname='zo db' user=zeo password='p@ss w' host=db.example port=6543 application_name=zeo connect_timeout=10 options='-c search_path=rs'",
      NO_ENV,
    );
    const uri = pgClientConfig(
      'postgresql://zeo:p%40ss%20w@db.example:6543/zo%20db?application_name=zeo&connect_timeout=10&options=-c%20search_path%3Drs',
      NO_ENV,
    );
    const expected = {
      host: 'db.example',
      port: 6543,
      user: 'zeo',
      database: 'zo db',
      password: 'p@ss w',
      connectionTimeoutMillis: 10_000,
      application_name: 'zeo',
      options: '-c search_path=rs',
      keepAlive: true,
      ssl: false,
    };
    assert.deepEqual(kv, expected);
    assert.deepEqual(uri, expected);
    // a socket directory: in the URI's query, or percent-encoded as its host
    const sock = { host: '/run/pg', port: 5432, user: 'u', database: 'd', ssl: false };
    assert.deepEqual(pgClientConfig('postgresql://u@/d?host=/run/pg', NO_ENV), sock);
    assert.deepEqual(pgClientConfig('postgresql://u@%2Frun%2Fpg/d', NO_ENV), sock);
    assert.deepEqual(pgClientConfig('host=/run/pg user=u dbname=d', NO_ENV), sock);
    assert.deepEqual(pgClientConfig('postgresql://[::1]:5433/d?user=u', NO_ENV), {
      host: '::1',
      port: 5433,
      user: 'u',
      database: 'd',
      keepAlive: true,
      ssl: false,
    });
  });

  test("libpq's environment variables fill in what the DSN leaves out; an empty value means libpq's default", () => {
    const env = {
      ...NO_ENV,
      PGHOST: '/env/sock',
      PGPORT: '7777',
      PGUSER: 'envuser',
      PGDATABASE: 'envdb',
      PGPASSWORD: 'envpw',
      PGAPPNAME: 'envapp',
      PGCONNECT_TIMEOUT: '5',
    };
    assert.deepEqual(pgClientConfig('', env), {
      host: '/env/sock',
      port: 7777,
      user: 'envuser',
      database: 'envdb',
      password: 'envpw',
      connectionTimeoutMillis: 5000,
      application_name: 'envapp',
      ssl: false,
    });
    const c = pgClientConfig("host=/dsn user=dsnuser dbname='' port=5432", env);
    assert.equal(c.host, '/dsn');
    assert.equal(c.user, 'dsnuser');
    assert.equal(c.database, 'dsnuser'); // given empty: libpq's default (the user), not PGDATABASE
    assert.equal(c.port, 5432);
    refused(
      () => pgClientConfig('', { ...NO_ENV, PGSERVICE: 'mydb' }),
      /^PGSERVICE=mydb \(libpq's service\) is not supported by zeo-ts: .*pg_service\.conf/,
    );
  });

  test('connect_timeout, keepalives and hostaddr as libpq reads them', () => {
    assert.equal(pgClientConfig('host=h connect_timeout=1', NO_ENV).connectionTimeoutMillis, 2000);
    assert.equal(pgClientConfig('host=h connect_timeout=0', NO_ENV).connectionTimeoutMillis, undefined);
    assert.equal(pgClientConfig('host=h connect_timeout=-3', NO_ENV).connectionTimeoutMillis, undefined);
    refused(
      () => pgClientConfig('host=h connect_timeout=ten', NO_ENV),
      'invalid integer value "ten" for connection option "connect_timeout"',
    );
    assert.equal(pgClientConfig('host=h keepalives=0', NO_ENV).keepAlive, false);
    assert.equal(pgClientConfig('host=h keepalives_idle=60', NO_ENV).keepAliveInitialDelayMillis, 60_000);
    // tuning without an equivalent: checked, then without effect
    assert.deepEqual(
      pgClientConfig('host=h keepalives_interval=5 keepalives_count=3 tcp_user_timeout=100 sslsni=0', NO_ENV),
      pgClientConfig('host=h', NO_ENV),
    );
    refused(
      () => pgClientConfig('host=h keepalives_count=many', NO_ENV),
      'invalid integer value "many" for connection option "keepalives_count"',
    );
    // hostaddr is dialled; host names the server (for TLS)
    const c = pgClientConfig('host=db.example hostaddr=10.1.2.3', NO_ENV);
    assert.equal(c.host, '10.1.2.3');
    refused(
      () => pgClientConfig('hostaddr=db.example', NO_ENV),
      'could not parse network address "db.example"',
    );
  });

  test('bad values are refused as libpq refuses them', () => {
    for (const [dsn, message] of [
      ['port=0', 'invalid port number: "0"'],
      ['port=65536', 'invalid port number: "65536"'],
      ['port=54x', 'invalid port number: "54x"'],
      ['postgresql://h:5:6/d', 'invalid port number: "5:6"'],
      ['sslmode=maybe host=h', 'invalid sslmode value: "maybe"'],
      ['channel_binding=always', 'invalid channel_binding value: "always"'],
      ['gssencmode=yes', 'invalid gssencmode value: "yes"'],
      ['target_session_attrs=rw', 'invalid target_session_attrs value: "rw"'],
      ['load_balance_hosts=yes', 'invalid load_balance_hosts value: "yes"'],
      [
        'host=h sslmode=require ssl_min_protocol_version=TLSv2',
        'invalid ssl_min_protocol_version value: "TLSv2"',
      ],
      ['host=h sslnegotiation=fast', 'invalid sslnegotiation value: "fast"'],
    ] as const) {
      refused(() => pgClientConfig(dsn, NO_ENV), message);
    }
  });

  test('what node-postgres cannot honour is refused, saying why, never quietly dropped', () => {
    for (const [dsn, why] of [
      ['host=a,b', /^host=a,b: several hosts are not supported by zeo-ts/],
      ['postgresql://h1:1,h2:2/d', /^host=h1,h2: several hosts/],
      ['host=h port=1,2', /^port=1,2: several hosts/],
      ['service=zodb', /^service=zodb is not supported by zeo-ts: .*pg_service\.conf/],
      ['passfile=/x', /^passfile=\/x is not supported by zeo-ts: .*PGPASSFILE/],
      ['requirepeer=postgres', /^requirepeer=postgres is not supported/],
      ['require_auth=scram-sha-256', /^require_auth=scram-sha-256 is not supported/],
      ['sslcrldir=/x', /^sslcrldir=\/x is not supported/],
      ['replication=true', /^replication=true is not supported/],
      ['channel_binding=require', /^channel_binding=require is not supported by zeo-ts/],
      ['gssencmode=require', /^gssencmode=require is not supported by zeo-ts/],
      ['sslcertmode=require', /^sslcertmode=require is not supported by zeo-ts/],
      ['target_session_attrs=read-write', /^target_session_attrs=read-write is not supported by zeo-ts/],
      ['host=@abstract', /abstract unix sockets are not supported/],
      ['dbname=postgresql://h/d', /a connection string as dbname is not supported/],
    ] as const) {
      refused(() => pgClientConfig(dsn, NO_ENV), why);
    }
    // the values that ask for nothing more are accepted
    for (const dsn of [
      'channel_binding=prefer',
      'channel_binding=disable',
      'gssencmode=prefer',
      'sslcertmode=allow',
      'target_session_attrs=any',
      'load_balance_hosts=random',
      'krbsrvname=pg gsslib=gssapi sslcompression=1',
    ]) {
      assert.deepEqual(pgClientConfig(dsn, NO_ENV), pgClientConfig('', NO_ENV), dsn);
    }
  });

  test('sslmode: disable, allow and prefer connect in the clear, require encrypts, verify-ca and verify-full verify', () => {
    for (const mode of ['disable', 'allow', 'prefer']) {
      assert.equal(pgClientConfig(`host=h sslmode=${mode}`, NO_ENV).ssl, false, mode);
    }
    assert.deepEqual(pgClientConfig('host=h sslmode=require', NO_ENV).ssl, {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: false,
    });
    // a unix socket never uses TLS
    assert.equal(pgClientConfig('host=/run/pg sslmode=require', NO_ENV).ssl, false);
    assert.equal(pgClientConfig('sslmode=verify-full', NO_ENV).ssl, false);

    const certs = join(dir, 'certs');
    mkdirSync(certs, { recursive: true });
    writeFileSync(join(certs, 'ca.pem'), 'CA');
    writeFileSync(join(certs, 'client.crt'), 'CERT');
    writeFileSync(join(certs, 'client.key'), 'KEY');
    writeFileSync(join(certs, 'crl.pem'), 'CRL');
    const ca = Buffer.from('CA');

    // require with a root certificate verifies the chain, as libpq does (verify-ca)
    const req = pgClientConfig(`host=h sslmode=require sslrootcert=${certs}/ca.pem`, NO_ENV).ssl as Record<
      string,
      unknown
    >;
    assert.deepEqual(req.ca, ca);
    assert.equal(req.rejectUnauthorized, true);
    assert.equal(typeof req.checkServerIdentity, 'function');

    const full = pgClientConfig(
      `host=db.example sslmode=verify-full sslrootcert=${certs}/ca.pem sslcert=${certs}/client.crt sslkey=${certs}/client.key sslpassword=pw sslcrl=${certs}/crl.pem ssl_min_protocol_version=TLSv1.3`,
      NO_ENV,
    );
    assert.deepEqual(full.ssl, {
      minVersion: 'TLSv1.3',
      ca,
      rejectUnauthorized: true,
      cert: Buffer.from('CERT'),
      key: Buffer.from('KEY'),
      passphrase: 'pw',
      crl: Buffer.from('CRL'),
    });
    const uri = pgClientConfig(
      `postgresql://db.example/d?sslmode=verify-full&sslrootcert=${encodeURIComponent(`${certs}/ca.pem`)}`,
      NO_ENV,
    ).ssl as Record<string, unknown>;
    assert.deepEqual(uri.ca, ca);
    assert.equal(uri.checkServerIdentity, undefined);

    // verify-ca checks the chain, not the name
    const vca = pgClientConfig(`host=h sslmode=verify-ca sslrootcert=${certs}/ca.pem`, NO_ENV).ssl as Record<
      string,
      unknown
    >;
    assert.equal(vca.rejectUnauthorized, true);
    assert.equal((vca.checkServerIdentity as () => unknown)(), undefined);

    // hostaddr dialled, host checked
    const byAddr = pgClientConfig(
      `host=db.example hostaddr=10.0.0.1 sslmode=verify-full sslrootcert=${certs}/ca.pem`,
      NO_ENV,
    );
    assert.equal(byAddr.host, '10.0.0.1');
    assert.equal((byAddr.ssl as Record<string, unknown>).servername, 'db.example');

    // the system's roots
    assert.deepEqual(pgClientConfig('host=h sslmode=verify-full sslrootcert=system', NO_ENV).ssl, {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
    });
    refused(
      () => pgClientConfig('host=h sslmode=require sslrootcert=system', NO_ENV),
      'weak sslmode "require" may not be used with sslrootcert=system (use "verify-full")',
    );

    // ~/.postgresql/root.crt and postgresql.crt/.key are libpq's defaults
    const home = join(dir, 'home2');
    mkdirSync(join(home, '.postgresql'), { recursive: true });
    refused(
      () => pgClientConfig('host=h sslmode=verify-full', { HOME: home }),
      new RegExp(
        `^root certificate file "${home}/\\.postgresql/root\\.crt" does not exist\\nEither provide the file`,
      ),
    );
    writeFileSync(join(home, '.postgresql', 'root.crt'), 'HOMECA');
    writeFileSync(join(home, '.postgresql', 'postgresql.crt'), 'HOMECERT');
    writeFileSync(join(home, '.postgresql', 'postgresql.key'), 'HOMEKEY');
    assert.deepEqual(pgClientConfig('host=h sslmode=verify-full', { HOME: home }).ssl, {
      minVersion: 'TLSv1.2',
      ca: Buffer.from('HOMECA'),
      rejectUnauthorized: true,
      cert: Buffer.from('HOMECERT'),
      key: Buffer.from('HOMEKEY'),
    });
    refused(
      () => pgClientConfig(`host=h sslmode=require sslcert=${certs}/missing.crt`, NO_ENV),
      new RegExp(`^could not read the file sslcert names \\(${certs}/missing\\.crt\\)`),
    );
    // PGSSLMODE applies as sslmode does
    assert.equal(pgClientConfig('host=h', { ...NO_ENV, PGSSLMODE: 'require' }).ssl instanceof Object, true);
    refused(() => pgClientConfig('host=h sslnegotiation=direct', NO_ENV), /sslnegotiation=direct/);
    assert.equal(
      pgClientConfig('host=h sslmode=require sslnegotiation=direct', NO_ENV).sslnegotiation,
      'direct',
    );
  });
});

describe('postgresqlUrlOptions (zeo copy)', () => {
  test("the storage's options come out of the query, RelStorage's names; the rest is the DSN", () => {
    assert.deepEqual(
      postgresqlUrlOptions(
        'postgresql://zeo@/zodb?host=/run/pg&read_only=1&create-schema=false&keep_history=true&pack_gc=off&poll_interval=0.5&commit_lock_timeout=60&blob_chunk_size=2MB&blob_dir=/b&pool_size=4&name=main&application_name=copy',
      ),
      {
        dsn: 'postgresql://zeo@/zodb?host=/run/pg&application_name=copy',
        readOnly: true,
        createSchema: false,
        keepHistory: true,
        packGc: false,
        pollInterval: 0.5,
        commitLockTimeout: 60,
        blobChunkSize: 2 * 1024 * 1024,
        blobDir: '/b',
        poolSize: 4,
        name: 'main',
      },
    );
    assert.deepEqual(postgresqlUrlOptions('postgres://h/db'), { dsn: 'postgres://h/db' });
    assert.deepEqual(postgresqlUrlOptions('postgres://h/db?read_only=0'), {
      dsn: 'postgres://h/db',
      readOnly: false,
    });
  });

  test('bad values and unknown parameters are refused', () => {
    refused(
      () => postgresqlUrlOptions('postgresql://h/d?read_only=maybe'),
      `invalid value for read_only "maybe": not a valid boolean value: 'maybe'`,
    );
    refused(
      () => postgresqlUrlOptions('postgresql://h/d?pool_size=0'),
      'invalid value for pool_size "0": pool_size must be more than 0',
    );
    refused(
      () => postgresqlUrlOptions('postgresql://h/d?poll_interval=soon'),
      /^invalid value for poll_interval "soon"/,
    );
    refused(
      () => postgresqlUrlOptions('postgresql://h/d?cache_local_mb=10'),
      'invalid URI query parameter: "cache_local_mb"',
    );
    refused(() => postgresqlUrlOptions('dbname=x'), 'not a postgresql:// URL: dbname=x');
  });
});

describe('a DSN connects node-postgres where it connects libpq', { skip: skipPostgres }, () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgres();
    const admin = new pg.Client(cluster.connection());
    await admin.connect();
    await admin.query('CREATE DATABASE "zodb one"');
    await admin.end();
  });
  after(() => cluster?.stop());

  const dsns = (): string[] => [
    `dbname='zodb one' user=zeo host='${cluster.socketDir}' port=${cluster.port} application_name='zeo test' options='-c search_path=zeo_ts'`,
    `postgresql://zeo@${encodeURIComponent(cluster.socketDir)}:${cluster.port}/zodb%20one?application_name=zeo%20test&options=-c%20search_path%3Dzeo_ts`,
    `postgresql:///zodb%20one?host=${cluster.socketDir}&user=zeo&application_name=zeo%20test&options=-csearch_path%3Dzeo_ts`,
  ];
  const QUERY =
    "SELECT current_database() AS db, current_user AS usr, current_setting('application_name') AS app, current_setting('search_path') AS path";

  test('node-postgres, with pgClientConfig', async () => {
    for (const dsn of dsns()) {
      const c = new pg.Client(pgClientConfig(dsn, NO_ENV));
      await c.connect();
      try {
        const r = await c.query<Record<string, string>>(QUERY);
        assert.deepEqual(r.rows[0], { db: 'zodb one', usr: 'zeo', app: 'zeo test', path: 'zeo_ts' }, dsn);
      } finally {
        await c.end();
      }
    }
  });

  interopTest('psycopg2 (libpq), with the same DSNs', async (oracle) => {
    const rows = await oracle.json<Array<Record<string, string>>>(
      `
import psycopg2, psycopg2.extras
result = []
for dsn in args:
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        cur.execute(${JSON.stringify(QUERY)})
        result.append(dict(cur.fetchone()))
    finally:
        conn.close()
`,
      undefined,
      dsns(),
    );
    for (const r of rows)
      assert.deepEqual(r, { db: 'zodb one', usr: 'zeo', app: 'zeo test', path: 'zeo_ts' });
  });
});
