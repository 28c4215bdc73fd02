// A page from the root, opened through /files/ by a logged-in user in a real headless Chromium, tries
// what an attacker's page would: read the script-readable _xsrf cookie and call the API with the login
// cookie. Run by test_user_content_sandbox.py; prints `SUMMARY {json}` last (see steps.mjs).
//
//   HIMALIA_URL, HIMALIA_TOKEN   the server (its root holds PAGE)
//   PAGE                         the page's path under the root; it sets window.__attempt when done
//   CHROMIUM, USER_DATA_DIR

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { WAIT_TIMEOUT_MS, finish, group } from './steps.mjs';

const env = name => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};
const URL_ = env('HIMALIA_URL');
const TOKEN = env('HIMALIA_TOKEN');
const PAGE = env('PAGE');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let context;
let page;
let attempt;

try {
  context = await chromium.launchPersistentContext(env('USER_DATA_DIR'), {
    executablePath: env('CHROMIUM'), headless: true, args: CHROMIUM_ARGS,
  });
  page = context.pages()[0] ?? await context.newPage();
  await group([
    ['browser: log in with ?token= (login and _xsrf cookies set)', async () => {
      const response = await page.goto(`${URL_}?token=${TOKEN}`);
      assert.equal(response.status(), 200);
      const names = (await context.cookies(URL_)).map(c => c.name).sort();
      assert.ok(names.includes('_xsrf') && names.includes('himalia-login'), `cookies: ${names}`);
      return names;
    }],
    ['browser: open the page from the root through /files/', async () => {
      const response = await page.goto(new URL(`files/${PAGE}`, URL_).href);
      assert.equal(response.status(), 200);
      await page.waitForFunction(() => window.__attempt !== undefined, null, { timeout: WAIT_TIMEOUT_MS });
      attempt = await page.evaluate(() => window.__attempt);
      return { headers: response.headers(), attempt };
    }],
  ]);
  finish({ attempt });
} catch (error) {
  finish({ attempt }, error);
} finally {
  await context?.close().catch(() => {});
}
