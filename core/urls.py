"""URL paths under the server's base_url: the one join, for the core and every plugin."""

from __future__ import annotations


def url_path(base_url: str, path: str) -> str:
    """Join base_url and a route path, whatever slashes either has: ("/jh/user/", "/api") →
    "/jh/user/api", ("jh", "api/x") → "/jh/api/x", ("/", "/api") → "/api", ("/jh/", "/") → "/jh/"."""
    base = base_url.strip("/")
    return ("/" + base if base else "") + "/" + path.lstrip("/")
