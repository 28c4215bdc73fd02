"""Default plugin `nbconvert`: notebook export, as jupyter_server serves it (`/api/nbconvert`,
`/nbconvert/{format}/{path}`, `POST /nbconvert/{format}`), with nbconvert's exporters run in worker
threads. Notebooks are read through the contents service.
"""

from __future__ import annotations

from himalia import ConfigSection, Route, hookimpl

from .config import NbconvertConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("nbconvert", NbconvertConfig, "Notebook export (File › Save and Export As, Print).")]


@hookimpl
def himalia_resources(config):
    from .handlers import converter

    return [converter]


@hookimpl
def himalia_routes(config):
    from . import handlers as h

    return [
        Route("GET", "/api/nbconvert", h.list_formats),
        Route("GET", "/nbconvert/{format}/{path:.*}", h.export_file, user_content=True),
        Route("POST", "/nbconvert/{format}", h.export_body, user_content=True),
    ]


@hookimpl
def himalia_openapi(config):
    from .openapi import OPENAPI

    return OPENAPI
