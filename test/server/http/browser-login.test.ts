// A real browser (headless Chromium) logs in as a person would: it opens the URL the server logs, with
// ?token=, lands on the page without the token in the address bar, and the page's own same-origin script and
// fetches are carried by the session cookie (and allowed by the Content-Security-Policy); a browser without the
// cookie gets 401.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HttpListener } from '../../../src/server/http/listener.js';
import { sendJson, sendText, type HttpRoute } from '../../../src/server/http/routes.js';
import { createLogger } from '../../../src/server/log.js';
import { keepScreenshot, launchBrowser, skipBrowser, type TestBrowser } from '../../helpers/browser.js';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>login</title><script type="module" src="/app.js"></script></head>
<body><h1>zeo-ts</h1><p id="out">waiting</p></body></html>`;

const SCRIPT = `
const r = await fetch('/api/who');
const out = document.getElementById('out');
out.textContent = r.ok ? (await r.json()).who : 'refused ' + r.status;
out.className = 'done';
`;

const routes: HttpRoute[] = [
  { path: '/page', handle: (_q, res) => sendText(res, 200, 'text/html; charset=utf-8', PAGE) },
  { path: '/app.js', handle: (_q, res) => sendText(res, 200, 'text/javascript; charset=utf-8', SCRIPT) },
  // (a browser asks for it by itself; a 404 would be a console error)
  {
    path: '/favicon.ico',
    handle: (_q, res) => {
      res.writeHead(204);
      res.end();
    },
  },
  { path: '/api/who', handle: (_q, res) => sendJson(res, 200, { who: 'served through the cookie' }) },
];

describe('logging in with ?token= in a browser', { skip: skipBrowser }, () => {
  let browser: TestBrowser;
  let listener: HttpListener;
  const token = 'browser-token-0123456789';
  before(async () => {
    browser = await launchBrowser();
    const quiet = createLogger(null, { stderr: { write: () => true } as unknown as NodeJS.WritableStream });
    listener = await HttpListener.start({
      address: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      routes,
      log: quiet.root,
      token,
    });
  });
  after(async () => {
    await browser?.close();
    await listener?.close();
  });

  test('the token URL leads to the page without the token; its script and fetches pass on the cookie', async () => {
    const page = await browser.newPage();
    await page.goto(`${listener.url}/page?token=${token}`);
    assert.equal(page.url(), `${listener.url}/page`);
    await page.waitForSelector('#out.done');
    assert.equal(await page.textContent('#out'), 'served through the cookie');
    await keepScreenshot(page, 'http-login');
    // later visits in the same browser need no token
    const again = await page.goto(`${listener.url}/page`);
    assert.equal(again?.status(), 200);
    await page.waitForSelector('#out.done');
    assert.equal(await page.textContent('#out'), 'served through the cookie');
    assert.deepEqual(page.errors, []);
    const cookies = await page.context().cookies();
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0].httpOnly, true);
    assert.equal(cookies[0].sameSite, 'Strict');
  });

  test('a browser without the cookie gets 401 and nothing else', async () => {
    const page = await browser.newPage();
    const r = await page.goto(`${listener.url}/page`);
    assert.equal(r?.status(), 401);
    assert.equal(await page.textContent('body'), '401 Unauthorized\n');
    const wrong = await page.goto(`${listener.url}/page?token=not-it`);
    assert.equal(wrong?.status(), 401);
    assert.deepEqual(await page.context().cookies(), []);
  });
});
