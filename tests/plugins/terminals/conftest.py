"""Terminal tests: every process a test's shells started must be gone when the test ends, found by an
environment marker set for each test (shells inherit the server's environment, and so do their jobs,
even the ones re-parented to init)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # term_ws, the helpers next to this file

MARKER = "HIMALIA_TEST_PROCESS_MARK"


def marked_processes(mark: str) -> list[psutil.Process]:
    """Every live process (but this one) whose environment carries `mark`."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):  # gone, or someone else's
            continue
    return found


async def wait_for_processes(mark: str, name: str, count: int, timeout: float = 30.0) -> None:
    """Until `count` marked processes named `name` run: a job the shell put in the background has
    forked when the shell prints its next line, but may not have exec'd yet, and no event says when."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        names = []
        for proc in await asyncio.to_thread(marked_processes, mark):
            try:
                names.append(proc.name())
            except psutil.Error:
                continue
        if names.count(name) >= count:
            return
        assert time.monotonic() < deadline, f"{count} {name!r} processes did not start: {names}"
        await asyncio.sleep(0.05)


@pytest.fixture
def process_mark(monkeypatch) -> str:
    """The marker of this test's processes; every marked process left at the end fails the test."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, mark)
    yield mark
    _, alive = psutil.wait_procs(marked_processes(mark), timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    try:
        assert not alive, f"processes outlived the test: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.fixture(autouse=True)
def _no_orphans(process_mark):
    yield


@pytest.fixture(autouse=True)
def _own_home(tmp_path, monkeypatch):
    """Shells read ~/.bashrc and ~/.profile: a test's shells get an empty home, so what the user's
    start-up files do (slow tool set-up, lock files a killed shell leaves behind) stays out of the
    tests, and the tests' quick kills stay out of the user's tools."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
