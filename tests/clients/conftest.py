"""Fixtures for the client tests: the npm packages (installed from the lockfile when missing), a real
`himalia serve`, a real jupyter_server (the reference, or JupyterLab's host), each with isolated
Jupyter dirs, and `run_node` for the client scripts.

Node.js and npm come from the machine. When `node` is missing, or (for the browser test) when
/usr/bin/chromium is missing, the tests skip with the reason; with HIMALIA_REQUIRE_BROWSER=1 (CI sets
it) they fail instead, so a machine without them never passes by skipping.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from himalia.testing import ServerProcess, serve_process, stop_process

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
LOCK_STAMP = NODE_MODULES / ".himalia-lock-sha256"
NPM_TIMEOUT = 300
REQUIRE = os.environ.get("HIMALIA_REQUIRE_BROWSER") == "1"


def missing(what: str) -> None:
    """Skip, or fail when HIMALIA_REQUIRE_BROWSER=1."""
    if REQUIRE:
        pytest.fail(f"{what} (HIMALIA_REQUIRE_BROWSER=1 requires it)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        missing("node (Node.js >= 20) is not on PATH")
    return path


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium (`apt-get install chromium`), which playwright-core drives."""
    path = Path("/usr/bin/chromium")
    if not path.exists():
        missing("/usr/bin/chromium is missing (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="session")
def jupyterlab() -> None:
    """JupyterLab on jupyter_server (the `test` extra installs it)."""
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        missing("jupyterlab is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="session")
def node_modules(node: str) -> Path:
    """tests/clients/node_modules as package-lock.json pins it: `npm ci` when absent or out of date."""
    lock = (HERE / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    if LOCK_STAMP.exists() and LOCK_STAMP.read_text() == digest:
        return NODE_MODULES
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not on PATH")
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}  # playwright-core never downloads one
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, env=env,
                          capture_output=True, text=True, timeout=NPM_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"npm ci failed with status {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    LOCK_STAMP.write_text(digest)
    return NODE_MODULES


@pytest.fixture(scope="session")
def jupyter_env() -> Callable[..., dict[str, str]]:
    """`jupyter_env(base, **extra)`: see isolated_env."""
    return isolated_env


def isolated_env(base: Path, **extra: str) -> dict[str, str]:
    """This environment with its own Jupyter dirs and no JUPYTER_TOKEN (for module-scoped servers,
    which the function-scoped autouse isolation in tests/conftest.py does not reach)."""
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    for name in ("runtime", "data", "config"):
        (base / name).mkdir(parents=True, exist_ok=True)
    env.update(JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_PLATFORM_DIRS="1", **extra)
    return env


@dataclass
class JupyterServer:
    """A running jupyter_server (with its extensions, e.g. JupyterLab) or Kernel Gateway."""

    url: str
    """Base URL, ending in "/"."""
    token: str
    output: list[str]


@contextmanager
def logged_process(cmd: list[str], *, cwd: Path, env: dict[str, str], ready: str,
                   timeout: float = 90.0) -> Iterator[tuple[re.Match[str], list[str]]]:
    """Run `cmd` (stderr and stdout merged); yield once a line matches `ready`, with the match and the
    output so far (kept growing). Stopped with SIGTERM (then killed) on exit."""
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:  # a thread, so that every wait on the output has a deadline
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        found = None
        while found is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{cmd[:4]} printed no {ready!r} within {timeout}s:\n" + "\n".join(output)) from None
            if line is None:
                raise RuntimeError(f"{cmd[:4]} exited with status {process.wait(10)}:\n" + "\n".join(output))
            output.append(line)
            found = re.search(ready, line)

        def drain() -> None:
            while (more := lines.get()) is not None:
                output.append(more)

        threading.Thread(target=drain, daemon=True).start()
        yield found, output
    finally:
        stop_process(process, 30)


@contextmanager
def run_jupyter_server(module: str, root: Path, env: dict[str, str], *args: str) -> Iterator[JupyterServer]:
    """`python -m MODULE` (jupyter_server or jupyterlab) on 127.0.0.1:<free port> with a fresh token,
    serving `root`."""
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", module, "--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *args]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    ready = r"(http://127\.0\.0\.1:\d+/)\S*\?token="
    with logged_process(cmd, cwd=root.parent, env=env, ready=ready) as (found, output):
        yield JupyterServer(found.group(1), token, output)


@contextmanager
def run_kernel_gateway(kernels_dir: Path, env: dict[str, str]) -> Iterator[JupyterServer]:
    """Jupyter Kernel Gateway on 127.0.0.1:<free port> with a fresh token; its kernels start in
    `kernels_dir`."""
    import socket

    with socket.socket() as s:  # it cannot announce the port it got for --port=0
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "kernelgateway", "--KernelGatewayApp.ip=127.0.0.1",
           f"--KernelGatewayApp.port={port}", "--KernelGatewayApp.port_retries=0",
           f"--KernelGatewayApp.auth_token={token}", "--JupyterWebsocketPersonality.list_kernels=True"]
    ready = r"is available at (http://127\.0\.0\.1:\d+)"
    with logged_process(cmd, cwd=kernels_dir, env=env, ready=ready) as (found, output):
        yield JupyterServer(found.group(1) + "/", token, output)


@pytest.fixture(scope="session")
def jupyter_server_process() -> Callable[..., AbstractContextManager[JupyterServer]]:
    """`with jupyter_server_process(module, root, env, *args) as server:` (see run_jupyter_server)."""
    return run_jupyter_server


@pytest.fixture(scope="session")
def kernel_gateway_process() -> Callable[..., AbstractContextManager[JupyterServer]]:
    """`with kernel_gateway_process(kernels_dir, env) as gateway:` (see run_kernel_gateway)."""
    return run_kernel_gateway


@pytest.fixture(scope="module")
def kernel_marker() -> str:
    """A value only `himalia serve`'s kernels see (as $HIMALIA_MARKER): output that contains it was
    computed by a kernel Himalia started."""
    return secrets.token_hex(6)


@pytest.fixture(scope="module")
def himalia(tmp_path_factory: pytest.TempPathFactory, kernel_marker: str) -> Iterator[ServerProcess]:
    """A real `himalia serve` on 127.0.0.1 with a known token, serving a fresh root dir."""
    base = tmp_path_factory.mktemp("himalia")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)  # where the sessions steps put their notebook
    token = secrets.token_hex(16)
    env = isolated_env(base, HIMALIA_MARKER=kernel_marker)
    with serve_process("--root-dir", str(root), "--token", token, env=env, cwd=base) as server:
        assert server.token == token
        yield server


@dataclass(repr=False)
class NodeRun:
    """One run of a client script: its exit status, its summary and its output."""

    returncode: int
    summary: dict[str, Any]
    stdout: str
    stderr: str
    artifacts: Path | None = None
    """Where the script left files worth a look (screenshots)."""

    def __repr__(self) -> str:
        passed = sum(1 for s in self.summary.get("steps", []) if s["ok"])
        return f"<NodeRun status {self.returncode}, {passed}/{len(self.summary.get('steps', []))} steps passed>"

    def step(self, name: str) -> dict[str, Any]:
        for step in self.summary.get("steps", []):
            if step["name"] == name:
                return step
        raise AssertionError(f"the script ran no step {name!r}; it ran {self.step_names()}\n{self.tail()}")

    def step_names(self) -> list[str]:
        return [s["name"] for s in self.summary.get("steps", [])]

    def tail(self, lines: int = 40) -> str:
        return "\n".join([*self.stdout.splitlines()[-lines:], "--- stderr ---", *self.stderr.splitlines()[-lines:]])

    def assert_step(self, name: str) -> Any:
        """The step passed in the client; returns what it saw."""
        step = self.step(name)
        assert step["ok"], f"{name}: {step.get('error')}"
        return step.get("saw")


@pytest.fixture(scope="session")
def run_node(node: str, node_modules: Path) -> Callable[..., NodeRun]:
    """`run_node(script, env, timeout)`: run `node SCRIPT` in tests/clients and parse its
    `SUMMARY {json}` line; a script that runs over `timeout` seconds is killed."""

    def run(script: str, env: dict[str, str], timeout: float) -> NodeRun:
        # Its own process group, so that a hung script and everything it started (Chromium) can be
        # killed together.
        process = subprocess.Popen([node, script], cwd=HERE, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            return NodeRun(-1, {"steps": [], "error": f"node ran over {timeout}s and was killed"}, out, err)
        finally:
            try:  # whatever the script left behind
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        summary: dict[str, Any] = {"steps": [], "error": "the script printed no SUMMARY line"}
        for line in out.splitlines():
            if line.startswith("SUMMARY "):
                summary = json.loads(line[len("SUMMARY "):])
        return NodeRun(process.returncode, summary, out, err)

    return run
