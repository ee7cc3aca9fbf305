// Data.fs.lock, taken exactly as ZODB takes it: zc.lockfile's LockFile (zc.lockfile 4.0), which FileStorage
// opens as LockFile(file_name + '.lock') unless read-only. On Unix it
//   - opens the file 'r+' (no truncation), or 'a+' (creating it) when that fails;
//   - takes flock(fd, LOCK_EX | LOCK_NB), and on failure closes it and raises LockError("Couldn't lock %r");
//   - writes " {pid}\n" (the content template, '{pid}' by default, between a space and a newline) at the
//     file position (the start for 'r+', the end for 'a+') and truncates there;
//   - on close unlocks and closes, leaving the file in place.
// The lock belongs to the open file, so it also excludes a second LockFile in the same process, and it goes
// away when the holding process dies, however it dies. Node opens files close-on-exec, so child processes
// never inherit it.

import { open, readFile, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { flockBinding } from '../../native/flock.js';
import { pyRepr } from '../../pickle/values.js';

/** zc.lockfile.LockError: the lock is held elsewhere, or flock failed. */
export class LockError extends Error {
  /** the Python class a ZEO client would raise */
  readonly pythonName: string = 'zc.lockfile.LockError';
  override name = 'LockError';
  constructor(
    message: string,
    readonly path: string,
    /** the pid the lock file names, when the lock is held and the file says by whom */
    readonly pid: number | null = null,
    /** the errno name when flock itself failed (not EWOULDBLOCK) */
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export interface LockFileOptions {
  /** zc.lockfile's content_template: `{pid}` and `{hostname}` are replaced; ZODB uses the default '{pid}' */
  contentTemplate?: string;
}

export class LockFile {
  private constructor(
    readonly path: string,
    private handle: FileHandle | null,
  ) {}

  /** Takes the lock at `path` (e.g. `Data.fs.lock`) or throws LockError at once; never waits. */
  static async acquire(path: string, options: LockFileOptions = {}): Promise<LockFile> {
    const flock = flockBinding(`lock ${pyRepr(path)}`);
    let fh: FileHandle;
    let appending = false;
    try {
      fh = await open(path, 'r+');
    } catch {
      // As zc.lockfile: whatever 'r+' failed with, try 'a+', which creates the file.
      fh = await open(path, 'a+');
      appending = true;
    }
    let r: 'locked' | number;
    try {
      r = flock.flock(fh.fd, true, true);
    } catch (e) {
      await fh.close();
      throw e;
    }
    if (r !== 0) {
      await fh.close();
      throw await lockError(path, r);
    }
    try {
      const template = options.contentTemplate ?? '{pid}';
      const content = Buffer.from(
        ` ${template.replaceAll('{pid}', String(process.pid)).replaceAll('{hostname}', hostname())}\n`,
      );
      if (appending) {
        // O_APPEND: the bytes go to the end whatever the position, which is also where Python truncates.
        await writeAll(fh, content, null);
      } else {
        await writeAll(fh, content, 0);
        await fh.truncate(content.length);
      }
    } catch (e) {
      flock.unlock(fh.fd);
      await fh.close();
      throw e;
    }
    return new LockFile(path, fh);
  }

  get held(): boolean {
    return this.handle !== null;
  }

  /** Unlocks and closes the file (which stays, as ZODB leaves it). Releasing twice does nothing. */
  async release(): Promise<void> {
    const fh = this.handle;
    if (!fh) return;
    this.handle = null;
    const err = flockBinding(`unlock ${pyRepr(this.path)}`).unlock(fh.fd);
    await fh.close(); // closing releases the lock in any case
    if (err !== 0) {
      const code = getSystemErrorName(-err);
      throw new LockError(`Couldn't unlock ${pyRepr(this.path)}: ${code}`, this.path, null, code);
    }
  }
}

async function writeAll(fh: FileHandle, data: Buffer, position: number | null): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(
      data,
      done,
      data.length - done,
      position === null ? null : position + done,
    );
    done += bytesWritten;
  }
}

/** zc.lockfile's message, "Couldn't lock 'path'", plus who holds it, read from the file. */
async function lockError(path: string, r: 'locked' | number): Promise<LockError> {
  const prefix = `Couldn't lock ${pyRepr(path)}`;
  if (r !== 'locked') {
    const code = getSystemErrorName(-r);
    return new LockError(`${prefix}: flock failed with ${code}`, path, null, code);
  }
  let content = '';
  try {
    content = await readFile(path, 'latin1');
  } catch {
    // unreadable: say only that it is held
  }
  const m = /^\s*(\d+)(.*?)\s*$/s.exec(content);
  if (!m) {
    const says = content.trim() ? ` (the lock file says ${pyRepr(content.trim())})` : '';
    return new LockError(`${prefix}: held by another process${says}`, path);
  }
  const pid = Number(m[1]);
  const notes = [m[2].trim(), pid === process.pid ? 'this process' : ''].filter((n) => n);
  const extra = notes.length ? ` (${notes.join('; ')})` : '';
  return new LockError(`${prefix}: held by pid ${pid}${extra}`, path, pid);
}
