"""Default plugin `auth`: token authentication, XSRF for cookie logins, and `GET /api/me`.

Host and Origin checks (CORS) are the core's (`himalia.guards`), so they hold with any identity provider."""

from __future__ import annotations

from himalia import CliOption, ConfigSection, Provider, Route, hookimpl

from .config import MOVED, AuthConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("auth", AuthConfig, "Token authentication.", moved=MOVED)]


@hookimpl
def himalia_cli_options():
    return [CliOption("--token", "plugins.auth.token", "token clients log in with (default: random, "
                                                       "or $JUPYTER_TOKEN)")]


@hookimpl
def himalia_identity_providers():
    from .identity import token_identity

    return [Provider("token", token_identity, "Jupyter token: header, ?token= login, cookie + XSRF")]


@hookimpl
def himalia_routes(config):
    from .handlers import me

    return [Route("GET", "/api/me", me)]


@hookimpl
def himalia_openapi(config):
    from .handlers import OPENAPI

    return OPENAPI
