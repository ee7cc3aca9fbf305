// FileStorage's group commit: a finished transaction gives up the commit lock once its status is written, the
// next ones write while its flush runs, and one fdatasync makes every transaction written before it started
// durable. Each is visible (index, lastTransaction, its tpcFinish callback) only after a flush that started
// after its status was written, in commit order; a failed flush fails every transaction it covered or that
// waited for it, none acknowledged. The data file's system calls are logged and held back through the
// storage's io hook.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConflictError, ReadConflictError, StorageError } from '../../../src/storage/errors.js';
import { fdIO, FileIOError, type PositionalIO } from '../../../src/storage/filestorage/file.js';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import { minpo, minpoValue } from '../contract/helpers.js';
import { waitUntil } from '../../helpers/wait.js';
import { hex, withTempDir } from './fs-oracle.js';

type Event =
  | { kind: 'write'; pos: number; bytes: Buffer }
  | { kind: 'sync-start'; n: number }
  | { kind: 'sync-end'; n: number }
  | { kind: 'committed'; tid: string };

/** The data file's system calls, logged in `events`; fdatasync held back while `held`, failing while `failing`. */
function syscalls(): {
  io: PositionalIO;
  events: Event[];
  hold: () => void;
  release: () => void;
  fail: () => void;
  syncs: () => number;
} {
  const events: Event[] = [];
  let held: Array<() => void> | null = null;
  let failing = false;
  let n = 0;
  const io: PositionalIO = {
    read: fdIO.read,
    async write(fd, buf, offset, length, position) {
      events.push({
        kind: 'write',
        pos: position,
        bytes: Buffer.from(buf.subarray(offset, offset + length)),
      });
      return fdIO.write(fd, buf, offset, length, position);
    },
    writeSync(fd, buf, offset, length, position) {
      events.push({
        kind: 'write',
        pos: position,
        bytes: Buffer.from(buf.subarray(offset, offset + length)),
      });
      return fdIO.writeSync!(fd, buf, offset, length, position);
    },
    async datasync() {
      const i = ++n;
      events.push({ kind: 'sync-start', n: i });
      if (held) await new Promise<void>((resolve) => held!.push(resolve));
      if (failing) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      events.push({ kind: 'sync-end', n: i });
    },
  };
  return {
    io,
    events,
    hold: () => {
      held ??= [];
    },
    release: () => {
      const h = held ?? [];
      held = null;
      for (const r of h) r();
    },
    fail: () => {
      failing = true;
    },
    syncs: () => n,
  };
}

/** Begins, stores and votes a transaction writing `value` to `oid` over `serial`. */
async function voted(s: FileStorage, oid: Oid, serial: Tid, value: number): Promise<TransactionMetaData> {
  const meta = new TransactionMetaData();
  await s.tpcBegin(meta);
  await s.store(oid, serial, minpo(value), meta);
  await s.tpcVote(meta);
  return meta;
}

/** Index of the event that wrote the status byte ' ' of the transaction at `tpos`. */
function statusWrite(events: Event[], tpos: number): number {
  const i = events.findIndex(
    (e) => e.kind === 'write' && e.pos === tpos + 16 && e.bytes.length === 1 && e.bytes[0] === 0x20,
  );
  assert.ok(i >= 0, `the status of the transaction at ${tpos} was written`);
  return i;
}

/** The positions of the transactions the votes wrote (status 'c'), in order. */
function votes(events: Event[]): number[] {
  const out: number[] = [];
  for (const e of events)
    if (e.kind === 'write' && e.bytes.length > 17 && e.bytes[16] === 0x63) out.push(e.pos);
  return out;
}

/** Asserts a flush started after event `after` and ended before event `before`. */
function flushBetween(events: Event[], after: number, before: number): void {
  const covered = events.some(
    (e, i) =>
      e.kind === 'sync-start' &&
      i > after &&
      events.findIndex((f, j) => j < before && f.kind === 'sync-end' && f.n === e.n) >= 0,
  );
  assert.ok(covered, `a flush started after event ${after} and ended before event ${before}`);
}

describe('FileStorage: group commit', () => {
  it('the next transaction writes during a flush, sees the one before in its conflict checks; readers do not see it until it is durable', async () => {
    await withTempDir(async (dir) => {
      const sys = syscalls();
      const s = await FileStorage.open(join(dir, 'Data.fs'), { create: true, io: sys.io });
      try {
        const oid = await s.newOid();
        const other = await s.newOid();
        const meta0 = await voted(s, oid, z64, 1);
        const tid0 = await s.tpcFinish(meta0);
        const base = s.getSize();

        sys.hold();
        const meta1 = await voted(s, oid, tid0, 2);
        let tid1 = '';
        const finished1 = s.tpcFinish(meta1, (t) => (tid1 = hex(t)));
        await waitUntil(() => sys.syncs() === 2, 'sys.syncs() === 2');
        // written, not durable: the lock is free, nobody sees it
        assert.equal(s.commitLock.locked, false);
        assert.equal(tid1, '');
        assert.equal(hex(s.lastTransaction()), hex(tid0));
        assert.equal(s.getSize(), base);
        assert.equal(minpoValue((await s.load(oid)).data), 1);
        assert.equal(await s.loadBefore(oid, new Uint8Array(8).fill(0xff)).then((r) => r!.end), null);
        const seen: string[] = [];
        for await (const t of s.iterator()) seen.push(hex(t.tid));
        assert.deepEqual(seen, [hex(tid0)]);
        assert.equal((await s.lastInvalidations(5)).length, 1);

        // the next transaction: over the old serial, a conflict with the written one
        const stale = new TransactionMetaData();
        await s.tpcBegin(stale);
        await assert.rejects(s.store(oid, tid0, minpo(3), stale), ConflictError);
        await assert.rejects(s.checkCurrentSerialInTransaction(oid, tid0, stale), ReadConflictError);
        await s.tpcAbort(stale);
        // over the written transaction's tid (read from the data file: not acknowledged yet), it commits
        const bytes = await readFile(join(dir, 'Data.fs'));
        const tid1Bytes = new Uint8Array(bytes.subarray(base, base + 8));
        const meta2 = new TransactionMetaData();
        await s.tpcBegin(meta2);
        await s.store(oid, tid1Bytes, minpo(4), meta2);
        await s.store(other, z64, minpo(5), meta2);
        await s.tpcVote(meta2);
        const order: string[] = [];
        const finished2 = s.tpcFinish(meta2, (t) => order.push(hex(t)));
        await waitUntil(() => s.commitLock.locked === false, 's.commitLock.locked === false');
        assert.equal(sys.syncs(), 2, 'its flush waits for the one in progress');
        sys.release();
        assert.equal(hex(await finished1), hex(tid1Bytes));
        const tid2 = await finished2;
        assert.deepEqual(order, [hex(tid2)]);
        assert.equal(sys.syncs(), 3);
        assert.equal(minpoValue((await s.load(oid)).data), 4);
        assert.equal(minpoValue((await s.load(other)).data), 5);
        assert.equal(hex(s.lastTransaction()), hex(tid2));
      } finally {
        sys.release();
        await s.close();
      }
    });
  });

  it('transactions written during a flush share the next one: each acknowledged in tid order, after a flush that started after its status was written', async () => {
    await withTempDir(async (dir) => {
      const sys = syscalls();
      const s = await FileStorage.open(join(dir, 'Data.fs'), { create: true, io: sys.io });
      try {
        const oids: Oid[] = [];
        for (let i = 0; i < 6; i++) oids.push(await s.newOid());
        sys.hold();
        const acks: Array<{ tid: string; at: number }> = [];
        const finishes: Array<Promise<Tid>> = [];
        for (let i = 0; i < oids.length; i++) {
          const meta = await voted(s, oids[i], z64, i);
          finishes.push(
            s.tpcFinish(meta, (t) => {
              sys.events.push({ kind: 'committed', tid: hex(t) });
              acks.push({ tid: hex(t), at: sys.events.length - 1 });
            }),
          );
          // the commit lock goes once the status is written: the next tpcBegin gets it without waiting
          await waitUntil(() => !s.commitLock.locked, '!s.commitLock.locked');
          if (i === 0) assert.equal(sys.syncs(), 1, 'the first flush starts at once');
        }
        assert.equal(acks.length, 0, 'nothing is acknowledged while the flush is held');
        assert.equal(sys.syncs(), 1, 'the others wait for the flush in progress');
        sys.release();
        const tids = (await Promise.all(finishes)).map(hex);
        assert.equal(sys.syncs(), 2, 'five transactions, one flush');
        assert.deepEqual(
          acks.map((a) => a.tid),
          tids,
        );
        assert.deepEqual([...tids].sort(), tids, 'in tid order');
        // each transaction's status write, then a whole flush, then its acknowledgment
        const tpos = votes(sys.events);
        assert.equal(tpos.length, tids.length);
        for (let i = 0; i < tids.length; i++) {
          flushBetween(sys.events, statusWrite(sys.events, tpos[i]), acks[i].at);
        }
        for (let i = 0; i < oids.length; i++) assert.equal(minpoValue((await s.load(oids[i])).data), i);
      } finally {
        sys.release();
        await s.close();
      }
    });
  });

  it('a failed flush fails every transaction it covered and those waiting for the next: none acknowledged, closed, truncated on reopen', async () => {
    await withTempDir(async (dir) => {
      const sys = syscalls();
      const logs: string[] = [];
      const path = join(dir, 'Data.fs');
      const s = await FileStorage.open(path, {
        create: true,
        io: sys.io,
        log: (l, m) => logs.push(`${l} ${m}`),
      });
      let tid0: Tid;
      const oids: Oid[] = [];
      let end: number;
      try {
        for (let i = 0; i < 3; i++) oids.push(await s.newOid());
        tid0 = await s.tpcFinish(await voted(s, oids[0], z64, 10));
        end = s.getSize();
        sys.hold();
        let acknowledged = 0;
        const finishes: Array<Promise<unknown>> = [];
        for (let i = 0; i < 3; i++) {
          const meta = await voted(s, oids[i], i === 0 ? tid0 : z64, 20 + i);
          finishes.push(s.tpcFinish(meta, () => acknowledged++));
          await waitUntil(() => !s.commitLock.locked, '!s.commitLock.locked');
        }
        // a fourth, voted: aborted by the close
        const meta4 = new TransactionMetaData();
        await s.tpcBegin(meta4);
        sys.fail();
        sys.release();
        for (const f of finishes) {
          await assert.rejects(f, (e: unknown) => e instanceof FileIOError && /fdatasync/.test(e.message));
        }
        assert.equal(acknowledged, 0);
        assert.equal(hex(s.lastTransaction()), hex(tid0));
        assert.ok(
          logs.some((m) => m.startsWith('critical Failure in _finish')),
          logs.join('\n'),
        );
        await assert.rejects(s.load(oids[0]), StorageError, 'closed');
      } finally {
        sys.release();
        await s.close();
      }
      const bytes = await readFile(path);
      assert.ok(bytes.length > end, 'the transactions were written');
      assert.equal(String.fromCharCode(bytes[end + 16]), 'c', 'the first status went back to c');
      const r = await FileStorage.open(path);
      try {
        assert.equal(hex(r.lastTransaction()), hex(tid0));
        assert.equal(r.getSize(), end);
        assert.equal(minpoValue((await r.load(oids[0])).data), 10);
        await assert.rejects(r.load(oids[1]));
      } finally {
        await r.close();
      }
    });
  });

  it('undo and close wait for the transactions written before to be durable', async () => {
    await withTempDir(async (dir) => {
      const sys = syscalls();
      const s = await FileStorage.open(join(dir, 'Data.fs'), { create: true, io: sys.io });
      const oid = await s.newOid();
      const tid0 = await s.tpcFinish(await voted(s, oid, z64, 1));
      sys.hold();
      const finished = s.tpcFinish(await voted(s, oid, tid0, 2));
      await waitUntil(() => !s.commitLock.locked, '!s.commitLock.locked');
      const undo = new TransactionMetaData();
      await s.tpcBegin(undo);
      const undone = s.undo((await s.undoLog(0, 1))[0].id, undo);
      let undoDone = false;
      void undone.then(() => (undoDone = true)).catch(() => {});
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(undoDone, false, 'undo waits for the flush');
      sys.release();
      const tid1 = await finished;
      // the undo of tid0 (the creation) conflicts with tid1, which it now sees
      await assert.rejects(undone);
      await s.tpcAbort(undo);
      sys.hold();
      const closingAfter = s.tpcFinish(await voted(s, oid, tid1, 3));
      await waitUntil(() => !s.commitLock.locked, '!s.commitLock.locked');
      const closed = s.close();
      sys.release();
      await closingAfter;
      await closed;
      const r = await FileStorage.open(join(dir, 'Data.fs'));
      try {
        assert.equal(minpoValue((await r.load(oid)).data), 3);
      } finally {
        await r.close();
      }
    });
  });
});
