"""The `[plugins.lab]` table."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class LabConfig:
    app_dir: str = setting("", "JupyterLab's application directory (static/, schemas/, themes/, settings/). "
                               "Empty: $JUPYTERLAB_DIR, else <prefix>/share/jupyter/lab, as `jupyter lab` does.",
                       path=True)
    default_url: str = setting("/lab", "Where the server's root redirects: /lab (JupyterLab) or /tree "
                                       "(Notebook 7).")

    def __post_init__(self) -> None:
        if not self.default_url.startswith("/"):
            raise ValueError(f"'default_url' must be a path starting with '/', got {self.default_url!r}")
