"""Noticing a kernel process's exit the moment it happens: a pidfd (Linux ≥ 5.3) watched by the event
loop, instead of jupyter_client's 0.1 s `poll()` ticks.

The process is not reaped here: jupyter_client's `Popen.poll()` still does that (the pidfd becomes
readable when the process ends, zombie or not), so its bookkeeping is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger("himalia.local")

FALLBACK_POLL = 0.02
"""Where pidfds are missing (not Linux, old kernels): how often the exit is checked instead."""


class ExitWatch:
    """Calls `on_exit` once, on the loop, when process `pid` ends; `cancel()` stops watching."""

    def __init__(self, pid: int, on_exit: Callable[[], None]):
        self._loop = asyncio.get_running_loop()
        self._on_exit = on_exit
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.fired = False
        try:
            self._fd = os.pidfd_open(pid)  # type: ignore[attr-defined]
        except ProcessLookupError:  # gone and reaped already
            self._loop.call_soon(self._fire)
            return
        except (AttributeError, OSError):  # no pidfd here: check often, still not 0.1 s
            self._task = self._loop.create_task(self._poll(pid))
            return
        self._loop.add_reader(self._fd, self._fire)

    async def _poll(self, pid: int) -> None:
        while _running(pid):
            await asyncio.sleep(FALLBACK_POLL)
        self._fire()

    def _fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        self.cancel()
        self._on_exit()

    def cancel(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None


def _running(pid: int) -> bool:
    """Alive and not a zombie (`kill(pid, 0)` alone answers yes for a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


async def wait_exit(pid: int) -> None:
    """Return once process `pid` has ended (unbounded: callers bound it, as jupyter_client's waits are)."""
    done = asyncio.get_running_loop().create_future()
    watch = ExitWatch(pid, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        watch.cancel()
