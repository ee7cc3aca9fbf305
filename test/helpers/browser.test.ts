// The browser helper itself: Debian's Chromium starts headless, renders a page served on loopback, and a
// screenshot lands in the artifacts directory.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { keepScreenshot, launchBrowser, skipBrowser, type TestBrowser } from './browser.js';

describe('headless Chromium', { skip: skipBrowser }, () => {
  let browser: TestBrowser;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>t</title><button onclick="this.textContent=\'clicked\'">press</button>');
  });
  before(async () => {
    browser = await launchBrowser();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    await browser?.close();
    await new Promise((r) => server.close(r));
  });

  test('renders a loopback page, clicks, keeps a screenshot', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await page.click('button');
    assert.equal(await page.textContent('button'), 'clicked');
    const file = await keepScreenshot(page, 'helper-smoke');
    assert.ok(statSync(file).size > 100);
    assert.deepEqual(page.errors, []);
  });
});
