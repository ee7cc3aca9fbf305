// zeo.conf for PostgreSQL: RelStorage's own <relstorage> section (after %import relstorage) read as runzeo
// reads it (runzeo's ZEOOptions in the oracle, with RelStorage 4.3 installed, decides what is accepted and
// what each key holds), and zeo-ts's <postgresql> shorthand; both give PostgreSQLOptions. Keys without
// meaning for zeo-ts are accepted and said once as ignored; what zeo-ts cannot do is refused at its line.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  ConfigError,
  parseZConfig,
  serveOptionsToConfig,
  type ServerConfig,
  type StorageConfig,
} from '../../src/server/config.js';
import type { PostgreSQLOptions } from '../../src/storage/postgresql/options.js';
import { interopTest } from '../helpers/oracle.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-config-pg-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const FILE = join(dir, 'zeo.conf');
const ENV: NodeJS.ProcessEnv = { HOME: dir };

const Z = '<zeo>\n  address 8100\n</zeo>\n';
const DSN = "dbname='zodb' user=zeo host=/var/run/postgresql";

function parse(text: string, overrides: string[] = []): ServerConfig {
  return parseZConfig(text, { fileName: FILE, env: ENV, overrides });
}

function storage(text: string, overrides: string[] = []): Extract<StorageConfig, { kind: 'postgresql' }> {
  const s = parse(text, overrides).storages;
  assert.equal(s.length, 1);
  assert.equal(s[0].kind, 'postgresql');
  return s[0];
}

function refuses(text: string, reason: RegExp, line: number | null, overrides: string[] = []): void {
  assert.throws(
    () => parse(text, overrides),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.reason, reason);
      assert.equal(e.line, line, `line of ${e.message}`);
      if (line !== null) assert.equal(e.message, `${FILE}, line ${line}: ${e.reason}`);
      return true;
    },
  );
}

const rel = (keys: string, adapter = `    dsn ${DSN}\n`, header = '<relstorage>'): string =>
  `%import relstorage\n${Z}${header}\n${keys}  <postgresql>\n${adapter}  </postgresql>\n</relstorage>\n`;

const DEFAULTS: PostgreSQLOptions = {
  dsn: DSN,
  readOnly: false,
  createSchema: true,
  keepHistory: true,
  packGc: true,
};

describe('<relstorage> (after %import relstorage)', () => {
  test("RelStorage's keys to PostgreSQLOptions; the storage is named by its section, as runzeo names it", () => {
    assert.deepEqual(storage(rel('')), { kind: 'postgresql', name: '1', options: DEFAULTS, ignored: [] });
    const s = storage(
      rel(
        '  name main database\n  read-only true\n  create-schema false\n  keep-history true\n  pack-gc off\n' +
          '  poll-interval 0.25\n  commit-lock-timeout 10\n  blob-chunk-size 4MB\n  blob-dir /var/zeo/blobs\n',
        `    dsn ${DSN}\n`,
        '<RelStorage Main>',
      ),
    );
    assert.deepEqual(s, {
      kind: 'postgresql',
      name: 'main',
      options: {
        dsn: DSN,
        name: 'main database',
        readOnly: true,
        createSchema: false,
        keepHistory: true,
        packGc: false,
        pollInterval: 0.25,
        commitLockTimeout: 10,
        blobChunkSize: 4 * 1024 * 1024,
        blobDir: '/var/zeo/blobs',
      },
      ignored: [],
    });
    // a URI, an empty DSN (libpq's defaults), -X overrides by section type or name
    assert.equal(
      storage(rel('', '    dsn postgresql://zeo@/zodb?host=/run/pg\n')).options.dsn,
      'postgresql://zeo@/zodb?host=/run/pg',
    );
    assert.equal(storage(rel('', '')).options.dsn, '');
    const o = storage(rel('', `    dsn ${DSN}\n`, '<relstorage main>'), [
      'main/poll-interval=3',
      'main/postgresql/dsn=dbname=other',
    ]).options;
    assert.equal(o.pollInterval, 3);
    assert.equal(o.dsn, 'dbname=other');
  });

  test('keys without meaning for zeo-ts are accepted and listed once, with where they are, to be logged', () => {
    const s = storage(
      rel(
        '  cache-local-mb 100\n  cache-servers a:1 b:2\n  replica-conf /etc/replicas\n  revert_when_stale true\n' +
          '  pack-batch-timeout 2\n  poll-interval 0\n  commit-lock-id 3\n  shared-blob-dir false\n  blob-cache-size 1GB\n',
        `    driver psycopg2\n    dsn ${DSN}\n`,
      ),
    );
    assert.deepEqual(s.options, DEFAULTS);
    assert.deepEqual(
      s.ignored.map((i) => i.slice(0, i.indexOf(')') + 1)),
      [
        `poll-interval (${FILE}, line 11)`,
        `driver (${FILE}, line 16)`,
        `blob-cache-size (${FILE}, line 14)`,
        `replica-conf (${FILE}, line 8)`,
        `revert_when_stale (${FILE}, line 9)`,
        `pack-batch-timeout (${FILE}, line 10)`,
        `cache-servers (${FILE}, line 7)`,
        `cache-local-mb (${FILE}, line 6)`,
        `commit-lock-id (${FILE}, line 12)`,
      ],
    );
    assert.match(s.ignored[1], /: zeo-ts connects with node-postgres$/);
    assert.match(s.ignored[7], /: RelStorage's caches are its clients'; ZEO clients have their own$/);
  });

  test('what zeo-ts cannot serve is refused at its line, saying why', () => {
    refuses(
      rel('  keep-history false\n'),
      /^keep-history false: zeo-ts serves RelStorage's history-preserving schema only/,
      6,
    );
    refuses(rel('  shared-blob-dir true\n'), /^shared-blob-dir true: zeo-ts keeps blobs in the database/, 6);
    refuses(rel('  pack-prepack-only yes\n'), /^pack-prepack-only true: /, 6);
    refuses(rel('  poll-interval -1\n'), /^poll-interval -1: must be a number of seconds, 0 or more$/, 6);
    refuses(rel('  commit-lock-timeout -1\n'), /^commit-lock-timeout -1: must be a number of seconds/, 6);
    refuses(rel('  blob-chunk-size 0\n'), /^blob-chunk-size 0: must be more than 0 bytes$/, 6);
    refuses(
      `%import relstorage\n${Z}<relstorage>\n  name x\n</relstorage>\n`,
      /^<relstorage> needs its database adapter: a <postgresql> section with the dsn$/,
      5,
    );
    refuses(
      `%import relstorage\n${Z}<relstorage>\n  <mysql>\n  </mysql>\n</relstorage>\n`,
      /^<mysql> \(RelStorage on MySQL\) is not supported by zeo-ts/,
      6,
    );
    refuses(
      `%import relstorage\n${Z}<relstorage>\n  <sqlite3>\n  </sqlite3>\n</relstorage>\n`,
      /^<sqlite3> \(RelStorage on SQLite\) is not supported by zeo-ts/,
      6,
    );
    // a DSN libpq refuses, or one node-postgres cannot honour, at the dsn's line
    refuses(
      rel('', "    dsn dbname='zodb\n"),
      /^invalid value for 'dsn': unterminated quoted string in connection info string$/,
      7,
    );
    refuses(
      rel('', '    dsn zodb\n'),
      /^invalid value for 'dsn': missing "=" after "zodb" in connection info string$/,
      7,
    );
    refuses(
      rel('', '    dsn host=a,b dbname=z\n'),
      /^invalid value for 'dsn': host=a,b: several hosts are not supported/,
      7,
    );
    refuses(
      rel('', '    dsn postgresql://h/d?bogus=1\n'),
      /^invalid value for 'dsn': invalid URI query parameter: "bogus"$/,
      7,
    );
    // wrapped: blobs are in the database; zlib is for FileStorage
    refuses(
      `%import relstorage\n${Z}<blobstorage>\n blob-dir /b\n <relstorage>\n  <postgresql>\n  </postgresql>\n </relstorage>\n</blobstorage>\n`,
      /^a <blobstorage> around <relstorage>: RelStorage keeps blobs in the database; give its blob-dir instead$/,
      7,
    );
  });

  test("ZConfig's refusals, as runzeo's", () => {
    refuses(rel('  pool-size 3\n'), /^'pool-size' is not a known key name$/, 6);
    refuses(rel('', `    dsn ${DSN}\n    pool-size 3\n`), /^'pool-size' is not a known key name$/, 8);
    refuses(
      rel('  read-only maybe\n'),
      /^invalid value for 'read-only': not a valid boolean value: 'maybe'$/,
      6,
    );
    refuses(
      rel('  commit-lock-timeout 1.5\n'),
      /^invalid value for 'commit-lock-timeout': invalid literal for int\(\)/,
      6,
    );
    refuses(
      `${Z}<relstorage>\n  <postgresql>\n  </postgresql>\n</relstorage>\n`,
      /^unknown type name: 'relstorage'$/,
      4,
    );
    refuses(
      rel('', `    dsn ${DSN}\n  </postgresql>\n  <postgresql>\n`),
      /^too many instances of 'postgresql' section$/,
      9,
    );
    // with RelStorage's component, <postgresql> is its adapter, not a storage
    refuses(
      `%import relstorage\n${Z}<postgresql>\n  dsn ${DSN}\n</postgresql>\n`,
      /^no matching section defined for type='postgresql'/,
      5,
    );
  });
});

describe("zeo-ts's <postgresql>", () => {
  test("dsn, RelStorage's keys and pool-size in one section", () => {
    assert.deepEqual(storage(`${Z}<postgresql>\n  dsn ${DSN}\n</postgresql>\n`), {
      kind: 'postgresql',
      name: '1',
      options: DEFAULTS,
      ignored: [],
    });
    assert.deepEqual(
      storage(
        `${Z}<postgresql pg>\n  dsn ${DSN}\n  pool-size 8\n  poll-interval 2\n  commit-lock-timeout 5\n  read-only on\n  blob-dir /b\n  name zodb\n  driver pg8000\n</postgresql>\n`,
      ),
      {
        kind: 'postgresql',
        name: 'pg',
        options: {
          ...DEFAULTS,
          readOnly: true,
          name: 'zodb',
          pollInterval: 2,
          commitLockTimeout: 5,
          blobDir: '/b',
          poolSize: 8,
        },
        ignored: [`driver (${FILE}, line 12): zeo-ts connects with node-postgres`],
      },
    );
    refuses(
      `${Z}<postgresql>\n  dsn ${DSN}\n  pool-size 0\n</postgresql>\n`,
      /^invalid value for 'pool-size': 0 is below lower bound \(1\)$/,
      6,
    );
    refuses(`${Z}<postgresql>\n  keep-history false\n</postgresql>\n`, /^keep-history false: /, 5);
    refuses(
      `${Z}<postgresql>\n  dsn port=0\n</postgresql>\n`,
      /^invalid value for 'dsn': invalid port number: "0"$/,
      5,
    );
    refuses(
      `${Z}<postgresql>\n  <postgresql>\n  </postgresql>\n</postgresql>\n`,
      /^no matching section defined for type='postgresql'/,
      5,
    );
  });

  test('beside other storages, and from `zeo serve -C`', () => {
    writeFileSync(
      FILE,
      `${Z}<filestorage fs>\n  path ${dir}/Data.fs\n</filestorage>\n<postgresql pg>\n  dsn ${DSN}\n</postgresql>\n`,
    );
    const c = serveOptionsToConfig({ configure: FILE, override: ['pg/pool-size=2'] }, ENV);
    assert.deepEqual(
      c.storages.map((s) => [s.kind, s.name]),
      [
        ['filestorage', 'fs'],
        ['postgresql', 'pg'],
      ],
    );
    assert.equal((c.storages[1] as Extract<StorageConfig, { kind: 'postgresql' }>).options.poolSize, 2);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The oracle: runzeo's ZEOOptions, with RelStorage's component, on the same files

const HARNESS = `
import logging
from ZEO.runzeo import ZEOOptions

class _Usage(Exception):
    pass

def _realize(path, overrides):
    root = logging.getLogger()
    handlers = root.handlers[:]
    o = ZEOOptions()
    def usage(msg):
        raise _Usage(str(msg))
    o.usage = usage
    argv = ['-C', path]
    for x in overrides:
        argv += ['-X', x]
    try:
        o.realize(argv, progname='runzeo')
    except _Usage as e:
        return {'refused': str(e)}
    except Exception as e:
        return {'refused': '%s: %s' % (type(e).__name__, e)}
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
    out = []
    for s in o.storages:
        c = s.config
        if type(s).__name__ != 'RelStorageFactory':
            out.append({'kind': type(s).__name__, 'name': s.name})
            continue
        keys = {k: getattr(c, k) for k in c.getSectionAttributes() if k != 'adapter'}
        a = c.adapter
        out.append({'kind': 'relstorage', 'name': s.name, 'keys': keys,
                    'adapter': None if a is None else {'type': a.config.getSectionType(), 'dsn': getattr(a.config, 'dsn', None), 'driver': a.config.driver}})
    return {'storages': out}

result = [_realize(c['path'], c['overrides']) for c in args]
`;

interface PyStorage {
  kind: string;
  name: string | null;
  keys?: Record<string, unknown>;
  adapter?: { type: string; dsn: string; driver: string } | null;
}

/** What RelStorage's section holds, as PostgreSQLOptions (the mapping config.ts documents). */
function optionsFromRelStorage(s: PyStorage): PostgreSQLOptions {
  const k = s.keys!;
  const o: PostgreSQLOptions = {
    dsn: s.adapter!.dsn,
    readOnly: k.read_only as boolean,
    createSchema: k.create_schema as boolean,
    keepHistory: k.keep_history as boolean,
    packGc: k.pack_gc as boolean,
  };
  if (k.name !== null) o.name = k.name as string;
  if (k.poll_interval !== null && (k.poll_interval as number) > 0) o.pollInterval = k.poll_interval as number;
  if (k.commit_lock_timeout !== null) o.commitLockTimeout = k.commit_lock_timeout as number;
  if (k.blob_chunk_size !== null) o.blobChunkSize = k.blob_chunk_size as number;
  if (k.blob_dir) o.blobDir = k.blob_dir as string;
  return o;
}

interface Case {
  name: string;
  text: string;
  overrides?: string[];
}

async function runBoth(
  oracle: Parameters<Parameters<typeof interopTest>[1]>[0],
  cases: Case[],
): Promise<
  Array<{ c: Case; py: { refused?: string; storages?: PyStorage[] }; ours: ServerConfig | ConfigError }>
> {
  const paths = cases.map((c, i) => {
    const p = join(dir, `case-${i}.conf`);
    writeFileSync(p, c.text);
    return p;
  });
  const py = await oracle.json<Array<{ refused?: string; storages?: PyStorage[] }>>(
    HARNESS,
    undefined,
    cases.map((c, i) => ({ path: paths[i], overrides: c.overrides ?? [] })),
  );
  return cases.map((c, i) => {
    let ours: ServerConfig | ConfigError;
    try {
      ours = serveOptionsToConfig({ configure: paths[i], override: c.overrides }, ENV);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      ours = e;
    }
    return { c, py: py[i], ours };
  });
}

const EVERY_KEY =
  '  name every key\n  read-only on\n  blob-dir /var/zeo/blobs\n  shared-blob-dir false\n  blob-cache-size 10MB\n' +
  '  blob-cache-size-check 20\n  blob-cache-size-check-external yes\n  blob-chunk-size 2mb\n  keep-history true\n' +
  '  replica-conf /etc/r.conf\n  ro-replica-conf /etc/ro.conf\n  replica-timeout 30\n  revert_when_stale true\n' +
  '  poll-interval 1.5\n  pack-gc false\n  pack-prepack-only false\n  pack-skip-prepack true\n  pack-batch-timeout 2.5\n' +
  '  pack-commit-busy-delay 1\n  cache-servers 127.0.0.1:11211\n  cache-module-name relstorage.pylibmc_wrapper\n' +
  '  cache-prefix zodb\n  cache-local-mb 50\n  cache-local-storage relstorage.cache.x\n  cache-local-dir /tmp/c\n' +
  '  cache-local-dir-count 3\n  cache-local-dir-read-count 2\n  cache-local-dir-compress no\n' +
  '  cache-local-dir-write-max-size 1GB\n  cache-local-object-max 16kb\n  cache-local-compression zlib\n' +
  '  cache-delta-size-limit 1000\n  commit-lock-timeout 45\n  commit-lock-id 7\n  create-schema false\n';

interopTest(
  'runzeo (with RelStorage) and zeo serve read the same <relstorage> files the same way',
  async (oracle) => {
    const accepted: Case[] = [
      { name: 'minimal', text: rel('') },
      {
        name: 'every key',
        text: rel(EVERY_KEY, `    driver psycopg2\n    dsn ${DSN}\n`, '<relstorage main>'),
      },
      {
        name: 'case and a URI',
        text: `%import relstorage\n${Z}<RelStorage Main>\n  Poll-Interval 2\n  READ-ONLY True\n  <PostgreSQL>\n    DSN postgresql://zeo@/zodb?host=/run/pg\n  </PostgreSQL>\n</RelStorage>\n`,
      },
      { name: 'empty dsn', text: rel('', '') },
      {
        name: 'named adapter',
        text: rel('', `    dsn ${DSN}\n`).replace('  <postgresql>', '  <postgresql db>'),
      },
      {
        name: 'beside a filestorage',
        text: `%import relstorage\n${Z}<filestorage fs>\n  path ${dir}/x.fs\n</filestorage>\n<relstorage 2>\n  <postgresql>\n    dsn ${DSN}\n  </postgresql>\n</relstorage>\n`,
      },
    ];
    for (const { c, py, ours } of await runBoth(oracle, accepted)) {
      assert.equal(py.refused, undefined, `${c.name}: runzeo refused: ${py.refused}`);
      assert.ok(
        !(ours instanceof ConfigError),
        `${c.name}: we refused: ${ours instanceof ConfigError ? ours.message : ''}`,
      );
      const theirs = py.storages!;
      assert.deepEqual(
        ours.storages.map((s) => s.name),
        theirs.map((s) => s.name ?? '1'),
        c.name,
      );
      theirs.forEach((t, i) => {
        const s = ours.storages[i];
        if (t.kind !== 'relstorage') return;
        assert.equal(s.kind, 'postgresql', c.name);
        assert.equal(t.adapter!.type, 'postgresql');
        assert.deepEqual(s.options, optionsFromRelStorage(t), c.name);
      });
    }

    const refusedByBoth: Case[] = [
      { name: 'unknown key', text: rel('  pool-size 3\n') },
      { name: 'unknown adapter key', text: rel('', `    dsn ${DSN}\n    user zeo\n`) },
      { name: 'bad boolean', text: rel('  read-only maybe\n') },
      { name: 'bad float', text: rel('  poll-interval soon\n') },
      { name: 'bad integer', text: rel('  commit-lock-timeout 1.5\n') },
      { name: 'bad byte-size', text: rel('  blob-chunk-size 1TB\n') },
      { name: 'no import', text: `${Z}<relstorage>\n  <postgresql>\n  </postgresql>\n</relstorage>\n` },
      { name: 'two adapters', text: rel('', `    dsn ${DSN}\n  </postgresql>\n  <postgresql>\n`) },
      {
        name: 'shorthand after import',
        text: `%import relstorage\n${Z}<postgresql>\n  dsn ${DSN}\n</postgresql>\n`,
      },
    ];
    for (const { c, py, ours } of await runBoth(oracle, refusedByBoth)) {
      assert.ok(py.refused !== undefined, `${c.name}: runzeo accepted it`);
      assert.ok(ours instanceof ConfigError, `${c.name}: we accepted it (runzeo: ${py.refused})`);
    }

    // refused by zeo-ts only (RelStorage would fail when it opens the storage, or serve what zeo-ts cannot)
    const refusedByUs: Case[] = [
      { name: 'history-free', text: rel('  keep-history false\n') },
      { name: 'shared blob dir', text: rel('  shared-blob-dir true\n') },
      { name: 'prepack only', text: rel('  pack-prepack-only true\n') },
      { name: 'no adapter', text: `%import relstorage\n${Z}<relstorage>\n</relstorage>\n` },
      { name: 'mysql', text: `%import relstorage\n${Z}<relstorage>\n  <mysql>\n  </mysql>\n</relstorage>\n` },
      { name: 'bad dsn', text: rel('', '    dsn zodb\n') },
    ];
    for (const { c, py, ours } of await runBoth(oracle, refusedByUs)) {
      assert.equal(py.refused, undefined, `${c.name}: runzeo refused: ${py.refused}`);
      assert.ok(ours instanceof ConfigError, `${c.name}: we accepted it`);
    }

    // accepted by zeo-ts only: runzeo's ZConfig cannot find an %imported section type for a -X override
    // ("unknown type name: 'relstorage'"); zeo-ts applies it
    const acceptedByUs: Case[] = [
      {
        name: 'overrides',
        text: rel('', `    dsn ${DSN}\n`, '<relstorage main>'),
        overrides: ['main/poll-interval=3', 'relstorage/create-schema=false', 'main/postgresql/dsn=dbname=x'],
      },
    ];
    for (const { c, py, ours } of await runBoth(oracle, acceptedByUs)) {
      assert.match(py.refused ?? '', /unknown type name: 'relstorage'/, c.name);
      assert.ok(!(ours instanceof ConfigError), `${c.name}: we refused it`);
      const o = (ours.storages[0] as Extract<StorageConfig, { kind: 'postgresql' }>).options;
      assert.deepEqual(o, { ...DEFAULTS, dsn: 'dbname=x', createSchema: false, pollInterval: 3 });
    }
  },
);
