"""Start-up and clean-up of providers and plugin resources, on a real server on loopback.

A provider's context manager is exited exactly as `async with` would: with no exception on a normal
shutdown, whatever the code around the shutdown happens to be handling; and providers already started
are exited when a later one, or a plugin resource, fails to start.
"""

from __future__ import annotations

import io
import socket
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest

from himalia import Provider, hookimpl
from himalia.app import create_app, load
from himalia.errors import StartupError
from himalia.serve import run

OPEN = {"allow_unauthenticated_access": True}


def contents_plugin(events: list[str]):
    """A contents provider whose clean-up is plain code after `yield`, as most are written."""

    @asynccontextmanager
    async def factory(app):
        events.append("contents started")
        yield SimpleNamespace()
        events.append("contents stopped")

    class Plugin:
        @hookimpl
        def himalia_contents_providers(self):
            return [Provider("filesystem", factory)]

    return Plugin()


def failing_kernels_plugin():
    @asynccontextmanager
    async def factory(app):
        raise OSError("no kernels today")
        yield  # pragma: no cover

    class Plugin:
        @hookimpl
        def himalia_kernel_providers(self):
            return [Provider("local", factory)]

    return Plugin()


def resource_plugin(events: list[str], fail: bool = False):
    async def ticker(app):
        if fail:
            raise RuntimeError("ticker cannot tick")
        events.append("resource started")
        yield
        events.append("resource stopped")

    class Plugin:
        @hookimpl
        def himalia_resources(self, config):
            return [ticker]

    return Plugin()


async def test_provider_cleanup_runs_when_the_code_around_shutdown_is_handling_an_error(himalia_server):
    events: list[str] = []
    with pytest.raises(RuntimeError, match="test body failed"):
        async with himalia_server(entry_points=False, plugins={"c": contents_plugin(events)},
                                  config={"server": OPEN}):
            raise RuntimeError("test body failed")
    assert events == ["contents started", "contents stopped"]


async def test_port_in_use_runs_provider_cleanup_and_names_the_port(tmp_path):
    events: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config, loaded = load(config_data={"server": {"root_dir": str(tmp_path), "port": port,
                                                      "port_retries": 0, **OPEN}},
                              entry_points=False, extra_plugins={"c": contents_plugin(events)})
        with pytest.raises(StartupError, match=f"ports {port}..{port} are taken"):
            await run(create_app(config, loaded), out=io.StringIO())
    assert events == ["contents started", "contents stopped"]


async def test_a_failing_provider_exits_the_providers_already_started(himalia_server):
    events: list[str] = []
    plugins = {"c": contents_plugin(events), "k": failing_kernels_plugin()}
    with pytest.raises(StartupError, match="kernels provider 'local' failed to start: OSError: no kernels today"):
        async with himalia_server(entry_points=False, plugins=plugins, config={"server": OPEN}):
            pass  # pragma: no cover
    assert events == ["contents started", "contents stopped"]


async def test_run_exits_started_providers_when_start_up_fails(tmp_path):
    events: list[str] = []
    config, loaded = load(config_data={"server": {"root_dir": str(tmp_path), "port": 0, **OPEN}},
                          entry_points=False,
                          extra_plugins={"c": contents_plugin(events), "k": failing_kernels_plugin()})
    with pytest.raises(StartupError, match="kernels provider 'local' failed to start"):
        await run(create_app(config, loaded), out=io.StringIO())
    assert events == ["contents started", "contents stopped"]


async def test_a_failing_resource_is_a_startup_error_naming_the_plugin(himalia_server):
    events: list[str] = []
    plugins = {"c": contents_plugin(events), "ok": resource_plugin(events),
               "ticking": resource_plugin(events, fail=True)}
    with pytest.raises(StartupError) as e:
        async with himalia_server(entry_points=False, plugins=plugins, config={"server": OPEN}):
            pass  # pragma: no cover
    assert str(e.value) == ("plugin 'ticking' resource 'ticker' failed to start: "
                            "RuntimeError: ticker cannot tick")
    assert events == ["contents started", "resource started", "resource stopped", "contents stopped"]


async def test_resources_stop_in_reverse_order_after_a_normal_shutdown(himalia_server):
    events: list[str] = []
    plugins = {"c": contents_plugin(events), "ok": resource_plugin(events)}
    async with himalia_server(entry_points=False, plugins=plugins, config={"server": OPEN}) as server:
        assert (await server.get("/api")).status == 200
    assert events == ["contents started", "resource started", "resource stopped", "contents stopped"]


class Probe:
    """A resource that is a callable object (as the gateway's probe is), not a function."""

    def __init__(self, events: list[str]):
        self.events = events

    async def __call__(self, app):
        self.events.append("probe started")
        yield
        self.events.append("probe stopped")


async def test_callable_objects_and_context_managers_are_resources_too(himalia_server):
    events: list[str] = []

    @asynccontextmanager
    async def managed(app):
        events.append("managed started")
        yield
        events.append("managed stopped")

    class Plugin:
        @hookimpl
        def himalia_resources(self, config):
            return [Probe(events), managed]

    async with himalia_server(entry_points=False, plugins={"p": Plugin()}, config={"server": OPEN}):
        assert events == ["probe started", "managed started"]
    assert events == ["probe started", "managed started", "managed stopped", "probe stopped"]


def test_serve_cli_names_the_plugin_whose_resource_fails(tmp_path, plugin_site):
    from himalia.cli import main

    plugin_site("broken-dist", {"ticking": """
        from himalia import hookimpl

        @hookimpl
        def himalia_resources(config):
            async def ticker(app):
                raise RuntimeError("ticker cannot tick")
                yield
            return [ticker]
    """})
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        status = main(["serve", "--port", "0", "--root-dir", str(tmp_path)])
    assert status == 2
    assert err.getvalue().strip().splitlines()[-1] == (
        "himalia: plugin 'ticking' resource 'ticker' failed to start: RuntimeError: ticker cannot tick")


def stopping_service_plugin(events: list[str], fail_stop: bool = False):
    """A service with a `stop` (the shutdown phase), as the kernel and terminals services have."""
    from himalia import Service

    @asynccontextmanager
    async def factory(app):
        events.append("service started")
        yield SimpleNamespace()
        events.append("service exited")

    async def stop(value):
        events.append("service stopped")
        if fail_stop:
            raise RuntimeError("cannot stop")

    class Plugin:
        @hookimpl
        def himalia_services(self, config):
            return [Service("events", factory, stop=stop)]

    return Plugin()


@pytest.mark.parametrize("fail_stop", [False, True])
async def test_a_service_s_stop_runs_before_any_resource_exits(himalia_server, caplog, fail_stop):
    """The shutdown phase: whatever the plugins' names, each service's `stop` runs before resources exit;
    a failing stop is logged naming the plugin, and the exits still run."""
    events: list[str] = []
    plugins = {"zzz_service": stopping_service_plugin(events, fail_stop), "aaa_resource": resource_plugin(events)}
    async with himalia_server(entry_points=False, plugins=plugins, config={"server": OPEN}):
        pass
    assert events == ["service started", "resource started", "service stopped", "resource stopped",
                      "service exited"]
    failures = [r.getMessage() for r in caplog.records if "failed to stop at shutdown" in r.getMessage()]
    assert failures == (["plugin 'zzz_service' service 'events' failed to stop at shutdown"] if fail_stop else [])
