"""The page config (`jupyter-config-data`) of the JupyterLab and Notebook 7 pages, with the keys
`jupyter lab` sends (checked against a running jupyter lab 4.6 / notebook 7.6)."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from himalia import HOOKS

from .site import Apps, LabSite

# relative URLs: the client joins them to baseUrl itself; the full* keys carry the base
LAB_URLS = {
    "appUrl": "/lab",
    "labextensionsUrl": "/lab/extensions",
    "licensesUrl": "/lab/api/licenses",
    "listingsUrl": "/lab/api/listings",
    "settingsUrl": "/lab/api/settings",
    "themesUrl": "/lab/api/themes",
    "translationsApiUrl": "/lab/api/translations",
    "treeUrl": "/lab/tree",
    "workspacesApiUrl": "/lab/api/workspaces",
}

# message types that do not count as kernel activity (as jupyter_server's kernel manager lists them)
UNTRACKED = ["comm_info_request", "comm_info_reply", "kernel_info_request", "kernel_info_reply",
             "shutdown_request", "shutdown_reply", "interrupt_request", "interrupt_reply", "debug_request",
             "debug_reply", "stream", "display_data", "update_display_data", "execute_input",
             "execute_result", "error", "status", "clear_output", "debug_event", "input_request",
             "input_reply"]


def join(base: str, path: str) -> str:
    """("/jh/", "/lab") → "/jh/lab"."""
    return "/" + "/".join(p for p in (base.strip("/"), path.strip("/")) if p)


def base_page_config(site: LabSite, apps: Apps, disk: dict[str, Any], *, notebook: bool) -> dict[str, Any]:
    """Everything but the per-URL keys (mode, workspace, treePath, notebookPage)."""
    p = apps.paths
    base = site.base_url if site.base_url.endswith("/") else site.base_url + "/"
    root = site.root_dir.replace(os.sep, "/")
    config: dict[str, Any] = {
        "allow_hidden_files": False,
        "delete_to_trash": False,
        "appName": "Jupyter Notebook" if notebook else "JupyterLab",
        "appNamespace": "notebook" if notebook else "lab",
        "appVersion": apps.notebook_version if notebook else apps.lab_version,
        "appSettingsDir": p.app_settings_dir,
        "baseUrl": base,
        "wsUrl": "",
        # no builds from the browser: Himalia serves the installed app as it is
        "buildAvailable": False,
        "buildCheck": False,
        "cacheFiles": notebook,
        "copyAbsolutePath": False,
        "devMode": False,
        "exposeAppInBrowser": False,
        "extensionManager": {"name": "read-only", "can_install": False, "install_path": None},
        "extraLabextensionsPath": [],
        "fullMathjaxUrl": "",
        "fullStaticUrl": join(base, "/static/notebook" if notebook else "/static/lab"),
        "ignorePlugins": [],
        "labextensionsPath": p.labextensions_path,
        "mathjaxConfig": "TeX-AMS_HTML-full,Safe",
        "nbclassic_enabled": False,
        "news": {"disabled": True},  # no internet: the news feed stays off
        "notebookStartsKernel": True,
        "notebookVersion": apps.api_version,
        "preferredPath": "/",
        "quitButton": False,
        "rootUri": "file://" + root,
        "schemasDir": p.schemas_dir,
        "serverRoot": root,
        "staticDir": str(p.notebook_dir / "static") if notebook else str(p.static_dir),
        "store_id": 0,
        "templatesDir": str(p.notebook_dir / "templates") if notebook else str(p.static_dir),
        "terminalsAvailable": False,
        "themesDir": p.themes_dir,
        # the login is the cookie set at ?token=; the page never needs the token itself
        "token": "",
        "untracked_message_types": UNTRACKED,
        "userSettingsDir": p.user_settings_dir,
        "virtualDocumentsUri": "file://" + root + "/.virtual_documents",
        "workspacesDir": p.workspaces_dir,
    }
    for key, url in LAB_URLS.items():
        config[key] = url
        config["full" + key[0].upper() + key[1:]] = join(base, url)
    if notebook:
        config["frontendUrl"] = base
        config["jupyterConfigDir"] = _jupyter_config_dir()
    config.update(disk)  # federated_extensions, disabledExtensions (lists), labconfig/page_config.json
    return config


def _jupyter_config_dir() -> str:
    from jupyter_core.paths import jupyter_config_dir

    return jupyter_config_dir()


def page_config(request: web.Request, site: LabSite, apps: Apps, disk: dict[str, Any], *,
                notebook: bool, **page: Any) -> dict[str, Any]:
    config = base_page_config(site, apps, disk, notebook=notebook)
    config.update(request.app[HOOKS].page_config(request.app))  # terminalsAvailable, hub keys, ...
    config.update(page)
    return config
