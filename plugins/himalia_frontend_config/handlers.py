"""`GET`, `PUT` and `PATCH /api/config/{section}`."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

from aiohttp import web

from himalia import ApiError, read_json

from .sections import ConfigSections


class Store:
    """The sections, with one lock per section so concurrent PATCHes never lose each other's keys."""

    def __init__(self, sections: ConfigSections):
        self.sections = sections
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


STORE = web.AppKey("himalia_frontend_config.store", Store)


async def config_store(app: web.Application) -> AsyncIterator[None]:
    app[STORE] = Store(await asyncio.to_thread(ConfigSections.from_jupyter_paths))
    yield


def _section(request: web.Request) -> str:
    section = request.match_info["section"]
    ConfigSections.check(section)
    return section


def _os_error(section: str, e: OSError) -> ApiError:
    return ApiError(f"cannot write config section {section!r}: {e.strerror or e}", "config write failed")


async def get_section(request: web.Request) -> web.Response:
    section = _section(request)
    store = request.app[STORE]
    return web.json_response(await asyncio.to_thread(store.sections.get, section))


async def put_section(request: web.Request) -> web.Response:
    section = _section(request)
    body = await read_json(request)
    store = request.app[STORE]
    async with store.locks[section]:
        try:
            await asyncio.to_thread(store.sections.set, section, body)
        except OSError as e:
            raise _os_error(section, e) from None
    return web.Response(status=204)


async def patch_section(request: web.Request) -> web.Response:
    section = _section(request)
    body = await read_json(request)
    store = request.app[STORE]
    async with store.locks[section]:
        try:
            merged = await asyncio.to_thread(store.sections.update, section, body)
        except OSError as e:
            raise _os_error(section, e) from None
    return web.json_response(merged)
