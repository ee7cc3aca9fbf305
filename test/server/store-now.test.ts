// The session's stores done at once (Storage.storeNow, checkCurrentSerialNow, deleteObjectNow) answer the
// client as the async path does: the same calls against a server whose FileStorage offers them and one whose
// FileStorage does not (as another engine) give the same replies, tids aside: a vote's write conflicts (oid,
// serials, data), a bad store's error at vote, a read conflict, a missing oid, and a transaction that commits.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pyRepr, type PickleValue } from '../../src/pickle/index.js';
import { p64, z64 } from '../../src/storage/ids.js';
import { RawClient, ServerError } from '../helpers/raw-client.js';
import { startServer } from '../helpers/server-fixture.js';

const rec = (n: number): Uint8Array => new Uint8Array([0x80, 0x03, 0x4b, n & 0xff, 0x2e]);
const empty = new Uint8Array(0);
const [A, B, C, MISSING] = [p64(1n), p64(2n), p64(3n), p64(99n)];

/** What the server answered to each step, its tids replaced by their order of appearance. */
async function script(withNow: boolean): Promise<string[]> {
  const s = await startServer();
  try {
    const storage = s.server.storages.get('1')!.storage as unknown as Record<string, unknown>;
    if (!withNow) {
      for (const m of ['storeNow', 'checkCurrentSerialNow', 'deleteObjectNow']) storage[m] = undefined;
    }
    assert.equal(typeof storage.storeNow, withNow ? 'function' : 'undefined');
    const c = await RawClient.open(s.address);
    try {
      const out: string[] = [];
      const norm = (v: PickleValue): string => pyRepr(v);
      let id = 0;
      const txn = async (
        calls: Array<[string, PickleValue[]]>,
        finish: boolean,
      ): Promise<PickleValue | undefined> => {
        id++;
        c.sendAsync('tpc_begin', [id, empty, empty, new Map(), null, ' ']);
        for (const [name, args] of calls) c.sendAsync(name, [...args, id]);
        let tid: PickleValue | undefined;
        try {
          out.push(`vote ${norm(await c.call('vote', [id]))}`);
          if (finish) {
            tid = await c.call('tpc_finish', [id]);
            out.push(`finish ${norm(tid)}`);
          } else await c.call('tpc_abort', [id]);
        } catch (e) {
          if (!(e instanceof ServerError)) throw e;
          out.push(`error ${e.className} ${norm(e.args)}`);
          await c.call('tpc_abort', [id]);
        }
        return tid;
      };
      const tid1 = (await txn(
        [
          ['storea', [A, z64, rec(1)]],
          ['storea', [B, z64, rec(2)]],
          ['storea', [C, z64, rec(3)]],
        ],
        true,
      )) as Uint8Array;
      // write conflicts go back to the client at vote, with the data it sent
      await txn(
        [
          ['storea', [A, tid1, rec(4)]],
          ['storea', [B, z64, rec(5)]],
          ['storea', [C, z64, rec(6)]],
        ],
        false,
      );
      // a bad store (an empty record) fails the vote
      await txn(
        [
          ['storea', [A, tid1, rec(7)]],
          ['storea', [B, tid1, empty]],
        ],
        false,
      );
      await txn([['checkCurrentSerialInTransaction', [C, z64]]], false);
      await txn([['checkCurrentSerialInTransaction', [MISSING, tid1]]], false);
      await txn([['deleteObject', [MISSING, tid1]]], false);
      await txn([['deleteObject', [C, z64]]], false);
      const tid2 = (await txn(
        [
          ['storea', [A, tid1, rec(8)]],
          ['checkCurrentSerialInTransaction', [B, tid1]],
          ['deleteObject', [C, tid1]],
          ['storea', [MISSING, z64, rec(9)]],
        ],
        true,
      )) as Uint8Array;
      for (const oid of [A, B, C, MISSING]) {
        try {
          out.push(`loadBefore ${norm(await c.call('loadBefore', [oid, p64(0x7fffffffffffffffn)]))}`);
        } catch (e) {
          out.push(`loadBefore error ${(e as ServerError).className}`);
        }
      }
      out.push(`last ${norm(await c.call('lastTransaction'))}`);
      // the tids, which differ from server to server, by name
      return out.map((l) => l.replaceAll(pyRepr(tid1), '<tid 1>').replaceAll(pyRepr(tid2), '<tid 2>'));
    } finally {
      c.close();
    }
  } finally {
    await s.stop();
  }
}

describe('stores at once in the session', () => {
  test('the replies are those of the async path, conflicts and errors included', async () => {
    const general = await script(false);
    const fast = await script(true);
    assert.deepEqual(fast, general);
    // what was compared: the conflicts, the errors and the commits
    const kinds = general.map((l) => l.split(' ').slice(0, 2).join(' '));
    assert.deepEqual(kinds.slice(0, 8), [
      'vote []',
      'finish <tid',
      "vote [{'oid':",
      'error ZODB.POSException.StorageError',
      'error ZODB.POSException.ReadConflictError',
      'error ZODB.POSException.POSKeyError',
      'error ZODB.POSException.POSKeyError',
      'error ZODB.POSException.ConflictError',
    ]);
    assert.match(general[2], /'serials': \(<tid 1>, b'(\\x00){8}'\)/);
    assert.equal(general.at(-1), 'last <tid 2>');
  });
});
