import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { interopTest, OracleError, packList, PY_LIST_HELPERS, repoRoot, unpackList } from './oracle.js';

interopTest('the oracle venv has exactly the pinned ZODB, ZEO and msgpack', async (oracle) => {
  const pins = new Map(
    readFileSync(resolve(repoRoot, 'oracle/requirements.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('=='))
      .map((l) => l.split('==') as [string, string]),
  );
  for (const name of ['ZODB', 'ZEO', 'msgpack']) assert.ok(pins.has(name), `${name} is pinned`);
  const installed = await oracle.json<Record<string, string>>(
    `from importlib.metadata import version
result = {n: version(n) for n in args}`,
    undefined,
    [...pins.keys()],
  );
  for (const [name, v] of pins) assert.equal(installed[name], v, name);
});

interopTest('the oracle answers bytes and JSON, and reports Python errors without dying', async (oracle) => {
  const echoed = unpackList(
    await oracle.bytes(
      `${PY_LIST_HELPERS}\nresult = pack_list([x[::-1] for x in unpack_list(input)])`,
      packList([Buffer.from('abc'), Buffer.alloc(0)]),
    ),
  );
  assert.deepEqual(
    echoed.map((b) => b.toString()),
    ['cba', ''],
  );
  await assert.rejects(
    oracle.run('1/0'),
    (e: unknown) => e instanceof OracleError && /ZeroDivisionError/.test(e.message),
  );
  assert.equal(await oracle.json('result = 6 * 7'), 42, 'still serving after an error');
});
