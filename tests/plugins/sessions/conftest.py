"""Helpers for the session tests: an observer plugin for the session and kernel events, and the
process of a kernel found through /proc (as an outsider would find it), and test kernelspecs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from himalia import SERVICES, hookimpl

WAIT = 60.0


class Watch:
    """Something to wake a test when what it watches changes; `until` waits, bounded, for a condition."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def poke(self, *_: Any) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                if condition():
                    return
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


class Events(Watch):
    """Records the notifications a server sends; `until` blocks until a condition holds."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.started: list[str] = []
        self.stopped: list[tuple[str, str]] = []

    @hookimpl
    def himalia_session_created(self, session):
        self.created.append(session)
        self.loop.call_soon_threadsafe(self.poke)

    @hookimpl
    def himalia_session_deleted(self, session_id):
        self.deleted.append(session_id)
        self.loop.call_soon_threadsafe(self.poke)

    @hookimpl
    def himalia_kernel_started(self, kernel_id, name):
        self.started.append(kernel_id)
        self.loop.call_soon_threadsafe(self.poke)

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason):
        self.stopped.append((kernel_id, reason))
        self.loop.call_soon_threadsafe(self.poke)


@pytest.fixture
async def events() -> Events:
    return Events()


@pytest.fixture
def serve(himalia_server, events):
    """`async with serve(**kwargs) as server`: a server with the event observer; when the block
    ends, the server stops, and every kernel process it ran is checked gone."""

    @contextlib.asynccontextmanager
    async def factory(**kwargs: Any) -> AsyncIterator[Any]:
        plugins = {"test_events": events, **kwargs.pop("plugins", {})}
        pids: set[int] = set()
        async with himalia_server(plugins=plugins, **kwargs) as server:
            try:
                yield server
            finally:
                kernels = server.app[SERVICES].kernels
                for k in await kernels.list_kernels() if kernels is not None else []:
                    pids.update(kernel_pids(k["id"]))
        # leaving the server shut its kernels down
        assert not [p for p in pids if process_alive(p)], "kernel processes outlived the server"

    return factory


def kernel_pids(kernel_id: str) -> list[int]:
    """Processes whose command line names the kernel's id (its connection file does)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if kernel_id.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def kernel_pid(kernel_id: str) -> int:
    pids = kernel_pids(kernel_id)
    assert len(pids) == 1, f"expected one process for kernel {kernel_id}, found {pids}"
    return pids[0]


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def install_kernelspec(name: str, argv: list[str]) -> None:
    """A kernelspec in this test's own JUPYTER_DATA_DIR (tests/conftest.py gives each test one)."""
    spec_dir = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / name
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
