"""The app factory: config + plugins → one composed `web.Application`.

Request flow: error middleware → guards (Host, Origin/CORS; `himalia.guards`) → plugin middlewares
with order < 0 → authentication (the core's, calling the identity service; then the checks on the
request's own strings) → plugin middlewares with order >= 0 → the plugin's handler, which reaches
services through `app[SERVICES]`. Every response gets the guards' headers as it is prepared.
`python -m aiohttp.web himalia.app:init` works too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger

from . import openapi
from ._version import __version__
from .activity import Activity, isoformat
from .config import Config, RawConfig, apply_overrides, read_config, validate
from .errors import ApiError, BadRequest, StartupError, Unauthorized, json_error, refuse_unstorable
from .hooks import Hooks
from .guards import guard_middleware, security_headers
from .keys import (ACTIVITY, CONFIG, DEFAULT_URL, HOOKS, IDENTITY, OPENAPI_CACHE, PLUGINS, RESTART_WEBSOCKETS,
                   ROUTE_AUTH, SERVICES, SHUTDOWN, STARTING, USER_CONTENT_ROUTES, WEBSOCKETS)
from .plugins import LoadedPlugins, load_plugins
from .records import Handler, Route
from .requirements import check_requirements, ordered_services, service_context, stop_services
from .services import Credentials, Identity, Provider, Services
from .urls import url_path

log = logging.getLogger("himalia")
access_log = logging.getLogger("himalia.access")

# role in Services → (hook role, [server] key, default provider name)
ROLES: dict[str, tuple[str, str, str]] = {
    "contents": ("contents", "contents_provider", "filesystem"),
    "session_store": ("session_store", "session_store", "sqlite"),
    "kernel_provider": ("kernel", "kernel_provider", "local"),
    "identity": ("identity", "identity_provider", "token"),
}

ANONYMOUS = Identity(username="anonymous", name="Anonymous")
T = TypeVar("T")


# --- loading ------------------------------------------------------------------------------------


PluginOverrides = Callable[[LoadedPlugins], dict[tuple[str, ...], Any]]
"""Called once plugins are loaded, before validation: config keys set by flags that plugins added
(`--token` → plugins.auth.token), known only then."""


def load(
    config_path: str | None = None,
    *,
    config_data: dict[str, Any] | None = None,
    disable: list[str] | tuple[str, ...] = (),
    overrides: dict[tuple[str, ...], Any] | None = None,
    entry_points: bool = True,
    extra_plugins: dict[str, Any] | None = None,
    plugin_overrides: PluginOverrides | None = None,
) -> tuple[Config, LoadedPlugins]:
    """Read the config, apply overrides (before loading, so `--set plugins.disable=[...]` blocks a
    plugin before it is imported), load plugins (failing closed on any plugin error), apply the
    overrides of plugin-added flags, validate the config."""
    raw = read_config(config_path, config_data)
    if overrides:
        apply_overrides(raw, overrides)
    plugins = load_plugins([*raw.disabled(), *disable], entry_points=entry_points, extra=extra_plugins)
    plugins.raise_for_errors()
    if plugin_overrides is not None:
        apply_overrides(raw, plugin_overrides(plugins))
    apply_server_defaults(raw, Hooks(plugins.pm).server_defaults())
    return validate_with(raw, plugins, disable), plugins


def apply_server_defaults(raw: RawConfig, defaults: dict[str, Any]) -> None:
    """Plugins' proposed `[server]` values (`himalia_server_defaults`), for keys neither the file nor a
    flag set."""
    if not defaults:
        return
    server = raw.data.setdefault("server", {})
    if isinstance(server, dict):  # not a table: validation reports it
        for key, value in defaults.items():
            server.setdefault(key, value)


def build_app(
    config_path: str | None = None,
    *,
    config_data: dict[str, Any] | None = None,
    disable: list[str] | tuple[str, ...] = (),
    overrides: dict[tuple[str, ...], Any] | None = None,
    entry_points: bool = True,
    extra_plugins: dict[str, Any] | None = None,
    plugin_overrides: PluginOverrides | None = None,
) -> web.Application:
    """The one way an app is built: `himalia serve`, `python -m aiohttp.web himalia.app:init` and the
    `himalia_server` test fixture all come here (see `load` for the arguments). Raises StartupError."""
    config, plugins = load(config_path, config_data=config_data, disable=disable, overrides=overrides,
                           entry_points=entry_points, extra_plugins=extra_plugins,
                           plugin_overrides=plugin_overrides)
    return create_app(config, plugins)


def validate_with(raw: RawConfig, plugins: LoadedPlugins, disable: list[str] | tuple[str, ...] = ()) -> Config:
    hooks = Hooks(plugins.pm)
    config = validate(raw, hooks.config_sections(), known_plugins=set(plugins.infos))
    if disable:
        config = Config(config.server, config.plugins, tuple(dict.fromkeys([*config.disabled, *disable])),
                        config.path)
    return config


# --- the app ------------------------------------------------------------------------------------


def create_app(config: Config, plugins: LoadedPlugins) -> web.Application:
    """Compose the application. Raises StartupError for provider, route or auth problems."""
    hooks = Hooks(plugins.pm)
    server = config.server
    chosen: dict[str, Provider[Any]] = {}
    for role, (hook_role, key, default) in ROLES.items():
        provider = hooks.select_provider(hook_role, getattr(server, key), default, config)
        if provider is not None:
            chosen[role] = provider
    services = ordered_services(hooks, config, chosen)
    check_requirements(hooks, config, plugins, chosen, services, {role: r[0] for role, r in ROLES.items()})
    if "identity" not in chosen and not server.allow_unauthenticated_access:
        raise StartupError("no identity provider is installed or enabled, so every request would be "
                           "unauthenticated; enable the auth plugin or set [server] "
                           "allow_unauthenticated_access = true")

    pre, post = [], []
    for a in sorted(hooks.middlewares(config), key=lambda a: (a.item.order, a.plugin)):
        (pre if a.item.order < 0 else post).append(a.item.func)
    app = web.Application(
        client_max_size=server.max_body_size,
        middlewares=[error_middleware, guard_middleware, *pre, auth_middleware, *post],
        handler_args={"access_log_class": AccessLogger},
    )
    app[CONFIG] = config
    app[HOOKS] = hooks
    app[PLUGINS] = plugins
    app[SERVICES] = Services()
    app[ACTIVITY] = Activity()
    app[ROUTE_AUTH] = {}
    app[USER_CONTENT_ROUTES] = set()
    app[SHUTDOWN] = asyncio.Event()
    app[OPENAPI_CACHE] = {}
    app[WEBSOCKETS] = weakref.WeakSet()
    app[DEFAULT_URL] = hooks.default_url(config)
    app[RESTART_WEBSOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_close_websockets)
    app.on_shutdown.append(stop_services(services))  # kernels and terminals end before any resource exits
    app.on_response_prepare.append(security_headers)

    for role, provider in chosen.items():
        app.cleanup_ctx.append(_provider_context(role, provider))
    for plugin, service in services:
        app.cleanup_ctx.append(service_context(plugin, service, _entered))
    app[STARTING] = [None]
    resources = hooks.resources(config)
    for a in resources:
        name = getattr(a.item, "__name__", type(a.item).__name__)
        app.cleanup_ctx.append(_resource_marker(f"plugin '{a.plugin}' resource '{name}'"))
        app.cleanup_ctx.append(a.item)
    if resources:
        app.cleanup_ctx.append(_resource_marker(None))

    core_routes = [
        Route("GET", "/api", api_version, auth=False),
        Route("GET", "/api/", api_version, auth=False),
        Route("POST", "/api/shutdown", api_shutdown),
        Route("GET", "/api/status", api_status),
        Route("GET", "/api/spec.yaml", api_spec),
        Route("GET", "/", root_page),
    ]
    _add_routes(app, server.base_url, [("core", r) for r in core_routes]
                + [(a.plugin, a.item) for a in hooks.routes(config)])
    return app


def _provider_context(role: str, provider: Provider[Any]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        label = "kernels" if role == "kernel_provider" else role.replace("_", " ")  # as before the role's rename
        what = f"{label} provider '{provider.name}'"
        async with _entered(what, lambda: provider.factory(app)) as service:
            setattr(app[SERVICES], role, service)
            try:
                yield
            finally:
                setattr(app[SERVICES], role, None)

    context.__name__ = f"{role}_provider_{provider.name}"
    return context


def _resource_marker(what: str | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """Entered just before a plugin resource, so a failure to start it can name the plugin. The
    resource itself stays in `cleanup_ctx` as the plugin returned it (a plugin may look it up there)."""

    async def marker(app: web.Application) -> AsyncIterator[None]:
        app[STARTING][0] = what
        yield

    return marker


def startup_failure(app: web.Application, error: BaseException) -> BaseException:
    """The error to report when `runner.setup()` raised `error`: a StartupError naming the plugin
    whose resource failed to start, else `error` itself."""
    what = app.get(STARTING, [None])[0]
    if what is None or isinstance(error, StartupError) or not isinstance(error, Exception):
        return error
    failure = StartupError(f"{what} failed to start: {type(error).__name__}: {error}")
    failure.__cause__ = error
    return failure


@asynccontextmanager
async def _entered(what: str, make: Callable[[], AbstractAsyncContextManager[T]]) -> AsyncIterator[T]:
    """Enter `make()`, turning a failure to start into a StartupError naming `what`; exit it exactly as
    `async with` would (a plain `finally` calling `__aexit__(*sys.exc_info())` would hand the context
    whatever exception the code around the shutdown happens to be handling)."""
    async with AsyncExitStack() as stack:
        try:
            value = await stack.enter_async_context(make())
        except StartupError:
            raise
        except Exception as e:
            raise StartupError(f"{what} failed to start: {type(e).__name__}: {e}") from e
        yield value


async def _close_websockets(app: web.Application) -> None:
    sockets = [ws for ws in list(app[WEBSOCKETS]) if not ws.closed]
    restart = app[RESTART_WEBSOCKETS]
    await asyncio.gather(*(asyncio.wait_for(ws.close(code=1012, message=b"server restarting") if ws in restart
                                            else ws.close(code=1001, message=b"server shutting down"), 5)
                           for ws in sockets), return_exceptions=True)


def _add_routes(app: web.Application, base_url: str, routes: list[tuple[str, Route]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for plugin, route in routes:
        key = (route.method.upper(), route.path)
        if key in seen:
            raise StartupError(f"route {key[0]} {key[1]} from plugin '{plugin}' conflicts with "
                               f"plugin '{seen[key]}'")
        seen[key] = plugin
        added = app.router.add_route(route.method, url_path(base_url, route.path), route.handler, name=route.name)
        app[ROUTE_AUTH][added] = route.auth
        if route.user_content:
            app[USER_CONTENT_ROUTES].add(added)


# --- middlewares --------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place errors become `{"message": ..., "reason": ...}` responses."""
    try:
        return await handler(request)
    except ApiError as e:
        if request.writer.output_size > 0:
            raise  # a websocket or stream already began: no JSON error can follow; aiohttp closes it
        if e.status >= 500:
            log.warning("%s %s: %s", request.method, loggable(request.raw_path), loggable(e.message))
        return json_error(e.status, e.message, e.reason)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = _http_messages.get(e.status, e.text or e.reason)
        if callable(message):
            message = message(request)
        response = json_error(e.status, message, e.reason)
        if hdrs.ALLOW in e.headers:  # RFC 9110: a 405 must list the methods the resource has
            response.headers[hdrs.ALLOW] = e.headers[hdrs.ALLOW]
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        if request.writer.output_size > 0:
            raise  # as above: writing an HTTP response into an upgraded connection would corrupt it
        log.exception("unexpected error answering %s %s", request.method, loggable(request.raw_path))
        return json_error(500, f"unexpected server error answering {request.method} {request.path}; "
                               "see the server log", "internal error")


def _decodes_as_utf8(raw: str) -> bool:
    """False for paths like `/api/contents/%FF`: the router would keep such escapes verbatim, so the
    name would silently alias the valid URL `/api/contents/%25FF` (jupyter_server answers 400); in
    a query string, yarl would turn them into U+FFFD, another silent alias."""
    if "%" not in raw:
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_http_messages: dict[int, Any] = {
    404: lambda r: f"no such URL: {r.path}",
    405: lambda r: f"method {r.method} is not allowed on {r.path}",
    413: lambda r: (f"request body is larger than the server's max_body_size "
                    f"({r.app[CONFIG].server.max_body_size} bytes)"),
}


def credentials(request: web.Request) -> Credentials:
    return Credentials(
        method=request.method,
        path=request.path,
        headers=request.headers,
        cookies=request.cookies,
        query=request.query,
        is_websocket=request.headers.get(hdrs.UPGRADE, "").lower() == "websocket",
        secure=request.secure,
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every request unless its route opted out; record who it was and the activity."""
    app = request.app
    route = request.match_info.route
    if not app[ROUTE_AUTH].get(route, True):
        return await handler(request)
    identity_service = app[SERVICES].identity
    if identity_service is None:
        if not app[CONFIG].server.allow_unauthenticated_access:
            raise Unauthorized("no identity provider is running", "no identity provider")
        request[IDENTITY] = ANONYMOUS
        _refuse_malformed(request)
        return await handler(request)
    result = await identity_service.authenticate(credentials(request))
    request[IDENTITY] = result.identity
    if not request.path.endswith("/api/status"):
        app[ACTIVITY].touch()
    _refuse_malformed(request)
    response = await handler(request)
    if result.set_cookies and not response.prepared:
        path = url_path(app[CONFIG].server.base_url, "/")
        for c in result.set_cookies:
            response.set_cookie(c.name, c.value, path=path, httponly=c.httponly, samesite="Lax",
                                max_age=c.max_age, secure=request.secure or None)
    return response


def _refuse_malformed(request: web.Request) -> None:
    """Checks on the request itself, made once it is authenticated (a stranger learns nothing, not even
    that), before any handler looks anything up.

    A path or query string that is not UTF-8 once percent-decoded is a 400, and so is a NUL in the
    path or in a query parameter (names and values): every string a handler reads from the URL is
    checked here, once, as `read_json` checks the body's. A body the headers declare too large is a
    413 straight away; otherwise aiohttp would read and buffer up to max_body_size bytes before
    refusing, and a client declaring more would wait that long for an answer."""
    raw_path, _, raw_query = request.raw_path.partition("?")
    if not _decodes_as_utf8(raw_path):
        raise BadRequest(f"URL path {request.path!r} is not valid UTF-8 once percent-decoded", "bad path")
    refuse_unstorable(request.path, f"URL path {request.path!r}")
    if not _decodes_as_utf8(raw_query):
        raise BadRequest("the query string is not valid UTF-8 once percent-decoded", "bad query")
    for name, value in request.query.items():
        refuse_unstorable(name, f"query parameter name {name!r}")
        refuse_unstorable(value, f"query parameter '{name}'")
    limit = request.app[CONFIG].server.max_body_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)


def loggable(text: str) -> str:
    """`text` safe to put in a log line: a client's string can hold a newline (`GET /x%0A...` decodes
    to one) that would start a forged line. Control characters, backslashes and non-ASCII come out as
    Python escapes; what is left is printable ASCII, one line."""
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


class AccessLogger(AbstractAccessLogger):
    """One line per request, query strings dropped so tokens never reach a log; 2xx/3xx at DEBUG.
    The path is logged as the client sent it (percent-escapes kept), never decoded: see `loggable`."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.DEBUG if response.status < 400 else logging.WARNING if response.status < 500 else logging.ERROR
        if self.logger.isEnabledFor(level):
            path = loggable(request.raw_path.split("?", 1)[0])
            self.logger.log(level, "%d %s %s (%s) %.2fms", response.status, loggable(request.method), path,
                            request.remote, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG) or self.logger.isEnabledFor(logging.WARNING)


# --- core routes --------------------------------------------------------------------------------


async def api_version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__})


async def api_shutdown(request: web.Request) -> web.Response:
    """Stop the server, as `himalia stop` asks (jupyter_server's `POST /api/shutdown`): the answer
    goes out first, then the server shuts down as on SIGTERM (kernels stopped, info file removed)."""
    log.info("shutting down on a POST /api/shutdown request")
    request.app[SHUTDOWN].set()
    return web.json_response({"message": "shutting down"})


async def api_status(request: web.Request) -> web.Response:
    app = request.app
    activity = app[ACTIVITY]
    kernels_service = app[SERVICES].kernels
    try:
        kernels = await kernels_service.list_kernels() if kernels_service is not None else []
    except ApiError as e:  # a remote provider may be unreachable; the status must still answer
        log.warning("status: cannot list kernels: %s", e.message)
        kernels = []
    last = isoformat(activity.last_activity)
    for k in kernels:  # ISO 8601 UTC strings of one format compare as times
        if (k.get("last_activity") or "") > last:
            last = k["last_activity"]
    body = {
        "started": isoformat(activity.started),
        "last_activity": last,
        "connections": sum(k.get("connections", 0) for k in kernels),
        "kernels": len(kernels),
        **app[HOOKS].status(app),
    }
    return web.json_response(body)


async def api_spec(request: web.Request) -> web.Response:
    text = openapi.spec_text(request.app)
    return web.Response(text=text, content_type="text/x-yaml")


async def root_page(request: web.Request) -> web.Response:
    base = request.app[CONFIG].server.base_url
    default_url = request.app[DEFAULT_URL]
    if default_url is not None:  # a plugin's page (himalia_default_urls); returned, not raised, so
        # the login cookie of a `/?token=` visit is still set on it
        return web.Response(status=302, headers={hdrs.LOCATION: url_path(base, default_url)})
    return web.json_response({"message": f"Himalia {__version__} is running; the API is at {url_path(base, '/api')}",
                              "version": __version__})


# --- aiohttp.web entry point --------------------------------------------------------------------


def init(argv: list[str] | None = None) -> web.Application:
    """App factory for `python -m aiohttp.web -H 127.0.0.1 -P 8888 himalia.app:init [--config F]`."""
    from .cli import build_from_argv

    try:
        app, _ = build_from_argv(list(argv or []))
    except StartupError as e:
        raise SystemExit(f"himalia: {e}") from None

    async def announce(app: web.Application) -> None:
        # the console, not the log: the token must never reach a log file
        identity = app[SERVICES].identity
        token = getattr(identity, "token", None)
        print(f"Himalia {__version__} started; token: {token}" if token else f"Himalia {__version__} started",
              file=sys.stderr)

    async def stop_on_request(app: web.Application) -> AsyncIterator[None]:
        """`POST /api/shutdown` here too: aiohttp.web's run_app stops gracefully on SIGTERM."""
        async def wait() -> None:
            await app[SHUTDOWN].wait()
            signal.raise_signal(signal.SIGTERM)

        task = asyncio.create_task(wait())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.on_startup.append(announce)
    app.cleanup_ctx.append(stop_on_request)
    return app
