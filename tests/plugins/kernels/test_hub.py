"""The relay's bookkeeping at unit level: what a client that goes away mid-send leaves for its session
(a cursor into the kernel's output log, and its own replies), and the caps. (The relay over real
kernels and websockets: test_channels.py.)"""

from __future__ import annotations

import asyncio
import json

from himalia_kernels.config import KernelsConfig
from himalia_kernels.hub import KernelHub, SessionCursor
from himalia_kernels.outputlog import OutputLog

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


def messages(replay) -> list[KernelMessage]:
    return [msg for msg, _tag in replay]


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
        assert messages(hub.buffers["s1"].replay()) == [idle]
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
        assert messages(hub.buffers["s1"].replay()) == [reply]
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
        assert messages(hub.buffers["s1"].replay()) == [first, last]
    finally:
        await hub.close()


def test_a_session_keeps_its_replies_bounded_and_says_what_was_dropped():
    """The caps bound a session's own replies and input requests (its output is the log's): the oldest
    go first, and the replay says how many."""
    cursor = SessionCursor(OutputLog(100, 10**6), 0, max_messages=3, max_bytes=10**6)
    replies = [message("shell", "execute_reply", parent=f"r{i}") for i in range(5)]
    for msg in replies:
        cursor.add(msg, 0)
    notice, *kept = messages(cursor.replay())
    assert kept == replies[2:]
    assert "2 replies or input requests" in json.loads(notice.content)["text"]
    big = b'{"data": "' + b"x" * 1000 + b'"}'
    cursor = SessionCursor(OutputLog(100, 10**6), 0, max_messages=100, max_bytes=2500)
    for i in range(4):
        cursor.add(message("stdin", "input_request", parent=f"r{i}", content=big), 0)
    assert cursor.bytes <= 2500 and len(cursor.own) == 2 and cursor.dropped == 2


def test_the_replay_puts_replies_where_they_came_and_reports_a_gap_once():
    log = OutputLog(max_messages=3, max_bytes=10**6)
    out = [message("iopub", "stream", content=json.dumps({"text": str(i)}).encode()) for i in range(6)]
    reply = message("shell", "execute_reply")
    cursor = SessionCursor(log, 0, max_messages=10, max_bytes=10**6)
    seqs = [log.append(m) for m in out[:2]]
    cursor.add(reply, seqs[-1])  # arrived after the second output
    for m in out[2:]:
        log.append(m)
    replay = cursor.replay()
    notice, *rest = messages(replay)
    assert "3 output messages" in json.loads(notice.content)["text"] and "output_log_max_messages" in \
        json.loads(notice.content)["text"]
    assert rest == [reply, *out[3:]]  # the reply arrived before what is left; the gap is out[:3]
    # a client that was sent the notice stands after the gap: reconnecting again reports nothing new
    again = SessionCursor(log, replay[0][1], max_messages=10, max_bytes=10**6)
    assert messages(again.replay()) == out[3:]


async def test_disconnected_sessions_hold_no_output_of_their_own():
    """issue 17: 16 disconnected sessions cost the kernel one output log, not 16 copies: each keeps a
    cursor, and replays the log's own messages."""
    hub = await relay()
    try:
        for i in range(16):
            hub.detach(hub.attach(WebSocket(), wire.V1, f"s{i}", Transport(closing=True)))
        out = [message("iopub", "stream", content=json.dumps({"text": str(i)}).encode()) for i in range(100)]
        for msg in out:
            await hub._dispatch(msg)
        assert len(hub.buffers) == 16
        for cursor in hub.buffers.values():
            assert isinstance(cursor, SessionCursor) and not cursor.own and cursor.bytes == 0
            replayed = messages(cursor.replay())
            assert len(replayed) == 100 and all(a is b for a, b in zip(replayed, out))
    finally:
        await hub.close()


async def test_reconnect_buffers_are_bounded_server_wide():
    """issue 20 #9's sibling: each disconnected session keeps buffer_max_bytes of replies and input
    requests, and all of them, across kernels, buffer_max_total_bytes; past it the oldest sessions' are
    emptied, and they are told."""
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
        for i in range(3):
            for hub, session in ((hubs[0], "old"), (hubs[1], "new")):
                await hub._dispatch(message("stdin", "input_request", parent=f"r{i}", session=session,
                                            content=chunk))
        assert budget.total <= 5000
        # the session that left first was emptied; the newer one keeps its requests
        assert hubs[0].buffers["old"].bytes == 0 and hubs[1].buffers["new"].bytes > 0
        notice, *rest = messages(hubs[0].buffers["old"].replay())
        assert rest == [] and "buffer_max_total_bytes" in json.loads(notice.content)["text"]
        assert len(hubs[1].buffers["new"].replay()) == 3
    finally:
        for hub in hubs:
            await hub.close()
    assert budget.total == 0
