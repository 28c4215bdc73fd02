"""The `[plugins.contents]` table."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from himalia import setting

DEFAULT_HIDE_GLOBS = ("__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~")
MOVED = {"root_dir": "[server] root_dir (one root for contents and kernels: a kernel for 'a/b.ipynb' starts in "
                     "<root>/a)"}
"""Keys this table used to have → where they are now."""


@dataclass(frozen=True)
class ContentsConfig:
    allow_hidden: bool = setting(False, "List, read and write hidden files and directories (names "
                                        "starting with '.').")
    hide_globs: list[str] = setting(default_factory=lambda: list(DEFAULT_HIDE_GLOBS),
                                    help="Glob patterns of names left out of directory listings.")
    delete_to_trash: bool = setting(True, "Send deleted files to the system trash when send2trash is "
                                          "installed, instead of deleting them for good.")
    always_delete_dir: bool = setting(False, "Delete non-empty directories (permanently, when not "
                                             "sent to the trash). Off: only empty directories are deleted.")
    checkpoint_dir: str = setting(".ipynb_checkpoints", "Name of the directory, beside each file, "
                                                        "holding its checkpoint (shared with jupyter_server).")
    follow_symlinks_outside_root: bool = setting(
        False, "Follow symbolic links that point outside [server] root_dir. Off: such links are neither listed "
               "nor served, so nothing outside the root can be read or written.")
    trust_notebooks: bool = setting(True, "Check and sign notebook signatures (nbformat's notary, "
                                          "shared with jupyter_server) so trusted outputs render.")
    max_copy_folder_size_mb: int = setting(500, "Largest directory, in MB, that may be copied.")
    max_read_size_mb: int = setting(256, "Largest file, in MB, whose content the contents API returns (413 "
                                         "above; /files/ still serves it). 0: no limit. Text and base64 "
                                         "content is streamed; a notebook is parsed whole and costs several "
                                         "times its size in memory.")
    hash_algorithm: str = setting("sha256", "hashlib algorithm for the `hash` field of models.")
    stale_upload_age: int = setting(3600, "Seconds after which an unfinished chunked upload's hidden partial "
                                          "file, or the temp file of a save that was killed midway, is deleted "
                                          "(when a save or a chunked upload writes into its directory).")

    upload_takeover_after: int = setting(60, "Seconds without a chunk after which a chunked upload counts as "
                                             "abandoned: a new upload of the same file (chunk 1) may then start "
                                             "over it. Before that, a second upload of the file is refused (409).")

    def __post_init__(self) -> None:
        try:
            hashlib.new(self.hash_algorithm).hexdigest()  # shake_* construct, then need a length
        except (ValueError, TypeError):
            usable = sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake_"))
            raise ValueError(f"'hash_algorithm' must name a hashlib algorithm with a fixed digest size, "
                             f"got {self.hash_algorithm!r}; for example: {', '.join(usable)}") from None
