"""Any name the filesystem takes works through the API: names with a newline (listed, so reachable),
and names up to 255 bytes, whose temp files, partial uploads and checkpoints must fit in 255 bytes too."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def url(path: str) -> str:
    return quote(path)


async def test_a_name_with_a_newline_is_reachable(contents_server, root):
    (root / "dir\nname").mkdir()
    (root / "dir\nname" / "a\nb.txt").write_text("first")
    async with contents_server() as server:
        listing = await (await server.get("/api/contents")).json()
        assert [m["path"] for m in listing["content"]] == ["dir\nname"]
        inner = await server.get("/api/contents/" + url("dir\nname"))
        assert inner.status == 200 and [m["name"] for m in (await inner.json())["content"]] == ["a\nb.txt"]
        path = url("dir\nname/a\nb.txt")
        r = await server.get(f"/api/contents/{path}")
        assert r.status == 200 and (await r.json())["content"] == "first", await r.text()
        r = await server.get(f"/files/{path}")
        assert r.status == 200 and await r.text() == "first"
        r = await server.put(f"/api/contents/{path}", json={"type": "file", "format": "text", "content": "second"})
        assert r.status == 200, await r.text()
        r = await server.post(f"/api/contents/{path}/checkpoints")
        assert r.status == 201, await r.text()
        assert (await (await server.get(f"/api/contents/{path}/checkpoints")).json())[0]["id"] == "checkpoint"
        r = await server.patch(f"/api/contents/{path}", json={"path": "dir\nname/c\nd.txt"})
        assert r.status == 200 and (await r.json())["path"] == "dir\nname/c\nd.txt", await r.text()
        r = await server.delete("/api/contents/" + url("dir\nname/c\nd.txt"))
        assert r.status == 204
    assert not (root / "dir\nname" / "c\nd.txt").exists()


NAME_LENGTHS = [222, 223, 233, 234, 240, 245, 250, 253, 255]


def long_name(length: int, ext: str) -> str:
    """A name of exactly `length` bytes (UTF-8), with multi-byte characters and the extension `ext`."""
    stem = "é" * ((length - len(ext)) // 2) + "x" * ((length - len(ext)) % 2)
    name = stem + ext
    assert len(name.encode()) == length
    return name


@pytest.mark.parametrize("length", NAME_LENGTHS)
async def test_long_names_save_and_checkpoint(contents_server, root, length):
    """Saves failed from 234 bytes and checkpoints from about 223: `.<name>.XXXXXXXX.himalia-tmp` and
    `.<name>-checkpoint.ipynb...` overflowed 255 bytes (ENAMETOOLONG)."""
    text, notebook = long_name(length, ".txt"), long_name(length, ".ipynb")
    async with contents_server() as server:
        for _ in range(2):  # create, then overwrite (through a temp file)
            r = await server.put(f"/api/contents/{url(text)}", json={"type": "file", "format": "text", "content": "t"})
            assert r.status in (200, 201), await r.text()
            r = await server.put(f"/api/contents/{url(notebook)}", json={"type": "notebook", "content": NOTEBOOK})
            assert r.status in (200, 201), await r.text()
        for name in (text, notebook):
            r = await server.post(f"/api/contents/{url(name)}/checkpoints")
            assert r.status == 201, await r.text()
        (root / text).write_text("changed")
        r = await server.post(f"/api/contents/{url(text)}/checkpoints/checkpoint")
        assert r.status == 204, await r.text()
        assert (root / text).read_text() == "t"
        assert [m["id"] for m in await (await server.get(f"/api/contents/{url(notebook)}/checkpoints")).json()] \
            == ["checkpoint"]
        (root / "sub").mkdir()
        r = await server.post("/api/contents/sub", json={"copy_from": text})
        assert r.status == 201, await r.text()
        r = await server.patch(f"/api/contents/{url(text)}", json={"path": f"sub/{long_name(length, '.md')}"})
        assert r.status == 200, await r.text()
        r = await server.delete(f"/api/contents/{url(notebook)}")
        assert r.status == 204, await r.text()
    assert sorted(p.name for p in (root / ".ipynb_checkpoints").iterdir()) == []


@pytest.mark.parametrize("length", [240, 255])
async def test_long_names_upload_in_chunks_and_copy_as_directories(contents_server, root, length):
    name = long_name(length, ".bin")
    async with contents_server() as server:
        for chunk, piece in ((1, b"a" * 10), (2, b"b" * 10), (-1, b"c")):
            r = await server.put(f"/api/contents/{url(name)}", json={
                "type": "file", "format": "base64", "chunk": chunk, "content": base64.b64encode(piece).decode()})
            assert r.status in (200, 201), await r.text()
        assert (root / name).read_bytes() == b"a" * 10 + b"b" * 10 + b"c"
        folder = long_name(length, "")
        (root / folder).mkdir()
        (root / folder / "f.txt").write_text("f")
        (root / "into").mkdir()
        r = await server.post("/api/contents/into", json={"copy_from": folder})
        assert r.status == 201, await r.text()
        assert (root / "into" / folder / "f.txt").read_text() == "f"
