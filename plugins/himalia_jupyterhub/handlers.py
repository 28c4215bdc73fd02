"""The browser side of hub login: the redirect into the hub's OAuth, `{prefix}oauth_callback` and
`{prefix}logout`, and the `X-JupyterHub-Version` header the hub looks for."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from aiohttp import hdrs, web
from jupyterhub._version import __version__ as HUB_VERSION  # this module is imported only under a hub

from himalia import CONFIG, BadRequest, Forbidden, url_path

from .identity import SESSION_COOKIE, XSRF_COOKIE, JupyterHubIdentityProvider, NotLoggedIn, provider

log = logging.getLogger("himalia.jupyterhub")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE_MAX_AGE = 600
"""Seconds an OAuth round trip may take (the hub's own single-user server allows ten minutes)."""


def wants_page(request: web.Request) -> bool:
    """A browser navigating to a page or a file: a GET (or HEAD) that accepts HTML, outside
    `{base_url}api` and not a websocket upgrade. These are sent into OAuth; anything else gets 403."""
    if request.method not in ("GET", "HEAD"):
        return False
    if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        return False
    api = url_path(request.app[CONFIG].server.base_url, "/api")
    if request.path == api or request.path.startswith(api + "/"):
        return False
    return "text/html" in request.headers.get(hdrs.ACCEPT, "")


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"


def _cookie_args(request: web.Request, hub: JupyterHubIdentityProvider) -> dict[str, object]:
    args: dict[str, object] = {"path": hub.hub_auth.cookie_path, "httponly": True, "samesite": "Lax"}
    if _secure(request) or hub.hub_auth.cookie_host_prefix_enabled:
        args["secure"] = True
    return args


def redirect_to_login(request: web.Request, hub: JupyterHubIdentityProvider) -> web.Response:
    """302 to the hub's authorize URL, with a fresh state (kept by HubOAuth with where to land and the
    PKCE verifier) in a short-lived cookie."""
    auth = hub.hub_auth
    verifier, challenge, method = auth.generate_pkce_code_challenge()
    cookie_name = auth.state_cookie_name
    extra = {"code_verifier": verifier}
    if cookie_name in request.cookies:  # another login is under way (a second tab): keep both
        cookie_name = extra["cookie_name"] = f"{cookie_name}-{secrets.token_hex(4)}"
    state = auth.generate_state(request.raw_path, **extra)  # as sent: percent-escapes kept
    query = {"state": state}
    if auth.pkce_enabled:
        query.update(code_challenge=challenge, code_challenge_method=method)
    response = web.Response(status=302, headers={hdrs.LOCATION: f"{auth.login_url}&{urlencode(query)}",
                                                 hdrs.CACHE_CONTROL: "no-store"})
    response.set_cookie(cookie_name, state, max_age=STATE_MAX_AGE, **_cookie_args(request, hub))
    return response


@web.middleware
async def hub_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Around authentication: a browser navigating without a login goes into OAuth; every answer
    carries `X-JupyterHub-Version` (the hub checks it on `GET {prefix}api`)."""
    try:
        response = await handler(request)
    except NotLoggedIn:
        hub = provider(request.app)
        if hub is None or not wants_page(request):
            raise
        response = redirect_to_login(request, hub)
    if not response.prepared:
        response.headers["X-JupyterHub-Version"] = HUB_VERSION
        response.headers.setdefault(hdrs.CONTENT_SECURITY_POLICY, "frame-ancestors 'none'")
    return response


async def oauth_callback(request: web.Request) -> web.Response:
    """`{prefix}oauth_callback?code=..&state=..`: the state must match the cookie set at the redirect;
    the code (with its PKCE verifier) becomes a token at the hub; the token must belong to a user
    allowed here; then the login cookie is set and the browser lands where it first asked to go."""
    hub = provider(request.app)
    if hub is None:
        raise Forbidden("this server does not log in through JupyterHub", "not a hub server")
    auth = hub.hub_auth
    if "error" in request.query:
        raise Forbidden(f"the hub refused the login: {request.query.get('error_description') or request.query['error']}",
                        "oauth refused")
    code = request.query.get("code", "")
    state = request.query.get("state", "")
    if not code:
        raise BadRequest("OAuth callback without a 'code' parameter", "oauth")
    verifier = auth.get_code_verifier(state) if state else None
    if verifier is None:  # every state this server issues holds a verifier: unknown, or expired
        raise BadRequest("unknown or expired OAuth state (did the server restart?); start again from the "
                         "page you wanted", "oauth state unknown")
    state_cookie = auth.get_state_cookie_name(state)
    cookie_state = request.cookies.get(state_cookie, "")
    if not cookie_state or not secrets.compare_digest(state.encode(), cookie_state.encode()):
        raise BadRequest("OAuth state does not match the state cookie; start again from the page you wanted",
                         "oauth state mismatch")
    next_url = auth.get_next_url(state)
    auth.clear_oauth_state(state)
    try:
        token = await auth.token_for_code(code, code_verifier=verifier, sync=False)
    except Exception as e:
        log.warning("OAuth code exchange with the hub failed: %s", e)
        raise Forbidden("the hub did not accept the OAuth code; log in again", "oauth exchange failed") from None
    model = await hub.user_for_token(token, request.cookies.get(SESSION_COOKIE, ""), use_cache=False)
    log.info("logged in user %s through JupyterHub", model.get("name"))
    base = request.app[CONFIG].server.base_url
    if not next_url.startswith(base) or next_url.startswith("//"):
        next_url = base  # only ever land on this server: no open redirect
    response = web.Response(status=302, headers={hdrs.LOCATION: next_url, hdrs.CACHE_CONTROL: "no-store"})
    args = _cookie_args(request, hub)
    response.set_cookie(hub.cookie_name, hub.sign(token), **args)
    response.del_cookie(state_cookie, path=str(args["path"]))
    if XSRF_COOKIE not in request.cookies:
        response.set_cookie(XSRF_COOKIE, secrets.token_hex(16), **{**args, "httponly": False})
    return response


async def logout(request: web.Request) -> web.Response:
    """`{prefix}logout`: forget the login here, then log out of the hub."""
    hub = provider(request.app)
    if hub is None:
        raise Forbidden("this server does not log in through JupyterHub", "not a hub server")
    cookie = request.cookies.get(hub.cookie_name)
    token = hub.unsign(cookie) if cookie else None
    if token is not None:
        hub.forget(token, request.cookies.get(SESSION_COOKIE, ""))
    auth = hub.hub_auth
    response = web.Response(status=302, headers={hdrs.LOCATION: f"{auth.hub_host}{url_path(auth.hub_prefix, '/logout')}",
                                                 hdrs.CACHE_CONTROL: "no-store"})
    response.del_cookie(hub.cookie_name, path=auth.cookie_path)
    return response
