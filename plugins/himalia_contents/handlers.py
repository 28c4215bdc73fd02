"""HTTP handlers for `/api/contents`, its checkpoints, `/files/` and `/api/resolvePath`.

They speak jupyter_server's contents REST API and reach the contents service only through
`app[SERVICES].contents` (whichever provider is active), using what it declares it can do
(`himalia.ContentsCapabilities`): a route needing a capability the provider lacks answers 501 naming
it, a write to a read-only provider 403. Large bodies are parsed and large models serialized in a
worker thread so a 5 MB notebook never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import mimetypes
import os
from typing import Any, cast
from urllib.parse import quote

from aiohttp import web

from himalia import (CONFIG, SERVICES, ApiError, BadRequest, ContentsCapabilities, ContentsManager, Forbidden,
                     LocalFiles, Model, NotebookTrust, NotFound, PagedContents, PathResolving, StreamingContents,
                     check_strings, contents_capabilities, url_path)

from .models import new_model
from .paths import check_client_path

log = logging.getLogger("himalia.contents")

THREAD_THRESHOLD = 64 * 1024
"""Bodies and models above this many bytes (or listings above 500 entries) are (de)serialized in a thread."""


def contents(request: web.Request) -> ContentsManager:
    return request.app[SERVICES].require("contents")


def capabilities(request: web.Request) -> ContentsCapabilities:
    return contents_capabilities(contents(request))


def provider_name(request: web.Request) -> str:
    return request.app[CONFIG].server.contents_provider or type(contents(request)).__name__


def unsupported(request: web.Request, capability: str, what: str, hint: str = "") -> ApiError:
    """501: the active provider does not declare `capability` (see ContentsCapabilities)."""
    return ApiError(f"this server's contents provider {provider_name(request)!r} does not {what} (it does not "
                    f"declare the {capability!r} capability){hint}", f"{capability} not supported", status=501)


def writable(request: web.Request, verb: str, path: str) -> None:
    """A 403 for any write when the provider declares itself read-only."""
    if capabilities(request).read_only:
        raise Forbidden(f"cannot {verb} {path or '/'!r}: this server's contents provider "
                        f"{provider_name(request)!r} is read-only", "read only")


def with_checkpoints(request: web.Request) -> None:
    if not capabilities(request).checkpoints:
        raise unsupported(request, "checkpoints", "keep checkpoints")


def api_path(request: web.Request) -> str:
    return check_client_path(request.match_info.get("path", ""), "URL path").strip("/")


def location(request: web.Request, path: str, *extra: str) -> str:
    parts = "/".join(quote(p) for p in [path, *extra] if p)
    return url_path(request.app[CONFIG].server.base_url, f"/api/contents/{parts}" if parts else "/api/contents")


def flag(request: web.Request, name: str, default: str) -> bool:
    value = request.query.get(name, default)
    if value not in ("0", "1"):
        raise BadRequest(f"{name} argument {value!r} is invalid; it must be '0' or '1'", f"bad {name}")
    return value == "1"


def natural(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, got {value!r}", f"bad {name}")
    return int(value)


async def read_body(request: web.Request, *, required: bool) -> dict[str, Any] | None:
    """The JSON object in the body; None when the body is empty and not required."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("request body must be a JSON object; got an empty body", "malformed json")
        return None
    body = await asyncio.to_thread(_parse, raw) if len(raw) > THREAD_THRESHOLD else _parse(raw)
    return body


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}", "malformed json") from None
    except RecursionError:  # `[[[[...` a few thousand deep: the decoder gives up, the server must not
        raise BadRequest("request body is not valid JSON: nested too deeply", "malformed json") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}", "malformed json")
    check_strings(body, nul_allowed_in=("content",))  # as read_json does: no NUL or lone surrogate in names
    return body


async def model_response(request: web.Request, model: Model, *, status: int = 200,
                         with_location: bool = True) -> web.Response:
    big = (model.get("content") is not None
           and ((model.get("size") or 0) > THREAD_THRESHOLD
                or (model["type"] == "directory" and len(model["content"]) > 500)))
    try:
        text = await asyncio.to_thread(json.dumps, model) if big else json.dumps(model)
    except RecursionError:  # a notebook just shallow enough to be parsed, in a deeper stack
        raise BadRequest(f"Unreadable Notebook: {model.get('path')} is nested too deeply to be sent",
                         "unreadable notebook") from None
    headers = {"Last-Modified": str(model.get("last_modified") or "")}
    if with_location:
        headers["Location"] = location(request, model["path"])
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


# --- /api/contents/{path} -----------------------------------------------------------------------


async def get_contents(request: web.Request) -> web.StreamResponse:
    path = api_path(request)
    kind = request.query.get("type") or None
    fmt = request.query.get("format") or None
    content, hash = flag(request, "content", "1"), flag(request, "hash", "0")
    paging = _paging(request)
    cm = contents(request)
    if paging:
        model = await cast(PagedContents, cm).get(path, content=content, type=kind, format=fmt, hash=hash,
                                                  **paging)
        return await model_response(request, model, with_location=False)
    if content and contents_capabilities(cm).streaming:
        streamed = await cast(StreamingContents, cm).open_content(path, type=kind, format=fmt, hash=hash)
        if streamed is not None:
            return await _stream_model(request, streamed)
    model = await cm.get(path, content=content, type=kind, format=fmt, hash=hash)
    return await model_response(request, model, with_location=False)


async def _stream_model(request: web.Request, streamed: Any) -> web.StreamResponse:
    """Send a file's model with its content read, encoded and written a piece at a time (a worker
    thread per piece): a large file costs about one piece of memory, not several copies of itself."""
    from .reading import ChangedWhileRead

    try:
        model = streamed.model
        head = json.dumps(model)[:-1] + ', "content": "'
        response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8",
                                               "Last-Modified": str(model.get("last_modified") or "")})
        await response.prepare(request)
        await response.write(head.encode("ascii"))
        while (piece := await asyncio.to_thread(streamed.next_piece)) is not None:
            await response.write(piece)
        await response.write(b'"}')
        await response.write_eof()
        return response
    except ChangedWhileRead as e:  # too late for an error status: cut the response short, never send a mix
        log.warning("%s changed while being sent (%s); response cut short", streamed.model["path"], e)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await asyncio.to_thread(streamed.close)


def _paging(request: web.Request) -> dict[str, Any]:
    limit, offset = natural(request, "limit"), natural(request, "offset")
    if limit is None and offset is None:
        return {}
    if not capabilities(request).paging:  # a Himalia extension: a provider declares it (ContentsCapabilities)
        raise unsupported(request, "paging", "page directory listings", "; leave out limit and offset")
    return {"limit": limit, "offset": offset or 0}


async def put_contents(request: web.Request) -> web.Response:
    path = api_path(request)
    cm = contents(request)
    model = await read_body(request, required=False)
    writable(request, "write", path)
    if not model:
        return await model_response(request, await cm.new_untitled(path), status=201)
    if model.get("copy_from"):
        raise BadRequest("cannot copy with PUT, only POST", "bad request")
    body_path = model.get("path")
    if body_path is not None:  # the provider decides whether it names a hidden file (see ContentsManager)
        check_client_path(body_path, "path")
    if await cm.exists(path):
        return await model_response(request, await cm.save(path, model))
    return await model_response(request, await cm.save(path, new_model(path, model)), status=201)



async def post_contents(request: web.Request) -> web.Response:
    path = api_path(request)
    cm = contents(request)
    writable(request, "create files in", path)
    if await cm.exists(path):
        try:
            model = await cm.get(path, content=False)
        except NotFound:
            model = {"type": "directory"}
        if model["type"] != "directory":
            raise BadRequest(f"cannot POST to file {path!r}; use PUT to save it", "bad request")
    body = await read_body(request, required=False) or {}
    copy_from = body.get("copy_from")
    if copy_from:
        check_client_path(copy_from, "copy_from")
        return await model_response(request, await cm.copy(copy_from, path), status=201)
    kind = body.get("type") or ""
    ext = body.get("ext") or ""
    if not isinstance(kind, str) or kind not in ("", "directory", "file", "notebook"):
        raise BadRequest(f"type {kind!r} is invalid; expected directory, file or notebook", "bad type")
    if not isinstance(ext, str):
        raise BadRequest(f"ext must be a string, got {type(ext).__name__}", "bad model")
    if "/" in check_client_path(ext, "ext"):
        raise BadRequest(f"'ext' {ext!r} is a file name extension; it cannot hold '/'", "bad model")
    return await model_response(request, await cm.new_untitled(path, type=kind, ext=ext), status=201)


async def patch_contents(request: web.Request) -> web.Response:
    path = api_path(request)
    body = await read_body(request, required=True)
    assert body is not None
    new_path = body.get("path", path)
    if not isinstance(new_path, str):
        raise BadRequest("path must be a string", "bad model")
    check_client_path(new_path, "path")
    writable(request, "rename", path)
    model = await contents(request).rename(path, new_path.strip("/"))
    return await model_response(request, model)


async def delete_contents(request: web.Request) -> web.Response:
    path = api_path(request)
    writable(request, "delete", path)
    await contents(request).delete(path)
    return web.Response(status=204)


# --- checkpoints and trust ----------------------------------------------------------------------


async def list_checkpoints(request: web.Request) -> web.Response:
    path = api_path(request)
    with_checkpoints(request)
    return web.json_response(await contents(request).list_checkpoints(path))


async def create_checkpoint(request: web.Request) -> web.Response:
    path = api_path(request)
    with_checkpoints(request)
    writable(request, "checkpoint", path)
    checkpoint = await contents(request).create_checkpoint(path)
    return web.json_response(checkpoint, status=201,
                             headers={"Location": location(request, path, "checkpoints", checkpoint["id"])})


async def restore_checkpoint(request: web.Request) -> web.Response:
    path = api_path(request)
    with_checkpoints(request)
    writable(request, "restore", path)
    await contents(request).restore_checkpoint(path, request.match_info["checkpoint_id"])
    return web.Response(status=204)


async def delete_checkpoint(request: web.Request) -> web.Response:
    path = api_path(request)
    with_checkpoints(request)
    writable(request, "delete the checkpoint of", path)
    await contents(request).delete_checkpoint(path, request.match_info["checkpoint_id"])
    return web.Response(status=204)


async def trust_notebook(request: web.Request) -> web.Response:
    path = api_path(request)
    if not capabilities(request).trust:
        raise unsupported(request, "trust", "sign notebooks as trusted")
    await cast(NotebookTrust, contents(request)).trust_notebook(path)
    return web.Response(status=201)


# --- /files/{path} and /api/resolvePath ---------------------------------------------------------


async def _looks_like_text(opened: Any) -> bool:
    def sniff() -> bool:
        # the file already opened and checked (a regular file), read where it is: reopening a path
        # could meet something else by now, a FIFO that blocks the thread forever
        head = os.pread(opened.fileno(), 8192, 0)
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            return False
        return True

    return await asyncio.to_thread(sniff)


async def get_file(request: web.Request) -> web.StreamResponse:
    path = api_path(request)
    name = path.rsplit("/", 1)[-1]
    cm = contents(request)
    headers = {"Cache-Control": "no-cache"}
    if request.query.get("download"):
        headers["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(name)}"
    opened, os_path = (await cast(LocalFiles, cm).open_local_file(path) if contents_capabilities(cm).local_files
                       else (None, None))
    try:
        return await _serve_file(request, cm, path, name, headers, opened, os_path)
    except BaseException:
        if opened is not None:
            opened.close()
        raise


class _OpenFileResponse(web.FileResponse):
    """A FileResponse for a file we hold open (its path may be /proc/self/fd/N, naming that very open
    file): the file is closed once the response has been sent (or has failed), not before."""

    def __init__(self, opened: Any, path: str, **kwargs: Any):
        super().__init__(path, **kwargs)
        self._opened = opened

    async def prepare(self, request: web.BaseRequest) -> Any:
        try:
            return await super().prepare(request)
        finally:
            self._opened.close()


async def _serve_file(request: web.Request, cm: Any, path: str, name: str, headers: dict[str, str],
                      opened: Any, os_path: str | None) -> web.StreamResponse:
    mime, encoding = mimetypes.guess_type(name)
    if name.lower().endswith(".ipynb"):
        content_type = "application/x-ipynb+json"
    elif encoding == "gzip":
        content_type = "application/gzip"
    elif encoding is not None:
        content_type = "application/octet-stream"
    elif mime == "text/plain":
        content_type = "text/plain; charset=UTF-8"
    elif mime is not None:
        content_type = mime
    elif os_path is not None:
        text = await _looks_like_text(opened)
        content_type = "text/plain; charset=UTF-8" if text else "application/octet-stream"
    else:
        content_type = ""
    if os_path is not None:
        headers["Content-Type"] = content_type
        return _OpenFileResponse(opened, os_path, headers=headers)
    model = await cm.get(path, type="file")
    if model["format"] == "base64":
        import base64

        body = base64.b64decode(model["content"])
    else:
        body = model["content"].encode("utf-8")
    headers["Content-Type"] = content_type or (
        "application/octet-stream" if model["format"] == "base64" else "text/plain; charset=UTF-8")
    return web.Response(body=body, headers=headers)


async def resolve_path(request: web.Request) -> web.Response:
    path = request.query.get("path")
    if path is None:
        raise BadRequest("missing query argument 'path'", "missing argument")
    check_client_path(path, "path")
    cm = contents(request)
    if contents_capabilities(cm).resolve_path:
        resolved = await cast(PathResolving, cm).resolve_path(path)
    else:
        resolved = path.strip("/") if await cm.exists(path) else None
    body: dict[str, Any] = {"resolved": [{"scope": "server", "path": resolved}] if resolved is not None else []}
    kernel_id = request.query.get("kernel")
    if kernel_id:
        kernels = request.app[SERVICES].kernels
        try:
            if kernels is None:
                raise NotFound(kernel_id)
            await kernels.get_kernel(kernel_id)
        except NotFound:
            body["unresolved"] = [{"scope": "kernel", "reason": f"Kernel {kernel_id} could not be found"}]
    return web.json_response(body)
