"""Crash-safe file writes: a temp file in the same directory, fsync, rename over the target.

The target keeps its permission bits; a new file gets the usual 0o666 minus the umask. When the
directory is not writable but the file is, the write falls back to rewriting the file in place.
Either the old or the new content is on disk after a crash or a full disk, never a truncated mix
(except in that in-place fallback, which has no other way). All blocking: call from a worker thread.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone

from himalia import BadRequest, isoformat

from .paths import TEMP_SUFFIX, temp_prefix


def _read_umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


UMASK = _read_umask()
_EPOCH = "1970-01-01T00:00:00.000000Z"


_SECONDS: dict[int, str] = {}


def timestamp(seconds: float) -> str:
    """A file time as ISO 8601 UTC with microseconds (`himalia.isoformat`'s form); the epoch for times
    the OS cannot convert. Listings format thousands of these, so the part up to the second is cached."""
    try:
        whole = int(seconds // 1)
        prefix = _SECONDS.get(whole)
        if prefix is None:
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            prefix = _SECONDS[whole] = isoformat(datetime.fromtimestamp(whole, timezone.utc))[:-8]
        return f"{prefix}.{int((seconds - whole) * 1_000_000):06d}Z"
    except (ValueError, OverflowError, OSError):
        return _EPOCH


def not_regular(what: str, verb: str = "open") -> BadRequest:
    """The error for a FIFO, socket or device met where a file was expected."""
    return BadRequest(f"cannot {verb} {what!r}: not a regular file or directory (a FIFO, socket or device); "
                      "only regular files and directories are served", "not a regular file")


def open_regular(os_path: str, flags: int = os.O_RDONLY, *, what: str = "", verb: str = "open",
                 mode: int = 0o666) -> int:
    """Open `os_path` (a descriptor) only if it is a regular file; never blocks.

    O_NONBLOCK makes opening a FIFO return at once (or fail, ENXIO, for writing with no reader) instead
    of waiting forever for the other end, and a socket fails with ENXIO; the descriptor's own fstat then
    decides, so a FIFO swapped in after any earlier check is refused too. `what` names the file in the
    error (an API path); `flags` may add O_CREAT, O_NOFOLLOW, etc.
    """
    try:
        fd = os.open(os_path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
            raise not_regular(what or os_path, verb) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_regular(what or os_path, verb)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_special(os_path: str, what: str, verb: str) -> None:
    """Refuse a FIFO, socket or device at `os_path` (links followed); nothing there, a file or a
    directory pass."""
    try:
        mode = os.stat(os_path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise not_regular(what, verb)


def _fsync_dir(path: str) -> None:
    try:
        # a directory or nothing: O_DIRECTORY refuses anything else, O_NONBLOCK never waits on a FIFO
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(os_path: str, chunks: Iterable[bytes]) -> None:
    """Replace `os_path` with `chunks`, atomically when the directory allows it."""
    parent, name = os.path.split(os_path)
    try:
        mode = os.stat(os_path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~UMASK
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=parent)
    except PermissionError:
        if not os.path.isfile(os_path) or not os.access(os_path, os.W_OK):
            raise
        _write_in_place(os_path, chunks)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, os_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(parent)


def _write_in_place(os_path: str, chunks: Iterable[bytes]) -> None:
    with os.fdopen(open_regular(os_path, os.O_WRONLY | os.O_TRUNC, verb="write"), "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def copy_atomically(src: str, dest: str, *, what: str = "", flags: int = 0) -> None:
    """Copy regular file `src` over `dest` (data and mtime), atomically; `dest` keeps its own mode if it
    exists. `what` names `src` in errors; `flags` are added to the open (O_NOFOLLOW)."""
    with os.fdopen(open_regular(src, os.O_RDONLY | flags, what=what, verb="copy"), "rb") as f:
        write_atomically(dest, iter(lambda: f.read(1 << 20), b""))
        st = os.fstat(f.fileno())
    try:
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError:
        pass
