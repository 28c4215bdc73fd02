"""`himalia kernels list` and `himalia kernels stop [ID ...|--all]`: every provider's kernels recorded in
the state dir (local processes, gateway kernels), with no server running. Each provider plugin
contributes its own through `himalia_kept_kernels`; this command only aggregates them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from himalia import KeptKernel, KeptKernels, StartupError, StateDir, state_dir_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="list the recorded kernels, where and whether each runs")
    lst.add_argument("--json", action="store_true", help="print JSON, one kernel per line")
    stop = sub.add_parser("stop", help="stop recorded kernels and forget them")
    stop.add_argument("ids", nargs="*", metavar="ID", help="kernel ids (or unique prefixes)")
    stop.add_argument("--all", action="store_true", help="stop every recorded kernel")


def _sources(ns: argparse.Namespace, config: Any) -> list[KeptKernels]:
    return [a.item for a in ns.hooks.kept_kernels(config)]  # ns.hooks: see CliCommand


def _line(kernel: KeptKernel) -> str:
    return "  ".join(part for part in (kernel.id, kernel.name, kernel.state, kernel.where, kernel.detail) if part)


def run(ns: argparse.Namespace, config: Any) -> int:
    state_dir = state_dir_of(config)
    sources = _sources(ns, config)
    listed = [(source, kernel) for source in sources for kernel in source.list()]
    if ns.action == "list":
        for source, kernel in listed:
            if ns.json:
                print(json.dumps({"id": kernel.id, "name": kernel.name, "provider": source.provider,
                                  "where": kernel.where, "state": kernel.state, **kernel.data}))
            else:
                print(_line(kernel))
        if not listed and not ns.json:
            print(f"no kernels recorded in {state_dir}")
        return 0
    if not ns.all and not ns.ids:
        print("himalia kernels stop: name kernel ids, or --all", file=sys.stderr)
        return 2
    chosen = list(listed) if ns.all else []
    for prefix in ns.ids:
        found = [(s, k) for s, k in listed if k.id.startswith(prefix)]
        if len(found) != 1:
            print(f"himalia kernels stop: {'no' if not found else 'more than one'} kernel recorded in "
                  f"{state_dir} matches {prefix!r}", file=sys.stderr)
            return 1
        chosen.extend(found)
    lock = StateDir(state_dir)
    try:
        lock.lock()  # a server using the state dir stops its kernels itself (DELETE /api/kernels/ID)
    except StartupError as e:
        print(f"himalia kernels stop: {e}; stop kernels through that server", file=sys.stderr)
        return 1
    status = 0
    try:
        for source in sources:
            mine = [k for s, k in chosen if s is source]
            if not mine:
                continue
            outcome = source.stop([k.id for k in mine])
            for kernel in mine:
                error = outcome.get(kernel.id)
                if error is None:
                    print(f"stopped kernel {kernel.id} ({kernel.name})")
                else:
                    print(f"himalia kernels stop: kernel {kernel.id} ({kernel.name}): {error}", file=sys.stderr)
                    status = 1
    finally:
        lock.unlock()
    return status
