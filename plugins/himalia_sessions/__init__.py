"""Default plugin `sessions`: which document uses which kernel, in a pluggable store (SQLite by default)."""

from __future__ import annotations

from himalia import ConfigSection, Provider, Requirement, Route, hookimpl

from .config import SessionsConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("sessions", SessionsConfig, "The session store.")]


@hookimpl
def himalia_session_store_providers():
    from .store_sqlite import sqlite_store

    return [Provider("sqlite", sqlite_store, "SQLite, in memory or in [plugins.sessions] database")]


@hookimpl
def himalia_requirements(config):
    return [Requirement("kernels", provided_by="kernels")]


@hookimpl
def himalia_kernel_stopped(kernel_id, reason, app):
    if reason == "shutdown":  # the server's own stop of every kernel: the rows stay (a database file
        return                # keeps them; the next start prunes them), as when stops came after the close
    from .manager import kernel_stopped

    kernel_stopped(app, kernel_id)


@hookimpl
def himalia_resources(config):
    from .manager import session_manager

    return [session_manager]


@hookimpl
def himalia_routes(config):
    from . import handlers as h

    return [
        Route("GET", "/api/sessions", h.list_sessions),
        Route("POST", "/api/sessions", h.create_session),
        Route("GET", "/api/sessions/{session_id}", h.get_session),
        Route("PATCH", "/api/sessions/{session_id}", h.patch_session),
        Route("DELETE", "/api/sessions/{session_id}", h.delete_session),
    ]


@hookimpl
def himalia_openapi(config):
    from .handlers import OPENAPI

    return OPENAPI
