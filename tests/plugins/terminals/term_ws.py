"""A terminal websocket client for the tests: send stdin and sizes, wait for output with a deadline."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

TIMEOUT = 30.0


class TermClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.output = ""
        self.messages: list[list[Any]] = []

    async def next(self, timeout: float = TIMEOUT) -> list[Any] | None:
        """The next message, or None once the server closed the socket."""
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return None
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        message = json.loads(frame.data)
        self.messages.append(message)
        if message[0] == "stdout":
            self.output += message[1]
        return message

    async def until(self, text: str, timeout: float = TIMEOUT) -> str:
        """Read until `text` has appeared in the output; the output so far."""
        async def go() -> str:
            while text not in self.output:
                if await self.next() is None:
                    raise AssertionError(f"socket closed before {text!r} appeared; output: {self.output!r}")
            return self.output
        try:
            return await asyncio.wait_for(go(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{text!r} did not appear within {timeout}s; output: {self.output!r}") from None

    async def until_closed(self, timeout: float = TIMEOUT) -> list[list[Any]]:
        async def go() -> None:
            while await self.next() is not None:
                pass
        await asyncio.wait_for(go(), timeout)
        return self.messages

    async def stdin(self, text: str) -> None:
        await self.ws.send_str(json.dumps(["stdin", text]))

    async def run(self, command: str) -> None:
        await self.stdin(command + "\r")

    async def set_size(self, rows: int, cols: int) -> None:
        await self.ws.send_str(json.dumps(["set_size", rows, cols]))
