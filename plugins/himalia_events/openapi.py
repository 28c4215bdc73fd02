"""The events plugin's part of `/api/spec.yaml`."""

from __future__ import annotations

from typing import Any

from himalia import AUTH_ERRORS, error_response

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/events": {"post": {
            "summary": "Emit an event, validated against its registered schema",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["schema_id", "version", "data"],
                "properties": {"schema_id": {"type": "string"}, "version": {"type": "string"},
                               "data": {"type": "object"},
                               "timestamp": {"type": "string", "description": "ISO 8601; default: now"}}}}}},
            "responses": {"204": {"description": "Emitted"},
                          "400": error_response("Malformed body, unknown schema or version, or data the schema "
                                                "refuses (the message says where)"), **AUTH_ERRORS},
        }},
        "/api/events/subscribe": {"get": {
            "summary": "Websocket streaming every event the server emits, as JSON {\"schema_id\", ...data}",
            "responses": {"101": {"description": "Switching to the websocket protocol"},
                          "400": error_response("Not a websocket upgrade"), **AUTH_ERRORS},
        }},
    },
}
