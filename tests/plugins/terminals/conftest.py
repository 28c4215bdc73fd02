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
