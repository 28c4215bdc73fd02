"""`/api/sessions` and `/api/sessions/{session_id}`: jupyter_server's REST API over the session manager."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from himalia import AUTH_ERRORS, CONFIG, BadRequest, error_response, json_response, read_json, url_path

from .manager import KEEP, MANAGER


def _string(body: dict[str, Any], key: str, *, where: str = "", nullable: bool = False) -> str | None:
    value = body.get(key)
    if value is None and (nullable or key not in body):
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{where}{key}' must be a string, got {type(value).__name__}: {value!r}",
                         "invalid field")
    return value


def _legacy_notebook(body: dict[str, Any]) -> None:
    """The pre-4.0 `{"notebook": {"path": ...}}` shape, still accepted by jupyter_server."""
    notebook = body.get("notebook")
    if isinstance(notebook, dict) and "path" not in body and isinstance(notebook.get("path"), str):
        body["path"] = notebook["path"]
        body.setdefault("type", "notebook")


def _kernel(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(name, id) from `"kernel": {"name": ..., "id": ...}`; missing or null parts are None."""
    kernel = body.get("kernel")
    if kernel is None:
        return None, None
    if not isinstance(kernel, dict):
        raise BadRequest(f"'kernel' must be an object with a 'name' or an 'id', got {type(kernel).__name__}",
                         "invalid field")
    return (_string(kernel, "name", where="kernel.", nullable=True) or None,
            _string(kernel, "id", where="kernel.", nullable=True) or None)


def _location(request: web.Request, session_id: str) -> str:
    return url_path(request.app[CONFIG].server.base_url, f"/api/sessions/{session_id}")


async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response(await request.app[MANAGER].list())


async def create_session(request: web.Request) -> web.Response:
    body = await read_json(request)
    _legacy_notebook(body)
    for key in ("path", "type"):
        if key not in body:
            raise BadRequest(f"missing field in the JSON body: {key}", "missing field")
    path = _string(body, "path")
    kind = _string(body, "type")
    name = _string(body, "name", nullable=True)
    kernel_name, kernel_id = _kernel(body)
    model, _created = await request.app[MANAGER].create(path, kind, name, kernel_name=kernel_name,
                                                        kernel_id=kernel_id)
    # like jupyter_server: 201 and a Location for an existing session of the path too
    response = web.json_response(model, status=201)
    response.headers["Location"] = _location(request, model["id"])
    return response


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(await request.app[MANAGER].get(request.match_info["session_id"]))


async def patch_session(request: web.Request) -> web.Response:
    body = await read_json(request)
    _legacy_notebook(body)
    kernel_name, kernel_id = _kernel(body)
    model = await request.app[MANAGER].update(
        request.match_info["session_id"],
        path=_string(body, "path"),
        name=_string(body, "name", nullable=True) if "name" in body else KEEP,
        type=_string(body, "type"),
        kernel_name=kernel_name,
        kernel_id=kernel_id,
    )
    return web.json_response(model)


async def delete_session(request: web.Request) -> web.Response:
    await request.app[MANAGER].delete(request.match_info["session_id"])
    return web.Response(status=204)


# --- OpenAPI ------------------------------------------------------------------------------------

_KERNEL = {
    "type": "object",
    "description": "The kernel's live model, as GET /api/kernels/{kernel_id} answers it",
    "required": ["id", "name"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "last_activity": {"type": "string", "format": "date-time"},
        "execution_state": {"type": "string"},
        "connections": {"type": "integer", "minimum": 0},
        "reason": {"type": "string"},
    },
}
_SESSION = {"$ref": "#/components/schemas/Session"}
_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_KERNEL_REQUEST = {
    "type": "object",
    "description": "A running kernel by `id` (takes precedence), or a new kernel of spec `name`",
    "properties": {"id": {"type": "string", "nullable": True}, "name": {"type": "string", "nullable": True}},
}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/sessions": {
            "get": {
                "summary": "Every session whose kernel is running",
                "responses": {"200": json_response("Sessions", {"type": "array", "items": _SESSION}),
                              **AUTH_ERRORS},
            },
            "post": {
                "summary": "The session of a path: the existing one, or a new one on a new or running kernel",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["path", "type"],
                    "properties": {
                        "path": {"type": "string"},
                        "name": {"type": "string", "nullable": True},
                        "type": {"type": "string", "description": "notebook, console, file, ..."},
                        "kernel": _KERNEL_REQUEST,
                    }}}}},
                "responses": {
                    "201": {**json_response("The session (also when it already existed)", _SESSION),
                            "headers": {"Location": {"schema": {"type": "string"},
                                                     "description": "URL of the session"}}},
                    "400": error_response("Malformed JSON, a missing or mistyped field, or an unknown kernel id"),
                    "404": error_response("No kernelspec of that name (the message lists the installed ones)"),
                    "409": error_response("The kernel of that id is dead"),
                    "503": error_response("The new kernel could not be launched or died before it answered; "
                                          "it was shut down and no session was recorded"),
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/sessions/{session_id}": {
            "parameters": [_ID],
            "get": {
                "summary": "One session",
                "responses": {"200": json_response("The session", _SESSION),
                              "404": error_response("No such session, or its kernel is gone"),
                              **AUTH_ERRORS},
            },
            "patch": {
                "summary": "Change path, name or type; switch to a running kernel (id) or a new one (name)",
                "description": "The previous kernel is shut down when no other session uses it.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "name": {"type": "string", "nullable": True},
                        "type": {"type": "string"},
                        "kernel": _KERNEL_REQUEST,
                    }}}}},
                "responses": {
                    "200": json_response("The changed session", _SESSION),
                    "400": error_response("Malformed JSON, a mistyped field, or an unknown kernel id"),
                    "404": error_response("No such session, or no kernelspec of that name"),
                    "409": error_response("The kernel of that id is dead"),
                    "503": error_response("The new kernel could not be launched or died before it answered; "
                                          "it was shut down and the session is unchanged"),
                    **AUTH_ERRORS,
                },
            },
            "delete": {
                "summary": "Shut the session's kernel down (unless another session uses it) and forget the session",
                "responses": {"204": {"description": "Deleted"},
                              "404": error_response("No such session"),
                              **AUTH_ERRORS},
            },
        },
    },
    "components": {"schemas": {"Session": {
        "type": "object",
        "required": ["id", "path", "name", "type", "kernel"],
        "properties": {
            "id": {"type": "string"},
            "path": {"type": "string"},
            "name": {"type": "string", "nullable": True},
            "type": {"type": "string"},
            "kernel": _KERNEL,
            "notebook": {"type": "object", "description": "Deprecated; notebooks only",
                         "properties": {"path": {"type": "string"},
                                        "name": {"type": "string", "nullable": True}}},
        },
    }}},
}
