"""A real JupyterHub (from PyPI) with its real configurable-http-proxy (from npm, installed here from
package-lock.json when missing), DummyAuthenticator and SimpleLocalProcessSpawner, spawning this
venv's `himalia serve` and nothing else: one hub per test module, everything on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from himalia.testing import stop_process

HERE = Path(__file__).parent
CLIENTS = HERE.parent.parent / "clients"
NODE_MODULES = HERE / "node_modules"
LOCK_STAMP = NODE_MODULES / ".himalia-lock-sha256"
START_TIMEOUT = 90.0
PASSWORD = "any password: DummyAuthenticator with allow_all takes any"


def _clients_conftest():
    """tests/clients/conftest.py, for its browser fixtures: the browser test runs in this directory's
    modules so that it shares their hub."""
    spec = importlib.util.spec_from_file_location("himalia_tests_clients_conftest", CLIENTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_clients = _clients_conftest()
node = _clients.node
node_modules = _clients.node_modules
chromium = _clients.chromium
jupyterlab = _clients.jupyterlab
run_node = _clients.run_node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def proxy_command() -> list[str]:
    """configurable-http-proxy as package-lock.json pins it: `npm ci` when absent or out of date."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for JupyterHub's configurable-http-proxy")
    digest = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    if not (LOCK_STAMP.exists() and LOCK_STAMP.read_text() == digest):
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"npm ci failed with status {done.returncode}:\n{done.stdout}\n{done.stderr}",
                        pytrace=False)
        LOCK_STAMP.write_text(digest)
    return [node, str(NODE_MODULES / "configurable-http-proxy" / "bin" / "configurable-http-proxy")]


@dataclass
class Hub:
    url: str
    """The proxy's public URL, ending in "/"."""
    api: str
    """The hub's REST API (through the proxy), ending in "/"."""
    token: str
    """A service token with admin rights on users and servers."""
    homes: Path
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_hub(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # polling a process we do not control: it offers no readiness event
    raise RuntimeError(f"jupyterhub did not answer {url} within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, proxy_command) -> Iterator[Hub]:
    if shutil.which("jupyterhub", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("jupyterhub is not installed (pip install -e '.[test]')")
    base = tmp_path_factory.mktemp("hub")
    homes = base / "homes"
    homes.mkdir()
    port, hub_port, api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(16)
    himalia = str(Path(sys.executable).with_name("himalia"))
    config = base / "jupyterhub_config.py"
    config.write_text(f"""
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = {proxy_command!r}
c.JupyterHub.db_url = "sqlite:///{base / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = "{base / 'cookie_secret'}"
c.JupyterHub.pid_file = "{base / 'jupyterhub.pid'}"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{homes}/{{username}}"
c.Spawner.cmd = [{himalia!r}, "serve"]
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "1"}}
c.Spawner.default_url = "/tree"  # Notebook 7's file list, not the lab plugin's own /lab
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.last_activity_interval = 3600  # the hub's own poll of the proxy: keep it out of the test
c.JupyterHub.services = [{{"name": "tester", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "tester", "scopes": ["admin:users", "admin:servers", "tokens"],
                             "services": ["tester"]}}]
""")
    log = base / "jupyterhub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "JUPYTER_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("jupyterhub")), "-f", str(config)],
                                   cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_hub(url + "hub/api/", process, log)
        yield Hub(url=url, api=url + "hub/api/", token=token, homes=homes, process=process, log=log)
    finally:
        stop_process(process, timeout=60)
