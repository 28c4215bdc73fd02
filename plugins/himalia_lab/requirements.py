"""Whether the packages the lab plugin serves from are installed (found without importing them)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache

# import name → what pip installs it
NEEDED = {"jupyterlab": "jupyterlab", "jupyterlab_server": "jupyterlab_server", "notebook": "notebook",
          "jinja2": "jinja2"}
INSTALL = "pip install 'himalia[lab]'"


@lru_cache(maxsize=1)
def missing() -> tuple[str, ...]:
    """The distributions to install before the plugin can serve anything; empty when all are there."""
    return tuple(dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None)
