"""JupyterLab, in a real headless Chromium, using Himalia as its kernel gateway.

A real jupyter_server with JupyterLab runs with `--gateway-url` pointing at a real `himalia serve`:
its notebooks are its own, its kernels are Himalia's. lab_gateway.mjs (playwright-core driving
Debian's /usr/bin/chromium) opens a notebook, runs a cell, sees the output (computed by a Himalia
kernel: it prints a value only Himalia's environment has), restarts the kernel from the Kernel menu
and checks the kernel came back fresh. No browser is ever downloaded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from himalia.testing import ServerProcess

NOTEBOOK = "gateway.ipynb"
STEPS = [
    "lab: open the notebook",
    "lab: run a cell and see its output",
    "lab: restart the kernel from the Kernel menu",
    "lab: the restarted kernel is a fresh one",
    "lab: no dialog and no kernel error shown",
]
START_TIMEOUT = 90.0


def notebook() -> dict:
    def code(cell_id: str, source: str) -> dict:
        return {"id": cell_id, "cell_type": "code", "source": source, "metadata": {}, "outputs": [],
                "execution_count": None}

    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "cells": [
            code("marker", "import os\nsurvivor = True\nprint('kernel on himalia', os.environ.get('HIMALIA_MARKER'))"),
            code("fresh", "print('survivor defined:', 'survivor' in globals())"),
        ],
    }


@pytest.fixture(scope="module")
def lab(chromium: Path, jupyterlab: None, tmp_path_factory: pytest.TempPathFactory, himalia: ServerProcess) -> Iterator[tuple[str, str]]:
    """jupyter_server + JupyterLab on 127.0.0.1:<free port>, gateway = Himalia; yields (url, token)."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    (root / NOTEBOOK).write_text(json.dumps(notebook()))
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "get notified about Jupyter news?" toast, and no request for news or updates.
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "HIMALIA_MARKER")}
    env.update(JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_PLATFORM_DIRS="1",
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"))
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--gateway-url={himalia.url.rstrip('/')}", f"--GatewayClient.auth_token={himalia.token}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    process = subprocess.Popen(cmd, cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:  # jupyter_server logs to stderr; a thread, so that every wait has a deadline
        for line in process.stderr:  # type: ignore[union-attr]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("jupyter lab announced no URL:\n" + "\n".join(output)) from None
            if line is None:
                raise RuntimeError(f"jupyter lab exited with {process.wait(10)}:\n" + "\n".join(output))
            output.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/)lab\?token=", line)
            url = found and found.group(1)

        def drain() -> None:
            while (more := lines.get()) is not None:
                output.append(more)

        threading.Thread(target=drain, daemon=True).start()
        yield url, token
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


@pytest.fixture(scope="module")
def browser_run(chromium: Path, run_node, himalia: ServerProcess, lab: tuple[str, str], kernel_marker: str,
                tmp_path_factory: pytest.TempPathFactory):
    lab_url, lab_token = lab
    base = tmp_path_factory.mktemp("chromium")
    (base / "profile").mkdir()
    (base / "screenshots").mkdir()
    env = {
        **os.environ,
        "LAB_URL": lab_url, "LAB_TOKEN": lab_token, "HIMALIA_URL": himalia.url, "HIMALIA_TOKEN": himalia.token or "",
        "KERNEL_MARKER": kernel_marker, "NOTEBOOK": NOTEBOOK, "CHROMIUM": str(chromium),
        "USER_DATA_DIR": str(base / "profile"), "SCREENSHOT_DIR": str(base / "screenshots"),
        "STEP_TIMEOUT_MS": "60000",
    }
    run = run_node("lab_gateway.mjs", env, timeout=200)
    run.artifacts = base / "screenshots"
    return run


def test_every_step_ran(browser_run):
    assert browser_run.step_names() == STEPS, browser_run.tail()


@pytest.mark.parametrize("step", STEPS)
def test_step(browser_run, step: str):
    try:
        browser_run.assert_step(step)
    except AssertionError as e:
        raise AssertionError(f"{e}\nscreenshots: {browser_run.artifacts}\npage console: {browser_run.summary.get('console')}") from None


def test_exit_status(browser_run):
    failed = [s["name"] for s in browser_run.summary["steps"] if not s["ok"]]
    assert browser_run.returncode == (1 if failed else 0), browser_run.tail()
