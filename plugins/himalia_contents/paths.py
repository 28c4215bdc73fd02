"""Safe mapping from API paths ("dir/nb.ipynb") to filesystem paths under the root.

Every path the contents service touches goes through `Resolver.resolve`: `..` and `.` segments, NUL
bytes, hidden names (unless allowed) and symbolic links leading out of the root (unless allowed) are
refused before any file is opened. Blocking calls (realpath) happen in the caller's worker thread.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from fnmatch import translate

from himalia import BadRequest, Forbidden, NotFound

FOLLOW_SETTING = "[plugins.contents] follow_symlinks_outside_root"
HIDDEN_SETTING = "[plugins.contents] allow_hidden"
UPLOAD_SUFFIX = ".himalia-upload"
TEMP_SUFFIX = ".himalia-tmp"


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_client_path(value: object, field: str) -> str:
    """`value`, a path a client sent in `field`, if a file name can hold it; else a 400 naming the field.

    NUL ends a C string (the OS refuses it); a lone surrogate (JSON's `"\\ud800"`) is no character at
    all: not encodable, or (U+DC80..U+DCFF) silently turned into a raw byte the file could then never
    be named by again over HTTP. Called where each client string enters, and by `split_api_path`.
    """
    if not isinstance(value, str):
        raise BadRequest(f"{field!r} must be a string path, got {type(value).__name__}", "bad path")
    if "\x00" in value:
        raise BadRequest(f"{field!r} {value!r} contains a NUL character, which no file name can hold",
                         "bad path")
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise BadRequest(f"{field!r} {value!r} contains a lone surrogate (U+{ord(bad.group()):04X}), which is "
                         "not a character: file names are sent as UTF-8 text", "bad path")
    return value


def is_unnamable(name: str) -> bool:
    """A name on disk that is not UTF-8 (decoded with surrogate escapes): no client can send it back."""
    return _SURROGATE.search(name) is not None


NAME_MAX = 255
"""Longest file name, in bytes, the usual filesystems take."""


def fits(name: str) -> bool:
    return len(os.fsencode(name)) <= NAME_MAX


def short_id(name: str) -> str:
    """A stand-in for `name` in names derived from it that would not fit: 16 hex digits of its digest."""
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:16]


def temp_prefix(name: str) -> str:
    """The prefix of a temp file or directory beside `name` (`.<name>.` + 8 random + TEMP_SUFFIX), or
    `.<digest>.` when that would be longer than a file name may be: any name the filesystem
    takes can be saved."""
    prefix = f".{name}."
    return prefix if fits(prefix + "x" * 8 + TEMP_SUFFIX) else f".{short_id(name)}."


def upload_name(name: str) -> str:
    """The hidden partial file of a chunked upload to `name`."""
    partial = f".{name}{UPLOAD_SUFFIX}"
    return partial if fits(partial) else f".{short_id(name)}{UPLOAD_SUFFIX}"


def split_api_path(path: str, field: str = "path") -> list[str]:
    """The segments of an API path; refuses `..`, `.`, NUL and lone surrogates so nothing can climb out of
    the root or name a file other than the one asked for."""
    check_client_path(path, field)
    parts = [p for p in path.strip("/").split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise NotFound(f"path {path!r} is outside the root directory", "outside root")
    return parts


def is_hidden_name(name: str) -> bool:
    return name.startswith(".")


def is_temp_name(name: str) -> bool:
    """Names of our own in-progress writes and chunked uploads, never listed."""
    return name.endswith(UPLOAD_SUFFIX) or name.endswith(TEMP_SUFFIX)


@dataclass(frozen=True)
class Resolved:
    api_path: str
    """Normalised: no leading or trailing slash, "" for the root."""
    os_path: str
    """Where the file is, symbolic links resolved (the place a write must go)."""


@dataclass(frozen=True)
class Resolver:
    root: str
    """The root directory, symbolic links resolved."""
    allow_hidden: bool = False
    follow_outside: bool = False
    hide_globs: tuple[str, ...] = ()
    _hidden_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.compile("|".join(translate(g) for g in self.hide_globs)) if self.hide_globs else None
        object.__setattr__(self, "_hidden_pattern", pattern)

    def resolve(self, path: str, *, write: bool = False) -> Resolved:
        """Map `path` to the filesystem, or raise.

        Hidden paths raise NotFound when reading (their existence is not revealed) and BadRequest
        when writing, as jupyter_server answers; links out of the root raise Forbidden.
        """
        parts = split_api_path(path)
        api_path = "/".join(parts)
        self._check_hidden(parts, write)
        joined = os.path.join(self.root, *parts)
        real = os.path.realpath(joined)
        if not self.inside(real):
            if not self.follow_outside:
                raise Forbidden(f"{api_path!r} leads through a symbolic link to a place outside the root "
                                f"directory; set {FOLLOW_SETTING} = true to follow such links",
                                "symlink outside root")
        elif not self.allow_hidden and real != joined:
            # a link inside the root onto a hidden path is as hidden as its target
            inner = os.path.relpath(real, self.root).split(os.sep)
            if any(is_hidden_name(p) for p in inner):
                self._refuse_hidden(api_path, write)
        return Resolved(api_path, real)

    def check_hidden(self, path: str, *, write: bool) -> None:
        """Refuse `path` if a segment of it is hidden (and hidden files are not allowed), as `resolve` does;
        for a path named in a model, which is never resolved ("." and ".." count as hidden there)."""
        self._check_hidden([p for p in path.split("/") if p], write)

    def _check_hidden(self, parts: list[str], write: bool) -> None:
        if not self.allow_hidden and any(is_hidden_name(p) for p in parts):
            self._refuse_hidden("/".join(parts), write)

    def inside(self, real: str) -> bool:
        """Whether a real path (links resolved) is the root or below it."""
        return real == self.root or real.startswith(self.root + os.sep)

    def confine(self, os_path: str, what: str) -> str:
        """The real path of `os_path`, a path the service derived itself (a checkpoint, its directory);
        Forbidden, naming `what`, when links lead it out of the root (unless following them is allowed),
        the rule `resolve` applies to client paths."""
        real = os.path.realpath(os_path)
        if not self.follow_outside and not self.inside(real):
            raise Forbidden(f"{what} leads through a symbolic link to a place outside the root directory "
                            f"({os.path.relpath(os_path, self.root)!r}); set {FOLLOW_SETTING} = true to follow "
                            "such links", "symlink outside root")
        return real

    def _refuse_hidden(self, api_path: str, write: bool) -> None:
        if write:
            raise BadRequest(f"cannot write {api_path!r}: it is hidden; set {HIDDEN_SETTING} = true to allow it",
                             "hidden")
        raise NotFound(f"file or directory does not exist: {api_path!r}", "not found")

    def link_inside(self, os_path: str) -> bool:
        """Whether a symbolic link found in a listing may be shown (its target inside the root, or allowed)."""
        if self.follow_outside:
            return True
        real = os.path.realpath(os_path)
        if real != self.root and not real.startswith(self.root + os.sep):
            return False
        if not self.allow_hidden:
            return not any(is_hidden_name(p) for p in os.path.relpath(real, self.root).split(os.sep))
        return True

    def listed(self, name: str) -> bool:
        """Whether a directory entry's name may appear in a listing (not one of ours, not hidden, a name a
        client can send back)."""
        if is_temp_name(name) or is_unnamable(name):
            return False
        if not self.allow_hidden and is_hidden_name(name):
            return False
        return self._hidden_pattern is None or self._hidden_pattern.match(name) is None

    def to_api_path(self, os_path: str) -> str | None:
        """The API path of a filesystem path under the root, or None when it is outside."""
        real = os.path.realpath(os_path)
        if real == self.root:
            return ""
        if not real.startswith(self.root + os.sep):
            return None
        return os.path.relpath(real, self.root).replace(os.sep, "/")
