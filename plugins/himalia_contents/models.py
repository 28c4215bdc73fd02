"""Contents models and the filesystem facts they come from; errors turned into API errors."""

from __future__ import annotations

import errno
import functools
import json
import mimetypes
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from himalia import ApiError, BadRequest, Conflict, Forbidden, Model, NotFound

from .writes import timestamp


def new_notebook_bytes() -> bytes:
    """An empty nbformat 4.5 notebook, as nbformat writes one (without importing nbformat)."""
    return b'{\n "cells": [],\n "metadata": {},\n "nbformat": 4,\n "nbformat_minor": 5\n}\n'


def new_model(path: str, model: Model) -> Model:
    """The model a PUT to a new `path` saves: its type from the extension when it names none, and an empty
    notebook or text file when it has no content (jupyter_server's `new`)."""
    model = dict(model)
    model.setdefault("type", "notebook" if path.endswith(".ipynb") else "file")
    if "content" not in model and model["type"] != "directory":
        if model["type"] == "notebook":
            model.update(content=json.loads(new_notebook_bytes()), format="json")
        else:
            model.update(content="", type="file", format="text")
    return model


@contextmanager
def os_errors(api_path: str) -> Iterator[None]:
    """Turn filesystem errors into API errors naming the path."""
    try:
        yield
    except FileNotFoundError:
        raise NotFound(f"file or directory does not exist: {api_path!r}") from None
    except PermissionError:
        raise Forbidden(f"permission denied: {api_path!r}", "permission denied") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            # 507 Insufficient Storage: the server's condition, not the client's mistake
            raise ApiError(f"no space left to write {api_path!r}; the previous content is unchanged",
                           "disk full", status=507) from None
        if e.errno == errno.ENOTDIR:
            raise NotFound(f"file or directory does not exist: {api_path!r}") from None
        if e.errno == errno.ENAMETOOLONG:
            raise BadRequest(f"name too long: {api_path!r}", "bad path") from None
        if e.errno == errno.ELOOP:
            raise BadRequest(f"too many levels of symbolic links: {api_path!r}", "bad path") from None
        if e.errno == errno.EEXIST:
            raise Conflict(f"already exists: {api_path!r}", "already exists") from None
        if e.errno in (errno.EISDIR, errno.EINVAL, errno.EXDEV, errno.ENOTEMPTY):
            raise BadRequest(f"cannot do that with {api_path!r}: {e.strerror}", "bad request") from None
        # shutil.Error and friends are OSErrors without errno or strerror
        raise ApiError(f"filesystem error on {api_path!r}: {e.strerror or e}", "filesystem error") from None


@functools.lru_cache(maxsize=1024)
def _mimetype_of_suffixes(suffixes: str) -> str | None:
    return mimetypes.guess_type("x" + suffixes)[0]


def guess_mimetype(path: str) -> str | None:
    """mimetypes' guess from the name's last two suffixes (enough for "a.tar.gz"), cached for listings."""
    name = path.rsplit("/", 1)[-1]
    last = name.rfind(".")
    if last <= 0:
        return None
    before = name.rfind(".", 0, last)
    return _mimetype_of_suffixes(name[before if before > 0 else last:])


def kind_of(api_path: str, st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "notebook" if api_path.endswith(".ipynb") else "file"


def base_model(api_path: str, os_path: str, st: os.stat_result, kind: str) -> Model:
    """A contents model without content: what listings hold and saves answer."""
    return {
        "name": api_path.rsplit("/", 1)[-1],
        "path": api_path,
        "type": kind,
        "last_modified": timestamp(st.st_mtime),
        "created": timestamp(getattr(st, "st_birthtime", st.st_ctime)),
        "content": None,
        "format": None,
        "mimetype": guess_mimetype(api_path) if kind == "file" else None,
        "size": None if kind == "directory" else st.st_size,
        "writable": os.access(os_path, os.W_OK),
        "hash": None,
        "hash_algorithm": None,
    }
