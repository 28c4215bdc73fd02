"""Default plugin `lab`: JupyterLab 4 and Notebook 7 in the browser, served from the installed
`jupyterlab` and `notebook` packages (with jupyterlab_server's functions, never its Tornado handlers).

Without those packages the plugin loads, serves nothing, and `himalia plugins` says what to install.
"""

from __future__ import annotations

from himalia import ConfigSection, Middleware, Route, hookimpl

from .config import LabConfig
from .requirements import INSTALL, missing


@hookimpl
def himalia_config_sections():
    return [ConfigSection("lab", LabConfig, "JupyterLab and Notebook 7 in the browser.")]


@hookimpl
def himalia_plugin_notes(config):
    if missing():
        return [f"serves nothing: {', '.join(missing())} not installed; {INSTALL}"]
    return ["JupyterLab at /lab, Notebook 7 at /tree"]


@hookimpl
def himalia_default_urls(config):
    return [] if missing() else [config.section("lab").default_url]


@hookimpl
def himalia_resources(config):
    if missing():
        return []
    from .site import lab_site

    return [lab_site]


@hookimpl
def himalia_middlewares(config):
    if missing():
        return []
    from .login import login_page

    return [Middleware(login_page, order=-20)]


@hookimpl
def himalia_routes(config):
    if missing():
        return []
    from . import api as a
    from . import pages as p

    return [
        # JupyterLab
        Route("GET", "/lab", p.lab_page),
        Route("GET", "/lab/{rest:.*}", p.lab_page),
        Route("GET", "/doc", p.lab_page),
        Route("GET", "/doc/{rest:.*}", p.lab_page),
        Route("GET", "/static/lab/{path:.+}", p.lab_static),
        Route("GET", "/lab/extensions/{path:.+}", p.extension_file),
        Route("GET", "/static/favicons/{name}", p.favicon),
        Route("GET", "/custom/custom.css", p.custom_css),
        # Notebook 7
        Route("GET", "/tree", p.tree_page),
        Route("GET", "/tree/{path:.*}", p.tree_page),
        Route("GET", "/notebooks", p.notebook_page),
        Route("GET", "/notebooks/{path:.*}", p.notebook_page),
        Route("GET", "/edit/{path:.*}", p.edit_page),
        Route("GET", "/consoles/{path:.*}", p.console_page),
        Route("GET", "/terminals/{path:.*}", p.terminal_page),
        Route("GET", "/static/notebook/{path:.+}", p.notebook_static),
        # the lab APIs
        Route("GET", "/lab/api/settings", a.list_settings),
        Route("GET", "/lab/api/settings/", a.list_settings),
        Route("GET", "/lab/api/settings/{schema_name:.+}", a.get_setting),
        Route("PUT", "/lab/api/settings/{schema_name:.+}", a.put_setting),
        Route("GET", "/lab/api/workspaces", a.list_workspaces),
        Route("GET", "/lab/api/workspaces/", a.list_workspaces),
        Route("GET", "/lab/api/workspaces/{name:.+}", a.get_workspace),
        Route("PUT", "/lab/api/workspaces/{name:.+}", a.put_workspace),
        Route("DELETE", "/lab/api/workspaces/{name:.+}", a.delete_workspace),
        Route("GET", "/lab/api/translations", a.list_translations),
        Route("GET", "/lab/api/translations/", a.list_translations),
        Route("GET", "/lab/api/translations/{locale}", a.get_translation),
        Route("GET", "/lab/api/themes/{path:.+}", a.theme_file),
        Route("GET", "/lab/api/licenses", a.licenses),
        Route("GET", "/lab/api/licenses/", a.licenses),
        Route("GET", "/lab/api/news", a.news),
        Route("GET", "/lab/api/update", a.update),
        Route("GET", "/lab/api/plugins", a.plugins),
        Route("GET", "/lab/api/extensions", a.extensions),
        Route("GET", "/lab/api/listings/{path:.*}", a.listings),
    ]


@hookimpl
def himalia_openapi(config):
    if missing():
        return {}
    from .openapi import OPENAPI

    return OPENAPI
