"""The kernel service (`app[SERVICES].kernels`): the chosen provider's kernels with each kernel's relay
(live execution_state, connections, last_activity, reason) merged into their models, the started/stopped
events, and the idle-kernel culler. It is also the relay (`app[SERVICES].kernel_relay`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from himalia import CONFIG, HOOKS, SERVICES, Hooks, KernelChannels, KernelManager, Model

from .backlog import Backlog, ReplayBudget
from .config import KernelsConfig
from .hub import KernelHub

log = logging.getLogger("himalia.kernels")

RESTART_REQUESTED = "restart requested"
"""The reason of the restart events of a restart a client asked for (`POST /api/kernels/{id}/restart`)."""


class LiveKernels:
    """The kernel service: a KernelManager over the provider's (same Protocol), live models, one hub
    per kernel, and the KernelRelay role."""

    def __init__(self, provider: KernelManager, config: KernelsConfig, hooks: Hooks,
                 app: web.Application | None = None):
        self.inner = provider
        self.config = config
        self.hooks = hooks
        self.app = app
        self.hubs: dict[str, KernelHub] = {}
        self.backlog = Backlog(config.server_max_backlog_bytes)
        self.replay_budget = ReplayBudget(config.buffer_max_total_bytes)
        """What every disconnected session's reconnect buffer holds, bounded server-wide."""
        """What every websocket client of every kernel leaves unread, bounded server-wide."""
        self._started: set[str] = set()
        """Kernels running as far as the events said: kernel_started fired, kernel_stopped not yet."""
        self._dead: set[str] = set()
        """Kernels reported stopped because they died, not yet deleted nor restarted."""
        self._closing: set[asyncio.Task[None]] = set()
        self.culler: asyncio.Task[None] | None = None
        self._asked_restart: set[str] = set()
        """Kernels restarting because a client asked (their restart events come from restart_kernel)."""
        self._detached = False

    def hub(self, kernel_id: str) -> KernelHub:
        """The relay of `kernel_id`, created on first use (check the kernel exists first)."""
        hub = self.hubs.get(kernel_id)
        if hub is not None and hub.ended:
            # its channels failed or closed under it (a gateway outage): relay through fresh ones
            self._closing.add(asyncio.create_task(hub.close()))
            self._closing = {t for t in self._closing if not t.done()}
            hub = None
        if hub is None:
            hub = self.hubs[kernel_id] = KernelHub(kernel_id, self.inner, self.config, self._transition, self.backlog,
                                                   self.replay_budget)
        return hub

    def _merge(self, model: Model) -> Model:
        hub = self.hubs.get(model.get("id", ""))
        if hub is not None:
            model.update(hub.live())
        return model

    def _stopped_once(self, kernel_id: str, reason: str) -> None:
        if kernel_id not in self._started:  # reported already (died, or a concurrent stop)
            return
        self._started.discard(kernel_id)
        self.hooks.kernel_stopped(kernel_id, reason, self.app)

    def _transition(self, hub: KernelHub, state: str, reason: str) -> None:
        """What the provider's statuses tell the relay: an automatic restart after a death, its end, or
        a death for good (then the kernel is stopped, with the same reason)."""
        kernel_id = hub.kernel_id
        if kernel_id not in self._started:
            return
        if state == "dead":
            self._dead.add(kernel_id)
            self.hooks.kernel_dead(kernel_id, reason, self.app)
            self._stopped_once(kernel_id, reason)
        elif kernel_id in self._asked_restart:
            return  # a restart a client asked for: told by restart_kernel, once
        elif state == "restarting":
            self.hooks.kernel_restarting(kernel_id, reason, self.app)
        elif state == "restarted":
            self.hooks.kernel_restarted(kernel_id, reason, self.app)

    # -- KernelManager ----------------------------------------------------------------------

    def connections(self, kernel_id: str) -> int:
        hub = self.hubs.get(kernel_id)
        return hub.connections if hub is not None else 0

    async def list_kernelspecs(self) -> Model:
        specs = await self.inner.list_kernelspecs()
        if self.config.default_kernel_name:
            specs["default"] = self.config.default_kernel_name
        return specs

    async def get_kernelspec(self, name: str) -> Model:
        return await self.inner.get_kernelspec(name)

    async def get_kernelspec_resource(self, name: str, resource: str) -> tuple[bytes, str]:
        return await self.inner.get_kernelspec_resource(name, resource)

    async def start_kernel(self, name: str | None = None, *, path: str | None = None,
                           env: Mapping[str, str] | None = None, timeout: float | None = None) -> Model:
        """Start through the provider, which returns once the kernel answered (or raises
        KernelNotReady); then relay it and announce it."""
        name = name or self.config.default_kernel_name or None
        model = await self.inner.start_kernel(name, path=path, env=env,
                                              timeout=self.config.kernel_info_timeout if timeout is None else timeout)
        kernel_id = model["id"]
        self._started.add(kernel_id)
        self.hub(kernel_id)  # start relaying (and tracking activity) now, not at the first websocket
        self.hooks.kernel_started(kernel_id, model.get("name", name or ""), self.app)
        return self._merge(model)

    async def list_kernels(self) -> list[Model]:
        return [self._merge(m) for m in await self.inner.list_kernels()]

    async def get_kernel(self, kernel_id: str) -> Model:
        return self._merge(await self.inner.get_kernel(kernel_id))

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        """Shut a kernel down for a client or a plugin (DELETE of the kernel or of its session):
        kernel_stopped says "deleted"."""
        await self.stop(kernel_id, "deleted", now=now)

    async def stop(self, kernel_id: str, reason: str, *, now: bool = False) -> None:
        """Shut a kernel down, saying why in the kernel_stopped event."""
        await self.inner.shutdown_kernel(kernel_id, now=now)
        hub = self.hubs.pop(kernel_id, None)
        if hub is not None:
            await hub.close()
        self._dead.discard(kernel_id)
        self._stopped_once(kernel_id, reason)

    async def interrupt_kernel(self, kernel_id: str) -> None:
        await self.inner.interrupt_kernel(kernel_id)

    async def restart_kernel(self, kernel_id: str, *, timeout: float | None = None) -> Model:
        """A restart a client asked for: kernel_restarting and, once it answers, kernel_restarted, both
        with reason "restart requested"; a dead kernel brought back is announced with kernel_started."""
        running = kernel_id in self._started
        if running:
            self._asked_restart.add(kernel_id)
            self.hooks.kernel_restarting(kernel_id, RESTART_REQUESTED, self.app)
        try:
            model = await self.inner.restart_kernel(
                kernel_id, timeout=self.config.kernel_info_timeout if timeout is None else timeout)
        finally:
            self._asked_restart.discard(kernel_id)
        if kernel_id in self._dead:  # a dead kernel brought back: it runs again
            self._dead.discard(kernel_id)
            self._started.add(kernel_id)
            self.hooks.kernel_started(kernel_id, model.get("name", ""), self.app)
        elif running and kernel_id in self._started:
            self.hooks.kernel_restarted(kernel_id, RESTART_REQUESTED, self.app)
        return self._merge(model)

    async def open_channels(self, kernel_id: str) -> KernelChannels:
        return await self.inner.open_channels(kernel_id)

    # -- server-wide ------------------------------------------------------------------------

    async def end(self) -> None:
        """The kernel service's part of the server's shutdown phase (`Service.stop`), run before any
        plugin resource exits: stop culling, then shut every kernel down, firing `kernel_stopped`
        (keep mode: let them run, detached once). Called again at the service's exit, it stops what a
        request still in flight during the shutdown phase started."""
        if self.culler is not None:
            self.culler.cancel()
            await asyncio.gather(self.culler, return_exceptions=True)
        if not self.config.persist:
            await self.shutdown_all()
        elif not self._detached:
            self._detached = True
            await self.detach_all()

    async def shutdown_all(self) -> None:
        ids = list(self._started | self._dead | set(self.hubs))
        dead = set(self._dead)
        results = await asyncio.gather(*(self.stop(k, "shutdown") for k in ids), return_exceptions=True)
        for kernel_id, result in zip(ids, results):
            if isinstance(result, Exception) and kernel_id not in dead:
                log.warning("kernel %s: error at server shutdown: %s", kernel_id, result)
        for hub in list(self.hubs.values()):
            await hub.close()
        self.hubs.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def restore(self) -> None:
        """At start-up, before any kernel starts: tell a provider that keeps records (the local one)
        whether this is keep mode, and serve the kernels it adopted; sessions of the kernels that are
        gone are dropped (`himalia_kernel_stopped` with the reason, and the sessions plugin's prune)."""
        restore = getattr(self.inner, "restore", None)
        if restore is None:
            return
        adopted, gone = await restore(keep=self.config.persist, timeout=self.config.kernel_info_timeout)
        sequences = await asyncio.to_thread(_read_sequences, self._state_dir()) if adopted else {}
        for model in adopted:
            self._started.add(model["id"])
            hub = self.hub(model["id"])
            last = sequences.get(model["id"])
            if isinstance(last, int) and last > 0:  # the log's numbers go on, after a gap marker
                hub.output_log.resume(last)
        for kernel_id, reason in gone.items():
            self.hooks.kernel_stopped(kernel_id, reason, self.app)

    async def detach_all(self) -> None:
        """Keep mode, at exit: stop relaying (websockets are closed with 1012 by then) and let the
        provider keep its kernels running; a provider that cannot keep them shuts them down."""
        detach = getattr(self.inner, "detach_all", None)
        if detach is None:
            await self.shutdown_all()
            return
        sequences = {kernel_id: hub.output_log.next_seq - 1 for kernel_id, hub in self.hubs.items()}
        for hub in list(self.hubs.values()):
            await hub.close()
        self.hubs.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await detach()
        self._started.clear()
        try:
            await asyncio.to_thread(_write_sequences, self._state_dir(), sequences)
        except OSError as e:
            log.warning("cannot keep the output log sequence numbers in %s: %s", self._state_dir(), e)

    def _state_dir(self) -> str:
        if self.app is not None and self.app[CONFIG].server.state_dir:
            return self.app[CONFIG].server.state_dir
        from jupyter_core.paths import jupyter_runtime_dir

        return os.path.join(jupyter_runtime_dir(), "himalia")

    async def cull_idle(self) -> list[str]:
        """Shut down kernels idle longer than cull_idle_timeout (per cull_connected/cull_busy); their ids."""
        now = datetime.now(timezone.utc)
        culled = []
        for model in await self.list_kernels():
            state = model.get("execution_state")
            if state == "busy" and not self.config.cull_busy:
                continue
            if model.get("connections", 0) and not self.config.cull_connected:
                continue
            try:
                last = datetime.fromisoformat(model["last_activity"].replace("Z", "+00:00"))
            except (KeyError, ValueError, AttributeError):
                continue
            idle = (now - last).total_seconds()
            if idle > self.config.cull_idle_timeout:
                log.info("culling kernel %s (%s, idle %.0fs, %s connections)", model["id"], state, idle,
                         model.get("connections", 0))
                try:
                    await self.stop(model["id"], "culled")
                    culled.append(model["id"])
                except Exception as e:
                    log.warning("cannot cull kernel %s: %s", model["id"], e)
        return culled


@asynccontextmanager
async def kernel_service(app: web.Application) -> AsyncIterator[LiveKernels]:
    """Service factory: the kernel service over the chosen provider (a declared requirement, so it is
    there); culls; shuts every kernel down at exit, before the provider is released."""
    provider = app[SERVICES].require("kernel_provider")
    config: KernelsConfig = app[CONFIG].section("kernels")
    live = LiveKernels(provider, config, app[HOOKS], app)
    await live.restore()
    if config.cull_idle_timeout > 0:
        live.culler = asyncio.create_task(_cull_forever(live, config))
    try:
        yield live
    finally:
        await live.end()  # after the shutdown phase's: what requests in flight then started, if any


@asynccontextmanager
async def kernel_relay(app: web.Application) -> AsyncIterator[LiveKernels]:
    """Service factory for the relay role: the kernel service's hubs (it requires that service)."""
    yield app[SERVICES].require("kernels")


_SEQUENCES = "output-sequences.json"
"""In the state dir: kept kernel id → the last sequence number of its output log, at the last exit."""


def _read_sequences(state_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(state_dir, _SEQUENCES), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_sequences(state_dir: str, sequences: dict[str, int]) -> None:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sequences-", dir=state_dir)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(sequences, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(state_dir, _SEQUENCES))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


async def _cull_forever(live: LiveKernels, config: KernelsConfig) -> None:
    while True:
        await asyncio.sleep(config.cull_interval)
        try:
            await live.cull_idle()
        except Exception:
            log.exception("culling idle kernels failed")
