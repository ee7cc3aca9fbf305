// `zeo dump [--json] PATH`: the transactions and data records of a Data.fs, in file order.
//
// Text (the default) is ZODB's fsdump (ZODB/FileStorage/fsdump.py), line for line:
//   Trans #00000 tid=03f0e1c2d3a4b5c6 size=151 time=2024-06-07 12:30:15.250000 offset=59
//       status=' ' user=b'' description=b'initial database creation'
//     data #00000 oid=0000000000000000 size=60 class=persistent.mapping.PersistentMapping
// where size is the transaction's length (without its trailing 8 bytes), offset (as fsdump prints it) the
// position of its first data record, just after the header, user and description Python's repr of the
// bytes; a record's size and class are those of its data, found through its back pointer when it has one
// (then " bp=<tid>" names the transaction the back pointer points into), and a record without data (the
// object's creation undone, or the object deleted) reads "class=undo or abort of object creation".
//
// --json: one JSON object per transaction per line:
//   {"tid": "03f0e1c2d3a4b5c6", "offset": 4, "time": "2024-06-07 12:30:15.250000", "status": " ",
//    "user": "...", "description": "...", "extension": {...}, "size": 151,
//    "records": [{"oid": "0000000000000000", "offset": 59, "size": 60,
//                 "class": "persistent.mapping.PersistentMapping"}, ...]}
//   - "offset" is the file position of the transaction header (of the data record header, in "records");
//     "size" the transaction's length as stored (tl: all of it but the trailing 8-byte copy of tl);
//   - "user" and "description" are the bytes decoded as UTF-8 (ZODB encodes text so), or {"$bytes": "<hex>"}
//     when they are not valid UTF-8;
//   - "extension" is the unpickled extension dict (an empty dict when there is none or it does not unpickle,
//     as ZODB's readers make it), as JSON by these rules: None null, bool, str a string, an int a number when
//     it is exact in a double (|n| <= 2^53) else {"$int": "<decimal>"}, a float a number ({"$float": "nan" |
//     "inf" | "-inf"} when not finite; 1.0 prints as 1), bytes and bytearray {"$bytes": "<hex>"}, tuple and
//     list an array, set and frozenset {"$set": [...]}, a dict with str keys an object (else {"$dict":
//     [[key, value], ...]}), anything else (a class, an object of an unknown class, a persistent reference)
//     {"$repr": "<Python repr>"};
//   - a record's "size" is the length of its data, found through its back pointer when it has one, or null
//     when there is no data (the object's creation undone, or the object deleted), "class" its class as
//     fsdump finds it ("module.name"; null without data); a record that holds a back pointer instead of data
//     also has "back": {"offset": <position>, "tid": "<tid of the record there>"} ("tid" null for 0).
//
// A last transaction whose commit had not finished (status 'c', or its length running past the end of the
// file: a crash or a commit in progress) ends the dump, as it ends ZODB's iterator; a note says so on
// stderr. Damage anywhere else (a 'c' in the middle of the file included, where ZODB's iterator stops
// quietly) prints what came before it, then the error naming the offset (exit 1).

import { open } from 'node:fs/promises';
import { Command } from 'commander';
import { getPickleMetadata, PyFloat, pyRepr, type PickleValue } from '../pickle/index.js';
import { CorruptedError } from '../storage/errors.js';
import { decodeExtension } from '../storage/extension.js';
import { idHex, type Tid } from '../storage/ids.js';
import {
  checkFileHeader,
  DATA_HDR_LEN,
  decodeTransaction,
  decodeTxnHeader,
  FILE_HEADER_LEN,
  readU64,
  TRAILER_LEN,
  TRANS_HDR_LEN,
  type DecodedTransaction,
} from '../storage/filestorage/format.js';
import { TimeStamp } from '../storage/timestamp.js';
import { FileReader } from './file-reader.js';

// ---------------------------------------------------------------------------------------------------------
// values

/** ZODB.utils.get_pickle_metadata, as fsdump prints it. */
export { getPickleMetadata as pickleMetadata } from '../pickle/index.js';

/** A Python value as JSON, by the rules at the top of this file. */
export function pyToJson(v: PickleValue): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number')
    return Number.isSafeInteger(v) || Math.abs(v) <= 2 ** 53 ? v : { $int: String(v) };
  if (typeof v === 'bigint') {
    const a = v < 0n ? -v : v;
    return a <= 2n ** 53n ? Number(v) : { $int: v.toString() };
  }
  if (v instanceof PyFloat) {
    const x = v.value;
    if (Number.isFinite(x)) return x;
    return { $float: Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf' };
  }
  if (v instanceof Uint8Array)
    return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') };
  if (Array.isArray(v)) return v.map(pyToJson);
  if (v instanceof Map) {
    if ([...v.keys()].every((k) => typeof k === 'string')) {
      const o: Record<string, unknown> = {};
      for (const [k, x] of v) {
        Object.defineProperty(o, k as string, {
          value: pyToJson(x),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return o;
    }
    return { $dict: [...v].map(([k, x]) => [pyToJson(k), pyToJson(x)]) };
  }
  if (v instanceof Set) return { $set: [...v].map(pyToJson) };
  return { $repr: pyRepr(v) };
}

/** user / description: a string when the bytes are UTF-8, else {"$bytes": hex}. */
export function textToJson(b: Uint8Array): unknown {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  let s: string;
  try {
    s = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return { $bytes: buf.toString('hex') };
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// the walk

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
    const r = new FileReader(fh, size, 4 << 20, () => {});
    try {
      if (size === 0) throw new CorruptedError(path, 0, 'empty file: not a FileStorage data file');
      const o = await r.ensure(0, FILE_HEADER_LEN);
      checkFileHeader(r.buf.subarray(o, o + Math.min(FILE_HEADER_LEN, r.avail(0))), path);
      let pos = FILE_HEADER_LEN;
      let lastTid: Tid | null = null;
      while (pos < size) {
        let off = await r.ensure(pos, TRANS_HDR_LEN);
        if (r.avail(pos) < TRANS_HDR_LEN) {
          return { note: `the file ends in a transaction header cut short, at ${pos}`, error: null };
        }
        const h = decodeTxnHeader(r.buf, off, path, pos);
        const next = pos + h.tl + TRAILER_LEN;
        if (!(next <= size)) {
          // a crash leaves nothing after the transaction it cut short; a damaged length, whole ones
          if (await transactionEndsFileAfter(r, size, pos)) {
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
        off = await r.ensure(pos, h.tl + TRAILER_LEN);
        const txn = decodeTransaction(r.buf, off, path, pos, lastTid);
        const records: DumpRecord[] = [];
        if (txn.status !== 'u') {
          for (const rec of txn.records) {
            let data = rec.data;
            let backTid: Tid | null = null;
            if (data === null && rec.back !== 0) {
              const resolved = await loadBack(r, path, rec.oid, rec.back);
              data = resolved.data;
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

/**
 * FileStorageFormatter._loadBackTxn(oid, back, fail=False) and getTxnFromData: the data at the end of the
 * back pointer chain (null when it ends in a 0), and the tid of the record `back` points to.
 */
async function loadBack(
  r: FileReader,
  file: string,
  oid: Uint8Array,
  back: number,
): Promise<{ data: Uint8Array | null; tid: Tid }> {
  let tid: Tid | null = null;
  const seen = new Set<number>();
  for (let p = back; ;) {
    if (seen.has(p)) throw new CorruptedError(file, back, 'back pointers in a loop');
    seen.add(p);
    const h = await r.readAt(p, DATA_HDR_LEN + 8);
    if (h.length < DATA_HDR_LEN) throw new CorruptedError(file, p, 'back pointer past the end of the file');
    if (tid === null) {
      if (Buffer.compare(h.subarray(0, 8), oid) !== 0) {
        throw new CorruptedError(
          file,
          p,
          `back pointer to a record of another oid (${idHex(h.subarray(0, 8))})`,
        );
      }
      tid = new Uint8Array(h.subarray(8, 16));
    }
    const plen = readU64(h, 34);
    if (plen) {
      const data = await r.readAt(p + DATA_HDR_LEN, plen);
      if (data.length < plen) throw new CorruptedError(file, p, 'data record past the end of the file');
      return { data: new Uint8Array(data), tid };
    }
    if (h.length < DATA_HDR_LEN + 8)
      throw new CorruptedError(file, p, 'back pointer past the end of the file');
    const next = readU64(h, DATA_HDR_LEN);
    if (next === 0) return { data: null, tid };
    p = next;
  }
}

async function transactionEndsFileAfter(r: FileReader, size: number, after: number): Promise<boolean> {
  if (size < FILE_HEADER_LEN + TRANS_HDR_LEN + TRAILER_LEN) return false;
  const t = await r.readAt(size - TRAILER_LEN, TRAILER_LEN);
  const tl = readU64(t, 0);
  const q = size - TRAILER_LEN - tl;
  if (!(q > after) || tl < TRANS_HDR_LEN) return false;
  const h = await r.readAt(q, TRANS_HDR_LEN);
  return h.length === TRANS_HDR_LEN && readU64(h, 8) === tl;
}

// ---------------------------------------------------------------------------------------------------------
// output

function hex16(b: Uint8Array): string {
  return idHex(b);
}

/** fsdump's lines for one transaction (number `i`). */
export function fsdumpLines(t: DumpTransaction, i: number): string[] {
  const { txn } = t;
  const hlen = TRANS_HDR_LEN + txn.user.length + txn.description.length + txn.extension.length;
  const lines = [
    `Trans #${String(i).padStart(5, '0')} tid=${hex16(txn.tid)} size=${txn.tl} ` +
      `time=${new TimeStamp(txn.tid).toString()} offset=${txn.pos + hlen}`,
    `    status=${pyRepr(txn.status)} user=${pyRepr(txn.user)} description=${pyRepr(txn.description)}`,
  ];
  t.records.forEach((rec, j) => {
    let size = '';
    let fullclass = 'undo or abort of object creation';
    if (rec.data !== null) {
      const [m, c] = getPickleMetadata(rec.data);
      size = ` size=${rec.data.length}`;
      fullclass = `${m}.${c}`;
    }
    const bp = rec.backTid ? ` bp=${hex16(rec.backTid)}` : '';
    lines.push(`  data #${String(j).padStart(5, '0')} oid=${hex16(rec.oid)}${size} class=${fullclass}${bp}`);
  });
  return lines;
}

/** The JSON object of one transaction (see the top of this file). */
export function transactionJson(t: DumpTransaction): Record<string, unknown> {
  const { txn } = t;
  return {
    tid: hex16(txn.tid),
    offset: txn.pos,
    time: new TimeStamp(txn.tid).toString(),
    status: txn.status,
    user: textToJson(txn.user),
    description: textToJson(txn.description),
    extension: pyToJson(decodeExtension(txn.extension)),
    size: txn.tl,
    records: t.records.map((rec) => {
      const out: Record<string, unknown> = {
        oid: hex16(rec.oid),
        offset: rec.offset,
        size: rec.data === null ? null : rec.data.length,
        class: rec.data === null ? null : getPickleMetadata(rec.data).join('.'),
      };
      if (rec.back !== 0 || rec.data === null) {
        out.back = { offset: rec.back, tid: rec.backTid ? hex16(rec.backTid) : null };
      }
      return out;
    }),
  };
}

export function dumpCommand(): Command {
  return new Command('dump')
    .description(
      "list the transactions and data records of a FileStorage data file (Data.fs), as ZODB's fsdump does; " +
        'with --json one JSON object per transaction per line',
    )
    .argument('<path>', 'the Data.fs to dump')
    .option('--json', 'one JSON object per transaction per line (see src/cli/dump.ts for the fields)')
    .action(async (path: string, opts: { json?: boolean }) => {
      const out: string[] = [];
      // written in batches, waiting for stdout to drain (a pipe to `head` or `less` is slower than the walk)
      const flush = async (): Promise<void> => {
        if (!out.length) return;
        const text = out.join('\n') + '\n';
        out.length = 0;
        if (!process.stdout.write(text)) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              process.stdout.off('drain', done);
              process.stdout.off('error', done);
              resolve();
            };
            process.stdout.on('drain', done);
            process.stdout.on('error', done);
          });
        }
      };
      let i = 0;
      let end: DumpEnd;
      try {
        end = await walkTransactions(path, async (t) => {
          if (opts.json) out.push(JSON.stringify(transactionJson(t)));
          else for (const l of fsdumpLines(t, i)) out.push(l);
          i++;
          if (out.length >= 1024) await flush();
        });
      } catch (e) {
        await flush();
        console.error(`zeo dump: ${path}: ${(e as Error).message}`);
        process.exitCode = 2;
        return;
      }
      await flush();
      if (end.note) console.error(`zeo dump: note: ${path}: ${end.note}`);
      if (end.error) {
        console.error(`zeo dump: ${end.error.message}`);
        process.exitCode = 1;
      }
    });
}
