"""`GET /api/me`: who is asking, and which of the asked permissions they hold."""

from __future__ import annotations

import json

from aiohttp import web

from himalia import AUTH_ERRORS, IDENTITY, BadRequest, error_response, json_response


async def me(request: web.Request) -> web.Response:
    identity = request[IDENTITY]
    permissions: dict[str, list[str]] = {}
    raw = request.query.get("permissions")
    if raw:
        try:
            asked = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequest("'permissions' must be JSON: {\"resource\": [\"action\", ...]}",
                             "malformed permissions") from None
        if not isinstance(asked, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v)
            for k, v in asked.items()
        ):
            raise BadRequest("'permissions' must map resource names to lists of actions",
                             "malformed permissions")
        # the token holder owns the server: every permission asked for is granted
        permissions = {k: list(v) for k, v in asked.items()}
    return web.json_response({"identity": identity.model(), "permissions": permissions})


OPENAPI = {
    "paths": {
        "/api/me": {"get": {
            "summary": "The authenticated identity and the asked permissions it holds",
            "parameters": [{"name": "permissions", "in": "query", "required": False,
                            "schema": {"type": "string"},
                            "description": "JSON object: resource → list of actions"}],
            "responses": {
                "200": json_response("Identity", {
                    "type": "object", "required": ["identity", "permissions"],
                    "properties": {"identity": {"type": "object"}, "permissions": {"type": "object"}}}),
                "400": error_response("Malformed permissions"),
                **AUTH_ERRORS,
            },
        }},
    },
}
