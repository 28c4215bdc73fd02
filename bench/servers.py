"""The servers under test: one shared kernelspec environment, start (timed) and stop (kernels included).

Every process the bench starts gets BENCH_RUN_ID in its environment, kernels inherit it, and `reap()`
kills whatever still carries it, so nothing outlives the run even when a server dies uncleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

BENCH_DIR = Path(__file__).resolve().parent
RUN_ID_VAR = "HIMALIA_BENCH_RUN_ID"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# variant name → what the table calls it
VARIANTS = {
    "himalia": "Himalia",
    "himalia_uvloop": "Himalia (uvloop)",
    "himalia_pool": "Himalia with a warm kernel pool ([plugins.local] pool = {python3 = 2})",
    "himalia_terminate": "Himalia shutting kernels down with SIGTERM at once ([plugins.local] shutdown = \"terminate\")",
    "himalia_unbatched": "Himalia with one websocket write per message (the relay before issue 22)",
    "jupyter_server": "jupyter_server as shipped, without server extensions",
    "jupyter_server_ext": "jupyter_server as shipped, with the extensions this environment enables",
    "jupyter_server_tuned": "jupyter_server without extensions, TCP_NODELAY forced + iopub rate limits off",
    "direct": "direct jupyter_client ZMQ, no server",
    "jupyverse": "jupyverse[noauth] (fps plugins), from its own venv ($HIMALIA_BENCH_JUPYVERSE or on PATH)",
}

JUPYVERSE_VAR = "HIMALIA_BENCH_JUPYVERSE"
"""The `jupyverse` executable to bench, e.g. of a scratch venv: `python3 -m venv /tmp/jv &&
/tmp/jv/bin/pip install 'jupyverse[noauth]'`, then HIMALIA_BENCH_JUPYVERSE=/tmp/jv/bin/jupyverse.
It is never a dependency of Himalia or of the bench extra (its pins would fight jupyter_server's)."""


def jupyverse_executable() -> str | None:
    """The jupyverse to bench: $HIMALIA_BENCH_JUPYVERSE, else `jupyverse` on PATH; None if neither."""
    return os.environ.get(JUPYVERSE_VAR) or shutil.which("jupyverse")


def jupyverse_versions() -> dict[str, str | None] | None:
    """Versions of jupyverse and its fps plugins, asked of the interpreter next to its executable."""
    exe = jupyverse_executable()
    if exe is None:
        return None
    python = Path(exe).resolve().parent / "python"
    dists = ["jupyverse", "fps", "fps_kernels", "fps_kernel_subprocess", "fps_contents", "fps_noauth"]
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(d):\n    try: return m.version(d)\n    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({d: v(d) for d in sys.argv[1:]}))")
    try:
        out = subprocess.run([str(python), "-c", code, *dists], capture_output=True, timeout=30, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {d: None for d in dists}


class BenchEnvironment:
    """Temp Jupyter dirs holding one `python3` kernelspec that runs this interpreter's ipykernel.

    Set in os.environ for the whole run, so servers and direct kernels resolve the same spec.
    """

    def __init__(self) -> None:
        self.run_id = secrets.token_hex(8)
        self.tmp = Path(tempfile.mkdtemp(prefix="himalia-bench-"))
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> BenchEnvironment:
        data = self.tmp / "data"
        spec = data / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (bench)",
            "language": "python",
            "metadata": {"debugger": True},
        }))
        env = {
            "JUPYTER_PATH": str(data),
            "JUPYTER_DATA_DIR": str(data),
            "JUPYTER_CONFIG_DIR": str(self.tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime"),
            "IPYTHONDIR": str(self.tmp / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "0",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            RUN_ID_VAR: self.run_id,
        }
        for k, v in env.items():
            self._saved[k] = os.environ.get(k)
            os.environ[k] = v
        os.environ.pop("JUPYTER_TOKEN", None)
        return self

    def __exit__(self, *exc: object) -> None:
        reap(self.run_id)
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fresh_root(self, name: str) -> Path:
        root = Path(tempfile.mkdtemp(prefix=f"root-{name}-", dir=self.tmp))
        many = root / "many"
        many.mkdir()
        for i in range(1000):
            (many / f"file{i:04d}.txt").write_text(f"line {i}\n")
        return root


def reap(run_id: str) -> list[int]:
    """Kill every process (but this one and its ancestors) carrying our run id; return their pids."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    marker = f"{RUN_ID_VAR}={run_id}".encode()
    victims = []
    for pid in psutil.pids():
        if pid in mine:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    victims.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)
    return [p.pid for p in victims]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(variant: str, port: int, root: Path, token: str) -> list[str]:
    py = sys.executable
    if variant == "himalia":
        return [py, "-c", "import sys; from himalia.cli import main; sys.exit(main())",
                "serve", "--port", str(port), "--root-dir", str(root), "--token", token]
    if variant == "himalia_pool":
        return [py, "-c", "import sys; from himalia.cli import main; sys.exit(main())",
                "serve", "--port", str(port), "--root-dir", str(root), "--token", token,
                "--set", "plugins.local.pool={python3 = 2}", "--set", "plugins.local.pool_fill_delay=0.2"]
    if variant == "himalia_terminate":
        return [py, "-c", "import sys; from himalia.cli import main; sys.exit(main())",
                "serve", "--port", str(port), "--root-dir", str(root), "--token", token,
                "--set", 'plugins.local.shutdown="terminate"']
    if variant in ("himalia_uvloop", "himalia_unbatched"):
        return [py, str(BENCH_DIR / f"{variant}.py"),
                "serve", "--port", str(port), "--root-dir", str(root), "--token", token]
    common = [f"--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
              f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
              "--ServerApp.open_browser=False", "--ServerApp.allow_root=True"]
    if variant == "jupyter_server_ext":
        return [py, "-m", "jupyter_server", *common]
    bare = [f"--ServerApp.jpserver_extensions={name}=False" for name in enabled_server_extensions()]
    if variant == "jupyter_server":
        return [py, "-m", "jupyter_server", *common, *bare]
    if variant == "jupyter_server_tuned":
        return [py, str(BENCH_DIR / "jupyter_nodelay.py"), *common, *bare,
                "--ServerApp.iopub_msg_rate_limit=0", "--ServerApp.iopub_data_rate_limit=0"]
    if variant == "jupyverse":
        exe = jupyverse_executable()
        if exe is None:
            raise RuntimeError(f"jupyverse is not installed: set ${JUPYVERSE_VAR} to its executable")
        # noauth: no token (the header the bench sends is ignored). Its `lab` and `page_config` modules
        # need JupyterLab's fps plugin, which jupyverse[noauth] does not install: without them it serves
        # the REST and websocket APIs, as jupyter_server without extensions does. Kernels start in the
        # directory of the notebook's path, relative to its cwd: the root (see `start`).
        return [exe, "--host", "127.0.0.1", "--port", str(port), "--disable", "lab", "--disable", "page_config"]
    raise ValueError(f"unknown server variant {variant!r}")


def enabled_server_extensions() -> list[str]:
    """Server extensions the environment's Jupyter config enables (jupyterlab, ...), to switch them off."""
    from jupyter_core.paths import jupyter_config_path

    names: set[str] = set()
    for directory in jupyter_config_path():
        files = [*Path(directory).glob("jupyter_server_config.d/*.json"),
                 Path(directory) / "jupyter_server_config.json"]
        for f in files:
            try:
                extensions = json.loads(f.read_text()).get("ServerApp", {}).get("jpserver_extensions", {})
            except (OSError, ValueError, AttributeError):
                continue
            names.update(n for n, on in extensions.items() if on)
    return sorted(names)


@dataclass
class Server:
    """One running server process and an HTTP session that carries its token."""

    variant: str
    port: int
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    cold_start_s: float = 0.0
    http: aiohttp.ClientSession | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


async def start(env: BenchEnvironment, variant: str) -> Server:
    """Spawn the server and poll /api/status until the first 200; the time from spawn is its cold start."""
    root = env.fresh_root(variant)
    token = secrets.token_hex(16)
    port = free_port()
    log_path = env.tmp / f"{variant}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    t0 = time.perf_counter()
    proc = subprocess.Popen(command(variant, port, root, token), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    log.close()
    server = Server(variant, port, token, root, proc, log_path)
    server.http = aiohttp.ClientSession(headers=server.auth, timeout=aiohttp.ClientTimeout(total=120))
    try:
        server.cold_start_s = await _first_200(server, t0)
    except BaseException:
        await stop(server)
        raise
    return server


async def _first_200(server: Server, t0: float) -> float:
    url = f"{server.base}/api/status"
    deadline = t0 + START_TIMEOUT
    async with aiohttp.ClientSession(headers=server.auth) as probe:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.variant} exited with {server.proc.returncode} before answering:\n"
                                   f"{server.log_tail()}")
            try:
                async with probe.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.005)  # polling a port for a process we cannot get an event from
    raise RuntimeError(f"{server.variant} did not answer /api/status within {START_TIMEOUT:.0f} s:\n"
                       f"{server.log_tail()}")


async def stop(server: Server) -> None:
    """SIGTERM (servers shut their kernels down), then SIGKILL the group, then kill surviving kernels."""
    if server.http is not None:
        await server.http.close()
    try:
        children = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while server.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # waiting on another process's exit
    kill_group(server.proc)
    for p in children:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=5)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
