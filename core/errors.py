"""Error types: start-up errors (one line, exit status) and API errors (JSON body, HTTP status).

API errors are raised by services and handlers with domain words; the one error middleware in
`himalia.app` turns them into `{"message": ..., "reason": ...}` responses. A client never sees a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Collection
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


THREAD_THRESHOLD = 64 * 1024
"""Bodies larger than this (bytes) are parsed and checked in a worker thread."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def refuse_unstorable(value: str, what: str, *, allow_nul: bool = False) -> str:
    """`value` unchanged, or BadRequest naming `what` when it holds a lone surrogate (`"\\ud800"` in
    JSON: no UTF-8 file name, file or database can hold one) or a NUL (which ends a C string, so a
    file name or a path with one means something else to the OS than to us)."""
    found = (_SURROGATE if allow_nul else _UNSTORABLE).search(value)
    if found is not None:
        char = found.group()
        kind = ("a NUL character, which no name or path can hold" if char == "\x00" else
                f"a lone surrogate (U+{ord(char):04X}), which no UTF-8 text can hold")
        raise BadRequest(f"{what} contains {kind}", "bad string")
    return value


def check_strings(value: Any, where: str = "", *, nul_allowed_in: Collection[str] = ()) -> None:
    """Refuse (BadRequest naming the field, e.g. `kernel.name` or `cells[2].source`) any string,
    key or value, in decoded JSON that `refuse_unstorable` refuses; NUL is accepted under the
    top-level keys `nul_allowed_in`."""
    stack: list[tuple[Any, str, bool]] = [(value, where, False)]
    while stack:  # iterative: a deeply nested body must not exhaust the recursion limit here
        item, at, nul_ok = stack.pop()
        if isinstance(item, str):
            refuse_unstorable(item, f"field '{at}'" if at else "the body", allow_nul=nul_ok)
        elif isinstance(item, dict):
            for key, child in item.items():
                path = f"{at}.{key}" if at else key
                refuse_unstorable(key, f"a key in '{at}'" if at else "a top-level key")
                stack.append((child, path, nul_ok or (not at and key in nul_allowed_in)))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]", nul_ok) for i, child in enumerate(item))


async def read_json(request: web.Request, *, required: bool = True,
                    nul_allowed_in: Collection[str] = ("content",)) -> dict[str, Any]:
    """Parse the request body as a JSON object, or raise BadRequest naming what was wrong.

    An empty body gives `{}` when `required` is false. Every string in it, keys included, is checked
    once here, where it enters: a lone surrogate or a NUL is a 400 naming the field (see
    `check_strings`). NUL is accepted under the top-level keys `nul_allowed_in` (default: a
    contents model's `content`, since a text file may hold NUL bytes).
    """
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("request body must be a JSON object; got an empty body", "malformed json")
        return {}
    if len(raw) > THREAD_THRESHOLD:  # parsing and checking megabytes would stall every other request
        return await asyncio.to_thread(_parse_json, raw, nul_allowed_in)
    return _parse_json(raw, nul_allowed_in)


def _parse_json(raw: bytes, nul_allowed_in: Collection[str]) -> dict[str, Any]:
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
    check_strings(body, nul_allowed_in=nul_allowed_in)
    return body
