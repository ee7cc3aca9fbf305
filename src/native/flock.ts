// flock(2) for zeo-ts: a small N-API addon of ours (native/flock.c), built from source when the package is
// installed (scripts/build-native.mjs, run by `npm ci` / `npm install`). Node has no flock of its own, and
// ZODB's Data.fs.lock is an flock (zc.lockfile), which fcntl record locks or a lock directory would not
// respect. There is no fallback: without the addon, taking a lock fails with NativeAddonError.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's functions; see native/flock.c. */
export interface FlockBinding {
  /** 0 on success, 'locked' when a conflicting lock is held (nonblocking only), else the errno */
  flock(fd: number, exclusive: boolean, nonblocking: boolean): 'locked' | number;
  /** 0, or the errno */
  unlock(fd: number): number;
}

/** The native flock addon is missing or cannot be loaded. */
export class NativeAddonError extends Error {
  override name = 'NativeAddonError';
}

/** Where node-gyp puts the addon, relative to the package root. */
export const ADDON_PATH = join('build', 'Release', 'zeo_flock.node');

/** The package root: the nearest directory above this module holding a package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new NativeAddonError(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

let binding: FlockBinding | null = null;

/**
 * The loaded addon. Throws NativeAddonError, saying how to build it, when it is not built or does not load;
 * `purpose` (e.g. "lock '/srv/Data.fs.lock'") names what needed it.
 */
export function flockBinding(purpose = 'take a file lock'): FlockBinding {
  if (binding) return binding;
  let root: string;
  try {
    root = packageRoot();
  } catch (e) {
    throw new NativeAddonError(`zeo-ts cannot ${purpose}: ${(e as Error).message}`);
  }
  const file = join(root, ADDON_PATH);
  let reason: string;
  if (!existsSync(file)) {
    reason = `${file} was not built`;
  } else {
    try {
      const b = createRequire(import.meta.url)(file) as Partial<FlockBinding>;
      if (typeof b.flock !== 'function' || typeof b.unlock !== 'function') {
        throw new Error('it does not export flock and unlock');
      }
      binding = b as FlockBinding;
      return binding;
    } catch (e) {
      reason = `${file} does not load: ${(e as Error).message}`;
    }
  }
  throw new NativeAddonError(
    `zeo-ts cannot ${purpose}: its native flock addon is unavailable (${reason}). ` +
      'zeo-ts locks Data.fs.lock with flock(2), as ZODB and runzeo do, and opens no storage without it. ' +
      'The addon is built from source when zeo-ts is installed (npm ci / npm install), with node-gyp, which ' +
      'needs python3, make and a C compiler (Debian: apt-get install build-essential python3); ' +
      `after installing them, run \`npm run build:native\` in ${root}, or, where zeo-ts is a dependency, ` +
      '`npm rebuild zeo-ts` (first `npm install-scripts approve zeo-ts` if your npm blocks install scripts).',
  );
}
