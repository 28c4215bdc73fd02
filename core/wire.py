"""The two websocket wire protocols for kernel messages, both ways, without re-serialising content, and
the header of the messages the server makes itself.

Shared by the kernels plugin (the client side of the kernel websocket: `decode`, `encode`) and the
gateway plugin (the upstream side, towards a remote gateway: the same two), so the format lives in
one place.

`v1.kernel.websocket.jupyter.org` (JupyterLab's default): one binary frame per message,
`[n: u64 LE][n offsets: u64 LE][channel][header][parent][metadata][content][buffers...]`.
Legacy: a JSON text frame holding the whole message (plus `channel`), or, when it has buffers,
a binary frame `[k: u32 BE][k offsets: u32 BE][json][buffers...]`.
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

from .activity import isoformat, utcnow
from .errors import BadRequest
from .services import KernelMessage

V1 = "v1.kernel.websocket.jupyter.org"
LEGACY = ""

CHANNELS = frozenset({"shell", "control", "stdin", "iopub"})


class MalformedMessage(BadRequest):
    """A websocket frame that is not a kernel message in the expected protocol."""

    default_reason = "malformed message"


# --- v1 ----------------------------------------------------------------------------------------


def to_v1(msg: KernelMessage) -> bytes:
    channel = msg.channel.encode()
    parts = [channel, msg.header, msg.parent_header, msg.metadata, msg.content, *msg.buffers]
    n = len(parts) + 1
    offsets = [8 * (n + 1)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return b"".join([struct.pack(f"<{n + 1}Q", n, *offsets), *parts])


def from_v1(data: bytes) -> KernelMessage:
    try:
        (n,) = struct.unpack_from("<Q", data)
        if not 6 <= n <= 1 + (len(data) - 8) // 8:
            raise ValueError(f"{n} offsets")
        offsets = struct.unpack_from(f"<{n}Q", data, 8)
        if list(offsets) != sorted(offsets) or offsets[-1] > len(data):
            raise ValueError("offsets out of order or past the end")
        parts = [data[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
        channel = parts[0].decode()
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise MalformedMessage(f"malformed v1 kernel message: {e}") from None
    return _checked(KernelMessage(channel, parts[1], parts[2], parts[3], parts[4], parts[5:]))


# --- legacy JSON ----------------------------------------------------------------------------------


def to_legacy(msg: KernelMessage) -> tuple[bytes, bool]:
    """The frame and whether it is binary (only when the message carries buffers)."""
    hdr = msg.header_dict
    tail = json.dumps({"channel": msg.channel, "msg_id": hdr.get("msg_id"), "msg_type": hdr.get("msg_type")})
    head = b"".join([b'{"header":', msg.header, b',"parent_header":', msg.parent_header,
                     b',"metadata":', msg.metadata, b',"content":', msg.content, b","])
    if not msg.buffers:
        # as jupyter_server sends it: an empty buffers list when the message has none
        return b"".join([head, b'"buffers":[],', tail[1:].encode()]), False
    parts = [head + tail[1:].encode(), *msg.buffers]
    offsets = [4 * (len(parts) + 1)]
    for p in parts[:-1]:
        offsets.append(offsets[-1] + len(p))
    return b"".join([struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets), *parts]), True


def from_legacy_text(text: str | bytes) -> KernelMessage:
    return _from_dict(_load(text), [])


def from_legacy_binary(data: bytes) -> KernelMessage:
    try:
        (k,) = struct.unpack_from("!I", data)
        if not 1 <= k <= (len(data) - 4) // 4:
            raise ValueError(f"{k} parts")
        offsets = [*struct.unpack_from(f"!{k}I", data, 4), len(data)]
        if offsets != sorted(offsets):
            raise ValueError("offsets out of order or past the end")
        parts = [data[offsets[i]:offsets[i + 1]] for i in range(k)]
    except (struct.error, ValueError) as e:
        raise MalformedMessage(f"malformed binary kernel message: {e}") from None
    return _from_dict(_load(parts[0]), parts[1:])


def _load(raw: str | bytes) -> dict[str, Any]:
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MalformedMessage(f"kernel message is not valid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise MalformedMessage("kernel message must be a JSON object")
    return msg


def _from_dict(msg: dict[str, Any], buffers: list[bytes]) -> KernelMessage:
    def part(key: str) -> bytes:
        value = msg.get(key, {})
        if not isinstance(value, dict):
            raise MalformedMessage(f"kernel message '{key}' must be an object")
        return json.dumps(value).encode()

    header = msg.get("header")
    if not isinstance(header, dict):
        raise MalformedMessage("kernel message has no header object")
    channel = msg.get("channel")
    if not isinstance(channel, str):
        raise MalformedMessage("kernel message has no channel")
    km = KernelMessage(channel, part("header"), part("parent_header"), part("metadata"), part("content"),
                       list(buffers))
    km._header = header
    return _checked(km)


def _checked(msg: KernelMessage) -> KernelMessage:
    if msg.channel not in CHANNELS:
        raise MalformedMessage(f"unknown channel {msg.channel!r}; expected shell, control, stdin or iopub")
    try:
        header = msg.header_dict
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MalformedMessage(f"kernel message header is not valid JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("msg_id"), str) \
            or not isinstance(header.get("msg_type"), str):
        raise MalformedMessage("kernel message header needs string 'msg_id' and 'msg_type'")
    return msg


def header(msg_type: str, *, session: str = "himalia", msg_id: str | None = None) -> dict[str, Any]:
    """A Jupyter message header (protocol 5.3) for a message the server makes itself."""
    return {"msg_id": msg_id or uuid.uuid4().hex, "msg_type": msg_type, "username": "himalia",
            "session": session, "date": isoformat(utcnow()), "version": "5.3"}


def message(channel: str, msg_type: str, content: dict[str, Any] | None = None, *, session: str = "himalia",
            parent: bytes = b"{}") -> KernelMessage:
    """A message the server makes itself (a kernel_info_request, a status, a stream note)."""
    km = KernelMessage(channel, json.dumps(header(msg_type, session=session)).encode(), parent, b"{}",
                       json.dumps(content or {}).encode())
    return km


def status_message(execution_state: str, reason: str | None = None, *, session: str = "himalia",
                   parent: bytes = b"{}") -> KernelMessage:
    """An iopub `status` message made by the server, for states only the server knows
    (restarting after a death, dead, gone), with the reason when there is one."""
    content: dict[str, Any] = {"execution_state": execution_state}
    if reason is not None:
        content["reason"] = reason
    return message("iopub", "status", content, session=session, parent=parent)


SERVER_STATES = ("restarting", "dead")
"""iopub states only a kernel provider announces (a kernel never publishes them itself)."""


def answer_to(msg: KernelMessage, request: KernelMessage) -> str | None:
    """Whether `msg` shows the kernel is up after `request` (a kernel_info_request) was sent:
    "answered" for the reply or any status the kernel publishes itself, the reason for a `dead`
    status, None for anything else (a `restarting` status is no answer: the provider still tries)."""
    if msg.channel == "iopub" and msg.msg_type == "status":
        content = json.loads(msg.content)
        state = content.get("execution_state")
        if state == "dead":
            return content.get("reason") or "died"
        return None if state in SERVER_STATES else "answered"
    if msg.msg_type == "kernel_info_reply" and json.loads(msg.parent_header).get("msg_id") == \
            request.header_dict["msg_id"]:
        return "answered"
    return None


def decode(data: bytes | str, protocol: str) -> KernelMessage:
    """A client's (or a gateway's) websocket frame → a message: text frames are legacy JSON; binary frames
    are v1 under the v1 protocol, else legacy binary. Raises MalformedMessage."""
    if isinstance(data, str):
        return from_legacy_text(data)
    return from_v1(data) if protocol == V1 else from_legacy_binary(data)


def encode(msg: KernelMessage, protocol: str) -> tuple[bytes, bool]:
    """The websocket frame for `msg` in `protocol`, and whether it is binary."""
    if protocol == V1:
        return to_v1(msg), True
    return to_legacy(msg)
