"""`GET /api/nbconvert`, `GET /nbconvert/{format}/{path}` and `POST /nbconvert/{format}`.

Notebooks are read through the contents service, so what the contents API refuses (outside the root,
hidden, missing) is refused here with the same answer. Conversions run in the plugin's own worker
threads; the event loop only waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from himalia import CONFIG, SERVICES, ApiError, BadRequest, NotFound, read_json, url_path

from .config import NbconvertConfig
from .convert import BadNotebook, ConversionFailed, Export, export
from .formats import FormatFinder, Formats

log = logging.getLogger("himalia.nbconvert")
T = TypeVar("T")

NO_CACHE = "no-store, no-cache, must-revalidate, max-age=0"


class Converter:
    """The plugin's state while the server runs: the working formats and the conversion threads."""

    def __init__(self, config: NbconvertConfig):
        self.config = config
        self.finder = FormatFinder()
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="himalia-nbconvert")

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: func(*args, **kwargs))

    async def formats(self) -> Formats:
        return await self.run(self.finder.get)

    async def check(self, format: str) -> None:
        formats = await self.formats()
        if format in formats.available:
            return
        listing = ", ".join(sorted(formats.available)) or "none"
        if format in formats.unavailable:
            raise NotFound(f"export format {format!r} is not available on this server "
                           f"({formats.unavailable[format]}); available formats: {listing}", "no such format")
        raise NotFound(f"no export format {format!r}; available formats: {listing}", "no such format")

    async def convert(self, format: str, content: Any, name: str, **kwargs: Any) -> Export:
        try:
            return await self.run(export, format, content, name, **kwargs)
        except BadNotebook as e:
            raise BadRequest(f"cannot convert {name!r}: {e}", "bad notebook") from None
        except ConversionFailed as e:
            log.warning("nbconvert to %s failed for %s: %s", format, name, e)
            raise ApiError(f"converting {name!r} to {format} failed: {e}", "conversion failed") from None


CONVERTER = web.AppKey("himalia_nbconvert.converter", Converter)


async def converter(app: web.Application) -> AsyncIterator[None]:
    state = Converter(app[CONFIG].section("nbconvert"))
    app[CONVERTER] = state
    try:
        yield
    finally:
        # a conversion cannot be interrupted; the threads finish theirs and exit
        state.pool.shutdown(wait=False, cancel_futures=True)


# --- handlers -----------------------------------------------------------------------------------


async def list_formats(request: web.Request) -> web.Response:
    formats = await request.app[CONVERTER].formats()
    return web.json_response({name: {"output_mimetype": mimetype}
                              for name, mimetype in sorted(formats.available.items())})


def _flag(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    return None if value is None else value.lower() == "true"


def _url(request: web.Request, path: str) -> str:
    return url_path(request.app[CONFIG].server.base_url, path)


def _respond(request: web.Request, result: Export, *, download: bool,
             last_modified: datetime | None = None) -> web.Response:
    response = web.Response(body=result.body, headers={"Content-Type": result.content_type, "Cache-Control": NO_CACHE})
    if result.zipped or download:
        ascii_name = result.filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
        response.headers["Content-Disposition"] = (f"attachment; filename=\"{ascii_name}\"; "
                                                   f"filename*=UTF-8''{quote(result.filename, safe='')}")
    if last_modified is not None:
        response.headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)
    return response


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


async def export_file(request: web.Request) -> web.StreamResponse:
    format = request.match_info["format"]
    path = request.match_info["path"].strip("/")
    state = request.app[CONVERTER]
    await state.check(format)
    contents = request.app[SERVICES].require("contents")
    info = await contents.get(path, content=False)
    if info["type"] == "directory":
        raise BadRequest(f"{path or '/'!r} is a directory, not a notebook", "not a notebook")
    if info["type"] != "notebook":  # as jupyter_server: any other file is served as it is
        raise web.HTTPFound(_url(request, "/files/" + quote(info["path"])))
    model = await contents.get(info["path"], content=True, type="notebook")
    modified = _parse_time(model.get("last_modified"))
    result = await state.convert(format, model["content"], model["name"], last_modified=modified,
                                 sanitize_html=_flag(request, "sanitize_html"))
    return _respond(request, result, download=bool(_flag(request, "download")), last_modified=modified)


async def export_body(request: web.Request) -> web.Response:
    format = request.match_info["format"]
    state = request.app[CONVERTER]
    await state.check(format)
    body = await read_json(request)
    name = body.get("name", "notebook.ipynb")
    if not isinstance(name, str) or not name.strip() or "/" in name or "\0" in name:
        raise BadRequest(f"'name' must be a file name, got {name!r}", "bad name")
    if "content" not in body:
        raise BadRequest("the body must be a notebook model: {\"name\": ..., \"content\": {...}}; 'content' "
                         "is missing", "bad notebook")
    result = await state.convert(format, body["content"], name, validate=True,
                                 sanitize_html=_flag(request, "sanitize_html"))
    return _respond(request, result, download=bool(_flag(request, "download")))
