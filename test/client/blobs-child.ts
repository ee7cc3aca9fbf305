// A client process for test/client/blobs.test.ts: registers with the server, loads the blobs it is given (in
// its own random order, `rounds` times) through a blob cache shared with its siblings, checks every byte it
// reads, and prints one JSON line: how many loads and how many blobs the server sent it.
//   node blobs-child.js '{"address":...,"blobDir":...,"blobCacheSize":...,"blobs":[{"oid","serial","sha256"}]...}'

import { createHash } from 'node:crypto';
import { ClientBlobs } from '../../src/client/blobs.js';
import { ClientConnection, type ServerAddress } from '../../src/client/connection.js';
import { idFromHex } from '../../src/storage/ids.js';
import { mulberry32 } from '../helpers/prng.js';

interface Job {
  address: ServerAddress;
  blobDir: string;
  blobCacheSize: number | null;
  blobCacheSizeCheck: number;
  blobs: Array<{ oid: string; serial: string; sha256: string }>;
  rounds: number;
  seed: number;
}

const job = JSON.parse(process.argv[2]) as Job;
const blobs = new ClientBlobs({
  blobDir: job.blobDir,
  sharedBlobDir: false,
  blobCacheSize: job.blobCacheSize,
  blobCacheSizeCheck: job.blobCacheSizeCheck,
});
let received = 0;
const conn = await ClientConnection.connect(job.address, {
  timeout: 60_000,
  onServerCall: async (name, args) => {
    if (name === 'receiveBlobStart') received++;
    await blobs.onServerCall(name, args);
  },
});
await conn.call('register', ['1', true]);
const random = mulberry32(job.seed);
let loads = 0;
const bad: string[] = [];
for (let r = 0; r < job.rounds; r++) {
  const order = job.blobs.map((b) => ({ b, k: random() })).sort((x, y) => x.k - y.k);
  // two loads at a time, so this process also races itself
  await Promise.all(
    [0, 1].map(async (lane) => {
      for (let i = lane; i < order.length; i += 2) {
        const { b } = order[i];
        const fh = await blobs.openCommittedBlobFile(conn, idFromHex(b.oid), idFromHex(b.serial));
        try {
          const sha = createHash('sha256')
            .update(await fh.readFile())
            .digest('hex');
          if (sha !== b.sha256) bad.push(`${b.oid}@${b.serial}`);
        } finally {
          await fh.close();
        }
        loads++;
      }
    }),
  );
}
await blobs.close();
await conn.close();
process.stdout.write(JSON.stringify({ loads, received, bad }) + '\n');
