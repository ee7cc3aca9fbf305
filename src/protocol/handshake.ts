// The handshake (spec §2.2): the server announces its protocol id ('Z5' or 'M5'), the client answers with the one
// it will use, and the client's letter picks the encoding of everything after. Versions are byte strings.

/** The only protocol version ZEO 5 and 6 speak. */
export const PROTOCOL_VERSION = '5';

const VERSION_BYTES = Buffer.from(PROTOCOL_VERSION, 'latin1');
const RUOK = Buffer.from('ruok', 'latin1');
const Z = 0x5a;
const M = 0x4d;

export type Encoding = 'Z' | 'M';

/** The server's first frame: 'M5' when its msgpack option is on, else 'Z5'. */
export function serverGreeting(msgpack: boolean): Buffer {
  return Buffer.from((msgpack ? 'M' : 'Z') + PROTOCOL_VERSION, 'latin1');
}

export type ClientHello =
  | { kind: 'ruok' }
  | { kind: 'protocol'; encoding: Encoding; version: string }
  | { kind: 'bad'; reason: string };

/**
 * The server's reading of the client's first frame (server.py finish_connection): exactly 'ruok' asks for the
 * status; a supported version after any letter is accepted there, but only Z and M name an encoding (the
 * reference fails later on another letter, so it is refused here); anything else is a bad handshake.
 */
export function parseClientHello(payload: Uint8Array): ClientHello {
  const p = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (p.equals(RUOK)) return { kind: 'ruok' };
  if (p.length > 0 && p.subarray(1).equals(VERSION_BYTES)) {
    if (p[0] === Z) return { kind: 'protocol', encoding: 'Z', version: PROTOCOL_VERSION };
    if (p[0] === M) return { kind: 'protocol', encoding: 'M', version: PROTOCOL_VERSION };
    return { kind: 'bad', reason: `unknown encoding letter in handshake ${show(p)}` };
  }
  return { kind: 'bad', reason: `bad handshake ${show(p)}: only protocol ${PROTOCOL_VERSION} is supported` };
}

/**
 * The client's answer to the server's greeting (client.py finish_connection): the version is
 * min(server version, '5') compared as byte strings, which must be '5' (so 'Z6' and 'Z99' are answered 'Z5',
 * while 'Z4' and 'Z3101' are refused); the answer is the server's letter and '5'.
 */
export function chooseClientProtocol(
  serverGreeting: Uint8Array,
): { encoding: Encoding; reply: Buffer } | { error: string } {
  const g = Buffer.from(serverGreeting.buffer, serverGreeting.byteOffset, serverGreeting.byteLength);
  const version = g.subarray(1);
  const chosen = Buffer.compare(version, VERSION_BYTES) < 0 ? version : VERSION_BYTES;
  if (!chosen.equals(VERSION_BYTES)) {
    return { error: `server protocol ${show(g)} is older than protocol ${PROTOCOL_VERSION}` };
  }
  if (g[0] !== Z && g[0] !== M) return { error: `server protocol ${show(g)} names an unknown encoding` };
  const encoding: Encoding = g[0] === Z ? 'Z' : 'M';
  return { encoding, reply: Buffer.from(encoding + PROTOCOL_VERSION, 'latin1') };
}

/** Python's repr of bytes, for messages (as the reference logs them). */
function show(b: Buffer): string {
  let out = "b'";
  for (const c of b.subarray(0, 64)) {
    if (c === 0x27 || c === 0x5c) out += '\\' + String.fromCharCode(c);
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += '\\x' + c.toString(16).padStart(2, '0');
  }
  return out + (b.length > 64 ? "'..." : "'");
}
