"""Frontend config sections: JSON objects stored in `serverconfig/<section>.json` on the Jupyter config
path, as jupyter_server 2 keeps them (so both servers read and write the same files).

Reading merges, lowest priority first, each config directory's `serverconfig/<section>.d/*.json` (in
name order, as packages install defaults there) and then its `serverconfig/<section>.json`; the user's
directory (`jupyter_config_dir()`, `$JUPYTER_CONFIG_DIR`) comes last and wins. Writes go to the user's
file only, atomically, without the defaults its `.d` directory already gives.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("himalia.frontend_config")

SECTION = re.compile(r"\w+")
"""Section names as jupyter_server's URL pattern accepts them; nothing else reaches the disk."""

SUBDIR = "serverconfig"


def merge(target: dict[str, Any], new: dict[str, Any]) -> None:
    """Update `target` with `new` recursively: dicts merge, None deletes the key, empty dicts vanish."""
    for key, value in new.items():
        if isinstance(value, dict):
            sub = target.get(key)
            if not isinstance(sub, dict):
                sub = target[key] = {}
            merge(sub, value)
            if not sub:
                del target[key]
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


def without_defaults(data: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in list(data.items()):
        if key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            without_defaults(value, defaults[key])
            if not value:
                del data[key]
        elif value == defaults[key]:
            del data[key]


class ConfigSections:
    """Reads and writes sections; blocking (run it in a thread)."""

    def __init__(self, read_dirs: list[str], write_dir: str):
        self.read_dirs = [Path(d) / SUBDIR for d in read_dirs]
        """Highest priority first, as `jupyter_config_path()` gives them."""
        self.write_dir = Path(write_dir) / SUBDIR

    @classmethod
    def from_jupyter_paths(cls) -> ConfigSections:
        from jupyter_core.paths import jupyter_config_dir, jupyter_config_path

        write = jupyter_config_dir()
        read = jupyter_config_path()
        if os.path.abspath(write) not in [os.path.abspath(d) for d in read]:
            read = [write, *read]
        return cls(read, write)

    @staticmethod
    def check(section: str) -> None:
        from himalia import BadRequest

        if not SECTION.fullmatch(section) or len(section.encode()) > 200:
            raise BadRequest(f"config section name {section!r} must be letters, digits and underscores "
                             "(at most 200 bytes)", "bad section")

    def _files(self, directory: Path, section: str, *, include_root: bool = True) -> list[Path]:
        defaults = directory / f"{section}.d"
        files = sorted(defaults.glob("*.json")) if defaults.is_dir() else []
        if include_root:
            files.append(directory / f"{section}.json")
        return files

    def _read_into(self, data: dict[str, Any], files: list[Path]) -> None:
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                log.warning("config section file %s is unreadable, skipped: %s", path, e)
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as e:
                log.warning("config section file %s is not valid JSON, skipped: %s", path, e)
                continue
            if not isinstance(value, dict):
                log.warning("config section file %s holds a %s, not a JSON object; skipped", path,
                            type(value).__name__)
                continue
            merge(data, value)

    def get(self, section: str) -> dict[str, Any]:
        """The merged section (every config directory; the user's wins)."""
        self.check(section)
        data: dict[str, Any] = {}
        for directory in reversed(self.read_dirs):
            self._read_into(data, self._files(directory, section))
        return data

    def _user(self, section: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        self._read_into(data, self._files(self.write_dir, section))
        return data

    def set(self, section: str, data: dict[str, Any]) -> None:
        """Replace the user's section with `data` (less what the user dir's `.d` defaults already say)."""
        self.check(section)
        data = copy.deepcopy(data)
        defaults: dict[str, Any] = {}
        self._read_into(defaults, self._files(self.write_dir, section, include_root=False))
        without_defaults(data, defaults)
        text = json.dumps(data, indent=2)  # before touching the disk: a failure writes nothing
        self.write_dir.mkdir(parents=True, exist_ok=True)
        target = self.write_dir / f"{section}.json"
        fd, tmp = tempfile.mkstemp(prefix=f".{section}.", suffix=".tmp", dir=self.write_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def update(self, section: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the user's section (None deletes a key); the merged section after it."""
        self.check(section)
        data = self._user(section)
        merge(data, changes)
        self.set(section, data)
        return self.get(section)
