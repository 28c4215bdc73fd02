"""Provider selection: configured name, preferred provider, defaults, and their start-up errors."""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest

from himalia import Provider, SERVICES, hookimpl
from himalia.app import create_app, load
from himalia.errors import ProviderError, StartupError


def kernel_plugin(*names, preferred=None):
    @asynccontextmanager
    async def factory(app):
        yield SimpleNamespace(kind=names, list_kernels=None)

    class Plugin:
        @hookimpl
        def himalia_kernel_providers(self):
            return [Provider(n, factory, preferred=preferred if n == names[0] else None) for n in names]

    return Plugin()


def build(tmp_path, plugins, server=None):
    config, loaded = load(config_data={"server": {"root_dir": str(tmp_path), **(server or {})}},
                          entry_points=False, extra_plugins=plugins)
    return create_app(config, loaded)


OPEN = {"allow_unauthenticated_access": True}


def test_unknown_provider_lists_what_is_installed(tmp_path):
    with pytest.raises(ProviderError) as e:
        build(tmp_path, {"a": kernel_plugin("local"), "b": kernel_plugin("remote")},
              {"kernel_provider": "yarn", **OPEN})
    assert str(e.value) == "unknown kernel provider 'yarn'; installed: local, remote"


def test_two_providers_with_one_name_is_an_error_naming_both_plugins(tmp_path):
    with pytest.raises(ProviderError) as e:
        build(tmp_path, {"a": kernel_plugin("local"), "b": kernel_plugin("local")}, OPEN)
    assert str(e.value) == "two kernel providers are named 'local': from plugin 'a' and plugin 'b'"


async def test_configured_provider_is_the_service(tmp_path, himalia_server):
    plugins = {"a": kernel_plugin("local"), "b": kernel_plugin("remote")}
    async with himalia_server(entry_points=False, plugins=plugins,
                              config={"server": {"kernel_provider": "remote", **OPEN}}) as server:
        assert server.app[SERVICES].kernel_provider.kind == ("remote",)
    assert server.app[SERVICES].kernel_provider is None  # released at shutdown


async def test_default_name_is_used_when_nothing_is_configured(tmp_path, himalia_server):
    async with himalia_server(entry_points=False, plugins={"a": kernel_plugin("local", "other")},
                              config={"server": OPEN}) as server:
        assert server.app[SERVICES].kernel_provider.kind == ("local", "other")


async def test_preferred_provider_wins_over_the_default(tmp_path, himalia_server):
    plugins = {"a": kernel_plugin("local"), "g": kernel_plugin("gateway", preferred=lambda c: True)}
    async with himalia_server(entry_points=False, plugins=plugins, config={"server": OPEN}) as server:
        assert server.app[SERVICES].kernel_provider.kind == ("gateway",)


def test_two_preferred_providers_are_an_error(tmp_path):
    plugins = {"a": kernel_plugin("x", preferred=lambda c: True), "b": kernel_plugin("y", preferred=lambda c: True)}
    with pytest.raises(ProviderError, match=r"several kernel providers want to be the default \(x, y\)"):
        build(tmp_path, plugins, OPEN)


def test_no_provider_installed_leaves_the_role_empty(tmp_path):
    app = build(tmp_path, {}, OPEN)
    assert app[SERVICES].kernel_provider is None


def test_no_identity_provider_refuses_to_start(tmp_path):
    with pytest.raises(StartupError, match="allow_unauthenticated_access"):
        build(tmp_path, {})


def test_disabling_auth_does_not_open_the_server(tmp_path):
    config, loaded = load(config_data={"server": {"root_dir": str(tmp_path)}}, disable=["auth"])
    with pytest.raises(StartupError, match="no identity provider is installed or enabled"):
        create_app(config, loaded)


class HeaderIdentity:
    """An identity provider that trusts a proxy's X-Remote-User header (as behind an auth proxy)."""

    token = None

    async def authenticate(self, credentials):
        from himalia import Authenticated, Identity, Unauthorized

        user = credentials.headers.get("X-Remote-User")
        if not user:
            raise Unauthorized("X-Remote-User header required", "no user")
        return Authenticated(Identity(username=user))


class HeaderAuthPlugin:
    @hookimpl
    def himalia_identity_providers(self):
        @asynccontextmanager
        async def factory(app):
            yield HeaderIdentity()

        return [Provider("remote-user", factory)]


async def test_identity_provider_can_be_replaced(himalia_server):
    async with himalia_server(plugins={"proxyauth": HeaderAuthPlugin()},
                              config={"server": {"identity_provider": "remote-user"}}) as server:
        assert server.token is None
        r = await server.get("/api/me", headers={"X-Remote-User": "ada"})
        assert r.status == 200 and (await r.json())["identity"]["username"] == "ada"
        r = await server.get("/api/me")
        assert r.status == 401 and (await r.json())["reason"] == "no user"
