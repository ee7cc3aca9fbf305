// zeo-ts's log lines against Python logging's: logging.Formatter on the same record (in the oracle), the
// loggers (levels, names, exceptions, files, reopen, flush on close and exit), the JSON lines output, and a
// server's log beside runzeo's (the connection lines, and no Node stack below DEBUG).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import {
  createLogger,
  formatRecord,
  levelFromNumber,
  levelName,
  recordAttributes,
  RUNZEO_DEFAULT_FORMAT,
  type EventLogConfig,
  type LogRecord,
} from '../../src/server/log.js';
import { interopTest, repoRoot } from '../helpers/oracle.js';
import { inZone, PY_VALUES, toWire, type Wire } from '../helpers/pywire.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

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

test("an exception is one line below DEBUG (the last line of runzeo's traceback), its Node stack at DEBUG", async () => {
  const cause = new RangeError('inner');
  const outer = new Error('outer', { cause });
  const pos = Object.assign(new Error('0x01'), { pythonName: 'ZODB.POSException.POSKeyError' });
  const run = async (config: EventLogConfig | null): Promise<string> => {
    const stderr = new Capture();
    const logging = createLogger(config, { stderr });
    const log = logging.root.child('ZEO.asyncio.server');
    log.error('(unix) bad frame', outer);
    log.error("`'loadBefore'` raised exception:", pos);
    log.error('not an Error', { code: 7 });
    log.error('no message', new TypeError());
    await logging.close();
    return stderr.text;
  };
  const info = await run(null);
  assert.doesNotMatch(info, /^ {4}at /m);
  assert.match(info, /ERROR ZEO\.asyncio\.server \(unix\) bad frame\nError: outer\n------\n/);
  assert.match(info, /raised exception:\nZODB\.POSException\.POSKeyError: 0x01\n------\n/);
  assert.match(info, /not an Error\n\{ code: 7 \}\n------\n/);
  assert.match(info, /no message\nTypeError\n$/);
  // a handler that lets DEBUG through, under an <eventlog> at DEBUG: the stack, causes first as Python chains them
  const debug = await run({
    level: 'DEBUG',
    handlers: [{ path: 'STDERR', format: RUNZEO_DEFAULT_FORMAT, level: 'NOTSET', dateformat: '%Y' }],
  });
  assert.match(debug, /ERROR ZEO\.asyncio\.server \(unix\) bad frame\nRangeError: inner\n {4}at /);
  assert.match(
    debug,
    /\n\nThe above exception was the direct cause of the following exception:\n\nError: outer\n {4}at /,
  );
  assert.match(debug, /not an Error\n\{ code: 7 \}\n/);
  // the <eventlog> at DEBUG but the handler at INFO: that output gets the one line
  const handlerInfo = await run({
    level: 'DEBUG',
    handlers: [{ path: 'STDERR', format: '%(message)s', level: 'INFO', dateformat: '' }],
  });
  assert.doesNotMatch(handlerInfo, /^ {4}at /m);
  assert.match(handlerInfo, /^\(unix\) bad frame\nError: outer\n/);
});

test('--log-format json: one JSON object per line (time, level, logger, message, exception, fields)', async () => {
  const stderr = new Capture();
  const path = join(dir, 'json.log');
  const logging = createLogger(
    {
      level: 'DEBUG',
      handlers: [
        { path: 'STDERR', format: RUNZEO_DEFAULT_FORMAT, level: 'INFO', dateformat: '%Y' },
        { path, format: '%(message)s', level: 'DEBUG', dateformat: '' },
      ],
    },
    { stderr, format: 'json' },
  );
  const log = logging.root.child('ZEO.StorageServer');
  const before = Date.now();
  log.info('(127.0.0.1:5) disconnected', undefined, {
    address: '127.0.0.1:5',
    tid: 2n ** 63n,
    oid: new Uint8Array([0, 1]),
  });
  log.debug('only in the file');
  log.error(
    'line one\nline two "quoted"',
    Object.assign(new Error('gone'), { pythonName: 'ZODB.POSException.POSKeyError' }),
  );
  logging.root.warn('from the root');
  await logging.close();
  const after = Date.now();
  const lines = stderr.text.split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 3, stderr.text);
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(Object.keys(records[0]), ['time', 'level', 'logger', 'message', 'fields']);
  const t = Date.parse(records[0].time as string);
  assert.ok(t >= before - 1 && t <= after, `${String(records[0].time)}`);
  assert.match(records[0].time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(records[0], {
    time: records[0].time,
    level: 'INFO',
    logger: 'ZEO.StorageServer',
    message: '(127.0.0.1:5) disconnected',
    fields: { address: '127.0.0.1:5', tid: '9223372036854775808', oid: '0001' },
  });
  assert.deepEqual(records[1], {
    time: records[1].time,
    level: 'ERROR',
    logger: 'ZEO.StorageServer',
    message: 'line one\nline two "quoted"',
    exception: 'ZODB.POSException.POSKeyError: gone',
  });
  assert.deepEqual(records[2], {
    time: records[2].time,
    level: 'WARNING',
    logger: 'root',
    message: 'from the root',
  });
  // the file lets DEBUG through: its error record carries the Node stack too
  const fileLines = readFileSync(path, 'utf8').trimEnd().split('\n');
  assert.equal(fileLines.length, 4);
  const fileRecords = fileLines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(fileRecords[1].message, 'only in the file');
  assert.equal(fileRecords[1].level, 'DEBUG');
  assert.match(fileRecords[2].stack as string, /^Error: gone\n {4}at /);
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
    /^BLATHER ZEO\.StorageServer: conflict error\nINFO ZEO\.StorageServer: info\nERROR ZEO\.StorageServer: failed\nError: why\n$/,
  );
  assert.match(stdout.text, /^\d{4}\|40\|failed\nError: why\n$/);
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
