// JupyterLab and Notebook 7 served by Himalia itself, in a real headless Chromium (playwright-core,
// Debian's /usr/bin/chromium). Run by test_lab.py; prints `SUMMARY {json}` last (see steps.mjs).
//
//   SERVER_URL, TOKEN        the `himalia serve` (its base URL, ending in "/"), and its token
//   ROOT                     the server's root dir (holds NOTEBOOK)
//   NOTEBOOK                 a notebook with an empty first cell and a second cell for Notebook 7
//   NESTED                   a notebook two directories down whose one cell prints `exported 42`
//   DOWNLOAD_DIR             where the exported HTML is saved
//   SETTINGS_DIR, WORKSPACES_DIR   $JUPYTERLAB_SETTINGS_DIR and $JUPYTERLAB_WORKSPACES_DIR of the server
//   EXTENSION                the test's federated extension (its plugin sets body[data-himalia-extension])
//   DISABLE_COMMAND          JSON argv that runs `jupyter labextension disable EXTENSION` for the server
//   CHROMIUM, USER_DATA_DIR, SCREENSHOT_DIR

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { WAIT_TIMEOUT_MS, currentStep, finish, group, withTimeout } from './steps.mjs';

const env = name => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};
const SERVER_URL = env('SERVER_URL');
const TOKEN = env('TOKEN');
const ROOT = env('ROOT');
const NOTEBOOK = env('NOTEBOOK');
const NESTED = env('NESTED');
const DOWNLOAD_DIR = env('DOWNLOAD_DIR');
const SETTINGS_DIR = env('SETTINGS_DIR');
const WORKSPACES_DIR = env('WORKSPACES_DIR');
const EXTENSION = env('EXTENSION');
const DISABLE_COMMAND = JSON.parse(env('DISABLE_COMMAND'));
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const BASE_PATH = new URL(SERVER_URL).pathname;  // "/" or "/jh/"

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Answers of 400 and above that are expected, each with why. Anything else fails the last step.
const ALLOWED_ERRORS = [
  // The language server extension's status: Himalia runs no language server (jupyter_lsp), and
  // JupyterLab handles the 404 by offering none.
  /\/lsp\/status$/,
];
// Errors Notebook 7.6.5's own code logs on its pages (/tree, /notebooks/...), whatever the server: the shortcuts
// plugin reads a schema of a plugin the registry has not loaded (seen the same on jupyter_server with
// notebook 7.6.5), and the execution indicator's settings arrive after its widget is gone.
const NOTEBOOK7_BUGS = [/reading 'schema'/, /reading 'updateRenderOption'/];
const notebook7Bug = (p, text) => /^(tree|notebooks)(\/|$)/.test(new URL(p.url()).pathname.slice(BASE_PATH.length))
  && NOTEBOOK7_BUGS.some(re => re.test(text));
// One-off answers a step expects (the login page's 401), consumed when seen.
const expectedErrors = [];
const expected = (status, address) => {
  const i = expectedErrors.findIndex(e => e.status === status && e.path === new URL(address).pathname);
  if (i < 0) return false;
  expectedErrors.splice(i, 1);
  return true;
};
const allowed = url => ALLOWED_ERRORS.some(re => re.test(new URL(url).pathname));
// The same failures as JupyterLab reports them: an unhandled rejection naming the URL, or the
// browser's own line about the websocket handshake.
const allowedMessage = text => ALLOWED_ERRORS.some(re => {
  const found = text.match(/(?:no such URL: |WebSocket connection to ')(\S+?)'?(?: failed|$)/);
  return found && re.test(new URL(found[1], SERVER_URL).pathname);
});

const httpErrors = [];   // {status, method, url, step}
const consoleErrors = [];
const judged = new Set();  // URLs whose error answers the response handler has judged already
let context;
let page;

const shot = async (name, p = page) => p.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`) });
const url = rel => new URL(rel, SERVER_URL).href;

function watch(p) {
  p.on('response', response => {
    if (response.status() >= 400) judged.add(response.url());
    if (response.status() >= 400 && !allowed(response.url()) && !expected(response.status(), response.url())) {
      httpErrors.push({ status: response.status(), method: response.request().method(), url: response.url(),
        step: currentStep() });
    }
  });
  p.on('console', msg => {
    if (msg.type() !== 'error') return;
    const where = msg.location()?.url;
    // Chromium reports every failed load as a console error too: those are judged as HTTP errors above
    if (msg.text().startsWith('Failed to load resource') && where && (allowed(where) || judged.has(where))) return;
    if (msg.text().startsWith('Failed to load resource') && !where) return;
    if (allowedMessage(msg.text()) || notebook7Bug(p, msg.text())) return;
    consoleErrors.push({ text: msg.text().slice(0, 400), where, step: currentStep() });
  });
  p.on('pageerror', err => allowedMessage(String(err)) || notebook7Bug(p, String(err)) || consoleErrors.push({ text: `pageerror: ${String(err).slice(0, 400)}`, step: currentStep() }));
}

const launcher = () => page.locator('.jp-Launcher').first();
const notebookCell = (p, n) => p.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').nth(n);
const theme = () => page.evaluate(() => ({ name: document.body.dataset.jpThemeName, light: document.body.dataset.jpThemeLight }));
const mainTabs = () => page.locator('#jp-main-dock-panel .lm-TabBar-tab .lm-TabBar-tabLabel').allInnerTexts();

/** What a person waits for before running a cell: JupyterLab's status bar says the notebook's kernel
 * is Idle (the status bar names the current notebook, so an earlier tab's Idle does not count); in
 * Notebook 7, whose page has no status bar, the toolbar's kernel indicator does. The cell is run right
 * then, as a person who types and runs right after opening a notebook does. */
async function kernelIdleShown(p, notebookName) {
  if (notebookName === undefined) {
    await p.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')
      .first().waitFor({ timeout: WAIT_TIMEOUT_MS });
    return;
  }
  await p.waitForFunction(name => {
    const text = document.querySelector('#jp-main-statusbar')?.innerText ?? '';
    return /\| Idle\b/.test(text) && text.includes(name);
  }, notebookName, { polling: 'raf', timeout: WAIT_TIMEOUT_MS });
}

async function runCell(p, n, source) {
  const editor = notebookCell(p, n).locator('.jp-InputArea-editor');
  await editor.click();
  if (source !== undefined) await p.keyboard.type(source);
  await p.keyboard.press('Control+Enter');
  const output = notebookCell(p, n).locator('.jp-OutputArea-output');
  await output.first().waitFor({ timeout: WAIT_TIMEOUT_MS });
  return (await output.allInnerTexts()).join('').trim();
}

async function menu(p, top, ...labels) {
  await p.locator('.lm-MenuBar-item', { hasText: new RegExp(`^${top}$`) }).click();
  for (const label of labels) {
    await p.locator('.lm-Menu:not(.lm-mod-hidden) .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel')
      .getByText(label, { exact: true }).last().click();
  }
}

/** JupyterLab has settled after a page load: the app restored its layout (every plugin activated) and
 * the file browser restored. JupyterLab keeps the current document's path in the address
 * (/lab/tree/<path>), so a reload comes back to such an address, and the file browser's restore then
 * ends by opening <path> and activating its tab: after `app.restored`, and under load after a tab
 * opened meanwhile, which it sends to the back. The file browser is marked jp-mod-restoring till then. */
async function appSettled(p) {
  await p.waitForFunction(() => window.jupyterapp, null, { timeout: WAIT_TIMEOUT_MS });
  await withTimeout(p.evaluate(() => window.jupyterapp.restored.then(() => true)), WAIT_TIMEOUT_MS, 'the app restored');
  await p.locator('#filebrowser:not(.jp-mod-restoring)').waitFor({ state: 'attached', timeout: WAIT_TIMEOUT_MS });
}

/** The names of the server's terminals (GET api/terminals, with the page's login cookie). */
const terminalNames = async p => (await (await p.request.get(url('api/terminals'))).json()).map(t => t.name);

/** Wait until the main area holds the widget of a terminal whose session is named `name` (or, with
 * `{ notIn }`, any terminal not in that list), attached, with its websocket connected, as JupyterLab
 * itself knows them; returns the session's name. The tab need not be the current one. */
async function terminalConnected(p, { name, notIn = [] }) {
  const handle = await p.waitForFunction(({ name, notIn }) => {
    for (const widget of window.jupyterapp.shell.widgets('main')) {
      const terminal = widget.content;
      const session = terminal?.session;
      if (!terminal?.hasClass?.('jp-Terminal') || !session) continue;
      if (name !== undefined ? session.name !== name : notIn.includes(session.name)) continue;
      if (terminal.isAttached && session.connectionStatus === 'connected') return session.name;
    }
    return false;
  }, { name, notIn }, { timeout: WAIT_TIMEOUT_MS });
  return handle.jsonValue();
}

/** Make terminal `name` the current tab as a person does (click its tab by its title when another tab
 * is current), then give it the keyboard (click it); waits until JupyterLab has it current and its
 * xterm holds the focus, so that what is typed next goes to this shell. Returns the title of the tab
 * that was current before. */
async function focusTerminal(p, name) {
  const was = await p.evaluate(() => window.jupyterapp.shell.currentWidget?.title.label ?? null);
  if (was !== `Terminal ${name}`) {
    await p.locator('#jp-main-dock-panel .lm-TabBar-tabLabel', { hasText: new RegExp(`^Terminal ${name}$`) }).first().click();
  }
  await p.waitForFunction(name => window.jupyterapp.shell.currentWidget?.content?.session?.name === name, name,
    { timeout: WAIT_TIMEOUT_MS });
  await p.locator('#jp-main-dock-panel .jp-Terminal:not(.lm-mod-hidden)').first().click();
  await p.waitForFunction(name => {
    const terminal = window.jupyterapp.shell.currentWidget?.content;
    return terminal?.session?.name === name && terminal.node.contains(document.activeElement);
  }, name, { timeout: WAIT_TIMEOUT_MS });
  return was;
}

/** Wait until a line of terminal `name` is exactly `line`; returns its non-blank lines, as xterm.js holds
 * them (its buffer: the screen is a canvas, not text in the DOM). */
async function terminalShows(p, name, line) {
  const handle = await p.waitForFunction(({ name, want }) => {
    const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.content?.session?.name === name);
    const buffer = widget?.content?._term?.buffer.active;
    const lines = [];
    for (let i = 0; buffer && i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.some(l => l.trim() === want) && lines.filter(l => l.trim());
  }, { name, want: line }, { timeout: WAIT_TIMEOUT_MS });
  return handle.jsonValue();
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

async function steps() {
  await group([
    ['login: without a token a page says how to log in; its form logs the browser in', async () => {
      expectedErrors.push({ status: 401, path: `${BASE_PATH}lab` });  // this very navigation, once
      const response = await page.goto(url('lab'));
      assert.equal(response.status(), 401);
      await page.getByRole('heading', { name: 'Log in to this Jupyter server' }).waitFor({ timeout: WAIT_TIMEOUT_MS });
      await shot('00-login-page');
      await page.getByLabel('token').fill(TOKEN);
      await page.getByRole('button', { name: 'Log in' }).click();
      await launcher().waitFor({ timeout: WAIT_TIMEOUT_MS });
      assert.equal(new URL(page.url()).pathname, `${BASE_PATH}lab`);
      assert.ok(!page.url().includes('token'), page.url());
      await context.clearCookies();  // the next step logs in with ?token= itself
      return { address: page.url() };
    }],
    ['lab: ?token= logs in, the token leaves the address bar, the launcher shows the Python kernel', async () => {
      await page.goto(url(`lab?token=${TOKEN}`));
      await launcher().waitFor({ timeout: WAIT_TIMEOUT_MS });
      const card = page.locator('.jp-LauncherCard[data-category="Notebook"]', { hasText: 'Python 3' });
      await card.first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      const address = page.url();
      assert.ok(!address.includes('token'), `the address bar still has the token: ${address}`);
      assert.equal(new URL(address).pathname, `${BASE_PATH}lab`);
      const cookies = (await context.cookies()).map(c => c.name).sort();
      assert.ok(cookies.includes('_xsrf') && cookies.includes('himalia-login'), `cookies: ${cookies}`);
      await shot('01-launcher');
      return { address, cards: await page.locator('.jp-LauncherCard').allInnerTexts() };
    }],
    ['lab: the federated extension from the labextensions path is active', async () => {
      await page.waitForFunction(() => document.body.dataset.himaliaExtension === 'active', null, { timeout: WAIT_TIMEOUT_MS });
      return { extension: EXTENSION };
    }],
    ['lab: open a notebook, run print(6*7), see 42', async () => {
      await page.locator('.jp-DirListing-item', { hasText: NOTEBOOK }).first().dblclick();
      await page.locator('.jp-NotebookPanel').first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      await kernelIdleShown(page, NOTEBOOK);
      const output = await runCell(page, 0, 'print(6*7)');
      assert.equal(output, '42');
      await shot('02-notebook-42');
      return { output };
    }],
    ['lab: save, and the file on disk has the cell and its output', async () => {
      await page.keyboard.press('Control+s');
      const tab = page.locator('#jp-main-dock-panel .lm-TabBar-tab', { hasText: NOTEBOOK });
      await page.waitForFunction(() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty'),
        null, { timeout: WAIT_TIMEOUT_MS });
      await tab.first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      const nb = readJson(path.join(ROOT, NOTEBOOK));
      const cell = nb.cells[0];
      const source = Array.isArray(cell.source) ? cell.source.join('') : cell.source;
      assert.equal(source, 'print(6*7)');
      const text = cell.outputs.map(o => [].concat(o.text ?? []).join('')).join('');
      assert.equal(text.trim(), '42');
      await shot('03-saved');
      return { source, output: text };
    }],
    ['lab: the dark theme stays after a reload, and its settings file exists', async () => {
      const saved = page.waitForResponse(r => r.request().method() === 'PUT'
        && r.url().includes('lab/api/settings/@jupyterlab/apputils-extension:themes'), { timeout: WAIT_TIMEOUT_MS });
      await menu(page, 'Settings', 'Theme', 'JupyterLab Dark');
      await page.waitForFunction(() => document.body.dataset.jpThemeName === 'JupyterLab Dark', null, { timeout: WAIT_TIMEOUT_MS });
      assert.equal((await saved).status(), 204);
      const file = path.join(SETTINGS_DIR, '@jupyterlab', 'apputils-extension', 'themes.jupyterlab-settings');
      assert.ok(fs.existsSync(file), `${file} was not written`);
      await page.reload();
      await page.locator('.jp-NotebookPanel').first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      await page.waitForFunction(() => document.body.dataset.jpThemeName === 'JupyterLab Dark', null, { timeout: WAIT_TIMEOUT_MS });
      const after = await theme();
      assert.equal(after.light, 'false');
      await shot('04-dark-after-reload');
      return { theme: after, settings: fs.readFileSync(file, 'utf8') };
    }],
    ['lab: the reload restored the notebook tab (workspace saved)', async () => {
      const tabs = await mainTabs();
      assert.ok(tabs.includes(NOTEBOOK), `tabs after reload: ${tabs}`);
      const files = fs.readdirSync(WORKSPACES_DIR);
      assert.ok(files.some(f => f.endsWith('.jupyterlab-workspace')), `workspaces dir: ${files}`);
      await shot('05-tab-restored');
      return { tabs, workspaces: files };
    }],
    ['lab: File › New › Terminal runs `echo $((6*7)) > t.txt`; its output shows and the file is on disk', async () => {
      // the reload before this step came back to /lab/tree/lab.ipynb: a terminal opened before the file
      // browser has reopened that notebook would be sent to the back
      await appSettled(page);
      const before = await terminalNames(page);
      await menu(page, 'File', 'New', 'Terminal');
      const name = await terminalConnected(page, { notIn: before });
      await focusTerminal(page, name);
      // the typed line has `$((6*7))`, not 42: a line that is 42 is the shell's output
      await page.keyboard.type('echo $((6*7)) > t.txt; cat t.txt');
      await page.keyboard.press('Enter');
      const lines = await terminalShows(page, name, '42');
      const file = path.join(ROOT, 't.txt');
      assert.equal(fs.readFileSync(file, 'utf8'), '42\n');
      assert.deepEqual((await terminalNames(page)).sort(), [...before, name].sort());
      await shot('06a-terminal');
      return { name, lines };
    }],
    ['lab: File › Save and Export As › HTML of a nested notebook downloads HTML with the cell\'s output', async () => {
      const listed = name => page.locator('.jp-FileBrowser .jp-DirListing-itemText').getByText(name, { exact: true }).first();
      for (const dir of path.dirname(NESTED).split('/')) {
        await listed(dir).dblclick();
        await page.locator('.jp-FileBrowser .jp-BreadCrumbs-item', { hasText: dir }).first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      }
      await listed(path.basename(NESTED)).dblclick();
      const panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)').first();
      await panel.waitFor({ timeout: WAIT_TIMEOUT_MS });
      await kernelIdleShown(page, path.basename(NESTED));
      const output = await runCell(page, 0);
      assert.equal(output, 'exported 42');
      // the export opens the download URL in a new window: its download may be told by either page
      const download = new Promise(resolve => {
        page.once('download', resolve);
        context.once('page', popup => popup.once('download', resolve));
      });
      await menu(page, 'File', 'Save and Export Notebook As', 'HTML');
      // JupyterLab asks whether to sanitize for a server whose notebookVersion is 2.x (jupyter_server's
      // and Himalia's page config), as it does on `jupyter lab`
      const dialog = page.locator('.jp-Dialog', { hasText: 'Export as HTML' });
      await dialog.waitFor({ timeout: WAIT_TIMEOUT_MS });
      await shot('06b-export-dialog');
      await dialog.getByRole('button', { name: 'Ok' }).click();
      const saved = await withTimeout(download, WAIT_TIMEOUT_MS, 'the HTML download');
      const file = path.join(DOWNLOAD_DIR, saved.suggestedFilename());
      await saved.saveAs(file);
      assert.equal(saved.suggestedFilename(), path.basename(NESTED).replace(/\.ipynb$/, '.html'));
      const html = fs.readFileSync(file, 'utf8');
      assert.match(html, /<html/i);
      assert.ok(html.includes('exported 42'), 'the exported HTML lacks the cell\'s output');
      const exportUrl = new URL(saved.url());
      assert.equal(exportUrl.pathname, `${BASE_PATH}nbconvert/html/${NESTED}`);
      for (const p of context.pages()) if (p !== page) await p.close();
      await shot('06c-exported');
      return { url: saved.url(), file: saved.suggestedFilename(), bytes: html.length };
    }],
    ['lab: after a reload the same terminal is there, its scrollback shown', async () => {
      const before = await terminalNames(page);
      assert.equal(before.length, 1, `terminals before the reload: ${before}`);
      await page.reload();
      // the reload comes back to the exported notebook's address, whose tab the file browser's restore
      // activates; the terminal's tab is restored behind it and reconnects to the same session
      await appSettled(page);
      const name = await terminalConnected(page, { name: before[0] });
      const currentAfterReload = await focusTerminal(page, name);
      const lines = await terminalShows(page, name, '42');  // the scrollback, replayed by the server
      assert.ok(lines.some(l => l.includes('echo $((6*7)) > t.txt')), `terminal lines: ${lines}`);
      assert.deepEqual(await terminalNames(page), before);
      await shot('06d-terminal-after-reload');
      return { name, lines, currentAfterReload };
    }],
    ['lab: `jupyter labextension disable` removes the extension on the next load', async () => {
      execFileSync(DISABLE_COMMAND[0], DISABLE_COMMAND.slice(1), { stdio: 'pipe', timeout: WAIT_TIMEOUT_MS });
      await page.reload();
      await appSettled(page);
      const config = await page.evaluate(() => JSON.parse(document.getElementById('jupyter-config-data').textContent));
      assert.ok(Array.isArray(config.disabledExtensions), 'disabledExtensions must be a list');
      assert.ok(config.disabledExtensions.includes(EXTENSION), `disabledExtensions: ${config.disabledExtensions}`);
      const state = await page.evaluate(() => document.body.dataset.himaliaExtension ?? null);
      assert.equal(state, null, 'the disabled extension was activated');
      await shot('06-extension-disabled');
      return { disabledExtensions: config.disabledExtensions };
    }],
    ['notebook 7: /tree lists the notebook, which opens in Notebook 7 and runs a cell', async () => {
      await page.goto(url('tree'));
      const item = page.locator('.jp-DirListing-item', { hasText: NOTEBOOK }).first();
      await item.waitFor({ timeout: WAIT_TIMEOUT_MS });
      await shot('07-tree');
      const [nb] = await Promise.all([context.waitForEvent('page', { timeout: WAIT_TIMEOUT_MS }), item.dblclick()]);
      watch(nb);
      await nb.locator('.jp-NotebookPanel').first().waitFor({ timeout: WAIT_TIMEOUT_MS });
      assert.equal(new URL(nb.url()).pathname, `${BASE_PATH}notebooks/${NOTEBOOK}`);
      await kernelIdleShown(nb);
      const output = await runCell(nb, 1);
      assert.equal(output, 'notebook 7 says 42');
      await shot('08-notebook7', nb);
      await nb.close();
      return { url: nb.url(), output };
    }],
    ['no unexpected HTTP error and no console error on any page', async () => {
      assert.deepEqual(httpErrors, [], 'HTTP errors');
      assert.deepEqual(consoleErrors, [], 'console errors');
      return { httpErrors, consoleErrors };
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
  finish({ httpErrors, consoleErrors });
} catch (err) {
  await context?.close().catch(() => {});
  finish({ httpErrors, consoleErrors }, err);
}
