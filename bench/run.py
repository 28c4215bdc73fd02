"""`python -m bench`: Himalia against jupyter_server, alternating servers round by round, one table.

Each round starts every server variant in turn (A B A B ...) on a fresh temp root, runs the selected
figures against it, and stops it (kernels included). Medians over rounds go into the table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from . import direct, figures_http, figures_kernel, figures_lab, load, report, servers
from .kernelws import LEGACY, V1
from .servers import BenchEnvironment, Server
from .settings import Settings

FIGURE_TIMEOUT = 240.0

ServerFigure = Callable[[Server, Settings], Awaitable[dict[str, Any]]]
DirectFigure = Callable[[Settings], Awaitable[dict[str, Any]]]

# figure → (through a server, direct ZMQ or None, jupyter_server variants it runs on)
FIGURES: dict[str, tuple[ServerFigure | None, DirectFigure | None, tuple[str, ...]]] = {
    "start": (None, None, ("jupyter_server", "jupyter_server_ext")),
    "memory": (figures_kernel.kernels8, None, ("jupyter_server",)),
    "status": (figures_http.status, None, ("jupyter_server",)),
    "kernelspecs": (figures_http.kernelspecs, None, ("jupyter_server",)),
    "contents": (figures_http.contents, None, ("jupyter_server",)),
    "notebook": (figures_http.notebook, None, ("jupyter_server",)),
    "session": (figures_kernel.session, direct.session, ("jupyter_server", "jupyter_server_tuned")),
    "execute": (figures_kernel.execute, direct.execute, ("jupyter_server", "jupyter_server_tuned")),
    "iopub": (figures_kernel.iopub, direct.iopub, ("jupyter_server", "jupyter_server_tuned")),
    "kernels8": (figures_kernel.kernels8, direct.kernels8, ("jupyter_server",)),
    "fanout": (figures_kernel.fanout, None, ("jupyter_server", "jupyter_server_tuned")),
    # JupyterLab: only jupyter_server with its jupyterlab extension (`jupyter lab`) serves it
    "lab_page": (figures_lab.lab_page, None, ("jupyter_server_ext",)),
    "lab_settings": (figures_lab.lab_settings, None, ("jupyter_server_ext",)),
    "lab_launch": (figures_lab.lab_launch, None, ("jupyter_server_ext",)),
}
# memory and kernels8 are one procedure (8 kernels, then RSS); it runs once when either is asked for
SOURCE = {"memory": "kernels8"}

# jupyverse (the other plugin-first server) runs every figure but JupyterLab's: the bench starts it with
# `--disable lab --disable page_config` (jupyverse[noauth] does not install JupyterLab's fps plugin), so
# it serves the REST and websocket APIs only, as jupyter_server without extensions does. Its kernels are
# started through POST /api/sessions (it has no POST /api/kernels; figures_kernel.start_kernel).
JUPYVERSE_SKIPS = report.JUPYVERSE_SKIPS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", metavar="FIG,FIG", help=f"figures to run (default all): {', '.join(FIGURES)}")
    p.add_argument("--quick", action="store_true", help="small counts and short windows (2-3 minutes)")
    p.add_argument("--rounds", type=int, help="rounds of A B A B (default 3, --quick 1)")
    p.add_argument("--protocol", choices=["v1", "legacy"], default="v1",
                   help="kernel websocket protocol for both servers (default v1, JupyterLab's)")
    p.add_argument("--uvloop", action="store_true", help="also run Himalia on uvloop (needs uvloop installed)")
    p.add_argument("--unbatched", action="store_true",
                   help="also run Himalia writing each websocket message on its own (the relay before issue 22)")
    p.add_argument("--no-jupyter-server", action="store_true",
                   help="leave the jupyter_server variants out (Himalia, direct, and jupyverse if installed)")
    p.add_argument("--no-jupyverse", action="store_true",
                   help="leave jupyverse out even when it is installed ($HIMALIA_BENCH_JUPYVERSE or on PATH)")
    p.add_argument("--python-load", action="store_true", help="aiohttp load generator even if wrk is installed")
    p.add_argument("--json", metavar="PATH", default="bench-results.json", help="where to write results")
    ns = p.parse_args(argv)
    ns.selected = list(FIGURES) if not ns.only else [f.strip() for f in ns.only.split(",") if f.strip()]
    unknown = [f for f in ns.selected if f not in FIGURES]
    if unknown:
        p.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    if ns.rounds is None:
        ns.rounds = 1 if ns.quick else 3
    if not 1 <= ns.rounds <= 10:
        p.error("--rounds must be 1..10")
    return ns


def plan(selected: list[str], himalia_variants: list[str], with_js: bool, with_jupyverse: bool = False
         ) -> dict[str, list[str]]:
    """variant → the procedures it runs. `start` needs none: every server start measures it."""
    out: dict[str, list[str]] = {}
    for fig in selected:
        _server_fn, direct_fn, js_variants = FIGURES[fig]
        proc = SOURCE.get(fig, fig)
        targets = [*himalia_variants, *(js_variants if with_js else ())]
        if with_jupyverse and fig not in JUPYVERSE_SKIPS:
            targets.append("jupyverse")
        if direct_fn is not None:
            targets.append("direct")
        for v in targets:
            procs = out.setdefault(v, [])
            if fig != "start" and proc not in procs:
                procs.append(proc)
    order = [*himalia_variants, "jupyter_server", "jupyter_server_ext", "jupyter_server_tuned", "jupyverse",
             "direct"]
    return {v: out[v] for v in order if v in out}


async def run_variant(env: BenchEnvironment, variant: str, procs: list[str], s: Settings,
                      results: report.Results, log: Callable[[str], None]) -> None:
    def record(fig: str, value: dict[str, Any]) -> None:
        results.setdefault(variant, {}).setdefault(fig, []).append(value)
        if "error" in value:
            log(f"  {variant}: {fig} failed: {value['error']}")

    if variant == "direct":
        for proc in procs:
            t = time.monotonic()
            record(proc, await _guarded(FIGURES[proc][1](s)))  # type: ignore[misc]
            log(f"  direct: {proc} ({time.monotonic() - t:.1f} s)")
        return
    log(f"  {variant}: starting")
    try:
        server = await servers.start(env, variant)
    except Exception as e:  # noqa: BLE001 - a server that cannot start is a row of errors, not a crash
        for proc in ["start", *procs]:
            record(proc, {"error": f"server did not start: {' / '.join(str(e).splitlines()[-3:])}"})
        return
    try:
        await asyncio.sleep(0.5)  # let start-up work finish before reading idle memory
        record("start", {"cold_s": server.cold_start_s, "rss_idle_mb": server.rss_mb()})
        log(f"  {variant}: cold start {server.cold_start_s:.2f} s, RSS {server.rss_mb():.0f} MB")
        for proc in procs:
            t = time.monotonic()
            record(proc, await _guarded(FIGURES[proc][0](server, s)))  # type: ignore[misc]
            log(f"  {variant}: {proc} ({time.monotonic() - t:.1f} s)")
    finally:
        await servers.stop(server)


async def _guarded(coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        return await asyncio.wait_for(coro, FIGURE_TIMEOUT)
    except figures_http.Unsupported as e:
        return {"error": str(e)}
    except asyncio.TimeoutError as e:  # the figure's own bound (a connect, a reply) or the 240 s one
        here = Path(__file__).parent
        ours = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).parent == here]
        where = f" ({Path(ours[-1].filename).name}:{ours[-1].lineno})" if ours else ""
        why = f": {e}" if str(e) else ""
        return {"error": f"timed out after {time.monotonic() - t0:.0f} s{why}{where}"}
    except Exception as e:  # noqa: BLE001 - one failing figure must not lose the others
        last = traceback.extract_tb(e.__traceback__)[-1]
        return {"error": f"{type(e).__name__}: {e} ({Path(last.filename).name}:{last.lineno})"}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
        "versions": {d: version(d) for d in ("himalia", "jupyter_server", "ipykernel", "jupyter_client",
                                             "tornado", "aiohttp", "pyzmq", "uvloop")},
        "jupyverse": servers.jupyverse_versions(),
        "load_generator": load.tool(),
        "wrk": shutil.which("wrk"),
    }


async def main_async(ns: argparse.Namespace) -> int:
    s = Settings(quick=ns.quick, protocol=V1 if ns.protocol == "v1" else LEGACY, python_load=ns.python_load)
    himalia_variants = ["himalia", *(["himalia_unbatched"] if ns.unbatched else []),
                        *(["himalia_uvloop"] if ns.uvloop else [])]
    with_jupyverse = not ns.no_jupyverse and servers.jupyverse_executable() is not None
    todo = plan(ns.selected, himalia_variants, not ns.no_jupyter_server, with_jupyverse)
    results: report.Results = {}
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # clean up as for Ctrl-C
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    if not ns.no_jupyverse and not with_jupyverse:
        log(f"jupyverse is not installed (set ${servers.JUPYVERSE_VAR}): its column is left out")
    with BenchEnvironment() as env:
        for round_no in range(1, ns.rounds + 1):
            log(f"round {round_no}/{ns.rounds}")
            for variant, procs in todo.items():
                await run_variant(env, variant, procs, s, results, log)
                leftovers = servers.reap(env.run_id)
                if leftovers:
                    log(f"  reaped processes left behind by {variant}: {leftovers}")
    rows = report.build_rows(results, set(ns.selected), himalia_variants, s.protocol)
    table = report.markdown(rows, himalia_variants, with_jupyverse)
    info = machine()
    servers_line = "Himalia vs jupyter_server" + (" and jupyverse" if with_jupyverse else "")
    print(f"\n{servers_line} — {started:%Y-%m-%d %H:%M} UTC, {info['cores']} cores ({info['cpu']}), "
          f"Python {info['python']}, {ns.rounds} round(s){' --quick' if ns.quick else ''}, "
          f"requests/s by {info['load_generator']} on the same machine, asyncio event loop"
          f"{' (and uvloop)' if ns.uvloop else ''}\n")
    print(table)
    out = {"date": started.isoformat(), "duration_s": time.monotonic() - t0, "machine": info,
           "settings": {"quick": ns.quick, "rounds": ns.rounds, "protocol": s.protocol, "only": ns.selected,
                        "uvloop": ns.uvloop, "jupyverse": with_jupyverse,
                        "variants": {v: servers.VARIANTS[v] for v in todo}},
           "table": [{k: v for k, v in r.items() if k != "fmt"} for r in rows], "raw": results}
    Path(ns.json).write_text(json.dumps(out, indent=2, default=str))
    print(f"\nresults: {ns.json}  ({time.monotonic() - t0:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    try:
        return asyncio.run(main_async(ns))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every server and kernel started by the bench was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
