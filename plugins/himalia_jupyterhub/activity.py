"""Tells the hub when this server was last used, so its idle culler can stop it: the latest activity of
its kernels and terminals (the server's start before any), every JUPYTERHUB_ACTIVITY_INTERVAL seconds
(±10 % jitter, as the hub's own server), with retries, and only when it moved since the last report.

API requests do not count, unlike in jupyterhub's own single-user server: an open JupyterLab tab polls
the API every few seconds (kernels, sessions, terminals, the file browser), which would keep an
abandoned server alive for ever. An idle server sends nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
from aiohttp import web

from himalia import ACTIVITY, SERVICES, ApiError, isoformat

from .env import activity_interval

log = logging.getLogger("himalia.jupyterhub")

RETRY_DELAYS = (1, 2, 4, 8, 15, 15, 15)
"""Seconds between attempts of one report (about a minute in all, as the hub's own server)."""


async def last_activity(app: web.Application) -> datetime:
    """The latest `last_activity` of the server's kernels and terminals, or the server's start."""
    latest = app[ACTIVITY].started
    services = app[SERVICES]
    models: list[dict] = []
    if services.kernels is not None:
        try:
            models += await services.kernels.list_kernels()
        except ApiError as e:  # a remote gateway may be down; the terminals still count
            log.debug("activity: cannot list kernels: %s", e.message)
    if services.terminals is not None:
        models += await services.terminals.list()
    for model in models:
        text = model.get("last_activity")
        if text:
            latest = max(latest, datetime.fromisoformat(text.replace("Z", "+00:00")))
    return latest


class ActivityReporter:
    def __init__(self, app: web.Application, url: str, token: str, server_name: str):
        self.app = app
        self.url = url
        self.token = token
        self.server_name = server_name
        self.sent: datetime | None = None

    async def report_once(self, session: aiohttp.ClientSession) -> bool:
        """One report if there was activity since the last; True when one was sent."""
        latest = await last_activity(self.app)
        if self.sent is not None and latest <= self.sent:
            return False
        stamp = isoformat(latest)
        body = json.dumps({"servers": {self.server_name: {"last_activity": stamp}}, "last_activity": stamp})
        headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        for attempt, delay in enumerate((0, *RETRY_DELAYS)):
            await asyncio.sleep(delay)
            try:
                async with session.post(self.url, data=body, headers=headers) as r:
                    if r.status < 400:
                        self.sent = latest
                        return True
                    error = f"HTTP {r.status}: {(await r.text())[:200]}"
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                error = f"{type(e).__name__}: {e}"
            log.warning("could not report activity to the hub at %s (attempt %d): %s", self.url, attempt + 1, error)
        return False

    async def run(self, interval: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                try:
                    await self.report_once(session)
                except Exception:
                    log.exception("reporting activity to the hub failed")
                await asyncio.sleep(interval * (1 + 0.2 * (random.random() - 0.5)))


async def hub_activity(app: web.Application) -> AsyncIterator[None]:
    """The reporter, as a `cleanup_ctx` resource; nothing when the hub gave no activity URL."""
    url = os.environ.get("JUPYTERHUB_ACTIVITY_URL", "")
    interval = activity_interval()
    if not url or not interval:
        log.info("not reporting activity to the hub (no JUPYTERHUB_ACTIVITY_URL, or interval 0)")
        yield
        return
    reporter = ActivityReporter(app, url, os.environ["JUPYTERHUB_API_TOKEN"],
                                os.environ.get("JUPYTERHUB_SERVER_NAME", ""))
    log.info("reporting activity to the hub every %g s", interval)
    task = asyncio.create_task(reporter.run(interval))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
