// fsdump's walk (ZODB/FileStorage/fsdump.py): the transactions of a Data.fs in file order, each with its data
// records and their data (found through back pointers), read through the WindowReader; `zeo dump` prints them
// (as fsdump's lines, or JSON). A last transaction whose commit had not finished (status 'c', or its length
// running past the end of the file: a crash or a commit in progress) ends the walk with a note, as it ends
// ZODB's iterator; damage anywhere else (a 'c' in the middle of the file included, where ZODB's iterator stops
// quietly) ends it with the CorruptedError naming the offset.

import { open } from 'node:fs/promises';
import { CorruptedError } from '../errors.js';
import type { Tid } from '../ids.js';
import {
  checkFileHeader,
  decodeTransaction,
  decodeTxnHeader,
  FILE_HEADER_LEN,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  type DecodedTransaction,
} from './format.js';
import { followBack, transactionEndingFile } from './records.js';
import { WindowReader } from './window.js';

export interface DumpRecord {
  oid: Uint8Array;
  /** the record's file position */
  offset: number;
  /** the data, found through the back pointer when there is one; null when none */
  data: Uint8Array | null;
  /** the back pointer, 0 when the record holds its data */
  back: number;
  /** the tid of the record the back pointer points to (fsdump's bp); null for none */
  backTid: Tid | null;
}

export interface DumpTransaction {
  txn: DecodedTransaction;
  records: DumpRecord[];
}

export interface DumpEnd {
  /** why the walk stopped before the end of the file (a commit not finished), or null */
  note: string | null;
  /** the damage that stopped it, or null */
  error: CorruptedError | null;
}

/**
 * Walks the transactions of the Data.fs at `path` in file order, calling (and awaiting) `onTxn` for each
 * (its views are valid until the promise it returns resolves). Resolves how it ended; I/O errors reject.
 */
export async function walkTransactions(
  path: string,
  onTxn: (t: DumpTransaction) => void | Promise<void>,
): Promise<DumpEnd> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const r = new WindowReader(fh, path, size, 4 << 20);
    const rnd = new WindowReader(fh, path, size, 64 << 10);
    try {
      if (size === 0) throw new CorruptedError(path, 0, 'empty file: not a FileStorage data file');
      checkFileHeader(await r.at(0, FILE_HEADER_LEN), path);
      let pos = FILE_HEADER_LEN;
      let lastTid: Tid | null = null;
      while (pos < size) {
        const hb = await r.at(pos, TRANS_HDR_LEN);
        if (hb.length < TRANS_HDR_LEN) {
          return { note: `the file ends in a transaction header cut short, at ${pos}`, error: null };
        }
        const h = decodeTxnHeader(hb, 0, path, pos);
        const next = pos + h.tl + TRAILER_LEN;
        if (!(next <= size)) {
          // a crash leaves nothing after the transaction it cut short; a damaged length, whole ones
          if ((await transactionEndingFile((p, n) => rnd.at(p, n), size, pos)) !== null) {
            throw new CorruptedError(path, pos, `transaction length ${h.tl} runs past the end of the file`);
          }
          return {
            note: `the transaction at ${pos} runs past the end of the file (a commit cut short): stopped there`,
            error: null,
          };
        }
        if (h.status === 'c' && next === size) {
          return {
            note: `the transaction at ${pos} has not finished its commit (status 'c'): stopped there`,
            error: null,
          };
        }
        // (a 'c' in the middle of the file is damage: decodeTransaction says so)
        const txn = decodeTransaction(await r.at(pos, h.tl + TRAILER_LEN), 0, path, pos, lastTid);
        const records: DumpRecord[] = [];
        if (txn.status !== 'u') {
          for (const rec of txn.records) {
            let data = rec.data;
            let backTid: Tid | null = null;
            if (data === null && rec.back !== 0) {
              // (a copy: the random window moves on at the next back pointer)
              const resolved = await followBack(rnd, rec.back, rec.oid);
              data = resolved.data && new Uint8Array(resolved.data);
              backTid = resolved.tid;
            }
            records.push({ oid: rec.oid, offset: rec.pos, data, back: rec.back, backTid });
          }
        }
        await onTxn({ txn, records });
        lastTid = txn.tid;
        pos = pos + h.tl + TRAILER_LEN;
      }
      return { note: null, error: null };
    } catch (e) {
      if (e instanceof CorruptedError) return { note: null, error: e };
      throw e;
    }
  } finally {
    await fh.close();
  }
}
