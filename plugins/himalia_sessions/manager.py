"""The session workflows: create, read (dropping sessions whose kernel is gone), update, delete;
and the start-up resource that builds the manager and keeps it in step with kernel events.

The manager keeps no state beyond locks: rows live in the session store, kernels in the kernel
provider, working directories come from the contents manager, all reached through `Services` on
every call (the kernels plugin may wrap its service after start-up). Domain arguments only.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from aiohttp import web

from himalia import (
    HOOKS,
    PLUGINS,
    SERVICES,
    ApiError,
    BadRequest,
    ContentsManager,
    Hooks,
    KernelManager,
    Model,
    NotFound,
    Services,
    SessionRecord,
    SessionStore,
    hookimpl,
)

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


class KeyedLocks:
    """One asyncio.Lock per key, forgotten when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class SessionManager:
    """Sessions: which document uses which kernel, kept consistent with the kernels that exist."""

    def __init__(self, services: Services, hooks: Hooks):
        self.services = services
        self.hooks = hooks
        self._locks = KeyedLocks()

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

    async def kernel_stopped(self, kernel_id: str) -> None:
        """Drop the sessions of a kernel the kernel provider reports gone."""
        for record in await self.store.find(kernel_id=kernel_id):
            await self._drop(record, "its kernel stopped")

    # -- create ---------------------------------------------------------------------------------

    async def create(self, path: str, type: str, name: str | None = None, *, kernel_name: str | None = None,
                     kernel_id: str | None = None) -> tuple[Model, bool]:
        """The session for `path`: the existing one (False), else a new one (True) on a new kernel
        of spec `kernel_name` (None: the default) or on the running kernel `kernel_id`.

        Nothing is recorded unless the kernel is running; a kernel started here is shut down again
        if recording the session fails.
        """
        async with self._locks.hold(f"path:{path}"):
            for record in await self.store.find(path=path):
                model = await self._live_model(record)
                if model is not None:
                    return model, False
            if kernel_id is not None:
                kernel, started = await self._running_kernel(kernel_id), False
            else:
                kernel, started = await self._start_kernel(kernel_name, path), True
            record = SessionRecord(str(uuid.uuid4()), path, name, type, kernel["id"])
            try:
                await self.store.add(record)
            except BaseException:
                if started:
                    await self._shutdown_quietly(kernel["id"])
                raise
        model = session_model(record, kernel)
        self.hooks.session_created(model)
        return model, True

    # -- update ---------------------------------------------------------------------------------

    async def update(self, session_id: str, *, path: str | None = None, name: str | None = KEEP,
                     type: str | None = None, kernel_name: str | None = None,
                     kernel_id: str | None = None) -> Model:
        """Change path, name or type; move the session to the running kernel `kernel_id`, or to a
        new kernel of spec `kernel_name` (started in the directory of the new path). The old
        kernel is shut down when no other session uses it."""
        async with self._locks.hold(f"session:{session_id}"):
            before = await self._record(session_id)
            if await self._live_model(before) is None:
                raise NotFound(f"session {session_id} is gone: its kernel {before.kernel_id} stopped",
                               "no such session")
            after = replace(before, path=before.path if path is None else path,
                            name=before.name if name is KEEP else name,
                            type=before.type if type is None else type)
            started = None
            if kernel_id is not None:
                after.kernel_id = (await self._running_kernel(kernel_id))["id"]
            elif kernel_name is not None:
                started = (await self._start_kernel(kernel_name, after.path))["id"]
                after.kernel_id = started
            try:
                if not await self.store.update(after):
                    raise NotFound(f"session {session_id} was deleted while it was being changed",
                                   "no such session")
            except BaseException:
                if started:
                    await self._shutdown_quietly(started)
                raise
            if after.kernel_id != before.kernel_id:
                await self._release(before.kernel_id)
            model = await self._live_model(after)
        if model is None:
            raise NotFound(f"session {session_id} is gone: its kernel {after.kernel_id} stopped",
                           "no such session")
        return model

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, session_id: str) -> None:
        """Shut the session's kernel down (unless another session uses it), then forget the session.

        A kernel that is already gone is no error: the session is removed all the same. If the
        shutdown fails, the session stays and the error is raised.
        """
        async with self._locks.hold(f"session:{session_id}"):
            record = await self._record(session_id)
            sharing = [r for r in await self.store.find(kernel_id=record.kernel_id) if r.id != session_id]
            if not sharing:
                try:
                    await self.kernels.shutdown_kernel(record.kernel_id)
                except NotFound:
                    pass
            if await self.store.remove(session_id):
                self.hooks.session_deleted(session_id)

    # -- helpers --------------------------------------------------------------------------------

    async def _record(self, session_id: str) -> SessionRecord:
        record = await self.store.get(session_id)
        if record is None:
            raise NotFound(f"no session with id {session_id}", "no such session")
        return record

    async def _live_model(self, record: SessionRecord) -> Model | None:
        """The session's model with its kernel's live model; None (and the row dropped) if the kernel
        is gone or dead."""
        try:
            kernel = await self.kernels.get_kernel(record.kernel_id)
        except NotFound:
            await self._drop(record, "its kernel is gone")
            return None
        if kernel.get("execution_state") == "dead":  # died for good (the provider gave up restarting it)
            await self._drop(record, f"its kernel is dead ({kernel.get('reason', 'no reason given')})")
            return None
        return session_model(record, kernel)

    async def _drop(self, record: SessionRecord, why: str) -> None:
        if await self.store.remove(record.id):
            log.info("session %s for %s removed: %s (kernel %s)", record.id, record.path, why, record.kernel_id)
            self.hooks.session_deleted(record.id)

    async def _running_kernel(self, kernel_id: str) -> Model:
        try:
            return await self.kernels.get_kernel(kernel_id)
        except NotFound:
            raise BadRequest(f"no running kernel with id {kernel_id}", "no such kernel") from None

    async def _kernel_dir(self, path: str) -> str:
        contents: ContentsManager | None = self.services.contents
        if contents is None:  # no contents plugin: the document's directory, as jupyter_server computes it
            return posixpath.dirname(path)
        return await contents.kernel_path(path)

    async def _start_kernel(self, kernel_name: str | None, path: str) -> Model:
        kernel_dir = await self._kernel_dir(path)
        try:
            return await self.kernels.start_kernel(kernel_name or None, path=kernel_dir,
                                                   env={"JPY_SESSION_NAME": path})
        except ApiError:
            raise
        except Exception as e:
            log.exception("kernel %r for session at %s failed to start", kernel_name, path)
            raise ApiError(f"kernel '{kernel_name or 'default'}' for {path} failed to start: "
                           f"{type(e).__name__}: {e}", "kernel failed to start") from e

    async def _release(self, kernel_id: str) -> None:
        """Shut a kernel down that no session uses any more; a failure is logged, not raised."""
        if await self.store.find(kernel_id=kernel_id):
            return
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


class KernelEvents:
    """Hands `himalia_kernel_stopped` to one app's manager.

    Registered on that app's plugin manager while the app runs, because a module-level hookimpl
    could not tell which app (tests run several) a kernel belonged to.
    """

    def __init__(self, manager: SessionManager):
        self.manager = manager
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()

    @hookimpl
    def himalia_kernel_stopped(self, kernel_id: str, reason: str) -> None:
        self.loop.call_soon_threadsafe(self._spawn, kernel_id)

    def _spawn(self, kernel_id: str) -> None:
        task = self.loop.create_task(self._drop(kernel_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drop(self, kernel_id: str) -> None:
        try:
            await self.manager.kernel_stopped(kernel_id)
        except Exception:
            log.exception("could not drop the sessions of stopped kernel %s", kernel_id)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def session_manager(app: web.Application) -> AsyncIterator[None]:
    """Build the manager; drop sessions left from a previous run whose kernels are gone; follow
    kernel stops while the app runs."""
    manager = SessionManager(app[SERVICES], app[HOOKS])
    app[MANAGER] = manager
    if app[SERVICES].session_store is not None and app[SERVICES].kernels is not None:
        try:
            dropped = await manager.prune()
        except Exception:
            log.exception("could not check the stored sessions against the running kernels")
        else:
            if dropped:
                log.info("dropped %d stored session(s) whose kernels are gone", dropped)
    pm = app[PLUGINS].pm
    events = KernelEvents(manager)
    name = f"sessions.kernel-events.{id(events):x}"  # unique even if two apps share a plugin manager
    pm.register(events, name=name)
    try:
        yield
    finally:
        pm.unregister(name=name)
        await events.close()
