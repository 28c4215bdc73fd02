"""`python -m bench.profile FIGURE [--server himalia]`: one figure under py-spy, with the hottest frames.

Starts the server, attaches `py-spy record` (pip install py-spy; root or ptrace rights) to it, runs the
figure once (full counts unless --quick), stops both, and prints the top frames by own and by total
samples. The collapsed stacks are kept for flame graphs (e.g. `inferno-flamegraph` or speedscope).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import sys
from pathlib import Path

from . import servers
from .run import FIGURES, SOURCE
from .servers import BenchEnvironment
from .settings import Settings


def summarize(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return "no samples"
    out = [f"{samples} samples", "", "own  total  frame"]
    for frame, n in own.most_common(top):
        out.append(f"{100 * n / samples:4.1f}% {100 * total[frame] / samples:5.1f}%  {frame}")
    out += ["", "by total (inclusive):"]
    for frame, n in total.most_common(top * 2):
        out.append(f"{100 * n / samples:5.1f}%  {frame}")
    return "\n".join(out)


async def profile(figure: str, variant: str, s: Settings, out: Path, top: int) -> int:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    proc_name = SOURCE.get(figure, figure)
    fn = FIGURES[proc_name][0]
    if fn is None:
        print(f"figure {figure!r} has no procedure to profile", file=sys.stderr)
        return 2
    with BenchEnvironment() as env:
        server = await servers.start(env, variant)
        spy = None
        try:
            spy = await asyncio.create_subprocess_exec(
                py_spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "200",
                "--output", str(out), "--nonblocking", stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            await asyncio.sleep(1.0)  # py-spy attaches
            result = await asyncio.wait_for(fn(server, s), 300)
            print(result)
        finally:
            if spy is not None and spy.returncode is None:
                spy.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(spy.wait(), 30)
                except asyncio.TimeoutError:
                    os.killpg(spy.pid, signal.SIGKILL)
                    await spy.wait()
            await servers.stop(server)
    print(summarize(out, top))
    print(f"\ncollapsed stacks: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("figure", choices=[f for f in FIGURES if f != "start"])
    p.add_argument("--server", default="himalia", choices=[v for v in servers.VARIANTS if v != "direct"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--protocol", choices=["v1", "legacy"], default="v1")
    p.add_argument("--out", default="bench-profile.txt", help="collapsed stacks (default bench-profile.txt)")
    p.add_argument("--top", type=int, default=25)
    ns = p.parse_args(argv)
    s = Settings(quick=ns.quick, protocol="v1.kernel.websocket.jupyter.org" if ns.protocol == "v1" else "legacy")
    try:
        return asyncio.run(profile(ns.figure, ns.server, s, Path(ns.out), ns.top))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
