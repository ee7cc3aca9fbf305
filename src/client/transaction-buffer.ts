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
  private readonly records: Array<{ oid: Oid; data: Uint8Array | null }> = [];
  /** oid hex -> the index of the record holding the client's resolution */
  private readonly clientResolved = new Map<string, number>();
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
    this.records.push({ oid, data });
  }

  /** the client resolved a conflict: this data replaces what was stored for the oid */
  resolve(oid: Oid, data: Uint8Array): void {
    this.store(oid, data);
    this.clientResolved.set(idHex(oid), this.records.length - 1);
  }

  /** the server resolved the oid (or undo touched it): what it wrote is not known here */
  serverResolve(oid: Oid): void {
    this.serverResolved.set(idHex(oid), oid);
  }

  /** the oids vote reports as resolved: the server's, then the client's */
  resolvedOids(): Oid[] {
    const out = [...this.serverResolved.values()];
    for (const [, i] of this.clientResolved) out.push(this.records[i].oid);
    return out;
  }

  /**
   * The cache updates of the committed transaction, as TransactionBuffer.__iter__: each oid once (a client
   * resolution replaces the earlier store), then the oids only the server knows about (undo).
   */
  *updates(): Generator<BufferedRecord> {
    const seen = new Set<string>();
    for (let i = 0; i < this.records.length; i++) {
      const { oid, data } = this.records[i];
      const key = idHex(oid);
      if ((this.clientResolved.get(key) ?? i) !== i) continue;
      // a repeated store: the last one wins
      if (seen.has(key)) continue;
      seen.add(key);
      yield { oid, data: this.lastDataOf(key, i, data), serverResolved: this.serverResolved.has(key) };
    }
    for (const [key, oid] of this.serverResolved) {
      if (!seen.has(key)) yield { oid, data: null, serverResolved: true };
    }
  }

  private lastDataOf(key: string, from: number, data: Uint8Array | null): Uint8Array | null {
    const resolved = this.clientResolved.get(key);
    if (resolved !== undefined) return this.records[resolved].data;
    let last = data;
    for (let j = from + 1; j < this.records.length; j++) {
      if (idHex(this.records[j].oid) === key) last = this.records[j].data;
    }
    return last;
  }
}
