// Blobs on the client side (ZEO/ClientStorage.py: loadBlob, openCommittedBlobFile, storeBlob, receiveBlob*,
// _update_blob_cache, _check_blob_size, temporaryDirectory). Two ways to get at the server's blob files:
//   - a shared blob directory: the server's own (same layout, bushy or lawn); loads read it directly, uploads
//     are moved into the oid's directory and named to the server with storeBlobShared;
//   - a blob cache (blob-cache.ts): loads ask the server (sendBlob), which streams the file back with
//     receiveBlobStart/Chunk/Stop; it is written to `<file>.dl` and renamed into place, under the directory's
//     lock, so no reader, in this process or another, ever sees part of a file. Uploads are streamed with
//     storeBlobStart/Chunk/End in bounded chunks, paced by round trips, so neither side holds the file in
//     memory; after tpc_finish the uploaded files become the cache's copy of the new revision.

import { readdirSync } from 'node:fs';
import { copyFile, mkdir, open, rename, rm, unlink, chmod, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { PickleValue } from '../pickle/index.js';
import {
  blobFilePath,
  LAYOUT_MARKER,
  oidToPath,
  setNotWritable,
  TMP_DIR_NAME,
  type BlobLayout,
  type BlobLog,
} from '../storage/blobs/index.js';
import { POSKeyError } from '../storage/errors.js';
import { idHex, tidRepr, type Oid, type Tid } from '../storage/ids.js';
import {
  accessed,
  BlobCacheError,
  cacheBlobFilePath,
  cacheOidPath,
  checkBlobCacheSize,
  createBlobCacheDir,
  lockBlob,
  readLayoutMarker,
  scanBlobCache,
} from './blob-cache.js';
import type { CallOptions, ClientConnection } from './connection.js';

export interface ClientBlobsOptions {
  blobDir: string;
  /** blobDir is the server's blob directory (shared-blob-dir) */
  sharedBlobDir: boolean;
  /** bytes the blob cache may hold (null: unbounded); ignored for a shared directory */
  blobCacheSize: number | null;
  /** percent of blobCacheSize written between size checks (ZEO's blob-cache-size-check, default 10) */
  blobCacheSizeCheck: number;
  /** where the size check and odd server calls are reported (default: nowhere) */
  log?: BlobLog;
}

/** ZEO's chunk size for blob uploads. */
export const BLOB_CHUNK = 59_000;
/** Bytes an upload sends before it waits for a round trip (two windows are in flight at most). */
const UPLOAD_WINDOW = 1 << 20;
/** Bytes of a download that may wait for the disk before the connection stops reading. */
const RECEIVE_BACKLOG = 1 << 20;

/** A revision to fetch: where it goes, and the sendBlob call's timeout. */
interface BlobRequest {
  conn: ClientConnection;
  oid: Oid;
  serial: Tid;
  path: string;
  timeout: number | undefined;
}

/** A download in progress: the server's receiveBlob* calls for it write `tmp`, then rename it to `path`. */
interface Download {
  path: string;
  tmp: string;
  handle: FileHandle | null;
  /** the receive calls, one after the other (their promise holds the connection's reading back) */
  chain: Promise<void>;
  /** a local failure (disk full...): later chunks are dropped and the load fails with it */
  error: Error | null;
  done: boolean;
  /** bytes of chunks received and not yet written */
  unwritten: number;
}

function isBytes(v: PickleValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array;
}

function key(oid: Oid, serial: Tid): string {
  return idHex(oid) + idHex(serial);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** rename_or_copy_blob: a rename, or across file systems a copy and a removal; then read-only. */
async function renameOrCopy(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch {
    await copyFile(from, to);
    await unlink(from);
  }
  await setNotWritable(to);
}

/** `p`, or the signal's reason once it aborts (what `p` does then is no longer this waiter's business). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's own reason, as fetch does
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** The layout of a storage's blob directory as auto_layout_select finds it (ZEO does not create it). */
function sharedLayout(dir: string): BlobLayout {
  const marker = readLayoutMarker(dir);
  if (marker === 'bushy' || marker === 'lawn') return marker;
  if (marker !== null) {
    throw new BlobCacheError(
      `shared blob-dir ${dir} has the \`${marker}\` layout (its ${LAYOUT_MARKER}): it is not a storage's ` +
        'blob directory (bushy or lawn); a directory of its own for the client is not shared',
    );
  }
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return names.some((n) => !n.startsWith('.')) ? 'lawn' : 'bushy';
}

export class ClientBlobs {
  /** absolute */
  readonly blobDir: string;
  readonly sharedBlobDir: boolean;
  /** 'zeocache' for a blob cache, else the shared directory's */
  readonly layout: BlobLayout | 'zeocache';
  readonly blobCacheSize: number | null;
  /** bytes written into the cache between size checks */
  readonly blobCacheSizeCheck: number;
  private readonly log: BlobLog;
  private readonly loading = new Map<string, Promise<string>>();
  private readonly downloads = new Map<string, Download>();
  /** uploads take turns: storeBlobStart/Chunk/End of two blobs must not interleave */
  private uploadTail: Promise<void> = Promise.resolve();
  private bytesLoaded = 0;
  private checking: Promise<void> | null = null;
  private checkAgain = false;
  private closed = false;
  /** the last size check's failure, if it failed */
  lastCheckError: Error | null = null;

  constructor(options: ClientBlobsOptions) {
    this.blobDir = resolve(options.blobDir);
    this.sharedBlobDir = options.sharedBlobDir;
    this.log = options.log ?? (() => {});
    const pct = options.blobCacheSizeCheck;
    if (!(pct > 0 && pct < 100)) {
      throw new RangeError(
        `blobCacheSizeCheck is a percent of blobCacheSize above 0 and below 100, not ${pct}`,
      );
    }
    const size = options.blobCacheSize;
    if (size !== null && !(Number.isSafeInteger(size) && size >= 0)) {
      throw new RangeError(`blobCacheSize is a number of bytes (or null: unbounded), not ${size}`);
    }
    this.blobCacheSize = this.sharedBlobDir ? null : size;
    this.blobCacheSizeCheck = size === null ? 0 : Math.floor((size * pct) / 100);
    if (this.sharedBlobDir) {
      this.layout = sharedLayout(this.blobDir);
    } else {
      createBlobCacheDir(this.blobDir);
      this.layout = 'zeocache';
      // as ZEO: a cache left too large by an earlier run is brought down at once
      if (this.blobCacheSize !== null) this.startSizeCheck();
    }
  }

  /** ZODB's temporaryDirectory(): uncommitted blob data, on the blobs' file system. */
  temporaryDirectory(): string {
    return join(this.blobDir, TMP_DIR_NAME);
  }

  /** fshelper.getPathForOID: where the oid's files are, and where uploads of it are put. */
  blobDirectoryOf(oid: Oid): string {
    return join(this.blobDir, this.layout === 'zeocache' ? cacheOidPath(oid) : oidToPath(this.layout, oid));
  }

  /** fshelper.getBlobFilename: the committed revision's file (which may not be there). */
  blobFilename(oid: Oid, serial: Tid): string {
    return join(
      this.blobDir,
      this.layout === 'zeocache' ? cacheBlobFilePath(oid, serial) : blobFilePath(this.layout, oid, serial),
    );
  }

  /**
   * The committed revision's local path. Shared: the server's file, or POSKeyError when it is not there. Else
   * the cache's file, fetched from the server first when it is missing (one fetch per revision however many
   * loads wait for it, here or in other processes); POSKeyError when the server has none.
   */
  loadBlob(conn: ClientConnection, oid: Oid, serial: Tid, options: CallOptions = {}): Promise<string> {
    const path = this.blobFilename(oid, serial);
    if (this.sharedBlobDir) return this.loadShared(path, oid, serial);
    const k = key(oid, serial);
    let p = this.loading.get(k);
    if (!p) {
      // the fetch is shared by every load that wants the revision meanwhile: a signal only ends its own wait
      p = this.fetch({ conn, oid, serial, path, timeout: options.timeout }).finally(() =>
        this.loading.delete(k),
      );
      this.loading.set(k, p);
    }
    return options.signal ? abortable(p, options.signal) : p;
  }

  /**
   * openCommittedBlobFile: the revision opened for reading. The handle keeps the data readable even if the
   * size check removes the file meanwhile; a file removed between load and open is fetched again under its lock.
   */
  async openCommittedBlobFile(
    conn: ClientConnection,
    oid: Oid,
    serial: Tid,
    options: CallOptions = {},
  ): Promise<FileHandle> {
    const first = await this.loadBlob(conn, oid, serial, options);
    try {
      return await open(first, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // (a shared directory's file that went, by a pack: it is nowhere)
      if (this.sharedBlobDir) throw this.missing(oid, serial, first);
    }
    // removed between the load and the open (the size check): fetched again and opened under the lock
    const path = this.blobFilename(oid, serial);
    return this.withBlobLock(path, async () => {
      await this.download({ conn, oid, serial, path, timeout: options.timeout });
      return open(path, 'r');
    });
  }

  private async loadShared(path: string, oid: Oid, serial: Tid): Promise<string> {
    if (await exists(path)) return path;
    // the server's directory: if the file is not here, it is nowhere
    throw this.missing(oid, serial, path);
  }

  private missing(oid: Oid, serial: Tid, path: string): POSKeyError {
    const e = new POSKeyError(oid, serial);
    e.message = `No blob file at ${path} (oid ${e.message})`;
    return e;
  }

  private async fetch(req: BlobRequest): Promise<string> {
    if (await exists(req.path)) {
      await accessed(req.path);
      return req.path;
    }
    return this.withBlobLock(req.path, () => this.download(req));
  }

  /** Runs `fn` holding the lock of the directory of `path` (created first). */
  private async withBlobLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(dirname(path), { recursive: true });
    const lock = await lockBlob(path);
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }

  /** The revision's file, asked of the server unless it is there; the caller holds its directory's lock. */
  private async download(req: BlobRequest): Promise<string> {
    const { conn, oid, serial, path, timeout } = req;
    // someone (another process) may have fetched it while we waited for the lock
    if (await exists(path)) {
      await accessed(path);
      return path;
    }
    const k = key(oid, serial);
    const dl: Download = {
      path,
      tmp: path + '.dl',
      handle: null,
      chain: Promise.resolve(),
      error: null,
      done: false,
      unwritten: 0,
    };
    this.downloads.set(k, dl);
    try {
      // the server sends receiveBlobStart/Chunk/Stop before its reply, and the connection hands them to
      // onServerCall in order, each finished before the next message is read
      await conn.call('sendBlob', [oid, serial], timeout === undefined ? {} : { timeout });
      await dl.chain;
    } finally {
      if (this.downloads.get(k) === dl) this.downloads.delete(k);
      await this.dropDownload(dl);
    }
    if (dl.error) throw dl.error;
    if (await exists(path)) {
      await accessed(path);
      return path;
    }
    throw this.missing(oid, serial, path);
  }

  /** A download that did not finish (the call failed, the connection went): its partial file goes. */
  private async dropDownload(dl: Download): Promise<void> {
    await dl.chain.catch(() => {});
    if (dl.done) return;
    dl.done = true;
    await dl.handle?.close().catch(() => {});
    dl.handle = null;
    await rm(dl.tmp, { force: true }).catch(() => {});
  }

  /**
   * The server's receiveBlobStart/Chunk/Stop: true (with the promise of the work, which the connection waits
   * for before it reads on) when it was one of them, false for any other call.
   */
  onServerCall(name: string, args: PickleValue[]): boolean | Promise<boolean> {
    if (name !== 'receiveBlobStart' && name !== 'receiveBlobChunk' && name !== 'receiveBlobStop') {
      return false;
    }
    const [oid, serial, chunk] = args;
    if (!isBytes(oid) || oid.length !== 8 || !isBytes(serial) || serial.length !== 8) {
      this.log('error', `the server's ${name} names no oid and serial; ignored`);
      return true;
    }
    const dl = this.downloads.get(key(oid, serial));
    if (!dl || dl.done) {
      // a blob nobody here waits for (its load timed out or was aborted): dropped
      this.log('debug', `${name} for a blob no load waits for (oid ${idHex(oid)}); ignored`);
      return true;
    }
    const step = async (): Promise<void> => {
      if (dl.error || dl.done) return;
      try {
        if (name === 'receiveBlobStart') {
          await dl.handle?.close();
          dl.handle = await open(dl.tmp, 'w', 0o600);
        } else if (name === 'receiveBlobChunk') {
          if (!isBytes(chunk)) throw new TypeError(`receiveBlobChunk without bytes`);
          if (!dl.handle) throw new Error('receiveBlobChunk before receiveBlobStart');
          let done = 0;
          while (done < chunk.length) {
            done += (await dl.handle.write(chunk, done, chunk.length - done)).bytesWritten;
          }
          this.wrote(chunk.length);
        } else {
          if (!dl.handle) throw new Error('receiveBlobStop before receiveBlobStart');
          await dl.handle.close();
          dl.handle = null;
          await chmod(dl.tmp, 0o400);
          await rename(dl.tmp, dl.path);
          dl.done = true;
        }
      } catch (e) {
        // kept for the load to report; the connection itself is fine
        dl.error = e instanceof Error ? e : new Error(String(e));
        this.log('error', `receiving blob ${dl.path}: ${dl.error.message}`);
      }
    };
    const bytes = name === 'receiveBlobChunk' && isBytes(chunk) ? chunk.length : 0;
    dl.unwritten += bytes;
    dl.chain = dl.chain.then(step).finally(() => (dl.unwritten -= bytes));
    // chunks are written behind the connection's back while little is waiting; past that, and at the stop
    // (the file must be in place before the sendBlob reply is read), the connection waits for the disk
    if (name !== 'receiveBlobStop' && dl.unwritten < RECEIVE_BACKLOG) return true;
    return dl.chain.then(() => true);
  }

  /**
   * storeBlob's blob part (the storage sends the record with store first, as ZEO does): takes `blobFilename`
   * over, moving it into the oid's directory; shared: names it to the server with storeBlobShared; else streams
   * it with storeBlobStart/Chunk/End. Returns the file's new path, for committed (or aborted).
   */
  storeBlob(
    conn: ClientConnection,
    oid: Oid,
    oldSerial: Tid,
    data: Uint8Array,
    blobFilename: string,
    txnId: number,
  ): Promise<string> {
    const run = this.uploadTail.then(() => this.upload({ conn, oid, oldSerial, data, blobFilename, txnId }));
    this.uploadTail = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  private async upload(u: {
    conn: ClientConnection;
    oid: Oid;
    oldSerial: Tid;
    data: Uint8Array;
    blobFilename: string;
    txnId: number;
  }): Promise<string> {
    const { conn, oid, oldSerial, data, blobFilename, txnId } = u;
    // grab the file now (as ZEO): a full disk shows here, not in tpc_finish; the name is the server's
    // accepted form for storeBlobShared, '<tid_repr>XXXX.tmp-', reserved by creating '<...>.tmp' first
    const dir = this.blobDirectoryOf(oid);
    await mkdir(dir, { recursive: true });
    let reserved: string;
    for (;;) {
      reserved = join(dir, `${tidRepr(oldSerial)}${randomBytes(6).toString('hex')}.tmp`);
      try {
        await (await open(reserved, 'wx', 0o600)).close();
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    const target = reserved + '-';
    try {
      await renameOrCopy(blobFilename, target);
    } finally {
      await rm(reserved, { force: true });
    }
    try {
      if (this.sharedBlobDir) {
        conn.callAsync('storeBlobShared', [oid, oldSerial, data, basename(target), txnId]);
        return target;
      }
      const fh = await open(target, 'r');
      try {
        conn.callAsync('storeBlobStart', []);
        let sent = 0;
        let inFlight: Promise<unknown> | null = null;
        try {
          for (;;) {
            const chunk = Buffer.allocUnsafe(BLOB_CHUNK);
            const { bytesRead } = await fh.read(chunk, 0, BLOB_CHUNK, null);
            if (bytesRead === 0) break;
            conn.callAsync('storeBlobChunk', [chunk.subarray(0, bytesRead)]);
            sent += bytesRead;
            if (sent >= UPLOAD_WINDOW) {
              // a round trip per window, one window ahead: the server has taken what came before it
              sent = 0;
              if (inFlight) await inFlight;
              inFlight = conn.call('ping');
            }
          }
          if (inFlight) await inFlight;
        } finally {
          inFlight?.catch(() => {});
        }
        conn.callAsync('storeBlobEnd', [oid, oldSerial, data, txnId]);
      } finally {
        await fh.close();
      }
    } catch (e) {
      // the transaction cannot commit this upload: the file we took over goes (the caller never learns its name)
      await rm(target, { force: true });
      throw e;
    }
    return target;
  }

  /**
   * After tpc_finish (_update_blob_cache): the uploaded files become the cache's files of the new revision.
   * Nothing to do for a shared directory: the server moved them.
   */
  async committed(tid: Tid, stored: Array<{ oid: Oid; filename: string }>): Promise<void> {
    if (this.sharedBlobDir || stored.length === 0) return;
    for (const { oid, filename } of stored) {
      let size: number;
      try {
        size = (await stat(filename)).size;
      } catch {
        continue; // not ours any more (a second committed call)
      }
      const path = this.blobFilename(oid, tid);
      await mkdir(dirname(path), { recursive: true });
      const lock = await lockBlob(path);
      try {
        await renameOrCopy(filename, path);
      } finally {
        await lock.release();
      }
      this.wrote(size);
    }
  }

  /** After tpc_abort: the uploaded files of the transaction are removed (ZEO's client leaves them behind). */
  async aborted(stored: Array<{ oid: Oid; filename: string }>): Promise<void> {
    // (in a shared directory the server removes what storeBlobShared named to it, unless the call never
    // reached it: the file is not needed either way once the transaction is over)
    for (const { filename } of stored) await rm(filename, { force: true });
  }

  /** Counts bytes written into the cache and starts a size check once a check's worth was written. */
  private wrote(bytes: number): void {
    if (this.blobCacheSize === null) return;
    this.bytesLoaded += bytes;
    if (this.bytesLoaded < this.blobCacheSizeCheck) return;
    this.bytesLoaded = 0;
    this.startSizeCheck();
  }

  /** One size check at a time in this process; one asked for meanwhile runs after it. */
  private startSizeCheck(): void {
    if (this.closed || this.blobCacheSize === null) return;
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    const target = Math.max(this.blobCacheSize - this.blobCacheSizeCheck, 0);
    this.checking = (async () => {
      do {
        this.checkAgain = false;
        try {
          await checkBlobCacheSize(this.blobDir, target, this.log);
          this.lastCheckError = null;
        } catch (e) {
          this.lastCheckError = e instanceof Error ? e : new Error(String(e));
          this.log('error', `checking the blob cache size failed: ${this.lastCheckError.message}`);
        }
      } while (this.checkAgain && !this.closed);
      this.checking = null;
    })();
  }

  /** Runs a size check now (and waits for it); nothing for an unbounded cache or a shared directory. */
  async checkSize(): Promise<void> {
    if (this.blobCacheSize === null) return;
    while (this.checking) await this.checking;
    this.startSizeCheck();
    // (startSizeCheck set it: TypeScript keeps the narrowing from the loop above)
    await (this.checking as Promise<void> | null);
  }

  /** Bytes of blob files in the cache now (a scan); 0 for a shared directory, which is not ours to count. */
  async cacheBytes(): Promise<number> {
    if (this.sharedBlobDir) return 0;
    return (await scanBlobCache(this.blobDir)).size;
  }

  /** Waits for the size check in progress; later loads still work, no new check starts. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.checking) await this.checking;
  }
}
