"""Faults, with real processes and real signals: a kernel SIGKILLed under a session, the server
SIGKILLed mid-save, SIGTERMed with kernels running, a full disk (RLIMIT_FSIZE), and clients that
vanish mid-upload. Nothing may be lost: a file is either its old or its new version, never a mix."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import resource
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from himalia.testing import serve_process

from reliability_kit import isolated_env, kernel_pids, launch, open_kernel_socket

TOKEN = "faults-token"
AUTH = {"Authorization": f"token {TOKEN}"}
WAIT = 60.0


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def leftovers(root: Path) -> list[str]:
    """Our own temp and partial-upload files (hidden, never listed)."""
    return sorted(p.name for p in root.rglob("*") if p.name.endswith((".himalia-tmp", ".himalia-upload")))


async def wait_exit(process: subprocess.Popen, timeout: float) -> int:
    return await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)


# --- a kernel SIGKILLed under a session -------------------------------------------------------

async def test_kernel_sigkilled_under_a_session_restarts_and_clients_are_told(himalia_server):
    async with himalia_server() as server:
        r = await server.post("/api/sessions", json={"path": "work.ipynb", "type": "notebook",
                                                     "kernel": {"name": "python3"}})
        assert r.status == 201, await r.text()
        session = await r.json()
        kernel_id = session["kernel"]["id"]
        try:
            sock = await open_kernel_socket(server.client, server.url_for(f"/api/kernels/{kernel_id}/channels"))
            try:
                await sock.kernel_info()
                assert await sock.execute("x = 41; print(x + 1)") == "42\n"
                [pid] = kernel_pids(kernel_id)
                os.kill(pid, signal.SIGKILL)
                restarting = await sock.wait_for(lambda m: m["header"]["msg_type"] == "status"
                                                 and m["content"]["execution_state"] == "restarting")
                assert "signal 9" in restarting["content"].get("reason", ""), restarting["content"]
                await sock.kernel_info()  # the same websocket reaches the new kernel
                assert await sock.execute("print('x' in globals())") == "False\n"
            finally:
                await sock.ws.close()
            assert kernel_pids(kernel_id) not in ([], [pid])
            # the session lives on, with the same kernel id, and says what happened
            r = await server.get(f"/api/sessions/{session['id']}")
            assert r.status == 200
            after = await r.json()
            assert after["kernel"]["id"] == kernel_id
            model = await (await server.get(f"/api/kernels/{kernel_id}")).json()
            assert "signal 9" in model.get("reason", "")
        finally:
            await server.delete(f"/api/sessions/{session['id']}")


# --- the server SIGKILLed mid-save ------------------------------------------------------------

KILLS = 10
SIZE = 6 * 1024 * 1024


def version(n: int) -> str:
    """Distinct content per version, each a different size, so any mix or truncation shows."""
    line = f"version {n:03d} " + "x" * 50 + "\n"
    return line * ((SIZE + n * 4096) // len(line))


def kill_when_writing(process: subprocess.Popen, root: Path, delay: float, deadline: float) -> None:
    """Watch `root` (a busy loop in a thread, to catch a write window of milliseconds) and SIGKILL the
    server `delay` seconds after its temp file appears; give up at `deadline`."""
    while time.monotonic() < deadline:
        if any(e.name.endswith(".himalia-tmp") for e in os.scandir(root)):
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            return


async def test_server_sigkilled_mid_save_leaves_the_old_or_the_new_file(tmp_path):
    """jupyter_server left a partial file in 1 of 8 such kills (its save copies a backup, then writes
    in place); Himalia writes a temp file, fsyncs and renames it over the target."""
    root = tmp_path / "root"
    root.mkdir()
    target = root / "data.txt"
    target.write_text(version(0))
    known = {version(0)}
    rng = random.Random(20261124)
    landed_mid_save = 0
    for kill in range(KILLS):
        with serve_process("--root-dir", str(root), "--token", TOKEN, env=isolated_env(tmp_path)) as server:
            url = server.url_for("/api/contents/data.txt")
            async with aiohttp.ClientSession(headers=AUTH) as client:
                # one save to measure how long a save takes on this machine, then kill inside the next
                n = 2 * kill + 1
                started = time.monotonic()
                async with client.put(url, json={"type": "file", "format": "text", "content": version(n)}) as r:
                    assert r.status == 200, await r.text()
                known.add(version(n))
                took = time.monotonic() - started
                content = version(n + 1)
                known.add(content)
                save = asyncio.ensure_future(client.put(url, json={"type": "file", "format": "text",
                                                                   "content": content}))
                if kill % 2:
                    # the fault at a random point of the request: this delay is the experiment
                    await asyncio.sleep(rng.uniform(0.0, took * 1.2))
                else:
                    # the fault while the new content is being written: once the temp file exists
                    await asyncio.to_thread(kill_when_writing, server.process, root, rng.uniform(0.0, 0.004),
                                            time.monotonic() + 4 * took + 5)
                landed_mid_save += not save.done()
                server.process.send_signal(signal.SIGKILL)
                assert await wait_exit(server.process, WAIT) == -signal.SIGKILL
                try:
                    await asyncio.wait_for(save, WAIT)
                except (aiohttp.ClientError, ConnectionError):
                    pass
        text = target.read_text()
        assert text in known, (f"kill {kill}: {target} holds {len(text)} bytes matching no saved version "
                               f"(starts {text[:20]!r}, ends {text[-20:]!r})")
    # what a SIGKILL leaves behind is a hidden temp file, never listed; the target is whole
    assert listing(root) - set(leftovers(root)) == {"data.txt"}
    print(f"{landed_mid_save} of {KILLS} kills landed while a save was in flight; "
          f"{len(leftovers(root))} left a temp file behind (killed between write and rename)")
    assert landed_mid_save >= KILLS // 3, f"only {landed_mid_save} of {KILLS} kills landed during a save"


# --- SIGTERM with kernels running -------------------------------------------------------------

async def test_sigterm_with_kernels_running_stops_every_kernel_and_exits(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    env = isolated_env(tmp_path)
    with serve_process("--root-dir", str(root), "--token", TOKEN, env=env) as server:
        async with aiohttp.ClientSession(headers=AUTH) as client:
            ids = []
            for _ in range(2):
                async with client.post(server.url_for("/api/kernels"), json={}) as r:
                    assert r.status == 201
                    ids.append((await r.json())["id"])
            async with client.post(server.url_for("/api/sessions"), json={"path": "s.ipynb", "type": "notebook"}) as r:
                assert r.status == 201
                ids.append((await r.json())["kernel"]["id"])
            # one kernel busy in a loop that ignores SIGINT: shutdown must still get rid of it
            sock = await open_kernel_socket(client, server.url_for(f"/api/kernels/{ids[0]}/channels"))
            await sock.kernel_info()
            await sock.send("shell", "execute_request", {
                "code": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
                "silent": False})
            await sock.wait_for(lambda m: m["header"]["msg_type"] == "status"
                                and m["content"]["execution_state"] == "busy")
            procs = [psutil.Process(pid) for kernel_id in ids for pid in kernel_pids(kernel_id)]
            assert len(procs) == 3
            info_files = list((tmp_path / "runtime").glob("himalia-*.json"))
            assert len(info_files) == 1
            server.process.send_signal(signal.SIGTERM)
            status = await wait_exit(server.process, 45)
            await sock.ws.close()
        assert status == 0, "\n".join(server.output[-30:])
        _, alive = psutil.wait_procs(procs, timeout=10)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], f"kernels outlived the server: {alive}"
        assert not info_files[0].exists()
        assert any("shutting down" in line for line in server.output)


async def test_sigterm_after_fifo_copies_exits_and_the_api_kept_answering(tmp_path):
    """Copies of a named pipe used to block worker threads in open() forever: the contents API then
    hung, and SIGTERM never exited. They are refused at once now (400), and the server stops."""
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe")
    (root / "note.txt").write_text("fine")
    try:
        with serve_process("--root-dir", str(root), "--token", TOKEN, env=isolated_env(tmp_path)) as server:
            async with aiohttp.ClientSession(headers=AUTH) as client:
                async def copy() -> int:
                    async with client.post(server.url_for("/api/contents"), json={"copy_from": "pipe"}) as r:
                        return r.status

                statuses = await asyncio.wait_for(asyncio.gather(*(copy() for _ in range(12))), WAIT)
                assert set(statuses) == {400}, statuses
                async with asyncio.timeout(WAIT), client.get(server.url_for("/api/contents/note.txt")) as r:
                    assert r.status == 200
            server.process.send_signal(signal.SIGTERM)
            assert await wait_exit(server.process, 30) == 0, "\n".join(server.output[-30:])
    finally:
        for _ in range(16):  # free whatever a failing run left stuck in open(), so the test can end
            os.close(os.open(root / "pipe", os.O_RDWR | os.O_NONBLOCK))


# --- a full disk ------------------------------------------------------------------------------

LIMIT = 1024 * 1024


def clear_refusal(status: int, body: dict, name: str, spec: dict) -> bool:
    """A 4xx, or a 507 the spec documents for saves, whose message names the file and the lack of space."""
    documented = spec["paths"]["/api/contents/{path}"]["put"]["responses"]
    if not (400 <= status < 500 or (status == 507 and "507" in documented)):
        return False
    return name in body["message"] and ("space" in body["message"] or "too large" in body["message"])


def small_disk() -> None:
    """In the server's child process: files may not grow past LIMIT, and writing past it fails with
    EFBIG instead of killing the process with SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


async def test_full_disk_save_fails_clearly_and_keeps_the_old_content(tmp_path):
    """Was a 500 "filesystem error ... File too large" for EFBIG; the contents plugin now answers a
    documented 507 "no space left to write 'x'; the previous content is unchanged"."""
    root = tmp_path / "root"
    root.mkdir()
    old_text = "old content\n" * 1000
    (root / "notes.txt").write_text(old_text)
    (root / "up.bin").write_bytes(b"old upload")
    old_nb = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    (root / "nb.ipynb").write_text(old_nb)
    problems = []
    with launch("--root-dir", str(root), "--token", TOKEN, env=isolated_env(tmp_path), preexec_fn=small_disk) as (
            process, url):
        base = url.rstrip("/")
        async with aiohttp.ClientSession(headers=AUTH) as client:
            async with client.get(f"{base}/api/spec.yaml") as r:
                spec = json.loads(await r.text())
            big = "y" * (2 * LIMIT)
            cell = {"cell_type": "markdown", "metadata": {}, "source": big, "id": "big"}
            attempts = [
                ("notes.txt", {"type": "file", "format": "text", "content": big}),
                ("new.txt", {"type": "file", "format": "text", "content": big}),
                ("nb.ipynb", {"type": "notebook", "format": "json",
                              "content": {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}),
            ]
            for name, model in attempts:
                async with client.put(f"{base}/api/contents/{name}", json=model) as r:
                    body = await r.json()
                    if not clear_refusal(r.status, body, name, spec):
                        problems.append((name, r.status, body))
            # a chunked upload whose second chunk no longer fits
            half = base64.b64encode(b"z" * (LIMIT // 2 + 1)).decode()
            for chunk in (1, 2, 3, -1):
                async with client.put(f"{base}/api/contents/up.bin", json={
                        "type": "file", "format": "base64", "content": half, "chunk": chunk}) as r:
                    if r.status >= 400:
                        body = await r.json()
                        if not clear_refusal(r.status, body, "up.bin", spec):
                            problems.append(("up.bin", r.status, body))
                        break
            else:
                problems.append(("up.bin", "accepted", "a 2 MB upload under a 1 MB limit"))
            # the server is still fine
            async with client.get(f"{base}/api/contents") as r:
                assert r.status == 200
                names = {m["name"] for m in (await r.json())["content"]}
        assert process.poll() is None, "the server died of the full disk"
    assert (root / "notes.txt").read_text() == old_text
    assert (root / "nb.ipynb").read_text() == old_nb
    assert (root / "up.bin").read_bytes() == b"old upload"
    assert "new.txt" not in names and not (root / "new.txt").exists()
    assert not [n for n in leftovers(root) if n.endswith(".himalia-tmp")], leftovers(root)
    assert not problems, problems


# --- clients vanishing mid-upload -------------------------------------------------------------

async def test_abandoned_chunked_upload_leaves_no_partial_file(himalia_server):
    async with himalia_server() as server:
        root = server.root_dir
        (root / "up.bin").write_bytes(b"the old upload")
        before = await (await server.get("/api/contents")).json()
        piece = base64.b64encode(b"p" * 100_000).decode()
        for name in ("up.bin", "fresh.bin"):
            for chunk in (1, 2, 3):  # and never -1
                r = await server.put(f"/api/contents/{name}", json={"type": "file", "format": "base64",
                                                                    "content": piece, "chunk": chunk})
                assert r.status in (200, 201), await r.text()
        assert (root / "up.bin").read_bytes() == b"the old upload"
        assert not (root / "fresh.bin").exists()
        r = await server.get("/api/contents/fresh.bin")
        assert r.status == 404
        after = await (await server.get("/api/contents")).json()
        assert {m["name"] for m in after["content"]} == {m["name"] for m in before["content"]}
        r = await server.get("/api/contents/up.bin", params={"format": "base64"})
        assert base64.b64decode((await r.json())["content"]) == b"the old upload"


async def cut_off(server, method: str, path: str, head: bytes, body: bytes, *, declared: int | None,
                  chunked: bool = False) -> None:
    """Send a request whose body stops part-way, then drop the connection."""
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), WAIT)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Authorization: token {server.token}",
             "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    if chunked:
        writer.write(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        writer.write(f"{len(body) * 2:x}\r\n".encode() + body)  # promises twice what it sends
    else:
        writer.write(head + body)
    await writer.drain()
    writer.transport.abort()  # a reset, as a client that crashed or lost its network


async def test_request_bodies_cut_off_write_nothing(himalia_server):
    async with himalia_server() as server:
        root = server.root_dir
        (root / "keep.txt").write_text("keep me\n")
        content = "n" * 2_000_000
        body = json.dumps({"type": "file", "format": "text", "content": content}).encode()
        for name in ("keep.txt", "new.txt"):
            await cut_off(server, "PUT", f"/api/contents/{name}", body[:10], body[10:len(body) // 2],
                          declared=len(body))
            await cut_off(server, "PUT", f"/api/contents/{name}", body[:10], body[10:len(body) // 2],
                          declared=None, chunked=True)
        chunk = json.dumps({"type": "file", "format": "base64", "chunk": 1,
                            "content": base64.b64encode(b"c" * 500_000).decode()}).encode()
        await cut_off(server, "PUT", "/api/contents/keep.txt", chunk[:10], chunk[10:len(chunk) // 2],
                      declared=len(chunk))
        # the server still answers, and a whole request after the cut ones goes through
        r = await server.put("/api/contents/after.txt", json={"type": "file", "format": "text", "content": "ok"})
        assert r.status == 201
        assert (root / "keep.txt").read_text() == "keep me\n"
        assert not (root / "new.txt").exists()
        assert listing(root) == {"keep.txt", "after.txt"}, listing(root)


# --- many writers on one file -----------------------------------------------------------------

async def test_concurrent_saves_of_one_file_leave_one_whole_version(himalia_server):
    async with himalia_server() as server:
        versions = [f"writer {n}\n" * (20_000 + 1000 * n) for n in range(16)]

        async def save(text: str) -> int:
            r = await server.put("/api/contents/shared.txt", json={"type": "file", "format": "text",
                                                                    "content": text})
            return r.status

        statuses = await asyncio.gather(*(save(v) for v in versions))
        assert set(statuses) <= {200, 201}, statuses
        assert (server.root_dir / "shared.txt").read_text() in versions
        assert leftovers(server.root_dir) == []
        assert listing(server.root_dir) == {"shared.txt"}


# --- lifecycle calls racing on one kernel -----------------------------------------------------

async def test_racing_restarts_interrupts_and_a_delete_on_one_kernel(himalia_server):
    """Clients double-click: restarts, interrupts and a shutdown of one kernel at once. Every answer is
    a documented one, no 500, and no kernel process is left behind."""
    async with himalia_server() as server:
        r = await server.post("/api/kernels", json={})
        kernel_id = (await r.json())["id"]
        base = f"/api/kernels/{kernel_id}"
        try:
            sock = await open_kernel_socket(server.client, server.url_for(f"{base}/channels"))
            await sock.kernel_info()
            await sock.ws.close()
            calls = [server.post(f"{base}/restart"), server.post(f"{base}/restart"), server.post(f"{base}/interrupt"),
                     server.post(f"{base}/restart"), server.post(f"{base}/interrupt")]
            answers = await asyncio.gather(*calls)
            statuses = [a.status for a in answers]
            assert set(statuses) <= {200, 204, 409}, [(a.status, await a.text()) for a in answers]
            r = await server.get(base)
            assert r.status == 200 and (await r.json())["execution_state"] != "dead"
            pids = kernel_pids(kernel_id)
            assert len(pids) == 1, pids
            answers = await asyncio.gather(server.delete(base), server.post(f"{base}/restart"),
                                           server.delete(base), server.post(f"{base}/interrupt"))
            statuses = [a.status for a in answers]
            assert statuses.count(204) >= 1 and set(statuses) <= {200, 204, 404, 409}, \
                [(a.status, await a.text()) for a in answers]
        finally:
            await server.delete(base)
        r = await server.get("/api/kernels")
        assert await r.json() == []


async def test_racing_session_creates_for_one_path_leave_no_orphan_kernel(himalia_server):
    async with himalia_server() as server:
        body = {"path": "race.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
        answers = await asyncio.gather(*(server.post("/api/sessions", json=body) for _ in range(5)))
        assert {a.status for a in answers} == {201}, [await a.text() for a in answers]
        sessions = await (await server.get("/api/sessions")).json()
        kernels = await (await server.get("/api/kernels")).json()
        try:
            assert len({s["id"] for s in sessions}) == 1, sessions
            assert {k["id"] for k in kernels} == {s["kernel"]["id"] for s in sessions}, (kernels, sessions)
        finally:
            for s in sessions:
                await server.delete(f"/api/sessions/{s['id']}")
            for k in kernels:
                await server.delete(f"/api/kernels/{k['id']}")
