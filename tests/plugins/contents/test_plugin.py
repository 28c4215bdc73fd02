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


async def test_the_server_root_is_the_contents_root(himalia_server, root, tmp_path):
    """One root: `[server] root_dir` is what the contents API serves; the old `[plugins.contents] root_dir`
    (which could differ from the root local kernels start under) is a config error saying where it went."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "there.txt").write_text("here")
    (root / "server_root.txt").write_text("x")
    async with himalia_server(root_dir=elsewhere) as server:
        assert isinstance(server.app[SERVICES].contents, ContentsManager)
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == ["there.txt"]
    with pytest.raises(ConfigError) as raised:
        async with himalia_server(config={"plugins": {"contents": {"root_dir": str(elsewhere)}}}):
            pass
    assert "[plugins.contents] 'root_dir' has moved to [server] root_dir" in str(raised.value)


async def test_kernel_path_answers_relative_to_the_server_root(himalia_server, root):
    """The API directory a kernel for a nested notebook runs in, from the contents provider: the kernel side
    resolves it against the same `[server] root_dir` (tests/plugins/kernels checks the kernel's cwd)."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "nb.ipynb").write_text("{}")
    async with himalia_server() as server:
        contents = server.app[SERVICES].contents
        assert await contents.kernel_path("a/b/nb.ipynb") == "a/b"
        assert await contents.kernel_path("a/b") == "a/b"
        assert await contents.kernel_path("a") == "a"
        assert await contents.kernel_path("") == ""
        assert (root / await contents.kernel_path("a/b/nb.ipynb")).resolve() == (root / "a" / "b").resolve()


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


def test_capabilities_are_read_from_the_declaration_only():
    """Declared, never probed: a provider with an `open_local_file` method but no declaration gets the
    defaults, and a declaration of the wrong type is an error naming the class."""
    from himalia import ContentsCapabilities, contents_capabilities
    from himalia_contents.filesystem import FileContents

    class Undeclared:
        async def open_local_file(self, path):
            raise AssertionError("never called")

    class Wrong:
        capabilities = {"paging": True}

    assert contents_capabilities(Undeclared()) == ContentsCapabilities()
    assert contents_capabilities(FileContents.__new__(FileContents)) == ContentsCapabilities(
        paging=True, trust=True, streaming=True, local_files=True, resolve_path=True)
    with pytest.raises(TypeError, match="Wrong.capabilities must be a himalia.ContentsCapabilities, got dict"):
        contents_capabilities(Wrong())
