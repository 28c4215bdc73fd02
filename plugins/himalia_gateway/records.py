"""Records of our gateway kernels in the state dir, so the next server finds them again at the gateway.

Each kernel this server started on the gateway has `<state_dir>/gateway-kernels/<id>.json`, owner-only
(0600) and written atomically: its id, kernelspec name, the gateway's url, whether it is kept (keep
mode), when it started and was last used. It is written once the gateway answered the start request
with the id (a server killed between the two cannot know the id: that kernel stays on the gateway
until the gateway culls it), rewritten at a keep-mode exit, and removed when the kernel is shut down or
found gone.

One server at a time uses a state dir: it holds an exclusive `flock` on `<state_dir>/lock` (the same
file the local provider locks, so two servers on one state dir conflict whatever their providers).
The calls here block: run them in a thread."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import Any

from himalia import StartupError

RECORD_VERSION = 1


def default_state_dir() -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    return os.path.join(jupyter_runtime_dir(), "himalia")


class GatewayRecords:
    """The lock of the state dir and the records of our gateway kernels in it."""

    def __init__(self, state_dir: str):
        self.path = state_dir
        self.kernels = os.path.join(state_dir, "gateway-kernels")
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the state dir for this server, or raise StartupError naming the server that has it."""
        import fcntl

        os.makedirs(self.kernels, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise StartupError(f"state dir {self.path} is in use by another server (pid {holder}); "
                                   f"set [server] state_dir to run a second one") from None
            raise StartupError(f"cannot lock state dir {self.path}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd releases the flock
            self._lock_fd = None

    def path_of(self, kernel_id: str) -> str:
        return os.path.join(self.kernels, f"{kernel_id}.json")

    def write(self, record: dict[str, Any]) -> None:
        """Write a record atomically (a 0600 temp file, fsynced, renamed over the old one)."""
        os.makedirs(self.kernels, mode=0o700, exist_ok=True)
        data = json.dumps({"version": RECORD_VERSION, **record}, indent=1).encode()
        fd, tmp = tempfile.mkstemp(prefix=".record-", dir=self.kernels)  # mkstemp: 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path_of(record["id"]))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read_all(self) -> list[dict[str, Any]]:
        """Every readable record; our temp files (left by a crash mid-write) are removed, other files skipped."""
        try:
            names = sorted(os.listdir(self.kernels))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            path = os.path.join(self.kernels, name)
            if name.startswith(".record-"):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("id") == name[:-5] and isinstance(record.get("url"), str):
                records.append(record)
        return records

    def delete(self, kernel_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_of(kernel_id))
