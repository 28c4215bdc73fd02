"""Cross-origin policy: same-origin always; other origins only when `allow_origin(_pat)` says so.

Runs before authentication so that preflight requests (which carry no token) get an answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from himalia import Forbidden

from .config import AuthConfig

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def origin_allowed(config: AuthConfig, origin: str, headers: Mapping[str, str]) -> bool:
    if urlsplit(origin).netloc.lower() == headers.get("Host", "").lower():
        return True
    if config.allow_origin == "*" or (config.allow_origin and origin == config.allow_origin):
        return True
    if config.allow_origin_pat and re.fullmatch(config.allow_origin_pat, origin):
        return True
    return False


def cors_middleware(config: AuthConfig):
    @web.middleware
    async def cors(request: web.Request, handler):
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        allowed = origin_allowed(config, origin, request.headers)
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if not allowed:
            raise Forbidden(f"requests from origin {origin} are not allowed; set [plugins.auth] "
                            "allow_origin or allow_origin_pat", "origin")
        if preflight:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type, X-XSRFToken")
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if config.allow_credentials:
                response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    return cors
