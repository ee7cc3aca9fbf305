// Backups of a Data.fs in the format of ZODB's repozo (ZODB/scripts/repozo.py), so either tool restores the
// other's repository and each can add an incremental after the other's full backup.
//
// A repository is a directory of files named by the UTC time they were made, YYYY-MM-DD-HH-MM-SS, plus:
//   .fs / .fsz           a full backup: the data file's bytes [0, pos) (.fsz: gzipped)
//   .deltafs / .deltafsz an incremental: the bytes [start, pos) appended since the previous backup
//   .dat                 next to each full backup: one line per backup of its chain, "PATH START END MD5"
//                        (PATH is the repository joined with the file's name, as os.path.join makes it; MD5
//                        of the uncompressed bytes)
//   .index               next to each backup: fsIndex.save(pos) of the data file up to that backup's end
// `pos` is the end of the last COMPLETE transaction, found by the scan FileStorage does on open (read-only, no
// lock), so a server may keep appending while a backup is taken. The scan and the copy read one open file
// descriptor, so a pack that renames a new file into place meanwhile does not mix two files.
// An incremental is made only when the repository's bytes are still the data file's first bytes (md5); a pack
// or a truncation makes the next backup a full one.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { fsyncDirectory } from './file.js';
import { encodeIndexFileChunks, openIndexFile, INDEX_SUFFIX } from './indexfile.js';
import { LockError, LockFile } from './lockfile.js';
import { exists, scanDataFile } from './scan.js';
import { TimeStamp } from '../timestamp.js';

export class RepozoError extends Error {
  override name = 'RepozoError';
}
/** A backup file of this second exists already. */
export class WouldOverwriteFiles extends RepozoError {
  override name = 'WouldOverwriteFiles';
}
/** The repository has no backup (before the date asked for). */
export class NoFiles extends RepozoError {
  override name = 'NoFiles';
}
/** A backup file is missing, or its size or md5 is not the one its .dat line records. */
export class VerificationFail extends RepozoError {
  override name = 'VerificationFail';
}

/** repozo's is_data_file: the names of full and incremental backups. */
const DATA_FILE = /^\d{4}(?:-\d\d){5}\.(?:delta)?fsz?$/;
const DATE = /^\d{4}-\d\d-\d\d(?:-\d\d(?:-\d\d(?:-\d\d(?:\.\d{1,6})?)?)?)?$/;
const CHUNK = 1 << 20;

export function isDataFile(name: string): boolean {
  return DATA_FILE.test(name);
}

export function isFullBackup(name: string): boolean {
  return name.endsWith('.fs') || name.endsWith('.fsz');
}

/** The name's stem: "2026-12-06-18-20-10" of "2026-12-06-18-20-10.deltafsz". */
export function stemOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? name : name.slice(0, dot);
}

/** repozo's file time: "YYYY-MM-DD-HH-MM-SS" of `now` in UTC. */
export function timestampOf(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${String(now.getUTCFullYear()).padStart(4, '0')}-${p(now.getUTCMonth() + 1)}-${p(now.getUTCDate())}-` +
    `${p(now.getUTCHours())}-${p(now.getUTCMinutes())}-${p(now.getUTCSeconds())}`
  );
}

/**
 * repozo's -D: yyyy-mm-dd[-hh[-mm[-ss]]] (UTC; a fraction of a second may follow), compared with the file
 * names as a string, as repozo does.
 */
export function checkDate(date: string): string {
  if (!DATE.test(date))
    throw new RepozoError(`invalid date ${JSON.stringify(date)}: use yyyy-mm-dd[-hh[-mm[-ss]]] (UTC)`);
  return date;
}

/** os.path.join(repository, name), byte for byte: the .dat lines hold the path as repozo would write it. */
export function repoPath(repository: string, name: string): string {
  return repository === '' || repository.endsWith('/') ? repository + name : `${repository}/${name}`;
}

/**
 * repozo's find_files: the names (chronological) of the newest full backup made at or before `when` and of
 * the incrementals after it up to `when` (a timestamp or a prefix of one; default: every file).
 */
export async function findFiles(repository: string, when: string | null = null): Promise<string[]> {
  const all = (await readdir(repository)).filter(isDataFile).sort().reverse();
  const needed: string[] = [];
  for (const name of all) {
    if (when !== null && stemOf(name) > when) continue;
    needed.push(name);
    if (isFullBackup(name)) break;
  }
  // incrementals older than every full backup are no chain
  if (needed.length > 0 && !isFullBackup(needed[needed.length - 1])) return [];
  return needed.reverse();
}

export interface DatLine {
  /** the path as written (repozo: the repository joined with the name) */
  path: string;
  /** the file's name in the repository */
  name: string;
  start: number;
  end: number;
  md5: string;
}

export function formatDatLine(path: string, start: number, end: number, md5: string): string {
  return `${path} ${start} ${end} ${md5}\n`;
}

/** The .dat of a full backup; [] when there is none. */
export async function readDat(repository: string, fullName: string): Promise<DatLine[]> {
  let fh: FileHandle;
  try {
    fh = await open(repoPath(repository, `${stemOf(fullName)}.dat`), 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  let text: string;
  try {
    text = await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
  const lines: DatLine[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    // the path is what is left of the last three fields (a repository's path may hold spaces)
    const m = /^(.+?)\s+(\d+)\s+(\d+)\s+([0-9a-f]{32})\s*$/.exec(line);
    if (!m) throw new RepozoError(`${stemOf(fullName)}.dat: not a repozo .dat line: ${JSON.stringify(line)}`);
    lines.push({ path: m[1], name: basename(m[1]), start: Number(m[2]), end: Number(m[3]), md5: m[4] });
  }
  return lines;
}

export type Phase = 'scan' | 'checksum' | 'compare' | 'copy' | 'restore' | 'verify';
/** Progress of the current phase: bytes done of bytes to do. */
export type RepozoProgress = (phase: Phase, done: number, total: number) => void;

/** Calls `each` with the bytes of a repository file, uncompressed; returns their count. */
async function readBackupFile(path: string, each: (chunk: Buffer) => Promise<void> | void): Promise<number> {
  let n = 0;
  const sink = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
      n += chunk.length;
      await each(chunk);
    }
  };
  try {
    if (path.endsWith('z')) {
      await pipeline(createReadStream(path, { highWaterMark: CHUNK }), createGunzip(), sink);
    } else {
      // one buffer for the whole file: no allocation (and page faults) per chunk
      const fh = await open(path, 'r');
      try {
        const buf = Buffer.allocUnsafe(CHUNK);
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, n);
          if (bytesRead === 0) break;
          n += bytesRead;
          await each(buf.subarray(0, bytesRead));
        }
      } finally {
        await fh.close();
      }
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VerificationFail(`${path} is missing`, { cause: e });
    if (typeof code === 'string' && code.startsWith('Z_'))
      throw new VerificationFail(`${path}: cannot be uncompressed (${(e as Error).message})`, { cause: e });
    throw e;
  }
  return n;
}

/** Calls `each` with the bytes [start, start + n) of an open file, in chunks. */
async function readRange(
  fh: FileHandle,
  start: number,
  n: number,
  each: (chunk: Buffer) => Promise<void> | void,
): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(n, 1)));
  let done = 0;
  while (done < n) {
    const want = Math.min(buf.length, n - done);
    const { bytesRead } = await fh.read(buf, 0, want, start + done);
    if (bytesRead === 0) throw new RepozoError(`unexpected end of file at byte ${start + done}`);
    done += bytesRead;
    await each(buf.subarray(0, bytesRead));
  }
}

/** Writes `chunks` (an async source) to `path` through a temporary file, fsynced, then renamed. */
async function writeAtomically(
  path: string,
  chunks: () => AsyncIterable<Buffer> | Iterable<Buffer>,
  gzip: boolean,
): Promise<void> {
  const tmp = `${path}.tmp`;
  const out = await open(tmp, 'w');
  try {
    try {
      const write = async (source: AsyncIterable<Buffer>): Promise<void> => {
        for await (const chunk of source) await out.write(chunk);
      };
      if (gzip) await pipeline(chunks, createGzip(), write);
      else for await (const chunk of chunks()) await out.write(chunk);
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

async function appendLine(path: string, line: string): Promise<void> {
  const fh = await open(path, 'a');
  try {
    await fh.write(line);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface BackupOptions {
  repository: string;
  /** the Data.fs */
  file: string;
  /** -F: a full backup even when an incremental could be made */
  full?: boolean;
  /** -Q: check only the last backup's bytes (its .dat md5) instead of the whole repository */
  quick?: boolean;
  /** -z */
  gzip?: boolean;
  /** -k: after a full backup, delete the older backups */
  killOld?: boolean;
  /** the time the files are named by (default: now) */
  now?: Date;
  onProgress?: RepozoProgress;
  /** why a full backup was chosen and the like (repozo's verbose log) */
  log?: (message: string) => void;
}

export interface BackupResult {
  kind: 'full' | 'incremental' | 'none';
  /** the backup file written (null for 'none') */
  name: string | null;
  /** the byte range of the data file it holds */
  start: number;
  end: number;
  md5: string | null;
  /** why a full backup was made, or none at all */
  reason: string;
}

/** Backs up `file` into the repository: full, incremental, or nothing when nothing was committed since. */
export async function backup(options: BackupOptions): Promise<BackupResult> {
  const { repository, file } = options;
  const progress = options.onProgress ?? (() => {});
  const log = options.log ?? (() => {});
  const now = options.now ?? new Date();
  const st = await stat(repository).catch((e: unknown) => {
    throw new RepozoError(`repository ${repository}: ${(e as Error).message}`, { cause: e });
  });
  if (!st.isDirectory()) throw new RepozoError(`repository ${repository} is not a directory`);
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size === 0) throw new RepozoError(`${file} is empty: nothing to back up`);
    // the end of the last complete transaction, and the index up to it (FileStorage's read-only open)
    const scan = await scanDataFile(fh, file, {
      readOnly: true,
      fileSize: size,
      onProgress: (done, total) => progress('scan', done, total),
    });
    try {
      const pos = scan.pos;
      const repofiles = await findFiles(repository, timestampOf(now));
      const full = (reason: string) => fullBackup(options, fh, pos, scan.index, now, reason);
      if (options.full) return await full('a full backup was asked for');
      if (repofiles.length === 0) return await full('no full backup in the repository');
      let from: { start: number; end: number; md5: string };
      if (options.quick) {
        const dat = await readDat(repository, repofiles[0]);
        if (dat.length === 0) return await full('the .dat file is missing or empty');
        from = dat[dat.length - 1];
      } else {
        // the repository's bytes as they are (not as the .dat says)
        let total = 0;
        for (const name of repofiles) total += (await stat(repoPath(repository, name))).size;
        const hash = createHash('md5');
        let n = 0;
        let read = 0;
        for (const name of repofiles) {
          const p = repoPath(repository, name);
          const compressed = (await stat(p)).size;
          n += await readBackupFile(p, (chunk) => {
            hash.update(chunk);
          });
          read += compressed;
          progress('checksum', read, total);
        }
        from = { start: 0, end: n, md5: hash.digest('hex') };
      }
      log(`repository: bytes ${from.start} to ${from.end}, md5 ${from.md5}`);
      if (pos < from.end) return await full('the data file shrank, possibly because of a pack');
      const hash = createHash('md5');
      let hashed = 0;
      await readRange(fh, from.start, from.end - from.start, (chunk) => {
        hash.update(chunk);
        hashed += chunk.length;
        progress('compare', hashed, from.end - from.start);
      });
      if (hash.digest('hex') !== from.md5)
        return await full('the data file changed, possibly because of a pack');
      if (pos === from.end)
        return { kind: 'none', name: null, start: pos, end: pos, md5: null, reason: 'no changes' };
      return await incrementalBackup(options, fh, from.end, pos, scan.index, now, repofiles[0]);
    } finally {
      await scan.index.dispose();
    }
  } finally {
    await fh.close();
  }
}

type ScannedIndex = Awaited<ReturnType<typeof scanDataFile>>['index'];

/** Writes the .index of a backup ending at `pos`, and the backup file of [start, pos); returns its md5. */
async function writeBackup(
  options: BackupOptions,
  fh: FileHandle,
  name: string,
  start: number,
  pos: number,
  index: ScannedIndex,
): Promise<string> {
  const { repository } = options;
  const progress = options.onProgress ?? (() => {});
  const dest = repoPath(repository, name);
  if (await exists(dest)) throw new WouldOverwriteFiles(`Cannot overwrite existing file: ${dest}`);
  await writeAtomically(
    repoPath(repository, stemOf(name) + INDEX_SUFFIX),
    () => encodeIndexFileChunks(index, pos),
    false,
  );
  const hash = createHash('md5');
  const gzip = options.gzip ?? false;
  async function* chunks(): AsyncGenerator<Buffer> {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(pos - start, 1)));
    let done = 0;
    progress('copy', 0, pos - start);
    while (done < pos - start) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, pos - start - done), start + done);
      if (bytesRead === 0) throw new RepozoError(`unexpected end of ${options.file} at byte ${start + done}`);
      done += bytesRead;
      hash.update(buf.subarray(0, bytesRead));
      // gzip may still hold a chunk when the next read fills buf; a plain write is done with it by then
      yield gzip ? Buffer.from(buf.subarray(0, bytesRead)) : buf.subarray(0, bytesRead);
      progress('copy', done, pos - start);
    }
  }
  try {
    await writeAtomically(dest, chunks, gzip);
  } catch (e) {
    // no index without its backup
    await unlink(repoPath(repository, stemOf(name) + INDEX_SUFFIX)).catch(() => {});
    throw e;
  }
  return hash.digest('hex');
}

function backupName(now: Date, full: boolean, gzip: boolean): string {
  return `${timestampOf(now)}.${full ? '' : 'delta'}fs${gzip ? 'z' : ''}`;
}

async function fullBackup(
  options: BackupOptions,
  fh: FileHandle,
  pos: number,
  index: ScannedIndex,
  now: Date,
  reason: string,
): Promise<BackupResult> {
  const { repository } = options;
  (options.log ?? (() => {}))(`full backup: ${reason}`);
  const name = backupName(now, true, options.gzip ?? false);
  const md5 = await writeBackup(options, fh, name, 0, pos, index);
  const dat = repoPath(repository, `${stemOf(name)}.dat`);
  await writeAtomically(
    dat,
    () => [Buffer.from(formatDatLine(repoPath(repository, name), 0, pos, md5))],
    false,
  );
  await fsyncDirectory(repository);
  if (options.killOld) await deleteOldBackups(repository, options.log);
  return { kind: 'full', name, start: 0, end: pos, md5, reason };
}

async function incrementalBackup(
  options: BackupOptions,
  fh: FileHandle,
  start: number,
  pos: number,
  index: ScannedIndex,
  now: Date,
  fullName: string,
): Promise<BackupResult> {
  const { repository } = options;
  const name = backupName(now, false, options.gzip ?? false);
  const md5 = await writeBackup(options, fh, name, start, pos, index);
  await appendLine(
    repoPath(repository, `${stemOf(fullName)}.dat`),
    formatDatLine(repoPath(repository, name), start, pos, md5),
  );
  await fsyncDirectory(repository);
  return {
    kind: 'incremental',
    name,
    start,
    end: pos,
    md5,
    reason: 'the repository is the start of the data file',
  };
}

/** repozo's delete_old_backups: every backup but the newest full one (and its .dat and .index). */
export async function deleteOldBackups(
  repository: string,
  log?: (message: string) => void,
): Promise<string[]> {
  const all = (await readdir(repository)).filter(isDataFile).sort();
  const full = all.filter(isFullBackup);
  if (full.length === 0) return [];
  const keep = full[full.length - 1];
  const removed: string[] = [];
  for (const name of all) {
    if (name === keep) continue;
    log?.(`removing old backup file ${name} (and .dat / .index)`);
    for (const ext of ['.dat', INDEX_SUFFIX])
      await unlink(repoPath(repository, stemOf(name) + ext)).catch(() => {});
    await unlink(repoPath(repository, name));
    removed.push(name);
  }
  return removed;
}

/**
 * The files of the chain ending at `date`, each with its .dat line; VerificationFail when a line is missing
 * or the chain has a gap. Reads nothing but the directory and the .dat.
 */
export async function chainOf(repository: string, date: string | null): Promise<DatLine[]> {
  const names = await findFiles(repository, date);
  if (names.length === 0)
    throw new NoFiles(date ? `No files in repository before ${date}` : 'No files in repository');
  const dat = await readDat(repository, names[0]);
  const byName = new Map(dat.map((l) => [l.name, l]));
  // a backup the .dat records but the directory lacks would silently restore an older state
  const present = new Set(names);
  for (const line of dat) {
    if (!present.has(line.name) && (date === null || stemOf(line.name) <= date))
      throw new VerificationFail(`${repoPath(repository, line.name)} is missing`);
  }
  const chain: DatLine[] = [];
  let end = 0;
  for (const name of names) {
    const line = byName.get(name);
    if (!line)
      throw new VerificationFail(`${repoPath(repository, name)} has no line in ${stemOf(names[0])}.dat`);
    if (line.start !== end)
      throw new VerificationFail(
        `${repoPath(repository, name)} starts at byte ${line.start}, but the backups before it end at ${end}`,
      );
    end = line.end;
    chain.push(line);
  }
  return chain;
}

export interface RestoreOptions {
  repository: string;
  /** the Data.fs to write (replaced only once every piece checked out) */
  output: string;
  /** -D: the state as of this UTC date, yyyy-mm-dd[-hh[-mm[-ss]]] (default: the newest backup) */
  date?: string | null;
  /**
   * The state as of this UTC time exactly (same format): the backups that cover it, cut after the last
   * transaction whose tid is at or before it. Not with `date`.
   */
  until?: string | null;
  onProgress?: RepozoProgress;
  log?: (message: string) => void;
}

export interface RestoreResult {
  files: string[];
  bytes: number;
  /** with `until`: the backups held transactions after it, and the output ends before the first of them */
  cut: boolean;
  /** the .index restored next to the output */
  index: boolean;
}

/**
 * Restores the newest full backup at or before the date and the incrementals after it: each piece's size and
 * md5 are checked against its .dat line as it streams into `<output>.part`, which is fsynced and renamed over
 * the output only when all of them match (on an error the output is left as it was). The backup's .index is
 * restored too when it covers exactly the restored bytes.
 */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const { repository, output } = options;
  const date = options.date ? checkDate(options.date) : null;
  const until = options.until ? checkDate(options.until) : null;
  if (date !== null && until !== null)
    throw new RepozoError('give a date or a time to restore until, not both');
  let when = date;
  let limit: Uint8Array | null = null;
  if (until !== null) {
    // the backups up to the first one made after that time, which holds every transaction before it
    const after = (await readdir(repository))
      .filter(isDataFile)
      .sort()
      .find((n) => stemOf(n) > until);
    when = after ? stemOf(after) : null;
    limit = TimeStamp.fromTime(untilSeconds(until)).raw();
  }
  const chain = await chainOf(repository, when);
  const total = chain[chain.length - 1].end;
  // the output's lock, as a FileStorage takes it: a server (zeo serve, runzeo) that serves the output would keep
  // writing to the file renamed away, and lose every commit from then on at its next start
  const lock = await lockOutput(output);
  try {
    return await restoreChain(options, chain, total, limit);
  } finally {
    await lock?.release();
  }
}

/** Takes `output`.lock when it exists (a storage that holds the file always has one); RepozoError when held. */
async function lockOutput(output: string): Promise<LockFile | null> {
  const path = output + '.lock';
  if (!(await stat(path).catch(() => null))) return null;
  try {
    return await LockFile.acquire(path);
  } catch (e) {
    if (!(e instanceof LockError)) throw e;
    const who = e.pid !== null ? ` by process ${e.pid}` : '';
    throw new RepozoError(
      `${output} is in use: ${path} is locked${who} (a server serving it?); stop it before restoring over it`,
      { cause: e },
    );
  }
}

/** restore() once the chain is known and the output locked. */
async function restoreChain(
  options: RestoreOptions,
  chain: DatLine[],
  total: number,
  limit: Uint8Array | null,
): Promise<RestoreResult> {
  const { repository, output } = options;
  const progress = options.onProgress ?? (() => {});
  const log = options.log ?? (() => {});
  const until = options.until ? checkDate(options.until) : null;
  const cutter = limit ? new TransactionCutter(limit) : null;
  const part = `${output}.part`;
  const indexTmp = `${output}${INDEX_SUFFIX}.part`;
  let indexRestored = false;
  try {
    const out = await open(part, 'w');
    try {
      let written = 0;
      progress('restore', 0, total);
      for (const line of chain) {
        const path = repoPath(repository, line.name);
        const hash = createHash('md5');
        const n = await readBackupFile(path, async (chunk) => {
          // nothing past the size the .dat records, even from a file that grew
          if (written + chunk.length > line.end)
            throw new VerificationFail(`${path} is more than ${line.end - line.start} bytes`);
          hash.update(chunk);
          // past the cut, the rest is only checked
          const keep = cutter ? cutter.feed(chunk, written) : chunk.length;
          if (keep > 0) await out.write(chunk.subarray(0, keep));
          written += chunk.length;
          progress('restore', written, total);
        });
        if (n !== line.end - line.start)
          throw new VerificationFail(`${path} is ${n} bytes, should be ${line.end - line.start} bytes`);
        const sum = hash.digest('hex');
        if (sum !== line.md5)
          throw new VerificationFail(`${path} has checksum ${sum} instead of ${line.md5}`);
        log(`restored ${path}: ${n} bytes, md5 ${sum}`);
      }
      if (cutter?.cut != null) {
        // (up to 15 bytes of a header split between two chunks went out before the cut was known)
        await out.truncate(cutter.cut);
        log(`cut at byte ${cutter.cut}, before the first transaction after ${until}`);
      }
      await out.sync();
    } finally {
      await out.close();
    }
    // the last backup's index, when it is valid for exactly these bytes
    const last = repoPath(repository, stemOf(chain[chain.length - 1].name));
    const contents = await openIndexFile(last).catch((e: unknown) => {
      log(`not restoring ${last}${INDEX_SUFFIX}: ${(e as Error).message}`);
      return null;
    });
    if (contents && cutter?.cut != null) {
      await contents.index.dispose();
      log(`not restoring ${last}${INDEX_SUFFIX}: it covers transactions after ${until}`);
    } else if (contents) {
      const pos = contents.pos;
      await contents.index.dispose();
      if (pos === total) {
        await writeAtomically(indexTmp, () => copyChunks(last + INDEX_SUFFIX), false);
        indexRestored = true;
      } else log(`not restoring ${last}${INDEX_SUFFIX}: it ends at ${pos}, the backup at ${total}`);
    }
    // a stale index must not sit next to the new data (the storage would check it, and scan)
    await unlink(output + INDEX_SUFFIX).catch(() => {});
    await rename(part, output);
    if (indexRestored) await rename(indexTmp, output + INDEX_SUFFIX);
    await fsyncDirectory(dirname(output) || '.');
  } catch (e) {
    await unlink(part).catch(() => {});
    await unlink(indexTmp).catch(() => {});
    throw e;
  }
  const cut = cutter?.cut ?? null;
  return { files: chain.map((l) => l.name), bytes: cut ?? total, cut: cut !== null, index: indexRestored };
}

/** The seconds since the epoch of a yyyy-mm-dd[-hh[-mm[-ss[.ffffff]]]] UTC date (its start). */
export function untilSeconds(date: string): number {
  const f = date.split('-').map(Number);
  const s = f[5] ?? 0;
  return Date.UTC(f[0], f[1] - 1, f[2], f[3] ?? 0, f[4] ?? 0, Math.floor(s)) / 1000 + (s - Math.floor(s));
}

/**
 * Follows the transactions of a data file as its bytes stream by, to find where the first one with a tid past
 * `limit` starts (`cut`). Each transaction header starts with its tid and its length (8 + 8 bytes).
 */
export class TransactionCutter {
  /** where the next transaction starts (after the 4-byte file header) */
  private next = 4;
  private readonly head = Buffer.alloc(16);
  private have = 0;
  cut: number | null = null;

  constructor(private readonly limit: Uint8Array) {}

  /**
   * Takes the bytes at file offset `at`; returns how many of them may come before the cut, as far as known: a
   * header split between chunks is decided with the next one, so the caller truncates at `cut` in the end.
   */
  feed(chunk: Buffer, at: number): number {
    const end = at + chunk.length;
    while (this.cut === null && this.next < end) {
      const from = this.next + this.have - at;
      const take = Math.min(16 - this.have, chunk.length - from);
      chunk.copy(this.head, this.have, from, from + take);
      this.have += take;
      if (this.have < 16) break;
      this.have = 0;
      if (Buffer.compare(this.head.subarray(0, 8), this.limit) > 0) this.cut = this.next;
      else this.next += Number(this.head.readBigUInt64BE(8)) + 8;
    }
    return this.cut === null ? chunk.length : Math.max(0, Math.min(chunk.length, this.cut - at));
  }
}

async function* copyChunks(path: string): AsyncGenerator<Buffer> {
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) yield chunk as Buffer;
}

export interface VerifyRepositoryOptions {
  repository: string;
  /** -Q: sizes only, no md5 */
  quick?: boolean;
  onProgress?: RepozoProgress;
}

/**
 * repozo -V: checks the size and md5 of every file the newest full backup's .dat names; VerificationFail at
 * the first that differs. Returns the lines checked.
 */
export async function verifyRepository(options: VerifyRepositoryOptions): Promise<DatLine[]> {
  const { repository } = options;
  const progress = options.onProgress ?? (() => {});
  const names = await findFiles(repository, null);
  if (names.length === 0) throw new NoFiles('No files in repository');
  const dat = await readDat(repository, names[0]);
  const total = dat.reduce((s, l) => s + l.end - l.start, 0);
  let done = 0;
  for (const line of dat) {
    const path = repoPath(repository, line.name);
    const expected = line.end - line.start;
    const compressed = path.endsWith('z');
    let size: number;
    let sum: string | null = null;
    if (options.quick && !compressed) {
      size = await stat(path).then(
        (s) => s.size,
        (e: unknown) => {
          throw new VerificationFail(`${path} is missing`, { cause: e });
        },
      );
    } else {
      const hash = createHash('md5');
      let read = 0;
      size = await readBackupFile(path, (chunk) => {
        if (!options.quick) hash.update(chunk);
        read += chunk.length;
        progress('verify', Math.min(done + read, total), total);
      });
      if (!options.quick) sum = hash.digest('hex');
    }
    const when = compressed ? ' (when uncompressed)' : '';
    if (size !== expected)
      throw new VerificationFail(`${path} is ${size} bytes${when}, should be ${expected} bytes`);
    if (sum !== null && sum !== line.md5)
      throw new VerificationFail(`${path} has checksum ${sum}${when} instead of ${line.md5}`);
    done += expected;
    progress('verify', done, total);
  }
  return dat;
}
