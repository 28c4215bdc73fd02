"""Telling whether a kernel the sessions plugin started came up: it answers, or it is reported dead
first. Only the KernelManager service and the KernelChannels contract are used, so any kernel
provider (local processes, a remote gateway) works the same way."""

from __future__ import annotations

import asyncio
import json
import uuid

from himalia import ChannelsClosed, KernelChannels, KernelManager, KernelMessage, NotFound, isoformat, utcnow

_SERVER_STATES = ("restarting", "dead")
"""iopub states only the kernel provider announces (the kernel itself never publishes them)."""


def kernel_info_request() -> KernelMessage:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "kernel_info_request", "username": "himalia",
              "session": uuid.uuid4().hex, "date": isoformat(utcnow()), "version": "5.3"}
    return KernelMessage("shell", json.dumps(header).encode(), b"{}", b"{}", b"{}")


async def first_answer(kernels: KernelManager, kernel_id: str) -> str | None:
    """Wait until kernel `kernel_id` answers: None. If it is reported dead first, the reason
    ("died: exit code 3"). Unbounded: the caller bounds it (and may cancel it at any point).

    A `restarting` status is no answer: the provider is still trying, and reports `dead` when it
    gives up. Any status the kernel publishes itself, or the reply to our kernel_info_request,
    proves it runs (open_channels has usually seen it answer already).
    """
    died = await _dead_reason(kernels, kernel_id)  # reported before anyone listened: no status will come
    if died is not None:
        return died
    try:
        channels = await _open(kernels, kernel_id)
    except NotFound:
        return "stopped while starting"
    try:
        request = kernel_info_request()
        await channels.send(request)
        while True:
            msg = await channels.recv()
            if msg.channel == "iopub" and msg.msg_type == "status":
                content = json.loads(msg.content)
                state = content.get("execution_state")
                if state == "dead":
                    return content.get("reason") or "died"
                if state not in _SERVER_STATES:
                    return None
            elif msg.msg_type == "kernel_info_reply" and \
                    json.loads(msg.parent_header).get("msg_id") == request.header_dict["msg_id"]:
                return None
    except ChannelsClosed:  # shut down or lost under us: the model says which
        return await _dead_reason(kernels, kernel_id)
    finally:
        await channels.close()


async def _open(kernels: KernelManager, kernel_id: str) -> KernelChannels:
    """`open_channels`, safe to cancel: channels that open after all are closed again."""
    opening = asyncio.ensure_future(kernels.open_channels(kernel_id))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_when_open)
        raise


_closing: set[asyncio.Task[None]] = set()


def _close_when_open(opening: asyncio.Future[KernelChannels]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    task = asyncio.ensure_future(opening.result().close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _dead_reason(kernels: KernelManager, kernel_id: str) -> str | None:
    try:
        model = await kernels.get_kernel(kernel_id)
    except NotFound:
        return "stopped while starting"
    if model.get("execution_state") == "dead":
        return model.get("reason") or "died"
    return None  # running, with channels that closed (a lost gateway connection): not a death


def start_failure(kernel_name: str, reason: str) -> str:
    """The message for a kernel reported stopped before it answered: "kernel 'x' died at start: exit code 3"."""
    if reason == "died" or reason.startswith("died:"):
        detail = reason.removeprefix("died").lstrip(": ")
        return f"kernel '{kernel_name}' died at start" + (f": {detail}" if detail else "")
    return f"kernel '{kernel_name}' stopped before it answered: {reason}"
