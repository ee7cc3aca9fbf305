// Storage.watchInvalidations, for any storage that other writers share a database with: two storages opened
// on one database are two writers, and each must report the other's commits (not its own) once each, in tid
// order, merged in order with its own commits' onCommitted, never ahead of its lastTransaction(). A storage
// whose reports come later (a poll) is waited for; the test file of each engine runs this suite. A storage
// that polls (pollInvalidations) runs its polling cases too: what was committed elsewhere before the call is
// heard of when it resolves.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError } from '../../src/storage/errors.js';
import { compareIds, idHex, type Oid, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData, type Storage } from '../../src/storage/interfaces.js';
import { waitUntil } from '../helpers/wait.js';
import { minpo, minpoValue, z64 } from './contract/helpers.js';

export interface TwoWriters {
  a: Storage;
  b: Storage;
  close: () => Promise<void>;
}

/** What one storage learnt, in the order it learnt it: others' commits (listener) and its own (onCommitted). */
interface Heard {
  tid: string;
  oids: string[] | null;
  own: boolean;
  /** lastTransaction() when the listener ran */
  last: string;
}

function listen(s: Storage): Heard[] {
  const heard: Heard[] = [];
  s.watchInvalidations!((tid, oids) =>
    heard.push({ tid: idHex(tid), oids: oids.map(idHex), own: false, last: idHex(s.lastTransaction()) }),
  );
  return heard;
}

/** Commits one store per [oid, value] through `s`, recording the tid in `heard` from onCommitted. */
async function commit(s: Storage, heard: Heard[], stores: Array<[Oid, number]>): Promise<Tid> {
  const t = new TransactionMetaData();
  await s.tpcBegin(t);
  try {
    for (const [oid, value] of stores) {
      const serial = await s.load(oid).then(
        (r) => r.serial,
        () => z64,
      );
      await s.store(oid, serial, minpo(value), t);
    }
    await s.tpcVote(t);
    return await s.tpcFinish(t, (tid) =>
      heard.push({ tid: idHex(tid), oids: null, own: true, last: idHex(s.lastTransaction()) }),
    );
  } catch (e) {
    await s.tpcAbort(t);
    throw e;
  }
}

export function watchInvalidationsTests(
  name: string,
  open: () => Promise<TwoWriters>,
  options: { polls?: boolean } = {},
): void {
  if (options.polls) pollInvalidationsTests(name, open);
  describe(`${name}: watchInvalidations`, () => {
    it("reports the other writer's commits with their oids, not its own", async () => {
      const { a, b, close } = await open();
      try {
        const heardA = listen(a);
        const heardB = listen(b);
        const o1 = await a.newOid();
        const o2 = await a.newOid();
        const t1 = await commit(a, heardA, [
          [o1, 1],
          [o2, 2],
        ]);
        await waitUntil(() => heardB.length === 1, `${name}: b hears of a's commit`);
        assert.deepEqual(
          { tid: heardB[0].tid, oids: [...heardB[0].oids!].sort() },
          { tid: idHex(t1), oids: [idHex(o1), idHex(o2)].sort() },
        );
        assert.ok(heardB[0].last >= heardB[0].tid, "b's lastTransaction() had advanced to it");
        assert.equal(minpoValue((await b.load(o1)).data), 1, 'b reads what a committed');
        const t2 = await commit(b, heardB, [[o1, 3]]);
        await waitUntil(() => heardA.some((h) => !h.own), `${name}: a hears of b's commit`);
        assert.deepEqual(
          heardA.map((h) => [h.tid, h.own, h.oids]),
          [
            [idHex(t1), true, null],
            [idHex(t2), false, [idHex(o1)]],
          ],
        );
        assert.deepEqual(
          heardB.map((h) => [h.tid, h.own]),
          [
            [idHex(t1), false],
            [idHex(t2), true],
          ],
          'b heard of its own commit only through tpcFinish',
        );
      } finally {
        await close();
      }
    });

    it('merged with its own commits, every writer hears every transaction once, in tid order', async () => {
      const { a, b, close } = await open();
      try {
        const heardA = listen(a);
        const heardB = listen(b);
        const oids = [await a.newOid(), await a.newOid(), await b.newOid()];
        const tids: Tid[] = [];
        // both writers commit at once, on shared and separate objects
        const writer = async (s: Storage, heard: Heard[], n: number, base: number): Promise<void> => {
          for (let i = 0; i < n; i++) {
            const stores: Array<[Oid, number]> = [[oids[(i + base) % oids.length], base * 100 + i]];
            for (;;) {
              try {
                tids.push(await commit(s, heard, stores));
                break;
              } catch (e) {
                // the other writer changed the object between load and store: load again
                if (!(e instanceof ConflictError)) throw e;
              }
            }
          }
        };
        await Promise.all([writer(a, heardA, 6, 0), writer(b, heardB, 6, 1)]);
        const all = tids.map(idHex).sort();
        assert.equal(new Set(all).size, 12);
        for (const [who, heard] of [
          ['a', heardA],
          ['b', heardB],
        ] as const) {
          await waitUntil(() => heard.length === all.length, `${name}: ${who} hears all 12 transactions`);
          assert.deepEqual(
            heard.map((h) => h.tid),
            all,
            `${who} heard every transaction once, in tid order`,
          );
          for (const h of heard) {
            if (!h.own) assert.ok(h.last >= h.tid, `${who}'s lastTransaction() had advanced to ${h.tid}`);
          }
        }
      } finally {
        await close();
      }
    });

    it('the last transaction it reported is its lastTransaction()', async () => {
      const { a, b, close } = await open();
      try {
        const heardB = listen(b);
        listen(a);
        const oid = await a.newOid();
        let last: Tid = z64;
        for (let i = 0; i < 3; i++) last = await commit(a, [], [[oid, i]]);
        await waitUntil(() => heardB.length === 3, `${name}: b hears of the three commits`);
        assert.equal(idHex(b.lastTransaction()), idHex(last));
        assert.ok(compareIds(b.lastTransaction(), a.lastTransaction()) === 0);
      } finally {
        await close();
      }
    });
  });
}

/** Storage.pollInvalidations: the cases of a storage that hears of the others' commits when it polls. */
function pollInvalidationsTests(name: string, open: () => Promise<TwoWriters>): void {
  describe(`${name}: pollInvalidations`, () => {
    it('when it resolves, every commit made elsewhere before the call was heard of, and lastTransaction() is at it', async () => {
      const { a, b, close } = await open();
      try {
        const heardB = listen(b);
        assert.ok(b.pollInvalidations !== undefined, `${name} polls`);
        const oid = await a.newOid();
        const expected: string[] = [];
        for (let i = 0; i < 10; i++) {
          // a poll running while the commit returns (it may have read before the commit) does not count
          const running = b.pollInvalidations();
          const tid = idHex(await commit(a, [], [[oid, i]]));
          expected.push(tid);
          await b.pollInvalidations();
          assert.deepEqual(
            heardB.map((h) => h.tid),
            expected,
            `round ${i}: b heard of every commit made before the call, once, in order`,
          );
          assert.equal(
            idHex(b.lastTransaction()),
            tid,
            `round ${i}: b's lastTransaction() is a's last commit`,
          );
          await running;
        }
      } finally {
        await close();
      }
    });

    it('polls between its own commits: each commit elsewhere heard of at the poll after it, once, in tid order', async () => {
      const { a, b, close } = await open();
      try {
        const heardA = listen(a);
        const heardB = listen(b);
        const oa = await a.newOid();
        const ob = await b.newOid();
        const tidsA: string[] = [];
        const tidsB: string[] = [];
        // a commits and b polls after each; b commits its own object meanwhile
        const pollingA = async (): Promise<void> => {
          for (let i = 0; i < 8; i++) {
            const tid = idHex(await commit(a, heardA, [[oa, i]]));
            tidsA.push(tid);
            await b.pollInvalidations!();
            assert.ok(
              heardB.some((h) => h.tid === tid && !h.own),
              `b heard of a's commit ${tid} when its poll resolved`,
            );
            assert.ok(idHex(b.lastTransaction()) >= tid, "b's lastTransaction() reached it");
          }
        };
        const writingB = async (): Promise<void> => {
          for (let i = 0; i < 8; i++) tidsB.push(idHex(await commit(b, heardB, [[ob, i]])));
        };
        await Promise.all([pollingA(), writingB()]);
        const all = [...tidsA, ...tidsB].sort();
        await a.pollInvalidations!();
        assert.deepEqual(
          heardB.map((h) => h.tid),
          all,
          'b heard of every transaction once, in tid order',
        );
        assert.deepEqual(
          heardA.map((h) => h.tid),
          all,
          'a too, once its poll resolved',
        );
      } finally {
        await close();
      }
    });
  });
}
