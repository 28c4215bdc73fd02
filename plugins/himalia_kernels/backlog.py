"""The server-wide bound on what websocket clients leave unread: the sum of every kernel client's
transport write buffer, across every kernel. Each client has its own cap too (client_max_backlog_bytes);
this one stops many stalled clients from adding up (8 clients at 64 MB each were +716 MB of RSS)."""

from __future__ import annotations

from typing import Any, Protocol


class _Client(Protocol):
    transport: Any


class Backlog:
    """Unread bytes per client, summed. Sizes are refreshed on each write to a client; a client that
    drained meanwhile is counted high until then, so when the running total passes the cap it is
    recomputed from every transport before anyone is disconnected."""

    def __init__(self, cap: int):
        self.cap = cap
        self.sizes: dict[Any, int] = {}
        self.total = 0
        self.disconnected = 0
        """Clients disconnected because of this cap, for the log and the tests."""

    def update(self, client: _Client, size: int) -> None:
        old = self.sizes.get(client, 0)
        self.sizes[client] = size
        self.total += size - old

    def forget(self, client: _Client) -> None:
        self.total -= self.sizes.pop(client, 0)

    def over_cap(self) -> Any | None:
        """The client with the largest backlog when the exact total is over the cap; else None."""
        if not self.cap or self.total <= self.cap:
            return None
        total = 0
        for client in self.sizes:
            transport = client.transport
            size = transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0
            self.sizes[client] = size
            total += size
        self.total = total
        if total <= self.cap:
            return None
        return max(self.sizes, key=self.sizes.__getitem__)


class _Buffer(Protocol):
    bytes: int

    def drop_all(self) -> None: ...


class ReplayBudget:
    """The server-wide bound on what reconnect buffers hold: each disconnected session keeps at most
    buffer_max_bytes, and all of them together, across every kernel, at most `cap`. Past it, the
    buffers of the sessions that left first are emptied (their clients are told on reconnect)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.buffers: dict[Any, None] = {}
        """Live buffers, oldest first (insertion order)."""
        self.total = 0

    def track(self, buffer: _Buffer) -> None:
        self.buffers[buffer] = None
        self.total += buffer.bytes

    def release(self, buffer: _Buffer) -> None:
        if self.buffers.pop(buffer, 0) is None:
            self.total -= buffer.bytes

    def grew(self, delta: int) -> None:
        self.total += delta

    def enforce(self) -> list[Any]:
        """Empty the oldest buffers until the total fits; the buffers emptied."""
        emptied = []
        if not self.cap:
            return emptied
        for buffer in list(self.buffers):
            if self.total <= self.cap:
                break
            if buffer.bytes:
                self.total -= buffer.bytes
                buffer.drop_all()
                emptied.append(buffer)
        return emptied
