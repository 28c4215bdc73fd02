"""FIFOs, sockets and other files that are neither regular files nor directories are refused by every
operation, at once: opening a FIFO blocks until a writer comes, and a worker thread stuck there never
returns (a few of those and every contents call waits, and the server cannot stop)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import stat

import pytest


def release_fifos(root):
    """Open each FIFO under `root` for reading and writing (which never blocks) and close it: a worker
    thread stuck opening one (the bug these tests look for) then returns, and the test can end."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                for _ in range(16):
                    os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))


async def answer(server, method, path, **kwargs):
    """The status and JSON message, or a test failure if the server did not answer within 10 s."""
    try:
        r = await server.request(method, path, timeout=10, **kwargs)
    except asyncio.TimeoutError:
        for _ in range(3):  # unstick the threads, so that the test can end and report
            release_fifos(server.root_dir)
            await asyncio.sleep(0.2)
        pytest.fail(f"{method} {path} did not answer within 10 s (a worker thread is stuck?)")
    body = await r.json() if r.content_type == "application/json" else {}
    return r.status, body.get("message", "") if isinstance(body, dict) else ""


@pytest.fixture
def fifo(root):
    path = root / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/contents/pipe", None),
    ("GET", "/api/contents/pipe?hash=1&content=0", None),
    ("GET", "/files/pipe", None),
    ("POST", "/api/contents", {"copy_from": "pipe"}),
    ("PATCH", "/api/contents/pipe", {"path": "renamed"}),
    ("PUT", "/api/contents/pipe", {"type": "file", "format": "text", "content": "x"}),
    ("PUT", "/api/contents/pipe", {"type": "file", "format": "text", "content": "x", "chunk": 1}),
    ("POST", "/api/contents/pipe/checkpoints", None),
    ("POST", "/api/contents/pipe/trust", None),
])
async def test_a_fifo_is_refused_by_every_operation(contents_server, root, fifo, method, path, body):
    async with contents_server() as server:
        status, message = await answer(server, method, path, json=body)
        assert status == 400 and "pipe" in message and "not a regular file" in message, (status, message)
        assert fifo.exists() and not (root / "renamed").exists() and not (root / "copied").exists()
        assert sorted(p.name for p in root.iterdir()) == ["pipe"]


async def test_many_fifo_copies_leave_the_contents_api_answering(contents_server, root, fifo):
    """The issue's case: a handful of copies of a FIFO took every worker thread."""
    (root / "note.txt").write_text("still here")
    async with contents_server() as server:
        statuses = await asyncio.gather(*(answer(server, "POST", "/api/contents", json={"copy_from": "pipe"})
                                          for _ in range(12)))
        assert all(400 <= s < 500 for s, _ in statuses), statuses
        status, _ = await answer(server, "GET", "/api/contents/note.txt")
        assert status == 200


@pytest.fixture
def unix_socket(root):
    cwd = os.getcwd()
    sock = socket.socket(socket.AF_UNIX)
    os.chdir(root)  # a relative name: the absolute path may be longer than a socket address allows
    try:
        sock.bind("sock")
    finally:
        os.chdir(cwd)
    yield root / "sock"
    sock.close()


async def test_a_socket_is_refused_too(contents_server, root, unix_socket):
    async with contents_server() as server:
        for method, path, body in (("GET", "/api/contents/sock", None), ("GET", "/files/sock", None),
                                   ("POST", "/api/contents", {"copy_from": "sock"})):
            status, message = await answer(server, method, path, json=body)
            assert status == 400 and "sock" in message, (method, path, status, message)


@pytest.mark.parametrize("special", ["fifo", "socket"])
async def test_copying_a_directory_holding_a_special_file_fails_cleanly(contents_server, root, special):
    """Was a thread stuck forever (FIFO) or a 500 (socket); now a 400 naming the file, and no copy left."""
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    cwd = os.getcwd()
    sock = socket.socket(socket.AF_UNIX)
    if special == "fifo":
        os.mkfifo(folder / "sub" / "odd")
    else:
        os.chdir(folder / "sub")
        try:
            sock.bind("odd")
        finally:
            os.chdir(cwd)
    try:
        async with contents_server() as server:
            status, message = await answer(server, "POST", "/api/contents", json={"copy_from": "folder"})
            assert status == 400 and "folder/sub/odd" in message, (status, message)
            assert sorted(p.name for p in root.iterdir()) == ["folder"]
    finally:
        sock.close()


async def test_an_upload_never_writes_into_a_fifo(contents_server, root, fifo):
    async with contents_server() as server:
        data = base64.b64encode(b"x").decode()
        for chunk in (1, -1):
            status, message = await answer(server, "PUT", "/api/contents/pipe",
                                           json={"type": "file", "format": "base64", "content": data, "chunk": chunk})
            assert 400 <= status < 500, (status, message)
    assert fifo.exists() and not fifo.is_file()
