// The commit lock: FIFO hand-over, tryAcquire, waiters leaving through an AbortSignal, idempotent release.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { CommitLock } from '../../src/storage/commit-lock.js';

test('acquire is immediate when free; waiters get the lock in arrival order', async () => {
  const lock = new CommitLock();
  const order: number[] = [];
  const first = await lock.acquire();
  assert.equal(lock.locked, true);
  const waits = [1, 2, 3].map((n) =>
    lock.acquire().then((release) => {
      order.push(n);
      return release;
    }),
  );
  await tick();
  assert.deepEqual(order, [], 'nobody gets it while it is held');
  assert.equal(lock.waiting, 3);
  first();
  const r1 = await waits[0];
  await tick();
  assert.deepEqual(order, [1], 'one release hands over to exactly one waiter');
  r1();
  (await waits[1])();
  (await waits[2])();
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(lock.locked, false);
  assert.equal(lock.waiting, 0);
});

test('the lock passes straight to a waiter: tryAcquire cannot barge in between', async () => {
  const lock = new CommitLock();
  const release = lock.tryAcquire();
  assert.ok(release);
  assert.equal(lock.tryAcquire(), null, 'held');
  const waiter = lock.acquire();
  release();
  assert.equal(lock.tryAcquire(), null, 'already handed to the waiter');
  (await waiter)();
  const again = lock.tryAcquire();
  assert.ok(again, 'free once the waiter released it');
  again();
});

test('release is idempotent: a second call does not release the next holder', async () => {
  const lock = new CommitLock();
  const r1 = await lock.acquire();
  const p2 = lock.acquire();
  r1();
  const r2 = await p2;
  r1(); // stale
  assert.equal(lock.locked, true);
  assert.equal(lock.tryAcquire(), null);
  r2();
  assert.equal(lock.locked, false);
});

test('an aborted waiter leaves the queue and never gets the lock', async () => {
  const lock = new CommitLock();
  const r1 = await lock.acquire();
  const ac = new AbortController();
  const gone = lock.acquire(ac.signal);
  const next = lock.acquire();
  assert.equal(lock.waiting, 2);
  ac.abort(new Error('client disconnected'));
  await assert.rejects(gone, /client disconnected/);
  assert.equal(lock.waiting, 1);
  r1();
  const r3 = await next;
  assert.equal(lock.locked, true);
  r3();
  assert.equal(lock.locked, false, 'the aborted waiter holds nothing');
});

test('an already aborted signal is refused even when the lock is free; abort after the grant is harmless', async () => {
  const lock = new CommitLock();
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(lock.acquire(ac.signal), { name: 'AbortError' });
  assert.equal(lock.locked, false);
  const ac2 = new AbortController();
  const release = await lock.acquire(ac2.signal);
  ac2.abort();
  assert.equal(lock.locked, true);
  release();
  assert.equal(lock.locked, false);
});

test('wait: granted at once when free; a cancelled waiter leaves the queue, a cancel after the grant is harmless', async () => {
  const lock = new CommitLock();
  const first = lock.wait();
  const r1 = await first.granted;
  assert.equal(lock.locked, true);
  const gone = lock.wait();
  const next = lock.wait();
  assert.equal(lock.waiting, 2);
  gone.cancel();
  await assert.rejects(gone.granted, { name: 'AbortError' });
  assert.equal(lock.waiting, 1);
  first.cancel();
  assert.equal(lock.locked, true, 'cancelling a granted wait releases nothing');
  r1();
  const r3 = await next.granted;
  next.cancel();
  assert.equal(lock.locked, true);
  r3();
  assert.equal(lock.locked, false, 'the cancelled waiter holds nothing');
});

test('a timeout signal gives up waiting', async () => {
  const lock = new CommitLock();
  const release = await lock.acquire();
  // AbortSignal.timeout's timer is unref'd (it would not keep the test alive): abort from a plain timer
  const ac = new AbortController();
  setTimeout(() => ac.abort(new DOMException('timed out', 'TimeoutError')), 5);
  await assert.rejects(lock.acquire(ac.signal), { name: 'TimeoutError' });
  assert.equal(lock.waiting, 0);
  release();
});

test('runExclusive releases the lock when the function throws', async () => {
  const lock = new CommitLock();
  await assert.rejects(
    lock.runExclusive(() => {
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.equal(lock.locked, false);
  assert.equal(await lock.runExclusive(async () => 42), 42);
  assert.equal(lock.locked, false);
});

test('many concurrent critical sections never overlap', async () => {
  const lock = new CommitLock();
  let inside = 0;
  let maxInside = 0;
  await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      lock.runExclusive(async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        for (let k = 0; k < i % 4; k++) await tick();
        inside--;
      }),
    ),
  );
  assert.equal(maxInside, 1);
  assert.equal(lock.locked, false);
});
