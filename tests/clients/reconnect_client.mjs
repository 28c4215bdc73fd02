// A kept kernel across a server restart, seen by the official @jupyterlab/services client: it starts a
// session, runs `x = 41`, prints `READY {json}` and waits; the test restarts the server on the same port
// (keep mode). The client must notice the close, reconnect by itself to the same kernel, and `x + 1` must
// print 42. Run by test_kept_kernel_reconnect.py.
//
//   JUPYTER_URL=http://127.0.0.1:PORT/ JUPYTER_TOKEN=... node reconnect_client.mjs

import assert from 'node:assert/strict';
import { ServerConnection, SessionManager, KernelManager } from '@jupyterlab/services';
import WebSocket from 'ws';
import { WAIT_TIMEOUT_MS, finish, group, withTimeout } from './steps.mjs';

const BASE_URL = process.env.JUPYTER_URL;
const TOKEN = process.env.JUPYTER_TOKEN ?? '';
const closes = [];

class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols ?? []);
    this.addEventListener('close', event => closes.push(event.code));
  }
}

const serverSettings = ServerConnection.makeSettings({
  baseUrl: BASE_URL, token: TOKEN, appendToken: true, WebSocket: RecordingWebSocket,
});
const kernels = new KernelManager({ serverSettings });
const sessions = new SessionManager({ serverSettings, kernelManager: kernels });

function statusIs(kernel, wanted) {
  if (kernel.connectionStatus === wanted) return Promise.resolve();
  return new Promise(resolve => {
    const slot = (_, status) => {
      if (status === wanted) {
        kernel.connectionStatusChanged.disconnect(slot);
        resolve();
      }
    };
    kernel.connectionStatusChanged.connect(slot);
  });
}

async function run(kernel, code) {
  let out = '';
  const future = kernel.requestExecute({ code });
  future.onIOPub = msg => {
    if (msg.header.msg_type === 'stream') out += msg.content.text;
  };
  const reply = await future.done;
  assert.equal(reply.content.status, 'ok');
  return out;
}

let session;
await group([
  ['start a session and set x', async () => {
    session = await sessions.startNew({ path: 'kept.ipynb', type: 'notebook', name: 'kept.ipynb', kernel: { name: 'python3' } });
    await withTimeout(statusIs(session.kernel, 'connected'), WAIT_TIMEOUT_MS, 'the first connection');
    await run(session.kernel, 'x = 41');
    console.log(`READY ${JSON.stringify({ session: session.id, kernel: session.kernel.id })}`);
    return { session: session.id, kernel: session.kernel.id };
  }],
  ['the server goes away: the client sees the close and reconnects', async () => {
    await withTimeout(statusIs(session.kernel, 'connecting'), WAIT_TIMEOUT_MS * 4, 'the close');
    await withTimeout(statusIs(session.kernel, 'connected'), WAIT_TIMEOUT_MS * 4, 'the reconnection');
    return { closes };
  }],
  ['the same kernel has x', async () => {
    const out = await run(session.kernel, 'print(x + 1)');
    assert.equal(out, '42\n');
    const models = await (await fetch(new URL('api/sessions', BASE_URL), { headers: { Authorization: `token ${TOKEN}` } })).json();
    assert.deepEqual(models.map(m => [m.id, m.kernel.id]), [[session.id, session.kernel.id]]);
    return { out, closes };
  }],
]);
session?.dispose();
sessions.dispose();
kernels.dispose();
finish();
