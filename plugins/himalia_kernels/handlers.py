"""HTTP and websocket handlers for kernels and kernelspecs; they work with any kernel provider."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

from himalia import CONFIG, RESTART_WEBSOCKETS, SERVICES, WEBSOCKETS, BadRequest, ChannelsClosed, KernelManager, Model, read_json, wire

from .live import LiveKernels

log = logging.getLogger("himalia.kernels")


def _kernels(request: web.Request) -> KernelManager:
    return request.app[SERVICES].require("kernels")


def _relay(request: web.Request) -> LiveKernels:
    """This plugin's relay, under its own role (this plugin fills it: the annotation only names the type)."""
    return request.app[SERVICES].require("kernel_relay")


def _url(request: web.Request, path: str) -> str:
    base = request.app[CONFIG].server.base_url.strip("/")
    return ("/" + base if base else "") + path


# --- kernelspecs --------------------------------------------------------------------------------


def _with_urls(request: web.Request, model: Model) -> Model:
    """Resource file names (as services give them) → URLs on this server, as jupyter_server writes them."""
    name = model["name"]
    resources = {}
    for key, value in model.get("resources", {}).items():
        if "/" in value:  # already a URL (a provider may give them)
            resources[key] = value
        else:
            resources[key] = _url(request, f"/kernelspecs/{quote(name)}/{quote(value)}")
    return {**model, "resources": resources}


async def list_kernelspecs(request: web.Request) -> web.Response:
    specs = await _kernels(request).list_kernelspecs()
    body = {"default": specs.get("default"),
            "kernelspecs": {n: _with_urls(request, m) for n, m in specs.get("kernelspecs", {}).items()}}
    return web.json_response(body)


async def get_kernelspec(request: web.Request) -> web.Response:
    model = await _kernels(request).get_kernelspec(request.match_info["name"])
    return web.json_response(_with_urls(request, model))


async def get_kernelspec_resource(request: web.Request) -> web.Response:
    data, content_type = await _kernels(request).get_kernelspec_resource(
        request.match_info["name"], request.match_info["resource"])
    return web.Response(body=data, content_type=content_type)


# --- kernels ------------------------------------------------------------------------------------


async def list_kernels(request: web.Request) -> web.Response:
    return web.json_response(await _kernels(request).list_kernels())


def _env_problem(key: str, value: str) -> str | None:
    """Why the OS would refuse this environment variable, or None."""
    if not key or "=" in key:
        return "its name is empty or contains '='"
    if "\0" in key or "\0" in value:
        return "it contains a NUL character"
    try:
        key.encode(), value.encode()
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    return None


async def start_kernel(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    name = body.get("name")
    path = body.get("path")
    env = body.get("env")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"'name' must be a string, got {type(name).__name__}", "bad kernel model")
    if path is not None and not isinstance(path, str):
        raise BadRequest(f"'path' must be a string, got {type(path).__name__}", "bad kernel model")
    if env is not None and (not isinstance(env, dict)
                            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise BadRequest("'env' must be an object of string values", "bad kernel model")
    for key, value in (env or {}).items():
        problem = _env_problem(key, value)
        if problem:
            raise BadRequest(f"'env' variable {key!r} cannot be passed to a process: {problem}", "bad kernel model")
    model = await _kernels(request).start_kernel(name or None, path=path, env=env)
    return web.json_response(model, status=201,
                             headers={"Location": _url(request, f"/api/kernels/{quote(model['id'])}")})


async def get_kernel(request: web.Request) -> web.Response:
    return web.json_response(await _kernels(request).get_kernel(request.match_info["kernel_id"]))


async def delete_kernel(request: web.Request) -> web.Response:
    await _kernels(request).shutdown_kernel(request.match_info["kernel_id"])
    return web.Response(status=204)


async def interrupt_kernel(request: web.Request) -> web.Response:
    await _kernels(request).interrupt_kernel(request.match_info["kernel_id"])
    return web.Response(status=204)


async def restart_kernel(request: web.Request) -> web.Response:
    return web.json_response(await _kernels(request).restart_kernel(request.match_info["kernel_id"]))


# --- the websocket ------------------------------------------------------------------------------


async def kernel_channels(request: web.Request) -> web.StreamResponse:
    """`/api/kernels/{id}/channels?session_id=...`: both wire protocols, every channel."""
    kernel_id = request.match_info["kernel_id"]
    kernels = _relay(request)
    await kernels.get_kernel(kernel_id)  # unknown ids are refused before anything is allocated
    since = _seq(request, "since")
    ws = web.WebSocketResponse(protocols=(wire.V1,), compress=False,
                               max_msg_size=request.app[CONFIG].server.max_body_size)
    if not ws.can_prepare(request).ok:
        raise BadRequest("expected a websocket upgrade", "not a websocket")
    hub = kernels.hub(kernel_id)
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    if kernels.config.persist:  # the kernel outlives this server: clients are to reconnect (1012)
        request.app[RESTART_WEBSOCKETS].add(ws)
    protocol = wire.V1 if ws.ws_protocol == wire.V1 else wire.LEGACY
    transport = request.transport
    if transport is not None:
        # never pause the relay on one client: it is disconnected once its backlog passes the cap
        cap = kernels.config.client_max_backlog_bytes
        transport.set_write_buffer_limits(high=2 * cap + 1024 * 1024)
    client = hub.attach(ws, protocol, request.query.get("session_id"), transport, since=since)
    try:
        try:
            await asyncio.wait_for(hub.wait_ready(), kernels.config.kernel_info_timeout + 10)
        except asyncio.TimeoutError:
            hub.failed = hub.failed or "the kernel did not answer"
        if hub.failed or hub.closing:
            await ws.close(code=1011, message=(hub.failed or "kernel shut down").encode()[:120])
            return ws
        await client.flush_replay()
        async for frame in ws:
            if frame.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            try:
                msg = wire.decode(frame.data, protocol)
            except wire.MalformedMessage as e:
                log.warning("kernel %s: ignoring a malformed message from a client: %s", kernel_id, e.message)
                continue
            try:
                await hub.send(client, msg)
            except ChannelsClosed:
                break
    finally:
        hub.detach(client)
    return ws


def _seq(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest(f"query parameter {name!r} must be a sequence number (an integer >= 0), got {value!r}",
                         "bad sequence number")
    return int(value)


async def kernel_outputs(request: web.Request) -> web.Response:
    """`GET /api/kernels/{id}/outputs?since=N&limit=M`: the kernel's output log after sequence N."""
    kernel_id = request.match_info["kernel_id"]
    kernels = _relay(request)
    await kernels.get_kernel(kernel_id)
    since = _seq(request, "since") or 0
    limit = _seq(request, "limit")
    return web.json_response(kernels.hub(kernel_id).output_log.model(since, limit or None))


# --- OpenAPI ------------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    from himalia import AUTH_ERRORS, error_response, json_response

    kernel = {"$ref": "#/components/schemas/Kernel"}
    kernel_id = {"name": "kernel_id", "in": "path", "required": True, "schema": {"type": "string"}}
    spec_name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    not_found = {"404": error_response("No such kernel")}
    return {
        "paths": {
            "/api/kernelspecs": {"get": {
                "summary": "Installed kernelspecs and the default one",
                "responses": {"200": json_response("Kernelspecs", {
                    "type": "object", "required": ["default", "kernelspecs"],
                    "properties": {"default": {"type": "string", "nullable": True},
                                   "kernelspecs": {"type": "object", "additionalProperties":
                                                   {"$ref": "#/components/schemas/KernelSpec"}}}}),
                              **AUTH_ERRORS},
            }},
            "/api/kernelspecs/{name}": {"get": {
                "summary": "One kernelspec", "parameters": [spec_name],
                "responses": {"200": json_response("Kernelspec", {"$ref": "#/components/schemas/KernelSpec"}),
                              "404": error_response("No such kernelspec (the message lists installed ones)"),
                              **AUTH_ERRORS},
            }},
            "/kernelspecs/{name}/{resource}": {"get": {
                "summary": "A kernelspec resource file (logo, kernel.js)",
                "parameters": [spec_name, {"name": "resource", "in": "path", "required": True,
                                           "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The file",
                                      "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                              "404": error_response("No such kernelspec or resource"), **AUTH_ERRORS},
            }},
            "/api/kernels": {
                "get": {"summary": "Running kernels",
                        "responses": {"200": json_response("Kernels", {"type": "array", "items": kernel}),
                                      **AUTH_ERRORS}},
                "post": {
                    "summary": "Start a kernel",
                    "requestBody": {"required": False, "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "name": {"type": "string", "description": "Kernelspec; default when absent"},
                            "path": {"type": "string", "description": "API directory to run in"},
                            "env": {"type": "object", "additionalProperties": {"type": "string"}}}}}}},
                    "responses": {"201": {**json_response("The kernel", kernel),
                                          "headers": {"Location": {"schema": {"type": "string"}}}},
                                  "400": error_response("Malformed body or path outside the root"),
                                  "404": error_response("No such kernelspec (the message lists installed ones)"),
                                  "500": error_response("The kernel failed to start"),
                                  "503": error_response("The kernel died before it answered (the message "
                                                        "names the exit code or signal) or did not answer "
                                                        "within kernel_info_timeout; nothing is left running"),
                                  **AUTH_ERRORS},
                },
            },
            "/api/kernels/{kernel_id}": {
                "parameters": [kernel_id],
                "get": {"summary": "One kernel",
                        "responses": {"200": json_response("The kernel", kernel), **not_found, **AUTH_ERRORS}},
                "delete": {"summary": "Shut a kernel down",
                           "responses": {"204": {"description": "Shut down"}, **not_found, **AUTH_ERRORS}},
            },
            "/api/kernels/{kernel_id}/interrupt": {
                "parameters": [kernel_id],
                "post": {"summary": "Interrupt a kernel (signal or message, per its interrupt_mode)",
                         "responses": {"204": {"description": "Interrupted"}, **not_found,
                                       "409": error_response("The kernel is dead"), **AUTH_ERRORS}},
            },
            "/api/kernels/{kernel_id}/restart": {
                "parameters": [kernel_id],
                "post": {"summary": "Restart a kernel; returns once it answers again",
                         "responses": {"200": json_response("The kernel", kernel), **not_found,
                                       "500": error_response("The kernel failed to restart"),
                                       "503": error_response("The kernel died while restarting, or did not "
                                                             "answer within kernel_info_timeout"),
                                       **AUTH_ERRORS}},
            },
            "/api/kernels/{kernel_id}/channels": {
                "parameters": [kernel_id, {"name": "session_id", "in": "query", "required": False,
                                           "schema": {"type": "string"},
                                           "description": "Client session; reconnecting with it replays "
                                                          "output buffered while it was away"},
                               {"name": "since", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 0},
                                "description": "Replay the kernel's output log after this sequence number "
                                               "(no status or comm messages; a notice if part is gone), "
                                               "then relay live, with nothing missed or repeated"}],
                "get": {"summary": "Websocket to the kernel's channels (legacy JSON or the "
                                   "v1.kernel.websocket.jupyter.org subprotocol)",
                        "responses": {"101": {"description": "Switching to the websocket protocol"},
                                      "400": error_response("Not a websocket upgrade, or a bad `since`"),
                                      **not_found, **AUTH_ERRORS}},
            },
            "/api/kernels/{kernel_id}/outputs": {
                "parameters": [kernel_id,
                               {"name": "since", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 0}, "description": "Messages after "
                                "this sequence number (default 0: all that is held)"},
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 0}, "description": "At most this many"}],
                "get": {"summary": "The kernel's output log: its iopub messages, numbered",
                        "responses": {"200": json_response("The log after `since`", {
                            "type": "object", "required": ["oldest_seq", "next_seq", "gap", "messages"],
                            "properties": {
                                "oldest_seq": {"type": "integer"}, "next_seq": {"type": "integer"},
                                "gap": {"type": "integer", "description": "Messages after `since` no longer "
                                                                          "held"},
                                "messages": {"type": "array", "items": {"type": "object", "properties": {
                                    "seq": {"type": "integer"}, "channel": {"type": "string"},
                                    "header": {"type": "object"}, "parent_header": {"type": "object"},
                                    "metadata": {"type": "object"}, "content": {"type": "object"},
                                    "buffers": {"type": "array", "items": {"type": "string",
                                                                           "format": "byte"}}}}}}}),
                                      "400": error_response("A bad `since` or `limit`"), **not_found,
                                      **AUTH_ERRORS}},
            },
        },
        "components": {"schemas": {
            "Kernel": {
                "type": "object", "required": ["id", "name", "last_activity", "execution_state", "connections"],
                "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "last_activity": {"type": "string", "format": "date-time"},
                    "execution_state": {"type": "string", "description": "starting, idle, busy, restarting, dead"},
                    "connections": {"type": "integer", "minimum": 0},
                    "reason": {"type": "string", "description": "Why the kernel last died or restarted"},
                },
            },
            "KernelSpec": {
                "type": "object", "required": ["name", "spec", "resources"],
                "properties": {"name": {"type": "string"}, "spec": {"type": "object"},
                               "resources": {"type": "object", "additionalProperties": {"type": "string"}}},
            },
        }},
    }
