// A transaction's operations as the client sends them, kept until vote replays them into the storage under
// the commit lock (StorageServer's CommitLog). Records stay in memory up to a threshold; beyond it their
// bytes go to a temporary file, so a client streaming a huge transaction costs the server disk, not memory.

import { open, type FileHandle } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Oid, Tid } from '../storage/ids.js';

/** Record bytes, in memory or at a place in the spill file. */
type Data = Uint8Array | { pos: number; length: number } | null;

export type CommitOp =
  | { op: 'store'; oid: Oid; serial: Tid; data: Data }
  | { op: 'checkread'; oid: Oid; serial: Tid }
  | { op: 'delete'; oid: Oid; serial: Tid }
  | { op: 'restore'; oid: Oid; serial: Tid; data: Data; prevTxn: Tid | null }
  | { op: 'undo'; undoId: Uint8Array };

/** An operation with its record bytes in hand, as replay sees it. */
export type ReplayOp =
  | { op: 'store'; oid: Oid; serial: Tid; data: Uint8Array }
  | { op: 'checkread'; oid: Oid; serial: Tid }
  | { op: 'delete'; oid: Oid; serial: Tid }
  | { op: 'restore'; oid: Oid; serial: Tid; data: Uint8Array | null; prevTxn: Tid | null }
  | { op: 'undo'; undoId: Uint8Array };

export class CommitLog {
  private readonly ops: CommitOp[] = [];
  private memBytes = 0;
  private spill: { dir: string; file: FileHandle } | null = null;
  private spillPos = 0;
  /** spill writes, in order; a failure surfaces at replay */
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  stores = 0;

  constructor(private readonly threshold: number) {}

  /** bytes of record data held (in memory and spilled) */
  get size(): number {
    return this.memBytes + this.spillPos;
  }

  store(oid: Oid, serial: Tid, data: Uint8Array): void {
    this.ops.push({ op: 'store', oid, serial, data: this.keep(data) });
    this.stores++;
  }

  checkread(oid: Oid, serial: Tid): void {
    this.ops.push({ op: 'checkread', oid, serial });
    this.stores++;
  }

  delete(oid: Oid, serial: Tid): void {
    this.ops.push({ op: 'delete', oid, serial });
    this.stores++;
  }

  restore(oid: Oid, serial: Tid, data: Uint8Array | null, prevTxn: Tid | null): void {
    this.ops.push({ op: 'restore', oid, serial, data: data === null ? null : this.keep(data), prevTxn });
    this.stores++;
  }

  undo(undoId: Uint8Array): void {
    this.ops.push({ op: 'undo', undoId });
    this.stores++;
  }

  /**
   * replay's operations when nothing was spilled (the usual, small transaction): the log's own list, with no
   * generator, promise or copy per operation; null when replay() must read the spill file.
   */
  inMemory(): readonly ReplayOp[] | null {
    // (without a spill every record's bytes are in hand: a CommitOp is then a ReplayOp)
    return this.spillPos === 0 ? (this.ops as readonly ReplayOp[]) : null;
  }

  /** The operations in the order they came, record bytes read back from the spill file as needed. */
  async *replay(): AsyncGenerator<ReplayOp> {
    await this.chain;
    for (const o of this.ops) {
      if (o.op === 'store') yield { ...o, data: (await this.bytes(o.data))! };
      else if (o.op === 'restore') yield { ...o, data: await this.bytes(o.data) };
      else yield o;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ops.length = 0;
    this.memBytes = 0;
    const spill = this.spill;
    this.spill = null;
    if (spill) {
      // A spill write's error surfaces at replay; here the writes only have to settle. Closing ends a
      // transaction, which must not fail for its temporary file: one that cannot go is left in tmpdir.
      await this.chain.catch(() => {});
      await spill.file.close().catch(() => {});
      await rm(spill.dir, { recursive: true, force: true }).catch(() => {});
    }
  }

  private keep(data: Uint8Array): Data {
    if (this.memBytes + data.length <= this.threshold) {
      this.memBytes += data.length;
      // a view into a large socket chunk would keep the whole chunk alive: keep a copy of just the record
      return data.buffer.byteLength > 2 * data.length + 4096 ? Uint8Array.prototype.slice.call(data) : data;
    }
    const pos = this.spillPos;
    this.spillPos += data.length;
    this.chain = this.chain.then(async () => {
      if (this.closed) return;
      this.spill ??= await openSpill();
      await writeAll(this.spill.file, data, pos);
    });
    return { pos, length: data.length };
  }

  private async bytes(d: Data): Promise<Uint8Array | null> {
    if (d === null || d instanceof Uint8Array) return d;
    const out = Buffer.allocUnsafe(d.length);
    let done = 0;
    while (done < d.length) {
      const { bytesRead } = await this.spill!.file.read(out, done, d.length - done, d.pos + done);
      if (bytesRead === 0) throw new Error('commit log: spill file is shorter than expected');
      done += bytesRead;
    }
    return out;
  }
}

async function openSpill(): Promise<{ dir: string; file: FileHandle }> {
  const dir = await mkdtemp(join(tmpdir(), 'zeo-commit-log-'));
  const file = await open(join(dir, 'log'), 'w+');
  return { dir, file };
}

async function writeAll(file: FileHandle, data: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done, pos + done);
    done += bytesWritten;
  }
}
