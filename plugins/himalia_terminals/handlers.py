"""`/api/terminals` and the terminal websocket, with the JSON-array protocol of terminado
(`["stdin", s]`, `["set_size", rows, cols]` in; `["setup", {}]`, `["stdout", s]`, `["disconnect", 1]` out)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from himalia import CONFIG, SERVICES, WEBSOCKETS, BadRequest, read_json, url_path

from .manager import Terminals

log = logging.getLogger("himalia.terminals")

MAX_BACKLOG = 16 * 1024 * 1024
"""Characters a client may leave unread before it is disconnected (the terminal keeps running)."""


def _manager(request: web.Request) -> Terminals:
    return request.app[SERVICES].require("terminals")


def _server_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}" + url_path(request.app[CONFIG].server.base_url, "/")


async def list_terminals(request: web.Request) -> web.Response:
    return web.json_response(await _manager(request).list())


async def create_terminal(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    name = body.get("name")
    cwd = body.get("cwd") or ""
    manager = _manager(request)
    manager.server_url = manager.server_url or _server_url(request)
    # jupyter_server_terminals answers 200 (JupyterLab checks for it), not 201
    return web.json_response(await manager.create(name=name, cwd=cwd))


async def get_terminal(request: web.Request) -> web.Response:
    return web.json_response(await _manager(request).get(request.match_info["name"]))


async def delete_terminal(request: web.Request) -> web.Response:
    await _manager(request).delete(request.match_info["name"])
    return web.Response(status=204)


async def terminal_websocket(request: web.Request) -> web.StreamResponse:
    terminal = _manager(request).terminal(request.match_info["name"])  # 404 before the upgrade
    ws = web.WebSocketResponse(compress=False, max_msg_size=request.app[CONFIG].server.max_body_size,
                               heartbeat=None)
    if not ws.can_prepare(request).ok:
        raise BadRequest("expected a websocket upgrade", "not a websocket")
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    client = terminal.attach(MAX_BACKLOG)
    sender = asyncio.create_task(_send(ws, client))
    try:
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            command = _parse(frame.data)
            if command is None:
                log.warning("terminal %s: ignoring a malformed message: %.80r", terminal.name, frame.data)
            elif command[0] == "stdin":
                terminal.write(command[1])
            elif command[0] == "set_size":
                client.size = (command[1], command[2])
                terminal.resize()
            if sender.done():
                break
    finally:
        terminal.detach(client)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ws.close()
    return ws


def _parse(data: str) -> list[Any] | None:
    """A well-formed client message, or None."""
    try:
        command = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(command, list) or not command:
        return None
    if command[0] == "stdin" and len(command) >= 2 and isinstance(command[1], str):
        return command
    if (command[0] == "set_size" and len(command) >= 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10000 for v in command[1:3])):
        return command
    return None


async def _send(ws: web.WebSocketResponse, client: Any) -> None:
    """Write the client's queue to its socket in order; None (shell gone, or too far behind) closes it."""
    while True:
        encoded = await client.queue.get()
        if encoded is None:
            break
        client.taken(encoded)
        try:
            await ws.send_str(encoded)
        except (ConnectionError, RuntimeError):
            break
    await ws.close()
