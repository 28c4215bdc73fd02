"""Kernel figures through a server: session cycle, execute latency, iopub throughput, 8 kernels, fan-out.

Every kernel a figure starts is deleted in a `finally`; the server's own shutdown and `servers.reap`
catch anything left behind.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .figures_http import Unsupported
from .kernelws import KernelSocket, execute_content
from .servers import Server
from .settings import Settings

KERNEL_TIMEOUT = 60.0


def own_cpu_s() -> float:
    """CPU time of this process (the websocket client: the bench runs nothing else meanwhile)."""
    t = os.times()
    return t.user + t.system


def kernel_cpu_s(root_pid: int) -> float:
    """CPU time of the ipykernel processes under `root_pid` (a server, or the bench for direct)."""
    import psutil

    total = 0.0
    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            if any("ipykernel" in part for part in proc.cmdline()):
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def iopub_code(lines: int) -> str:
    return f"for i in range({lines}):\n    print(i, flush=True)\n"


async def start_kernel(server: Server) -> str:
    """A new python3 kernel's id; jupyverse has no POST /api/kernels, so there it is a session's kernel
    (`DELETE /api/kernels/{id}` then removes the session too)."""
    assert server.http is not None
    if server.variant == "jupyverse":
        path = f"kernel-{uuid.uuid4().hex[:12]}.ipynb"
        body = {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}
        async with server.http.post(server.base + "/api/sessions", json=body) as r:
            model = await r.json(content_type=None)
            if r.status not in (200, 201):
                raise Unsupported(f"POST /api/sessions answered {r.status}: {str(model)[:200]}")
            return model["kernel"]["id"]
    async with server.http.post(server.base + "/api/kernels", json={"name": "python3"}) as r:
        body = await r.json(content_type=None)
        if r.status not in (200, 201):
            raise Unsupported(f"POST /api/kernels answered {r.status}: {str(body)[:200]}")
        return body["id"]


async def delete_kernel(server: Server, kernel_id: str) -> None:
    assert server.http is not None
    try:
        async with server.http.delete(f"{server.base}/api/kernels/{kernel_id}") as r:
            await r.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass  # the server's shutdown and the reaper stop it anyway


async def connect(server: Server, kernel_id: str, s: Settings, http: aiohttp.ClientSession | None = None
                  ) -> KernelSocket:
    return await KernelSocket.connect(http or server.http, server.ws_base, kernel_id, s.protocol,  # type: ignore[arg-type]
                                      server.auth)


async def run_to_idle(ks: KernelSocket, code: str, timeout: float) -> dict[str, Any]:
    """Execute `code`; count stdout messages and lines until the reply and the final idle (or timeout)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    msg_id = await ks.send("shell", "execute_request", execute_content(code))
    stream_msgs = lines = 0
    replied = idle = False
    last = t0
    while not (replied and idle):
        left = t0 + timeout - loop.time()
        if left <= 0:
            break
        try:
            msg = await ks.recv(left)
        except asyncio.TimeoutError:
            break
        if msg.parent_id != msg_id:
            continue
        last = loop.time()
        kind = msg.msg_type
        if kind == "stream":
            if msg.content.get("name") == "stdout":
                stream_msgs += 1
                lines += msg.content.get("text", "").count("\n")
        elif kind == "status" and msg.content.get("execution_state") == "idle":
            idle = True
        elif kind == "execute_reply":
            replied = True
    return {"elapsed": (loop.time() if idle and replied else last) - t0, "stream_msgs": stream_msgs,
            "lines": lines, "idle": idle, "replied": replied}


async def session(server: Server, s: Settings) -> dict[str, Any]:
    """POST /api/sessions → websocket → kernel_info_reply → DELETE /api/sessions/{id}, sequentially."""
    assert server.http is not None
    times = []
    for i in range(s.pick(4, 2)):
        t0 = time.perf_counter()
        body = {"path": f"session-{i}.ipynb", "type": "notebook", "name": f"session-{i}.ipynb",
                "kernel": {"name": "python3"}}
        async with server.http.post(server.base + "/api/sessions", json=body) as r:
            model = await r.json(content_type=None)
            if r.status not in (200, 201):
                raise Unsupported(f"POST /api/sessions answered {r.status}: {str(model)[:200]}")
        try:
            ks = await connect(server, model["kernel"]["id"], s)
            try:
                await ks.kernel_info(KERNEL_TIMEOUT)
            finally:
                await ks.close()
        finally:
            async with server.http.delete(f"{server.base}/api/sessions/{model['id']}") as r:
                await r.read()
                deleted = r.status == 204
        times.append(time.perf_counter() - t0)
        if not deleted:
            raise RuntimeError(f"DELETE /api/sessions/{model['id']} answered {r.status}")
    return {"s": statistics.median(times), "n": len(times)}


async def execute(server: Server, s: Settings) -> dict[str, Any]:
    """Sequential `pass`: send execute_request → execute_reply and iopub idle both received."""
    kernel_id = await start_kernel(server)
    try:
        ks = await connect(server, kernel_id, s)
        try:
            await ks.kernel_info(KERNEL_TIMEOUT)
            await ks.drain(0.2)
            samples = await execute_samples(lambda code, timeout: run_to_idle(ks, code, timeout), s)
        finally:
            await ks.close()
    finally:
        await delete_kernel(server, kernel_id)
    return execute_stats(samples)


async def execute_samples(run: Callable[[str, float], Awaitable[dict[str, Any]]], s: Settings) -> list[float]:
    """20 warm-up executes of `pass`, then round trips in ms, bounded in count and time."""
    for _ in range(20):
        await run("pass", 10)
    samples: list[float] = []
    deadline = time.perf_counter() + s.pick(8.0, 2.0)
    while len(samples) < s.pick(1000, 100) and time.perf_counter() < deadline:
        result = await run("pass", 10)
        if not (result["idle"] and result["replied"]):
            raise RuntimeError("an execute of `pass` got no reply or idle within 10 s")
        samples.append(result["elapsed"] * 1000)
    return samples


def execute_stats(samples: list[float]) -> dict[str, Any]:
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "n": len(samples)}


async def iopub(server: Server, s: Settings) -> dict[str, Any]:
    """The kernel prints N flushed lines (one stream message each); messages/s until the final idle."""
    lines = s.pick(20000, 2000)
    kernel_id = await start_kernel(server)
    try:
        ks = await connect(server, kernel_id, s)
        try:
            await ks.kernel_info(KERNEL_TIMEOUT)
            await ks.drain(0.2)
            await run_to_idle(ks, "pass", 10)
            cpu0, client0, kernel0 = server.cpu_s(), own_cpu_s(), kernel_cpu_s(server.proc.pid)
            result = await run_to_idle(ks, iopub_code(lines), s.pick(120.0, 30.0))
            cpu = server.cpu_s() - cpu0
            client, kernel = own_cpu_s() - client0, kernel_cpu_s(server.proc.pid) - kernel0
        finally:
            await ks.close()
    finally:
        await delete_kernel(server, kernel_id)
    return {**iopub_stats(result, lines, client, kernel),
            "server_cpu_ms_per_1k": 1e6 * cpu / max(1, result["stream_msgs"])}


def iopub_stats(result: dict[str, Any], lines: int, client_cpu: float, kernel_cpu: float) -> dict[str, Any]:
    n = max(1, result["stream_msgs"])
    return {"msgs_per_s": result["stream_msgs"] / result["elapsed"] if result["elapsed"] else 0.0,
            "lines": result["lines"], "lines_sent": lines, "idle": result["idle"],
            "client_cpu_ms_per_1k": 1e6 * client_cpu / n, "kernel_cpu_ms_per_1k": 1e6 * kernel_cpu / n}


async def kernels8(server: Server, s: Settings) -> dict[str, Any]:
    """8 × POST /api/kernels at once, then each answers kernel_info on its websocket; RSS while all 8 run."""
    ids: list[str] = []
    sockets: list[KernelSocket] = []

    async def one() -> None:
        kernel_id = await start_kernel(server)
        ids.append(kernel_id)
        ks = await connect(server, kernel_id, s)
        sockets.append(ks)
        await ks.kernel_info(KERNEL_TIMEOUT)

    try:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(8))), KERNEL_TIMEOUT * 2)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.5)  # let the server settle before reading its RSS
        rss = server.rss_mb()
    finally:
        await asyncio.gather(*(ks.close() for ks in sockets), return_exceptions=True)
        await asyncio.gather(*(delete_kernel(server, k) for k in ids))
    return {"s": elapsed, "rss_mb": rss}


async def fanout(server: Server, s: Settings) -> dict[str, Any]:
    """100 websockets on one kernel; one runs a print loop; stdout messages delivered per second to all."""
    clients = s.pick(100, 100)
    lines = s.pick(1000, 100)
    kernel_id = await start_kernel(server)
    connector = aiohttp.TCPConnector(limit=0)
    sockets: list[KernelSocket] = []
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
            try:
                first = await connect(server, kernel_id, s, http)
                sockets.append(first)
                await first.kernel_info(KERNEL_TIMEOUT)
                for _ in range(0, clients - 1, 10):
                    batch = await asyncio.gather(*(connect(server, kernel_id, s, http)
                                                   for _ in range(min(10, clients - len(sockets)))))
                    sockets.extend(batch)
                await asyncio.gather(*(ks.drain(0.3) for ks in sockets))
                cpu0, client0 = server.cpu_s(), own_cpu_s()
                result = await _fanout_run(sockets, lines, s.pick(120.0, 30.0))
                result["server_cpu_ms_per_1k"] = 1e6 * (server.cpu_s() - cpu0) / max(1, result["delivered"])
                result["client_cpu_ms_per_1k"] = 1e6 * (own_cpu_s() - client0) / max(1, result["delivered"])
            finally:
                await asyncio.gather(*(ks.close() for ks in sockets), return_exceptions=True)
    finally:
        await delete_kernel(server, kernel_id)
    return result


async def _fanout_run(sockets: list[KernelSocket], lines: int, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    code_id = await sockets[0].send("shell", "execute_request", execute_content(iopub_code(lines)))
    counts = [0] * len(sockets)
    line_counts = [0] * len(sockets)
    idle_at: list[float | None] = [None] * len(sockets)

    async def listen(i: int, ks: KernelSocket) -> None:
        while True:
            left = t0 + timeout - loop.time()
            if left <= 0:
                return
            try:
                msg = await ks.recv(left)
            except asyncio.TimeoutError:
                return
            if msg.channel != "iopub" or msg.parent_id != code_id:
                continue
            kind = msg.msg_type
            if kind == "stream" and msg.content.get("name") == "stdout":
                counts[i] += 1
                line_counts[i] += msg.content.get("text", "").count("\n")
            elif kind == "status" and msg.content.get("execution_state") == "idle":
                idle_at[i] = loop.time()
                return

    await asyncio.gather(*(listen(i, ks) for i, ks in enumerate(sockets)))
    done = [t for t in idle_at if t is not None]
    elapsed = (max(done) if len(done) == len(sockets) else loop.time()) - t0
    delivered = sum(counts)
    return {"msgs_per_s": delivered / elapsed, "delivered": delivered, "expected": lines * len(sockets),
            "share": sum(line_counts) / (lines * len(sockets)),
            "clients": len(sockets), "idle_all": len(done) == len(sockets)}
