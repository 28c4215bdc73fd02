"""The session workflows: create, read (dropping sessions whose kernel is gone), update, delete;
and the start-up resource that builds the manager (kernel stops reach it through the sessions
plugin's `himalia_kernel_stopped`, which carries the app).

The manager keeps no state beyond locks: rows live in the session store, kernels in the kernel
service, working directories come from the contents manager, all reached through `Services` on
every call. A new kernel is ready when `start_kernel` returns (readiness is part of the kernel
service's contract), so the manager opens no channels of its own. Domain arguments only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiohttp import web

from himalia import (
    HOOKS,
    SERVICES,
    ApiError,
    BadRequest,
    Conflict,
    ContentsManager,
    Hooks,
    KernelManager,
    Model,
    NotFound,
    Services,
    SessionRecord,
    SessionStore,
)

from .locks import KeyedLocks

log = logging.getLogger("himalia.sessions")

KEEP: Any = object()
"""`update(name=KEEP)`: leave the name as it is (None is a value: it clears the name)."""


def session_model(record: SessionRecord, kernel: Model) -> Model:
    """jupyter_server's session model, with the deprecated `notebook` field for notebooks."""
    model: Model = {"id": record.id, "path": record.path, "name": record.name, "type": record.type,
                    "kernel": kernel}
    if record.type == "notebook":
        model["notebook"] = {"path": record.path, "name": record.name}
    return model


class SessionManager:
    """Sessions: which document uses which kernel, kept consistent with the kernels that exist.

    Locks are taken in one order, at most one of each kind at a time, so no two workflows can wait
    on each other: `path:{path}` (who may record a session for a path), then `session:{id}` (one
    session's row), then `kernel:{id}` (who uses a kernel: attaching sessions, shutting it down).
    """

    def __init__(self, services: Services, hooks: Hooks, app: web.Application | None = None):
        self.services = services
        self.hooks = hooks
        self.app = app
        self._locks = KeyedLocks()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        """Closed at shutdown: kernel stops from then on are the server's own, and leave the sessions."""
        self.loop = asyncio.get_running_loop()

    # -- services -------------------------------------------------------------------------------

    @property
    def store(self) -> SessionStore:
        return self.services.require("session_store")

    @property
    def kernels(self) -> KernelManager:
        return self.services.require("kernels")

    # -- reading --------------------------------------------------------------------------------

    async def list(self) -> list[Model]:
        """Every session whose kernel still exists; rows of vanished kernels are dropped."""
        records = await self.store.list()
        models = await asyncio.gather(*(self._live_model(r) for r in records))
        return [m for m in models if m is not None]

    async def get(self, session_id: str) -> Model:
        record = await self._record(session_id)
        model = await self._live_model(record)
        if model is None:
            raise NotFound(f"session {session_id} is gone: its kernel {record.kernel_id} stopped",
                           "no such session")
        return model

    async def prune(self) -> int:
        """Drop every session whose kernel is gone (at start-up, for a database kept on disk)."""
        models = await asyncio.gather(*(self._live_model(r) for r in await self.store.list()))
        return sum(m is None for m in models)

    # -- kernel events --------------------------------------------------------------------------

    def loop_call(self, kernel_id: str) -> None:
        """`himalia_kernel_stopped` for this manager's app: drop the kernel's sessions in a task (the
        event may come from any thread; the task runs on the manager's loop)."""
        self.loop.call_soon_threadsafe(self._on_kernel_stopped, kernel_id)

    def _on_kernel_stopped(self, kernel_id: str) -> None:
        if self.closed:  # the server is stopping: its own shutdown of kernels leaves the rows (a file keeps them)
            return
        task = self.loop.create_task(self._kernel_stopped_quietly(kernel_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kernel_stopped_quietly(self, kernel_id: str) -> None:
        try:
            await self.kernel_stopped(kernel_id)
        except Exception:
            log.exception("could not drop the sessions of stopped kernel %s", kernel_id)

    async def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def kernel_stopped(self, kernel_id: str) -> None:
        """Drop the sessions of a kernel the kernel provider reports gone; shut it down if it only
        died (a dead kernel stays listed until shut down). Kernels without sessions are not ours."""
        records = await self.store.find(kernel_id=kernel_id)
        if records:
            await self._drop(records, kernel_id, "its kernel stopped", shut_down=True)

    # -- create ---------------------------------------------------------------------------------

    async def create(self, path: str, type: str, name: str | None = None, *, kernel_name: str | None = None,
                     kernel_id: str | None = None) -> tuple[Model, bool]:
        """The session for `path`: the existing one (False), else a new one (True) on a new kernel
        of spec `kernel_name` (None: the default) or on the running kernel `kernel_id`.

        Nothing is recorded unless the kernel runs: a new kernel must answer first, and one that
        dies instead is shut down (503); so is a kernel started here if recording fails.
        """
        async with self._locks.hold(f"path:{path}"):
            for found in await self.store.find(path=path):
                # a DELETE or a move of it may be under way: let it finish, then look again
                async with self._locks.hold(f"session:{found.id}"):
                    record = await self.store.get(found.id)
                    model = await self._live_model(record) if record and record.path == path else None
                if model is not None:
                    return model, False
            if kernel_id is not None:
                async with self._locks.hold(f"kernel:{kernel_id}"):  # not while a DELETE shuts it down
                    kernel = await self._running_kernel(kernel_id)
                    record = SessionRecord(str(uuid.uuid4()), path, name, type, kernel["id"])
                    await self.store.add(record)
            else:
                kernel = await self._start_kernel(kernel_name, path)
                record = SessionRecord(str(uuid.uuid4()), path, name, type, kernel["id"])
                try:
                    await self.store.add(record)
                except BaseException:
                    await self._shutdown_quietly(kernel["id"])
                    raise
        model = session_model(record, kernel)
        self.hooks.session_created(model, self.app)
        return model, True

    # -- update ---------------------------------------------------------------------------------

    async def update(self, session_id: str, *, path: str | None = None, name: str | None = KEEP,
                     type: str | None = None, kernel_name: str | None = None,
                     kernel_id: str | None = None) -> Model:
        """Change path, name or type; move the session to the running kernel `kernel_id`, or to a
        new kernel of spec `kernel_name` (started in the directory of the new path). The old
        kernel is shut down when no other session uses it."""
        async with contextlib.AsyncExitStack() as locks:
            if path is not None:  # a POST for the new path waits for the move, then finds this session
                await locks.enter_async_context(self._locks.hold(f"path:{path}"))
            await locks.enter_async_context(self._locks.hold(f"session:{session_id}"))
            before = await self._record(session_id)
            if await self._live_model(before) is None:
                raise NotFound(f"session {session_id} is gone: its kernel {before.kernel_id} stopped",
                               "no such session")
            after = replace(before, path=before.path if path is None else path,
                            name=before.name if name is KEEP else name,
                            type=before.type if type is None else type)
            if kernel_id is not None:
                async with self._locks.hold(f"kernel:{kernel_id}"):
                    after.kernel_id = (await self._running_kernel(kernel_id))["id"]
                    await self._store_update(after)
            elif kernel_name is not None:
                started = (await self._start_kernel(kernel_name, after.path))["id"]
                after.kernel_id = started
                try:
                    await self._store_update(after)
                except BaseException:
                    await self._shutdown_quietly(started)
                    raise
            else:
                await self._store_update(after)
            if after.kernel_id != before.kernel_id:
                await self._release(before.kernel_id)
            model = await self._live_model(after)
        if model is None:
            raise NotFound(f"session {session_id} is gone: its kernel {after.kernel_id} stopped",
                           "no such session")
        return model

    async def _store_update(self, record: SessionRecord) -> None:
        if not await self.store.update(record):
            raise NotFound(f"session {record.id} was deleted while it was being changed", "no such session")

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, session_id: str) -> None:
        """Shut the session's kernel down (unless another session uses it), then forget the session.

        A kernel that is already gone is no error: the session is removed all the same. If the
        shutdown fails, the session stays and the error is raised.
        """
        async with self._locks.hold(f"session:{session_id}"):
            record = await self._record(session_id)
            async with self._locks.hold(f"kernel:{record.kernel_id}"):
                sharing = [r for r in await self.store.find(kernel_id=record.kernel_id) if r.id != session_id]
                if not sharing:
                    try:
                        await self.kernels.shutdown_kernel(record.kernel_id)
                    except NotFound:
                        pass
                removed = await self.store.remove(session_id)
        if removed:
            self.hooks.session_deleted(session_id, self.app)

    # -- helpers --------------------------------------------------------------------------------

    async def _record(self, session_id: str) -> SessionRecord:
        record = await self.store.get(session_id)
        if record is None:
            raise NotFound(f"no session with id {session_id}", "no such session")
        return record

    async def _live_model(self, record: SessionRecord) -> Model | None:
        """The session's model with its kernel's live model; None (and the row dropped) if the kernel
        is gone, or dead (then it is shut down too, once no session uses it)."""
        try:
            kernel = await self.kernels.get_kernel(record.kernel_id)
        except NotFound:
            await self._drop([record], record.kernel_id, "its kernel is gone")
            return None
        if kernel.get("execution_state") == "dead":  # died for good (the provider gave up restarting it)
            await self._drop([record], record.kernel_id,
                             f"its kernel is dead ({kernel.get('reason', 'no reason given')})", shut_down=True)
            return None
        return session_model(record, kernel)

    async def _drop(self, records: list[SessionRecord], kernel_id: str, why: str, *,
                    shut_down: bool = False) -> None:
        """Forget sessions of a gone or dead kernel; with `shut_down`, shut the kernel down once no
        session uses it, before the deletions are announced (whoever hears finds it gone too)."""
        async with self._locks.hold(f"kernel:{kernel_id}"):
            removed = [r for r in records if await self.store.remove(r.id)]
            if removed and shut_down and not await self.store.find(kernel_id=kernel_id):
                await self._shutdown_quietly(kernel_id)
        for record in removed:
            log.info("session %s for %s removed: %s (kernel %s)", record.id, record.path, why, kernel_id)
            self.hooks.session_deleted(record.id, self.app)

    async def _running_kernel(self, kernel_id: str) -> Model:
        try:
            kernel = await self.kernels.get_kernel(kernel_id)
        except NotFound:
            raise BadRequest(f"no running kernel with id {kernel_id}", "no such kernel") from None
        if kernel.get("execution_state") == "dead":
            raise Conflict(f"kernel {kernel_id} is dead ({kernel.get('reason') or 'no reason given'}); "
                           f"a session needs a running kernel", "kernel dead")
        return kernel

    async def _kernel_dir(self, path: str) -> str:
        contents: ContentsManager | None = self.services.contents
        if contents is None:  # no contents plugin: the document's directory, as jupyter_server computes it
            return posixpath.dirname(path)
        return await contents.kernel_path(path)

    async def _start_kernel(self, kernel_name: str | None, path: str) -> Model:
        """A new kernel for the document at `path`, once it has answered (the kernel service's
        contract). One that cannot be launched, dies before it answers or stays silent is reported
        (503) with nothing of it left running."""
        kernel_dir = await self._kernel_dir(path)
        try:
            return await self.kernels.start_kernel(kernel_name or None, path=kernel_dir,
                                                   env={"JPY_SESSION_NAME": path})
        except ApiError as e:
            if e.status != 500:  # no such kernelspec, bad path, died at start (503), a gateway's 502/504
                raise
            raise ApiError(e.message, e.reason or "kernel failed to start", status=503) from e
        except Exception as e:
            log.exception("kernel %r for session at %s failed to start", kernel_name, path)
            raise ApiError(f"kernel '{kernel_name or 'default'}' for {path} failed to start: "
                           f"{type(e).__name__}: {e}", "kernel failed to start", status=503) from e

    async def _release(self, kernel_id: str) -> None:
        """Shut a kernel down that no session uses any more; a failure is logged, not raised."""
        async with self._locks.hold(f"kernel:{kernel_id}"):
            if not await self.store.find(kernel_id=kernel_id):
                await self._shutdown_quietly(kernel_id)

    async def _shutdown_quietly(self, kernel_id: str) -> None:
        try:
            await self.kernels.shutdown_kernel(kernel_id)
        except NotFound:
            pass
        except Exception:
            log.exception("could not shut kernel %s down", kernel_id)


# --- lifetime -----------------------------------------------------------------------------------

MANAGER = web.AppKey("himalia_sessions.manager", SessionManager)
"""The app's session manager, made by `session_manager` at start-up."""


async def session_manager(app: web.Application) -> AsyncIterator[None]:
    """Build the manager; drop sessions left from a previous run whose kernels are gone. The kernel
    service is there whatever this plugin's name: services start before every plugin resource."""
    manager = SessionManager(app[SERVICES], app[HOOKS], app)
    app[MANAGER] = manager
    if app[SERVICES].session_store is not None and app[SERVICES].kernels is not None:
        try:
            dropped = await manager.prune()
        except Exception:
            log.exception("could not check the stored sessions against the running kernels")
        else:
            if dropped:
                log.info("dropped %d stored session(s) whose kernels are gone", dropped)
    try:
        yield
    finally:
        await manager.close()


def kernel_stopped(app: web.Application | None, kernel_id: str) -> None:
    """The sessions plugin's `himalia_kernel_stopped`: hand the stop to that app's manager."""
    manager = app.get(MANAGER) if app is not None else None
    if manager is not None:
        manager.loop_call(kernel_id)
