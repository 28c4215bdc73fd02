"""`POST /api/events` (a client emits an event) and the websocket `/api/events/subscribe` (every event
the server emits, as jupyter_server sends them: `{"schema_id": ..., **data}`)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

from himalia import CONFIG, SERVICES, WEBSOCKETS, ApiError, BadRequest, read_json

from .bus import LazyEventBus

log = logging.getLogger("himalia.events")

MAX_QUEUED = 10000
"""Events a subscriber may leave unread before it is disconnected."""


async def _logger(request: web.Request) -> Any:
    """The jupyter_events EventLogger (built on first use, in a worker thread)."""
    bus = request.app[SERVICES].events
    if not isinstance(bus, LazyEventBus):  # the role is this plugin's alone (a second one is a start-up error)
        raise ApiError("the event bus is not running", "service unavailable", status=503)
    return await bus.logger()


def _timestamp(value: Any) -> datetime | None:
    """ISO 8601; a trailing Z means UTC, also after an offset (jupyter_server's documented form)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value[:-1] if value.endswith("Z") else value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise BadRequest(f"'timestamp' must be an ISO 8601 date and time, got {value!r}", "bad event")


async def post_event(request: web.Request) -> web.Response:
    body = await read_json(request)
    bus = await _logger(request)
    missing = [key for key in ("schema_id", "version", "data") if key not in body]
    if missing:
        raise BadRequest(f"the event is missing {', '.join(repr(k) for k in missing)}; send "
                         "{\"schema_id\", \"version\", \"data\"}", "bad event")
    schema_id, version, data = body["schema_id"], body["version"], body["data"]
    if not isinstance(schema_id, str) or schema_id not in bus.schemas.schema_ids:
        known = ", ".join(sorted(bus.schemas.schema_ids))
        raise BadRequest(f"no event schema {schema_id!r} is registered; registered: {known}", "bad event")
    schema = bus.schemas.get(schema_id)
    if str(version) != str(schema.version):
        raise BadRequest(f"event schema {schema_id!r} is version {schema.version!r}, not {version!r}", "bad event")
    if not isinstance(data, dict):
        raise BadRequest(f"'data' must be a JSON object, got {type(data).__name__}", "bad event")
    timestamp = _timestamp(body.get("timestamp"))
    try:  # validated even when nobody listens (jupyter_events skips validation then)
        bus.schemas.validate_event(schema_id, data)
    except Exception as e:
        raise BadRequest(f"the event does not match schema {schema_id!r}: {_why(e)}", "bad event") from None
    bus.emit(schema_id=schema_id, data=data, timestamp_override=timestamp)
    return web.Response(status=204)


def _why(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error).splitlines()[0]
    where = "/".join(str(p) for p in getattr(error, "absolute_path", []) or [])
    return f"at 'data/{where}': {message}" if where else message


async def subscribe(request: web.Request) -> web.StreamResponse:
    bus = await _logger(request)
    ws = web.WebSocketResponse(compress=False, max_msg_size=request.app[CONFIG].server.max_body_size)
    if not ws.can_prepare(request).ok:
        raise BadRequest("expected a websocket upgrade", "not a websocket")
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if queue.qsize() >= MAX_QUEUED:
            log.warning("an event subscriber left %d events unread; disconnecting it", queue.qsize())
            queue.put_nowait(None)
            return
        queue.put_nowait({"schema_id": schema_id, **data})

    bus.add_listener(listener=listener)
    sender = asyncio.create_task(_send(ws, queue))
    try:
        async for frame in ws:  # clients send nothing on this socket; read to notice the close
            if frame.type == WSMsgType.ERROR or sender.done():
                break
    finally:
        bus.remove_listener(listener=listener)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    while (event := await queue.get()) is not None:
        try:
            await ws.send_str(json.dumps(event, default=str))
        except (ConnectionError, RuntimeError):
            break
    await ws.close()
