// The dashboard in a real headless Chromium (Debian's, driven by playwright-core) against a server a real
// Python ZODB client commits to: the page loads with no error, its charts plot points after two scrapes, the
// clients table lists the Python client, the lock panel shows a holder while a client holds the commit lock,
// and a commit made after the page opened appears in the recent transactions. Screenshots at each step.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { p64, z64 } from '../../../src/storage/ids.js';
import { keepScreenshot, launchBrowser, skipBrowser, type TestBrowser } from '../../helpers/browser.js';
import { request } from '../../helpers/http.js';
import { interopDisabled, Oracle } from '../../helpers/oracle.js';
import { RawClient } from '../../helpers/raw-client.js';
import { startServer } from '../../helpers/server-fixture.js';
import { ServerProcess, stopLeftovers } from '../../helpers/server-process.js';

const PY_OPEN = `
import builtins
from ZEO.ClientStorage import ClientStorage
from ZODB.DB import DB
builtins._dash = DB(ClientStorage(tuple(args['addr']), wait_timeout=30))
result = None
`;

const PY_COMMIT = `
import builtins
db = builtins._dash
conn = db.open()
tm = conn.transaction_manager
t = tm.begin()
t.user = args['user']
t.description = args['description']
root = conn.root()
root['n'] = root.get('n', 0) + 1
root['text'] = 'x' * 200
tm.commit()
result = conn._storage.lastTransaction().hex()
conn.close()
`;

const PY_LOAD = `
import builtins
conn = builtins._dash.open()
result = sorted(conn.root().keys())
conn.close()
`;

// The little of the DOM these tests use inside the page (this project's Node code has no DOM types). Functions,
// not strings, go to page.evaluate: the listener's Content-Security-Policy refuses eval in the page.
interface PageElement {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  width: number;
  height: number;
  querySelectorAll(selector: string): Iterable<PageElement>;
  getContext(kind: '2d'): {
    getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> };
  };
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
};

/** how many points each chart plotted (its canvas's data-points), by title */
function chartPoints(page: Page): Promise<Record<string, number>> {
  return page.evaluate(() => {
    const out: Record<string, number> = {};
    for (const c of document.querySelectorAll('canvas[aria-label]')) {
      out[(c as unknown as { ariaLabel: string }).ariaLabel] = Number(c.dataset.points ?? 0);
    }
    return out;
  });
}

async function waitForPoints(page: Page, want: Record<string, number>): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const got = await chartPoints(page);
    if (Object.entries(want).every(([k, n]) => (got[k] ?? 0) >= n)) return;
    if (Date.now() > deadline)
      assert.fail(`charts plotted ${JSON.stringify(got)}, waiting for ${JSON.stringify(want)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** the text of each cell (td, or th) of each row `rows` selects, in the page */
function cells(page: Page, rows: string, cell = 'td'): Promise<string[][]> {
  return page.evaluate(
    ([rows, cell]) =>
      [...document.querySelectorAll(rows)].map((tr) =>
        [...tr.querySelectorAll(cell)].map((c) => c.textContent ?? ''),
      ),
    [rows, cell] as const,
  );
}

const skip = skipBrowser || (interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false);
let browser: TestBrowser;

before(async () => {
  if (!skip) browser = await launchBrowser();
});
after(async () => {
  if (!skip) await browser.close();
});

test(
  'the dashboard shows live charts, the clients, the commit lock and new transactions',
  { skip, timeout: 90_000 },
  async () => {
    const fx = await startServer({ http: {} });
    const oracle = new Oracle();
    let raw: RawClient | null = null;
    let second: RawClient | null = null;
    try {
      const port = (fx.address as { port: number }).port;
      await oracle.json(PY_OPEN, undefined, { addr: ['127.0.0.1', port] });
      const firstTid = await oracle.json<string>(PY_COMMIT, undefined, {
        user: 'alice',
        description: 'before the page',
      });

      const page = await browser.newPage();
      await page.goto(`${fx.http!.url}/?token=${fx.http!.token}`);
      // the token went into a cookie and out of the URL
      assert.equal(new URL(page.url()).search, '');
      await page.waitForSelector('#server table');
      assert.equal(await page.title(), 'zeo-ts dashboard');
      await page.waitForSelector(`#transactions code:text("${firstTid}")`);
      await keepScreenshot(page, 'dashboard-1-loaded');

      // two scrapes: every chart that has data plots its points (the clients gauge one per scrape; the loads
      // rate from the second on)
      await oracle.json(PY_LOAD);
      await waitForPoints(page, { Clients: 2, Loads: 1, Commits: 2 });
      const metrics = await request(`${fx.http!.url}/metrics`, { token: fx.http!.token });
      if (metrics.status === 404) {
        // no metrics part on this server: the page says so and charts what /api/server gives
        await page.waitForSelector('#metrics-note:visible');
        assert.match((await page.textContent('#metrics-note')) ?? '', /Metrics unavailable/);
      } else {
        assert.equal(metrics.status, 200);
        await page.waitForSelector('#metrics-note', { state: 'hidden' });
        await waitForPoints(page, { Network: 2 });
      }
      // the canvas really has ink on it, not only a count
      const inked = await page.evaluate(() => {
        const c = document.querySelector('canvas[aria-label="Clients"]')!;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let colored = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 100 && d[i + 3] > 0) colored++;
        return colored;
      });
      assert.ok(inked > 10, `the clients chart has ${inked} blue pixels`);
      await keepScreenshot(page, 'dashboard-2-charts');

      // the clients table lists the Python client (pickle, storage 1)
      const rows = await cells(page, '#clients tbody tr');
      assert.equal(rows.length, fx.server.connectionCount);
      assert.deepEqual(
        rows.map((r) => [r[1], r[2], r[3], r[4]]),
        [['1', 'Z5', 'pickle', 'no']],
      );
      const [headers] = await cells(page, '#clients thead tr', 'th');
      assert.deepEqual(headers.slice(0, 4), ['Address', 'Storage', 'Protocol', 'Encoding']);

      // a client that voted holds the commit lock; a second voter waits behind it
      raw = await RawClient.open(fx.address);
      second = await RawClient.open(fx.address);
      const rawLabel = `${raw.socket.localAddress}:${raw.socket.localPort}`;
      const secondLabel = `${second.socket.localAddress}:${second.socket.localPort}`;
      raw.sendAsync('tpc_begin', [1, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
      raw.sendAsync('storea', [p64(1000), z64, new Uint8Array([1]), 1]);
      await raw.call('vote', [1]);
      second.sendAsync('tpc_begin', [2, new Uint8Array(0), new Uint8Array(0), new Map(), null, ' ']);
      second.sendAsync('storea', [p64(1001), z64, new Uint8Array([2]), 2]);
      const secondVote = second.call('vote', [2]);
      await page.waitForSelector(`#locks .lock-holder strong:text("${rawLabel}")`);
      await page.waitForSelector(`#locks .lock-queue li:has-text("${secondLabel}")`);
      await keepScreenshot(page, 'dashboard-3-lock-held');
      await raw.call('tpc_abort', [1]);
      await secondVote;
      await second.call('tpc_abort', [2]);
      await page.waitForSelector('#locks .lock-free');

      // a commit made now shows up without reloading the page
      const laterTid = await oracle.json<string>(PY_COMMIT, undefined, {
        user: 'bob',
        description: 'made after the page opened',
      });
      await page.waitForSelector(`#transactions tr:has(code:text("${laterTid}"))`);
      const [newest] = await cells(page, '#transactions tbody tr:first-child');
      assert.equal(newest[0], laterTid);
      assert.equal(newest[2], 'bob');
      assert.equal(newest[3], 'made after the page opened');
      await keepScreenshot(page, 'dashboard-4-new-transaction');

      // (the one 404 of /metrics on a server without it, which Chromium reports as a console error)
      const expected = metrics.status === 404 ? /^console\.error: Failed to load resource: .*404/ : /^$/;
      assert.deepEqual(
        page.errors.filter((e) => !expected.test(e)),
        [],
      );
      assert.ok(page.errors.length <= 1, page.errors.join('\n'));
      await page.context().close();
    } finally {
      raw?.close();
      second?.close();
      await oracle.json('import builtins\nbuiltins._dash.close()\nresult = None').catch(() => {});
      oracle.close();
      await fx.stop();
    }
  },
);

test(
  'without the token the page gets nothing; when the server goes away, the page says so and keeps going',
  { skip, timeout: 60_000 },
  async () => {
    const fx = await startServer({ http: {} });
    let running = true;
    try {
      const refused = await browser.newPage();
      const r = await refused.goto(`${fx.http!.url}/`);
      assert.equal(r?.status(), 401);
      assert.ok(!(await refused.content()).includes('Recent transactions'));
      await refused.context().close();

      const page = await browser.newPage();
      await page.goto(`${fx.http!.url}/?token=${fx.http!.token}`);
      await page.waitForSelector('#server table');
      await page.waitForSelector('#transactions .empty:has-text("No transaction yet.")');
      running = false;
      await fx.stop();
      // every panel shows why it could not update; nothing is thrown in the page
      for (const id of ['server', 'clients', 'locks', 'transactions']) {
        await page.waitForSelector(`#${id} .error:has-text("Could not read")`);
      }
      // the charts say why they have no metrics: not that this server has no /metrics, which it had
      await page.waitForSelector('#metrics-note:visible');
      const note = (await page.textContent('#metrics-note')) ?? '';
      assert.match(note, /^Metrics unavailable: could not read \/metrics/);
      assert.doesNotMatch(note, /has no \/metrics/);
      // and the header does not say the page was updated when nothing could be read
      await page.waitForSelector('#status:has-text("Update failed")');
      await keepScreenshot(page, 'dashboard-5-server-gone');
      // (Chromium reports the 404 of /metrics and each refused fetch as console errors; nothing else may be there)
      assert.deepEqual(
        page.errors.filter((e) => !/^console\.error: Failed to load resource: /.test(e)),
        [],
      );
      await page.context().close();
    } finally {
      if (running) await fx.stop();
    }
  },
);

test(
  'zeo serve -C zeo.conf: the configuration panel shows every <zeo> setting and the storage section, never the token',
  { skip, timeout: 60_000 },
  async () => {
    const d = mkdtempSync(join(tmpdir(), 'zeo-ts-dashboard-conf-'));
    const tokenFile = join(d, 'token');
    writeFileSync(tokenFile, 'conf-token-0123456789\n');
    const conf = join(d, 'zeo.conf');
    writeFileSync(
      conf,
      `<zeo>\n  address 127.0.0.1:0\n  http-address 127.0.0.1:0\n  http-token-file ${tokenFile}\n` +
        `  invalidation-queue-size 50\n</zeo>\n<filestorage main>\n  path ${d}/Data.fs\n</filestorage>\n`,
    );
    const child = new ServerProcess({ kind: 'zeo-ts', conf, cwd: d });
    try {
      const [, url] = await child.waitForLog(/INFO ZEO\.http HTTP listener on (http:\/\/127\.0\.0\.1:\d+)/);
      const page = await browser.newPage();
      await page.goto(`${url}/?token=conf-token-0123456789`);
      await page.waitForSelector('#config table');
      const zeo = Object.fromEntries(
        (await cells(page, '#config table:first-of-type tbody tr')).map(([k, v]) => [k, v]),
      );
      assert.equal(zeo['invalidation-queue-size'], '50');
      assert.equal(zeo['http-token-file'], tokenFile);
      assert.match(zeo.address, /^127\.0\.0\.1:0$/);
      const captions = await cells(page, '#config table', 'caption');
      assert.deepEqual(
        captions.map((c) => c[0]),
        ['<zeo>', '<filestorage> main'],
      );
      const storage = Object.fromEntries(
        (await cells(page, '#config table:nth-of-type(2) tbody tr')).map(([k, v]) => [k, v]),
      );
      assert.equal(storage.path, `${d}/Data.fs`);
      assert.ok(!(await page.content()).includes('conf-token-0123456789'));
      await keepScreenshot(page, 'dashboard-6-configuration');
      assert.deepEqual(page.errors, []);
      await page.context().close();
      await child.stopCleanly();
    } finally {
      stopLeftovers();
      rmSync(d, { recursive: true, force: true });
    }
  },
);
