// MemoryStorage against ZODB's own FileStorage: random histories of commits (stores and deleteObject), undos and
// packs run on both, with the same tids and pack times; after every step the current state must agree, and at
// the end the whole history: transactions (status, records, back pointers), undo log, history(), loadBefore at
// every tid, len(). This is what says MemoryStorage has FileStorage's undo and pack semantics, not just ours.
import assert from 'node:assert/strict';
import { Global, PersistentRef, referencesf, tupleFrom, type PickleValue } from '../../src/pickle/index.js';
import { POSKeyError, UndoError } from '../../src/storage/errors.js';
import { idHex, p64, u64, z64, type Oid } from '../../src/storage/ids.js';
import { TransactionMetaData, type Storage } from '../../src/storage/interfaces.js';
import { MemoryStorage } from '../../src/storage/memory/memory-storage.js';
import { TimeStamp } from '../../src/storage/timestamp.js';
import { interopTest } from '../helpers/oracle.js';
import { objectRecord } from './contract/helpers.js';
import { mulberry32 } from '../helpers/prng.js';

type Op =
  | { op: 'commit'; tid: string; desc: string; stores: Array<[number, string | null]> }
  | { op: 'undo'; tid: string; pick: number }
  | { op: 'pack'; t: number };

const OIDS: Oid[] = [z64, ...[1, 2, 3, 4, 5, 6].map((n) => p64(n))];
const BASE = Date.UTC(2020, 0, 1) / 1000;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * A record referring to some pool objects. The class is one Python can import and that has no
 * _p_resolveConflict, so FileStorage's built-in conflict resolution declines quietly (as ours, with none).
 */
function record(refs: number[], value: number): string {
  const state = new Map<PickleValue, PickleValue>([
    ['refs', refs.map((i) => new PersistentRef(tupleFrom<PickleValue>([OIDS[i], Global.of('m', 'C')])))],
    ['v', value],
  ]);
  return hex(objectRecord('persistent.mapping', 'PersistentMapping', state));
}

function generate(seed: number, n: number): Op[] {
  const r = mulberry32(seed);
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) {
    const tid = hex(TimeStamp.fromTime(BASE + i).raw());
    // the first transaction stores the root: FileStorage's undoLog never shows a first transaction shorter than
    // 35 bytes (UndoSearch stops below file position 39), an empty one with a short description
    const x = i === 0 ? 0 : r();
    if (x < 0.55) {
      const count = 1 + Math.floor(r() * 3);
      const picked = new Set<number>();
      // the root is written often, so objects become reachable and unreachable
      if (i === 0 || r() < 0.5) picked.add(0);
      while (picked.size < count) picked.add(Math.floor(r() * OIDS.length));
      const stores: Array<[number, string | null]> = [...picked].map((idx) => {
        if (idx !== 0 && r() < 0.15) return [idx, null];
        const refs = Array.from(
          { length: Math.floor(r() * 3) },
          () => 1 + Math.floor(r() * (OIDS.length - 1)),
        );
        return [idx, record(refs, i)];
      });
      ops.push({ op: 'commit', tid, desc: `c${i}`, stores });
    } else if (x < 0.82) {
      ops.push({ op: 'undo', tid, pick: Math.floor(r() * 6) });
    } else {
      // mostly forward, sometimes before an earlier pack time (redundant)
      const j = Math.max(0, i - Math.floor(r() * 10));
      ops.push({ op: 'pack', t: BASE + j + 0.5 });
    }
  }
  return ops;
}

type Snapshot = Array<[string, string] | null>;
type Step = [unknown, Snapshot];
interface Final {
  txns: Array<[string, string, string, Array<[string, string, string | null, string | null]>]>;
  undoLog: Array<[string, string]>;
  history: Array<Array<[string, number]> | null>;
  before: Array<Array<[string, string | null, string] | null | 'KeyError'>>;
  len: number;
}

async function serialOf(s: Storage, oid: Oid): Promise<Uint8Array> {
  try {
    return (await s.history(oid, 1))[0].tid;
  } catch (e) {
    if (e instanceof POSKeyError) return z64;
    throw e;
  }
}

async function snapshot(s: Storage): Promise<Snapshot> {
  const out: Snapshot = [];
  for (const oid of OIDS) {
    try {
      const { data, serial } = await s.load(oid);
      out.push([hex(serial), hex(data)]);
    } catch (e) {
      if (!(e instanceof POSKeyError)) throw e;
      out.push(null);
    }
  }
  return out;
}

async function runOurs(ops: Op[]): Promise<{ steps: Step[]; final: Final }> {
  const s = new MemoryStorage();
  const steps: Step[] = [];
  const tids: string[] = [];
  for (const op of ops) {
    let res: unknown;
    if (op.op === 'commit') {
      tids.push(op.tid);
      const t = new TransactionMetaData(new Uint8Array(0), new Uint8Array(Buffer.from(op.desc)));
      await s.tpcBegin(t, Buffer.from(op.tid, 'hex'));
      res = 'ok';
      try {
        for (const [idx, rec] of op.stores) {
          const oid = OIDS[idx];
          if (rec === null) {
            let serial: Uint8Array;
            try {
              serial = (await s.load(oid)).serial;
            } catch (e) {
              if (!(e instanceof POSKeyError)) throw e;
              continue;
            }
            await s.deleteObject(oid, serial, t);
          } else {
            await s.store(oid, await serialOf(s, oid), Buffer.from(rec, 'hex'), t);
          }
        }
        await s.tpcVote(t);
        await s.tpcFinish(t);
      } catch (e) {
        await s.tpcAbort(t);
        res = (e as Error).name;
      }
    } else if (op.op === 'undo') {
      tids.push(op.tid);
      const entries = await s.undoLog(0, 20);
      if (!entries.length) {
        steps.push(['skip', await snapshot(s)]);
        continue;
      }
      const e = entries[op.pick % entries.length];
      const t = new TransactionMetaData(new Uint8Array(0), new Uint8Array(Buffer.from('undo')));
      await s.tpcBegin(t, Buffer.from(op.tid, 'hex'));
      try {
        const r = await s.undo(e.id, t);
        await s.tpcVote(t);
        await s.tpcFinish(t);
        res = ['ok', r.oids.map(hex).sort()];
      } catch (err) {
        await s.tpcAbort(t);
        if (!(err instanceof UndoError)) throw err;
        res = 'UndoError';
      }
    } else {
      try {
        await s.pack(op.t, referencesf);
        res = 'ok';
      } catch (e) {
        if (!(e instanceof POSKeyError)) throw e;
        res = 'KeyError';
      }
    }
    steps.push([res, await snapshot(s)]);
  }

  const final: Final = { txns: [], undoLog: [], history: [], before: [], len: s.len() };
  for await (const txn of s.iterator()) {
    const recs: Final['txns'][number][3] = [];
    for await (const r of txn.records) {
      recs.push([hex(r.oid), hex(r.tid), r.data && hex(r.data), r.dataTxn && hex(r.dataTxn)]);
    }
    final.txns.push([hex(txn.tid), txn.status, Buffer.from(txn.description).toString(), recs]);
  }
  final.undoLog = (await s.undoLog(0, 1000)).map((e) => [
    Buffer.from(e.id).toString('latin1'),
    Buffer.from(e.description).toString(),
  ]);
  for (const oid of OIDS) {
    try {
      final.history.push((await s.history(oid, 1000)).map((h) => [hex(h.tid), h.size]));
    } catch (e) {
      if (!(e instanceof POSKeyError)) throw e;
      final.history.push(null);
    }
    const row: Final['before'][number] = [];
    for (const tid of tids) {
      for (const x of [Buffer.from(tid, 'hex'), p64(u64(Buffer.from(tid, 'hex')) + 1n)]) {
        try {
          const r = await s.loadBefore(oid, x);
          row.push(r === null ? null : [hex(r.start), r.end && hex(r.end), hex(r.data)]);
        } catch (e) {
          if (!(e instanceof POSKeyError)) throw e;
          row.push('KeyError');
        }
      }
    }
    final.before.push(row);
  }
  return { steps, final };
}

const PY_RUN = `
import os, tempfile, shutil, logging
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB.serialize import referencesf
from ZODB.POSException import POSKeyError, UndoError
from ZODB.utils import z64, p64, u64
logging.getLogger('ZODB').setLevel(logging.CRITICAL)

oids = [bytes.fromhex(h) for h in args['oids']]
d = tempfile.mkdtemp()
s = FileStorage(os.path.join(d, 'Data.fs'), create=True)

def serial_of(oid):
    try:
        return s.history(oid, 1)[0]['tid']
    except POSKeyError:
        return z64

def snapshot():
    out = []
    for oid in oids:
        try:
            data, tid = s.load(oid)
            out.append([tid.hex(), data.hex()])
        except POSKeyError:
            out.append(None)
    return out

steps = []
tids = []
for op in args['ops']:
    kind = op['op']
    if kind == 'commit':
        tids.append(op['tid'])
        t = TransactionMetaData(description=op['desc'])
        s.tpc_begin(t, bytes.fromhex(op['tid']))
        res = 'ok'
        try:
            for idx, rec in op['stores']:
                oid = oids[idx]
                if rec is None:
                    try:
                        data, serial = s.load(oid)
                    except POSKeyError:
                        continue
                    s.deleteObject(oid, serial, t)
                else:
                    s.store(oid, serial_of(oid), bytes.fromhex(rec), '', t)
            s.tpc_vote(t)
            s.tpc_finish(t)
        except Exception as e:
            s.tpc_abort(t)
            res = type(e).__name__
    elif kind == 'undo':
        tids.append(op['tid'])
        entries = s.undoLog(0, 20)
        if not entries:
            steps.append(['skip', snapshot()])
            continue
        e = entries[op['pick'] % len(entries)]
        t = TransactionMetaData(description='undo')
        s.tpc_begin(t, bytes.fromhex(op['tid']))
        try:
            r = s.undo(e['id'], t)
            s.tpc_vote(t)
            s.tpc_finish(t)
            res = ['ok', sorted(o.hex() for o in r[1])]
        except UndoError:
            s.tpc_abort(t)
            res = 'UndoError'
    else:
        try:
            s.pack(op['t'], referencesf)
            res = 'ok'
        except KeyError:
            res = 'KeyError'
    steps.append([res, snapshot()])

final = {'txns': [], 'undoLog': [], 'history': [], 'before': [], 'len': len(s)}
for txn in s.iterator():
    recs = [[r.oid.hex(), r.tid.hex(), None if r.data is None else r.data.hex(),
             None if r.data_txn is None else r.data_txn.hex()] for r in txn]
    final['txns'].append([txn.tid.hex(), txn.status, txn.description.decode(), recs])
final['undoLog'] = [[e['id'].decode('latin1'), e['description'].decode()] for e in s.undoLog(0, 1000)]
for oid in oids:
    try:
        final['history'].append([[h['tid'].hex(), h['size']] for h in s.history(oid, 1000)])
    except POSKeyError:
        final['history'].append(None)
    row = []
    for tid in tids:
        for x in (bytes.fromhex(tid), p64(u64(bytes.fromhex(tid)) + 1)):
            try:
                r = s.loadBefore(oid, x)
                row.append(None if r is None else [r[1].hex(), r[2] and r[2].hex(), r[0].hex()])
            except POSKeyError:
                row.append('KeyError')
    final['before'].append(row)
s.close()
shutil.rmtree(d)
result = {'steps': steps, 'final': final}
`;

interopTest(
  'random commits, deletions, undos and packs: MemoryStorage and FileStorage agree step by step',
  async (oracle) => {
    const stats = { ok: 0, undone: 0, undoRefused: 0, packs: 0, packErrors: 0, packed: 0 };
    for (let seed = 1; seed <= 40; seed++) {
      const ops = generate(seed, 60);
      const py = await oracle.json<{ steps: Step[]; final: Final }>(PY_RUN, undefined, {
        oids: OIDS.map(idHex),
        ops,
      });
      const ours = await runOurs(ops);
      for (let i = 0; i < ops.length; i++) {
        assert.deepEqual(ours.steps[i], py.steps[i], `seed ${seed}, step ${i}: ${JSON.stringify(ops[i])}`);
        const res = py.steps[i][0];
        if (ops[i].op === 'pack') {
          stats.packs++;
          if (res !== 'ok') stats.packErrors++;
        } else if (ops[i].op === 'undo') {
          if (Array.isArray(res)) stats.undone++;
          else if (res === 'UndoError') stats.undoRefused++;
        } else if (res === 'ok') stats.ok++;
      }
      assert.deepEqual(ours.final, py.final, `seed ${seed}: the final history`);
      if (py.final.txns.some((t) => t[1] === 'p')) stats.packed++;
    }
    // the histories were varied enough to mean something
    assert.ok(stats.undone > 100 && stats.undoRefused > 20, JSON.stringify(stats));
    assert.ok(stats.packs > 200 && stats.packed > 30, JSON.stringify(stats));
  },
  { timeout: 120_000 },
);
