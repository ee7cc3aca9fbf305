// The public entry points resolve by package name (Node's self-reference), as an installed zeo-ts would.
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('zeo-ts/pickle and zeo-ts/storage export their public API', async () => {
  const pickle = await import('zeo-ts/pickle');
  assert.equal(typeof pickle.loads, 'function');
  assert.equal(typeof pickle.dumps, 'function');
  assert.equal(typeof pickle.referencesf, 'function');
  const storage = await import('zeo-ts/storage');
  assert.equal(typeof storage.FileStorage.open, 'function');
  assert.equal(typeof storage.MemoryStorage, 'function');
  assert.equal(typeof storage.newTid, 'function');
  assert.ok(new storage.POSKeyError(storage.z64) instanceof storage.POSError);
});

test('zeo-ts/client exports the connection and its errors', async () => {
  const client = await import('zeo-ts/client');
  assert.equal(typeof client.ClientConnection.connect, 'function');
  const e = new client.ClientDisconnected('gone');
  assert.equal(e.pythonName, 'ZEO.Exceptions.ClientDisconnected');
  assert.equal(e.transient, true);
});
