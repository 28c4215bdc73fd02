"""Nothing half-made and no two truths: kernels that die at start, dead kernels, and requests that race.

Races are made deterministic by parking one request inside the kernel service (a gate) and watching
which locks the session manager asks for, instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from contextlib import asynccontextmanager
from typing import Any

from himalia import SERVICES, SessionRecord
from himalia_sessions.locks import KeyedLocks
from himalia_sessions.manager import MANAGER

from .conftest import WAIT, Watch, install_kernelspec, kernel_pid, kernel_pids, process_alive
from .test_sessions_kernels import NB, create, kernel_ids, kernel_info

EXITS = [sys.executable, "-c", "import sys; sys.exit(3)", "-f", "{connection_file}"]
"""A kernel that exits at once, before it answers anything."""

NO_RESTARTS = {"plugins": {"local": {"restart_limit": 0, "restart_check_interval": 0.2}}}
"""The first death of a kernel is final: the provider reports it dead within a fraction of a second."""


class ObservedLocks(KeyedLocks):
    """The manager's locks, recording each request (before it is granted)."""

    def __init__(self, watch: Watch):
        super().__init__()
        self.requests: list[str] = []
        self.watch = watch

    @asynccontextmanager
    async def hold(self, key: str):
        self.requests.append(key)
        self.watch.poke()
        async with super().hold(key):
            yield


class Gate:
    """The kernel service with one method parked until `release()`: `entered` counts the calls."""

    def __init__(self, inner: Any, method: str, watch: Watch):
        self.inner = inner
        self.method = method
        self.watch = watch
        self.entered = 0
        self._open = asyncio.Event()

    def release(self) -> None:
        self._open.set()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        async def parked(*args: Any, **kwargs: Any) -> Any:
            self.entered += 1
            self.watch.poke()
            await asyncio.wait_for(self._open.wait(), WAIT)
            return await attribute(*args, **kwargs)

        return parked


@asynccontextmanager
async def racing(server, gated: str):
    """(watch, locks, gate): the manager's locks observed and the kernel service's `gated` method parked."""
    watch = Watch()
    manager = server.app[MANAGER]
    locks = manager._locks = ObservedLocks(watch)
    services = server.app[SERVICES]
    live = services.kernels
    gate = services.kernels = Gate(live, gated, watch)
    try:
        yield watch, locks, gate
    finally:
        gate.release()
        services.kernels = live


def started(watch: Watch, coroutine) -> asyncio.Future:
    request = asyncio.ensure_future(coroutine)
    request.add_done_callback(watch.poke)
    return request


async def dead_kernel(server, events) -> str:
    """A kernel started through /api/kernels (no session) that answered once, then was killed: the
    provider reports it dead and keeps listing it (the server's NO_RESTARTS config)."""
    r = await server.post("/api/kernels", json={"name": "python3"})
    kernel_id = (await r.json())["id"]
    async with server.ws_connect(f"/api/kernels/{kernel_id}/channels?session_id=sessions-test") as ws:
        await asyncio.wait_for(kernel_info(ws), WAIT)
    os.kill(kernel_pid(kernel_id), signal.SIGKILL)
    await events.until(lambda: kernel_id in [k for k, _ in events.stopped])
    r = await server.get(f"/api/kernels/{kernel_id}")
    assert (await r.json())["execution_state"] == "dead"
    return kernel_id


# --- kernels that die at start ------------------------------------------------------------------


async def test_post_with_a_kernel_that_dies_at_start_records_nothing(serve, events):
    install_kernelspec("exits", EXITS)
    async with serve() as server:
        r = await server.post("/api/sessions", json={**NB, "kernel": {"name": "exits"}})
        assert r.status == 503
        assert await r.json() == {"message": "kernel 'exits' died at start: exit code 3",
                                  "reason": "kernel failed to start"}
        # it never started (it never answered): no event for it, nothing of it left
        assert events.started == [] and events.stopped == []
        assert await server.app[SERVICES].session_store.list() == []
        assert await kernel_ids(server) == set()
        assert kernel_pids("import sys; sys.exit(3)") == []
        assert events.created == []
        r = await server.get("/api/sessions")
        assert await r.json() == []
        # nothing half-made holds the path: the next POST starts a session there
        session = await create(server)
        assert await kernel_ids(server) == {session["kernel"]["id"]}


async def test_patch_to_a_kernel_that_dies_at_start_keeps_the_session(serve, events):
    install_kernelspec("exits", EXITS)
    async with serve(config=NO_RESTARTS) as server:
        session = await create(server)
        kernel_id = session["kernel"]["id"]
        r = await server.patch(f"/api/sessions/{session['id']}",
                               json={"path": "moved.ipynb", "kernel": {"name": "exits"}})
        assert r.status == 503
        assert await r.json() == {"message": "kernel 'exits' died at start: exit code 3",
                                  "reason": "kernel failed to start"}
        row = await server.app[SERVICES].session_store.get(session["id"])
        assert (row.path, row.kernel_id) == (NB["path"], kernel_id)
        assert await kernel_ids(server) == {kernel_id}
        assert process_alive(kernel_pid(kernel_id))
        assert [k for k in events.started if k != kernel_id] == [k for k, _ in events.stopped]


# --- dead kernels -------------------------------------------------------------------------------


async def test_reading_a_session_of_a_dead_kernel_shuts_the_kernel_down(serve, events):
    async with serve(config=NO_RESTARTS) as server:
        kernel_id = await dead_kernel(server, events)
        # a row for it, as a session recorded just before the death would be
        orphan = SessionRecord(str(uuid.uuid4()), "orphan.ipynb", None, "notebook", kernel_id)
        await server.app[SERVICES].session_store.add(orphan)
        r = await server.get("/api/sessions")
        assert await r.json() == []
        assert await server.app[SERVICES].session_store.list() == []
        assert await kernel_ids(server) == set()
        assert events.deleted == [orphan.id]


async def test_a_dead_kernel_cannot_take_a_session(serve, events):
    async with serve(config=NO_RESTARTS) as server:
        session = await create(server)
        kernel_id = await dead_kernel(server, events)
        message = f"kernel {kernel_id} is dead (died: signal 9 (SIGKILL)); a session needs a running kernel"

        r = await server.post("/api/sessions", json={**NB, "path": "other.ipynb", "kernel": {"id": kernel_id}})
        assert r.status == 409
        assert await r.json() == {"message": message, "reason": "kernel dead"}
        r = await server.patch(f"/api/sessions/{session['id']}", json={"kernel": {"id": kernel_id}})
        assert r.status == 409
        assert await r.json() == {"message": message, "reason": "kernel dead"}
        assert [r.id for r in await server.app[SERVICES].session_store.list()] == [session["id"]]
        assert (await server.app[SERVICES].session_store.get(session["id"])).kernel_id == session["kernel"]["id"]


# --- races --------------------------------------------------------------------------------------


async def test_post_for_a_path_waits_for_a_patch_moving_a_session_there(serve):
    async with serve() as server:
        session = await create(server, path="a.ipynb")
        async with racing(server, "start_kernel") as (watch, locks, gate):
            # the PATCH moves the session to b.ipynb on a new kernel, and is parked starting it
            patch = started(watch, server.patch(f"/api/sessions/{session['id']}",
                                                json={"path": "b.ipynb", "kernel": {"name": "python3"}}))
            await watch.until(lambda: gate.entered == 1)
            post = started(watch, server.post("/api/sessions", json={**NB, "path": "b.ipynb"}))
            # unlocked, the POST finds no session at b.ipynb and starts a kernel of its own
            await watch.until(lambda: gate.entered == 2 or locks.requests.count("path:b.ipynb") == 2)
            gate.release()
            patched, posted = await asyncio.wait_for(asyncio.gather(patch, post), WAIT)
        assert patched.status == 200 and posted.status == 201
        new_kernel = (await patched.json())["kernel"]["id"]
        assert (await posted.json())["id"] == session["id"]
        r = await server.get("/api/sessions")
        assert [(s["id"], s["path"]) for s in await r.json()] == [(session["id"], "b.ipynb")]
        assert await kernel_ids(server) == {new_kernel}


async def test_post_for_a_path_waits_for_the_delete_of_its_session(serve):
    async with serve() as server:
        doomed = await create(server)
        async with racing(server, "shutdown_kernel") as (watch, locks, gate):
            delete = started(watch, server.delete(f"/api/sessions/{doomed['id']}"))
            await watch.until(lambda: gate.entered == 1)
            post = started(watch, server.post("/api/sessions", json=NB))
            # unlocked, the POST answers with the session being deleted
            await watch.until(lambda: post.done() or locks.requests.count(f"session:{doomed['id']}") == 2)
            gate.release()
            deleted, posted = await asyncio.wait_for(asyncio.gather(delete, post), WAIT)
        assert deleted.status == 204 and posted.status == 201
        fresh = await posted.json()
        assert fresh["id"] != doomed["id"] and fresh["kernel"]["id"] != doomed["kernel"]["id"]
        r = await server.get("/api/sessions")
        assert [s["id"] for s in await r.json()] == [fresh["id"]]
        assert await kernel_ids(server) == {fresh["kernel"]["id"]}


async def test_post_on_the_kernel_a_delete_is_shutting_down_is_refused(serve):
    async with serve() as server:
        doomed = await create(server)
        kernel_id = doomed["kernel"]["id"]
        async with racing(server, "shutdown_kernel") as (watch, locks, gate):
            delete = started(watch, server.delete(f"/api/sessions/{doomed['id']}"))
            await watch.until(lambda: gate.entered == 1)
            post = started(watch, server.post("/api/sessions", json={"path": "console-1", "type": "console",
                                                                     "kernel": {"id": kernel_id}}))
            # unlocked, the POST records a session on the kernel about to go
            await watch.until(lambda: post.done() or locks.requests.count(f"kernel:{kernel_id}") == 2)
            gate.release()
            deleted, posted = await asyncio.wait_for(asyncio.gather(delete, post), WAIT)
        assert deleted.status == 204
        assert posted.status == 400
        assert (await posted.json())["message"] == f"no running kernel with id {kernel_id}"
        assert await server.app[SERVICES].session_store.list() == []
        assert await kernel_ids(server) == set()
