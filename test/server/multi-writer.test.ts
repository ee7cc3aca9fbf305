// Several servers over one database (issue 12), at the protocol level: two zeo-ts servers over one shared
// MemoryStorageData, raw clients on each. A commit through one server reaches every client of the other as
// invalidateTransaction and in its invalidation queue; and the ordering rules of ZEO#155/#166 hold across
// writers: no reply gives a client a tid (lastTransaction, register, getInvalidations, tpc_finish) ahead of
// the invalidations it has been sent, and a committer's own tid comes after the other writers' lower ones.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { PickleValue } from '../../src/pickle/index.js';
import { idHex, z64 } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { MemoryStorage, MemoryStorageData } from '../../src/storage/memory/memory-storage.js';
import { dostore } from '../storage/contract/helpers.js';
import { startServer } from '../helpers/server-fixture.js';
import { startServersOnOneDatabase, type ServersOnOneDatabase } from '../helpers/multi-writer.js';
import { RawClient } from '../helpers/raw-client.js';

const RECORD = new Uint8Array(Buffer.from('80037d71002e', 'hex'));

/** A writer on a server: its own object, committed again and again (no conflicts). */
class Writer {
  private serial = z64;
  private oid: Uint8Array | null = null;
  private txn = 1;
  /** each tpc_finish's tid, with the invalidation tids the client had received before that reply */
  readonly commits: Array<{ tid: string; before: string[] }> = [];

  constructor(readonly client: RawClient) {}

  async commit(): Promise<string> {
    const c = this.client;
    this.oid ??= ((await c.call('new_oids', [1])) as Uint8Array[])[0];
    const id = this.txn++;
    c.sendAsync('tpc_begin', [id, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
    c.sendAsync('storea', [this.oid, this.serial, RECORD, id]);
    await c.call('vote', [id]);
    const tid = (await c.call('tpc_finish', [id])) as Uint8Array;
    this.serial = tid;
    this.commits.push({ tid: idHex(tid), before: invalidatedTids(c.others) });
    return idHex(tid);
  }
}

function invalidatedTids(messages: Array<{ name: PickleValue; args: PickleValue[] }>): string[] {
  return messages
    .filter((m) => m.name === 'invalidateTransaction')
    .map((m) => idHex(m.args[0] as Uint8Array));
}

// storages that hear of each other's commits at once, and ones that poll (as PostgreSQL storages do): every
// 20 ms, and when the server asks (register, ping, lastTransaction)
for (const pollIntervalMs of [undefined, 20]) {
  describe(`two servers over one database, ${pollIntervalMs === undefined ? 'told at once' : `polling every ${pollIntervalMs} ms`}`, () => {
    let db: ServersOnOneDatabase;
    before(async () => {
      db = await startServersOnOneDatabase(2, {}, pollIntervalMs);
    });
    after(async () => {
      await db.stop();
    });

    test('a commit through one server is invalidated on every client of the other, and queued there', async () => {
      const [a, b] = db.servers;
      const writer = new Writer(await RawClient.open(a.address));
      const watchers = [await RawClient.open(b.address), await RawClient.open(b.address)];
      try {
        const before = await writer.commit();
        const t1 = await writer.commit();
        const t2 = await writer.commit();
        for (const w of watchers) {
          // the invalidations come before the reply to a call made after the commits
          assert.equal(idHex((await w.call('lastTransaction')) as Uint8Array), t2);
          assert.deepEqual(invalidatedTids(w.others), [before, t1, t2]);
          assert.equal(w.others.length, 3, 'nothing else was sent (no info)');
        }
        assert.deepEqual(
          invalidatedTids(writer.client.others),
          [],
          "the writer's own commits are not sent back",
        );
        // a client reconnecting with a cache at `before` catches up from b's queue
        const r = (await watchers[1].call('getInvalidations', [Buffer.from(before, 'hex')])) as PickleValue[];
        assert.equal(idHex(r[0] as Uint8Array), t2);
        assert.equal((r[1] as Uint8Array[]).length, 1, 'one object, changed twice');
      } finally {
        writer.client.close();
        for (const w of watchers) w.close();
      }
    });

    // (a polling storage hears of it later)
    if (pollIntervalMs === undefined)
      test('the other server queues a commit in the run that commits it: its lastTransaction is never ahead', async () => {
        const [a, b] = db.servers;
        const storageA = a.server.storages.get('1')!.storage;
        const servedB = b.server.storages.get('1')!;
        const watcher = await RawClient.open(b.address);
        try {
          const oid = ((await watcher.call('new_oids', [1])) as Uint8Array[])[0];
          let serial = z64;
          const atCommit: Array<[string, string | null, string]> = [];
          for (let i = 0; i < 3; i++) {
            const t = new TransactionMetaData();
            await storageA.tpcBegin(t);
            await storageA.store(oid, serial, RECORD, t);
            await storageA.tpcVote(t);
            serial = await storageA.tpcFinish(t, (tid) => {
              // as a's server replies to its committer: b has it queued for its clients already
              const newest = servedB.invalidations.newest;
              atCommit.push([idHex(tid), newest && idHex(newest), idHex(servedB.storage.lastTransaction())]);
            });
          }
          for (const [tid, queued, last] of atCommit) assert.deepEqual([queued, last], [tid, tid]);
          await watcher.call('ping');
          assert.deepEqual(
            invalidatedTids(watcher.others),
            atCommit.map(([tid]) => tid),
          );
        } finally {
          watcher.close();
        }
      });

    test('no reply gives a client a tid ahead of its invalidations; a commit follows the lower external ones', async () => {
      const [a, b] = db.servers;
      const writersA = [
        new Writer(await RawClient.open(a.address)),
        new Writer(await RawClient.open(a.address)),
      ];
      const writersB = [new Writer(await RawClient.open(b.address))];
      const watcher = await RawClient.open(b.address, { register: null });
      const first = new Writer(await RawClient.open(a.address));
      try {
        // (a queue that is not empty: getInvalidations answers with its newest tid)
        await first.commit();
        const registered = idHex((await watcher.call('register', ['1', false])) as Uint8Array);
        // lastTransaction and getInvalidations pipelined all along, while both servers commit
        let writing = true;
        const asking = (async () => {
          let asked = 0;
          while (writing || asked < 10) {
            watcher.send('lastTransaction', []);
            watcher.send('getInvalidations', [Buffer.from(registered, 'hex')]);
            watcher.send('lastTransaction', []);
            asked++;
            await new Promise((r) => setImmediate(r));
          }
        })();
        const run = (w: Writer, n: number) => async (): Promise<void> => {
          for (let i = 0; i < n; i++) await w.commit();
        };
        await Promise.all([...writersA.map((w) => run(w, 15)()), ...writersB.map((w) => run(w, 15)())]);
        writing = false;
        await asking;
        const last = await watcher.call('lastTransaction');
        const all = [...writersA, ...writersB].flatMap((w) => w.commits.map((c) => c.tid)).sort();
        assert.equal(idHex(last as Uint8Array), all[all.length - 1]);

        // the watcher's stream, in the order it came
        let seen = registered;
        const invalidated: string[] = [];
        let replies = 0;
        for (const m of watcher.others) {
          if (m.name === 'invalidateTransaction') {
            const tid = idHex(m.args[0] as Uint8Array);
            assert.ok(tid > seen, `invalidation ${tid} after ${seen}: in tid order`);
            seen = tid;
            invalidated.push(tid);
          } else if (m.name === '.reply') {
            replies++;
            const body = m.body;
            // lastTransaction: a tid; getInvalidations: (tid, oids)
            const tid = idHex((Array.isArray(body) ? body[0] : body) as Uint8Array);
            assert.equal(
              tid,
              seen,
              'a reply gives the tid of the last invalidation sent before it, no later',
            );
          } else assert.fail(`unexpected ${String(m.name)}`);
        }
        assert.ok(replies >= 20);
        assert.deepEqual(invalidated, all, 'every commit of both servers, once each');

        // each committer: the other writers' lower tids reached it before its tpc_finish reply, no higher one
        for (const w of [...writersA, ...writersB]) {
          const own = new Set(w.commits.map((c) => c.tid));
          const others = [...first.commits.map((c) => c.tid), ...all].filter((t) => !own.has(t));
          for (const c of w.commits) {
            const expected = others.filter((t) => t < c.tid);
            assert.deepEqual(
              c.before.filter((t) => t < c.tid),
              expected,
              `every lower tid before ${c.tid}`,
            );
            assert.deepEqual(
              c.before.filter((t) => t > c.tid),
              [],
              `no higher tid before ${c.tid}`,
            );
          }
        }
      } finally {
        for (const w of [first, ...writersA, ...writersB]) w.client.close();
        watcher.close();
      }
    });
  });
}

describe('a server over a storage that hears of other writers late polls before answering', () => {
  let db: ServersOnOneDatabase;
  before(async () => {
    // (polled by the timer only after a minute: here, only when the server asks)
    db = await startServersOnOneDatabase(2, {}, 60_000);
  });
  after(async () => {
    await db.stop();
  });

  test('register, ping and lastTransaction come after the invalidations of what was committed elsewhere', async () => {
    const [a, b] = db.servers;
    const writer = new Writer(await RawClient.open(a.address));
    const client = await RawClient.open(b.address);
    try {
      const t1 = await writer.commit();
      assert.equal(await client.call('ping'), null);
      assert.deepEqual(invalidatedTids(client.others), [t1], 'ping: after the invalidation');
      const t2 = await writer.commit();
      assert.equal(idHex((await client.call('lastTransaction')) as Uint8Array), t2);
      assert.deepEqual(invalidatedTids(client.others), [t1, t2], 'lastTransaction: after the invalidation');
      const t3 = await writer.commit();
      // a client coming from a server that is ahead: b catches up before it answers
      const late = await RawClient.open(b.address, { register: null });
      try {
        assert.equal(idHex((await late.call('register', ['1', false])) as Uint8Array), t3);
        const t4 = await writer.commit();
        await late.call('ping');
        assert.deepEqual(invalidatedTids(late.others), [t4], 'registered clients get what comes after, only');
        await client.call('ping');
        assert.deepEqual(invalidatedTids(client.others), [t1, t2, t3, t4]);
      } finally {
        late.close();
      }
    } finally {
      writer.client.close();
      client.close();
    }
  });
});

test('a server starting over a database with commits it has not heard of yet queues them as it hears of them', async () => {
  const data = new MemoryStorageData();
  const a = new MemoryStorage({ data });
  // (heard of only when the server asks)
  const b = new MemoryStorage({ data, pollIntervalMs: 60_000 });
  const oid = await a.newOid();
  const t1 = await dostore(a, { oid, data: 1 });
  const t2 = await dostore(a, { oid, revid: t1, data: 2 });
  const server = await startServer({ opened: [{ name: '1', storage: b }] });
  const client = await RawClient.open(server.address, { register: null });
  try {
    assert.equal(
      server.server.storages.get('1')!.invalidations.newest,
      null,
      'not queued before b heard of them',
    );
    assert.equal(idHex((await client.call('register', ['1', false])) as Uint8Array), idHex(t2));
    const r = (await client.call('getInvalidations', [t1])) as PickleValue[];
    assert.deepEqual(
      [idHex(r[0] as Uint8Array), (r[1] as Uint8Array[]).map(idHex)],
      [idHex(t2), [idHex(oid)]],
    );
    assert.deepEqual(invalidatedTids(client.others), [], 'nothing at or below the tid it registered at');
    assert.equal(server.logs.filter((l) => /out of tid order/.test(l)).length, 0);
  } finally {
    client.close();
    await server.stop();
    await a.close();
  }
});
