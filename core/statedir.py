"""The state dir (`[server] state_dir`): where providers keep the records that let the next server, or
`himalia kernels` with no server running, find their kernels again.

`StateDir(path, kind)` is one kind of record in it, `<state_dir>/<kind>/<id>.json` (the local provider's
`kernels`, the gateway provider's `gateway-kernels`): each record owner-only (0600) and written
atomically (a temp file, fsynced, renamed over the old one); reading them all tolerates half-written
and foreign files.

One server at a time uses a state dir: it holds an exclusive `flock` on `<state_dir>/lock`. The lock is
the process's, not a plugin's: every `StateDir` of one state dir in one process shares one lock (counted;
the last `unlock` releases it), so plugins of one server never fight over it, and a second server (or
`himalia kernels stop` while a server runs) is refused with one line naming the holder's pid.

Every call here blocks: run it in a thread (`asyncio.to_thread`) from the event loop.

.. versionadded:: 0.3
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import StartupError

RECORD_VERSION = 1
TEMP_PREFIX = ".record-"


def default_state_dir() -> str:
    """`himalia` in the Jupyter runtime dir: the state dir when `[server] state_dir` is empty."""
    from jupyter_core.paths import jupyter_runtime_dir

    return os.path.join(jupyter_runtime_dir(), "himalia")


def state_dir_of(config: Any) -> str:
    """The state dir a config names (`[server] state_dir`, else the default)."""
    return config.server.state_dir or default_state_dir()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


_locks: dict[str, list[int]] = {}
"""realpath of a state dir → [lock fd, holders] for the locks this process holds."""
_locks_guard = threading.Lock()


class StateDir:
    """One kind of record (`kind`, a subfolder) in the state dir at `path`, and the state dir's lock."""

    def __init__(self, path: str, kind: str = "kernels"):
        self.path = path
        self.kernels = os.path.join(path, kind)
        """The folder of the records."""
        self._locked = False

    # -- the lock ---------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the state dir for this process (shared with this process's other StateDirs of it), or
        raise StartupError naming the pid of the server that has it."""
        import fcntl

        with _locks_guard:
            if self._locked:
                return
            os.makedirs(self.kernels, mode=0o700, exist_ok=True)
            key = os.path.realpath(self.path)
            held = _locks.get(key)
            if held is not None:
                held[1] += 1
                self._locked = True
                return
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
            _locks[key] = [fd, 1]
            self._locked = True

    def unlock(self) -> None:
        """Let go of the lock; the process's last holder releases it (closing the fd drops the flock)."""
        with _locks_guard:
            if not self._locked:
                return
            self._locked = False
            key = os.path.realpath(self.path)
            held = _locks.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                del _locks[key]
                os.close(held[0])

    # -- records ----------------------------------------------------------------------------

    def record_path(self, record_id: str) -> str:
        return os.path.join(self.kernels, f"{record_id}.json")

    def write(self, record: dict[str, Any]) -> None:
        """Write `record` (its `id` names the file) atomically: a 0600 temp file, fsynced, renamed over
        the old one. Bytes in it are decoded (connection keys)."""
        os.makedirs(self.kernels, mode=0o700, exist_ok=True)
        data = json.dumps({"version": RECORD_VERSION, **_jsonable(record)}, indent=1).encode()
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.kernels)  # mkstemp: 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.record_path(record["id"]))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def valid(self, record: dict[str, Any]) -> bool:
        """Whether a parsed record is one (subclasses add their required keys)."""
        return True

    def read_all(self) -> list[dict[str, Any]]:
        """Every readable record, by id. Our temp files (left by a crash mid-write) are removed; a file
        that is not a record (half-written, foreign, its `id` not its name) is skipped."""
        try:
            names = sorted(os.listdir(self.kernels))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            path = os.path.join(self.kernels, name)
            if name.startswith(TEMP_PREFIX):
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
            if isinstance(record, dict) and record.get("id") == name[:-5] and self.valid(record):
                records.append(record)
        return records

    def delete(self, record_id: str) -> None:
        """Remove a record (gone already is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record_path(record_id))


# -- kept kernels, offline (`himalia kernels list|stop`) -------------------------------------------


@dataclass(frozen=True)
class KeptKernel:
    """One kernel a provider recorded in the state dir, as `himalia kernels list` shows it."""

    id: str
    name: str
    where: str
    """Where it runs: `pid 1234` (local), the gateway's url."""
    state: str
    """`running`, `not running`, `on the gateway` (not asked offline)."""
    detail: str = ""
    """The rest of its line (the local cwd)."""
    data: dict[str, Any] = field(default_factory=dict)
    """More for `--json` (its keys override the common ones: the local provider's `state` is its
    record's, as before)."""


@runtime_checkable
class KeptKernels(Protocol):
    """A provider's recorded kernels, with no server running (`himalia_kept_kernels`). Blocking calls:
    the command runs them in its own process, holding the state dir's lock around `stop`."""

    provider: str

    def list(self) -> list[KeptKernel]:
        """The kernels recorded in the state dir."""
        ...

    def stop(self, kernel_ids: Sequence[str]) -> dict[str, str | None]:
        """Stop these recorded kernels and remove their records: {id: None when stopped, else a one-line
        error (the record is then kept)}."""
        ...
