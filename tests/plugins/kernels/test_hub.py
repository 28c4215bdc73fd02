"""The relay's bookkeeping at unit level: what a client that goes away mid-send leaves for its session,
and the reconnect buffer's caps. (The relay over real kernels and websockets: test_channels.py.)"""

from __future__ import annotations

import asyncio
import json

from himalia_kernels.config import KernelsConfig
from himalia_kernels.hub import KernelHub, SessionBuffer

from himalia import ChannelsClosed, KernelMessage, wire


def message(channel: str, msg_type: str, *, parent: str = "request", session: str = "s1",
            content: bytes = b"{}") -> KernelMessage:
    header = json.dumps({"msg_id": f"{msg_type}-{id(content)}", "msg_type": msg_type, "session": "kernel"})
    parent_header = json.dumps({"msg_id": parent, "session": session})
    return KernelMessage(channel, header.encode(), parent_header.encode(), b"{}", content)


class QuietChannels:
    """Channels on which the kernel never says anything."""

    def __init__(self):
        self.closed = asyncio.Event()

    async def recv(self) -> KernelMessage:
        await self.closed.wait()
        raise ChannelsClosed("k")

    async def send(self, msg: KernelMessage) -> None:
        pass

    async def close(self) -> None:
        self.closed.set()


class QuietKernels:
    async def open_channels(self, kernel_id: str) -> QuietChannels:
        return QuietChannels()


class Transport:
    def __init__(self, closing: bool):
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        raise ConnectionResetError("gone")

    def writelines(self, chunks) -> None:
        raise ConnectionResetError("gone")


class WebSocket:
    """A websocket whose connection is lost: every send fails."""

    closed = False

    def __init__(self):
        self.sent: list[bytes] = []

    async def send_frame(self, data: bytes, opcode) -> None:
        raise ConnectionResetError("gone")

    async def close(self, **kw) -> None:
        pass


async def relay() -> KernelHub:
    hub = KernelHub("k", QuietKernels(), KernelsConfig(), lambda hub, state, reason: None)
    await hub.wait_ready()
    return hub


async def test_a_message_to_a_closing_client_is_kept_for_its_session():
    hub = await relay()
    try:
        hub.attach(WebSocket(), wire.V1, "s1", Transport(closing=True))
        idle = message("iopub", "status", content=b'{"execution_state": "idle"}')
        await hub._dispatch(idle)
        assert "s1" not in hub.clients
        assert list(hub.buffers["s1"].replay()) == [idle]
    finally:
        await hub.close()


async def test_a_reply_whose_send_fails_is_kept_for_its_session():
    hub = await relay()
    try:
        client = hub.attach(WebSocket(), wire.V1, "s1", Transport(closing=False))
        reply = message("shell", "execute_reply", parent="req-1")
        hub.owners["req-1"] = client.session_key
        await hub._dispatch(reply)
        hub._flush()  # the write at the end of the loop iteration
        assert "s1" not in hub.clients
        assert list(hub.buffers["s1"].replay()) == [reply]
    finally:
        await hub.close()


async def test_a_replay_cut_short_keeps_what_was_not_sent():
    hub = await relay()
    try:
        hub.attach(WebSocket(), wire.V1, "s1", Transport(closing=True))
        first, last = message("iopub", "stream"), message("iopub", "status")
        await hub._dispatch(first)
        await hub._dispatch(last)
        client = hub.attach(WebSocket(), wire.V1, "s1", Transport(closing=False))  # reconnects, then is lost
        await client.flush_replay()
        assert list(hub.buffers["s1"].replay()) == [first, last]
    finally:
        await hub.close()


def test_buffer_caps_count_replies_too_and_say_what_was_dropped():
    """Output goes first, then the oldest replies: over the cap, nothing is kept for ever."""
    buf = SessionBuffer(max_messages=3, max_bytes=10**6)
    replies = [message("shell", "execute_reply", parent=f"r{i}") for i in range(5)]
    for msg in replies:
        buf.add(msg)
    buf.add(message("iopub", "stream"))
    notice, *kept = buf.replay()
    assert kept == replies[2:]
    text = json.loads(notice.content)["text"]
    assert "1 output messages and 2 replies or input requests" in text


def test_buffer_byte_cap_includes_kept_replies():
    big = b'{"data": "' + b"x" * 1000 + b'"}'
    buf = SessionBuffer(max_messages=100, max_bytes=2500)
    for i in range(4):
        buf.add(message("stdin", "input_request", parent=f"r{i}", content=big))
    assert buf.bytes <= 2500
    assert len(buf.kept) + len(buf.items) == 2 and buf.dropped_replies == 2


async def test_reconnect_buffers_are_bounded_server_wide():
    """issue 20 #9's sibling: each disconnected session keeps buffer_max_bytes, and all of them, across
    kernels, buffer_max_total_bytes; past it the oldest sessions' buffers are emptied, and they are told."""
    from himalia_kernels.backlog import ReplayBudget

    config = KernelsConfig(buffer_max_bytes=10**6, buffer_max_total_bytes=5000)
    budget = ReplayBudget(config.buffer_max_total_bytes)
    hubs = [KernelHub(k, QuietKernels(), config, lambda hub, state, reason: None, None, budget) for k in ("k1", "k2")]
    for hub in hubs:
        await hub.wait_ready()
    try:
        for hub, session in ((hubs[0], "old"), (hubs[1], "new")):
            client = hub.attach(WebSocket(), wire.V1, session, Transport(closing=True))
            hub.detach(client)
        chunk = b'{"text": "' + b"x" * 1000 + b'"}'
        for _ in range(3):
            for hub in hubs:
                await hub._dispatch(message("iopub", "stream", content=chunk))
        assert budget.total <= 5000
        # the session that left first was emptied; the newer one keeps its output
        assert hubs[0].buffers["old"].bytes == 0 and hubs[1].buffers["new"].bytes > 0
        notice, *rest = hubs[0].buffers["old"].replay()
        assert rest == [] and "buffer_max_total_bytes" in json.loads(notice.content)["text"]
        assert len(hubs[1].buffers["new"].replay()) == 3
    finally:
        for hub in hubs:
            await hub.close()
    assert budget.total == 0
