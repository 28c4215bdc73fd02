// JupyterLab in a real headless Chromium, on a jupyter_server whose kernels live on Himalia
// (`--gateway-url`): open a notebook, run a cell, see its output, restart the kernel from the menu.
// Run by test_jupyterlab_gateway.py; prints `SUMMARY {json}` last (see steps.mjs).
//
//   LAB_URL, LAB_TOKEN          the jupyter_server with JupyterLab (LabApp.expose_app_in_browser on)
//   HIMALIA_URL, HIMALIA_TOKEN  the gateway, asked which kernels it runs
//   KERNEL_MARKER               what $HIMALIA_MARKER is in Himalia's kernels
//   NOTEBOOK                    the notebook to open (two cells, see the wrapper)
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
const LAB_URL = env('LAB_URL');
const LAB_TOKEN = env('LAB_TOKEN');
const HIMALIA_URL = env('HIMALIA_URL');
const HIMALIA_TOKEN = env('HIMALIA_TOKEN');
const MARKER = env('KERNEL_MARKER');
const NOTEBOOK = env('NOTEBOOK');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');

// The flags this machine's closed network needs (no background connections, no QUIC, no updates).
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const console_ = [];  // what the page logged at warning level and above, for the summary
let context;
let page;

async function himaliaKernels() {
  const response = await fetch(new URL('api/kernels', HIMALIA_URL), { headers: { Authorization: `token ${HIMALIA_TOKEN}` } });
  assert.equal(response.status, 200);
  return response.json();
}

/** The notebook panel's kernel, read through the app object JupyterLab exposes (window.jupyterapp). */
function labKernel() {
  return page.evaluate(() => {
    const widget = window.jupyterapp.shell.currentWidget;
    const kernel = widget?.sessionContext?.session?.kernel;
    return kernel ? { id: kernel.id, name: kernel.name, status: kernel.status } : null;
  });
}

const cell = n => page.locator('.jp-NotebookPanel .jp-Cell').nth(n);
const idle = () => page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]')
  .waitFor({ timeout: WAIT_TIMEOUT_MS });

/** Click into cell `n` and run it in place (Ctrl+Enter), as a user would. */
async function startCell(n) {
  await cell(n).locator('.jp-InputArea-editor').click();
  await page.keyboard.press('Control+Enter');
}

async function runCell(n) {
  await startCell(n);
  const output = cell(n).locator('.jp-OutputArea-output');
  await output.first().waitFor({ timeout: WAIT_TIMEOUT_MS });
  await idle();
  return {
    output: (await output.allInnerTexts()).join(''),
    prompt: (await cell(n).locator('.jp-InputArea-prompt').innerText()).trim(),
  };
}

async function kernelMenu(label) {
  await page.locator('.lm-MenuBar-item', { hasText: /^Kernel$/ }).click();
  await page.locator('.lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel').getByText(label, { exact: true }).click();
}

let kernelId;
const unexpectedDialogs = [];

async function labSteps() {
  await group([
    ['lab: open the notebook', async () => {
      await page.goto(new URL(`lab/tree/${NOTEBOOK}?token=${LAB_TOKEN}`, LAB_URL).href);
      await page.locator('.jp-NotebookPanel').waitFor({ timeout: WAIT_TIMEOUT_MS });
      await page.waitForFunction(() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle',
        null, { timeout: WAIT_TIMEOUT_MS });
      await idle();
      assert.equal(await page.locator('.jp-NotebookPanel .jp-Cell').count(), 3);
      const main = page.getByRole('main', { name: 'Main Content' });
      const tab = await main.locator('.lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel').innerText();
      assert.equal(tab, NOTEBOOK);
      const kernel = await labKernel();
      assert.equal(kernel.name, 'python3');
      // The kernel is Himalia's: jupyter_server's gateway client keeps Himalia's kernel ids.
      const remote = await himaliaKernels();
      assert.deepEqual(remote.map(k => k.id), [kernel.id], 'Himalia should run exactly the notebook\'s kernel');
      kernelId = kernel.id;
      return { kernel, himalia: remote.map(k => ({ id: k.id, name: k.name, execution_state: k.execution_state })) };
    }],
    ['lab: run a cell and see its output', async () => {
      const { output, prompt } = await runCell(0);
      assert.equal(output.trim(), `kernel on himalia ${MARKER}`);
      assert.equal(prompt, '[1]:');
      return { output, prompt };
    }],
    ['lab: interrupt a running cell from the Kernel menu', async () => {
      await startCell(2);
      const output = cell(2).locator('.jp-OutputArea-output');
      await output.filter({ hasText: 'sleeping' }).waitFor({ timeout: WAIT_TIMEOUT_MS });
      assert.equal(await page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator').getAttribute('data-status'), 'busy');
      await kernelMenu('Interrupt Kernel');
      await output.filter({ hasText: 'KeyboardInterrupt' }).waitFor({ timeout: WAIT_TIMEOUT_MS });
      await idle();
      return { output: (await output.allInnerTexts()).join('').split('\n').filter(line => line.includes('KeyboardInterrupt')) };
    }],
    ['lab: restart the kernel from the Kernel menu', async () => {
      // Record what the notebook's session context reports from here on.
      await page.evaluate(() => {
        window.himaliaStatuses = [];
        window.jupyterapp.shell.currentWidget.sessionContext.statusChanged.connect((_, status) => {
          window.himaliaStatuses.push(status);
        });
      });
      await kernelMenu('Restart Kernel…');
      const confirm = page.locator('.jp-Dialog', { hasText: 'Restart Kernel?' });
      await confirm.waitFor({ timeout: WAIT_TIMEOUT_MS });
      await confirm.locator('button.jp-mod-accept').click();
      await confirm.waitFor({ state: 'detached', timeout: WAIT_TIMEOUT_MS });
      const restarted = page.waitForFunction(() => {
        const s = window.himaliaStatuses;
        return s.includes('restarting') && s.at(-1) === 'idle';
      }, null, { timeout: WAIT_TIMEOUT_MS }).then(() => 'restarted');
      // Any other dialog (e.g. "the kernel appears to have died") is recorded and dismissed, so that
      // the remaining steps still run; the last step fails on it.
      const dialog = page.locator('.jp-Dialog').first();
      const other = dialog.waitFor({ timeout: WAIT_TIMEOUT_MS }).then(() => 'dialog', () => null);
      try {
        if (await Promise.race([restarted, other]) === 'dialog') {
          unexpectedDialogs.push(await dialog.getAttribute('aria-label'));
          await dialog.locator('button.jp-mod-accept').click();
          await restarted;
        }
      } catch (err) {
        const statuses = await page.evaluate(() => window.himaliaStatuses);
        throw new Error(`${err.message.split('\n')[0]}; the notebook's kernel statuses were ${statuses}`);
      }
      await idle();
      const statuses = await page.evaluate(() => window.himaliaStatuses);
      const kernel = await labKernel();
      assert.equal(kernel.id, kernelId, 'a restart keeps the kernel id');
      const remote = await himaliaKernels();
      assert.deepEqual(remote.map(k => k.id), [kernelId]);
      return { statuses };
    }],
    ['lab: the restarted kernel is a fresh one', async () => {
      const { output, prompt } = await runCell(1);
      assert.equal(output.trim(), 'survivor defined: False');
      assert.equal(prompt, '[1]:');
      return { output, prompt };
    }],
    ['lab: no dialog and no kernel error shown', async () => {
      // A restart reported as an auto-restart or a dead kernel would show up here.
      assert.deepEqual(unexpectedDialogs, [], 'dialogs shown during the restart');
      assert.equal(await page.locator('.jp-Dialog').count(), 0, 'a dialog is open');
      const statuses = await page.evaluate(() => window.himaliaStatuses);
      assert.ok(!statuses.includes('autorestarting'), `statuses: ${statuses}`);
      assert.ok(!statuses.includes('dead'), `statuses: ${statuses}`);
      const indicator = await page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator').getAttribute('data-status');
      assert.equal(indicator, 'idle');
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'after-restart.png') });
      return { statuses };
    }],
  ], {
    onFailure: async name => {
      await page?.screenshot({ path: path.join(SCREENSHOT_DIR, `${name.replace(/\W+/g, '-')}.png`) });
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
  page.on('console', msg => {
    if (msg.type() === 'error' || msg.type() === 'warning') console_.push(`${msg.type()}: ${msg.text().slice(0, 300)}`);
  });
  page.on('pageerror', err => console_.push(`pageerror: ${String(err).slice(0, 300)}`));
  await labSteps();
  await context.close();
  finish({ console: console_ });
} catch (err) {
  await context?.close().catch(() => {});
  finish({ console: console_ }, err);
}
