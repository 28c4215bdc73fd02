"""Kernel records in the state dir: what the next server needs to find a local kernel again.

Each kernel has `<state_dir>/kernels/<id>.json`, owner-only and written atomically: written before the
process starts (state `launching`), completed once it runs (pid, process group, process start time,
connection info and key, what the provisioner's `get_provisioner_info()` returns), rewritten after every
restart, removed when the kernel is shut down. A kernel's processes carry `HIMALIA_KERNEL_ID=<id>` in
their environment (children inherit it), so a pid is only trusted when its start time matches the
record and its environment carries the marker: a recycled pid is never signalled.

The state dir itself (lock, atomic record writes, reading) is the core's `himalia.statedir`."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from typing import Any

from himalia import StateDir as CoreStateDir
from himalia import default_state_dir

__all__ = ["MARKER", "ReattachedProcess", "StateDir", "default_state_dir", "is_kernel_process", "kill_marked",
           "marked_processes", "start_time"]

MARKER = "HIMALIA_KERNEL_ID"
"""The environment variable every process of a kernel carries: the kernel's id."""


class StateDir(CoreStateDir):
    """The local kernels' records (`<state_dir>/kernels`) and their output logs, and the state dir's lock
    (see `himalia.statedir`; blocking calls: run them in a thread)."""

    def __init__(self, path: str):
        super().__init__(path, "kernels")

    def log_path(self, kernel_id: str) -> str:
        return os.path.join(self.kernels, f"{kernel_id}.log")

    def delete(self, kernel_id: str, *, log: bool = True) -> None:
        super().delete(kernel_id)
        if log:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log_path(kernel_id))

    def open_log(self, kernel_id: str) -> Any:
        """The kernel's output log (its stdout and stderr in keep mode), 0600, appended to."""
        os.makedirs(self.kernels, mode=0o700, exist_ok=True)
        fd = os.open(self.log_path(kernel_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab", buffering=0)


# -- processes ----------------------------------------------------------------------------------


def _environ(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()


def _state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0].decode() if fields else None


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid,
    one process for the life of the machine."""
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def is_kernel_process(pid: int, kernel_id: str, started: int | None = None) -> bool:
    """True when `pid` is a live (not zombie) process of kernel `kernel_id`: its environment carries the
    marker and, when given, its start time is `started`. A recycled pid fails both."""
    if not pid or pid <= 0:
        return False
    if started is not None and start_time(pid) != started:
        return False
    if _state(pid) in (None, "Z", "X"):
        return False
    env = _environ(pid)
    return env is not None and env.get(MARKER) == kernel_id


def marked_processes(kernel_ids: set[str]) -> dict[str, list[int]]:
    """The live processes (this user's) whose environment names one of `kernel_ids`: the kernels
    and every child they left, wherever they were re-parented."""
    found: dict[str, list[int]] = {}
    if not kernel_ids:
        return found
    own = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        pid = int(entry)
        env = _environ(pid)
        if env is None:
            continue
        kernel_id = env.get(MARKER)
        if kernel_id in kernel_ids and _state(pid) not in ("Z", "X"):
            found.setdefault(kernel_id, []).append(pid)
    return found


def kill_marked(kernel_ids: set[str]) -> dict[str, list[int]]:
    """SIGKILL every process carrying one of `kernel_ids`' markers (and nothing else); what was killed."""
    found = marked_processes(kernel_ids)
    for kernel_id, pids in found.items():
        for pid in pids:
            # checked again just before the signal: never signal a pid that changed hands meanwhile
            if is_kernel_process(pid, kernel_id):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    return found


class ReattachedProcess:
    """A `subprocess.Popen` stand-in for a kernel process this server did not start (a kept kernel
    adopted at start-up), so jupyter_client's provisioner, restarter, interrupt and shutdown work on it
    as on a child. Not our child, so its exit status is unknown: `returncode` is None while it runs,
    then `DEAD`. Liveness is a pidfd (exact; a zombie counts as dead), else /proc."""

    DEAD = -signal.SIGKILL.value
    adopted = True
    stdin = stdout = stderr = None

    def __init__(self, pid: int, kernel_id: str, started: int | None):
        self.pid = pid
        self.kernel_id = kernel_id
        self.started = started
        self.returncode: int | None = None
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self._pidfd = os.pidfd_open(pid)
        if not is_kernel_process(pid, kernel_id, started):  # the pidfd may be of a recycled pid
            self._exited()

    def _exited(self) -> None:
        self.returncode = self.DEAD
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], 0)
            if readable:
                self._exited()
        elif _state(self.pid) in (None, "Z", "X"):
            self._exited()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None and self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], timeout)
            if readable:
                self._exited()
        if self.returncode is None:
            import subprocess

            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is not None:
            return
        if self._pidfd is not None and hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal(self._pidfd, signum)  # this very process, never a recycled pid
        else:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __del__(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)

