"""The state dir (`himalia.statedir`): one lock per server process whatever its plugins, a second
process refused with one line; owner-only atomic records; reading tolerates what a crash or a stranger
left; records written before this module (the local and gateway providers' format) are still read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from himalia import StateDir

TRY_LOCK = """
import sys
from himalia import StartupError, StateDir
try:
    StateDir(sys.argv[1], "gateway-kernels").lock()
except StartupError as e:
    print(e)
    sys.exit(3)
"""


def try_lock_elsewhere(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(path)], capture_output=True, text=True, timeout=60)


def test_one_process_holds_one_lock_shared_by_its_state_dirs_and_a_second_process_is_refused(tmp_path):
    local, gateway = StateDir(str(tmp_path), "kernels"), StateDir(str(tmp_path), "gateway-kernels")
    local.lock()
    gateway.lock()  # the same server's other provider: no fight over the file
    try:
        other = try_lock_elsewhere(tmp_path)
        assert other.returncode == 3
        assert other.stdout == (f"state dir {tmp_path} is in use by another server (pid {os.getpid()}); "
                                "set [server] state_dir to run a second one\n")
        local.unlock()  # the other holder still has it
        assert try_lock_elsewhere(tmp_path).returncode == 3
    finally:
        gateway.unlock()
        local.unlock()  # twice is harmless
    assert try_lock_elsewhere(tmp_path).returncode == 0, "the last unlock must release the state dir"


def test_records_are_owner_only_atomic_and_read_back(tmp_path):
    state = StateDir(str(tmp_path), "kernels")
    state.write({"id": "k1", "name": "python3", "key": b"secret"})
    path = tmp_path / "kernels" / "k1.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "kernels").stat().st_mode & 0o777 == 0o700
    assert state.read_all() == [{"version": 1, "id": "k1", "name": "python3", "key": "secret"}]
    state.write({"id": "k1", "name": "python3", "state": "running"})
    assert [r["state"] for r in state.read_all()] == ["running"]
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == ["k1.json"]  # no temp file left
    state.delete("k1")
    state.delete("k1")  # gone already is fine
    assert state.read_all() == []


def test_reading_skips_what_is_not_a_record_and_removes_our_temp_files(tmp_path):
    folder = tmp_path / "gateway-kernels"
    folder.mkdir()
    # written by the gateway provider before the state dir moved to the core: still read
    (folder / "a.json").write_text(json.dumps({"version": 1, "id": "a", "name": "python3",
                                               "url": "http://127.0.0.1:8888", "keep": True}))
    (folder / ".record-x1y2").write_text('{"id": "half')  # a crash mid-write
    (folder / "half.json").write_text('{"id": "half"')  # cut short
    (folder / "other.json").write_text(json.dumps({"id": "not-its-name"}))
    (folder / "list.json").write_text("[1, 2]")
    (folder / "notes.txt").write_text("a stranger's")
    records = StateDir(str(tmp_path), "gateway-kernels").read_all()
    assert [r["id"] for r in records] == ["a"]
    assert not (folder / ".record-x1y2").exists()
    assert (folder / "notes.txt").exists() and (folder / "half.json").exists()

