// A scripted ZEO server on a raw socket, for the client's tests of what a real server never does (garbage,
// replies to unknown msgids, wrong shapes, races made deterministic): it greets (or not), decodes each call in
// pickle mode and hands it to the script, which answers with whatever the test needs.
import net from 'node:net';
import type { PickleValue } from '../../src/pickle/index.js';
import { codecFor, encodeFrame, FrameDecoder, type Message } from '../../src/protocol/index.js';

export interface ScriptedServer {
  address: { host: string; port: number };
  /** the calls the client made, decoded (heartbeats left out) */
  calls: Message[];
  /** the sockets accepted */
  sockets: net.Socket[];
  codec: ReturnType<typeof codecFor>;
  /** a frame to the newest connection */
  send(payload: Uint8Array): void;
  /** the reply to `msgid` on `sock` */
  reply(sock: net.Socket, msgid: PickleValue, value: PickleValue): void;
  /** a one-way call from the server (invalidateTransaction, receiveBlobChunk...) on `sock` */
  notify(sock: net.Socket, name: string, args: PickleValue[]): void;
  close(): Promise<void>;
}

export type Script = (msg: Message, server: ScriptedServer, sock: net.Socket) => void;

/** Listens on 127.0.0.1 (port 0); greets each connection with `greeting` ('Z5'...; null: never) then runs `onCall`. */
export async function scriptedServer(
  greeting: string | null,
  onCall: Script = () => {},
): Promise<ScriptedServer> {
  const codec = codecFor('Z', 'server');
  const write = (sock: net.Socket, payload: Uint8Array): void => {
    if (!sock.destroyed) sock.write(encodeFrame(payload));
  };
  const scripted: ScriptedServer = {
    address: { host: '127.0.0.1', port: 0 },
    calls: [],
    sockets: [],
    codec,
    send: (payload) => write(scripted.sockets[scripted.sockets.length - 1], payload),
    reply: (sock, msgid, value) => write(sock, codec.encodeReply(msgid, value)),
    notify: (sock, name, args) => write(sock, codec.encodeCall(0, true, name, args)),
    close: async () => {
      for (const s of scripted.sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
  const srv = net.createServer((sock) => {
    scripted.sockets.push(sock);
    sock.on('error', () => {});
    const decoder = new FrameDecoder(1 << 24);
    let hello = true;
    sock.on('data', (d: Buffer) => {
      for (const f of decoder.push(d)) {
        if (hello) {
          hello = false;
          continue;
        }
        const msg = codec.decode(Buffer.from(f));
        if (msg.msgid === -1) continue;
        scripted.calls.push(msg);
        onCall(msg, scripted, sock);
      }
    });
    if (greeting !== null) sock.write(encodeFrame(Buffer.from(greeting, 'latin1')));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  scripted.address.port = (srv.address() as net.AddressInfo).port;
  return scripted;
}
