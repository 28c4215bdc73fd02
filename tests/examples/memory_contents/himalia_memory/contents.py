"""`MemoryContents`: the `ContentsManager` Protocol over a dict of entries, and its provider factory."""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aiohttp import web

from himalia import (
    CONFIG,
    HOOKS,
    SERVICES,
    BadRequest,
    Conflict,
    ContentsCapabilities,
    Forbidden,
    Hooks,
    Model,
    NotFound,
    isoformat,
    utcnow,
)

EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@dataclass
class Entry:
    type: str  # "directory", "file" or "notebook"
    content: Any = None  # None (directory), str or bytes (file), dict (notebook)
    created: datetime = field(default_factory=utcnow)
    last_modified: datetime = field(default_factory=utcnow)


def _normalize(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise Forbidden(f"{path}: '.' and '..' are not allowed in contents paths", "bad path")
    return "/".join(parts)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _split_ext(name: str) -> tuple[str, str]:
    base, dot, ext = name.rpartition(".")
    return (base, dot + ext) if dot and base else (name, "")


class MemoryContents:
    """Files, notebooks and directories in a dict keyed by API path ("" is the root).

    Beyond the ContentsManager methods it pages directory listings (`get` takes `limit` and `offset`),
    and says so; it does not sign notebooks, stream or serve files from disk, so those routes answer 501
    or fall back to `get`. Nothing here is hidden: the filesystem provider's `allow_hidden` is not ours.
    """

    capabilities = ContentsCapabilities(paging=True)

    def __init__(self, hooks: Hooks | None = None):
        self.entries: dict[str, Entry] = {"": Entry("directory")}
        self.checkpoints: dict[str, Entry] = {}
        self.hooks = hooks

    def _entry(self, path: str) -> Entry:
        try:
            return self.entries[path]
        except KeyError:
            raise NotFound(f"no such file or directory: {path}", "not found") from None

    def _children(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        return sorted(p for p in self.entries if p and p.startswith(prefix) and "/" not in p[len(prefix):])

    def _model(self, path: str, entry: Entry, content: bool, format: str | None = None, hash: bool = False) -> Model:
        model: Model = {
            "name": path.rpartition("/")[2], "path": path, "type": entry.type, "format": None, "mimetype": None,
            "content": None, "created": isoformat(entry.created), "last_modified": isoformat(entry.last_modified),
            "size": None, "writable": True, "hash": None, "hash_algorithm": None,
        }
        if entry.type == "directory":
            if content:
                model["format"] = "json"
                model["content"] = [self._model(p, self.entries[p], False) for p in self._children(path)]
            return model
        raw = (json.dumps(entry.content).encode() if entry.type == "notebook"
               else entry.content.encode() if isinstance(entry.content, str) else entry.content)
        model["size"] = len(raw)
        if hash:
            model["hash"], model["hash_algorithm"] = hashlib.sha256(raw).hexdigest(), "sha256"
        if entry.type == "notebook":
            if content:  # format and content come together: a model without content has neither
                model["format"], model["content"] = "json", copy.deepcopy(entry.content)
            return model
        if format == "text" and isinstance(entry.content, bytes):
            raise BadRequest(f"{path} is not UTF-8 text; ask for format=base64", "bad format")
        as_text = isinstance(entry.content, str) and format != "base64"
        model["mimetype"] = "text/plain" if as_text else "application/octet-stream"
        if content:
            model["format"] = "text" if as_text else "base64"
            model["content"] = entry.content if as_text else base64.b64encode(raw).decode("ascii")
        return model

    async def get(self, path: str, *, content: bool = True, type: str | None = None, format: str | None = None,
                  hash: bool = False, limit: int | None = None, offset: int = 0) -> Model:
        path = _normalize(path)
        entry = self._entry(path)
        if type == "directory" and entry.type != "directory":
            raise BadRequest(f"{path} is not a directory", "bad type")
        if type in ("file", "notebook") and entry.type == "directory":
            raise BadRequest(f"{path} is a directory, not a {type}", "bad type")
        if type == "file" and entry.type == "notebook":
            entry = replace(entry, type="file", content=json.dumps(entry.content))
        model = self._model(path, entry, content, format, hash)
        if model["type"] == "directory" and content:  # paging, as `capabilities` declares
            model["content"] = model["content"][offset:][:limit]
        return model

    async def save(self, path: str, model: Model) -> Model:
        path = _normalize(path)
        if not path:
            raise BadRequest("the root directory cannot be overwritten", "bad path")
        if "type" not in model:
            raise BadRequest(f"no 'type' in the model saved at {path}", "bad model")
        parent = self.entries.get(_parent(path))
        if parent is None or parent.type != "directory":
            raise NotFound(f"no such directory: {_parent(path)}", "not found")
        model = copy.deepcopy(model)
        chunk = model.pop("chunk", None)
        if chunk is None or chunk == -1:
            if self.hooks is not None:
                self.hooks.contents_pre_save(path, model)
        entry = self._entry_from(path, model)
        old = self.entries.get(path)
        if chunk not in (None, 1) and old is not None and isinstance(old.content, (str, bytes)):
            if isinstance(old.content, str) and isinstance(entry.content, str):
                entry.content = old.content + entry.content  # text stays text
            else:
                previous = old.content.encode() if isinstance(old.content, str) else old.content
                added = entry.content.encode() if isinstance(entry.content, str) else entry.content
                entry.content = previous + added
        if old is not None:
            entry.created = old.created
        self.entries[path] = entry
        saved = self._model(path, entry, content=False)
        if (chunk is None or chunk == -1) and self.hooks is not None:
            self.hooks.contents_post_save(path, saved)
        return saved

    @staticmethod
    def _entry_from(path: str, model: Model) -> Entry:
        kind, content, fmt = model["type"], model.get("content"), model.get("format")
        if kind == "directory":
            return Entry("directory")
        if kind == "notebook":
            if not isinstance(content, dict):
                raise BadRequest(f"the notebook saved at {path} has no JSON content", "bad model")
            return Entry("notebook", content)
        if kind == "file":
            if not isinstance(content, str):
                raise BadRequest(f"the file saved at {path} has no content", "bad model")
            if fmt == "base64":
                try:
                    return Entry("file", base64.b64decode(content, validate=True))
                except ValueError:
                    raise BadRequest(f"the content saved at {path} is not base64", "bad model") from None
            if fmt not in (None, "text"):
                raise BadRequest(f"unknown format {fmt!r} for {path}; expected text or base64", "bad model")
            return Entry("file", content)
        raise BadRequest(f"unknown type {kind!r} for {path}; expected file, notebook or directory", "bad model")

    async def new_untitled(self, path: str = "", *, type: str = "", ext: str = "") -> Model:
        path = _normalize(path)
        if self._entry(path).type != "directory":
            raise BadRequest(f"{path} is not a directory", "bad path")
        type = type or ("notebook" if ext == ".ipynb" else "file")
        if type == "notebook":
            ext, entry = ".ipynb", Entry("notebook", copy.deepcopy(EMPTY_NOTEBOOK))
        elif type == "directory":
            ext, entry = "", Entry("directory")
        else:
            entry = Entry("file", "")
        base = "Untitled Folder" if type == "directory" else "Untitled" if type == "notebook" else "untitled"
        name = self._free_name(path, (f"{base}{n or ''}{ext}" for n in itertools.count()))
        new_path = f"{path}/{name}" if path else name
        self.entries[new_path] = entry
        return self._model(new_path, entry, content=False)

    def _free_name(self, dir: str, names: Iterable[str]) -> str:
        """The first of `names` (an iterable of file names) not taken in `dir`."""
        for _, name in zip(range(10_000), names):
            if (f"{dir}/{name}" if dir else name) not in self.entries:
                return name
        raise Conflict(f"no free name in {dir or 'the root'}", "no free name")

    async def copy(self, from_path: str, to_dir: str = "") -> Model:
        from_path, to_dir = _normalize(from_path), _normalize(to_dir)
        entry = self._entry(from_path)
        if entry.type == "directory":
            raise BadRequest(f"{from_path} is a directory; only files and notebooks can be copied", "bad path")
        if self._entry(to_dir).type != "directory":
            raise BadRequest(f"{to_dir} is not a directory", "bad path")
        base, ext = _split_ext(from_path.rpartition("/")[2])
        name = self._free_name(to_dir, (f"{base}-Copy{n}{ext}" for n in itertools.count(1)))
        new_path = f"{to_dir}/{name}" if to_dir else name
        self.entries[new_path] = Entry(entry.type, copy.deepcopy(entry.content))
        return self._model(new_path, self.entries[new_path], content=False)

    async def rename(self, old_path: str, new_path: str) -> Model:
        old_path, new_path = _normalize(old_path), _normalize(new_path)
        entry = self._entry(old_path)
        if not old_path:
            raise BadRequest("the root directory cannot be renamed", "bad path")
        if new_path in self.entries:
            raise Conflict(f"cannot rename {old_path} to {new_path}: {new_path} exists", "exists")
        if self.entries.get(_parent(new_path), Entry("file")).type != "directory":
            raise NotFound(f"no such directory: {_parent(new_path)}", "not found")
        moved = [p for p in self.entries if p == old_path or p.startswith(old_path + "/")]
        for p in moved:
            self.entries[new_path + p[len(old_path):]] = self.entries.pop(p)
        entry.last_modified = utcnow()
        return self._model(new_path, entry, content=False)

    async def delete(self, path: str) -> None:
        path = _normalize(path)
        self._entry(path)
        if not path:
            raise BadRequest("the root directory cannot be deleted", "bad path")
        for p in [p for p in self.entries if p == path or p.startswith(path + "/")]:
            del self.entries[p]
            self.checkpoints.pop(p, None)

    async def exists(self, path: str) -> bool:
        return _normalize(path) in self.entries

    async def kernel_path(self, path: str) -> str:
        path = _normalize(path)
        entry = self.entries.get(path)
        return path if entry is not None and entry.type == "directory" else _parent(path)

    def _checkpoint_model(self, path: str) -> Model:
        return {"id": "checkpoint", "last_modified": isoformat(self.checkpoints[path].last_modified)}

    async def create_checkpoint(self, path: str) -> Model:
        path = _normalize(path)
        entry = self._entry(path)
        if entry.type == "directory":
            raise BadRequest(f"{path} is a directory; directories have no checkpoints", "bad path")
        self.checkpoints[path] = Entry(entry.type, copy.deepcopy(entry.content), last_modified=utcnow())
        return self._checkpoint_model(path)

    async def list_checkpoints(self, path: str) -> list[Model]:
        path = _normalize(path)
        self._entry(path)
        return [self._checkpoint_model(path)] if path in self.checkpoints else []

    async def restore_checkpoint(self, path: str, checkpoint_id: str) -> None:
        path = _normalize(path)
        self._entry(path)
        saved = self.checkpoints.get(path)
        if saved is None or checkpoint_id != "checkpoint":
            raise NotFound(f"no checkpoint {checkpoint_id} for {path}", "not found")
        self.entries[path] = Entry(saved.type, copy.deepcopy(saved.content), self.entries[path].created)

    async def delete_checkpoint(self, path: str, checkpoint_id: str) -> None:
        path = _normalize(path)
        if checkpoint_id != "checkpoint" or self.checkpoints.pop(path, None) is None:
            raise NotFound(f"no checkpoint {checkpoint_id} for {path}", "not found")


@asynccontextmanager
async def memory_contents(app: web.Application) -> AsyncIterator[MemoryContents]:
    """The provider factory: a fresh store holding the `[plugins.memory] files`, dropped at shutdown."""
    contents = MemoryContents(app[HOOKS])
    for path, text in sorted(app[CONFIG].section("memory").files.items()):
        path = _normalize(path)
        parts = path.split("/")
        for i in range(1, len(parts)):  # parent directories first
            contents.entries.setdefault("/".join(parts[:i]), Entry("directory"))
        contents.entries[path] = Entry("file", text)
    yield contents
    contents.entries.clear()


async def read_contents(request: web.Request) -> web.Response:
    """`GET /api/memory/files/PATH`: the model from whichever contents service is active."""
    contents = request.app[SERVICES].require("contents")
    model = await contents.get(request.match_info["path"])
    return web.json_response({"service": type(contents).__name__, "model": model})
