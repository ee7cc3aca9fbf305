// Python's runzeo over a FileStorage in a directory, on a loopback port, as the client tests start it: started
// again on the same port and files after a stop (a restart), and its directory removed when asked.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ServerProcess } from './server-process.js';

export interface Runzeo {
  address: { host: string; port: number };
  dir: string;
  /** the running process (null while stopped) */
  process: ServerProcess | null;
  /** starts it (again): same port, same Data.fs */
  start(): Promise<void>;
  /** stops it with SIGTERM; it must exit cleanly */
  stop(): Promise<void>;
  /** stops it if running, and removes its directory */
  dispose(): Promise<void>;
}

export async function runzeo(options: { msgpack?: boolean } = {}): Promise<Runzeo> {
  const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-runzeo-'));
  const port = await freePort();
  const conf = join(dir, 'zeo.conf');
  await writeFile(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n  msgpack ${options.msgpack ?? false}\n</zeo>\n` +
      `<filestorage 1>\n  path ${dir}/Data.fs\n</filestorage>\n`,
  );
  const r: Runzeo = {
    address: { host: '127.0.0.1', port },
    dir,
    process: null,
    async start() {
      const p = new ServerProcess({ kind: 'runzeo', conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
      try {
        await p.port(30_000);
      } catch (e) {
        p.kill();
        throw e;
      }
      r.process = p;
    },
    async stop() {
      const p = r.process;
      r.process = null;
      await p?.stopCleanly();
    },
    async dispose() {
      try {
        await r.stop();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    await r.start();
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return r;
}
