// ZEO's `ruok` request (ZEO.nagios's check): a connection that answers the server's greeting with 'ruok'
// instead of a protocol gets one frame of JSON, the status of every storage the server serves, and is closed.

import net from 'node:net';
import tls from 'node:tls';
import type { PickleValue } from '../pickle/index.js';
import { encodeFrame, FrameDecoder } from '../protocol/index.js';
import { clientTlsOptions, type TlsSection } from '../transport/tls.js';
import { describeAddress, type ServerAddress } from './connection.js';
import { ClientDisconnected } from './errors.js';

export interface RuokOptions {
  tls?: TlsSection | tls.ConnectionOptions;
  /** ms for the whole exchange (default 10 s) */
  timeout?: number;
  signal?: AbortSignal;
}

/** JSON as pickle values: objects become dicts. */
function fromJson(v: unknown): PickleValue {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v !== null && typeof v === 'object') {
    return new Map<PickleValue, PickleValue>(Object.entries(v).map(([k, x]) => [k, fromJson(x)]));
  }
  return v as PickleValue;
}

/** The server's status of each storage ({storage name: {connections, loads, ...}}). */
export function ruok(address: ServerAddress, options: RuokOptions = {}): Promise<PickleValue> {
  const where = describeAddress(address);
  return new Promise((resolve, reject) => {
    const tcp = typeof address === 'object' && 'host' in address ? address : null;
    const path = typeof address === 'string' ? address : 'path' in address ? address.path : '';
    let socket: net.Socket;
    if (options.tls) {
      const t = options.tls;
      const opts = 'authenticate' in t && 'certificate' in t ? clientTlsOptions(t) : t;
      socket = tcp
        ? tls.connect({ ...opts, host: tcp.host, port: tcp.port })
        : tls.connect({ ...opts, path });
    } else socket = tcp ? net.connect(tcp.port, tcp.host) : net.connect(path);
    const decoder = new FrameDecoder(1 << 24);
    let frames = 0;
    const fail = (why: string, cause?: unknown): void => {
      cleanup();
      reject(new ClientDisconnected(`ruok to ${where}: ${why}`, { cause }));
    };
    const timer = setTimeout(
      () => fail(`no answer within ${options.timeout ?? 10_000} ms`),
      options.timeout ?? 10_000,
    );
    const onAbort = (): void => {
      cleanup();
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason
      reject(options.signal!.reason);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
    };
    socket.on('error', (e) => fail(e.message, e));
    socket.on('close', () => fail('the server closed the connection before answering'));
    socket.on('data', (d: Buffer) => {
      let chunks: Buffer[];
      try {
        chunks = decoder.push(d).map((f) => Buffer.from(f));
      } catch (e) {
        fail(`bad frame: ${(e as Error).message}`, e);
        return;
      }
      for (const f of chunks) {
        if (frames++ === 0) {
          // the greeting: ask instead of choosing a protocol
          socket.write(encodeFrame(Buffer.from('ruok', 'latin1')));
          continue;
        }
        let status: unknown;
        try {
          status = JSON.parse(f.toString('utf8'));
        } catch (e) {
          fail('the answer is not JSON', e);
          return;
        }
        cleanup();
        resolve(fromJson(status));
        return;
      }
    });
  });
}
