"""Himalia's own actions as events: contents saves and kernel starts and stops from the notification
hooks, the other contents actions from the contents API's successful answers.

Kernel starts, restarts and stops come from `himalia_kernel_started/restarted/stopped`, which carry
the app. A save is told
by `himalia_contents_post_save` (whoever saved, on the provider's worker thread), which does not. Gets,
copies, renames and deletes have no hooks: they are read off the contents REST API's successful
responses (the Jupyter REST API's own shapes), so they are seen for requests, not for calls other
plugins make to the contents service. Interrupts likewise have no hook: they are read off the kernel
API's `POST /api/kernels/{id}/interrupt` answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from himalia import SERVICES, hookimpl

from .schemas import CONTENTS, KERNEL_ACTIONS

log = logging.getLogger("himalia.events")

CONTENTS_PREFIX = "/api/contents"
INTERRUPT_ROUTE = "/api/kernels/{kernel_id}/interrupt"


def emit(app: web.Application | None, schema_id: str, data: dict[str, Any]) -> None:
    bus = app[SERVICES].events if app is not None else None
    if bus is None:
        return
    try:
        bus.emit(schema_id=schema_id, data=data)
    except Exception:
        log.exception("could not emit %s %s", schema_id, data)


def kernel_started(app: web.Application | None, kernel_id: str, name: str) -> None:
    """The events plugin's `himalia_kernel_started` (called on the event loop)."""
    emit(app, KERNEL_ACTIONS, {"action": "start", "kernel_id": kernel_id, "kernel_name": name,
                               "status": "success", "msg": f"Kernel {kernel_id} ({name}) started"})


def kernel_stopped(app: web.Application | None, kernel_id: str, reason: str) -> None:
    """The events plugin's `himalia_kernel_stopped` (called on the event loop)."""
    asked = reason in ("deleted", "shutdown", "culled")
    emit(app, KERNEL_ACTIONS, {"action": "shutdown", "kernel_id": kernel_id,
                               "status": "success" if asked else "error",
                               "msg": f"Kernel {kernel_id} stopped: {reason}"})


def kernel_restarted(app: web.Application | None, kernel_id: str, reason: str) -> None:
    """The events plugin's `himalia_kernel_restarted` (called on the event loop): a client's restart
    succeeded, or the kernel came back after a death."""
    emit(app, KERNEL_ACTIONS, {"action": "restart", "kernel_id": kernel_id,
                               "status": "success" if reason == "restart requested" else "error",
                               "msg": f"Kernel {kernel_id} restarted: {reason}"})


class SaveObserver:
    """Turns one app's saves into events. `himalia_contents_post_save` does not say which app (tests
    run several) saved, so this object is registered on that app's plugin manager while the events
    service runs (the kernel hooks carry the app and are plain hookimpls of the plugin)."""

    def __init__(self, app: web.Application):
        self.app = app
        self.loop = asyncio.get_running_loop()

    @hookimpl
    def himalia_contents_post_save(self, path: str, model: dict[str, Any]) -> None:
        # the filesystem provider tells saves from its worker thread; listeners live on the loop
        try:
            self.loop.call_soon_threadsafe(emit, self.app, CONTENTS, {"action": "save", "path": path})
        except RuntimeError:  # the loop is closed: the server is gone
            pass


def _api_path(request: web.Request) -> str:
    return request.match_info.get("path", "").strip("/")


def _response_path(response: web.StreamResponse) -> str | None:
    body = getattr(response, "body", None)
    if not isinstance(body, (bytes, bytearray)):
        return None
    try:
        model = json.loads(body)
    except ValueError:
        return None
    return model.get("path") if isinstance(model, dict) and isinstance(model.get("path"), str) else None


async def _contents_event(request: web.Request, response: web.StreamResponse) -> dict[str, Any] | None:
    canonical = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
    if not (canonical.endswith(CONTENTS_PREFIX) or canonical.endswith(CONTENTS_PREFIX + "/{path}")):
        return None  # checkpoints and trust are not contents actions in jupyter_server's schema
    status, method = response.status, request.method
    if method == "GET" and status == 200:
        return {"action": "get", "path": _api_path(request)}
    if method == "DELETE" and status == 204:
        return {"action": "delete", "path": _api_path(request)}
    if method == "PATCH" and status == 200:
        new = _response_path(response)
        return {"action": "rename", "path": new, "source_path": _api_path(request)} if new is not None else None
    if method == "POST" and status == 201:
        try:
            body = await request.json()
        except ValueError:
            return None
        source = body.get("copy_from") if isinstance(body, dict) else None
        new = _response_path(response)
        if isinstance(source, str) and new is not None:
            return {"action": "copy", "path": new, "source_path": source.strip("/")}
    return None  # saves and new files are told by the post-save hook


def _interrupt_event(request: web.Request, response: web.StreamResponse) -> dict[str, Any] | None:
    resource = request.match_info.route.resource
    if request.method != "POST" or resource is None or not resource.canonical.endswith(INTERRUPT_ROUTE):
        return None
    kernel_id = request.match_info.get("kernel_id", "")
    ok = 200 <= response.status < 300
    return {"action": "interrupt", "kernel_id": kernel_id, "status": "success" if ok else "error",
            "status_code": response.status,
            "msg": f"Kernel {kernel_id} interrupted" if ok else f"Kernel {kernel_id} not interrupted"}


@web.middleware
async def contents_events(request: web.Request, handler: Any) -> web.StreamResponse:
    """Contents actions and kernel interrupts, read off the REST API's answers."""
    response = await handler(request)
    if CONTENTS_PREFIX in request.path and 200 <= response.status < 300:
        event = await _contents_event(request, response)
        if event is not None:
            emit(request.app, CONTENTS, event)
    elif request.path.endswith("/interrupt") and response.status != 404:
        event = _interrupt_event(request, response)
        if event is not None:
            emit(request.app, KERNEL_ACTIONS, event)
    return response
