"""The official @jupyterlab/services client (what JupyterLab and VS Code's Jupyter extension use),
pinned by package-lock.json, against a real `himalia serve`.

services_client.mjs runs every step once per server (module-scoped) and asserts what the client saw;
each test here checks one step of its summary, so a failure names the step and shows the client's
error. The script runs against three servers: Himalia with its own kernels, Himalia whose kernels
come from a real Jupyter Kernel Gateway, and jupyter_server itself, the reference every expectation
comes from.
"""

from __future__ import annotations

import os
import secrets

import pytest

from himalia.testing import ServerProcess, serve_process

# Servers and script share one bound (pytest-timeout counts fixture set-up in).
pytestmark = pytest.mark.timeout(480)

KERNEL_STEPS = [
    "start and connect",
    "stream output",
    "display_data and execute_result",
    "error output",
    "input() answered on stdin",
    "comm with binary buffers",
    "complete, inspect, is_complete and history",
    "a second connection sees the same outputs",
    "interrupt",
    "restart",
    "shutdown",
    "restart was not reported as an auto-restart",
    "every message came with a buffers list",
]

STEPS = [
    "kernelspecs: list",
    "kernelspecs: logo resource",
    "contents: new directory",
    "contents: new notebook",
    "contents: save notebook",
    "contents: get notebook",
    "contents: rename",
    "contents: copy",
    "contents: checkpoints create and list",
    "contents: checkpoints restore",
    "contents: checkpoints delete",
    "contents: upload binary file",
    "contents: chunked upload",
    "contents: download url",
    "contents: delete",
    "sessions: start for a notebook path",
    "sessions: list",
    "sessions: rename",
    "sessions: change kernel",
    "sessions: shutdown",
    "sessions: start for a path whose directory does not exist",
    *(f"kernel (legacy): {step}" for step in KERNEL_STEPS),
    *(f"kernel (v1): {step}" for step in KERNEL_STEPS),
]

V1 = "v1.kernel.websocket.jupyter.org"


def client_env(url: str, token: str) -> dict[str, str]:
    return {**os.environ, "JUPYTER_URL": url, "JUPYTER_TOKEN": token, "STEP_TIMEOUT_MS": "60000"}


@pytest.fixture(scope="module")
def client_run(run_node, himalia: ServerProcess):
    return run_node("services_client.mjs", client_env(himalia.url, himalia.token or ""), timeout=240)


@pytest.fixture(scope="module")
def reference_run(run_node, jupyter_server_process, jupyter_env, tmp_path_factory: pytest.TempPathFactory):
    """The same script against jupyter_server itself."""
    base = tmp_path_factory.mktemp("jupyter_server")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    with jupyter_server_process("jupyter_server", root, jupyter_env(base)) as server:
        return run_node("services_client.mjs", client_env(server.url, server.token), timeout=240)


@pytest.fixture(scope="module")
def gateway_run(run_node, kernel_gateway_process, jupyter_env, tmp_path_factory: pytest.TempPathFactory):
    """The same script against `himalia serve --gateway-url`: Himalia's kernels come from a real
    Jupyter Kernel Gateway, which starts them in its own directory."""
    base = tmp_path_factory.mktemp("through_gateway")
    kernels_dir = base / "gateway-kernels"
    kernels_dir.mkdir()
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    with kernel_gateway_process(kernels_dir, jupyter_env(base / "gateway-env")) as gateway:
        token = secrets.token_hex(16)
        env = jupyter_env(base / "server-env", JUPYTER_GATEWAY_AUTH_TOKEN=gateway.token)
        with serve_process("--root-dir", str(root), "--token", token, "--gateway-url", gateway.url.rstrip("/"),
                           env=env, cwd=base) as himalia:
            env = {**client_env(himalia.url, token), "REMOTE_KERNEL_CWD": str(kernels_dir.resolve())}
            return run_node("services_client.mjs", env, timeout=240)


def test_jupyter_server_passes_every_step(reference_run):
    """Every expectation of the script is jupyter_server's behaviour: a step that fails against
    Himalia only is a difference between the two."""
    failed = {s["name"]: s.get("error") for s in reference_run.summary["steps"] if not s["ok"]}
    assert not failed and reference_run.returncode == 0, (failed, reference_run.tail())
    assert reference_run.step_names() == STEPS


def test_every_step_ran(client_run):
    assert client_run.step_names() == STEPS, client_run.tail()


@pytest.mark.parametrize("step", STEPS)
def test_step(client_run, step: str):
    client_run.assert_step(step)


def test_exit_status(client_run):
    failed = [s["name"] for s in client_run.summary["steps"] if not s["ok"]]
    assert client_run.returncode == (1 if failed else 0), client_run.tail()


@pytest.mark.parametrize("protocol", ["legacy", "v1"])
def test_websocket_protocol(client_run, protocol: str):
    """The client offered the v1 subprotocol (or none) and the server answered accordingly."""
    saw = client_run.assert_step(f"kernel ({protocol}): start and connect")
    if protocol == "v1":
        assert (saw["offered"], saw["selected"]) == ([V1], V1)
    else:
        assert (saw["offered"], saw["selected"]) == ([], "")


@pytest.mark.parametrize("step", STEPS)
def test_step_through_a_kernel_gateway(gateway_run, step: str):
    gateway_run.assert_step(step)
