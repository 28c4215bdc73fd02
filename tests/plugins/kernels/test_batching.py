"""issue 22: the relay writes what one loop iteration produced for a client in one transport write, one
websocket frame per message, in order; a lone message is written at once. Unit level with scripted
channels and a recording transport, then end to end with a real kernel flooding iopub."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from himalia_kernels import hub as hub_module
from himalia_kernels.config import KernelsConfig
from himalia_kernels.hub import KernelHub
from kernel_ws import PROTOCOLS, connect, running_kernel

from himalia import ChannelsClosed, KernelMessage, wire

TIMEOUT = 10


def stream(i: int, session: str = "s1") -> KernelMessage:
    header = json.dumps({"msg_id": f"out-{i}", "msg_type": "stream", "session": "kernel"})
    parent = json.dumps({"msg_id": "request", "session": session})
    content = json.dumps({"name": "stdout", "text": f"{i}\n"})
    return KernelMessage("iopub", header.encode(), parent.encode(), b"{}", content.encode())


class ScriptedChannels:
    """Channels whose messages become ready when the test puts them: all put before the relay runs
    again are ready in the same loop iteration, as a burst drained from the kernel's sockets is."""

    def __init__(self):
        self.ready: asyncio.Queue[KernelMessage | None] = asyncio.Queue()

    async def recv(self) -> KernelMessage:
        msg = await self.ready.get()
        if msg is None:
            raise ChannelsClosed("k")
        return msg

    async def send(self, msg: KernelMessage) -> None:
        pass

    async def close(self) -> None:
        self.ready.put_nowait(None)


class ReadyChannels(ScriptedChannels):
    """Scripted channels that say when `recv` would return at once (as the local and gateway ones do)."""

    def recv_ready(self) -> bool:
        return not self.ready.empty()


class ScriptedKernels:
    def __init__(self, channels: ScriptedChannels | None = None):
        self.channels = channels or ScriptedChannels()

    async def open_channels(self, kernel_id: str) -> ScriptedChannels:
        return self.channels


class Transport:
    """Records each write; `wrote` is set on every one."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.wrote.set()

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def frames(self) -> list[tuple[bytes, int]]:
        """Every websocket frame written so far: (payload, opcode)."""
        out = []
        for data in self.writes:
            i = 0
            while i < len(data):
                first, n, i = data[i], data[i + 1] & 0x7F, i + 2
                if n == 126:
                    (n,), i = struct.unpack_from("!H", data, i), i + 2
                elif n == 127:
                    (n,), i = struct.unpack_from("!Q", data, i), i + 8
                out.append((data[i:i + n], first & 0x0F))
                i += n
            assert i == len(data), "a write ends mid-frame"
        return out


class WebSocket:
    closed = False

    async def send_frame(self, data: bytes, opcode) -> None:
        raise AssertionError("the coalescing relay writes through the transport")

    async def close(self, **kw) -> None:
        self.closed = True


def decoded(frame: tuple[bytes, int], protocol: str) -> KernelMessage:
    payload, opcode = frame
    if protocol == wire.V1:
        assert opcode == 0x2
        return wire.from_v1(payload)
    assert opcode == 0x1
    return wire.from_legacy_text(payload.decode())


async def relay(channels: ScriptedChannels | None = None) -> tuple[KernelHub, ScriptedChannels]:
    kernels = ScriptedKernels(channels)
    hub = KernelHub("k", kernels, KernelsConfig(), lambda hub, reason: None)
    await hub.wait_ready()
    return hub, kernels.channels


def texts(msgs: list[KernelMessage]) -> list[str]:
    return [json.loads(m.content)["text"] for m in msgs]


@pytest.mark.parametrize("protocol", [wire.V1, wire.LEGACY])
async def test_a_burst_leaves_in_one_write_one_frame_per_message_in_order(protocol):
    hub, channels = await relay()
    try:
        transport = Transport()
        hub.attach(WebSocket(), protocol, "s1", transport)
        for i in range(50):
            channels.ready.put_nowait(stream(i))
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        assert len(transport.writes) == 1
        frames = transport.frames()
        assert texts([decoded(f, protocol) for f in frames]) == [f"{i}\n" for i in range(50)]
    finally:
        await hub.close()


async def test_a_lone_message_goes_out_without_waiting_for_more():
    """Nothing waits for a batch to fill: one message and then silence is still written."""
    hub, channels = await relay()
    try:
        transport = Transport()
        hub.attach(WebSocket(), wire.V1, "s1", transport)
        channels.ready.put_nowait(stream(0))
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        assert texts([decoded(f, wire.V1) for f in transport.frames()]) == ["0\n"]
        transport.wrote.clear()
        channels.ready.put_nowait(stream(1))  # and the next one, later, on its own
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        assert len(transport.writes) == 2
    finally:
        await hub.close()


@pytest.mark.parametrize("protocol", [wire.V1, wire.LEGACY])
async def test_a_lone_message_is_written_in_the_callback_that_relays_it(protocol):
    """With channels that say nothing more is ready, a lone message is written before the event loop
    runs anything else: a callback scheduled right after the message became ready already sees it."""
    hub, channels = await relay(ReadyChannels())
    try:
        transport = Transport()
        hub.attach(WebSocket(), protocol, "s1", transport)
        loop = asyncio.get_running_loop()
        for i in range(3):
            seen = loop.create_future()
            channels.ready.put_nowait(stream(i))  # wakes the relay: its step runs next
            loop.call_soon(lambda: seen.set_result(len(transport.writes)))
            assert await asyncio.wait_for(seen, TIMEOUT) == i + 1
        assert texts([decoded(f, protocol) for f in transport.frames()]) == ["0\n", "1\n", "2\n"]
        for i in range(10, 20):  # a burst still leaves in one write
            channels.ready.put_nowait(stream(i))
        transport.wrote.clear()
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        assert len(transport.writes) == 4
    finally:
        await hub.close()


async def test_a_long_burst_is_written_in_bounded_writes_in_order():
    hub, channels = await relay()
    try:
        transport = Transport()
        hub.attach(WebSocket(), wire.V1, "s1", transport)
        count = 3 * hub_module._BATCH_MESSAGES
        for i in range(count):
            channels.ready.put_nowait(stream(i))
        end = stream(-1)
        channels.ready.put_nowait(end)
        async with asyncio.timeout(TIMEOUT):
            while not transport.frames() or decoded(transport.frames()[-1], wire.V1).header != end.header:
                transport.wrote.clear()
                await transport.wrote.wait()
        assert 3 <= len(transport.writes) <= 5
        assert texts([decoded(f, wire.V1) for f in transport.frames()]) == [f"{i}\n" for i in range(count)] + ["-1\n"]
    finally:
        await hub.close()


async def test_every_client_gets_the_burst_in_its_own_protocol():
    hub, channels = await relay()
    try:
        v1, legacy = Transport(), Transport()
        hub.attach(WebSocket(), wire.V1, "a", v1)
        hub.attach(WebSocket(), wire.LEGACY, "b", legacy)
        for i in range(20):
            channels.ready.put_nowait(stream(i))
        await asyncio.wait_for(asyncio.gather(v1.wrote.wait(), legacy.wrote.wait()), TIMEOUT)
        for transport, protocol in ((v1, wire.V1), (legacy, wire.LEGACY)):
            assert len(transport.writes) == 1
            assert texts([decoded(f, protocol) for f in transport.frames()]) == [f"{i}\n" for i in range(20)]
    finally:
        await hub.close()


async def test_what_a_client_gone_before_the_write_missed_is_kept_for_its_session():
    hub, channels = await relay()
    try:
        transport = Transport()
        client = hub.attach(WebSocket(), wire.V1, "s1", transport)
        burst = [stream(i) for i in range(5)]
        for msg in burst:
            await hub._dispatch(msg)  # queued for this iteration's write
        transport.closing = True  # the connection drops before the write
        client.flush()
        assert transport.writes == []
        assert [m for m, _ in hub.buffers["s1"].replay()] == burst
    finally:
        await hub.close()


class RecordingWebSocket(WebSocket):
    """A websocket whose frames sent on their own (a replay) are recorded."""

    def __init__(self):
        self.sent: list[tuple[bytes, int]] = []

    async def send_frame(self, data: bytes, opcode) -> None:
        self.sent.append((data, int(opcode)))


async def test_a_session_reconnecting_before_the_write_gets_what_was_queued_for_its_old_websocket():
    """The old websocket of a session is replaced while frames for it wait for this iteration's write:
    they were never sent, so the new websocket gets them (they were lost: the old one is closed)."""
    hub, channels = await relay()
    try:
        old_transport = Transport()
        hub.attach(WebSocket(), wire.V1, "s1", old_transport)
        burst = [stream(i) for i in range(3)]
        for msg in burst:
            await hub._dispatch(msg)  # queued for this iteration's write
        ws = RecordingWebSocket()
        client = hub.attach(ws, wire.V1, "s1", Transport())  # the session reconnects first
        await client.flush_replay()
        hub._flush()
        assert old_transport.writes == []
        assert texts([decoded(f, wire.V1) for f in ws.sent]) == ["0\n", "1\n", "2\n"]
    finally:
        await hub.close()


class BrokenTransport(Transport):
    def writelines(self, chunks) -> None:
        raise ValueError("a transport that fails in an unforeseen way")


async def test_one_client_whose_write_fails_does_not_hold_up_the_others():
    """A write that fails with an unexpected error detaches that client, keeping its messages for its
    session; the other clients' frames still leave in this iteration, and later ones too."""
    hub, channels = await relay()
    try:
        broken, fine = BrokenTransport(), Transport()
        hub.attach(WebSocket(), wire.V1, "a", broken)
        hub.attach(WebSocket(), wire.V1, "b", fine)
        for i in range(3):
            channels.ready.put_nowait(stream(i))
        await asyncio.wait_for(fine.wrote.wait(), TIMEOUT)
        assert "a" not in hub.clients
        assert texts([m for m, _ in hub.buffers["a"].replay()]) == ["0\n", "1\n", "2\n"]
        fine.wrote.clear()
        channels.ready.put_nowait(stream(3))
        await asyncio.wait_for(fine.wrote.wait(), TIMEOUT)
        assert texts([decoded(f, wire.V1) for f in fine.frames()]) == ["0\n", "1\n", "2\n", "3\n"]
    finally:
        await hub.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_flood_of_output_arrives_whole_and_in_order(himalia_server, protocol):
    """A kernel printing flushed lines as fast as it can: every line, in order, one message per frame,
    then the reply and the final idle."""
    lines = 3000
    async with himalia_server() as server, running_kernel(server) as kernel, \
            connect(server, kernel["id"], protocol) as ws:
        ex = await ws.execute(f"for i in range({lines}):\n    print(i, flush=True)", timeout=120)
        assert ex.reply["content"]["status"] == "ok"
        assert ex.states == ["busy", "idle"]
        assert ex.stdout == "".join(f"{i}\n" for i in range(lines))
        assert ex.iopub[-1]["header"]["msg_type"] == "status"
