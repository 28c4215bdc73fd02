"""Kernel tests: every process a test's kernels started must be gone when the test ends.

Orphans re-parented to init are no one's children any more, so processes are found by an environment
marker set for each test (kernels inherit the server's environment, and so do their children)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # kernel_ws, the helpers next to this file

MARKER = "HIMALIA_TEST_PROCESS_MARK"


def marked_processes(mark: str) -> list[psutil.Process]:
    """Every process (but this one) whose environment carries `mark`."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == mark:
                found.append(proc)
        except (psutil.Error, OSError):  # gone, a zombie or someone else's
            continue
    return found


@pytest.fixture(autouse=True)
def _no_orphan_kernels(monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, mark)
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    yield
    left = {p.pid: p for p in psutil.Process(os.getpid()).children(recursive=True) if p.pid not in before}
    left.update((p.pid, p) for p in marked_processes(mark))
    _, alive = psutil.wait_procs(list(left.values()), timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    try:
        assert not alive, f"processes outlived the test: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in alive:  # do not let one failure leave processes for the rest of the run
            try:
                p.kill()
            except psutil.Error:
                pass
