"""The terminal manager (`app[SERVICES].terminals`): named shells in the server's root, culling of
inactive ones, and every one of them ended at shutdown."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from himalia import ACTIVITY, CONFIG, ApiError, BadRequest, Conflict, Model, NotFound, utcnow

from .config import TerminalsConfig
from .pty import Terminal

log = logging.getLogger("himalia.terminals")

NAME = re.compile(r"\w+")
"""Terminal names, as jupyter_server_terminals' URL pattern `/api/terminals/(\\w+)` accepts them."""


def default_shell(config: TerminalsConfig) -> list[str]:
    if config.shell_command:
        return list(config.shell_command)
    shell = [os.environ.get("SHELL") or shutil.which("sh") or "/bin/sh"]
    # started by a service manager or a hub, the server's environment may lack the user's profile:
    # a login shell reads it (jupyter_server_terminals does the same)
    if not sys.stdout.isatty():
        shell.append("-l")
    return shell


class Terminals:
    """Implements `himalia.TerminalManager` over local ptys."""

    def __init__(self, config: TerminalsConfig, root_dir: str, touch: Callable[[], None] = lambda: None):
        self.config = config
        self.touch = touch
        self.root = Path(root_dir).resolve()
        self.terminals: dict[str, Terminal] = {}
        self.server_url = ""
        """The URL clients reach the server at, for $JUPYTER_SERVER_URL; set from the request that
        creates a terminal (the server does not otherwise know the name clients use for it)."""

    # -- the Protocol ----------------------------------------------------------------------------

    async def create(self, *, name: str | None = None, cwd: str = "") -> Model:
        if name is None:
            name = next(str(n) for n in itertools.count(1) if str(n) not in self.terminals)
        elif not isinstance(name, str) or not NAME.fullmatch(name):
            raise BadRequest(f"terminal name {name!r} must be letters, digits and underscores", "bad name")
        elif name in self.terminals:
            raise Conflict(f"a terminal named {name!r} is already running", "terminal exists")
        directory = await asyncio.to_thread(self._directory, cwd)
        env = {**os.environ, "TERM": "xterm-256color", "JUPYTER_SERVER_ROOT": str(self.root)}
        if self.server_url:
            env["JUPYTER_SERVER_URL"] = self.server_url
        terminal = Terminal(name, default_shell(self.config), cwd=directory, env=env,
                            scrollback_chars=self.config.scrollback_chars, on_exit=self._exited,
                            on_activity=self.touch)
        self.terminals[name] = terminal  # taken before the fork, so a concurrent create cannot reuse it
        try:
            await terminal.start()
        except Exception as e:
            self.terminals.pop(name, None)
            log.warning("terminal %s: %s %s failed to start: %s", name, terminal.argv, directory, e)
            raise ApiError(f"cannot start {' '.join(terminal.argv)!r} in {cwd or '/'!r}: {e}",
                           "terminal failed") from e
        log.info("terminal %s: %s started in %s (pid %d)", name, terminal.argv[0], directory, terminal.pid)
        return terminal.model()

    async def list(self) -> list[Model]:
        return [t.model() for t in self.terminals.values()]

    async def get(self, name: str) -> Model:
        return self.terminal(name).model()

    async def delete(self, name: str) -> None:
        terminal = self.terminal(name)
        await terminal.terminate(self.config.kill_wait)
        self.terminals.pop(name, None)

    # -- for the handlers and the resource -------------------------------------------------------

    def terminal(self, name: str) -> Terminal:
        try:
            return self.terminals[name]
        except KeyError:
            raise NotFound(f"no terminal named {name!r}", "no such terminal") from None

    def _directory(self, cwd: str) -> str:
        """The directory for API path `cwd`, which must be a directory inside the root."""
        if not isinstance(cwd, str):
            raise BadRequest(f"'cwd' must be a string (an API path relative to the root), got "
                             f"{type(cwd).__name__}", "bad cwd")
        if "\0" in cwd:
            raise BadRequest("'cwd' contains a NUL character", "bad cwd")
        target = (self.root / cwd.strip("/")).resolve()
        if target != self.root and self.root not in target.parents:
            raise BadRequest(f"cwd {cwd!r} is outside the server's root", "bad cwd")
        if not target.is_dir():
            raise BadRequest(f"cwd {cwd!r} is not a directory under the server's root", "bad cwd")
        return str(target)

    def _exited(self, terminal: Terminal) -> None:
        if self.terminals.get(terminal.name) is terminal:
            del self.terminals[terminal.name]
            log.info("terminal %s: its shell exited", terminal.name)

    async def cull(self) -> None:
        timeout = timedelta(seconds=self.config.cull_inactive_timeout)
        now = utcnow()
        idle = [t for t in self.terminals.values() if now - t.last_activity > timeout]
        for terminal in idle:
            log.info("terminal %s: culled after %ss without activity", terminal.name,
                     self.config.cull_inactive_timeout)
        await asyncio.gather(*(self.delete(t.name) for t in idle), return_exceptions=True)

    async def close(self) -> None:
        await asyncio.gather(*(t.terminate(self.config.kill_wait) for t in list(self.terminals.values())),
                             return_exceptions=True)
        self.terminals.clear()


def unavailable() -> str | None:
    """Why this system cannot run terminals, or None when it can."""
    if os.name == "nt":
        return "ptys need a POSIX system"
    if importlib.util.find_spec("ptyprocess") is None:
        return "ptyprocess is not installed (pip install 'himalia[terminals]')"
    return None


@asynccontextmanager
async def terminals_service(app: web.Application) -> AsyncIterator[Terminals]:
    """The `terminals` service (`app[SERVICES].terminals`) while the server runs: culls, and ends every
    terminal at shutdown."""
    config: TerminalsConfig = app[CONFIG].section("terminals")
    manager = Terminals(config, app[CONFIG].server.root_dir, touch=app[ACTIVITY].touch)
    culler = None
    if config.cull_inactive_timeout > 0:
        culler = asyncio.create_task(_cull_forever(manager))
    try:
        yield manager
    finally:
        if culler is not None:
            culler.cancel()
            await asyncio.gather(culler, return_exceptions=True)
        await manager.close()


async def _cull_forever(manager: Terminals) -> None:
    while True:
        await asyncio.sleep(manager.config.cull_interval)
        try:
            await manager.cull()
        except Exception:
            log.exception("culling terminals failed")
