"""The `filesystem` contents provider: files, notebooks and directories under one root directory.

Models, names and errors follow jupyter_server's FileContentsManager (with its large-file chunked
uploads). Each public method is one hop to a worker thread, where every path goes through
`paths.Resolver` and every write through `writes.write_atomically`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import itertools
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

from aiohttp import web

from himalia import (CONFIG, HOOKS, ApiError, BadRequest, Conflict, ContentsCapabilities, Forbidden, Hooks, Model,
                     NotFound, PayloadTooLarge)

from .checkpoints import FileCheckpoints
from .config import ContentsConfig
from .models import base_model, kind_of, new_model, os_errors
from .notebooks import Known, Notebooks, too_deep
from .paths import TEMP_SUFFIX, UPLOAD_SUFFIX, Resolved, Resolver, temp_prefix, upload_name
from .reading import ReadBudget, StreamedContent, base64_lines, scan
from .writes import UMASK, check_special, not_regular, open_regular, write_atomically

T = TypeVar("T")
log = logging.getLogger("himalia.contents")


class _CopyFailed(Exception):
    """Not an OSError, so copytree stops at the first file it cannot copy instead of collecting errors."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def _copy_file(src: str, dest: str) -> None:
    """copytree's copy function: a regular file only (never blocks on a FIFO), data, mode and times."""
    try:
        with os.fdopen(open_regular(src, os.O_RDONLY | os.O_NOFOLLOW, verb="copy"), "rb") as fsrc:
            st = os.fstat(fsrc.fileno())
            with open(dest, "xb") as fdest:
                shutil.copyfileobj(fsrc, fdest, 1 << 20)
                os.fchmod(fdest.fileno(), stat.S_IMODE(st.st_mode))
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    except (OSError, BadRequest) as e:
        raise _CopyFailed(e) from e


def _inside(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or below it (both real paths)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


WHOLE_READ_FLOOR = 1024 * 1024
"""Files read whole below this size (most notebooks) do not count against the server-wide budget."""
WHOLE_READS_AT_ONCE = 4
"""The server-wide budget of whole reads, in reads of [plugins.contents] max_read_size_mb."""
WHOLE_READ_WAIT = 60.0
"""Seconds a whole read waits for room in the budget before a 503."""
MAX_UPLOADS = 1024
"""Chunked uploads in progress at once, server-wide (each holds a partial file and a little state)."""


@dataclass
class _Upload:
    """A chunked upload in progress: started by chunk 1, continued by 2, 3, ... in order, ended by -1."""

    in_place: bool
    """Written straight into the target (its directory is not writable), not into a partial file."""
    next: int = 2
    last: float = field(default_factory=time.monotonic)
    """When (monotonic) its last chunk arrived."""
    file: tuple[int, int] | None = None
    """(st_dev, st_ino) of the file chunk 1 created: later chunks write to that file or to none."""
    lock: threading.Lock = field(default_factory=threading.Lock)


COPY_PATTERN = re.compile(r"-Copy\d*\.")
UNTITLED = {"notebook": "Untitled", "file": "untitled", "directory": "Untitled Folder"}
TYPES = ("directory", "file", "notebook")
FORMATS = ("text", "base64")
ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"
SWEEP_INTERVAL = 60.0
"""Seconds between two sweeps of one directory for stale temp files after saves."""


@asynccontextmanager
async def filesystem_contents(app: web.Application) -> AsyncIterator[FileContents]:
    """Provider factory: the contents service for `[server] root_dir`, the root kernels start under too."""
    config = app[CONFIG]
    section: ContentsConfig = config.section("contents")
    root = await asyncio.to_thread(os.path.realpath, config.server.root_dir)
    yield FileContents(section, root, app[HOOKS])


class FileContents:
    """The ContentsManager service (see `himalia.ContentsManager`) over a local directory."""

    capabilities = ContentsCapabilities(paging=True, trust=True, streaming=True, local_files=True,
                                        resolve_path=True)

    def __init__(self, config: ContentsConfig, root: str, hooks: Hooks | None = None):
        self.config = config
        self.root = root
        self.hooks = hooks
        self.resolver = Resolver(root, config.allow_hidden, config.follow_symlinks_outside_root,
                                 tuple(config.hide_globs))
        self.checkpoints = FileCheckpoints(self.resolver, config.checkpoint_dir)
        self.notebooks = Notebooks(config.trust_notebooks)
        self._uploads: dict[str, _Upload] = {}
        """Chunked uploads in progress, by target (its real path)."""
        self._uploads_lock = threading.Lock()
        self._whole_reads = ReadBudget(WHOLE_READS_AT_ONCE * config.max_read_size_mb * 1024 * 1024 or 1 << 62,
                                       WHOLE_READ_WAIT)
        self._known_notebooks: dict[str, tuple[tuple[int, int, int], Known]] = {}
        self._swept: dict[str, float] = {}
        """Directory → when (monotonic) it was last swept for stale temp files after a save."""

    @staticmethod
    async def _run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(func, *args, **kwargs)

    # --- models ---------------------------------------------------------------------------------

    def _hash(self, data: bytes) -> dict[str, str]:
        h = hashlib.new(self.config.hash_algorithm)
        h.update(data)
        return {"hash": h.hexdigest(), "hash_algorithm": self.config.hash_algorithm}

    def _stat(self, r: Resolved) -> os.stat_result:
        with os_errors(r.api_path):
            return os.stat(r.os_path)

    def _get(self, path: str, content: bool = True, type: str | None = None, format: str | None = None,
             hash: bool = False, limit: int | None = None, offset: int = 0) -> Model:
        if type not in (None, *TYPES):
            raise BadRequest(f"type {type!r} is invalid; expected one of {', '.join(TYPES)}", "bad type")
        if format not in (None, "json", *FORMATS):
            raise BadRequest(f"format {format!r} is invalid; expected text, base64 or json", "bad format")
        r = self.resolver.resolve(path)
        st = self._stat(r)
        kind = kind_of(r.api_path, st)
        if kind == "directory":
            if type not in (None, "directory"):
                raise BadRequest(f"{r.api_path or '/'} is a directory, not a {type}", "bad type")
            model = base_model(r.api_path, r.os_path, st, "directory")
            if content:
                model["content"] = self._list(r, limit, offset)
                model["format"] = "json"
            return model
        if type == "directory":
            raise BadRequest(f"{r.api_path} is not a directory", "bad type")
        if type is not None:  # the caller's type wins over the extension, as in jupyter_server
            kind = type
        if format == "json" and kind != "notebook":
            raise BadRequest(f"format 'json' is for notebooks and directories; {r.api_path} is a file: "
                             "ask for text or base64", "bad format")
        model = base_model(r.api_path, r.os_path, st, kind)
        if kind == "notebook":
            model["mimetype"] = None
        if not content and not hash:
            return model
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(r.api_path, "read")
        if not content:  # the hash alone: one pass, a piece at a time
            with os_errors(r.api_path), self._open_checked(r) as f:
                _, digest = scan(f, utf8=False, hash_algorithm=self.config.hash_algorithm)
            model.update(hash=digest, hash_algorithm=self.config.hash_algorithm)
            return model
        self._check_read_size(r, st)
        with os_errors(r.api_path), self._open_checked(r) as f:
            data = f.read()
        if hash:
            model.update(self._hash(data))
        if kind == "notebook":
            nb, message = self.notebooks.read(data, r.api_path, self._known(r.os_path, st))
            model.update(content=nb, format="json")
            if message:
                model["message"] = message
            return model
        if format != "base64":
            try:
                model.update(content=data.decode("utf-8"), format="text")
            except UnicodeDecodeError:
                if format == "text":
                    raise BadRequest(f"{r.api_path} is not UTF-8 encoded", "bad format") from None
        if model["format"] is None:
            model.update(content=base64_lines(data), format="base64")
        if model["mimetype"] is None:
            model["mimetype"] = "text/plain" if model["format"] == "text" else "application/octet-stream"
        return model

    def _check_read_size(self, r: Resolved, st: os.stat_result) -> None:
        limit = self.config.max_read_size_mb * 1024 * 1024
        if limit and st.st_size > limit:
            raise PayloadTooLarge(
                f"{r.api_path!r} is {st.st_size / (1024 * 1024):.1f} MB, larger than the "
                f"{self.config.max_read_size_mb} MB the contents API returns ([plugins.contents] "
                f"max_read_size_mb); download it from /files/{r.api_path} instead, or raise the setting",
                "file too large")

    def _open_content(self, path: str, type: str | None, format: str | None, hash: bool) -> StreamedContent | None:
        """A file's model with its content still on disk, for a handler to stream; None for anything
        else (a directory, a notebook, a bad argument: `get` then answers as it does)."""
        if type not in (None, "file") or format not in (None, *FORMATS):
            return None
        r = self.resolver.resolve(path)
        st = self._stat(r)
        if not stat.S_ISREG(st.st_mode) or (type is None and kind_of(r.api_path, st) != "file"):
            return None
        self._check_read_size(r, st)
        with os_errors(r.api_path):
            f = self._open_checked(r)
        try:
            with os_errors(r.api_path):
                utf8, digest = scan(f, utf8=format != "base64",
                                    hash_algorithm=self.config.hash_algorithm if hash else None)
            if format == "text" and not utf8:
                raise BadRequest(f"{r.api_path} is not UTF-8 encoded", "bad format")
            model = base_model(r.api_path, r.os_path, st, "file")
            model["format"] = "text" if utf8 else "base64"
            if model["mimetype"] is None:
                model["mimetype"] = "text/plain" if utf8 else "application/octet-stream"
            if digest is not None:
                model.update(hash=digest, hash_algorithm=self.config.hash_algorithm)
            del model["content"]
            return StreamedContent(model, f)
        except BaseException:
            f.close()
            raise

    async def open_content(self, path: str, *, type: str | None = None, format: str | None = None,
                           hash: bool = False) -> StreamedContent | None:
        """The model of the file at `path` with its content left on disk to be streamed (see
        `reading.StreamedContent`; close it after), or None when `get` must answer instead."""
        return await self._run(self._open_content, path, type, format, hash)

    def _open_checked(self, r: Resolved) -> BinaryIO:
        """Open a resolved file for reading, closing the race with a symbolic link swapped in since
        `resolve`: O_NOFOLLOW refuses a link as the last component (ELOOP), and the opened file's real
        path (from /proc/self/fd) must still be inside the root, whatever happened to the directories."""
        fd = open_regular(r.os_path, os.O_RDONLY | os.O_NOFOLLOW, what=r.api_path, verb="read")
        try:
            if not self.config.follow_symlinks_outside_root:
                try:
                    opened = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:  # no /proc (not Linux): the realpath check in `resolve` is all there is
                    opened = None
                if opened is not None and not _inside(opened, self.root):
                    raise Forbidden(f"{r.api_path!r} leads outside the root directory (it changed while "
                                    "being opened)", "symlink outside root")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _list(self, r: Resolved, limit: int | None, offset: int) -> list[Model]:
        """One scandir pass: one stat and one access check per listed entry."""
        prefix = f"{r.api_path}/" if r.api_path else ""
        out: list[Model] = []
        with os_errors(r.api_path), os.scandir(r.os_path) as it:
            entries = sorted((e for e in it if self.resolver.listed(e.name)), key=lambda e: e.name)
        skipped = 0
        for entry in entries:
            if limit is not None and len(out) >= limit:
                break
            try:
                if entry.is_symlink() and not self.resolver.link_inside(entry.path):
                    continue
                st = entry.stat()
            except OSError:  # broken links, loops, entries gone since the scan
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                continue
            if skipped < offset:
                skipped += 1
                continue
            api_path = prefix + entry.name
            out.append(base_model(api_path, entry.path, st, kind_of(api_path, st)))
        return out

    # --- reading --------------------------------------------------------------------------------

    async def get(self, path: str, *, content: bool = True, type: str | None = None,
                  format: str | None = None, hash: bool = False, limit: int | None = None,
                  offset: int = 0) -> Model:
        if content and (type in ("notebook", "file") or path.endswith(".ipynb")):
            size = await self._run(self._whole_read_size, path)
            if size > WHOLE_READ_FLOOR:
                if not await self._whole_reads.acquire(size):
                    raise ApiError(f"cannot read {path.strip('/')!r} now: the server is reading "
                                   f"{self._whole_reads.in_use / (1024 * 1024):.0f} MB of other large files "
                                   f"(at most {self._whole_reads.total / (1024 * 1024):.0f} MB at once, "
                                   f"{WHOLE_READS_AT_ONCE} times [plugins.contents] max_read_size_mb); try again "
                                   "shortly", "busy", status=503)
                try:
                    return await self._run(self._get, path, content, type, format, hash, limit, offset)
                finally:
                    await self._whole_reads.release(size)
        return await self._run(self._get, path, content, type, format, hash, limit, offset)

    def _whole_read_size(self, path: str) -> int:
        """The size of the regular file at `path` (0 for anything else, or any error: `_get` reports it)."""
        try:
            st = os.stat(self.resolver.resolve(path).os_path)
        except (OSError, ValueError, ApiError):
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def _exists(self, path: str) -> bool:
        try:
            r = self.resolver.resolve(path)
        except (NotFound, Forbidden, BadRequest):
            return False
        return os.path.exists(r.os_path)

    async def exists(self, path: str) -> bool:
        return await self._run(self._exists, path)

    def _kernel_path(self, path: str) -> str:
        r = self.resolver.resolve(path)
        if os.path.isdir(r.os_path):
            return r.api_path
        return r.api_path.rsplit("/", 1)[0] if "/" in r.api_path else ""

    async def kernel_path(self, path: str) -> str:
        return await self._run(self._kernel_path, path)

    def _open_local_file(self, path: str) -> tuple[BinaryIO, str]:
        r = self.resolver.resolve(path)
        st = self._stat(r)
        if stat.S_ISDIR(st.st_mode):
            raise BadRequest(f"{r.api_path or '/'} is a directory, not a file", "bad type")
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(r.api_path, "read")
        with os_errors(r.api_path):
            f = self._open_checked(r)
        # serve what was opened and checked, not the path again (a link may be swapped in meanwhile):
        # on Linux, /proc/self/fd/N reopens that very file
        proc = f"/proc/self/fd/{f.fileno()}"
        return f, proc if os.path.exists(proc) else r.os_path

    async def open_local_file(self, path: str) -> tuple[BinaryIO, str]:
        """The regular file at `path`, opened and checked to be inside the root, and a filesystem path
        that names that same open file while it stays open (for streaming `/files/`). Close it after."""
        return await self._run(self._open_local_file, path)

    def _resolve_path(self, path: str) -> str | None:
        expanded = os.path.expanduser(path)
        if os.path.isabs(expanded):
            api_path = self.resolver.to_api_path(expanded)
            if api_path is None:
                return None
        else:
            api_path = path
        try:
            r = self.resolver.resolve(api_path)
        except (NotFound, Forbidden, BadRequest):
            return None
        return r.api_path if os.path.exists(r.os_path) else None

    async def resolve_path(self, path: str) -> str | None:
        """The API path of `path` (an API path, or a filesystem path under the root) if it exists."""
        return await self._run(self._resolve_path, path)

    # --- saving ---------------------------------------------------------------------------------

    @staticmethod
    def check_model(path: str, model: Model) -> None:
        """Refuse models that cannot be saved, before any hook runs or any byte is written."""
        kind = model.get("type")
        if kind is None:
            raise BadRequest(f"cannot save {path!r}: the model has no 'type'", "bad model")
        if kind not in TYPES:
            raise BadRequest(f"cannot save {path!r}: unknown type {kind!r}; expected one of "
                             f"{', '.join(TYPES)}", "bad model")
        chunk = model.get("chunk")
        if chunk is not None:
            if isinstance(chunk, bool) or not isinstance(chunk, int) or (chunk < 1 and chunk != -1):
                raise BadRequest(f"cannot save {path!r}: 'chunk' must be 1, 2, ... or -1 for the last, "
                                 f"got {chunk!r}", "bad model")
            if kind != "file":
                raise BadRequest(f"cannot save {path!r}: chunked uploads are for files, not {kind}s",
                                 "bad model")
        if kind == "directory":
            return
        if "content" not in model or model["content"] is None:
            raise BadRequest(f"cannot save {path!r}: the model has no 'content'", "bad model")
        if kind == "file":
            if model.get("format") not in FORMATS:
                raise BadRequest(f"cannot save {path!r}: 'format' must be 'text' or 'base64' for a file, got "
                                 f"{model.get('format')!r}", "bad model")
            if not isinstance(model["content"], str):
                raise BadRequest(f"cannot save {path!r}: file content must be a string, got "
                                 f"{type(model['content']).__name__}", "bad model")
        elif not isinstance(model["content"], dict):
            raise BadRequest(f"cannot save {path!r}: notebook content must be a JSON object, got "
                             f"{type(model['content']).__name__}", "bad model")

    @staticmethod
    def _file_bytes(api_path: str, model: Model) -> bytes:
        content = model["content"]
        if model["format"] == "text":
            return content.encode("utf-8", "surrogatepass")
        try:
            # line breaks are allowed (encodebytes wraps at 76), anything else outside the alphabet is not:
            # a lenient decode would turn "!!!!" into zero bytes and overwrite the file with nothing
            data = content.encode("ascii").translate(None, ASCII_WHITESPACE)
            return base64.b64decode(data, validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError) as e:
            raise BadRequest(f"cannot save {api_path!r}: content is not valid base64: {e}", "bad model") from None

    async def save(self, path: str, model: Model) -> Model:
        self.check_model(path, model)
        named = model.get("path")
        if isinstance(named, str):  # a model naming a hidden path is refused as that path would be
            self.resolver.check_hidden(named, write=True)
        return await self._run(self._save, path, model)

    def _save(self, path: str, model: Model) -> Model:
        r = self.resolver.resolve(path, write=True)
        if not r.api_path:
            raise BadRequest("cannot save the root directory", "bad path")
        # The save hooks run here, in the worker thread (a hook may rewrite a large notebook), and only
        # for a path that passed the checks. A chunked upload is one save, told with its last chunk.
        hooks = self.hooks if model.get("chunk") in (None, -1) else None
        if hooks is not None:
            hooks.contents_pre_save(r.api_path, model)
            self.check_model(r.api_path, model)  # a hook may have broken it
        saved = self._write(r, model)
        if hooks is not None:
            hooks.contents_post_save(saved["path"], dict(saved))
        return saved

    def _write(self, r: Resolved, model: Model) -> Model:
        kind = model["type"]
        known: Known | None = None
        with os_errors(r.api_path):
            check_special(r.os_path, r.api_path, "save over")
            if model.get("chunk") is not None:
                return self._save_chunk(r, model)
            if kind == "directory":
                if os.path.isdir(r.os_path):
                    pass
                elif os.path.exists(r.os_path):
                    raise BadRequest(f"cannot create directory {r.api_path!r}: a file is in the way", "bad model")
                else:
                    os.mkdir(r.os_path)
            elif kind == "notebook":
                data, known = self.notebooks.dumps(model["content"], r.api_path)
                self._refuse_directory(r)
                write_atomically(r.os_path, [data])
                self._remember(r.os_path, known)
                self._first_checkpoint(r)
                self._sweep_now_and_then(os.path.dirname(r.os_path))
            else:
                data = self._file_bytes(r.api_path, model)
                self._refuse_directory(r)
                write_atomically(r.os_path, [data])
                self._sweep_now_and_then(os.path.dirname(r.os_path))
            saved = self._get(r.api_path, content=False)
        if known is not None and known.message:
            saved["message"] = known.message
        return saved

    def _first_checkpoint(self, r: Resolved) -> None:
        """A notebook's first save also checkpoints it, as in jupyter_server; where the checkpoint
        would lead out of the root, the save (already done) stands and no checkpoint is kept."""
        try:
            if not self.checkpoints.list(r.api_path, r.os_path):
                self.checkpoints.create(r.api_path, r.os_path)
        except Forbidden as e:
            log.warning("no checkpoint kept for %s: %s", r.api_path, e)

    def _remember(self, os_path: str, known: Known) -> None:
        """Note what checking the notebook just written found, so reading it back need not check again."""
        if len(self._known_notebooks) > 1024:
            self._known_notebooks.clear()
        st = os.stat(os_path)
        self._known_notebooks[os_path] = ((st.st_ino, st.st_size, st.st_mtime_ns), known)

    def _known(self, os_path: str, st: os.stat_result) -> Known | None:
        entry = self._known_notebooks.get(os_path)
        if entry is not None and entry[0] == (st.st_ino, st.st_size, st.st_mtime_ns):
            return entry[1]
        return None

    @staticmethod
    def _refuse_directory(r: Resolved) -> None:
        if os.path.isdir(r.os_path):
            raise BadRequest(f"cannot save {r.api_path!r}: it is a directory", "bad model")

    def _save_chunk(self, r: Resolved, model: Model) -> Model:
        """Chunks 1..n gather in a hidden file beside the target, renamed over it on chunk -1.

        The target keeps its old content until the upload completes. Where the directory is not
        writable, the chunks are written in place instead, as jupyter_server writes them. An upload is
        identified: chunk 1 starts it (refused while another upload of the file is active), each later
        chunk must be the next one of that upload (or -1), and must land in the very file chunk 1
        created; anything else is a 409 and changes nothing. The hidden name is predictable, so it is
        never followed: chunk 1 removes whatever has that name and creates a fresh private file (O_EXCL).
        """
        chunk = model["chunk"]
        data = self._file_bytes(r.api_path, model)
        self._refuse_directory(r)
        parent, name = os.path.split(r.os_path)
        partial = os.path.join(parent, upload_name(name))
        upload = self._upload_for(r, chunk, parent)
        with upload.lock:
            try:
                return self._write_chunk(r, chunk, data, upload, partial, parent)
            except BaseException:
                with self._uploads_lock:  # a chunk that failed ends its upload: the client starts over
                    if self._uploads.get(r.os_path) is upload:
                        del self._uploads[r.os_path]
                raise

    def _upload_for(self, r: Resolved, chunk: int, parent: str) -> _Upload:
        """The upload `chunk` starts or continues, or a 409 saying why it does neither."""
        now = time.monotonic()
        idle_after = self.config.upload_takeover_after
        with self._uploads_lock:
            upload = self._uploads.get(r.os_path)
            if chunk == 1:
                if upload is not None and now - upload.last < idle_after:
                    raise Conflict(f"an upload of {r.api_path!r} is already in progress (it expects chunk "
                                   f"{upload.next}; its last chunk came {now - upload.last:.0f} s ago); a new "
                                   f"upload of that file may start once it ends or after {idle_after} s "
                                   "without a chunk", "upload in progress")
                if len(self._uploads) >= MAX_UPLOADS:
                    for target, other in list(self._uploads.items()):
                        if now - other.last >= idle_after:
                            del self._uploads[target]
                    if len(self._uploads) >= MAX_UPLOADS:
                        raise ApiError(f"cannot start a chunked upload of {r.api_path!r}: {MAX_UPLOADS} uploads "
                                       "are in progress already; try again later", "too many uploads",
                                       status=503)
                in_place = not os.access(parent, os.W_OK) and os.access(r.os_path, os.W_OK)
                upload = self._uploads[r.os_path] = _Upload(in_place)
                return upload
            if upload is None:
                raise Conflict(f"chunk {chunk} of {r.api_path!r} does not continue an upload in progress (none "
                               "is, or the server restarted since it began); an upload starts with chunk 1",
                               "no upload in progress")
            if chunk != -1 and chunk != upload.next:
                raise Conflict(f"chunk {chunk} of {r.api_path!r} does not continue the upload in progress, which "
                               f"expects chunk {upload.next} (or -1 for the last); another client may be uploading "
                               "the same file; start again with chunk 1", "chunk out of order")
            upload.next = chunk + 1 if chunk != -1 else upload.next
            upload.last = now
            return upload

    def _write_chunk(self, r: Resolved, chunk: int, data: bytes, upload: _Upload, partial: str,
                     parent: str) -> Model:
        in_place = upload.in_place
        if chunk == 1:
            self._remove_stale_files(parent, keep=partial)
        target = r.os_path if in_place else partial
        if chunk != 1:
            flags = os.O_WRONLY | os.O_APPEND
        elif in_place:
            flags = os.O_WRONLY | os.O_TRUNC
        else:
            try:
                os.unlink(partial)  # a stale partial file, or a link planted there (not its target)
            except FileNotFoundError:
                pass
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = self._open_upload(r, target, flags)
        with os.fdopen(fd, "wb") as f:
            st = os.fstat(f.fileno())
            if chunk == 1:
                upload.file = (st.st_dev, st.st_ino)
            elif upload.file != (st.st_dev, st.st_ino):
                raise self._upload_replaced(r)
            f.write(data)
            if chunk == -1 and not in_place:
                f.flush()
                os.fchmod(f.fileno(), self._new_mode(r.os_path))
                os.fsync(f.fileno())
                try:
                    unchanged = os.path.samestat(os.fstat(f.fileno()), os.lstat(partial))
                except FileNotFoundError:
                    unchanged = False
                if not unchanged:
                    raise self._upload_replaced(r)
                os.replace(partial, r.os_path)
        if chunk == -1:
            with self._uploads_lock:
                if self._uploads.get(r.os_path) is upload:
                    del self._uploads[r.os_path]
            return self._get(r.api_path, content=False)
        return base_model(r.api_path, target, os.stat(target), "file")

    def _open_upload(self, r: Resolved, os_path: str, flags: int) -> int:
        """Open a chunked upload's file, never through a symbolic link; new partial files are private."""
        try:
            return open_regular(os_path, flags | os.O_NOFOLLOW, what=r.api_path, verb="upload to", mode=0o600)
        except OSError as e:
            partial_gone = e.errno == errno.ENOENT and os_path != r.os_path and not flags & os.O_CREAT
            if e.errno in (errno.ELOOP, errno.EEXIST) or partial_gone:
                raise self._upload_replaced(r) from None
            raise

    @staticmethod
    def _upload_replaced(r: Resolved) -> Conflict:
        return Conflict(f"cannot continue the chunked upload of {r.api_path!r}: its partial file "
                        f"({upload_name(os.path.basename(r.os_path))}) was removed or replaced, possibly by "
                        "a symbolic link, which is never followed; start the upload again from chunk 1",
                        "upload interrupted")

    @staticmethod
    def _new_mode(os_path: str) -> int:
        """The mode a file written over `os_path` gets: the old file's, or the umask's default."""
        try:
            return os.stat(os_path).st_mode & 0o7777
        except FileNotFoundError:
            return 0o666 & ~UMASK

    def _sweep_now_and_then(self, directory: str) -> None:
        """`_remove_stale_files` after a save, at most once per directory per SWEEP_INTERVAL: saves are
        frequent, and what it looks for (a server killed mid-save) is rare."""
        now = time.monotonic()
        last = self._swept.get(directory)
        if last is not None and now - last < SWEEP_INTERVAL:
            return
        if len(self._swept) > 4096:
            self._swept.clear()
        self._swept[directory] = now
        self._remove_stale_files(directory)

    def _remove_stale_files(self, directory: str, keep: str = "") -> None:
        """Delete our hidden partial files in `directory` untouched for `stale_upload_age` seconds:
        abandoned chunked uploads and the temp files of saves killed midway (SIGKILL, power loss).

        Runs when a chunked upload starts there and (now and then) after a save there: one scandir of
        a directory the client is writing to anyway. Symbolic links and directories are left alone.
        """
        cutoff = time.time() - self.config.stale_upload_age
        try:
            with os.scandir(directory) as it:
                stale = [e.path for e in it
                         if e.name.startswith(".") and e.name.endswith((UPLOAD_SUFFIX, TEMP_SUFFIX))
                         and e.path != keep and e.is_file(follow_symlinks=False)
                         and e.stat(follow_symlinks=False).st_mtime < cutoff]
        except OSError:
            return
        for path in stale:
            try:
                os.unlink(path)
            except OSError:
                pass

    async def _new(self, path: str, model: Model) -> Model:
        """Create `path` from `model` (an empty file or notebook when it has no content)."""
        path = path.strip("/")
        return await self.save(path, new_model(path, model))

    def _untitled_name(self, path: str, type: str, ext: str) -> tuple[str, Model]:
        r = self.resolver.resolve(path, write=True)
        if not os.path.isdir(r.os_path):
            raise NotFound(f"no such directory: {r.api_path!r}", "no such directory")
        kind = type or ("notebook" if ext == ".ipynb" else "file")
        if kind not in TYPES:
            raise BadRequest(f"unexpected model type: {kind!r}", "bad type")
        if kind == "notebook":
            ext = ".ipynb"
        elif kind == "directory":
            ext = ""
        name = self._increment(r, UNTITLED[kind] + ext, " " if kind == "directory" else "")
        return (f"{r.api_path}/{name}" if r.api_path else name), {"type": kind}

    def _increment(self, directory: Resolved, filename: str, insert: str = "") -> str:
        """jupyter_server's naming: Untitled.ipynb, Untitled1.ipynb; a.tar.gz, a-Copy1.tar.gz."""
        basename, dot, ext = filename.rpartition(".")
        if ext != "ipynb":
            basename, dot, ext = filename.partition(".")
        suffix = dot + ext
        existing = set(os.listdir(directory.os_path))
        for i in itertools.count():
            name = f"{basename}{insert}{i}{suffix}" if i else f"{basename}{suffix}"
            if name not in existing:
                return name
        raise AssertionError("unreachable")

    async def new_untitled(self, path: str = "", *, type: str = "", ext: str = "") -> Model:
        new_path, model = await self._run(self._untitled_name, path, type, ext)
        return await self._new(new_path, model)

    # --- copy, rename, delete -------------------------------------------------------------------

    def _copy(self, from_path: str, to_dir: str | None) -> Model:
        src = self.resolver.resolve(from_path, write=True)
        st = self._stat(src)
        from_dir, _, from_name = src.api_path.rpartition("/")
        dest_dir = self.resolver.resolve(from_dir if to_dir is None else to_dir, write=True)
        if os.path.isdir(dest_dir.os_path):
            name = self._increment(dest_dir, COPY_PATTERN.sub(".", from_name), "-Copy")
            dest_api = f"{dest_dir.api_path}/{name}" if dest_dir.api_path else name
        else:
            parent = dest_dir.api_path.rpartition("/")[0]
            if not os.path.isdir(self.resolver.resolve(parent, write=True).os_path):
                raise NotFound(f"no such parent directory: {parent!r} to copy {src.api_path!r} into",
                               "no such directory")
            dest_api = dest_dir.api_path
        dest = self.resolver.resolve(dest_api, write=True)
        with os_errors(src.api_path):
            if stat.S_ISDIR(st.st_mode):
                if _inside(dest.os_path, src.os_path):
                    raise BadRequest(f"cannot copy directory {src.api_path!r} into itself ({dest.api_path!r})",
                                     "bad destination")
                self._check_folder(src)
                self._copy_tree(src.os_path, dest.os_path)
            elif not stat.S_ISREG(st.st_mode):
                raise not_regular(src.api_path, "copy")
            else:
                check_special(dest.os_path, dest.api_path, "copy over")
                with self._open_checked(src) as f:
                    write_atomically(dest.os_path, iter(lambda: f.read(1 << 20), b""))
                    os.chmod(dest.os_path, stat.S_IMODE(os.fstat(f.fileno()).st_mode))
        return self._get(dest.api_path, content=False)

    @staticmethod
    def _copy_tree(src: str, dest: str) -> None:
        """Copy into a hidden temp directory beside `dest`, then rename it: a failed copy leaves nothing."""
        parent, name = os.path.split(dest)
        tmp = tempfile.mkdtemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=parent)
        try:
            shutil.copytree(src, tmp, symlinks=True, dirs_exist_ok=True, copy_function=_copy_file)
            shutil.copymode(src, tmp)
            os.rename(tmp, dest)  # refuses a non-empty `dest` that appeared meanwhile
        except _CopyFailed as failed:  # the first file that failed (a full disk, a FIFO swapped in)
            shutil.rmtree(tmp, ignore_errors=True)
            raise failed.error from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _check_folder(self, src: Resolved, *, size: bool = True) -> None:
        """Before copying anything: the folder is not too large, and holds only regular files,
        directories and links (a FIFO, socket or device is named in a 400, and nothing is copied)."""
        limit = self.config.max_copy_folder_size_mb * 1024 * 1024
        total = 0
        for dirpath, _dirs, files in os.walk(src.os_path):
            for f in files:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except OSError:
                    continue
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    inner = os.path.relpath(os.path.join(dirpath, f), src.os_path).replace(os.sep, "/")
                    raise not_regular(f"{src.api_path}/{inner}", "copy")
                total += st.st_size
                if size and total > limit:
                    raise BadRequest(f"cannot copy {src.api_path!r}: folders larger than "
                                     f"{self.config.max_copy_folder_size_mb} MB are not copied", "too large")

    async def copy(self, from_path: str, to_dir: str | None = "") -> Model:
        """Copy a file (or directory) into directory `to_dir` with a `-Copy<n>` name, or to the path `to_dir`.

        `to_dir=None` copies beside the source.
        """
        return await self._run(self._copy, from_path, to_dir)

    def _rename(self, old_path: str, new_path: str) -> Model:
        old = self.resolver.resolve(old_path, write=True)
        new = self.resolver.resolve(new_path, write=True)
        if not old.api_path or not new.api_path:
            raise BadRequest("cannot rename the root directory", "bad path")
        if old.api_path == new.api_path:
            return self._get(new.api_path, content=False)
        if os.path.isdir(old.os_path) and (_inside(new.os_path, old.os_path)
                                           or new.api_path.startswith(old.api_path + "/")):
            raise BadRequest(f"cannot move directory {old.api_path!r} into itself ({new.api_path!r})",
                             "bad destination")
        with os_errors(old.api_path):
            if not os.path.lexists(self._link_path(old)):
                raise NotFound(f"file or directory does not exist: {old.api_path!r}")
            check_special(old.os_path, old.api_path, "rename")
            if os.path.lexists(new.os_path) and not os.path.samefile(old.os_path, new.os_path):
                raise Conflict(f"file already exists: {new.api_path!r}", "already exists")
            if not os.path.isdir(os.path.dirname(new.os_path)):
                raise NotFound(f"no such directory to move {old.api_path!r} into: {new.api_path!r}",
                               "no such directory")
            if os.path.isdir(old.os_path) and not os.path.islink(self._link_path(old)) and \
                    os.stat(old.os_path).st_dev != os.stat(os.path.dirname(new.os_path)).st_dev:
                # across filesystems shutil.move copies the tree, then deletes it: check it first,
                # as a copy is checked, so that it never stops halfway on a FIFO or socket
                self._check_folder(old, size=False)
            shutil.move(self._link_path(old), new.os_path)  # a link moves, not its target
            try:
                self.checkpoints.rename_all(old.api_path, self._link_path(old), new.api_path, new.os_path)
            except (OSError, Forbidden) as e:  # the move is done; a checkpoint left behind is no reason to fail
                log.warning("checkpoint of %s not moved to %s: %s", old.api_path, new.api_path, e)
        return self._get(new.api_path, content=False)

    async def rename(self, old_path: str, new_path: str) -> Model:
        return await self._run(self._rename, old_path, new_path)

    def _delete(self, path: str) -> None:
        r = self.resolver.resolve(path, write=True)
        if not r.api_path:
            raise BadRequest("cannot delete the root directory", "bad path")
        link = self._link_path(r)
        with os_errors(r.api_path):
            is_link = stat.S_ISLNK(os.lstat(link).st_mode)
            victim = link if is_link else r.os_path  # a link is deleted, never its target
            is_dir = not is_link and os.path.isdir(victim)
            if self._trash_available():
                if not os.access(victim, os.W_OK, follow_symlinks=False):
                    raise Forbidden(f"permission denied: {r.api_path!r}", "permission denied")
                from send2trash import send2trash

                try:
                    send2trash(victim)
                except OSError as e:
                    raise BadRequest(f"could not send {r.api_path!r} to the trash: {e}", "trash failed") from None
            elif is_dir:
                leftovers = set(os.listdir(victim)) - {self.config.checkpoint_dir}
                if leftovers and not self.config.always_delete_dir:
                    raise BadRequest(f"directory {r.api_path!r} is not empty; set [plugins.contents] "
                                     "always_delete_dir = true to delete non-empty directories",
                                     "directory not empty")
                shutil.rmtree(victim)
            else:
                os.unlink(victim)
            if not is_dir:
                try:
                    self.checkpoints.delete_all(r.api_path, link)
                except Forbidden as e:  # the file is gone; what the link leads to outside stays
                    log.warning("checkpoint of %s not deleted: %s", r.api_path, e)

    def _link_path(self, r: Resolved) -> str:
        """The link itself (not its target), for deleting a link."""
        return os.path.join(self.root, *r.api_path.split("/"))

    def _trash_available(self) -> bool:
        if not self.config.delete_to_trash:
            return False
        try:
            import send2trash  # noqa: F401
        except ImportError:
            return False
        return True

    async def delete(self, path: str) -> None:
        await self._run(self._delete, path)

    # --- checkpoints ----------------------------------------------------------------------------

    def _checkpointed(self, path: str, *, write: bool = True) -> Resolved:
        r = self.resolver.resolve(path, write=write)
        st = self._stat(r)
        if stat.S_ISDIR(st.st_mode):
            raise BadRequest(f"{r.api_path or '/'} is not a file; only files have checkpoints", "bad type")
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(r.api_path, "checkpoint")
        return r

    def _create_checkpoint(self, path: str) -> Model:
        r = self._checkpointed(path)
        with os_errors(r.api_path):
            return self.checkpoints.create(r.api_path, r.os_path)

    async def create_checkpoint(self, path: str) -> Model:
        return await self._run(self._create_checkpoint, path)

    def _list_checkpoints(self, path: str) -> list[Model]:
        r = self._checkpointed(path, write=False)  # a read: a hidden file is not found, as GET answers
        with os_errors(r.api_path):
            return self.checkpoints.list(r.api_path, r.os_path)

    async def list_checkpoints(self, path: str) -> list[Model]:
        return await self._run(self._list_checkpoints, path)

    def _restore_checkpoint(self, path: str, checkpoint_id: str) -> None:
        r = self._checkpointed(path)
        with os_errors(r.api_path):
            self.checkpoints.restore(r.api_path, r.os_path, checkpoint_id)

    async def restore_checkpoint(self, path: str, checkpoint_id: str) -> None:
        await self._run(self._restore_checkpoint, path, checkpoint_id)

    def _delete_checkpoint(self, path: str, checkpoint_id: str) -> None:
        r = self._checkpointed(path)
        with os_errors(r.api_path):
            self.checkpoints.delete(r.api_path, r.os_path, checkpoint_id)

    async def delete_checkpoint(self, path: str, checkpoint_id: str) -> None:
        await self._run(self._delete_checkpoint, path, checkpoint_id)

    # --- trust ----------------------------------------------------------------------------------

    def _trust(self, path: str) -> None:
        r = self.resolver.resolve(path)
        self._known_notebooks.pop(r.os_path, None)
        model = self._get(r.api_path, type="notebook")
        try:
            self.notebooks.trust_content(model["content"])
        except RecursionError:  # parsed, but too deep for the notary's walk
            raise too_deep(r.api_path) from None

    async def trust_notebook(self, path: str) -> None:
        """Sign the notebook at `path` as trusted (its outputs then render in full)."""
        await self._run(self._trust, path)
