"""Bad input, each with its expected status and message: malformed JSON, wrong types, bodies over
`[server] max_body_size`, undecodable and escaping paths on every route that takes a path, unknown
ids, malformed websocket frames and frames for channels that do not exist. Nothing outside the root
is read or written, and nothing half-made is left inside it."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from pathlib import Path
from urllib.parse import quote

import aiohttp
import psutil
import pytest
from yarl import URL

from himalia import Route, hookimpl

from reliability_kit import encode_v1, header, kernel_pids, open_kernel_socket

SECRET = "secret outside the root\n"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def raw(server, path: str) -> URL:
    """The URL exactly as written: no client-side normalisation of `..` or percent-escapes."""
    return URL(server.url.rstrip("/") + path, encoded=True)


async def send(server, method: str, path: str, *, body: bytes | None = None, json_body=None,
               headers: dict | None = None, auth: bool = True) -> tuple[int, dict, str]:
    """(status, parsed JSON body or {}, text) of one request sent with the URL untouched."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
    hdrs = {**(server.auth_headers if auth else {}), **(headers or {})}
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession() as client:
        async with client.request(method, raw(server, path), data=body, headers=hdrs) as r:
            text = await r.text(errors="replace")
            try:
                parsed = json.loads(text) if text else {}
            except ValueError:
                parsed = {}
            return r.status, parsed if isinstance(parsed, dict) else {"_": parsed}, text


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() and not p.is_symlink() else b"<dir>"
            for p in sorted(directory.rglob("*"))}


@pytest.fixture
def tree(tmp_path):
    """root/ with known files and a link out; outside/ holding a secret next to it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(exist_ok=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "notes.txt").write_text("notes\n")
    (root / "dir").mkdir()
    (root / "nb.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (root / "link-out").symlink_to(outside)
    return root, outside


# --- malformed JSON and wrong types ------------------------------------------------------------

MALFORMED = [b"{", b'{"path": ', b"[1, 2]", b"null", b'"a string"', b"\xff\xfe{}", b"{'single': 'quotes'}"]
BODY_ROUTES = [("POST", "/api/sessions"), ("PATCH", f"/api/sessions/{UNKNOWN}"), ("POST", "/api/kernels"),
               ("PUT", "/api/contents/new.txt"), ("POST", "/api/contents"), ("PATCH", "/api/contents/notes.txt")]


async def test_malformed_json_is_400_naming_the_problem(himalia_server, tree):
    root, _ = tree
    before = snapshot(root)
    async with himalia_server() as server:
        for method, path in BODY_ROUTES:
            for body in MALFORMED:
                status, answer, text = await send(server, method, path, body=body)
                assert status == 400, f"{method} {path} {body!r}: {status} {text}"
                assert answer["reason"] == "malformed json", (method, path, body, answer)
                assert ("not valid JSON" in answer["message"] or "must be a JSON object" in answer["message"]), \
                    answer
        assert (await (await server.get("/api/kernels")).json()) == []
    assert snapshot(root) == before


DEEP = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
"""Valid JSON nested deeper than the decoder's recursion limit: it raises RecursionError, not ValueError."""


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/sessions"),
    ("PATCH", f"/api/sessions/{UNKNOWN}"),
    ("POST", "/api/kernels"),
    ("PUT", "/api/contents/new.txt"),
    ("POST", "/api/contents"),
    ("PATCH", "/api/contents/notes.txt"),
])
async def test_json_nested_too_deeply_is_400_not_500(himalia_server, tree, method, path):
    """Was a 500 on every route reading a body (fixed in himalia.read_json, and in the contents plugin's
    own parser)."""
    async with himalia_server() as server:
        status, answer, text = await send(server, method, path, body=DEEP)
        assert status == 400, f"{method} {path}: {status} {text[:200]}"
        assert answer["reason"] == "malformed json"


async def test_permissions_nested_too_deeply_is_400_not_500(himalia_server):
    """Was a 500 (auth's handler caught ValueError only); fixed in f3c1962."""
    async with himalia_server() as server:
        status, answer, text = await send(server, "GET", "/api/me?permissions=" + "[" * 2000 + "]" * 2000)
        assert status == 400, f"{status} {text[:200]}"


WRONG_TYPES = [
    ("POST", "/api/kernels", {"name": 5}, "'name' must be a string"),
    ("POST", "/api/kernels", {"path": ["a"]}, "'path' must be a string"),
    ("POST", "/api/kernels", {"env": {"A": 1}}, "'env' must be an object of string values"),
    ("POST", "/api/kernels", {"env": "A=1"}, "'env' must be an object of string values"),
    ("POST", "/api/sessions", {}, "missing field"),
    ("POST", "/api/sessions", {"path": 5, "type": "notebook"}, "'path' must be a string"),
    ("POST", "/api/sessions", {"path": "a.ipynb", "type": None}, "'type' must be a string"),
    ("POST", "/api/sessions", {"path": "a.ipynb", "type": "notebook", "kernel": "python3"},
     "'kernel' must be an object"),
    ("POST", "/api/sessions", {"path": "a.ipynb", "type": "notebook", "kernel": {"name": 3}},
     "'kernel.name' must be a string"),
    ("PUT", "/api/contents/new.txt", {"type": "file", "format": "text", "content": 5}, "new.txt"),
    ("PUT", "/api/contents/new.txt", {"type": "bogus", "format": "text", "content": "x"}, "new.txt"),
    ("PUT", "/api/contents/new.txt", {"type": "file", "format": "yaml", "content": "x"}, "new.txt"),
    ("PUT", "/api/contents/new.txt", {"type": "file", "format": "text", "content": "x", "chunk": "1"}, "chunk"),
    ("PUT", "/api/contents/new.txt", {"type": "file", "format": "text", "content": "x", "chunk": 0}, "chunk"),
    ("PUT", "/api/contents/new.ipynb", {"type": "notebook", "format": "json", "content": "not a notebook"},
     "new.ipynb"),
    ("PUT", "/api/contents/new.ipynb", {"type": "notebook", "format": "json", "content": {"cells": 5}}, "new.ipynb"),
    ("POST", "/api/contents", {"type": 5}, "type"),
    ("POST", "/api/contents", {"type": "file", "ext": 7}, "ext"),
    ("POST", "/api/contents", {"copy_from": 7}, "copy_from"),
    ("PATCH", "/api/contents/notes.txt", {"path": 5}, "path must be a string"),
    ("GET", "/api/contents?content=2", None, "content argument '2' is invalid"),
    ("GET", "/api/contents?limit=-1", None, "limit must be a non-negative integer"),
    ("GET", "/api/contents/notes.txt?format=json&type=file", None, "format 'json'"),
    ("GET", "/api/me?permissions=%7Bnot-json", None, "'permissions' must be JSON"),
    ("GET", "/api/me?permissions=%5B%5D", None, "'permissions' must map"),
    ("GET", "/api/resolvePath", None, "missing query argument 'path'"),
]


@pytest.mark.parametrize("method,path,body,words", WRONG_TYPES,
                         ids=[f"{m} {p} {json.dumps(b)}"[:80] for m, p, b, _ in WRONG_TYPES])
async def test_wrong_types_are_400_naming_the_field(himalia_server, tree, method, path, body, words):
    root, _ = tree
    before = snapshot(root)
    async with himalia_server() as server:
        status, answer, text = await send(server, method, path, json_body=body)
        assert status == 400, f"{status} {text}"
        assert set(answer) == {"message", "reason"} and answer["reason"], answer
        assert words in answer["message"], answer
        assert (await (await server.get("/api/kernels")).json()) == []
    assert snapshot(root) == before


@pytest.mark.parametrize("env", [{"A": "x\x00y"}, {"A\x00": "x"}, {"A=B": "x"}, {"A": "\ud800"}],
                         ids=["NUL in value", "NUL in name", "= in name", "lone surrogate"])
async def test_kernel_env_the_os_cannot_take_is_400(himalia_server, env):
    """Found by the fuzzer (ST101 on POST /api/kernels): was a 500 'kernel failed to start'; fixed in f3c1962."""
    async with himalia_server() as server:
        status, answer, text = await send(server, "POST", "/api/kernels", body=json.dumps({"env": env}).encode())
        assert status == 400, f"{status} {text[:200]}"
        assert "env" in answer["message"]
        assert (await (await server.get("/api/kernels")).json()) == []


# --- bodies over max_body_size -----------------------------------------------------------------

LIMIT = 4096


async def test_bodies_over_max_body_size_are_413_and_change_nothing(himalia_server, tree):
    root, _ = tree
    before = snapshot(root)
    padding = "x" * (2 * LIMIT)
    big = {
        ("PUT", "/api/contents/big.txt"): {"type": "file", "format": "text", "content": padding},
        ("PUT", "/api/contents/notes.txt"): {"type": "file", "format": "text", "content": padding},
        ("POST", "/api/contents"): {"type": "file", "ext": padding},
        ("PATCH", "/api/contents/notes.txt"): {"path": padding},
        ("POST", "/api/sessions"): {"path": padding, "type": "notebook"},
        ("PATCH", f"/api/sessions/{UNKNOWN}"): {"path": padding},
        ("POST", "/api/kernels"): {"name": "python3", "env": {"PAD": padding}},
    }
    async with himalia_server(config={"server": {"max_body_size": LIMIT}}) as server:
        spec = await (await server.get("/api/spec.yaml")).json(content_type=None)
        for (method, path), body in big.items():
            status, answer, text = await send(server, method, path, json_body=body)
            assert status == 413, f"{method} {path}: {status} {text}"
            assert answer["message"] == f"request body is larger than the server's max_body_size ({LIMIT} bytes)"
            template = (path.replace("notes.txt", "{path}").replace("big.txt", "{path}")
                        .replace(UNKNOWN, "{session_id}"))
            responses = spec["paths"][template][method.lower()]["responses"]
            assert "413" in responses, f"{method} {template}: 413 undocumented"
        # just under the limit is fine
        status, _, text = await send(server, "PUT", "/api/contents/small.txt",
                                     json_body={"type": "file", "format": "text", "content": "y" * (LIMIT - 200)})
        assert status == 201, text
        assert (await (await server.get("/api/kernels")).json()) == []
    after = snapshot(root)
    assert after.pop("small.txt") == b"y" * (LIMIT - 200)
    assert after == before


async def raw_exchange(server, head: str, timeout: float = 30.0) -> str:
    """Send request headers (no body) on a fresh connection; the status line and headers answered."""
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(head.encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)).decode()
    finally:
        writer.transport.abort()


async def test_a_declared_oversized_body_is_refused_before_it_is_sent(himalia_server, tree):
    """A client announcing 10 GB used to wait, unanswered, while the server read up to max_body_size
    (512 MB by default) into memory; now the headers alone get the 413 (fixed in the core)."""
    async with himalia_server(config={"server": {"max_body_size": LIMIT}}) as server:
        for auth, expected in ((f"Authorization: token {server.token}\r\n", "413"), ("", "401")):
            answer = await raw_exchange(server, "PUT /api/contents/huge.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
                                        + "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
            assert answer.split()[1] == expected, answer
        assert (await server.get("/api/status")).status == 200
    assert not (tree[0] / "huge.txt").exists()


async def test_a_compressed_body_counts_by_its_decompressed_size(himalia_server, tree):
    import gzip

    bomb = gzip.compress(json.dumps({"type": "file", "format": "text", "content": "0" * (64 * LIMIT)}).encode())
    assert len(bomb) < LIMIT
    async with himalia_server(config={"server": {"max_body_size": LIMIT}}) as server:
        status, answer, text = await send(server, "PUT", "/api/contents/bomb.txt", body=bomb,
                                          headers={"Content-Encoding": "gzip"})
        assert status == 413, f"{status} {text[:200]}"
    assert not (tree[0] / "bomb.txt").exists()


# --- paths: undecodable, and every way out of the root on every route that takes one ----------

ESCAPES = [
    "../outside/secret.txt",
    "%2e%2e/outside/secret.txt",
    "%2E%2E%2Foutside%2Fsecret.txt",
    "dir/..%2f..%2foutside/secret.txt",
    "dir%2f%2e%2e%2f%2e%2e%2foutside%2fsecret.txt",
    "link-out/secret.txt",
    "link-out",
    "{abs}",
    "%2F{abs}",
    "dir/../../outside/secret.txt",
]

PATH_ROUTES = [
    ("GET", "/api/contents/{p}", None),
    ("PUT", "/api/contents/{p}", {"type": "file", "format": "text", "content": "pwned"}),
    ("POST", "/api/contents/{p}", {}),
    ("PATCH", "/api/contents/{p}", {"path": "renamed.txt"}),
    ("DELETE", "/api/contents/{p}", None),
    ("GET", "/api/contents/{p}/checkpoints", None),
    ("POST", "/api/contents/{p}/checkpoints", None),
    ("POST", "/api/contents/{p}/checkpoints/checkpoint", None),
    ("DELETE", "/api/contents/{p}/checkpoints/checkpoint", None),
    ("POST", "/api/contents/{p}/trust", None),
    ("GET", "/files/{p}", None),
    ("GET", "/files/{p}?download=1", None),
]

BODY_PATH_ROUTES = [
    ("PATCH", "/api/contents/notes.txt", lambda p: {"path": p}),
    ("POST", "/api/contents", lambda p: {"copy_from": p}),
    ("POST", "/api/contents/dir", lambda p: {"copy_from": p}),
    ("PUT", "/api/contents/copy.txt", lambda p: {"copy_from": p}),
]
KERNEL_PATH_ROUTES = [
    ("POST", "/api/sessions", lambda p: {"path": p, "type": "notebook", "name": "x"}),
    ("POST", "/api/kernels", lambda p: {"path": p}),
]
"""A session's path is a label (jupyter_server keeps it as given), so these may start a kernel; what
must hold is that the kernel's working directory is inside the root."""


def escapes(outside: Path) -> list[str]:
    abs_secret = str(outside / "secret.txt")
    return [e.replace("{abs}", abs_secret.lstrip("/") if e.startswith("%2F") else "/" + abs_secret.lstrip("/"))
            for e in ESCAPES]


async def test_no_route_reaches_outside_the_root(himalia_server, tree):
    root, outside = tree
    before_root, before_outside = snapshot(root), snapshot(outside)
    refused: list[tuple[str, str, int, str]] = []
    async with himalia_server(config={"plugins": {"contents": {"delete_to_trash": False}}}) as server:
        for method, template, body in PATH_ROUTES:
            for escape in escapes(outside):
                path = template.replace("{p}", escape)
                status, answer, text = await send(server, method, path,
                                                  json_body=body if body is not None else None)
                assert status in (400, 403, 404), f"{method} {path}: {status} {text[:300]}"
                assert answer.get("message") and "reason" in answer, f"{method} {path}: {text[:300]}"
                assert "secret outside" not in text
                refused.append((method, path, status, answer["reason"]))
        for method, path, make in BODY_PATH_ROUTES:
            for escape in escapes(outside):
                escape = escape.replace("%2F", "/").replace("%2f", "/").replace("%2e", ".").replace("%2E", ".")
                status, answer, text = await send(server, method, path, json_body=make(escape))
                assert status in (400, 403, 404), f"{method} {path} {escape}: {status} {text[:300]}"
                assert "secret outside" not in text
        for method, path, make in KERNEL_PATH_ROUTES:
            for escape in escapes(outside):
                escape = escape.replace("%2F", "/").replace("%2f", "/").replace("%2e", ".").replace("%2E", ".")
                status, answer, text = await send(server, method, path, json_body=make(escape))
                if status in (400, 403, 404):
                    continue
                assert status == 201, f"{method} {path} {escape}: {status} {text[:300]}"
                kernel_id = answer["kernel"]["id"] if "kernel" in answer else answer["id"]
                try:
                    cwds = {psutil.Process(pid).cwd() for pid in kernel_pids(kernel_id)}
                    assert cwds and all(Path(c).is_relative_to(root.resolve()) for c in cwds), \
                        f"{method} {path} {escape}: kernel runs in {cwds}"
                finally:
                    if "kernel" in answer:
                        await send(server, "DELETE", f"/api/sessions/{answer['id']}")
                    else:
                        await send(server, "DELETE", f"/api/kernels/{kernel_id}")
        # a session moved to an escaping path, with a new kernel: that kernel also runs inside the root
        r = await server.post("/api/sessions", json={"path": "s.ipynb", "type": "notebook"})
        session = await r.json()
        try:
            for escape in ("../outside/x.ipynb", "link-out/x.ipynb", str(outside / "x.ipynb")):
                status, answer, text = await send(server, "PATCH", f"/api/sessions/{session['id']}",
                                                  json_body={"path": escape, "kernel": {"name": "python3"}})
                if status in (400, 403, 404):
                    continue
                assert status == 200, f"PATCH session {escape}: {status} {text[:300]}"
                cwds = {psutil.Process(pid).cwd() for pid in kernel_pids(answer["kernel"]["id"])}
                assert cwds and all(Path(c).is_relative_to(root.resolve()) for c in cwds), (escape, cwds)
        finally:
            await send(server, "DELETE", f"/api/sessions/{session['id']}")
        for path in ("/kernelspecs/python3/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
                     "/kernelspecs/python3/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                     "/kernelspecs/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc/passwd",
                     f"/kernelspecs/python3/{quote(str(outside / 'secret.txt'), safe='')}",
                     f"/api/kernelspecs/{quote('../' * 8 + 'etc', safe='')}"):
            status, answer, text = await send(server, "GET", path)
            assert status == 404, f"GET {path}: {status} {text[:300]}"
            assert "root:" not in text and "secret outside" not in text
        for escape in escapes(outside):
            status, answer, text = await send(server, "GET", f"/api/resolvePath?path={escape}")
            assert status == 200 and answer["resolved"] == [], f"resolvePath {escape}: {text}"
        assert (await (await server.get("/api/kernels")).json()) == []
        assert (await (await server.get("/api/sessions")).json()) == []
    assert snapshot(outside) == before_outside
    assert snapshot(root) == before_root
    # the reasons name what happened, in words a client can act on
    assert {reason for *_, reason in refused} <= {"outside root", "symlink outside root", "not found",
                                                   "no such file", "no such directory", "bad path", "hidden"}, refused


@pytest.mark.parametrize("path", ["/api/contents/%FF%FE", "/api/contents/caf%C3%A9%FF",
                                  "/api/contents/%C3%28", "/files/%FF", "/api/contents/dir/%80/checkpoints"])
async def test_invalid_utf8_paths_are_400(himalia_server, tree, path):
    """They used to alias: PUT /api/contents/%FF%FE created a file named `%FF%FE` (fixed in the core)."""
    root, _ = tree
    before = snapshot(root)
    async with himalia_server() as server:
        for method, body in (("GET", None), ("PUT", {"type": "file", "format": "text", "content": "x"})):
            status, answer, text = await send(server, method, path, json_body=body)
            assert status == 400, f"{method} {path}: {status} {text}"
            assert answer["reason"] == "bad path" and "not valid UTF-8" in answer["message"]
    assert snapshot(root) == before


async def test_nul_in_a_path_is_400(himalia_server, tree):
    async with himalia_server() as server:
        for method in ("GET", "DELETE"):
            status, answer, _ = await send(server, method, "/api/contents/a%00b")
            assert status == 400 and "NUL" in answer["message"]


# --- unknown ids and methods -------------------------------------------------------------------

UNKNOWN_IDS = [
    ("GET", f"/api/kernels/{UNKNOWN}", None, UNKNOWN),
    ("DELETE", f"/api/kernels/{UNKNOWN}", None, UNKNOWN),
    ("POST", f"/api/kernels/{UNKNOWN}/interrupt", None, UNKNOWN),
    ("POST", f"/api/kernels/{UNKNOWN}/restart", None, UNKNOWN),
    ("GET", "/api/kernels/not-even-a-uuid", None, "not-even-a-uuid"),
    ("GET", f"/api/sessions/{UNKNOWN}", None, UNKNOWN),
    ("PATCH", f"/api/sessions/{UNKNOWN}", {"path": "b.ipynb"}, UNKNOWN),
    ("DELETE", f"/api/sessions/{UNKNOWN}", None, UNKNOWN),
    ("GET", "/api/kernelspecs/no-such-spec", None, "no-such-spec"),
    ("GET", "/kernelspecs/no-such-spec/logo-64x64.png", None, "no-such-spec"),
    ("GET", "/kernelspecs/python3/no-such-resource.png", None, "no-such-resource.png"),
    ("POST", "/api/contents/notes.txt/checkpoints/no-such-checkpoint", None, "no-such-checkpoint"),
    ("DELETE", "/api/contents/notes.txt/checkpoints/no-such-checkpoint", None, "no-such-checkpoint"),
    ("GET", "/api/contents/no/such/file.txt", None, "no/such/file.txt"),
    ("GET", "/files/no-such-file.txt", None, "no-such-file.txt"),
    ("GET", "/api/no/such/route", None, "/api/no/such/route"),
]


async def test_unknown_ids_are_404_naming_the_id(himalia_server, tree):
    async with himalia_server() as server:
        for method, path, body, name in UNKNOWN_IDS:
            status, answer, text = await send(server, method, path, json_body=body)
            assert status == 404, f"{method} {path}: {status} {text}"
            assert name in answer["message"], f"{method} {path}: {answer}"
        # a session asking for a kernel that is not running: 400, as jupyter_server answers
        status, answer, _ = await send(server, "POST", "/api/sessions", json_body={
            "path": "a.ipynb", "type": "notebook", "kernel": {"id": UNKNOWN}})
        assert status == 400 and UNKNOWN in answer["message"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await server.client.ws_connect(server.url_for(f"/api/kernels/{UNKNOWN}/channels"))
        assert e.value.status == 404


async def test_405_lists_the_allowed_methods(himalia_server):
    """RFC 9110 requires `Allow` on a 405; the error middleware used to drop it (fixed in the core)."""
    async with himalia_server() as server:
        resources = {r.resource.canonical: r.resource for r in server.app.router.routes()}
        for canonical in resources:
            if "{" in canonical and "path" not in canonical:
                path = canonical.replace("{kernel_id}", UNKNOWN).replace("{session_id}", UNKNOWN)
                path = path.replace("{name}", "python3").replace("{resource}", "logo-64x64.png")
            else:
                path = canonical.split("{")[0].rstrip("/") or "/"
            status, answer, _ = await send(server, "TRACE", path)
            if status == 405:
                async with server.client.request("TRACE", raw(server, path)) as r:
                    allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
                assert allow and "TRACE" not in allow, f"TRACE {path}: Allow={allow}"
                assert answer["message"] == f"method TRACE is not allowed on {URL(path).path}"


# --- authentication comes before anything else ------------------------------------------------

async def test_strangers_get_401_before_any_parsing_or_lookup(himalia_server, tree):
    """Bad bodies, escaping or undecodable paths, huge bodies and unknown ids all answer 401 without a token: a
    stranger learns nothing about what exists, and nothing is parsed or written on their behalf."""
    root, outside = tree
    before = snapshot(root)
    async with himalia_server(config={"server": {"max_body_size": LIMIT}}) as server:
        cases = [
            ("POST", "/api/sessions", b"{"),
            ("PUT", "/api/contents/new.txt", json.dumps({"type": "file", "format": "text", "content": "x"}).encode()),
            ("PUT", "/api/contents/big.txt", json.dumps({"content": "x" * (4 * LIMIT)}).encode()),
            ("GET", "/api/contents/../outside/secret.txt", None),
            ("GET", "/files/link-out/secret.txt", None),
            ("GET", "/api/contents/notes.txt", None),
            ("DELETE", "/api/contents/notes.txt", None),
            ("GET", f"/api/sessions/{UNKNOWN}", None),
            ("GET", "/api/kernelspecs/no-such-spec", None),
            ("POST", "/api/kernels", b'{"name": 5}'),
            ("TRACE", "/api/status", None),
            ("PUT", "/api/contents/%FF%FE", b'{"type": "file", "format": "text", "content": "x"}'),
        ]
        for method, path, body in cases:
            for headers in ({}, {"Authorization": "token wrong"}):
                status, answer, text = await send(server, method, path, body=body, headers=headers, auth=False)
                assert status == 401, f"{method} {path} {headers}: {status} {text[:200]}"
                assert answer["reason"] in ("missing token", "invalid token")
    assert snapshot(root) == before


# --- the kernel websocket ---------------------------------------------------------------------

def v1_frame(parts: list[bytes]) -> bytes:
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def garbage_frames(session: str) -> list[tuple[str, bytes | str]]:
    good = header("execute_request", session)
    content = json.dumps({"code": "raise SystemExit('a malformed frame reached the kernel')"}).encode()
    return [
        ("empty binary", b""),
        ("three bytes", b"\x01\x02\x03"),
        ("offset count too large", struct.pack("<Q", 1 << 40)),
        ("offsets past the end", struct.pack("<3Q", 2, 24, 9999) + b"shell"),
        ("offsets out of order", struct.pack("<4Q", 3, 100, 32, 40) + b"x" * 20),
        ("channel not UTF-8", v1_frame([b"\xff\xfe", json.dumps(good).encode(), b"{}", b"{}", content])),
        ("header not JSON", v1_frame([b"shell", b"{not json", b"{}", b"{}", content])),
        ("header a list", v1_frame([b"shell", b"[1]", b"{}", b"{}", content])),
        ("header without msg_id", v1_frame([b"shell", json.dumps({"msg_type": "execute_request"}).encode(),
                                            b"{}", b"{}", content])),
        ("no such channel", encode_v1("nonexistent", good, {"code": "raise SystemExit(1)"})),
        ("channel iopub from a client", encode_v1("iopub", header("stream", session), {"name": "stdout", "text": "x"})),
        ("text frame not JSON", "this is not json"),
        ("text frame JSON list", "[1, 2, 3]"),
        ("text frame without header", json.dumps({"channel": "shell", "content": {}})),
        ("text frame unknown channel", json.dumps({"channel": "nope", "header": good, "parent_header": {},
                                                   "metadata": {}, "content": {}})),
    ]


async def legacy_garbage_then_execute(server, kernel_id: str) -> None:
    """The same on a legacy (no subprotocol) connection: malformed binary frames, then a JSON execute."""
    session = "legacy-" + kernel_id[:8]
    ws = await asyncio.wait_for(server.ws_connect(f"/api/kernels/{kernel_id}/channels?session_id={session}"), 60)
    try:
        assert ws.protocol is None
        for frame in (b"", b"\x00\x00\x00\x05", struct.pack("!3I", 2, 12, 9999) + b"{}",
                      struct.pack("!3I", 2, 12, 14) + b"{not json}xx", struct.pack("!2I", 1, 8) + b"[1, 2]"):
            await ws.send_bytes(frame)
        h = header("execute_request", session)
        await ws.send_str(json.dumps({"channel": "shell", "header": h, "parent_header": {}, "metadata": {},
                                      "content": {"code": "print('legacy ok')", "silent": False}}))
        out, idle = [], False

        async def collect() -> None:
            nonlocal idle
            while not idle:
                frame = await ws.receive()
                assert frame.type == aiohttp.WSMsgType.TEXT, frame
                msg = json.loads(frame.data)
                if msg["parent_header"].get("msg_id") != h["msg_id"]:
                    continue
                if msg["header"]["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True

        await asyncio.wait_for(collect(), 60)
        assert "".join(out) == "legacy ok\n"
    finally:
        await ws.close()


async def test_malformed_frames_are_ignored_and_logged_and_everything_survives(himalia_server, caplog):
    caplog.set_level(logging.DEBUG, logger="himalia.kernels")
    async with himalia_server() as server:
        r = await server.post("/api/kernels", json={})
        assert r.status == 201
        kernel_id = (await r.json())["id"]
        try:
            sock = await open_kernel_socket(server.client, server.url_for(f"/api/kernels/{kernel_id}/channels"))
            try:
                await sock.kernel_info()
                pids = kernel_pids(kernel_id)
                frames = garbage_frames(sock.session)
                for _name, frame in frames:
                    if isinstance(frame, bytes):
                        await sock.ws.send_bytes(frame)
                    else:
                        await sock.ws.send_str(frame)
                # the same connection still works, and the kernel is the same process
                assert await sock.execute("print(6 * 7)") == "42\n"
                assert not sock.ws.closed
                assert kernel_pids(kernel_id) == pids
            finally:
                await sock.ws.close()
            await legacy_garbage_then_execute(server, kernel_id)
            assert kernel_pids(kernel_id) == pids
            model = await (await server.get(f"/api/kernels/{kernel_id}")).json()
            assert model["execution_state"] == "idle"
            warnings = [r.getMessage() for r in caplog.records
                        if r.name == "himalia.kernels" and "malformed message" in r.getMessage()]
            # every frame except the two well-formed ones on the wrong channel was refused and logged
            assert len(warnings) >= len(frames) - 2, "\n".join(warnings)
            ignored = [r.getMessage() for r in caplog.records if r.name == "himalia.kernels"
                       and ("iopub" in r.getMessage() or "nonexistent" in r.getMessage())]
            assert ignored, "messages on channels a client may not use must be logged"
        finally:
            await server.delete(f"/api/kernels/{kernel_id}")


async def test_a_websocket_message_over_the_limit_closes_that_socket_only(himalia_server):
    limit = 64 * 1024
    async with himalia_server(config={"server": {"max_body_size": limit}}) as server:
        r = await server.post("/api/kernels", json={})
        kernel_id = (await r.json())["id"]
        url = server.url_for(f"/api/kernels/{kernel_id}/channels")
        try:
            watcher = await open_kernel_socket(server.client, url)
            big = await open_kernel_socket(server.client, url)
            try:
                await watcher.kernel_info()
                await big.ws.send_bytes(encode_v1("shell", header("execute_request", big.session),
                                                  {"code": "x = '" + "a" * (2 * limit) + "'"}))

                async def until_closed() -> None:
                    while (await big.ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                                 aiohttp.WSMsgType.CLOSING):
                        pass  # iopub traffic from the watcher's requests

                await asyncio.wait_for(until_closed(), 60)
                assert big.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
                assert await watcher.execute("print('still here')") == "still here\n"
            finally:
                await watcher.ws.close()
                await big.ws.close()
        finally:
            await server.delete(f"/api/kernels/{kernel_id}")


async def test_deeply_nested_frames_are_ignored_too(himalia_server):
    """Was: the RecursionError left kernel_channels' loop and dropped the connection; fixed in f3c1962."""
    async with himalia_server() as server:
        r = await server.post("/api/kernels", json={})
        kernel_id = (await r.json())["id"]
        try:
            sock = await open_kernel_socket(server.client, server.url_for(f"/api/kernels/{kernel_id}/channels"))
            try:
                await sock.kernel_info()
                deep = b"[" * 5000 + b"]" * 5000
                await sock.ws.send_bytes(v1_frame([b"shell", deep, b"{}", b"{}", b"{}"]))
                await sock.ws.send_str('{"channel": "shell", "header": ' + deep.decode() + "}")
                assert await sock.execute("print('alive')") == "alive\n"
            finally:
                await sock.ws.close()
        finally:
            await server.delete(f"/api/kernels/{kernel_id}")


class CrashAfterUpgrade:
    """A plugin whose websocket handler fails after the upgrade, and whose stream fails mid-body."""

    @hookimpl
    def himalia_routes(self, config):
        from aiohttp import web

        async def ws(request):
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            await socket.send_str("hello")
            raise RuntimeError("a bug after the upgrade")

        async def stream(request):
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"partial")
            raise RuntimeError("a bug mid-stream")

        return [Route("GET", "/api/crash/ws", ws), Route("GET", "/api/crash/stream", stream)]


async def test_a_failure_after_the_response_began_closes_the_connection_cleanly(himalia_server):
    """The error middleware used to write a JSON 500 *into* the upgraded connection, which the client
    read as a corrupt websocket frame (fixed in the core: it re-raises and aiohttp closes)."""
    async with himalia_server(plugins={"crash": CrashAfterUpgrade()}) as server:
        async with server.ws_connect("/api/crash/ws") as ws:
            first = await ws.receive(timeout=30)
            assert first.type == aiohttp.WSMsgType.TEXT and first.data == "hello"
            last = await ws.receive(timeout=30)
            assert last.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), last
            assert not isinstance(last.data, aiohttp.WebSocketError) and last.extra is None, last
        with pytest.raises(aiohttp.ClientPayloadError):
            await server.get("/api/crash/stream")
        assert (await server.get("/api/status")).status == 200


# --- a directory into itself ------------------------------------------------------------------

async def test_copying_a_directory_into_itself_is_refused_and_writes_nothing(himalia_server, tree):
    """Was a 500 after shutil.copytree recursed into its own output, leaving ~1500 nested directories."""
    root, _ = tree
    (root / "dir" / "sub").mkdir()
    (root / "dir" / "a.txt").write_text("a\n")
    before = snapshot(root)
    async with himalia_server() as server:
        status, answer, text = await send(server, "POST", "/api/contents/dir/sub", json_body={"copy_from": "dir"})
        assert 400 <= status < 500, f"{status} {text[:200]}"
        after = snapshot(root)
    assert after == before, f"{len(after) - len(before)} new entries, e.g. {sorted(set(after) - set(before))[:3]}"


async def test_moving_a_directory_into_itself_is_a_clear_400(himalia_server, tree):
    """Was a 500 "filesystem error on 'dir': None" (shutil.Error carries no errno)."""
    root, _ = tree
    (root / "dir" / "sub").mkdir()
    before = snapshot(root)
    async with himalia_server() as server:
        status, answer, text = await send(server, "PATCH", "/api/contents/dir", json_body={"path": "dir/sub/dir"})
        assert status == 400, f"{status} {text[:200]}"
        assert "None" not in answer["message"] and "dir/sub/dir" in answer["message"], answer
    assert snapshot(root) == before


async def test_deleting_a_directory_never_follows_its_links_out(himalia_server, tree):
    root, outside = tree
    (root / "dir" / "escape").symlink_to(outside)
    (root / "dir" / "file.txt").write_text("x")
    before = snapshot(outside)
    async with himalia_server(config={"plugins": {"contents": {"delete_to_trash": False}}}) as server:
        status, answer, text = await send(server, "DELETE", "/api/contents/dir")
        assert status in (204, 400), f"{status} {text[:200]}"
    assert snapshot(outside) == before
