"""Helpers for the reliability tests: a minimal kernel-websocket client (v1 subprotocol), processes
of a kernel found through /proc, and isolated environments for `himalia serve` subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import aiohttp

V1 = "v1.kernel.websocket.jupyter.org"
WAIT = 60.0


def encode_v1(channel: str, header: dict[str, Any], content: dict[str, Any],
              parent: dict[str, Any] | None = None) -> bytes:
    parts = [channel.encode()] + [json.dumps(x).encode() for x in (header, parent or {}, {}, content)]
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
    return msg


def header(msg_type: str, session: str) -> dict[str, Any]:
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session, "username": "test",
            "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}


class KernelSocket:
    """One v1 websocket to a kernel: send requests, wait for messages matching a predicate."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: str):
        self.ws = ws
        self.session = session

    async def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        h = header(msg_type, self.session)
        await self.ws.send_bytes(encode_v1(channel, h, content))
        return h["msg_id"]

    async def recv(self) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.receive(), WAIT)
        if frame.type != aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"websocket frame {frame.type}: {frame.data!r} {frame.extra!r}")
        return decode_v1(frame.data)

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            while True:
                msg = await self.recv()
                if predicate(msg):
                    return msg

        return await asyncio.wait_for(scan(), WAIT)

    async def execute(self, code: str) -> str:
        """Run `code`; its stdout once the reply and the idle status have both arrived."""
        msg_id = await self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        out: list[str] = []
        replied = idle = False

        async def collect() -> None:
            nonlocal replied, idle
            while not (replied and idle):
                msg = await self.recv()
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "execute_reply":
                    replied = True
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
                elif kind == "stream" and msg["content"]["name"] == "stdout":
                    out.append(msg["content"]["text"])

        await asyncio.wait_for(collect(), WAIT)
        return "".join(out)

    async def kernel_info(self) -> dict[str, Any]:
        msg_id = await self.send("shell", "kernel_info_request", {})
        return await self.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id
                                   and m["header"]["msg_type"] == "kernel_info_reply")


async def open_kernel_socket(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> KernelSocket:
    session = uuid.uuid4().hex
    sep = "&" if "?" in url else "?"
    ws = await asyncio.wait_for(client.ws_connect(f"{url}{sep}session_id={session}", protocols=(V1,), **kwargs),
                                WAIT)
    assert ws.protocol == V1
    return KernelSocket(ws, session)


def kernel_pids(kernel_id: str) -> list[int]:
    """Processes whose command line names the kernel's id (its connection file does)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if kernel_id.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


@contextmanager
def launch(*args: str, env: dict[str, str], preexec_fn: Callable[[], None] | None = None,
           timeout: float = WAIT) -> Iterator[tuple[subprocess.Popen, str]]:
    """`himalia serve --port 0 ARGS` with `preexec_fn` run in the child before it starts (what
    `himalia.testing.serve_process` cannot do); yields (process, base URL) once the URL is printed.
    Killed on exit if still running."""
    cmd = [sys.executable, "-m", "himalia.cli", "serve", "--port", "0", *args]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               preexec_fn=preexec_fn, bufsize=1)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError("himalia serve exited:\n" + "\n".join(output))
            output.append(line)
            found = re.match(r"^\s+(http://\S+?)(?:\?token=\S+)?$", line)
            if found:
                break
        yield process, found.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout)


def isolated_env(base: Path) -> dict[str, str]:
    """The environment for a `himalia serve` child: its own Jupyter dirs, no inherited token."""
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    env.update(JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_PLATFORM_DIRS="1")
    return env
