// Time from spawning a server to a JupyterLab page whose launcher is visible, in headless Chromium
// (a browser already running, with an empty cache, as a person's browser would be when they click
// the printed link). Run by bench/figures_lab.py; prints one JSON line.
//
//   CMD       JSON argv of the server to spawn (it must listen where URL says)
//   URL       the JupyterLab page with ?token=
//   CHROMIUM  Debian's /usr/bin/chromium

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// playwright-core as tests/clients pins it (its package-lock.json); no browser is downloaded
const require = createRequire(path.join(here, '..', 'tests', 'clients', 'package.json'));
const { chromium } = require('playwright-core');

const cmd = JSON.parse(process.env.CMD);
const url = process.env.URL;
const TIMEOUT_MS = 120000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
await page.goto('about:blank');
let server;
let result;
try {
  const t0 = performance.now();
  server = spawn(cmd[0], cmd.slice(1), { stdio: 'ignore', detached: true });
  let loaded = false;
  while (!loaded) {
    if (performance.now() - t0 > TIMEOUT_MS) throw new Error(`no page at ${url} within ${TIMEOUT_MS} ms`);
    try {
      const response = await page.goto(url, { timeout: TIMEOUT_MS });
      loaded = response !== null && response.ok();
    } catch {
      // not listening yet: polling a port of a process that gives no event
    }
    if (!loaded) await new Promise(resolve => setTimeout(resolve, 20));
  }
  const served = performance.now();
  await page.locator('.jp-LauncherCard').first().waitFor({ state: 'visible', timeout: TIMEOUT_MS });
  const t1 = performance.now();
  result = { launcher_s: (t1 - t0) / 1000, first_page_s: (served - t0) / 1000 };
} catch (err) {
  result = { error: String(err).split('\n')[0] };
} finally {
  if (server?.pid) {
    try { process.kill(-server.pid, 'SIGTERM'); } catch {}
    const gone = new Promise(resolve => server.once('exit', resolve));
    const timer = setTimeout(() => { try { process.kill(-server.pid, 'SIGKILL'); } catch {} }, 15000);
    if (server.exitCode === null) await gone;
    clearTimeout(timer);
  }
  await browser.close();
}
console.log(JSON.stringify(result));
