// The ZEO client's blob cache directory (ZEO/ClientStorage.py: BlobCacheLayout, _lock_blob, _accessed,
// _check_blob_cache_size), laid out and locked exactly as ZEO's, so Python and Node clients can share one:
//
//   <dir>/.layout                      'zeocache'
//   <dir>/tmp/                         ZODB's temporaryDirectory(): uncommitted blob data
//   <dir>/<oid % 997>/<oid // 997>.<tid as 16 hex digits>.blob        a committed revision (read-only)
//   <dir>/<oid % 997>/.lock            zc.lockfile (flock) of that directory: whoever downloads into it, moves
//                                      a committed upload into it, or removes a file from it holds it
//   <dir>/check_size.lock              held by the one process that is bringing the cache below its bound
//   <dir>/check_size.attempt           left by a process that found the size check busy: check again
//
// Files are evicted least recently used first, by atime, which loads set explicitly (relatime mounts would
// not). A file in a locked directory is skipped (being written or read under the lock), as ZEO skips it.

import { randomBytes } from 'node:crypto';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { open, readdir, rm, stat, unlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BLOB_SUFFIX, LAYOUT_MARKER, TMP_DIR_NAME, type BlobLog } from '../storage/blobs/index.js';
import { LockError, LockFile } from '../storage/filestorage/lockfile.js';
import { idHex, u64, type Oid, type Tid } from '../storage/ids.js';

export const CACHE_LAYOUT = 'zeocache';
/** BlobCacheLayout.size: the number of directories oids are spread over. */
export const CACHE_BUCKETS = 997n;
export const CHECK_LOCK = 'check_size.lock';
export const CHECK_ATTEMPT = 'check_size.attempt';
/** _lock_blob: how often and how many times a busy directory lock is tried again (10 ms, 60000 times). */
const LOCK_RETRY_MS = 10;
const LOCK_RETRIES = 60_000;

/** A blob directory that cannot serve as what it was asked to be (ZEO: ValueError). */
export class BlobCacheError extends Error {
  override name = 'BlobCacheError';
}

/** BlobCacheLayout.oid_to_path. */
export function cacheOidPath(oid: Oid): string {
  return String(u64(oid) % CACHE_BUCKETS);
}

/** BlobCacheLayout.getBlobFilePath. */
export function cacheBlobFilePath(oid: Oid, tid: Tid): string {
  const n = u64(oid);
  return join(String(n % CACHE_BUCKETS), `${n / CACHE_BUCKETS}.${idHex(tid)}${BLOB_SUFFIX}`);
}

/** The layout a `.layout` marker names, or null when there is none. */
export function readLayoutMarker(dir: string): string | null {
  try {
    return readFileSync(join(dir, LAYOUT_MARKER), 'utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * FilesystemHelper(dir, 'zeocache').create(): the directory, `tmp/` and the marker. Synchronous, as ZEO's
 * constructor does it, so a storage is usable once constructed. A directory marked with another layout (a
 * server's blob directory) is refused: evicting from it would destroy committed data.
 */
export function createBlobCacheDir(dir: string): void {
  let marker = existsSync(dir) ? readLayoutMarker(dir) : null;
  if (marker === null && existsSync(dir) && readdirSync(dir).some((n) => /^0x[0-9a-f]+$/.test(n))) {
    // a storage's blob directory from before layout markers (lawn, or bushy): never ours to evict from
    throw new BlobCacheError(
      `blob-dir ${dir} holds a storage's blob files (its 0x.. directories) and no ${LAYOUT_MARKER}: ` +
        'give the client a directory of its own, or set shared-blob-dir when this is the server’s blob directory',
    );
  }
  // (refused before anything is made in it)
  if (marker !== null && marker !== CACHE_LAYOUT) throw notACache(dir, marker);
  mkdirSync(join(dir, TMP_DIR_NAME), { recursive: true });
  if (marker === null) {
    // written whole under another name, then linked into place: a process starting beside this one never
    // reads an empty marker, and of two writers one wins
    const tmp = join(dir, `${LAYOUT_MARKER}.${process.pid}.${randomBytes(4).toString('hex')}`);
    writeFileSync(tmp, CACHE_LAYOUT);
    try {
      linkSync(tmp, join(dir, LAYOUT_MARKER));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      unlinkSync(tmp);
    }
    marker = readLayoutMarker(dir);
  }
  if (marker !== CACHE_LAYOUT) throw notACache(dir, marker);
}

function notACache(dir: string, marker: string | null): BlobCacheError {
  return new BlobCacheError(
    `blob-dir ${dir} has the \`${marker}\` layout (its ${LAYOUT_MARKER}), so it is a storage's blob directory, ` +
      `not a ZEO client's blob cache (\`${CACHE_LAYOUT}\`): give the client a directory of its own, or set ` +
      'shared-blob-dir when this is the server’s blob directory shared with the client',
  );
}

// ---------------------------------------------------------------------------------------------------------
// locks

/** In-process queues per lock path: flock excludes other processes; waiters here queue instead of polling. */
const localQueues = new Map<string, Promise<void>>();

async function localTurn(path: string): Promise<() => void> {
  const before = localQueues.get(path) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((r) => (done = r));
  const tail = before.then(() => mine);
  localQueues.set(path, tail);
  await before;
  return () => {
    if (localQueues.get(path) === tail) localQueues.delete(path);
    done();
  };
}

/** A held directory lock; release() once. */
export interface HeldLock {
  release(): Promise<void>;
}

/**
 * _lock_blob: the `.lock` of the directory holding `path`, waited for (in this process in turn, from others
 * by trying again every 10 ms, for up to 10 minutes as ZEO does).
 */
export async function lockBlob(path: string): Promise<HeldLock> {
  const lockPath = join(dirname(path), '.lock');
  const leave = await localTurn(lockPath);
  try {
    for (let n = 0; ; n++) {
      try {
        const lock = await LockFile.acquire(lockPath);
        return {
          async release() {
            try {
              await lock.release();
            } finally {
              leave();
            }
          },
        };
      } catch (e) {
        if (!(e instanceof LockError) || e.code !== null || n >= LOCK_RETRIES) throw e;
        await sleep(LOCK_RETRY_MS);
      }
    }
  } catch (e) {
    leave();
    throw e;
  }
}

/** The directory lock if it is free now (the size check skips files whose directory is busy). */
async function tryLock(path: string): Promise<LockFile | null> {
  try {
    return await LockFile.acquire(join(dirname(path), '.lock'));
  } catch (e) {
    if (e instanceof LockError && e.code === null) return null;
    throw e;
  }
}

/** _accessed: marks a file used now (atime; mtime kept), for eviction by least recent use. */
export async function accessed(path: string): Promise<void> {
  try {
    const s = await stat(path);
    await utimes(path, new Date(), s.mtime);
  } catch {
    // we tried (the file may have just been evicted; its reader finds out)
  }
}

// ---------------------------------------------------------------------------------------------------------
// the size check

export interface BlobCacheCheckResult {
  /** another process held the check lock: it was asked to check again (check_size.attempt) */
  skipped: boolean;
  /** bytes of blob files left */
  size: number;
  /** files removed */
  removed: number;
}

export interface CachedFile {
  path: string;
  size: number;
  atime: number;
}

/** The blob files of a cache directory: their total size, and each with its size and atime. */
export async function scanBlobCache(dir: string): Promise<{ size: number; files: CachedFile[] }> {
  let size = 0;
  const files: CachedFile[] = [];
  for (const name of await readdir(dir)) {
    if (!/^\d+$/.test(name)) continue;
    const base = join(dir, name);
    let entries: string[];
    try {
      entries = await readdir(base);
    } catch {
      continue; // not a directory, or gone
    }
    for (const f of entries) {
      if (!f.endsWith(BLOB_SUFFIX)) continue;
      const path = join(base, f);
      try {
        const s = await stat(path);
        if (!s.isFile()) continue;
        size += s.size;
        files.push({ path, size: s.size, atime: s.atimeMs });
      } catch {
        // removed meanwhile
      }
    }
  }
  return { size, files };
}

/**
 * _check_blob_cache_size: brings the blob files of a `zeocache` directory down to `target` bytes, removing the
 * least recently used first and skipping those whose directory is locked. One process checks at a time (the
 * check lock); another that finds it busy waits a second, then leaves `check_size.attempt`, which makes the
 * checking one scan again before it stops.
 */
export async function checkBlobCacheSize(
  dir: string,
  target: number,
  log: BlobLog = () => {},
): Promise<BlobCacheCheckResult> {
  const layout = readLayoutMarker(dir);
  if (layout !== CACHE_LAYOUT) {
    log('critical', `Invalid blob directory layout ${layout}`);
    throw new BlobCacheError(`Invalid blob directory layout ${String(layout)} in ${dir}`);
  }
  const attemptPath = join(dir, CHECK_ATTEMPT);
  const lockPath = join(dir, CHECK_LOCK);
  let checkLock: LockFile | null = null;
  for (let attempt = 0; attempt < 2 && !checkLock; attempt++) {
    if (attempt) await sleep(1000);
    try {
      checkLock = await LockFile.acquire(lockPath);
    } catch (e) {
      if (!(e instanceof LockError) || e.code !== null) throw e;
    }
  }
  if (!checkLock) {
    log('debug', 'Another process is checking the blob cache size.');
    await (await open(attemptPath, 'w')).close();
    return { skipped: true, size: -1, removed: 0 };
  }
  let removed = 0;
  try {
    log('debug', `Checking blob cache size. (target: ${target})`);
    for (;;) {
      const { size: total, files } = await scanBlobCache(dir);
      let size = total;
      log('debug', `  blob cache size: ${size}`);
      if (size <= target) {
        if (existsSync(attemptPath)) {
          await rm(attemptPath, { force: true });
          continue;
        }
        return { skipped: false, size, removed };
      }
      files.sort((a, b) => a.atime - b.atime || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const before = removed;
      for (const f of files) {
        if (size <= target) break;
        const lock = await tryLock(f.path);
        if (!lock) {
          log('debug', `Skipping locked ${f.path}`);
          continue; // in use
        }
        try {
          const fsize = (await stat(f.path)).size;
          await unlink(f.path);
          size -= fsize;
          removed++;
        } catch {
          // gone meanwhile
        } finally {
          await lock.release();
        }
      }
      log('debug', `  reduced blob cache size: ${size}`);
      // every file left is in use: stop rather than spin (the next check will find them free)
      if (removed === before) return { skipped: false, size, removed };
    }
  } finally {
    await checkLock.release();
  }
}
