"""The lab plugin's figures: JupyterLab's page and settings API in requests/s, and the time from
spawning a server to a JupyterLab whose launcher is visible in headless Chromium (against
`jupyter_server_ext`, which is `jupyter lab`: jupyter_server with this environment's jupyterlab)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import servers
from .figures_http import Unsupported, _rps
from .servers import BENCH_DIR, Server
from .settings import Settings


async def lab_page(server: Server, s: Settings) -> dict[str, Any]:
    return await _rps(server, s, "/lab", 16, s.pick(3.0, 1.0))


async def lab_settings(server: Server, s: Settings) -> dict[str, Any]:
    # the full listing (every schema, ~150 kB): what JupyterLab fetches first on every page load
    return await _rps(server, s, "/lab/api/settings", 4, s.pick(4.0, 2.0))


async def lab_launch(server: Server, s: Settings) -> dict[str, Any]:
    """Spawns its own server of the same variant (the running one only says which) on a fresh port."""
    node = shutil.which("node")
    chromium = Path("/usr/bin/chromium")
    if node is None or not chromium.exists() or not (BENCH_DIR.parent / "tests" / "clients" / "node_modules").is_dir():
        raise Unsupported("needs node, /usr/bin/chromium and tests/clients/node_modules (npm ci there)")
    root = server.root.parent / f"{server.variant}-launch-{secrets.token_hex(3)}"
    root.mkdir()
    token = secrets.token_hex(16)
    port = servers.free_port()
    cmd = servers.command(server.variant, port, root, token)
    env = {**os.environ, "CMD": json.dumps(cmd), "URL": f"http://127.0.0.1:{port}/lab?token={token}",
           "CHROMIUM": str(chromium)}
    done = await asyncio.to_thread(subprocess.run, [node, str(BENCH_DIR / "lab_launch.mjs")], env=env,
                                   capture_output=True, text=True, timeout=180, cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"lab_launch.mjs printed nothing (status {done.returncode}): {done.stderr[-500:]}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise RuntimeError(result["error"])
    return result
