"""Shared setup for the contents tests: a server over a fresh root directory with the contents
plugin configured (deletes are permanent unless a test asks for the trash)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def contents_server(himalia_server):
    """`async with contents_server(allow_hidden=True, plugins={...}) as server:` over `server.root_dir`."""

    def factory(*, plugins: dict[str, Any] | None = None, **settings: Any):
        settings.setdefault("delete_to_trash", False)
        return himalia_server(config={"plugins": {"contents": settings}}, plugins=plugins)

    return factory


@pytest.fixture
def root(tmp_path):
    """The root directory the `himalia_server` fixture serves."""
    path = tmp_path / "root"
    path.mkdir(exist_ok=True)
    return path
