"""Shared test setup: every test gets its own Jupyter runtime/data dirs and trash so nothing leaks between
tests or into the user's home; the `himalia_server` fixture comes from `himalia.testing`."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_jupyter_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.mktemp("jupyter")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(base / "runtime"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(base / "config"))
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    # delete-to-trash (send2trash) puts files under $XDG_DATA_HOME/Trash: keep them out of $HOME
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
