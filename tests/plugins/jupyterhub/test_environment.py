"""Hub mode is chosen from the spawner's environment alone, and leaves a server outside a hub alone."""

from __future__ import annotations

import pytest

from himalia.app import build_app, load
from himalia.keys import CONFIG

HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "0123456789abcdef",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ada",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:51234/user/ada/",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/ada/",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/ada/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=ada/", "access:servers!user=ada"]',
    "JUPYTERHUB_USER": "ada",
}


@pytest.fixture
def in_hub(monkeypatch, tmp_path):
    for key, value in HUB_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)


def routes(app):
    return {(r.method, r.resource.canonical) for r in app.router.routes()}


def test_the_hub_environment_sets_address_prefix_and_identity(in_hub):
    app = build_app(config_data={})
    server = app[CONFIG].server
    assert (server.ip, server.port, server.base_url) == ("127.0.0.1", 51234, "/user/ada/")
    assert server.port_retries == 0 and server.allow_remote_access is True
    assert ("GET", "/user/ada/oauth_callback") in routes(app)
    assert ("GET", "/user/ada/logout") in routes(app)


@pytest.mark.parametrize("service_url, ip", [
    ("http://:8888/user/ada/", "0.0.0.0"),  # the spawner's ip = '': every interface
    ("http://0.0.0.0:8888/user/ada/", "0.0.0.0"),  # KubeSpawner's default
    ("http://[::]:8888/user/ada/", "::"),
])
def test_the_listening_address_follows_the_service_url(in_hub, monkeypatch, service_url, ip):
    from himalia_jupyterhub.env import server_defaults

    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", service_url)
    assert server_defaults()["ip"] == ip and server_defaults()["port"] == 8888


def test_the_config_still_wins_under_a_hub(in_hub):
    config, _ = load(config_data={"server": {"port": 9000, "identity_provider": "token"}})
    assert config.server.port == 9000
    app = build_app(config_data={"server": {"identity_provider": "token"}})
    assert ("GET", "/user/ada/oauth_callback") not in routes(app)


def test_outside_a_hub_the_plugin_adds_nothing(monkeypatch, tmp_path):
    for key in HUB_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    app = build_app(config_data={})
    assert app[CONFIG].server.base_url == "/" and app[CONFIG].server.port == 8888
    assert not any("oauth_callback" in path or path.endswith("/logout") for _, path in routes(app))


def test_the_page_config_carries_the_hub_keys(in_hub):
    """What JupyterLab's hub menu reads, once a plugin renders lab pages (`himalia_page_config`)."""
    from aiohttp import web

    import himalia_jupyterhub
    from himalia import SERVICES, Services
    from himalia_jupyterhub.identity import JupyterHubIdentityProvider, hub_oauth

    app = web.Application()
    app[SERVICES] = Services()
    assert himalia_jupyterhub.himalia_page_config(app) == {}  # another identity provider: nothing
    app[SERVICES].identity = JupyterHubIdentityProvider(hub_oauth())
    config = himalia_jupyterhub.himalia_page_config(app)
    assert config["hubUser"] == "ada" and config["hubServerName"] == ""
    assert config["hubPrefix"] == "/hub/" and config["shareUrl"] == "/hub/user-redirect"
    assert config["hubHost"] == ""


def test_the_spawners_default_url_is_offered_for_the_root(in_hub, monkeypatch):
    import himalia_jupyterhub

    config, _ = load(config_data={})
    assert himalia_jupyterhub.himalia_default_urls(config) == []
    monkeypatch.setenv("JUPYTERHUB_DEFAULT_URL", "/lab/tree/start.ipynb")
    assert himalia_jupyterhub.himalia_default_urls(config) == ["/lab/tree/start.ipynb"]
    config, _ = load(config_data={"server": {"identity_provider": "token"}})
    assert himalia_jupyterhub.himalia_default_urls(config) == []


@pytest.mark.parametrize("websocket, allowed, expected", [
    (True, False, "T"),  # a websocket: always, as jupyterhub's own server
    (False, False, None),  # a page or API call: ignored by default (JupyterHub 5 and later)
    (False, True, "T"),  # JUPYTERHUB_ALLOW_TOKEN_IN_URL=1
])
def test_a_token_in_the_url_counts_on_websockets_or_when_the_hub_allows(websocket, allowed, expected):
    from himalia import Credentials
    from himalia_jupyterhub.identity import url_token

    credentials = Credentials(method="GET", path="/user/ada/api/kernels", headers={}, cookies={},
                              query={"token": "T"}, is_websocket=websocket)
    assert url_token(credentials, allowed) == expected

