"""Himalia's own OpenAPI description, served at `GET /api/spec.yaml`.

The core describes its routes; each plugin adds its own through `himalia_openapi`. The document
is written as JSON, which is valid YAML 1.2, so no YAML library is needed to serve or read it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ._version import __version__
from .keys import CONFIG, HOOKS, OPENAPI_CACHE
from .urls import url_path

"""Filled on the first spec request; created empty by the app factory."""

ERROR = {"$ref": "#/components/schemas/Error"}


def error_response(description: str) -> dict[str, Any]:
    """A response whose body is the JSON error model; plugins use it for their 4xx/5xx."""
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AUTH_ERRORS = {"401": error_response("Missing or wrong token"),
               "403": error_response("Forbidden (XSRF, origin, non-local Host)")}

_VERSION = {
    "summary": "Server version; the only route that needs no authentication",
    "security": [],
    "responses": {"200": json_response("The version", {
        "type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}})},
}


CORE: dict[str, Any] = {
    "paths": {
        "/api": {"get": _VERSION},
        "/api/": {"get": _VERSION},
        "/api/shutdown": {"post": {
            "summary": "Stop the server (as on SIGTERM: kernels are shut down); the answer comes first",
            "responses": {"200": json_response("Shutting down", {
                "type": "object", "properties": {"message": {"type": "string"}}}), **AUTH_ERRORS},
        }},
        "/api/status": {"get": {
            "summary": "Server activity",
            "responses": {"200": json_response("Activity", {"$ref": "#/components/schemas/Status"}),
                          **AUTH_ERRORS},
        }},
        "/api/spec.yaml": {"get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI document (JSON, which is YAML)",
                                  "content": {"text/x-yaml": {"schema": {"type": "string"}}}},
                          **AUTH_ERRORS},
        }},
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["message", "reason"],
                "properties": {"message": {"type": "string"}, "reason": {"type": "string", "nullable": True}},
            },
            "Status": {
                "type": "object",
                "required": ["started", "last_activity", "connections", "kernels"],
                "properties": {
                    "started": {"type": "string", "format": "date-time"},
                    "last_activity": {"type": "string", "format": "date-time"},
                    "connections": {"type": "integer", "minimum": 0},
                    "kernels": {"type": "integer", "minimum": 0},
                },
            },
        },
        "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "`Authorization: token <token>`"},
        },
    },
}


def build(app: web.Application) -> dict[str, Any]:
    config = app[CONFIG]
    base = url_path(config.server.base_url, "/").rstrip("/")
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "Himalia", "version": __version__,
                 "description": "The Jupyter server REST API as Himalia serves it."},
        "servers": [{"url": base or "/"}],
        "security": [{"token": []}],
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
    }
    fragments = [("core", CORE)] + [(a.plugin, a.item) for a in app[HOOKS].openapi(config)]
    for _plugin, fragment in fragments:
        for path, ops in fragment.get("paths", {}).items():
            doc["paths"].setdefault(path, {}).update(ops)
        for kind, items in fragment.get("components", {}).items():
            doc["components"].setdefault(kind, {}).update(items)
    # answers the core gives for any route, whichever plugin registered it (see app.error_middleware)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters" or "responses" not in op:
                continue
            if "requestBody" in op:
                op["responses"].setdefault("413", error_response("Body larger than [server] max_body_size"))
            if "{" in path:
                op["responses"].setdefault("400", error_response("URL path not valid UTF-8"))
    return doc


def spec_text(app: web.Application) -> str:
    cache = app[OPENAPI_CACHE]
    if "text" not in cache:
        cache["text"] = json.dumps(build(app), indent=1)
    return cache["text"]
