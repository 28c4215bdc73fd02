"""tests/examples/memory_contents: a plugin that replaces the contents provider with a dict.

Packaged as its own distribution, pip-installed (--target) and chosen with `[server] contents_provider =
"memory"`, it proves a provider swap works through entry points alone. Its own route, `GET
/api/memory/files/PATH`, reads through `app[SERVICES].contents`, whichever provider is active; the swap is
checked through the contents plugin's `/api/contents` routes too.
"""

from __future__ import annotations

import ast
import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from himalia import SERVICES, ContentsCapabilities, ContentsManager, Provider, contents_capabilities, hookimpl
from himalia.testing import ContentsKit, serve_process

TIMEOUT = 120
EXAMPLE = Path(__file__).resolve().parent / "memory_contents"
SEED = {"hello.txt": "hi", "notes/todo.txt": "write the docs"}
MEMORY = {"server": {"contents_provider": "memory"}, "plugins": {"memory": {"files": SEED}}}


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", TIMEOUT)
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


def request(method: str, url: str, headers: dict[str, str] | None = None, body: object = None) -> tuple[int, object]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={**(headers or {}),
                                                                          "Content-Type": "application/json"})
    try:
        with opener.open(req, timeout=TIMEOUT) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    return status, json.loads(raw) if raw else None


def test_example_imports_only_the_public_api():
    for path in (EXAMPLE / "himalia_memory").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("himalia"):
                assert node.module == "himalia", f"{path.name} imports {node.module}"


# --- in process: the provider's behaviour, through the service and the route ----------------------


@pytest.fixture
def memory_plugin(monkeypatch: pytest.MonkeyPatch):
    """The example's import package from its source directory (no dist-info there, so no entry point)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "himalia_memory", raising=False)
    monkeypatch.delitem(sys.modules, "himalia_memory.contents", raising=False)
    return importlib.import_module("himalia_memory")


async def test_memory_provider_is_the_contents_service(himalia_server, memory_plugin):
    async with himalia_server(plugins={"memory": memory_plugin}, config=MEMORY) as server:
        contents = server.app[SERVICES].contents
        assert type(contents).__name__ == "MemoryContents"
        assert isinstance(contents, ContentsManager)
        root = await contents.get("")
        assert [(m["name"], m["type"]) for m in root["content"]] == [("hello.txt", "file"), ("notes", "directory")]
        r = await server.get("/api/memory/files/notes/todo.txt")
        body = await r.json()
        assert (r.status, body["service"], body["model"]["content"]) == (200, "MemoryContents", "write the docs")
        r = await server.get("/api/memory/files/nope.txt")
        assert r.status == 404
        assert (await r.json())["message"] == "no such file or directory: nope.txt"


async def test_memory_provider_saves_reads_and_removes(himalia_server, memory_plugin):
    async with himalia_server(plugins={"memory": memory_plugin}, config=MEMORY) as server:
        c = server.app[SERVICES].contents
        await c.save("data.bin", {"type": "file", "format": "base64", "content": base64.b64encode(b"\0\1").decode()})
        assert (await c.get("data.bin"))["format"] == "base64"
        nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        saved = await c.save("notes/a.ipynb", {"type": "notebook", "content": nb})
        assert (saved["type"], saved["content"]) == ("notebook", None)
        assert (await c.get("notes/a.ipynb"))["content"] == nb
        assert json.loads((await c.get("notes/a.ipynb", type="file"))["content"]) == nb
        assert (await c.new_untitled("notes", ext=".ipynb"))["path"] == "notes/Untitled.ipynb"
        assert (await c.new_untitled("notes", ext=".ipynb"))["path"] == "notes/Untitled1.ipynb"
        assert (await c.copy("hello.txt", "notes"))["path"] == "notes/hello-Copy1.txt"
        assert (await c.rename("notes", "done"))["path"] == "done"
        assert await c.exists("done/todo.txt") and not await c.exists("notes/todo.txt")
        assert await c.kernel_path("done/a.ipynb") == "done"
        await c.create_checkpoint("hello.txt")
        await c.save("hello.txt", {"type": "file", "format": "text", "content": "changed"})
        await c.restore_checkpoint("hello.txt", "checkpoint")
        assert (await c.get("hello.txt"))["content"] == "hi"
        await c.delete("done")
        assert [m["name"] for m in (await c.get(""))["content"]] == ["data.bin", "hello.txt"]
        r = await server.get("/api/memory/files/done/todo.txt")
        assert r.status == 404


class TestMemoryContentsKit(ContentsKit):
    """The example passes the contents conformance kit, as a third-party provider would run it."""

    @pytest.fixture
    async def contents(self, himalia_server, memory_plugin):
        config = {"server": {"contents_provider": "memory"}}
        async with himalia_server(plugins={"memory": memory_plugin}, config=config) as server:
            yield server.app[SERVICES].contents


async def test_the_routes_use_what_the_provider_declares(himalia_server, memory_plugin):
    """The memory provider declares paging and nothing else: paging works, notebook trust is a 501 naming the
    capability, /files/ and /api/resolvePath fall back to `get` and `exists`; and hidden files are its
    own business (the filesystem provider's allow_hidden was applied to it: a PUT naming '.x' was a 400)."""
    async with himalia_server(plugins={"memory": memory_plugin}, config=MEMORY) as server:
        assert contents_capabilities(server.app[SERVICES].contents) == ContentsCapabilities(paging=True)
        page = await (await server.get("/api/contents", params={"limit": "1", "offset": "1"})).json()
        assert [m["name"] for m in page["content"]] == ["notes"]
        r = await server.post("/api/contents/hello.txt/trust")
        body = await r.json()
        assert (r.status, body["reason"]) == (501, "trust not supported")
        assert "'memory'" in body["message"] and "'trust'" in body["message"]
        r = await server.get("/files/notes/todo.txt")
        assert (r.status, await r.text()) == (200, "write the docs")
        body = await (await server.get("/api/resolvePath", params={"path": "notes/todo.txt"})).json()
        assert body == {"resolved": [{"scope": "server", "path": "notes/todo.txt"}]}
        r = await server.put("/api/contents/.dot.txt", json={"type": "file", "format": "text", "content": "x",
                                                              "path": ".elsewhere/.dot.txt"})
        assert r.status == 201, await r.text()
        assert (await (await server.get("/api/contents/.dot.txt")).json())["content"] == "x"
        r = await server.put("/api/contents/notes/new.ipynb", json={"type": "notebook"})  # no content: an empty one
        assert r.status == 201, await r.text()
        assert (await server.app[SERVICES].contents.get("notes/new.ipynb"))["content"]["cells"] == []


class Frozen:
    """A provider `frozen`: the memory one, declaring itself read-only and without checkpoints (set on the
    instance, as a provider whose capabilities depend on its config would)."""

    def __init__(self, memory_plugin):
        self.memory = memory_plugin

    @hookimpl
    def himalia_contents_providers(self):
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def frozen(app):
            async with self.memory.contents.memory_contents(app) as contents:
                contents.capabilities = ContentsCapabilities(read_only=True, checkpoints=False)
                yield contents

        return [Provider("frozen", frozen, "The memory provider, read-only")]


async def test_a_read_only_provider_without_checkpoints_is_refused_by_the_routes(himalia_server, memory_plugin):
    config = {"server": {"contents_provider": "frozen"}, "plugins": {"memory": {"files": SEED}}}
    plugins = {"memory": memory_plugin, "frozen": Frozen(memory_plugin)}
    async with himalia_server(plugins=plugins, config=config) as server:
        before = dict(server.app[SERVICES].contents.entries)
        file = {"type": "file", "format": "text", "content": "x"}
        for method, path, body in (("PUT", "hello.txt", file), ("PUT", "new.txt", file), ("PUT", "notes", None),
                                   ("POST", "notes", {"type": "file"}), ("POST", "", {"copy_from": "hello.txt"}),
                                   ("PATCH", "hello.txt", {"path": "moved.txt"}), ("DELETE", "hello.txt", None)):
            r = await server.request(method, f"/api/contents/{path}", json=body)
            refusal = await r.json()
            assert (r.status, refusal["reason"]) == (403, "read only"), (method, path, refusal)
            assert "'frozen' is read-only" in refusal["message"]
        for method, suffix in (("GET", "checkpoints"), ("POST", "checkpoints"), ("POST", "checkpoints/checkpoint"),
                               ("DELETE", "checkpoints/checkpoint")):
            r = await server.request(method, f"/api/contents/hello.txt/{suffix}")
            refusal = await r.json()
            assert (r.status, refusal["reason"]) == (501, "checkpoints not supported"), (method, suffix, refusal)
        assert server.app[SERVICES].contents.entries == before
        assert (await (await server.get("/api/contents/hello.txt")).json())["content"] == "hi"


class Shout:
    """Another plugin's pre-save hook: the memory provider must run it, as every contents provider must."""

    @hookimpl
    def himalia_contents_pre_save(self, path, model):
        model["content"] = model["content"].upper()


async def test_memory_provider_runs_the_save_hooks(himalia_server, memory_plugin):
    async with himalia_server(plugins={"memory": memory_plugin, "shout": Shout()}, config=MEMORY) as server:
        await server.app[SERVICES].contents.save("x.txt", {"type": "file", "format": "text", "content": "quiet"})
        r = await server.get("/api/memory/files/x.txt")
        assert (await r.json())["model"]["content"] == "QUIET"


# --- installed: the real entry point, a real `himalia serve` -----------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example distribution, pip-installed into a directory of its own."""
    build = tmp_path_factory.mktemp("build") / "memory_contents"
    shutil.copytree(EXAMPLE, build, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    result = run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                  "--disable-pip-version-check", "-q", "--target", str(target), str(build)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "himalia.toml"
    path.write_text('[server]\ncontents_provider = "memory"\n\n[plugins.memory]\n'
                    'files = { "hello.txt" = "hi", "notes/todo.txt" = "write the docs" }\n')
    return path


def plugins_json(site: Path, *args: str) -> dict[str, dict]:
    result = run([sys.executable, "-m", "himalia.cli", "plugins", "--json", *args],
                 env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}


def test_installed_provider_is_listed_and_active(site: Path, config_file: Path):
    rows = plugins_json(site, "--config", str(config_file))
    memory = rows["memory"]
    assert (memory["distribution"], memory["error"]) == ("himalia-memory-contents", None)
    assert memory["providers"] == ["contents:memory"]
    assert memory["active"] == ["contents:memory"]
    assert all("contents:memory" not in r["active"] for name, r in rows.items() if name != "memory")


def test_served_contents_come_from_memory_not_disk(site: Path, config_file: Path, tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "on-disk.txt").write_text("a real file")
    env = {**os.environ, "PYTHONPATH": str(site)}
    with serve_process("--config", str(config_file), "--root-dir", str(root), env=env) as server:
        status, body = request("GET", server.url_for("/api/memory/files/"), server.auth_headers)
        assert (status, body["service"]) == (200, "MemoryContents")
        assert [m["name"] for m in body["model"]["content"]] == ["hello.txt", "notes"]
        status, body = request("GET", server.url_for("/api/memory/files/notes/todo.txt"), server.auth_headers)
        assert body["model"]["content"] == "write the docs"
        status, _ = request("GET", server.url_for("/api/memory/files/"))
        assert status == 401
    assert server.process.returncode == 0


def test_an_unknown_provider_name_lists_the_installed_ones(site: Path, tmp_path: Path):
    config = tmp_path / "himalia.toml"
    config.write_text('[server]\ncontents_provider = "nosuch"\n')
    result = run([sys.executable, "-m", "himalia.cli", "serve", "--port", "0", "--config", str(config)],
                 env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("himalia: unknown contents provider 'nosuch'; installed: ")
    assert "memory" in line.rpartition("installed: ")[2].split(", ")


def test_contents_routes_use_the_memory_provider(site: Path, config_file: Path, tmp_path: Path):
    # the contents plugin must serve /api/contents: without it this test would prove nothing
    assert "himalia_routes" in plugins_json(site)["contents"]["hooks"]
    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    with serve_process("--config", str(config_file), "--root-dir", str(root), env=env) as server:
        h = server.auth_headers
        status, listing = request("GET", server.url_for("/api/contents"), h)
        assert status == 200
        assert sorted(m["name"] for m in listing["content"]) == ["hello.txt", "notes"]
        status, saved = request("PUT", server.url_for("/api/contents/new.txt"), h,
                                {"type": "file", "format": "text", "content": "made over HTTP"})
        assert status in (200, 201), saved
        status, body = request("GET", server.url_for("/api/memory/files/new.txt"), h)
        assert body["model"]["content"] == "made over HTTP"
        status, model = request("GET", server.url_for("/api/contents/notes/todo.txt"), h)
        assert model["content"] == "write the docs"
    assert not (root / "new.txt").exists()
