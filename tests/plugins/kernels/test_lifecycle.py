"""Kernel lifecycle: culling, server shutdown, process groups, bounded reconnect buffers."""

from __future__ import annotations

import asyncio

import psutil
import os
import signal

from kernel_ws import V1, assert_gone, connect, execute_content, kernel_processes, running_kernel

from himalia import SERVICES, hookimpl


class StopWatcher:
    def __init__(self):
        self.stopped: dict[str, str] = {}
        self.event = asyncio.Event()

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason):
        self.stopped[kernel_id] = reason
        self.event.set()


async def test_kernel_that_cannot_be_restarted_is_reported_dead(himalia_server):
    """With autorestart off, a killed kernel is still noticed: clients see 'dead' with the signal,
    the model says dead, and kernel_stopped fires once with the reason."""
    watcher = StopWatcher()
    config = {"plugins": {"kernels": {"autorestart": False, "restart_check_interval": 0.5}}}
    async with himalia_server(config=config, plugins={"watcher": watcher}) as server, \
            running_kernel(server) as kernel, connect(server, kernel["id"]) as ws:
        await ws.execute("x = 1")
        os.kill(kernel_processes(server, kernel["id"])[0].pid, signal.SIGKILL)
        dead = await ws.wait_for(lambda m: m["header"]["msg_type"] == "status"
                                 and m["content"]["execution_state"] == "dead")
        assert "signal 9" in dead["content"]["reason"]
        await asyncio.wait_for(watcher.event.wait(), 30)
        assert list(watcher.stopped) == [kernel["id"]] and "signal 9" in watcher.stopped[kernel["id"]]
        model = await (await server.get(f"/api/kernels/{kernel['id']}")).json()
        assert model["execution_state"] == "dead" and "signal 9" in model["reason"]


async def test_idle_kernel_is_culled(himalia_server):
    watcher = StopWatcher()
    config = {"plugins": {"kernels": {"cull_idle_timeout": 0.2, "cull_interval": 0.1}}}
    async with himalia_server(config=config, plugins={"watcher": watcher}) as server:
        r = await server.post("/api/kernels", json={})
        kernel = await r.json()
        procs = kernel_processes(server, kernel["id"])
        await asyncio.wait_for(watcher.event.wait(), 30)
        assert watcher.stopped == {kernel["id"]: "culled"}
        assert (await server.get(f"/api/kernels/{kernel['id']}")).status == 404
        assert_gone(procs)


async def test_culling_spares_connected_and_busy_kernels_unless_told(himalia_server):
    config = {"plugins": {"kernels": {"cull_idle_timeout": 60}}}  # the culler's own loop waits 300 s
    async with himalia_server(config=config) as server, running_kernel(server) as kernel:
        live = server.app[SERVICES].kernels
        hub = live.hubs[kernel["id"]]
        async with connect(server, kernel["id"]) as ws:
            await ws.execute("pass")
            hub.last_activity -= 3600
            assert await live.cull_idle() == []  # connected
        hub.execution_state = "busy"
        assert await live.cull_idle() == []  # busy (no activity seen, but busy is spared by default)
        live.config = type(live.config)(**{**live.config.__dict__, "cull_busy": True})
        assert await live.cull_idle() == [kernel["id"]]


async def test_server_stop_shuts_every_kernel_down(himalia_server):
    watcher = StopWatcher()
    async with himalia_server(plugins={"watcher": watcher}) as server:
        ids, procs = [], []
        for _ in range(2):
            kernel = await (await server.post("/api/kernels", json={})).json()
            ids.append(kernel["id"])
            procs += kernel_processes(server, kernel["id"])
        async with connect(server, ids[0]) as ws:
            await ws.execute("import subprocess; child = subprocess.Popen(['sleep', '300'])")
            procs += kernel_processes(server, ids[0])[1:]
    assert_gone(procs)
    assert watcher.stopped == {k: "shutdown" for k in ids}


async def test_shutdown_reaches_the_kernels_children(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel, connect(server, kernel["id"]) as ws:
        ex = await ws.execute("import subprocess, os\n"
                              "child = subprocess.Popen(['sleep', '300'])\n"
                              "detached = subprocess.Popen(['sh', '-c', 'sleep 300 & wait'])\n"
                              "print(child.pid)")
        child = psutil.Process(int(ex.stdout))
        assert child.is_running()
        everything = kernel_processes(server, kernel["id"])
        assert len(everything) >= 4
    # running_kernel's exit checked the kernel and all its descendants are gone
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


async def test_reconnect_buffer_is_bounded_and_says_what_it_dropped(himalia_server, tmp_path):
    flag = tmp_path / "go"
    config = {"plugins": {"kernels": {"buffer_max_messages": 5}}}
    code = (f"import os, time, sys\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
            "for i in range(20):\n    print(i, flush=True); time.sleep(0.002)\n")
    async with himalia_server(config=config) as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"]) as watcher:
        async with connect(server, kernel["id"]) as ws:
            session = ws.session_id
            msg_id = await ws.send("shell", "execute_request", execute_content(code))
            await ws.wait_for(lambda m: m["header"]["msg_type"] == "execute_input"
                          and m["parent_header"].get("msg_id") == msg_id)
        flag.write_text("go")
        await watcher.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id
                               and m["header"]["msg_type"] == "status"
                               and m["content"]["execution_state"] == "idle")
        printed = [m["content"]["text"] for m in watcher.other if m["header"]["msg_type"] == "stream"
                   and m["content"]["name"] == "stdout"]
        # ipykernel may send one print as two stream messages ("0", "\n"): compare the text
        assert "".join(printed) == "".join(f"{i}\n" for i in range(20))
        async with connect(server, kernel["id"], session_id=session) as again:
            ex = await again.collect(msg_id)
            [notice] = [m for m in again.other + ex.iopub if m["header"]["msg_type"] == "stream"
                        and m["content"]["text"].startswith("[himalia]")]
            assert notice["content"]["name"] == "stderr"
            assert "were dropped" in notice["content"]["text"] and "at most 5 messages" in notice["content"]["text"]
            assert ex.stdout.endswith("19\n")
            assert len(ex.iopub) <= 6 and ex.states[-1] == "idle"
            assert ex.reply["content"]["status"] == "ok"


async def test_a_slow_session_replaced_by_a_new_connection(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel:
        async with connect(server, kernel["id"], V1, session_id="same") as first:
            async with connect(server, kernel["id"], V1, session_id="same") as second:
                closed = await asyncio.wait_for(first.ws.receive(), 10)
                assert closed.type.name in ("CLOSE", "CLOSED", "CLOSING")
                assert (await second.execute("print(1)")).stdout == "1\n"
                model = await (await server.get(f"/api/kernels/{kernel['id']}")).json()
                assert model["connections"] == 1
