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
