// A real headless Chromium for the web UI's tests (issue 13): Debian's `chromium` package driven by
// playwright-core, which never downloads a browser. Each test file launches one browser (before/after) and a
// fresh page per test; screenshots are kept as artifacts of the run in $ZEO_TS_ARTIFACTS (default
// ./artifacts/screenshots, git-ignored). Without the binary it throws, saying how to install it (or
// ZEO_TS_SKIP_BROWSER=1: `skipBrowser`).
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

/** false, or why browser tests are skipped (only ever by the documented ZEO_TS_SKIP_BROWSER=1) */
export const skipBrowser: false | string =
  process.env.ZEO_TS_SKIP_BROWSER === '1' ? 'ZEO_TS_SKIP_BROWSER=1: browser tests are skipped' : false;

/** $ZEO_TS_CHROMIUM, else Debian's /usr/bin/chromium. */
export function chromiumPath(): string {
  const path = process.env.ZEO_TS_CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(path))
    throw new Error(
      `Chromium is not installed (no ${path}): apt-get install chromium ` +
        '(or set ZEO_TS_CHROMIUM, or ZEO_TS_SKIP_BROWSER=1 to skip these tests)',
    );
  return path;
}

// Without the background-networking flags Chromium tries to reach Google's hosts at every start; this
// machine's network refuses them (and tests must contact nothing but loopback).
const FLAGS = [
  '--headless',
  '--no-sandbox', // as root (CI), Chromium refuses to start sandboxed
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
];

export interface TestBrowser {
  browser: Browser;
  /** a new page in a fresh context (no cookies shared between tests), 1280×800; errors in the page fail it */
  newPage(options?: { extraHTTPHeaders?: Record<string, string> }): Promise<Page & { errors: string[] }>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  // playwright gives the browser a new empty profile directory of its own, and removes it at close
  const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: FLAGS });
  return {
    browser,
    async newPage(options = {}) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
      const page = (await context.newPage()) as Page & { errors: string[] };
      // an uncaught exception or console.error in the page is a failure the test can assert on
      page.errors = [];
      page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') page.errors.push(`console.error: ${m.text()}`);
      });
      return page;
    },
    async close() {
      await browser.close();
    },
  };
}

/** The directory screenshots are kept in: $ZEO_TS_ARTIFACTS/screenshots, default ./artifacts/screenshots. */
export function artifactsDir(): string {
  const dir = resolve(process.env.ZEO_TS_ARTIFACTS ?? 'artifacts', 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A full-page screenshot kept as an artifact of the run; returns its path. */
export async function keepScreenshot(page: Page, name: string): Promise<string> {
  const file = join(artifactsDir(), `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
