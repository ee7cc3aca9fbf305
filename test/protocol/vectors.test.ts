// Captured frames from the spec (Appendix A and §3.7, hex from the reference client and server on the wire):
// each one decodes to the expected message, and encoding that message gives the same bytes back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PyFloat, pyEquals, pyRepr, tupleFrom, type PickleValue } from '../../src/pickle/index.js';
import {
  codecFor,
  FrameDecoder,
  isAsync,
  isHeartbeat,
  marshalError,
  type Message,
  type MessageCodec,
} from '../../src/protocol/index.js';
import { ConflictError, ReadConflictError } from '../../src/storage/errors.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const t = (...items: PickleValue[]) => tupleFrom<PickleValue>(items);
const d = (...entries: Array<[string, PickleValue]>) => new Map<PickleValue, PickleValue>(entries);
const id = (h: string) => new Uint8Array(hex(h));
const z64 = id('0000000000000000');
const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

/** A PersistentMapping record, as the captures carry it. */
const ROOT0 = hex(
  '80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e' +
    '80037d710158040000006461746171027d7103732e',
);

type Dir = 'C>S' | 'S>C';
interface Vector {
  what: string;
  dir: Dir;
  frame: string;
  value: [PickleValue, PickleValue, string, PickleValue];
}

/** Decodes one frame with the receiving side's codec. */
function decodeFrame(codec: MessageCodec, frameHex: string): Message {
  const frames = new FrameDecoder(1 << 20).push(hex(frameHex));
  assert.equal(frames.length, 1, 'one whole frame');
  return codec.decode(frames[0]);
}

/** Encodes a message with the method its sender would use. */
function reencode(codec: MessageCodec, m: Message): Uint8Array {
  if (m.name === '.reply') {
    if (m.flag === 2) {
      const [cls, args] = m.body as PickleValue[];
      return codec.encodeError(m.msgid, cls as string, args);
    }
    return codec.encodeReply(m.msgid, m.body);
  }
  if (m.flag === true && m.msgid === 0) return codec.encodeAsync(m.name, m.args);
  return codec.encodeCall(m.msgid, m.flag === true, m.name, m.args);
}

function check(encoding: 'Z' | 'M', vectors: Vector[]): void {
  for (const v of vectors) {
    const role = v.dir === 'C>S' ? 'server' : 'client';
    const codec = codecFor(encoding, role);
    const m = decodeFrame(codec, v.frame);
    const got = t(m.msgid, m.flag, m.name, m.body);
    assert.ok(
      pyEquals(got, t(...v.value)),
      `${v.what}: decoded ${pyRepr(got)}\nexpected ${pyRepr(t(...v.value))}`,
    );
    const payload = reencode(codec, m);
    assert.equal(Buffer.from(payload).toString('hex'), hex(v.frame).subarray(4).toString('hex'), v.what);
    assert.equal(hex(v.frame).readUInt32BE(0), payload.length, `${v.what}: length prefix`);
  }
}

const TXN_Z = 139897414211984; // id(txn) of the pickle capture: LONG1 8a 06 90d9ad673c7f
const TXN_Z2 = 139897414215824;
const TID_A = id('040d3db17cd2bb33');
const TID_B = id('040d3db17e951099');

const PICKLE_A1: Vector[] = [
  {
    what: 'register',
    dir: 'C>S',
    frame: '0000001e8003284b0189580800000072656769737465725801000000314b0086742e',
    value: [1, false, 'register', t('1', 0)],
  },
  {
    what: 'register reply',
    dir: 'S>C',
    frame: '0000001e8003284b014b0058060000002e7265706c7943080000000000000000742e',
    value: [1, 0, '.reply', z64],
  },
  {
    what: 'get_info',
    dir: 'C>S',
    frame: '000000168003284b028958080000006765745f696e666f29742e',
    value: [2, false, 'get_info', t()],
  },
  {
    what: 'loadBefore with (oid, tid) as msgid',
    dir: 'C>S',
    frame:
      '0000003f80032843080000000000000000430800000000000000018689580a0000006c6f61644265666f7265' +
      '430800000000000000004308000000000000000186742e',
    value: [t(z64, id('0000000000000001')), false, 'loadBefore', t(z64, id('0000000000000001'))],
  },
  {
    what: 'POSKeyError reply, tuple msgid',
    dir: 'S>C',
    frame:
      '000000558003284308000000000000000043080000000000000001864b0258060000002e7265706c79581d000000' +
      '5a4f44422e504f53457863657074696f6e2e504f534b65794572726f72430800000000000000008586742e',
    value: [t(z64, id('0000000000000001')), 2, '.reply', t('ZODB.POSException.POSKeyError', t(z64))],
  },
  {
    what: 'tpc_begin, LONG1 transaction id',
    dir: 'C>S',
    frame:
      '000000458003284b008858090000007470635f626567696e288a0690d9ad673c7f43004319696e697469616c20646174' +
      '6162617365206372656174696f6e7d4e58010000002074742e',
    value: [0, true, 'tpc_begin', t(TXN_Z, bytes(''), bytes('initial database creation'), d(), null, ' ')],
  },
  {
    what: 'storea',
    dir: 'C>S',
    frame:
      '000000738003284b0088580600000073746f726561284308000000000000000043080000000000000000' +
      '4340' +
      ROOT0.toString('hex') +
      '8a0690d9ad673c7f74742e',
    value: [0, true, 'storea', t(z64, z64, new Uint8Array(ROOT0), TXN_Z)],
  },
  {
    what: 'vote',
    dir: 'C>S',
    frame: '0000001a8003284b03895804000000766f74658a0690d9ad673c7f85742e',
    value: [3, false, 'vote', t(TXN_Z)],
  },
  {
    what: 'vote reply []',
    dir: 'S>C',
    frame: '000000158003284b034b0058060000002e7265706c795d742e',
    value: [3, 0, '.reply', []],
  },
  {
    what: 'tpc_finish',
    dir: 'C>S',
    frame: '000000208003284b0489580a0000007470635f66696e6973688a0690d9ad673c7f85742e',
    value: [4, false, 'tpc_finish', t(TXN_Z)],
  },
  {
    what: 'info',
    dir: 'S>C',
    frame:
      '0000002d8003284b00885804000000696e666f7d2858060000006c656e6774684b01580400000073697a654ba67585742e',
    value: [0, true, 'info', t(d(['length', 1], ['size', 166]))],
  },
  {
    what: 'tpc_finish reply, the tid',
    dir: 'S>C',
    frame: '0000001e8003284b044b0058060000002e7265706c794308040d3db17cd2bb33742e',
    value: [4, 0, '.reply', TID_A],
  },
  {
    what: 'loadBefore reply (data, start, None)',
    dir: 'S>C',
    // the capture is shortened after its last 3 bytes (TUPLE3 TUPLE STOP), 117 bytes in all
    frame:
      '00000075800328430800000000000000004308040d3db17cd2bb34864b0058060000002e7265706c7943' +
      '40' +
      ROOT0.toString('hex') +
      '4308040d3db17cd2bb334e87742e',
    value: [t(z64, id('040d3db17cd2bb34')), 0, '.reply', t(new Uint8Array(ROOT0), TID_A, null)],
  },
  {
    what: 'tpc_begin of the second transaction',
    dir: 'C>S',
    frame:
      '000000318003284b008858090000007470635f626567696e288a0690e8ad673c7f4300430573657420787d4e58010000002074742e',
    value: [0, true, 'tpc_begin', t(TXN_Z2, bytes(''), bytes('set x'), d(), null, ' ')],
  },
  {
    what: 'vote of the second transaction',
    dir: 'C>S',
    frame: '0000001a8003284b05895804000000766f74658a0690e8ad673c7f85742e',
    value: [5, false, 'vote', t(TXN_Z2)],
  },
  {
    what: 'info, BININT2 size',
    dir: 'S>C',
    frame:
      '0000002e8003284b00885804000000696e666f7d2858060000006c656e6774684b01580400000073697a654d3f017585742e',
    value: [0, true, 'info', t(d(['length', 1], ['size', 319]))],
  },
  {
    what: 'invalidateTransaction (tid, [oids])',
    dir: 'S>C',
    frame:
      '000000398003284b00885815000000696e76616c69646174655472616e73616374696f6e4308040d3db17e951099' +
      '5d430800000000000000006186742e',
    value: [0, true, 'invalidateTransaction', t(TID_B, [z64])],
  },
];

const oid3 = id('0000000000000003');
const TID_C = id('040d3da17c828f77');
const BLOB_RECORD = bytes('\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.');

const PICKLE_A3: Vector[] = [
  {
    what: 'heartbeat',
    dir: 'C>S',
    frame: '000000188003284affffffff4b0058060000002e7265706c794e742e',
    value: [-1, 0, '.reply', null],
  },
  {
    what: 'new_oids',
    dir: 'C>S',
    frame: '000000168003284b048958080000006e65775f6f69647329742e',
    value: [4, false, 'new_oids', t()],
  },
  {
    what: 'vote reply with a resolved oid',
    dir: 'S>C',
    frame: '000000208003284b054b0058060000002e7265706c795d4308000000000000000261742e',
    value: [5, 0, '.reply', [id('0000000000000002')]],
  },
  {
    what: 'checkCurrentSerialInTransaction',
    dir: 'C>S',
    frame:
      '000000498003284b0088581f000000636865636b43757272656e7453657269616c496e5472616e73616374696f6e' +
      '430800000000000000014308040d3da17b29d5998a0610e26699507f87742e',
    value: [
      0,
      true,
      'checkCurrentSerialInTransaction',
      t(id('0000000000000001'), id('040d3da17b29d599'), 139984147767824),
    ],
  },
  {
    what: 'getInvalidations',
    dir: 'C>S',
    frame: '000000288003284b02895810000000676574496e76616c69646174696f6e734308040d3da17dd443cc85742e',
    value: [2, false, 'getInvalidations', t(id('040d3da17dd443cc'))],
  },
  {
    what: 'getInvalidations reply (tid, [oids])',
    dir: 'S>C',
    frame: '0000002b8003284b024b0058060000002e7265706c794308040d3da17deea9115d430800000000000000006186742e',
    value: [2, 0, '.reply', t(id('040d3da17deea911'), [z64])],
  },
  {
    what: 'None reply',
    dir: 'S>C',
    frame: '000000158003284b024b0058060000002e7265706c794e742e',
    value: [2, 0, '.reply', null],
  },
  {
    what: 'storeBlobStart',
    dir: 'C>S',
    frame: '0000001c8003284b0088580e00000073746f7265426c6f62537461727429742e',
    value: [0, true, 'storeBlobStart', t()],
  },
  {
    what: 'storeBlobEnd',
    dir: 'C>S',
    frame:
      '000000528003284b0088580c00000073746f7265426c6f62456e642843080000000000000003430800000000000000004319' +
      '8003635a4f44422e626c6f620a426c6f620a71002e80034e2e8a0610e86699507f74742e',
    value: [0, true, 'storeBlobEnd', t(oid3, z64, BLOB_RECORD, 139984147769360)],
  },
  {
    what: 'sendBlob',
    dir: 'C>S',
    frame: '0000002a8003284b0789580800000073656e64426c6f62430800000000000000034308040d3da17c828f7786742e',
    value: [7, false, 'sendBlob', t(oid3, TID_C)],
  },
  {
    what: 'receiveBlobStart',
    dir: 'S>C',
    frame:
      '000000328003284b0088581000000072656365697665426c6f625374617274430800000000000000034308040d3da17c828f7786742e',
    value: [0, true, 'receiveBlobStart', t(oid3, TID_C)],
  },
  {
    what: 'receiveBlobStop',
    dir: 'S>C',
    frame:
      '000000318003284b0088580f00000072656365697665426c6f6253746f70430800000000000000034308040d3da17c828f7786742e',
    value: [0, true, 'receiveBlobStop', t(oid3, TID_C)],
  },
  {
    what: 'storeBlobShared',
    dir: 'C>S',
    frame:
      '0000006b8003284b0088580f00000073746f7265426c6f625368617265642843080000000000000065430800000000000000004319' +
      '8003635a4f44422e626c6f620a426c6f620a71002e80034e2e581100000030783030326365336339696d2e746d702d8a0650a35ec4737f74742e',
    value: [
      0,
      true,
      'storeBlobShared',
      t(id('0000000000000065'), z64, BLOB_RECORD, '0x002ce3c9im.tmp-', 140135192503120),
    ],
  },
  {
    what: 'undoLog',
    dir: 'C>S',
    frame: '000000198003284b16895807000000756e646f4c6f674b004b0386742e',
    value: [22, false, 'undoLog', t(0, 3)],
  },
  {
    what: 'undoa',
    dir: 'C>S',
    frame: '000000298003284b00885805000000756e646f61430c424130396f5879436a33633d8a0690ff6699507f86742e',
    value: [0, true, 'undoa', t(bytes('BA09oXyCj3c='), 139984147775376)],
  },
  {
    what: 'vote reply of an undo, APPENDS',
    dir: 'S>C',
    frame: '0000002b8003284b184b0058060000002e7265706c795d28430800000000000000004308000000000000000365742e',
    value: [24, 0, '.reply', [z64, oid3]],
  },
  {
    what: 'iterator_start',
    dir: 'C>S',
    frame: '0000001e8003284b1b89580e0000006974657261746f725f73746172744e4e86742e',
    value: [27, false, 'iterator_start', t(null, null)],
  },
  {
    what: 'reply 0',
    dir: 'S>C',
    frame: '000000168003284b1b4b0058060000002e7265706c794b00742e',
    value: [27, 0, '.reply', 0],
  },
  {
    what: 'iterator_next reply',
    dir: 'S>C',
    frame:
      '000000448003284b1c4b0058060000002e7265706c79284308040d3da103e3a95558010000002043004319696e697469616c' +
      '206461746162617365206372656174696f6e7d74742e',
    value: [
      28,
      0,
      '.reply',
      t(id('040d3da103e3a955'), ' ', bytes(''), bytes('initial database creation'), d()),
    ],
  },
  {
    what: 'pack, BINFLOAT time',
    dir: 'C>S',
    frame: '0000001d8003284b4e8958040000007061636b4741dac1877660a0284b0186742e',
    value: [78, false, 'pack', t(new PyFloat(1795562969.5097752), 1)],
  },
  {
    what: 'info after pack, BININT2 size',
    dir: 'S>C',
    frame:
      '0000002e8003284b00885804000000696e666f7d2858060000006c656e6774684b03580400000073697a654ded017585742e',
    value: [0, true, 'info', t(d(['length', 3], ['size', 493]))],
  },
  {
    what: 'pack reply',
    dir: 'S>C',
    frame: '000000158003284b4e4b0058060000002e7265706c794e742e',
    value: [78, 0, '.reply', null],
  },
  {
    what: '§3.7 reply with the last tid',
    dir: 'S>C',
    frame: '0000001e8003284b014b0058060000002e7265706c794308040d3da103e72322742e',
    value: [1, 0, '.reply', id('040d3da103e72322')],
  },
];

const TXN_M = 140682852155152; // uint64: cf 00007ff3476dbf10
const TXN_M2 = 140682852034896;
const TID_M = id('040d3db180ea9d88');

const MSGPACK_A2: Vector[] = [
  {
    what: 'register',
    dir: 'C>S',
    frame: '000000109401c2a8726567697374657292a13100',
    value: [1, false, 'register', t('1', 0)],
  },
  {
    what: 'register reply',
    dir: 'S>C',
    frame: '00000014940100a62e7265706c79c4080000000000000000',
    value: [1, 0, '.reply', z64],
  },
  {
    what: 'get_info',
    dir: 'C>S',
    frame: '0000000d9402c2a86765745f696e666f90',
    value: [2, false, 'get_info', t()],
  },
  {
    what: 'loadBefore with (oid, tid) as msgid',
    dir: 'C>S',
    frame:
      '000000379492c4080000000000000000c4080000000000000001c2aa6c6f61644265666f726592c4080000000000000000c4080000000000000001',
    value: [t(z64, id('0000000000000001')), false, 'loadBefore', t(z64, id('0000000000000001'))],
  },
  {
    what: 'POSKeyError reply',
    dir: 'S>C',
    frame:
      '000000489492c4080000000000000000c408000000000000000102a62e7265706c7992bd5a4f44422e504f534578636570' +
      '74696f6e2e504f534b65794572726f7291c4080000000000000000',
    value: [t(z64, id('0000000000000001')), 2, '.reply', t('ZODB.POSException.POSKeyError', t(z64))],
  },
  {
    what: 'tpc_begin, uint64 transaction id',
    dir: 'C>S',
    frame:
      '000000389400c3a97470635f626567696e96cf00007ff3476dbf10c400c419696e697469616c2064617461626173652063' +
      '72656174696f6e80c0a120',
    value: [0, true, 'tpc_begin', t(TXN_M, bytes(''), bytes('initial database creation'), d(), null, ' ')],
  },
  {
    what: 'storea',
    dir: 'C>S',
    frame:
      '0000006a9400c3a673746f72656194c4080000000000000000c4080000000000000000c440' +
      ROOT0.toString('hex') +
      'cf00007ff3476dbf10',
    value: [0, true, 'storea', t(z64, z64, new Uint8Array(ROOT0), TXN_M)],
  },
  {
    what: 'vote',
    dir: 'C>S',
    frame: '000000129403c2a4766f746591cf00007ff3476dbf10',
    value: [3, false, 'vote', t(TXN_M)],
  },
  {
    what: 'vote reply ()',
    dir: 'S>C',
    frame: '0000000b940300a62e7265706c7990',
    value: [3, 0, '.reply', t()],
  },
  {
    what: 'tpc_finish',
    dir: 'C>S',
    frame: '000000189404c2aa7470635f66696e69736891cf00007ff3476dbf10',
    value: [4, false, 'tpc_finish', t(TXN_M)],
  },
  {
    what: 'info, uint8 size',
    dir: 'S>C',
    frame: '000000199400c3a4696e666f9182a66c656e67746801a473697a65cca6',
    value: [0, true, 'info', t(d(['length', 1], ['size', 166]))],
  },
  {
    what: 'tpc_finish reply',
    dir: 'S>C',
    frame: '00000014940400a62e7265706c79c408040d3db180ea9d88',
    value: [4, 0, '.reply', TID_M],
  },
  {
    what: 'loadBefore reply (data, start, None)',
    dir: 'S>C',
    frame:
      '0000006c9492c4080000000000000000c408040d3db180ea9d8900a62e7265706c7993c440' +
      ROOT0.toString('hex') +
      'c408040d3db180ea9d88c0',
    value: [t(z64, id('040d3db180ea9d89')), 0, '.reply', t(new Uint8Array(ROOT0), TID_M, null)],
  },
  {
    what: 'tpc_begin of the second transaction',
    dir: 'C>S',
    frame: '000000249400c3a97470635f626567696e96cf00007ff3476be950c400c405736574207880c0a120',
    value: [0, true, 'tpc_begin', t(TXN_M2, bytes(''), bytes('set x'), d(), null, ' ')],
  },
  {
    what: 'info, uint16 size',
    dir: 'S>C',
    frame: '0000001a9400c3a4696e666f9182a66c656e67746801a473697a65cd013f',
    value: [0, true, 'info', t(d(['length', 1], ['size', 319]))],
  },
  {
    what: 'invalidateTransaction (tid, (oids,))',
    dir: 'S>C',
    frame:
      '0000002f9400c3b5696e76616c69646174655472616e73616374696f6e92c408040d3db182a7cecc91c4080000000000000000',
    value: [0, true, 'invalidateTransaction', t(id('040d3db182a7cecc'), t(z64))],
  },
  {
    what: 'heartbeat',
    dir: 'C>S',
    frame: '0000000b94ff00a62e7265706c79c0',
    value: [-1, 0, '.reply', null],
  },
  {
    what: '§3.7 reply with the last tid',
    dir: 'S>C',
    frame: '00000014940100a62e7265706c79c408040d3da1047cca33',
    value: [1, 0, '.reply', id('040d3da1047cca33')],
  },
  {
    what: 'ConflictError reply: the dict, str8 class name',
    dir: 'S>C',
    frame:
      '000000a8940302a62e7265706c7992bf5a4f44422e504f53457863657074696f6e2e436f6e666c6963744572726f7284a7' +
      '6d657373616765b7646174616261736520636f6e666c696374206572726f72a36f6964c4080000000000000001aa636c6173' +
      '735f6e616d65d92470657273697374656e742e6d617070696e672e50657273697374656e744d617070696e67a773657269' +
      '616c7392c408040d3da1cc2b70bbc408040d3da1cadf5544',
    value: [
      3,
      2,
      '.reply',
      t(
        'ZODB.POSException.ConflictError',
        d(
          ['message', 'database conflict error'],
          ['oid', id('0000000000000001')],
          ['class_name', 'persistent.mapping.PersistentMapping'],
          ['serials', t(id('040d3da1cc2b70bb'), id('040d3da1cadf5544'))],
        ),
      ),
    ],
  },
];

test('pickle captures (Appendix A.1): decode to the messages and re-encode to the same bytes', () => {
  check('Z', PICKLE_A1);
});

test('pickle captures (Appendix A.3, §3.7)', () => {
  check('Z', PICKLE_A3);
});

test('msgpack captures (Appendix A.2, A.3, §3.7)', () => {
  check('M', MSGPACK_A2);
});

test('flags and heartbeats as Python sees them', () => {
  const z = codecFor('Z', 'server');
  const hb = decodeFrame(z, '000000188003284affffffff4b0058060000002e7265706c794e742e');
  assert.ok(isHeartbeat(hb));
  assert.equal(isAsync(hb), false);
  assert.deepEqual(hb.args, []);
  assert.equal(hb.body, null);
  const mhb = decodeFrame(codecFor('M', 'server'), '0000000b94ff00a62e7265706c79c0');
  assert.ok(isHeartbeat(mhb));
  const storea = decodeFrame(z, PICKLE_A1[6].frame);
  assert.ok(isAsync(storea));
  assert.equal(isHeartbeat(storea), false);
  assert.equal(storea.args.length, 4);
  assert.equal(storea.args, storea.body);
  const err = decodeFrame(codecFor('Z', 'client'), PICKLE_A1[4].frame);
  assert.ok(isAsync(err), 'reply flag 2 is truthy: an error');
  assert.equal(isAsync(decodeFrame(codecFor('Z', 'client'), PICKLE_A1[1].frame)), false);
});

test('record bytes decode as views of the frame, not copies', () => {
  const frames = new FrameDecoder(1 << 20).push(hex(PICKLE_A1[6].frame));
  for (const encoding of ['Z', 'M'] as const) {
    const payload =
      encoding === 'Z' ? frames[0] : new FrameDecoder(1 << 20).push(hex(MSGPACK_A2[6].frame))[0];
    const m = codecFor(encoding, 'server').decode(payload);
    const data = m.args[2] as Uint8Array;
    assert.equal(data.buffer, payload.buffer, encoding);
    assert.ok(Buffer.from(data).equals(ROOT0));
  }
});

test("the capture's pickled ConflictError reply comes from our storage's ConflictError via marshalError", () => {
  // 207 bytes in the capture; its serials and oid
  const err = new ConflictError(
    id('0000000000000001'),
    [id('040d3da17b29d599'), id('040d3da179dd2955')],
    ROOT0,
  );
  const m = marshalError(err);
  assert.equal(m.className, 'ZODB.POSException.ConflictError');
  const payload = Buffer.from(codecFor('Z', 'server').encodeError(3, m.className, m.args));
  assert.equal(payload.length, 0xcf);
  const captured =
    '8003284b034b0258060000002e7265706c79581f0000005a4f44422e504f53457863657074696f6e2e436f6e666c69637445' +
    '72726f727d2858070000006d657373616765';
  assert.equal(payload.subarray(0, captured.length / 2).toString('hex'), captured);
  // the same error in msgpack is the captured frame's layout (other serials there)
  const err2 = new ConflictError(
    id('0000000000000001'),
    [id('040d3da1cc2b70bb'), id('040d3da1cadf5544')],
    ROOT0,
  );
  const m2 = marshalError(err2);
  const mp = Buffer.from(codecFor('M', 'server').encodeError(3, m2.className, m2.args));
  assert.equal(
    mp.toString('hex'),
    hex(MSGPACK_A2[MSGPACK_A2.length - 1].frame)
      .subarray(4)
      .toString('hex'),
  );
  // a read conflict: no record, so no class name
  const rc = marshalError(
    new ReadConflictError(id('0000000000000001'), [id('040d3da17b29d599'), id('040d3da179dd2955')]),
  );
  assert.equal(rc.className, 'ZODB.POSException.ReadConflictError');
  assert.ok(
    pyEquals(
      rc.args,
      d(
        ['message', 'database read conflict error'],
        ['oid', id('0000000000000001')],
        ['class_name', null],
        ['serials', t(id('040d3da17b29d599'), id('040d3da179dd2955'))],
      ),
    ),
  );
});

test("new_oids reply: 100 oids in a list, the capture's length and prefix", () => {
  const oids: PickleValue[] = [];
  for (let i = 1; i <= 100; i++) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(i));
    oids.push(new Uint8Array(b));
  }
  const payload = Buffer.from(codecFor('Z', 'server').encodeReply(4, oids));
  assert.equal(payload.length, 0x3ff);
  const prefix = '8003284b044b0058060000002e7265706c795d284308000000000000000143080000000000000002';
  assert.equal(payload.subarray(0, prefix.length / 2).toString('hex'), prefix);
  // msgpack: the same list is an array; it reaches the client as a tuple
  const mp = Buffer.from(codecFor('M', 'server').encodeReply(4, oids));
  assert.equal(mp.subarray(0, 11).toString('hex'), '940400a62e7265706c79dc');
  const back = codecFor('M', 'client').decode(mp);
  assert.ok(pyEquals(back.body, tupleFrom(oids)));
});

test('each payload is its own memory: later messages, small or large, never change it', () => {
  for (const encoding of ['Z', 'M'] as const) {
    const codec = codecFor(encoding, 'server');
    const kept = [0, 100, 5000, 300_000].map((n) => {
      const p = codec.encodeReply(
        t(id('0000000000000001'), z64),
        t(new Uint8Array(n).fill(n & 0xff), z64, null),
      );
      return [p, Buffer.from(p).toString('hex')] as const;
    });
    for (let i = 0; i < 2000; i++) codec.encodeReply(i, new Uint8Array(i * 17).fill(0xee));
    for (const [p, h] of kept) assert.equal(Buffer.from(p).toString('hex'), h, encoding);
  }
});
