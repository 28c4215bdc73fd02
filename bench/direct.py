"""The limit: the same figures with jupyter_client talking ZMQ to the kernel, no server in between."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager

from .figures_kernel import (KERNEL_TIMEOUT, execute_samples, execute_stats, iopub_code, iopub_stats, kernel_cpu_s,
                             own_cpu_s)
from .kernelws import Msg, execute_content

DELIM = b"<IDS|MSG>"
from .settings import Settings


class DirectKernel:
    """An ipykernel started by jupyter_client, and a lean zmq.asyncio client on its shell and iopub.

    The client signs with jupyter_client's Session and decodes lazily like the websocket client, so
    the gap to a server is the server, not a heavier client.
    """

    def __init__(self) -> None:
        self.km = AsyncKernelManager(kernel_name="python3")
        self.ctx: zmq.asyncio.Context | None = None
        self.shell: zmq.asyncio.Socket | None = None
        self.iopub: zmq.asyncio.Socket | None = None

    async def start(self) -> None:
        await self.km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        info = self.km.get_connection_info()
        self.ctx = zmq.asyncio.Context()
        self.shell = self.ctx.socket(zmq.DEALER)
        self.iopub = self.ctx.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        for sock in (self.shell, self.iopub):
            sock.linger = 0
        self.shell.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        self.iopub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
        await self.kernel_info()

    async def kernel_info(self) -> None:
        """kernel_info_request until a reply (a fresh kernel may not listen yet); bounded by KERNEL_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KERNEL_TIMEOUT
        while loop.time() < deadline:
            msg_id = await self.send("kernel_info_request", {})
            try:
                await self._until(self.shell, lambda m: m.parent_id == msg_id, 1.0)  # type: ignore[arg-type]
                return
            except asyncio.TimeoutError:
                continue
        raise asyncio.TimeoutError(f"kernel did not answer kernel_info within {KERNEL_TIMEOUT:.0f} s")

    async def stop(self, now: bool = True) -> None:
        for sock in (self.shell, self.iopub):
            if sock is not None:
                sock.close()
        if self.ctx is not None:
            self.ctx.term()
        if self.km.has_kernel:
            await self.km.shutdown_kernel(now=now)

    async def send(self, msg_type: str, content: dict[str, Any]) -> str:
        session = self.km.session
        msg = session.msg(msg_type, content)
        await self.shell.send_multipart(session.serialize(msg))  # type: ignore[union-attr]
        return msg["header"]["msg_id"]

    async def recv(self, sock: zmq.asyncio.Socket, timeout: float) -> Msg:
        if not await sock.poll(timeout * 1000):
            raise asyncio.TimeoutError
        parts = await sock.recv_multipart()
        i = parts.index(DELIM)
        return Msg("", parts[i + 2:i + 6])

    async def _until(self, sock: zmq.asyncio.Socket, pred: Callable[[Msg], bool], timeout: float) -> Msg:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError
            msg = await self.recv(sock, left)
            if pred(msg):
                return msg

    async def run_to_idle(self, code: str, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        msg_id = await self.send("execute_request", execute_content(code))
        stream_msgs = lines = 0
        idle = replied = False
        last = t0
        while not idle:
            left = t0 + timeout - loop.time()
            try:
                msg = await self.recv(self.iopub, left) if left > 0 else None  # type: ignore[arg-type]
            except asyncio.TimeoutError:
                msg = None
            if msg is None:
                break
            if msg.parent_id != msg_id:
                continue
            last = loop.time()
            kind = msg.msg_type
            if kind == "stream" and msg.content.get("name") == "stdout":
                stream_msgs += 1
                lines += msg.content.get("text", "").count("\n")
            elif kind == "status" and msg.content.get("execution_state") == "idle":
                idle = True
        try:
            await self._until(self.shell, lambda m: m.parent_id == msg_id,  # type: ignore[arg-type]
                              max(0.001, t0 + timeout - loop.time()))
            replied = True
        except asyncio.TimeoutError:
            pass
        end = loop.time() if idle and replied else last
        return {"elapsed": end - t0, "stream_msgs": stream_msgs, "lines": lines, "idle": idle,
                "replied": replied}


async def execute(s: Settings) -> dict[str, Any]:
    kernel = DirectKernel()
    try:
        await kernel.start()
        samples = await execute_samples(kernel.run_to_idle, s)
    finally:
        await kernel.stop()
    return execute_stats(samples)


async def iopub(s: Settings) -> dict[str, Any]:
    lines = s.pick(20000, 2000)
    kernel = DirectKernel()
    try:
        await kernel.start()
        await kernel.run_to_idle("pass", 10)
        client0, kernel0 = own_cpu_s(), kernel_cpu_s(os.getpid())
        result = await kernel.run_to_idle(iopub_code(lines), s.pick(120.0, 30.0))
        client, kernel_cpu = own_cpu_s() - client0, kernel_cpu_s(os.getpid()) - kernel0
    finally:
        await kernel.stop()
    return iopub_stats(result, lines, client, kernel_cpu)


async def kernels8(s: Settings) -> dict[str, Any]:
    kernels = [DirectKernel() for _ in range(8)]
    try:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(k.start() for k in kernels)), KERNEL_TIMEOUT * 2)
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(k.stop() for k in kernels), return_exceptions=True)
    return {"s": elapsed}


async def session(s: Settings) -> dict[str, Any]:
    """Start a kernel, kernel_info, polite shutdown: what a session cycle costs without a server."""
    times = []
    for _ in range(s.pick(4, 2)):
        kernel = DirectKernel()
        t0 = time.perf_counter()
        try:
            await kernel.start()  # includes a kernel_info round trip
        finally:
            await kernel.stop(now=False)
        times.append(time.perf_counter() - t0)
    return {"s": statistics.median(times), "n": len(times)}
