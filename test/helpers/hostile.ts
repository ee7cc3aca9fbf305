// Hostile clients against a real server process (zeo serve or runzeo), and the server's resident memory read
// from /proc/PID/status, for the memory test and `npm run bench -- hostile`: a client that pipelines 64 loads
// of a 1 MiB record and never reads, a 10^6-deep nested pickle, and 300 idle connections.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PickleValue } from '../../src/pickle/index.js';
import { encodeFrame } from '../../src/protocol/index.js';
import { RawClient } from './raw-client.js';
import { freePort, ServerProcess, sleep, type ServerKind } from './server-process.js';

export const MiB = 1024 * 1024;

/** VmRSS of a process, in bytes. */
export function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

/** The RSS once it has settled (no change above 1 MiB for `quietMs`), or after `maxMs`; and the peak seen. */
export async function settledRss(
  pid: number,
  quietMs = 1500,
  maxMs = 8000,
): Promise<{ now: number; peak: number }> {
  const start = Date.now();
  let last = rss(pid);
  let peak = last;
  let since = Date.now();
  while (Date.now() - start < maxMs) {
    await sleep(100);
    const r = rss(pid);
    peak = Math.max(peak, r);
    if (Math.abs(r - last) > MiB) {
      last = r;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return { now: r, peak };
    }
  }
  return { now: rss(pid), peak };
}

/** A FileStorage server in `dir` on a loopback port, ready for clients. */
export async function startServer(
  kind: ServerKind,
  dir: string,
): Promise<{ server: ServerProcess; port: number }> {
  const port = kind === 'runzeo' ? await freePort() : 0;
  const conf = join(dir, `${kind}.conf`);
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n</zeo>\n<filestorage 1>\n  path ${join(dir, `${kind}.fs`)}\n</filestorage>\n`,
  );
  const server = new ServerProcess({ kind, conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
  return { server, port: kind === 'runzeo' ? (await server.port(), port) : await server.port() };
}

const z8 = new Uint8Array(8);

/** Commits one record of `size` bytes as a new object; its oid. */
export async function storeLargeObject(port: number, size: number): Promise<Uint8Array> {
  const c = await RawClient.open({ host: '127.0.0.1', port });
  try {
    const [oid] = (await c.call('new_oids', [1])) as Uint8Array[];
    const data = new Uint8Array(size).fill(0x61);
    c.sendAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.sendAsync('storea', [oid, z8, data, 1]);
    await c.call('vote', [1]);
    await c.call('tpc_finish', [1]);
    return oid;
  } finally {
    c.close();
  }
}

/** A registered client that sends `count` loadBefore calls of `oid` and never reads; close() ends it. */
export async function pipelineLoads(port: number, oid: Uint8Array, count: number): Promise<RawClient> {
  const c = await RawClient.open({ host: '127.0.0.1', port });
  // stop reading: what the server sends piles up in its buffers, not ours
  c.socket.pause();
  const max = new Uint8Array(8).fill(0xff);
  for (let i = 0; i < count; i++) c.send('loadBefore', [oid, max] as PickleValue[]);
  return c;
}

/**
 * One call whose argument is a list nested `depth` deep, as a raw pickle ('Z' encoding): 2 bytes a level,
 * the decoded form tens of bytes a level. The reply (any: the server may refuse it) is awaited.
 */
export async function deepPickle(port: number, depth: number): Promise<void> {
  const c = await RawClient.open({ host: '127.0.0.1', port }, { encoding: 'Z' });
  try {
    const name = Buffer.from('lastTransaction', 'ascii');
    const head = Buffer.concat([
      Buffer.from([0x80, 0x03, 0x28, 0x4b, 0x07, 0x89, 0x58]), // PROTO 3, MARK, BININT1 7, NEWFALSE, BINUNICODE
      Buffer.from([name.length, 0, 0, 0]),
      name,
    ]);
    // EMPTY_LIST x depth, then APPEND x (depth - 1): each list into the one below it
    const body = Buffer.concat([Buffer.alloc(depth, 0x5d), Buffer.alloc(depth - 1, 0x61)]);
    const tail = Buffer.from([0x85, 0x74, 0x2e]); // TUPLE1 (the args), TUPLE (the message), STOP
    c.sendRaw(encodeFrame(Buffer.concat([head, body, tail])));
    await c.nextFrame(120_000).catch(() => undefined);
  } finally {
    c.close();
  }
}

/** `count` connections that answer the greeting, register, and then do nothing. */
export async function idleConnections(port: number, count: number): Promise<RawClient[]> {
  const out: RawClient[] = [];
  for (let i = 0; i < count; i += 25) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(25, count - i) }, () => RawClient.open({ host: '127.0.0.1', port })),
    );
    out.push(...batch);
  }
  return out;
}

export interface HostileFigures {
  kind: ServerKind;
  /** RSS after start and one commit of the 1 MiB record */
  base: number;
  /** per round: [load, peak during it, RSS once settled after it ended] */
  rounds: Array<{ load: string; peak: number; after: number }>;
  /** RSS at the end of the run, settled */
  end: number;
}

export const LOADS = ['pipeline 64 x 1 MiB', '10^6-deep pickle', '300 idle connections'] as const;

/** Runs every hostile load `repeat` times against a server, measuring its RSS. */
export async function runHostile(
  server: ServerProcess,
  port: number,
  repeat: number,
  log: (line: string) => void = () => {},
): Promise<HostileFigures> {
  const oid = await storeLargeObject(port, MiB);
  const pid = server.pid;
  const base = (await settledRss(pid)).now;
  const rounds: HostileFigures['rounds'] = [];
  for (let r = 0; r < repeat; r++) {
    for (const load of LOADS) {
      const before = rss(pid);
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, rss(pid))), 50);
      if (load === LOADS[0]) {
        const c = await pipelineLoads(port, oid, 64);
        peak = Math.max(peak, (await settledRss(pid, 1000, 6000)).peak);
        c.close();
      } else if (load === LOADS[1]) {
        await deepPickle(port, 1_000_000);
      } else {
        const cs = await idleConnections(port, 300);
        peak = Math.max(peak, (await settledRss(pid, 1000, 4000)).peak);
        for (const c of cs) c.close();
      }
      clearInterval(sampler);
      const after = (await settledRss(pid)).now;
      peak = Math.max(peak, after);
      rounds.push({ load, peak, after });
      log(`${server.label} round ${r + 1} ${load}: peak ${mib(peak)} MiB, then ${mib(after)} MiB`);
    }
  }
  const end = (await settledRss(pid, 2000, 15_000)).now;
  return { kind: server.kind, base, rounds, end };
}

export function mib(bytes: number): string {
  return (bytes / MiB).toFixed(0);
}
