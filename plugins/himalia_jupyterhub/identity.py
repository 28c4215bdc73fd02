"""The `jupyterhub` identity provider: who a request comes from, as JupyterHub says.

- `Authorization: token T` (or `Bearer T`): T is a hub token, checked with the hub (`GET {api}/user`).
- `?token=T` on a websocket (browsers cannot set headers on one), and on any request when the hub
  allows tokens in URLs (`JUPYTERHUB_ALLOW_TOKEN_IN_URL`, off by default since JupyterHub 5): the
  same. Elsewhere a `?token=` is ignored, as by jupyterhub's own single-user server.
- The login cookie set by the OAuth callback (`handlers.py`): a hub OAuth token, signed here so a
  made-up value is refused without asking the hub. Cookie-authenticated unsafe requests must carry
  `X-XSRFToken` equal to the `_xsrf` cookie, as with the token provider; websockets rely on the core's
  Origin check.
- Either way the user's scopes must meet JUPYTERHUB_OAUTH_ACCESS_SCOPES (`access:servers!server=alice/`),
  else 403. Answers from the hub are cached per hub session (the `jupyterhub-session-id` cookie) by
  jupyterhub's HubOAuth, for its `cache_max_age` (5 minutes).
- Nothing presented: `NotLoggedIn`, a 403 as the hub's own single-user server answers API calls;
  the plugin's middleware turns it into a redirect into OAuth for a browser navigating to a page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from aiohttp import web

from himalia import SERVICES, Authenticated, BadGateway, Credentials, Forbidden, Identity, StartupError

if TYPE_CHECKING:
    from jupyterhub.services.auth import HubOAuth

log = logging.getLogger("himalia.jupyterhub")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
XSRF_COOKIE = "_xsrf"
SESSION_COOKIE = "jupyterhub-session-id"


class NotLoggedIn(Forbidden):
    """No hub token and no login cookie: 403 for an API call, a redirect into OAuth for a page."""

    default_reason = "not logged in"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


class UnknownToken(Forbidden):
    """The hub does not know the token: expired, revoked at logout, or made up."""

    default_reason = "invalid token"


class JupyterHubIdentityProvider:
    """Authenticates through JupyterHub; one per app, holding jupyterhub's `HubOAuth` (its settings
    from the environment, its state store, its per-session cache of the hub's answers)."""

    token: str | None = None  # clients never log in with a server token here: the hub logs them in

    def __init__(self, hub_auth: HubOAuth):
        self.hub_auth = hub_auth
        self._key = hmac.new(hub_auth.api_token.encode(), b"himalia-jupyterhub-login-cookie",
                             hashlib.sha256).digest()

    # -- the login cookie -------------------------------------------------------------------

    @property
    def cookie_name(self) -> str:
        return self.hub_auth.cookie_name

    def sign(self, token: str) -> str:
        mac = hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()
        return f"{token}.{mac}"

    def unsign(self, value: str) -> str | None:
        token, _, mac = value.rpartition(".")
        if not token or not _same(mac, hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()):
            return None
        return token

    # -- asking the hub -----------------------------------------------------------------------

    async def user_for_token(self, token: str, session_id: str = "", use_cache: bool = True) -> dict[str, Any]:
        """The hub's user model for `token`, if it may use this server; Forbidden otherwise."""
        try:
            model = await self.hub_auth.user_for_token(token, use_cache=use_cache, session_id=session_id,
                                                        sync=False)
        except Exception as e:  # jupyterhub raises tornado's HTTPError for an unreachable or failing hub
            log.warning("could not check a token with the hub at %s: %s", self.hub_auth.api_url, e)
            raise BadGateway(f"could not check the token with JupyterHub at {self.hub_auth.api_url}",
                             "hub unreachable") from None
        if not model:
            raise UnknownToken("the hub does not recognise this token (expired or revoked)")
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            who = model.get("name") or "this token"
            raise Forbidden(f"user {who} may not use this server (it needs one of the scopes "
                            f"{', '.join(sorted(self.hub_auth.access_scopes))})", "forbidden user")
        return model

    def forget(self, token: str, session_id: str) -> None:
        """Drop the cached answer for `token` in `session_id` (at logout)."""
        key = "token:{}:{}".format(session_id, hashlib.sha256(token.encode("utf8", "replace")).hexdigest())
        self.hub_auth.cache.pop(key, None)

    # -- the provider ---------------------------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> Authenticated:
        token = url_token(credentials, self.hub_auth.allow_token_in_url) or _header_token(credentials.headers)
        if token is not None:
            return Authenticated(_identity(await self.user_for_token(token)))
        cookie = credentials.cookies.get(self.cookie_name)
        if cookie is None:
            raise NotLoggedIn("not logged in: log in through JupyterHub, or send 'Authorization: token "
                              "<hub token>'")
        token = self.unsign(cookie)
        if token is None:
            raise NotLoggedIn("the login cookie is invalid; log in again through JupyterHub")
        session_id = credentials.cookies.get(SESSION_COOKIE, "")
        try:
            model = await self.user_for_token(token, session_id)
        except UnknownToken:  # the login ended at the hub: a browser goes through OAuth again
            raise NotLoggedIn("the login has expired or ended at the hub; log in again through "
                              "JupyterHub") from None
        if credentials.method not in SAFE_METHODS:
            _check_xsrf(credentials)
        return Authenticated(_identity(model))


def provider(app: web.Application) -> JupyterHubIdentityProvider | None:
    """The app's identity service if it is this plugin's, else None."""
    identity = app[SERVICES].identity
    return identity if isinstance(identity, JupyterHubIdentityProvider) else None


def url_token(credentials: Credentials, allow_token_in_url: bool) -> str | None:
    """`?token=` when it may be used: always on a websocket, elsewhere only if the hub allows it."""
    if credentials.is_websocket or allow_token_in_url:
        return credentials.query.get("token") or None
    return None


def _header_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, rest = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and rest.strip():
        return rest.strip()
    return None


def _check_xsrf(credentials: Credentials) -> None:
    header = credentials.headers.get("X-XSRFToken") or credentials.headers.get("X-CSRFToken") or ""
    cookie = credentials.cookies.get(XSRF_COOKIE, "")
    if not header or not cookie or not _same(header, cookie):
        raise Forbidden(f"XSRF check failed: a cookie-authenticated {credentials.method} must send the "
                        "_xsrf cookie's value in the X-XSRFToken header", "xsrf")


def _identity(model: dict[str, Any]) -> Identity:
    name = str(model.get("name", ""))
    return Identity(username=name, name=name, display_name=name)


def hub_oauth() -> HubOAuth:
    """jupyterhub's HubOAuth with its settings from the spawner's environment (and its aiohttp client)."""
    try:
        from jupyterhub.services.auth import HubOAuth
    except ImportError as e:
        raise StartupError(f"the jupyterhub identity provider needs the jupyterhub package ({e}); "
                           "pip install 'himalia[hub]'") from None
    return HubOAuth(cache_max_age=300)


@asynccontextmanager
async def jupyterhub_identity(app: web.Application) -> AsyncIterator[JupyterHubIdentityProvider]:
    hub_auth = hub_oauth()
    if not hub_auth.api_token or not hub_auth.oauth_client_id:
        raise StartupError("the jupyterhub identity provider needs JUPYTERHUB_API_TOKEN and "
                           "JUPYTERHUB_CLIENT_ID, which a JupyterHub spawner sets; is this server started by a hub?")
    try:
        yield JupyterHubIdentityProvider(hub_auth)
    finally:
        from jupyterhub.httpclient import JupyterHubHTTPClient

        await JupyterHubHTTPClient.loop_instance().close()
