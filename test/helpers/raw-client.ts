// A bare ZEO protocol client for tests: frames, the handshake and calls by hand, so tests can send exactly
// the bytes they mean (bad frames, out-of-order calls) and see exactly what the server answers.

import net from 'node:net';
import { pyEquals, pyRepr, type PickleValue } from '../../src/pickle/index.js';
import {
  codecFor,
  encodeFrame,
  FrameDecoder,
  type Message,
  type MessageCodec,
} from '../../src/protocol/index.js';

export class RawClient {
  readonly received: Buffer[] = [];
  private readonly decoder = new FrameDecoder(0xffffffff);
  private waiters: Array<() => void> = [];
  closed = false;
  codec: MessageCodec | null = null;
  private msgid = 0;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      for (const f of this.decoder.push(d)) this.received.push(Buffer.from(f));
      this.wake();
    });
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static connect(address: { host: string; port: number } | { path: string }): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = 'path' in address ? net.connect(address.path) : net.connect(address.port, address.host);
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects, reads the greeting, answers it and registers storage '1' (unless told not to). */
  static async open(
    address: { host: string; port: number } | { path: string },
    options: { encoding?: 'Z' | 'M'; register?: string | null; readOnly?: boolean } = {},
  ): Promise<RawClient> {
    const c = await RawClient.connect(address);
    const greeting = await c.nextFrame();
    const encoding = options.encoding ?? (greeting.toString('latin1')[0] as 'Z' | 'M');
    c.sendFrame(Buffer.from(`${encoding}5`, 'latin1'));
    c.codec = codecFor(encoding, 'client');
    const storage = options.register === undefined ? '1' : options.register;
    if (storage !== null) await c.call('register', [storage, options.readOnly ?? false]);
    return c;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async waitFor<T>(pick: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pick();
      if (v !== undefined) return v;
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the server');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next raw frame payload. */
  nextFrame(timeoutMs = 5000): Promise<Buffer> {
    return this.waitFor(() => this.received.shift(), timeoutMs);
  }

  /** The next decoded message. */
  async nextMessage(timeoutMs = 5000): Promise<Message> {
    return this.codec!.decode(await this.nextFrame(timeoutMs));
  }

  sendFrame(payload: Uint8Array): void {
    this.socket.write(encodeFrame(payload));
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends a sync call and returns its msgid. */
  send(name: string, args: PickleValue[], msgid?: PickleValue): PickleValue {
    const id = msgid ?? ++this.msgid;
    this.sendFrame(this.codec!.encodeCall(id, false, name, args));
    return id;
  }

  sendAsync(name: string, args: PickleValue[]): void {
    this.sendFrame(this.codec!.encodeCall(0, true, name, args));
  }

  /** Waits for the reply to `msgid`, keeping other messages (invalidations) in `others`. */
  readonly others: Message[] = [];
  async reply(msgid: PickleValue, timeoutMs = 10000): Promise<{ flag: PickleValue; result: PickleValue }> {
    for (;;) {
      const m = await this.nextMessage(timeoutMs);
      if (m.name === '.reply' && pyEquals(m.msgid, msgid)) return { flag: m.flag, result: m.body };
      this.others.push(m);
    }
  }

  /** A sync call: its result, or throws with the error reply's class name and args. */
  async call(name: string, args: PickleValue[] = []): Promise<PickleValue> {
    const r = await this.reply(this.send(name, args));
    if (r.flag === 2) throw new ServerError(r.result as PickleValue[]);
    return r.result;
  }

  close(): void {
    this.socket.destroy();
  }
}

export class ServerError extends Error {
  readonly className: string;
  readonly args: PickleValue;
  constructor(reply: PickleValue[]) {
    super(`${reply[0] as string}: ${pyRepr(reply[1])}`);
    this.className = reply[0] as string;
    this.args = reply[1];
  }
}
