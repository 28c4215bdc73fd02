"""Syscalls and context switches per iopub message on each side: `python -m bench.syscalls [--protocol legacy|v1] [--lines N]`.

Starts each Himalia variant (the relay as it is, and `himalia_unbatched`, one write per message), and
jupyter_server tuned unless --no-jupyter-server; a kernel prints N flushed lines while `perf stat`
(syscall tracepoints and context switches; low overhead, unlike strace) counts for the server, the
kernel and this process (the websocket client). Prints, per 1 000 stdout messages, every process's
syscalls in total, its context switches (wake-ups) and the syscalls that show the wake-ups
(epoll_wait, poll, futex), the writes and the reads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from . import servers
from .figures_kernel import connect, delete_kernel, iopub_code, run_to_idle, start_kernel
from .kernelws import V1
from .settings import Settings

SHOWN = ("context-switches", "epoll_wait", "poll", "futex", "sendto", "write", "writev", "recvfrom", "read")


def _attach(pid: int, out: Path) -> subprocess.Popen[bytes]:
    events = ["raw_syscalls:sys_enter", "context-switches",
              *(f"syscalls:sys_enter_{name}" for name in SHOWN if name != "context-switches")]
    return subprocess.Popen(["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(events), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _summary(path: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        cols = line.split(",")
        if len(cols) > 2 and cols[0].isdigit():
            name = cols[2].split(":")[-1].removeprefix("sys_enter_")
            calls["total" if name == "sys_enter" else name] = int(cols[0])
    return calls


async def measure(env: servers.BenchEnvironment, variant: str, s: Settings, lines: int) -> dict[str, Any]:
    server = await servers.start(env, variant)
    try:
        kernel_id = await start_kernel(server)
        try:
            ks = await connect(server, kernel_id, s)
            try:
                await ks.kernel_info(60)
                await ks.drain(0.2)
                await run_to_idle(ks, "pass", 10)
                kernel_pid = next(p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)
                                  if any("ipykernel" in a for a in p.cmdline()))
                tmp = Path(tempfile.mkdtemp(prefix="syscalls-"))
                tracers = {name: _attach(pid, tmp / name) for name, pid in
                           (("server", server.proc.pid), ("kernel", kernel_pid), ("client", os.getpid()))}
                await asyncio.sleep(1.0)  # perf attaches
                result = await run_to_idle(ks, iopub_code(lines), 240)
                for tracer in tracers.values():
                    tracer.send_signal(signal.SIGINT)
                for tracer in tracers.values():
                    tracer.wait(30)
                counts = {name: _summary(tmp / name) for name in tracers}
            finally:
                await ks.close()
        finally:
            await delete_kernel(server, kernel_id)
    finally:
        await servers.stop(server)
    return {"msgs": result["stream_msgs"], "lines": result["lines"], "idle": result["idle"], "counts": counts}


async def main_async(ns: argparse.Namespace) -> None:
    s = Settings(protocol=V1 if ns.protocol == "v1" else "legacy")
    variants = ["himalia", "himalia_unbatched", *([] if ns.no_jupyter_server else ["jupyter_server_tuned"])]
    with servers.BenchEnvironment() as env:
        for variant in variants:
            r = await measure(env, variant, s, ns.lines)
            per = 1000 / max(1, r["msgs"])
            print(f"\n{variant} ({ns.protocol}): {r['msgs']} stdout messages, {r['lines']} lines, idle {r['idle']}")
            print("| process | " + " | ".join(["total", *SHOWN]) + " |")
            print("|---" * (len(SHOWN) + 2) + "|")
            for name, calls in r["counts"].items():
                print(f"| {name} | " + " | ".join(f"{calls.get(k, 0) * per:.0f}" for k in ("total", *SHOWN)) + " |")
            servers.reap(env.run_id)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.syscalls", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=["v1", "legacy"], default="legacy")
    p.add_argument("--lines", type=int, default=5000)
    p.add_argument("--no-jupyter-server", action="store_true")
    asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
