// The object browser's page (/browse): a storage's objects from the root, each record's state as a tree with
// its references as links, a container's items page by page, an object's history, a transaction's records,
// the undo log. Where it is lives in the URL's hash (#/STORAGE/object/OID[@TID][?cursor=...],
// #/STORAGE/transaction/TID[?offset=N], #/STORAGE/undo[?first=N], #undo), so Back and Forward work.
import { ApiError, el, getJson } from './common.js';
import type {
  ContainerPage,
  ObjectView,
  StorageInfo,
  TransactionSummary,
  TransactionView,
  TreeNode,
  UndoLogPage,
} from '../../src/storage/browse/types.js';

const ROOT = '0000000000000000';
const UNDO_PAGE = 20;
const ITEMS_PAGE = 100;
/** revisions listed (ZODB's history() gives the newest N, with no offset) */
const HISTORY_PAGE = 100;

let storages: StorageInfo[] = [];
/** the cursor of the page before each page seen (for Previous), by object and cursor */
const previous = new Map<string, string>();
/** bumped at each navigation, so that a slow answer for an old view is dropped */
let generation = 0;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

function api<T>(storage: string, path: string): Promise<T> {
  return getJson<T>(`/api/browse/${encodeURIComponent(storage)}/${path}`);
}

/** 0x-less hex without leading zeros, as ZODB's oid_repr shows an oid. */
function short(hex: string): string {
  return '0x' + (hex.replace(/^0+/, '') || '0').padStart(2, '0');
}

function when(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('T', ' ').replace('Z', ' UTC');
}

function objectHref(storage: string, oid: string, tid?: string | null, cursor?: string | null): string {
  let h = `#/${encodeURIComponent(storage)}/object/${oid}`;
  if (tid) h += `@${tid}`;
  if (cursor) h += `?cursor=${encodeURIComponent(cursor)}`;
  return h;
}

function txnHref(storage: string, tid: string, offset = 0): string {
  return `#/${encodeURIComponent(storage)}/transaction/${tid}${offset ? `?offset=${offset}` : ''}`;
}

function undoHref(storage: string, first = 0): string {
  return `#/${encodeURIComponent(storage)}/undo${first ? `?first=${first}` : ''}`;
}

// ---------------------------------------------------------------------------------------------------------
// The state tree

function refNode(storage: string, n: TreeNode, at: string | null): HTMLElement {
  const label = `${n.oid ? short(n.oid) : (n.repr ?? '?')}${n.class ? ` ${n.class}` : ''}`;
  if (!n.oid || n.broken || n.database !== undefined) {
    return el(
      'span',
      {
        class: `ref${n.broken ? ' broken' : ''}`,
        title: n.broken ? 'broken reference: no such object' : (n.database ?? ''),
      },
      `→ ${label}${n.broken ? ' (missing)' : ''}${n.database !== undefined ? ` in ${n.database}` : ''}`,
    );
  }
  return el('a', { class: 'ref', href: objectHref(storage, n.oid, at), 'data-oid': n.oid }, `→ ${label}`);
}

function more(n: TreeNode, shown: number): HTMLElement | null {
  return n.truncated && n.length !== undefined
    ? el('li', { class: 'more' }, `… ${n.length - shown} more of ${n.length}`)
    : null;
}

function treeNode(storage: string, n: TreeNode, at: string | null, depth: number): HTMLElement {
  switch (n.type) {
    case 'ref':
      return refNode(storage, n, at);
    case 'cut':
      return el('span', { class: 'cut' }, `… (${n.reason ?? 'not shown'})`);
    case 'object': {
      const children: HTMLElement[] = [];
      if (n.args && n.args.items?.length)
        children.push(
          el('li', {}, el('span', { class: 'key' }, 'args: '), treeNode(storage, n.args, at, depth + 1)),
        );
      if (n.state)
        children.push(
          el('li', {}, el('span', { class: 'key' }, 'state: '), treeNode(storage, n.state, at, depth + 1)),
        );
      if (n.items)
        for (const [i, x] of n.items.entries())
          children.push(
            el('li', {}, el('span', { class: 'key' }, `[${i}] `), treeNode(storage, x, at, depth + 1)),
          );
      if (n.entries) for (const [k, v] of n.entries) children.push(entryItem(storage, k, v, at, depth));
      return el(
        'details',
        { open: depth < 2 },
        el('summary', {}, `${n.class ?? 'object'}(…)`),
        el('ul', {}, ...children),
      );
    }
    default:
      break;
  }
  if (n.entries) {
    const children = n.entries.map(([k, v]) => entryItem(storage, k, v, at, depth));
    return el(
      'details',
      { open: depth < 3 },
      el('summary', {}, `${n.type} (${n.length ?? n.entries.length})`),
      el('ul', {}, ...children, more(n, n.entries.length)),
    );
  }
  if (n.items) {
    const children = n.items.map((x, i) =>
      el('li', {}, el('span', { class: 'key' }, `[${i}] `), treeNode(storage, x, at, depth + 1)),
    );
    return el(
      'details',
      { open: depth < 3 },
      el('summary', {}, `${n.type} (${n.length ?? n.items.length})`),
      el('ul', {}, ...children, more(n, n.items.length)),
    );
  }
  return el(
    'span',
    { class: `atom type-${n.type}` },
    n.repr ?? '',
    n.truncated ? el('span', { class: 'more' }, ` … (${n.length} in all)`) : null,
  );
}

function entryItem(storage: string, k: TreeNode, v: TreeNode, at: string | null, depth: number): HTMLElement {
  const key =
    k.repr !== undefined ? el('span', { class: 'key' }, `${k.repr}: `) : treeNode(storage, k, at, depth + 1);
  return el('li', {}, key, treeNode(storage, v, at, depth + 1));
}

// ---------------------------------------------------------------------------------------------------------
// Views

function table(head: string[], rows: HTMLElement[], id?: string): HTMLElement {
  return el(
    'table',
    { class: 'list', id },
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows),
  );
}

function metaTable(rows: Array<[string, Node | string | null]>): HTMLElement {
  return el(
    'table',
    { class: 'meta' },
    ...rows.filter(([, v]) => v !== null).map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v))),
  );
}

async function showObject(
  storage: string,
  oid: string,
  at: string | null,
  cursor: string | null,
  gen: number,
): Promise<void> {
  const query = at ? `?tid=${at}` : '';
  const [obj, history] = await Promise.all([
    api<ObjectView>(storage, `object/${oid}${query}`),
    api<{ history: TransactionSummary[] }>(storage, `object/${oid}/history?limit=${HISTORY_PAGE}`).catch(
      () => ({
        history: [],
      }),
    ),
  ]);
  let page: ContainerPage | null = null;
  if (obj.container) {
    const q = new URLSearchParams({ limit: String(ITEMS_PAGE) });
    if (cursor) q.set('cursor', cursor);
    if (at) q.set('tid', at);
    page = await api<ContainerPage>(storage, `object/${oid}/items?${q.toString()}`);
    if (page.next) previous.set(`${oid}|${page.next}`, cursor ?? '');
  }
  if (gen !== generation) return;
  const className = obj.class.name
    ? `${obj.class.module}.${obj.class.name}`
    : obj.class.module || '(unknown class)';
  const parts: Node[] = [
    el(
      'h2',
      {},
      el('span', { class: 'oid' }, `oid ${short(oid)}`),
      ' ',
      el('span', { id: 'object-class' }, className),
    ),
    metaTable([
      ['revision', el('a', { href: txnHref(storage, obj.tid), class: 'tid' }, obj.tid)],
      ['written', when(obj.time)],
      [
        'viewed as of',
        obj.at
          ? el('span', {}, obj.at, ' ', el('a', { href: objectHref(storage, oid) }, '(current revision)'))
          : null,
      ],
      ['replaced by', obj.end ? el('a', { href: objectHref(storage, oid, obj.end) }, obj.end) : null],
      ['size', `${obj.size} bytes${obj.compression ? ` (${obj.compression})` : ''}`],
      [
        'blob',
        obj.blob
          ? obj.blob.size === null
            ? 'blob (file not available)'
            : `blob of ${obj.blob.size} bytes`
          : null,
      ],
    ]),
  ];
  if (obj.error) {
    parts.push(
      el('p', { class: 'error', id: 'record-error' }, `This record does not decode: ${obj.error}`),
      el(
        'pre',
        { class: 'raw' },
        `${obj.raw?.length ?? 0} bytes; the first ones:\n${obj.raw?.hex ?? ''}\n${obj.raw?.text ?? ''}`,
      ),
    );
    if (obj.opcodes) {
      const lines = obj.opcodes.ops.map(
        (o) => `${String(o.pos).padStart(6)}: ${o.name}${o.arg ? ` ${o.arg}` : ''}`,
      );
      if (obj.opcodes.stopped) lines.push(`(stopped: ${obj.opcodes.stopped})`);
      parts.push(el('h3', {}, 'Opcodes'), el('pre', { class: 'raw', id: 'opcodes' }, lines.join('\n')));
    }
  } else {
    // a BTree's state is its buckets' links and keys: its items below say it better, so it starts folded
    const folded = obj.container !== null && !['mapping', 'list'].includes(obj.container.kind);
    if (page && folded) parts.push(itemsSection(storage, oid, obj.at, cursor, page));
    parts.push(
      el('h3', {}, 'State'),
      el(
        'div',
        { class: 'tree', id: 'state' },
        obj.state ? treeNode(storage, obj.state, obj.at, folded ? 3 : 0) : 'None',
      ),
    );
    if (obj.args)
      parts.push(
        el('h3', {}, 'Class arguments'),
        el('div', { class: 'tree' }, treeNode(storage, obj.args, obj.at, 1)),
      );
  }
  if (page && !parts.some((p) => p instanceof HTMLElement && p.id === 'items-section')) {
    parts.push(itemsSection(storage, oid, obj.at, cursor, page));
  }
  if (obj.refs.length) {
    parts.push(
      el('h3', {}, `References (${obj.refs.length}${obj.refsTruncated ? '+' : ''})`),
      el(
        'ul',
        { id: 'refs' },
        ...obj.refs.map((r) =>
          el(
            'li',
            {},
            refNode(
              storage,
              { type: 'ref', oid: r.oid, class: r.class ?? undefined, broken: r.broken },
              obj.at,
            ),
          ),
        ),
      ),
    );
  }
  parts.push(
    el('h3', {}, history.history.length >= HISTORY_PAGE ? `History (the newest ${HISTORY_PAGE})` : 'History'),
    table(
      ['revision', 'time', 'user', 'description', 'size', 'transaction'],
      history.history.map((h) =>
        el(
          'tr',
          { class: h.tid === obj.tid ? 'current' : null },
          el('td', {}, el('a', { href: objectHref(storage, oid, h.tid), class: 'tid revision' }, h.tid)),
          el('td', {}, when(h.time)),
          el('td', {}, h.user),
          el('td', {}, h.description),
          el('td', { class: 'num' }, h.size ?? ''),
          el('td', {}, el('a', { href: txnHref(storage, h.tid), class: 'txn' }, 'records')),
        ),
      ),
      'history',
    ),
  );
  render({ view: 'object', oid, tid: obj.at }, ...parts);
}

function itemsSection(
  storage: string,
  oid: string,
  at: string | null,
  cursor: string | null,
  page: ContainerPage,
): HTMLElement {
  const { container } = page;
  const first = page.offset + 1;
  const last = page.offset + page.items.length;
  const prev = cursor ? previous.get(`${oid}|${cursor}`) : undefined;
  const pager = el(
    'div',
    { class: 'pager' },
    cursor
      ? el(
          'a',
          {
            id: 'items-prev',
            href:
              prev === undefined ? objectHref(storage, oid, at) : objectHref(storage, oid, at, prev || null),
          },
          prev === undefined ? '⇤ First page' : '← Previous',
        )
      : el('span', { class: 'more' }, '← Previous'),
    el(
      'span',
      { id: 'items-range' },
      page.items.length
        ? `items ${first}–${last}${page.length !== null ? ` of ${page.length}` : ''}`
        : 'no items',
    ),
    page.next
      ? el('a', { id: 'items-next', href: objectHref(storage, oid, at, page.next) }, 'Next →')
      : el('span', { class: 'more' }, 'Next →'),
  );
  const head = container.kind === 'list' ? ['index', 'item'] : container.values ? ['key', 'value'] : ['key'];
  const rows = page.items.map((it) =>
    el(
      'tr',
      {},
      el('td', { class: 'tree key-cell' }, treeNode(storage, it.key, at, 4)),
      it.value ? el('td', { class: 'tree' }, treeNode(storage, it.value, at, 4)) : null,
    ),
  );
  const what = container.family ? `${container.family} ${container.kind}` : container.kind;
  return el(
    'div',
    { id: 'items-section' },
    el('h3', {}, `Items (${what})`),
    pager,
    table(head, rows, 'items'),
  );
}

async function showTransaction(storage: string, tid: string, offset: number, gen: number): Promise<void> {
  const t = await api<TransactionView>(storage, `transaction/${tid}?offset=${offset}&limit=${ITEMS_PAGE}`);
  if (gen !== generation) return;
  render(
    { view: 'transaction', tid: t.tid },
    el('h2', {}, 'Transaction ', el('span', { class: 'tid', id: 'txn-tid' }, t.tid)),
    metaTable([
      ['time', when(t.time)],
      ['user', t.user],
      ['description', el('span', { id: 'txn-description' }, t.description)],
      ['status', t.status === ' ' ? 'committed' : t.status === 'p' ? 'packed' : t.status],
      [
        'extension',
        t.extension ? el('div', { class: 'tree' }, treeNode(storage, t.extension, t.tid, 2)) : null,
      ],
    ]),
    el('h3', {}, 'Records'),
    el(
      'div',
      { class: 'pager' },
      offset > 0
        ? el('a', { href: txnHref(storage, tid, Math.max(0, offset - ITEMS_PAGE)) }, '← Previous')
        : null,
      el('span', {}, `records ${offset + 1}–${offset + t.records.length}`),
      t.next !== null ? el('a', { id: 'records-next', href: txnHref(storage, tid, t.next) }, 'Next →') : null,
    ),
    table(
      ['oid', 'class', 'size', ''],
      t.records.map((r) =>
        el(
          'tr',
          {},
          el(
            'td',
            {},
            r.deleted
              ? el('span', { class: 'oid broken' }, short(r.oid))
              : el('a', { class: 'oid', href: objectHref(storage, r.oid, t.tid) }, short(r.oid)),
          ),
          el('td', {}, r.class),
          el('td', { class: 'num' }, r.size),
          el('td', {}, r.deleted ? 'deleted' : r.dataTxn ? `data of ${r.dataTxn}` : r.blob ? 'blob' : ''),
        ),
      ),
      'records',
    ),
  );
}

async function showUndoLog(storage: string, first: number, gen: number): Promise<void> {
  const log = await api<UndoLogPage>(storage, `undo-log?first=${first}&last=${first + UNDO_PAGE}`);
  if (gen !== generation) return;
  render(
    { view: 'undo' },
    el('h2', {}, 'Undo log'),
    el(
      'p',
      { class: 'more' },
      'The transactions that can be undone, newest first. This page only shows them.',
    ),
    el(
      'div',
      { class: 'pager' },
      first > 0
        ? el('a', { id: 'undo-prev', href: undoHref(storage, Math.max(0, first - UNDO_PAGE)) }, '← Newer')
        : null,
      el(
        'span',
        {},
        log.entries.length ? `entries ${first + 1}–${first + log.entries.length}` : 'no entries',
      ),
      log.entries.length === UNDO_PAGE
        ? el('a', { id: 'undo-next', href: undoHref(storage, first + UNDO_PAGE) }, 'Older →')
        : null,
    ),
    table(
      ['transaction', 'time', 'user', 'description', 'size'],
      log.entries.map((e) =>
        el(
          'tr',
          {},
          el('td', {}, el('a', { class: 'tid', href: txnHref(storage, e.tid) }, e.tid)),
          el('td', {}, when(e.time)),
          el('td', {}, e.user),
          el('td', {}, e.description),
          el('td', { class: 'num' }, e.size ?? ''),
        ),
      ),
      'undo-log',
    ),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Navigation

/** Shows a view; `shows` names it on #view (data-view, data-oid, data-tid), so a test can wait for this one. */
function render(shows: { view?: string; oid?: string; tid?: string | null }, ...nodes: Node[]): void {
  const view = $('view');
  view.replaceChildren(...nodes);
  view.dataset.view = shows.view ?? '';
  view.dataset.oid = shows.oid ?? '';
  view.dataset.tid = shows.tid ?? '';
}

function showError(message: string | null): void {
  const box = $('error');
  box.hidden = message === null;
  box.textContent = message ?? '';
}

interface Route {
  storage: string;
  view: 'object' | 'transaction' | 'undo';
  id: string;
  tid: string | null;
  params: URLSearchParams;
}

function parseHash(): Route {
  let hash = location.hash.slice(1);
  try {
    hash = decodeURIComponent(hash);
  } catch {
    // a malformed escape: read it as it is (the API then says what is wrong)
  }
  const [path, query = ''] = hash.split('?', 2);
  const params = new URLSearchParams(query);
  const first = storages[0]?.name ?? '1';
  if (path === '' || path === '/') return { storage: first, view: 'object', id: ROOT, tid: null, params };
  if (path === 'undo') return { storage: first, view: 'undo', id: '', tid: null, params };
  const parts = path.split('/');
  const storage = parts[1] ?? first;
  const view = parts[2];
  if (view === 'undo') return { storage, view: 'undo', id: '', tid: null, params };
  if (view === 'transaction') return { storage, view: 'transaction', id: parts[3] ?? '', tid: null, params };
  const [id, tid] = (parts[3] ?? ROOT).split('@', 2);
  return { storage, view: 'object', id: id ?? ROOT, tid: tid ?? null, params };
}

/** "0x1a", "1a" or 16 hex digits: the 16 hex digits of an oid, or null. */
function oidFromInput(text: string): string | null {
  const t = text.trim().replace(/^0x/i, '');
  return /^[0-9a-f]{1,16}$/i.test(t) ? t.toLowerCase().padStart(16, '0') : null;
}

async function navigate(): Promise<void> {
  const gen = ++generation;
  const route = parseHash();
  showError(null);
  const select = $<HTMLSelectElement>('storage');
  if (select.value !== route.storage) select.value = route.storage;
  $<HTMLAnchorElement>('go-root').href = objectHref(route.storage, ROOT);
  $<HTMLAnchorElement>('go-undo').href = undoHref(route.storage);
  try {
    if (route.view === 'undo') {
      document.title = 'Undo log — zeo-ts';
      await showUndoLog(route.storage, Number(route.params.get('first') ?? 0) || 0, gen);
    } else if (route.view === 'transaction') {
      document.title = `Transaction ${route.id} — zeo-ts`;
      await showTransaction(route.storage, route.id, Number(route.params.get('offset') ?? 0) || 0, gen);
    } else {
      document.title = `Object ${short(route.id)} — zeo-ts`;
      await showObject(route.storage, route.id, route.tid, route.params.get('cursor'), gen);
    }
  } catch (e) {
    if (gen !== generation) return;
    showError(e instanceof ApiError ? `${e.status}: ${e.message}` : `Error: ${(e as Error).message}`);
    render({ view: 'error' });
  }
}

async function start(): Promise<void> {
  try {
    storages = (await getJson<{ storages: StorageInfo[] }>('/api/browse/storages')).storages;
  } catch (e) {
    showError(e instanceof ApiError ? `${e.status}: ${e.message}` : `Error: ${(e as Error).message}`);
    render({ view: 'error' });
    return;
  }
  const select = $<HTMLSelectElement>('storage');
  select.replaceChildren(
    ...storages.map((s) => el('option', { value: s.name }, `${s.name} (${s.objects} objects)`)),
  );
  select.addEventListener('change', () => {
    location.hash = objectHref(select.value, ROOT);
  });
  $('go-oid').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const oid = oidFromInput($<HTMLInputElement>('oid-input').value);
    if (oid) location.hash = objectHref(select.value, oid);
    else showError('An oid is up to 16 hex digits, like 0x1a.');
  });
  window.addEventListener('hashchange', () => void navigate());
  await navigate();
}

void start();
