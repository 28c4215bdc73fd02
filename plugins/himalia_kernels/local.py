"""The `local` kernel provider: kernels as processes on this host, run by jupyter_client's async kernel
managers (kernelspecs, provisioners, interrupt modes, the restarter), reached over zmq.asyncio sockets."""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
import mimetypes
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from himalia import (
    CONFIG,
    ApiError,
    BadRequest,
    ChannelsClosed,
    Conflict,
    KernelMessage,
    Model,
    NotFound,
    isoformat,
    wire,
)

from .config import KernelsConfig

log = logging.getLogger("himalia.kernels")

DELIMITER = b"<IDS|MSG>"
_INTERNAL_MAX = 256


@asynccontextmanager
async def local_kernels(app: web.Application) -> AsyncIterator[LocalKernels]:
    """Provider factory: a LocalKernels for the server's root dir; every kernel is shut down on exit."""
    config = app[CONFIG]
    service = LocalKernels(config.section("kernels"), config.server.root_dir)
    # the last resort, should the server exit without its cleanup (a shutdown that timed out, a crash
    # of the loop): no kernel process group outlives the interpreter
    atexit.register(service.kill_all)
    try:
        yield service
    finally:
        await service.shutdown_all()
        atexit.unregister(service.kill_all)


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
    pgids: list[int] = field(default_factory=list)
    """The process group of each start not yet reaped: a restart leaves the old group behind (children
    of the old kernel that ignore SIGTERM, or that the kernel did not wait for) until we kill it."""

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

    def __init__(self, config: KernelsConfig, root_dir: str):
        self.config = config
        self.root_dir = os.path.realpath(root_dir)
        self._kernels: dict[str, _Kernel] = {}
        self._specs_cache: tuple[float, dict[str, Model]] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    # -- kernelspecs ------------------------------------------------------------------------

    @functools.cached_property
    def _ksm(self) -> Any:
        """jupyter_client's KernelSpecManager, made (and jupyter_client imported) on first use, so a
        server that has not touched a kernel yet starts faster and smaller."""
        from jupyter_client.kernelspec import KernelSpecManager

        return KernelSpecManager()

    def _default_name(self, names: Mapping[str, Any]) -> str | None:
        if self.config.default_kernel_name:
            return self.config.default_kernel_name
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
        """The directory a kernel for API path `path` runs in: the nearest existing directory."""
        target = os.path.realpath(os.path.join(self.root_dir, (path or "").strip("/")))
        if target != self.root_dir and not target.startswith(self.root_dir + os.sep):
            raise BadRequest(f"kernel path {path!r} is outside the server's root dir", "bad path")
        while not os.path.isdir(target) and target != self.root_dir:
            target = os.path.dirname(target)
        return target

    async def start_kernel(self, name: str | None = None, *, path: str | None = None,
                           env: Mapping[str, str] | None = None) -> Model:
        if name is None:
            specs = await asyncio.to_thread(self._find_specs)
            name = self._default_name(specs)
            if name is None:
                raise NotFound("no kernelspecs are installed", "no such kernelspec")
        await self._find(name)
        cwd = await asyncio.to_thread(self._cwd, path)
        runtime = await asyncio.to_thread(_runtime_dir)
        from traitlets.config import Config

        kernel_id = str(uuid.uuid4())
        km = _manager_class()(
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
        kernel = _Kernel(kernel_id, name, km)
        km.on_started = functools.partial(self._on_started, kernel)
        try:
            await km.start_kernel(cwd=cwd, env={**os.environ, **(env or {})})
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
        self._kernels[kernel_id] = kernel
        log.info("started kernel %s (%s) in %s", kernel_id, name, cwd)
        return self._model(kernel)

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

    async def restart_kernel(self, kernel_id: str) -> Model:
        kernel = self._get(kernel_id)
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
            await asyncio.gather(*(ch.wait_ready() for ch in list(kernel.channels)))
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
                    await kernel.km.shutdown_kernel(now=now)
                except Exception:
                    log.exception("error shutting kernel %s down; killing its process group", kernel_id)
            finally:
                # also when cancelled half way (the restarter may still run, the process too)
                if self._kernels.pop(kernel_id, None) is not None:
                    kernel.km.stop_restarter()
                    kernel.kill_groups()
                    kernel.km.cleanup_connection_file()
            log.info("shut down kernel %s", kernel_id)

    async def shutdown_all(self) -> None:
        await asyncio.gather(*(self.shutdown_kernel(k) for k in list(self._kernels)), return_exceptions=True)
        await asyncio.gather(*self._cleanups, return_exceptions=True)

    def kill_all(self) -> None:
        """SIGKILL every process group of every kernel, synchronously: the atexit last resort."""
        for kernel in list(self._kernels.values()):
            kernel.kill_groups()

    def _abandon(self, kernel: _Kernel) -> None:
        """A kernel whose start failed or was cancelled: kill now what may have been launched, then let
        jupyter_client reap it and release its ports and files in a task no cancellation reaches."""
        kernel.km.stop_restarter()
        kernel.kill_groups()

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
        channels = LocalChannels(kernel, self.config.kernel_info_timeout)
        kernel.channels.add(channels)
        try:
            channels.connect()
            await channels.wait_ready()
        except BaseException:
            await channels.close()  # never suspends: safe when cancelled too
            raise
        return channels

    # -- restarter events -------------------------------------------------------------------

    def _on_died(self, kernel: _Kernel, state: str) -> None:
        process = getattr(kernel.km.provisioner, "process", None)
        code = process.poll() if process is not None else None
        reason = _death_reason(code)
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


class LocalChannels:
    """A kernel's shell, control, stdin (one shared zmq identity) and iopub sockets; see KernelChannels.

    The relay's hot path: no task per socket and no queue hop. `recv` drains every readable socket
    without blocking and waits on the sockets' file descriptors only when all are empty.
    """

    def __init__(self, kernel: _Kernel, ready_timeout: float):
        self._kernel = kernel
        self._km = kernel.km
        self._timeout = ready_timeout
        self._pending: deque[KernelMessage] = deque()
        self._owned: list[Any] = []
        self._sockets: dict[str, Any] = {}
        self._fds: list[int] = []
        self._ports: tuple[Any, ...] = ()
        self._waiter: asyncio.Future[None] | None = None
        self._internal: dict[str, None] = {}
        self._iopub_seen = asyncio.Event()
        self._ready = asyncio.Event()
        self._nudge_task: asyncio.Task[None] | None = None
        self._nudge_ids: set[str] = set()
        self._closed = False
        self._session_id = str(uuid.uuid4())
        self._loop = asyncio.get_running_loop()

    # -- sockets ----------------------------------------------------------------------------

    def connect(self) -> None:
        import zmq
        from jupyter_client.connect import ConnectionFileMixin as Connect

        # jupyter_client makes and connects the sockets (urls, curve keys); the IOLoop manager would
        # wrap them into tornado streams, so call the mixin's methods. We use them synchronously
        # through shadows, driven by their file descriptors.
        km = self._km
        identity = uuid.uuid4().hex.encode()
        self._ports = self._port_key()
        self._owned = [Connect.connect_iopub(km), Connect.connect_shell(km, identity=identity),
                       Connect.connect_stdin(km, identity=identity), Connect.connect_control(km)]
        self._sockets = {}
        for name, owned in zip(("iopub", "shell", "stdin", "control"), self._owned):
            owned.linger = 0
            sock = zmq.Socket.shadow(owned.underlying)
            self._sockets[name] = sock
            fd = sock.getsockopt(zmq.FD)
            self._fds.append(fd)
            self._loop.add_reader(fd, self._readable)
        self._loop.call_soon(self._readable)
        self._start_nudge()

    def _port_key(self) -> tuple[Any, ...]:
        info = self._km.get_connection_info()
        return tuple(info.get(k) for k in ("transport", "ip", "shell_port", "iopub_port", "stdin_port",
                                           "control_port"))

    def _disconnect(self) -> None:
        for fd in self._fds:
            self._loop.remove_reader(fd)
        for sock in self._owned:
            sock.close(linger=0)
        self._fds, self._owned, self._sockets = [], [], {}

    def release(self) -> None:
        """The kernel is dead: close the sockets, keep what clients have not read yet (the dead status)
        and stay open, so a restart can `reconnect`."""
        if self._nudge_task is not None:
            self._nudge_task.cancel()
        self._disconnect()
        self._ready.set()

    def reconnect(self) -> None:
        """After a (re)start: new sockets if the ports moved (or were released), then wait for iopub to
        flow again."""
        if self._closed:
            return
        log.debug("kernel %s (re)started; ports %s, were %s", self._kernel.id, self._port_key(), self._ports)
        if self._port_key() != self._ports or not self._sockets:
            self._disconnect()
            self.connect()
        else:
            self._start_nudge()

    def _readable(self) -> None:
        """A socket's fd fired: read now (this also re-arms zmq's edge-triggered fd)."""
        if self._closed:
            return
        self._drain()
        if self._pending:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drain(self) -> None:
        """Read everything the sockets hold now (zmq's fd is edge-triggered: read until empty)."""
        import zmq

        pending = self._pending
        for channel, sock in self._sockets.items():
            try:
                while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                    try:
                        i = frames.index(DELIMITER)
                    except ValueError:
                        log.warning("kernel %s: message without delimiter on %s dropped", self._kernel.id, channel)
                        continue
                    if len(frames) < i + 6:
                        continue
                    msg = KernelMessage(channel, frames[i + 2], frames[i + 3], frames[i + 4], frames[i + 5],
                                        frames[i + 6:])
                    if channel == "iopub":
                        # iopub flows once it carries the answer to one of our own requests (an
                        # earlier message, say the subscription welcome, proves nothing: the
                        # kernel may have published its answer before our subscription took)
                        if self._nudge_ids and json.loads(msg.parent_header).get("msg_id") in self._nudge_ids:
                            self._iopub_seen.set()
                    elif self._internal:
                        parent = json.loads(msg.parent_header).get("msg_id")
                        if parent in self._internal:
                            del self._internal[parent]
                            continue
                    pending.append(msg)
            except zmq.ZMQError as e:
                if not self._closed:
                    log.warning("kernel %s: %s socket failed: %s", self._kernel.id, channel, e)

    # -- readiness --------------------------------------------------------------------------

    def _start_nudge(self) -> None:
        self._ready.clear()
        if self._nudge_task is not None:
            self._nudge_task.cancel()
        self._nudge_task = asyncio.create_task(self._nudge(), name=f"kernel {self._kernel.id} nudge")

    async def _nudge(self) -> None:
        """Ask for kernel_info (on shell and control) until iopub carries an answer to one of them."""
        try:
            await self._nudge_until_answered()
        finally:
            self._nudge_ids.clear()

    async def _nudge_until_answered(self) -> None:
        deadline = self._loop.time() + self._timeout
        delay = 0.05
        while not self._closed:
            self._iopub_seen.clear()
            for channel in ("control", "shell"):
                msg = self._km.session.msg("kernel_info_request")
                self._internal[msg["header"]["msg_id"]] = None
                self._nudge_ids.add(msg["header"]["msg_id"])
                while len(self._internal) > _INTERNAL_MAX:
                    del self._internal[next(iter(self._internal))]
                pack = self._km.session.pack
                self._send(channel, [pack(msg["header"]), pack(msg["parent_header"]), pack(msg["metadata"]),
                                     pack(msg["content"])], [])
            try:
                await asyncio.wait_for(self._iopub_seen.wait(), delay)
                log.debug("kernel %s answers on iopub", self._kernel.id)
                self._ready.set()
                return
            except asyncio.TimeoutError:
                if self._loop.time() > deadline:
                    log.warning("kernel %s did not answer within %ss", self._kernel.id, self._timeout)
                    self._ready.set()
                    return
                delay = min(delay * 2, 0.2)  # a starting kernel is answered within 0.2 s of being up

    async def wait_ready(self) -> None:
        await asyncio.wait_for(self._ready.wait(), self._timeout + 5)

    def _send(self, channel: str, parts: list[bytes], buffers: list[bytes]) -> None:
        import zmq

        sock = self._sockets.get(channel)
        if sock is None:
            return  # between sockets during a reconnect: the kernel is restarting anyway
        try:
            sock.send_multipart([DELIMITER, self._km.session.sign(parts), *parts, *buffers], zmq.NOBLOCK)
        except zmq.Again:
            log.warning("kernel %s is not reading its %s channel; message dropped", self._kernel.id, channel)
        # a send can swallow the fd's edge for messages that arrived meanwhile
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._loop.call_soon(self._readable)

    # -- KernelChannels ---------------------------------------------------------------------

    def inject_status(self, state: str, reason: str | None) -> None:
        """Tell clients about a state only the manager knows (restarting, dead), as jupyter_server does."""
        self._pending.append(wire.status_message(state, reason or None, session=self._session_id))
        if state == "restarting":  # hold clients' requests until the new kernel's iopub flows (see send)
            self._ready.clear()
        elif state == "dead":  # no answer will come: let a relay still waiting for one read this
            if self._nudge_task is not None:
                self._nudge_task.cancel()
            self._ready.set()
        self._wake()

    async def send(self, msg: KernelMessage) -> None:
        if self._closed:
            raise ChannelsClosed(self._kernel.id)
        if msg.channel not in ("shell", "control", "stdin"):
            raise ValueError(f"cannot send on channel {msg.channel!r}")
        if not self._ready.is_set():
            # after a death or a restart, until iopub flows again: a request sent now would reach the
            # new kernel before our iopub subscription does, and its busy/output would be lost
            try:
                await self.wait_ready()
            except asyncio.TimeoutError:
                pass  # the kernel does not answer: send anyway, as before it was known to be ready
            if self._closed:
                raise ChannelsClosed(self._kernel.id)
        self._send(msg.channel, [msg.header, msg.parent_header, msg.metadata, msg.content], msg.buffers)

    async def recv(self) -> KernelMessage:
        pending = self._pending
        while True:
            if self._closed:
                raise ChannelsClosed(self._kernel.id)
            if pending:
                return pending.popleft()
            self._drain()
            if pending:
                return pending.popleft()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._nudge_task is not None:
            self._nudge_task.cancel()
        self._disconnect()
        self._ready.set()
        self._kernel.channels.discard(self)
        self._wake()


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
