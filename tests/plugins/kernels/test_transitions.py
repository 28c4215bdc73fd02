"""Every kernel transition is a hook with the app and an exact reason (the reasons are part of the
hookspecs' contract): started, restarting and restarted (after a death under autorestart, or a
client's restart), dead (autorestart off), stopped (deleted, culled, died, shutdown). Real ipykernel
kernels, killed with real signals."""

from __future__ import annotations

import asyncio
import os
import signal

from kernel_ws import assert_gone, connect, kernel_processes

from himalia import SERVICES, hookimpl

WAIT = 60


class Transitions:
    """Records every kernel hook, in order, with the app each carried."""

    def __init__(self):
        self.events: list[tuple] = []
        self.apps: set = set()
        self.changed = asyncio.Event()

    def _add(self, app, *event):
        self.events.append(event)
        self.apps.add(app)
        self.changed.set()

    async def until(self, *event) -> None:
        async with asyncio.timeout(WAIT):
            while event not in self.events:
                self.changed.clear()
                await self.changed.wait()

    @hookimpl
    def himalia_kernel_started(self, kernel_id, name, app):
        self._add(app, "started", kernel_id, name)

    @hookimpl
    def himalia_kernel_restarting(self, kernel_id, reason, app):
        self._add(app, "restarting", kernel_id, reason)

    @hookimpl
    def himalia_kernel_restarted(self, kernel_id, reason, app):
        self._add(app, "restarted", kernel_id, reason)

    @hookimpl
    def himalia_kernel_dead(self, kernel_id, reason, app):
        self._add(app, "dead", kernel_id, reason)

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id, reason, app):
        self._add(app, "stopped", kernel_id, reason)


KILLED = "died: signal 9 (SIGKILL)"


async def test_a_death_under_autorestart_is_restarting_then_restarted(himalia_server):
    seen = Transitions()
    config = {"plugins": {"local": {"restart_check_interval": 0.2}}}
    async with himalia_server(config=config, plugins={"observer": seen}) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        old = kernel_processes(server, kid)[0]
        os.kill(old.pid, signal.SIGKILL)
        await seen.until("restarted", kid, KILLED)
        assert seen.events == [("started", kid, "python3"), ("restarting", kid, KILLED),
                               ("restarted", kid, KILLED)]
        async with connect(server, kid) as ws:  # it runs again, in a new process
            assert (await ws.execute("print('back')")).stdout == "back\n"
        assert kernel_processes(server, kid)[0].pid != old.pid
        assert seen.apps == {server.app}
    assert seen.events[3:] == [("stopped", kid, "shutdown")]


async def test_a_death_with_autorestart_off_is_dead_then_stopped_once(himalia_server):
    seen = Transitions()
    config = {"plugins": {"local": {"autorestart": False, "restart_check_interval": 0.2}}}
    async with himalia_server(config=config, plugins={"observer": seen}) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        os.kill(kernel_processes(server, kid)[0].pid, signal.SIGKILL)
        await seen.until("stopped", kid, KILLED)
        assert seen.events == [("started", kid, "python3"), ("dead", kid, KILLED), ("stopped", kid, KILLED)]
        model = await (await server.get(f"/api/kernels/{kid}")).json()
        assert (model["execution_state"], model["reason"]) == ("dead", KILLED)
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204
    assert len(seen.events) == 3  # neither the delete nor the shutdown stops it twice


async def test_a_client_restart_is_restarting_then_restarted_as_requested(himalia_server):
    seen = Transitions()
    async with himalia_server(plugins={"observer": seen}) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        r = await server.post(f"/api/kernels/{kid}/restart")
        assert r.status == 200, await r.text()
        assert seen.events == [("started", kid, "python3"), ("restarting", kid, "restart requested"),
                               ("restarted", kid, "restart requested")]
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204
        assert seen.events[3:] == [("stopped", kid, "deleted")]


async def test_stops_say_deleted_culled_and_shutdown(himalia_server):
    seen = Transitions()
    config = {"plugins": {"kernels": {"cull_idle_timeout": 3600}}}
    async with himalia_server(config=config, plugins={"observer": seen}) as server:
        ids = [(await (await server.post("/api/kernels", json={})).json())["id"] for _ in range(3)]
        procs = [p for k in ids for p in kernel_processes(server, k)]
        assert (await server.delete(f"/api/kernels/{ids[0]}")).status == 204
        live = server.app[SERVICES].kernels
        live.hubs[ids[1]].last_activity -= 7200  # idle for two hours, as far as the culler can tell
        assert await live.cull_idle() == [ids[1]]
    stops = [e for e in seen.events if e[0] == "stopped"]
    assert stops == [("stopped", ids[0], "deleted"), ("stopped", ids[1], "culled"), ("stopped", ids[2], "shutdown")]
    assert_gone(procs)
