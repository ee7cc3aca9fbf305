// Frames the server must refuse (spec §3.8: it logs "Can't deserialize message" and closes): bad pickles and
// msgpack, forbidden globals, wrong shapes. Each is a ProtocolError here, and the real ZEO server fails on each
// too (checked with its decoders), except where a test says we are deliberately stricter.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Global, PyFloat, PyObject, pyEquals, Tuple, type PickleValue } from '../../src/pickle/index.js';
import { codecFor, MessageRefused, ProtocolError, unpackMsgpack } from '../../src/protocol/index.js';
import { interopTest, packList, PY_LIST_HELPERS } from '../helpers/oracle.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const lat = (s: string) => Buffer.from(s, 'latin1');

const REGISTER_Z = hex('8003284b0189580800000072656769737465725801000000314b0086742e');
const REGISTER_M = hex('9401c2a8726567697374657292a13100');

/** BINUNICODE of s. */
function X(s: string): string {
  const b = Buffer.from(s, 'utf8');
  const n = Buffer.alloc(4);
  n.writeUInt32LE(b.length);
  return 'X' + n.toString('latin1') + b.toString('latin1');
}

interface Bad {
  what: string;
  encoding: 'Z' | 'M';
  payload: Buffer;
  /** what the reference server does instead of refusing it, when it does not */
  reference?: 'accepts' | 'replies TypeError';
}

const BAD: Bad[] = [
  { what: 'empty payload (pickle)', encoding: 'Z', payload: Buffer.alloc(0) },
  { what: 'truncated pickle', encoding: 'Z', payload: REGISTER_Z.subarray(0, REGISTER_Z.length - 1) },
  { what: 'pickle cut inside BINUNICODE', encoding: 'Z', payload: REGISTER_Z.subarray(0, 12) },
  {
    what: 'pickle naming os.getcwd',
    encoding: 'Z',
    payload: lat('\x80\x03(K\x01\x89' + X('register') + 'cos\ngetcwd\n)R\x85t.'),
  },
  {
    what: 'pickle naming a module outside the whitelist, never called',
    encoding: 'Z',
    payload: lat('\x80\x03(K\x01\x89' + X('register') + 'csubprocess\nPopen\n\x85t.'),
  },
  { what: 'a 3-tuple', encoding: 'Z', payload: lat('\x80\x03K\x01\x89' + X('register') + '\x87.') },
  {
    what: 'a 5-tuple',
    encoding: 'Z',
    payload: lat('\x80\x03(K\x01\x89' + X('register') + ')Nt.'),
  },
  { what: 'None instead of a tuple', encoding: 'Z', payload: lat('\x80\x03N.') },
  {
    what: 'a bytes name',
    encoding: 'Z',
    payload: lat('\x80\x03(K\x01\x89C\x08register)t.'),
  },
  {
    what: 'an int as the arguments of a call',
    encoding: 'Z',
    payload: lat('\x80\x03(K\x01\x89' + X('get_info') + 'K\x05t.'),
    reference: 'replies TypeError',
  },
  {
    what: 'bytes after STOP',
    encoding: 'Z',
    payload: Buffer.concat([REGISTER_Z, lat('junk')]),
    reference: 'accepts',
  },
  { what: 'unknown opcode', encoding: 'Z', payload: lat('\x80\x03\xff.') },
  { what: 'pickle protocol 6', encoding: 'Z', payload: lat('\x80\x06N.') },
  {
    what: 'non-ASCII Python 2 str (zodbpickle decodes ASCII strictly)',
    encoding: 'Z',
    payload: lat('\x80\x03(K\x01\x89U\x08r\xe9gister)t.'),
  },
  { what: 'empty payload (msgpack)', encoding: 'M', payload: Buffer.alloc(0) },
  { what: 'truncated msgpack', encoding: 'M', payload: REGISTER_M.subarray(0, REGISTER_M.length - 1) },
  { what: 'msgpack with extra data', encoding: 'M', payload: Buffer.concat([REGISTER_M, hex('c0')]) },
  { what: 'the unused byte 0xc1', encoding: 'M', payload: hex('9401c2a8726567697374657292a131c1') },
  { what: 'invalid UTF-8 in the name', encoding: 'M', payload: hex('9401c2a8726567697374ff7292a13100') },
  { what: 'a UTF-8-encoded surrogate in a str', encoding: 'M', payload: hex('9401c2a3eda08092a13100') },
  { what: 'an overlong UTF-8 form in a str', encoding: 'M', payload: hex('9401c2a2c0af90') },
  {
    what: 'invalid UTF-8 in a long str argument',
    encoding: 'M',
    payload: Buffer.concat([hex('9401c2a8726567697374657291d928'), Buffer.alloc(39, 0x61), hex('80')]),
  },
  // the reference decodes ext types to ExtType/Timestamp objects that no method can use
  {
    what: 'fixext 1 (ext type)',
    encoding: 'M',
    payload: hex('9401c2a8726567697374657291d40102'),
    reference: 'accepts',
  },
  { what: 'ext 8', encoding: 'M', payload: hex('9401c2a8726567697374657291c7010501'), reference: 'accepts' },
  {
    what: 'a timestamp (ext -1)',
    encoding: 'M',
    payload: hex('9401c2a8726567697374657291d6ff00000001'),
    reference: 'accepts',
  },
  {
    what: 'an int map key (strict_map_key)',
    encoding: 'M',
    payload: hex('9401c2a87265676973746572918101c0'),
  },
  { what: 'an array map key', encoding: 'M', payload: hex('9401c2a8726567697374657291819001') },
  { what: 'a 3-element array', encoding: 'M', payload: hex('9301c2a87265676973746572') },
  { what: 'a bin name', encoding: 'M', payload: hex('9401c2c408726567697374657290') },
  { what: 'a map instead of an array', encoding: 'M', payload: hex('81a161c0') },
  {
    what: 'an array32 header announcing 4 billion items',
    encoding: 'M',
    payload: hex('9401c2a87265676973746572ddffffffff00'),
  },
  {
    what: 'a bin32 longer than the message',
    encoding: 'M',
    payload: hex('9401c2a8726567697374657291c6ffffffff00'),
  },
  {
    what: 'containers nested 1025 deep',
    encoding: 'M',
    payload: Buffer.concat([hex('9401c2a87265676973746572'), Buffer.alloc(1023, 0x91), hex('90')]),
  },
];

test('bad frames are ProtocolErrors, in both roles', () => {
  for (const b of BAD) {
    for (const role of ['server', 'client'] as const) {
      if (role === 'client' && b.what.includes('whitelist')) continue;
      if (role === 'client' && b.what.includes('getcwd')) continue;
      assert.throws(() => codecFor(b.encoding, role).decode(b.payload), ProtocolError, `${b.what} (${role})`);
    }
  }
});

test('a pickled call nested a million deep is refused while it is read, and can still be answered', () => {
  const N = 1_000_000;
  const p = lat('\x80\x03(K\x05\x89X\x0a\x00\x00\x00loadBefore(' + ']'.repeat(N) + 'a'.repeat(N - 1) + 'tt.');
  const before = process.memoryUsage().heapUsed;
  assert.throws(
    () => codecFor('Z', 'server').decode(p),
    (e: unknown) =>
      e instanceof MessageRefused &&
      e.msgid === 5 &&
      e.flag === false &&
      e.call === 'loadBefore' &&
      /wait on the stack/.test(e.message),
  );
  // refused at 65536 unfinished lists, long before a million were built
  assert.ok(process.memoryUsage().heapUsed - before < 64 << 20);
});

test('the same frames minus the fault decode', () => {
  assert.ok(codecFor('Z', 'server').decode(REGISTER_Z));
  assert.ok(codecFor('M', 'server').decode(REGISTER_M));
  // 1024 nested containers are msgpack's limit, not past it
  const deep = Buffer.concat([hex('9401c2a87265676973746572'), Buffer.alloc(1022, 0x91), hex('90')]);
  assert.ok(codecFor('M', 'server').decode(deep));
  // ASCII Python 2 str decodes to str
  const p2 = codecFor('Z', 'server').decode(lat('\x80\x03(K\x01\x89U\x08register)t.'));
  assert.equal(p2.name, 'register');
});

test('the server accepts the builtins its whitelist names (set, frozenset) and the client keeps any global unloaded', () => {
  const withSet = lat('\x80\x03(K\x01\x89' + X('undoInfo') + 'cbuiltins\nset\n]K\x01a\x85R\x85t.');
  const m = codecFor('Z', 'server').decode(withSet);
  assert.ok(pyEquals(m.args[0], new Set<PickleValue>([1])));
  const getcwd = lat('\x80\x03(K\x01\x89' + X('register') + 'cos\ngetcwd\n)R\x85t.');
  const c = codecFor('Z', 'client').decode(getcwd);
  const obj = c.args[0];
  assert.ok(obj instanceof PyObject && obj.callable === Global.of('os', 'getcwd'));
});

test('the msgpack reader alone: types and views', () => {
  const data = hex('93c403616263cb3ff0000000000000ca3fc00000');
  const v = unpackMsgpack(data);
  assert.ok(v instanceof Tuple);
  const [bin, f64, f32] = v as PickleValue[];
  assert.ok(bin instanceof Uint8Array && bin.buffer === data.buffer, 'bin is a view');
  assert.ok(f64 instanceof PyFloat && f32 instanceof PyFloat);
  assert.equal(Buffer.from(bin).toString(), 'abc');
  assert.equal(String(f64), '1.0');
  assert.equal(String(f32), '1.5');
  assert.throws(() => unpackMsgpack(hex('c1')), /0xc1/);
});

interopTest(
  'the reference server fails on each bad frame too (or does what the list says)',
  async (oracle) => {
    const payloads = BAD.flatMap((b) => [lat(b.encoding), b.payload]);
    const py = await oracle.json<string[]>(
      PY_LIST_HELPERS +
        `
from ZEO.asyncio.marshal import server_decoder
out = []
items = unpack_list(input)
for i in range(0, len(items), 2):
    enc, data = items[i], items[i + 1]
    try:
        msgid, flag, name, args = server_decoder(enc)(data)
    except Exception as e:
        out.append('refuses: ' + type(e).__name__)
        continue
    if not isinstance(name, str):
        out.append('refuses: name')
    elif name == 'register' or name == 'get_info' or name == 'undoInfo':
        try:
            (lambda *a: None)(*args)
            out.append('accepts')
        except TypeError:
            out.append('replies TypeError')
    else:
        out.append('accepts')
result = out
`,
      packList(payloads),
    );
    BAD.forEach((b, i) => {
      if (b.reference) assert.equal(py[i], b.reference, b.what);
      else assert.match(py[i], /^refuses/, `${b.what}: Python ${py[i]}`);
    });
  },
);

test('fuzz: random and corrupted payloads decode or fail with a ProtocolError, nothing else', () => {
  const valid = [REGISTER_Z, REGISTER_M];
  const payload = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc
      .tuple(fc.constantFrom(0, 1), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(40))
      .map(([which, at, byte, cut]) => {
        const b = Buffer.from(valid[which]);
        b[at % b.length] = byte;
        return b.subarray(0, Math.max(0, b.length - (cut > 30 ? cut - 30 : 0)));
      }),
  );
  fc.assert(
    fc.property(payload, (p) => {
      for (const enc of ['Z', 'M'] as const) {
        for (const role of ['server', 'client'] as const) {
          try {
            codecFor(enc, role).decode(p);
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
          }
        }
      }
    }),
    { numRuns: 3000 },
  );
});
