"""Default plugin `terminals`: shells in pseudo-terminals, as jupyter_server_terminals serves them
(`/api/terminals`, `/terminals/websocket/{name}`); provides the `terminals` service
(`app[SERVICES].terminals`) through `himalia_services`, so every plugin sees it from start-up.

`[plugins.terminals] enabled = false` turns them off (no routes, no service), as does `--disable terminals`.
A system without ptys (Windows) or without ptyprocess gets no service (a warning at start-up; the routes
answer 503).
"""

from __future__ import annotations

import logging

from himalia import SERVICES, ConfigSection, Route, Service, hookimpl

from .config import TerminalsConfig

log = logging.getLogger("himalia.terminals")


def _enabled(config) -> bool:
    return config.section("terminals").enabled


@hookimpl
def himalia_config_sections():
    return [ConfigSection("terminals", TerminalsConfig, "Shells in terminals (JupyterLab's File › New › Terminal).")]


def _terminals_service(app):
    from .manager import terminals_service

    return terminals_service(app)


@hookimpl
def himalia_services(config):
    if not _enabled(config):
        return []
    from .manager import unavailable

    why = unavailable()
    if why:
        log.warning("terminals are unavailable: %s", why)
        return []
    return [Service("terminals", _terminals_service, "shells in ptys, culled when idle, ended at shutdown",
                    stop=_end_terminals)]


async def _end_terminals(terminals):
    await terminals.close()  # at shutdown, before any plugin resource exits (see `Service.stop`)


@hookimpl
def himalia_routes(config):
    if not _enabled(config):
        return []
    from . import handlers as h

    return [
        Route("GET", "/api/terminals", h.list_terminals),
        Route("POST", "/api/terminals", h.create_terminal),
        Route("GET", "/api/terminals/{name}", h.get_terminal),
        Route("DELETE", "/api/terminals/{name}", h.delete_terminal),
        Route("GET", "/terminals/websocket/{name}", h.terminal_websocket),
    ]


@hookimpl
def himalia_openapi(config):
    if not _enabled(config):
        return {}
    from .openapi import OPENAPI

    return OPENAPI


@hookimpl
def himalia_page_config(app):
    # JupyterLab and Notebook 7 offer File › New › Terminal only when the page says terminals exist
    return {"terminalsAvailable": app[SERVICES].terminals is not None}
