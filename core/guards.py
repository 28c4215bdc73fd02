"""The checks every request passes before any identity provider sees it, and the headers every
response carries: whatever plugin authenticates (or none, with `allow_unauthenticated_access`).

- Host: only local names and loopback addresses unless `[server] allow_remote_access` (DNS rebinding).
- Origin: a browser request (websocket upgrades included) from another origin is refused unless
  `[server] allow_origin` / `allow_origin_pat` allow it; allowed ones get CORS headers, preflights an answer.
- Headers: `X-Content-Type-Options: nosniff` on every response; `Content-Security-Policy: sandbox
  allow-scripts` on every response of a route that serves user content (`Route(user_content=True)`),
  so a page from the root runs in an opaque origin: no cookies, no same-origin API calls.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from .config import ServerConfig
from .errors import Forbidden
from .keys import CONFIG, USER_CONTENT_ROUTES
from .records import Handler

log = logging.getLogger("himalia")

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
SANDBOX = "sandbox allow-scripts"
"""The Content-Security-Policy of user content, as jupyter_server sends on /files/."""


# --- Host ---------------------------------------------------------------------------------------


def remote_access_allowed(server: ServerConfig) -> bool:
    """`[server] allow_remote_access`, or when unset: true when the server listens on an address
    that is not loopback (0.0.0.0, a LAN address), as jupyter_server decides."""
    if server.allow_remote_access is not None:
        return server.allow_remote_access
    try:
        return not ipaddress.ip_address(server.ip.strip("[]")).is_loopback
    except ValueError:  # a host name: local only if it is one of the local names
        return server.ip not in server.local_hostnames


def host_name(host: str) -> str:
    """The name in a Host header: "127.0.0.1:8888" → "127.0.0.1", "[::1]:8888" → "::1"."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def host_is_local(host: str, server: ServerConfig) -> bool:
    name = host_name(host).lower().rstrip(".")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name in (n.lower() for n in server.local_hostnames)


# --- Origin -------------------------------------------------------------------------------------


def origin_allowed(server: ServerConfig, origin: str, host: str) -> bool:
    """Same origin (the Origin's host:port is the Host header), or one the config allows."""
    if urlsplit(origin).netloc.lower() == host.lower():
        return True
    if server.allow_origin == "*" or (server.allow_origin and origin == server.allow_origin):
        return True
    return bool(server.allow_origin_pat and re.fullmatch(server.allow_origin_pat, origin))


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host, then Origin; CORS headers for allowed foreign origins; preflight answers. Runs right
    after the error middleware, before any plugin middleware and before authentication (a preflight
    carries no credentials)."""
    server = request.app[CONFIG].server
    host = request.headers.get(hdrs.HOST, "")
    if host and not remote_access_allowed(server) and not host_is_local(host, server):
        log.warning("refused a request with the non-local Host %r; set [server] allow_remote_access = true "
                    "if the server should answer to that name", host)
        raise Forbidden(f"Host {host!r} is not a local name; this server answers local names only "
                        "(set [server] allow_remote_access or local_hostnames)", "host")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return await handler(request)
    if not origin_allowed(server, origin, host):
        what = "websocket" if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket" else "requests"
        raise Forbidden(f"{what} from origin {origin} are not allowed; set [server] allow_origin or "
                        "allow_origin_pat", "origin")
    same_origin = urlsplit(origin).netloc.lower() == host.lower()
    if request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ALLOW_METHODS
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = request.headers.get(
            hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "Authorization, Content-Type, X-XSRFToken")
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "600"
    else:
        response = await handler(request)
    if not same_origin and not response.prepared:
        if server.allow_origin == "*":
            # browsers ignore credentials with a wildcard; echoing the origin would grant them to all
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
        else:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers.add(hdrs.VARY, "Origin")
            if server.allow_credentials:
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
    return response


# --- response headers ---------------------------------------------------------------------------


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: runs for every response (errors, files, websocket handshakes)."""
    response.headers[hdrs.X_CONTENT_TYPE_OPTIONS] = "nosniff"
    route = request.match_info.route if request.match_info is not None else None
    if route is not None and route in request.app[USER_CONTENT_ROUTES]:
        sandbox(response)


def sandbox(response: web.StreamResponse) -> web.StreamResponse:
    """Mark `response` as user content: it runs in an opaque origin (scripts yes; cookies, storage,
    same-origin requests no). For a handler that serves user content from a route not declared
    with `user_content=True`; call it before the response is prepared."""
    existing = response.headers.get(hdrs.CONTENT_SECURITY_POLICY)
    if existing is None:
        response.headers[hdrs.CONTENT_SECURITY_POLICY] = SANDBOX
    elif SANDBOX not in existing:
        response.headers[hdrs.CONTENT_SECURITY_POLICY] = f"{existing}; {SANDBOX}"
    return response
