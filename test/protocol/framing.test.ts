// Framing: 4-byte big-endian length + payload, split anywhere by TCP, several per read, and a size limit that
// is enforced from the header alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  encodeFrame,
  frame,
  FrameDecoder,
  frameHeader,
  FrameTooLargeError,
  ProtocolError,
} from '../../src/protocol/index.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// register, its reply and get_info from the spec's Appendix A.1, back to back as the client pipelines them
const STREAM = [
  hex('000000025a35'),
  hex('0000001e8003284b0189580800000072656769737465725801000000314b0086742e'),
  hex('0000001e8003284b014b0058060000002e7265706c7943080000000000000000742e'),
  hex('000000168003284b028958080000006765745f696e666f29742e'),
];
const PAYLOADS = STREAM.map((f) => f.subarray(4));
const ALL = Buffer.concat(STREAM);

function collect(d: FrameDecoder, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...d.push(c));
  return out;
}

test('several frames in one chunk come out whole, as views of the chunk', () => {
  const d = new FrameDecoder(1 << 20);
  const got = d.push(ALL);
  assert.deepEqual(
    got.map((b) => b.toString('hex')),
    PAYLOADS.map((b) => b.toString('hex')),
  );
  // no copy: each payload shares the chunk's memory
  for (const p of got) assert.equal(p.buffer, ALL.buffer);
  assert.equal(d.bufferedBytes, 0);
});

test('the stream split at every byte boundary, and byte by byte', () => {
  for (let cut = 0; cut <= ALL.length; cut++) {
    const d = new FrameDecoder(1 << 20);
    const got = collect(d, [ALL.subarray(0, cut), ALL.subarray(cut)]);
    assert.deepEqual(
      got.map((b) => b.toString('hex')),
      PAYLOADS.map((b) => b.toString('hex')),
      `cut at ${cut}`,
    );
    assert.equal(d.bufferedBytes, 0);
  }
  const d = new FrameDecoder(1 << 20);
  const bytes: Buffer[] = [];
  for (let i = 0; i < ALL.length; i++) bytes.push(ALL.subarray(i, i + 1));
  const got = collect(d, bytes);
  assert.deepEqual(
    got.map((b) => b.toString('hex')),
    PAYLOADS.map((b) => b.toString('hex')),
  );
});

test('any chunking of any frames gives the frames back (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
      fc.array(fc.nat(400), { maxLength: 10 }),
      (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          chunks.push(stream.subarray(prev, p));
          prev = p;
        }
        const d = new FrameDecoder(1000);
        const got = collect(d, chunks);
        assert.deepEqual(
          got.map((b) => b.toString('hex')),
          payloads.map((b) => Buffer.from(b).toString('hex')),
        );
        assert.equal(d.bufferedBytes, 0);
      },
    ),
  );
});

test('bufferedBytes counts a partial header and a partial payload', () => {
  const d = new FrameDecoder(100);
  assert.deepEqual(d.push(hex('0000')), []);
  assert.equal(d.bufferedBytes, 2);
  assert.deepEqual(d.push(hex('000561')), []);
  assert.equal(d.bufferedBytes, 1);
  assert.deepEqual(d.push(hex('6263')), []);
  assert.equal(d.bufferedBytes, 3);
  const [p] = d.push(hex('646500000000'));
  assert.equal(p.toString(), 'abcde');
  // the trailing zero-length frame's header was complete too
  assert.equal(d.bufferedBytes, 0);
});

test('a zero-length frame is an empty payload', () => {
  const d = new FrameDecoder(10);
  const got = d.push(hex('00000000 00000000'));
  assert.equal(got.length, 2);
  assert.equal(got[0].length, 0);
});

test('a 4 GiB header (0xffffffff) is refused before any of its payload is buffered', () => {
  const d = new FrameDecoder(64 << 20);
  assert.throws(
    () => d.push(Buffer.concat([hex('ffffffff'), Buffer.alloc(1000)])),
    (e: unknown) => e instanceof FrameTooLargeError && e instanceof ProtocolError && e.length === 0xffffffff,
  );
  assert.equal(d.bufferedBytes, 0);
  // the decoder stays failed
  assert.throws(() => d.push(hex('00000000')), FrameTooLargeError);
});

test('the limit is checked on a header split across chunks, and names the announced length', () => {
  const d = new FrameDecoder(1000);
  assert.deepEqual(d.push(hex('0000')), []);
  try {
    d.push(hex('03e9'));
    assert.fail('expected FrameTooLargeError');
  } catch (e) {
    assert.ok(e instanceof FrameTooLargeError);
    assert.equal(e.length, 1001);
    assert.equal(e.maxFrameSize, 1000);
  }
  // exactly the limit is fine
  const ok = new FrameDecoder(3);
  assert.equal(ok.push(hex('00000003616263'))[0].toString(), 'abc');
});

test('an oversize header after a good frame in the same chunk still throws (the connection is closing)', () => {
  const d = new FrameDecoder(10);
  assert.throws(() => d.push(Buffer.concat([hex('0000000161'), hex('0000000b')])), FrameTooLargeError);
  assert.throws(() => d.push(hex('0000000161')), FrameTooLargeError);
});

test('frame() gives [header, payload] without copying the payload; encodeFrame() one buffer', () => {
  const payload = new Uint8Array(100_000).fill(7);
  const [h, p] = frame(payload);
  assert.equal(h.toString('hex'), '000186a0');
  assert.equal(p.buffer, payload.buffer);
  assert.equal(p.byteOffset, payload.byteOffset);
  assert.equal(p.length, payload.length);
  assert.equal(encodeFrame(Buffer.from('Z5')).toString('hex'), '000000025a35');
  assert.equal(frameHeader(0).toString('hex'), '00000000');
  assert.throws(() => frameHeader(2 ** 32), ProtocolError);
});
