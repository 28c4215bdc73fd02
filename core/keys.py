"""Every `web.AppKey` and `web.RequestKey` the core defines: the one place handlers find shared state."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web

from .activity import Activity
from .config import Config
from .hooks import Hooks
from .plugins import LoadedPlugins
from .services import Identity, Services

CONFIG = web.AppKey("himalia.config", Config)
"""The validated configuration."""

HOOKS = web.AppKey("himalia.hooks", Hooks)
"""The typed hook facade, for plugins that fire events (kernel started, contents saved, ...)."""

PLUGINS = web.AppKey("himalia.plugins", LoadedPlugins)
"""The plugin manager and what was loaded."""

SERVICES = web.AppKey("himalia.services", Services)
"""The chosen providers' services (contents, session_store, kernels, identity)."""

ACTIVITY = web.AppKey("himalia.activity", Activity)
"""Server start time and last API activity, for /api/status and culling."""

WEBSOCKETS = web.AppKey("himalia.websockets", weakref.WeakSet)
"""Open server-side websockets; handlers add theirs so the core closes them (1001) at shutdown,
before cleanup, instead of aiohttp cancelling them after shutdown_timeout."""

RESTART_WEBSOCKETS = web.AppKey("himalia.restart_websockets", weakref.WeakSet)
"""Open websockets (also in WEBSOCKETS) whose service outlives the server (kernels in keep mode):
the core closes these with 1012, service restart, so clients reconnect to the next server.

.. versionadded:: 0.1"""

ROUTE_AUTH = web.AppKey("himalia.route_auth", dict)
"""Each route the app has → whether it requires authentication (only `GET /api` opts out); the
authentication middleware reads it, and tests enumerate the protected routes from it."""

USER_CONTENT_ROUTES = web.AppKey("himalia.user_content_routes", set)
"""The routes declared with `user_content=True`: every response they give is sandboxed
(`Content-Security-Policy: sandbox allow-scripts`, see `himalia.guards`)."""

SHUTDOWN = web.AppKey("himalia.shutdown", asyncio.Event)
"""Set by `POST /api/shutdown`; `himalia serve` stops when it is set, as on SIGTERM."""

STARTING = web.AppKey("himalia.starting", list)
"""`[what]`: the plugin resource being started (named in a start-up error), or `[None]`."""

DEFAULT_URL = web.AppKey("himalia.default_url", str)
"""Where `GET {base_url}` redirects (a path relative to base_url, from `himalia_default_urls`), or None."""

OPENAPI_CACHE = web.AppKey("himalia.openapi_cache", dict)
"""The assembled /api/spec.yaml, built on first request."""

IDENTITY = web.RequestKey("himalia.identity", Identity)
"""Who made the request, set by the core's authentication middleware."""
