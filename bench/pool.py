"""`python -m bench.pool`: a notebook's kernel at once (issue 18), side by side in one run.

Variants, alternating round by round: Himalia with a warm pool of 2 (`himalia_pool`), Himalia without
one, Himalia with `[plugins.local] shutdown = "terminate"` (`himalia_terminate`), jupyter_server as
shipped (no extensions), jupyverse (`jupyverse[noauth]` from a venv of its own, see bench/servers.py;
left out with a note when it is not installed), and the direct jupyter_client ZMQ client (no server). jupyverse has no `POST /api/kernels`: its kernels are started through
`POST /api/sessions` (path, name, type and kernel in the body, all of which it requires).

- `cycle`: POST /api/sessions → kernel websocket → kernel_info_reply → first execute (`pass`, reply and
  idle) → DELETE /api/sessions/{id} answered; sequential, the pool full again before each one. Also the
  DELETE alone, and how many kernel processes were still alive when its 204 arrived.
- `burst8`: 8 such sessions at once (a pool of 2: 2 hits, 6 cold starts), until all 8 executed.
- `shutdown8`: 8 running kernels deleted at once (`DELETE /api/kernels/{id}` × 8), until all answered;
  and how many of their processes were alive at that point.
- `member_mb`: the RSS of one idle pool member (himalia_pool only).
- `exit` (direct only): the floor under any polite shutdown, ipykernel's own time from `shutdown_request`
  to its process's end with no server (one kernel, and 8 at once), the exit noticed at once by a pidfd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from . import direct, servers
from .figures_kernel import KERNEL_TIMEOUT, connect, run_to_idle
from .kernelws import V1
from .servers import BenchEnvironment, Server
from .settings import Settings

VARIANTS = ["himalia_pool", "himalia", "himalia_terminate", "jupyter_server", "jupyverse", "direct"]
POOL_SIZE = 2


def kernel_pids(server: Server, kernel_id: str | None = None) -> list[int]:
    """The server's child processes running kernel `kernel_id` (its connection file names it), or
    every kernel of the server (`None`; jupyverse names its connection files after no kernel id)."""
    out = []
    try:
        children = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.Error:
        return out
    for p in children:
        try:
            cmdline = p.cmdline()
            if (kernel_id is None and any("ipykernel" in a for a in cmdline)) or \
                    (kernel_id is not None and any(kernel_id in a for a in cmdline)):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def alive(pids: list[int]) -> int:
    n = 0
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                n += 1
        except psutil.Error:
            pass
    return n


async def pool_full(server: Server) -> None:
    """Until the server's pool has its members idle (himalia_pool), bounded; others return at once."""
    if server.variant != "himalia_pool":
        return
    assert server.http is not None
    deadline = time.monotonic() + KERNEL_TIMEOUT
    while time.monotonic() < deadline:
        async with server.http.get(server.base + "/api/status") as r:
            pool = (await r.json()).get("kernel_pool", {}).get("python3", {})
        if pool.get("idle", 0) >= POOL_SIZE:
            return
        await asyncio.sleep(0.02)  # another process's state, seen only through its API
    raise TimeoutError("the pool did not fill within the kernel timeout")


async def one_session(server: Server, s: Settings, i: int, timing: dict[str, float] | None = None) -> None:
    assert server.http is not None
    before = set(kernel_pids(server)) if server.variant == "jupyverse" else set()
    t0 = time.perf_counter()
    body = {"path": f"n{i}.ipynb", "type": "notebook", "name": f"n{i}.ipynb", "kernel": {"name": "python3"}}
    async with server.http.post(server.base + "/api/sessions", json=body) as r:
        model = await r.json(content_type=None)
        if r.status != 201:
            raise RuntimeError(f"POST /api/sessions answered {r.status}: {str(model)[:200]}")
    kernel_id = model["kernel"]["id"]
    try:
        ks = await connect(server, kernel_id, s)
        try:
            await ks.kernel_info(KERNEL_TIMEOUT)
            done = await run_to_idle(ks, "pass", KERNEL_TIMEOUT)
            if not (done["idle"] and done["replied"]):
                raise RuntimeError("first execute did not finish")
        finally:
            await ks.close()
        t1 = time.perf_counter()
    finally:
        if server.variant == "jupyverse":  # the kernel process this session started (exact when sequential)
            pids = sorted(set(kernel_pids(server)) - before)
        else:
            pids = kernel_pids(server, kernel_id)
        td = time.perf_counter()
        async with server.http.delete(f"{server.base}/api/sessions/{model['id']}") as r:
            await r.read()
        t2 = time.perf_counter()
        left = alive(pids)
    if timing is not None:
        timing.update(first_execute_s=t1 - t0, delete_ms=(t2 - td) * 1000, cycle_s=t2 - t0, alive=left,
                      tracked=len(pids))


async def cycle(server: Server, s: Settings) -> dict[str, Any]:
    runs = []
    for i in range(s.pick(5, 2)):
        await pool_full(server)
        timing: dict[str, float] = {}
        await one_session(server, s, i, timing)
        runs.append(timing)
    return {k: statistics.median(r[k] for r in runs) for k in ("first_execute_s", "delete_ms", "cycle_s")} | {
        "alive_at_delete_return": sum(r["alive"] for r in runs), "n": len(runs),
        "kernel_processes_tracked": sum(r["tracked"] for r in runs)}


async def burst8(server: Server, s: Settings) -> dict[str, Any]:
    await pool_full(server)
    t0 = time.perf_counter()
    await asyncio.gather(*(one_session(server, s, 100 + i) for i in range(8)))
    return {"s": time.perf_counter() - t0}


async def shutdown8(server: Server, s: Settings) -> dict[str, Any]:
    assert server.http is not None

    async def start(i: int) -> str:
        if server.variant == "jupyverse":  # no POST /api/kernels: a session per kernel
            body = {"path": f"k{i}.ipynb", "type": "notebook", "name": f"k{i}.ipynb", "kernel": {"name": "python3"}}
            async with server.http.post(server.base + "/api/sessions", json=body) as r:
                kid = (await r.json())["kernel"]["id"]
        else:
            async with server.http.post(server.base + "/api/kernels", json={"name": "python3"}) as r:
                kid = (await r.json())["id"]
        ks = await connect(server, kid, s)
        try:
            await ks.kernel_info(KERNEL_TIMEOUT)
        finally:
            await ks.close()
        return kid

    await pool_full(server)
    before = set(kernel_pids(server))
    ids = await asyncio.gather(*(start(i) for i in range(8)))
    if server.variant == "jupyverse":
        pids = sorted(set(kernel_pids(server)) - before)
    else:
        pids = [p for k in ids for p in kernel_pids(server, k)]

    async def delete(kid: str) -> None:
        async with server.http.delete(f"{server.base}/api/kernels/{kid}") as r:
            await r.read()

    t0 = time.perf_counter()
    await asyncio.gather(*(delete(k) for k in ids))
    return {"s": time.perf_counter() - t0, "alive_at_delete_return": alive(pids), "kernel_processes_tracked": len(pids)}


async def member_mb(server: Server) -> dict[str, Any]:
    await pool_full(server)
    kernels = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
               if any("ipykernel" in a for a in p.cmdline())]
    return {"mb": statistics.median(p.memory_info().rss / 2**20 for p in kernels), "n": len(kernels)}


async def direct_cycle(s: Settings) -> dict[str, Any]:
    runs = []
    for _ in range(s.pick(5, 2)):
        kernel = direct.DirectKernel()
        t0 = time.perf_counter()
        try:
            await kernel.start()
            await kernel.run_to_idle("pass", KERNEL_TIMEOUT)
            t1 = time.perf_counter()
        finally:
            await kernel.stop(now=False)
        t2 = time.perf_counter()
        runs.append({"first_execute_s": t1 - t0, "delete_ms": (t2 - t1) * 1000, "cycle_s": t2 - t0})
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def _exited(pid: int) -> None:
    """Until process `pid` has ended, noticed at once (pidfd; polled every 5 ms where pidfds are missing)."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            await asyncio.sleep(0.005)
        return
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def direct_exit(s: Settings) -> dict[str, Any]:
    """The floor under any polite shutdown: ipykernel's own time from a `shutdown_request` (on control, as
    jupyter_client sends it) to the end of its process, no server, the exit noticed at once; for one kernel
    (median of runs) and for 8 asked at once. Each kernel has run one `pass` first, as in the cycle."""

    async def started(n: int) -> list[direct.DirectKernel]:
        """Kernels that have run one `pass`, as the cycle's have (IPython then has history to save)."""
        kernels = [direct.DirectKernel() for _ in range(n)]
        await asyncio.gather(*(k.start() for k in kernels))
        await asyncio.gather(*(k.run_to_idle("pass", KERNEL_TIMEOUT) for k in kernels))
        return kernels

    async def stop_all(kernels: list[direct.DirectKernel]) -> float:
        pids = [k.km.provisioner.process.pid for k in kernels]
        t0 = time.perf_counter()
        for k in kernels:
            await k.km.request_shutdown()
        await asyncio.wait_for(asyncio.gather(*(_exited(p) for p in pids)), KERNEL_TIMEOUT)
        return time.perf_counter() - t0

    singles = []
    for _ in range(s.pick(5, 2)):
        kernels = await started(1)
        try:
            singles.append(await stop_all(kernels) * 1000)
        finally:
            await asyncio.gather(*(k.stop(now=True) for k in kernels))
    kernels = await started(8)
    try:
        all8 = await stop_all(kernels)
    finally:
        await asyncio.gather(*(k.stop(now=True) for k in kernels))
    return {"exit_ms": statistics.median(singles), "exit8_s": all8}


async def guarded(coro: Any) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(coro, 240)
    except Exception as e:  # noqa: BLE001 - a failing figure is a cell with its error, not a crash
        return {"error": f"{type(e).__name__}: {e}"}


async def main_async(ns: argparse.Namespace) -> int:
    s = Settings(quick=ns.quick, protocol=V1)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    t0 = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    variants = list(VARIANTS)
    if servers.jupyverse_executable() is None:
        variants.remove("jupyverse")
        log(f"jupyverse is not installed (set ${servers.JUPYVERSE_VAR}): its column is left out")
    with BenchEnvironment() as env:
        for round_no in range(1, ns.rounds + 1):
            log(f"round {round_no}/{ns.rounds}")
            for variant in variants:
                out = results.setdefault(variant, {})
                if variant == "direct":
                    out.setdefault("cycle", []).append(await guarded(direct_cycle(s)))
                    out.setdefault("exit", []).append(await guarded(direct_exit(s)))
                    log(f"  direct: cycle {out['cycle'][-1]} exit {out['exit'][-1]}")
                    continue
                server = await servers.start(env, variant)
                try:
                    if variant == "himalia_pool":
                        out.setdefault("member", []).append(await guarded(member_mb(server)))
                    for name, fig in (("cycle", cycle), ("burst8", burst8), ("shutdown8", shutdown8)):
                        out.setdefault(name, []).append(await guarded(fig(server, s)))
                        log(f"  {variant}: {name} {out[name][-1]}")
                finally:
                    await servers.stop(server)
                left = servers.reap(env.run_id)
                if left:
                    log(f"  reaped processes left behind by {variant}: {left}")
    print(table(results, ns.rounds))
    Path(ns.json).write_text(json.dumps(results, indent=2))
    return 0


def med(results: dict, variant: str, fig: str, key: str) -> float | None:
    values = [r[key] for r in results.get(variant, {}).get(fig, []) if "error" not in r and key in r]
    return statistics.median(values) if values else None


def table(results: dict, rounds: int) -> str:
    rows = [("session create → kernel_info → first execute (s)", "cycle", "first_execute_s", ".3f"),
            ("session create → … → DELETE answered, whole cycle (s)", "cycle", "cycle_s", ".3f"),
            ("DELETE /api/sessions/{id} alone (ms)", "cycle", "delete_ms", ".0f"),
            ("  floor: ipykernel's own shutdown_request → process exit, no server (ms)", "exit", "exit_ms", ".0f"),
            ("kernel processes alive when the DELETE answered (sum over runs)", "cycle", "alive_at_delete_return", ".0f"),
            ("burst: 8 sessions at once, until all executed (s)", "burst8", "s", ".2f"),
            ("8 running kernels deleted at once (s)", "shutdown8", "s", ".3f"),
            ("  kernel processes alive when the 8 DELETEs answered", "shutdown8", "alive_at_delete_return", ".0f"),
            ("  floor: 8 ipykernels asked to shut down at once → all exited, no server (s)", "exit", "exit8_s", ".3f"),
            ("RSS of one idle pool member (MB)", "member", "mb", ".0f")]
    head = ("| figure | Himalia + pool | Himalia | Himalia, shutdown = terminate | jupyter_server | jupyverse "
            "| direct ZMQ | pool/js | Himalia/js | terminate/js | jupyverse/js |")
    lines = [f"median of {rounds} round(s)", "", head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, fig, key, fmt in rows:
        v = {x: med(results, x, fig, key) for x in VARIANTS}

        def f(x: float | None) -> str:
            return "–" if x is None else format(x, fmt)

        js = v["jupyter_server"]
        ratio = {x: (f"{v[x] / js:.2f}×" if v[x] is not None and js else "–")
                 for x in ("himalia_pool", "himalia", "himalia_terminate", "jupyverse")}
        lines.append(f"| {label} | {f(v['himalia_pool'])} | {f(v['himalia'])} | {f(v['himalia_terminate'])} | "
                     f"{f(js)} | {f(v['jupyverse'])} | {f(v['direct'])} | {ratio['himalia_pool']} | "
                     f"{ratio['himalia']} | {ratio['himalia_terminate']} | {ratio['jupyverse']} |")
    errors = sorted({f"- {x} {fig}: {r['error']}" for x, figs in results.items() for fig, rs in figs.items()
                     for r in rs if "error" in r})
    return "\n".join(lines + ([""] + errors if errors else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pool", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default="bench-pool-results.json")
    ns = p.parse_args(argv)
    return asyncio.run(main_async(ns))


if __name__ == "__main__":
    sys.exit(main())
