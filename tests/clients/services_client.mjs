// Drives a Jupyter server with the official @jupyterlab/services client, the library JupyterLab and
// VS Code's Jupyter extension use: kernelspecs, contents, sessions and kernel connections over both
// websocket protocols. Run by test_jupyterlab_services.py against a real `himalia serve`.
//
//   JUPYTER_URL=http://127.0.0.1:PORT/ JUPYTER_TOKEN=... node services_client.mjs
//
// The server's root must hold a directory `notebooks/` (the sessions steps start kernels there).
//
// Every step asserts what the client saw. The last line of stdout is `SUMMARY {json}`: one entry per
// step, {name, ok, error?, saw?}; a step after a failed one in its group is recorded as skipped. The
// exit status is 0 only when every step passed.

import assert from 'node:assert/strict';
import {
  ContentsManager,
  KernelAPI,
  KernelManager,
  KernelSpecManager,
  ServerConnection,
  SessionAPI,
  SessionManager,
} from '@jupyterlab/services';
import WebSocket from 'ws';
import { WAIT_TIMEOUT_MS, currentStep, finish, group, withTimeout } from './steps.mjs';

const BASE_URL = process.env.JUPYTER_URL;
const TOKEN = process.env.JUPYTER_TOKEN ?? '';
// Set when the server's kernels come from a kernel gateway: their working directory is the gateway's
// choice, as with jupyter_server in gateway mode.
const REMOTE_KERNEL_CWD = process.env.REMOTE_KERNEL_CWD;
const V1 = 'v1.kernel.websocket.jupyter.org';
if (!BASE_URL) {
  console.error('JUPYTER_URL is not set');
  process.exit(2);
}

// --- helpers ------------------------------------------------------------------------------------

/** Resolve when `signal` emits a value for which `predicate` is true, within WAIT_TIMEOUT_MS. */
function nextSignal(signal, predicate, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.disconnect(slot);
      reject(new Error(`timed out waiting for ${what}`));
    }, WAIT_TIMEOUT_MS);
    function slot(sender, value) {
      if (predicate(value)) {
        clearTimeout(timer);
        signal.disconnect(slot);
        resolve(value);
      }
    }
    signal.connect(slot);
  });
}

async function expectStatus(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err?.response?.status, status, `expected HTTP ${status}, got ${err}`);
    return;
  }
  assert.fail(`expected HTTP ${status}, the request succeeded`);
}

// --- the connection settings ---------------------------------------------------------------------

// Which subprotocol each kernel websocket offered and which one the server selected.
const sockets = [];

/**
 * `ws`, offering the client's subprotocols or none. @jupyterlab/services offers
 * `v1.kernel.websocket.jupyter.org` and takes the legacy JSON protocol when the server selects none;
 * offering nothing is how an older client (or a server without subprotocols) ends up on legacy.
 */
function webSocketClass(offerSubprotocols, headers) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, protocols) {
      const offered = offerSubprotocols ? protocols ?? [] : [];
      super(url, offered, { headers });
      const record = {
        url: String(url).replace(/token=[^&]*/, 'token=…'), step: currentStep(), offered, selected: null, closed: null,
      };
      sockets.push(record);
      this.addEventListener('open', () => {
        record.selected = this.protocol;
      });
      this.addEventListener('close', event => {
        record.closed = { code: event.code, reason: event.reason, step: currentStep() };
      });
    }
  };
}

/**
 * Connection settings. The kernel websocket carries the token in its URL (`appendToken`, what
 * @jupyterlab/services does outside a browser) or, with `tokenInHeader`, in an Authorization header.
 */
function settings(offerSubprotocols, { tokenInHeader = false } = {}) {
  return ServerConnection.makeSettings({
    baseUrl: BASE_URL,
    token: TOKEN,
    appendToken: !tokenInHeader,
    WebSocket: webSocketClass(offerSubprotocols, tokenInHeader ? { Authorization: `token ${TOKEN}` } : {}),
  });
}

const serverSettings = settings(true);
const managers = [];
function manager(m) {
  managers.push(m);
  return m;
}

async function authedFetch(path) {
  return fetch(new URL(path, BASE_URL), { headers: { Authorization: `token ${TOKEN}` } });
}

// --- kernelspecs ----------------------------------------------------------------------------------

async function kernelspecSteps() {
  const specs = manager(new KernelSpecManager({ serverSettings }));
  await group([
    ['kernelspecs: list', async () => {
      await specs.refreshSpecs();
      const model = specs.specs;
      assert.ok(model, 'no kernelspecs model');
      assert.ok(model.default in model.kernelspecs, `default ${model.default} not among the specs`);
      const python = model.kernelspecs.python3;
      assert.ok(python, `no python3 kernelspec: ${Object.keys(model.kernelspecs)}`);
      assert.equal(python.language, 'python');
      assert.ok(python.display_name, 'python3 has no display_name');
      assert.ok(python.resources['logo-64x64'], `python3 has no logo-64x64: ${JSON.stringify(python.resources)}`);
      return { default: model.default, names: Object.keys(model.kernelspecs).sort(), resources: python.resources };
    }],
    ['kernelspecs: logo resource', async () => {
      const url = specs.specs.kernelspecs.python3.resources['logo-64x64'];
      const response = await authedFetch(url);
      assert.equal(response.status, 200, `GET ${url}`);
      assert.equal(response.headers.get('content-type'), 'image/png');
      const bytes = new Uint8Array(await response.arrayBuffer());
      assert.deepEqual([...bytes.slice(1, 4)], [0x50, 0x4e, 0x47], 'not a PNG');
      return { url, bytes: bytes.length };
    }],
  ]);
}

// --- contents -------------------------------------------------------------------------------------

const NOTEBOOK = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
  cells: [{ id: 'first', cell_type: 'code', source: 'print("saved")', metadata: {}, outputs: [], execution_count: null }],
};

function base64(bytes) {
  return Buffer.from(bytes).toString('base64');
}

async function contentsSteps() {
  const contents = manager(new ContentsManager({ serverSettings }));
  let notebookPath;
  let checkpoint;
  const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
  await group([
    ['contents: new directory', async () => {
      const model = await contents.newUntitled({ path: '', type: 'directory' });
      assert.equal(model.type, 'directory');
      assert.equal(model.name, 'Untitled Folder');
      const renamed = await contents.rename(model.path, 'work');
      assert.equal(renamed.path, 'work');
      assert.equal(renamed.type, 'directory');
      return { created: model.path, renamed: renamed.path };
    }],
    ['contents: new notebook', async () => {
      const model = await contents.newUntitled({ path: 'work', type: 'notebook' });
      assert.equal(model.type, 'notebook');
      assert.equal(model.path, 'work/Untitled.ipynb');
      assert.equal(model.name, 'Untitled.ipynb');
      assert.equal(model.writable, true);
      assert.equal(model.content, null);
      const again = await contents.newUntitled({ path: 'work', type: 'notebook' });
      assert.equal(again.path, 'work/Untitled1.ipynb');
      notebookPath = model.path;
      return { first: model.path, second: again.path };
    }],
    ['contents: save notebook', async () => {
      const model = await contents.save(notebookPath, { type: 'notebook', format: 'json', content: NOTEBOOK });
      assert.equal(model.type, 'notebook');
      assert.equal(model.path, notebookPath);
      assert.equal(model.content, null);
      assert.ok(Date.parse(model.last_modified), `last_modified ${model.last_modified}`);
      return { path: model.path, last_modified: model.last_modified };
    }],
    ['contents: get notebook', async () => {
      const model = await contents.get(notebookPath);
      assert.equal(model.type, 'notebook');
      assert.equal(model.format, 'json');
      assert.equal(model.content.nbformat, 4);
      assert.equal(model.content.cells.length, 1);
      assert.equal(model.content.cells[0].source, 'print("saved")');
      assert.equal(model.content.metadata.kernelspec.name, 'python3');
      const listing = await contents.get('work');
      assert.equal(listing.type, 'directory');
      const names = listing.content.map(entry => entry.name).sort();
      assert.deepEqual(names, ['Untitled.ipynb', 'Untitled1.ipynb']);
      assert.ok(listing.content.every(entry => entry.content === null), 'listing entries carry content');
      return { cells: model.content.cells.length, listing: names };
    }],
    ['contents: rename', async () => {
      const model = await contents.rename(notebookPath, 'work/renamed.ipynb');
      assert.equal(model.path, 'work/renamed.ipynb');
      assert.equal(model.name, 'renamed.ipynb');
      await expectStatus(contents.get(notebookPath), 404);
      await expectStatus(contents.rename('work/Untitled1.ipynb', 'work/renamed.ipynb'), 409);
      notebookPath = model.path;
      return { path: model.path };
    }],
    ['contents: copy', async () => {
      const model = await contents.copy(notebookPath, 'work');
      assert.equal(model.path, 'work/renamed-Copy1.ipynb');
      assert.equal(model.type, 'notebook');
      const copied = await contents.get(model.path);
      assert.equal(copied.content.cells[0].source, 'print("saved")');
      return { path: model.path };
    }],
    ['contents: checkpoints create and list', async () => {
      checkpoint = await contents.createCheckpoint(notebookPath);
      assert.equal(typeof checkpoint.id, 'string');
      assert.ok(Date.parse(checkpoint.last_modified), `last_modified ${checkpoint.last_modified}`);
      const listed = await contents.listCheckpoints(notebookPath);
      assert.deepEqual(listed.map(c => c.id), [checkpoint.id]);
      return { checkpoint };
    }],
    ['contents: checkpoints restore', async () => {
      const edited = structuredClone(NOTEBOOK);
      edited.cells[0].source = 'print("edited")';
      await contents.save(notebookPath, { type: 'notebook', format: 'json', content: edited });
      assert.equal((await contents.get(notebookPath)).content.cells[0].source, 'print("edited")');
      await contents.restoreCheckpoint(notebookPath, checkpoint.id);
      const restored = await contents.get(notebookPath);
      assert.equal(restored.content.cells[0].source, 'print("saved")');
      return { restored: restored.content.cells[0].source };
    }],
    ['contents: checkpoints delete', async () => {
      await contents.deleteCheckpoint(notebookPath, checkpoint.id);
      assert.deepEqual(await contents.listCheckpoints(notebookPath), []);
      return null;
    }],
    ['contents: upload binary file', async () => {
      // What JupyterLab's file browser sends for a dropped file: base64 content, type "file".
      const model = await contents.save('work/bytes.bin', { type: 'file', format: 'base64', content: base64(binary) });
      assert.equal(model.type, 'file');
      assert.equal(model.path, 'work/bytes.bin');
      const fetched = await contents.get('work/bytes.bin', { type: 'file', format: 'base64', content: true });
      assert.equal(fetched.format, 'base64');
      assert.equal(fetched.mimetype, 'application/octet-stream');
      assert.deepEqual([...Buffer.from(fetched.content, 'base64')], [...binary]);
      return { mimetype: fetched.mimetype, size: fetched.size ?? null };
    }],
    ['contents: chunked upload', async () => {
      // JupyterLab uploads files over 15 MB in chunks numbered 1, 2, ..., -1 (the last).
      const chunks = [binary.slice(0, 100), binary.slice(100, 200), binary.slice(200)];
      for (const [i, chunk] of chunks.entries()) {
        const number = i === chunks.length - 1 ? -1 : i + 1;
        await contents.save('work/chunked.bin', { type: 'file', format: 'base64', content: base64(chunk), chunk: number });
      }
      const fetched = await contents.get('work/chunked.bin', { type: 'file', format: 'base64', content: true });
      assert.deepEqual([...Buffer.from(fetched.content, 'base64')], [...binary]);
      return { chunks: chunks.length };
    }],
    ['contents: download url', async () => {
      const url = await contents.getDownloadUrl('work/bytes.bin');
      const response = await authedFetch(url);
      assert.equal(response.status, 200, `GET ${url}`);
      assert.deepEqual([...new Uint8Array(await response.arrayBuffer())], [...binary]);
      return { url: url.replace(BASE_URL, '/') };
    }],
    ['contents: delete', async () => {
      for (const path of ['work/bytes.bin', 'work/chunked.bin', 'work/renamed-Copy1.ipynb']) {
        await contents.delete(path);
        await expectStatus(contents.get(path), 404);
      }
      const listing = await contents.get('work');
      const names = listing.content.map(entry => entry.name).sort();
      assert.deepEqual(names, ['Untitled1.ipynb', 'renamed.ipynb']);
      return { left: names };
    }],
  ]);
}

// --- kernels --------------------------------------------------------------------------------------

function collectIOPub(future) {
  const seen = [];
  future.onIOPub = msg => {
    seen.push(msg);
  };
  return seen;
}

/** Execute `code`; resolves with the execute_reply and the iopub messages of that request. */
async function execute(kernel, code, { onStdin } = {}) {
  const future = kernel.requestExecute({ code });
  const seen = collectIOPub(future);
  if (onStdin) future.onStdin = onStdin;
  const reply = await withTimeout(future.done, WAIT_TIMEOUT_MS, `the execute_reply to ${JSON.stringify(code)}`);
  return { reply, seen, outputs: seen.filter(m => m.header.msg_type !== 'status') };
}

async function kernelCwd(kernel) {
  const { reply, seen } = await execute(kernel, 'import os\nprint(os.getcwd())');
  assert.equal(reply.content.status, 'ok');
  return streams(seen, 'stdout').trim();
}

function streams(seen, name) {
  return seen.filter(m => m.header.msg_type === 'stream' && m.content.name === name).map(m => m.content.text).join('');
}

const ECHO_TARGET = `
def _himalia_echo(comm, open_msg):
    @comm.on_msg
    def _echo(msg):
        comm.send({"echo": msg["content"]["data"]}, buffers=[bytes(b)[::-1] for b in msg["buffers"]])
get_ipython().kernel.comm_manager.register_target("himalia_echo", _himalia_echo)
`;

async function kernelSteps(protocol) {
  const offer = protocol === 'v1';
  // The legacy connection authenticates with a header, the v1 one with the token in the URL.
  const kernels = manager(new KernelManager({ serverSettings: settings(offer, { tokenInHeader: !offer }) }));
  const tag = `kernel (${protocol})`;
  let kernel;
  let restart;
  const received = [];
  await group([
    [`${tag}: start and connect`, async () => {
      const before = sockets.length;
      kernel = await kernels.startNew({ name: 'python3' });
      kernel.anyMessage.connect((_, { msg, direction }) => {
        if (direction === 'recv') received.push(msg);
      });
      const info = await withTimeout(kernel.info, WAIT_TIMEOUT_MS, 'kernel_info_reply');
      assert.equal(info.language_info.name, 'python');
      assert.equal(kernel.connectionStatus, 'connected');
      const socket = sockets[before];
      assert.ok(socket, 'no websocket was opened');
      assert.match(socket.url, new RegExp(`/api/kernels/${kernel.id}/channels\\?session_id=[^&]+${offer ? '&token=' : '$'}`));
      assert.equal(socket.selected, offer ? V1 : '', `server selected subprotocol ${JSON.stringify(socket.selected)}`);
      return { id: kernel.id, offered: socket.offered, selected: socket.selected, protocol_version: info.protocol_version };
    }],
    [`${tag}: stream output`, async () => {
      const { reply, seen } = await execute(kernel, 'import sys\nprint("hello")\nprint("oops", file=sys.stderr)');
      assert.equal(reply.content.status, 'ok');
      assert.equal(streams(seen, 'stdout'), 'hello\n');
      assert.equal(streams(seen, 'stderr'), 'oops\n');
      const states = seen.filter(m => m.header.msg_type === 'status').map(m => m.content.execution_state);
      assert.deepEqual(states, ['busy', 'idle']);
      return { stdout: 'hello\n', stderr: 'oops\n', states };
    }],
    [`${tag}: display_data and execute_result`, async () => {
      const { reply, outputs } = await execute(kernel, 'from IPython.display import HTML, display\ndisplay(HTML("<b>bold</b>"))\n6 * 7');
      assert.equal(reply.content.status, 'ok');
      const types = outputs.map(m => m.header.msg_type);
      assert.deepEqual(types, ['execute_input', 'display_data', 'execute_result']);
      assert.equal(outputs[1].content.data['text/html'], '<b>bold</b>');
      assert.equal(outputs[2].content.data['text/plain'], '42');
      assert.equal(outputs[2].content.execution_count, reply.content.execution_count);
      return { types };
    }],
    [`${tag}: error output`, async () => {
      const { reply, outputs } = await execute(kernel, '1 / 0');
      assert.equal(reply.content.status, 'error');
      assert.equal(reply.content.ename, 'ZeroDivisionError');
      const errors = outputs.filter(m => m.header.msg_type === 'error');
      assert.equal(errors.length, 1);
      assert.equal(errors[0].content.ename, 'ZeroDivisionError');
      assert.ok(errors[0].content.traceback.length > 0, 'empty traceback');
      return { ename: errors[0].content.ename };
    }],
    [`${tag}: input() answered on stdin`, async () => {
      const prompts = [];
      const { reply, seen } = await execute(kernel, 'answer = input("name? ")\nprint("got", answer)', {
        onStdin: msg => {
          assert.equal(msg.header.msg_type, 'input_request');
          prompts.push(msg.content.prompt);
          kernel.sendInputReply({ status: 'ok', value: 'himalia' }, msg.header);
        },
      });
      assert.equal(reply.content.status, 'ok');
      assert.deepEqual(prompts, ['name? ']);
      assert.equal(streams(seen, 'stdout'), 'got himalia\n');
      return { prompts };
    }],
    [`${tag}: comm with binary buffers`, async () => {
      assert.equal((await execute(kernel, ECHO_TARGET)).reply.content.status, 'ok');
      const comm = kernel.createComm('himalia_echo');
      const echoed = new Promise(resolve => {
        comm.onMsg = msg => resolve(msg);
      });
      await comm.open({}).done;
      comm.send({ ping: 1 }, undefined, [new Uint8Array([1, 2, 3, 4])]);
      const msg = await withTimeout(echoed, WAIT_TIMEOUT_MS, 'the echoed comm message');
      assert.deepEqual(msg.content.data, { echo: { ping: 1 } });
      assert.equal(msg.buffers.length, 1);
      const buffer = msg.buffers[0];
      const bytes = ArrayBuffer.isView(buffer)
        ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
        : new Uint8Array(buffer);
      assert.deepEqual([...bytes], [4, 3, 2, 1]);
      comm.close();
      return { echoed: [...bytes] };
    }],
    [`${tag}: complete, inspect, is_complete and history`, async () => {
      const complete = await kernel.requestComplete({ code: 'import o', cursor_pos: 8 });
      assert.equal(complete.content.status, 'ok');
      assert.ok(complete.content.matches.includes('os'), `matches: ${complete.content.matches.slice(0, 10)}`);
      const inspect = await kernel.requestInspect({ code: 'len', cursor_pos: 3, detail_level: 0 });
      assert.equal(inspect.content.status, 'ok');
      assert.equal(inspect.content.found, true);
      assert.match(inspect.content.data['text/plain'], /Return the number of items/);
      const incomplete = await kernel.requestIsComplete({ code: 'for i in range(3):' });
      assert.equal(incomplete.content.status, 'incomplete');
      const history = await kernel.requestHistory({ output: false, raw: true, hist_access_type: 'tail', n: 3 });
      assert.equal(history.content.status, 'ok');
      assert.ok(history.content.history.some(entry => entry[2] === '1 / 0'), JSON.stringify(history.content.history));
      return { completions: complete.content.matches.length, incomplete: incomplete.content.status };
    }],
    [`${tag}: a second connection sees the same outputs`, async () => {
      // JupyterLab opens one connection per notebook or console, all on one kernel's websocket API.
      const other = kernels.connectTo({ model: { id: kernel.id, name: kernel.name } });
      try {
        await withTimeout(other.info, WAIT_TIMEOUT_MS, 'kernel_info_reply on the second connection');
        const seen = new Promise(resolve => {
          other.iopubMessage.connect((_, msg) => {
            if (msg.header.msg_type === 'stream' && msg.content.text.includes('broadcast')) resolve(msg);
          });
        });
        const { reply } = await execute(kernel, 'print("broadcast")');
        assert.equal(reply.content.status, 'ok');
        const msg = await withTimeout(seen, WAIT_TIMEOUT_MS, 'the stream output on the second connection');
        assert.equal(msg.content.text, 'broadcast\n');
        assert.equal(msg.parent_header.session, kernel.clientId, 'the output is attributed to the first client');
        return { second_client: other.clientId };
      } finally {
        other.dispose();
      }
    }],
    [`${tag}: interrupt`, async () => {
      // Interrupt once the cell has printed: the kernel ignores SIGINT until the cell's code runs,
      // which is after it announced execute_input.
      const future = kernel.requestExecute({ code: 'import time\nprint("sleeping", flush=True)\ntime.sleep(120)' });
      const sleeping = new Promise(resolve => {
        future.onIOPub = msg => {
          if (msg.header.msg_type === 'stream' && msg.content.text.includes('sleeping')) resolve();
        };
      });
      await withTimeout(sleeping, WAIT_TIMEOUT_MS, 'the sleeping cell\'s output');
      await withTimeout(kernel.interrupt(), WAIT_TIMEOUT_MS, 'the answer to POST /api/kernels/{id}/interrupt');
      const reply = await withTimeout(future.done, WAIT_TIMEOUT_MS, 'the execute_reply of the interrupted cell');
      assert.equal(reply.content.status, 'error');
      assert.equal(reply.content.ename, 'KeyboardInterrupt');
      const after = await execute(kernel, 'print("still here")');
      assert.equal(streams(after.seen, 'stdout'), 'still here\n');
      return { ename: reply.content.ename };
    }],
    [`${tag}: restart`, async () => {
      assert.equal((await execute(kernel, 'survivor = 1')).reply.content.status, 'ok');
      const id = kernel.id;
      const statuses = [];
      const record = (_, status) => statuses.push(status);
      kernel.statusChanged.connect(record);
      const before = sockets.length;
      try {
        await kernel.restart();
        if (kernel.status !== 'idle') await nextSignal(kernel.statusChanged, s => s === 'idle', 'idle after restart');
      } finally {
        kernel.statusChanged.disconnect(record);
      }
      assert.equal(kernel.id, id);
      assert.equal(statuses[0], 'restarting', `statuses: ${statuses}`);
      assert.equal(kernel.connectionStatus, 'connected');
      assert.ok(sockets.length > before, 'the client did not reconnect');
      assert.equal(sockets.at(-1).selected, offer ? V1 : '');
      restart = { statuses, reconnects: sockets.length - before };
      const { reply, outputs } = await execute(kernel, 'survivor');
      assert.equal(reply.content.status, 'error');
      assert.equal(reply.content.ename, 'NameError');
      assert.equal(reply.content.execution_count, 1, 'the execution count did not start again');
      assert.ok(outputs.some(m => m.header.msg_type === 'error'));
      return { ...restart, reconnected_with: sockets.at(-1).selected };
    }],
    [`${tag}: shutdown`, async () => {
      const id = kernel.id;
      await kernel.shutdown();
      assert.equal(kernel.status, 'dead');
      const listed = await KernelAPI.listRunning(serverSettings);
      assert.ok(!listed.some(k => k.id === id), 'the kernel is still listed');
      const response = await authedFetch(`api/kernels/${id}`);
      assert.equal(response.status, 404);
      return null;
    }],
    [`${tag}: restart was not reported as an auto-restart`, async () => {
      // An iopub status "restarting" tells the client that the server restarted a dead kernel by
      // itself: @jupyterlab/services then reports "autorestarting" (JupyterLab says the kernel
      // appears to have died) and reconnects a second time. jupyter_server sends it only then.
      assert.ok(!restart.statuses.includes('autorestarting'), `statuses: ${restart.statuses}`);
      assert.equal(restart.reconnects, 1, 'the client reconnected more than once');
      return restart;
    }, { check: true }],
    [`${tag}: every message came with a buffers list`, async () => {
      // jupyter_server sends "buffers": [] even when there are none; the client hands messages on
      // as they came, so code reading msg.buffers.length breaks on a message without it.
      assert.ok(received.length > 0);
      const without = received.filter(msg => !Array.isArray(msg.buffers));
      assert.deepEqual([...new Set(without.map(msg => msg.header.msg_type))], [],
        `${without.length} of ${received.length} messages had no buffers list`);
      return { messages: received.length };
    }, { check: true }],
  ]);
  if (kernel && !kernel.isDisposed && kernel.status !== 'dead') {
    await kernel.shutdown().catch(() => {});
  }
}

// --- sessions -------------------------------------------------------------------------------------

async function sessionSteps() {
  const kernels = manager(new KernelManager({ serverSettings }));
  const sessions = manager(new SessionManager({ kernelManager: kernels, serverSettings }));
  let session;
  let firstKernelId;
  await group([
    ['sessions: start for a notebook path', async () => {
      session = await sessions.startNew({ path: 'notebooks/session.ipynb', type: 'notebook', name: 'session.ipynb', kernel: { name: 'python3' } });
      assert.equal(session.path, 'notebooks/session.ipynb');
      assert.equal(session.type, 'notebook');
      assert.equal(session.name, 'session.ipynb');
      assert.equal(session.kernel.name, 'python3');
      const info = await withTimeout(session.kernel.info, WAIT_TIMEOUT_MS, 'kernel_info_reply');
      assert.equal(info.language_info.name, 'python');
      // A local kernel runs in the notebook's directory; a gateway's where the gateway puts it.
      const cwd = await kernelCwd(session.kernel);
      if (REMOTE_KERNEL_CWD) assert.equal(cwd, REMOTE_KERNEL_CWD);
      else assert.match(cwd, /\/notebooks$/);
      firstKernelId = session.kernel.id;
      return { id: session.id, kernel: firstKernelId };
    }],
    ['sessions: list', async () => {
      // The REST calls, not the manager's cache: a poll of the manager's that was already under
      // way could overwrite a fresh list with an older one.
      const listed = await SessionAPI.listRunning(serverSettings);
      assert.equal(listed.length, 1);
      assert.equal(listed[0].id, session.id);
      assert.equal(listed[0].path, 'notebooks/session.ipynb');
      assert.equal(listed[0].kernel.id, firstKernelId);
      const found = await sessions.findByPath('notebooks/session.ipynb');
      assert.equal(found?.id, session.id);
      return { count: listed.length };
    }],
    ['sessions: rename', async () => {
      await session.setPath('notebooks/moved.ipynb');
      assert.equal(session.path, 'notebooks/moved.ipynb', 'the PATCH answer');
      await session.setName('moved.ipynb');
      assert.equal(session.name, 'moved.ipynb', 'the PATCH answer');
      assert.equal(session.path, 'notebooks/moved.ipynb', 'renaming changed the path');
      const model = await SessionAPI.getSessionModel(session.id, serverSettings);
      assert.equal(model.path, 'notebooks/moved.ipynb');
      assert.equal(model.name, 'moved.ipynb');
      assert.equal(model.kernel.id, firstKernelId, 'renaming changed the kernel');
      return { path: model.path };
    }],
    ['sessions: change kernel', async () => {
      const kernel = await session.changeKernel({ name: 'python3' });
      assert.ok(kernel, 'changeKernel returned no kernel');
      assert.notEqual(kernel.id, firstKernelId);
      assert.equal(session.kernel.id, kernel.id);
      await withTimeout(kernel.info, WAIT_TIMEOUT_MS, 'kernel_info_reply of the new kernel');
      const { seen } = await execute(kernel, 'print(6 * 7)');
      assert.equal(streams(seen, 'stdout'), '42\n');
      const model = await SessionAPI.getSessionModel(session.id, serverSettings);
      assert.equal(model.kernel.id, kernel.id);
      // jupyter_server shuts the replaced kernel down.
      const old = await authedFetch(`api/kernels/${firstKernelId}`);
      assert.equal(old.status, 404, 'the replaced kernel is still running');
      return { kernel: kernel.id };
    }],
    ['sessions: shutdown', async () => {
      const kernelId = session.kernel.id;
      await session.shutdown();
      assert.deepEqual(await SessionAPI.listRunning(serverSettings), []);
      const response = await authedFetch(`api/kernels/${kernelId}`);
      assert.equal(response.status, 404, 'the session\'s kernel is still running');
      return null;
    }],
  ]);
  if (session && !session.isDisposed) await session.shutdown().catch(() => {});

  // VS Code names sessions after the notebook on the user's machine, whose directory need not
  // exist on the server: jupyter_server then starts the kernel in the nearest existing parent.
  let elsewhere;
  await group([
    ['sessions: start for a path whose directory does not exist', async () => {
      elsewhere = await sessions.startNew({ path: 'no/such/dir/remote.ipynb', type: 'notebook', name: 'remote.ipynb', kernel: { name: 'python3' } });
      assert.equal(elsewhere.path, 'no/such/dir/remote.ipynb');
      const cwd = await kernelCwd(elsewhere.kernel);
      if (REMOTE_KERNEL_CWD) {
        assert.equal(cwd, REMOTE_KERNEL_CWD);
      } else {
        const { seen } = await execute(elsewhere.kernel, 'import os\nprint(os.path.isdir("notebooks"))');
        assert.equal(streams(seen, 'stdout'), 'True\n', `the kernel should run in the root directory, not ${cwd}`);
      }
      await elsewhere.shutdown();
      return null;
    }],
  ]);
  if (elsewhere && !elsewhere.isDisposed) await elsewhere.shutdown().catch(() => {});
}

// --- main -----------------------------------------------------------------------------------------

try {
  await kernelspecSteps();
  await contentsSteps();
  await sessionSteps();
  await kernelSteps('legacy');
  await kernelSteps('v1');
  finish({ sockets });
} catch (err) {
  finish({ sockets }, err);
} finally {
  // Disposed managers stop polling; `finish` exits even if a socket is left half-open.
  for (const m of managers) m.dispose();
}
