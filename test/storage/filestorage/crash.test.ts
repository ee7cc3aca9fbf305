// Crash test: a child process (crash-child.ts) commits in a loop to a FileStorage and prints each tid once
// tpcFinish has resolved; the parent kills it with SIGKILL at random moments (in the open and its recovery,
// between commits, in the middle of a vote or a finish) and after every kill checks the file:
//   - every acknowledged transaction is there, with its data;
//   - nothing partial is visible: every transaction our FileStorage (and, every few kills, Python's) reads is
//     whole (the records commit n was to write, byte for byte), and load() gives each object's last write;
//   - `zeo verify` finds the file sound, or damaged only by a commit cut short at its end, which the next open
//     (the next child's) truncates; at the end, after a writable open, the file verifies clean.
// A SIGKILL kills the process, not the machine: what the kernel has accepted survives it. Power loss (what the
// fsyncs are for) is not simulated here.
//
// ZEO_TS_CRASH_KILLS sets the number of kills (default 50); ZEO_TS_CRASH_SEED replays a run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { test } from 'node:test';
import { verifyDataFile } from '../../../src/storage/filestorage/fstest.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { FileStorage } from '../../../src/storage/filestorage/file-storage.js';
import { p64 } from '../../../src/storage/ids.js';
import { interopDisabled, Oracle } from '../../helpers/oracle.js';
import { crashPlan, OBJECTS } from './crash-child.js';
import { withTempDir } from './fs-oracle.js';
import { xorshift32 } from '../../helpers/prng.js';

const CHILD = fileURLToPath(new URL('./crash-child.js', import.meta.url));
const KILLS = Number(process.env.ZEO_TS_CRASH_KILLS ?? 50);
const PYTHON_EVERY = 5;

interface Round {
  acks: Array<{ n: number; tid: string }>;
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
  ready: boolean;
}

/** Runs the child from commit `start`; kills it `delay` ms after it is ready (or after it starts, if `early`). */
function runChild(path: string, start: number, delay: number, early: boolean): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, path, String(start)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const round: Round = { acks: [], signal: null, code: null, stderr: '', ready: false };
    let out = '';
    let timer: NodeJS.Timeout | null = null;
    const kill = (): void => {
      child.kill('SIGKILL');
    };
    const safety = setTimeout(kill, 20_000);
    if (early) timer = setTimeout(kill, delay);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line === 'ready') {
          round.ready = true;
          if (!early) timer = setTimeout(kill, delay);
        } else {
          const m = /^ack (\d+) ([0-9a-f]{16})$/.exec(line);
          if (m) round.acks.push({ n: Number(m[1]), tid: m[2] });
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (round.stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(safety);
      if (timer) clearTimeout(timer);
      round.code = code;
      round.signal = signal;
      resolve(round);
    });
  });
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** What a file should hold: the transactions found, as (tid, n), and each object's last data. */
interface Seen {
  txns: Array<{ tid: string; n: number }>;
  current: Map<number, { sha: string; tid: string }>;
}

/** Checks that transaction `n` holds exactly crashPlan(n); returns the oids' data hashes. */
function checkWhole(
  what: string,
  n: number,
  records: Array<{ oid: number; sha: string | null }>,
): Map<number, string> {
  const plan = crashPlan(n);
  const want = new Map(plan.map((r) => [r.oid, sha(r.data)]));
  const got = new Map(records.map((r) => [r.oid, r.sha]));
  assert.equal(
    records.length,
    plan.length,
    `${what}: commit ${n} has ${records.length} records, not ${plan.length}`,
  );
  assert.deepEqual(got, want, `${what}: commit ${n} is not whole`);
  return want;
}

/** Our FileStorage, read-only (it does not truncate a damaged tail): every transaction whole, loads right. */
async function checkOurs(path: string): Promise<Seen> {
  const fs = await FileStorage.open(path, { readOnly: true });
  try {
    const seen: Seen = { txns: [], current: new Map() };
    let lastN = -1;
    for await (const t of fs.iterator()) {
      const desc = Buffer.from(t.description).toString();
      const m = /^commit (\d+)$/.exec(desc);
      assert.ok(m, `unexpected transaction description ${JSON.stringify(desc)}`);
      const n = Number(m[1]);
      assert.ok(n > lastN, `commit ${n} after commit ${lastN}`);
      lastN = n;
      const records: Array<{ oid: number; sha: string | null }> = [];
      for await (const r of t.records) {
        records.push({ oid: Number(Buffer.from(r.oid).readBigUInt64BE()), sha: r.data ? sha(r.data) : null });
      }
      const tid = Buffer.from(t.tid).toString('hex');
      for (const [oid, h] of checkWhole('ours', n, records)) seen.current.set(oid, { sha: h, tid });
      seen.txns.push({ tid, n });
    }
    for (let oid = 1; oid <= OBJECTS; oid++) {
      const want = seen.current.get(oid);
      try {
        const { data, serial } = await fs.load(p64(oid));
        assert.ok(want, `oid ${oid} loads, but no transaction wrote it`);
        assert.equal(sha(data), want.sha, `load(${oid})`);
        assert.equal(Buffer.from(serial).toString('hex'), want.tid, `load(${oid}) serial`);
      } catch (e) {
        if (!(e instanceof POSKeyError)) throw e;
        assert.equal(want, undefined, `oid ${oid} was written but does not load`);
      }
    }
    return seen;
  } finally {
    await fs.close();
  }
}

const PY_CHECK = `
import hashlib
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError
from ZODB.utils import load_current, p64
fs = FileStorage(args['path'], read_only=True)
try:
    txns = []
    for t in fs.iterator():
        recs = [[int.from_bytes(r.oid, 'big'), hashlib.sha256(r.data).hexdigest() if r.data is not None else None]
                for r in t]
        txns.append([t.tid.hex(), t.description.decode(), recs])
    current = {}
    for oid in range(1, args['objects'] + 1):
        try:
            data, serial = load_current(fs, p64(oid))
            current[str(oid)] = [hashlib.sha256(data).hexdigest(), serial.hex()]
        except POSKeyError:
            pass
    result = {'txns': txns, 'current': current, 'pos': fs._pos}
finally:
    fs.close()
`;

/** Python's FileStorage, read-only, sees the same whole transactions and the same current data. */
async function checkPython(oracle: Oracle, path: string, ours: Seen): Promise<void> {
  const py = await oracle.json<{
    txns: Array<[string, string, Array<[number, string | null]>]>;
    current: Record<string, [string, string]>;
  }>(PY_CHECK, undefined, { path, objects: OBJECTS });
  assert.deepEqual(
    py.txns.map(([tid]) => tid),
    ours.txns.map((t) => t.tid),
    'Python reads other transactions',
  );
  for (const [, desc, recs] of py.txns) {
    const n = Number(/^commit (\d+)$/.exec(desc)![1]);
    checkWhole(
      'python',
      n,
      recs.map(([oid, h]) => ({ oid, sha: h })),
    );
  }
  const cur = new Map(Object.entries(py.current).map(([k, [h, tid]]) => [Number(k), { sha: h, tid }]));
  assert.deepEqual(cur, ours.current, 'Python loads other data');
}

test(
  `crash test: ${KILLS} SIGKILLs of a committing process; acknowledged commits survive, nothing partial`,
  { timeout: 300_000 },
  async (t) => {
    const seed = Number(process.env.ZEO_TS_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    t.diagnostic(`seed ${seed} (ZEO_TS_CRASH_SEED replays it)`);
    const next = xorshift32(seed);
    const random = (): number => next() / 0x100000000;
    const oracle = interopDisabled ? null : new Oracle();
    try {
      await withTempDir(async (dir) => {
        const path = join(dir, 'Data.fs');
        const acked = new Map<string, number>(); // tid -> n
        let next = 0;
        let tails = 0;
        let earlyKills = 0;
        let totalAcks = 0;
        for (let i = 0; i < KILLS; i++) {
          // one kill in eight during the open (and its recovery of the last kill's damage)
          const early = i > 0 && random() < 0.125;
          const delay = early ? 20 + random() * 150 : random() * 250;
          const round = await runChild(path, next, delay, early);
          assert.equal(
            round.signal,
            'SIGKILL',
            `round ${i}: the child exited (${round.code}): ${round.stderr}`,
          );
          if (early && !round.ready) earlyKills++;
          for (const a of round.acks) acked.set(a.tid, a.n);
          totalAcks += round.acks.length;

          // the file as the kill left it: sound, or cut short in a commit at its end
          const v = await verifyDataFile(path);
          if (v.error) {
            assert.ok(v.recoverable, `round ${i}: ${v.error.message}`);
            tails++;
          }
          const seen = await checkOurs(path);
          const inFile = new Map(seen.txns.map((x) => [x.tid, x.n]));
          for (const [tid, n] of acked) {
            assert.equal(inFile.get(tid), n, `round ${i}: acknowledged commit ${n} (tid ${tid}) is missing`);
          }
          if (oracle && i % PYTHON_EVERY === PYTHON_EVERY - 1) await checkPython(oracle, path, seen);
          next = seen.txns.length ? seen.txns[seen.txns.length - 1].n + 1 : 0;
        }
        // a writable open truncates what the last kill left; then the file verifies clean
        const fs = await FileStorage.open(path);
        await fs.close();
        const v = await verifyDataFile(path);
        assert.equal(v.error, null, v.error?.message);
        const seen = await checkOurs(path);
        for (const [tid, n] of acked) assert.equal(seen.txns.find((x) => x.tid === tid)?.n, n);
        if (oracle) await checkPython(oracle, path, seen);
        t.diagnostic(
          `${KILLS} kills (${earlyKills} during the open), ${totalAcks} acknowledged commits, ` +
            `${seen.txns.length} transactions in the file, ${tails} kills left a commit cut short at the end`,
        );
        assert.ok(totalAcks > KILLS, 'the children committed too little to test anything');
        assert.ok(tails > 0, 'no kill landed in the middle of a commit');
      });
    } finally {
      oracle?.close();
    }
  },
);
