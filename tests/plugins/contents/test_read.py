"""GET /api/contents: models for files, notebooks and directories, formats, hashes, paging, errors."""

from __future__ import annotations

import base64
import hashlib
import json

import nbformat

NOTEBOOK_V4_4 = {
    "cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "source": ["print(1)\n", "x = 2"],
               "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}]}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 4,
}
MODEL_KEYS = {"name", "path", "type", "format", "mimetype", "content", "created", "last_modified", "size",
              "writable", "hash", "hash_algorithm"}


async def test_text_file_model(contents_server, root):
    (root / "dir").mkdir()
    (root / "dir" / "hello.txt").write_text("héllo\nworld\n", encoding="utf-8")
    async with contents_server() as server:
        r = await server.get("/api/contents/dir/hello.txt")
        assert r.status == 200
        model = await r.json()
        assert set(model) == MODEL_KEYS
        assert model["name"] == "hello.txt" and model["path"] == "dir/hello.txt"
        assert (model["type"], model["format"], model["mimetype"]) == ("file", "text", "text/plain")
        assert model["content"] == "héllo\nworld\n"
        assert model["size"] == len("héllo\nworld\n".encode())
        assert model["writable"] is True
        assert model["hash"] is None and model["hash_algorithm"] is None
        assert model["last_modified"].endswith("Z") and r.headers["Last-Modified"] == model["last_modified"]


async def test_binary_file_falls_back_to_base64_and_refuses_text(contents_server, root):
    data = bytes(range(256)) * 4
    (root / "blob.bin").write_bytes(data)
    async with contents_server() as server:
        model = await (await server.get("/api/contents/blob.bin")).json()
        assert (model["format"], model["mimetype"]) == ("base64", "application/octet-stream")
        assert base64.b64decode(model["content"]) == data
        r = await server.get("/api/contents/blob.bin", params={"format": "text"})
        assert r.status == 400
        body = await r.json()
        assert "blob.bin" in body["message"] and "UTF-8" in body["message"]
        # a text file can be asked for as base64
        (root / "t.txt").write_text("abc")
        model = await (await server.get("/api/contents/t.txt", params={"format": "base64"})).json()
        assert model["format"] == "base64" and base64.b64decode(model["content"]) == b"abc"


async def test_hash_and_content_flags(contents_server, root):
    (root / "a.txt").write_bytes(b"some bytes")
    (root / "n.ipynb").write_text(json.dumps(NOTEBOOK_V4_4))
    async with contents_server() as server:
        model = await (await server.get("/api/contents/a.txt", params={"hash": "1", "content": "0"})).json()
        assert model["content"] is None and model["format"] is None
        assert model["hash"] == hashlib.sha256(b"some bytes").hexdigest() and model["hash_algorithm"] == "sha256"
        model = await (await server.get("/api/contents/n.ipynb", params={"hash": "1", "format": "json"})).json()
        assert model["hash"] == hashlib.sha256((root / "n.ipynb").read_bytes()).hexdigest()
        for query in ({"hash": "2"}, {"content": "yes"}, {"format": "xml"}, {"type": "socket"},
                      {"limit": "-1"}, {"offset": "x"}, {"format": "json"}):
            r = await server.get("/api/contents/a.txt", params=query)
            assert r.status == 400, query
            assert (await r.json())["message"]


async def test_directory_listing(contents_server, root):
    (root / "sub").mkdir()
    (root / "sub" / "n.ipynb").write_text(json.dumps(NOTEBOOK_V4_4))
    (root / "sub" / "f.py").write_text("x = 1\n")
    (root / "sub" / "inner").mkdir()
    (root / "sub" / "junk.pyc").write_bytes(b"\0")
    (root / "sub" / "__pycache__").mkdir()
    async with contents_server() as server:
        model = await (await server.get("/api/contents/sub")).json()
        assert (model["type"], model["format"], model["size"], model["mimetype"]) == ("directory", "json", None, None)
        children = {c["name"]: c for c in model["content"]}
        assert set(children) == {"n.ipynb", "f.py", "inner"}  # hide_globs leave out *.pyc and __pycache__
        assert children["n.ipynb"]["type"] == "notebook" and children["n.ipynb"]["mimetype"] is None
        assert children["f.py"]["type"] == "file" and children["f.py"]["mimetype"] == "text/x-python"
        assert children["inner"]["type"] == "directory" and children["inner"]["size"] is None
        assert all(c["content"] is None and c["format"] is None for c in children.values())
        assert all(set(c) == MODEL_KEYS for c in children.values())
        assert children["f.py"]["path"] == "sub/f.py"
        root_model = await (await server.get("/api/contents")).json()
        assert root_model["path"] == "" and [c["name"] for c in root_model["content"]] == ["sub"]
        assert (await (await server.get("/api/contents/")).json())["path"] == ""
        listing = await (await server.get("/api/contents/sub", params={"content": "0"})).json()
        assert listing["content"] is None


async def test_listing_limit_and_offset(contents_server, root):
    for i in range(10):
        (root / f"f{i}.txt").write_text(str(i))
    async with contents_server() as server:
        page = await (await server.get("/api/contents", params={"limit": "3", "offset": "4"})).json()
        assert [c["name"] for c in page["content"]] == ["f4.txt", "f5.txt", "f6.txt"]
        tail = await (await server.get("/api/contents", params={"offset": "8"})).json()
        assert [c["name"] for c in tail["content"]] == ["f8.txt", "f9.txt"]


async def test_type_mismatches_and_missing_paths(contents_server, root):
    (root / "d").mkdir()
    (root / "f.txt").write_text("x")
    async with contents_server() as server:
        r = await server.get("/api/contents/d", params={"type": "file"})
        assert r.status == 400 and "d is a directory, not a file" in (await r.json())["message"]
        r = await server.get("/api/contents/f.txt", params={"type": "directory"})
        assert r.status == 400 and "f.txt is not a directory" in (await r.json())["message"]
        r = await server.get("/api/contents/nope/missing.txt")
        assert r.status == 404
        body = await r.json()
        assert "nope/missing.txt" in body["message"] and body["reason"]
        r = await server.get("/api/contents/f.txt/below")
        assert r.status == 404


async def test_notebook_of_an_older_minor_version_reads_as_nbformat_does(contents_server, root):
    raw = json.dumps(NOTEBOOK_V4_4)
    (root / "old.ipynb").write_text(raw)
    async with contents_server() as server:
        model = await (await server.get("/api/contents/old.ipynb")).json()
        assert (model["type"], model["format"], model["mimetype"]) == ("notebook", "json", None)
        assert "message" not in model
        content = model["content"]
        expected = nbformat.reads(raw, as_version=4)
        for cell in content["cells"]:
            cell["metadata"].pop("trusted", None)
        assert content == expected
        assert content["cells"][0]["source"] == "print(1)\nx = 2"  # lines rejoined
        assert content["nbformat_minor"] == 4


async def test_nbformat3_notebook_is_upgraded(contents_server, root):
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "x"}, "worksheets": [
        {"cells": [{"cell_type": "code", "input": "1+1", "language": "python", "outputs": [], "metadata": {}}],
         "metadata": {}}]}
    (root / "v3.ipynb").write_text(json.dumps(v3))
    async with contents_server() as server:
        model = await (await server.get("/api/contents/v3.ipynb")).json()
        assert model["content"]["nbformat"] == 4 and model["content"]["cells"][0]["source"] == "1+1"


async def test_invalid_notebook_is_returned_with_a_message(contents_server, root):
    bad = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x"}], "metadata": {},
           "nbformat": 4, "nbformat_minor": 4}  # no outputs, no execution_count
    (root / "bad.ipynb").write_text(json.dumps(bad))
    (root / "broken.ipynb").write_text("{not json")
    async with contents_server() as server:
        r = await server.get("/api/contents/bad.ipynb")
        assert r.status == 200
        model = await r.json()
        assert model["message"].startswith("Notebook validation failed")
        assert model["content"]["cells"][0]["source"] == "x"
        r = await server.get("/api/contents/broken.ipynb")
        assert r.status == 400
        assert "broken.ipynb" in (await r.json())["message"]
        # as a plain file it still reads
        r = await server.get("/api/contents/broken.ipynb", params={"type": "file"})
        assert r.status == 200 and (await r.json())["content"] == "{not json"


async def test_a_plain_file_can_be_read_as_a_notebook(contents_server, root):
    (root / "nb.json").write_text(json.dumps(NOTEBOOK_V4_4))
    async with contents_server() as server:
        model = await (await server.get("/api/contents/nb.json", params={"type": "notebook"})).json()
        assert model["type"] == "notebook" and model["content"]["nbformat"] == 4


async def test_exists_and_kernel_path_through_the_service(contents_server, root):
    from himalia import SERVICES

    (root / "d").mkdir()
    (root / "d" / "nb.ipynb").write_text(json.dumps(NOTEBOOK_V4_4))
    (root / ".hidden").write_text("x")
    async with contents_server() as server:
        cm = server.app[SERVICES].contents
        assert await cm.exists("d/nb.ipynb") and await cm.exists("d") and await cm.exists("")
        assert not await cm.exists("d/none.ipynb")
        assert not await cm.exists(".hidden") and not await cm.exists("../etc")
        assert await cm.kernel_path("d/nb.ipynb") == "d"
        assert await cm.kernel_path("top.ipynb") == ""
        assert await cm.kernel_path("d") == "d"
