"""The official @jupyterlab/services client against Himalia's terminals, events, frontend config and
nbconvert plugins (ui_features_client.mjs), and against jupyter_server (with jupyter_server_terminals),
the reference every expectation comes from."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import nbformat
import pytest

from himalia.testing import serve_process

pytestmark = pytest.mark.timeout(480)

STEPS = [
    "terminals: start in a directory",
    "terminals: run a command; its output and file appear",
    "terminals: resize",
    "terminals: a second connection sees the same output",
    "terminals: a new connection replays the scrollback",
    "terminals: listed",
    "terminals: shutdown",
    "events: a client event reaches the subscriber",
    "events: a save is an event",
    "events: an invalid event is refused",
    "config: update merges and null deletes",
    "nbconvert: export formats",
    "nbconvert: download HTML of a nested notebook",
]


def make_root(base: Path) -> Path:
    root = base / "root"
    (root / "work" / "deep").mkdir(parents=True)
    cell = nbformat.v4.new_code_cell("print(6*7)", execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="exported-42\n")])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(root / "work" / "deep" / "n.ipynb"))
    return root


def client_env(url: str, token: str) -> dict[str, str]:
    return {**os.environ, "JUPYTER_URL": url, "JUPYTER_TOKEN": token, "STEP_TIMEOUT_MS": "60000"}


@pytest.fixture(scope="module")
def client_run(run_node, jupyter_env, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("himalia-ui")
    root = make_root(base)
    token = secrets.token_hex(16)
    env = jupyter_env(base, HOME=str(base))  # shells read no user start-up files
    with serve_process("--root-dir", str(root), "--token", token, env=env, cwd=base) as server:
        return run_node("ui_features_client.mjs", client_env(server.url, token), timeout=240)


@pytest.fixture(scope="module")
def reference_run(run_node, jupyter_server_process, jupyter_env, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("jupyter_server-ui")
    root = make_root(base)
    with jupyter_server_process("jupyter_server", root, jupyter_env(base, HOME=str(base))) as server:
        return run_node("ui_features_client.mjs", client_env(server.url, server.token), timeout=240)


def test_jupyter_server_passes_every_step(reference_run):
    failed = {s["name"]: s.get("error") for s in reference_run.summary["steps"] if not s["ok"]}
    assert not failed and reference_run.returncode == 0, (failed, reference_run.tail())
    assert reference_run.step_names() == STEPS


def test_every_step_ran(client_run):
    assert client_run.step_names() == STEPS, client_run.tail()


@pytest.mark.parametrize("step", STEPS)
def test_step(client_run, step: str):
    client_run.assert_step(step)
