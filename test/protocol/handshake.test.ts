// The handshake of spec §2.2: the server's greeting, the server's reading of the client's answer, and the
// client's choice (byte-string min of the versions), the last checked against the real ZEO client code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  chooseClientProtocol,
  parseClientHello,
  PROTOCOL_VERSION,
  serverGreeting,
} from '../../src/protocol/index.js';
import { interopTest } from '../helpers/oracle.js';

const b = (s: string) => Buffer.from(s, 'latin1');

test('the server greets with Z5, or M5 when its msgpack option is on', () => {
  assert.equal(PROTOCOL_VERSION, '5');
  assert.equal(serverGreeting(false).toString('hex'), '5a35');
  assert.equal(serverGreeting(true).toString('hex'), '4d35');
});

test("the client's letter picks the encoding; ruok is the status request", () => {
  assert.deepEqual(parseClientHello(b('Z5')), { kind: 'protocol', encoding: 'Z', version: '5' });
  assert.deepEqual(parseClientHello(b('M5')), { kind: 'protocol', encoding: 'M', version: '5' });
  assert.deepEqual(parseClientHello(b('ruok')), { kind: 'ruok' });
  // a view into a larger buffer reads the same
  const big = b('xxM5yy');
  assert.deepEqual(parseClientHello(big.subarray(2, 4)), { kind: 'protocol', encoding: 'M', version: '5' });
});

test('anything else is a bad handshake: other versions, unknown letters, empty, a bare letter', () => {
  for (const s of ['Z4', 'Z6', 'M6', 'Z3101', 'Z55', 'Z', 'M', '', 'X5', 'z5', '5', 'ruok\n', 'RUOK']) {
    const h = parseClientHello(b(s));
    assert.equal(h.kind, 'bad', JSON.stringify(s));
    if (h.kind === 'bad') assert.ok(h.reason.length > 0);
  }
  const bin = parseClientHello(Buffer.from([0xff, 0x35]));
  assert.equal(bin.kind, 'bad');
  if (bin.kind === 'bad') assert.match(bin.reason, /\\xff5/);
});

test("the client answers with the server's letter and 5 when min(version, b'5') is b'5'", () => {
  assert.deepEqual(chooseClientProtocol(b('Z5')), { encoding: 'Z', reply: b('Z5') });
  assert.deepEqual(chooseClientProtocol(b('M5')), { encoding: 'M', reply: b('M5') });
  // byte-string comparison: b'6' > b'5', b'99999' > b'5'
  assert.deepEqual(chooseClientProtocol(b('Z6')), { encoding: 'Z', reply: b('Z5') });
  assert.deepEqual(chooseClientProtocol(b('M99999')), { encoding: 'M', reply: b('M5') });
  // b'4' < b'5', b'3101' < b'5', b'10' < b'5', b'' < b'5'
  for (const s of ['Z4', 'Z3101', 'Z10', 'Z200', 'Z', '', 'Z4.9']) {
    assert.ok('error' in chooseClientProtocol(b(s)), JSON.stringify(s));
  }
  // a letter that names no encoding
  assert.ok('error' in chooseClientProtocol(b('X5')));
});

interopTest(
  "chooseClientProtocol agrees with ZEO's client (finish_connection's min and protocols)",
  async (oracle) => {
    const greetings = [
      'Z5',
      'M5',
      'Z6',
      'M6',
      'Z4',
      'Z3101',
      'Z10',
      'Z200',
      'Z310',
      'Z99999',
      'Z',
      'Z50',
      'Z5\x00',
    ];
    const py = await oracle.json<Array<string | null>>(
      `
from ZEO.asyncio.client import Protocol
out = []
for g in args:
    g = g.encode('latin1')
    version = min(g[1:], Protocol.protocols[-1])
    out.append((g[:1] + version).decode('latin1') if version in Protocol.protocols else None)
result = out
`,
      undefined,
      greetings,
    );
    greetings.forEach((g, i) => {
      const ours = chooseClientProtocol(b(g));
      assert.equal('reply' in ours ? ours.reply.toString('latin1') : null, py[i], JSON.stringify(g));
    });
  },
);

interopTest(
  "parseClientHello agrees with ZEO's server (finish_connection: ruok, then protocols)",
  async (oracle) => {
    const hellos = ['Z5', 'M5', 'ruok', 'Z4', 'Z6', 'X5', '', 'M', 'Z55', 'Z3101'];
    const py = await oracle.json<string[]>(
      `
from ZEO.asyncio.server import ServerProtocol
out = []
for h in args:
    h = h.encode('latin1')
    if h == b'ruok': out.append('ruok')
    elif h[1:] in ServerProtocol.protocols: out.append('protocol')
    else: out.append('bad')
result = out
`,
      undefined,
      hellos,
    );
    hellos.forEach((h, i) => {
      const ours = parseClientHello(b(h)).kind;
      // X5: the reference accepts the version, then fails on the letter; we refuse it at once
      assert.equal(ours, h === 'X5' ? 'bad' : py[i], JSON.stringify(h));
    });
    assert.equal(py[hellos.indexOf('X5')], 'protocol');
  },
);
