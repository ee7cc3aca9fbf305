// Python's text conventions (src/pickle/pytext.ts) against CPython's, byte for byte: repr of str, bytes and
// float, `fmt % mapping`, time.strftime and time.ctime, json.dumps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ctime,
  jsonDumps,
  JsonDumpsError,
  percentFormat,
  PercentFormatError,
  pyBytesRepr,
  PyFloat,
  pyFloatRepr,
  pyStrRepr,
  strftime,
  tuple,
  type PyValue,
} from '../../src/pickle/index.js';
import { interopTest } from '../helpers/oracle.js';
import { inZone, PY_VALUES, toWire } from '../helpers/pywire.js';

function ours(fmt: string, v: PyValue): string {
  try {
    return percentFormat(fmt, (k) => (k === 'v' ? v : undefined));
  } catch (e) {
    if (e instanceof PercentFormatError) return `${e.kind}`;
    throw e;
  }
}

interopTest("%-formatting of record fields is Python's `fmt % mapping`", async (oracle) => {
  const values: PyValue[] = [
    0,
    42,
    -7,
    255,
    1764064800,
    2 ** 53,
    2 ** 60,
    ...[
      0.5,
      1.5,
      2.5,
      -2.5,
      0.125,
      0.375,
      1e16,
      1.5e16,
      1e-5,
      0.0001,
      123.456,
      -0,
      1e300,
      5e-324,
      1764064800.123,
      999.9999,
      0.1 + 0.2,
      NaN,
      Infinity,
      -Infinity,
      9.5,
      99.5,
    ].map((x) => new PyFloat(x)),
    'hello',
    "it's",
    'a"b\'c\n\t\\',
    'é€😀',
    'x',
    null,
  ];
  const formats = [
    '%(v)s',
    '%(v)r',
    '%(v)a',
    '%(v)d',
    '%(v)i',
    '%(v)u',
    '%(v)x',
    '%(v)X',
    '%(v)o',
    '%(v)#x',
    '%(v)#X',
    '%(v)#o',
    '%(v)e',
    '%(v)E',
    '%(v)f',
    '%(v)F',
    '%(v)g',
    '%(v)G',
    '%(v).0f',
    '%(v).1f',
    '%(v).2f',
    '%(v).3e',
    '%(v)10.4f',
    '%(v)-12.2e|',
    '%(v)+d',
    '%(v) d',
    '%(v)05d',
    '%(v)-5d|',
    '%(v)05s',
    '%(v).2s',
    '%(v)8.3s|',
    '%(v)-8s|',
    '%(v)c',
    '%(v)#g',
    '%(v)#.0f',
    '%(v)#.0e',
    '%(v).0e',
    '%(v).10g',
    '%(v)20.15g',
    '%(v)+.3g',
    '%(v).0g',
    '%(v)08.2f',
    '%(v)+08.2f',
    '%(v)-+8.3g|',
    '%(v).3d',
    '%(v)010.3d',
    '%(v)#010x',
    '%(v)ld',
    '%(v)hs',
    '%(v) 8.1e',
    '%(v).17g',
    '%(v).20f',
    '%(v)%',
    '100%% %(v)s',
  ];
  const cases = formats.flatMap((f) => values.map((v) => [f, v] as const));
  const py = await oracle.json<string[]>(
    `${PY_VALUES}
out = []
for fmt, w in args:
    try:
        out.append(fmt % {'v': from_wire(w)})
    except (TypeError, ValueError, OverflowError) as e:
        out.append(type(e).__name__)
result = out`,
    undefined,
    cases.map(([f, v]) => [f, toWire(v)]),
  );
  const mismatches: string[] = [];
  cases.forEach(([f, v], i) => {
    const mine = ours(f, v);
    // OverflowError (%c of a huge int) is a TypeError-like refusal on our side
    const theirs = py[i] === 'OverflowError' ? 'ValueError' : py[i];
    if (mine !== theirs)
      mismatches.push(
        `${f} % ${JSON.stringify(toWire(v))}: ours ${JSON.stringify(mine)}, Python ${JSON.stringify(py[i])}`,
      );
  });
  assert.deepEqual(mismatches, []);
});

interopTest("float repr is Python's", async (oracle) => {
  const xs = [
    0,
    -0,
    1,
    1.5,
    123,
    1e15,
    1e16,
    1.5e16,
    1e22,
    1e-4,
    1e-5,
    1.5e-5,
    0.1 + 0.2,
    1 / 3,
    5e-324,
    1.7976931348623157e308,
    1764064800.123,
    -2.5e-7,
  ];
  const py = await oracle.json<string[]>(
    'result = [repr(float(x)) for x in args]',
    undefined,
    xs.map((x) => (Object.is(x, -0) ? '-0' : String(x))),
  );
  assert.deepEqual(xs.map(pyFloatRepr), py);
});

interopTest('strftime is time.strftime on local time, in several time zones', async (oracle) => {
  const directives = [
    '%a',
    '%A',
    '%b',
    '%B',
    '%c',
    '%C',
    '%d',
    '%D',
    '%e',
    '%F',
    '%g',
    '%G',
    '%h',
    '%H',
    '%I',
    '%j',
    '%k',
    '%l',
    '%m',
    '%M',
    '%n',
    '%p',
    '%P',
    '%r',
    '%R',
    '%s',
    '%S',
    '%t',
    '%T',
    '%u',
    '%U',
    '%V',
    '%w',
    '%W',
    '%x',
    '%X',
    '%y',
    '%Y',
    '%z',
    '%%',
    '%-d',
    '%_d',
    '%^a',
    '%#b',
    '%#p',
    '%5d',
    '%10Y',
    '%_5H',
    '%-j',
    '%Ey',
    '%Od',
    '%f',
    '%Q',
    '%+',
    'x%',
    '%Y-%m-%dT%H:%M:%S',
    '%Y-%m-%d %H:%M:%S',
    '%-5d',
    '%-10Y',
    '%10a',
    '%^10B',
    '%010a',
    '%_10a',
    '%-10a',
    '%3Y',
    '%#10B',
    '%0e',
    '%-e',
    '%_m',
    '%10p',
    '%5%',
    '%0_5d',
    '%_05d',
  ];
  const times = [
    0, 951782400, 1764064800.123, 1735603200, 1735689599, 1704067200, 1709164800, 1710054000, 1710140400,
    1730613600, 1262304000, 1293753600, 1609459199, 1641081600, 4102444800,
  ];
  for (const tz of ['UTC', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe']) {
    const fmts = tz === 'UTC' || tz === 'America/New_York' ? [...directives, '%Z', '%#Z'] : directives;
    const py = await oracle.json<string[][]>(
      `import os, time
os.environ['TZ'] = args['tz']; time.tzset()
result = [[time.strftime(f, time.localtime(t)) for f in args['fmts']] for t in args['times']]`,
      undefined,
      { tz, fmts, times },
    );
    const mine = inZone(tz, () =>
      times.map((t) => fmts.map((f) => strftime(f, new Date(Math.floor(t) * 1000)))),
    );
    for (let i = 0; i < times.length; i++) {
      for (let j = 0; j < fmts.length; j++) {
        assert.equal(mine[i][j], py[i][j], `${tz} ${times[i]} ${JSON.stringify(fmts[j])}`);
      }
    }
  }
});

const STRS = [
  '',
  'plain',
  "it's",
  'say "hi"',
  `both ' and "`,
  'back\\slash',
  'tab\tnl\ncr\r',
  '\x00\x07\x1b\x7f\x80\x9f\xa0\xad\xff',
  'é€😀',
  '\u2028\u2029\u200b\ufeff\u00a0\u3000',
  '\ud800 lone \udfff',
  '\ue000 private \u{10fffd}',
  '\u0378 unassigned',
  'Ω≈ç√∫˜µ≤≥÷',
];

interopTest("repr of str and bytes, and ascii(), are Python's", async (oracle) => {
  const byteCases = [
    new Uint8Array([]),
    Buffer.from('plain'),
    Buffer.from("it's"),
    Buffer.from(`both ' and "`),
    Buffer.from('say "hi"'),
    new Uint8Array([0, 7, 9, 10, 13, 27, 0x5c, 0x7e, 0x7f, 0x80, 0xff]),
    new Uint8Array(Array.from({ length: 256 }, (_, i) => i)),
  ];
  const py = await oracle.json<{ str: string[]; ascii: string[]; bytes: string[] }>(
    `result = {'str': [repr(s) for s in args['s']], 'ascii': [ascii(s) for s in args['s']],
          'bytes': [repr(bytes.fromhex(h)) for h in args['b']]}`,
    undefined,
    { s: STRS, b: byteCases.map((b) => Buffer.from(b).toString('hex')) },
  );
  assert.deepEqual(
    STRS.map((s) => pyStrRepr(s)),
    py.str,
  );
  assert.deepEqual(
    STRS.map((s) => pyStrRepr(s, true)),
    py.ascii,
  );
  assert.deepEqual(byteCases.map(pyBytesRepr), py.bytes);
});

interopTest(
  'float repr at the edges: exponent switch, subnormals, shortest digits, integers past 2^53',
  async (oracle) => {
    const xs = [
      0.1,
      100,
      1e-7,
      1.2345e-5,
      1e16 - 2,
      2 ** 53 + 2,
      2 ** 63,
      1e21,
      123456789012345680,
      2 ** -1074,
      2 ** -1022,
      -1e-320,
      1 / 7,
      2 / 3,
      4.35,
      0.3,
      1e100,
      -1.5e-300,
      NaN,
      Infinity,
      -Infinity,
    ];
    const py = await oracle.json<string[]>(
      'result = [repr(float(x)) for x in args]',
      undefined,
      xs.map((x) =>
        Number.isNaN(x) ? 'nan' : x === Infinity ? 'inf' : x === -Infinity ? '-inf' : String(x),
      ),
    );
    assert.deepEqual(xs.map(pyFloatRepr), py);
    assert.deepEqual(
      xs.map((x) => String(new PyFloat(x))),
      py,
    );
  },
);

interopTest("%-format of big ints (bigint) is Python's", async (oracle) => {
  const values: PyValue[] = [2n ** 64n, -(2n ** 70n), 10n ** 30n + 1n];
  const formats = ['%(v)d', '%(v)x', '%(v)#o', '%(v)+40d', '%(v).3e', '%(v)s', '%(v)r'];
  const cases = formats.flatMap((f) => values.map((v) => [f, v] as const));
  const py = await oracle.json<string[]>(
    `${PY_VALUES}
result = [fmt % {'v': from_wire(w)} for fmt, w in args]`,
    undefined,
    cases.map(([f, v]) => [f, toWire(v)]),
  );
  assert.deepEqual(
    cases.map(([f, v]) => percentFormat(f, (k) => (k === 'v' ? v : undefined))),
    py,
  );
});

interopTest('ctime is time.ctime on local time', async (oracle) => {
  const times = [0, 951782400, 1764064800, 1735603200, 1704067200, 1709164800, 4102444800];
  for (const tz of ['UTC', 'America/New_York', 'Asia/Kolkata']) {
    const py = await oracle.json<string[]>(
      `import os, time
os.environ['TZ'] = args['tz']; time.tzset()
result = [time.ctime(t) for t in args['times']]`,
      undefined,
      { tz, times },
    );
    assert.deepEqual(
      inZone(tz, () => times.map((t) => ctime(new Date(t * 1000)))),
      py,
      tz,
    );
  }
});

// Values of the pickle model to json.dumps, each with the Python expression that makes the same value
const JSON_CASES: Array<[unknown, string]> = [
  [null, 'None'],
  [true, 'True'],
  [false, 'False'],
  [0, '0'],
  [-42, '-42'],
  [2n ** 80n, '2**80'],
  [new PyFloat(1), '1.0'],
  [new PyFloat(-0), '-0.0'],
  [new PyFloat(1e16), '1e16'],
  [new PyFloat(0.1 + 0.2), '0.1 + 0.2'],
  [2.5, '2.5'],
  [new PyFloat(NaN), "float('nan')"],
  [new PyFloat(Infinity), "float('inf')"],
  [new PyFloat(-Infinity), "float('-inf')"],
  ['', "''"],
  ['a"b\\c/d\n\t\r\b\f\x00\x1f\x7f', "'a\"b\\\\c/d\\n\\t\\r\\b\\f\\x00\\x1f\\x7f'"],
  ['é€😀\u2028', "'é€😀\\u2028'"],
  ['\ud800', "'\\ud800'"],
  [[], '[]'],
  [[1, [2, [3, []]]], '[1, [2, [3, []]]]'],
  [tuple(1, 'a', null), "(1, 'a', None)"],
  [new Map(), '{}'],
  [
    new Map<unknown, unknown>([
      ['z', 1],
      ['a', [true, false]],
      ['é', new Map([['n', null]])],
    ]),
    "{'z': 1, 'a': [True, False], 'é': {'n': None}}",
  ],
  [
    new Map<unknown, unknown>([
      [7, 'int'],
      [new PyFloat(2.5), 'float'],
      [true, 'bool'],
      [null, 'none'],
      [2n ** 70n, 'big'],
    ]),
    "{7: 'int', 2.5: 'float', True: 'bool', None: 'none', 2**70: 'big'}",
  ],
  [
    new Map<unknown, unknown>([
      ['b', 2],
      ['a', 1],
      ['\u{10000}', 3],
      ['\uffff', 4],
    ]),
    "{'b': 2, 'a': 1, '\\U00010000': 3, '\\uffff': 4}",
  ],
];

const JSON_OPTIONS: Array<[Parameters<typeof jsonDumps>[1], string]> = [
  [{}, '{}'],
  [{ ensureAscii: false }, "{'ensure_ascii': False}"],
  [{ separators: [',', ':'] }, "{'separators': (',', ':')}"],
  [{ sortKeys: true }, "{'sort_keys': True}"],
  [{ indent: 2 }, "{'indent': 2}"],
  [
    { indent: 0, sortKeys: true, ensureAscii: false },
    "{'indent': 0, 'sort_keys': True, 'ensure_ascii': False}",
  ],
];

interopTest(
  "json.dumps is Python's: separators, ensure_ascii, sort_keys, indent, non-finite floats",
  async (oracle) => {
    const exprs = JSON_CASES.map(([, e]) => e);
    const py = await oracle.json<Array<Array<string | null>>>(
      `out = []
for kw in args['opts']:
    row = []
    for e in args['exprs']:
        try:
            row.append(json.dumps(eval(e), **eval(kw)))
        except (TypeError, ValueError) as err:
            row.append(type(err).__name__)
    out.append(row)
result = out
import json`
        .replace('import json', '')
        .replace('out = []', 'import json\nout = []'),
      undefined,
      { exprs, opts: JSON_OPTIONS.map(([, kw]) => kw) },
    );
    JSON_OPTIONS.forEach(([opts, kw], i) => {
      JSON_CASES.forEach(([v, e], j) => {
        let mine: string;
        try {
          mine = jsonDumps(v, opts);
        } catch (err) {
          if (!(err instanceof JsonDumpsError)) throw err;
          mine = err.kind;
        }
        assert.equal(mine, py[i][j], `json.dumps(${e}, **${kw})`);
      });
    });
  },
);

interopTest('json.dumps refuses what Python refuses, with its messages', async (oracle) => {
  const cases: Array<[unknown, string, Parameters<typeof jsonDumps>[1], string]> = [
    [new Uint8Array([1]), "b'\\x01'", {}, '{}'],
    [new Set([1]), '{1}', {}, '{}'],
    [new Map([[tuple(1), 'x']]), "{(1,): 'x'}", {}, '{}'],
    [new PyFloat(NaN), "float('nan')", { allowNan: false }, "{'allow_nan': False}"],
    [new PyFloat(-Infinity), "float('-inf')", { allowNan: false }, "{'allow_nan': False}"],
    [
      new Map<unknown, unknown>([
        [1, 'a'],
        ['b', 2],
      ]),
      "{1: 'a', 'b': 2}",
      { sortKeys: true },
      "{'sort_keys': True}",
    ],
  ];
  const py = await oracle.json<string[]>(
    `import json
out = []
for e, kw in args:
    try:
        out.append(json.dumps(eval(e), **eval(kw)))
    except (TypeError, ValueError) as err:
        out.append('%s: %s' % (type(err).__name__, err))
result = out`,
    undefined,
    cases.map(([, e, , kw]) => [e, kw]),
  );
  cases.forEach(([v, e, opts], i) => {
    assert.throws(
      () => jsonDumps(v, opts),
      (err: unknown) => err instanceof JsonDumpsError && `${err.kind}: ${err.message}` === py[i],
      `json.dumps(${e}): Python says ${py[i]}`,
    );
  });
  const cycle: unknown[] = [];
  cycle.push(cycle);
  assert.throws(() => jsonDumps(cycle), /Circular reference detected/);
});

test("ruok's answer: json.dumps of the server status, ASCII", () => {
  const status = new Map<unknown, unknown>([
    [
      '1',
      new Map<unknown, unknown>([
        ['last-transaction', '03f0e1c2d3a4b5c6'],
        ['lock_time', null],
        ['waiting', 0],
      ]),
    ],
  ]);
  assert.equal(
    jsonDumps(status),
    '{"1": {"last-transaction": "03f0e1c2d3a4b5c6", "lock_time": null, "waiting": 0}}',
  );
});
