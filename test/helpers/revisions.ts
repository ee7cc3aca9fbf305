// A small Data.fs with the record kinds a load meets: current and older revisions, back pointers (an undo) and
// a deleted object; for tests of the read path (the storage's and the server's).
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/server/log.js';
import { StorageServer } from '../../src/server/server.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { p64, z64, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { encodeUndoId } from '../../src/storage/undo-log.js';

export const REVISED_OBJECTS = 20;

/**
 * Writes at `path`: objects 1..REVISED_OBJECTS in two transactions, the first half in a third, undone by a fourth (back pointers to the
 * second revisions); then object 1 deleted. The five tids.
 */
export async function buildRevisions(path: string): Promise<Tid[]> {
  const s = await FileStorage.open(path, { create: true, fsync: false });
  const tids: Tid[] = [];
  const serials = new Map<number, Tid>();
  try {
    for (let rev = 0; rev < 3; rev++) {
      const meta = new TransactionMetaData();
      await s.tpcBegin(meta);
      // the third transaction (undone below) changes only the first half
      const changed = rev === 2 ? REVISED_OBJECTS / 2 : REVISED_OBJECTS;
      for (let i = 1; i <= changed; i++) {
        const data = Buffer.alloc(20 + i * 37 + rev, i + rev);
        await s.store(p64(BigInt(i)), serials.get(i) ?? z64, data, meta);
      }
      await s.tpcVote(meta);
      const tid = await s.tpcFinish(meta);
      for (let i = 1; i <= changed; i++) serials.set(i, tid);
      tids.push(tid);
    }
    const undo = new TransactionMetaData();
    await s.tpcBegin(undo);
    await s.undo(encodeUndoId(tids[2]), undo);
    await s.tpcVote(undo);
    tids.push(await s.tpcFinish(undo));
    const meta = new TransactionMetaData();
    await s.tpcBegin(meta);
    await s.deleteObject(p64(1n), tids[3], meta);
    await s.tpcVote(meta);
    tids.push(await s.tpcFinish(meta));
  } finally {
    await s.close();
  }
  return tids;
}

/**
 * One in-process server on two copies of buildRevisions' Data.fs: '1' with its read cache (what is in memory
 * takes the server's fast paths), '2' without (every call takes the general path), for tests that send both the
 * same frames and compare the replies. Its log is silent.
 */
export async function serveRevisionsTwice(prefix: string): Promise<{
  tids: Tid[];
  cached: FileStorage;
  uncached: FileStorage;
  server: StorageServer;
  address: { host: string; port: number };
  close(): Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const tids = await buildRevisions(join(dir, 'a.fs'));
  await copyFile(join(dir, 'a.fs'), join(dir, 'b.fs'));
  const cached = await FileStorage.open(join(dir, 'a.fs'), { fsync: false });
  const uncached = await FileStorage.open(join(dir, 'b.fs'), { fsync: false, cacheBytes: 0 });
  const logging = createLogger(
    { level: 'CRITICAL', handlers: [] },
    { stderr: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  const server = await StorageServer.create({
    storages: [
      { name: '1', storage: cached },
      { name: '2', storage: uncached },
    ],
    log: logging.root,
  });
  const bound = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 }, null);
  if (bound.kind !== 'tcp') throw new Error('not a tcp address');
  return {
    tids,
    cached,
    uncached,
    server,
    address: { host: '127.0.0.1', port: bound.port },
    close: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
