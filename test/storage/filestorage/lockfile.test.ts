import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LockError, LockFile } from '../../../src/storage/filestorage/lockfile.js';
import { interopTest, type Oracle } from '../../helpers/oracle.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zeo-ts-lock-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lockModule = new URL('../../../src/storage/filestorage/lockfile.js', import.meta.url);

function heldBy(path: string, pid: number) {
  return (e: unknown) => {
    assert.ok(e instanceof LockError, `a LockError, not ${String(e)}`);
    assert.equal(e.path, path);
    assert.equal(e.pid, pid);
    assert.ok(e.message.startsWith(`Couldn't lock '${path}': held by pid ${pid}`), e.message);
    return true;
  };
}

test('acquire writes " pid\\n", excludes a second holder even in this process, and release lets go', async () => {
  const path = join(dir, 'Data.fs.lock');
  const lock = await LockFile.acquire(path);
  assert.ok(lock.held);
  assert.equal(await readFile(path, 'latin1'), ` ${process.pid}\n`);
  await assert.rejects(LockFile.acquire(path), heldBy(path, process.pid));
  await assert.rejects(LockFile.acquire(path), /\(this process\)$/);
  await lock.release();
  assert.ok(!lock.held);
  await lock.release(); // twice is fine
  assert.equal(await readFile(path, 'latin1'), ` ${process.pid}\n`, 'the file stays, as ZODB leaves it');
  const again = await LockFile.acquire(path);
  await again.release();
});

test('an existing lock file is overwritten from the start and truncated', async () => {
  const path = join(dir, 'old.lock');
  await writeFile(path, 'a much longer line left by someone else\nand more\n');
  const lock = await LockFile.acquire(path);
  try {
    assert.equal(await readFile(path, 'latin1'), ` ${process.pid}\n`);
  } finally {
    await lock.release();
  }
});

test('the content template takes {pid} and {hostname}, as zc.lockfile', async () => {
  const path = join(dir, 'templ.lock');
  const { hostname } = await import('node:os');
  const lock = await LockFile.acquire(path, { contentTemplate: '{pid}/{hostname}' });
  try {
    assert.equal(await readFile(path, 'latin1'), ` ${process.pid}/${hostname()}\n`);
    await assert.rejects(LockFile.acquire(path), heldBy(path, process.pid));
  } finally {
    await lock.release();
  }
});

test('a lock file without a pid: held by another process', async () => {
  const path = join(dir, 'nopid.lock');
  await writeFile(path, '');
  const lock = await LockFile.acquire(path, { contentTemplate: 'someone' });
  try {
    await assert.rejects(
      LockFile.acquire(path),
      (e: unknown) =>
        e instanceof LockError &&
        e.pid === null &&
        e.message === `Couldn't lock '${path}': held by another process (the lock file says 'someone')`,
    );
  } finally {
    await lock.release();
  }
});

/** Starts a node process that takes the lock at `path` and waits; resolves once it holds it. */
async function childHolding(path: string) {
  const code = `
    const { LockFile } = await import(${JSON.stringify(lockModule.href)});
    await LockFile.acquire(process.argv[1]);
    process.stdout.write('held\\n');
    setInterval(() => {}, 1 << 30);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, path], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('held\n')) resolve();
    });
    child.on('exit', (c) => reject(new Error(`the child exited with ${c}: ${err}`)));
  });
  return child;
}

test('a process killed with SIGKILL while holding the lock releases it', async () => {
  const path = join(dir, 'killed.lock');
  const child = await childHolding(path);
  try {
    await assert.rejects(LockFile.acquire(path), heldBy(path, child.pid!));
  } finally {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  const lock = await LockFile.acquire(path);
  assert.equal(await readFile(path, 'latin1'), ` ${process.pid}\n`);
  await lock.release();
});

test('without the native addon, acquire fails loudly and says how to build it', async () => {
  // A copy of the compiled sources in a package that has no build/ directory.
  const pkg = await mkdtemp(join(tmpdir(), 'zeo-ts-noaddon-'));
  try {
    await writeFile(join(pkg, 'package.json'), '{"type": "module"}\n');
    await cp(fileURLToPath(new URL('../../../src', import.meta.url)), join(pkg, 'dist', 'src'), {
      recursive: true,
    });
    const mod = new URL(`file://${join(pkg, 'dist', 'src', 'storage', 'filestorage', 'lockfile.js')}`);
    const code = `
      const { LockFile } = await import(${JSON.stringify(mod.href)});
      try { await LockFile.acquire(process.argv[1]); console.log('acquired'); }
      catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, join(dir, 'noaddon.lock')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await once(child, 'exit');
    const r = JSON.parse(out) as { name: string; message: string };
    assert.equal(r.name, 'NativeAddonError');
    assert.match(r.message, /cannot lock '.*noaddon\.lock': its native flock addon is unavailable/);
    assert.match(r.message, /was not built/);
    assert.match(r.message, /python3, make and a C compiler/);
    assert.match(r.message, /npm run build:native/);
  } finally {
    await rm(pkg, { recursive: true, force: true });
  }
});

// ---- against zc.lockfile and ZODB in the oracle ----

const PY_HOLD = `
import builtins, os, zc.lockfile
held = builtins.__dict__.setdefault('_zeo_ts_held', {})
held[args] = zc.lockfile.LockFile(args)
result = os.getpid()
`;
const PY_RELEASE = `
import builtins
builtins._zeo_ts_held.pop(args).close()
`;
const PY_TRY = `
import zc.lockfile
try:
    zc.lockfile.LockFile(args).close()
    result = 'acquired'
except zc.lockfile.LockError as e:
    result = 'LockError: ' + str(e)
`;
const PY_TRY_FILESTORAGE = `
import zc.lockfile, ZODB.FileStorage
try:
    ZODB.FileStorage.FileStorage(args).close()
    result = 'opened'
except zc.lockfile.LockError as e:
    result = 'LockError: ' + str(e)
`;

const pyTry = (o: Oracle, path: string) => o.json<string>(PY_TRY, undefined, path);

interopTest(
  'our lock excludes zc.lockfile and ZODB FileStorage, and theirs excludes ours',
  async (oracle) => {
    const data = join(dir, 'Data.fs');
    const path = data + '.lock';

    // We hold it: zc.lockfile and FileStorage are refused, with zc.lockfile's message.
    const ours = await LockFile.acquire(path);
    const pyText = `Couldn't lock '${path}'`; // str(LockError) in zc.lockfile
    const pyMessage = `LockError: ${pyText}`;
    assert.equal(await pyTry(oracle, path), pyMessage);
    assert.equal(await oracle.json(PY_TRY_FILESTORAGE, undefined, data), pyMessage);
    await ours.release();

    // Released: both can take it.
    assert.equal(await pyTry(oracle, path), 'acquired');
    assert.equal(await oracle.json(PY_TRY_FILESTORAGE, undefined, data), 'opened');

    // Python holds it (kept alive in the oracle between calls): we are refused, naming its pid.
    const pyPid = await oracle.json<number>(PY_HOLD, undefined, path);
    assert.notEqual(pyPid, process.pid);
    await assert.rejects(LockFile.acquire(path), heldBy(path, pyPid));
    await assert.rejects(LockFile.acquire(path), (e: unknown) =>
      (e as Error).message.startsWith(`${pyText}: `),
    );
    await oracle.run(PY_RELEASE, undefined, path);

    // Released by Python: ours again, and Python is refused again.
    const again = await LockFile.acquire(path);
    assert.equal(await pyTry(oracle, path), pyMessage);
    await again.release();
    assert.equal(await pyTry(oracle, path), 'acquired');
  },
);

interopTest('the lock file holds what zc.lockfile writes, fresh and over an old file', async (oracle) => {
  const pyPid = await oracle.json<number>('import os\nresult = os.getpid()');
  const norm = (b: Buffer, pid: number) => b.toString('latin1').replace(String(pid), 'PID');
  for (const old of [null, 'a much longer line left by someone else\nand more\n', ' 1\n']) {
    const mine = join(dir, `content-ours-${String(old?.length)}.lock`);
    const theirs = join(dir, `content-py-${String(old?.length)}.lock`);
    if (old !== null) {
      await writeFile(mine, old);
      await writeFile(theirs, old);
    }
    await oracle.run(PY_HOLD, undefined, theirs);
    const pyHeld = await readFile(theirs);
    await oracle.run(PY_RELEASE, undefined, theirs);
    const lock = await LockFile.acquire(mine);
    const ourHeld = await readFile(mine);
    await lock.release();
    assert.equal(norm(ourHeld, process.pid), norm(pyHeld, pyPid), `over ${JSON.stringify(old)}`);
    assert.equal(norm(ourHeld, process.pid), ' PID\n');
    // after release the content stays, on both sides
    assert.deepEqual(await readFile(mine), ourHeld);
    assert.deepEqual(await readFile(theirs), pyHeld);
  }
  // ZODB's FileStorage writes the same into Data.fs.lock.
  const data = join(dir, 'content.fs');
  const fsHeld = await oracle.json<string>(
    `import ZODB.FileStorage
fs = ZODB.FileStorage.FileStorage(args)
try:
    result = open(args + '.lock', 'rb').read().decode('latin1')
finally:
    fs.close()`,
    undefined,
    data,
  );
  assert.equal(fsHeld.replace(String(pyPid), 'PID'), ' PID\n');
});
