"""The plugin's wiring: config, provider, start-up cost."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from himalia import SERVICES, ConfigError, ContentsManager


def test_importing_the_plugin_does_not_import_nbformat():
    code = ("import sys, himalia_contents, himalia_contents.handlers, himalia_contents.filesystem; "
            "print('nbformat' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


async def test_root_dir_setting_overrides_the_servers(contents_server, root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "there.txt").write_text("here")
    (root / "server_root.txt").write_text("x")
    async with contents_server(root_dir=str(elsewhere)) as server:
        assert isinstance(server.app[SERVICES].contents, ContentsManager)
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == ["there.txt"]


async def test_custom_hide_globs_and_checkpoint_dir(contents_server, root):
    (root / "keep.txt").write_text("x")
    (root / "drop.log").write_text("x")
    async with contents_server(hide_globs=["*.log"], checkpoint_dir=".my_checkpoints") as server:
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == ["keep.txt"]
        assert (await server.post("/api/contents/keep.txt/checkpoints")).status == 201
        assert (root / ".my_checkpoints" / "keep-checkpoint.txt").read_text() == "x"


async def test_an_unknown_hash_algorithm_is_a_config_error(contents_server, root):
    """It was accepted at start-up and made every `hash=1` request a 500 (hashlib.new in filesystem.py)."""
    (root / "f.txt").write_bytes(b"x")
    for name in ("sha-nope", "shake_128"):  # shake_* exist but have no fixed digest size
        with pytest.raises(ConfigError) as raised:
            async with contents_server(hash_algorithm=name):
                pass
        assert "[plugins.contents]" in str(raised.value) and "'hash_algorithm'" in str(raised.value)
        assert repr(name) in str(raised.value)
    async with contents_server(hash_algorithm="sha512") as server:
        model = await (await server.get("/api/contents/f.txt", params={"hash": "1"})).json()
        assert model["hash"] == hashlib.sha512(b"x").hexdigest() and model["hash_algorithm"] == "sha512"
