// FileStorage.storeNow, checkCurrentSerialNow and deleteObjectNow, the server's stores without a promise per
// object: the same transaction done through them (falling back to the async call when they answer false, as
// the server does) and through the async calls alone gives the same outcome for every operation (the same
// errors: a write conflict with its serials and data, a read conflict, a missing oid, an empty record, a store
// after the vote) and a byte-identical Data.fs; they answer false, and the async call keeps the order, while
// an earlier operation of the transaction still runs.
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConflictError } from '../../../src/storage/errors.js';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { p64, u64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import { withTempDir } from './fs-oracle.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

type Op =
  | { op: 'store'; oid: Oid; serial: Tid; data: Uint8Array }
  | { op: 'checkread'; oid: Oid; serial: Tid }
  | { op: 'delete'; oid: Oid; serial: Tid };

/** An operation's outcome: 'ok', or its error's class, message and conflict fields. */
function outcome(e: unknown): unknown {
  if (e === null) return 'ok';
  const err = e as Error;
  const c = e instanceof ConflictError ? e : null;
  return {
    name: err.name,
    cls: err.constructor.name,
    message: err.message,
    oid: c?.oid ?? null,
    serials: c?.serials ?? null,
    data: c?.data ? Buffer.from(c.data) : null,
  };
}

async function viaAsync(s: FileStorage, op: Op, txn: TransactionMetaData): Promise<void> {
  if (op.op === 'store') await s.store(op.oid, op.serial, op.data, txn);
  else if (op.op === 'checkread') await s.checkCurrentSerialInTransaction(op.oid, op.serial, txn);
  else await s.deleteObject(op.oid, op.serial, txn);
}

function viaNow(s: FileStorage, op: Op, txn: TransactionMetaData): boolean {
  if (op.op === 'store') return s.storeNow(op.oid, op.serial, op.data, txn);
  if (op.op === 'checkread') return s.checkCurrentSerialNow(op.oid, op.serial, txn);
  return s.deleteObjectNow(op.oid, op.serial, txn);
}

/**
 * Runs `ops` in one transaction (tid given), then votes and finishes: each outcome, and how many were answered at
 * once (done, or their error thrown).
 */
async function run(
  s: FileStorage,
  tid: Tid,
  ops: Op[],
  now: boolean,
): Promise<{ outcomes: unknown[]; atOnce: number; vote: unknown }> {
  const txn = new TransactionMetaData(enc('u'), enc('d'));
  await s.tpcBegin(txn, tid);
  const outcomes: unknown[] = [];
  let atOnce = 0;
  for (const op of ops) {
    try {
      // (an error thrown by viaNow was found at once too)
      if (!now) await viaAsync(s, op, txn);
      else {
        atOnce++;
        if (!viaNow(s, op, txn)) {
          atOnce--;
          await viaAsync(s, op, txn);
        }
      }
      outcomes.push(outcome(null));
    } catch (e) {
      outcomes.push(outcome(e));
    }
  }
  const vote = await s.tpcVote(txn).then(
    (r) => r,
    (e: unknown) => outcome(e),
  );
  // after the vote: the same StorageTransactionError either way
  const late = ops[0];
  try {
    if (now) viaNow(s, late, txn);
    else await viaAsync(s, late, txn);
    outcomes.push('ok');
  } catch (e) {
    outcomes.push(outcome(e));
  }
  await s.tpcFinish(txn);
  return { outcomes, atOnce, vote };
}

describe('FileStorage.storeNow', () => {
  it('gives the async calls’ outcomes, errors and Data.fs for the same transactions', async () => {
    await withTempDir(async (dir) => {
      const base = join(dir, 'base.fs');
      const first = p64(0x03e0000000000000n);
      // the base: objects 1..6, object 2 revised once, object 6 deleted
      const s0 = await FileStorage.open(base, { fsync: false });
      const t1 = new TransactionMetaData();
      await s0.tpcBegin(t1, first);
      for (let i = 1; i <= 6; i++) await s0.store(p64(BigInt(i)), p64(0n), enc(`object ${i} v1`), t1);
      await s0.tpcVote(t1);
      const tid1 = await s0.tpcFinish(t1);
      const t2 = new TransactionMetaData();
      await s0.tpcBegin(t2, p64(u64(first) + 1n));
      await s0.store(p64(2n), tid1, enc('object 2 v2'), t2);
      await s0.deleteObject(p64(6n), tid1, t2);
      await s0.tpcVote(t2);
      const tid2 = await s0.tpcFinish(t2);
      await s0.close();

      const stale = tid1;
      const ops: Op[] = [
        { op: 'store', oid: p64(1n), serial: tid1, data: enc('object 1 v2') }, // current serial
        { op: 'store', oid: p64(9n), serial: p64(0n), data: enc('new object 9') }, // a new object
        { op: 'store', oid: p64(2n), serial: stale, data: enc('stale 2') }, // a write conflict
        { op: 'store', oid: p64(3n), serial: tid1, data: new Uint8Array(0) }, // a bad store: empty
        { op: 'checkread', oid: p64(4n), serial: tid1 }, // current
        { op: 'checkread', oid: p64(2n), serial: stale }, // a read conflict
        { op: 'checkread', oid: p64(77n), serial: tid1 }, // missing
        { op: 'checkread', oid: p64(6n), serial: tid2 }, // deleted
        { op: 'delete', oid: p64(5n), serial: tid1 }, // current
        { op: 'delete', oid: p64(4n), serial: p64(1n) }, // a conflict
        { op: 'delete', oid: p64(78n), serial: tid1 }, // missing
        { op: 'store', oid: p64(1n), serial: tid1, data: enc('object 1 v2 again') }, // stored twice in one txn
      ];
      // a second transaction that reads what the first wrote (written, then durable)
      const ops2: Op[] = [
        { op: 'store', oid: p64(1n), serial: p64(u64(first) + 2n), data: enc('object 1 v3') },
        { op: 'store', oid: p64(9n), serial: tid1, data: enc('stale 9') },
        { op: 'checkread', oid: p64(4n), serial: tid1 },
        { op: 'checkread', oid: p64(5n), serial: p64(u64(first) + 2n) }, // deleted by the first
      ];

      const results: Array<{ outcomes: unknown[]; atOnce: number; vote: unknown }[]> = [];
      const files: Buffer[] = [];
      for (const now of [false, true]) {
        const path = join(dir, now ? 'now.fs' : 'async.fs');
        await copyFile(base, path);
        const s = await FileStorage.open(path, { fsync: false });
        try {
          // the records in the read cache (as the server's loads put them), so that no answer depends on
          // whether a synchronous read is allowed at the time
          for (let i = 1; i <= 6; i++) await s.load(p64(BigInt(i))).catch(() => null);
          results.push([
            await run(s, p64(u64(first) + 2n), ops, now),
            await run(s, p64(u64(first) + 3n), ops2, now),
          ]);
        } finally {
          await s.close();
        }
        files.push(await readFile(path));
      }
      const [general, fast] = results;
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(fast[i].outcomes, general[i].outcomes, `transaction ${i + 1}`);
        assert.deepEqual(fast[i].vote, general[i].vote);
      }
      // what was checked: a write conflict, a read conflict, a missing oid, an empty record, a late store
      const names = general[0].outcomes.map((o) => (o === 'ok' ? 'ok' : (o as { name: string }).name));
      assert.deepEqual(names, [
        'ok',
        'ok',
        'ConflictError',
        'StorageError',
        'ok',
        'ReadConflictError',
        'POSKeyError',
        'POSKeyError',
        'ok',
        'ConflictError',
        'POSKeyError',
        'ok',
        'StorageTransactionError',
      ]);
      assert.deepEqual(
        general[1].outcomes.map((o) => (o === 'ok' ? 'ok' : (o as { name: string }).name)),
        ['ok', 'ConflictError', 'ok', 'POSKeyError', 'StorageTransactionError'],
      );
      // the fast path answered every operation, errors included (the records are in the read cache)
      assert.equal(general[0].atOnce, 0);
      assert.equal(fast[0].atOnce, ops.length);
      assert.equal(fast[1].atOnce, ops2.length);
      assert.ok(files[0].equals(files[1]), 'the two Data.fs differ');
    });
  });

  it('answers false while an earlier operation of the transaction runs, and the order is kept', async () => {
    await withTempDir(async (dir) => {
      const s = await FileStorage.open(join(dir, 'Data.fs'), { fsync: false });
      try {
        const txn = new TransactionMetaData();
        await s.tpcBegin(txn);
        const pending = s.store(p64(1n), p64(0n), enc('first'), txn);
        assert.equal(s.storeNow(p64(1n), p64(0n), enc('second'), txn), false);
        assert.equal(s.checkCurrentSerialNow(p64(1n), p64(0n), txn), false);
        const second = s.store(p64(1n), p64(0n), enc('second'), txn);
        await pending;
        await second;
        // settled: at once again
        assert.equal(s.storeNow(p64(2n), p64(0n), enc('third'), txn), true);
        await s.tpcVote(txn);
        const tid = await s.tpcFinish(txn);
        // the last store of an object in a transaction wins, as in the async order
        assert.deepEqual(Buffer.from((await s.load(p64(1n))).data).toString(), 'second');
        assert.deepEqual((await s.load(p64(2n))).serial, tid);
      } finally {
        await s.close();
      }
    });
  });
});
