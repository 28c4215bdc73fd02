"""Shared setup for the reliability tests: no process a test started may outlive it, and the small
helpers several of them need (a kernel websocket client, a root directory with known files)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # reliability_kit.py, next to this file


@pytest.fixture(autouse=True)
def _no_orphan_processes():
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    yield
    left = [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(left, timeout=15)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:  # never leave them running for the next test, but still fail this one
        p.kill()
    assert not alive, f"processes outlived the test: {[(p.pid, p.cmdline()) for p in alive]}"
