"""The kernel service as other plugins see it: one role filled before any plugin resource starts, its
relay under a role of its own, one channel set per started kernel, config keys in their tables."""

from __future__ import annotations

import pytest
from kernel_ws import connect

from himalia import SERVICES, hookimpl
from himalia.app import load
from himalia.errors import ConfigError


class Aaa:
    """A plugin whose name sorts before every default one, using the kernel service at start-up."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}
        self.started: list[str] = []

    @hookimpl
    def himalia_kernel_started(self, kernel_id, name, app):
        self.started.append(kernel_id)
        self.seen["event app"] = app

    @hookimpl
    def himalia_resources(self, config):
        async def use_kernels(app):
            kernels = app[SERVICES].kernels
            model = await kernels.start_kernel()
            self.seen.update(model=model, relay_connections=app[SERVICES].kernel_relay.connections(model["id"]),
                             same=kernels is app[SERVICES].kernels, app=app)
            yield

        return [use_kernels]


async def test_a_plugin_sorting_before_kernels_sees_the_kernel_service_at_start_up(himalia_server):
    aaa = Aaa()
    async with himalia_server(plugins={"aaa": aaa}) as server:
        model = aaa.seen["model"]
        # the live service (execution_state from the relay), the event fired with this server's app
        assert model["execution_state"] in ("idle", "busy", "starting") and "connections" in model
        assert aaa.started == [model["id"]] and aaa.seen["event app"] is server.app
        assert aaa.seen["relay_connections"] == 0
        r = await server.get(f"/api/kernels/{model['id']}")
        assert r.status == 200
        async with connect(server, model["id"]) as ws:
            assert (await ws.execute("print(1)")).stdout == "1\n"
            assert server.app[SERVICES].kernel_relay.connections(model["id"]) == 1


async def test_a_started_kernel_has_one_channel_set(himalia_server):
    """The set that saw the kernel answer at start is the relay's: no second set is opened."""
    async with himalia_server() as server:
        r = await server.post("/api/sessions", json={"path": "nb.ipynb", "type": "notebook"})
        assert r.status == 201, await r.text()
        kid = (await r.json())["kernel"]["id"]
        async with connect(server, kid) as ws:
            assert (await ws.execute("print(1)")).stdout == "1\n"
        record = server.app[SERVICES].kernel_provider._kernels[kid]
        assert len(record.channels) == 1 and record.parked is None


async def test_a_kernel_for_a_nested_notebook_runs_in_its_directory(himalia_server):
    async with himalia_server() as server:
        (server.root_dir / "a").mkdir()
        r = await server.post("/api/sessions", json={"path": "a/b.ipynb", "type": "notebook"})
        assert r.status == 201, await r.text()
        kid = (await r.json())["kernel"]["id"]
        async with connect(server, kid) as ws:
            out = (await ws.execute("import os; print(os.getcwd())")).stdout
        assert out.strip() == str((server.root_dir / "a").resolve())


@pytest.mark.parametrize("key", ["restart_limit", "restart_check_interval", "kernelspec_cache_ttl",
                                 "shutdown_wait_time", "autorestart"])
def test_a_provider_key_under_kernels_says_where_it_went(tmp_path, key):
    value = True if key == "autorestart" else 1
    with pytest.raises(ConfigError) as e:
        load(config_data={"server": {"root_dir": str(tmp_path)}, "plugins": {"kernels": {key: value}}})
    assert str(e.value).endswith(f"[plugins.kernels] '{key}' has moved to [plugins.local]")


def test_the_gateways_old_timeout_name_says_where_it_went(tmp_path):
    with pytest.raises(ConfigError, match=r"\[plugins.gateway\] 'kernel_info_timeout' has moved to "
                                          r"\[plugins.gateway\] 'ws_connect_timeout'"):
        load(config_data={"server": {"root_dir": str(tmp_path)}, "plugins": {"gateway": {"kernel_info_timeout": 5}}})


def _install(name: str, argv: list[str]) -> None:
    import json
    import os
    from pathlib import Path

    spec_dir = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / name  # per test, see tests/conftest.py
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def himalia_kernel_started(self, kernel_id):
        self.seen.append(kernel_id)

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id):
        self.seen.append(kernel_id)


async def test_a_kernel_that_dies_at_start_is_a_503_naming_its_exit_code(himalia_server):
    import sys

    _install("exits", [sys.executable, "-c", "import sys; sys.exit(3)", "-f", "{connection_file}"])
    events = Events()
    config = {"plugins": {"local": {"restart_limit": 0, "restart_check_interval": 0.2}}}
    async with himalia_server(config=config, plugins={"kernel-watch": events}) as server:
        r = await server.post("/api/kernels", json={"name": "exits"})
        assert r.status == 503
        assert await r.json() == {"message": "kernel 'exits' died at start: exit code 3",
                                  "reason": "kernel failed to start"}
        assert await (await server.get("/api/kernels")).json() == []
        assert events.seen == []  # it never started: no event (the conftest checks no process is left)


async def test_a_kernel_that_never_answers_is_a_503_naming_the_timeout(himalia_server):
    import sys

    # a process that lives but speaks no Jupyter protocol
    _install("mute", [sys.executable, "-c", "import time; time.sleep(300)", "-f", "{connection_file}"])
    config = {"plugins": {"kernels": {"kernel_info_timeout": 1.0}}}
    async with himalia_server(config=config) as server:
        r = await server.post("/api/kernels", json={"name": "mute"})
        assert r.status == 503
        assert await r.json() == {"message": "kernel 'mute' started but did not answer within 1s",
                                  "reason": "kernel failed to start"}
        assert await (await server.get("/api/kernels")).json() == []
