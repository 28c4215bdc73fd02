"""The `gateway` kernel provider: a `KernelManager` whose kernels live on a remote Jupyter (Enterprise) Gateway.

Like jupyter_server's `GatewayMappingKernelManager`, it answers for the kernels it started only (a
shared gateway may run other users' kernels). A kernel the gateway no longer knows is forgotten and
its channels end with a `dead` status (reason "gone from the gateway"), so the relay reports it the
way it reports a local kernel's death. The started/stopped events are the kernel service's to send.

A start (or restart) returns once the kernel answered a kernel_info_request over the upstream
websocket; that websocket is kept for the kernel service's first `open_channels`, so one new kernel
costs one upstream websocket.

Our kernels' ids are recorded in the state dir (records.py). At start-up the kernel service calls
`restore`: in keep mode (`[plugins.kernels] persist`) each recorded kernel is looked up on the gateway
and served again (404 there: forgotten, its sessions dropped); otherwise the kernels a killed server
left on the gateway are shut down. In keep mode `detach_all` leaves them running at exit.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from himalia import CONFIG, ApiError, ChannelsClosed, KernelNotReady, Model, NotFound, StartupError, wire

from .channels import GatewayChannels
from .client import GatewayClient, UpstreamError, quoted
from .config import GatewayConfig
from .health import GatewayProbe, Health
from .records import GatewayRecords, default_state_dir

log = logging.getLogger("himalia.gateway")

HUB_USER_ENV = "JUPYTERHUB_USER"


class GatewayKernelManager:
    """Kernels on the gateway, through its REST API and websockets."""

    def __init__(self, client: GatewayClient, *, root_dir: str = "", records: GatewayRecords | None = None):
        self.client = client
        self.config: GatewayConfig = client.config
        self.root_dir = root_dir
        self.records = records
        """Where our kernels' ids are recorded; None: nowhere (another server holds the state dir)."""
        self.lock_error: StartupError | None = None
        """Why there are no records (another server holds the state dir's lock)."""
        self.keep = False
        """Keep mode (set by `restore`): our kernels are left running on the gateway at exit."""
        self._started: dict[str, float] = {}
        """Our kernels: id → when they started (time.time()), for their records."""
        self._kernels: dict[str, str] = {}
        """Our kernels: id → spec name."""
        self._channels: dict[str, weakref.WeakSet[GatewayChannels]] = {}
        self._parked: dict[str, GatewayChannels] = {}
        """Channels that saw a new kernel answer, kept for the first open_channels of it."""
        self._cleanups: set[asyncio.Task[None]] = set()

    # -- kernelspecs -------------------------------------------------------------------------

    async def list_kernelspecs(self) -> Model:
        body = await self.client.request_json("GET", "/api/kernelspecs", params=self._user_filter())
        if not isinstance(body, dict) or not isinstance(body.get("kernelspecs"), dict):
            raise ApiError(f"the gateway at {self.config.url} answered GET /api/kernelspecs with an "
                           "unexpected body", "bad gateway response", status=502)
        for spec in body["kernelspecs"].values():
            self._local_resources(spec)
        return body

    async def get_kernelspec(self, name: str) -> Model:
        try:
            spec = await self.client.request_json("GET", f"/api/kernelspecs/{quoted(name)}")
        except ApiError as e:
            if upstream_status(e) == 404:
                raise await self._no_such_spec(name) from None
            raise
        return self._local_resources(spec)

    async def get_kernelspec_resource(self, name: str, resource: str) -> tuple[bytes, str]:
        path = f"/kernelspecs/{quoted(name)}/{'/'.join(quoted(p) for p in resource.split('/'))}"
        try:
            _, data, ctype = await self.client.request("GET", path)
        except ApiError as e:
            if upstream_status(e) == 404:
                raise NotFound(f"kernelspec {name} has no resource {resource} on the gateway") from None
            raise
        return data, ctype or "application/octet-stream"

    def _user_filter(self) -> dict[str, str] | None:
        user = os.environ.get("KERNEL_USERNAME") or default_user()
        return {"user": user} if user else None

    def _local_resources(self, spec: Any) -> Any:
        """The gateway's resource URLs (`/base/kernelspecs/{name}/{file}`) → file names, as every provider
        gives them; the kernels plugin makes them URLs on this server, which proxies the files."""
        if isinstance(spec, dict) and isinstance(spec.get("resources"), dict):
            prefix = f"/kernelspecs/{quoted(str(spec.get('name', '')))}/"
            for key, value in spec["resources"].items():
                if isinstance(value, str) and prefix in value:
                    spec["resources"][key] = unquote(value.rsplit(prefix, 1)[1])
        return spec

    async def _has_spec(self, name: str) -> bool:
        try:
            return name in (await self.list_kernelspecs())["kernelspecs"]
        except ApiError:
            return True  # cannot tell: keep the original error

    async def _no_such_spec(self, name: str) -> NotFound:
        try:
            specs = await self.list_kernelspecs()
            installed = ", ".join(sorted(specs["kernelspecs"])) or "none"
        except ApiError:
            installed = "unknown"
        return NotFound(f"no kernelspec named {name} on the gateway; installed: {installed}", "no such kernel")

    # -- kernels -----------------------------------------------------------------------------

    async def start_kernel(self, name: str | None = None, *, path: str | None = None,
                           env: Mapping[str, str] | None = None, timeout: float | None = None) -> Model:
        body: dict[str, Any] = {"env": self.kernel_env(path, env)}
        if name:
            body["name"] = name
        started = time.monotonic()
        try:
            model = await self.client.request_json("POST", "/api/kernels", body=body,
                                                   timeout=self.config.start_timeout)
        except ApiError as e:
            # Kernel Gateway answers 500 for an unknown name, jupyter_server 404: look before blaming the name
            if name and upstream_status(e) in (404, 500) and not await self._has_spec(name):
                raise await self._no_such_spec(name) from None
            raise
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise ApiError(f"the gateway at {self.config.url} answered POST /api/kernels without a kernel id",
                           "bad gateway response", status=502)
        kernel_id = model["id"]
        self._kernels[kernel_id] = model.get("name", name or "")
        self._started[kernel_id] = time.time()
        # recorded before it is awaited: a server killed while it starts leaves a record, not a stray kernel
        await self._save(kernel_id)
        # A gateway may answer before the kernel is up (Enterprise Gateway's local process proxy does):
        # the kernel then has what is left of the launch timeout it was promised, if that is longer.
        timeout = 60.0 if timeout is None else timeout
        timeout = max(timeout, self.config.launch_timeout - (time.monotonic() - started))
        try:
            await self._answered(kernel_id, model.get("name") or name or "default", timeout, restart=False)
        except BaseException:
            # died, silent or cancelled: delete it on the gateway, in a task no cancellation reaches
            self._discard(kernel_id)
            raise
        log.info("kernel %s (%s) started on the gateway %s", kernel_id, model.get("name"), self.config.url)
        return model

    async def _answered(self, kernel_id: str, name: str, timeout: float | None, *, restart: bool) -> None:
        """Return once the kernel answers a kernel_info_request on a websocket kept for the next
        open_channels; KernelNotReady if it is reported dead first or stays silent for `timeout`."""
        timeout = 60.0 if timeout is None else timeout
        channels = self._parked.pop(kernel_id, None)
        if channels is None or channels.closed:
            channels = await self.open_channels(kernel_id)
        request = wire.message("shell", "kernel_info_request", session=channels.session_id)

        async def answer() -> str:
            await channels.send(request)
            while True:
                verdict = wire.answer_to(await channels.recv(), request)
                if verdict is not None:
                    return verdict

        try:
            verdict = await asyncio.wait_for(answer(), timeout)
        except asyncio.TimeoutError:
            await channels.close()
            raise KernelNotReady.silent(name, timeout, restart=restart) from None
        except ChannelsClosed:
            verdict = channels._finished or "the gateway closed its websocket"
        except BaseException:
            await channels.close()
            raise
        if verdict != "answered":
            await channels.close()
            raise KernelNotReady.died(name, verdict, restart=restart)
        self._parked[kernel_id] = channels

    def _discard(self, kernel_id: str) -> None:
        parked = self._parked.pop(kernel_id, None)

        async def delete() -> None:
            if parked is not None:
                await parked.close()
            try:
                await self.shutdown_kernel(kernel_id)
            except Exception as e:  # best effort: it may be gone already
                log.debug("kernel %s: cleanup after a failed start: %s", kernel_id, e)

        task = asyncio.ensure_future(delete())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def kernel_env(self, path: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
        """What jupyter_server's gateway client sends: KERNEL_* and allowed_envs, from this process's
        environment and the request's, plus KERNEL_WORKING_DIR; and, unlike it, KERNEL_USERNAME by default
        (the hub's user, else ours: Enterprise Gateway otherwise takes its own, and refuses root) and
        always our launch timeout as KERNEL_LAUNCH_TIMEOUT, the one our start requests wait for."""
        merged = {**os.environ, **(env or {})}
        allowed = set(self.config.allowed_envs)
        out = {k: v for k, v in merged.items() if k.startswith("KERNEL_") or k in allowed}
        if path is not None and self.root_dir:
            out.setdefault("KERNEL_WORKING_DIR", os.path.join(self.root_dir, *[p for p in path.split("/") if p]))
        if not out.get("KERNEL_USERNAME") and (user := default_user()):
            out["KERNEL_USERNAME"] = user
        out["KERNEL_LAUNCH_TIMEOUT"] = f"{self.config.launch_timeout:g}"
        return out

    async def list_kernels(self) -> list[Model]:
        if not self._kernels:
            return []  # we list our kernels only: no need to ask (nor to fail when the gateway is down)
        try:
            remote = await self.client.request_json("GET", "/api/kernels")
        except ApiError as e:
            if upstream_status(e) != 403:  # Kernel Gateway forbids listing unless list_kernels is on
                raise
            remote = None
        listed = {m["id"]: m for m in remote or [] if isinstance(m, dict) and m.get("id") in self._kernels}
        missing = [kid for kid in self._kernels if kid not in listed]
        # a kernel missing from the list may be culled, or the list incomplete: ask for each one
        for model in await asyncio.gather(*(self._refresh(kid) for kid in missing)):
            if model is not None:
                listed[model["id"]] = model
        return [listed[kid] for kid in self._kernels if kid in listed]

    async def get_kernel(self, kernel_id: str) -> Model:
        self._ours(kernel_id)
        model = await self._refresh(kernel_id)
        if model is None:
            raise NotFound(f"kernel {kernel_id} is gone from the gateway", "kernel gone")
        return model

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        self._ours(kernel_id)
        try:
            await self.client.request("DELETE", f"/api/kernels/{quoted(kernel_id)}")
        except ApiError as e:
            if upstream_status(e) != 404:
                raise
        await self._forget(kernel_id, "shutdown")

    async def interrupt_kernel(self, kernel_id: str) -> None:
        await self._post(kernel_id, "interrupt")

    async def restart_kernel(self, kernel_id: str, *, timeout: float | None = None) -> Model:
        model = await self._post(kernel_id, "restart", timeout=self.config.start_timeout)  # a new launch
        for channels in list(self._channels.get(kernel_id, ())):
            await channels.refresh()  # the restarted kernel may listen on new ports
        # jupyter_server's restart (the gateway's) returns once the kernel answers again
        return model if isinstance(model, dict) and "id" in model else await self.get_kernel(kernel_id)

    async def open_channels(self, kernel_id: str, *, session_id: str | None = None) -> GatewayChannels:
        self._ours(kernel_id)
        parked = self._parked.pop(kernel_id, None)
        if parked is not None and not parked.closed and session_id is None:
            return parked  # the websocket that saw the kernel answer at start: no second upstream one
        try:
            channels = await GatewayChannels.open(self.client, kernel_id, session_id=session_id,
                                                  on_gone=self._gone_from_channels)
        except NotFound:
            await self._forget(kernel_id, "gone from the gateway")
            raise
        self._channels.setdefault(kernel_id, weakref.WeakSet()).add(channels)
        return channels

    async def shutdown_all(self) -> None:
        """Shut down every kernel we started (at server shutdown); failures are logged, not raised."""
        ids = list(self._kernels)
        results = await asyncio.gather(*(self.shutdown_kernel(kid) for kid in ids), return_exceptions=True)
        for kid, result in zip(ids, results):
            if isinstance(result, BaseException):
                log.warning("kernel %s on the gateway was not shut down: %s", kid, result)
        await asyncio.gather(*self._cleanups, return_exceptions=True)

    # -- helpers -----------------------------------------------------------------------------

    def _ours(self, kernel_id: str) -> None:
        if kernel_id not in self._kernels:
            raise NotFound(f"no kernel with id {kernel_id}", "no such kernel")

    async def _refresh(self, kernel_id: str) -> Model | None:
        """The gateway's model of one of our kernels; None (and forgotten) when the gateway lost it."""
        try:
            return await self.client.request_json("GET", f"/api/kernels/{quoted(kernel_id)}")
        except ApiError as e:
            if upstream_status(e) != 404:
                raise
        await self._forget(kernel_id, "gone from the gateway")
        return None

    async def _post(self, kernel_id: str, action: str, *, timeout: float | None = None) -> Any:
        self._ours(kernel_id)
        try:
            return await self.client.request_json("POST", f"/api/kernels/{quoted(kernel_id)}/{action}", body={},
                                                  timeout=timeout)
        except ApiError as e:
            if upstream_status(e) != 404:
                raise
        await self._forget(kernel_id, "gone from the gateway")
        raise NotFound(f"kernel {kernel_id} is gone from the gateway", "kernel gone")

    async def _forget(self, kernel_id: str, reason: str) -> None:
        if self._kernels.pop(kernel_id, None) is None:
            return
        self._started.pop(kernel_id, None)
        await self._unrecord(kernel_id)
        if reason != "shutdown":
            log.warning("kernel %s is %s", kernel_id, reason)
        self._parked.pop(kernel_id, None)  # closed with the others below
        for channels in list(self._channels.pop(kernel_id, ())):
            if reason == "shutdown":
                await channels.close()
            else:
                await channels.gone(reason)

    def _gone_from_channels(self, kernel_id: str) -> None:
        """A websocket found its kernel gone (its channels have ended themselves)."""
        if self._kernels.pop(kernel_id, None) is not None:
            self._started.pop(kernel_id, None)
            self._channels.pop(kernel_id, None)
            log.warning("kernel %s is gone from the gateway", kernel_id)
            task = asyncio.ensure_future(self._unrecord(kernel_id))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    # -- records, keep mode (records.py) ------------------------------------------------------

    async def _save(self, kernel_id: str) -> None:
        """Write the record of one of our kernels (in a thread); an error is logged, not raised."""
        if self.records is None or kernel_id not in self._kernels:
            return
        record = {"id": kernel_id, "name": self._kernels[kernel_id], "url": self.config.url, "keep": self.keep,
                  "started": self._started.get(kernel_id, time.time()), "last_activity": time.time(),
                  "server_pid": os.getpid()}
        try:
            await asyncio.to_thread(self.records.write, record)
        except OSError as e:
            log.error("kernel %s: cannot write its record in %s: %s", kernel_id, self.records.kernels, e)

    async def _unrecord(self, kernel_id: str) -> None:
        if self.records is not None:
            try:
                await asyncio.to_thread(self.records.delete, kernel_id)
            except OSError as e:
                log.error("kernel %s: cannot remove its record in %s: %s", kernel_id, self.records.kernels, e)

    async def restore(self, *, keep: bool, timeout: float | None = None) -> tuple[list[Model], dict[str, str]]:
        """Called once by the kernel service at start-up, before any kernel starts. Sets keep mode; reads
        the records a previous server left for this gateway. With `keep`, each kept kernel the gateway
        still has is ours again (404 there: forgotten); a record of a kernel that was not kept (the
        server that started it was killed) has its kernel shut down on the gateway. Records of another
        gateway url are left alone. Returns the adopted models and {id: reason} of the kernels gone.
        (`timeout` is the kernel service's; the gateway's own request timeouts bound each lookup.)"""
        self.keep = keep
        if self.lock_error is not None:
            if keep:
                raise self.lock_error
            log.warning("%s; this server keeps no records of its gateway kernels (a kill of it may leave "
                        "them on the gateway)", self.lock_error)
        if self.records is None:
            return [], {}
        records = await asyncio.to_thread(self.records.read_all)
        ours = []
        for record in records:
            if record["url"].rstrip("/") != self.config.url:
                log.warning("kernel %s was recorded for the gateway %s, not %s: left alone (its record stays "
                            "in %s)", record["id"], record["url"], self.config.url, self.records.kernels)
            else:
                ours.append(record)
        outcomes = await asyncio.gather(*(self._restore_one(r, keep) for r in ours))
        adopted = [model for model, _ in outcomes if model is not None]
        gone = {r["id"]: reason for r, (_, reason) in zip(ours, outcomes) if reason is not None}
        return adopted, gone

    async def _restore_one(self, record: dict[str, Any], keep: bool) -> tuple[Model | None, str | None]:
        kernel_id = str(record["id"])
        path = f"/api/kernels/{quoted(kernel_id)}"
        if not (keep and record.get("keep")):
            try:
                await self.client.request("DELETE", path)
                reason = ("kept by a server in keep mode, and this one is not; shut down" if record.get("keep")
                          else "left on the gateway by a server that did not stop it; shut down")
            except ApiError as e:
                if upstream_status(e) != 404:
                    # the gateway cannot be asked now: the record stays for the next start
                    log.warning("kernel %s, left on the gateway by a server that did not stop it, could not "
                                "be shut down: %s", kernel_id, e)
                    return None, None
                reason = "gone from the gateway while the server was down"
            await self._unrecord(kernel_id)
            log.warning("kernel %s (%s) %s", kernel_id, record.get("name"), reason)
            return None, reason
        try:
            model = await self.client.request_json("GET", path)
        except ApiError as e:
            if upstream_status(e) == 404:
                await self._unrecord(kernel_id)
                log.warning("kernel %s (%s) is gone from the gateway: forgotten", kernel_id, record.get("name"))
                return None, "gone from the gateway while the server was down"
            # the gateway is down or refuses: serve the kernel anyway, as a kernel of ours the gateway
            # cannot be asked about right now (the first request that finds it gone forgets it)
            log.warning("kernel %s: the gateway could not be asked whether it still has it (%s); kept", kernel_id, e)
            model = {"id": kernel_id, "name": record.get("name", "")}
        if not isinstance(model, dict) or model.get("id") != kernel_id:
            model = {"id": kernel_id, "name": record.get("name", "")}
        self._kernels[kernel_id] = str(model.get("name") or record.get("name") or "")
        started = record.get("started")
        self._started[kernel_id] = float(started) if isinstance(started, (int, float)) else time.time()
        await self._save(kernel_id)  # now this server's
        log.info("kernel %s (%s) found again on the gateway %s", kernel_id, self._kernels[kernel_id],
                 self.config.url)
        return model, None

    async def detach_all(self) -> None:
        """Keep mode, at exit: let go of our kernels without shutting them down (their websockets to
        the gateway closed, their records rewritten), so the next server finds them again."""
        for kernel_id in list(self._kernels):
            self._parked.pop(kernel_id, None)
            for channels in list(self._channels.pop(kernel_id, ())):
                await channels.close()
            await self._save(kernel_id)
            log.info("kept kernel %s running on the gateway", kernel_id)
        for parked in list(self._parked.values()):
            await parked.close()
        self._parked.clear()
        self._kernels.clear()
        self._started.clear()
        await asyncio.gather(*self._cleanups, return_exceptions=True)


def default_user() -> str:
    """Whom kernels run for when the start request does not say (KERNEL_USERNAME): the hub's user when
    JupyterHub started us, else the user this server runs as; "" if neither is known."""
    if hub_user := os.environ.get(HUB_USER_ENV):
        return hub_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for our uid (a container started with an arbitrary uid)
        return ""


def upstream_status(error: ApiError) -> int | None:
    """The HTTP status the gateway answered (before we mapped it), when it answered at all."""
    return error.upstream_status if isinstance(error, UpstreamError) else None


@asynccontextmanager
async def gateway_kernels(app: web.Application) -> AsyncIterator[GatewayKernelManager]:
    """The provider factory: a client to the configured gateway; shuts our kernels down on exit."""
    config = app[CONFIG]
    gateway = config.section("gateway").effective()
    if not gateway.url:
        raise RuntimeError("kernel provider 'gateway' needs a gateway url: set [plugins.gateway] url, "
                           "--gateway-url or $JUPYTER_GATEWAY_URL")
    probe = GatewayProbe.of(app)
    health = probe.health if probe is not None else Health(gateway.url)
    records: GatewayRecords | None = GatewayRecords(config.server.state_dir
                                                    or await asyncio.to_thread(default_state_dir))
    lock_error = None
    try:
        await asyncio.to_thread(records.lock)  # type: ignore[union-attr]
    except StartupError as e:
        records, lock_error = None, e  # fatal in keep mode only (see restore)
    try:
        async with GatewayClient(gateway, health) as client:
            manager = GatewayKernelManager(client, root_dir=config.server.root_dir, records=records)
            manager.lock_error = lock_error
            try:
                yield manager
            finally:
                await manager.shutdown_all()  # in keep mode, detach_all has let go of them already
    finally:
        if records is not None:
            records.unlock()
