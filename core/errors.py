"""Error types: start-up errors (one line, exit status) and API errors (JSON body, HTTP status).

API errors are raised by services and handlers with domain words; the one error middleware in
`himalia.app` turns them into `{"message": ..., "reason": ...}` responses. A client never sees a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("himalia")


# --- start-up ---------------------------------------------------------------------------------


class StartupError(Exception):
    """A problem that stops the server from starting; printed as one line by the CLI."""

    exit_status = 2


class ConfigError(StartupError):
    """The configuration file or an override is invalid (names file, table, key)."""


class PluginError(StartupError):
    """A plugin failed to load, or its hooks are wrong (names the plugin)."""


class ProviderError(StartupError):
    """A service provider is unknown, duplicated or missing (lists what is installed)."""


# --- API ----------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered to an API client as JSON with `status`.

    `message` is for humans and names what is at fault (the path, the id, the key);
    `reason` is a short machine-friendly word or phrase, or None.
    """

    status = 500
    default_reason: str | None = None

    def __init__(self, message: str, reason: str | None = None, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason if reason is not None else self.default_reason
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400
    default_reason = "bad request"


class Unauthorized(ApiError):
    status = 401
    default_reason = "unauthorized"


class Forbidden(ApiError):
    status = 403
    default_reason = "forbidden"


class NotFound(ApiError):
    status = 404
    default_reason = "not found"


class Conflict(ApiError):
    status = 409
    default_reason = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    default_reason = "payload too large"


class BadGateway(ApiError):
    status = 502
    default_reason = "bad gateway"


class GatewayTimeout(ApiError):
    status = 504
    default_reason = "gateway timeout"


def json_error(status: int, message: str, reason: str | None = None) -> web.Response:
    """The one JSON error body every Himalia error response uses."""
    return web.Response(
        status=status,
        text=json.dumps({"message": message, "reason": reason}),
        content_type="application/json",
    )


async def read_json(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """Parse the request body as a JSON object, or raise BadRequest naming what was wrong.

    An empty body gives `{}` when `required` is false.
    """
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("request body must be a JSON object; got an empty body", "malformed json")
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}", "malformed json") from None
    except RecursionError:  # `[[[[...` a few thousand deep: the decoder gives up, the server must not
        raise BadRequest("request body is not valid JSON: nested too deeply", "malformed json") from None
    if not isinstance(body, dict):
        raise BadRequest(
            f"request body must be a JSON object, got {type(body).__name__}", "malformed json"
        )
    return body
