// The object browser in a real headless Chromium, against a running server with data Python's ZODB wrote:
// the root, a reference followed into an OOBTree, its items paged forward and back (Python's sorted keys),
// Back to the root, an object's history and an old revision, a transaction, the undo log, a broken reference,
// an error shown in the page. A screenshot is kept at each step.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { makeBrowseData, treeKeys, type BrowseData } from '../../helpers/browse-data.js';
import { keepScreenshot, launchBrowser, skipBrowser, type TestBrowser } from '../../helpers/browser.js';
import { interopDisabled, Oracle } from '../../helpers/oracle.js';
import { startServer, type TestServer } from '../../helpers/server-fixture.js';

const skip = skipBrowser || (interopDisabled ? 'ZEO_TS_SKIP_INTEROP=1' : false);

/** Waits until the page shows this view (what #view's data attributes name), not the one before it. */
async function shows(page: Page, view: string, oid = '', tid = ''): Promise<void> {
  await page.waitForSelector(`#view[data-view="${view}"][data-oid="${oid}"][data-tid="${tid}"]`);
}

async function objectClass(page: Page, name: string): Promise<void> {
  await page.waitForSelector(`#object-class:text-is("${name}")`);
}

async function itemKeys(page: Page): Promise<string[]> {
  return page.locator('#items tbody tr td:first-child').allTextContents();
}

describe('the object browser in Chromium', { skip }, () => {
  let browser: TestBrowser;
  let s: TestServer;
  let d: BrowseData;

  before(async () => {
    s = await startServer({ http: {} });
    const oracle = new Oracle();
    try {
      d = await makeBrowseData(oracle, ['127.0.0.1', (s.address as { port: number }).port]);
    } finally {
      oracle.close();
    }
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
  });

  test('root, into a BTree and back, history, a transaction, the undo log', async () => {
    const page = await browser.newPage();
    const keys = treeKeys().map((k) => `'${k}'`);
    // the token in the URL gives the session cookie, then the page without it
    await page.goto(`${s.http!.url}/browse?token=${s.http!.token}`);
    assert.equal(new URL(page.url()).search, '');
    await shows(page, 'object', d.root);
    await objectClass(page, 'persistent.mapping.PersistentMapping');
    assert.equal(await page.textContent('#items-range'), 'items 1–8 of 8');
    await keepScreenshot(page, 'browse-1-root');

    // follow the reference into the OOBTree; page forward and back
    await page.click(`#items a.ref[data-oid="${d.tree}"]`);
    await shows(page, 'object', d.tree);
    await objectClass(page, 'BTrees.OOBTree.OOBTree');
    await page.waitForSelector('#items-range:text("items 1–100")');
    assert.deepEqual(await itemKeys(page), keys.slice(0, 100));
    await keepScreenshot(page, 'browse-2-btree-page-1');
    await page.click('#items-next');
    await page.waitForSelector('#items-range:text("items 101–200")');
    assert.deepEqual(await itemKeys(page), keys.slice(100, 200));
    await page.click('#items-next');
    await page.waitForSelector('#items-range:text("items 201–300")');
    assert.deepEqual(await itemKeys(page), keys.slice(200, 300));
    await keepScreenshot(page, 'browse-3-btree-page-3');
    await page.click('#items-prev');
    await page.waitForSelector('#items-range:text("items 101–200")');
    assert.deepEqual(await itemKeys(page), keys.slice(100, 200));
    await page.click('#items-prev');
    await page.waitForSelector('#items-range:text("items 1–100")');
    assert.deepEqual(await itemKeys(page), keys.slice(0, 100));

    // the browser's Back walks the same way back to the root
    for (const range of ['items 101–200', 'items 201–300', 'items 101–200', 'items 1–100']) {
      await page.goBack();
      await page.waitForSelector(`#items-range:text("${range}")`);
    }
    await page.goBack();
    await shows(page, 'object', d.root);
    await objectClass(page, 'persistent.mapping.PersistentMapping');
    await keepScreenshot(page, 'browse-4-back-at-root');

    // the object with several revisions: its history, an old revision, its transaction
    await page.click(`#items a.ref[data-oid="${d.revised}"]`);
    await shows(page, 'object', d.revised);
    const tids = await page.locator('#history a.revision').allTextContents();
    assert.deepEqual(tids, [...d.revision_tids].reverse());
    await keepScreenshot(page, 'browse-5-history');
    await page.click(`#history a.revision:text("${d.revision_tids[1]}")`);
    await shows(page, 'object', d.revised, d.revision_tids[1]);
    assert.equal(await page.locator('text=viewed as of').count(), 1);
    const revItems = await page.locator('#items tbody tr').allTextContents();
    assert.deepEqual(
      revItems,
      ["'rev': 1"].map((x) => x.replace(': ', '')),
    );
    await keepScreenshot(page, 'browse-6-old-revision');
    await page.click(`#history tr:has(a.revision:text("${d.revision_tids[1]}")) a.txn`);
    await shows(page, 'transaction', '', d.revision_tids[1]);
    assert.equal(await page.textContent('#txn-description'), 'revision 1');
    assert.deepEqual(
      await Promise.all(
        (await page.locator('#records tbody a.oid').all()).map((a) => a.getAttribute('href')),
      ),
      [`#/1/object/${d.revised}@${d.revision_tids[1]}`],
    );
    await keepScreenshot(page, 'browse-7-transaction');

    // the undo log
    await page.click('#go-undo');
    await shows(page, 'undo');
    const descriptions = await page.locator('#undo-log tbody tr td:nth-child(4)').allTextContents();
    assert.deepEqual(
      descriptions,
      d.undo_log.map((e) => e.description),
    );
    await keepScreenshot(page, 'browse-8-undo-log');

    // a class no module names any more, and a dangling reference
    await page.goto(`${s.http!.url}/browse#/1/object/${d.gadget}`);
    await shows(page, 'object', d.gadget);
    await objectClass(page, 'browse_vanished.Gadget');
    // its 5,000-character string shows its first KB wrapped inside the page, not running off its right edge
    const overflow = await page.evaluate(`(() => {
      const state = document.querySelector('#state').getBoundingClientRect();
      return Math.max(...[...document.querySelectorAll('#state .atom')].map((a) => a.getBoundingClientRect().right)) - state.right;
    })()`);
    assert.ok((overflow as number) <= 0, `the state's strings run ${String(overflow)} px past it`);
    // a record that does not decode (its class is a copyreg extension code): why, and its opcodes
    await page.goto(`${s.http!.url}/browse#/1/object/${d.families.coded}`);
    await shows(page, 'object', d.families.coded);
    assert.equal(await page.locator('#record-error').count(), 1);
    assert.match((await page.textContent('#opcodes')) ?? '', /EXT1 240/);
    await keepScreenshot(page, 'browse-9-undecodable');
    await page.goto(`${s.http!.url}/browse#/1/object/${d.holder}`);
    await shows(page, 'object', d.holder);
    assert.equal(await page.locator('#state .ref.broken').count(), 1);
    await keepScreenshot(page, 'browse-10-broken-reference');
    // the header's "Undo log" link: the first storage's undo log
    await page.click('header.site a[href="/browse#undo"]');
    await shows(page, 'undo');
    assert.equal(await page.locator('#undo-log tbody tr').count(), d.undo_log.length);
    assert.deepEqual(page.errors, []);

    // an error is shown in the page
    await page.goto(`${s.http!.url}/browse#/1/object/00000000000fffff`);
    await shows(page, 'error');
    assert.match((await page.textContent('#error')) ?? '', /^404: no such object/);
    await keepScreenshot(page, 'browse-11-error');
    assert.deepEqual(
      page.errors.filter((e) => !/Failed to load resource/.test(e)),
      [],
    );
  });
});
