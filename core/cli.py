"""`himalia ...`: serve, plugins, config, list, stop, new-plugin, --version.

Start-up problems (StartupError) print as one line, `himalia: ...`, and exit with status 2;
`--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import StartupError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: ./himalia.toml if present)")
    p.add_argument("--disable", metavar="NAME", action="append", default=[],
                   help="do not load plugin NAME (repeatable)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="set",
                   help="override one config key, e.g. --set plugins.sessions.database=s.db")
    p.add_argument("--debug", action="store_true", help="debug logging and tracebacks on errors")


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ip", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8888; 0 for any free port)")
    p.add_argument("--root-dir", metavar="DIR", help="directory to serve (default: the current one)")
    p.add_argument("--base-url", metavar="PATH", help="URL prefix (default /)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="himalia", description="A plugin-first Jupyter server.")
    parser.add_argument("--version", action="version", version=f"himalia {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="start the server")
    _common(serve)
    _server_flags(serve)
    plugins = sub.add_parser("plugins", help="list plugins, their hooks, providers and load errors")
    _common(plugins)
    _server_flags(plugins)
    plugins.add_argument("--json", action="store_true", help="print JSON")
    config = sub.add_parser("config", help="print the effective configuration as TOML (secrets redacted); "
                                           "--describe lists every key with its type, default and help")
    _common(config)
    _server_flags(config)
    config.add_argument("--describe", action="store_true",
                        help="list every key of [server] and of each loaded plugin's table: type, default, help")
    config.add_argument("--json", action="store_true", help="with --describe: print JSON")
    lst = sub.add_parser("list", help="list running servers")
    lst.add_argument("--json", action="store_true", help="print JSON, one server per line")
    stop = sub.add_parser("stop", help="stop a running server")
    stop.add_argument("port", nargs="?", type=int, help="port of the server to stop (default: the only one)")
    new = sub.add_parser("new-plugin", help="start a pip-installable plugin from the template")
    new.add_argument("name", help="plugin name, e.g. hello")
    new.add_argument("dir", nargs="?", help="where to create it (default: ./himalia-NAME)")
    from .template import KINDS

    new.add_argument("--kind", choices=KINDS, default=None,
                     help="what the plugin provides; renders only what that kind needs, with the matching "
                          "conformance kit in its tests (default: asked, else route)")
    new.add_argument("--repository-url", metavar="URL", default=None,
                     help="the plugin's repository, for its metadata and README (default: asked, else left out)")
    return parser


def _overrides(ns: argparse.Namespace) -> dict[tuple[str, ...], Any]:
    """`--set` and the server flags. Applied before plugins load, so `--set plugins.disable=[...]`
    blocks a plugin before it is imported, as `[plugins] disable` does."""
    from .config import Override, parse_override

    out: dict[tuple[str, ...], Any] = {}
    for text in ns.set:
        parts, value = parse_override(text)
        out[tuple(parts)] = value
    for flag, key in (("ip", "ip"), ("port", "port"), ("root_dir", "root_dir"), ("base_url", "base_url")):
        value = getattr(ns, flag, None)
        if value is not None:
            if key == "root_dir":
                value = str(Path(value).expanduser().resolve())  # relative to where the user typed it
            out[("server", key)] = Override(value, f"--{flag.replace('_', '-')} {value}")
    return out


def _plugin_overrides(ns: argparse.Namespace, extra: dict[str, str]) -> dict[tuple[str, ...], Any]:
    """The flags plugins added (`--token` → plugins.auth.token), known only once plugins are loaded."""
    from .config import Override

    out: dict[tuple[str, ...], Any] = {}
    for dest, (flag, key) in extra.items():
        value = getattr(ns, dest, None)
        if value is not None:
            out[tuple(key.split("."))] = Override(value, f"{flag} {value}")
    return out


def _add_plugin_flags(parser: argparse.ArgumentParser, plugins: Any) -> dict[str, tuple[str, str]]:
    """Add the flags plugins declare (himalia_cli_options) to `parser`, in a group of their own;
    returns argparse dest → (flag, config key)."""
    from .hooks import Hooks

    extra: dict[str, tuple[str, str]] = {}
    taken = set(parser._option_string_actions)
    group = parser.add_argument_group("flags added by plugins")
    for a in Hooks(plugins.pm).cli_options():
        opt = a.item
        if opt.flag in taken:
            raise StartupError(f"plugin '{a.plugin}' adds flag {opt.flag}, which is already taken")
        help = f"{opt.help} (sets {opt.key}; plugin '{a.plugin}')" if opt.help else f"sets {opt.key}"
        action = group.add_argument(opt.flag, type=opt.type, help=help, default=None)
        taken.add(opt.flag)
        extra[action.dest] = (opt.flag, opt.key)
    return extra


def _plugin_flags(parser: argparse.ArgumentParser, ns: argparse.Namespace, argv_rest: list[str]):
    """Once plugins are loaded: add their flags to `parser`, parse the rest of the command line into
    `ns`, and return the config keys those flags set."""
    def overrides(plugins: Any) -> dict[tuple[str, ...], Any]:
        extra = _add_plugin_flags(parser, plugins)
        parser.parse_args(argv_rest, namespace=ns)
        return _plugin_overrides(ns, extra)

    return overrides


def _load(ns: argparse.Namespace, argv_rest: list[str], parser: argparse.ArgumentParser):
    """Read config, apply overrides, load plugins (fail closed), add plugin flags, parse the rest, validate."""
    from .app import load

    return load(ns.config, disable=ns.disable, overrides=_overrides(ns),
                plugin_overrides=_plugin_flags(parser, ns, argv_rest))


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = make_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        return action.choices[name]
    raise AssertionError(name)


def _wants_help(argv: list[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return any(a in ("-h", "--help") for a in options)


def print_help_with_plugin_flags(name: str, argv: list[str]) -> int:
    """`himalia serve --help`: the core's options and then the flags installed plugins add (loaded
    with `--disable` and the config file's `[plugins] disable` honoured)."""
    from .config import ConfigError, read_config
    from .plugins import load_plugins

    parser = _subparser(name)
    quiet = argparse.ArgumentParser(add_help=False, parents=[])
    _common(quiet)
    ns, _ = quiet.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    try:
        disabled = [*read_config(ns.config).disabled(), *ns.disable]
    except ConfigError:
        disabled = list(ns.disable)
    plugins = load_plugins(disabled)
    _add_plugin_flags(parser, plugins)
    parser.print_help()
    return 0


def build_from_argv(argv: list[str]):
    """`serve`'s options → (app, config), the app built by `himalia.app.build_app` (as the test
    fixture builds it); used by `himalia serve` and by `himalia.app:init`."""
    from . import app as app_module
    from .keys import CONFIG

    parser = _subparser("serve")
    ns, rest = parser.parse_known_args(argv)
    app = app_module.build_app(ns.config, disable=ns.disable, overrides=_overrides(ns),
                               plugin_overrides=_plugin_flags(parser, ns, rest))
    return app, app[CONFIG]


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09} | {0x0A: "\\n", 0x0D: "\\r"}


class OneLineFormatter(logging.Formatter):
    """Every message is one line: control characters a client smuggled into a logged string (a path,
    a name) come out escaped, so no log line can be forged. Tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


def _setup_logging(level: str, debug: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("[%(levelname)1.1s %(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO),
                        handlers=[handler])


def cmd_serve(argv: list[str]) -> int:
    from .serve import run

    if _wants_help(argv):
        return print_help_with_plugin_flags("serve", argv)
    debug = "--debug" in argv
    app, config = build_from_argv(argv)
    _setup_logging(config.server.log_level, debug)
    return asyncio.run(run(app))


def cmd_plugins(ns: argparse.Namespace) -> int:
    from .app import ROLES
    from .config import ConfigError, apply_overrides, read_config, validate
    from .hooks import Hooks
    from .plugins import load_plugins

    try:
        raw = read_config(ns.config)
        apply_overrides(raw, _overrides(ns))  # before loading: `--set plugins.disable=[...]` blocks too
        disabled = [*raw.disabled(), *ns.disable]
    except ConfigError as e:
        print(f"himalia: {e}", file=sys.stderr)
        raw, disabled = None, list(ns.disable)
    plugins = load_plugins(disabled)
    hooks = Hooks(plugins.pm)
    offered: dict[str, list[str]] = {}
    active: dict[str, list[str]] = {}
    config = None
    if raw is not None:
        try:
            config = validate(raw, hooks.config_sections(), known_plugins=set(plugins.infos))
        except StartupError as e:
            print(f"himalia: {e}", file=sys.stderr)
    for role, (hook_role, key, default) in ROLES.items():
        try:
            records = hooks.providers(hook_role)
        except StartupError:
            continue
        for a in records:
            offered.setdefault(a.plugin, []).append(f"{role}:{a.item.name}")
        if config is None:
            continue
        try:
            chosen = hooks.select_provider(hook_role, getattr(config.server, key), default, config)
        except StartupError:
            continue
        for a in records:
            if chosen is not None and a.item.name == chosen.name:
                active.setdefault(a.plugin, []).append(f"{role}:{a.item.name}")
    try:
        notes = hooks.plugin_notes(config)
    except StartupError as e:
        print(f"himalia: {e}", file=sys.stderr)
        notes = {}
    rows = []
    for name, info in sorted(plugins.infos.items()):
        rows.append({
            "name": name, "distribution": info.distribution, "version": info.version,
            "module": info.module, "disabled": info.disabled, "hooks": info.hooks,
            "providers": offered.get(name, []), "active": active.get(name, []), "notes": notes.get(name, []),
            "error": info.error,
        })
    if ns.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "disabled" if r["disabled"] else "ERROR" if r["error"] else "loaded"
        print(f"{r['name']}  ({r['distribution'] or '-'} {r['version'] or ''})  {state}".replace("  )", ")"))
        if r["hooks"]:
            print(f"    hooks: {', '.join(h.removeprefix('himalia_') for h in r['hooks'])}")
        if r["providers"]:
            print(f"    providers: {', '.join(r['providers'])}")
        if r["active"]:
            print(f"    active: {', '.join(r['active'])}")
        for note in r["notes"]:
            print(f"    note: {note}")
        if r["error"]:
            print(f"    error: {r['error']}")
            if ns.debug and plugins.infos[r['name']].traceback:
                print(plugins.infos[r['name']].traceback)
    return 0


def cmd_config(ns: argparse.Namespace, rest: list[str]) -> int:
    from .config import describe, describe_keys, dump
    from .hooks import Hooks

    config, plugins = _load(ns, rest, _subparser("config"))
    if ns.describe:
        sections = Hooks(plugins.pm).config_sections()
        if ns.json:
            import dataclasses

            print(json.dumps([dataclasses.asdict(k) for k in describe_keys(sections)], indent=2, default=str))
        else:
            sys.stdout.write(describe(sections))
        return 0
    sys.stdout.write(dump(config))
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    from . import serverinfo

    servers = serverinfo.running()
    if ns.json:
        for s in servers:
            print(json.dumps(s))
        return 0
    if not servers:
        print("no running Himalia servers")
    for s in servers:
        token = f"?token={s['token']}" if s.get("token") else ""
        print(f"{s['url']}{token} :: {s['root_dir']} (pid {s['pid']})")
    return 0


def cmd_stop(ns: argparse.Namespace) -> int:
    """Ask the server to stop over its API (`POST /api/shutdown` with its token); only if it cannot
    be asked, signal it, and only a process verified to be that server (see `serverinfo.is_server`):
    a pid in a stale file may belong to anything by now."""
    from . import serverinfo

    servers = serverinfo.running()  # verified servers only; stale files are pruned
    if ns.port is not None:
        servers = [s for s in servers if s.get("port") == ns.port]
    if not servers:
        raise StartupError(f"no running Himalia server{' on port ' + str(ns.port) if ns.port else ''}")
    if len(servers) > 1:
        ports = ", ".join(str(s["port"]) for s in servers)
        raise StartupError(f"several servers are running (ports {ports}); say which: himalia stop PORT")
    info = servers[0]
    pid = int(info["pid"])
    refused = _ask_to_stop(info)
    if refused is not None:
        print(f"himalia: the server did not accept POST /api/shutdown ({refused}); sending SIGTERM to pid {pid}",
              file=sys.stderr)
        _terminate(info)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not serverinfo.is_server(info):
            print(f"stopped the server on port {info['port']} (pid {pid})")
            return 0
        time.sleep(0.1)  # polling another process's exit: there is no event to wait on
    raise StartupError(f"server pid {pid} did not exit within 60 s")


def _ask_to_stop(info: dict[str, Any]) -> str | None:
    """POST /api/shutdown; None once the server accepted, else why not."""
    import urllib.error
    import urllib.request

    url = info["url"].rstrip("/") + "/api/shutdown"  # the url ends in the server's base_url
    headers = {"Authorization": f"token {info['token']}"} if info.get("token") else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST", headers=headers), timeout=10):
            return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))


def _terminate(info: dict[str, Any]) -> None:
    """SIGTERM to the server's pid, verified first. Through a pidfd where there is one: opened before
    the check, it keeps naming the checked process even if that exits and its pid is reused."""
    from . import serverinfo

    pid = int(info["pid"])
    try:
        fd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if not serverinfo.is_server(info):
            raise StartupError(f"pid {pid} is no longer the server on port {info['port']}; not signalled")
        if fd is not None:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    finally:
        if fd is not None:
            os.close(fd)


BUILT_IN = ("serve", "plugins", "config", "list", "stop", "new-plugin")


def cmd_plugin(argv: list[str]) -> int:
    """`himalia NAME ...` for a command a plugin adds (`himalia_cli_commands`)."""
    from .app import load
    from .hooks import Hooks

    name = argv[0]
    common = argparse.ArgumentParser(prog=f"himalia {name}", add_help=False)
    _common(common)
    ns, rest = common.parse_known_args(argv[1:])  # the common options, wherever they are
    config, plugins = load(ns.config, disable=ns.disable, overrides=_overrides(ns))
    commands: dict[str, Any] = {}
    for a in Hooks(plugins.pm).cli_commands():
        if a.item.name in BUILT_IN or a.item.name in commands:
            raise StartupError(f"plugin '{a.plugin}' adds command {a.item.name!r}, which is already taken")
        commands[a.item.name] = a.item
    if name not in commands:
        make_parser().error(f"unknown command {name!r}; commands: "
                            f"{', '.join([*BUILT_IN, *sorted(commands)])}")
    command = commands[name]
    parser = argparse.ArgumentParser(prog=f"himalia {name}", description=command.help,
                                     epilog="also: --config PATH, --disable NAME, --set KEY=VALUE, --debug")
    command.add_arguments(parser)
    ns.hooks = Hooks(plugins.pm)  # for commands that ask plugins (`himalia kernels` → himalia_kept_kernels)
    return command.run(parser.parse_args(rest, namespace=ns), config)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    debug = "--debug" in argv
    try:
        if argv[:1] == ["serve"]:
            return cmd_serve(argv[1:])
        if argv[:1] == ["config"] and _wants_help(argv[1:]):
            return print_help_with_plugin_flags("config", argv[1:])
        if argv and not argv[0].startswith("-") and argv[0] not in BUILT_IN:
            return cmd_plugin(argv)
        ns, rest = parser.parse_known_args(argv)
        if ns.command == "config":
            return cmd_config(ns, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if ns.command == "plugins":
            return cmd_plugins(ns)
        if ns.command == "list":
            return cmd_list(ns)
        if ns.command == "stop":
            return cmd_stop(ns)
        if ns.command == "new-plugin":
            from .template import new_plugin

            return new_plugin(ns.name, ns.dir, kind=ns.kind, repository_url=ns.repository_url)
        parser.print_help()
        return 0
    except StartupError as e:
        if debug:
            raise
        print(f"himalia: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
