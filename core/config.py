"""The one TOML file: reading it, applying overrides, validating it strictly, dumping it.

The core owns `[server]` and `[plugins]` (`disable = [...]`); each plugin owns `[plugins.<name>]`,
declared through `himalia_config_sections` as a frozen dataclass whose fields carry help text.
Unknown tables or keys and wrong types fail with one line naming file, table, key, type and value.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

T = typing.TypeVar("T")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG_NAME = "himalia.toml"
REDACTED = "<redacted>"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, path: bool = False,
            secret: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with help text. `path=True` resolves relative values against the config
    file's directory; `secret=True` redacts the value in `himalia config` (each value of a table or
    list: a table of headers keeps its header names)."""
    meta = {"help": help, "path": path, "secret": secret}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ConfigSection:
    """A `[plugins.<name>]` table declared by a plugin: its name and its dataclass schema."""

    name: str
    schema: type
    help: str = ""
    moved: Mapping[str, str] = field(default_factory=dict)
    """Keys this table no longer has → where they went ("[server] allow_origin"): setting one is a
    config error saying so, rather than "unknown key"."""


@dataclass(frozen=True)
class ServerConfig:
    """The `[server]` table."""

    ip: str = setting("127.0.0.1", "Interface to listen on. Loopback unless told otherwise.")
    port: int = setting(8888, "Port to listen on; 0 picks a free one.")
    port_retries: int = setting(50, "How many following ports to try when `port` is taken.")
    base_url: str = setting("/", "Prefix of every URL the server answers.")
    root_dir: str = setting(".", "Directory served by the contents and kernels plugins.", path=True)
    contents_provider: str = setting("", "Name of the contents provider; empty: `filesystem` if installed.")
    session_store: str = setting("", "Name of the session store provider; empty: `sqlite` if installed.")
    kernel_provider: str = setting("", "Name of the kernel provider; empty: `gateway` when a gateway "
                                       "url is set, else `local`.")
    identity_provider: str = setting("", "Name of the identity (auth) provider; empty: `token` if installed.")
    allow_unauthenticated_access: bool = setting(
        False, "Serve with no identity provider at all. Only for servers behind another auth layer.")
    max_body_size: int = setting(512 * 1024 * 1024, "Largest request body accepted, in bytes (413 above).")
    shutdown_timeout: float = setting(30.0, "Seconds allowed for a graceful shutdown.")
    state_dir: str = setting("", "Directory of the server's state kept across restarts (kernel records, "
                                 "kernel output logs, the lock one server holds); empty: `himalia` in the "
                                 "Jupyter runtime dir.", path=True)
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING, ERROR.")
    allow_remote_access: bool | None = setting(
        None, "Answer requests whose Host header is not a local name or a loopback address. Unset: "
              "true when `ip` is not a loopback address (jupyter_server's rule). The check stops DNS "
              "rebinding: a foreign site's name resolving to this machine.")
    local_hostnames: list[str] = setting(
        default_factory=lambda: ["localhost"], help="Host names accepted as local by the Host check "
                                                    "(loopback addresses always are).")
    allow_origin: str = setting("", "Origin allowed to make cross-origin requests ('*' for any, then "
                                    "without credentials). Empty: same-origin only.")
    allow_origin_pat: str = setting("", "Regular expression of allowed origins (full match).")
    allow_credentials: bool = setting(False, "Send Access-Control-Allow-Credentials to allowed origins "
                                             "(never with allow_origin = '*').")

    def __post_init__(self) -> None:
        if self.allow_origin_pat:
            try:
                re.compile(self.allow_origin_pat)
            except re.error as e:
                raise ValueError(f"'allow_origin_pat' is not a valid regular expression ({e}): "
                                 f"{self.allow_origin_pat!r}") from None


@dataclass
class RawConfig:
    """The parsed file (or nothing), before plugin sections are known."""

    data: dict[str, Any]
    path: Path | None
    origins: dict[tuple[str, ...], Override] = field(default_factory=dict)
    """Keys set on the command line → the flag that set them, so errors name the flag, not the file."""

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "<defaults>"

    def where(self, *key: str) -> str:
        """Who set the dotted `key` (or a key under it): `--set server.port=x`, `--port`, else the file."""
        for parts, origin in self.origins.items():
            if parts[:len(key)] == key:
                return origin.label
        return self.label

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def disabled(self) -> list[str]:
        plugins = self.data.get("plugins", {})
        if not isinstance(plugins, dict):
            raise ConfigError(f"{self.label}: [plugins] must be a table, got {_type_name(plugins)}")
        value = plugins.get("disable", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.label}: [plugins] 'disable' expects a list of strings, got "
                              f"{_type_name(value)}: {value!r}")
        return list(value)


@dataclass(frozen=True)
class Config:
    """The validated configuration: `[server]` and one dataclass instance per plugin section."""

    server: ServerConfig
    plugins: dict[str, Any]
    disabled: tuple[str, ...] = ()
    path: Path | None = None

    @typing.overload
    def section(self, name: str) -> Any: ...

    @typing.overload
    def section(self, name: str, schema: type[T]) -> T: ...

    def section(self, name: str, schema: type[T] | None = None) -> Any:
        """The validated `[plugins.<name>]` dataclass (defaults when the table is absent).

        With `schema`, the value is checked to be one and typed as one:
        `config.section("auth", AuthConfig)` is an `AuthConfig` to a type checker.
        """
        try:
            value = self.plugins[name]
        except KeyError:
            raise KeyError(f"no config section [plugins.{name}] is declared") from None
        if schema is not None and not isinstance(value, schema):
            raise TypeError(f"config section [plugins.{name}] holds {type(value).__name__}, "
                            f"not {schema.__name__}")
        return value


def find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return p.resolve()
    p = Path.cwd() / DEFAULT_CONFIG_NAME
    return p if p.is_file() else None


def read_config(explicit: str | None = None, data: dict[str, Any] | None = None) -> RawConfig:
    """Read `--config PATH`, else `./himalia.toml` when present, else defaults (or `data` as given)."""
    if data is not None:
        return RawConfig(_deep_copy(data), Path(explicit).resolve() if explicit else None)
    path = find_config_file(explicit)
    if path is None:
        return RawConfig({}, None)
    try:
        with open(path, "rb") as f:
            parsed = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return RawConfig(parsed, path)


@dataclass(frozen=True)
class Override:
    """A value given on the command line: `--set KEY=VALUE` or a flag (`--port 9000`).

    `text` is what was typed after `=` (None for a typed flag): a key that expects a string takes it
    as typed, so `--set plugins.x.name=123` is the string "123", no quoting needed.
    """

    value: Any
    label: str
    text: str | None = None


def parse_override(text: str) -> tuple[list[str], Override]:
    """`server.port=9000` or `plugins.sessions.database=s.db` → (["server", "port"], Override(9000, ...)).

    The value is read as a TOML value when it is one (numbers, booleans, lists, quoted strings),
    else taken as a plain string; a key that expects a string gets the text as typed either way.
    """
    key, sep, value = text.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text}: expected SECTION.KEY=VALUE, e.g. server.port=9000")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return parts, Override(parsed, f"--set {text}", value)


def apply_overrides(raw: RawConfig, overrides: dict[tuple[str, ...], Any]) -> None:
    """Set dotted keys in the raw data (command-line flags and `--set`), creating tables as needed.

    A value may be an `Override`, remembered so that an error about it names the flag."""
    for parts, value in overrides.items():
        label = value.label if isinstance(value, Override) else f"--set {'.'.join(parts)}"
        table = raw.data
        for p in parts[:-1]:
            nxt = table.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{label}: '{p}' is not a table")
            table = nxt
        if isinstance(value, Override):
            raw.origins[tuple(parts)] = value
            value = value.value
        table[parts[-1]] = value


def validate(raw: RawConfig, sections: list[ConfigSection], known_plugins: set[str] = frozenset()) -> Config:
    """Check every table and key against the declared schemas; build the frozen Config.

    `known_plugins` are installed plugin names whose tables are accepted even when the plugin is
    disabled or declares no section (their tables are then ignored).
    """
    data = raw.data
    for key in data:
        if key not in ("server", "plugins"):
            raise ConfigError(f"{raw.where(key)}: unknown table [{key}]; expected [server] or [plugins.<name>]")
    server = _build(raw, "server", ServerConfig, data.get("server", {}))
    plugins_raw = data.get("plugins", {})
    if not isinstance(plugins_raw, dict):
        raise ConfigError(f"{raw.label}: [plugins] must be a table, got {_type_name(plugins_raw)}")
    disabled = tuple(raw.disabled())
    by_name = {s.name: s for s in sections}
    plugins: dict[str, Any] = {}
    for name, table in plugins_raw.items():
        if name == "disable":
            continue
        if name not in by_name:
            if name in known_plugins or name in disabled:
                continue
            declared = ", ".join(sorted(by_name)) or "none"
            raise ConfigError(f"{raw.where('plugins', name)}: unknown table [plugins.{name}]; declared sections: {declared}")
        if not isinstance(table, dict):
            raise ConfigError(f"{raw.label}: [plugins.{name}] must be a table, got {_type_name(table)}")
    for name, section in sorted(by_name.items()):
        plugins[name] = _build(raw, f"plugins.{name}", section.schema, plugins_raw.get(name, {}), section.moved)
    return Config(server=server, plugins=plugins, disabled=disabled, path=raw.path)


def _build(raw: RawConfig, table: str, schema: type, values: Any, moved: Mapping[str, str] = {}) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{raw.label}: [{table}] must be a table, got {_type_name(values)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    prefix = tuple(table.split("."))
    for key in values:
        if key not in fields:
            if key in moved:  # a key that another table owns now: say where
                raise ConfigError(f"{raw.where(*prefix, key)}: [{table}] '{key}' has moved to {moved[key]}")
            known = ", ".join(fields) or "none"
            raise ConfigError(f"{raw.where(*prefix, key)}: [{table}] unknown key '{key}'; known keys: {known}")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        expected = hints[key]
        origin = raw.origins.get((*prefix, key))
        if origin is not None and origin.text is not None and not _matches(value, expected) \
                and _matches(origin.text, expected):
            value = origin.text  # `--set k=123` for a string key: the string "123", as typed
        if not _matches(value, expected):
            hint = ""
            if origin is not None and origin.text is not None and isinstance(value, str):
                hint = f" (the value is read as TOML: write it as {_describe(expected)} in TOML, e.g. " \
                       f"{_example(expected)}, and quote it for the shell)"
            raise ConfigError(f"{raw.where(*prefix, key)}: [{table}] '{key}' expects {_describe(expected)}, "
                              f"got {_type_name(value)}: {value!r}{hint}")
        if isinstance(value, int) and not isinstance(value, bool) and _is_float(expected):
            value = float(value)
        if fields[key].metadata.get("path") and isinstance(value, str) and value:
            value = str((raw.base_dir / os.path.expanduser(value)).resolve())
        kwargs[key] = value
    try:
        instance = schema(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{raw.where(*prefix)}: [{table}] {e}") from None
    # path defaults are relative to the config file as well
    for f in dataclasses.fields(schema):
        if f.metadata.get("path") and f.name not in kwargs:
            value = getattr(instance, f.name)
            if isinstance(value, str) and value:
                object.__setattr__(instance, f.name, str((raw.base_dir / value).resolve()))
    return instance


def _is_float(t: Any) -> bool:
    return t is float or (typing.get_origin(t) in (typing.Union, types.UnionType) and float in typing.get_args(t))


def _matches(value: Any, t: Any) -> bool:
    origin = typing.get_origin(t)
    if t is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(t) if a is not type(None))
    if origin is typing.Literal:
        return value in typing.get_args(t)
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or t in (list, tuple):
        args = typing.get_args(t)
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or t is dict:
        args = typing.get_args(t)
        return isinstance(value, dict) and (
            not args or all(isinstance(k, str) and _matches(v, args[1]) for k, v in value.items()))
    if isinstance(t, type):
        return isinstance(value, t)
    return True


def _describe(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(t) if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(t))
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if t in names:
        return names[t]
    if origin in (list, tuple, typing.Sequence):
        (arg,) = typing.get_args(t) or (Any,)
        return f"a list of {_plural(arg)}"
    if origin is dict:
        args = typing.get_args(t) or (str, Any)
        return f"a table of {_plural(args[1])}"
    return getattr(t, "__name__", str(t))


def _example(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in typing.get_args(t) if a is not type(None)))
    if origin is typing.Literal:
        return _toml_value(typing.get_args(t)[0])
    if origin in (list, tuple, typing.Sequence) or t in (list, tuple):
        (arg,) = typing.get_args(t) or (str,)
        return f"[{_example(arg)}, {_example(arg)}]"
    if origin is dict or t is dict:
        args = typing.get_args(t) or (str, str)
        return f'{{ "key" = {_example(args[1])} }}'
    return {bool: "true", int: "8", float: "1.5", str: '"text"'}.get(t, '"text"')


def _plural(t: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(t, "values")


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


# --- describing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyDescription:
    """One key `himalia config --describe` lists."""

    table: str
    key: str
    type: str
    default: Any
    help: str
    secret: bool = False
    path: bool = False


def describe_keys(sections: list[ConfigSection]) -> list[KeyDescription]:
    """Every key of `[server]` and of each declared `[plugins.<name>]` table, in file order."""
    out = _keys("server", ServerConfig)
    for section in sorted(sections, key=lambda s: s.name):
        out += _keys(f"plugins.{section.name}", section.schema)
    return out


def _keys(table: str, schema: type) -> list[KeyDescription]:
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        secret = bool(f.metadata.get("secret", False))
        out.append(KeyDescription(table, f.name, _describe(hints[f.name]), redact(default, secret=secret),
                                  f.metadata.get("help", ""), secret, bool(f.metadata.get("path", False))))
    return out


def describe(sections: list[ConfigSection]) -> str:
    """`himalia config --describe`: each table, then each key with its type, default and help."""
    helps = {f"plugins.{s.name}": s.help for s in sections}
    out: list[str] = []
    table = None
    for k in describe_keys(sections):
        if k.table != table:
            table = k.table
            out += ["" if out else None, f"[{table}]" + (f"  # {helps[table]}" if helps.get(table) else "")]
        default = "not set" if k.default is None else _toml_value(k.default)
        notes = "".join([", a path relative to the config file" if k.path else "", ", secret" if k.secret else ""])
        out.append(f"{k.key} = {default}    # {k.type}{notes}")
        if k.help:
            out.append(f"    {k.help}")
    return "\n".join(line for line in out if line is not None) + "\n"


# --- dumping ------------------------------------------------------------------------------------


def dump(config: Config) -> str:
    """The effective configuration as TOML, secrets redacted."""
    out = ["[server]"]
    out += _dump_fields(config.server)
    out += ["", "[plugins]", f"disable = {_toml_value(list(config.disabled))}"]
    for name, section in sorted(config.plugins.items()):
        out += ["", f"[plugins.{name}]"]
        out += _dump_fields(section)
    return "\n".join(out) + "\n"


def _dump_fields(instance: Any) -> list[str]:
    lines = []
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if value is None:
            lines.append(f"# {f.name} is not set")
            continue
        lines.append(f"{f.name} = {_toml_value(redact(value, secret=f.metadata.get('secret', False)))}")
    return lines


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")


def redact(value: Any, *, secret: bool = False) -> Any:
    """`value` as `himalia config` shows it. A `secret=True` field is hidden; a secret table keeps its
    keys (header names, say) and hides every value. Credentials in a URL's userinfo are hidden in every
    string, secret or not: `https://ada:pw@host` → `https://ada:<redacted>@host`, `https://tok@host` →
    `https://<redacted>@host`."""
    if isinstance(value, dict):
        return {k: redact(v, secret=secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secret=secret) for v in value]
    if secret and value:
        return REDACTED
    if isinstance(value, str):
        return _USERINFO.sub(_hide_userinfo, value)
    return value


def _hide_userinfo(m: re.Match[str]) -> str:
    user, sep, _password = m.group(2).partition(":")
    return f"{m.group(1)}{user}:{REDACTED}@" if sep else f"{m.group(1)}{REDACTED}@"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    return _toml_value(str(value))
