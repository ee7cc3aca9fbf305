// Crash test of group commit through the server: `zeo serve` runs as a child process while several clients
// commit concurrently (their transactions share flushes), and is killed with SIGKILL at a random moment;
// then the Data.fs is opened as the next server would (truncating a commit cut short) and every
// transaction a client saw acknowledged must be there, with its data, in acknowledgment order per client.
// A SIGKILL kills the process, not the machine: it shows nothing acknowledged was only in the server's
// memory or waiting for its flush. ZEO_TS_GROUP_CRASH_SEED replays a run.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ClientStorage } from '../../src/client/client-storage.js';
import { verifyDataFile } from '../../src/storage/filestorage/fstest.js';
import { FileStorage } from '../../src/storage/filestorage/file-storage.js';
import { idHex, p64, z64, type Tid } from '../../src/storage/ids.js';
import { TransactionMetaData } from '../../src/storage/interfaces.js';
import { mulberry32 } from '../helpers/prng.js';
import { ServerProcess, stopLeftovers } from '../helpers/server-process.js';
import { minpo, minpoValue } from '../storage/contract/helpers.js';

const CLIENTS = 8;
const ROUNDS = 4;

after(stopLeftovers);

interface Ack {
  client: number;
  value: number;
  tid: Tid;
}

/** Commits value after value to the client's own object until `stop()`; the acknowledged ones in `acks`. */
async function commitLoop(
  cs: ClientStorage,
  client: number,
  start: { value: number; serial: Tid },
  stopped: () => boolean,
  acks: Ack[],
): Promise<void> {
  const oid = p64(client + 1);
  let { value, serial } = start;
  while (!stopped()) {
    value++;
    const txn = new TransactionMetaData();
    try {
      await cs.tpcBegin(txn);
      await cs.store(oid, serial, minpo(value), txn);
      await cs.tpcVote(txn);
      serial = await cs.tpcFinish(txn);
    } catch (e) {
      if (stopped()) return; // the server was killed under it: not acknowledged
      throw e;
    }
    acks.push({ client, value, tid: serial });
  }
}

test(
  'SIGKILL during group commits from many connections: every acknowledged transaction survives',
  { timeout: 120_000 },
  async (t) => {
    const seed = Number(process.env.ZEO_TS_GROUP_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    t.diagnostic(`seed ${seed} (ZEO_TS_GROUP_CRASH_SEED replays it)`);
    const rand = mulberry32(seed);
    const dir = await mkdtemp(join(tmpdir(), 'zeo-group-crash-'));
    const path = join(dir, 'Data.fs');
    const acked: Ack[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const server = new ServerProcess({
          kind: 'zeo-ts',
          args: ['-a', '127.0.0.1:0', '-f', path],
          cwd: dir,
        });
        const port = await server.port();
        const clients = await Promise.all(
          Array.from({ length: CLIENTS }, () =>
            ClientStorage.open({ server: { host: '127.0.0.1', port }, cacheSize: 0, waitTimeout: 2_000 }),
          ),
        );
        let killed = false;
        const loops: Array<Promise<void>> = [];
        try {
          for (let c = 0; c < CLIENTS; c++) {
            // where the client is: its last commit that survived, acknowledged or not
            let start = { value: 0, serial: z64 };
            try {
              const r = await clients[c].load(p64(c + 1));
              start = { value: minpoValue(r.data) as number, serial: r.serial };
            } catch {
              // (not created yet)
            }
            loops.push(commitLoop(clients[c], c, start, () => killed, acked));
          }
          await new Promise((r) => setTimeout(r, 150 + Math.floor(rand() * 350)));
        } finally {
          killed = true;
          server.proc.kill('SIGKILL');
          await server.exited;
          await Promise.all(loops);
          await Promise.all(clients.map((c) => c.close().catch(() => {})));
        }
        assert.equal(server.exit?.signal, 'SIGKILL');

        // the next server's open: a commit cut short is truncated; every acknowledged one is there
        const fs = await FileStorage.open(path);
        try {
          const found = new Map<string, number>();
          for await (const txn of fs.iterator()) {
            for await (const r of txn.records) {
              found.set(`${idHex(r.oid)} ${idHex(txn.tid)}`, minpoValue(r.data!) as number);
            }
          }
          for (const a of acked) {
            const value = found.get(`${idHex(p64(a.client + 1))} ${idHex(a.tid)}`);
            assert.equal(value, a.value, `client ${a.client}'s acknowledged commit of ${a.value} survives`);
          }
          for (let c = 0; c < CLIENTS; c++) {
            const mine = acked.filter((a) => a.client === c);
            if (!mine.length) continue;
            const last = mine[mine.length - 1];
            const r = await fs.load(p64(c + 1));
            assert.ok((minpoValue(r.data) as number) >= last.value, `client ${c} is at or past its last ack`);
          }
        } finally {
          await fs.close();
        }
        // (after the writable open, which truncated any commit cut short: the file is sound)
        const v = await verifyDataFile(path);
        assert.equal(v.error, null, `the file verifies: ${String(v.error)}`);
      }
      assert.ok(acked.length > CLIENTS, `commits were acknowledged (${acked.length})`);
      t.diagnostic(`${acked.length} acknowledged commits over ${ROUNDS} kills`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
