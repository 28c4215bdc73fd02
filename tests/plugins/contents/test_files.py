"""GET /files/{path} (raw bytes, streamed), /api/resolvePath, and the OpenAPI fragment."""

from __future__ import annotations

import json
import os


async def test_files_serves_raw_bytes_with_jupyter_servers_types(contents_server, root):
    (root / "d").mkdir()
    (root / "d" / "notes.txt").write_text("plain")
    (root / "d" / "page.html").write_text("<p>x</p>")
    (root / "d" / "nb.ipynb").write_text("{}")
    (root / "d" / "blob").write_bytes(b"\xff\xfe\x00binary")
    (root / "d" / "README").write_text("text without extension")
    (root / "d" / "a.tar.gz").write_bytes(b"\x1f\x8b")
    (root / "d" / "name with space.txt").write_text("spaced")
    async with contents_server() as server:
        expected = {"notes.txt": "text/plain; charset=UTF-8", "page.html": "text/html",
                    "nb.ipynb": "application/x-ipynb+json", "blob": "application/octet-stream",
                    "README": "text/plain; charset=UTF-8", "a.tar.gz": "application/gzip"}
        for name, content_type in expected.items():
            r = await server.get(f"/files/d/{name}")
            assert r.status == 200, name
            assert r.headers["Content-Type"].replace(" ", "").lower() == content_type.replace(" ", "").lower(), name
            assert await r.read() == (root / "d" / name).read_bytes()
            assert "Content-Disposition" not in r.headers
        r = await server.get("/files/d/name%20with%20space.txt", params={"download": "1"})
        assert r.headers["Content-Disposition"] == "attachment; filename*=utf-8''name%20with%20space.txt"
        assert await r.read() == b"spaced"
        r = await server.get("/files/d")
        assert r.status == 400 and "d is a directory" in (await r.json())["message"]
        r = await server.get("/files/d/missing.txt")
        assert r.status == 404 and "d/missing.txt" in (await r.json())["message"]


async def test_files_answers_each_request_once_and_closes_the_file(contents_server, root, caplog):
    """The file is opened (and checked) by the contents service and held open until the response has
    been sent; a response prepared by the handler and prepared again by aiohttp once reopened a closed
    /proc/self/fd path, logged an error per request and, under load, reset other connections."""
    import logging

    (root / "notes.txt").write_text("plain")
    caplog.set_level(logging.WARNING)
    fds_before = len(os.listdir("/proc/self/fd"))
    async with contents_server() as server:
        for _ in range(3):
            r = await server.get("/files/notes.txt")
            assert r.status == 200 and await r.read() == b"plain"
        r = await server.get("/files/notes.txt", headers={"Range": "bytes=1-2"})
        assert r.status == 206 and await r.read() == b"la"
        fds_after = len(os.listdir("/proc/self/fd"))
    problems = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert problems == []
    assert fds_after <= fds_before + 8  # the server's own sockets, not one open file per request


async def test_files_streams_a_large_file(contents_server, root):
    data = os.urandom(8 * 1024 * 1024)
    (root / "big.bin").write_bytes(data)
    async with contents_server() as server:
        async with server.client.get(server.url_for("/files/big.bin")) as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
            received = bytearray()
            async for piece in r.content.iter_chunked(1 << 16):
                received += piece
        assert bytes(received) == data


async def test_resolve_path(contents_server, root):
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_text("x")
    (root / ".h").write_text("x")
    async with contents_server() as server:
        body = await (await server.get("/api/resolvePath", params={"path": "d/f.txt"})).json()
        assert body == {"resolved": [{"scope": "server", "path": "d/f.txt"}]}
        body = await (await server.get("/api/resolvePath", params={"path": str(root / "d" / "f.txt")})).json()
        assert body == {"resolved": [{"scope": "server", "path": "d/f.txt"}]}
        for missing in ("d/none.txt", "/etc/passwd", "../root/d/f.txt", ".h"):
            body = await (await server.get("/api/resolvePath", params={"path": missing})).json()
            assert body == {"resolved": []}, missing
        r = await server.get("/api/resolvePath")
        assert r.status == 400
        body = await (await server.get("/api/resolvePath", params={"path": "d", "kernel": "no-such"})).json()
        assert body["resolved"] == [{"scope": "server", "path": "d"}]
        assert body["unresolved"][0]["scope"] == "kernel"


async def test_openapi_fragment_describes_every_route(contents_server):
    async with contents_server() as server:
        spec = json.loads(await (await server.get("/api/spec.yaml")).text())
        paths = spec["paths"]
        for path, methods in {
            "/api/contents/{path}": {"get", "put", "post", "patch", "delete"},
            "/api/contents/{path}/checkpoints": {"get", "post"},
            "/api/contents/{path}/checkpoints/{checkpoint_id}": {"post", "delete"},
            "/api/contents/{path}/trust": {"post"},
            "/files/{path}": {"get"},
            "/api/resolvePath": {"get"},
        }.items():
            assert methods <= set(paths[path]), path
        assert "Contents" in spec["components"]["schemas"] and "Checkpoint" in spec["components"]["schemas"]
        # every response the handlers give for a model has the schema's required fields
        model = await (await server.get("/api/contents")).json()
        assert set(spec["components"]["schemas"]["Contents"]["required"]) <= set(model)


async def test_the_spec_describes_json_files_as_any_json(contents_server, root):
    """/files/ serves .ipynb and .json with JSON media types (as jupyter_server does); the spec declared
    only `*/*` binary strings, so OpenAPI tools checked the parsed JSON bodies against `type: string`."""
    (root / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (root / "list.json").write_text("[1, 2]")
    async with contents_server() as server:
        spec = await (await server.get("/api/spec.yaml")).json(content_type=None)
        declared = spec["paths"]["/files/{path}"]["get"]["responses"]["200"]["content"]
        for name in ("nb.ipynb", "list.json"):
            r = await server.get(f"/files/{name}")
            assert r.status == 200
            assert declared.get(r.content_type) == {"schema": {}}, (name, r.content_type, declared)
