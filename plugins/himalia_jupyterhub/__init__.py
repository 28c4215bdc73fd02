"""Default plugin `jupyterhub`: Himalia as JupyterHub's single-user server.

When a hub's spawner starts `himalia serve` (JUPYTERHUB_API_TOKEN and JUPYTERHUB_SERVICE_URL in the
environment) and the config names no other identity provider, the `jupyterhub` identity provider is
chosen, the server listens where the hub says under its prefix, browsers log in through the hub's
OAuth and activity is reported to the hub. Elsewhere this plugin adds nothing.
"""

from __future__ import annotations

from typing import Any

from himalia import Middleware, Provider, Route, hookimpl

PROVIDER = "jupyterhub"


def hub_mode(config: Any) -> bool:
    """Whether the `jupyterhub` identity provider is the one this config gets."""
    from .env import started_by_hub

    if config is None:  # a caller with no config (a test of the hook machinery): nothing to add
        return False
    chosen = config.server.identity_provider
    return chosen == PROVIDER or (not chosen and started_by_hub())


def _preferred(config: Any) -> bool:
    from .env import started_by_hub

    return started_by_hub()


@hookimpl
def himalia_server_defaults():
    from .env import server_defaults

    return server_defaults()


@hookimpl
def himalia_identity_providers():
    from .identity import jupyterhub_identity

    return [Provider(PROVIDER, jupyterhub_identity, "JupyterHub single-user login: hub OAuth cookie or "
                                                    "hub token, checked against the server's access scopes",
                     preferred=_preferred)]


@hookimpl
def himalia_routes(config):
    if not hub_mode(config):
        return []
    from .handlers import logout, oauth_callback

    return [Route("GET", "/oauth_callback", oauth_callback, auth=False),
            Route("GET", "/logout", logout, auth=False)]


@hookimpl
def himalia_middlewares(config):
    if not hub_mode(config):
        return []
    from .handlers import hub_middleware

    return [Middleware(hub_middleware, order=-50)]


@hookimpl
def himalia_resources(config):
    if not hub_mode(config):
        return []
    from .activity import hub_activity

    return [hub_activity]


@hookimpl(optionalhook=True)
def himalia_page_config(app):
    """JupyterLab's hub keys (File › Hub Control Panel, Log Out, sharing), once the `lab` plugin renders
    pages; optional, so this plugin loads where no plugin declares the hook."""
    import os

    from himalia import url_path

    from .identity import provider

    hub = provider(app)
    if hub is None:
        return {}
    hub_auth = hub.hub_auth
    return {
        "hubUser": os.environ.get("JUPYTERHUB_USER", ""),
        "hubServerUser": os.environ.get("JUPYTERHUB_USER", ""),
        "hubPrefix": hub_auth.hub_prefix,
        "hubHost": hub_auth.hub_host,
        "hubServerName": os.environ.get("JUPYTERHUB_SERVER_NAME", ""),
        "shareUrl": url_path(hub_auth.hub_prefix, "/user-redirect"),
        "token": "",
    }


@hookimpl(optionalhook=True)
def himalia_default_urls(config):
    """The hub's `Spawner.default_url` (JUPYTERHUB_DEFAULT_URL, relative to the prefix: "/lab") for the
    server's root, once the `lab` plugin declares this hook; it comes before lab's own offer."""
    import os

    url = os.environ.get("JUPYTERHUB_DEFAULT_URL", "")
    return [url] if url and hub_mode(config) else []
