// zeo-ts's log lines against Python logging's: the %-formatting, time.strftime, logging.Formatter on the same
// record (in the oracle), and the loggers: levels, names, tracebacks, files, reopen, flush on close and exit.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import type { EventLogConfig } from '../../src/server/config.js';
import {
  createLogger,
  formatRecord,
  levelFromNumber,
  levelName,
  percentFormat,
  PercentFormatError,
  PyFloat,
  pyFloatRepr,
  recordAttributes,
  RUNZEO_DEFAULT_FORMAT,
  strftime,
  type LogRecord,
  type PyValue,
} from '../../src/server/log.js';
import { interopTest, repoRoot } from '../helpers/oracle.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** Runs `fn` with the process's local time zone set to `tz` (Node reads TZ again when it changes). */
function inZone<T>(tz: string, fn: () => T): T {
  const saved = process.env.TZ;
  process.env.TZ = tz;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  }
}

// Typed values cross to Python as [type, value]
type Wire = ['int', string] | ['float', string] | ['str', string] | ['none', null];

function toWire(v: PyValue): Wire {
  if (typeof v === 'string') return ['str', v];
  if (typeof v === 'number') return ['int', BigInt(v).toString()];
  // as text: JSON loses -0
  if (v instanceof PyFloat) return ['float', Object.is(v.value, -0) ? '-0' : String(v.value)];
  if (v === null) return ['none', null];
  throw new Error('tuple');
}

const PY_VALUES = `
import math
def from_wire(w):
    t, v = w
    if t == 'int': return int(v)
    if t == 'float': return float({'NaN': 'nan', 'Infinity': 'inf', '-Infinity': '-inf'}.get(v, v))
    if t == 'none': return None
    return v
`;

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

interopTest(
  'a record formats as logging.Formatter(format, dateformat).format(record) does',
  async (oracle) => {
    const formats = [
      RUNZEO_DEFAULT_FORMAT,
      '%(asctime)s %(message)s',
      '%(asctime)s %(levelname)s %(name)s %(message)s',
      '%(levelname)-8s|%(name)20s|%(message).5s',
      '%(created)f %(msecs)03d %(msecs)s %(relativeCreated).3f %(levelno)d %(levelno)s',
      '%(process)d %(thread)d %(threadName)s %(processName)s %(module)s %(filename)s %(pathname)s %(lineno)d %(funcName)s',
      '%(msg)s %(args)s %(exc_info)s %(exc_text)s %(stack_info)s %(message)r',
      '[%(asctime)s] %(name)s: %(message)s\t%(levelname)s',
    ];
    const dateformats = ['%Y-%m-%dT%H:%M:%S', '', '%H:%M:%S', '%d/%b/%Y %I:%M %p'];
    const records: LogRecord[] = [
      {
        name: 'ZEO.StorageServer',
        levelno: 20,
        message: 'opening storage',
        created: 1764064800.123456,
        relativeCreated: 15.25,
      },
      {
        name: 'ZEO.runzeo',
        levelno: 50,
        message: '(4242) line one\nline two',
        created: 1764064800.999,
        msecs: 999,
      },
      {
        name: 'ZEO.asyncio.server',
        levelno: 40,
        message: "Can't deserialize message",
        created: 1764107999.5,
        excText: 'Error: bad frame\n    at decode (file:///x.js:1:2)\n    at read (file:///x.js:3:4)',
      },
      {
        name: 'root',
        levelno: 15,
        message: 'ends with a newline\n',
        created: 1704067200,
        excText: 'Error: x',
      },
      { name: 'x', levelno: 5, message: 'trace', created: 951782400.000001 },
      { name: 'ZEO', levelno: 30, message: 'é€ unicode', created: 1735689599.75 },
      { name: 'ZEO', levelno: 10, message: 'debug', created: 1262304000.0005 },
    ];
    const cases = formats.flatMap((f) => dateformats.flatMap((d) => records.map((r) => ({ f, d, r }))));
    const tz = 'America/New_York';
    const py = await oracle.json<string[]>(
      `${PY_VALUES}
import logging, os, time
os.environ['TZ'] = ${JSON.stringify(tz)}; time.tzset()

class Formatter(logging.Formatter):
    # a record logged with exc_info has no exc_text yet when its message is formatted; Formatter.format
    # makes it afterwards and appends it
    def formatMessage(self, record):
        exc_text, record.exc_text = record.exc_text, None
        try:
            return super().formatMessage(record)
        finally:
            record.exc_text = exc_text

out = []
for c in args:
    attrs = {k: from_wire(w) for k, w in c['attrs'].items()}
    record = logging.LogRecord(attrs['name'], attrs['levelno'], attrs['pathname'], attrs['lineno'], attrs['msg'], None, None, attrs['funcName'])
    for k, v in attrs.items():
        setattr(record, k, v)
    record.args = ()  # what logger.info(msg) gives
    record.exc_text = c['exc']
    out.append(Formatter(c['fmt'], c['datefmt']).format(record))
result = out`,
      undefined,
      cases.map(({ f, d, r }) => {
        const attrs = recordAttributes(r);
        const wire: Record<string, Wire> = {};
        for (const [k, v] of Object.entries(attrs)) if (k !== 'args') wire[k] = toWire(v);
        return { fmt: f, datefmt: d || null, exc: r.excText ?? null, attrs: wire };
      }),
    );
    inZone(tz, () =>
      cases.forEach(({ f, d, r }, i) =>
        assert.equal(
          formatRecord(f, d, r),
          py[i],
          `${JSON.stringify(f)} / ${JSON.stringify(d)} / ${r.message}`,
        ),
      ),
    );
  },
);

test('levels: Python numbers and names, BLATHER and TRACE as ZODB registers them', () => {
  assert.deepEqual([50, 40, 30, 20, 15, 10, 5, 0].map(levelName), [
    'CRITICAL',
    'ERROR',
    'WARNING',
    'INFO',
    'BLATHER',
    'DEBUG',
    'TRACE',
    'NOTSET',
  ]);
  assert.equal(levelName(1), 'Level 1');
  assert.deepEqual([0, 1, 2, 5, 11, 15, 20, 21, 30, 45, 50].map(levelFromNumber), [
    'NOTSET',
    'ALL',
    'TRACE',
    'TRACE',
    'BLATHER',
    'BLATHER',
    'INFO',
    'WARNING',
    'WARNING',
    'CRITICAL',
    'CRITICAL',
  ]);
});

const STAMP = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`;

test("without <eventlog>: runzeo's default on stderr, INFO and up", async () => {
  const stderr = new Capture();
  const logging = createLogger(null, { stderr });
  const log = logging.root.child('ZEO.runzeo');
  log.info('(42) opening storage');
  log.debug('not shown');
  log.blather('not shown');
  log.trace('not shown');
  log.warn('careful');
  log.critical('Transaction timeout after 3 seconds');
  logging.root.info('from the root');
  logging.root.child('ZEO').child('StorageServer').error('nested');
  assert.equal(logging.root.isLevelEnabled('INFO'), true);
  assert.equal(log.isLevelEnabled('BLATHER'), false);
  await logging.close();
  const lines = stderr.text.split('\n');
  assert.equal(lines.length, 11, stderr.text);
  assert.match(stderr.text, new RegExp(`^------\n${STAMP} INFO ZEO.runzeo \\(42\\) opening storage\n`));
  assert.match(stderr.text, new RegExp(`\n------\n${STAMP} WARNING ZEO.runzeo careful\n`));
  assert.match(
    stderr.text,
    new RegExp(`\n------\n${STAMP} CRITICAL ZEO.runzeo Transaction timeout after 3 seconds\n`),
  );
  assert.match(stderr.text, new RegExp(`\n------\n${STAMP} INFO root from the root\n`));
  assert.match(stderr.text, new RegExp(`\n------\n${STAMP} ERROR ZEO.StorageServer nested\n$`));
});

test('an exception follows the message as logging appends a traceback, causes first', async () => {
  const stderr = new Capture();
  const logging = createLogger(null, { stderr });
  const cause = new RangeError('inner');
  logging.root.child('ZEO.asyncio.server').error('(unix) bad frame', new Error('outer', { cause }));
  logging.root.child('ZEO.asyncio.server').error('not an Error', { code: 7 });
  await logging.close();
  const text = stderr.text;
  assert.match(text, /ERROR ZEO\.asyncio\.server \(unix\) bad frame\nRangeError: inner\n {4}at /);
  assert.match(
    text,
    /\n\nThe above exception was the direct cause of the following exception:\n\nError: outer\n {4}at /,
  );
  assert.match(text, /not an Error\n\{ code: 7 \}\n$/);
});

test('<eventlog>: its level, and each <logfile> with its own level and format (file and STDOUT)', async () => {
  const path = join(dir, 'levels.log');
  const stdout = new Capture();
  const stderr = new Capture();
  const config: EventLogConfig = {
    level: 'BLATHER',
    handlers: [
      { path, format: '%(levelname)s %(name)s: %(message)s', level: 'NOTSET', dateformat: '%Y' },
      { path: 'STDOUT', format: '%(asctime)s|%(levelno)d|%(message)s', level: 'ERROR', dateformat: '%Y' },
    ],
  };
  const logging = createLogger(config, { stdout, stderr });
  const log = logging.root.child('ZEO.StorageServer');
  log.debug('below the eventlog level');
  log.blather('conflict error');
  log.info('info');
  log.error('failed', new Error('why'));
  assert.equal(log.isLevelEnabled('BLATHER'), true);
  assert.equal(log.isLevelEnabled('DEBUG'), false);
  await logging.close();
  const file = readFileSync(path, 'utf8');
  assert.match(
    file,
    /^BLATHER ZEO\.StorageServer: conflict error\nINFO ZEO\.StorageServer: info\nERROR ZEO\.StorageServer: failed\nError: why\n {4}at /,
  );
  assert.match(stdout.text, /^\d{4}\|40\|failed\nError: why\n/);
  assert.equal(stderr.text, '');
  // an <eventlog> without handlers logs nothing (ZConfig gives it a NullHandler)
  const silent = createLogger({ level: 'ALL', handlers: [] }, { stderr, stdout });
  silent.root.critical('nowhere');
  await silent.close();
  assert.equal(stderr.text, '');
});

test('reopen() (SIGUSR2) starts a new file after logrotate moved the old one; close() flushes', async () => {
  const path = join(dir, 'zeo.log');
  const logging = createLogger({
    level: 'INFO',
    handlers: [{ path, format: '%(message)s', level: 'NOTSET', dateformat: '' }],
  });
  const log = logging.root.child('ZEO.runzeo');
  for (let i = 0; i < 1000; i++) log.info(`before ${i}`);
  renameSync(path, `${path}.1`);
  logging.reopen();
  for (let i = 0; i < 1000; i++) log.info(`after ${i}`);
  await logging.close();
  const old = readFileSync(`${path}.1`, 'utf8').split('\n');
  const fresh = readFileSync(path, 'utf8').split('\n');
  assert.equal(old.length, 1001);
  assert.equal(old[999], 'before 999');
  assert.equal(fresh.length, 1001);
  assert.equal(fresh[0], 'after 0');
  assert.equal(fresh[999], 'after 999');
});

test('a log file that cannot be opened fails at start-up, as runzeo does', () => {
  assert.throws(
    () =>
      createLogger({
        level: 'INFO',
        handlers: [
          {
            path: join(dir, 'no', 'such', 'zeo.log'),
            format: '%(message)s',
            level: 'NOTSET',
            dateformat: '',
          },
        ],
      }),
    /ENOENT/,
  );
});

test('what is still buffered is written when the process exits', () => {
  const path = join(dir, 'exit.log');
  const logModule = resolve(repoRoot, 'dist/src/server/log.js');
  const script = `
import { createLogger } from ${JSON.stringify(logModule)};
const logging = createLogger({ level: 'INFO', handlers: [{ path: ${JSON.stringify(path)}, format: '%(levelname)s %(message)s', level: 'NOTSET', dateformat: '' }] });
const log = logging.root.child('ZEO.runzeo');
for (let i = 0; i < 5000; i++) log.info('line ' + i + ' ' + 'x'.repeat(100));
log.critical('last words');
process.exit(3);
`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 3, r.stderr);
  const lines = readFileSync(path, 'utf8').split('\n');
  assert.equal(lines.length, 5002);
  assert.equal(lines[5000], 'CRITICAL last words');
  assert.equal(new Set(lines).size, 5002, 'no line written twice');
});
