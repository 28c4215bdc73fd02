"""Requests per second for one GET URL: wrk when installed, else a pure-Python aiohttp closed loop."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass

import aiohttp


@dataclass
class LoadResult:
    rps: float
    requests: int
    errors: int
    tool: str


def tool(prefer_python: bool = False) -> str:
    return "wrk" if not prefer_python and shutil.which("wrk") else "aiohttp"


async def measure(url: str, headers: dict[str, str], concurrency: int, duration: float,
                  prefer_python: bool = False) -> LoadResult:
    if tool(prefer_python) == "wrk":
        return await _wrk(url, headers, concurrency, duration)
    return await _python(url, headers, concurrency, duration)


async def _wrk(url: str, headers: dict[str, str], concurrency: int, duration: float) -> LoadResult:
    # one wrk thread: the machine is small and the server needs the other core more than wrk does
    args = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "30s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), duration + 60)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    text = out.decode(errors="replace")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise RuntimeError(f"could not read wrk's output:\n{text}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return LoadResult(float(rps.group(1)), int(total.group(1)), errors, "wrk")


async def _python(url: str, headers: dict[str, str], concurrency: int, duration: float) -> LoadResult:
    done = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        t0 = time.perf_counter()
        deadline = t0 + duration

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                try:
                    async with http.get(url) as r:
                        await r.read()
                        if r.status == 200:
                            done += 1
                        else:
                            errors += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return LoadResult(done / elapsed, done, errors, "aiohttp")
