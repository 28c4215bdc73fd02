"""Fixtures for the lab plugin's tests: a federated extension on the Jupyter path, and helpers to read
a page's config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("jupyterlab", reason="the lab plugin's tests need the 'lab' extra (jupyterlab, notebook)")

TOKEN = "lab-test-token"
AUTH = {"plugins": {"auth": {"token": TOKEN}}}
EXTENSION = "himalia-lab-test-ext"
SCHEMA_ID = f"{EXTENSION}:plugin"


def page_config(html: str) -> dict:
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert found, html[:500]
    return json.loads(found.group(1))


@pytest.fixture
def extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prebuilt extension with a settings schema and a theme, in a labextensions dir on $JUPYTER_PATH."""
    ext = tmp_path / "extra" / "labextensions" / EXTENSION
    (ext / "static").mkdir(parents=True)
    (ext / "static" / "remoteEntry.abcdef0123456789.js").write_text("/* container */")
    (ext / "schemas" / EXTENSION).mkdir(parents=True)
    (ext / "schemas" / EXTENSION / "plugin.json").write_text(json.dumps({
        "title": "Test", "type": "object",
        "properties": {"answer": {"type": "integer", "default": 42}}, "additionalProperties": False,
    }))
    (ext / "schemas" / EXTENSION / "package.json.orig").write_text(json.dumps({"name": EXTENSION, "version": "1.2.3"}))
    theme = ext / "themes" / EXTENSION
    theme.mkdir(parents=True)
    (theme / "index.css").write_text("a { background: url('images/bg.png'); } b { background: url('/abs.png'); }")
    (ext / "package.json").write_text(json.dumps({
        "name": EXTENSION, "version": "1.2.3",
        "jupyterlab": {"_build": {"load": "static/remoteEntry.abcdef0123456789.js", "extension": "./extension"}},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "extra"))
    return ext


@pytest.fixture
def lab_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dirs = {"settings": tmp_path / "user-settings", "workspaces": tmp_path / "workspaces"}
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(dirs["settings"]))
    monkeypatch.setenv("JUPYTERLAB_WORKSPACES_DIR", str(dirs["workspaces"]))
    return dirs
