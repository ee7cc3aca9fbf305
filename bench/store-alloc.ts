// Heap bytes allocated per commit of N objects, server and client in this process (an in-process zeo serve and
// our ClientStorage over loopback): run with `node --expose-gc --min-semi-space-size=64 --max-semi-space-size=64
// dist/bench/store-alloc.js [objects] [commits]`. The young generation is made large enough that no GC runs
// while the commits are timed; the heap's growth over them is then every byte allocated. The client's share is
// the same whatever the server does: compare two builds of the server with the same driver.
import { PerformanceObserver } from 'node:perf_hooks';
import { ClientStorage } from '../src/client/index.js';
import { TransactionMetaData } from '../src/storage/interfaces.js';
import { startServer } from '../test/helpers/server-fixture.js';

const objects = Number(process.argv[2] ?? 200);
const commits = Number(process.argv[3] ?? 20);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const srv = await startServer();
const client = await ClientStorage.open({ server: srv.address, storage: '1', waitTimeout: 10_000 });
try {
  const oids: Uint8Array[] = [];
  for (let i = 0; i < objects; i++) oids.push(await client.newOid());
  const serials = oids.map(() => new Uint8Array(8));
  const data = new Uint8Array(100).fill(7);
  const commit = async (): Promise<void> => {
    const txn = new TransactionMetaData();
    await client.tpcBegin(txn);
    for (let i = 0; i < objects; i++) await client.store(oids[i], serials[i], data, txn);
    await client.tpcVote(txn);
    const tid = await client.tpcFinish(txn);
    for (const s of serials) s.set(tid);
  };
  for (let i = 0; i < 30; i++) await commit(); // warm-up: the JIT, the read cache
  let gcs = 0;
  const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
  obs.observe({ entryTypes: ['gc'] });
  gc();
  await new Promise((r) => setTimeout(r, 50));
  gcs = 0;
  const before = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < commits; i++) await commit();
  const cpu = process.cpuUsage(cpu0);
  const after = process.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 10));
  obs.disconnect();
  console.log(
    `${objects} objects per commit, ${commits} commits: ${((after - before) / commits / 1024).toFixed(0)} KiB ` +
      `allocated and ${((cpu.user + cpu.system) / commits).toFixed(0)} µs of CPU per commit (server and client)${gcs ? `; ${gcs} GCs ran meanwhile: not valid` : ''}`,
  );
} finally {
  await client.close();
  await srv.stop();
}
