"""A lean kernel websocket client for both wire protocols, so client cost stays small and equal for both servers.

`v1.kernel.websocket.jupyter.org` (JupyterLab's default): binary frames
`[n: u64 LE][n offsets: u64 LE][channel][header][parent_header][metadata][content][buffers...]`.
Legacy: JSON text frames holding the whole message plus `channel`.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from datetime import datetime, timezone
from typing import Any

import aiohttp

V1 = "v1.kernel.websocket.jupyter.org"
LEGACY = "legacy"


class Msg:
    """One received message; JSON parts are decoded only when asked for."""

    __slots__ = ("channel", "_parts", "_dict", "_header", "_parent", "_content")

    def __init__(self, channel: str, parts: list[bytes] | None = None, whole: dict[str, Any] | None = None):
        self.channel = channel
        self._parts = parts
        self._dict = whole
        self._header: dict[str, Any] | None = None
        self._parent: dict[str, Any] | None = None
        self._content: dict[str, Any] | None = None

    def _part(self, i: int, key: str) -> dict[str, Any]:
        if self._dict is not None:
            return self._dict.get(key) or {}
        assert self._parts is not None
        return json.loads(self._parts[i]) if self._parts[i] else {}

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = self._part(0, "header")
        return self._header

    @property
    def parent(self) -> dict[str, Any]:
        if self._parent is None:
            self._parent = self._part(1, "parent_header")
        return self._parent

    @property
    def content(self) -> dict[str, Any]:
        if self._content is None:
            self._content = self._part(3, "content")
        return self._content

    @property
    def msg_type(self) -> str:
        return self.header.get("msg_type", "")

    @property
    def parent_id(self) -> str:
        return self.parent.get("msg_id", "")


def _header(msg_type: str, session: str) -> dict[str, Any]:
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "bench", "session": session,
            "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}


def encode_v1(channel: str, header: dict[str, Any], content: dict[str, Any]) -> bytes:
    parts = [channel.encode(), json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]
    n = len(parts) + 1
    offsets = [8 * (n + 1)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return b"".join([struct.pack(f"<{n + 1}Q", n, *offsets), *parts])


def decode_v1(data: bytes) -> Msg:
    (n,) = struct.unpack_from("<Q", data)
    offsets = struct.unpack_from(f"<{n}Q", data, 8)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
    return Msg(parts[0].decode(), parts[1:])


class KernelSocket:
    """One websocket to `/api/kernels/{id}/channels`, speaking `protocol`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, protocol: str, session: str):
        self.ws = ws
        self.protocol = protocol
        self.session = session

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, ws_base: str, kernel_id: str, protocol: str,
                      headers: dict[str, str], timeout: float = 30.0) -> KernelSocket:
        session = uuid.uuid4().hex
        url = f"{ws_base}/api/kernels/{kernel_id}/channels?session_id={session}"
        protocols = (V1,) if protocol == V1 else ()
        ws = await asyncio.wait_for(
            http.ws_connect(url, protocols=protocols, headers=headers, max_msg_size=0, autoping=True,
                            heartbeat=None), timeout)
        if protocol == V1 and ws.protocol != V1:
            await ws.close()
            raise RuntimeError(f"server did not accept subprotocol {V1} (got {ws.protocol!r})")
        return cls(ws, protocol, session)

    async def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        header = _header(msg_type, self.session)
        if self.protocol == V1:
            await self.ws.send_bytes(encode_v1(channel, header, content))
        else:
            await self.ws.send_str(json.dumps({"header": header, "parent_header": {}, "metadata": {},
                                               "content": content, "channel": channel, "buffers": []}))
        return header["msg_id"]

    async def recv(self, timeout: float) -> Msg:
        frame = await self.ws.receive(timeout=timeout)
        if frame.type == aiohttp.WSMsgType.BINARY:
            if self.protocol == V1:
                return decode_v1(frame.data)
            raise RuntimeError("binary legacy frames (buffers) are not used by the bench")
        if frame.type == aiohttp.WSMsgType.TEXT:
            whole = json.loads(frame.data)
            return Msg(whole.get("channel", ""), whole=whole)
        raise ConnectionError(f"kernel websocket closed ({frame.type.name}: {frame.data!r})")

    async def request(self, channel: str, msg_type: str, content: dict[str, Any], reply_type: str,
                      timeout: float) -> Msg:
        """Send a request and return its reply, skipping everything else."""
        msg_id = await self.send(channel, msg_type, content)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError(f"no {reply_type} within {timeout:.0f} s")
            msg = await self.recv(left)
            if msg.msg_type == reply_type and msg.parent_id == msg_id:
                return msg

    async def kernel_info(self, timeout: float = 60.0) -> Msg:
        return await self.request("shell", "kernel_info_request", {}, "kernel_info_reply", timeout)

    async def drain(self, quiet: float) -> int:
        """Read until nothing arrives for `quiet` seconds (bounded by 100 x quiet); return the count."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 100 * quiet
        count = 0
        while loop.time() < deadline:
            try:
                await self.recv(quiet)
            except asyncio.TimeoutError:
                break
            count += 1
        return count

    async def close(self) -> None:
        await self.ws.close()


def execute_content(code: str) -> dict[str, Any]:
    return {"code": code, "silent": False, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}
