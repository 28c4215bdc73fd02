"""JupyterLab, in a real headless Chromium, using Himalia as its kernel gateway.

A real jupyter_server with JupyterLab runs with `--gateway-url` pointing at a real `himalia serve`:
its notebooks are its own, its kernels are Himalia's. lab_gateway.mjs (playwright-core driving
Debian's /usr/bin/chromium) opens a notebook, runs a cell, sees the output (computed by a Himalia
kernel: it prints a value only Himalia's environment has), interrupts a running cell and restarts the
kernel from the Kernel menu, and checks the kernel came back fresh. No browser is ever downloaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from himalia.testing import ServerProcess

# Servers, browser and script share one bound (pytest-timeout counts fixture set-up in).
pytestmark = pytest.mark.timeout(480)

NOTEBOOK = "gateway.ipynb"
STEPS = [
    "lab: open the notebook",
    "lab: run a cell and see its output",
    "lab: interrupt a running cell from the Kernel menu",
    "lab: restart the kernel from the Kernel menu",
    "lab: the restarted kernel is a fresh one",
    "lab: no dialog and no kernel error shown",
]


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
            code("sleep", "import time\nprint('sleeping', flush=True)\ntime.sleep(120)"),
        ],
    }


@pytest.fixture(scope="module")
def lab(chromium: Path, jupyterlab: None, jupyter_server_process, jupyter_env, tmp_path_factory: pytest.TempPathFactory,
        himalia: ServerProcess) -> Iterator[Any]:
    """jupyter_server with JupyterLab, its kernel gateway being Himalia."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    (root / NOTEBOOK).write_text(json.dumps(notebook()))
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "get notified about Jupyter news?" toast, and no request for news or updates.
    notification = {"fetchNews": "false", "checkForUpdates": False}
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(notification))
    env = jupyter_env(base, JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
                      JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"))
    with jupyter_server_process(
        "jupyterlab", root, env,
        f"--gateway-url={himalia.url.rstrip('/')}", f"--GatewayClient.auth_token={himalia.token}",
        # window.jupyterapp, through which the script reads the notebook's kernel and its statuses
        "--LabApp.expose_app_in_browser=True",
        # nothing that would reach beyond 127.0.0.1
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def browser_run(chromium: Path, run_node, himalia: ServerProcess, lab, kernel_marker: str,
                tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("chromium")
    (base / "profile").mkdir()
    (base / "screenshots").mkdir()
    env = {
        **os.environ,
        "LAB_URL": lab.url, "LAB_TOKEN": lab.token, "HIMALIA_URL": himalia.url, "HIMALIA_TOKEN": himalia.token or "",
        "KERNEL_MARKER": kernel_marker, "NOTEBOOK": NOTEBOOK, "CHROMIUM": str(chromium),
        "USER_DATA_DIR": str(base / "profile"), "SCREENSHOT_DIR": str(base / "screenshots"),
        "STEP_TIMEOUT_MS": "60000",
    }
    run = run_node("lab_gateway.mjs", env, timeout=180)
    run.artifacts = base / "screenshots"
    return run


def test_every_step_ran(browser_run):
    assert browser_run.step_names() == STEPS, browser_run.tail()


@pytest.mark.parametrize("step", STEPS)
def test_step(browser_run, step: str):
    try:
        browser_run.assert_step(step)
    except AssertionError as e:
        console = browser_run.summary.get("console")
        raise AssertionError(f"{e}\nscreenshots: {browser_run.artifacts}\npage console: {console}") from None


def test_exit_status(browser_run):
    failed = [s["name"] for s in browser_run.summary["steps"] if not s["ok"]]
    assert browser_run.returncode == (1 if failed else 0), browser_run.tail()
