"""The terminals plugin's part of `/api/spec.yaml`."""

from __future__ import annotations

from typing import Any

from himalia import AUTH_ERRORS, error_response, json_response

TERMINAL = {"$ref": "#/components/schemas/Terminal"}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "example": "1"},
        "description": "The terminal's name (letters, digits, underscores)"}
NOT_FOUND = {"404": error_response("No such terminal")}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/terminals": {
            "get": {"summary": "Running terminals",
                    "responses": {"200": json_response("Terminals", {"type": "array", "items": TERMINAL}),
                                  **AUTH_ERRORS}},
            "post": {
                "summary": "Start a shell in a new terminal",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "name": {"type": "string", "description": "Name; default: the next free number"},
                        "cwd": {"type": "string", "description": "API directory to start in; default: the root"},
                    }}}}},
                "responses": {"200": json_response("The terminal", TERMINAL),
                              "400": error_response("Malformed body, bad name, or cwd not a directory in the root"),
                              "409": error_response("A terminal of that name is running"),
                              "500": error_response("The shell failed to start (shell_command, $SHELL)"),
                              **AUTH_ERRORS},
            },
        },
        "/api/terminals/{name}": {
            "parameters": [NAME],
            "get": {"summary": "One terminal",
                    "responses": {"200": json_response("The terminal", TERMINAL), **NOT_FOUND, **AUTH_ERRORS}},
            "delete": {"summary": "End a terminal and every process its shell started",
                       "responses": {"204": {"description": "Ended"}, **NOT_FOUND, **AUTH_ERRORS}},
        },
        "/terminals/websocket/{name}": {
            "parameters": [NAME],
            "get": {"summary": "Websocket to a terminal: JSON arrays [\"stdin\", s], [\"set_size\", rows, cols] "
                               "in; [\"setup\", {}], [\"stdout\", s], [\"disconnect\", 1] out. Recent output "
                               "is replayed on connect",
                    "responses": {"101": {"description": "Switching to the websocket protocol"},
                                  "400": error_response("Not a websocket upgrade"), **NOT_FOUND, **AUTH_ERRORS}},
        },
    },
    "components": {"schemas": {
        "Terminal": {
            "type": "object", "required": ["name", "last_activity"],
            "properties": {"name": {"type": "string"},
                           "last_activity": {"type": "string", "format": "date-time"}},
        },
    }},
}
