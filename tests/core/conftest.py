"""Helpers for core tests: real plugin distributions (a module plus a `*.dist-info` with an
`entry_points.txt`) written to a directory that is put on sys.path or PYTHONPATH."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


def write_dist(site: Path, dist: str, version: str, plugins: dict[str, str]) -> Path:
    """Write distribution `dist` with one module per plugin: {entry-point name: module source}."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[himalia]"]
    for name, source in plugins.items():
        module = f"{dist.replace('-', '_')}_{name}"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        lines.append(f"{name} = {module}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """`plugin_site(dist, {name: source})` installs a real distribution on sys.path for this test."""
    site = tmp_path / "site"
    added: list[str] = []

    def make(dist: str, plugins: dict[str, str], version: str = "1.0") -> Path:
        write_dist(site, dist, version, plugins)
        if str(site) not in sys.path:
            monkeypatch.syspath_prepend(str(site))
        added.extend(f"{dist.replace('-', '_')}_{n}" for n in plugins)
        return site

    yield make
    for module in added:
        sys.modules.pop(module, None)


@pytest.fixture
def dist_writer() -> Callable[..., Path]:
    """`dist_writer(site, dist, version, {name: source})`, for tests that pass PYTHONPATH to a subprocess."""
    return write_dist
