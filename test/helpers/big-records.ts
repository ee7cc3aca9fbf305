// Big records for the object browser's decode worker: a PersistentList of 100,000 references (2.4 MB, as the
// record QA found stalling the server), and an OOBTree whose one bucket holds 20,000 items, written with the
// pickle writer into a storage through the Storage contract.
import { deflateSync } from 'node:zlib';
import { dumps, Global, PersistentRef, tuple, type PickleValue } from '../../src/pickle/index.js';
import { p64, type Oid } from '../../src/storage/ids.js';
import type { Storage } from '../../src/storage/interfaces.js';
import { commitMany } from '../storage/contract/helpers.js';

export const LIST_REFS = 100_000;
export const BUCKET_ITEMS = 20_000;

export interface BigRecords {
  /** the PersistentList of LIST_REFS references (the first 100 exist, as PersistentMappings) */
  list: Oid;
  /** the same list, zlib-compressed as zc.zlibstorage stores it */
  zlibList: Oid;
  /** an OOBTree whose first (and only) bucket is the big OOBucket */
  tree: Oid;
  bucket: Oid;
  /** a PersistentList record cut short: it does not decode */
  broken: Oid;
  /** a small zlib record that inflates to 10 MB (a PersistentMapping holding a long str) */
  inflating: Oid;
  /** the sizes of the list's and the bucket's records */
  listSize: number;
  bucketSize: number;
}

function record(module: string, name: string, state: PickleValue): Buffer {
  return Buffer.concat([dumps(Global.of(module, name), 3), dumps(state, 3)]);
}

export async function storeBigRecords(storage: Storage): Promise<BigRecords> {
  const mappingClass = Global.of('persistent.mapping', 'PersistentMapping');
  const first = 1000;
  const refs = Array.from(
    { length: LIST_REFS },
    (_, i) => new PersistentRef(tuple(Buffer.from(p64(first + i)), mappingClass)),
  );
  const list = record('persistent.list', 'PersistentList', new Map([['data', refs]]));
  const flat: string[] = [];
  for (let i = 0; i < BUCKET_ITEMS; i++) flat.push(`key${String(i).padStart(6, '0')}`, `value ${i}`);
  const bucket = record('BTrees.OOBTree', 'OOBucket', tuple(tuple(...flat)));
  const bucketRef = new PersistentRef(tuple(Buffer.from(p64(5)), Global.of('BTrees.OOBTree', 'OOBucket')));
  const tree = record('BTrees.OOBTree', 'OOBTree', tuple(tuple(bucketRef), bucketRef));
  const inflating = record(
    'persistent.mapping',
    'PersistentMapping',
    new Map([['data', new Map([['text', 'x'.repeat(10_000_000)]])]]),
  );
  const empty = record('persistent.mapping', 'PersistentMapping', new Map([['data', new Map()]]));
  await commitMany(storage, [
    [p64(1), p64(0), list],
    [p64(2), p64(0), Buffer.concat([Buffer.from('.z'), deflateSync(list)])],
    [p64(3), p64(0), list.subarray(0, list.length - 1000)],
    [p64(4), p64(0), tree],
    [p64(5), p64(0), bucket],
    [p64(6), p64(0), Buffer.concat([Buffer.from('.z'), deflateSync(inflating)])],
    ...Array.from({ length: 100 }, (_, i): [Uint8Array, Uint8Array, Uint8Array] => [
      p64(first + i),
      p64(0),
      empty,
    ]),
  ]);
  return {
    list: p64(1),
    zlibList: p64(2),
    broken: p64(3),
    tree: p64(4),
    bucket: p64(5),
    inflating: p64(6),
    listSize: list.length,
    bucketSize: bucket.length,
  };
}
