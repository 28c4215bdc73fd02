"""Reconnecting with the same session id replays what the session missed from the kernel's output
log (issue 17), with real ipykernel kernels and real websocket clients: exactly the missed messages,
in order, the session's replies in place; many disconnected sessions share one copy of the output."""

from __future__ import annotations

import asyncio
from typing import Any

from himalia_kernels.hub import SessionCursor
from kernel_ws import TIMEOUT, KernelWS, connect, execute_content, running_kernel

from himalia import SERVICES


async def until(predicate: Any) -> None:
    """Wait (bounded) for a relay state change that has no event of its own: a websocket's handler
    ending after the client closed it."""
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.01)


def is_idle(msg: dict[str, Any], msg_id: str) -> bool:
    return (msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == msg_id)


async def receive_until(ws: KernelWS, done: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while not done(seen):
            seen.append(await ws.recv())
    return seen


def stdout(msgs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in msgs
                   if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout")


async def test_a_session_dropped_mid_output_gets_exactly_the_missed_messages_in_order(himalia_server, tmp_path):
    first_flag, second_flag = tmp_path / "first", tmp_path / "second"
    first_code = ("import os, time\nfor i in range(5): print(i, flush=True)\n"
                  f"while not os.path.exists({str(first_flag)!r}): time.sleep(0.01)\n"
                  "for i in range(5, 10): print(i, flush=True)")
    second_code = (f"import os, time\nwhile not os.path.exists({str(second_flag)!r}): time.sleep(0.01)\n"
                   "print('second', flush=True)")
    async with himalia_server() as server, running_kernel(server) as kernel:
        hub = server.app[SERVICES].kernels.hubs[kernel["id"]]
        async with connect(server, kernel["id"]) as watcher:
            async with connect(server, kernel["id"]) as ws:
                session = ws.session_id
                first = await ws.send("shell", "execute_request", execute_content(first_code))
                second = await ws.send("shell", "execute_request", execute_content(second_code))
                got = await receive_until(ws, lambda seen: stdout(seen).endswith("4\n"))
                # the kernel now waits for the first flag: nothing more is on its way to this websocket
            await until(lambda: session in hub.buffers)
            assert isinstance(hub.buffers[session], SessionCursor)
            first_flag.write_text("go")
            watched = await receive_until(watcher, lambda seen: seen
                                          and seen[-1]["header"]["msg_type"] == "execute_input"
                                          and seen[-1]["parent_header"].get("msg_id") == second)
            second_flag.write_text("go")
            watched += await receive_until(watcher, lambda seen: seen and is_idle(seen[-1], second))
            missed = [m["header"]["msg_id"] for m in watched if m["channel"] == "iopub"]
            missed = missed[missed.index(got[-1]["header"]["msg_id"]) + 1:]

            async with connect(server, kernel["id"], session_id=session) as again:
                replayed = await receive_until(again, lambda seen: {
                    (m["parent_header"].get("msg_id"), m["header"]["msg_type"]) for m in seen
                } >= {(second, "execute_reply"), (second, "status")} and any(is_idle(m, second) for m in seen))
        iopub = [m for m in replayed if m["channel"] == "iopub"]
        assert [m["header"]["msg_id"] for m in iopub] == missed and is_idle(iopub[-1], second)
        assert stdout(replayed) == "5\n6\n7\n8\n9\nsecond\n"
        replies = [m for m in replayed if m["channel"] == "shell"]
        assert [(m["parent_header"]["msg_id"], m["content"]["status"]) for m in replies] == \
            [(first, "ok"), (second, "ok")]
        # the second cell's reply came after its execute_input (the flag held the kernel between them)
        position = {id(m): i for i, m in enumerate(replayed)}
        second_input = next(m for m in replayed if m["header"]["msg_type"] == "execute_input"
                            and m["parent_header"]["msg_id"] == second)
        assert position[id(second_input)] < position[id(replies[1])]


async def test_sixteen_disconnected_sessions_share_one_copy_and_each_gets_its_lines(himalia_server):
    lines = 200
    config = {"plugins": {"kernels": {"buffer_max_sessions": 17}}}  # the 16, and the live one once it leaves
    async with himalia_server(config=config) as server, running_kernel(server) as kernel:
        hub = server.app[SERVICES].kernels.hubs[kernel["id"]]
        sessions = []
        for _ in range(16):
            async with connect(server, kernel["id"]) as ws:
                sessions.append(ws.session_id)
        await until(lambda: len(hub.buffers) == 16)
        async with connect(server, kernel["id"]) as live:
            ex = await live.execute(f"for i in range({lines}): print(i, flush=True)")
            assert ex.stdout == "".join(f"{i}\n" for i in range(lines))
        await until(lambda: len(hub.buffers) == 17)
        assert all(isinstance(b, SessionCursor) and b.bytes == 0 and not b.own for b in hub.buffers.values())
        for session in sessions:
            async with connect(server, kernel["id"], session_id=session) as again:
                replayed = await receive_until(again, lambda seen: any(is_idle(m, ex.msg_id) for m in seen))
                assert stdout(replayed) == "".join(f"{i}\n" for i in range(lines))
