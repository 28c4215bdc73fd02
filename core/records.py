"""Records that plugins return from collect-all hooks: routes, middlewares, command-line options."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MiddlewareFunc = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One HTTP or websocket route. `path` is relative to the server's base_url ("/api/kernels").

    `auth=False` opts the route out of authentication; only `GET /api` does so by default.
    `user_content=True` says its responses carry content from users (files from the root, a converted
    notebook): the core sandboxes every response of the route (`Content-Security-Policy: sandbox
    allow-scripts`), so such a page cannot act as the logged-in user.
    """

    method: str
    path: str
    handler: Handler
    name: str | None = None
    auth: bool = True
    user_content: bool = False


@dataclass(frozen=True)
class Middleware:
    """An aiohttp middleware with an explicit place in the chain.

    `order < 0` runs before authentication (CORS preflight, say); `order >= 0` after it, on
    authenticated requests only. Lower runs first (outermost); ties are broken by plugin name.
    """

    func: MiddlewareFunc
    order: int = 0


@dataclass(frozen=True)
class CliCommand:
    """A `himalia NAME ...` command a plugin adds (`himalia kernels list`). `add_arguments(parser)` adds
    its arguments (the common --config/--disable/--set/--debug are there already); `run(ns, config)`
    does the work with the validated config and returns the exit status. `ns.hooks` is the loaded
    plugins' `Hooks`, for a command that asks other plugins (`himalia kernels` → `himalia_kept_kernels`)."""

    name: str
    help: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any, Any], int]


@dataclass(frozen=True)
class CliOption:
    """A `himalia serve` flag that sets one config key, e.g. `--gateway-url` → plugins.gateway.url."""

    flag: str
    key: str
    help: str = ""
    type: Callable[[str], Any] = str
