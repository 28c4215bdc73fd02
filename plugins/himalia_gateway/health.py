"""The gateway's reachability for `/api/status`: kept current by a background probe and by every request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from himalia import ApiError, isoformat, utcnow

from .config import GatewayConfig

log = logging.getLogger("himalia.gateway")


@dataclass
class Health:
    """What we last learnt about the gateway; cheap to read from the synchronous status hook."""

    url: str
    reachable: bool | None = None
    """None until the first request or probe has an answer."""
    error: str | None = None
    version: str | None = None
    checked: str | None = None

    def succeeded(self, version: str | None = None) -> None:
        if self.reachable is False:
            log.info("gateway %s is reachable again", self.url)
        self.reachable, self.error, self.checked = True, None, isoformat(utcnow())
        if version:
            self.version = version

    def failed(self, error: str, *, reachable: bool = False) -> None:
        if self.reachable is not False and not reachable:
            log.warning("gateway %s is unreachable: %s", self.url, error)
        self.reachable, self.error, self.checked = reachable, error, isoformat(utcnow())

    def model(self) -> dict[str, Any]:
        return {"url": self.url, "reachable": self.reachable, "error": self.error, "version": self.version,
                "checked": self.checked}


class GatewayProbe:
    """A lifecycle resource (`himalia_resources`) that asks the gateway `GET /api` every `probe_interval`.

    It is found again through `app.cleanup_ctx` by the status hook and the kernel provider, so the
    app needs no extra state once frozen.
    """

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.health = Health(config.url)
        self.wake = asyncio.Event()
        """Set to probe at once (tests; a failed request)."""

    @staticmethod
    def of(app: web.Application) -> GatewayProbe | None:
        return next((r for r in app.cleanup_ctx if isinstance(r, GatewayProbe)), None)

    async def __call__(self, app: web.Application) -> AsyncIterator[None]:
        from .client import GatewayClient

        async with GatewayClient(self.config, self.health) as client:
            task = asyncio.create_task(self._run(client), name="gateway probe")
            try:
                yield
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def probe_once(self, client: Any) -> None:
        try:
            body = await client.request_json("GET", "/api")
        except ApiError:
            return  # the client has recorded the failure
        self.health.succeeded(body.get("version") if isinstance(body, dict) else None)

    async def _run(self, client: Any) -> None:
        while True:
            await self.probe_once(client)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.config.probe_interval)
            except asyncio.TimeoutError:
                pass


def status(app: web.Application) -> dict[str, Any]:
    probe = GatewayProbe.of(app)
    return {"gateway": probe.health.model()} if probe is not None else {}
