"""`KernelChannels` over one upstream websocket to the gateway's `/api/kernels/{id}/channels`.

Offers `v1.kernel.websocket.jupyter.org` and falls back to the legacy JSON protocol when the gateway
does not pick it. One stable `session_id` per channel object is sent upstream, so a gateway built on
jupyter_server buffers output while we reconnect and replays it. A dropped connection is retried
(retry_interval doubling up to retry_interval_max, retry_max times); a kernel the gateway no longer
knows (404) or running out of retries closes the channels for good.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from himalia import ApiError, BadGateway, ChannelsClosed, GatewayTimeout, KernelMessage, NotFound, wire

from .client import GatewayClient, UpstreamError, describe, quoted

log = logging.getLogger("himalia.gateway")

V1 = wire.V1
GONE = "gone from the gateway"
"""The reason given when the gateway no longer knows a kernel."""
_CLOSED = object()


class GatewayChannels:
    """The channels of one remote kernel; create with `await GatewayChannels.open(...)`."""

    def __init__(self, client: GatewayClient, kernel_id: str, *, session_id: str | None = None,
                 on_gone: Callable[[str], None] | None = None, offer_v1: bool = True):
        self.client = client
        self.config = client.config
        self.kernel_id = kernel_id
        self.session_id = session_id or uuid.uuid4().hex
        self.protocol: str = ""
        """The negotiated upstream protocol: V1 or "" (legacy JSON)."""
        self.reconnects = 0
        self.reconnected = asyncio.Event()
        """Set at each successful reconnection (clear it to wait for the next one)."""
        self._protocols = (V1,) if offer_v1 else ()
        self._on_gone = on_gone
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._incoming: asyncio.Queue[Any] = asyncio.Queue()
        self._ready = asyncio.Event()
        """Set while connected, and for good once finished; cleared while reconnecting."""
        self._dropped = asyncio.Event()
        """Set once the current connection is known to be gone; a new one comes with a new event."""
        self._refresh_now = False
        """The next reconnection is deliberate: no backoff before its first attempt."""
        self._finished: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, client: GatewayClient, kernel_id: str, **kwargs: Any) -> GatewayChannels:
        """Connect (errors raised as ApiError: 404 gone, 502 unreachable, 504 too slow) and start reading."""
        channels = cls(client, kernel_id, **kwargs)
        channels._ws = await channels._connect()
        channels._ready.set()
        channels._reader = asyncio.create_task(channels._read_forever(), name=f"gateway channels {kernel_id}")
        if channels.config.ping_interval:
            channels._watcher = asyncio.create_task(channels._watch(), name=f"gateway kernel watch {kernel_id}")
        return channels

    @property
    def closed(self) -> bool:
        return self._finished is not None

    # -- KernelChannels --------------------------------------------------------------------------

    async def send(self, msg: KernelMessage) -> None:
        for _ in range(2):  # a send that meets a broken connection is retried once on the next one
            await self._ready.wait()  # bounded: the reconnect loop ends after retry_max attempts
            ws, dropped = self._ws, self._dropped
            if self._finished is not None or ws is None:
                raise ChannelsClosed(self._finished or "closed")
            try:
                frame, binary = wire.encode(msg, self.protocol)
                await (ws.send_bytes(frame) if binary else ws.send_str(frame.decode()))
                return
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                await ws.close()  # so the reader surely notices, and reconnects
                await dropped.wait()  # it has (and cleared _ready until it is reconnected)
        raise ChannelsClosed(f"could not send to kernel {self.kernel_id} on the gateway")

    def recv_ready(self) -> bool:
        """Whether `recv` would return at once (a message is read and waiting)."""
        return not self._incoming.empty()

    async def recv(self) -> KernelMessage:
        item = await self._incoming.get()
        if item is _CLOSED:
            self._incoming.put_nowait(_CLOSED)  # every later recv sees the end too
            raise ChannelsClosed(self._finished or "closed")
        return item

    async def refresh(self) -> None:
        """Reconnect at once, with the same session_id. After a restart the gateway's streams for this
        websocket may point at the kernel's old ports (jupyter_server restarts may move them), and only a
        new connection is wired to the new ones; the gateway replays what we missed meanwhile."""
        ws, dropped = self._ws, self._dropped
        if self._finished is not None or ws is None:
            return
        self._refresh_now = True
        await ws.close()
        await dropped.wait()  # the reader has let go of it (and cleared _ready)
        await self._ready.wait()  # reconnected, or given up: bounded by retry_max

    async def close(self) -> None:
        self._finish("closed")
        tasks = [t for t in (self._reader, self._watcher) if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

    # -- the upstream connection -----------------------------------------------------------------

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        path = f"/api/kernels/{quoted(self.kernel_id)}/channels"
        what = f"websocket {path}"
        try:
            ws = await asyncio.wait_for(self.client.session.ws_connect(
                self.client.ws_url(path), params={"session_id": self.session_id}, protocols=self._protocols,
                heartbeat=self.config.ping_interval or None, max_msg_size=0, ssl=self.client.ssl),
                self.config.ws_connect_timeout)
        except asyncio.TimeoutError:
            raise GatewayTimeout(f"the gateway at {self.config.url} did not open {what} within "
                                 f"{self.config.ws_connect_timeout:g}s", "gateway timeout") from None
        except aiohttp.WSServerHandshakeError as e:
            if e.status == 404:
                raise NotFound(f"kernel {self.kernel_id} is gone from the gateway", "kernel gone") from None
            if e.status == 401:
                raise BadGateway(f"the gateway at {self.config.url} refused our credentials ({what}); check "
                                 "[plugins.gateway] auth_token", "gateway unauthorized") from None
            raise BadGateway(f"the gateway at {self.config.url} refused {what} with HTTP {e.status}",
                             "gateway error") from None
        except (aiohttp.ClientError, OSError) as e:
            message = f"the gateway at {self.config.url} is unreachable ({what}): {describe(e)}"
            self.client.health.failed(message)
            raise BadGateway(message, "gateway unreachable") from None
        self.protocol = V1 if ws.protocol == V1 else ""
        self.client.health.succeeded()
        log.debug("kernel %s: upstream websocket open (%s)", self.kernel_id, self.protocol or "legacy")
        return ws

    async def _read_forever(self) -> None:
        try:
            while True:
                ws = self._ws
                assert ws is not None
                await self._pump(ws)
                if self._finished is not None:
                    return
                self._ready.clear()
                await ws.close()  # a no-op unless the pump stopped for a refresh
                self._dropped.set()
                self._dropped = asyncio.Event()
                if self._refresh_now:
                    log.debug("kernel %s: reconnecting to the gateway after a restart", self.kernel_id)
                else:
                    log.warning("kernel %s: upstream websocket to the gateway dropped (%s); reconnecting",
                                self.kernel_id, ws.close_code)
                self._ws = await self._reconnect()
                if self._ws is None:
                    return
                self._ready.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave a relay waiting on a reader that died
            log.exception("kernel %s: upstream reader failed", self.kernel_id)
            self._finish("the upstream reader failed")

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            try:
                if frame.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                msg = wire.decode(frame.data, self.protocol)
            except wire.MalformedMessage as e:
                log.warning("kernel %s: dropped a malformed message from the gateway: %s", self.kernel_id, e)
                continue
            self._incoming.put_nowait(msg)
            if msg.channel == "iopub" and msg.msg_type == "status" and b'"restarting"' in msg.content:
                self._refresh_now = True  # the gateway restarted the kernel by itself: see refresh()
                return

    async def _watch(self) -> None:
        """Ask the gateway about the kernel every ping_interval: a gateway built on jupyter_server keeps
        the websocket of a kernel deleted by someone else open, silent, forever."""
        path = f"/api/kernels/{quoted(self.kernel_id)}"
        while self._finished is None:
            await asyncio.sleep(self.config.ping_interval)  # the configured check period
            try:
                await self.client.request("GET", path)
            except ApiError as e:
                if isinstance(e, UpstreamError) and e.upstream_status == 404:
                    self._gone(GONE)
                    if self._ws is not None:
                        await self._ws.close()  # ends the reader's pump
                    return
            except Exception:  # a watcher never dies silently: the reconnect logic owns connectivity
                log.exception("kernel %s: liveness check failed", self.kernel_id)

    async def gone(self, reason: str) -> None:
        """The kernel no longer exists: end with a `dead` status (as a dying local kernel does), then close."""
        self._gone(reason)
        await self.close()

    def _gone(self, reason: str) -> None:
        if self._finished is None:
            self._incoming.put_nowait(wire.status_message("dead", reason, session="himalia-gateway"))
        self._finish(reason)
        if self._on_gone is not None:
            self._on_gone(self.kernel_id)

    async def _reconnect(self) -> aiohttp.ClientWebSocketResponse | None:
        for attempt in range(self.config.retry_max):
            delay = min(self.config.retry_interval * 2 ** attempt, self.config.retry_interval_max)
            if self._refresh_now:
                delay, self._refresh_now = 0.0, False
            await asyncio.sleep(delay)  # the configured backoff between attempts
            if self._finished is not None:
                return None
            try:
                ws = await self._connect()
            except NotFound:
                self._gone(GONE)
                return None
            except ApiError as e:
                log.warning("kernel %s: reconnect %d of %d failed: %s", self.kernel_id, attempt + 1,
                            self.config.retry_max, e.message)
                continue
            self.reconnects += 1
            self.reconnected.set()
            log.info("kernel %s: reconnected to the gateway", self.kernel_id)
            return ws
        self._finish(f"lost the gateway websocket of kernel {self.kernel_id} after {self.config.retry_max} "
                     "reconnection attempts")
        return None

    def _finish(self, reason: str) -> None:
        if self._finished is None:
            self._finished = reason
            self._incoming.put_nowait(_CLOSED)
        self._ready.set()
        self._dropped.set()
