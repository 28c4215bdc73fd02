"""JupyterLab and Notebook 7 served by Himalia itself (the `lab` plugin), in a real headless Chromium.

lab_ui.mjs (playwright-core driving Debian's /usr/bin/chromium) finds the login page without a token and
logs in with its form, then logs in with `?token=`, sees the Python
kernel in the launcher and a federated extension installed by this test, runs `print(6*7)` in a
notebook and saves it (the file on disk is checked), switches to the dark theme and reloads (theme and
open tab persist through the settings and workspaces APIs), disables the extension with `jupyter
labextension disable`, and runs a cell in Notebook 7 from /tree. It also opens File › New › Terminal, runs
`echo $((6*7)) > t.txt` there (the output shows, the file is on disk), exports a nested notebook with
File › Save and Export As › HTML (the downloaded file has the cell's output), and finds the same
terminal with its scrollback after a reload. The script waits on what JupyterLab itself tells (the
app and its file browser restored, a widget attached, a websocket connected, a tab current), never on
time nor on which tab happens to be current. Any 4xx/5xx outside the script's short
allow-list, or any console error, fails it. The same again under base_url /jh/. Screenshots of each
step are kept in pytest's tmp dir (printed when a step fails).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from himalia.testing import ServerProcess, serve_process

from .conftest import isolated_env

pytestmark = pytest.mark.timeout(600)

NOTEBOOK = "lab.ipynb"
NESTED = "deep/er/nested.ipynb"
EXTENSION = "himalia-test-extension"
STEPS = [
    "login: without a token a page says how to log in; its form logs the browser in",
    "lab: ?token= logs in, the token leaves the address bar, the launcher shows the Python kernel",
    "lab: the federated extension from the labextensions path is active",
    "lab: open a notebook, run print(6*7), see 42",
    "lab: save, and the file on disk has the cell and its output",
    "lab: the dark theme stays after a reload, and its settings file exists",
    "lab: the reload restored the notebook tab (workspace saved)",
    "lab: File › New › Terminal runs `echo $((6*7)) > t.txt`; its output shows and the file is on disk",
    "lab: File › Save and Export As › HTML of a nested notebook downloads HTML with the cell's output",
    "lab: after a reload the same terminal is there, its scrollback shown",
    "lab: `jupyter labextension disable` removes the extension on the next load",
    "notebook 7: /tree lists the notebook, which opens in Notebook 7 and runs a cell",
    "no unexpected HTTP error and no console error on any page",
]

# A prebuilt (federated) extension as `jupyter labextension build` lays it out, reduced to what
# JupyterLab's loader needs: a module-federation container in window._JUPYTERLAB whose module's
# default export is a plugin. Its plugin marks the page, so the script can see it ran.
REMOTE_ENTRY = """
var _JUPYTERLAB = (window._JUPYTERLAB = window._JUPYTERLAB || {});
_JUPYTERLAB[%(name)s] = {
  init: function (shareScope) { return Promise.resolve(); },
  get: function (module) {
    return Promise.resolve(function () {
      return { __esModule: true, default: {
        id: %(name)s + ':plugin', autoStart: true,
        activate: function () { document.body.dataset.himaliaExtension = 'active'; }
      } };
    });
  }
};
"""


def write_extension(labextensions: Path) -> None:
    ext = labextensions / EXTENSION
    (ext / "static").mkdir(parents=True)
    (ext / "static" / "remoteEntry.0123456789abcdef0123.js").write_text(REMOTE_ENTRY % {"name": json.dumps(EXTENSION)})
    (ext / "package.json").write_text(json.dumps({
        "name": EXTENSION, "version": "0.1.0", "description": "made by tests/clients/test_lab.py",
        "jupyterlab": {"_build": {"load": "static/remoteEntry.0123456789abcdef0123.js", "extension": "./extension"}},
    }))


def notebook(*sources: str) -> dict:
    def code(n: int, source: str) -> dict:
        return {"id": f"cell{n}", "cell_type": "code", "source": source, "metadata": {}, "outputs": [],
                "execution_count": None}

    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "cells": [code(n, source) for n, source in enumerate(sources)],
    }


class LabSetup:
    def __init__(self, base: Path, base_url: str):
        self.base = base
        self.root = base / "root"
        self.root.mkdir()
        (self.root / NOTEBOOK).write_text(json.dumps(notebook("", "print('notebook 7 says', 6 * 7)")))
        # exported after a run: the HTML must have the output the browser computed
        (self.root / NESTED).parent.mkdir(parents=True)
        (self.root / NESTED).write_text(json.dumps(notebook("print('exported', 6 * 7)")))
        write_extension(base / "extra" / "labextensions")
        self.settings = base / "settings"
        self.workspaces = base / "workspaces"
        self.env = isolated_env(base, JUPYTER_PATH=str(base / "extra"), JUPYTERLAB_SETTINGS_DIR=str(self.settings),
                                JUPYTERLAB_WORKSPACES_DIR=str(self.workspaces))
        self.base_url = base_url
        # labconfig/page_config.json is honoured: window.jupyterapp, through which the script reads the
        # terminal's text and sees the app restored (`jupyter labextension disable` adds to this file)
        labconfig = base / "config" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(json.dumps({"exposeAppInBrowser": True}))


@pytest.fixture(scope="module", params=["/", "/jh/"], ids=["root", "base_url"])
def served(request, chromium: Path, jupyterlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, LabSetup]]:
    setup = LabSetup(tmp_path_factory.mktemp("lab"), request.param)
    with serve_process("--root-dir", str(setup.root), "--base-url", setup.base_url, env=setup.env,
                       cwd=setup.base) as server:
        assert server.url.endswith(setup.base_url)
        yield server, setup


@pytest.fixture(scope="module")
def browser_run(served, run_node, chromium: Path, tmp_path_factory: pytest.TempPathFactory):
    server, setup = served
    base = tmp_path_factory.mktemp("chromium")
    (base / "profile").mkdir()
    (base / "screenshots").mkdir()
    disable = [sys.executable, "-m", "jupyter", "labextension", "disable", "--level=user", EXTENSION]
    env = {
        **setup.env,
        "SERVER_URL": server.url, "TOKEN": server.token or "", "ROOT": str(setup.root), "NOTEBOOK": NOTEBOOK,
        "NESTED": NESTED, "DOWNLOAD_DIR": str(base / "downloads"),
        "SETTINGS_DIR": str(setup.settings), "WORKSPACES_DIR": str(setup.workspaces), "EXTENSION": EXTENSION,
        "DISABLE_COMMAND": json.dumps(disable), "CHROMIUM": str(chromium),
        "USER_DATA_DIR": str(base / "profile"), "SCREENSHOT_DIR": str(base / "screenshots"),
        "STEP_TIMEOUT_MS": "60000", "PATH": os.environ.get("PATH", ""),
    }
    run = run_node("lab_ui.mjs", env, timeout=360)
    run.artifacts = base / "screenshots"
    return run


def test_every_step_ran(browser_run):
    assert browser_run.step_names() == STEPS, browser_run.tail()


@pytest.mark.parametrize("step", STEPS)
def test_step(browser_run, step: str):
    try:
        browser_run.assert_step(step)
    except AssertionError as e:
        extra = {k: browser_run.summary.get(k) for k in ("httpErrors", "consoleErrors")}
        raise AssertionError(f"{e}\nscreenshots: {browser_run.artifacts}\n{extra}") from None


def test_exit_status(browser_run):
    failed = [s["name"] for s in browser_run.summary["steps"] if not s["ok"]]
    assert browser_run.returncode == (1 if failed else 0), browser_run.tail()
