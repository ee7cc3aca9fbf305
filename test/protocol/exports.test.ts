// zeo-ts/protocol resolves by package name (Node's self-reference), as an installed zeo-ts would, and is the
// wire protocol without sockets: a client can frame, hand-shake and encode with it alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('zeo-ts/protocol exports framing, the handshake, the codecs and the reply helpers', async () => {
  const protocol = await import('zeo-ts/protocol');
  const hello = protocol.chooseClientProtocol(protocol.serverGreeting(false));
  assert.ok('reply' in hello);
  assert.equal(hello.encoding, 'Z');
  const codec = protocol.codecFor(hello.encoding, 'client');
  const frame = protocol.encodeFrame(codec.encodeCall(1, false, 'lastTransaction', []));
  const [payload] = new protocol.FrameDecoder(1 << 20).push(frame);
  const server = protocol.codecFor('Z', 'server');
  assert.equal(server.decode(payload).name, 'lastTransaction');
  const reply = protocol.replyPayload(server, 1, 'x');
  assert.equal(codec.decode(reply).body, 'x');
  assert.equal(typeof protocol.errorPayload, 'function');
  assert.equal(typeof protocol.replyParts, 'function');
  assert.equal(typeof protocol.unmarshalError, 'function');
});
