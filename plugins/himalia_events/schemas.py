"""The schemas of the events Himalia itself emits. Their `$id`s are jupyter_server's, so a consumer
written for jupyter_server's events (an extension, an audit log) reads Himalia's unchanged."""

from __future__ import annotations

from typing import Any

CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"

CONTENTS_SCHEMA: dict[str, Any] = {
    "$id": CONTENTS,
    "version": "1",
    "title": "Contents actions",
    "personal-data": True,
    "description": "A file, notebook or directory was read, saved, renamed, copied or deleted through the "
                   "contents API (successful actions only).",
    "type": "object",
    "required": ["action", "path"],
    "properties": {
        "action": {"enum": ["get", "create", "save", "upload", "rename", "copy", "delete"],
                   "description": "What was done."},
        "path": {"type": "string", "description": "API path acted on (the new path of a rename or copy)."},
        "source_path": {"type": "string", "description": "API path a rename or copy started from."},
    },
}

KERNEL_ACTIONS_SCHEMA: dict[str, Any] = {
    "$id": KERNEL_ACTIONS,
    "version": "1",
    "title": "Kernel actions",
    "personal-data": True,
    "description": "A kernel was started or stopped.",
    "type": "object",
    "required": ["action", "msg"],
    "properties": {
        "action": {"enum": ["start", "interrupt", "shutdown", "restart"], "description": "What happened."},
        "kernel_id": {"type": "string", "description": "The kernel's id."},
        "kernel_name": {"type": "string", "description": "The kernelspec's name."},
        "status": {"enum": ["error", "success"], "description": "Whether it went as asked."},
        "status_code": {"type": "number", "description": "HTTP status of a remote kernel server's answer."},
        "msg": {"type": "string", "description": "What happened, in words (a stop says why)."},
    },
}
