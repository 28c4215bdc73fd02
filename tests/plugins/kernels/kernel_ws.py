"""A small kernel-websocket client for the tests, speaking either wire protocol, plus shared helpers:
start a kernel (and check its processes are gone afterwards), execute and collect until idle."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil

V1 = "v1.kernel.websocket.jupyter.org"
PROTOCOLS = [V1, "legacy"]
TIMEOUT = 60.0


def encode_v1(msg: dict[str, Any]) -> bytes:
    parts = [msg["channel"].encode()] + [json.dumps(msg[k]).encode()
                                         for k in ("header", "parent_header", "metadata", "content")]
    parts += list(msg.get("buffers", []))
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode_v1(data: bytes) -> dict[str, Any]:
    n = struct.unpack_from("<Q", data)[0]
    offsets = struct.unpack_from(f"<{n}Q", data, 8)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
    msg = {k: json.loads(p) for k, p in zip(("header", "parent_header", "metadata", "content"), parts[1:5])}
    msg["channel"] = parts[0].decode()
    msg["buffers"] = parts[5:]
    return msg


def encode_legacy_binary(msg: dict[str, Any]) -> bytes:
    body = {k: v for k, v in msg.items() if k != "buffers"}
    parts = [json.dumps(body).encode(), *msg["buffers"]]
    offsets = [4 * (len(parts) + 1)]
    for p in parts[:-1]:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets) + b"".join(parts)


def decode_legacy_binary(data: bytes) -> dict[str, Any]:
    k = struct.unpack_from("!I", data)[0]
    offsets = [*struct.unpack_from(f"!{k}I", data, 4), len(data)]
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(k)]
    msg = json.loads(parts[0])
    msg["buffers"] = parts[1:]
    return msg


def execute_content(code: str, *, allow_stdin: bool = False) -> dict[str, Any]:
    """An execute_request's content as JupyterLab sends it."""
    return {"code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": allow_stdin, "stop_on_error": True}


@dataclass
class Execution:
    msg_id: str
    reply: dict[str, Any] | None = None
    iopub: list[dict[str, Any]] = field(default_factory=list)
    stdin: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [m for m in self.iopub if m["header"]["msg_type"] == msg_type]

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stderr")

    @property
    def states(self) -> list[str]:
        return [m["content"]["execution_state"] for m in self.of_type("status")]


class KernelWS:
    """One websocket to a kernel's channels."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, protocol: str, session_id: str):
        self.ws = ws
        self.protocol = protocol
        self.session_id = session_id
        self.other: list[dict[str, Any]] = []
        """Messages received while waiting for something else (another request's, server status)."""

    async def send(self, channel: str, msg_type: str, content: dict[str, Any], *,
                   parent: dict[str, Any] | None = None, buffers: list[bytes] = (), msg_id: str | None = None) -> str:
        msg_id = msg_id or uuid.uuid4().hex
        msg = {"channel": channel,
               "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session_id,
                          "username": "test", "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
               "parent_header": parent or {}, "metadata": {}, "content": content, "buffers": list(buffers)}
        if self.protocol == V1:
            await self.ws.send_bytes(encode_v1(msg))
        elif buffers:
            await self.ws.send_bytes(encode_legacy_binary(msg))
        else:
            body = {k: v for k, v in msg.items() if k != "buffers"}
            await self.ws.send_str(json.dumps(body))
        return msg_id

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        if frame.type == aiohttp.WSMsgType.BINARY:
            return decode_v1(frame.data) if self.protocol == V1 else decode_legacy_binary(frame.data)
        if frame.type == aiohttp.WSMsgType.TEXT:
            assert self.protocol != V1, "v1 clients get binary frames only"
            msg = json.loads(frame.data)
            msg.setdefault("buffers", [])
            return msg
        raise ConnectionError(f"websocket closed: {frame.type} {frame.data!r} {frame.extra!r}")

    async def wait_for(self, predicate: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first message matching `predicate`; the others go to `self.other`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.recv(timeout)
                    if predicate(msg):
                        return msg
                    self.other.append(msg)
        except TimeoutError:
            seen = [(m["channel"], m["header"]["msg_type"], m["content"].get("execution_state"))
                    for m in self.other[-12:]]
            raise AssertionError(f"no matching message within {timeout}s; last seen: {seen}") from None

    async def collect(self, msg_id: str, *, answer: str | None = None, timeout: float = TIMEOUT) -> Execution:
        """Everything answering request `msg_id` until both its reply and the idle status arrived;
        an input_request is answered with `answer` when given."""
        result = Execution(msg_id)
        idle = False
        try:
            async with asyncio.timeout(timeout):
                while result.reply is None or not idle:
                    await self._collect_one(result, answer, timeout)
                    idle = idle or "idle" in result.states
        except TimeoutError:
            got = [(m["channel"], m["header"]["msg_type"], m["content"].get("execution_state"))
                   for m in (*result.stdin, *result.iopub)]
            others = [(m["channel"], m["header"]["msg_type"], m["parent_header"].get("msg_id"))
                      for m in self.other[-12:]]
            raise AssertionError(f"request {msg_id} not answered within {timeout}s: reply {result.reply is not None}, "
                                 f"its messages {got}, others (last 12) {others}") from None
        return result

    async def _collect_one(self, result: Execution, answer: str | None, timeout: float) -> None:
        msg = await self.recv(timeout)
        msg_id = result.msg_id
        if msg["parent_header"].get("msg_id") != msg_id:
            self.other.append(msg)
            return
        channel = msg["channel"]
        if channel == "iopub":
            result.iopub.append(msg)
        elif channel == "stdin":
            result.stdin.append(msg)
            if answer is not None:
                await self.send("stdin", "input_reply", {"value": answer}, parent=msg["header"])
        else:
            result.reply = msg

    async def execute(self, code: str, *, answer: str | None = None, timeout: float = TIMEOUT) -> Execution:
        msg_id = await self.send("shell", "execute_request", execute_content(code, allow_stdin=answer is not None))
        return await self.collect(msg_id, answer=answer, timeout=timeout)

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), 10)


@asynccontextmanager
async def connect(server: Any, kernel_id: str, protocol: str = V1,
                  session_id: str | None = None) -> AsyncIterator[KernelWS]:
    session_id = session_id or uuid.uuid4().hex
    kwargs = {"protocols": (V1,)} if protocol == V1 else {}
    ws = await asyncio.wait_for(
        server.ws_connect(f"/api/kernels/{kernel_id}/channels?session_id={session_id}", **kwargs), TIMEOUT)
    try:
        assert (ws.protocol or "legacy") == protocol
        yield KernelWS(ws, protocol, session_id)
    finally:
        await asyncio.wait_for(ws.close(), 10)


def _local_kernel(server: Any, kernel_id: str) -> Any:
    from himalia import SERVICES

    return server.app[SERVICES].kernel_provider._kernels[kernel_id]


def kernel_processes(server: Any, kernel_id: str) -> list[psutil.Process]:
    """The kernel's process and its children, found through the local provider."""
    proc = psutil.Process(_local_kernel(server, kernel_id).km.provisioner.pid)
    return [proc, *proc.children(recursive=True)]


def kernel_groups(server: Any, kernel_id: str) -> set[int]:
    """Every process group the kernel has had (one per start), found through the local provider."""
    kernel = _local_kernel(server, kernel_id)
    return {g for g in (*kernel.pgids, kernel.km.provisioner.pgid) if g}


def group_processes(pgids: set[int]) -> list[psutil.Process]:
    """The processes in any of the process groups `pgids`, wherever they were re-parented."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in pgids:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


@asynccontextmanager
async def running_kernel(server: Any, name: str = "python3", **body: Any) -> AsyncIterator[dict[str, Any]]:
    """A kernel started over REST, shut down on exit and checked gone: its processes, their children and
    whatever is left in any process group it has had."""
    r = await server.post("/api/kernels", json={"name": name, **body})
    assert r.status == 201, await r.text()
    model = await r.json()
    procs = kernel_processes(server, model["id"])
    groups = kernel_groups(server, model["id"])
    try:
        yield model
    finally:
        try:
            groups |= kernel_groups(server, model["id"])
        except KeyError:  # already shut down by the test
            pass
        r = await server.delete(f"/api/kernels/{model['id']}")
        assert r.status in (204, 404)
        assert_gone(procs + group_processes(groups))


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_gone(procs: list[psutil.Process]) -> None:
    gone, alive = psutil.wait_procs(procs, timeout=10)
    alive = [p for p in alive if _running(p)]
    assert not alive, f"kernel processes outlived their kernel: {alive}"
