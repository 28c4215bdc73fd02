"""The provider-independent relay: one KernelChannels per kernel shared by all its websockets.

A `KernelHub` fans iopub out to every client, routes replies and stdin requests to the client whose
request they answer, tracks execution_state/last_activity from iopub, and numbers iopub in the kernel's
output log. A disconnected session keeps a cursor into that log and its own replies and stdin requests;
reconnecting replays what it missed from both, in the order it happened.

Every message queued for a client travels with a tag: for iopub its sequence number in the output log,
for a reply or stdin request the sequence number of the last iopub message before it. A client's
`written` is the tag of the last message written to its socket, which is where its session's cursor
stands if it goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Callable

from aiohttp import WSMsgType, web

from himalia import ChannelsClosed, KernelChannels, KernelManager, KernelMessage, isoformat, wire

from .backlog import Backlog, ReplayBudget
from .config import KernelsConfig
from .copies import SessionBuffer
from .frames import write_frames, ws_frame
from .outputlog import OutputLog, message_size

log = logging.getLogger("himalia.kernels")

_OWNERS_MAX = 10000
_REPLY_CHANNELS = ("shell", "control")


encode = wire.encode

COALESCE = True
"""Write what the relay produced for a client in one loop iteration with one transport write (each
message still its own websocket frame). False: one `send_frame` per message, the relay before issue 22
(bench/himalia_unbatched.py sets it, to measure both in one run)."""
_BATCH_BYTES = 256 * 1024
"""A client's pending frames are written once they reach this size, even mid-iteration."""
_BATCH_MESSAGES = 512
"""After dispatching this many messages without the loop getting a turn, the relay writes and yields."""
SESSION_COPIES = False
"""True: each disconnected session keeps its own buffer of the iopub it misses (`copies.SessionBuffer`),
the relay before the output log replaced it (bench/himalia_copies.py sets it, to measure both in one
run). False: a cursor into the kernel's output log (`SessionCursor`)."""

Tagged = tuple[KernelMessage, int]
"""A message and its tag (see the module docstring)."""


class Client:
    """One websocket attached to a hub, under its session key."""

    __slots__ = ("ws", "protocol", "session_key", "buffered", "transport", "max_backlog", "replaying",
                 "closed", "hub", "out", "out_bytes", "out_msgs", "written", "__weakref__")

    def __init__(self, hub: KernelHub, ws: web.WebSocketResponse, protocol: str, session_key: str,
                 buffered: bool, transport: Any, max_backlog: int):
        self.hub = hub
        self.ws = ws
        self.protocol = protocol
        self.session_key = session_key
        self.buffered = buffered
        self.transport = transport
        self.max_backlog = max_backlog
        self.replaying: deque[Tagged] | None = None
        self.closed = False
        self.out: list[bytes] = []
        """Websocket frames (as chunks) waiting for this iteration's write."""
        self.out_bytes = 0
        self.out_msgs: list[Tagged] = []
        """The messages those frames carry, kept for the session if the client goes before the write."""
        self.written = hub.output_log.next_seq - 1
        """The tag of the last message written to this client: it has been sent the output log up to here."""

    async def deliver(self, msg: KernelMessage, frames: dict[Any, Any], tag: int) -> None:
        """Send `msg` to this client: queued for the write at the end of this loop iteration (COALESCE),
        else written now. `frames` caches the encodings of `msg`, shared by every client."""
        if self.closed:
            return
        if self.replaying is not None:
            self.replaying.append((msg, tag))
            return
        protocol = self.protocol
        if not COALESCE:
            frame = frames.get(protocol)
            if frame is None:
                frame = frames[protocol] = encode(msg, protocol)
            await self._write(frame, (msg, tag))
            return
        chunks = frames.get(protocol)
        if chunks is None:
            chunks = frames[protocol] = await ws_frame(*encode(msg, protocol))
        if not self._admit((msg, tag), self.out_bytes):
            return
        if not self.out:
            self.hub.dirty(self)
        self.out.extend(chunks)
        self.out_bytes += sum(map(len, chunks)) if len(chunks) > 1 else len(chunks[0])
        self.out_msgs.append((msg, tag))
        if self.out_bytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write every frame queued for this client in one transport write."""
        out = self.out
        if not out:
            return
        msgs = self.out_msgs
        self.out, self.out_bytes, self.out_msgs = [], 0, []
        if self.closed:
            return
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            self.hub.detach(self, unsent=msgs)
            return
        try:
            write_frames(transport, out)
            self.written = max(self.written, msgs[-1][1])
        except (ConnectionError, OSError, RuntimeError):
            self.hub.detach(self, unsent=msgs)
        except Exception:
            log.exception("kernel %s: cannot write to client %s; disconnecting it", self.hub.kernel_id,
                          self.session_key)
            self.hub.detach(self, unsent=msgs)
            asyncio.ensure_future(_close(self.ws, 1011, b"write failed"))

    async def _write(self, frame: tuple[bytes, bool], item: Tagged | None, tag: int | None = None) -> bool:
        """Send `frame`; False when the client is gone, detached then with `item` (the message the frame
        carries, unless it is still in `replaying`) kept for its session: it may be the final output
        or the idle status. `tag`: the frame's tag when `item` is None."""
        if not self._admit(item, 0):
            return False
        try:
            await self.ws.send_frame(frame[0], WSMsgType.BINARY if frame[1] else WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            self.hub.detach(self, unsent=(item,) if item is not None else ())
            return False
        written = item[1] if item is not None else tag
        if written is not None and written > self.written:
            self.written = written
        return True

    def _admit(self, item: Tagged | None, queued: int) -> bool:
        """Whether the client can take one more message (`queued` bytes are waiting for this iteration's
        write); if not it is detached, `item` kept for its session, or disconnected when it reads too
        slowly or the server-wide backlog is over its cap."""
        unsent = (item,) if item is not None else ()
        transport = self.transport
        if transport is None or transport.is_closing():
            self.hub.detach(self, unsent=unsent)
            return False
        unread = transport.get_write_buffer_size() + queued
        if unread > self.max_backlog:
            log.warning("kernel %s: client %s reads too slowly (%d bytes unread, over [plugins.kernels] "
                        "client_max_backlog_bytes); disconnecting it", self.hub.kernel_id, self.session_key, unread)
            self.hub.detach(self, unsent=unsent)
            asyncio.ensure_future(self.ws.close(code=1013, message=b"client too slow"))
            return False
        backlog = self.hub.backlog
        if backlog is not None:
            backlog.update(self, unread)
            victim = backlog.over_cap()
            if victim is not None:
                log.warning("kernel %s: websocket clients leave %d bytes unread in all, over [plugins.kernels] "
                            "server_max_backlog_bytes (%d); disconnecting client %s of kernel %s, the one with "
                            "the most (%d bytes)", self.hub.kernel_id, backlog.total, backlog.cap,
                            victim.session_key, victim.hub.kernel_id, backlog.sizes[victim])
                backlog.disconnected += 1
                victim.hub.detach(victim, unsent=unsent if victim is self else ())
                asyncio.ensure_future(victim.ws.close(code=1013, message=b"server backlog full"))
                if victim is self:
                    return False
        return True

    async def flush_replay(self) -> None:
        """Send what was buffered while this session was away, then go live (live messages queue
        behind the replay until it is done)."""
        pending = self.replaying
        while pending and not self.closed:
            # leave the message in `replaying` until sent: a failed send buffers it with the rest
            msg, tag = pending[0]
            if await self._write(encode(msg, self.protocol), None, tag):
                pending.popleft()
        self.replaying = None


class SessionCursor:
    """What one disconnected session has missed: where it stands in the kernel's output log (the iopub
    itself is held once, by the log) and its own replies and stdin requests, bounded in count and bytes
    (the oldest dropped first); both announced on replay when part of it is gone."""

    def __init__(self, log: OutputLog, cursor: int, max_messages: int, max_bytes: int,
                 budget: ReplayBudget | None = None):
        self.log = log
        self.cursor = cursor
        """The sequence number of the last iopub message the session was sent."""
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.budget = budget
        self.over_budget = False
        """Emptied once because all sessions' replies together passed buffer_max_total_bytes."""
        self.own: deque[Tagged] = deque()
        self.bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0

    def add(self, msg: KernelMessage, tag: int) -> None:
        """Keep a reply or stdin request for the session (`tag`: the log's last sequence number then)."""
        before = self.bytes
        self.own.append((msg, tag))
        self.bytes += message_size(msg)
        while self.own and (len(self.own) > self.max_messages or self.bytes > self.max_bytes):
            size = message_size(self.own.popleft()[0])
            self.bytes -= size
            self.dropped += 1
            self.dropped_bytes += size
        if self.budget is not None:
            self.budget.grew(self.bytes - before)

    def drop_all(self) -> None:
        """Forget every reply kept (the server-wide budget is spent); say so on replay."""
        self.dropped += len(self.own)
        self.dropped_bytes += self.bytes
        self.own.clear()
        self.bytes = 0
        self.over_budget = True

    def replay(self) -> deque[Tagged]:
        """What the session missed, in the order it happened: the log after the cursor with the kept
        replies in their places, after a notice for each part that is gone."""
        out: deque[Tagged] = deque()
        gap, entries = self.log.after(self.cursor)
        if gap:
            log_ = self.log
            text = (f"[himalia] {gap} output messages produced while this client was disconnected are no "
                    f"longer held: the server keeps the last {log_.max_messages} messages and {log_.max_bytes} "
                    "bytes of each kernel's output ([plugins.kernels] output_log_max_messages, "
                    "output_log_max_bytes).\n")
            # attributed to the request whose output follows the gap: usually the one whose output it lost
            parent = entries[0][1].parent_header if entries else b"{}"
            out.append((_synthetic("stream", {"name": "stderr", "text": text}, parent), log_.oldest_seq - 1))
        if self.dropped:
            text = (f"[himalia] {self.dropped} replies or input requests ({self.dropped_bytes} bytes) for this "
                    f"client, made while it was disconnected, were dropped: the server keeps at most "
                    f"{self.max_messages} and {self.max_bytes} bytes per disconnected session ([plugins.kernels] "
                    "buffer_max_messages, buffer_max_bytes)")
            if self.over_budget:
                text += (f", and at most {self.budget.cap if self.budget else 0} bytes for all disconnected "
                         "sessions together (buffer_max_total_bytes)")
            out.append((_synthetic("stream", {"name": "stderr", "text": text + ".\n"}), self.cursor))
        own = self.own
        i = 0
        for seq, msg in entries:
            while i < len(own) and own[i][1] < seq:
                out.append(own[i])
                i += 1
            out.append((msg, seq))
        while i < len(own):
            out.append(own[i])
            i += 1
        return out


_ASKING_SESSION = "himalia-relay-restart"
"""The session of the relay's own kernel_info requests after a restart: no client has it, so their
replies are dropped."""


def _synthetic(msg_type: str, content: dict[str, Any], parent: bytes = b"{}") -> KernelMessage:
    return wire.message("iopub", msg_type, content, parent=parent)


class KernelHub:
    """The relay for one kernel: its channels, its clients, its live activity."""

    def __init__(self, kernel_id: str, kernels: KernelManager, config: KernelsConfig,
                 on_transition: Callable[[KernelHub, str, str], None], backlog: Backlog | None = None,
                 replay_budget: ReplayBudget | None = None):
        self.kernel_id = kernel_id
        self.backlog = backlog
        self.replay_budget = replay_budget
        self.config = config
        self.clients: dict[str, Client] = {}
        self.buffers: OrderedDict[str, SessionCursor | SessionBuffer] = OrderedDict()
        """What each disconnected session missed, oldest session first."""
        self.owners: dict[str, str] = {}
        """msg_id sent to the kernel → the session key of the connection whose request it is."""
        self.aliases: OrderedDict[str, list[Any]] = OrderedDict()
        """msg_id sent to the kernel → [the msg_id the client gave, answers still to come (its reply and
        its idle status)], for a request whose msg_id another connection's pending request already
        uses: replies are routed by (connection, msg_id)."""
        self.execution_state = "starting"
        self.reason: str | None = None
        self.last_activity = time.time()
        self.channels: KernelChannels | None = None
        self.output_log = OutputLog(config.output_log_max_messages, config.output_log_max_bytes)
        """The kernel's iopub, numbered, for clients that ask for what came after sequence N."""
        self.failed: str | None = None
        self.closing = False
        self._kernels = kernels
        self._on_transition = on_transition
        """Told `(hub, state, reason)` when the provider's statuses say the kernel is restarting (after a
        death), has answered again after that ('restarted'), or is dead."""
        self._restarting = False
        self._asking: asyncio.Task[None] | None = None
        self._answered_again = asyncio.Event()
        self._ready = asyncio.Event()
        self._dirty: list[Client] = []
        """Clients with frames queued in this loop iteration, written by `_flush` when the relay yields."""
        self._flush_handle: asyncio.Handle | None = None
        self._since_yield = 0
        self._task = asyncio.create_task(self._run(), name=f"kernel {kernel_id} relay")

    # -- live model fields ------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self.clients)

    def live(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "execution_state": self.execution_state,
            "connections": len(self.clients),
            "last_activity": isoformat(datetime.fromtimestamp(self.last_activity, timezone.utc)),
        }
        if self.reason:
            fields["reason"] = self.reason
        return fields

    # -- the relay --------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def _run(self) -> None:
        try:
            self.channels = await self._kernels.open_channels(self.kernel_id)
        except Exception as e:  # reported to every client that connects
            self.failed = f"cannot open the kernel's channels: {type(e).__name__}: {e}"
            log.warning("kernel %s: %s", self.kernel_id, self.failed)
            self._ready.set()
            return
        self._ready.set()
        recv = self.channels.recv
        ready = getattr(self.channels, "recv_ready", None)
        if not callable(ready):
            ready = None
        while True:
            try:
                msg = await recv()
            except ChannelsClosed:
                break
            try:
                await self._dispatch(msg)
            except Exception:  # one bad message must not end the relay
                log.exception("kernel %s: cannot relay a %s message", self.kernel_id, msg.channel)
            self._since_yield += 1
            if self._dirty and ready is not None and not ready():
                # nothing more to read: write now, in this callback (a lone message goes out at once)
                self._flush()
            elif self._since_yield >= _BATCH_MESSAGES:
                # the kernel keeps the channels full: write what is queued and let the loop run
                self._flush()
                await asyncio.sleep(0)
        self._flush()
        if self.closing:
            code, why = 1000, b"kernel shut down"
        else:  # the provider ended the channels (a remote gateway gone): say so, the next client reopens
            code, why = 1011, b"the kernel's channels closed"
            self.failed = self.failed or why.decode()
        for client in list(self.clients.values()):
            self.detach(client, buffer=False)
            await _close(client.ws, code, why)

    def dirty(self, client: Client) -> None:
        """`client` has frames queued: write them once this loop iteration's messages are dispatched
        (the relay yields when the channels have nothing more ready: no timer, no added latency)."""
        self._dirty.append(client)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write every client's queued frames (each client's in one write)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._since_yield = 0
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            client.flush()  # never raises: a client whose write fails is detached, its messages kept

    @property
    def ended(self) -> bool:
        """True when this relay can serve no one any more (its channels failed or closed) but was not
        closed on purpose; the kernel may still be reachable with fresh channels."""
        return not self.closing and (self.failed is not None or self._task.done())

    async def _dispatch(self, msg: KernelMessage) -> None:
        sent_as = None
        if self.aliases:
            msg, sent_as = self._unalias(msg)
        if msg.channel == "iopub":
            self.last_activity = time.time()
            if msg.msg_type == "status":
                self._track(json.loads(msg.content))
            seq = self.output_log.append(msg)
            if SESSION_COPIES and self.buffers:
                for buffer in self.buffers.values():
                    buffer.add(msg, seq)
                if self.replay_budget is not None and self.replay_budget.total > self.replay_budget.cap:
                    self._enforce_budget()
            frames: dict[str, tuple[bytes, bool]] = {}
            for client in list(self.clients.values()):
                await client.deliver(msg, frames, seq)
            return
        parent = json.loads(msg.parent_header) if msg.parent_header != b"{}" else {}
        parent_id = sent_as or parent.get("msg_id")
        key = self.owners.get(parent_id)
        if key is not None and msg.channel in _REPLY_CHANNELS and msg.msg_type.endswith("_reply"):
            del self.owners[parent_id]
        if key is None:
            key = parent.get("session")
        client = self.clients.get(key) if key is not None else None
        if client is not None:
            await client.deliver(msg, {}, self.output_log.next_seq - 1)
        elif key in self.buffers:
            self.buffers[key].add(msg, self.output_log.next_seq - 1)
            if self.replay_budget is not None and self.replay_budget.total > self.replay_budget.cap:
                self._enforce_budget()
        else:
            log.debug("kernel %s: %s %s for no known client dropped", self.kernel_id, msg.channel, msg.msg_type)

    def _track(self, content: dict[str, Any]) -> None:
        state = content.get("execution_state")
        if not isinstance(state, str):
            return
        self.execution_state = state
        if state in ("restarting", "dead"):
            self.reason = content.get("reason") or self.reason or "died"
            self._restarting = state == "restarting"
            self._on_transition(self, state, self.reason)
            if self._restarting and (self._asking is None or self._asking.done()):
                self._asking = asyncio.create_task(self._ask_until_restarted(), name=f"kernel {self.kernel_id} ask")
        elif self._restarting and state in ("idle", "busy"):  # the new kernel answers ('starting' may not)
            self._restarting = False
            self._answered_again.set()
            self._on_transition(self, "restarted", self.reason or "died")

    async def _ask_until_restarted(self) -> None:
        """After a 'restarting' status: ask the kernel for kernel_info until a status of the new kernel
        arrives (its answer's busy/idle), so 'restarted' is seen without waiting for a client (a remote
        gateway relays nothing of the new kernel unasked). Bounded by kernel_info_timeout; the replies go
        to no client."""
        self._answered_again.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.kernel_info_timeout
        delay = 0.5
        while self._restarting and not self.closing and self.channels is not None and loop.time() < deadline:
            try:
                await self.channels.send(wire.message("shell", "kernel_info_request", session=_ASKING_SESSION))
                await asyncio.wait_for(self._answered_again.wait(), delay)
                return
            except asyncio.TimeoutError:
                delay = min(delay * 2, 5.0)
            except (ChannelsClosed, ConnectionError, RuntimeError):
                return

    def _unalias(self, msg: KernelMessage) -> tuple[KernelMessage, str | None]:
        """A message answering an aliased request, with the msg_id its client gave back in its parent
        header; and the msg_id it was sent under (None when the message answers no aliased request)."""
        if msg.parent_header == b"{}":
            return msg, None
        parent = json.loads(msg.parent_header)
        sent_as = parent.get("msg_id")
        alias = self.aliases.get(sent_as)
        if alias is None:
            return msg, None
        if (msg.channel == "iopub" and msg.msg_type == "status" and b'"idle"' in msg.content) or \
                (msg.channel in _REPLY_CHANNELS and msg.msg_type.endswith("_reply")):
            alias[1] -= 1
            if alias[1] <= 0:  # both its reply and its idle status are through
                del self.aliases[sent_as]
        parent["msg_id"] = alias[0]
        return KernelMessage(msg.channel, msg.header, json.dumps(parent).encode(), msg.metadata, msg.content,
                             msg.buffers), sent_as

    async def send(self, client: Client, msg: KernelMessage) -> None:
        """Relay a client's message to the kernel, remembering whom the replies go to.

        Replies and stdin requests are routed by (connection, msg_id), as jupyter_server's per-connection
        channels route them: a request reusing the msg_id of another connection's pending request (one
        it saw on iopub, say) is sent under a fresh msg_id, and its answers get the client's back."""
        if msg.channel in _REPLY_CHANNELS or msg.channel == "stdin":
            if msg.channel != "stdin":
                owners = self.owners
                msg_id = msg.header_dict["msg_id"]
                owner = owners.get(msg_id)
                if owner is not None and owner != client.session_key:
                    sent_as = uuid.uuid4().hex
                    header = {**msg.header_dict, "msg_id": sent_as}
                    msg = KernelMessage(msg.channel, json.dumps(header).encode(), msg.parent_header, msg.metadata,
                                        msg.content, msg.buffers)
                    self.aliases[sent_as] = [msg_id, 2]
                    while len(self.aliases) > _OWNERS_MAX:
                        self.aliases.popitem(last=False)
                    log.info("kernel %s: session %s reused the msg_id of a pending request of another "
                             "connection; sent as %s", self.kernel_id, client.session_key, sent_as)
                    msg_id = sent_as
                owners[msg_id] = client.session_key
                if len(owners) > _OWNERS_MAX:
                    del owners[next(iter(owners))]
            await self.channels.send(msg)  # type: ignore[union-attr]
        else:
            log.debug("kernel %s: client sent on %s; ignored", self.kernel_id, msg.channel)

    # -- clients ----------------------------------------------------------------------------

    def attach(self, ws: web.WebSocketResponse, protocol: str, session_key: str | None, transport: Any,
               since: int | None = None) -> Client:
        """A new client of this kernel. Reconnecting with a session key replays what its session was
        not sent; with `since`, the client gets the output log after that sequence number instead (no
        statuses or comm messages), then goes live on the same stream with nothing missed between."""
        buffered = bool(session_key)
        key = session_key or uuid.uuid4().hex
        old = self.clients.pop(key, None)
        unsent: list[Tagged] = []
        client = Client(self, ws, protocol, key, buffered, transport, self.config.client_max_backlog_bytes)
        if old is not None:
            log.info("kernel %s: session %s reconnected; closing its stale websocket", self.kernel_id, key)
            # what the stale websocket was never sent (a replay in progress, frames queued for this loop
            # iteration's write) goes to the new one, as a reconnect buffer would
            unsent = [*(old.replaying or ()), *old.out_msgs]
            client.written = old.written
            old.closed = True
            old.out, old.out_bytes, old.out_msgs = [], 0, []
            if self.backlog is not None:
                self.backlog.forget(old)
            asyncio.ensure_future(_close(old.ws, 1000, b"replaced by a new connection"))
        buffer = self.buffers.pop(key, None)
        if buffer is not None:
            self._release(buffer)
            client.replaying = buffer.replay()
            if isinstance(buffer, SessionCursor):
                client.written = buffer.cursor
        if since is not None:
            # the output log has the iopub messages after `since`; the replies and input requests not
            # sent to the stale websocket are not in it
            client.replaying = self.output_log.catch_up(since)
            client.written = since
            unsent = [item for item in unsent if item[0].channel != "iopub"]
        if unsent:
            if client.replaying is None:
                client.replaying = deque()
            client.replaying.extend(unsent)
        self.clients[key] = client
        return client

    def detach(self, client: Client, *, buffer: bool = True, unsent: Iterable[Tagged] = ()) -> None:
        """Forget a client; keep for its session (when it has one) where it stands in the output log and
        the replies and stdin requests it was not sent: in its pending replay, queued for its next
        write, or `unsent`."""
        if client.closed:
            return
        client.closed = True
        queued = client.out_msgs
        client.out, client.out_bytes, client.out_msgs = [], 0, []
        if self.backlog is not None:
            self.backlog.forget(client)
        if self.clients.get(client.session_key) is not client:
            return
        del self.clients[client.session_key]
        if not buffer or not client.buffered or self.closing or self.config.buffer_max_sessions == 0:
            return
        buf: SessionCursor | SessionBuffer
        if SESSION_COPIES:
            buf = SessionBuffer(self.config.buffer_max_messages, self.config.buffer_max_bytes, self.replay_budget)
        else:
            buf = SessionCursor(self.output_log, client.written, self.config.buffer_max_messages,
                                self.config.buffer_max_bytes, self.replay_budget)
        if self.replay_budget is not None:
            self.replay_budget.track(buf)
        for msg, tag in (*(client.replaying or ()), *queued, *unsent):
            if SESSION_COPIES or msg.channel != "iopub":  # iopub is in the log (notices are made anew)
                buf.add(msg, tag)
        self.buffers[client.session_key] = buf
        while len(self.buffers) > self.config.buffer_max_sessions:
            dropped, old = self.buffers.popitem(last=False)
            self._release(old)
            log.info("kernel %s: dropped the reconnect buffer of session %s", self.kernel_id, dropped)
        if self.replay_budget is not None and self.replay_budget.total > self.replay_budget.cap:
            self._enforce_budget()

    def _release(self, buffer: SessionCursor | SessionBuffer) -> None:
        if self.replay_budget is not None:
            self.replay_budget.release(buffer)

    def _enforce_budget(self) -> None:
        budget = self.replay_budget
        assert budget is not None
        emptied = budget.enforce()
        if emptied:
            log.warning("reconnect buffers of disconnected sessions hold more than [plugins.kernels] "
                        "buffer_max_total_bytes (%d) in all; emptied the %d oldest (their clients are told "
                        "on reconnect)", budget.cap, len(emptied))

    async def close(self) -> None:
        """Stop relaying: close the channels and every websocket."""
        self.closing = True
        if self._asking is not None:
            self._asking.cancel()
            await asyncio.gather(self._asking, return_exceptions=True)
        for buffer in self.buffers.values():
            self._release(buffer)
        self.buffers.clear()
        if self.channels is not None:
            await self.channels.close()
        else:
            self._task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._task.cancel()
        self._flush()  # frames queued before the relay stopped leave ahead of the close frames
        for client in list(self.clients.values()):
            self.detach(client, buffer=False)
            await _close(client.ws, 1000, b"kernel shut down")


async def _close(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), 5)
    except (asyncio.TimeoutError, ConnectionError, RuntimeError):
        pass
