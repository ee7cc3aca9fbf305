// MessageChannel over real loopback sockets (TCP and TLS): frames in order, output in the order places were
// taken and batched into one write per tick, reading paused while output waits or calls run and resumed on
// drain, and the reason of every kind of close.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import tls from 'node:tls';
import { encodeFrame, FrameDecoder, FrameTooLargeError } from '../../src/protocol/index.js';
import { ChannelClosedError, MessageChannel, type ChannelLimits } from '../../src/transport/channel.js';
import { clientTlsOptions, serverTlsOptions } from '../../src/transport/tls.js';
import { noOpenssl } from '../helpers/openssl.js';
import { waitUntil } from '../helpers/wait.js';

const LIMITS: ChannelLimits = { maxMessageSize: 1 << 20, outputHighWater: 64 << 10, maxInFlight: 4 };

interface Peer {
  socket: net.Socket;
  frames: Buffer[];
  ended: Promise<void>;
}

/** A MessageChannel on the server side of a loopback connection, and the raw client socket facing it. */
async function pair(
  limits: ChannelLimits = LIMITS,
  onFrame: (ch: MessageChannel, f: Buffer) => void = () => {},
  /** a unix socket path instead of TCP */
  path?: string,
): Promise<{ channel: MessageChannel; got: Buffer[]; closed: Promise<Error>; peer: Peer }> {
  const got: Buffer[] = [];
  let channel!: MessageChannel;
  const accepted = new Promise<void>((resolve) => {
    const server = net.createServer((s) => {
      channel = new MessageChannel(s, limits, {
        frame: (f) => {
          got.push(Buffer.from(f));
          onFrame(channel, f);
        },
        closed: () => {},
      });
      server.close();
      resolve();
    });
    if (path) server.listen(path, () => (peerSocket = net.connect(path)));
    else
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        peerSocket = net.connect(port, '127.0.0.1');
      });
  });
  let peerSocket!: net.Socket;
  await accepted;
  const peer = rawPeer(peerSocket);
  return { channel, got, closed: channel.whenClosed, peer };
}

function rawPeer(socket: net.Socket): Peer {
  const decoder = new FrameDecoder(0xffffffff);
  const frames: Buffer[] = [];
  socket.on('data', (d: Buffer) => frames.push(...decoder.push(d).map((f) => Buffer.from(f))));
  socket.on('error', () => {});
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return { socket, frames, ended };
}

const text = (b: Buffer): string => b.toString('latin1');

/** The lengths of the buffers given to the socket's write (how many writes the frames take). */
function watchWrites(socket: net.Socket): number[] {
  const writes: number[] = [];
  const write = socket.write.bind(socket);
  socket.write = (b: Uint8Array) => {
    writes.push(b.length);
    return write(b);
  };
  return writes;
}

const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-transport-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('MessageChannel', () => {
  test('frames go out in the order their places were taken, gathered into one write per tick', async () => {
    const { channel, peer } = await pair();
    const writes = watchWrites(channel.socket);
    const a = channel.reserve();
    channel.send(Buffer.from('b'));
    const c = channel.reserve();
    channel.send(Buffer.from('d'));
    c.end(Buffer.from('c'));
    a.write(Buffer.from('a1'));
    a.end([Buffer.from('a'), Buffer.from('2')]);
    // small frames are copied into the tick's batch: one write at the end of the tick
    assert.deepEqual(writes, [], 'nothing written before the end of the tick');
    await waitUntil(() => peer.frames.length === 5, 'five frames');
    assert.deepEqual(peer.frames.map(text), ['a1', 'a2', 'b', 'c', 'd']);
    assert.deepEqual(writes, [5 * 4 + 2 + 2 + 1 + 1 + 1], 'one write for the five');
    // a large frame goes by reference, after the small ones before it, in one writev with the tick's others
    writes.length = 0;
    const large = Buffer.alloc(5000, 0x61);
    const e = channel.reserve();
    channel.send(Buffer.from('f'));
    e.write(Buffer.from('e1'));
    e.end([large.subarray(0, 100), large.subarray(100)]);
    assert.ok(channel.socket.writableCorked > 0, 'corked for the large frame');
    await waitUntil(() => peer.frames.length === 8, 'eight frames');
    assert.deepEqual(peer.frames.slice(5).map(text), ['e1', 'a'.repeat(5000), 'f']);
    assert.equal(channel.socket.writableCorked, 0, 'uncorked after the tick');
    assert.equal(channel.reachedHighWater, false);
    channel.destroy();
    peer.socket.destroy();
  });

  test('frameAt: frames lying whole in a read are handed out in place, in order with the others, and stop at a pause', async () => {
    const seen: string[] = [];
    let channel!: MessageChannel;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const accepted = new Promise<void>((resolve) => {
      const server = net.createServer((s) => {
        channel = new MessageChannel(s, LIMITS, {
          // frames starting with 'f' are taken in place; 'h' holds reading until released
          frameAt: (chunk, start, length) => {
            if (chunk[start] !== 0x66) return false;
            seen.push(`at:${chunk.toString('latin1', start, start + length)}`);
            return true;
          },
          frame: (f) => {
            seen.push(`frame:${text(f)}`);
            if (f[0] === 0x68) channel.holdReading(held);
          },
          closed: () => {},
        });
        server.close();
        resolve();
      });
      server.listen(0, '127.0.0.1', () => {
        peerSocket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      });
    });
    let peerSocket!: net.Socket;
    await accepted;
    const frames = ['f1', 'g2', 'f3', 'h4', 'f5', 'g6', 'f7'].map((x) => encodeFrame(Buffer.from(x)));
    const split = encodeFrame(Buffer.from('f8-split'));
    // one write: everything up to the hold, and what follows it; then a frame in two writes
    peerSocket.write(Buffer.concat([...frames, split.subarray(0, 5)]));
    await waitUntil(() => seen.length === 4, 'the frames before the hold');
    assert.deepEqual(seen, ['at:f1', 'frame:g2', 'at:f3', 'frame:h4']);
    peerSocket.write(split.subarray(5));
    // nothing more while held
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(seen.length, 4);
    release();
    await waitUntil(() => seen.length === 8, 'the rest');
    // (the frames read before the hold come out of the inbox, by `frame`)
    assert.deepEqual(seen.slice(4), ['frame:f5', 'frame:g6', 'frame:f7', 'frame:f8-split']);
    // and in place again once nothing waits
    peerSocket.write(Buffer.concat([encodeFrame(Buffer.from('f9')), encodeFrame(Buffer.from('g10'))]));
    await waitUntil(() => seen.length === 10, 'the last two');
    assert.deepEqual(seen.slice(8), ['at:f9', 'frame:g10']);
    channel.destroy();
    peerSocket.destroy();
  });

  test('sendCopy: copied frames keep their place among the others, and leave in one write', async () => {
    const { channel, peer } = await pair();
    const writes = watchWrites(channel.socket);
    const reused = Buffer.from('c1');
    channel.sendCopy(reused);
    reused.write('XX'); // copied at once: the caller may reuse it
    channel.sendCopy(Buffer.from('c2'));
    channel.sendCopy(Buffer.alloc(0));
    assert.deepEqual(writes, [], 'nothing written before the end of the tick');
    await waitUntil(() => peer.frames.length === 3, 'three frames');
    assert.deepEqual(writes, [4 + 2 + 4 + 2 + 4], 'one write for the three');
    // behind an open place, and between places
    // (copied there too: the caller may reuse its buffer at once)
    const a = channel.reserve();
    const behind = Buffer.from('c3');
    channel.sendCopy(behind);
    behind.write('XX');
    channel.send(Buffer.from('s'));
    a.end(Buffer.from('a'));
    channel.sendCopy(Buffer.from('c4'));
    const large = Buffer.alloc(5000, 0x61);
    channel.sendCopy(large); // too large to batch: on its own, in its place
    large.fill(0x62);
    channel.sendCopy(Buffer.from('c5'));
    await waitUntil(() => peer.frames.length === 9, 'nine frames');
    assert.deepEqual(peer.frames.map(text), ['c1', 'c2', '', 'a', 'c3', 's', 'c4', 'a'.repeat(5000), 'c5']);
    // a close right after: the copied frames go out first
    channel.sendCopy(Buffer.from('last'));
    channel.close('done');
    await peer.ended;
    assert.equal(text(peer.frames[peer.frames.length - 1]), 'last');
  });

  test('sendCopy: reading stops when a peer does not take the copied frames', async () => {
    const { channel, peer } = await pair();
    peer.socket.pause();
    const reply = Buffer.alloc(300, 7);
    for (let i = 0; i < 400 && !channel.readingPaused; i++) {
      for (let j = 0; j < 100; j++) channel.sendCopy(reply);
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.ok(channel.readingPaused, `reading paused with ${channel.outputBytes} bytes waiting`);
    assert.ok(channel.outputBytes >= LIMITS.outputHighWater);
    peer.socket.resume();
    await waitUntil(() => !channel.readingPaused, 'reading again after the drain');
    channel.destroy();
  });

  test('over a unix socket: frames both ways, in order', async () => {
    const { channel, got, peer } = await pair(
      LIMITS,
      (ch, f) => ch.send(Buffer.concat([f, f])),
      join(dir, 's'),
    );
    peer.socket.write(Buffer.concat(['a', 'b', 'c'].map((s) => encodeFrame(Buffer.from(s)))));
    await waitUntil(() => peer.frames.length === 3, 'three answers');
    assert.deepEqual(got.map(text), ['a', 'b', 'c']);
    assert.deepEqual(peer.frames.map(text), ['aa', 'bb', 'cc']);
    channel.destroy();
  });

  test('frames of one chunk are handed out in order', async () => {
    const { channel, got, peer } = await pair();
    peer.socket.write(Buffer.concat(['x', 'yy', '', 'zzz'].map((s) => encodeFrame(Buffer.from(s)))));
    await waitUntil(() => got.length === 4, 'four frames');
    assert.deepEqual(got.map(text), ['x', 'yy', '', 'zzz']);
    channel.destroy();
  });

  test('reading stops while output waits above the high-water mark, and resumes on drain', async () => {
    const { channel, got, peer } = await pair();
    peer.socket.pause(); // the peer does not read
    const big = Buffer.alloc(256 << 10, 1);
    // enough to fill the kernel's buffers and leave more than the high-water mark in ours
    for (let i = 0; i < 64 && !channel.readingPaused; i++) {
      channel.send(big);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(channel.readingPaused, `reading paused with ${channel.outputBytes} bytes waiting`);
    assert.ok(channel.outputBytes >= LIMITS.outputHighWater);
    assert.ok(channel.reachedHighWater);
    peer.socket.write(encodeFrame(Buffer.from('call')));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 0, 'no frame is handed out while paused');
    peer.socket.resume();
    await waitUntil(() => got.length === 1, 'the frame after the drain');
    assert.equal(channel.readingPaused, false);
    assert.equal(text(got[0]), 'call');
    channel.destroy();
  });

  test('at maxInFlight running calls the next frame waits, even one of the same chunk', async () => {
    const release: Array<() => void> = [];
    const { channel, got, peer } = await pair({ ...LIMITS, maxInFlight: 2 }, (ch) =>
      ch.track(new Promise<void>((r) => release.push(r))),
    );
    peer.socket.write(Buffer.concat(['1', '2', '3', '4'].map((s) => encodeFrame(Buffer.from(s)))));
    await waitUntil(() => got.length === 2, 'two calls running');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got.map(text), ['1', '2'], 'the third call waits for a running one');
    release.shift()!();
    await waitUntil(() => got.length === 3, 'the third call once one ended');
    release.splice(0).forEach((r) => r());
    await waitUntil(() => got.length === 4, 'the fourth');
    assert.deepEqual(got.map(text), ['1', '2', '3', '4']);
    channel.destroy();
  });

  test('holdReading stops reading until its promise settles', async () => {
    let release!: () => void;
    const { channel, got, peer } = await pair(LIMITS, (ch, f) => {
      if (text(f) === 'hold') ch.holdReading(new Promise<void>((r) => (release = r)));
    });
    peer.socket.write(Buffer.concat(['hold', 'next'].map((s) => encodeFrame(Buffer.from(s)))));
    await waitUntil(() => got.length === 1, 'the holding frame');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 1);
    release();
    await waitUntil(() => got.length === 2, 'the next frame after the hold');
    channel.destroy();
  });

  test("close reasons: by the peer, frame too large, and the owner's, after its queued output", async () => {
    {
      const { closed, peer } = await pair();
      peer.socket.end();
      const reason = await closed;
      assert.ok(reason instanceof ChannelClosedError);
      assert.equal(reason.message, 'closed by peer');
    }
    {
      const { channel, closed, peer } = await pair();
      const header = Buffer.alloc(4);
      header.writeUInt32BE(LIMITS.maxMessageSize + 1);
      peer.socket.write(header);
      const reason = await closed;
      assert.ok(reason instanceof FrameTooLargeError, String(reason));
      assert.equal(reason.length, LIMITS.maxMessageSize + 1);
      assert.equal(channel.connected, false);
      assert.equal(channel.closeReason, reason);
    }
    {
      let closing: Error | null = null;
      const { channel, closed, peer } = await pair(LIMITS, (ch) => {
        ch.send(Buffer.from('last words'));
        ch.close('protocol error');
        closing = ch.closeReason;
      });
      peer.socket.write(encodeFrame(Buffer.from('bad')));
      const reason = await closed;
      assert.equal(reason.message, 'protocol error');
      assert.equal(closing, reason, 'the reason is known from the start of the close');
      await peer.ended;
      assert.deepEqual(peer.frames.map(text), ['last words'], 'queued output is written before the close');
      assert.equal(channel.connected, false);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// TLS

function ossl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, and a server and a client certificate it signs (with key identifiers, as strict X.509 wants). */
function makeCertificates(): void {
  const ext = 'subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:localhost\n';
  for (const ca of ['ca', 'other-ca']) {
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=${ca}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'); // prettier-ignore
  }
  execFileSync('sh', ['-c', `printf '${ext}' > leaf.ext`], { cwd: dir });
  let serial = 10;
  for (const name of ['server', 'client']) {
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`); // prettier-ignore
    ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial',
      String(serial++), '-days', '2', '-extfile', 'leaf.ext', '-out', `${name}.pem`); // prettier-ignore
  }
}

describe('TLS options', { skip: noOpenssl }, () => {
  const p = (f: string): string => join(dir, f);

  /** A TLS channel pair with these options; resolves with the client's first frame, or the error. */
  async function exchange(client: tls.ConnectionOptions): Promise<string> {
    const server = tls.createServer(
      serverTlsOptions({ certificate: p('server.pem'), key: p('server.key'), passwordFunction: null, authenticate: p('ca.pem') }),
      (s) => {
        const ch = new MessageChannel(s, LIMITS, { frame: (f) => ch.send(Buffer.concat([Buffer.from('echo '), f])), closed: () => {} });
      },
    ); // prettier-ignore
    server.on('tlsClientError', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      return await new Promise<string>((resolve) => {
        const s = tls.connect({ ...client, port, host: '127.0.0.1' });
        const ch = new MessageChannel(s, LIMITS, {
          frame: (f) => {
            resolve(text(f));
            ch.close('done');
          },
          closed: (reason) => resolve(`closed: ${reason.message}`),
        });
        s.once('secureConnect', () => ch.send(Buffer.from('hello')));
      });
    } finally {
      server.close();
    }
  }

  const clientSection = {
    certificate: null as string | null,
    key: null as string | null,
    passwordFunction: null,
    authenticate: null as string | null,
    serverHostname: 'localhost',
  };

  test('server and client contexts built from <ssl> sections talk to each other', async () => {
    makeCertificates();
    const ok = clientTlsOptions({ ...clientSection, certificate: p('client.pem'), key: p('client.key'), authenticate: p('ca.pem') }); // prettier-ignore
    assert.equal(await exchange(ok), 'echo hello');
  });

  test('a client without a certificate, or checking against another CA, is refused', async () => {
    const noCert = clientTlsOptions({ ...clientSection, authenticate: p('ca.pem') });
    assert.match(await exchange(noCert), /^closed: /);
    const otherCa = clientTlsOptions({ ...clientSection, certificate: p('client.pem'), key: p('client.key'), authenticate: p('other-ca.pem') }); // prettier-ignore
    assert.match(await exchange(otherCa), /^closed: .*(self.signed|unable to verify|issuer)/i);
  });

  test('a wrong host name is refused unless check-hostname is off', async () => {
    const section = { ...clientSection, certificate: p('client.pem'), key: p('client.key'), authenticate: p('ca.pem'), serverHostname: 'elsewhere' }; // prettier-ignore
    assert.match(await exchange(clientTlsOptions(section)), /^closed: .*(altnames|Hostname)/i);
    assert.equal(await exchange(clientTlsOptions({ ...section, checkHostname: false })), 'echo hello');
  });

  test('a password function is refused with a clear error (zeo-ts cannot call Python)', () => {
    assert.throws(
      () => serverTlsOptions({ certificate: p('server.pem'), key: p('server.key'), passwordFunction: 'my.pw', authenticate: 'DYNAMIC' }), // prettier-ignore
      /password-function my\.pw names a Python callable/,
    );
  });
});
