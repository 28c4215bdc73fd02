"""Default plugin `auth`: token authentication, XSRF for cookie logins, CORS, and `GET /api/me`."""

from __future__ import annotations

from himalia import CliOption, ConfigSection, Middleware, Provider, Route, hookimpl

from .config import AuthConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("auth", AuthConfig, "Token authentication and cross-origin policy.")]


@hookimpl
def himalia_cli_options():
    return [CliOption("--token", "plugins.auth.token", "token clients log in with (default: random, "
                                                       "or $JUPYTER_TOKEN)")]


@hookimpl
def himalia_identity_providers():
    from .identity import token_identity

    return [Provider("token", token_identity, "Jupyter token: header, ?token= login, cookie + XSRF")]


@hookimpl
def himalia_middlewares(config):
    from .cors import cors_middleware

    return [Middleware(cors_middleware(config.section("auth")), order=-10)]


@hookimpl
def himalia_routes(config):
    from .handlers import me

    return [Route("GET", "/api/me", me)]


@hookimpl
def himalia_openapi(config):
    from .handlers import OPENAPI

    return OPENAPI
