// What the contract tests share: ZODB-shaped records (MinPO as StorageTestBase.zodb_pickle writes it, persistent
// objects and PersistentMappings with real persistent references as a Connection writes them), the
// StorageTestBase helpers (_dostore, _undo...), a tiny object layer for the tests ZODB writes against a DB,
// and a PCounter conflict resolver (ZODB.tests.ConflictResolution).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  decodeRecord,
  dumps,
  Global,
  PersistentRef,
  tupleFrom,
  type PickleValue,
  type PyDict,
} from '../../../src/pickle/index.js';
import { ConflictError, POSKeyError } from '../../../src/storage/errors.js';
import { idHex, p64, u64, z64, type Oid, type Tid } from '../../../src/storage/ids.js';
import {
  TransactionMetaData,
  type ConflictResolver,
  type DataRecord,
  type Storage,
  type TransactionRecord,
} from '../../../src/storage/interfaces.js';

export { z64 };

const tuple = (...items: PickleValue[]) => tupleFrom<PickleValue>(items);
const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

export function bytes(s: string): Uint8Array {
  return utf8(s);
}

export function text(b: Uint8Array): string {
  return Buffer.from(b).toString('utf8');
}

export const hex = (b: Uint8Array): string => idHex(b);

/** Compares two byte strings in assertions (Buffer gives readable diffs). */
export function assertBytes(actual: Uint8Array | null, expected: Uint8Array | null, message?: string): void {
  if (expected === null || actual === null) {
    assert.equal(actual, expected, message);
    return;
  }
  assert.deepEqual(Buffer.from(actual), Buffer.from(expected), message);
}

export function assertId(
  actual: Uint8Array | null | undefined,
  expected: Uint8Array | null,
  message?: string,
): void {
  assert.equal(actual == null ? actual : hex(actual), expected === null ? null : hex(expected), message);
}

// ---------------------------------------------------------------------------------------------------------
// Records

function record(classMeta: PickleValue, state: PickleValue): Uint8Array {
  return new Uint8Array(Buffer.concat([dumps(classMeta, 3), dumps(state, 3)]));
}

/** A MinPO as StorageTestBase.zodb_pickle writes it: ((module, name), None), then {'value': value}. */
export function minpo(value: PickleValue): Uint8Array {
  return record(tuple(tuple('ZODB.tests.MinPO', 'MinPO'), null), new Map([['value', value]]));
}

/** The value of a MinPO record (zodb_unpickle(data).value). */
export function minpoValue(data: Uint8Array): PickleValue {
  const state = decodeRecord(data).state;
  assert.ok(state instanceof Map, 'a MinPO state is a dict');
  return state.get('value') ?? null;
}

/** A persistent object's record as a Connection writes it: (class, None), then the state dict. */
export function objectRecord(module: string, name: string, state: PyDict): Uint8Array {
  return record(tuple(Global.of(module, name), null), state);
}

/** A persistent reference as ObjectWriter.persistent_id makes it: (oid, class). */
export function ref(oid: Oid, module = 'ZODB.tests.TransactionalUndoStorage', name = 'C'): PersistentRef {
  return new PersistentRef(tuple(oid, Global.of(module, name)));
}

/** A PersistentMapping record ({'data': {...}}) whose values may be references. */
export function mappingRecord(entries: Iterable<[PickleValue, PickleValue]>): Uint8Array {
  return objectRecord('persistent.mapping', 'PersistentMapping', new Map([['data', new Map(entries)]]));
}

/** The state dict of a record. */
export function stateOf(data: Uint8Array): PyDict {
  const state = decodeRecord(data).state;
  assert.ok(state instanceof Map, 'the state is a dict');
  return state;
}

/** The class name (module.name) of a record. */
export function classOf(data: Uint8Array): string {
  const meta = decodeRecord(data).classMeta;
  return `${meta.module}.${meta.name}`;
}

/** The entries of a PersistentMapping record. */
export function mappingOf(data: Uint8Array): PyDict {
  const d = stateOf(data).get('data');
  assert.ok(d instanceof Map, 'a PersistentMapping state has a data dict');
  return d;
}

/** The oid of a persistent reference value. */
export function refOid(v: PickleValue | undefined): Oid {
  assert.ok(v instanceof PersistentRef, 'a persistent reference');
  const id = v.id;
  const oid = Array.isArray(id) ? id[0] : id;
  assert.ok(oid instanceof Uint8Array);
  return oid;
}

export const PCOUNTER_MODULE = 'ZODB.tests.ConflictResolution';

/** A PCounter (or PCounter2/3/4) record; `_value` absent when 0, as the class default. */
export function pcounter(value: number, name = 'PCounter'): Uint8Array {
  return objectRecord(PCOUNTER_MODULE, name, new Map(value ? [['_value', value]] : []));
}

export function pcounterValue(data: Uint8Array): number {
  const v = stateOf(data).get('_value') ?? 0;
  assert.equal(typeof v, 'number');
  return v as number;
}

export interface ResolverCall {
  oid: Oid;
  committedSerial: Tid;
  oldSerial: Tid;
  newData: Uint8Array;
  committedData: Uint8Array;
}

/**
 * The resolver a ZODB client would run for ZODB.tests.ConflictResolution's classes: PCounter adds both
 * increments to the old value (its _p_resolveConflict); PCounter2 refuses (ConflictError); PCounter3 and
 * PCounter4 are buggy (an AttributeError, a TypeError), which must end as a ConflictError too. It reads the
 * old state with loadSerial from `storage()`, as tryToResolveConflict does.
 */
export function pcounterResolver(storage: () => Storage, calls: ResolverCall[] = []): ConflictResolver {
  return async (oid, committedSerial, oldSerial, newData, committedData) => {
    calls.push({ oid, committedSerial, oldSerial, newData, committedData });
    const meta = decodeRecord(newData).classMeta;
    if (meta.module !== PCOUNTER_MODULE) throw new ConflictError(oid);
    if (meta.name === 'PCounter2') throw new ConflictError(oid);
    if (meta.name === 'PCounter3')
      throw new Error('AttributeError: no attribute (testing conflict resolution)');
    if (meta.name === 'PCounter4') throw new TypeError('_p_resolveConflict() takes 3 positional arguments');
    const old = pcounterValue(await storage().loadSerial(oid, oldSerial));
    const saved = pcounterValue(committedData);
    const mine = pcounterValue(newData);
    return pcounter(old + (saved - old) + (mine - old), meta.name);
  };
}

// ---------------------------------------------------------------------------------------------------------
// StorageTestBase

export function txnMeta(
  options: { user?: string; description?: string; extension?: PyDict; extensionBytes?: Uint8Array } = {},
): TransactionMetaData {
  return new TransactionMetaData(
    utf8(options.user ?? ''),
    utf8(options.description ?? ''),
    options.extension ?? (new Map() as PyDict),
    options.extensionBytes ?? null,
  );
}

export interface DostoreOptions {
  oid?: Oid;
  revid?: Tid;
  /** a record, or a number for minpo(n); default minpo(7) */
  data?: Uint8Array | number;
  user?: string;
  description?: string;
  extension?: PyDict;
  extensionBytes?: Uint8Array;
}

/** StorageTestBase._dostore: one object revision in its own transaction; returns the new tid. */
export async function dostore(s: Storage, options: DostoreOptions = {}): Promise<Tid> {
  const oid = options.oid ?? (await s.newOid());
  const data = typeof options.data === 'number' ? minpo(options.data) : (options.data ?? minpo(7));
  const t = txnMeta(options);
  await s.tpcBegin(t);
  try {
    await s.store(oid, options.revid ?? z64, data, t);
    await s.tpcVote(t);
    return await s.tpcFinish(t);
  } catch (e) {
    await s.tpcAbort(t);
    throw e;
  }
}

/** Stores several records in one transaction: [oid, serial, data]. */
export async function commitMany(
  s: Storage,
  stores: Array<[Oid, Tid, Uint8Array]>,
  meta: { user?: string; description?: string; extension?: PyDict } = {},
): Promise<Tid> {
  const t = txnMeta(meta);
  await s.tpcBegin(t);
  try {
    for (const [oid, serial, data] of stores) await s.store(oid, serial, data, t);
    await s.tpcVote(t);
    return await s.tpcFinish(t);
  } catch (e) {
    await s.tpcAbort(t);
    throw e;
  }
}

/** utils.load_current: [data, serial]. */
export async function loadCurrent(s: Storage, oid: Oid): Promise<[Uint8Array, Tid]> {
  const r = await s.load(oid);
  return [r.data, r.serial];
}

/** StorageTestBase._undo: undoes one transaction in its own; checks the undone oids when given. */
export async function undoTxn(
  s: Storage,
  undoId: Uint8Array,
  options: { expectedOids?: Oid[]; note?: string } = {},
): Promise<Tid> {
  const t = txnMeta({ description: options.note ?? 'undo' });
  await s.tpcBegin(t);
  try {
    const result = await s.undo(undoId, t);
    const voted = await s.tpcVote(t);
    if (options.expectedOids) {
      const oids = new Set([...result.oids, ...voted].map(hex));
      assert.deepEqual([...oids].sort(), options.expectedOids.map(hex).sort(), 'the undone oids');
    }
    return await s.tpcFinish(t);
  } catch (e) {
    await s.tpcAbort(t);
    throw e;
  }
}

/** TransactionalUndoStorage._begin_undos_vote: begin, undo each id, vote; the union of the oids. */
export async function beginUndosVote(
  s: Storage,
  t: TransactionMetaData,
  ...ids: Uint8Array[]
): Promise<Set<string>> {
  await s.tpcBegin(t);
  const oids = new Set<string>();
  for (const id of ids) for (const oid of (await s.undo(id, t)).oids) oids.add(hex(oid));
  for (const oid of await s.tpcVote(t)) oids.add(hex(oid));
  return oids;
}

/** The undo ids of the newest transactions (undoInfo()[i].id). */
export async function undoIds(s: Storage): Promise<Uint8Array[]> {
  return (await s.undoInfo(0, -20)).map((e) => e.id);
}

/**
 * Waits until the millisecond clock moves (ZODB's snooze()): tids come from Date.now(), so a time taken
 * after a snooze is strictly between the tids committed before and after it.
 */
export async function snooze(): Promise<void> {
  const now = Date.now();
  while (Date.now() === now) await sleep(1);
}

/** A pack time strictly after every transaction so far and before every later one (packtime in ZODB's tests). */
export async function packTimeNow(): Promise<number> {
  await snooze();
  const t = Date.now() / 1000;
  await snooze();
  return t;
}

/** Every transaction and its records, read to the end (the _iterate / _sanity_check helpers). */
export async function readAll(s: Storage, start: Tid | null = null, stop: Tid | null = null) {
  const out: Array<{ txn: TransactionRecord; records: DataRecord[] }> = [];
  for await (const txn of s.iterator(start, stop)) {
    const records: DataRecord[] = [];
    for await (const r of txn.records) records.push(r);
    out.push({ txn, records });
  }
  return out;
}

export async function recordsOf(txn: TransactionRecord): Promise<DataRecord[]> {
  const out: DataRecord[] = [];
  for await (const r of txn.records) out.push(r);
  return out;
}

/** p64(u64(tid) + n) */
export function tidPlus(tid: Tid, n: number | bigint): Tid {
  return p64(u64(tid) + BigInt(n));
}

export function isPOSKeyError(e: unknown): boolean {
  return e instanceof POSKeyError;
}

// ---------------------------------------------------------------------------------------------------------
// A tiny object layer: what ZODB's tests do through DB and Connection, done with records

/**
 * A client's view of the database: it remembers the serial it last saw of each object (as a Connection's
 * cache does) and stores against it. `sync()` reads the current serials again (conn.sync()).
 */
export class Db {
  readonly serials = new Map<string, Tid>();

  constructor(readonly storage: Storage) {}

  /** ZODB's DB(): the root PersistentMapping, in a transaction named 'initial database creation'. */
  static async open(storage: Storage): Promise<Db> {
    const db = new Db(storage);
    try {
      const { serial } = await storage.load(z64);
      db.serials.set(hex(z64), serial);
    } catch (e) {
      if (!(e instanceof POSKeyError)) throw e;
      await db.commit([[z64, mappingRecord([])]], { description: 'initial database creation' });
    }
    return db;
  }

  newOid(): Promise<Oid> {
    return this.storage.newOid();
  }

  /** Commits records against the serials last seen; returns the tid. */
  async commit(
    objects: Array<[Oid, Uint8Array]>,
    meta: { user?: string; description?: string; extension?: PyDict } = {},
  ): Promise<Tid> {
    const tid = await commitMany(
      this.storage,
      objects.map(([oid, data]) => [oid, this.serials.get(hex(oid)) ?? z64, data]),
      meta,
    );
    for (const [oid] of objects) this.serials.set(hex(oid), tid);
    return tid;
  }

  /** The current state of an object. */
  async state(oid: Oid): Promise<PyDict> {
    return stateOf((await this.storage.load(oid)).data);
  }

  /** The root mapping's entries. */
  async root(): Promise<PyDict> {
    return mappingOf((await this.storage.load(z64)).data);
  }

  /** DB.undo / undoMultiple, committed as one transaction with `note` as its description. */
  async undo(ids: Uint8Array[], note = ''): Promise<Tid> {
    const t = txnMeta({ description: note });
    await this.storage.tpcBegin(t);
    try {
      for (const id of ids) await this.storage.undo(id, t);
      await this.storage.tpcVote(t);
      return await this.storage.tpcFinish(t);
    } catch (e) {
      await this.storage.tpcAbort(t);
      throw e;
    }
  }

  /** conn.sync(): the serials of the objects seen become the current ones. */
  async sync(): Promise<void> {
    for (const k of [...this.serials.keys()]) {
      try {
        this.serials.set(k, (await this.storage.load(Buffer.from(k, 'hex'))).serial);
      } catch (e) {
        if (!(e instanceof POSKeyError)) throw e;
        this.serials.delete(k);
      }
    }
  }
}
