"""`himalia new-plugin NAME [DIR]`: render the plugin template (plugin-template/) with copier.

The template ships inside the `himalia` package as `himalia/plugin_template/` (package data in the
wheel); in a source checkout (an editable install) it is read from `plugin-template/` next to `core/`.
copier is an optional dependency: without it the command fails with one line saying what to install.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

from ._version import __version__
from .errors import StartupError

NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
RESERVED = {"disable"}  # keys the core owns in the [plugins] table
KINDS = ("route", "contents", "session-store", "identity", "kernels", "observer")
"""What `new-plugin --kind` renders: routes, a provider of one service (with its conformance kit in
the tests), or event hooks."""


def template_dir() -> Path:
    """Where the copier template is: shipped in the package, else in the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "plugin_template", here.parent / "plugin-template"):
        if (candidate / "copier.yml").is_file():
            return candidate
    raise StartupError(f"the plugin template is missing from this himalia installation ({here}); "
                       "reinstall himalia")


def refuse_taken(name: str) -> None:
    """Fail if `name` would shadow something installed: once pip-installed, a second `himalia` entry point
    of the same name, or a second top-level module `himalia_<name>`, hides one of the two."""
    if name in RESERVED:
        raise StartupError(f"plugin name {name!r} is reserved: [plugins] {name} is a core setting; "
                           "choose another name")
    for ep in entry_points(group="himalia"):
        if ep.name.replace("-", "_") == name.replace("-", "_"):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "an unknown distribution"
            raise StartupError(f"plugin name {name!r} is taken: plugin {ep.name!r} ({dist}) is installed; "
                               "choose another name")
    module = "himalia_" + name.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is not None:
        where = spec.origin or ", ".join(spec.submodule_search_locations or ()) or "built in"
        raise StartupError(f"plugin name {name!r} is taken: a module {module} is already importable "
                           f"({where}); choose another name")


def new_plugin(name: str, dir: str | None = None, *, kind: str | None = None, repository_url: str | None = None,
               interactive: bool | None = None) -> int:
    """Render a new plugin project for `name` into `dir` (default `./himalia-NAME`); exit status.

    Asks for what is not given (kind, description, author, repository URL) when stdin is a terminal,
    else takes the defaults (kind route, no repository URL).
    """
    if not NAME.match(name):
        raise StartupError(f"plugin name {name!r}: use lowercase letters, digits, '-' and '_', "
                           "starting with a letter (e.g. hello)")
    refuse_taken(name)
    target = Path(dir if dir else f"himalia-{name.replace('_', '-')}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StartupError(f"{target}: already exists and is not empty; choose another directory")
    try:
        import copier
    except ImportError:
        raise StartupError("new-plugin needs copier: pip install 'himalia[template]'") from None
    if interactive is None:
        interactive = sys.stdin.isatty()
    if kind is not None and kind not in KINDS:
        raise StartupError(f"new-plugin --kind {kind}: expected one of {', '.join(KINDS)}")
    try:
        copier.run_copy(
            str(template_dir()),
            str(target),
            data={"plugin_name": name, "himalia_version": __version__,
                  **({"kind": kind} if kind else {}),
                  **({"repository_url": repository_url} if repository_url is not None else {})},
            defaults=not interactive,
            quiet=True,
            unsafe=False,
        )
    except ValueError as e:  # an answer the template's validator refused
        raise StartupError(f"new-plugin {name}: {e}") from None
    print(f"created {target}: a Himalia plugin '{name}'" + (f" of kind {kind}" if kind else ""))
    print(f"next: cd {target} && pip install -e '.[test]' && pytest")
    return 0
