"""A kernel's exit is noticed when it happens (a pidfd on the loop), not on jupyter_client's 0.1 s polls;
a DELETE answers once the kernel process is gone."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from himalia_local.exits import ExitWatch, wait_exit

from .conftest import running

TIMEOUT = 60.0


async def test_an_exit_is_noticed_while_the_process_is_unreaped_and_after():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fired = asyncio.Event()
        watch = ExitWatch(child.pid, fired.set)
        assert not fired.is_set()
        child.kill()
        await asyncio.wait_for(fired.wait(), TIMEOUT)  # a zombie now: kill(pid, 0) would still say alive
        assert watch.fired and child.returncode is None
        assert child.wait(TIMEOUT) == -9
    finally:
        child.kill()
        child.wait(TIMEOUT)
    await asyncio.wait_for(wait_exit(child.pid), TIMEOUT)  # reaped: returns at once


async def test_a_cancelled_watch_never_fires():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        fired = []
        watch = ExitWatch(child.pid, lambda: fired.append(1))
        watch.cancel()
        child.stdin.close()
        await asyncio.to_thread(child.wait, TIMEOUT)
        await asyncio.sleep(0)  # one loop turn: a reader still registered would run now
        assert fired == []
    finally:
        child.kill()
        child.wait(TIMEOUT)


async def test_delete_answers_once_the_kernel_process_is_gone(himalia_server):
    async with himalia_server() as server:
        r = await server.post("/api/sessions", json={"path": "n.ipynb", "type": "notebook", "name": "n.ipynb",
                                                     "kernel": {"name": "python3"}})
        assert r.status == 201
        session = await r.json()
        from himalia import SERVICES

        pid = server.app[SERVICES].kernel_provider._kernels[session["kernel"]["id"]].km.provisioner.pid
        assert running(pid)
        r = await server.delete(f"/api/sessions/{session['id']}")
        assert r.status == 204
        assert not running(pid)


@pytest.mark.parametrize("how, atexit_ran", [("request", True), ("terminate", False)])
async def test_shutdown_request_or_terminate(himalia_server, tmp_path, how, atexit_ran):
    """`[plugins.local] shutdown`: the polite sequence lets the kernel run its exit handlers; "terminate"
    signals at once (they do not run). Either way the DELETE answers once the process is gone."""
    config = {"plugins": {"local": {"shutdown": how}}}
    async with himalia_server(config=config, root_dir=tmp_path) as server:
        r = await server.post("/api/sessions", json={"path": "n.ipynb", "type": "notebook", "name": "n.ipynb",
                                                     "kernel": {"name": "python3"}})
        assert r.status == 201
        session = await r.json()
        from kernel_ws import connect

        marker = tmp_path / "atexit-ran"
        async with connect(server, session["kernel"]["id"]) as ws:
            done = await ws.execute(f"import atexit; atexit.register(lambda: open({str(marker)!r}, 'w').close())")
            assert done.reply["content"]["status"] == "ok"
        from himalia import SERVICES

        pid = server.app[SERVICES].kernel_provider._kernels[session["kernel"]["id"]].km.provisioner.pid
        r = await server.delete(f"/api/sessions/{session['id']}")
        assert r.status == 204
        assert not running(pid)
        assert marker.exists() is atexit_ran


async def test_shutdown_must_be_request_or_terminate(himalia_server):
    with pytest.raises(Exception, match="'shutdown' must be"):
        async with himalia_server(config={"plugins": {"local": {"shutdown": "kill"}}}):
            pass
