// The ZConfig reader against ZConfig itself: a schema given as data here and as schema XML to the oracle's
// ZConfig, the same configuration texts read by both: the same values when ZConfig accepts, its reason (and
// line) when it refuses. Our reasons for a value a datatype refuses add "invalid value for 'KEY': ".
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  boolean,
  byteSize,
  ConfigError,
  float,
  key,
  portNumber,
  readConfig,
  socketConnectionAddress,
  string,
  timeInterval,
  type Schema,
  type SectionValue,
  ZODB_CONFIG_SCHEMA,
} from '../../src/zconfig/index.js';
import { interopTest, type Oracle } from '../helpers/oracle.js';

const SCHEMA_XML = `<schema>
  <abstracttype name="thing"/>
  <sectiontype name="box" implements="thing">
    <key name="size" datatype="byte-size" default="1KB"/>
    <multikey name="tag" attribute="tag"/>
    <key name="wait" datatype="time-interval"/>
    <key name="on" datatype="boolean" required="yes"/>
    <key name="where" datatype="socket-connection-address"/>
  </sectiontype>
  <sectiontype name="crate" implements="thing">
    <multisection type="thing" name="*" attribute="inner"/>
  </sectiontype>
  <sectiontype name="label">
    <key name="text"/>
  </sectiontype>
  <key name="port" datatype="port-number" default="8100"/>
  <key name="ratio" datatype="float"/>
  <multisection type="thing" name="+" attribute="things" required="yes"/>
  <section type="label" name="*" attribute="label"/>
</schema>`;

const SCHEMA: Schema = {
  top: {
    name: '(top level)',
    keys: [key('port', (v) => portNumber(v, null), { default: '8100' }), key('ratio', float)],
    sections: [
      { type: 'thing', attr: 'things', name: '+', required: true, multi: true },
      { type: 'label', attr: 'label' },
    ],
  },
  types: [
    {
      name: 'box',
      implements: 'thing',
      keys: [
        key('size', byteSize, { default: '1KB' }),
        key('tag', string, { multi: true }),
        key('wait', timeInterval),
        key('on', boolean, { required: true }),
        key('where', socketConnectionAddress),
      ],
      sections: [],
    },
    {
      name: 'crate',
      implements: 'thing',
      keys: [],
      sections: [{ type: 'thing', attr: 'inner', multi: true }],
    },
    { name: 'label', keys: [key('text', string)], sections: [] },
  ],
  abstractTypes: ['thing'],
  packages: {},
  unknownPackage: (pkg) => `no package ${pkg}`,
};

/** A section as both sides describe it. */
interface Summary {
  type: string;
  name: string | null;
  keys: Record<string, unknown>;
  sections: Record<string, Summary | Summary[] | null>;
}

type Address = { family?: string; host?: string; port?: number | null; path?: string } | null;
const addressValue = (a: Address): unknown =>
  a && typeof a === 'object' && 'family' in a ? (a.family === 'unix' ? a.path : [a.host, a.port]) : a;

function summary(sv: SectionValue): Summary {
  const keys: Record<string, unknown> = {};
  for (const [k, v] of sv.keys) {
    keys[k] = Array.isArray(v) ? v.map((x) => addressValue(x as Address)) : addressValue(v as Address);
  }
  const sections: Summary['sections'] = {};
  for (const [k, v] of sv.sections) sections[k] = Array.isArray(v) ? v.map(summary) : v && summary(v);
  return { type: sv.type, name: sv.name, keys, sections };
}

type Outcome = { ok: Summary } | { error: string; line: number | null; conversion: boolean };

const ORACLE = `
import io, os, ZConfig, ZODB.config
os.environ['ZCTEST_VALUE'] = 'from-env'
if args['schema'] == 'ZODB':
    schema = ZODB.config.getDbSchema()
else:
    schema = ZConfig.loadSchemaFile(io.StringIO(args['schema']))
def value(v):
    if hasattr(v, 'family'):
        return value(v.address)
    return [value(x) for x in v] if isinstance(v, (list, tuple)) else v
def section(x):
    # a section's datatype (ZODB's openers) keeps the section as .config
    x = getattr(x, 'config', x)
    return summary(x, x.getSectionDefinition())
def summary(s, st, top=False):
    keys, sections = {}, {}
    for k, info in st:
        v = getattr(s, info.attribute)
        if info.issection():
            sections[info.attribute] = [section(x) for x in v] if isinstance(v, list) else v and section(v)
        else:
            keys[k] = value(v)
    if top:
        return {'type': '(top level)', 'name': None, 'keys': keys, 'sections': sections}
    return {'type': s.getSectionType(), 'name': s.getSectionName(), 'keys': keys, 'sections': sections}
def run(text):
    try:
        c, _ = ZConfig.loadConfigFile(schema, io.StringIO(text))
    except ZConfig.ConfigurationError as e:
        return {'error': e.message, 'line': getattr(e, 'lineno', None),
                'conversion': isinstance(e, ZConfig.DataConversionError)}
    return {'ok': summary(c, schema, True)}
result = [run(t) for t in args['texts']]
`;

function ours(text: string, schema: Schema): Outcome {
  try {
    return { ok: summary(readConfig(text, schema, { env: { ZCTEST_VALUE: 'from-env' } })) };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const conv = /^invalid value for '[^']*': /.exec(e.reason);
    return { error: conv ? e.reason.slice(conv[0].length) : e.reason, line: e.line, conversion: !!conv };
  }
}

const BOX = '<box a>\n on yes\n</box>\n';

/**
 * How the line is compared: 'same'; 'start' where ZConfig names the line that ends a section and we the line
 * that starts it (a missing key, a section name or slot used twice); 'ours' where ZConfig names no line (its
 * substitution errors) and we do.
 */
type LineRule = 'same' | 'start' | 'ours';

const CASES: Array<[string, LineRule]> = [
  [
    '%define base 10\nport 9$base\nratio 0.5\n<box a>\n on Yes\n size 2MB\n tag x\n tag $$y\n wait 5m\n where zeo:8100\n</box>\n' +
      '<crate B>\n <box inner>\n  on off\n  where /run/zeo.sock\n </box>\n <crate empty/>\n</crate>\n<label>\n text ${BASE}s $(ZCTEST_VALUE)\n</label>\n',
    'same',
  ],
  [`${BOX}<box two/>\n`, 'start'],
  [`${BOX}<BOX Up>\n ON TRUE\n Tag A\n</box>\n`, 'same'],
  ['<box a>\n on maybe\n</box>\n', 'same'],
  ['<box a>\n on yes\n wait 1w\n</box>\n', 'same'],
  ['<box a>\n on yes\n size 1QB\n</box>\n', 'same'],
  ['port 99999\n' + BOX, 'same'],
  ['port 80\nport 81\n' + BOX, 'same'],
  [BOX + 'nokey 1\n', 'same'],
  ['<box>\n on yes\n</box>\n', 'same'],
  ['<box a>\n</box>\n', 'start'],
  ['port 1\n', 'start'],
  ['%define a 1\n%define a 2\n' + BOX, 'same'],
  ['%define a 1\n%define A 1\n' + BOX, 'same'],
  [BOX + BOX, 'start'],
  [BOX + '<nope x>\n</nope>\n', 'same'],
  [BOX + '<thing x>\n</thing>\n', 'same'],
  [BOX + '<label>\n</label>\n<label>\n</label>\n', 'start'],
  [BOX + '<box b>\n on no\n', 'same'],
  [BOX + '</box>\n', 'same'],
  [BOX + '<box c>\n on no\n</crate>\n', 'same'],
  [BOX + 'port $nothing\n', 'same'],
  [BOX + 'port 1$\n', 'ours'],
  [BOX + 'port ${x\n', 'ours'],
  [BOX + 'port $(\n', 'ours'],
  [BOX + '%bogus x\n', 'same'],
  [BOX + '%define\n', 'same'],
  [BOX + '<box d\n', 'same'],
  [BOX + '<box e f g>\n', 'same'],
  [`# a comment\n\n${BOX}  # indented comment\n`, 'same'],
];

/** Reads each case with ours and with ZConfig ('ZODB': ZODB.config's database schema); lists the differences. */
async function differences(
  oracle: Oracle,
  schemaForZConfig: string,
  schema: Schema,
  cases: Array<[string, LineRule]>,
): Promise<string[]> {
  const theirs = await oracle.json<Outcome[]>(ORACLE, undefined, {
    schema: schemaForZConfig,
    texts: cases.map(([t]) => t),
  });
  const differ: string[] = [];
  cases.forEach(([text, rule], i) => {
    const mine = ours(text, schema);
    const t = theirs[i];
    if (rule !== 'same' && 'error' in mine && 'error' in t) {
      const ok =
        mine.line !== null && (rule === 'ours' ? t.line === null : t.line === null || mine.line <= t.line);
      if (ok) mine.line = t.line;
    }
    try {
      assert.deepEqual(mine, t);
    } catch {
      differ.push(
        `${JSON.stringify(text)}:\n  ours    ${JSON.stringify(mine)}\n  ZConfig ${JSON.stringify(t)}`,
      );
    }
  });
  return differ;
}

interopTest(
  "ZConfig's reading: values, $substitution, %define, sections, and its reasons for refusing",
  async (oracle) => {
    const differ = await differences(oracle, SCHEMA_XML, SCHEMA, CASES);
    assert.deepEqual(differ, [], differ.join('\n'));
  },
);

// ZEO's docs/clients.rst examples, as written (its <zodb> cache-size '1000MB' is not an integer, and its <ssl>
// example has no certificate: ZODB refuses both), and as they would work
const DOC_CLIENTSTORAGE =
  '<zodb>\n   cache-size 1000MB\n\n   %import ZEO\n\n   <clientstorage>\n     server 8200\n   </clientstorage>\n</zodb>\n';
const ZODB_CASES: Array<[string, LineRule]> = [
  [DOC_CLIENTSTORAGE, 'same'],
  [DOC_CLIENTSTORAGE.replace('1000MB', '1000'), 'same'],
  [
    '%import ZEO\n\n<clientstorage>\n  server zeo.example.com8200\n  <ssl>\n  </ssl>\n</clientstorage>\n',
    'start',
  ],
  [
    '<zodb main>\n  pool-size 3\n  pool-timeout 2m\n  cache-size-bytes 1GB\n  <zeoclient>\n    server localhost:8100\n    server [::1]:8101\n' +
      '    server /run/zeo/zeo.sock\n    storage main\n    cache-size 200MB\n    blob-dir /tmp/blobs\n    shared-blob-dir on\n' +
      '    read-only-fallback yes\n    wait false\n    client-label web-1\n  </zeoclient>\n</zodb>\n',
    'same',
  ],
  [
    '%import ZEO\n<zodb>\n  <clientstorage>\n    server 8100\n    wait-timeout 5\n    server-sync true\n  </clientstorage>\n</zodb>\n',
    'same',
  ],
  ['<zodb>\n  <clientstorage>\n    server 8100\n  </clientstorage>\n</zodb>\n', 'same'],
  ['<zodb>\n  <zeoclient>\n    cache-size 20MB\n  </zeoclient>\n</zodb>\n', 'start'],
  ['<zodb>\n  <zeoclient>\n    server 8100\n    wait maybe\n  </zeoclient>\n</zodb>\n', 'same'],
  ['<zodb>\n  <zeoclient>\n    server 99999\n  </zeoclient>\n</zodb>\n', 'same'],
];

interopTest(
  "<zodb> with <zeoclient> or <clientstorage> (ZEO's documented examples): as ZODB.config reads them",
  async (oracle) => {
    const differ = await differences(oracle, 'ZODB', ZODB_CONFIG_SCHEMA, ZODB_CASES);
    assert.deepEqual(differ, [], differ.join('\n'));
  },
);

test('errors name the file and line: "FILE, line N: reason"', () => {
  assert.throws(
    () => readConfig(`${BOX}<box b>\n on perhaps\n</box>\n`, SCHEMA, { fileName: '/etc/x.conf', env: {} }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.file === '/etc/x.conf' &&
      e.line === 5 &&
      e.message === "/etc/x.conf, line 5: invalid value for 'on': not a valid boolean value: 'perhaps'",
  );
});

test('-X overrides: by section name or type, replacing the file value', () => {
  const top = readConfig(`port 1\n${BOX}`, SCHEMA, {
    env: {},
    overrides: ['port=2', 'a/size=2KB', 'box/tag=t'],
  });
  assert.equal(top.keys.get('port'), 2);
  const box = (top.sections.get('things') as SectionValue[])[0];
  assert.equal(box.keys.get('size'), 2048);
  assert.deepEqual(box.keys.get('tag'), ['t']);
  assert.throws(
    () => readConfig(BOX, SCHEMA, { env: {}, overrides: ['crate/x=1'] }),
    /not all command line options were consumed: -X crate\/x=1/,
  );
});

test('%import adds the types a package declares; the schema says what else is refused', () => {
  const withPkg: Schema = {
    ...SCHEMA,
    packages: {
      extra: { types: [{ name: 'bag', implements: 'thing', keys: [], sections: [] }] },
      python: { refuse: 'cannot load Python' },
    },
  };
  const top = readConfig('%import extra\n%import extra\n<bag b/>\n', withPkg, { env: {} });
  assert.equal((top.sections.get('things') as SectionValue[])[0].type, 'bag');
  assert.throws(() => readConfig('<bag b/>\n', withPkg, { env: {} }), /unknown type name: 'bag'/);
  const refused = (text: string, reason: string) =>
    assert.throws(
      () => readConfig(text, withPkg, { env: {}, fileName: 'x.conf' }),
      (e: unknown) => e instanceof ConfigError && e.message === `x.conf, line 1: ${reason}`,
    );
  refused('%import python\n', 'cannot load Python');
  refused('%import other\n', 'no package other');
});
