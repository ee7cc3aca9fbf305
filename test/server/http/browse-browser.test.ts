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
    await objectClass(page, 'persistent.mapping.PersistentMapping');
    await page.waitForSelector(`#items a.ref[data-oid="${d.tree}"]`);
    assert.equal(await page.textContent('#items-range'), 'items 1–8 of 8');
    await keepScreenshot(page, 'browse-1-root');

    // follow the reference into the OOBTree; page forward and back
    await page.click(`#items a.ref[data-oid="${d.tree}"]`);
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
    await objectClass(page, 'persistent.mapping.PersistentMapping');
    await keepScreenshot(page, 'browse-4-back-at-root');

    // the object with several revisions: its history, an old revision, its transaction
    await page.click(`#items a.ref[data-oid="${d.revised}"]`);
    await page.waitForSelector('#history tbody tr:nth-child(4)');
    const tids = await page.locator('#history a.revision').allTextContents();
    assert.deepEqual(tids, [...d.revision_tids].reverse());
    await keepScreenshot(page, 'browse-5-history');
    await page.click(`#history a.revision:text("${d.revision_tids[1]}")`);
    await page.waitForSelector(`text=viewed as of`);
    await page.waitForSelector('#items tbody tr');
    const revItems = await page.locator('#items tbody tr').allTextContents();
    assert.deepEqual(
      revItems,
      ["'rev': 1"].map((x) => x.replace(': ', '')),
    );
    await keepScreenshot(page, 'browse-6-old-revision');
    await page.click(`#history tr:has(a.revision:text("${d.revision_tids[1]}")) a.txn`);
    await page.waitForSelector('#txn-description:text("revision 1")');
    assert.deepEqual(
      await Promise.all(
        (await page.locator('#records tbody a.oid').all()).map((a) => a.getAttribute('href')),
      ),
      [`#/1/object/${d.revised}@${d.revision_tids[1]}`],
    );
    await keepScreenshot(page, 'browse-7-transaction');

    // the undo log
    await page.click('#go-undo');
    await page.waitForSelector('#undo-log tbody tr');
    const descriptions = await page.locator('#undo-log tbody tr td:nth-child(4)').allTextContents();
    assert.deepEqual(
      descriptions,
      d.undo_log.map((e) => e.description),
    );
    await keepScreenshot(page, 'browse-8-undo-log');

    // the header's "Undo log" link: the first storage's undo log
    await page.goto(`${s.http!.url}/browse#undo`);
    await page.waitForSelector('#undo-log tbody tr');
    assert.equal(await page.locator('#undo-log tbody tr').count(), d.undo_log.length);

    // a class no module names any more, and a dangling reference
    await page.goto(`${s.http!.url}/browse#/1/object/${d.gadget}`);
    await objectClass(page, 'browse_vanished.Gadget');
    // a record that does not decode (its class is a copyreg extension code): why, and its opcodes
    await page.goto(`${s.http!.url}/browse#/1/object/${d.families.coded}`);
    await page.waitForSelector('#record-error');
    assert.match((await page.textContent('#opcodes')) ?? '', /EXT1 240/);
    await keepScreenshot(page, 'browse-9-undecodable');
    await page.goto(`${s.http!.url}/browse#/1/object/${d.holder}`);
    await page.waitForSelector('#state .ref.broken');
    await keepScreenshot(page, 'browse-10-broken-reference');
    assert.deepEqual(page.errors, []);

    // an error is shown in the page
    await page.goto(`${s.http!.url}/browse#/1/object/00000000000fffff`);
    await page.waitForSelector('#error:text("404")');
    await keepScreenshot(page, 'browse-11-error');
    assert.deepEqual(
      page.errors.filter((e) => !/Failed to load resource/.test(e)),
      [],
    );
  });
});
