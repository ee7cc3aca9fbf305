// zeo-ts's log lines against Python logging's: logging.Formatter on the same record (in the oracle), the
// loggers (levels, names, exceptions, files, reopen, flush on close and exit), the JSON lines output, and a
// server's log beside runzeo's (the connection lines, and no Node stack below DEBUG).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
import { interopTest, repoRoot, type Oracle } from '../helpers/oracle.js';
import { inZone, PY_VALUES, toWire, type Wire } from '../helpers/pywire.js';
import {
  freePort,
  logRecords,
  ServerProcess,
  stopLeftovers,
  type ServerKind,
} from '../helpers/server-process.js';
import { PythonError, ServerException } from '../../src/protocol/index.js';
import { tuple } from '../../src/pickle/index.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));
after(stopLeftovers);

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

test('the one line of an exception made for the client is what Python prints', async () => {
  const stderr = new Capture();
  const logging = createLogger(
    { level: 'INFO', handlers: [{ path: 'STDERR', format: '%(message)s', level: 'NOTSET', dateformat: '' }] },
    { stderr },
  );
  const log = logging.root.child('ZEO.asyncio.server');
  log.error('a', new PythonError('builtins.KeyError', tuple('x')));
  log.error('b', new PythonError('builtins.TypeError', tuple('history size must be an int')));
  log.error('c', new PythonError('ZODB.POSException.StorageTransactionError', tuple(null, 'nope')));
  log.error('d', new ServerException('builtins.AssertionError', tuple()));
  await logging.close();
  assert.equal(
    stderr.text,
    "a\nKeyError: 'x'\nb\nTypeError: history size must be an int\n" +
      "c\nZODB.POSException.StorageTransactionError: (None, 'nope')\nd\nAssertionError\n",
  );
});

// ---------------------------------------------------------------------------------------------------------
// A server's log beside runzeo's

const RUNZEO_EVENTLOG_DEBUG = `<eventlog>
  level DEBUG
  <logfile>
    path STDERR
    format ------\\n%(asctime)s %(levelname)s %(name)s %(message)s
  </logfile>
</eventlog>
`;

/** A server on a fresh Data.fs, logging to stderr (runzeo's default, or `eventlog`). */
async function startLogged(
  kind: ServerKind,
  name: string,
  eventlog = '',
): Promise<{ server: ServerProcess; port: number }> {
  const home = join(dir, name);
  mkdirSync(home);
  const conf = join(home, 'zeo.conf');
  // (runzeo logs the port it was given: 0 would not tell where it listens)
  const port = await freePort();
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n<filestorage 1>\n  path ${join(home, 'Data.fs')}\n</filestorage>\n${eventlog}`,
  );
  const server = new ServerProcess({ kind, conf, cwd: home, env: { ZEO_MSGPACK: '' } });
  assert.equal(await server.port(), port);
  return { server, port };
}

// A Python client connects, makes two calls that fail in the storage server (a KeyError and a TypeError that
// runzeo logs with a traceback), and leaves.
const FAILING_CALLS = `
from ZEO.ClientStorage import ClientStorage
cs = ClientStorage(('127.0.0.1', args), wait=True, wait_timeout=30)
out = []
for call in [('iterator_next', 'x'), ('lastTransaction', 1)]:
    try:
        cs._call(*call)
        out.append('no error')
    except Exception as e:
        out.append(type(e).__name__)
cs.close()
result = out
`;

/** The records of a run's log, from the client's connection to its disconnection. */
async function clientRun(oracle: Oracle, kind: ServerKind, name: string, eventlog = ''): Promise<string[]> {
  const { server, port } = await startLogged(kind, name, eventlog);
  try {
    assert.deepEqual(await oracle.json<string[]>(FAILING_CALLS, undefined, port), ['KeyError', 'TypeError']);
    await server.waitForLog(/INFO ZEO\.StorageServer \([^)]*\) disconnected\n/);
    const records = logRecords(server.log()).map((r) => r.replace(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d /, ''));
    const from = records.findIndex((r) => r.startsWith('INFO ZEO.asyncio.base Connected'));
    const to = records.findIndex((r) => / disconnected$/.test(r));
    assert.ok(from >= 0 && to > from, `${server.label}'s log:\n${server.log()}`);
    return records.slice(from, to + 1);
  } finally {
    await server.stopCleanly();
  }
}

interopTest(
  "a server's log has runzeo's connection lines, and each error as runzeo's last traceback line (the Node stack only at DEBUG)",
  async (oracle) => {
    const theirs = await clientRun(oracle, 'runzeo', 'runzeo-info');
    const ours = await clientRun(oracle, 'zeo-ts', 'zeo-ts-info');
    // runzeo names the server's own address in both lines (ZEO passes the listening address to the protocol);
    // zeo serve names the client's, which is what tells two clients apart
    const connected =
      /^INFO ZEO\.asyncio\.base Connected ZEO\.asyncio\.server\.ServerProtocol\(\('127\.0\.0\.1', \d+\)\)$/;
    const disconnected = /^INFO ZEO\.StorageServer \(127\.0\.0\.1:\d+\) disconnected$/;
    for (const records of [theirs, ours]) {
      assert.match(records[0], connected);
      assert.match(records[1], /^INFO ZEO\.asyncio\.server received handshake 'Z5'$/);
      assert.match(records[records.length - 1], disconnected);
    }
    // each failed call: an ERROR record whose exception line is the last line of runzeo's traceback, and
    // nothing else: no stack below DEBUG
    const errors = (records: string[]): string[] => records.filter((r) => r.startsWith('ERROR '));
    assert.equal(errors(theirs).length, 2, theirs.join('\n------\n'));
    assert.equal(errors(ours).length, 2, ours.join('\n------\n'));
    errors(ours).forEach((r, i) => {
      const lines = r.split('\n');
      assert.equal(lines.length, 2, r);
      assert.match(
        lines[0],
        /^ERROR ZEO\.asyncio\.server .*'(iterator_next|lastTransaction)'.* raised exception:$/,
      );
      const runzeoLines = errors(theirs)[i].split('\n');
      assert.equal(runzeoLines[1], 'Traceback (most recent call last):');
      const last = runzeoLines[runzeoLines.length - 1];
      // runzeo's TypeError names its BaseStorage method; zeo serve names the storage's
      assert.equal(lines[1].replace('FileStorage.', 'BaseStorage.'), last);
    });
    assert.doesNotMatch(ours.join('\n'), /^ {4}at /m);

    // at DEBUG, the error record carries the Node stack
    const debug = await clientRun(oracle, 'zeo-ts', 'zeo-ts-debug', RUNZEO_EVENTLOG_DEBUG);
    const debugErrors = errors(debug);
    assert.equal(debugErrors.length, 2, debug.join('\n------\n'));
    for (const r of debugErrors) assert.match(r, /\n {4}at /);
    assert.match(debug[0], connected);
    assert.match(debug[debug.length - 1], disconnected);
  },
);
