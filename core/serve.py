"""Running the app: bind (with port retries), announce, write the server-info file, stop on signals."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
from typing import Any

from aiohttp import web

from ._version import __version__
from . import serverinfo
from .app import AccessLogger, startup_failure
from .urls import url_path
from .config import Config
from .errors import StartupError
from .keys import CONFIG, PLUGINS, SERVICES, SHUTDOWN

log = logging.getLogger("himalia")


async def bind(runner: web.AppRunner, config: Config) -> tuple[web.TCPSite, int]:
    server = config.server
    tries = 1 if server.port == 0 else server.port_retries + 1
    last: OSError | None = None
    for i in range(tries):
        port = server.port + i if server.port else 0
        site = web.TCPSite(runner, server.ip, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise StartupError(f"cannot listen on {server.ip}:{port}: {e.strerror}") from None
            last = e
            continue
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        return site, sock.getsockname()[1]
    raise StartupError(f"cannot listen on {server.ip}: ports {server.port}..{server.port + tries - 1} "
                       f"are taken ({last.strerror if last else ''}); set --port")


async def start(runner: web.AppRunner) -> None:
    """`runner.setup()`; when a provider or resource fails to start, the ones already started are
    exited, and the error raised is a StartupError naming the plugin at fault."""
    try:
        await runner.setup()
    except BaseException as e:
        await cleanup_after_failure(runner)
        failure = startup_failure(runner.app, e)
        if failure is e:
            raise
        raise failure from e


async def cleanup_after_failure(runner: web.AppRunner) -> None:
    """Run every clean-up after a failed start; a clean-up error is logged, never raised over the
    start-up error that is already propagating."""
    try:
        await runner.cleanup()
    except Exception:
        log.exception("cleaning up after a failed start-up failed too")


def server_url(config: Config, port: int) -> str:
    host = config.server.ip
    if ":" in host:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}{url_path(config.server.base_url, '/')}"


async def run(app: web.Application, *, out: Any = sys.stdout) -> int:
    """Serve until SIGINT/SIGTERM, then run every cleanup (kernels shut down) and return 0."""
    config = app[CONFIG]
    runner = web.AppRunner(app, handle_signals=False, access_log_class=AccessLogger,
                           shutdown_timeout=min(config.server.shutdown_timeout, 5.0))
    stop = app[SHUTDOWN]  # set by SIGINT/SIGTERM below, or by POST /api/shutdown
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await start(runner)  # start-up: providers and plugin resources
        try:
            _site, port = await bind(runner, config)
        except BaseException:
            await cleanup_after_failure(runner)
            raise
        url = server_url(config, port)
        token = getattr(app[SERVICES].identity, "token", None)
        info = {
            "url": url, "base_url": config.server.base_url, "hostname": config.server.ip, "port": port,
            "token": token or "", "pid": os.getpid(), "start_time": serverinfo.start_time(os.getpid()),
            "root_dir": config.server.root_dir,
            "version": __version__, "secure": False, "config": str(config.path) if config.path else None,
        }
        serverinfo.write(info)
        plugins = [n for n, i in sorted(app[PLUGINS].infos.items()) if not i.disabled and not i.error]
        print(f"Himalia {__version__} serving {config.server.root_dir}", file=out)
        print(f"  plugins: {', '.join(plugins) or 'none'}", file=out)
        print(f"  {url}?token={token}" if token else f"  {url}", file=out, flush=True)
        await stop.wait()
        print("Himalia shutting down", file=out, flush=True)
    finally:
        serverinfo.remove()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    try:
        await asyncio.wait_for(runner.cleanup(), config.server.shutdown_timeout)
    except asyncio.TimeoutError:
        log.error("shutdown took longer than %ss; exiting anyway", config.server.shutdown_timeout)
        return 1
    return 0
