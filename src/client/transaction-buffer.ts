// What a transaction in progress keeps on the client (ZEO's TransactionBuffer): the records it stored, so that
// they go into the cache under the new tid at tpc_finish, the oids the server or the client resolved, and
// the blobs uploaded. Kept in memory: a transaction's records are already in this process's memory as the
// application made them.

import { idHex, type Oid } from '../storage/ids.js';

export interface BufferedRecord {
  oid: Oid;
  /** null: deleted (deleteObject) or unknown (undo); the cache forgets the oid */
  data: Uint8Array | null;
  /** resolved by the server: its data is not what we sent */
  serverResolved: boolean;
}

export class TransactionBuffer {
  /**
   * oid hex -> the latest record stored for it, in the order of each oid's first store (a Map keeps it): a
   * repeated store, or the client's resolution at vote, replaces the earlier data
   */
  private readonly latest = new Map<string, { oid: Oid; data: Uint8Array | null }>();
  /** the oids whose conflicts the client resolved (their data in `latest` is the resolution) */
  private readonly clientResolved = new Set<string>();
  private readonly serverResolved = new Map<string, Oid>();
  /** uploaded blob files, for the blob cache after tpc_finish */
  readonly blobs: Array<{ oid: Oid; filename: string }> = [];
  /** blob uploads still under way (the vote waits for them) */
  readonly uploads: Array<Promise<void>> = [];
  /** the undo results handed out by undo(), filled in at vote and finish */
  readonly undos: Array<{ tid: Uint8Array; oids: Oid[] }> = [];
  /** tpcVote succeeded: nothing more may be stored, tpcFinish may come */
  voted = false;

  constructor(
    /** the server's name for the transaction (ZEO's id(txn)) */
    readonly id: number,
    /** the connection it was begun on: a transaction does not survive a reconnect */
    readonly generation: number,
  ) {}

  store(oid: Oid, data: Uint8Array | null): void {
    this.latest.set(idHex(oid), { oid, data });
  }

  /** the client resolved a conflict: this data replaces what was stored for the oid */
  resolve(oid: Oid, data: Uint8Array): void {
    this.store(oid, data);
    this.clientResolved.add(idHex(oid));
  }

  /** the server resolved the oid (or undo touched it): what it wrote is not known here */
  serverResolve(oid: Oid): void {
    this.serverResolved.set(idHex(oid), oid);
  }

  /** the oids vote reports as resolved: the server's, then the client's */
  resolvedOids(): Oid[] {
    const out = [...this.serverResolved.values()];
    for (const key of this.clientResolved) out.push(this.latest.get(key)!.oid);
    return out;
  }

  /**
   * The cache updates of the committed transaction, as TransactionBuffer.__iter__: each oid once with its
   * latest data, then the oids only the server knows about (undo).
   */
  *updates(): Generator<BufferedRecord> {
    for (const [key, { oid, data }] of this.latest) {
      yield { oid, data, serverResolved: this.serverResolved.has(key) };
    }
    for (const [key, oid] of this.serverResolved) {
      if (!this.latest.has(key)) yield { oid, data: null, serverResolved: true };
    }
  }
}
