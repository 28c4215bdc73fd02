"""The relay builds websocket frames with aiohttp's WebSocketWriter and writes several at once
(himalia_kernels/frames.py). These fail loudly if an aiohttp upgrade changes what that relies on."""

from __future__ import annotations

import struct

import pytest
from himalia_kernels.frames import write_frames, ws_frame

SIZES = [0, 1, 125, 126, 65535, 65536, 70000]


def rfc6455(payload: bytes, opcode: int) -> bytes:
    """An unmasked, final, uncompressed frame, as RFC 6455 section 5.2 lays it out."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("binary", [True, False])
async def test_frames_are_rfc6455_frames(size, binary):
    payload = bytes(i % 251 for i in range(size)) if binary else b"x" * size
    chunks = await ws_frame(payload, binary)
    assert b"".join(chunks) == rfc6455(payload, 0x2 if binary else 0x1)


def test_building_a_frame_never_waits():
    """ws_frame must finish without suspending: the relay relies on frames not interleaving."""
    coro = ws_frame(b"x" * 100_000, True)
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert b"".join(done.value.value).endswith(b"x" * 100_000)


class Transport:
    def __init__(self):
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks) -> None:
        self.writes.append(b"".join(chunks))


def parse(data: bytes) -> list[tuple[bytes, bool]]:
    """RFC 6455 frames (unmasked, final) back into (payload, binary) messages."""
    out, i = [], 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        assert first & 0x80 and not second & 0x80, "final, unmasked frames only"
        n, i = second & 0x7F, i + 2
        if n == 126:
            (n,), i = struct.unpack_from("!H", data, i), i + 2
        elif n == 127:
            (n,), i = struct.unpack_from("!Q", data, i), i + 8
        out.append((data[i:i + n], first & 0x0F == 0x2))
        i += n
    return out


async def test_several_frames_in_one_write_read_back_one_message_each():
    messages = [(b"first", False), (bytes(range(256)) * 300, True), (b"", True), (b'{"n": 3}', False)]
    chunks: list[bytes] = []
    for payload, binary in messages:
        chunks += await ws_frame(payload, binary)
    transport = Transport()
    write_frames(transport, chunks)
    assert len(transport.writes) == 1
    assert parse(transport.writes[0]) == messages
