// A blob directory as ZODB lays it out (ZODB/blob.py: FilesystemHelper, BushyLayout, LawnLayout,
// rename_or_copy_blob, set_not_writable; FileStorage._remove_blob_files_tagged_for_removal_during_pack), so a
// runzeo and zeo-ts can take turns on one.
//
//   <dir>/.layout                     'bushy' or 'lawn' (no newline; read with whitespace stripped)
//   <dir>/tmp/                        uploads (ZODB's temporaryDirectory()), on the blobs' file system
//   bushy: <dir>/0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x2a/<tid_repr>.blob     one directory level per oid byte
//   lawn:  <dir>/0x2a/<tid_repr>.blob                                       one directory per oid (oid_repr)
//
// tid_repr / oid_repr: '0x' and the hex digits without leading zeros, at least two (an even number).
// Permissions are ZODB's: directories get the process's default mode (0o777 less the umask: ZODB no longer
// sets them); a committed blob file is made read-only (its write bits cleared, read bits copied from its
// directory). The layout is chosen as ZODB's auto_layout_select does: the `.layout` marker when there is
// one; else 'bushy' for a directory that does not exist or holds only hidden entries, 'lawn' for one that
// holds files (a blob directory from before markers).

import { randomBytes } from 'node:crypto';
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Global, Unpickler } from '../../pickle/index.js';
import type { Oid, Tid } from '../ids.js';
import { compareIds, oidRepr, tidRepr } from '../ids.js';

export const LAYOUT_MARKER = '.layout';
export const BLOB_SUFFIX = '.blob';
/** ZODB's savepoint files (blob.py SAVEPOINT_SUFFIX); not committed blobs. */
export const SAVEPOINT_SUFFIX = '.spb';
export const TMP_DIR_NAME = 'tmp';

export type BlobLayout = 'bushy' | 'lawn';
export type BlobLogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';
export type BlobLog = (level: BlobLogLevel, message: string) => void;

/** A `.layout` marker naming no layout, or one that disagrees with the layout asked for (ZODB: ValueError). */
export class BlobDirectoryError extends Error {
  override name = 'BlobDirectoryError';
}

export interface BlobDirectoryOptions {
  /** 'automatic' (the default) reads the marker or guesses as ZODB does; a name must agree with the marker */
  layout?: 'automatic' | BlobLayout;
  /**
   * Empty `tmp/` on open (default true): uploads left by a server that stopped mid-transaction. ZODB leaves
   * them; open the directory before any client can upload (a ZEO client with a shared blob directory writes
   * its uploads there).
   */
  cleanTmp?: boolean;
  log?: BlobLog;
}

function hex2(b: number): string {
  return (b < 16 ? '0' : '') + b.toString(16);
}

/**
 * ZODB.utils.repr_to_oid: '0x' optional, hex of an even length, left-padded to 8 bytes. More than 8 bytes is
 * null here (Python returns the longer string, which names no object).
 */
function reprToId(s: string): Uint8Array | null {
  const h = s.startsWith('0x') ? s.slice(2) : s;
  if (h.length % 2 !== 0 || h.length > 16 || !/^[0-9a-fA-F]*$/.test(h)) return null;
  const raw = Buffer.from(h, 'hex');
  const out = new Uint8Array(8);
  out.set(raw, 8 - raw.length);
  return out;
}

const BUSHY_PATH = new RegExp(`^(?:0x[0-9a-f]{1,2}\\${sep}){7}0x[0-9a-f]{1,2}$`);

/** The layout's path of an oid's directory, relative to the blob directory (BushyLayout/LawnLayout.oid_to_path). */
export function oidToPath(layout: BlobLayout, oid: Oid): string {
  if (oid.length !== 8) throw new RangeError(`an oid has 8 bytes, not ${oid.length}`);
  if (layout === 'lawn') return oidRepr(oid);
  const parts: string[] = [];
  for (let i = 0; i < 8; i++) parts.push('0x' + hex2(oid[i]));
  return parts.join(sep);
}

/** The oid of a relative oid directory path, or null when it is none (path_to_oid's ValueError). */
export function pathToOid(layout: BlobLayout, path: string): Oid | null {
  if (layout === 'lawn') {
    if (path === '' || path.includes(sep)) return null;
    return reprToId(path);
  }
  if (!BUSHY_PATH.test(path)) return null;
  const out = new Uint8Array(8);
  const parts = path.split(sep);
  for (let i = 0; i < 8; i++) {
    const h = parts[i].slice(2);
    if (h.length !== 2) return null; // binascii.unhexlify('1'): odd-length string
    out[i] = parseInt(h, 16);
  }
  return out;
}

/** The relative path of a committed blob file (getBlobFilePath). */
export function blobFilePath(layout: BlobLayout, oid: Oid, tid: Tid): string {
  return join(oidToPath(layout, oid), tidRepr(tid) + BLOB_SUFFIX);
}

/**
 * ZODB.blob.is_blob_record: the record's class metadata (its first pickle) is exactly the global ZODB.blob.Blob.
 * Anything that does not load is not a blob record.
 */
export function isBlobRecord(data: Uint8Array | null): boolean {
  if (!data || data.length === 0) return false;
  if (Buffer.from(data.buffer, data.byteOffset, data.byteLength).indexOf('ZODB.blob', 0, 'latin1') < 0) {
    return false;
  }
  try {
    const v = new Unpickler(data).load();
    return v instanceof Global && v.module === 'ZODB.blob' && v.name === 'Blob';
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

function isCode(e: unknown, ...codes: string[]): boolean {
  return codes.includes((e as NodeJS.ErrnoException)?.code ?? '');
}

/** ZODB's auto_layout_select. */
async function autoLayout(dir: string, log: BlobLog): Promise<string> {
  try {
    const marker = (await readFile(join(dir, LAYOUT_MARKER), 'utf8')).trim();
    log('debug', `Blob directory \`${dir}\` has layout marker set. Selected \`${marker}\` layout. `);
    return marker;
  } catch (e) {
    if (!isCode(e, 'ENOENT')) throw e;
  }
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (!isCode(e, 'ENOENT')) throw e;
    log('info', `Blob directory ${dir} does not exist. Selected \`bushy\` layout. `);
    return 'bushy';
  }
  if (names.some((n) => !n.startsWith('.'))) {
    log('info', `Blob directory \`${dir}\` is used but has no layout marker set. Selected \`lawn\` layout. `);
    return 'lawn';
  }
  log(
    'info',
    `Blob directory \`${dir}\` is unused and has no layout marker set. Selected \`bushy\` layout. `,
  );
  return 'bushy';
}

/** A tiny FIFO mutex: directory creation (commit) and removal of emptied directories (pack) take turns. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => {},
      () => {},
    );
    return result;
  }
}

export interface BlobPackRemovalOptions {
  /** move what goes to `<dir>.old` and hard-link the rest there (ZODB's pack_keep_old, default true) */
  keepOld?: boolean;
}

export class BlobDirectory {
  /** absolute, without a trailing separator (ZODB's FileStorage.blob_dir) */
  readonly dir: string;
  readonly layout: BlobLayout;
  /** `<dir>/tmp`: uploads, renamed into place by commit */
  readonly tmpDir: string;
  readonly #log: BlobLog;
  readonly #mutex = new Mutex();

  private constructor(dir: string, layout: BlobLayout, log: BlobLog) {
    this.dir = dir;
    this.layout = layout;
    this.tmpDir = join(dir, TMP_DIR_NAME);
    this.#log = log;
  }

  /**
   * Opens (creating as needed) a blob directory as FilesystemHelper(dir, layout).create() does: the directory,
   * `tmp/`, and the `.layout` marker when there is none; a marker that disagrees with `options.layout` is a
   * BlobDirectoryError. Then empties `tmp/` unless `options.cleanTmp` is false.
   */
  static async open(dir: string, options: BlobDirectoryOptions = {}): Promise<BlobDirectory> {
    const log = options.log ?? (() => {});
    const abs = resolve(dir);
    const chosen = options.layout ?? 'automatic';
    const name = chosen === 'automatic' ? await autoLayout(abs, log) : chosen;
    if (name !== 'bushy' && name !== 'lawn') {
      throw new BlobDirectoryError(
        `blob directory ${abs}: unknown layout \`${name}\` (in its ${LAYOUT_MARKER})`,
      );
    }
    if (name === 'lawn') {
      log(
        'warning',
        'The `lawn` blob directory layout is deprecated due to scalability issues on some file systems, ' +
          'please consider migrating to the `bushy` layout.',
      );
    }
    const bd = new BlobDirectory(abs, name, log);
    if (!(await exists(abs))) {
      await mkdir(abs, { recursive: true });
      log('info', `Blob directory '${abs}${sep}' does not exist. Created new directory.`);
    }
    if (!(await exists(bd.tmpDir))) {
      await mkdir(bd.tmpDir, { recursive: true });
      log('info', `Blob temporary directory '${bd.tmpDir}' does not exist. Created new directory.`);
    }
    const markerPath = join(abs, LAYOUT_MARKER);
    let marker: string | null = null;
    try {
      marker = (await readFile(markerPath, 'utf8')).trim();
    } catch (e) {
      if (!isCode(e, 'ENOENT')) throw e;
    }
    if (marker === null) {
      try {
        await writeFile(markerPath, name, { flag: 'wx' });
      } catch (e) {
        if (!isCode(e, 'EEXIST')) throw e;
        marker = (await readFile(markerPath, 'utf8')).trim();
      }
    }
    if (marker !== null && marker !== name) {
      throw new BlobDirectoryError(
        `Directory layout \`${name}\` selected for blob directory ${abs}${sep}, but marker found for layout \`${marker}\``,
      );
    }
    if (options.cleanTmp ?? true) await bd.cleanTmp();
    return bd;
  }

  /** Removes everything in `tmp/`. */
  async cleanTmp(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.tmpDir);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return 0;
      throw e;
    }
    for (const n of names) await rm(join(this.tmpDir, n), { recursive: true, force: true });
    if (names.length) this.#log('info', `Removed ${names.length} leftover upload(s) from ${this.tmpDir}`);
    return names.length;
  }

  // -------------------------------------------------------------------------------------------------------
  // names

  /** The directory of an oid's revisions (getPathForOID). */
  oidPath(oid: Oid): string {
    return join(this.dir, oidToPath(this.layout, oid));
  }

  /** The file of a committed revision (getBlobFilename). */
  path(oid: Oid, tid: Tid): string {
    return join(this.dir, blobFilePath(this.layout, oid, tid));
  }

  /** The oid of an oid directory (absolute, or relative to the blob directory); null when it names none. */
  oidForPath(path: string): Oid | null {
    let rel = path;
    if (path.startsWith(this.dir + sep)) rel = path.slice(this.dir.length + 1);
    else if (path === this.dir) rel = '';
    return pathToOid(this.layout, rel);
  }

  /** (oid, tid) of a committed blob file's path (splitBlobFilename); null for any other path. */
  splitBlobFilename(filename: string): { oid: Oid; tid: Tid } | null {
    if (!filename.endsWith(BLOB_SUFFIX)) return null;
    const oid = this.oidForPath(dirname(filename));
    const tid = reprToId(basename(filename).slice(0, -BLOB_SUFFIX.length));
    return oid && tid ? { oid, tid } : null;
  }

  // -------------------------------------------------------------------------------------------------------
  // revisions

  async exists(oid: Oid, tid: Tid): Promise<boolean> {
    return exists(this.path(oid, tid));
  }

  /**
   * Moves an upload into place as the revision (oid, tid), as FileStorage's _blob_storeblob: creates the oid's
   * directory, renames `srcFile` (or, when the rename fails, e.g. across file systems, copies it and removes the
   * source), then makes the file read-only. An existing file of that revision is replaced. Returns its path.
   */
  async commit(oid: Oid, tid: Tid, srcFile: string): Promise<string> {
    const target = this.path(oid, tid);
    await this.#mutex.run(async () => {
      await mkdir(dirname(target), { recursive: true });
      try {
        await rename(srcFile, target);
      } catch {
        // rename_or_copy_blob: any OSError falls back to a copy (which reports a missing source)
        await copyFile(srcFile, target);
        await unlink(srcFile);
        this.#log('debug', `Copied blob file '${srcFile}' to '${target}'.`);
      }
    });
    await setNotWritable(target);
    return target;
  }

  /**
   * A new empty file in `tmp/` for an upload (tempfile.mkstemp: mode 0o600, a random name), closed; the caller
   * writes it and hands it to commit.
   */
  async tempFile(prefix = 'tmp', suffix = '.tmp'): Promise<string> {
    for (;;) {
      const name = prefix + randomBytes(6).toString('base64url').replace(/[-_]/g, 'x') + suffix;
      const p = join(this.tmpDir, name);
      try {
        const fh = await open(p, 'wx', 0o600);
        await fh.close();
        return p;
      } catch (e) {
        if (!isCode(e, 'EEXIST')) throw e;
      }
    }
  }

  /**
   * Copies the committed revision (oid, tid) to a new file in `tmp/` (FileStorage's undo of a blob record copies
   * the blob it restores) and returns its path; ENOENT when there is no such revision.
   */
  async copyToTemp(oid: Oid, tid: Tid): Promise<string> {
    const tmp = await this.tempFile();
    try {
      await copyFile(this.path(oid, tid), tmp);
      await chmod(tmp, 0o600);
    } catch (e) {
      await unlink(tmp).catch(() => {}); // (the copy's error is the one to report)
      throw e;
    }
    return tmp;
  }

  /**
   * Removes a committed revision (remove_committed); with `prune`, then the directories left empty, up to the
   * blob directory (as pack does). False when it was not there.
   */
  async remove(oid: Oid, tid: Tid, options: { prune?: boolean } = {}): Promise<boolean> {
    const p = this.path(oid, tid);
    try {
      await unlink(p);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return false;
      throw e;
    }
    if (options.prune) await this.#pruneEmpty(p);
    return true;
  }

  /** Removes an oid's directory with all its revisions (remove_committed_dir); `prune` as in remove. */
  async removeOid(oid: Oid, options: { prune?: boolean } = {}): Promise<boolean> {
    const p = this.oidPath(oid);
    if (!(await exists(p))) return false;
    await rm(p, { recursive: true, force: true });
    if (options.prune) await this.#pruneEmpty(p);
    return true;
  }

  /** The tids of an oid's committed revisions, in tid order (none when it has no directory). */
  async revisions(oid: Oid): Promise<Tid[]> {
    let names: string[];
    try {
      names = await readdir(this.oidPath(oid));
    } catch (e) {
      if (isCode(e, 'ENOENT', 'ENOTDIR')) return [];
      throw e;
    }
    const tids: Tid[] = [];
    for (const n of names) {
      if (!n.endsWith(BLOB_SUFFIX)) continue;
      const tid = reprToId(n.slice(0, -BLOB_SUFFIX.length));
      if (tid) tids.push(tid);
    }
    return tids.sort(compareIds);
  }

  /** Every oid directory (listOIDs), in name order: bushy walks its 8 levels, lawn its top level. */
  async *listOids(): AsyncGenerator<{ oid: Oid; path: string }> {
    if (this.layout === 'lawn') {
      for (const n of (await readdir(this.dir, { withFileTypes: true })).sort(byName)) {
        if (!n.isDirectory()) continue;
        const oid = pathToOid('lawn', n.name);
        if (oid) yield { oid, path: join(this.dir, n.name) };
      }
      return;
    }
    yield* this.#walkBushy(this.dir, []);
  }

  async *#walkBushy(dir: string, rel: string[]): AsyncGenerator<{ oid: Oid; path: string }> {
    if (rel.length === 8) {
      const oid = pathToOid('bushy', rel.join(sep));
      if (oid) yield { oid, path: dir };
      return;
    }
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isCode(e, 'ENOENT')) return;
      throw e;
    }
    for (const n of entries.sort(byName)) {
      if (n.isDirectory() && /^0x[0-9a-f]{1,2}$/.test(n.name))
        yield* this.#walkBushy(join(dir, n.name), [...rel, n.name]);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // pack

  /** `<dir>.old`, where pack keeps what it removed (with pack_keep_old). */
  get oldDir(): string {
    return this.dir + '.old';
  }

  /** Removes `<dir>.old` (a pack starts so). */
  async removeOld(): Promise<void> {
    await rm(this.oldDir, { recursive: true, force: true });
  }

  /**
   * FileStorage._remove_blob_files_tagged_for_removal_during_pack. `removed` lists what the pack dropped, in
   * the order it found it: an 8-byte oid (an object garbage collected: its whole directory goes) or 16 bytes,
   * oid + tid (one revision). With keepOld (ZODB's default) what goes is moved into `<dir>.old` and every
   * remaining blob file is hard-linked there, so `<dir>.old` holds the blobs of Data.fs.old; else it is
   * deleted. Directories left empty are removed, up to the blob directory. Returns how many entries went.
   */
  async applyPackRemovals(
    removed: Iterable<Uint8Array>,
    options: BlobPackRemovalOptions = {},
  ): Promise<number> {
    const keepOld = options.keepOld ?? true;
    const old = this.oldDir;
    const lblob = this.dir.length;
    if (keepOld) {
      await mkdir(old).catch((e: unknown) => {
        if (!isCode(e, 'EEXIST')) throw e;
      });
      await link(join(this.dir, LAYOUT_MARKER), join(old, LAYOUT_MARKER)).catch((e: unknown) => {
        if (!isCode(e, 'EEXIST')) throw e;
      });
    }
    const moveToOld = async (path: string): Promise<void> => {
      const newPath = old + path.slice(lblob);
      await mkdir(dirname(newPath), { recursive: true });
      await rename(path, newPath);
    };
    let count = 0;
    for (const line of removed) {
      if (line.length === 8) {
        const path = this.oidPath(line);
        if (!(await exists(path))) continue; // already gone
        if (keepOld) await moveToOld(path);
        else await rm(path, { recursive: true, force: true });
        count++;
        await this.#pruneEmpty(path);
        continue;
      }
      if (line.length !== 16)
        throw new RangeError(
          `a pack removal names an oid (8 bytes) or oid+tid (16), not ${line.length} bytes`,
        );
      const path = this.path(line.subarray(0, 8), line.subarray(8, 16));
      if (!(await exists(path))) continue;
      if (keepOld) await moveToOld(path);
      else await unlink(path);
      count++;
      await this.#pruneEmpty(path);
    }
    if (keepOld) await this.#linkAllInto(this.dir, old);
    return count;
  }

  /** Hard-links every `*.blob` file under `dir` to the same place under `old` (pack's second step). */
  async #linkAllInto(dir: string, old: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isCode(e, 'ENOENT')) return;
      throw e;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await this.#linkAllInto(p, old);
      else if (e.name.endsWith(BLOB_SUFFIX)) {
        const dest = old + p.slice(this.dir.length);
        await mkdir(dirname(dest), { recursive: true });
        await link(p, dest).catch((err: unknown) => {
          if (!isCode(err, 'EEXIST')) throw err;
        });
      }
    }
  }

  /**
   * maybe_remove_empty_dir_containing(path, level): removes the directory holding `path` when it is empty,
   * then its parents, stopping at the blob directory. Each check-and-remove takes the mutex, so a commit that
   * just created the directory keeps it.
   */
  async #pruneEmpty(path: string): Promise<void> {
    let p = dirname(path);
    while (p.length > this.dir.length && p.startsWith(this.dir + sep)) {
      const target = p;
      const removed = await this.#mutex.run(async () => {
        try {
          if ((await readdir(target)).length) return false;
          await rmdir(target);
          return true;
        } catch (e) {
          if (isCode(e, 'ENOENT', 'ENOTEMPTY', 'EEXIST')) return false;
          throw e;
        }
      });
      if (!removed) return;
      p = dirname(p);
    }
  }
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** ZODB.blob.set_not_writable: no write bits; the read bits of the containing directory added. */
export async function setNotWritable(path: string): Promise<void> {
  const mode = (await lstat(path)).mode & 0o7777;
  const dirMode = (await lstat(dirname(path))).mode & 0o444;
  await chmod(path, (mode & ~0o222) | dirMode);
}
