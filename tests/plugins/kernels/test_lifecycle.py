"""Kernel lifecycle: culling, server shutdown, process groups, bounded reconnect buffers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from kernel_ws import (V1, assert_gone, connect, execute_content, group_processes, kernel_groups, kernel_processes,
                       running_kernel)

from himalia import SERVICES, hookimpl


def assert_pid_gone(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    assert_gone([proc])


class StopWatcher:
    def __init__(self):
        self.stopped: dict[str, str] = {}
        self.events: list[tuple[str, str]] = []
        self.event = asyncio.Event()

    @hookimpl
    def himalia_kernel_started(self, kernel_id, name):
        self.events.append(("started", kernel_id))

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason):
        self.stopped[kernel_id] = reason
        self.events.append(("stopped", kernel_id))
        self.event.set()


async def test_kernel_that_cannot_be_restarted_is_reported_dead(himalia_server):
    """With autorestart off, a killed kernel is still noticed: clients see 'dead' with the signal,
    the model says dead, and kernel_stopped fires once with the reason. What it held is released
    (sockets, connection file, leftover processes), and a restart over REST brings it back, announced."""
    watcher = StopWatcher()
    config = {"plugins": {"local": {"autorestart": False, "restart_check_interval": 0.5}}}
    async with himalia_server(config=config, plugins={"watcher": watcher}) as server, \
            running_kernel(server) as kernel, connect(server, kernel["id"]) as ws:
        kid = kernel["id"]
        child = psutil.Process(int((await ws.execute(STUBBORN_CHILD)).stdout))
        record = server.app[SERVICES].kernel_provider._kernels[kid]
        connection_file = record.km.connection_file
        assert os.path.exists(connection_file)
        os.kill(kernel_processes(server, kid)[0].pid, signal.SIGKILL)
        dead = await ws.wait_for(lambda m: m["header"]["msg_type"] == "status"
                                 and m["content"]["execution_state"] == "dead")
        assert "signal 9" in dead["content"]["reason"]
        await asyncio.wait_for(watcher.event.wait(), 30)
        assert list(watcher.stopped) == [kid] and "signal 9" in watcher.stopped[kid]
        model = await (await server.get(f"/api/kernels/{kid}")).json()
        assert model["execution_state"] == "dead" and "signal 9" in model["reason"]
        assert not os.path.exists(connection_file)
        assert all(not ch._sockets for ch in record.channels)
        assert_gone([child])

        r = await server.post(f"/api/kernels/{kid}/restart")
        assert r.status == 200, await r.text()
        assert (await ws.execute("print('again')")).stdout == "again\n"
        assert watcher.events == [("started", kid), ("stopped", kid), ("started", kid)]
    assert watcher.events[3:] == [("stopped", kid)]


# a child that ignores SIGINT and SIGTERM, left in the kernel's process group, not waited for
STUBBORN_CHILD = ("import subprocess\n"
                  "child = subprocess.Popen(['sh', '-c', 'trap \"\" INT TERM; sleep 300; :'])\n"
                  "print(child.pid)")


@pytest.mark.parametrize("how", ["rest", "died"])
async def test_restart_leaves_nothing_of_the_old_kernel(himalia_server, how):
    """A restart (asked for over REST, or automatic after the kernel died) ends the old kernel's whole
    process group, even what ignores SIGTERM and outlived the kernel re-parented to init."""
    config = {"plugins": {"local": {"restart_check_interval": 0.2}}}
    async with himalia_server(config=config) as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"]) as ws:
        old_groups = kernel_groups(server, kernel["id"])
        child = psutil.Process(int((await ws.execute(STUBBORN_CHILD)).stdout))
        assert os.getpgid(child.pid) in old_groups
        if how == "rest":
            r = await server.post(f"/api/kernels/{kernel['id']}/restart")
            assert r.status == 200, await r.text()
        else:
            # the kernel alone dies: its child stays (as after an OOM kill), then the restarter notices
            os.kill(kernel_processes(server, kernel["id"])[0].pid, signal.SIGKILL)
            await ws.wait_for(lambda m: m["header"]["msg_type"] == "status"
                              and m["content"]["execution_state"] == "restarting")
            await ws.wait_for(lambda m: m["header"]["msg_type"] == "status"
                              and m["content"]["execution_state"] == "idle")
        assert (await ws.execute("print('back')")).stdout == "back\n"
        assert kernel_groups(server, kernel["id"]).isdisjoint(old_groups)
        assert_gone([child])
        assert group_processes(old_groups) == []


async def test_a_start_cancelled_after_the_launch_leaves_no_process(himalia_server, monkeypatch):
    async with himalia_server() as server:
        inner = server.app[SERVICES].kernel_provider
        launched = []
        on_started = type(inner)._on_started

        def cancel_when_launched(self, kernel):
            launched.append(kernel.km.provisioner.pid)
            asyncio.current_task().cancel()  # as if the client went away now
            on_started(self, kernel)

        monkeypatch.setattr(type(inner), "_on_started", cancel_when_launched)
        task = asyncio.create_task(inner.start_kernel("python3"))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
        assert launched and await inner.list_kernels() == []
        assert_pid_gone(launched[0])


async def test_a_shutdown_cancelled_half_way_still_ends_the_kernel(himalia_server):
    async with himalia_server() as server:
        kernel = await (await server.post("/api/kernels", json={})).json()
        async with connect(server, kernel["id"]) as ws:
            child = psutil.Process(int((await ws.execute(STUBBORN_CHILD)).stdout))
        inner = server.app[SERVICES].kernel_provider
        km = inner._kernels[kernel["id"]].km
        entered = asyncio.Event()
        shutdown_kernel = km.shutdown_kernel

        async def shutdown_in_progress(**kw):
            entered.set()
            await shutdown_kernel(**kw)

        km.shutdown_kernel = shutdown_in_progress
        task = asyncio.create_task(inner.shutdown_kernel(kernel["id"]))
        await asyncio.wait_for(entered.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert await inner.list_kernels() == []
        assert_gone([child])


async def test_channels_of_a_cancelled_open_are_closed(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel:
        inner = server.app[SERVICES].kernel_provider
        record = inner._kernels[kernel["id"]]
        before = set(record.channels)
        task = asyncio.create_task(inner.open_channels(kernel["id"]))
        await asyncio.sleep(0)  # one step: open_channels connects, then waits for the kernel's answer
        [opened] = record.channels - before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert record.channels == before and opened._closed and not opened._sockets


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


async def test_reconnect_replay_is_bounded_by_the_output_log_and_says_what_is_gone(himalia_server, tmp_path):
    flag = tmp_path / "go"
    config = {"plugins": {"kernels": {"output_log_max_messages": 5}}}
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
            assert "no longer held" in notice["content"]["text"] and "the last 5 messages" in notice["content"]["text"]
            assert "output_log_max_messages" in notice["content"]["text"]
            # what was kept is the newest output (stray iopub traffic under load may leave none of it)
            assert "".join(f"{i}\n" for i in range(20)).endswith(ex.stdout), ex.stdout
            assert len(ex.iopub) <= 6 and ex.states[-1] == "idle"
            assert ex.reply["content"]["status"] == "ok"


async def test_a_slow_session_replaced_by_a_new_connection(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel:
        async with connect(server, kernel["id"], V1, session_id="same") as first:
            async with connect(server, kernel["id"], V1, session_id="same") as second:
                async with asyncio.timeout(10):  # a status frame queued before the takeover may come first
                    while (closed := await first.ws.receive()).type.name not in ("CLOSE", "CLOSED", "CLOSING"):
                        assert closed.type.name == "BINARY", closed
                assert (await second.execute("print(1)")).stdout == "1\n"
                model = await (await server.get(f"/api/kernels/{kernel['id']}")).json()
                assert model["connections"] == 1


def install_kernelspec(name: str, argv: list[str], **extra) -> None:
    spec_dir = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / name  # per test, see tests/conftest.py
    spec_dir.mkdir(parents=True)
    spec = {"argv": argv, "display_name": name, "language": "python", **extra}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


async def test_interrupt_by_message(himalia_server):
    install_kernelspec("by-message", [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       interrupt_mode="message")
    async with himalia_server() as server, running_kernel(server, "by-message") as kernel, \
            connect(server, kernel["id"]) as ws:
        assert server.app[SERVICES].kernel_provider._kernels[kernel["id"]].km.kernel_spec.interrupt_mode == "message"
        msg_id = await ws.send("shell", "execute_request",
                               execute_content("import time; print('sleeping', flush=True); time.sleep(30)"))
        # interrupt once the cell's code runs (its own line says so): "busy" comes while ipykernel takes
        # the request, still ignoring interrupts, and one landing there is lost (seen in CI)
        await ws.wait_for(lambda m: m["header"]["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id)
        assert (await server.post(f"/api/kernels/{kernel['id']}/interrupt")).status == 204
        ex = await ws.collect(msg_id)
        assert ex.reply["content"]["status"] == "error"
        assert ex.reply["content"]["ename"] == "KeyboardInterrupt"


# a real ipykernel (it answers, so it starts: readiness is part of the provider contract) that ignores
# shutdown_request, SIGINT and SIGTERM, telling the test which signals reached it over a TCP connection
DEAF_KERNEL = """
import signal, socket, sys
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

async def ignore_shutdown(self, *args, **kwargs):
    pass

IPythonKernel.shutdown_request = ignore_shutdown
# ipykernel swaps in Python's default SIGINT handler while it handles a message (a late start-up
# kernel_info, say): keep ours, so every signal is reported whenever it comes
IPythonKernel.pre_handler_hook = lambda self: None
IPythonKernel.post_handler_hook = lambda self: None
report = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def note(signum, frame):
    report.sendall(signal.Signals(signum).name.encode() + b"\\n")
app = IPKernelApp.instance()
app.initialize(sys.argv[2:])
signal.signal(signal.SIGINT, note)
signal.signal(signal.SIGTERM, note)
report.sendall(b"ready\\n")
app.start()
"""


async def test_shutdown_escalates_to_sigterm_then_sigkill(himalia_server, tmp_path):
    script = tmp_path / "deaf_kernel.py"
    script.write_text(DEAF_KERNEL)
    reports: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    listener = await asyncio.start_server(lambda reader, writer: reports.put_nowait(reader), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    install_kernelspec("deaf", [sys.executable, str(script), str(port), "-f", "{connection_file}"])
    config = {"plugins": {"local": {"shutdown_wait_time": 1.0}}}
    try:
        async with himalia_server(config=config) as server:
            r = await server.post("/api/kernels", json={"name": "deaf"})
            assert r.status == 201, await r.text()
            kid = (await r.json())["id"]
            process = server.app[SERVICES].kernel_provider._kernels[kid].km.provisioner.process
            report = await asyncio.wait_for(reports.get(), 30)
            assert await asyncio.wait_for(report.readline(), 30) == b"ready\n"
            assert (await server.delete(f"/api/kernels/{kid}")).status == 204
            # the interrupt that starts every shutdown, then SIGTERM, then SIGKILL (which it cannot see)
            lines = await asyncio.wait_for(report.read(), 30)
            assert lines.split() == [b"SIGINT", b"SIGTERM"]
            assert process.returncode == -signal.SIGKILL
    finally:
        listener.close()
        await listener.wait_closed()


async def _stalled_websocket(server, kernel_id: str, session_id: str) -> socket.socket:
    """A websocket client that completes the handshake and then never reads (a small receive buffer,
    so what it leaves unread piles up in the server, not in this machine's socket buffers)."""
    port = int(server.url.split(":")[2].split("/")[0])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /api/kernels/{kernel_id}/channels?session_id={session_id} HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: token {server.token}\r\n\r\n")
    await loop.sock_sendall(sock, request.encode())
    head = b""
    async with asyncio.timeout(30):
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)  # byte by byte: not one byte past the handshake
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_stalled_clients_are_bounded_server_wide(himalia_server, caplog):
    """issue 20 #9: each client may leave client_max_backlog_bytes unread, but all together no more
    than server_max_backlog_bytes: past it, the client with the largest backlog is disconnected (1013),
    with the reason logged; a client that reads keeps everything."""
    cap = 16 * 1024 * 1024
    config = {"plugins": {"kernels": {"server_max_backlog_bytes": cap, "client_max_backlog_bytes": 64 * 1024 * 1024}}}
    async with himalia_server(config=config) as server, running_kernel(server) as kernel:
        relay = server.app[SERVICES].kernel_relay
        stalled = [await _stalled_websocket(server, kernel["id"], f"stalled-{i}") for i in range(4)]
        try:
            assert relay.connections(kernel["id"]) == 4
            async with connect(server, kernel["id"], V1, session_id="reader") as reader:
                for i in range(40):  # 1 MB of output at a time, read in full by the reader before the next
                    ex = await reader.execute(f"print('{i % 10}' * 1_000_000)")
                    assert ex.stdout == str(i % 10) * 1_000_000 + "\n"
                assert relay.connections(kernel["id"]) == 1  # every stalled one was cut off; the reader stays
                assert relay.backlog.disconnected >= 1
                assert relay.backlog.total <= cap
            messages = [r.getMessage() for r in caplog.records if "server_max_backlog_bytes" in r.getMessage()]
            assert messages and "disconnecting client stalled-" in messages[0]
        finally:
            for sock in stalled:
                sock.close()


class LogFileObserver:
    """An event logger as a plugin author writes one: a file opened by a resource, closed at its exit,
    and the kernel events written to it while it is open."""

    def __init__(self):
        self.open = False
        self.written: list[tuple[str, str]] = []
        self.too_late: list[tuple[str, str]] = []

    @hookimpl
    def himalia_resources(self, config):
        async def log_file(app):
            self.open = True
            yield
            self.open = False

        return [log_file]

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason, app):
        (self.written if self.open else self.too_late).append((kernel_id, reason))


@pytest.mark.parametrize("name", ["aaa_observer", "zzz_observer"])
async def test_kernels_stop_at_shutdown_before_any_plugin_resource_exits(himalia_server, name):
    """The shutdown phase stops every kernel, firing kernel_stopped, while every resource still runs,
    whatever the observer's name."""
    observer = LogFileObserver()
    async with himalia_server(plugins={name: observer}) as server:
        kernel = await (await server.post("/api/kernels", json={})).json()
        procs = kernel_processes(server, kernel["id"])
    assert observer.written == [(kernel["id"], "shutdown")] and observer.too_late == []
    assert_gone(procs)
