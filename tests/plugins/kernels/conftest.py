"""Kernel tests: every process a test's kernels started must be gone when the test ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # kernel_ws, the helpers next to this file


@pytest.fixture(autouse=True)
def _no_orphan_kernels():
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    yield
    left = [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(left, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes outlived the test: {[(p.pid, p.cmdline()) for p in alive]}"
