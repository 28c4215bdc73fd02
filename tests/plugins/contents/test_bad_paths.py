"""Every string a client sends that names a file is checked where it enters: NUL and lone surrogates
(which no filesystem name can hold as sent) are a 400 naming the field, never a 500, and nothing
moves before the check. Files on disk that no JSON parser can walk are a 400 too."""

from __future__ import annotations

import json

import pytest

BAD = ["a\x00b.txt", "a\ud800b.txt", "a\udcffb.txt", "\udfff"]


def names(root) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.parametrize("bad", BAD)
async def test_a_rename_to_a_bad_path_is_400_and_moves_nothing(contents_server, root, bad):
    """One rename to '\\udcff' moved the file to a name no URL reaches, then answered 500."""
    (root / "f.txt").write_text("x")
    async with contents_server() as server:
        r = await server.patch("/api/contents/f.txt", json={"path": bad})
        assert r.status == 400, await r.text()
        assert "'path'" in (await r.json())["message"]
    assert names(root) == ["f.txt"]


@pytest.mark.parametrize("bad", BAD)
async def test_a_copy_from_a_bad_path_is_400(contents_server, root, bad):
    (root / "f.txt").write_text("x")
    async with contents_server() as server:
        for url in ("/api/contents", "/api/contents/sub"):
            r = await server.post(url, json={"copy_from": bad})
            assert r.status == 400, await r.text()
            assert "'copy_from'" in (await r.json())["message"]
    assert names(root) == ["f.txt"]


@pytest.mark.parametrize("bad", BAD)
async def test_other_body_and_query_paths_are_400(contents_server, root, bad):
    async with contents_server() as server:
        r = await server.put("/api/contents/new.txt", json={"type": "file", "format": "text", "content": "x",
                                                           "path": bad})
        assert r.status == 400 and "'path'" in (await r.json())["message"], await r.text()
        r = await server.post("/api/contents", json={"type": "file", "ext": bad})
        assert r.status == 400 and "'ext'" in (await r.json())["message"], await r.text()
        if "\x00" in bad:  # a URL's query cannot carry a lone surrogate (it is not UTF-8)
            for path in (bad, "/" + bad, "/tmp/" + bad):
                r = await server.get("/api/resolvePath", params={"path": path})
                assert r.status == 400 and "'path'" in (await r.json())["message"], await r.text()
    assert names(root) == []


async def test_an_ext_cannot_name_another_directory(contents_server, root):
    (root / "untitled").mkdir()
    async with contents_server() as server:
        r = await server.post("/api/contents", json={"type": "file", "ext": "/inside.txt"})
        assert r.status == 400 and "'ext'" in (await r.json())["message"], await r.text()
    assert list((root / "untitled").iterdir()) == []


def nested(depth: int) -> str:
    return ('{"cells": [], "metadata": {"deep": ' + "[" * depth + "]" * depth
            + '}, "nbformat": 4, "nbformat_minor": 5}')


@pytest.mark.parametrize("depth", [100_000, 5_000, 975, 960, 940])
async def test_a_notebook_nested_too_deeply_is_400_on_get_and_trust(contents_server, root, depth):
    """jupyter_server answers 400; this was a RecursionError and a 500 (at a few depths under the
    parser's limit, only when the model was sent back)."""
    (root / "deep.ipynb").write_text(nested(depth))
    async with contents_server() as server:
        for method, path in (("GET", "/api/contents/deep.ipynb"), ("POST", "/api/contents/deep.ipynb/trust"),
                             ("GET", "/api/contents/deep.ipynb?hash=1")):
            r = await server.request(method, path)
            if r.status in (200, 201):
                if method == "GET":
                    assert json.loads(await r.text())["content"]["metadata"]["deep"]
            else:
                assert r.status == 400, (method, depth, await r.text())
                assert "deep.ipynb" in (await r.json())["message"]


async def test_a_name_on_disk_that_is_not_utf8_is_not_listed(contents_server, root):
    """Listed, it was a lone surrogate in JSON that no client can send back: listed but unreachable."""
    import os

    (root / "plain.txt").write_text("x")
    with open(os.path.join(os.fsencode(root), b"caf\xff.txt"), "wb") as f:
        f.write(b"y")
    async with contents_server() as server:
        listing = await (await server.get("/api/contents")).json()
        assert [m["name"] for m in listing["content"]] == ["plain.txt"]
