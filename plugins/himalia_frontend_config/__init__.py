"""Default plugin `frontend_config`: `/api/config/{section}`, the per-frontend JSON config sections
JupyterLab and Notebook read and write (`serverconfig/<section>.json` on the Jupyter config path, shared
with jupyter_server 2)."""

from __future__ import annotations

from himalia import Route, hookimpl

SECTION = "/api/config/{section:.+}"  # any name reaches the handler, which refuses bad ones with a 400


@hookimpl
def himalia_resources(config):
    from .handlers import config_store

    return [config_store]


@hookimpl
def himalia_routes(config):
    from . import handlers as h

    return [
        Route("GET", SECTION, h.get_section),
        Route("PUT", SECTION, h.put_section),
        Route("PATCH", SECTION, h.patch_section),
    ]


@hookimpl
def himalia_openapi(config):
    from .openapi import OPENAPI

    return OPENAPI
