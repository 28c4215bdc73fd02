"""The server-info file: one JSON file per running server in the Jupyter runtime dir, owner-only.

`himalia list` and `himalia stop` read them; a server removes its own on exit, and files whose
process is gone are pruned when listed.
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


def alive(pid: int) -> bool:
    """False once `pid` has exited (a zombie not yet reaped by its parent counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running() -> list[dict[str, Any]]:
    """Every live server's info; stale files (dead pid, unreadable JSON) are removed."""
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
        if not alive(pid):
            path.unlink(missing_ok=True)
            continue
        out.append(info)
    return out
