// Several servers over one database, for tests: in-process zeo-ts servers (server-fixture.ts), each serving a
// MemoryStorage of its own opened on one shared MemoryStorageData, so each is another writer to the others
// (watchInvalidations), as several `zeo serve` over one PostgreSQL database are; hearing of the others' commits at
// once, or only when polling.

import { MemoryStorage, MemoryStorageData } from '../../src/storage/memory/memory-storage.js';
import { startServer, type TestServer, type TestServerOptions } from './server-fixture.js';

export interface ServersOnOneDatabase {
  data: MemoryStorageData;
  servers: TestServer[];
  stop(): Promise<void>;
}

/**
 * `count` servers (storage '1' each) over one MemoryStorageData; with `pollIntervalMs` (ms), each storage hears
 * of the others' commits only when it polls, as a PostgreSQL storage does (MemoryStorageOptions.pollIntervalMs).
 */
export async function startServersOnOneDatabase(
  count: number,
  options: Omit<TestServerOptions, 'opened' | 'storages'> = {},
  pollIntervalMs?: number,
): Promise<ServersOnOneDatabase> {
  const data = new MemoryStorageData();
  const servers: TestServer[] = [];
  const stop = async (): Promise<void> => {
    for (const s of servers.splice(0)) await s.stop();
  };
  try {
    for (let i = 0; i < count; i++) {
      const storage = new MemoryStorage({ name: `MemoryStorage(server ${i})`, data, pollIntervalMs });
      servers.push(await startServer({ ...options, opened: [{ name: '1', storage }] }));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { data, servers, stop };
}
