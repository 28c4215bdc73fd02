"""Websocket frames built once, for writing several of them to a client's transport in one write.

aiohttp's `WebSocketResponse.send_frame` writes each frame through the transport on its own: one
`send()` per message, one TCP segment, one wake-up of the reader per message. The relay instead builds
each frame once with aiohttp's own `WebSocketWriter` (public in `aiohttp.http`) over a transport that
only collects bytes, and writes whatever a loop iteration produced for a client with one
`transport.writelines`. The frames are byte for byte what `send_frame` writes (server frames are
unmasked; kernel websockets are not compressed), one frame per message.

This is the only module that relies on how `WebSocketWriter` writes; tests/plugins/kernels/test_frames.py
checks it against RFC 6455 and against aiohttp's reader, and fails if an aiohttp upgrade changes it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSMsgType
from aiohttp.http import WebSocketWriter

_NO_DRAIN = 1 << 62
"""The writer's flow-control threshold: never reached, so building a frame never waits."""


class _Collect:
    """The transport `WebSocketWriter` writes to: it keeps the chunks (header and payload)."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def is_closing(self) -> bool:
        return False


class _Protocol:
    """The writer asks its protocol whether writing is paused; building frames never is."""

    _paused = False


_collect = _Collect()
_writer = WebSocketWriter(_Protocol(), _collect, limit=_NO_DRAIN)  # type: ignore[arg-type]


async def ws_frame(payload: bytes, binary: bool) -> list[bytes]:
    """The websocket frame carrying `payload` (a binary or a text message), as the chunks to write."""
    await _writer.send_frame(payload, WSMsgType.BINARY if binary else WSMsgType.TEXT)
    chunks = _collect.chunks
    _collect.chunks = []
    return chunks


def write_frames(transport: Any, chunks: list[bytes]) -> None:
    """Write frames (the chunks of one or more `ws_frame`s, in order) in one transport write."""
    if len(chunks) == 1:
        transport.write(chunks[0])
    else:
        transport.writelines(chunks)
