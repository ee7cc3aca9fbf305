// Opens the storages a configuration names, as runzeo does with its storage sections.

import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { decompressRecord, isZlibRecord, referencesf } from '../pickle/record.js';
import { FileStorage } from '../storage/filestorage/index.js';
import type { Storage } from '../storage/interfaces.js';
import { MemoryStorage } from '../storage/memory/memory-storage.js';
import type { StorageConfig } from './config.js';
import type { Logger } from './log.js';

export interface OpenedStorage {
  name: string;
  storage: Storage;
}

/**
 * referencesf for pack's garbage collection that also reads zc.zlibstorage's compressed records ('.z' and a
 * zlib stream): a pickle never starts with '.', so every record can go through it.
 */
export function zlibAwareReferences(data: Uint8Array, oids?: Uint8Array[]): Uint8Array[] {
  return referencesf(isZlibRecord(data) ? decompressRecord(data) : data, oids);
}

type PostgreSQLConfig = Extract<StorageConfig, { kind: 'postgresql' }>;

async function openPostgreSQL(c: PostgreSQLConfig, log: Logger): Promise<Storage> {
  // node-postgres and the engine load only when a configuration names a PostgreSQL storage
  const [{ PostgreSQLStorage }, { describeConnection, pgClientConfig }] = await Promise.all([
    import('../storage/postgresql/postgresql-storage.js'),
    import('../storage/postgresql/options.js'),
  ]);
  log.info(
    `opening storage '${c.name}' using PostgreSQL (RelStorage's schema): ${describeConnection(pgClientConfig(c.options.dsn))}`,
  );
  for (const i of c.ignored) log.warn(`storage '${c.name}': ignoring ${i}`);
  return PostgreSQLStorage.open(c.options);
}

export async function openStorages(configs: StorageConfig[], log: Logger): Promise<OpenedStorage[]> {
  const opened: OpenedStorage[] = [];
  const fsLog = log.child('ZODB.FileStorage');
  try {
    for (const c of configs) {
      if (c.kind === 'mappingstorage') {
        log.info(`opening storage '${c.name}' using MappingStorage`);
        // offering what runzeo's MappingStorage offers, no more
        opened.push({
          name: c.name,
          storage: new MemoryStorage({ name: c.description, mappingStorage: true }),
        });
        continue;
      }
      if (c.kind === 'postgresql') {
        opened.push({ name: c.name, storage: await openPostgreSQL(c, log) });
        continue;
      }
      log.info(`opening storage '${c.name}' using FileStorage`);
      if (!c.readOnly) await mkdir(dirname(c.path), { recursive: true });
      const storage = await FileStorage.open(c.path, {
        create: c.create,
        readOnly: c.readOnly,
        blobDir: c.blobDir,
        packGc: c.packGc,
        packKeepOld: c.packKeepOld,
        quotaBytes: c.quota,
        log: (level, message) => {
          if (level === 'critical') fsLog.critical(message);
          else if (level === 'error') fsLog.error(message);
          else if (level === 'warning') fsLog.warn(message);
          else if (level === 'info') fsLog.info(message);
          else fsLog.debug(message);
        },
      });
      opened.push({ name: c.name, storage });
    }
  } catch (e) {
    // the open error is the one to report
    for (const o of opened) await o.storage.close().catch(() => {});
    throw e;
  }
  return opened;
}
