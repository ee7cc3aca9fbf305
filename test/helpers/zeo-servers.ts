// A ZEO server of either kind for tests that talk to both: zeo serve in this process (server-fixture.ts) or
// Python's runzeo as a child (server-process.ts), in pickle or msgpack mode, over a FileStorage with a blob
// directory, on 127.0.0.1 (a port of the OS's choosing) or a unix socket. Stopped (and its files removed) by
// stop(). And runZeo: the `zeo` command as a child process.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from './oracle.js';
import { fileStorageConfig, startServer } from './server-fixture.js';
import { freePort, ServerProcess } from './server-process.js';

export type ZeoServerKind = 'zeo-ts' | 'runzeo';

export interface ZeoServerOptions {
  msgpack?: boolean;
  /** a blob directory (default true) */
  blobs?: boolean;
  /** listen on a unix socket instead of TCP */
  unix?: boolean;
  /** makes the Data.fs (and the blobs) the server starts on */
  prepare?: (dataFile: string, blobDir: string | null) => Promise<void>;
}

export interface RunningZeoServer {
  kind: ZeoServerKind;
  /** the address for our client */
  address: { host: string; port: number } | { path: string };
  /** the address as Python's ClientStorage (and the oracle's history helper) take it: a port, or a path */
  pyAddress: number | string;
  /** "host:port" or the socket path, as the command line takes it */
  spec: string;
  /** the Data.fs it serves, and its blob directory (null: none) */
  dataFile: string;
  blobDir: string | null;
  stop(): Promise<void>;
}

export async function startZeoServer(
  kind: ZeoServerKind,
  options: ZeoServerOptions = {},
): Promise<RunningZeoServer> {
  const blobs = options.blobs ?? true;
  const msgpack = options.msgpack ?? false;
  const dir = await mkdtemp(join(tmpdir(), `zeo-ts-${kind}-`));
  const blobDir = blobs ? join(dir, 'blobs') : null;
  try {
    await options.prepare?.(join(dir, 'Data.fs'), blobDir);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  if (kind === 'zeo-ts') {
    let s;
    try {
      s = await startServer({
        dir,
        msgpack,
        unix: options.unix,
        storages: (d) => [fileStorageConfig(d, '1', { blobDir })],
      });
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    const a = s.address;
    return {
      kind,
      address: a,
      pyAddress: 'path' in a ? a.path : a.port,
      spec: 'path' in a ? a.path : `${a.host}:${a.port}`,
      dataFile: join(dir, 'Data.fs'),
      blobDir,
      async stop() {
        await s.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const conf = join(dir, 'zeo.conf');
  const port = options.unix ? 0 : await freePort();
  const sock = join(dir, 'zeo.sock');
  await writeFile(
    conf,
    `<zeo>\n  address ${options.unix ? sock : `127.0.0.1:${port}`}\n  msgpack ${msgpack}\n</zeo>\n` +
      `<filestorage 1>\n  path ${dir}/Data.fs\n${blobDir ? `  blob-dir ${blobDir}\n` : ''}</filestorage>\n`,
  );
  const server = new ServerProcess({ kind: 'runzeo', conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
  try {
    if (options.unix) await server.waitForLog(/listening on/, 30_000);
    else await server.port(30_000);
  } catch (e) {
    server.kill();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    kind,
    address: options.unix ? { path: sock } : { host: '127.0.0.1', port },
    pyAddress: options.unix ? sock : port,
    spec: options.unix ? sock : `127.0.0.1:${port}`,
    dataFile: join(dir, 'Data.fs'),
    blobDir,
    async stop() {
      await server.stopCleanly();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const zeo = resolve(repoRoot, 'bin/zeo');

/** Runs `zeo ARGS` as a child (asynchronously: a server in this process keeps answering). */
export function runZeo(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const p = spawn(process.execPath, [zeo, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', fail);
    p.on('close', (status) => done({ status, stdout, stderr }));
  });
}
