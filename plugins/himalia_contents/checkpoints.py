"""Checkpoints kept beside each file, laid out as jupyter_server's FileCheckpoints lays them out.

`dir/nb.ipynb` has at most one checkpoint, id "checkpoint", at `dir/.ipynb_checkpoints/nb-checkpoint.ipynb`
(in `$TMPDIR/jupyter_checkpoints/dir/` when `dir` is not writable), so Himalia and jupyter_server can
share a directory. Everything here is blocking: the service calls it from its worker thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from himalia import Model, NotFound

from .writes import copy_atomically, timestamp

CHECKPOINT_ID = "checkpoint"


class FileCheckpoints:
    def __init__(self, root: str, dir_name: str):
        self.root = root
        self.dir_name = dir_name

    def path(self, os_path: str, checkpoint_id: str = CHECKPOINT_ID, *, create_dir: bool = False) -> str:
        parent, name = os.path.split(os_path)
        base, ext = os.path.splitext(name)
        cp_dir = os.path.join(parent, self.dir_name)
        if not os.access(parent, os.W_OK):
            rel = os.path.relpath(parent, self.root)
            cp_dir = os.path.join(tempfile.gettempdir(), "jupyter_checkpoints", rel)
        if create_dir:
            os.makedirs(cp_dir, exist_ok=True)
        return os.path.join(cp_dir, f"{base}-{checkpoint_id}{ext}")

    def model(self, cp_path: str, checkpoint_id: str = CHECKPOINT_ID) -> Model:
        return {"id": checkpoint_id, "last_modified": timestamp(os.stat(cp_path).st_mtime)}

    def create(self, os_path: str) -> Model:
        cp_path = self.path(os_path, create_dir=True)
        copy_atomically(os_path, cp_path)
        return self.model(cp_path)

    def list(self, os_path: str) -> list[Model]:
        cp_path = self.path(os_path)
        return [self.model(cp_path)] if os.path.isfile(cp_path) else []

    def existing(self, api_path: str, os_path: str, checkpoint_id: str) -> str:
        cp_path = self.path(os_path, checkpoint_id)
        if checkpoint_id != CHECKPOINT_ID or not os.path.isfile(cp_path):
            raise NotFound(f"checkpoint does not exist: {api_path}@{checkpoint_id}", "no such checkpoint")
        return cp_path

    def restore(self, api_path: str, os_path: str, checkpoint_id: str) -> None:
        copy_atomically(self.existing(api_path, os_path, checkpoint_id), os_path)

    def delete(self, api_path: str, os_path: str, checkpoint_id: str) -> None:
        os.unlink(self.existing(api_path, os_path, checkpoint_id))

    def rename_all(self, old_os_path: str, new_os_path: str) -> None:
        old = self.path(old_os_path)
        if os.path.isfile(old):
            shutil.move(old, self.path(new_os_path, create_dir=True))

    def delete_all(self, os_path: str) -> None:
        try:
            os.unlink(self.path(os_path))
        except FileNotFoundError:
            pass
