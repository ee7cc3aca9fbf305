// How the contract suite gets storages: one StorageFactory per implementation (MemoryStorage, FileStorage, the
// ZEO client), and a per-test context that opens, reopens and cleans up. The suite is written once against the
// Storage interface; a factory says which optional parts apply.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { ConflictResolver, Storage } from '../../../src/storage/interfaces.js';

export interface OpenOptions {
  /**
   * Where the storage lives: a directory the suite made for this test, empty on the first open. Opening the
   * same directory again (after close) must give the same data when the factory is `persistent`.
   */
  dir: string;
  readOnly?: boolean;
  /** conflict resolution for store() and undo() (a ZEO client resolves on its side) */
  resolver?: ConflictResolver | null;
}

export interface StorageFactory {
  /** Opens the storage kept in `dir`, creating it when the directory is empty. */
  open(options: OpenOptions): Promise<Storage>;
  /** Whether data survives close() and open() of the same dir (ReadOnlyStorage, PersistentStorage need it). */
  persistent: boolean;
  supportsUndo: boolean;
  supportsPack: boolean;
  /** pack(t, referencesf, { gc: false }) (a ZEO client cannot pass gc) */
  supportsPackWithoutGc: boolean;
  supportsBlobs: boolean;
  /** iterator() and recordIternext() */
  supportsIterator: boolean;
  /** recordIternext(), when it differs from supportsIterator (ZODB's MappingStorage iterates, but has none) */
  supportsRecordIternext?: boolean;
  /** restore() and tpcBegin with a given tid and status (copying, recovery) */
  supportsRestore: boolean;
  /** deleteObject (IExternalGC) */
  supportsDeleteObject: boolean;
  /**
   * Whether tpcBegin itself waits for the storage's commit lock (a storage in this process); then tpcAbort of a
   * transaction still waiting takes it out of the queue. Default true. (A ZEO client's lock is the server's.)
   */
  commitLockAtBegin?: boolean;
  /**
   * Whether undo() is done by the storage at tpcVote (a ZEO client: undoa is a one-way call), so that the
   * undone oids come from tpcVote and a bad undo id fails there. Default false: undo() itself does it.
   */
  undoAtVote?: boolean;
  /**
   * Whether undo resolves its conflicts with the resolver the storage was opened with. Default true. A ZEO
   * client's undo runs in the server's storage, which resolves with what the server has (runzeo imports the
   * test's PCounter classes; zeo serve has no resolver for them).
   */
  resolverAppliesToUndo?: boolean;
  /**
   * Whether iterator() gives a transaction's extension bytes as stored. Default true. ZEO's iterator_next
   * carries the extension as a dict, which the client can only pickle again.
   */
  extensionBytesFromIterator?: boolean;
  /**
   * Whether records that reuse another transaction's data (undo's) name it as dataTxn, as FileStorage's back
   * pointers do. Default true. RelStorage's schema keeps none: its records are copies of the data.
   */
  backPointers?: boolean;
  /**
   * Whether pack removes the revisions at or before the pack time of an object unreachable then but changed
   * after it, as FileStorage does. Default true. RelStorage (and our PostgreSQL storage, which packs as it
   * does) keeps such an object's revision current at the pack time.
   */
  packRemovesHistoryOfObjectsChangedLater?: boolean;
  /** Whether a read-only storage may pack (ZEO's server: "Yes, you can pack a read-only server or storage!") */
  readOnlyMayPack?: boolean;
  /** FileStorage only: the path of the index file of the storage in `dir` (the Corruption tests) */
  indexFile?(dir: string): string;
  /** Called after the test with each dir it used (a memory factory drops the data kept for it). */
  destroy?(dir: string): Promise<void> | void;
  /** Per-test timeout in ms (default 10 s; a network client may need more). */
  timeout?: number;
}

/** What a contract test gets: its storage, and ways to reopen it or open others. */
export class StorageTestContext {
  /** the storage under test, opened (empty) before the test runs */
  storage!: Storage;
  readonly dir: string;
  private readonly dirs: string[] = [];
  private readonly opened: Storage[] = [];

  constructor(
    readonly factory: StorageFactory,
    dir: string,
    readonly t: TestContext,
  ) {
    this.dir = dir;
    this.dirs.push(dir);
  }

  /** Closes the storage under test and opens the same one again (read-only, with a resolver...). */
  async reopen(options: Omit<OpenOptions, 'dir'> = {}): Promise<Storage> {
    await this.storage.close();
    this.storage = await this.open(this.dir, options);
    return this.storage;
  }

  /** Opens a second, independent storage (e.g. the destination of a copy). */
  async openOther(options: Omit<OpenOptions, 'dir'> = {}): Promise<Storage> {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-contract-'));
    this.dirs.push(dir);
    return this.open(dir, options);
  }

  async open(dir: string, options: Omit<OpenOptions, 'dir'> = {}): Promise<Storage> {
    const s = await this.factory.open({ dir, ...options });
    this.opened.push(s);
    return s;
  }

  async cleanup(): Promise<void> {
    for (const s of this.opened) await s.close();
    for (const dir of this.dirs) {
      await this.factory.destroy?.(dir);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

export interface ContractTestOptions {
  /** open the storage under test with this resolver */
  resolver?: (ctx: StorageTestContext) => ConflictResolver;
  /** why this test does not apply to this factory (then it is reported as skipped) */
  skip?: string | false;
}

/**
 * Declares one contract test: a fresh storage in a fresh directory, closed and removed afterwards. Name it
 * after the ZODB test method it translates.
 */
export function storageTest(
  factory: StorageFactory,
  name: string,
  fn: (ctx: StorageTestContext) => Promise<void>,
  options: ContractTestOptions = {},
): void {
  it(name, { skip: options.skip || false, timeout: factory.timeout ?? 10_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'zeo-ts-contract-'));
    const ctx = new StorageTestContext(factory, dir, t);
    try {
      let resolver: ConflictResolver | undefined;
      if (options.resolver) {
        // the resolver reads old revisions from the storage under test, whichever is open when it runs
        const r = options.resolver(ctx);
        resolver = r;
      }
      ctx.storage = await ctx.open(dir, resolver ? { resolver } : {});
      await fn(ctx);
    } finally {
      await ctx.cleanup();
    }
  });
}

/** A describe() block for one ZODB test class, skipped as a whole with a reason when it does not apply. */
export function storageSuite(name: string, skip: string | false, body: () => void): void {
  describe(name, { skip: skip || false }, body);
}
