"""One output log per kernel (issue 17): numbered iopub, read after a sequence number over REST
(`GET /api/kernels/{id}/outputs?since=N`) or on the websocket (`?since=N`, then live), with real
ipykernel kernels and real websocket clients."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import Any

import pytest
from himalia_kernels.outputlog import OutputLog
from kernel_ws import TIMEOUT, V1, KernelWS, execute_content, running_kernel

from himalia import wire


@asynccontextmanager
async def connect_since(server: Any, kernel_id: str, since: int):
    ws = await asyncio.wait_for(server.ws_connect(
        f"/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}&since={since}", protocols=(V1,)), TIMEOUT)
    try:
        yield KernelWS(ws, V1, "since")
    finally:
        await asyncio.wait_for(ws.close(), 10)


def test_the_log_is_bounded_and_numbers_only_grow():
    log = OutputLog(max_messages=3, max_bytes=10**6)
    seqs = [log.append(wire.message("iopub", "stream", {"name": "stdout", "text": str(i)})) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert (log.oldest_seq, log.next_seq) == (3, 6)
    gap, entries = log.after(0)
    assert gap == 2 and [s for s, _ in entries] == [3, 4, 5]
    assert log.after(2)[0] == 0 and log.after(4) == (0, [entries[-1]])
    catch_up = log.catch_up(0)
    assert [m.msg_type for m, _ in catch_up] == ["stream"] * 4 and b"2 output messages" in catch_up[0][0].content
    assert [seq for _, seq in catch_up] == [2, 3, 4, 5]  # the notice stands where the gap ends


async def test_rest_returns_the_log_after_a_sequence_number(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel:
        async with connect_since(server, kernel["id"], 0) as ws:
            await ws.execute("for i in range(5): print(i, flush=True)")
        r = await server.get(f"/api/kernels/{kernel['id']}/outputs?since=0")
        assert r.status == 200
        body = await r.json()
        seqs = [m["seq"] for m in body["messages"]]
        assert seqs == sorted(set(seqs)) and body["next_seq"] == seqs[-1] + 1 and body["gap"] == 0
        text = "".join(m["content"]["text"] for m in body["messages"]
                       if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout")
        assert text == "0\n1\n2\n3\n4\n"
        later = await (await server.get(f"/api/kernels/{kernel['id']}/outputs?since={seqs[-1]}")).json()
        assert later["messages"] == []
        two = await (await server.get(f"/api/kernels/{kernel['id']}/outputs?since=0&limit=2")).json()
        assert [m["seq"] for m in two["messages"]] == seqs[:2]
        bad = await server.get(f"/api/kernels/{kernel['id']}/outputs?since=-1")
        assert bad.status == 400 and (await bad.json())["reason"] == "bad sequence number"
        assert (await server.get("/api/kernels/nope/outputs")).status == 404


async def test_a_new_client_catches_up_with_since_and_continues_live(himalia_server, tmp_path):
    flag = tmp_path / "go"
    code = ("import os, time\nfor i in range(10): print(i, flush=True)\n"
            f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
            "for i in range(10, 20): print(i, flush=True)")
    async with himalia_server() as server, running_kernel(server) as kernel:
        async with connect_since(server, kernel["id"], 0) as first:
            msg_id = await first.send("shell", "execute_request", execute_content(code))
            text = ""
            while "9\n" not in text:
                msg = await first.wait_for(lambda m: m["header"]["msg_type"] == "stream"
                                           and m["content"]["name"] == "stdout")
                text += msg["content"]["text"]
            # a new client (a reloaded page) asks for everything; the cell goes on while it catches up
            async with connect_since(server, kernel["id"], 0) as late:
                flag.write_text("go")
                seen = []
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        msg = await late.recv()
                        seen.append(msg)
                        if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" \
                                and msg["parent_header"].get("msg_id") == msg_id:
                            break
                streams = "".join(m["content"]["text"] for m in seen
                                  if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout")
                assert streams == "".join(f"{i}\n" for i in range(20)), "a gap or a duplicate"
                # no stale status from the log: the cell's "busy" came before this client and is not
                # replayed; its only status is the live idle (statuses of other requests, such as the
                # kernel's start-up kernel_info answered late on a loaded machine, are live too)
                statuses = [m for m in seen if m["header"]["msg_type"] == "status"
                            and m["parent_header"].get("msg_id") == msg_id]
                assert statuses == [seen[-1]]


async def test_overflow_is_reported_once(himalia_server):
    config = {"plugins": {"kernels": {"output_log_max_messages": 6}}}
    async with himalia_server(config=config) as server, running_kernel(server) as kernel:
        async with connect_since(server, kernel["id"], 0) as ws:
            await ws.execute("for i in range(30): print(i, flush=True)")
        async with connect_since(server, kernel["id"], 0) as late:
            await late.send("shell", "kernel_info_request", {})
            seen = []
            async with asyncio.timeout(TIMEOUT):
                while not seen or seen[-1]["header"]["msg_type"] != "kernel_info_reply":
                    seen.append(await late.recv())
        notices = [m for m in seen if m["header"]["msg_type"] == "stream" and "no longer held" in m["content"]["text"]]
        assert len(notices) == 1 and seen[0] is notices[0]
        replayed = "".join(m["content"]["text"] for m in seen[1:] if m["header"]["msg_type"] == "stream")
        assert replayed and "29\n" in replayed and "0\n1\n" not in replayed


@pytest.mark.parametrize("since", ["x", "1.5", "-3"])
async def test_a_bad_since_on_the_websocket_is_a_400(himalia_server, since):
    async with himalia_server() as server, running_kernel(server) as kernel:
        r = await server.get(f"/api/kernels/{kernel['id']}/channels?since={since}")
        assert r.status == 400 and (await r.json())["reason"] == "bad sequence number"


async def test_a_session_dropped_mid_output_gets_exactly_the_lines_it_missed(himalia_server, tmp_path):
    """issue 17: the reconnect replay comes from the log, after where the session's socket stood: no line
    twice, none missing, the reply and the idle status in their places."""
    from kernel_ws import connect

    flag = tmp_path / "go"
    code = ("import os, time\nfor i in range(10): print(i, flush=True)\n"
            f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
            "for i in range(10, 20): print(i, flush=True)\n")
    async with himalia_server() as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"]) as watcher:
        async with connect(server, kernel["id"]) as ws:
            session = ws.session_id
            msg_id = await ws.send("shell", "execute_request", execute_content(code))
            seen = ""
            while not seen.endswith("9\n"):
                msg = await ws.wait_for(lambda m: m["header"]["msg_type"] == "stream"
                                        and m["parent_header"].get("msg_id") == msg_id)
                seen += msg["content"]["text"]
            assert seen == "".join(f"{i}\n" for i in range(10))
        flag.write_text("go")  # the rest is printed while the session is away
        await watcher.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id
                               and m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle")
        async with connect(server, kernel["id"], session_id=session) as again:
            ex = await again.collect(msg_id)
            assert ex.stdout == "".join(f"{i}\n" for i in range(10, 20))
            assert ex.reply["content"]["status"] == "ok" and ex.states == ["idle"]
            assert not [m for m in again.other if m["header"]["msg_type"] == "stream"]
