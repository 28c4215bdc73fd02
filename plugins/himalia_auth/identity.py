"""The token identity provider: `Authorization: token T`, `?token=T` (sets a login cookie), or the cookie.

Cookie-authenticated unsafe requests must carry `X-XSRFToken` equal to the `_xsrf` cookie, as
Jupyter clients send them. Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from himalia import (
    CONFIG,
    Authenticated,
    Cookie,
    Credentials,
    Forbidden,
    Identity,
    Unauthorized,
)

from .config import AuthConfig

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE = "himalia-login"
XSRF_COOKIE = "_xsrf"


def _username() -> str:
    """The account the server runs as; containers often run a uid with no passwd entry, where
    `getpass.getuser()` raises, so the uid names it then."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "anonymous"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


class TokenIdentityProvider:
    def __init__(self, config: AuthConfig):
        self.config = config
        self.token: str | None = config.token or os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
        self._cookie_value = hmac.new(self.token.encode(), b"himalia-login-cookie", hashlib.sha256).hexdigest()
        self.identity = Identity(username=_username())

    def _header_token(self, credentials: Credentials) -> str | None:
        value = credentials.headers.get("Authorization", "")
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and rest.strip():
            return rest.strip()
        return None

    async def authenticate(self, credentials: Credentials) -> Authenticated:
        token = self._header_token(credentials)
        if token is not None:
            if not _same(token, self.token):
                raise Unauthorized("invalid token in the Authorization header", "invalid token")
            return Authenticated(self.identity)
        query_token = credentials.query.get("token")
        if query_token is not None:
            if not _same(query_token, self.token):
                raise Unauthorized("invalid token in the ?token= parameter", "invalid token")
            cookies = [Cookie(COOKIE, self._cookie_value, max_age=self.config.cookie_max_age)]
            if XSRF_COOKIE not in credentials.cookies:
                cookies.append(Cookie(XSRF_COOKIE, secrets.token_hex(16), httponly=False))
            return Authenticated(self.identity, cookies)
        cookie = credentials.cookies.get(COOKIE)
        if cookie is not None and _same(cookie, self._cookie_value):
            if credentials.method not in SAFE_METHODS and not self.config.disable_check_xsrf:
                self._check_xsrf(credentials)
            return Authenticated(self.identity)
        if cookie is not None:
            raise Unauthorized("login cookie is invalid or expired; log in again with ?token=",
                               "invalid cookie")
        raise Unauthorized("authentication required: send 'Authorization: token <token>' or log in "
                           "with ?token=<token>", "missing token")

    def _check_xsrf(self, credentials: Credentials) -> None:
        header = credentials.headers.get("X-XSRFToken") or credentials.headers.get("X-CSRFToken") or ""
        cookie = credentials.cookies.get(XSRF_COOKIE, "")
        if not header or not cookie or not _same(header, cookie):
            raise Forbidden(f"XSRF check failed: a cookie-authenticated {credentials.method} must send the "
                            "_xsrf cookie's value in the X-XSRFToken header", "xsrf")


@asynccontextmanager
async def token_identity(app: web.Application) -> AsyncIterator[TokenIdentityProvider]:
    yield TokenIdentityProvider(app[CONFIG].section("auth", AuthConfig))


