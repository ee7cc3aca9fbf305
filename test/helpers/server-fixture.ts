// A real zeo-ts server for tests: in this process, on 127.0.0.1 with port 0 (or a unix socket in a temp
// dir), serving FileStorages in a temp dir unless told otherwise; stopped by the test.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileStorageDefaults, type StorageConfig } from '../../src/server/config.js';
import type { ConnectionLimits } from '../../src/server/connection.js';
import { createLogger } from '../../src/server/log.js';
import { openStorages } from '../../src/server/open-storages.js';
import { StorageServer } from '../../src/server/server.js';

export interface TestServerOptions {
  /** storage sections; default one FileStorage '1' at <dir>/Data.fs with blobs in <dir>/blobs */
  storages?: (dir: string) => StorageConfig[];
  /** serve on a unix socket in the temp dir instead of TCP */
  unix?: boolean;
  /** a fixed TCP port (default 0: any free one) */
  port?: number;
  readOnly?: boolean;
  msgpack?: boolean;
  invalidationQueueSize?: number;
  invalidationAge?: number | null;
  transactionTimeout?: number | null;
  limits?: Partial<ConnectionLimits>;
  commitLogThreshold?: number;
  maxBlobUpload?: number;
  /** an existing directory to serve from (kept on stop) */
  dir?: string;
}

export interface TestServer {
  server: StorageServer;
  dir: string;
  /** for Python: a port number, or the unix socket path */
  address: { host: string; port: number } | { path: string };
  /** the address as Python's ClientStorage takes it, as Python source */
  pyAddress: string;
  /** every log line the server wrote */
  logs: string[];
  stop(): Promise<void>;
}

export function fileStorageConfig(
  dir: string,
  name = '1',
  extra: Partial<StorageConfig> = {},
): StorageConfig {
  return {
    ...fileStorageDefaults(name, join(dir, name === '1' ? 'Data.fs' : `${name}.fs`)),
    blobDir: join(dir, name === '1' ? 'blobs' : `${name}-blobs`),
    ...extra,
  } as StorageConfig;
}

export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'zeo-ts-server-')));
  const logs: string[] = [];
  const sink = {
    write(line: string | Uint8Array): boolean {
      logs.push(String(line));
      if (process.env.ZEO_TS_TEST_LOG === '1') process.stderr.write(line);
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  const logging = createLogger(
    {
      level: 'DEBUG',
      handlers: [
        {
          path: 'STDERR',
          format: '%(levelname)s %(name)s %(message)s',
          level: 'DEBUG',
          dateformat: '%Y-%m-%dT%H:%M:%S',
        },
      ],
    },
    { stderr: sink },
  );
  const storages = await openStorages(
    (options.storages ?? ((d: string) => [fileStorageConfig(d)]))(dir),
    logging.root.child('ZEO.runzeo'),
  );
  const server = await StorageServer.create({
    storages,
    log: logging.root,
    readOnly: options.readOnly,
    msgpack: options.msgpack,
    invalidationQueueSize: options.invalidationQueueSize,
    invalidationAge: options.invalidationAge,
    transactionTimeout: options.transactionTimeout,
    limits: options.limits,
    commitLogThreshold: options.commitLogThreshold,
    maxBlobUpload: options.maxBlobUpload,
  });
  let bound;
  try {
    bound = await server.listen(
      options.unix
        ? { kind: 'unix', path: join(dir, 'zeo.sock') }
        : { kind: 'tcp', host: '127.0.0.1', port: options.port ?? 0 },
    );
  } catch (e) {
    await server.close();
    await logging.close();
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const address = bound.kind === 'unix' ? { path: bound.path } : { host: '127.0.0.1', port: bound.port };
  const pyAddress = 'path' in address ? JSON.stringify(address.path) : `('127.0.0.1', ${address.port})`;
  return {
    server,
    dir,
    address,
    pyAddress,
    logs,
    async stop() {
      await server.close();
      await logging.close();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}
