"""Declared requirements and plugin services: a missing service is one line naming both plugins;
services start after the providers and the services they require, before any plugin resource."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from himalia import SERVICES, Provider, Requirement, Service, hookimpl
from himalia.app import create_app, load
from himalia.cli import main
from himalia.errors import StartupError

OPEN = {"allow_unauthenticated_access": True}


def build(tmp_path, plugins, disable=(), entry_points=False, server=None):
    config, loaded = load(config_data={"server": {"root_dir": str(tmp_path), **(server or OPEN)}},
                          entry_points=entry_points, extra_plugins=plugins, disable=list(disable))
    return create_app(config, loaded)


def test_disabling_kernels_with_sessions_enabled_names_both(tmp_path):
    with pytest.raises(StartupError) as e:
        build(tmp_path, {}, disable=["kernels"], entry_points=True, server={})
    assert str(e.value) == ("plugin 'sessions' needs the kernel service, which plugin 'kernels' provides; "
                            "it is disabled")


def test_a_gateway_alone_needs_the_kernel_service_too(tmp_path):
    with pytest.raises(StartupError) as e:
        build(tmp_path, {}, disable=["kernels", "sessions"], entry_points=True,
              server={"kernel_provider": "gateway"})
    assert "plugin 'gateway' needs the kernel service, which plugin 'kernels' provides; it is disabled" in str(e.value)


def test_the_kernel_service_needs_a_provider(tmp_path):
    with pytest.raises(StartupError) as e:
        build(tmp_path, {}, disable=["local"], entry_points=True, server={})
    assert str(e.value) == "plugin 'kernels' needs a kernel provider, which plugin 'local' provides; it is disabled"


def test_himalia_serve_fails_at_start_up_with_one_line(tmp_path, capsys):
    assert main(["serve", "--root-dir", str(tmp_path), "--port", "0", "--disable", "kernels"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["himalia: plugin 'sessions' needs the kernel service, which plugin 'kernels' provides; "
                   "it is disabled"]


def test_a_requirement_on_an_uninstalled_plugin_says_so(tmp_path):
    class Needy:
        @hookimpl
        def himalia_requirements(self, config):
            return [Requirement("kernels", provided_by="kernels")]

    with pytest.raises(StartupError, match="^plugin 'needy' needs the kernel service, which plugin 'kernels' "
                                           "provides; it is not installed$"):
        build(tmp_path, {"needy": Needy()})


def _service(role, events, requires=()):
    @asynccontextmanager
    async def factory(app):
        events.append(f"enter {role}")
        yield f"{role} service"
        events.append(f"exit {role}")

    return Service(role, factory, requires=tuple(Requirement(r, provided_by="x") for r in requires))


async def test_services_start_after_what_they_require_and_before_every_resource(tmp_path, himalia_server):
    events: list[str] = []

    class Offers:
        @hookimpl
        def himalia_services(self, config):
            # listed before what it requires: the order comes from `requires`, not from the list
            return [_service("kernel_relay", events, requires=["kernels"]), _service("kernels", events)]

    class Aaa:  # sorts first: its resource still sees both services
        @hookimpl
        def himalia_resources(self, config):
            async def look(app):
                events.append(f"resource sees {app[SERVICES].kernels}, {app[SERVICES].kernel_relay}")
                yield

            return [look]

    async with himalia_server(entry_points=False, plugins={"zzz": Offers(), "aaa": Aaa()}, config={"server": OPEN}):
        pass
    assert events == ["enter kernels", "enter kernel_relay", "resource sees kernels service, kernel_relay service",
                      "exit kernel_relay", "exit kernels"]


def test_a_role_filled_twice_names_both(tmp_path):
    class A:
        @hookimpl
        def himalia_services(self, config):
            return [_service("kernels", [])]

    with pytest.raises(StartupError, match="^service 'kernels' from plugin 'b' conflicts with plugin 'a'$"):
        build(tmp_path, {"a": A(), "b": A()})


def test_services_requiring_each_other_are_refused(tmp_path):
    class A:
        @hookimpl
        def himalia_services(self, config):
            return [_service("kernels", [], requires=["kernel_relay"]),
                    _service("kernel_relay", [], requires=["kernels"])]

    with pytest.raises(StartupError, match="services require each other in a cycle"):
        build(tmp_path, {"a": A()})


def test_a_providers_requirement_counts_only_when_it_is_chosen(tmp_path):
    @asynccontextmanager
    async def factory(app):
        yield object()

    class Kernels:
        @hookimpl
        def himalia_kernel_providers(self):
            return [Provider("mine", factory, requires=(Requirement("kernels", provided_by="kernels"),)),
                    Provider("other", factory)]

    build(tmp_path, {"k": Kernels()}, server={**OPEN, "kernel_provider": "other"})
    with pytest.raises(StartupError, match="^plugin 'k' needs the kernel service"):
        build(tmp_path, {"k": Kernels()}, server={**OPEN, "kernel_provider": "mine"})
