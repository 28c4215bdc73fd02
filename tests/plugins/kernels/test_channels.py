"""The kernel websocket with real ipykernel kernels, in both wire protocols."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from kernel_ws import PROTOCOLS, connect, execute_content, kernel_processes, running_kernel

pytestmark = pytest.mark.parametrize("protocol", PROTOCOLS)

ECHO_TARGET = '''
k = get_ipython().kernel
def _echo_target(comm, open_msg):
    @comm.on_msg
    def _echo(msg):
        buffers = [bytes(b) for b in msg["buffers"]]
        k.session.send(k.iopub_socket, "display_data",
                       {"data": {"text/plain": "echoed"}, "metadata": {}, "transient": {}},
                       parent=k.get_parent(), buffers=buffers[::-1], ident=b"display_data")
k.comm_manager.register_target("echo", _echo_target)
'''


async def test_execute_output_buffers_errors_and_stdin(himalia_server, protocol):
    async with himalia_server() as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"], protocol) as ws:
        ex = await ws.execute("print('hello'); print('world')")
        assert ex.stdout == "hello\nworld\n"
        assert ex.reply["content"]["status"] == "ok"
        assert ex.states == ["busy", "idle"]

        assert (await ws.execute(ECHO_TARGET)).reply["content"]["status"] == "ok"
        await ws.send("shell", "comm_open", {"comm_id": "c-" + protocol, "target_name": "echo", "data": {}})
        payload = [b"\x00\x01\x02binary\xff", bytes(range(256)) * 4]
        msg_id = await ws.send("shell", "comm_msg", {"comm_id": "c-" + protocol, "data": {}}, buffers=payload)
        shown = await ws.wait_for(lambda m: m["header"]["msg_type"] == "display_data")
        assert shown["parent_header"]["msg_id"] == msg_id
        assert shown["content"]["data"] == {"text/plain": "echoed"}
        assert [bytes(b) for b in shown["buffers"]] == payload[::-1]

        ex = await ws.execute("1/0")
        assert ex.reply["content"]["status"] == "error"
        [error] = ex.of_type("error")
        assert error["content"]["ename"] == "ZeroDivisionError"

        ex = await ws.execute("name = input('who? '); print('hi', name)", answer="ada")
        assert [m["header"]["msg_type"] for m in ex.stdin] == ["input_request"]
        assert ex.stdin[0]["content"]["prompt"] == "who? "
        assert ex.stdout.endswith("hi ada\n")


async def test_interrupt_sleep_gives_keyboard_interrupt(himalia_server, protocol):
    code = "import time; print('sleeping'); time.sleep(30)"
    async with himalia_server() as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"], protocol) as ws:
        msg_id = await ws.send("shell", "execute_request", execute_content(code))
        # interrupt once the cell sleeps: its line, not any other output (a loaded machine makes
        # debugpy print a warning at kernel start-up), and no flush (the io thread sends the line)
        await ws.wait_for(lambda m: m["header"]["msg_type"] == "stream"
                          and m["parent_header"].get("msg_id") == msg_id)
        r = await server.post(f"/api/kernels/{kernel['id']}/interrupt")
        assert r.status == 204
        ex = await ws.collect(msg_id, timeout=20)
        assert ex.reply["content"]["status"] == "error"
        assert ex.reply["content"]["ename"] == "KeyboardInterrupt"
        assert ex.of_type("error")[0]["content"]["ename"] == "KeyboardInterrupt"
        assert (await ws.execute("print('still here')")).stdout == "still here\n"


async def test_restart_loses_state(himalia_server, protocol):
    async with himalia_server() as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"], protocol) as ws:
        await ws.execute("x = 41")
        old = kernel_processes(server, kernel["id"])[0]
        r = await server.post(f"/api/kernels/{kernel['id']}/restart")
        assert r.status == 200, await r.text()
        model = await r.json()
        assert model["id"] == kernel["id"] and model["reason"] == "restart requested"
        assert not old.is_running() or old.status() == "zombie"
        ex = await ws.execute("print(x + 1)")
        assert ex.reply["content"]["status"] == "error"
        assert ex.of_type("error")[0]["content"]["ename"] == "NameError"
        # as jupyter_server: 'restarting' on iopub means the kernel died and was restarted by the
        # server; clients that asked for the restart know it (JupyterLab would show "kernel died")
        states = [m["content"]["execution_state"] for m in ws.other if m["header"]["msg_type"] == "status"]
        assert "restarting" not in states


async def test_killed_kernel_is_restarted_and_reported(himalia_server, protocol):
    config = {"plugins": {"local": {"restart_check_interval": 1.0}}}
    async with himalia_server(config=config) as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"], protocol) as ws:
        await ws.execute("x = 1")
        os.kill(kernel_processes(server, kernel["id"])[0].pid, signal.SIGKILL)
        restarting = await ws.wait_for(lambda m: m["header"]["msg_type"] == "status"
                                       and m["content"]["execution_state"] == "restarting")
        assert "signal 9" in restarting["content"]["reason"]
        await ws.wait_for(lambda m: m["header"]["msg_type"] == "status"
                          and m["content"]["execution_state"] == "idle")
        ex = await ws.execute("print('back', 'x' in globals())")
        assert ex.stdout == "back False\n"
        model = await (await server.get(f"/api/kernels/{kernel['id']}")).json()
        assert model["execution_state"] == "idle"
        assert "signal 9" in model["reason"]


async def test_reconnect_with_same_session_replays_output(himalia_server, protocol, tmp_path):
    flag = tmp_path / "go"
    code = (f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
            "print('produced while away')")
    async with himalia_server() as server, running_kernel(server) as kernel:
        async with connect(server, kernel["id"], protocol) as watcher:
            async with connect(server, kernel["id"], protocol) as ws:
                session = ws.session_id
                msg_id = await ws.send("shell", "execute_request", execute_content(code))
                await ws.wait_for(lambda m: m["header"]["msg_type"] == "execute_input"
                          and m["parent_header"].get("msg_id") == msg_id)
            flag.write_text("go")
            # the other client sees the cell finish while the first one is away
            await watcher.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id
                                   and m["header"]["msg_type"] == "status"
                                   and m["content"]["execution_state"] == "idle")
            async with connect(server, kernel["id"], protocol, session_id=session) as again:
                ex = await again.collect(msg_id)
                assert ex.stdout == "produced while away\n"
                assert ex.reply["content"]["status"] == "ok"


async def test_two_clients_share_iopub(himalia_server, protocol):
    async with himalia_server() as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"], protocol) as a, connect(server, kernel["id"], protocol) as b:
        ex = await a.execute("print('to everyone')")
        model = await (await server.get(f"/api/kernels/{kernel['id']}")).json()
        assert model["connections"] == 2
        assert ex.stdout == "to everyone\n"
        seen = await b.wait_for(lambda m: m["header"]["msg_type"] == "stream"
                                and m["parent_header"].get("msg_id") == ex.msg_id)
        assert seen["content"]["text"] == "to everyone\n"
        # the reply went to `a` only: `b`'s next message is its own request's
        ex_b = await b.execute("print('b')")
        assert ex_b.stdout == "b\n"
        assert not [m for m in b.other if m["channel"] == "shell"]


async def test_a_client_reusing_another_clients_msg_id_does_not_get_its_replies(himalia_server, protocol):
    """issue 20 #5: replies and stdin requests are routed by (connection, msg_id). B reuses the msg_id
    of A's pending execute_request, seen on iopub: A still gets its input_request and execute_reply,
    B gets only the answer to its own request, under the msg_id it gave."""
    release = asyncio.Event()
    gate = await asyncio.start_server(lambda r, w: asyncio.ensure_future(_hold(release, w)), "127.0.0.1", 0)
    port = gate.sockets[0].getsockname()[1]
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}))\ns.recv(1)\n"
            "print('got', input('name? '))")
    try:
        async with himalia_server() as server, running_kernel(server) as kernel, \
                connect(server, kernel["id"], protocol, "A") as a, connect(server, kernel["id"], protocol, "B") as b:
            x = await a.send("shell", "execute_request", execute_content(code, allow_stdin=True))
            # B sees A's request on iopub, and reuses its msg_id
            await b.wait_for(lambda m: m["channel"] == "iopub" and m["parent_header"].get("msg_id") == x)
            await b.send("shell", "kernel_info_request", {}, msg_id=x)
            # the server has relayed B's frames once it answers B's next one (control is served at once)
            probe = await b.send("control", "kernel_info_request", {})
            await b.wait_for(lambda m: m["channel"] == "control" and m["parent_header"].get("msg_id") == probe)
            release.set()  # A's cell goes on to input()
            ex = await a.collect(x, answer="ada")
            assert [m["header"]["msg_type"] for m in ex.stdin] == ["input_request"]
            assert ex.reply["header"]["msg_type"] == "execute_reply" and ex.reply["content"]["status"] == "ok"
            assert ex.stdout == "got ada\n"
            mine = await b.wait_for(lambda m: m["channel"] == "shell")
            assert mine["header"]["msg_type"] == "kernel_info_reply" and mine["parent_header"]["msg_id"] == x
            assert not [m for m in b.other if m["channel"] in ("shell", "stdin")]
    finally:
        gate.close()
        await gate.wait_closed()


async def _hold(release: asyncio.Event, writer: asyncio.StreamWriter) -> None:
    await asyncio.wait_for(release.wait(), 60)
    writer.write(b"x")
    await writer.drain()
    writer.close()
