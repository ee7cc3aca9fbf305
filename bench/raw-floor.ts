// The raw bench's floor (npm run bench -- raw): a server that does nothing but read request frames and answer
// each with a canned loadBefore-shaped reply ((data, start, end) with `--data-bytes` of data, the request's
// msgid copied in), on the same loopback and under the same loads as the real servers: what this machine
// allows a ZEO server at all. It greets like a server ('Z5', or 'M5' with --encoding msgpack) and answers
// any call that is not loadBefore (register, ...) decoded in full: register and lastTransaction with a tid,
// anything else with None. Every reply made from one read of the socket goes out in one write.
//
//   node dist/bench/raw-floor.js [--port P] [--encoding pickle|msgpack] [--data-bytes N]
// prints "listening on PORT" when ready; stops on SIGTERM.
import net from 'node:net';
import { tuple, type PickleValue } from '../src/pickle/index.js';
import { codecFor, encodeFrame, serverGreeting, type Encoding } from '../src/protocol/index.js';
import { arg } from './report.js';

/**
 * The length of the msgid at `at` of a request payload (the bytes a reply copies), or -1 when it is not one
 * the floor knows: an int (pickle K, M, J; msgpack fixint, uint8/16/32), or Python ZEO's (oid, tid) pair of
 * loadBefore (pickle two SHORT_BINBYTES and TUPLE2; msgpack a 2-array of two bin8).
 */
export function msgidLength(p: Buffer, at: number, encoding: Encoding): number {
  const op = p[at];
  if (encoding === 'Z') {
    if (op === 0x4b) return 2; // K
    if (op === 0x4d) return 3; // M
    if (op === 0x4a) return 5; // J
    if (op === 0x43 && p[at + 1] === 8 && p[at + 10] === 0x43 && p[at + 11] === 8 && p[at + 20] === 0x86)
      return 21;
    return -1;
  }
  if (op < 0x80) return 1;
  if (op === 0xcc) return 2;
  if (op === 0xcd) return 3;
  if (op === 0xce) return 5;
  if (op === 0x92 && p[at + 1] === 0xc4 && p[at + 2] === 8 && p[at + 11] === 0xc4 && p[at + 12] === 8)
    return 21;
  return -1;
}

/** Where a request's msgid starts (after the protocol header and the 4-tuple's opening). */
export function msgidStart(encoding: Encoding): number {
  return encoding === 'Z' ? 3 : 1; // \x80\x03( | \x94
}

/** The bytes after the msgid of a loadBefore call: its flag (False) and name. */
export function loadBeforeName(encoding: Encoding): Buffer {
  return encoding === 'Z'
    ? Buffer.from('\x89X\x0a\x00\x00\x00loadBefore', 'latin1')
    : Buffer.from('\xc2\xaaloadBefore', 'latin1');
}

/**
 * The canned reply around its msgid: a reply's payload is prefix + msgid bytes + suffix (as the server codec
 * encodes (msgid, 0, '.reply', (data, start, None))).
 */
export function cannedReply(encoding: Encoding, dataBytes: number): { prefix: Buffer; suffix: Buffer } {
  const codec = codecFor(encoding, 'server');
  const data = Buffer.alloc(dataBytes, 0x78);
  const start = Buffer.from([0x03, 0xe5, 0x5a, 0x6c, 0x11, 0x22, 0x33, 0x44]);
  const probe = 0x5a3c1e2d;
  const reply = Buffer.from(codec.encodeReply(probe, tuple<PickleValue>(data, start, null)));
  const at = msgidStart(encoding);
  const len = msgidLength(reply, at, encoding);
  if (len !== 5) throw new Error('the canned reply does not have its msgid where the floor expects it');
  return { prefix: Buffer.from(reply.subarray(0, at)), suffix: Buffer.from(reply.subarray(at + len)) };
}

export function startFloor(
  port: number,
  encoding: Encoding,
  dataBytes: number,
  host = '127.0.0.1',
): Promise<net.Server> {
  const { prefix, suffix } = cannedReply(encoding, dataBytes);
  const name = loadBeforeName(encoding);
  const codec = codecFor(encoding, 'server');
  const at0 = msgidStart(encoding);
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    let hello = true;
    let carry = Buffer.allocUnsafe(0);
    const out: Buffer[] = [];
    const answer = (p: Buffer, start: number, len: number): void => {
      if (hello) {
        hello = false; // the client's protocol answer
        return;
      }
      const idLen = msgidLength(p, start + at0, encoding);
      if (
        idLen > 0 &&
        p.compare(name, 0, name.length, start + at0 + idLen, start + at0 + idLen + name.length) === 0
      ) {
        const size = prefix.length + idLen + suffix.length;
        const r = Buffer.allocUnsafe(4 + size);
        r.writeUInt32BE(size, 0);
        prefix.copy(r, 4);
        p.copy(r, 4 + prefix.length, start + at0, start + at0 + idLen);
        suffix.copy(r, 4 + prefix.length + idLen);
        out.push(r);
        return;
      }
      const m = codec.decode(Buffer.from(p.subarray(start, start + len)));
      if (m.flag === true) return; // one-way
      const result: PickleValue =
        m.name === 'register' || m.name === 'lastTransaction' ? Buffer.alloc(8, 1) : null;
      out.push(encodeFrame(codec.encodeReply(m.msgid, result)));
    };
    socket.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (carry.length) data = Buffer.concat([carry, chunk]);
      let pos = 0;
      try {
        while (data.length - pos >= 4) {
          const len = data.readUInt32BE(pos);
          if (data.length - pos - 4 < len) break;
          answer(data, pos + 4, len);
          pos += 4 + len;
        }
      } catch {
        socket.destroy();
        return;
      }
      carry = pos < data.length ? Buffer.from(data.subarray(pos)) : Buffer.allocUnsafe(0);
      if (out.length === 1) socket.write(out[0]);
      else if (out.length > 1) socket.write(Buffer.concat(out));
      out.length = 0;
    });
    socket.write(encodeFrame(serverGreeting(encoding === 'M')));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (process.argv[1]?.endsWith('raw-floor.js') && process.argv.includes('--serve')) {
  const encoding: Encoding = (arg('encoding') ?? 'pickle') === 'msgpack' ? 'M' : 'Z';
  const server = await startFloor(Number(arg('port') ?? 0), encoding, Number(arg('data-bytes') ?? 150));
  const a = server.address();
  process.stdout.write(`listening on ${typeof a === 'object' && a ? a.port : '?'}\n`);
  process.on('SIGTERM', () => {
    server.close();
    process.exit(0);
  });
}
