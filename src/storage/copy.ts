// ZODB.BaseStorage.copy (copyTransactionsFrom): every transaction of a source storage restored into a destination
// with its tid, status, metadata (the extension's bytes as stored) and back pointers. Blob files are not copied:
// a storage with blobs needs ZODB.blob.copyTransactionsFromTo's extra step.

import { TimeStamp } from './timestamp.js';
import { TransactionMetaData, type Storage } from './interfaces.js';

/** Copies all transactions of `source` into `dest` (which must be empty or older); returns how many. */
export async function copyTransactions(source: Storage, dest: Storage): Promise<number> {
  let last: TimeStamp | null = null;
  let n = 0;
  for await (const txn of source.iterator()) {
    let ts = new TimeStamp(txn.tid);
    // tids out of order in the source (damaged or hand-made files): keep the destination's order, as ZODB does
    if (last !== null && ts.compare(last) <= 0) ts = ts.laterThan(last);
    last = ts;
    const tid = ts.raw();
    const meta = new TransactionMetaData(txn.user, txn.description, txn.extension, txn.extensionBytes);
    await dest.tpcBegin(meta, tid, txn.status);
    try {
      for await (const r of txn.records) await dest.restore(r.oid, tid, r.data, r.dataTxn, meta);
      await dest.tpcVote(meta);
      await dest.tpcFinish(meta);
    } catch (e) {
      await dest.tpcAbort(meta);
      throw e;
    }
    n++;
  }
  return n;
}
