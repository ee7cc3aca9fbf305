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

import { Command } from 'commander';
import { getPickleMetadata, PyFloat, pyRepr, type PickleValue } from '../pickle/index.js';
import { decodeExtension } from '../storage/extension.js';
import { idHex } from '../storage/ids.js';
import { TRANS_HDR_LEN } from '../storage/filestorage/format.js';
import type { DumpEnd, DumpTransaction } from '../storage/filestorage/fsdump.js';
import { TimeStamp } from '../storage/timestamp.js';

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
      const { walkTransactions } = await import('../storage/filestorage/fsdump.js');
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
