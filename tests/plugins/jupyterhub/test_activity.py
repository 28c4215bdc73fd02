"""The activity reporter against a real HTTP endpoint on 127.0.0.1: one report per change, none while
idle, retried when the hub fails."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from himalia import ACTIVITY, SERVICES, Services
from himalia.activity import Activity, isoformat, utcnow
from himalia_jupyterhub.activity import ActivityReporter


async def fake_hub(statuses: list[int]):
    """An activity endpoint answering `statuses` in turn (then 200); returns (url, received, runner)."""
    received: list[dict] = []

    async def activity(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "token secret"
        received.append(json.loads(await request.text()))
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hub/api/users/ada/activity", activity)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/hub/api/users/ada/activity", received, runner


class Terminals:
    """The terminal service's listing (the TerminalManager Protocol's `list`), with activity the test sets."""

    def __init__(self) -> None:
        self.models: list[dict] = []

    async def list(self) -> list[dict]:
        return self.models

    def use(self, name: str) -> None:
        self.models = [m for m in self.models if m["name"] != name]
        self.models.append({"name": name, "last_activity": isoformat(utcnow())})


def server_app() -> web.Application:
    app = web.Application()
    app[ACTIVITY] = Activity()
    app[SERVICES] = Services()
    return app


async def test_one_report_per_change_and_none_while_idle():
    url, received, runner = await fake_hub([])
    app = server_app()
    terminals = app[SERVICES].terminals = Terminals()
    reporter = ActivityReporter(app, url, "secret", "")
    try:
        async with aiohttp.ClientSession() as session:
            assert await reporter.report_once(session)  # the server's start
            assert not await reporter.report_once(session)  # idle: nothing sent
            assert len(received) == 1
            terminals.use("1")
            assert await reporter.report_once(session)
    finally:
        await runner.cleanup()
    assert len(received) == 2
    stamp = received[1]["last_activity"]
    assert received[1] == {"servers": {"": {"last_activity": stamp}}, "last_activity": stamp}
    assert received[1]["last_activity"] > received[0]["last_activity"]


async def test_api_requests_are_not_activity():
    """An open JupyterLab tab polls the API every few seconds: that must not keep the server alive."""
    url, received, runner = await fake_hub([])
    app = server_app()
    reporter = ActivityReporter(app, url, "secret", "")
    try:
        async with aiohttp.ClientSession() as session:
            assert await reporter.report_once(session)
            app[ACTIVITY].touch()  # what every authenticated request does
            assert not await reporter.report_once(session)
    finally:
        await runner.cleanup()
    assert len(received) == 1
    assert received[0]["last_activity"] == isoformat(app[ACTIVITY].started)


async def test_a_failing_hub_is_retried():
    url, received, runner = await fake_hub([503])
    reporter = ActivityReporter(server_app(), url, "secret", "")
    try:
        async with aiohttp.ClientSession() as session:
            assert await asyncio.wait_for(reporter.report_once(session), 30)
    finally:
        await runner.cleanup()
    assert len(received) == 2
