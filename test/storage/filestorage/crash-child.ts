// The child of the crash test (crash.test.ts): opens the FileStorage at argv[2] (recovering whatever the last
// kill left), then commits transactions numbered from argv[3] on, forever, printing "ready" once open and
// "ack <n> <tid hex>" after each tpcFinish resolves. The parent kills it with SIGKILL at a random moment.
//
// What commit n writes is a function of n alone (crashPlan), so the parent can check any transaction it finds
// in the file, acknowledged or not: the description is "commit <n>", the records are crashPlan(n).
// Lines go to stdout with writeSync: once printed, an acknowledgement is in the pipe even if the process dies
// on the next instruction.
import { writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { POSKeyError } from '../../../src/storage/errors.js';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { p64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import { TransactionMetaData } from '../../../src/storage/interfaces.js';
import { xorshift32 } from '../../helpers/prng.js';

/** The objects the crash test writes: oids 1 to OBJECTS. */
export const OBJECTS = 24;

/** The records of commit n: oid number -> data. Every 7th commit writes a large record (a longer write). */
export function crashPlan(n: number): Array<{ oid: number; data: Buffer }> {
  const r = xorshift32((n + 1) ^ 0x9e3779b9);
  const count = 1 + (r() % 4);
  const oids = new Set<number>();
  while (oids.size < count) oids.add(1 + (r() % OBJECTS));
  return [...oids].map((oid, i) => {
    const size = n % 7 === 0 && i === 0 ? 64 * 1024 + (r() % 65536) : 20 + (r() % 400);
    const data = Buffer.alloc(size);
    const head = Buffer.from(`commit ${n} oid ${oid};`);
    head.copy(data);
    for (let j = head.length; j < size; j++) data[j] = (n * 31 + oid * 7 + j) & 0xff;
    return { oid, data };
  });
}

function say(line: string): void {
  writeSync(1, line + '\n');
}

async function main(): Promise<void> {
  const path = process.argv[2];
  let n = Number(process.argv[3]);
  const fs = await FileStorage.open(path);
  const serials = new Map<number, Tid>();
  for (let oid = 1; oid <= OBJECTS; oid++) {
    try {
      serials.set(oid, (await fs.load(p64(oid))).serial);
    } catch (e) {
      if (!(e instanceof POSKeyError)) throw e;
    }
  }
  say('ready');
  for (;;) {
    const plan = crashPlan(n);
    const txn = new TransactionMetaData(Buffer.from('crash-test'), Buffer.from(`commit ${n}`));
    await fs.tpcBegin(txn);
    for (const { oid, data } of plan) {
      const o: Oid = p64(oid);
      await fs.store(o, serials.get(oid) ?? z64, data, txn);
    }
    await fs.tpcVote(txn);
    // a ZEO server waits for the client's tpc_finish after the vote: a kill then finds the transaction
    // written, not committed
    if (n % 2) await new Promise((resolve) => setTimeout(resolve, 1));
    const tid = await fs.tpcFinish(txn);
    for (const { oid } of plan) serials.set(oid, tid);
    say(`ack ${n} ${Buffer.from(tid).toString('hex')}`);
    n++;
  }
}

// only when run as a script (the test imports crashPlan)
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`crash-child: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(3);
  });
}
