"""Reading a large file through the contents API: the content is streamed (the model is the same,
byte for byte where it matters), and files above `max_read_size_mb` are a 413 naming the file and
the limit (but still served by /files/)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from himalia_contents.reading import PIECE


def tricky_text(size: int) -> str:
    """Multi-byte characters (some across piece boundaries), quotes, backslashes, controls, emoji."""
    line = 'é"\\\t\x01🙂 ascii <b>&</b> \u2028 z\n'
    text = line * (size // len(line.encode()) + 1)
    return text


@pytest.mark.parametrize("size", [0, 10, PIECE - 1, PIECE + 1, 2 * PIECE + 5])
async def test_streamed_text_and_base64_are_exactly_the_content(contents_server, root, size):
    text = tricky_text(size)[:size // 3] if size else ""
    binary = os.urandom(size)
    (root / "t.txt").write_text(text, encoding="utf-8")
    (root / "b.bin").write_bytes(binary)
    async with contents_server() as server:
        r = await server.get("/api/contents/t.txt", params={"hash": "1"})
        assert r.status == 200
        model = json.loads(await r.read())
        assert model["content"] == text and model["format"] == "text" and model["mimetype"] == "text/plain"
        assert model["hash"] == hashlib.sha256(text.encode()).hexdigest() and model["size"] == len(text.encode())
        assert model["type"] == "file" and model["name"] == "t.txt" and model["writable"] is True
        r = await server.get("/api/contents/b.bin")
        model = json.loads(await r.read())
        if size:  # random bytes are never UTF-8 past a few
            assert model["format"] == "base64" and model["content"] == base64.encodebytes(binary).decode()
        r = await server.get("/api/contents/t.txt", params={"format": "base64"})
        assert json.loads(await r.read())["content"] == base64.encodebytes(text.encode()).decode()
        if size > 10:
            r = await server.get("/api/contents/b.bin", params={"format": "text"})
            assert r.status == 400 and "b.bin" in (await r.json())["message"]


async def test_a_file_over_max_read_size_is_413_naming_it_and_the_limit(contents_server, root):
    (root / "big.txt").write_bytes(b"x" * (1024 * 1024 + 1))
    (root / "big.ipynb").write_text(json.dumps({"cells": [], "metadata": {"pad": "y" * 1024 * 1024},
                                                "nbformat": 4, "nbformat_minor": 5}))
    (root / "small.txt").write_text("fine")
    async with contents_server(max_read_size_mb=1) as server:
        for path in ("big.txt", "big.ipynb", "big.txt?format=base64", "big.ipynb?type=file"):
            r = await server.get(f"/api/contents/{path}")
            assert r.status == 413, (path, await r.text())
            message = (await r.json())["message"]
            assert path.split("?")[0] in message and "max_read_size_mb" in message and "1 MB" in message
        r = await server.get("/api/contents/big.txt", params={"content": "0", "hash": "1"})
        assert r.status == 200 and (await r.json())["hash"] == hashlib.sha256(b"x" * (1024 * 1024 + 1)).hexdigest()
        assert (await server.get("/files/big.txt")).status == 200
        assert (await (await server.get("/api/contents/small.txt")).json())["content"] == "fine"


async def test_whole_reads_share_one_server_wide_budget(contents_server, root, monkeypatch):
    """`max_read_size_mb` bounds one read; notebooks are parsed whole, so many at once were unbounded.
    Four times the limit (here, once) may be in memory at once; a read that does not fit waits, then
    is a 503."""
    import asyncio
    import threading

    import himalia_contents.filesystem as filesystem
    from himalia_contents.notebooks import Notebooks

    monkeypatch.setattr(filesystem, "WHOLE_READ_WAIT", 0.5)
    monkeypatch.setattr(filesystem, "WHOLE_READ_FLOOR", 0)
    monkeypatch.setattr(filesystem, "WHOLE_READS_AT_ONCE", 1)
    pad = "y" * (700 * 1024)  # 0.7 MB each: one fits in the 1 MB budget, two do not
    for name in ("a.ipynb", "b.ipynb"):
        (root / name).write_text(json.dumps({"cells": [], "metadata": {"pad": pad}, "nbformat": 4,
                                             "nbformat_minor": 5}))
    entered, go_on = threading.Event(), threading.Event()
    real_read = Notebooks.read

    def held_read(self, raw, api_path, known=None):
        if api_path == "a.ipynb":  # the first read stays in progress until the test lets it go
            entered.set()
            go_on.wait(30)
        return real_read(self, raw, api_path, known)

    monkeypatch.setattr(Notebooks, "read", held_read)
    async with contents_server(max_read_size_mb=1) as server:
        first = asyncio.ensure_future(server.get("/api/contents/a.ipynb?type=notebook", timeout=60))
        try:
            assert await asyncio.to_thread(entered.wait, 30)
            r = await server.get("/api/contents/b.ipynb?type=notebook")
            assert r.status == 503, await r.text()
            message = (await r.json())["message"]
            assert "b.ipynb" in message and "max_read_size_mb" in message, message
        finally:
            go_on.set()
        assert (await first).status == 200
        assert (await server.get("/api/contents/b.ipynb?type=notebook")).status == 200
