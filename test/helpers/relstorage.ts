// RelStorage (4.x, in the oracle venv) on a test cluster's database, driven from the tests through the Python
// oracle (test/fixtures/python/relstorage_ops.py): create a database, commit transactions of PersistentMappings,
// OOBTrees and BTrees.Length with user/description/extension, keep a connection open across calls to
// interleave commits, drive RelStorage's two-phase commit step by step (to hold its locks), read the object
// tree, every object's current state and the whole history, and pack. The same comparable forms (ids in hex,
// data by sha1) are made from a zeo-ts Storage by storageHistory and storageObjects, so a test compares what
// RelStorage sees with what our storage sees. useRelStorageFixture gives a describe its cluster and oracle.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import { pyRepr } from '../../src/pickle/index.js';
import { isBlobRecord } from '../../src/storage/blobs/index.js';
import { POSKeyError } from '../../src/storage/errors.js';
import { idHex } from '../../src/storage/ids.js';
import type { Storage } from '../../src/storage/interfaces.js';
import { PostgreSQLStorage } from '../../src/storage/postgresql/index.js';
import { interopDisabled, Oracle, repoRoot } from './oracle.js';
import { skipPostgres, startPostgres, type PostgresCluster } from './postgres.js';
import { ServerProcess } from './server-process.js';
import { waitUntil } from './wait.js';

/** false, or why RelStorage tests are skipped: only ZEO_TS_SKIP_POSTGRES=1 or ZEO_TS_SKIP_INTEROP=1. */
export const skipRelStorage: false | string =
  skipPostgres || (interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1: RelStorage runs in the Python oracle' : false);

/** The libpq DSN of a database of a test cluster, as RelStorage (psycopg2) takes it. */
export function relstorageDsn(cluster: PostgresCluster, database: string): string {
  return `dbname=${database} user=${cluster.user} host=${cluster.socketDir} port=${cluster.port}`;
}

/**
 * An object as relstorage_ops.py passes it: JSON as itself (objects are dicts), or {$mapping: {...}}
 * (PersistentMapping), {$btree: {...}} (OOBTree), {$length: n} (BTrees.Length), {$bytes: hex}, {$blob: hex} (a
 * ZODB Blob holding those bytes).
 */
export type Spec = null | boolean | number | string | Spec[] | { [key: string]: Spec };

/** One transaction: its metadata, then changes at paths (keys from the root object down). */
export interface RsTransaction {
  user?: string;
  description?: string;
  extension?: Record<string, Spec>;
  set?: Array<[string[], Spec]>;
  delete?: string[][];
  /** Length.change(n) on the Length at the path */
  incr?: Array<[string[], number]>;
}

/** A record of the history; data is the sha1 of the record's data (null: none). */
export interface HistoryRecord {
  oid: string;
  tid: string;
  data: string | null;
  dataTxn: string | null;
  /** sha1 of the blob file of a blob record ('missing' when there is none), null for other records */
  blob: string | null;
}

export interface HistoryTransaction {
  tid: string;
  status: string;
  user: string;
  description: string;
  /** Python's repr of the extension dict (pyRepr on our side) */
  extension: string;
  records: HistoryRecord[];
}

/** Every object ever written: its current tid and data (sha1), null once it is gone (POSKeyError). */
export type ObjectStates = Record<string, { tid: string; data: string } | null>;

export type SessionCommit = { tid: string } | { conflict: string; oid: string | null };

const CALL = `
import sys
if args['fixtures'] not in sys.path:
    sys.path.insert(0, args['fixtures'])
import relstorage_ops
result = getattr(relstorage_ops, args['fn'])(*args['args'])
`;

/** RelStorage through an oracle (one per test file; closeAll() ends its open sessions). */
export class RelStorageOracle {
  private readonly fixtures = resolve(repoRoot, 'test/fixtures/python');

  /** `oracle` may be given late, as a function (a fixture starts it in before()) */
  constructor(private readonly source: Oracle | (() => Oracle | null)) {}

  get oracle(): Oracle {
    const oracle = typeof this.source === 'function' ? this.source() : this.source;
    if (!oracle) throw new Error('the oracle is not started (the fixture starts it in before())');
    return oracle;
  }

  call<T>(fn: string, ...args: unknown[]): Promise<T> {
    return this.oracle.json<T>(CALL, undefined, { fixtures: this.fixtures, fn, args });
  }

  /** Opens the database with RelStorage, which installs its schema (and its procedures), and closes it. */
  createSchema(dsn: string): Promise<void> {
    return this.call('create_schema', dsn);
  }

  /** Opens the database with RelStorage (schema and root object made when missing); its last tid. */
  create(dsn: string): Promise<string> {
    return this.call('create', dsn);
  }

  /** Commits the transactions in turn through ZODB on RelStorage; their tids. */
  commit(dsn: string, txns: RsTransaction[]): Promise<string[]> {
    return this.call('commit', dsn, txns);
  }

  /** The root object as ZODB reads it through RelStorage. */
  tree(dsn: string): Promise<Spec> {
    return this.call('tree', dsn);
  }

  /** RelStorage's iterator over the whole history. */
  history(dsn: string): Promise<HistoryTransaction[]> {
    return this.call('history', dsn);
  }

  /** RelStorage's load() of every oid the history names. */
  objects(dsn: string): Promise<ObjectStates> {
    return this.call('objects', dsn);
  }

  /** history, objects and lastTransaction at once (one RelStorage opened for the three). */
  view(
    dsn: string,
  ): Promise<{ history: HistoryTransaction[]; objects: ObjectStates; lastTransaction: string }> {
    return this.call('view', dsn);
  }

  lastTransaction(dsn: string): Promise<string> {
    return this.call('last_transaction', dsn);
  }

  /** sha1 of RelStorage's loadSerial, null for POSKeyError. */
  loadSerial(dsn: string, oid: string, tid: string): Promise<string | null> {
    return this.call('load_serial', dsn, oid, tid);
  }

  loadBefore(
    dsn: string,
    oid: string,
    tid: string,
  ): Promise<{ data: string; start: string; end: string | null } | null> {
    return this.call('load_before', dsn, oid, tid);
  }

  /**
   * Writes a small Data.fs with ZODB (objects, overwrites, a deletion, an undo: back pointers), a source for
   * copies into PostgreSQL.
   */
  fileStorageWorkload(path: string): Promise<void> {
    return this.call('filestorage_workload', path);
  }

  /**
   * n transactions through ZODB on RelStorage, the i-th adding 1 to root[keys[i % keys.length]].v (a
   * PersistentMapping), each retried after a ConflictError; the conflicts met.
   */
  increments(dsn: string, keys: string[], n: number): Promise<number> {
    return this.call('increments', dsn, keys, n);
  }

  /** RelStorage's pack to `tid` (hex), with garbage collection unless gc is false. */
  pack(dsn: string, tid: string, gc = true): Promise<void> {
    return this.call('pack', dsn, tid, gc);
  }

  /** A RelStorage connection kept open: its transaction starts now (the root as it sees it is returned). */
  async session(name: string, dsn: string): Promise<{ root: Spec; session: RsSession }> {
    const root = await this.call<Spec>('session_open', name, dsn);
    return { root, session: new RsSession(this, name) };
  }

  /**
   * RelStorage's two-phase commit on the storage, step by step, so a test holds its locks between calls: its
   * vote takes the object locks (and readCurrent's shared ones), its finish the commit lock.
   */
  async rawBegin(name: string, dsn: string, description = ''): Promise<RsRawCommit> {
    await this.call('raw_begin', name, dsn, description);
    return new RsRawCommit(this, name);
  }

  /** Ends every open session and raw commit. */
  closeAll(): Promise<void> {
    return this.call('close_all');
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export class RsRawCommit {
  constructor(
    private readonly rs: RelStorageOracle,
    readonly name: string,
  ) {}

  store(oid: Uint8Array, serial: Uint8Array, data: Uint8Array): Promise<void> {
    return this.rs.call('raw_store', this.name, hex(oid), hex(serial), hex(data));
  }

  /** deleteObject (IExternalGC) */
  deleteObject(oid: Uint8Array, serial: Uint8Array): Promise<void> {
    return this.rs.call('raw_delete', this.name, hex(oid), hex(serial));
  }

  /** checkCurrentSerialInTransaction */
  readCurrent(oid: Uint8Array, serial: Uint8Array): Promise<void> {
    return this.rs.call('raw_read_current', this.name, hex(oid), hex(serial));
  }

  /** null, or the error tpc_vote raised (the transaction is then aborted). */
  vote(): Promise<{ error: string; message: string } | null> {
    return this.rs.call('raw_vote', this.name);
  }

  /** tpc_finish: the tid. */
  finish(): Promise<string> {
    return this.rs.call('raw_finish', this.name);
  }

  abort(): Promise<void> {
    return this.rs.call('raw_abort', this.name);
  }
}

export class RsSession {
  constructor(
    private readonly rs: RelStorageOracle,
    readonly name: string,
  ) {}

  /** Changes objects in the open transaction, not committed. */
  change(ops: RsTransaction): Promise<void> {
    return this.rs.call('session_change', this.name, ops);
  }

  /** Commits: the tid, or the ConflictError raised (the transaction is then aborted). */
  commit(): Promise<SessionCommit> {
    return this.rs.call('session_commit', this.name);
  }

  close(): Promise<void> {
    return this.rs.call('session_close', this.name);
  }
}

/**
 * What a RelStorage test file shares, set up by useRelStorageFixture's before() and torn down by its after():
 * one private cluster, an admin connection to it, one oracle with RelStorage; a database per test.
 */
export class RelStorageFixture {
  cluster!: PostgresCluster;
  admin!: pg.Client;
  private oracle: Oracle | null = null;
  readonly rs = new RelStorageOracle(() => this.oracle);
  private readonly storages: PostgreSQLStorage[] = [];
  private readonly servers: ServerProcess[] = [];
  private dir: string | null = null;
  private databases = 0;

  async start(): Promise<void> {
    this.cluster = await startPostgres();
    this.admin = new pg.Client(this.cluster.connection());
    await this.admin.connect();
    this.oracle = new Oracle();
  }

  async stop(): Promise<void> {
    // (a server a failed test left running: killed)
    for (const s of this.servers.splice(0)) s.kill();
    for (const s of this.storages.splice(0)) await s.close();
    if (this.oracle) {
      await this.rs.closeAll();
      this.oracle.close();
    }
    await this.admin?.end();
    await this.cluster?.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * `zeo serve` as a child process over the database `dsn` (a <postgresql> section; pollInterval in seconds),
   * storage '1' on a loopback port: the process and its address as a Python client takes it. Killed by
   * stop() if still running.
   */
  async serve(
    dsn: string,
    options: { pollInterval?: number; poolSize?: number } = {},
  ): Promise<{ server: ServerProcess; address: [string, number] }> {
    this.dir ??= await mkdtemp(join(tmpdir(), 'zeo-ts-rs-serve-'));
    const conf = join(this.dir, `serve-${this.servers.length}.conf`);
    // (port 0: the port taken is in the log, and no other process can take it first)
    await writeFile(
      conf,
      `<zeo>\n  address 127.0.0.1:0\n</zeo>\n<postgresql>\n  dsn ${dsn}\n` +
        (options.pollInterval === undefined ? '' : `  poll-interval ${options.pollInterval}\n`) +
        (options.poolSize === undefined ? '' : `  pool-size ${options.poolSize}\n`) +
        `</postgresql>\n`,
    );
    const server = new ServerProcess({ kind: 'zeo-ts', conf, cwd: this.dir, env: { ZEO_MSGPACK: '' } });
    this.servers.push(server);
    return { server, address: ['127.0.0.1', await server.port(30_000)] };
  }

  /** A new empty database: its name and RelStorage's DSN for it. */
  async database(prefix: string): Promise<{ name: string; dsn: string }> {
    const name = `${prefix}_${++this.databases}`;
    await this.admin.query(`CREATE DATABASE ${name}`);
    return { name, dsn: relstorageDsn(this.cluster, name) };
  }

  /** openWatched, closed by after() */
  async openWatched(dsn: string): Promise<{ storage: PostgreSQLStorage; reported: Reported }> {
    const opened = await openWatched(dsn);
    this.storages.push(opened.storage);
    return opened;
  }
}

/** A RelStorageFixture for the enclosing describe (its before and after hooks). */
export function useRelStorageFixture(): RelStorageFixture {
  const fixture = new RelStorageFixture();
  before(() => fixture.start());
  after(() => fixture.stop());
  return fixture;
}

/** What watchInvalidations reported: the transactions committed elsewhere (ids in hex, oids sorted). */
export type Reported = Array<{ tid: string; oids: string[] }>;

/**
 * A PostgreSQLStorage on `dsn` (no conflict resolution, polling every 50 ms) that listens for other writers'
 * commits as the server does (watchInvalidations, which also makes lastTransaction follow them).
 */
export async function openWatched(dsn: string): Promise<{ storage: PostgreSQLStorage; reported: Reported }> {
  const storage = await PostgreSQLStorage.open({ dsn, resolver: null, pollInterval: 0.05 });
  const reported: Reported = [];
  storage.watchInvalidations((tid, oids) => reported.push({ tid: idHex(tid), oids: oids.map(idHex).sort() }));
  return { storage, reported };
}

/** Until `storage` has seen the transaction `tid` (hex) committed elsewhere. */
export async function untilSeen(storage: Storage, tid: string): Promise<void> {
  await waitUntil(
    () => idHex(storage.lastTransaction()) >= tid,
    () => `lastTransaction ${idHex(storage.lastTransaction())} to reach ${tid}`,
  );
}

const sha1 = (data: Uint8Array): string => createHash('sha1').update(data).digest('hex');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

async function blobSha1(storage: Storage, oid: Uint8Array, tid: Uint8Array): Promise<string> {
  if (!storage.capabilities.blobs) return 'the storage has no blobs';
  try {
    return sha1(await readFile(await storage.loadBlob(oid, tid)));
  } catch (e) {
    if (e instanceof POSKeyError) return 'missing';
    throw e;
  }
}

/** A zeo-ts storage's iterator in RelStorageOracle.history's form. */
export async function storageHistory(storage: Storage): Promise<HistoryTransaction[]> {
  const out: HistoryTransaction[] = [];
  for await (const t of storage.iterator()) {
    const records: HistoryRecord[] = [];
    for await (const r of t.records) {
      records.push({
        oid: idHex(r.oid),
        tid: idHex(r.tid),
        data: r.data === null ? null : sha1(r.data),
        dataTxn: r.dataTxn === null ? null : idHex(r.dataTxn),
        blob: isBlobRecord(r.data) ? await blobSha1(storage, r.oid, r.tid) : null,
      });
    }
    out.push({
      tid: idHex(t.tid),
      status: t.status,
      user: text(t.user),
      description: text(t.description),
      extension: pyRepr(t.extension),
      records,
    });
  }
  return out;
}

/** A zeo-ts storage's load() of every oid its history names, in RelStorageOracle.objects's form. */
export async function storageObjects(storage: Storage): Promise<ObjectStates> {
  const oids = new Map<string, Uint8Array>();
  for await (const t of storage.iterator()) {
    for await (const r of t.records) oids.set(idHex(r.oid), r.oid);
  }
  const out: ObjectStates = {};
  for (const key of [...oids.keys()].sort()) {
    try {
      const { data, serial } = await storage.load(oids.get(key)!);
      out[key] = { tid: idHex(serial), data: sha1(data) };
    } catch (e) {
      if (!(e instanceof POSKeyError)) throw e;
      out[key] = null;
    }
  }
  return out;
}
