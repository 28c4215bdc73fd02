// JupyterLab on Himalia as JupyterHub's single-user server, in a real headless Chromium (playwright-core,
// Debian's /usr/bin/chromium): alice logs in with the hub's own login form and is sent through the hub's
// OAuth to her server, runs a cell, opens the Hub Control Panel and logs out from JupyterLab's File menu.
// Run by tests/plugins/jupyterhub/test_single_user.py (which owns the hub); prints `SUMMARY {json}` last
// (see steps.mjs).
//
//   HUB_URL              the hub's public URL (its proxy), ending in "/"
//   HUB_USER, PASSWORD   who logs in, and a password DummyAuthenticator takes
//   NOTEBOOK             a notebook in the user's root dir, with one empty code cell
//   CHROMIUM, USER_DATA_DIR, SCREENSHOT_DIR

import assert from 'node:assert/strict';
import path from 'node:path';
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
const HUB_URL = env('HUB_URL');
const HUB_USER = env('HUB_USER');
const PASSWORD = env('PASSWORD');
const NOTEBOOK = env('NOTEBOOK');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const SERVER = `/user/${HUB_USER}/`;

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
// Error answers from the user's server that are expected, each with why; any other (and any 5xx from
// the hub) fails the last step.
const ALLOWED_ERRORS = [
  // Himalia runs no language server (jupyter_lsp); JupyterLab handles the 404 by offering none
  new RegExp(`^${SERVER}lsp/status$`),
];

const httpErrors = [];
let context;
let page;
let navigations = [];  // the main frame's requests since the last reset: every hop of a redirect chain
let kernelId = null;

const url = rel => new URL(rel, HUB_URL).href;
const shot = async (name, p = page) => p.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`) });
const pathOf = address => new URL(address).pathname;

function watch(p) {
  p.on('request', request => {
    if (request.isNavigationRequest() && request.frame() === p.mainFrame()) navigations.push(request.url());
  });
  p.on('response', response => {
    const where = pathOf(response.url());
    const ours = where.startsWith(SERVER);
    if ((response.status() >= 500 || (ours && response.status() >= 400)) && !ALLOWED_ERRORS.some(re => re.test(where))) {
      httpErrors.push({ status: response.status(), method: response.request().method(), url: response.url() });
    }
  });
  // Navigating away from a notebook that ran a cell may ask "leave the page?": yes
  p.on('dialog', dialog => dialog.accept().catch(() => {}));
}

/** The paths the main frame went through since `navigations` was last emptied. */
const hops = () => navigations.map(pathOf);

const launcher = () => page.locator('.jp-Launcher').first();
const notebookCell = n => page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').nth(n);

/** The notebook's kernel is connected and idle, as the app itself knows it (window.jupyterapp: the test
 * turns exposeAppInBrowser on through the user's labconfig/page_config.json). */
async function kernelReady() {
  await page.waitForFunction(() => {
    const context = window.jupyterapp?.shell.currentWidget?.sessionContext;
    const kernel = context?.session?.kernel;
    return context?.isReady && kernel?.connectionStatus === 'connected' && kernel?.status === 'idle';
  }, null, { timeout: WAIT_TIMEOUT_MS });
}

async function menu(top, label) {
  await page.locator('.lm-MenuBar-item', { hasText: new RegExp(`^${top}$`) }).click();
  await page.locator('.lm-Menu:not(.lm-mod-hidden) .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel')
    .getByText(label, { exact: true }).last().click();
}

async function loginForm() {
  await page.locator('#username_input').waitFor({ timeout: WAIT_TIMEOUT_MS });
}

async function steps() {
  await group([
    ['hub: a page of her server sends the browser through OAuth to the hub\'s login form', async () => {
      navigations = [];
      await page.goto(url(`user/${HUB_USER}/lab`));
      await loginForm();
      const seen = hops();
      assert.equal(seen[0], `${SERVER}lab`);
      assert.ok(seen.includes('/hub/api/oauth2/authorize'), `hops: ${seen}`);
      assert.equal(pathOf(page.url()), '/hub/login');
      await shot('00-hub-login');
      return { hops: seen };
    }],
    ['hub: the login form logs alice in and OAuth lands her in JupyterLab under her prefix', async () => {
      navigations = [];
      await page.fill('#username_input', HUB_USER);
      await page.fill('#password_input', PASSWORD);
      await page.locator('#login_submit').click();
      await launcher().waitFor({ timeout: WAIT_TIMEOUT_MS });
      const seen = hops();
      assert.ok(seen.includes(`${SERVER}oauth_callback`), `hops: ${seen}`);
      assert.equal(pathOf(page.url()), `${SERVER}lab`);
      const cookies = (await context.cookies()).map(c => c.name);
      assert.ok(cookies.includes(`jupyterhub-user-${HUB_USER}`), `cookies: ${cookies}`);
      await shot('01-lab');
      return { hops: seen, address: page.url() };
    }],
    ['lab: the page config carries the hub keys', async () => {
      const config = await page.evaluate(() => JSON.parse(document.getElementById('jupyter-config-data').textContent));
      assert.equal(config.hubUser, HUB_USER);
      assert.equal(config.hubPrefix, '/hub/');
      assert.equal(config.hubHost, '');
      assert.equal(config.baseUrl, SERVER);
      assert.equal(config.token, '');
      return { hubUser: config.hubUser, hubPrefix: config.hubPrefix, hubServerName: config.hubServerName };
    }],
    ['lab: open a notebook, run print(6*7), see 42', async () => {
      await page.locator('.jp-DirListing-item', { hasText: NOTEBOOK }).first().dblclick();
      await page.locator('.jp-NotebookPanel').first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      await kernelReady();
      kernelId = await page.evaluate(() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id);
      await notebookCell(0).locator('.jp-InputArea-editor').click();
      await page.keyboard.type('print(6*7)');
      await page.keyboard.press('Control+Enter');
      const output = notebookCell(0).locator('.jp-OutputArea-output');
      await output.first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      const text = (await output.allInnerTexts()).join('').trim();
      assert.equal(text, '42');
      await page.keyboard.press('Control+s');
      await page.waitForFunction(() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty'),
        null, { timeout: WAIT_TIMEOUT_MS });
      await shot('02-notebook-42');
      return { output: text, kernelId };
    }],
    ['lab: File › Hub Control Panel opens the hub\'s home page, logged in', async () => {
      const [panel] = await Promise.all([
        context.waitForEvent('page', { timeout: WAIT_TIMEOUT_MS }),
        menu('File', 'Hub Control Panel'),
      ]);
      await panel.waitForLoadState('load', { timeout: WAIT_TIMEOUT_MS });
      const address = panel.url();
      assert.equal(pathOf(address), '/hub/home');  // not the login form: the hub knows her
      assert.equal(new URL(address).origin, new URL(HUB_URL).origin);
      await shot('03-hub-home', panel);
      await panel.close();
      return { address };
    }],
    ['lab: File › Log Out ends the login, at the hub too', async () => {
      navigations = [];
      await menu('File', 'Log Out');
      await page.waitForURL(address => pathOf(address.href).startsWith('/hub/'), { timeout: WAIT_TIMEOUT_MS });
      await page.waitForLoadState('load', { timeout: WAIT_TIMEOUT_MS });
      const seen = hops();
      assert.equal(seen[0], `${SERVER}logout`);
      assert.ok(seen.includes('/hub/logout'), `hops: ${seen}`);
      const cookies = (await context.cookies()).map(c => c.name);
      assert.ok(!cookies.includes(`jupyterhub-user-${HUB_USER}`), `the server's login cookie is left: ${cookies}`);
      assert.ok(!cookies.includes('jupyterhub-hub-login'), `the hub's login cookie is left: ${cookies}`);
      await shot('04-logged-out');
      return { hops: seen, address: page.url() };
    }],
    ['hub: after logging out, her server sends the browser back to the hub\'s login form', async () => {
      navigations = [];
      await page.goto(url(`user/${HUB_USER}/lab`));
      await loginForm();
      const seen = hops();
      assert.ok(seen.includes('/hub/api/oauth2/authorize'), `hops: ${seen}`);
      assert.equal(pathOf(page.url()), '/hub/login');
      return { hops: seen };
    }],
    ['no unexpected HTTP error', async () => {
      assert.deepEqual(httpErrors, [], 'HTTP errors');
      return { httpErrors };
    }, { check: true }],
  ], {
    onFailure: async name => {
      for (const p of context.pages()) {
        await p.screenshot({ path: path.join(SCREENSHOT_DIR, `failed-${name.replace(/\W+/g, '-').slice(0, 60)}-${context.pages().indexOf(p)}.png`) }).catch(() => {});
      }
    },
  });
}

try {
  context = await chromium.launchPersistentContext(env('USER_DATA_DIR'), {
    executablePath: env('CHROMIUM'),
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] ?? await context.newPage();
  watch(page);
  await steps();
  await context.close();
  finish({ httpErrors, kernelId });
} catch (err) {
  await context?.close().catch(() => {});
  finish({ httpErrors, kernelId }, err);
}
