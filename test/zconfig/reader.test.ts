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
} from '../../src/zconfig/index.js';
import { interopTest } from '../helpers/oracle.js';

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

function summary(sv: SectionValue): Summary {
  const keys: Record<string, unknown> = {};
  for (const [k, v] of sv.keys) {
    const a = v as { family?: string; host?: string; port?: number | null; path?: string } | null;
    keys[k] =
      a && typeof a === 'object' && 'family' in a ? (a.family === 'unix' ? a.path : [a.host, a.port]) : v;
  }
  const sections: Summary['sections'] = {};
  for (const [k, v] of sv.sections) sections[k] = Array.isArray(v) ? v.map(summary) : v && summary(v);
  return { type: sv.type, name: sv.name, keys, sections };
}

type Outcome = { ok: Summary } | { error: string; line: number | null; conversion: boolean };

const ORACLE = `
import io, os, ZConfig
os.environ['ZCTEST_VALUE'] = 'from-env'
schema = ZConfig.loadSchemaFile(io.StringIO(args['schema']))
def summary(s, st, top=False):
    keys, sections = {}, {}
    for k, info in st:
        v = getattr(s, info.attribute)
        if info.issection():
            if isinstance(v, list):
                sections[info.attribute] = [summary(x, x.getSectionDefinition()) for x in v]
            else:
                sections[info.attribute] = v and summary(v, v.getSectionDefinition())
        else:
            if hasattr(v, 'family'):
                v = v.address
            keys[k] = list(v) if isinstance(v, tuple) else v
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

function ours(text: string): Outcome {
  try {
    return { ok: summary(readConfig(text, SCHEMA, { env: { ZCTEST_VALUE: 'from-env' } })) };
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

interopTest(
  "ZConfig's reading: values, $substitution, %define, sections, and its reasons for refusing",
  async (oracle) => {
    const theirs = await oracle.json<Outcome[]>(ORACLE, undefined, {
      schema: SCHEMA_XML,
      texts: CASES.map(([t]) => t),
    });
    const differ: string[] = [];
    CASES.forEach(([text, rule], i) => {
      const mine = ours(text);
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
