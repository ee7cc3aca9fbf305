// verifyCache's decisions, without a server (the cache-verify tests run them against real servers): ZEO's
// ClientIO.verify takes an empty cache as nothing to verify, whatever last tid it remembers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClientCache } from '../../src/client/cache.js';
import { CacheAheadOfServerError, verifyCache } from '../../src/client/verify.js';
import { p64 } from '../../src/storage/ids.js';

const noCalls = (): Promise<never> => Promise.reject(new Error('getInvalidations must not be called'));

test('an empty cache whose last tid is ahead of the server follows the server, as ZEO does', async () => {
  const cache = new ClientCache({ size: 1 << 20 });
  cache.setLastTid(p64(50n));
  const v = await verifyCache(cache, p64(10n), noCalls);
  assert.equal(v.result, 'empty cache');
  cache.setLastTid(v.serverTid); // what ClientStorage does next: an empty cache accepts it
  assert.deepEqual(cache.getLastTid(), p64(10n));
});

test('a non-empty cache ahead of the server is refused with what to do', async () => {
  const cache = new ClientCache({ size: 1 << 20 });
  cache.store(p64(1n), p64(40n), null, new Uint8Array([1]));
  cache.setLastTid(p64(50n));
  await assert.rejects(verifyCache(cache, p64(10n), noCalls), (e) => {
    assert.ok(e instanceof CacheAheadOfServerError);
    assert.match(e.message, /remove|clear/i);
    return true;
  });
});

test('an older cache is quickly verified from getInvalidations, and dropped when the server cannot say', async () => {
  const cache = new ClientCache({ size: 1 << 20 });
  cache.store(p64(1n), p64(5n), null, new Uint8Array([1]));
  cache.store(p64(2n), p64(5n), null, new Uint8Array([2]));
  cache.setLastTid(p64(5n));
  const v = await verifyCache(cache, p64(9n), () => Promise.resolve([p64(9n), [p64(1n)]]));
  assert.equal(v.result, 'quick verification');
  assert.equal(cache.load(p64(1n)), null);
  assert.notEqual(cache.load(p64(2n)), null);
  const dropped = await verifyCache(cache, p64(12n), () => Promise.resolve(null));
  assert.equal(dropped.result, 'cache too old, clearing');
  assert.equal(cache.length, 0);
});
