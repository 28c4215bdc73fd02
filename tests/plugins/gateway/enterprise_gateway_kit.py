"""Test helpers: a real Jupyter Enterprise Gateway in its own virtual environment.

Enterprise Gateway 3.x pins jupyter_server 1.x and jupyter_client 6, so it cannot live in the test
venv. `eg_environment()` creates its venv once, from `enterprise_gateway.txt` (fully pinned, wheels
only), in a cache directory keyed by that file's hash and this Python's version
($HIMALIA_TEST_CACHE, else ~/.cache/himalia-tests); later sessions reuse it. EG's Python kernel
launcher (`launch_ipykernel.py`, the script its remote kernelspecs run) is not in its wheel: it is
taken from the same version's source distribution.

`run_enterprise_gateway()` starts it on 127.0.0.1 with two kernelspecs:
- `python3`, ipykernel's own spec: EG's local process proxy (POST /api/kernels returns once the
  process is spawned);
- `python_remote`: EG's `DistributedProcessProxy` on 127.0.0.1 (which EG runs without ssh), so the
  kernel starts as every remote one does (Kubernetes, YARN, Docker): EG's launcher connects back to
  EG's response address with the kernel's ports, and EG holds POST /api/kernels until it has, up to
  the KERNEL_LAUNCH_TIMEOUT of the request. Its launch is delayed by `KERNEL_LAUNCH_DELAY` seconds
  (an env of the start request, which EG passes to kernels as every KERNEL_* variable), to stand in
  for a slow image pull or queue; and, as a pod's kernel, it outlives a crash of EG (it does not
  watch its parent process).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway_kit import TOKEN, Gateway, free_port, wait_until_up

from himalia.testing import stop_process

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "enterprise_gateway.txt"
VERSION = "3.3.0"
INSTALL_TIMEOUT = 1200
STARTUP_TIMEOUT = 90.0
LAUNCHER = "etc/kernel-launchers/python/scripts/launch_ipykernel.py"

DELAYED_LAUNCH = """\
import os, sys, time
time.sleep(float(os.environ.get("KERNEL_LAUNCH_DELAY") or 0))  # a slow pod, queue or image pull
os.environ.pop("JPY_PARENT_PID", None)  # a remote kernel does not die with the gateway: neither does this one
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def cache_root() -> Path:
    return Path(os.environ.get("HIMALIA_TEST_CACHE") or Path.home() / ".cache" / "himalia-tests")


def eg_environment() -> Path:
    """The directory holding EG's venv (`venv/`) and its launcher, created on first use (blocking)."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    where = cache_root() / f"enterprise-gateway-{VERSION}-{key}-py{sys.version_info[0]}{sys.version_info[1]}"
    stamp = where / "ready"
    if stamp.exists():
        return where
    where.parent.mkdir(parents=True, exist_ok=True)
    with open(where.parent / f"{where.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it
        if stamp.exists():
            return where
        shutil.rmtree(where, ignore_errors=True)  # a half-built one
        where.mkdir()
        python = where / "venv" / "bin" / "python"
        run([sys.executable, "-m", "venv", str(where / "venv")])
        run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary", ":all:",
             "-r", str(REQUIREMENTS)])
        sdist = where / "sdist"
        run([str(python), "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", "-d", str(sdist), f"jupyter_enterprise_gateway=={VERSION}"])
        (archive,) = sdist.glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            member = tar.getmember(f"{archive.name.removesuffix('.tar.gz')}/{LAUNCHER}")
            (where / "launch_ipykernel.py").write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        shutil.rmtree(sdist)
        stamp.write_text(f"{VERSION}\n")
    return where


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {done.returncode}:\n{done.stdout}\n{done.stderr}")


def write_kernelspecs(env_dir: Path, data_dir: Path) -> None:
    """`python_remote` (see the module docstring) in `data_dir`; `python3` comes from EG's venv."""
    spec_dir = data_dir / "kernels" / "python_remote"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "delayed_launch.py").write_text(DELAYED_LAUNCH)
    spec = {
        "display_name": "Python 3 (remote launch on 127.0.0.1)",
        "language": "python",
        "metadata": {"process_proxy": {
            "class_name": "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy"}},
        "argv": ["python", str(spec_dir / "delayed_launch.py"), str(env_dir / "launch_ipykernel.py"),
                 "--RemoteProcessProxy.kernel-id", "{kernel_id}",
                 "--RemoteProcessProxy.response-address", "{response_address}",
                 "--RemoteProcessProxy.public-key", "{public_key}",
                 "--RemoteProcessProxy.port-range", "{port_range}",
                 "--RemoteProcessProxy.spark-context-initialization-mode", "none"],
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def start_enterprise_gateway(base: Path, env_dir: Path, *args: str, port: int | None = None, token: str = TOKEN,
                             env: dict[str, str] | None = None) -> Gateway:
    """Start Enterprise Gateway on 127.0.0.1 (its state, logs and kernelspecs under `base`); return
    once `/api` answers. Starting again with the same `base` and `port` restarts the same gateway."""
    port = port or free_port()
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    write_kernelspecs(env_dir, data)
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("JUPYTER", "KERNEL_", "EG_", "VIRTUAL_ENV", "PYTHON"))}
    full_env.update({
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1",
        # the launcher's callback, on loopback and on a port of its own (8877 by default: one per machine)
        "EG_RESPONSE_IP": "127.0.0.1", "EG_RESPONSE_PORT": str(free_port()), "EG_RESPONSE_PORT_RETRIES": "0",
        "EG_KERNEL_LOG_DIR": str(base), "EG_REMOTE_HOSTS": "127.0.0.1",
        **(env or {}),
    })
    log = base / f"enterprise-gateway-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(env_dir / "venv" / "bin" / "python"), "-m", "enterprise_gateway",
             "--EnterpriseGatewayApp.ip=127.0.0.1", f"--EnterpriseGatewayApp.port={port}",
             "--EnterpriseGatewayApp.port_retries=0", f"--EnterpriseGatewayApp.auth_token={token}",
             "--EnterpriseGatewayApp.list_kernels=True", *args],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=base)
    gateway = Gateway(f"http://127.0.0.1:{port}", token, port, process, log)
    try:
        wait_until_up(gateway, STARTUP_TIMEOUT, "enterprise gateway")
    except BaseException:
        stop_process(process)
        raise
    return gateway


@contextmanager
def run_enterprise_gateway(base: Path, env_dir: Path, *args: str, **kwargs: Any) -> Iterator[Gateway]:
    """`start_enterprise_gateway`, stopped (and so its kernels) on exit, whichever process it then is."""
    gateway = start_enterprise_gateway(base, env_dir, *args, **kwargs)
    try:
        yield gateway
    finally:
        stop_process(gateway.process)
