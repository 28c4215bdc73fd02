"""One output log per kernel: a bounded ring (messages and bytes) of the kernel's iopub messages, each
with a sequence number that only grows, so a client can ask for everything after sequence N: on the
websocket (`?since=N`, then live on the same stream) or over REST (`GET /api/kernels/{id}/outputs`)."""

from __future__ import annotations

import base64
import json
from collections import deque
from typing import Any

from himalia import KernelMessage, wire

NOT_REPLAYED = ("status", "comm_open", "comm_msg", "comm_close")
"""iopub message types a `since` catch-up on the websocket leaves out: a new client would take stale
statuses for live ones, and comm messages belong to the connection whose widgets made them."""


def message_size(msg: KernelMessage) -> int:
    """The bytes a message holds (its JSON parts and buffers), as the log's and the sessions' caps count them."""
    return (len(msg.header) + len(msg.parent_header) + len(msg.metadata) + len(msg.content)
            + sum(len(b) for b in msg.buffers))


class OutputLog:
    """The ring. Sequence numbers start at 1; `next_seq` is the number the next message gets."""

    def __init__(self, max_messages: int, max_bytes: int):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.entries: deque[tuple[int, KernelMessage, int]] = deque()
        self.next_seq = 1
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_messages > 0 and self.max_bytes > 0

    @property
    def oldest_seq(self) -> int:
        """The oldest sequence number still held (`next_seq` when the log is empty)."""
        return self.entries[0][0] if self.entries else self.next_seq

    def append(self, msg: KernelMessage) -> int:
        seq = self.next_seq
        self.next_seq += 1
        if not self.enabled:
            return seq
        size = message_size(msg)
        self.entries.append((seq, msg, size))
        self.bytes += size
        while self.entries and (len(self.entries) > self.max_messages or self.bytes > self.max_bytes):
            self.bytes -= self.entries.popleft()[2]
        return seq

    def resume(self, last: int) -> None:
        """Go on from sequence number `last` of an earlier server (keep mode): the next message is
        `last + 2`, after a gap marker (`last + 1`) standing for what the kernel published while no
        server was there to hear it."""
        self.next_seq = max(self.next_seq, last + 1)
        self.append(wire.message("iopub", "stream", {
            "name": "stderr", "text": "[himalia] the server restarted here: output the kernel published while "
                                      "no server was running is lost.\n"}))

    def after(self, since: int, limit: int | None = None) -> tuple[int, list[tuple[int, KernelMessage]]]:
        """The messages with a sequence number above `since` (at most `limit`), and how many of the
        ones asked for are no longer held (the gap)."""
        gap = max(0, self.oldest_seq - since - 1)
        out = []
        for seq, msg, _ in self.entries:
            if seq > since:
                out.append((seq, msg))
                if limit is not None and len(out) >= limit:
                    break
        return gap, out

    def catch_up(self, since: int) -> deque[tuple[KernelMessage, int]]:
        """What a websocket client asking for `since` gets before going live, each message with its
        sequence number: one notice (stderr) if part of it is gone, then the held messages after `since`
        but statuses and comm messages."""
        gap, entries = self.after(since)
        out: deque[tuple[KernelMessage, int]] = deque()
        if gap:
            text = (f"[himalia] {gap} output messages after sequence {since} are no longer held: the server "
                    f"keeps the last {self.max_messages} messages and {self.max_bytes} bytes of each kernel's "
                    "output ([plugins.kernels] output_log_max_messages, output_log_max_bytes).\n")
            out.append((wire.message("iopub", "stream", {"name": "stderr", "text": text}), self.oldest_seq - 1))
        out.extend((msg, seq) for seq, msg in entries if msg.msg_type not in NOT_REPLAYED)
        return out

    def model(self, since: int, limit: int | None) -> dict[str, Any]:
        """The REST form: {oldest_seq, next_seq, gap, messages[{seq, channel, header, ..., buffers}]}
        (buffers base64)."""
        gap, entries = self.after(since, limit)
        return {
            "oldest_seq": self.oldest_seq, "next_seq": self.next_seq, "gap": gap,
            "messages": [{"seq": seq, "channel": msg.channel, "header": json.loads(msg.header),
                          "parent_header": json.loads(msg.parent_header), "metadata": json.loads(msg.metadata),
                          "content": json.loads(msg.content),
                          "buffers": [base64.b64encode(bytes(b)).decode() for b in msg.buffers]}
                         for seq, msg in entries],
        }
