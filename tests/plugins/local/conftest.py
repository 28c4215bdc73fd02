"""Local-provider tests: every process a test's kernels (pool members included) started must be gone
when the test ends, found by an environment marker every kernel inherits."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "kernels"))  # kernel_ws, the websocket client

MARKER = "HIMALIA_TEST_PROCESS_MARK"


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == mark:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def running(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(autouse=True)
def no_orphans(monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, mark)
    yield mark
    left = marked_processes(mark)
    _, alive = psutil.wait_procs(left, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    try:
        assert not alive, f"processes outlived the test: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
