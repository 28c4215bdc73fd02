"""One shell in a pseudo-terminal: output read with `loop.add_reader`, fanned out to every attached
client and kept as scrollback; input written without blocking; the whole session ended on request.

ptyprocess forks the shell into a new session on the pty (it is the session leader, so its process
group and every job it starts carry its pid as session id); nothing of Tornado's is used.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import json
import logging
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from himalia import isoformat, utcnow

log = logging.getLogger("himalia.terminals")

READ_SIZE = 65536


class Client:
    """One websocket's view of a terminal: the messages queued for it (JSON text, encoded once for
    every client), and the size it asked for."""

    def __init__(self, max_backlog: int):
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.size: tuple[int, int] | None = None
        self.backlog = 0
        self.max_backlog = max_backlog

    def put(self, message: list[Any], encoded: str | None = None) -> None:
        if self.backlog > self.max_backlog:
            return  # already told to go (None queued); the handler closes the socket
        encoded = encoded if encoded is not None else json.dumps(message)
        self.queue.put_nowait(encoded)
        self.backlog += len(encoded)
        if self.backlog > self.max_backlog:
            log.warning("a terminal client left %d characters unread; disconnecting it", self.backlog)
            self.queue.put_nowait(None)

    def close(self) -> None:
        self.queue.put_nowait(None)

    def taken(self, encoded: str) -> None:
        self.backlog -= len(encoded)


class Terminal:
    """A running shell: `attach` clients, `write` input, `resize`, `terminate`."""

    def __init__(self, name: str, argv: list[str], *, cwd: str, env: Mapping[str, str], scrollback_chars: int,
                 on_exit: Callable[[Terminal], None], on_activity: Callable[[], None] = lambda: None):
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = dict(env)
        self.scrollback_chars = scrollback_chars
        self.on_exit = on_exit
        self.on_activity = on_activity
        """Called on input and output: the server's own activity follows its terminals' (/api/status)."""
        self.clients: set[Client] = set()
        self.last_activity: datetime = utcnow()
        self.exited = asyncio.Event()
        self.pid = -1
        self._proc: Any = None
        self._fd = -1
        self._loop = asyncio.get_running_loop()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._scrollback: deque[str] = deque()
        self._scrollback_len = 0
        self._pending = bytearray()
        self._reading = False
        self._ending: asyncio.Task[None] | None = None

    def model(self) -> dict[str, str]:
        return {"name": self.name, "last_activity": isoformat(self.last_activity)}

    # -- start -----------------------------------------------------------------------------------

    async def start(self, rows: int = 24, cols: int = 80) -> None:
        """Fork the shell (in a worker thread: fork and exec are blocking calls) and start reading."""
        from ptyprocess import PtyProcess

        env = {**self.env, "COLUMNS": str(cols), "LINES": str(rows)}
        self._proc = await asyncio.to_thread(PtyProcess.spawn, self.argv, cwd=self.cwd, env=env,
                                             dimensions=(rows, cols))
        self.pid = self._proc.pid
        self._fd = self._proc.fd
        os.set_blocking(self._fd, False)
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True
        # the shell is a child of this process: reap it when it exits, wherever the exit comes from
        threading.Thread(target=self._reap, name=f"terminal-{self.name}-reaper", daemon=True).start()

    def _reap(self) -> None:
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        try:
            self._loop.call_soon_threadsafe(self._on_exit)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    # -- output ----------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: every process holding the pty's other side is gone
            if e.errno not in (errno.EIO, errno.EBADF):
                log.warning("terminal %s: reading its pty failed: %s", self.name, e)
            self._stop_reading()
            return
        if not data:
            self._stop_reading()
            return
        text = self._decoder.decode(data)
        if text:
            self._output(text)

    def _output(self, text: str) -> None:
        self.last_activity = utcnow()
        self.on_activity()
        self._scrollback.append(text)
        self._scrollback_len += len(text)
        while self._scrollback_len > self.scrollback_chars and self._scrollback:
            excess = self._scrollback_len - self.scrollback_chars
            if len(self._scrollback[0]) <= excess:
                self._scrollback_len -= len(self._scrollback.popleft())
            else:  # keep the newest part of the oldest chunk
                self._scrollback[0] = self._scrollback[0][excess:]
                self._scrollback_len -= excess
        message = ["stdout", text]
        encoded = json.dumps(message)
        for client in self.clients:
            client.put(message, encoded)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)

    def _on_exit(self) -> None:
        """The shell has exited (and was reaped): drain what is left, tell the clients, close the pty."""
        if self.exited.is_set():
            return
        if self._reading:
            self._drain()
        self._stop_reading()
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._output(rest)
        for client in self.clients:
            client.put(["disconnect", 1])
            client.close()
        if self._fd >= 0:
            try:
                # through ptyprocess' own file object, which owns the descriptor: closed any other way,
                # that object would close the number again when collected, whatever it then names
                self._proc.fileobj.close()
            except OSError:
                pass
            self._proc.fd = -1
            self._proc.closed = True  # the shell is reaped: ptyprocess has nothing left to end
            self._fd = -1
        self.exited.set()
        self.on_exit(self)

    def _drain(self) -> None:
        """Read what the shell wrote before it exited (the pty may still hold it)."""
        for _ in range(64):
            try:
                data = os.read(self._fd, READ_SIZE)
            except OSError:
                return
            if not data:
                return
            text = self._decoder.decode(data)
            if text:
                self._output(text)

    # -- clients ---------------------------------------------------------------------------------

    def attach(self, max_backlog: int) -> Client:
        """A new client, sent `["setup", {}]` and the scrollback before anything else."""
        client = Client(max_backlog)
        client.put(["setup", {}])
        if self._scrollback:
            client.put(["stdout", "".join(self._scrollback)])
        if self.exited.is_set():
            client.put(["disconnect", 1])
            client.close()
        self.clients.add(client)
        return client

    def detach(self, client: Client) -> None:
        self.clients.discard(client)
        self.resize()

    def resize(self) -> None:
        """The smallest size any client asked for, as terminado does, so every client sees it all."""
        sizes = [c.size for c in self.clients if c.size]
        if not sizes or self.exited.is_set() or self._proc is None:
            return
        rows, cols = min(s[0] for s in sizes), min(s[1] for s in sizes)
        try:
            if self._proc.getwinsize() != (rows, cols):
                self._proc.setwinsize(rows, cols)
        except OSError as e:
            log.debug("terminal %s: resize failed: %s", self.name, e)

    # -- input -----------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        if self.exited.is_set() or self._fd < 0:
            return
        self.last_activity = utcnow()
        self.on_activity()
        self._pending += text.encode("utf-8", "surrogateescape")
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                break
            except OSError as e:
                log.debug("terminal %s: write failed: %s", self.name, e)
                self._pending.clear()
                break
            del self._pending[:written]
        if self._pending and self._reading:
            self._loop.add_writer(self._fd, self._flush)
        elif self._fd >= 0 and self._reading:
            self._loop.remove_writer(self._fd)

    # -- end -------------------------------------------------------------------------------------

    async def terminate(self, wait: float) -> None:
        """End every process of the shell's session: SIGHUP and SIGCONT (what closing a terminal window
        sends), then SIGTERM, then SIGKILL to whatever is left, including jobs that ignore SIGHUP."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._terminate(wait))
        await asyncio.shield(self._ending)

    async def _terminate(self, wait: float) -> None:
        if self.pid <= 0:
            return
        for signals, grace in (((signal.SIGHUP, signal.SIGCONT), wait / 2), ((signal.SIGTERM,), wait / 2)):
            await asyncio.to_thread(signal_session, self.pid, signals, not self.exited.is_set())
            try:
                await asyncio.wait_for(self.exited.wait(), grace)
                break
            except asyncio.TimeoutError:
                continue
        # the shell may be gone while jobs it started (nohup, a disowned job) still hold the session
        await asyncio.to_thread(signal_session, self.pid, (signal.SIGKILL,), not self.exited.is_set())
        try:
            await asyncio.wait_for(self.exited.wait(), 10)
        except asyncio.TimeoutError:
            log.error("terminal %s: shell %d did not exit after SIGKILL", self.name, self.pid)
        # the jobs are not our children, so no event says when they are gone: look, briefly, so that
        # the terminal's end is reported once nothing of it runs
        if not sys.platform.startswith("linux"):
            return  # no way to list a session's processes: the signals were sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (left := await asyncio.to_thread(session_processes, self.pid)) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if left:
            log.error("terminal %s: processes %s of its session survived SIGKILL", self.name, left)


def session_processes(sid: int) -> list[int]:
    """Pids of every live process in session `sid` (Linux: read from /proc); just `sid` elsewhere."""
    if not sys.platform.startswith("linux"):
        return [sid]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):  # not dead already
            found.append(int(entry))
    return found


def signal_session(sid: int, signals: tuple[int, ...], leader_alive: bool) -> None:
    """Send `signals` to every process group of session `sid`, and to each of its processes; to the
    leader's own group only while the leader is unreaped (after that its pid may be reused)."""
    pids = session_processes(sid)
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            continue
    if leader_alive:
        groups.add(sid)
    for sig in signals:
        for group in groups:
            try:
                os.killpg(group, sig)
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
