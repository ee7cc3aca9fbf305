// A Data.fs a pack has work in: the root referring to object 1, rewritten `revisions` times (a pack to now keeps
// only the last revision), each revision `size` bytes of a MinPO; real pickles, so the server's and Python's
// reference finders read them.
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { p64, z64, type Oid, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { mappingRecord, minpo, ref } from '../storage/contract/helpers.js';

/** Writes the history into a new FileStorage at `path` and returns it open (the caller closes it). */
export async function buildPackable(path: string, revisions: number, size = 1024): Promise<FileStorage> {
  const s = await FileStorage.open(path, { create: true, fsync: false });
  const serials = new Map<string, Tid>();
  const commit = async (records: Array<[Oid, Uint8Array]>): Promise<void> => {
    const meta = new TransactionMetaData();
    await s.tpcBegin(meta);
    for (const [oid, data] of records) await s.store(oid, serials.get(oid.join()) ?? z64, data, meta);
    await s.tpcVote(meta);
    const tid = await s.tpcFinish(meta);
    for (const [oid] of records) serials.set(oid.join(), tid);
  };
  await commit([
    [z64, mappingRecord([['x', ref(p64(1))]])],
    [p64(1), minpo('x'.repeat(size))],
  ]);
  for (let i = 0; i < revisions; i++) await commit([[p64(1), minpo(String(i % 10).repeat(size))]]);
  return s;
}
