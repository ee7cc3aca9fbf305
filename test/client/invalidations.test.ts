// The invalidation feed without a server: every subscriber gets every transaction in order from when it
// subscribed; one that stops reading is cut off at its bound with InvalidationsLost instead of growing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidationFeed, InvalidationsLost, type Invalidation } from '../../src/client/invalidations.js';
import { p64, u64 } from '../../src/storage/ids.js';

const inv = (n: number): Invalidation => ({ tid: p64(n), oids: [p64(n)] });

test('each subscriber reads every transaction in order from when it subscribed; close ends them', async () => {
  const feed = new InvalidationFeed();
  const early = feed.subscribe();
  feed.publish(inv(1));
  const late = feed.subscribe();
  for (let n = 2; n <= 3000; n++) feed.publish(inv(n));
  feed.close();
  const read = async (it: AsyncIterableIterator<Invalidation>): Promise<number[]> => {
    const out: number[] = [];
    for await (const i of it) out.push(Number(u64(i.tid)));
    return out;
  };
  assert.deepEqual(
    await read(early),
    Array.from({ length: 3000 }, (_, i) => i + 1),
  );
  assert.deepEqual(
    await read(late),
    Array.from({ length: 2999 }, (_, i) => i + 2),
  );
});

test('a subscriber that leaves more than maxQueued unread gets InvalidationsLost, and the others go on', async () => {
  const feed = new InvalidationFeed();
  const slow = feed.subscribe(100);
  const reader = feed.subscribe(100);
  const got: number[] = [];
  const reading = (async () => {
    for await (const i of reader) got.push(Number(u64(i.tid)));
  })();
  for (let n = 1; n <= 500; n++) {
    feed.publish(inv(n));
    await Promise.resolve(); // the reader keeps up
  }
  // the slow one read nothing: what it kept is gone, and it says so once
  await assert.rejects(slow.next(), (e: unknown) => {
    assert.ok(e instanceof InvalidationsLost);
    assert.match(e.message, /more than 100 transactions/);
    return true;
  });
  assert.deepEqual(await slow.next(), { value: undefined, done: true });
  feed.close();
  await reading;
  assert.equal(got.length, 500);
});
