// iterator() over the network (ZEO's TransactionIterator and RecordIterator): the server keeps the iterators,
// we ask for one transaction (iterator_next) or record (iterator_record_next) at a time. An iteration that
// stops early (a `for await` that breaks, or one dropped and collected) closes the server's iterator with
// iterator_gc; one that outlives its connection fails with ClientDisconnected, as ZEO's "Disconnected
// iterator".

import type { PickleValue, PyDict } from '../pickle/index.js';
import { extensionBytes } from '../storage/extension.js';
import type { Tid } from '../storage/ids.js';
import { TransactionMetaData, type DataRecord, type TransactionRecord } from '../storage/interfaces.js';
import { ClientDisconnected } from './errors.js';
import { bytesOf, dataRecord, dictOf, idOf, sequenceOf } from './replies.js';

export interface IteratorIO {
  call(name: string, args: PickleValue[]): Promise<PickleValue>;
  /** the connection generation now (iterators die with their connection) */
  generation(): number;
  /** closes server iterators (a one-way iterator_gc on the connection they were opened on) */
  gc(iids: number[], generation: number): void;
}

/** Closes the server's iterator of an iteration dropped without being finished. */
const dropped = new FinalizationRegistry<{ io: IteratorIO; iid: number; generation: number }>((h) => {
  h.io.gc([h.iid], h.generation);
});

function iteratorId(v: PickleValue, call: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new Error(`the server's answer to ${call} is not an iterator id`);
}

export function transactionIterator(
  io: IteratorIO,
  start: Tid | null,
  stop: Tid | null,
): AsyncIterableIterator<TransactionRecord> {
  let iid: number | null = null;
  let generation = -1;
  let done = false;
  const token = {};
  const it: AsyncIterableIterator<TransactionRecord> = {
    [Symbol.asyncIterator]() {
      return it;
    },
    async next(): Promise<IteratorResult<TransactionRecord>> {
      if (done) return { value: undefined, done: true };
      if (iid === null) {
        generation = io.generation();
        iid = iteratorId(await io.call('iterator_start', [start, stop]), 'iterator_start');
        dropped.register(it, { io, iid, generation }, token);
      }
      if (io.generation() !== generation) throw new ClientDisconnected('Disconnected iterator');
      let r: PickleValue;
      try {
        r = await io.call('iterator_next', [iid]);
      } catch (e) {
        finish(false);
        throw e;
      }
      if (r === null) {
        // the server forgot it when it ran out
        finish(false);
        return { value: undefined, done: true };
      }
      return { value: transactionRecord(io, iid, generation, r), done: false };
    },
    async return(): Promise<IteratorResult<TransactionRecord>> {
      finish(true);
      return { value: undefined, done: true };
    },
  };
  const finish = (gc: boolean): void => {
    if (done) return;
    done = true;
    dropped.unregister(token);
    if (gc && iid !== null) io.gc([iid], generation);
  };
  return it;
}

function transactionRecord(
  io: IteratorIO,
  txnIid: number,
  generation: number,
  v: PickleValue,
): TransactionRecord {
  const t = sequenceOf(v, 'iterator_next');
  if (t.length < 5) throw new Error("the server's answer to iterator_next is not a transaction");
  const tid = idOf(t[0], 'iterator_next');
  const status = t[1];
  const user = bytesOf(t[2], 'iterator_next');
  const description = bytesOf(t[3], 'iterator_next');
  const extension: PyDict =
    t[4] === null ? new Map<PickleValue, PickleValue>() : dictOf(t[4], 'iterator_next');
  return {
    tid,
    status:
      typeof status === 'string' ? status : Buffer.from(bytesOf(status, 'iterator_next')).toString('latin1'),
    user,
    description,
    extension,
    // ZEO sends the dict: its pickle is what a storage writes for it
    extensionBytes: extensionBytes(new TransactionMetaData(user, description, extension)),
    records: recordIterable(io, txnIid, generation, tid),
  };
}

function recordIterable(
  io: IteratorIO,
  txnIid: number,
  generation: number,
  tid: Tid,
): AsyncIterable<DataRecord> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<DataRecord> {
      let riid: number | null = null;
      let done = false;
      const token = {};
      const it: AsyncIterator<DataRecord> = {
        async next(): Promise<IteratorResult<DataRecord>> {
          if (done) return { value: undefined, done: true };
          if (io.generation() !== generation) throw new ClientDisconnected('Disconnected iterator');
          if (riid === null) {
            riid = iteratorId(await io.call('iterator_record_start', [txnIid, tid]), 'iterator_record_start');
            dropped.register(it, { io, iid: riid, generation }, token);
          }
          const r = await io.call('iterator_record_next', [riid]);
          if (r === null) {
            done = true;
            dropped.unregister(token);
            return { value: undefined, done: true };
          }
          return { value: dataRecord(r), done: false };
        },
        async return(): Promise<IteratorResult<DataRecord>> {
          if (!done) {
            done = true;
            dropped.unregister(token);
            if (riid !== null) io.gc([riid], generation);
          }
          return { value: undefined, done: true };
        },
      };
      return it;
    },
  };
}
