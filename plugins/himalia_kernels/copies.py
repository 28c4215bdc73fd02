"""The reconnect buffers before the output log (issue 17): each disconnected session kept its own copy
of the iopub it missed. Kept only so that `python -m bench.restart` can measure the relay before and
after in one run (`hub.SESSION_COPIES`, set by bench/himalia_copies.py); the server never uses it
otherwise."""

from __future__ import annotations

from collections import deque

from himalia import KernelMessage, wire

from .backlog import ReplayBudget
from .outputlog import message_size as _size


class SessionBuffer:
    """Messages for one disconnected session, bounded in count and bytes; iopub is dropped oldest first,
    replies and stdin requests only when nothing but them is left over the caps; what was dropped is
    announced on replay."""

    def __init__(self, max_messages: int, max_bytes: int, budget: ReplayBudget | None = None):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.budget = budget
        self.over_budget = False
        """Emptied once because all sessions' buffers together passed buffer_max_total_bytes."""
        self.items: deque[KernelMessage] = deque()
        self.kept: deque[KernelMessage] = deque()
        """Replies and stdin requests passed over while dropping iopub; counted in the caps."""
        self.bytes = 0
        self.dropped = 0
        self.dropped_replies = 0
        self.dropped_bytes = 0
        self.dropped_parent: bytes | None = None

    def add(self, msg: KernelMessage, tag: int = 0) -> None:
        before = self.bytes
        self._add(msg)
        if self.budget is not None:
            self.budget.grew(self.bytes - before)

    def drop_all(self) -> None:
        """Forget every message (the server-wide budget is spent); say so on replay."""
        for old in (*self.kept, *self.items):
            if old.channel == "iopub":
                self.dropped += 1
            else:
                self.dropped_replies += 1
            if self.dropped_parent is None:
                self.dropped_parent = old.parent_header
        self.dropped_bytes += self.bytes
        self.items.clear()
        self.kept.clear()
        self.bytes = 0
        self.over_budget = True

    def _add(self, msg: KernelMessage) -> None:
        self.items.append(msg)
        self.bytes += _size(msg)
        while len(self.items) + len(self.kept) > self.max_messages or self.bytes > self.max_bytes:
            if self.items:
                old = self.items.popleft()
                if old.channel != "iopub":
                    self.kept.append(old)
                    continue
                self.dropped += 1
            elif self.kept:
                old = self.kept.popleft()
                self.dropped_replies += 1
            else:
                break
            size = _size(old)
            self.bytes -= size
            self.dropped_bytes += size
            if self.dropped_parent is None:
                self.dropped_parent = old.parent_header

    def replay(self) -> deque[tuple[KernelMessage, int]]:
        """Tagged 0: this buffer holds messages, not log positions (the relay then only sends them)."""
        out: deque[KernelMessage] = deque()
        if self.dropped or self.dropped_replies:
            what = f"{self.dropped} output messages"
            if self.dropped_replies:
                what += f" and {self.dropped_replies} replies or input requests"
            text = (f"[himalia] {what} ({self.dropped_bytes} bytes) produced while this "
                    f"client was disconnected were dropped: the server keeps at most {self.max_messages} "
                    f"messages and {self.max_bytes} bytes per disconnected session "
                    f"([plugins.kernels] buffer_max_messages, buffer_max_bytes)")
            if self.over_budget:
                text += (f", and at most {self.budget.cap if self.budget else 0} bytes for all disconnected "
                         "sessions together (buffer_max_total_bytes)")
            text += ".\n"
            out.append(wire.message("iopub", "stream", {"name": "stderr", "text": text},
                                    parent=self.dropped_parent or b"{}"))
        out.extend(self.kept)
        out.extend(self.items)
        return deque((msg, 0) for msg in out)
