"""`KernelChannels` for a local kernel: its zmq sockets, driven by their file descriptors on the loop."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from himalia import ChannelsClosed, KernelMessage, wire

if TYPE_CHECKING:
    from .manager import _Kernel

log = logging.getLogger("himalia.local")

DELIMITER = b"<IDS|MSG>"
_INTERNAL_MAX = 256


class LocalChannels:
    """A kernel's shell, control, stdin (one shared zmq identity) and iopub sockets; see KernelChannels.

    The relay's hot path: no task per socket and no queue hop. `recv` drains every readable socket
    without blocking and waits on the sockets' file descriptors only when all are empty.
    """

    def __init__(self, kernel: _Kernel, ready_timeout: float):
        self.answered = False
        """True once the kernel answered since the last (re)start; False while it has not (yet)."""
        self._kernel = kernel
        self._km = kernel.km
        self._timeout = ready_timeout
        self._pending: deque[KernelMessage] = deque()
        self._drained = False
        """`recv_ready` just read the sockets empty (nothing ran since: no need to read them again)."""
        self._owned: list[Any] = []
        self._sockets: dict[str, Any] = {}
        self._identity = b""
        self._stdin_up = asyncio.Event()
        self._stdin_monitor: tuple[Any, Any, Any] | None = None
        self._fds: list[int] = []
        self._ports: tuple[Any, ...] = ()
        self._waiter: asyncio.Future[None] | None = None
        self._internal: dict[str, None] = {}
        self._quiet: dict[str, None] = {}
        """msg_ids of the server's own requests whose iopub messages no client gets (oldest first)."""
        """Requests made for the server (a pool member's relocation) whose iopub clients never see."""
        self._iopub_seen = asyncio.Event()
        self._ready = asyncio.Event()
        self._nudge_task: asyncio.Task[None] | None = None
        self._nudge_ids: set[str] = set()
        self._closed = False
        self._session_id = str(uuid.uuid4())
        self._loop = asyncio.get_running_loop()

    # -- sockets ----------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect iopub, shell and control now (they may connect before the kernel listens: zmq
        retries), and ask for kernel_info until the kernel answers; stdin once it has answered."""
        # jupyter_client makes and connects the sockets (urls, curve keys); the IOLoop manager would
        # wrap them into tornado streams, so call the mixin's methods. We use them synchronously
        # through shadows, driven by their file descriptors.
        from jupyter_client.connect import ConnectionFileMixin as Connect

        km = self._km
        self._identity = uuid.uuid4().hex.encode()
        self._ports = self._port_key()
        self._owned, self._sockets = [], {}
        self._add("iopub", Connect.connect_iopub(km))
        self._add("shell", Connect.connect_shell(km, identity=self._identity))
        self._add("control", Connect.connect_control(km))
        self._loop.call_soon(self._readable)
        self._start_nudge()

    def _add(self, name: str, owned: Any) -> None:
        import zmq

        owned.linger = 0
        self._owned.append(owned)
        sock = zmq.Socket.shadow(owned.underlying)
        self._sockets[name] = sock
        fd = sock.getsockopt(zmq.FD)
        self._fds.append(fd)
        self._loop.add_reader(fd, self._readable)

    def _connect_stdin(self) -> None:
        """stdin, under the shell socket's identity (the kernel routes an input request to the identity
        of the request's sender), connected once the kernel has answered; `_stdin_up` is set when its
        handshake is through. The kernel's router drops what it sends to an identity it does not know,
        and nothing is ever sent on stdin before the kernel's first message there, so nothing would
        repair a connection it missed: connected while the kernel was still starting, it was seen (ipykernel
        7, a loaded machine, about one kernel in 36) up at the TCP level yet unknown to the router; and a
        connection made after the answer but not through its handshake when a cell called input()
        loses that first input_request. Either way input() hung for good."""
        if self._closed or "stdin" in self._sockets or not self._owned:
            self._stdin_up.set()
            return
        import zmq
        from jupyter_client.connect import ConnectionFileMixin as Connect

        owned = Connect.connect_stdin(self._km, identity=self._identity)
        self._add("stdin", owned)
        self._stdin_up.clear()
        try:
            monitor = owned.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        except zmq.ZMQError as e:  # say, its inproc address still held by a closed socket's monitor
            log.warning("kernel %s: stdin handshake not watched: %s", self._kernel.id, e)
            self._stdin_up.set()
            return
        shadow = zmq.Socket.shadow(monitor.underlying)
        self._stdin_monitor = (owned, monitor, shadow)
        self._loop.add_reader(shadow.getsockopt(zmq.FD), self._stdin_event)
        self._stdin_event()

    def _drop_stdin(self) -> None:
        import zmq

        self._stop_stdin_monitor()
        sock = self._sockets.pop("stdin", None)
        if sock is None:
            return
        fd = sock.getsockopt(zmq.FD)
        self._loop.remove_reader(fd)
        self._fds.remove(fd)
        owned = next(o for o in self._owned if o.underlying == sock.underlying)
        self._owned.remove(owned)
        owned.close(linger=0)

    def _stdin_event(self) -> None:
        import zmq

        if self._stdin_monitor is None:
            return
        _, _, monitor = self._stdin_monitor
        try:
            while monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                event = monitor.recv_multipart(zmq.NOBLOCK)
                if int.from_bytes(event[0][:2], "little") == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._stop_stdin_monitor()
                    self._stdin_up.set()
                    return
        except zmq.ZMQError:
            self._stop_stdin_monitor()
            self._stdin_up.set()

    def _stop_stdin_monitor(self) -> None:
        import zmq

        if self._stdin_monitor is None:
            return
        owned, monitor, shadow = self._stdin_monitor
        self._stdin_monitor = None
        try:
            self._loop.remove_reader(shadow.getsockopt(zmq.FD))
        except zmq.ZMQError:
            pass
        try:
            owned.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket is closed
        monitor.close(linger=0)

    def _port_key(self) -> tuple[Any, ...]:
        info = self._km.get_connection_info()
        return tuple(info.get(k) for k in ("transport", "ip", "shell_port", "iopub_port", "stdin_port",
                                           "control_port"))

    def _disconnect(self) -> None:
        self._stop_stdin_monitor()
        for fd in self._fds:
            self._loop.remove_reader(fd)
        for sock in self._owned:
            sock.close(linger=0)
        self._fds, self._owned, self._sockets = [], [], {}

    def release(self) -> None:
        """The kernel is dead: close the sockets, keep what clients have not read yet (the dead status)
        and stay open, so a restart can `reconnect`."""
        if self._nudge_task is not None:
            self._nudge_task.cancel()
        self._disconnect()
        self._ready.set()

    def reconnect(self) -> None:
        """After a (re)start: new sockets if the ports moved (or were released), then wait for iopub to
        flow again."""
        if self._closed:
            return
        log.debug("kernel %s (re)started; ports %s, were %s", self._kernel.id, self._port_key(), self._ports)
        if self._port_key() != self._ports or not self._sockets:
            self._disconnect()
            self.connect()
        else:
            self._drop_stdin()  # it would reconnect to the new process while it starts: see _connect_stdin
            self._start_nudge()

    def _readable(self) -> None:
        """A socket's fd fired: read now (this also re-arms zmq's edge-triggered fd)."""
        if self._closed:
            return
        self._drain()
        if self._pending:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drain(self) -> None:
        """Read everything the sockets hold now (zmq's fd is edge-triggered: read until empty)."""
        import zmq

        pending = self._pending
        for channel, sock in self._sockets.items():
            try:
                while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                    try:
                        i = frames.index(DELIMITER)
                    except ValueError:
                        log.warning("kernel %s: message without delimiter on %s dropped", self._kernel.id, channel)
                        continue
                    if len(frames) < i + 6:
                        continue
                    msg = KernelMessage(channel, frames[i + 2], frames[i + 3], frames[i + 4], frames[i + 5],
                                        frames[i + 6:])
                    if channel == "iopub":
                        # iopub flows once it carries the answer to one of our own requests (an
                        # earlier message, say the subscription welcome, proves nothing: the
                        # kernel may have published its answer before our subscription took)
                        if self._nudge_ids:
                            parent = json.loads(msg.parent_header).get("msg_id")
                            if parent in self._nudge_ids:
                                self._iopub_seen.set()
                                # the first answer is the kernel's; the other probes (a starting kernel
                                # answers each of them) would make it blink busy/idle afterwards
                                self._nudge_ids.discard(parent)
                                self._silence_probes()
                        if self._quiet:
                            parent = json.loads(msg.parent_header).get("msg_id")
                            if parent in self._quiet:
                                if b'"idle"' in msg.content and msg.msg_type == "status":
                                    del self._quiet[parent]  # its last message
                                continue
                        if (msg.msg_type == "status" and self._iopub_seen.is_set()
                                and b'"starting"' in msg.content and msg.parent_header == b"{}"):
                            # published at start-up, seen after the kernel answered a probe: stale
                            continue
                    elif self._internal:
                        parent = json.loads(msg.parent_header).get("msg_id")
                        if parent in self._internal:
                            del self._internal[parent]
                            continue
                    pending.append(msg)
            except zmq.ZMQError as e:
                if not self._closed:
                    log.warning("kernel %s: %s socket failed: %s", self._kernel.id, channel, e)

    # -- readiness --------------------------------------------------------------------------

    def _start_nudge(self) -> None:
        self._ready.clear()
        self._iopub_seen.clear()
        self.answered = False
        if self._nudge_task is not None:
            self._nudge_task.cancel()
        self._nudge_task = asyncio.create_task(self._nudge(), name=f"kernel {self._kernel.id} nudge")

    async def _nudge(self) -> None:
        """Ask for kernel_info (on shell and control) until iopub carries an answer to one of them."""
        try:
            await self._nudge_until_answered()
        finally:
            self._silence_probes()

    def _silence_probes(self) -> None:
        """Keep the iopub messages of the probes still unanswered from clients."""
        for msg_id in self._nudge_ids:
            self.quiet(msg_id)
        self._nudge_ids.clear()

    async def _nudge_until_answered(self) -> None:
        deadline = self._loop.time() + self._timeout
        delay = 0.05
        while not self._closed:
            self._iopub_seen.clear()
            for channel in ("control", "shell"):
                msg = self._km.session.msg("kernel_info_request")
                self._internal[msg["header"]["msg_id"]] = None
                self._nudge_ids.add(msg["header"]["msg_id"])
                while len(self._internal) > _INTERNAL_MAX:
                    del self._internal[next(iter(self._internal))]
                pack = self._km.session.pack
                self._send(channel, [pack(msg["header"]), pack(msg["parent_header"]), pack(msg["metadata"]),
                                     pack(msg["content"])], [])
            try:
                await asyncio.wait_for(self._iopub_seen.wait(), delay)
            except asyncio.TimeoutError:
                if self._loop.time() > deadline:
                    log.warning("kernel %s did not answer within %ss", self._kernel.id, self._timeout)
                    self._connect_stdin()
                    self._ready.set()
                    return
                delay = min(delay * 2, 0.2)  # a starting kernel is answered within 0.2 s of being up
                continue
            log.debug("kernel %s answers on iopub", self._kernel.id)
            self.answered = True
            self._connect_stdin()
            try:
                await asyncio.wait_for(self._stdin_up.wait(), 2)
            except asyncio.TimeoutError:
                log.warning("kernel %s: no stdin handshake within 2 s", self._kernel.id)
            self._ready.set()
            return

    def quiet(self, msg_id: str) -> None:
        """Keep the iopub messages of request `msg_id` (made by the server, not a client) from clients."""
        self._quiet[msg_id] = None
        while len(self._quiet) > _INTERNAL_MAX:  # requests whose kernel never answered them
            del self._quiet[next(iter(self._quiet))]

    async def wait_ready(self) -> None:
        await asyncio.wait_for(self._ready.wait(), self._timeout + 5)

    async def wait_settled(self) -> None:
        """Until the kernel answered, was reported dead, stayed silent past the timeout, or the channels
        closed (unbounded across automatic restarts: the restarter gives up after its limit)."""
        await self._ready.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    def _send(self, channel: str, parts: list[bytes], buffers: list[bytes]) -> None:
        import zmq

        sock = self._sockets.get(channel)
        if sock is None:
            return  # between sockets during a reconnect: the kernel is restarting anyway
        try:
            sock.send_multipart([DELIMITER, self._km.session.sign(parts), *parts, *buffers], zmq.NOBLOCK)
        except zmq.Again:
            log.warning("kernel %s is not reading its %s channel; message dropped", self._kernel.id, channel)
        # a send can swallow the fd's edge for messages that arrived meanwhile
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._loop.call_soon(self._readable)

    # -- KernelChannels ---------------------------------------------------------------------

    def inject_status(self, state: str, reason: str | None) -> None:
        """Tell clients about a state only the manager knows (restarting, dead), as jupyter_server does."""
        self._pending.append(wire.status_message(state, reason or None, session=self._session_id))
        if state == "restarting":  # hold clients' requests until the new kernel's iopub flows (see send)
            self._ready.clear()
            self.answered = False
        elif state == "dead":  # no answer will come: let a relay still waiting for one read this
            if self._nudge_task is not None:
                self._nudge_task.cancel()
            self._ready.set()
        self._wake()

    async def send(self, msg: KernelMessage) -> None:
        if self._closed:
            raise ChannelsClosed(self._kernel.id)
        if msg.channel not in ("shell", "control", "stdin"):
            raise ValueError(f"cannot send on channel {msg.channel!r}")
        if not self._ready.is_set():
            # after a death or a restart, until iopub flows again: a request sent now would reach the
            # new kernel before our iopub subscription does, and its busy/output would be lost
            try:
                await self.wait_ready()
            except asyncio.TimeoutError:
                pass  # the kernel does not answer: send anyway, as before it was known to be ready
            if self._closed:
                raise ChannelsClosed(self._kernel.id)
        self._send(msg.channel, [msg.header, msg.parent_header, msg.metadata, msg.content], msg.buffers)

    def recv_ready(self) -> bool:
        """Whether `recv` would return at once (a message is read and waiting)."""
        if not self._pending and not self._closed:
            self._drain()
            self._drained = not self._pending  # the `recv` that follows need not read the sockets again
        return bool(self._pending)

    async def recv(self) -> KernelMessage:
        pending = self._pending
        drained, self._drained = self._drained, False
        while True:
            if self._closed:
                raise ChannelsClosed(self._kernel.id)
            if pending:
                return pending.popleft()
            if not drained:
                self._drain()
            drained = False
            if pending:
                return pending.popleft()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._nudge_task is not None:
            self._nudge_task.cancel()
        self._disconnect()
        self._ready.set()
        self._kernel.channels.discard(self)
        self._wake()
