"""Default plugin `events`: jupyter_events' `EventLogger` as the server's event bus
(`app[SERVICES].events`), `POST /api/events`, the websocket `/api/events/subscribe`, and Himalia's own
contents and kernel actions emitted under jupyter_server's schema ids. Plugins add schemas with
`himalia_event_schemas`.
"""

from __future__ import annotations

from himalia import Middleware, Route, Service, hookimpl


@hookimpl
def himalia_event_schemas(config):
    from .schemas import CONTENTS_SCHEMA, KERNEL_ACTIONS_SCHEMA

    return [CONTENTS_SCHEMA, KERNEL_ACTIONS_SCHEMA]


def _event_bus(app):
    from .bus import event_bus

    return event_bus(app)


@hookimpl
def himalia_services(config):
    return [Service("events", _event_bus, "jupyter_events' EventLogger, built on first use")]


@hookimpl
def himalia_kernel_started(kernel_id, name, app):
    from .observe import kernel_started

    kernel_started(app, kernel_id, name)


@hookimpl
def himalia_kernel_restarted(kernel_id, reason, app):
    from .observe import kernel_restarted

    kernel_restarted(app, kernel_id, reason)


@hookimpl
def himalia_kernel_stopped(kernel_id, reason, app):
    from .observe import kernel_stopped

    kernel_stopped(app, kernel_id, reason)


@hookimpl
def himalia_middlewares(config):
    from .observe import contents_events

    return [Middleware(contents_events, order=100)]


@hookimpl
def himalia_routes(config):
    from . import handlers as h

    return [
        Route("POST", "/api/events", h.post_event),
        Route("GET", "/api/events/subscribe", h.subscribe),
    ]


@hookimpl
def himalia_openapi(config):
    from .openapi import OPENAPI

    return OPENAPI
