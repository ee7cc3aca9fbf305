// ZConfig's datatypes, ours against ZConfig's own (ZConfig.datatypes.stock_datatypes and the logger
// component's logging-level in the oracle): the same value for every input it accepts, the same ValueError
// message for every input it refuses.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  boolean,
  byteSize,
  DatatypeError,
  dottedName,
  existingDirectory,
  existingDirpath,
  existingFile,
  existingPath,
  float,
  identifier,
  inetBindingAddress,
  inetConnectionAddress,
  integer,
  loggingLevel,
  portNumber,
  socketBindingAddress,
  socketConnectionAddress,
  stringList,
  basicKey,
  timeInterval,
  type ConvContext,
} from '../../src/zconfig/index.js';
import { interopTest } from '../helpers/oracle.js';

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-zconfig-'));
after(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'sub'));
writeFileSync(join(dir, 'file.txt'), 'x');
const cx: ConvContext = { env: { HOME: dir } };

/** A datatype's result as JSON: addresses as ZConfig gives them, a refusal as its message. */
type Outcome = { value: unknown } | { error: string };

const DATATYPES: Record<string, (v: string) => unknown> = {
  boolean,
  integer,
  float: (v) => {
    const n = float(v);
    return Number.isFinite(n) ? n : String(n);
  },
  'string-list': stringList,
  'byte-size': byteSize,
  'time-interval': timeInterval,
  'port-number': (v) => portNumber(v, null),
  'inet-binding-address': (v) => {
    const a = inetBindingAddress(v);
    return [a.host, a.port];
  },
  'inet-connection-address': (v) => {
    const a = inetConnectionAddress(v);
    return [a.host, a.port];
  },
  'socket-binding-address': (v) => {
    const a = socketBindingAddress(v);
    return a.family === 'unix' ? [a.family, a.path] : [a.family, [a.host, a.port]];
  },
  'socket-connection-address': (v) => {
    const a = socketConnectionAddress(v);
    return a.family === 'unix' ? [a.family, a.path] : [a.family, [a.host, a.port]];
  },
  identifier,
  'dotted-name': dottedName,
  'basic-key': basicKey,
  'existing-directory': (v) => existingDirectory(v, cx),
  'existing-dirpath': (v) => existingDirpath(v, cx),
  'existing-path': (v) => existingPath(v, cx),
  'existing-file': (v) => existingFile(v, cx),
  'logging-level': loggingLevel,
};

const d = dir;
const CASES: Array<[string, string[]]> = [
  ['boolean', ['on', 'OFF', 'Yes', 'no', 'TRUE', 'fAlSe', 'maybe', '', '1', ' on']],
  ['integer', ['12', ' 7 ', '-3', '+4', '1_000', '1__0', 'x', '1.5', '٣', '']],
  ['float', ['1.5', '1e3', '-.5', '5.', 'inf', '-Infinity', 'abc', '1_0.5', '']],
  ['string-list', ['a b  c', '', ' x ']],
  ['byte-size', ['1MB', '200KB', '2gb', '1024', '1.5MB', 'MB', '10 kb', '-1KB', '5mb ', '1TB', '0']],
  ['time-interval', ['10s', '5m', '2h', '1d', '30', '1w', '1.5h', 'S', '3D', '-2m']],
  ['port-number', ['0', '65535', '65536', '-1', 'http', ' 80']],
  [
    'inet-binding-address',
    ['host:8080', '[::1]:80', '::1', '8080', ':9', 'Example.COM', 'a b', 'host:', 'h:99999', 'h:x', '-5'],
  ],
  ['inet-connection-address', ['host:8080', ':9', 'localhost', '[fe80::1]:8100']],
  ['socket-binding-address', ['/tmp/zeo.sock', 'rel/sock', 'localhost:8100', '[::1]:8100', '8100', '::']],
  ['socket-connection-address', ['127.0.0.1:8100', ':8100', 'zeo.example.com', '[::1]:1']],
  ['identifier', ['abc', '_x1', '1x', 'a.b', 'a-b']],
  ['dotted-name', ['a.b.c', 'logging.Formatter', 'a..b', '.a', 'a.', 'a b']],
  ['basic-key', ['Read-Only', 'a_b.c', '1a', 'a b', '-x']],
  ['existing-directory', [d, `${d}/sub`, `${d}/file.txt`, `${d}/nope`, '~', '~/sub', '~/nope']],
  ['existing-dirpath', [`${d}/x.fs`, 'x.fs', `${d}/nope/x.fs`, '~/x.fs', '~/nope/x', '/']],
  ['existing-path', [`${d}/file.txt`, `${d}/sub`, `${d}/nope`]],
  ['existing-file', [`${d}/file.txt`, `${d}/nope`]],
  ['logging-level', ['info', 'BLATHER', 'trace', 'all', 'notset', '35', '50', '51', '-1', 'loud']],
];

function ours(datatype: string, value: string): Outcome {
  try {
    return { value: DATATYPES[datatype](value) };
  } catch (e) {
    if (e instanceof DatatypeError) return { error: e.message };
    throw e;
  }
}

const ORACLE = `
import os, socket, math
import ZConfig.datatypes
from ZConfig.components.logger.datatypes import logging_level
os.environ['HOME'] = args['home']
stock = dict(ZConfig.datatypes.stock_datatypes)
stock['logging-level'] = logging_level
def family(f):
    return {socket.AF_UNIX: 'unix', socket.AF_INET: 'inet', socket.AF_INET6: 'inet6'}[f]
def run(name, v):
    try:
        r = stock[name](v)
    except ValueError as e:
        return {'error': str(e)}
    if name.startswith('socket-'):
        a = r.address
        r = [family(r.family), a if isinstance(a, str) else list(a)]
    elif isinstance(r, tuple):
        r = list(r)
    elif isinstance(r, float) and not math.isfinite(r):
        r = repr(r).replace('inf', 'Infinity')
    return {'value': r}
result = [[run(name, v) for v in values] for name, values in args['cases']]
`;

interopTest(
  "every datatype: ZConfig's value for what it accepts, its message for what it refuses",
  async (oracle) => {
    const theirs = await oracle.json<Outcome[][]>(ORACLE, undefined, { home: dir, cases: CASES });
    CASES.forEach(([name, values], i) => {
      values.forEach((v, j) => {
        assert.deepEqual(ours(name, v), theirs[i][j], `${name} ${JSON.stringify(v)}`);
      });
    });
  },
);

test('units: byte sizes in powers of 1024, durations in seconds, any case', () => {
  assert.equal(byteSize('1MB'), 1048576);
  assert.equal(byteSize('200kb'), 204800);
  assert.equal(byteSize('2Gb'), 2 * 1024 ** 3);
  assert.equal(byteSize('512'), 512);
  assert.equal(timeInterval('10s'), 10);
  assert.equal(timeInterval('5M'), 300);
  assert.equal(timeInterval('2h'), 7200);
  assert.equal(timeInterval('1d'), 86400);
  assert.throws(() => timeInterval('1w'), /^Error: invalid literal for int\(\) with base 10: '1w'$/);
  assert.throws(() => byteSize('1.5MB'), DatatypeError);
});

test('addresses: host:port, [v6]:port, a bare port, unix paths; the default host differs by use', () => {
  assert.deepEqual(socketBindingAddress('localhost:8100'), { family: 'inet', host: 'localhost', port: 8100 });
  assert.deepEqual(socketBindingAddress('[::1]:8100'), { family: 'inet6', host: '::1', port: 8100 });
  assert.deepEqual(socketBindingAddress('8100'), { family: 'inet', host: '', port: 8100 });
  assert.deepEqual(socketConnectionAddress('8100'), { family: 'inet', host: '127.0.0.1', port: 8100 });
  assert.deepEqual(socketBindingAddress('/run/zeo.sock'), { family: 'unix', path: '/run/zeo.sock' });
  assert.deepEqual(inetBindingAddress('Host'), { host: 'host', port: null });
  assert.throws(() => portNumber('65536', null), /^Error: 65536 is above upper bound \(65535\)$/);
});
