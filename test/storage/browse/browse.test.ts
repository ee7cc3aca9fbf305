// The object browser's core (src/storage/browse) over data the real ZODB wrote through ZEO: the same answers
// from the FileStorage that served it and from a MemoryStorage copy of it, through the Storage contract only.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { deflateSync } from 'node:zlib';
import { dumps, Global, PersistentRef, tuple } from '../../../src/pickle/index.js';
import { copyStorage } from '../../../src/storage/copy.js';
import { POSKeyError } from '../../../src/storage/errors.js';
import { idFromHex, p64 } from '../../../src/storage/ids.js';
import type { Storage } from '../../../src/storage/interfaces.js';
import { MemoryStorage } from '../../../src/storage/memory/memory-storage.js';
import { commitMany } from '../contract/helpers.js';
import { PostgreSQLStorage } from '../../../src/storage/postgresql/index.js';
import {
  BrowseInputError,
  containerPage,
  inspectObject,
  objectHistory,
  transactionView,
  undoLogPage,
  viewRecord,
  type ContainerPage,
  type TreeNode,
} from '../../../src/storage/browse/index.js';
import { makeBrowseData, treeKeys, TREE_SIZE, type BrowseData } from '../../helpers/browse-data.js';
import { interopDisabled, Oracle } from '../../helpers/oracle.js';
import { skipPostgres, startPostgres } from '../../helpers/postgres.js';
import { startServer, type TestServer } from '../../helpers/server-fixture.js';

const oid = idFromHex;

/** Every page of a container's items, following the cursors. */
async function allPages(storage: Storage, hex: string, limit: number): Promise<ContainerPage[]> {
  const pages: ContainerPage[] = [];
  let cursor: string | null = null;
  do {
    const page: ContainerPage = await containerPage(storage, oid(hex), { cursor, limit });
    pages.push(page);
    cursor = page.next;
  } while (cursor && pages.length < 1000);
  return pages;
}

function entry(node: TreeNode | undefined, key: string): TreeNode | undefined {
  return node?.entries?.find(([k]) => k.repr === key)?.[1];
}

async function checkStorage(storage: Storage, d: BrowseData, blobs: boolean): Promise<void> {
  // the root: a PersistentMapping whose data refers to the others, each link with its class
  const root = await inspectObject(storage, oid(d.root));
  assert.deepEqual(root.class, { module: 'persistent.mapping', name: 'PersistentMapping', form: 'class' });
  assert.deepEqual(root.container, { kind: 'mapping', values: true });
  const data = entry(root.state, "'data'");
  const treeRef = entry(data, "'tree'");
  assert.equal(treeRef?.type, 'ref');
  assert.equal(treeRef?.oid, d.tree);
  assert.equal(treeRef?.class, 'BTrees.OOBTree.OOBTree');
  assert.deepEqual(
    root.refs.find((r) => r.oid === d.gadget),
    { oid: d.gadget, class: 'browse_vanished.Gadget', broken: false },
  );
  assert.equal(root.refs.length, 8);

  // the root's items as a container page ('undone' was undone)
  const rootPage = await containerPage(storage, oid(d.root));
  assert.equal(rootPage.length, 8);
  assert.deepEqual(
    rootPage.items.map((i) => [i.key.repr, i.value?.oid]),
    [
      ["'mapping'", d.mapping],
      ["'tree'", d.tree],
      ["'itree'", d.itree],
      ["'list'", d.list],
      ["'gadget'", d.gadget],
      ["'revised'", d.revised],
      ["'blob'", d.blob],
      ["'holder'", d.holder],
    ],
  );
  assert.equal(rootPage.next, null);

  // the OOBTree: many buckets, walked page by page, the keys in Python's order
  assert.ok(d.tree_buckets > 10, `${d.tree_buckets} buckets`);
  const tree = await inspectObject(storage, oid(d.tree));
  assert.deepEqual(tree.container, { kind: 'btree', family: 'OO', values: true });
  for (const limit of [100, 1000, 37]) {
    const pages = await allPages(storage, d.tree, limit);
    assert.equal(pages.length, Math.ceil(TREE_SIZE / limit));
    const keys = pages.flatMap((p) => p.items.map((i) => i.key.repr));
    assert.deepEqual(
      keys,
      treeKeys().map((k) => `'${k}'`),
    );
    const values = pages.flatMap((p) => p.items.map((i) => i.value?.repr));
    assert.deepEqual(
      values,
      treeKeys().map((k) => String(Number(k.slice(3)) * 2)),
    );
    assert.deepEqual(
      pages.map((p) => p.offset),
      pages.map((_, i) => i * limit),
    );
    assert.ok(pages.every((p) => p.at === d.last));
  }

  // an IOBTree: int keys in order
  const ipages = await allPages(storage, d.itree, 1000);
  assert.equal(ipages.length, 1);
  assert.deepEqual(
    ipages[0].items.map((i) => i.key.repr),
    Array.from({ length: 300 }, (_, i) => String(i)),
  );
  assert.equal(ipages[0].items[7].value?.repr, "'value 7'");

  // a PersistentList, paged from the middle
  const list = await containerPage(storage, oid(d.list), { limit: 100 });
  assert.equal(list.length, 250);
  const list2 = await containerPage(storage, oid(d.list), { cursor: list.next, limit: 100 });
  assert.deepEqual(
    list2.items.map((i) => [i.key.repr, i.value?.repr]),
    Array.from({ length: 100 }, (_, i) => [String(100 + i), String(100 + i)]),
  );

  // the other kinds and families of BTrees: sets, 64-bit and unsigned keys, float values, an inline bucket
  const f = d.families;
  const treeset = await allPages(storage, f.treeset, 100);
  assert.equal(treeset.length, 10);
  assert.deepEqual(treeset[0].container, { kind: 'treeset', family: 'OO', values: false });
  assert.deepEqual(
    treeset.flatMap((p) => p.items.map((i) => [i.key.repr, i.value])),
    Array.from({ length: 1000 }, (_, i) => [`'member${String(i).padStart(4, '0')}'`, undefined]),
  );
  const llset = await allPages(storage, f.llset, 1000);
  assert.deepEqual(
    llset[0].items.map((i) => i.key.repr),
    Array.from({ length: 500 }, (_, i) => String(2 ** 40 + i)),
  );
  const iftree = await containerPage(storage, oid(f.iftree));
  assert.deepEqual(iftree.container, { kind: 'btree', family: 'IF', values: true });
  assert.deepEqual(
    iftree.items.map((i) => [i.key.repr, i.value?.repr]),
    Array.from({ length: 10 }, (_, i) => [String(i), i % 2 ? `${i / 2}` : `${i / 2}.0`]),
  );
  const qq = await containerPage(storage, oid(f.qqtree));
  assert.deepEqual(
    qq.items.map((i) => [i.key.repr, i.value?.repr]),
    Array.from({ length: 5 }, (_, i) => [String(2n ** 63n + BigInt(i)), String(i)]),
  );
  const bucket = await containerPage(storage, oid(f.bucket), { limit: 5 });
  assert.deepEqual(bucket.container, { kind: 'bucket', family: 'OO', values: true });
  const bucket2 = await containerPage(storage, oid(f.bucket), { cursor: bucket.next });
  assert.deepEqual(
    [...bucket.items, ...bucket2.items].map((i) => i.key.repr),
    Array.from({ length: 7 }, (_, i) => `'b${i}'`),
  );
  assert.equal(bucket2.next, null);

  // the tree's bounds: a long list shows its first 100 items, deep nesting is cut, long bytes their first KB
  const mapping = entry((await inspectObject(storage, oid(d.mapping))).state, "'data'");
  const many = entry(mapping, "'many'");
  assert.equal(many?.items?.length, 100);
  assert.equal(many?.length, 5000);
  let deep = entry(mapping, "'deep'");
  let depth = 0;
  while (deep?.type === 'list') {
    deep = deep.items?.[0];
    depth++;
  }
  assert.equal(deep?.type, 'cut');
  assert.ok(depth > 5 && depth < 20, String(depth));
  const rawBytes = entry(mapping, "'raw'");
  assert.equal(rawBytes?.type, 'bytes');
  assert.equal(rawBytes?.length, 3000);
  assert.equal(rawBytes?.repr, `b'${'\\x00'.repeat(1024)}'`);

  // a record whose class is an extension code: no tree, but why, its bytes and its opcodes
  const coded = await inspectObject(storage, oid(f.coded));
  assert.match(coded.error ?? '', /extension/i);
  assert.equal(coded.state, undefined);
  assert.deepEqual(coded.opcodes?.ops.slice(0, 2), [
    { pos: 0, name: 'PROTO', arg: '3' },
    { pos: 2, name: 'EXT1', arg: '240' },
  ]);
  assert.equal(coded.opcodes?.stopped, undefined);
  assert.ok(coded.opcodes?.ops.some((o) => o.arg === '"pickled with an extension code"'));

  // a class nothing can import: still shown, its long string cut to its first KB with its length
  const gadget = await inspectObject(storage, oid(d.gadget));
  assert.deepEqual(gadget.class, { module: 'browse_vanished', name: 'Gadget', form: 'class' });
  assert.equal(entry(gadget.state, "'title'")?.repr, "'made by a class that is gone'");
  const long = entry(gadget.state, "'long'");
  assert.equal(long?.truncated, true);
  assert.equal(long?.length, 5000);
  assert.equal(long?.repr, `'${'x'.repeat(1024)}'`);
  await assert.rejects(containerPage(storage, oid(d.gadget)), BrowseInputError);

  // several revisions: the history, and each old revision through loadBefore
  const history = await objectHistory(storage, oid(d.revised), 10);
  assert.deepEqual(
    history.map((h) => h.tid),
    [...d.revision_tids].reverse(),
  );
  assert.deepEqual(
    history.map((h) => h.description),
    ['revision 3', 'revision 2', 'revision 1', 'initial data'],
  );
  assert.equal(history[0].user, '/ tester');
  for (const [n, tid] of d.revision_tids.entries()) {
    const old = await inspectObject(storage, oid(d.revised), oid(tid));
    assert.equal(old.tid, tid);
    assert.equal(entry(entry(old.state, "'data'"), "'rev'")?.repr, String(n));
    assert.equal(old.end, d.revision_tids[n + 1] ?? null);
  }
  assert.equal((await objectHistory(storage, oid(d.revised), 2)).length, 2);

  // a transaction and its records
  const t = await transactionView(storage, oid(d.revision_tids[1]), 0, 100);
  assert.equal(t?.description, 'revision 1');
  assert.deepEqual(
    t?.records.map((r) => [r.oid, r.class]),
    [[d.revised, 'persistent.mapping.PersistentMapping']],
  );
  const first = await transactionView(storage, oid(d.revision_tids[0]), 0, 3);
  assert.equal(first?.records.length, 3);
  assert.equal(first?.next, 3);
  const rest = await transactionView(storage, oid(d.revision_tids[0]), 3, 1000);
  assert.equal(rest?.next, null);
  assert.ok(rest.records.length > d.tree_buckets);
  assert.equal(await transactionView(storage, p64(1), 0, 10), null);

  // the undo log, as Python's DB.undoLog lists it
  const log = await undoLogPage(storage, 0, 20);
  assert.deepEqual(
    log.entries.map((e) => e.description),
    d.undo_log.map((e) => e.description),
  );
  assert.equal(log.entries[0].description, 'delete the orphan');
  assert.deepEqual(
    (await undoLogPage(storage, 1, 3)).entries.map((e) => e.tid),
    log.entries.slice(1, 3).map((e) => e.tid),
  );
  await assert.rejects(undoLogPage(storage, 0, 5000), BrowseInputError);

  // the blob: its size, never its bytes
  const blob = await inspectObject(storage, oid(d.blob));
  assert.equal(blob.isBlob, true);
  assert.deepEqual(blob.blob, { size: blobs ? 11000 : null });

  // a dangling reference, in the refs and in the tree
  const holder = await inspectObject(storage, oid(d.holder));
  assert.deepEqual(holder.refs, [
    { oid: d.orphan, class: 'persistent.mapping.PersistentMapping', broken: true },
  ]);
  assert.equal(entry(entry(holder.state, "'data'"), "'orphan'")?.broken, true);
  await assert.rejects(inspectObject(storage, oid(d.orphan)), POSKeyError);
  await assert.rejects(inspectObject(storage, p64(999999)), POSKeyError);

  // bad cursors
  await assert.rejects(containerPage(storage, oid(d.tree), { cursor: 'nonsense' }), BrowseInputError);
  await assert.rejects(
    containerPage(storage, oid(d.tree), { cursor: `${d.gadget}.0.${d.last}.0` }),
    BrowseInputError,
  );

  // a zc.zlibstorage record reads as the plain one
  const raw = (await storage.load(oid(d.mapping))).data;
  const z = viewRecord(Buffer.concat([Buffer.from('.z'), deflateSync(raw)]));
  assert.equal(z.compression, 'zlib');
  assert.deepEqual(z.state, viewRecord(raw).state);
  // a record that is no pickle: its error and bytes, no exception
  const bad = viewRecord(Buffer.from('cfoo\nBar\nq\x00garbage'));
  assert.match(bad.error ?? '', /./);
  assert.equal(bad.raw?.length, 18);
  assert.deepEqual(bad.opcodes, {
    ops: [
      { pos: 0, name: 'GLOBAL', arg: '"foo" "Bar"' },
      { pos: 9, name: 'BINPUT', arg: '0' },
    ],
    stopped: 'no newline after byte 12',
  });
}

const skip = interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false;

describe('the object browser over what Python ZODB wrote through ZEO', { skip }, () => {
  let s: TestServer;
  let d: BrowseData;
  let fs: Storage;

  before(async () => {
    s = await startServer();
    const oracle = new Oracle();
    try {
      d = await makeBrowseData(oracle, ['127.0.0.1', (s.address as { port: number }).port]);
    } finally {
      oracle.close();
    }
    fs = s.server.storages.get('1')!.storage;
  });
  after(async () => {
    await s?.stop();
  });

  test('FileStorage (the one that served it)', async () => {
    assert.equal(Buffer.from(fs.lastTransaction()).toString('hex'), d.last);
    await checkStorage(fs, d, true);
  });

  test('MemoryStorage (a copy)', async () => {
    const mem = new MemoryStorage();
    try {
      await copyStorage(fs, mem, { blobs: false });
      await checkStorage(mem, d, false);
    } finally {
      await mem.close();
    }
  });

  test('PostgreSQL (a copy)', { skip: skipPostgres }, async () => {
    const cluster = await startPostgres();
    try {
      const admin = new pg.Client(cluster.connection('postgres'));
      await admin.connect();
      await admin.query('CREATE DATABASE browse');
      await admin.end();
      const dsn = `host=${cluster.socketDir} port=${cluster.port} user=${cluster.user} dbname=browse`;
      const store = await PostgreSQLStorage.open({ dsn, poolSize: 2, blobDir: join(s.dir, 'pg-blobs') });
      try {
        await copyStorage(fs, store);
        await checkStorage(store, d, true);
      } finally {
        await store.close();
      }
    } finally {
      await cluster.stop();
    }
  });
});

test('an object with more references than its tree shows says its reference list is cut', async () => {
  // a PersistentList of 150 PersistentMappings: the state tree shows the first 100 items, so the references
  // listed are those 100, and the view must say there are more (there were 100,000 in the record that showed it)
  const mem = new MemoryStorage();
  try {
    const mappingClass = Global.of('persistent.mapping', 'PersistentMapping');
    const record = (state: unknown): Uint8Array =>
      Buffer.concat([dumps(Global.of('persistent.list', 'PersistentList'), 3), dumps(state as never, 3)]);
    const targets = Array.from({ length: 150 }, (_, i) => p64(i + 2));
    const items = targets.map((o) => new PersistentRef(tuple(Buffer.from(o), mappingClass)));
    const empty = Buffer.concat([dumps(mappingClass, 3), dumps(new Map([['data', new Map()]]), 3)]);
    await commitMany(mem, [
      [p64(1), p64(0), record(new Map([['data', items]]))],
      ...targets.map((o): [Uint8Array, Uint8Array, Uint8Array] => [o, p64(0), empty]),
    ]);
    const view = await inspectObject(mem, p64(1));
    assert.equal(view.refs.length, 100);
    assert.equal(view.refsTruncated, true);
  } finally {
    await mem.close();
  }
});
