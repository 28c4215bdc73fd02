"""The server-info file: one JSON file per running server in the Jupyter runtime dir, owner-only.

`himalia list` and `himalia stop` read them; a server removes its own on exit, and files whose
process is gone are pruned when listed. A file records its process's start time too: a pid that
the kernel has since given to another process is not that server (`is_server`), so it is never
signalled and its file is pruned.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

PREFIX = "himalia-"


def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def info_path(pid: int | None = None) -> Path:
    return runtime_dir() / f"{PREFIX}{pid or os.getpid()}.json"


def write(info: dict[str, Any]) -> Path:
    """Write atomically with mode 0600 (it holds the token)."""
    path = info_path(info["pid"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # a fresh name each time (mkstemp: O_EXCL, mode 0600 from the start), so a stale or planted
    # temp file can neither widen the token's permissions nor redirect the write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove(pid: int | None = None) -> None:
    try:
        info_path(pid).unlink()
    except FileNotFoundError:
        pass


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may itself hold spaces and parentheses):
    [state, ppid, ...]; None where there is no /proc or no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat); together with
    the pid it names one process for the life of the machine. None where /proc is not available."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def is_server(info: dict[str, Any]) -> bool:
    """True when the process the info file names is alive and is the server that wrote it: its start
    time matches the recorded one. A file without one (written by an older version) must name a
    process whose command line mentions himalia; where there is no /proc, the pid is all there is."""
    pid = int(info["pid"])
    if not alive(pid):
        return False
    recorded = info.get("start_time")
    if recorded is not None:
        return start_time(pid) == recorded
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"himalia" in f.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc")
    except OSError:
        return False


def alive(pid: int) -> bool:
    """False once `pid` has exited (a zombie not yet reaped by its parent counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] != "Z"


def running() -> list[dict[str, Any]]:
    """Every live server's info; stale files (dead or recycled pid, unreadable JSON) are removed."""
    out = []
    d = runtime_dir()
    if not d.is_dir():
        return out
    for path in sorted(d.glob(f"{PREFIX}*.json")):
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if not is_server(info):
            path.unlink(missing_ok=True)
            continue
        out.append(info)
    return out
