"""`himalia kernels list` and `himalia kernels stop [ID ...|--all]`: the kernels recorded in the state
dir, with no server running (keep mode leaves kernels running between servers)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from himalia import StartupError

from .persist import StateDir, default_state_dir, is_kernel_process, kill_marked, marked_processes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="list the recorded kernels and whether each runs")
    lst.add_argument("--json", action="store_true", help="print JSON, one kernel per line")
    stop = sub.add_parser("stop", help="stop recorded kernels (SIGTERM, then SIGKILL) and forget them")
    stop.add_argument("ids", nargs="*", metavar="ID", help="kernel ids (or unique prefixes)")
    stop.add_argument("--all", action="store_true", help="stop every recorded kernel")


def _state(config: Any) -> StateDir:
    return StateDir(config.server.state_dir or default_state_dir())


def _running(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    return bool(pid) and is_kernel_process(int(pid), record["id"], record.get("process_started"))


def run(ns: argparse.Namespace, config: Any) -> int:
    state = _state(config)
    records = state.read_all()
    if ns.action == "list":
        for record in records:
            row = {"id": record["id"], "name": record.get("name"), "state": record.get("state"),
                   "running": _running(record), "pid": record.get("pid"), "cwd": record.get("cwd"),
                   "kept": bool(record.get("keep")), "pool_member": bool(record.get("pool_member"))}
            if ns.json:
                print(json.dumps(row))
            else:
                print(f"{row['id']}  {row['name']}  {'running' if row['running'] else 'not running'}  "
                      f"pid {row['pid']}  {row['cwd']}{'  (idle pool member)' if row['pool_member'] else ''}")
        if not records and not ns.json:
            print(f"no kernels recorded in {state.kernels}")
        return 0
    if not ns.all and not ns.ids:
        print("himalia kernels stop: name kernel ids, or --all", file=sys.stderr)
        return 2
    chosen = records if ns.all else []
    for prefix in ns.ids:
        found = [r for r in records if r["id"].startswith(prefix)]
        if len(found) != 1:
            print(f"himalia kernels stop: {'no' if not found else 'more than one'} kernel recorded in "
                  f"{state.kernels} matches {prefix!r}", file=sys.stderr)
            return 1
        chosen.extend(found)
    try:
        state.lock()  # a server using the state dir stops its kernels itself (DELETE /api/kernels/ID)
    except StartupError as e:
        print(f"himalia kernels stop: {e}; stop kernels through that server", file=sys.stderr)
        return 1
    try:
        ids = {r["id"] for r in chosen}
        for kernel_id, pids in marked_processes(ids).items():
            for pid in pids:
                if is_kernel_process(pid, kernel_id):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        wait = config.section("local").shutdown_wait_time
        deadline = time.monotonic() + wait
        while marked_processes(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        kill_marked(ids)
        for record in chosen:
            state.delete(record["id"])
            _remove_connection_file(record["id"])
            print(f"stopped kernel {record['id']} ({record.get('name')})")
    finally:
        state.unlock()
    return 0


def _remove_connection_file(kernel_id: str) -> None:
    from jupyter_core.paths import jupyter_runtime_dir

    try:
        os.unlink(os.path.join(jupyter_runtime_dir(), f"kernel-{kernel_id}.json"))
    except FileNotFoundError:
        pass
