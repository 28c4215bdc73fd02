"""Checkpoints kept beside each file, laid out as jupyter_server's FileCheckpoints lays them out.

`dir/nb.ipynb` has at most one checkpoint, id "checkpoint", at `dir/.ipynb_checkpoints/nb-checkpoint.ipynb`,
so Himalia and jupyter_server can share a directory. Every checkpoint path passes the resolver's
confinement (`Resolver.confine`): a checkpoint directory or file that is a link out of the root is never
followed, to write, delete, read or move anything.

When `dir` is not writable, the checkpoint goes to a private per-user directory,
`$TMPDIR/himalia-checkpoints-<uid>/dir/` (mode 0700, refused unless it is a directory this user owns
that nobody else may enter), not to jupyter_server's shared `$TMPDIR/jupyter_checkpoints/`, where
another local user could read the copies or plant a checkpoint to be restored.

Everything here is blocking: the service calls it from its worker thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile

from himalia import Forbidden, Model, NotFound

from .paths import NAME_MAX, Resolver, fits, short_id
from .writes import copy_atomically, timestamp

CHECKPOINT_ID = "checkpoint"


def checkpoint_name(name: str, checkpoint_id: str = CHECKPOINT_ID) -> str:
    """jupyter_server's `<base>-<id><ext>`; for a name too long for that, `<base cut>-<digest>-<id><ext>`:
    still unique per file, and within NAME_MAX bytes (an extension too long is left out)."""
    base, ext = os.path.splitext(name)
    plain = f"{base}-{checkpoint_id}{ext}"
    if fits(plain):
        return plain
    digest = short_id(name)
    if len(os.fsencode(ext)) > 32:
        ext = ""
    room = NAME_MAX - len(os.fsencode(f"-{digest}-{checkpoint_id}{ext}"))
    cut = os.fsencode(base)[:room].decode("utf-8", "ignore")
    return f"{cut}-{digest}-{checkpoint_id}{ext}"


class FileCheckpoints:
    def __init__(self, resolver: Resolver, dir_name: str):
        self.resolver = resolver
        self.root = resolver.root
        self.dir_name = dir_name

    # --- where -----------------------------------------------------------------------------------

    def private_base(self) -> str:
        return os.path.join(tempfile.gettempdir(), f"himalia-checkpoints-{os.geteuid()}")

    def _private_dir(self, api_path: str, parent: str, create: bool) -> str:
        """The private directory for checkpoints of files in non-writable directory `parent`."""
        base = self.private_base()
        if create:
            try:
                os.mkdir(base, 0o700)
            except FileExistsError:
                pass
        try:
            st = os.lstat(base)
        except FileNotFoundError:
            st = None
        if st is not None and (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                               or st.st_mode & 0o077):
            raise Forbidden(f"cannot keep a checkpoint of {api_path!r}: its directory is not writable, and the "
                            f"private checkpoint directory {base} is not private (it must be a directory, not a "
                            f"link, owned by uid {os.geteuid()} with mode 0700); remove it to have it made "
                            "afresh", "unsafe checkpoint directory")
        rel = os.path.relpath(parent, self.root)
        if rel == os.curdir:
            rel = ""
        elif rel == os.pardir or rel.startswith(os.pardir + os.sep):  # a linked directory outside the root
            rel = os.path.join("outside-root", hashlib.sha256(os.fsencode(parent)).hexdigest()[:32])
        return os.path.join(base, rel)

    def _where(self, api_path: str, os_path: str, checkpoint_id: str, create_dir: bool) -> tuple[str, bool]:
        """The checkpoint's path (its directory confined; the file itself may still be a link) and
        whether it is under the root (so the file must be confined too before it is read or moved)."""
        parent, name = os.path.split(os_path)
        file_name = checkpoint_name(name, checkpoint_id)
        if os.access(parent, os.W_OK):
            cp_dir = os.path.join(parent, self.dir_name)
            what = f"the checkpoint directory of {api_path!r}"
            if create_dir:
                self.resolver.confine(cp_dir, what)  # before makedirs follows a link
                os.makedirs(cp_dir, exist_ok=True)
            if os.path.lexists(cp_dir):
                cp_dir = self.resolver.confine(cp_dir, what)
            return os.path.join(cp_dir, file_name), True
        cp_dir = self._private_dir(api_path, parent, create_dir)
        if create_dir:
            os.makedirs(cp_dir, mode=0o700, exist_ok=True)
        return os.path.join(cp_dir, file_name), False

    def path(self, api_path: str, os_path: str, checkpoint_id: str = CHECKPOINT_ID, *,
             create_dir: bool = False, follow: bool = True) -> str:
        """Where the checkpoint of `os_path` is, every link on the way checked. With `follow`, the
        checkpoint file itself (to be read or moved) must not lead out of the root either; without, it
        is returned as is (to be unlinked or replaced: the link itself, never its target)."""
        cp_path, in_root = self._where(api_path, os_path, checkpoint_id, create_dir)
        if follow and in_root and os.path.islink(cp_path):
            self.resolver.confine(cp_path, f"the checkpoint of {api_path!r}")
        return cp_path

    # --- what --------------------------------------------------------------------------------------

    def model(self, cp_path: str, checkpoint_id: str = CHECKPOINT_ID) -> Model:
        return {"id": checkpoint_id, "last_modified": timestamp(os.stat(cp_path).st_mtime)}

    def create(self, api_path: str, os_path: str) -> Model:
        cp_path = self.path(api_path, os_path, create_dir=True, follow=False)
        copy_atomically(os_path, cp_path, what=api_path)  # replaces a link at cp_path, never writes through it
        return self.model(cp_path)

    def list(self, api_path: str, os_path: str) -> list[Model]:
        cp_path = self.path(api_path, os_path)
        return [self.model(cp_path)] if os.path.isfile(cp_path) else []

    def existing(self, api_path: str, os_path: str, checkpoint_id: str, *, follow: bool = True) -> str:
        if checkpoint_id == CHECKPOINT_ID:
            cp_path = self.path(api_path, os_path, checkpoint_id, follow=follow)
            if os.path.isfile(cp_path) or (not follow and os.path.islink(cp_path)):
                return cp_path
        raise NotFound(f"checkpoint does not exist: {api_path}@{checkpoint_id}", "no such checkpoint")

    def restore(self, api_path: str, os_path: str, checkpoint_id: str) -> None:
        cp_path = os.path.realpath(self.existing(api_path, os_path, checkpoint_id))
        copy_atomically(cp_path, os_path, what=f"{api_path}@{checkpoint_id}", flags=os.O_NOFOLLOW)

    def delete(self, api_path: str, os_path: str, checkpoint_id: str) -> None:
        os.unlink(self.existing(api_path, os_path, checkpoint_id, follow=False))

    def rename_all(self, old_api_path: str, old_os_path: str, new_api_path: str, new_os_path: str) -> None:
        old = self.path(old_api_path, old_os_path)
        if os.path.isfile(old):
            shutil.move(old, self.path(new_api_path, new_os_path, create_dir=True, follow=False))

    def delete_all(self, api_path: str, os_path: str) -> None:
        try:
            os.unlink(self.path(api_path, os_path, follow=False))
        except FileNotFoundError:
            pass
