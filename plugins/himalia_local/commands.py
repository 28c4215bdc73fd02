"""The local provider's part of `himalia kernels list|stop` (`himalia_kept_kernels`): the kernel
processes recorded in the state dir, listed and stopped with no server running (keep mode leaves
kernels running between servers). The command itself is the kernels plugin's."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from himalia import KeptKernel, state_dir_of

from .persist import StateDir, is_kernel_process, kill_marked, marked_processes


def _running(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    return bool(pid) and is_kernel_process(int(pid), record["id"], record.get("process_started"))


class LocalKept:
    """The local kernels recorded in the state dir (a `KeptKernels`)."""

    provider = "local"

    def __init__(self, config: Any):
        self.state = StateDir(state_dir_of(config))
        self.wait = config.section("local").shutdown_wait_time

    def list(self) -> list[KeptKernel]:
        out = []
        for record in self.state.read_all():
            running = _running(record)
            pool = bool(record.get("pool_member"))
            out.append(KeptKernel(
                id=record["id"], name=str(record.get("name")), where=f"pid {record.get('pid')}",
                state="running" if running else "not running",
                detail=f"{record.get('cwd')}{'  (idle pool member)' if pool else ''}",
                # --json as before the gateway joined: "state" is the record's (launching, running, dead)
                data={"state": record.get("state"), "running": running, "pid": record.get("pid"),
                      "cwd": record.get("cwd"), "kept": bool(record.get("keep")), "pool_member": pool}))
        return out

    def stop(self, kernel_ids: Sequence[str]) -> dict[str, str | None]:
        """SIGTERM every process carrying one of the kernels' markers (verified, never a recycled pid),
        SIGKILL what is left after `[plugins.local] shutdown_wait_time`; records and connection files removed."""
        ids = set(kernel_ids)
        for kernel_id, pids in marked_processes(ids).items():
            for pid in pids:
                if is_kernel_process(pid, kernel_id):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        deadline = time.monotonic() + self.wait
        while marked_processes(ids) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling /proc: processes that are not our children give no event
        kill_marked(ids)
        for kernel_id in kernel_ids:
            self.state.delete(kernel_id)
            _remove_connection_file(kernel_id)
        return {kernel_id: None for kernel_id in kernel_ids}


def _remove_connection_file(kernel_id: str) -> None:
    from jupyter_core.paths import jupyter_runtime_dir

    try:
        os.unlink(os.path.join(jupyter_runtime_dir(), f"kernel-{kernel_id}.json"))
    except FileNotFoundError:
        pass
