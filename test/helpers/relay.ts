// A TCP relay between a client and a real server, for tests that watch or delay the conversation: it records
// the names of the client's calls (decoded in the encoding the server's greeting chose), counts the client's
// bytes, and can hold the server's frames back, then let them go together in one write (so the client reads
// them in one go: a reply and the invalidation behind it, as ZEO#155's race needs).
import net from 'node:net';
import { codecFor, FrameDecoder, type Message } from '../../src/protocol/index.js';

export interface Relay {
  address: { host: string; port: number };
  /** the client's calls, by name, in order (heartbeats left out) */
  readonly calls: string[];
  count(name: string): number;
  /** bytes the client has sent */
  readonly fromClient: number;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

export async function relay(to: { host: string; port: number }): Promise<Relay> {
  const calls: string[] = [];
  const held: Array<{ to: net.Socket; data: Buffer }> = [];
  let holding = false;
  let fromClient = 0;
  let closed = false;
  const sockets: net.Socket[] = [];
  const proxy = net.createServer((client) => {
    const server = net.connect(to.port, to.host);
    sockets.push(client, server);
    const decoder = new FrameDecoder(2 ** 31 - 1);
    let codec: ReturnType<typeof codecFor> | null = null;
    let greeting: Buffer | null = null;
    let answered = false;
    client.on('data', (d: Buffer) => {
      fromClient += d.length;
      server.write(d);
      try {
        for (const f of decoder.push(d)) {
          // the client's first frame answers the greeting: the encoding is the greeting's
          if (!answered) {
            answered = true;
            codec = codecFor(greeting?.toString('latin1').startsWith('M') ? 'M' : 'Z', 'server');
            continue;
          }
          const msg: Message = codec!.decode(Buffer.from(f));
          if (msg.msgid !== -1) calls.push(msg.name);
        }
      } catch {
        // not ours to judge: the server will
      }
    });
    const greetingDecoder = new FrameDecoder(1 << 16);
    server.on('data', (d: Buffer) => {
      if (greeting === null) {
        const [first] = greetingDecoder.push(d);
        if (first) greeting = Buffer.from(first);
      }
      if (holding) held.push({ to: client, data: d });
      else client.write(d);
    });
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    address: { host: '127.0.0.1', port: (proxy.address() as net.AddressInfo).port },
    calls,
    count: (name) => calls.filter((c) => c === name).length,
    get fromClient() {
      return fromClient;
    },
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      const byClient = new Map<net.Socket, Buffer[]>();
      for (const h of held.splice(0)) byClient.set(h.to, [...(byClient.get(h.to) ?? []), h.data]);
      for (const [client, chunks] of byClient) client.write(Buffer.concat(chunks));
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => proxy.close(r));
    },
  };
}
