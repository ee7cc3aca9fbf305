#!/usr/bin/env node
// Builds the flock addon (native/flock.c -> build/Release/zeo_flock.node) from source with node-gyp.
// `npm ci` / `npm install` run it as the package's "install" script; `npm run build:native` runs it by hand.
//
// It never downloads Node headers: it uses a configured nodedir (npm's `nodedir`, e.g. from .npmrc), else
// local headers (the running node's prefix, /usr, or node-gyp's header cache), else it stops and says so.
//
// A failure is loud. With --strict (npm run build:native) or ZEO_TS_REQUIRE_NATIVE=1 (CI) it exits 1, failing
// the install. Otherwise it prints why, exits 0 so the rest of zeo-ts (pickle codec, client) still installs,
// and opening a FileStorage then fails with a message saying how to build the addon: zeo-ts never takes
// Data.fs.lock some other way, since that would not exclude runzeo.
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, resolve } from 'node:path';
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'build', 'Release', 'zeo_flock.node');
const strict = process.argv.includes('--strict') || process.env.ZEO_TS_REQUIRE_NATIVE === '1';

function hasHeaders(dir) {
  return (
    !!dir &&
    (existsSync(join(dir, 'include', 'node', 'node_api.h')) || existsSync(join(dir, 'src', 'node_api.h')))
  );
}

function headersVersion(dir) {
  try {
    const h = readFileSync(join(dir, 'include', 'node', 'node_version.h'), 'utf8');
    const part = (n) => h.match(new RegExp(`#define NODE_${n}_VERSION (\\d+)`))?.[1];
    return `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  } catch {
    return null;
  }
}

// Where node-gyp would cache downloaded headers (its devdir); used only if they are already there.
function headerCache() {
  if (process.env.npm_config_devdir) return join(process.env.npm_config_devdir, process.versions.node);
  const base =
    process.platform === 'darwin'
      ? join(homedir(), 'Library', 'Caches')
      : (process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'));
  return join(base, 'node-gyp', process.versions.node);
}

/** The node-gyp arguments choosing the headers, or throws when only a download could provide them. */
function nodedirArgs() {
  const configured = process.env.npm_config_nodedir;
  if (configured) {
    // node-gyp reads npm_config_nodedir itself and then never downloads; check it is usable.
    if (!hasHeaders(configured)) {
      throw new Error(`the configured nodedir ${configured} has no include/node/node_api.h`);
    }
    return [];
  }
  const candidates = [
    process.config.variables?.node_prefix,
    resolve(dirname(process.execPath), '..'),
    '/usr',
    '/usr/local',
    headerCache(),
  ].filter((d, i, all) => d && all.indexOf(d) === i && hasHeaders(d));
  // Prefer headers of exactly this node; N-API is ABI-stable, so others of a recent enough version do too.
  const dir = candidates.find((d) => headersVersion(d) === process.versions.node) ?? candidates[0];
  if (!dir) {
    throw new Error(
      `no Node.js headers (include/node/node_api.h) found next to ${process.execPath}, in /usr or in ` +
        `${headerCache()}, and no nodedir is configured; zeo-ts does not download them. Install your ` +
        "distribution's Node.js development headers or set npm's nodedir (npm config set nodedir DIR).",
    );
  }
  return [`--nodedir=${dir}`];
}

/** node-gyp's entry script: the one npm gives lifecycle scripts, else npm's bundled copy. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency of ours; npm bundles one
  }
  if (process.env.npm_execpath) {
    candidates.push(
      resolve(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    );
  }
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  candidates.push(
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  const found = candidates.find((c) => c && c.endsWith('.js') && existsSync(c));
  if (!found) throw new Error('node-gyp not found (it comes with npm; is npm installed next to node?)');
  return found;
}

function onPath(cmd) {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

function missingTools() {
  if (process.platform === 'win32') return [];
  const missing = [];
  if (!onPath('make')) missing.push('make');
  const cc = process.env.CC?.split(' ')[0];
  if (!(cc ? onPath(cc) || existsSync(cc) : ['cc', 'gcc', 'clang'].some(onPath)))
    missing.push('a C compiler (cc)');
  if (!process.env.npm_config_python && !process.env.PYTHON && !onPath('python3')) missing.push('python3');
  return missing;
}

function build() {
  const args = [findNodeGyp(), 'rebuild', ...nodedirArgs()];
  // node-gyp's progress chatter is noise in `npm ci`; its errors still print (npm --loglevel overrides).
  if (!process.env.npm_config_loglevel) args.push('--loglevel=warn');
  console.error(`zeo-ts: building the flock addon: node ${args.join(' ')}`);
  // gyp's Makefiles link with $(CXX) unless LINK is set; the addon is C, so link with the C compiler and
  // need no C++ compiler.
  const env = { ...process.env };
  if (!env.LINK && process.platform !== 'win32') env.LINK = env.CC || 'cc';
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) throw new Error(`cannot run node-gyp: ${r.error.message}`);
  if (r.status !== 0) {
    const missing = missingTools();
    throw new Error(
      `node-gyp exited with ${r.status ?? r.signal}` +
        (missing.length ? `; missing: ${missing.join(', ')}` : ''),
    );
  }
  const b = createRequire(import.meta.url)(addon);
  if (typeof b.flock !== 'function' || typeof b.unlock !== 'function') {
    throw new Error(`${addon} does not export flock and unlock`);
  }
  console.error(`zeo-ts: built and loaded ${addon}`);
}

try {
  build();
} catch (e) {
  const bar = '!'.repeat(100);
  console.error(
    [
      bar,
      `zeo-ts: could not build its native flock addon (native/flock.c): ${e.message}`,
      'It is built with node-gyp, which needs python3, make and a C compiler (Debian/Ubuntu:',
      'apt-get install build-essential python3). Without it, zeo-ts refuses to open a FileStorage,',
      'because it takes Data.fs.lock with flock(2) exactly as runzeo does. Fix the cause, then run',
      `\`npm run build:native\` in ${root} (or \`npm rebuild zeo-ts\` where zeo-ts is a dependency).`,
      strict
        ? 'Failing the install (--strict or ZEO_TS_REQUIRE_NATIVE=1).'
        : 'The rest of zeo-ts is installed.',
      bar,
    ].join('\n'),
  );
  process.exit(strict ? 1 : 0);
}
