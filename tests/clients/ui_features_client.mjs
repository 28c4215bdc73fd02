// Drives terminals, events, frontend config sections and nbconvert with the official
// @jupyterlab/services client (what JupyterLab's terminal, event, config and export code uses).
// Run by test_ui_features.py against a real `himalia serve`, and against jupyter_server as reference.
//
//   JUPYTER_URL=http://127.0.0.1:PORT/ JUPYTER_TOKEN=... node ui_features_client.mjs
//
// The server's root must hold `work/deep/n.ipynb`, a notebook whose one cell printed `exported-42`.
// The last line of stdout is `SUMMARY {json}` (see steps.mjs).

import assert from 'node:assert/strict';
import { PageConfig } from '@jupyterlab/coreutils';
import {
  ConfigSectionManager,
  ContentsManager,
  EventManager,
  NbConvertManager,
  ServerConnection,
  TerminalManager,
} from '@jupyterlab/services';
import WebSocket from 'ws';
import { WAIT_TIMEOUT_MS, finish, group } from './steps.mjs';

const BASE_URL = process.env.JUPYTER_URL;
const TOKEN = process.env.JUPYTER_TOKEN ?? '';
const CONTENTS_SCHEMA = 'https://events.jupyter.org/jupyter_server/contents_service/v1';
if (!BASE_URL) {
  console.error('JUPYTER_URL is not set');
  process.exit(2);
}
PageConfig.setOption('terminalsAvailable', 'true'); // what the lab page tells the client

const serverSettings = ServerConnection.makeSettings({
  baseUrl: BASE_URL,
  wsUrl: BASE_URL.replace(/^http/, 'ws'),
  token: TOKEN,
  appendToken: true,
  WebSocket,
});

/** Resolve with the first value of `signal` that `predicate` accepts, within WAIT_TIMEOUT_MS. */
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

/** Collects a terminal connection's stdout; `until(text)` waits for text to have appeared. */
class Output {
  constructor(connection) {
    this.text = '';
    this.messages = [];
    connection.messageReceived.connect((_, msg) => {
      this.messages.push(msg.type);
      if (msg.type === 'stdout') this.text += msg.content[0];
    });
    this.connection = connection;
  }

  until(text) {
    if (this.text.includes(text)) return Promise.resolve(this.text);
    return nextSignal(this.connection.messageReceived, () => this.text.includes(text), `${JSON.stringify(text)} in ${JSON.stringify(this.text.slice(-300))}`)
      .then(() => this.text);
  }
}

function run(connection, command) {
  connection.send({ type: 'stdin', content: [command + '\r'] });
}

async function connected(connection) {
  if (connection.connectionStatus === 'connected') return;
  await nextSignal(connection.connectionStatusChanged, s => s === 'connected', 'the terminal socket to connect');
}

const terminals = new TerminalManager({ serverSettings });
const contents = new ContentsManager({ serverSettings });
const state = {};

await group([
  ['terminals: start in a directory', async () => {
    await contents.newUntitled({ type: 'directory', path: '' }).then(d => contents.rename(d.path, 'sub'));
    state.first = await terminals.startNew({ cwd: 'sub' });
    state.name = state.first.name;
    state.out = new Output(state.first);
    await connected(state.first);
    return { name: state.name };
  }],
  ['terminals: run a command; its output and file appear', async () => {
    run(state.first, 'echo $((6*7)) > t.txt; cat t.txt');
    await state.out.until('42\r\n');
    const file = await contents.get('sub/t.txt', { content: true });
    assert.equal(file.content, '42\n');
  }],
  ['terminals: resize', async () => {
    state.first.send({ type: 'set_size', content: [50, 132, 600, 1000] });
    run(state.first, 'echo "size=$(stty size) $((2+3))"');
    const text = await state.out.until('size=50 132 5');
    return { saw: text.slice(-40) };
  }],
  ['terminals: a second connection sees the same output', async () => {
    state.second = terminals.connectTo({ model: { name: state.name } });
    state.out2 = new Output(state.second);
    await connected(state.second);
    run(state.first, 'echo both-$((40+2))');
    await state.out.until('both-42');
    await state.out2.until('both-42');
  }],
  ['terminals: a new connection replays the scrollback', async () => {
    state.second.dispose(); // a page reload
    const third = terminals.connectTo({ model: { name: state.name } });
    const out3 = new Output(third);
    await connected(third);
    await out3.until('both-42'); // nothing was run since: this is the replay
    third.dispose();
  }],
  ['terminals: listed', async () => {
    await terminals.refreshRunning();
    const names = [...terminals.running()].map(m => m.name);
    assert.ok(names.includes(state.name), JSON.stringify(names));
  }],
  ['terminals: shutdown', async () => {
    await terminals.shutdown(state.name); // also disposes the client's connections to it
    await terminals.refreshRunning();
    assert.deepEqual([...terminals.running()].map(m => m.name), []);
    const url = `${BASE_URL}api/terminals/${state.name}`;
    assert.equal((await ServerConnection.makeRequest(url, {}, serverSettings)).status, 404);
  }],
]);

await group([
  ['events: a client event reaches the subscriber', async () => {
    state.events = new EventManager({ serverSettings });
    state.seen = [];
    state.events.stream.connect((_, event) => state.seen.push(event));
    // the subscription opens with the stream's first listener; give it a round trip to be in place
    await new Promise(resolve => setTimeout(resolve, 1000));
    const wanted = nextSignal(state.events.stream, e => e.path === 'from-the-client', 'the client event');
    await state.events.emit({ schema_id: CONTENTS_SCHEMA, version: '1', data: { action: 'get', path: 'from-the-client' } });
    const event = await wanted;
    assert.equal(event.schema_id, CONTENTS_SCHEMA);
    assert.equal(event.action, 'get');
  }],
  ['events: a save is an event', async () => {
    const wanted = nextSignal(state.events.stream, e => e.action === 'save' && e.path === 'saved.txt', 'the save event');
    await contents.save('saved.txt', { type: 'file', format: 'text', content: 'x' });
    await wanted;
  }],
  ['events: an invalid event is refused', async () => {
    await assert.rejects(
      state.events.emit({ schema_id: CONTENTS_SCHEMA, version: '1', data: { action: 'nope', path: 'x' } }),
      err => err?.response?.status === 400,
    );
    state.events.dispose();
  }],
]);

await group([
  ['config: update merges and null deletes', async () => {
    const manager = new ConfigSectionManager({ serverSettings });
    const section = await manager.create({ name: 'himaliaclienttest' });
    await section.update({ a: { b: 1, c: 2 }, keep: 'yes' });
    const data = await section.update({ a: { b: null } });
    assert.deepEqual(data, { a: { c: 2 }, keep: 'yes' });
    const again = await manager.create({ name: 'himaliaclienttest' });
    assert.deepEqual(again.data, { a: { c: 2 }, keep: 'yes' });
  }],
]);

await group([
  ['nbconvert: export formats', async () => {
    const formats = await new NbConvertManager({ serverSettings }).getExportFormats();
    assert.equal(formats.html.output_mimetype, 'text/html');
    assert.ok('script' in formats);
  }],
  ['nbconvert: download HTML of a nested notebook', async () => {
    const url = `${BASE_URL}nbconvert/html/work/deep/n.ipynb?download=true`;
    const response = await ServerConnection.makeRequest(url, {}, serverSettings);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-disposition'), /attachment/);
    assert.match(response.headers.get('content-disposition'), /n\.html/);
    assert.match(response.headers.get('content-security-policy'), /sandbox allow-scripts/);
    assert.ok((await response.text()).includes('exported-42'));
  }],
]);

finish();
