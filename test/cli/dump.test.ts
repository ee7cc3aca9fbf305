// `zeo dump` (src/cli/dump.ts) against ZODB's fsdump and FileIterator on the same files: the text is fsdump's
// line for line; --json lists the same transactions and records as ZODB's iterator, with the extension
// encoded by the documented rules; damaged files print what comes before the damage.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { pickleMetadata, pyToJson, textToJson } from '../../src/cli/dump.js';
import { dumps, PyFloat, tuple } from '../../src/pickle/index.js';
import { decodeTransaction } from '../../src/storage/filestorage/format.js';
import { fixturesDir } from '../helpers/corpus.js';
import { interopTest, repoRoot, type Oracle } from '../helpers/oracle.js';
import { PY_BUILD, withTempDir } from '../storage/filestorage/fs-oracle.js';

const zeo = resolve(repoRoot, 'bin/zeo');

function run(args: string[]) {
  const r = spawnSync(process.execPath, [zeo, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function fsdump(oracle: Oracle, path: string): Promise<string> {
  return oracle.json<string>(
    `
import io
from ZODB.FileStorage.fsdump import fsdump
f = io.StringIO()
fsdump(args['path'], f)
result = f.getvalue()
`,
    undefined,
    { path },
  );
}

/** ZODB's FileIterator over the file, with the extension encoded by dump.ts's rules (written again here). */
const PY_ITER = `
import math
from ZODB.FileStorage import FileIterator

def to_json(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if abs(v) <= 2 ** 53 else {'$int': str(v)}
    if isinstance(v, float):
        if math.isnan(v):
            return {'$float': 'nan'}
        if math.isinf(v):
            return {'$float': 'inf' if v > 0 else '-inf'}
        return v
    if isinstance(v, (bytes, bytearray)):
        return {'$bytes': bytes(v).hex()}
    if isinstance(v, (tuple, list)):
        return [to_json(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return {'$set': [to_json(x) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            return {k: to_json(x) for k, x in v.items()}
        return {'$dict': [[to_json(k), to_json(x)] for k, x in v.items()]}
    return {'$repr': repr(v)}

def text(b):
    try:
        return b.decode('utf-8')
    except UnicodeDecodeError:
        return {'$bytes': b.hex()}

out = []
for t in FileIterator(args['path']):
    recs = []
    for r in t:
        recs.append(dict(oid=r.oid.hex(), offset=r.pos, size=None if r.data is None else len(r.data),
                         backTid=r.data_txn.hex() if r.data_txn else None))
    out.append(dict(tid=t.tid.hex(), offset=t._tpos, status=t.status, user=text(t.user),
                    description=text(t.description), extension=to_json(t.extension), size=t._tend - t._tpos,
                    records=recs))
result = out
`;

/** More transactions on a file: an extension of every kind of value, user and description not UTF-8. */
const PY_MORE = `
from ZODB.FileStorage import FileStorage
from ZODB.Connection import TransactionMetaData
from ZODB._compat import dumps
from ZODB.utils import z64
fs = FileStorage(args['path'])
ext = {'user_name': 'h\\u00e9', 'n': 1, 'f': 1.5, 'one': 1.0, 'nan': float('nan'), 'inf': float('-inf'),
       'b': b'\\xff\\x00', 't': (1, 'two'), 'big': 2 ** 70, 'neg': -5, 'none': None, 'yes': True,
       's': {3}, 'nested': {'a': [1, 'x'], 4: 'an int key'}, '__proto__': 'kept'}
t = TransactionMetaData(b'\\xff\\xfeuser', 'd\\u00e9scription'.encode('utf-8'), ext)
fs.tpc_begin(t)
# class metadata as a (module, name) tuple of strings (get_pickle_metadata's general path), and no pickle
fs.store(fs.new_oid(), z64, dumps(('persistent.mapping', 'PersistentMapping'), 3) + dumps({'data': {}}, 3), '', t)
fs.store(fs.new_oid(), z64, b'not a pickle', '', t)
fs.tpc_vote(t)
fs.tpc_finish(t)
fs.close()
result = None
`;

async function buildFiles(oracle: Oracle, dir: string): Promise<string[]> {
  const wl = join(dir, 'Data.fs');
  await oracle.run(
    `import sys\nif args['fixtures'] not in sys.path: sys.path.insert(0, args['fixtures'])\n` +
      `import zodb_workload\nzodb_workload.build_workload(args['path'], 1)\nresult = None`,
    undefined,
    { fixtures: fixturesDir, path: wl },
  );
  const built = join(dir, 'built.fs');
  await oracle.run(PY_BUILD, undefined, { path: built, n: 600, pack: true });
  await oracle.run(PY_MORE, undefined, { path: built });
  const unpacked = join(dir, 'unpacked.fs');
  await oracle.run(PY_BUILD, undefined, { path: unpacked, n: 300, pack: false });
  return [wl, wl + '.old', wl + '.other', built, unpacked];
}

interopTest(
  'zeo dump prints what fsdump prints; --json lists what ZODB iterates',
  async (oracle) => {
    await withTempDir(async (dir) => {
      for (const path of await buildFiles(oracle, dir)) {
        const py = await fsdump(oracle, path);
        const text = run(['dump', path]);
        assert.equal(text.status, 0, text.stderr);
        assert.equal(text.stderr, '');
        assert.equal(text.stdout, py, path);

        const json = run(['dump', '--json', path]);
        assert.equal(json.status, 0, json.stderr);
        const lines = json.stdout.split('\n');
        assert.equal(lines.pop(), '');
        const ours = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
        const want = await oracle.json<Array<Record<string, unknown>>>(PY_ITER, undefined, { path });
        assert.equal(ours.length, want.length, path);
        for (let i = 0; i < ours.length; i++) {
          const o = ours[i];
          const w = want[i];
          assert.deepEqual(Object.keys(o), [
            'tid',
            'offset',
            'time',
            'status',
            'user',
            'description',
            'extension',
            'size',
            'records',
          ]);
          assert.match(o.tid as string, /^[0-9a-f]{16}$/);
          assert.match(o.time as string, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
          for (const k of ['tid', 'offset', 'status', 'user', 'description', 'extension', 'size']) {
            assert.deepEqual(o[k], w[k], `${path} #${i} ${k}`);
          }
          const records = o.records as Array<Record<string, unknown>>;
          const wrecords = w.records as Array<Record<string, unknown>>;
          assert.equal(records.length, wrecords.length);
          records.forEach((r, j) => {
            const wr = wrecords[j];
            assert.equal(r.oid, wr.oid);
            assert.equal(r.offset, wr.offset);
            assert.equal(r.size, wr.size, `${path} #${i}.${j} size`);
            const back = r.back as { offset: number; tid: string | null } | undefined;
            assert.equal(back?.tid ?? null, wr.backTid, `${path} #${i}.${j} back`);
            if (r.size === null) assert.equal(r.class, null);
            else assert.equal(typeof r.class, 'string');
          });
        }
      }
    });
  },
  { timeout: 180_000 },
);

interopTest('zeo dump of damaged files: what comes before the damage, then the offset', async (oracle) => {
  await withTempDir(async (dir) => {
    const good = join(dir, 'good.fs');
    await oracle.run(PY_BUILD, undefined, { path: good, n: 300, pack: false });
    const bytes = await readFile(good);
    const starts: number[] = [];
    const tls: number[] = [];
    let last: Uint8Array | null = null;
    for (let p = 4; p < bytes.length;) {
      const d = decodeTransaction(bytes, p, 'x', p, last);
      starts.push(p);
      tls.push(d.tl);
      last = d.tid;
      p += d.tl + 8;
    }
    const k = Math.floor(starts.length / 2);
    const path = join(dir, 'damaged.fs');

    // a commit cut short at the end of the file: ZODB's iterator stops there, so does dump (with a note)
    await writeFile(path, bytes.subarray(0, starts[k] + 30));
    let r = run(['dump', path]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, await fsdump(oracle, path));
    assert.match(r.stderr, new RegExp(`note: .*at ${starts[k]}`));
    // the same with the checkpoint flag on the last transaction
    const c = Buffer.from(bytes);
    c[starts[starts.length - 1] + 16] = 0x63;
    await writeFile(path, c);
    r = run(['dump', '--json', path]);
    assert.equal(r.status, 0);
    assert.equal(r.stdout.split('\n').length - 1, starts.length - 1);
    assert.match(r.stderr, /status 'c'/);

    // damage in the middle (a wrong redundant length): what came before, then the error, exit 1
    const d = Buffer.from(bytes);
    d[starts[k] + tls[k] + 7] ^= 1;
    await writeFile(path, d);
    r = run(['dump', path]);
    assert.equal(r.status, 1);
    // ZODB's iterator stops at the same transaction (it only logs a warning)
    assert.equal(r.stdout, await fsdump(oracle, path));
    assert.equal((r.stdout.match(/^Trans /gm) ?? []).length, k);
    assert.match(r.stderr, new RegExp(`^zeo dump: .*damaged\\.fs: .*\\(at byte ${starts[k] + tls[k]}\\)`));

    // a checkpoint flag in the middle: damage (ZODB's iterator stops there quietly)
    const m = Buffer.from(bytes);
    m[starts[k] + 16] = 0x63;
    await writeFile(path, m);
    r = run(['dump', path]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, await fsdump(oracle, path));
    assert.match(r.stderr, new RegExp(`checkpoint flag.*\\(at byte ${starts[k]}\\)`));

    // not a Data.fs
    await writeFile(path, 'hello');
    r = run(['dump', path]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /not a FileStorage data file.*\(at byte 0\)/);
  });
});

test('pickleMetadata: get_pickle_metadata on the forms of class metadata', () => {
  // protocol 3, the class as a global (what ZODB writes): the fast path
  assert.deepEqual(
    pickleMetadata(Buffer.from('\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.', 'latin1')),
    ['persistent.mapping', 'PersistentMapping'],
  );
  // protocol 1: MARK GLOBAL
  assert.deepEqual(pickleMetadata(Buffer.from('(cfoo.bar\nBaz\nq\x01N\x86q\x02.', 'latin1')), [
    'foo.bar',
    'Baz',
  ]);
  // a (module, name) tuple, and ((module, name), args)
  assert.deepEqual(pickleMetadata(dumps(tuple('m', 'C'), 3)), ['m', 'C']);
  assert.deepEqual(pickleMetadata(dumps(tuple(tuple('__zodb__', 'P'), null), 3)), ['__zodb__', 'P']);
  // not a pickle; something else
  assert.deepEqual(pickleMetadata(Buffer.from('garbage')), ['', '']);
  assert.deepEqual(pickleMetadata(dumps(42, 3)), ['42', '']);
});

test('pyToJson and textToJson: the documented encoding', () => {
  assert.deepEqual(
    pyToJson(
      new Map<never, never>([
        ['a', 1],
        ['f', new PyFloat(1.0)],
        ['nan', new PyFloat(NaN)],
        ['big', 2n ** 70n],
        ['small', -(2n ** 60n)],
        ['b', Buffer.from([1, 255])],
        ['t', tuple(1, 'x')],
        ['s', new Set([1])],
        ['__proto__', 'kept'],
      ] as never),
    ),
    JSON.parse(
      '{"a":1,"f":1,"nan":{"$float":"nan"},"big":{"$int":"1180591620717411303424"},' +
        '"small":{"$int":"-1152921504606846976"},"b":{"$bytes":"01ff"},"t":[1,"x"],"s":{"$set":[1]},' +
        '"__proto__":"kept"}',
    ),
  );
  assert.deepEqual(pyToJson(new Map([[1, 'x']] as never)), { $dict: [[1, 'x']] });
  assert.equal(JSON.stringify(pyToJson(new Map([['__proto__', 1]] as never))), '{"__proto__":1}');
  assert.equal(textToJson(Buffer.from('h\u00e9', 'utf8')), 'h\u00e9');
  assert.deepEqual(textToJson(Buffer.from([0xff])), { $bytes: 'ff' });
});
