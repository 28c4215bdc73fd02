"""The `local` kernel provider: kernels as processes on this host, run by jupyter_client's async kernel
managers (kernelspecs, provisioners, interrupt modes, the restarter), reached over zmq sockets.

A start or restart returns once the kernel has answered on the channels it keeps for the first
`open_channels` (one channel set per start), or raises `KernelNotReady` naming why it died."""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import mimetypes
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from himalia import CONFIG, ApiError, BadRequest, Conflict, KernelNotReady, Model, NotFound, StartupError, isoformat

from .channels import LocalChannels
from .config import LocalConfig
from .persist import MARKER, StateDir, default_state_dir

if TYPE_CHECKING:
    from .pool import KernelPool

log = logging.getLogger("himalia.local")

DEFAULT_READY_TIMEOUT = 60.0


@asynccontextmanager
async def local_kernels(app: web.Application) -> AsyncIterator[LocalKernels]:
    """Provider factory: a LocalKernels for the server's root dir, holding the state dir's lock; every
    kernel is shut down on exit, unless the kernel service kept them (`restore(keep=True)`)."""
    config = app[CONFIG]
    state: StateDir | None = StateDir(config.server.state_dir or await asyncio.to_thread(default_state_dir))
    lock_error = None
    try:
        await asyncio.to_thread(state.lock)  # type: ignore[union-attr]
    except StartupError as e:
        # another server has it: fatal in keep mode (see restore); otherwise run without records
        state, lock_error = None, e
    service = LocalKernels(config.section("local"), config.server.root_dir, state)
    service.lock_error = lock_error
    # the last resort, should the server exit without its cleanup (a shutdown that timed out, a crash
    # of the loop): no kernel process group outlives the interpreter (unless kept)
    atexit.register(service.kill_all)
    # the pool starts in `restore`, once keep mode is known: its members are launched accordingly
    try:
        yield service
    finally:
        try:
            if service.keep:
                await service.detach_all()
            else:
                await service.shutdown_all()
        finally:
            atexit.unregister(service.kill_all)
            if state is not None:
                state.unlock()


@functools.cache
def _manager_class() -> type:
    from jupyter_client.ioloop import AsyncIOLoopKernelManager

    class HimaliaKernelManager(AsyncIOLoopKernelManager):
        """jupyter_client's manager, telling us when each (re)start has finished."""

        on_started: Any = None

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            await super()._async_post_start_kernel(**kw)
            if self.on_started is not None:
                self.on_started()

        async def _async_wait(self, pollinterval: float = 0.1) -> None:
            # jupyter_client's shutdown, restart and kill sequences wait for the exit by polling every
            # 0.1 s; notice it the moment it happens instead (the sequence itself is unchanged)
            process = getattr(self.provisioner, "process", None)
            if process is None or not self.owns_kernel:
                await super()._async_wait(pollinterval)
                return
            from .exits import wait_exit

            await wait_exit(process.pid)
            await super()._async_wait(pollinterval)  # reaps it: poll() answers at once now

    return HimaliaKernelManager


@dataclass(eq=False)
class _Kernel:
    id: str
    name: str
    km: Any
    started: float = field(default_factory=time.time)
    state: str = "starting"
    reason: str | None = None
    channels: set[LocalChannels] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    parked: LocalChannels | None = None
    """The channels that saw the kernel answer at start, kept for the first `open_channels`."""
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    pgids: list[int] = field(default_factory=list)
    """The process group of each start not yet reaped: a restart leaves the old group behind (children
    of the old kernel that ignore SIGTERM, or that the kernel did not wait for) until we kill it."""
    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)
    """What the start added to the server's environment (recorded; the server's own is not)."""
    output: Any = None
    """Keep mode: the kernel's stdout/stderr log file, open while this server runs it."""
    record_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    forgotten: bool = False
    """Its record is deleted: no later write may bring it back."""
    member: bool = False
    """An idle pool member: recorded (so a killed server's members are stopped at the next start) but
    never kept; it becomes an ordinary kernel, kept in keep mode, once handed out and relocated."""

    def groups(self) -> set[int]:
        current = getattr(self.km.provisioner, "pgid", None)
        return {g for g in (*self.pgids, current) if g}

    def kill_groups(self) -> None:
        """SIGKILL every process group this kernel has had (see `_kill_group`)."""
        for pgid in self.groups():
            _kill_group(pgid)
        self.pgids = []


class LocalKernels:
    """The KernelManager service for local kernels."""

    def __init__(self, config: LocalConfig, root_dir: str, state: StateDir | None = None):
        self.config = config
        self.root_dir = os.path.realpath(root_dir)
        self.state = state
        self.lock_error: StartupError | None = None
        """Why this server has no state dir (another server holds its lock)."""
        self.keep = False
        """Keep mode (set by the kernel service's `restore`): kernels are launched to outlive the server
        and left running at exit."""
        self._kernels: dict[str, _Kernel] = {}
        self._starting: dict[str, _Kernel] = {}
        """Kernels launched that have not answered yet: not listed, but killed with the rest at exit."""
        self._specs_cache: tuple[float, dict[str, Model]] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()
        self._cold_starts = 0
        self._no_cold_start = asyncio.Event()
        self._no_cold_start.set()
        self.pool: KernelPool | None = None
        if any(config.pool.values()):
            from .pool import KernelPool

            self.pool = KernelPool(config.pool, config.pool_fill_delay, launch=self._launch_member,
                                   discard=self._discard_member, spec=self._member_spec,
                                   quiet=self._wait_no_cold_start)

    # -- kernelspecs ------------------------------------------------------------------------

    @functools.cached_property
    def _ksm(self) -> Any:
        """jupyter_client's KernelSpecManager, made (and jupyter_client imported) on first use, so a
        server that has not touched a kernel yet starts faster and smaller."""
        from jupyter_client.kernelspec import KernelSpecManager

        return KernelSpecManager()

    def _default_name(self, names: Mapping[str, Any]) -> str | None:
        if "python3" in names:
            return "python3"
        return min(names) if names else None

    def _find_specs(self) -> dict[str, str]:
        return self._ksm.find_kernel_specs()  # in a thread: the first use imports jupyter_client

    def _all_specs(self) -> dict[str, Model]:
        return {name: _spec_model(name, info["spec"], info["resource_dir"])
                for name, info in self._ksm.get_all_specs().items()}

    async def list_kernelspecs(self) -> Model:
        # Reading the specs scans every kernel dir, parses each kernel.json and asks the provisioner
        # entry points about each: most of a listing's cost. Reuse it for kernelspec_cache_ttl seconds.
        now = time.monotonic()
        cached = self._specs_cache
        if cached is None or now - cached[0] >= self.config.kernelspec_cache_ttl:
            cached = self._specs_cache = (now, await asyncio.to_thread(self._all_specs))
        specs = dict(cached[1])
        return {"default": self._default_name(specs), "kernelspecs": specs}

    async def _find(self, name: str) -> str:
        """The resource dir of kernelspec `name`, or NotFound naming the installed specs."""
        specs = await asyncio.to_thread(self._find_specs)
        if name not in specs:
            installed = ", ".join(sorted(specs)) or "none"
            raise NotFound(f"no kernelspec named {name!r}; installed: {installed}", "no such kernelspec")
        return specs[name]

    async def get_kernelspec(self, name: str) -> Model:
        await self._find(name)

        def load() -> Model:
            spec = self._ksm.get_kernel_spec(name)
            return _spec_model(name, spec.to_dict(), spec.resource_dir)

        return await asyncio.to_thread(load)

    async def get_kernelspec_resource(self, name: str, resource: str) -> tuple[bytes, str]:
        directory = await self._find(name)
        if not resource or "/" in resource or "\\" in resource or resource.startswith("."):
            raise NotFound(f"no resource {resource!r} in kernelspec {name!r}", "no such resource")
        path = os.path.join(directory, resource)
        try:
            data = await asyncio.to_thread(_read_file, path)
        except OSError:
            raise NotFound(f"no resource {resource!r} in kernelspec {name!r}", "no such resource") from None
        return data, mimetypes.guess_type(resource)[0] or "application/octet-stream"

    # -- kernels ----------------------------------------------------------------------------

    def _get(self, kernel_id: str) -> _Kernel:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise NotFound(f"no kernel with id {kernel_id!r}", "no such kernel") from None

    def _cwd(self, path: str | None) -> str:
        """The directory a kernel for API path `path` runs in: the nearest existing directory (as in
        jupyter_server), with a warning naming both when `path` does not exist (a session for
        `gone/x.ipynb` whose directory was never made, or was deleted)."""
        wanted = os.path.realpath(os.path.join(self.root_dir, (path or "").strip("/")))
        if wanted != self.root_dir and not wanted.startswith(self.root_dir + os.sep):
            raise BadRequest(f"kernel path {path!r} is outside the server's root dir", "bad path")
        target = wanted
        while not os.path.isdir(target) and target != self.root_dir:
            target = os.path.dirname(target)
        if target != wanted and not os.path.exists(wanted):
            log.warning("kernel path %r is not a directory under the root; the kernel runs in %r instead",
                        path, os.path.relpath(target, self.root_dir))
        return target

    async def start_kernel(self, name: str | None = None, *, path: str | None = None,
                           env: Mapping[str, str] | None = None, timeout: float | None = None) -> Model:
        if name is None:
            specs = await asyncio.to_thread(self._find_specs)
            name = self._default_name(specs)
            if name is None:
                raise NotFound("no kernelspecs are installed", "no such kernelspec")
        await self._find(name)
        cwd = await asyncio.to_thread(self._cwd, path)
        ready_timeout = DEFAULT_READY_TIMEOUT if timeout is None else timeout
        if self.pool is not None:
            self.pool.start()  # if `restore` has not (a provider used without the kernel service)
        if self.pool is not None and self.pool.pooled(name):
            kernel = await self._from_pool(name, cwd, env or {}, ready_timeout)
            if kernel is not None:
                return self._model(kernel)
        self._cold_starts += 1
        self._no_cold_start.clear()
        try:
            kernel = await self._launch(name, cwd, {**os.environ, **(env or {})}, ready_timeout)
        finally:
            self._cold_starts -= 1
            if not self._cold_starts:
                self._no_cold_start.set()
        self._kernels[kernel.id] = kernel
        log.info("started kernel %s (%s) in %s", kernel.id, name, cwd)
        return self._model(kernel)

    async def _launch(self, name: str, cwd: str, env: dict[str, str], ready_timeout: float, *,
                      member: bool = False) -> _Kernel:
        """Launch a kernel of spec `name` and return it once it answered (not yet listed), or raise
        with nothing of it left running."""
        runtime = await asyncio.to_thread(_runtime_dir)
        kernel_id = str(uuid.uuid4())
        km = self._new_manager(kernel_id, name, runtime)
        kernel = _Kernel(kernel_id, name, km, cwd=cwd, env=dict(env or {}), member=member)
        km.on_started = functools.partial(self._on_started, kernel)
        try:
            # the record comes first: a server killed during the launch finds the process by its marker
            await self._save(kernel, "launching")
            await km.start_kernel(**await asyncio.to_thread(self._launch_args, kernel))
        except BaseException as e:
            # failed or cancelled (the client went away) perhaps after the launch: nothing may stay running
            self._abandon(kernel)
            if not isinstance(e, Exception):
                raise
            log.warning("kernel %r failed to start: %s", name, e)
            raise ApiError(f"kernel {name!r} failed to start: {type(e).__name__}: {e}",
                           "kernel failed to start") from None
        km.add_restart_callback(functools.partial(self._on_died, kernel, "restarting"), "restart")
        km.add_restart_callback(functools.partial(self._on_died, kernel, "dead"), "dead")
        kernel.ready_timeout = ready_timeout
        # listed (and so culled, shut down, opened) only once it answered
        self._starting[kernel_id] = kernel
        try:
            await self._answered(kernel, restart=False)
        except BaseException:
            # died, silent or cancelled (the client went away): nothing of it may stay
            for ch in list(kernel.channels):
                ch.release()
                await ch.close()  # never suspends: safe when cancelled too
            kernel.parked = None
            self._abandon(kernel)
            raise
        finally:
            self._starting.pop(kernel_id, None)
        return kernel

    # -- the pool (pool.py) -------------------------------------------------------------------

    async def _launch_member(self, name: str) -> _Kernel:
        """A pool member: started in the root dir with the server's environment; its restarter stopped
        (an idle member that dies is replaced, not restarted: the pool watches its exit). In keep mode
        it is launched as a kept kernel is (`independent`, output to its log), so that once handed out
        it can outlive the server; until then its record says it is a member, never kept."""
        kernel = await self._launch(name, self.root_dir, dict(os.environ), DEFAULT_READY_TIMEOUT, member=True)
        kernel.km.stop_restarter()
        return kernel

    async def _member_spec(self, name: str) -> Mapping[str, Any]:
        return (await self.get_kernelspec(name))["spec"]

    async def _wait_no_cold_start(self) -> None:
        await self._no_cold_start.wait()

    async def _from_pool(self, name: str, cwd: str, env: Mapping[str, str], ready_timeout: float
                         ) -> _Kernel | None:
        """A pool member moved to `cwd` with `env`, listed; None when the pool cannot serve this start
        (empty, another start-only environment, a member that did not move: discarded)."""
        from .pool import RelocationFailed, relocate

        assert self.pool is not None
        if not self.pool.serves(name, env):  # e.g. PYTHONPATH: the members were started without it
            self.pool.miss(name)
            return None
        kernel = self.pool.take(name)
        if kernel is None:
            return None

        def quiet(msg_id: str) -> None:  # the relocation's busy/idle is not the notebook's business
            for ch in kernel.channels:
                ch.quiet(msg_id)

        try:
            await relocate(kernel.km, cwd, env, on_sent=quiet)
        except RelocationFailed as e:
            log.warning("pool %s: member %s discarded, starting a kernel instead: %s", name, kernel.id, e)
            self.pool.failed(name)
            await self._stop_member(kernel)
            return None
        except BaseException:
            self.pool.failed(name)
            await self._stop_member(kernel)
            raise
        kernel.started = time.time()
        kernel.ready_timeout = ready_timeout
        # what a restart (here, or after an adoption by the next server) launches it with: the
        # notebook's directory and the request's environment, as for a kernel started on demand
        kernel.cwd = cwd
        kernel.env = {**kernel.env, **env}
        kernel.member = False
        kernel.km.start_restarter()
        self._kernels[kernel.id] = kernel
        await self._save(kernel, "running")  # no longer a member: kept in keep mode
        log.info("kernel %s (%s) from the pool, moved to %s", kernel.id, name, cwd)
        return kernel

    async def _stop_member(self, kernel: _Kernel) -> None:
        """Stop a member nobody uses (discarded, or idle at shutdown): no polite exit needed."""
        for ch in list(kernel.channels):
            await ch.close()
        kernel.parked = None
        kernel.km.stop_restarter()
        try:
            await asyncio.wait_for(kernel.km.shutdown_kernel(now=True), 10)
        except Exception as e:  # killed below in any case
            log.debug("pool member %s: %s", kernel.id, e)
        kernel.kill_groups()
        await self._forget(kernel)  # its record and log: a member is never kept

    def _discard_member(self, kernel: _Kernel) -> None:
        task = asyncio.get_running_loop().create_task(self._stop_member(kernel))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def pool_status(self) -> dict[str, Any]:
        """The pool per kernelspec (size, idle, hits, misses, discarded), for /api/status; {} if off."""
        return self.pool.status() if self.pool is not None else {}

    def _new_manager(self, kernel_id: str, name: str, runtime: str) -> Any:
        from traitlets.config import Config

        return _manager_class()(
            kernel_name=name,
            kernel_id=kernel_id,
            kernel_spec_manager=self._ksm,
            connection_file=os.path.join(runtime, f"kernel-{kernel_id}.json"),
            shutdown_wait_time=self.config.shutdown_wait_time,
            # jupyter_client's restarter is also how a death is noticed: with autorestart off it still
            # runs, with no restarts allowed, so the death is reported ('dead', with its reason)
            autorestart=True,
            config=Config({"KernelRestarter": {
                "time_to_dead": self.config.restart_check_interval,
                "restart_limit": self.config.restart_limit if self.config.autorestart else 0}}),
        )

    def _launch_args(self, kernel: _Kernel) -> dict[str, Any]:
        """jupyter_client's launch arguments (blocking: opens the log). Every process of the kernel
        carries the marker; in keep mode it is launched `independent` (it does not exit with this
        server), with no stdin pipe, and its stdout and stderr go to its log in the state dir."""
        args: dict[str, Any] = {"cwd": kernel.cwd, "env": {**os.environ, **kernel.env, MARKER: kernel.id}}
        if self.keep and self.state is not None:
            import subprocess

            if kernel.output is None:
                kernel.output = self.state.open_log(kernel.id)
            args.update(independent=True, stdin=subprocess.DEVNULL, stdout=kernel.output, stderr=kernel.output)
        return args

    async def _answered(self, kernel: _Kernel, *, restart: bool) -> None:
        """Return once `kernel` answers on its channels (opening a parked set if it has none); raise
        KernelNotReady if it is reported dead first or stays silent past its ready timeout."""
        if not kernel.channels:
            channels = LocalChannels(kernel, kernel.ready_timeout)
            kernel.channels.add(channels)
            kernel.parked = channels
            channels.connect()
        watched = list(kernel.channels)
        # the restarter reports a death within restart_check_interval, and gives up after restart_limit
        # restarts: bound the whole wait by that as well as by the silence timeout of each start
        bound = (kernel.ready_timeout + 5) * (self.config.restart_limit + 1) \
            + self.config.restart_check_interval * (self.config.restart_limit + 2)
        settled = asyncio.gather(*(ch.wait_settled() for ch in watched))
        try:
            await asyncio.wait_for(settled, bound)
        except asyncio.TimeoutError:
            raise KernelNotReady.silent(kernel.name, kernel.ready_timeout, restart=restart) from None
        finally:
            if settled.done() and not settled.cancelled():
                settled.exception()  # a cancelled gather holds a CancelledError: retrieved, not logged
        if kernel.state == "dead":
            raise KernelNotReady.died(kernel.name, kernel.reason or "died", restart=restart)
        if all(ch.closed for ch in watched):
            raise KernelNotReady.died(kernel.name, "stopped while starting", restart=restart)
        if not any(ch.answered for ch in watched):
            raise KernelNotReady.silent(kernel.name, kernel.ready_timeout, restart=restart)

    def _model(self, kernel: _Kernel) -> Model:
        model = {"id": kernel.id, "name": kernel.name,
                 "last_activity": isoformat(datetime.fromtimestamp(kernel.started, timezone.utc)),
                 "execution_state": kernel.state, "connections": 0}
        if kernel.reason:
            model["reason"] = kernel.reason
        return model

    async def list_kernels(self) -> list[Model]:
        return [self._model(k) for k in self._kernels.values()]

    async def get_kernel(self, kernel_id: str) -> Model:
        return self._model(self._get(kernel_id))

    async def interrupt_kernel(self, kernel_id: str) -> None:
        kernel = self._get(kernel_id)
        if kernel.state == "dead":
            raise Conflict(f"kernel {kernel_id} is dead ({kernel.reason}); restart it first", "kernel dead")
        try:
            await kernel.km.interrupt_kernel()
        except RuntimeError as e:
            raise Conflict(f"cannot interrupt kernel {kernel_id}: {e}", "kernel not running") from None

    async def restart_kernel(self, kernel_id: str, *, timeout: float | None = None) -> Model:
        kernel = self._get(kernel_id)
        if timeout is not None:
            kernel.ready_timeout = timeout
        async with kernel.lock:
            if kernel.id not in self._kernels:
                raise NotFound(f"no kernel with id {kernel_id!r}", "no such kernel")
            # no 'restarting' on iopub: as in jupyter_server, that status means an automatic restart
            # after a death, and clients (JupyterLab) tell their user the kernel died
            kernel.state, kernel.reason = "restarting", "restart requested"
            try:
                await kernel.km.restart_kernel(now=False)
            except Exception as e:
                self._dead(kernel, f"restart failed: {type(e).__name__}: {e}")
                raise ApiError(f"kernel {kernel_id} failed to restart: {e}", "kernel failed to restart") from None
            await self._answered(kernel, restart=True)
        return self._model(kernel)

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        kernel = self._get(kernel_id)
        async with kernel.lock:
            if kernel_id not in self._kernels:
                return
            try:
                for ch in list(kernel.channels):
                    await ch.close()
                try:
                    if not now and self.config.shutdown == "terminate":
                        now = await self._terminate(kernel)
                    await kernel.km.shutdown_kernel(now=now)
                except Exception:
                    log.exception("error shutting kernel %s down; killing its process group", kernel_id)
            finally:
                # also when cancelled half way (the restarter may still run, the process too)
                if self._kernels.pop(kernel_id, None) is not None:
                    kernel.km.stop_restarter()
                    kernel.kill_groups()
                    kernel.km.cleanup_connection_file()
                    self._background(self._forget(kernel))
            log.info("shut down kernel %s", kernel_id)

    async def _terminate(self, kernel: _Kernel) -> bool:
        """`[plugins.local] shutdown = "terminate"`: SIGTERM to the kernel's process group, and wait for its
        exit (noticed at once) up to shutdown_wait_time. True: what is left is jupyter_client's kill."""
        from .exits import wait_exit

        km = kernel.km
        km.stop_restarter()  # its exit is no death to recover from
        process = getattr(km.provisioner, "process", None)
        if process is None or not km.owns_kernel:
            return False  # not a process of ours (adopted ones have a stand-in with a pid): the usual way
        await km.signal_kernel(signal.SIGTERM)
        try:
            await asyncio.wait_for(wait_exit(process.pid), self.config.shutdown_wait_time)
        except asyncio.TimeoutError:
            log.warning("kernel %s did not exit within %ss of SIGTERM; killing it", kernel.id,
                        self.config.shutdown_wait_time)
        return True

    async def shutdown_all(self) -> None:
        if self.pool is not None:  # no refill may start now; idle members go first, all at once
            members = await self.pool.close()
            await asyncio.gather(*(self._stop_member(m) for m in members), return_exceptions=True)
        for kernel in list(self._starting.values()):  # their starts are being cancelled: end them now
            for ch in list(kernel.channels):
                await ch.close()
            kernel.kill_groups()
        await asyncio.gather(*(self.shutdown_kernel(k) for k in list(self._kernels)), return_exceptions=True)
        await asyncio.gather(*self._cleanups, return_exceptions=True)

    def kill_all(self) -> None:
        """SIGKILL every process group of every kernel, synchronously: the atexit last resort (in keep
        mode only the kernels still starting and the idle pool members: the others are meant to outlive
        us)."""
        members = self.pool.members() if self.pool is not None else []
        if self.keep:
            for kernel in [*self._starting.values(), *members]:
                kernel.kill_groups()
            return
        for kernel in [*self._kernels.values(), *self._starting.values(), *members]:
            kernel.kill_groups()

    def _abandon(self, kernel: _Kernel) -> None:
        """A kernel whose start failed or was cancelled: kill now what may have been launched, then let
        jupyter_client reap it and release its ports and files in a task no cancellation reaches."""
        kernel.km.stop_restarter()
        kernel.kill_groups()
        self._background(self._forget(kernel))

        async def release() -> None:
            try:
                await asyncio.wait_for(kernel.km.shutdown_kernel(now=True), 10)
            except Exception as e:  # best effort: what was running is killed already
                log.debug("kernel %s: cleanup after a failed start: %s", kernel.id, e)

        task = asyncio.create_task(release())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def open_channels(self, kernel_id: str) -> LocalChannels:
        kernel = self._get(kernel_id)
        parked, kernel.parked = kernel.parked, None
        if parked is not None and not parked.closed:
            return parked  # the set that saw the kernel answer at start: no second set, no second request
        channels = LocalChannels(kernel, kernel.ready_timeout)
        kernel.channels.add(channels)
        try:
            channels.connect()
            await channels.wait_ready()
        except BaseException:
            await channels.close()  # never suspends: safe when cancelled too
            raise
        return channels

    # -- records, keep mode, adoption (see persist.py) ---------------------------------------

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _save(self, kernel: _Kernel, state: str) -> None:
        """Write `kernel`'s record (in a thread; writes of one kernel in order; never after _forget)."""
        if self.state is None:
            return
        km = kernel.km
        record: dict[str, Any] = {
            "id": kernel.id, "name": kernel.name, "state": state, "keep": self.keep and not kernel.member,
            "pool_member": kernel.member, "cwd": kernel.cwd,
            "env": kernel.env, "started": kernel.started, "last_activity": time.time(), "server_pid": os.getpid()}
        provisioner = km.provisioner
        if state == "running" and provisioner is not None:
            try:
                record["provisioner_info"] = await provisioner.get_provisioner_info()
            except Exception as e:  # a provisioner that cannot say: the kernel is not adoptable
                log.warning("kernel %s: provisioner info unavailable: %s", kernel.id, e)
            record["provisioner"] = f"{type(provisioner).__module__}.{type(provisioner).__qualname__}"
            record["connection_info"] = km.get_connection_info()
            record["pid"] = getattr(provisioner, "pid", None)
            record["pgid"] = getattr(provisioner, "pgid", None)
        state_dir = self.state

        def write() -> None:
            from .persist import start_time

            if record.get("pid"):
                record["process_started"] = start_time(record["pid"])
            state_dir.write(record)

        async with kernel.record_lock:
            if kernel.forgotten:
                return
            try:
                await asyncio.to_thread(write)
            except OSError as e:
                log.error("kernel %s: cannot write its record in %s: %s", kernel.id, state_dir.kernels, e)

    async def _forget(self, kernel: _Kernel) -> None:
        """The kernel is gone: delete its record and log, close its log file."""
        async with kernel.record_lock:
            kernel.forgotten = True
            if kernel.output is not None:
                kernel.output.close()
                kernel.output = None
            if self.state is not None:
                await asyncio.to_thread(self.state.delete, kernel.id)

    async def restore(self, *, keep: bool, timeout: float | None = None) -> tuple[list[Model], dict[str, str]]:
        """Called once by the kernel service at start-up, before any kernel starts. Sets keep mode; reads
        the records a previous server left. With `keep`, every kept kernel still running (the same
        process: start time and marker) is adopted and must answer `kernel_info`; otherwise, and for
        kernels that died, every process left with its marker is killed and the record removed.
        Returns the adopted kernels' models and {id: reason} of the kernels that are gone."""
        self.keep = keep
        restored = await self._restore(keep, timeout)
        if self.pool is not None:  # members are launched once keep mode is known (see _launch_member)
            self.pool.start()
        return restored

    async def _restore(self, keep: bool, timeout: float | None) -> tuple[list[Model], dict[str, str]]:
        if self.lock_error is not None:
            if keep:
                raise self.lock_error
            log.warning("%s; this server keeps no kernel records (a kill of it may leave kernel processes)",
                        self.lock_error)
        if self.state is None:
            return [], {}
        from .persist import is_kernel_process, kill_marked

        records = await asyncio.to_thread(self.state.read_all)
        adopted: list[Model] = []
        gone: dict[str, str] = {}
        for record in records:
            kernel_id = record["id"]
            reason = None
            alive = bool(record.get("pid")) and await asyncio.to_thread(
                is_kernel_process, int(record["pid"]), kernel_id, record.get("process_started"))
            if record.get("pool_member"):
                # an idle member of a server that was killed: stopped, and nobody is told (it was never
                # listed, no session used it)
                killed = await asyncio.to_thread(kill_marked, {kernel_id})
                await asyncio.to_thread(self.state.delete, kernel_id)
                log.info("pool member %s, left by a server that was killed, stopped (processes %s)", kernel_id,
                         killed.get(kernel_id, []))
                continue
            if not (keep and record.get("keep")):
                reason = "left running by a server that did not stop it; stopped"
            elif record.get("state") == "dead":
                reason = "was dead when the server stopped"
            elif record.get("state") != "running" or "connection_info" not in record:
                reason = "the server stopped while it was starting"
            elif not alive:
                reason = "died while the server was down"
            else:
                try:
                    adopted.append(await self._adopt(record, timeout))
                    continue
                except Exception as e:
                    reason = f"could not be adopted: {e}"
            killed = await asyncio.to_thread(kill_marked, {kernel_id})
            await asyncio.to_thread(self.state.delete, kernel_id)
            gone[kernel_id] = reason
            log.warning("kernel %s (%s) %s%s", kernel_id, record.get("name"), reason,
                        f"; killed its processes {killed[kernel_id]}" if killed.get(kernel_id) else "")
        return adopted, gone

    async def _adopt(self, record: dict[str, Any], timeout: float | None) -> Model:
        """Manage a kept kernel again through jupyter_client: connection info, the provisioner (made by
        its factory, loaded from its info), a process stand-in, the restarter and control socket; then
        it must answer on its channels."""
        from jupyter_client.provisioning import KernelProvisionerFactory

        from .persist import ReattachedProcess

        kernel_id, name = record["id"], record["name"]
        runtime = await asyncio.to_thread(_runtime_dir)
        km = self._new_manager(kernel_id, name, runtime)
        kernel = _Kernel(kernel_id, name, km, started=float(record.get("started") or time.time()),
                         cwd=record.get("cwd") or self.root_dir, env=dict(record.get("env") or {}))
        km.on_started = functools.partial(self._on_started, kernel)
        km.load_connection_info(record["connection_info"])
        spec = await asyncio.to_thread(lambda: km.kernel_spec)
        km.provisioner = KernelProvisionerFactory.instance(parent=km.parent).create_provisioner_instance(
            kernel_id, spec, parent=km)
        await km.provisioner.load_provisioner_info(record.get("provisioner_info") or {
            "kernel_id": kernel_id, "connection_info": record["connection_info"], "pid": record.get("pid"),
            "pgid": record.get("pgid"), "ip": record["connection_info"].get("ip")})
        process = await asyncio.to_thread(ReattachedProcess, int(record["pid"]), kernel_id,
                                          record.get("process_started"))
        if process.poll() is not None:
            raise RuntimeError("its process exited")
        km.provisioner.process = process
        km._launch_args = await asyncio.to_thread(self._launch_args, kernel)  # for restarts
        km._attempted_start = True  # as after jupyter_client's own start: a restart makes a fresh `ready`
        await asyncio.to_thread(km.write_connection_file)
        kernel.ready_timeout = DEFAULT_READY_TIMEOUT if timeout is None else timeout
        self._starting[kernel_id] = kernel
        try:
            await km._async_post_start_kernel()  # jupyter_client's: restarter, control socket; then _on_started
            km.add_restart_callback(functools.partial(self._on_died, kernel, "restarting"), "restart")
            km.add_restart_callback(functools.partial(self._on_died, kernel, "dead"), "dead")
            await self._answered(kernel, restart=False)
            self._kernels[kernel_id] = kernel
        except BaseException:
            for ch in list(kernel.channels):
                ch.release()
                await ch.close()
            kernel.parked = None
            km.stop_restarter()
            close_control = getattr(km, "_close_control_socket", None)
            if close_control is not None:
                close_control()
            raise
        finally:
            self._starting.pop(kernel_id, None)
        log.info("adopted kernel %s (%s), pid %s, kept by a previous server", kernel_id, name, record["pid"])
        return self._model(kernel)

    async def detach_all(self) -> None:
        """Keep mode, at exit: let go of every kernel without stopping it (channels, restarter and
        control socket closed; records rewritten), so the next server adopts them. Kernels still
        starting are not kept, nor are idle pool members: they are stopped, as without keep mode."""
        if self.pool is not None:
            members = await self.pool.close()
            await asyncio.gather(*(self._stop_member(m) for m in members), return_exceptions=True)
        for kernel in list(self._starting.values()):
            for ch in list(kernel.channels):
                await ch.close()
            kernel.kill_groups()
            self._background(self._forget(kernel))
        for kernel in list(self._kernels.values()):
            for ch in list(kernel.channels):
                await ch.close()
            kernel.parked = None
            kernel.km.stop_restarter()
            close_control = getattr(kernel.km, "_close_control_socket", None)
            if close_control is not None:
                close_control()
            if kernel.state != "dead":
                await self._save(kernel, "running")
            if kernel.output is not None:
                kernel.output.close()
                kernel.output = None
            log.info("kept kernel %s (%s) running", kernel.id, kernel.name)
        self._kernels.clear()
        await asyncio.gather(*self._cleanups, return_exceptions=True)

    # -- restarter events -------------------------------------------------------------------

    def _on_died(self, kernel: _Kernel, state: str) -> None:
        process = getattr(kernel.km.provisioner, "process", None)
        code = process.poll() if process is not None else None
        # an adopted kernel is not our child: how it ended is not known
        reason = "died" if getattr(process, "adopted", False) else _death_reason(code)
        if state == "dead":
            self._dead(kernel, reason)
            return
        kernel.reason, kernel.state = reason, state
        log.warning("kernel %s %s; restarting", kernel.id, kernel.reason)
        for ch in kernel.channels:
            ch.inject_status(state, kernel.reason)

    def _dead(self, kernel: _Kernel, reason: str) -> None:
        """The kernel cannot run again unless asked to restart: tell clients, then release what it held
        (its sockets, connection file, leftover processes); the model stays, saying dead and why,
        until the kernel is deleted."""
        kernel.state, kernel.reason = "dead", reason
        log.warning("kernel %s %s; dead", kernel.id, reason)
        for ch in kernel.channels:
            ch.inject_status("dead", reason)
            ch.release()
        km = kernel.km
        km.stop_restarter()
        kernel.kill_groups()
        self._background(self._save(kernel, "dead"))  # not adopted again (a restart rewrites it)
        km.cleanup_connection_file()
        km.cleanup_ipc_files()
        close_control = getattr(km, "_close_control_socket", None)
        if close_control is not None:
            close_control()

    def _on_started(self, kernel: _Kernel) -> None:
        # the previous start's group outlives its kernel when a child ignored the signals or the kernel
        # exited on request without waiting for its children; the new process has a group of its own
        current = getattr(kernel.km.provisioner, "pgid", None)
        for pgid in kernel.pgids:
            if pgid != current:
                _kill_group(pgid)
        kernel.pgids = [current] if current else []
        if kernel.state in ("restarting", "dead"):
            kernel.state = "starting"
        for ch in kernel.channels:
            ch.reconnect()
        self._background(self._save(kernel, "running"))  # the new pid, group and ports


def _spec_model(name: str, spec: Model, resource_dir: str) -> Model:
    resources = {}
    try:
        files = sorted(os.listdir(resource_dir))
    except OSError:
        files = []
    for f in files:
        if f in ("kernel.js", "kernel.css") or f.startswith("logo-"):
            resources[f.rsplit(".", 1)[0] if f.startswith("logo-") else f] = f
    return {"name": name, "spec": spec, "resources": resources}


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _runtime_dir() -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    _manager_class()  # imports jupyter_client's managers (and tornado): not on the loop
    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, exist_ok=True)
    return runtime


def _death_reason(code: int | None) -> str:
    if code is None:
        return "died"
    if code < 0:
        try:
            return f"died: signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"died: signal {-code}"
    return f"died: exit code {code}"


def _kill_group(pgid: int | None) -> None:
    """SIGKILL whatever is left of a kernel's process group (children that outlived the kernel)."""
    if not pgid or not hasattr(os, "killpg") or pgid == os.getpgid(0):
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
