"""What the lab pages and APIs need from the installed packages, found once, off the event loop.

Nothing here is imported until the first lab request: jupyterlab_server pulls in jupyter_server and
Tornado (its framework-free functions are what we call, never its handlers), and `himalia serve`'s
cold start and idle memory must not pay for a browser that never comes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from himalia import CONFIG, ApiError, StartupError

log = logging.getLogger("himalia.lab")

# <script src="{{page_config.fullStaticUrl}}/main.<hash>.js?v=..."> in JupyterLab's and Notebook's
# templates: the entry bundle of the build, read from the template (two builds installed into one
# directory leave two main.*.js; only the template knows which is current)
SCRIPT_SRC = re.compile(r"""<script[^>]*\bsrc="\{\{\s*page_config\.fullStaticUrl\s*\}\}/([^"?]+)""")


def entry_scripts(template_text: str) -> list[str]:
    """The static files a page template loads, e.g. ["main.efd36b46f3b45eb8.js"]."""
    return SCRIPT_SRC.findall(template_text)


def lab_app_dir(configured: str) -> Path:
    """[plugins.lab] app_dir, else jupyterlab's own rule ($JUPYTERLAB_DIR, else the prefix's share/jupyter/lab)."""
    if configured:
        return Path(configured)
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir())


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def _api_version() -> str:
    """`notebookVersion`: the jupyter_server REST API level the page may assume, as a JSON list
    string. Himalia follows jupyter_server 2.x; the installed one (jupyterlab needs it) says which."""
    parts = [int(p) for p in re.findall(r"\d+", _version("jupyter_server"))[:3]] or [2, 0, 0]
    return json.dumps(parts)


@dataclass
class Paths:
    app_dir: Path
    static_dir: Path  # JupyterLab's built app: index.html and its bundles
    schemas_dir: str
    themes_dir: str
    app_settings_dir: str  # overrides.json, page_config.json
    user_settings_dir: str  # $JUPYTERLAB_SETTINGS_DIR
    workspaces_dir: str  # $JUPYTERLAB_WORKSPACES_DIR
    labextensions_path: list[str]  # every labextensions dir on the Jupyter path, user first
    notebook_dir: Path  # the notebook package: templates/ and static/
    favicons_dir: Path | None  # jupyter_server's favicons, which the templates link to


@dataclass
class Apps:
    """The loaded state: paths, templates, managers. Built by `load` in a thread."""

    paths: Paths
    lab_template: Any  # jinja2.Template
    notebook_env: Any  # jinja2.Environment over notebook/templates
    lab_version: str
    notebook_version: str
    api_version: str
    overrides: dict[str, Any]
    workspaces: Any  # jupyterlab_server WorkspacesManager
    licenses: Any  # jupyterlab_server LicensesManager
    _page_data: tuple[Any, dict[str, Any]] | None = field(default=None, repr=False)
    settings_cache: dict[bool, tuple[Any, bytes]] = field(default_factory=dict, repr=False)

    def disk_page_config(self) -> dict[str, Any]:
        """jupyterlab_server's page config from disk (federated extensions, labconfig/page_config.json,
        disabled extensions as lists), recomputed when an extension or a labconfig file changed, so
        `jupyter labextension disable X` takes effect on the next page load. Blocking: call in a thread."""
        from jupyterlab_server.config import get_page_config

        stamp = self.stamp()
        if self._page_data is None or self._page_data[0] != stamp:
            data = get_page_config(self.paths.labextensions_path, self.paths.app_settings_dir, logger=log)
            self._page_data = (stamp, data)
        return self._page_data[1]

    def stamp(self) -> tuple[Any, ...]:
        """Modification times of the labextensions dirs (and each extension in them) and of every
        labconfig dir and page_config.json: changes when an extension is installed, removed,
        enabled or disabled."""
        from jupyter_core.paths import jupyter_config_path

        where = [*self.paths.labextensions_path, self.paths.app_settings_dir]
        for ext_dir in self.paths.labextensions_path:
            try:
                where += [e.path for e in os.scandir(ext_dir) if e.is_dir()]
            except OSError:
                pass
        where += [os.path.join(d, "labconfig") for d in jupyter_config_path()]
        where += [os.path.join(d, "labconfig", "page_config.json") for d in jupyter_config_path()]
        where.append(os.path.join(self.paths.app_settings_dir, "page_config.json"))
        stamp = []
        for p in where:
            try:
                st = os.stat(p)
                stamp.append((p, st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append((p, None, None))
        return tuple(stamp)


def load(app_dir_setting: str) -> Apps:
    """Find JupyterLab's app directory and Notebook's files, compile the templates, check that the
    bundles the templates load exist. Raises StartupError naming the file at fault."""
    import jinja2
    import notebook
    from jupyter_core.paths import jupyter_path
    from jupyterlab.commands import get_user_settings_dir, get_workspaces_dir
    from jupyterlab_server.licenses_handler import LicensesManager
    from jupyterlab_server.settings_utils import _get_overrides
    from jupyterlab_server.workspaces_handler import WorkspacesManager

    app_dir = lab_app_dir(app_dir_setting)
    static_dir = app_dir / "static"
    index = static_dir / "index.html"
    try:
        index_text = index.read_text(encoding="utf-8")
    except OSError as e:
        raise StartupError(f"JupyterLab's page {index} cannot be read ({e.strerror}); is jupyterlab "
                           "installed, or [plugins.lab] app_dir right?") from None
    _check_scripts(static_dir, index, index_text)
    notebook_dir = Path(notebook.__file__).parent
    tree = notebook_dir / "templates" / "tree.html"
    _check_scripts(notebook_dir / "static", tree, tree.read_text(encoding="utf-8"))

    import importlib.util

    spec = importlib.util.find_spec("jupyter_server")
    favicons = Path(next(iter(spec.submodule_search_locations))) / "static" / "favicons" if spec and \
        spec.submodule_search_locations else None

    paths = Paths(
        app_dir=app_dir,
        static_dir=static_dir,
        schemas_dir=str(app_dir / "schemas"),
        themes_dir=str(app_dir / "themes"),
        app_settings_dir=str(app_dir / "settings"),
        user_settings_dir=str(get_user_settings_dir()),
        workspaces_dir=str(get_workspaces_dir()),
        labextensions_path=jupyter_path("labextensions"),
        notebook_dir=notebook_dir,
        favicons_dir=favicons if favicons and favicons.is_dir() else None,
    )
    overrides, error = _get_overrides(paths.app_settings_dir)
    if error:
        log.warning("JupyterLab settings overrides in %s not loaded: %s", paths.app_settings_dir, error)

    # autoescape: the templates escape their own URLs and embed the page config with |tojson
    lab_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(static_dir)), autoescape=True)
    notebook_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(notebook_dir / "templates")),
                                      autoescape=True)
    return Apps(
        paths=paths,
        lab_template=lab_env.get_template("index.html"),
        notebook_env=notebook_env,
        lab_version=_lab_version(static_dir),
        notebook_version=_version("notebook"),
        api_version=_api_version(),
        overrides=overrides,
        workspaces=WorkspacesManager(paths.workspaces_dir),
        licenses=LicensesManager(parent=_licenses_parent(paths)),
    )


def _check_scripts(static_dir: Path, template: Path, text: str) -> None:
    scripts = entry_scripts(text)
    if not scripts:
        raise StartupError(f"{template} loads no script from the static URL; is the build complete?")
    for name in scripts:
        if not (static_dir / name).is_file():
            raise StartupError(f"{template} loads {name}, which is not in {static_dir}; reinstall the package")


def _lab_version(static_dir: Path) -> str:
    try:
        return json.loads((static_dir / "package.json").read_text(encoding="utf-8"))["jupyterlab"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return _version("jupyterlab")


def _licenses_parent(paths: Paths) -> Any:
    """LicensesManager reads its app's static dir, name and labextension paths from a traitlets parent."""
    from traitlets import List, Unicode
    from traitlets.config import Configurable

    class LabLicenses(Configurable):
        app_name = Unicode("JupyterLab")
        static_dir = Unicode(str(paths.static_dir))
        labextensions_path = List(Unicode(), paths.labextensions_path)
        extra_labextensions_path = List(Unicode(), [])

    return LabLicenses()


class LabSite:
    """One per app: loads `Apps` on the first request that needs it (in a thread, once)."""

    def __init__(self, app: web.Application):
        self.app = app
        self.config = app[CONFIG].section("lab")
        self.base_url = app[CONFIG].server.base_url
        self.root_dir = str(app[CONFIG].server.root_dir)
        self._apps: Apps | None = None
        self._lock = asyncio.Lock()

    async def apps(self) -> Apps:
        if self._apps is None:
            async with self._lock:
                if self._apps is None:
                    try:
                        self._apps = await asyncio.to_thread(load, self.config.app_dir)
                    except StartupError as e:  # a broken install: say which file, try again next time
                        log.error("lab: %s", e)
                        raise ApiError(str(e), "jupyterlab app directory", status=500) from None
                    log.info("JupyterLab %s from %s; Notebook %s", self._apps.lab_version,
                             self._apps.paths.app_dir, self._apps.notebook_version)
        return self._apps


SITE = web.AppKey("himalia_lab.site", LabSite)
"""The app's lab site, made at start-up by `lab_site` (cheap: nothing is loaded until a page is asked for)."""


async def lab_site(app: web.Application):
    app[SITE] = LabSite(app)
    yield

