"""Plugin loading: one pluggy manager per app, entry points loaded one by one, failures recorded.

Disabled names are blocked before any entry point is imported, so a broken plugin can always be
switched off. Async hook implementations and hookimpl options the facade cannot honour (tryfirst,
trylast, wrapper, hookwrapper) are refused, naming the plugin. Load errors do not raise here; `LoadedPlugins.raise_for_errors()` fails closed with one
line naming the plugin, its distribution and version, and the `--disable` hint.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "himalia"
IGNORED_HOOKIMPL_OPTIONS = ("tryfirst", "trylast", "wrapper", "hookwrapper")
"""pluggy options the facade (`himalia.hooks`) cannot honour: it calls implementations itself, in
plugin-name order. A plugin using one is refused at load rather than silently misordered."""


@dataclass
class PluginInfo:
    """What `himalia plugins` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    disabled: bool = False
    error: str | None = None
    traceback: str | None = None

    def line(self) -> str:
        where = f"{self.distribution} {self.version}" if self.distribution else "not installed"
        return f"plugin '{self.name}' ({where})"


@dataclass
class LoadedPlugins:
    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo]

    @property
    def errors(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.error]

    def raise_for_errors(self) -> None:
        errors = self.errors
        if not errors:
            return
        first = errors[0]
        more = f" (and {len(errors) - 1} more; see `himalia plugins`)" if len(errors) > 1 else ""
        raise PluginError(f"{first.line()} {first.error}{more}; disable it with --disable {first.name}")


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("himalia")
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(
    disabled: list[str] | tuple[str, ...] = (),
    *,
    entry_points: bool = True,
    extra: dict[str, Any] | None = None,
) -> LoadedPlugins:
    """Build a plugin manager: installed entry points (unless `entry_points` is false), then the
    `extra` name → plugin objects (tests use these), minus the `disabled` names."""
    pm = new_manager()
    infos: dict[str, PluginInfo] = {}
    for name in disabled:
        pm.set_blocked(name)
    candidates: list[tuple[str, Any, PluginInfo]] = []
    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                module=ep.value,
            )
            if ep.name in infos:
                prev = infos[ep.name]
                info.error = (f"has the same name as the plugin from {prev.distribution} {prev.version}; "
                              "uninstall one of them")
                infos[f"{ep.name} ({info.distribution})"] = info
                continue
            infos[ep.name] = info
            if ep.name in disabled:
                info.disabled = True
                continue
            try:
                obj = ep.load()
            except BaseException as e:  # a plugin's import may raise anything, SystemExit included
                if isinstance(e, KeyboardInterrupt):
                    raise
                info.error = f"failed to import {ep.value}: {type(e).__name__}: {e}"
                info.traceback = traceback.format_exc()
                continue
            candidates.append((ep.name, obj, info))
    for name, obj in sorted((extra or {}).items()):
        info = PluginInfo(name=name, module=getattr(obj, "__name__", repr(obj)))
        if name in infos:
            info.error = f"has the same name as {infos[name].line()}"
            infos[f"{name} (extra)"] = info
            continue
        infos[name] = info
        if name in disabled:
            info.disabled = True
            continue
        candidates.append((name, obj, info))
    for name, obj, info in candidates:
        _register(pm, name, obj, info)
    while True:  # check_pending reports one unknown hook at a time
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            plugin_name = pm.get_name(e.plugin)
            infos[plugin_name].error = _unknown_hooks_message(pm, e.plugin)
            pm.unregister(name=plugin_name)
            pm.set_blocked(plugin_name)
    return LoadedPlugins(pm, infos)


def _unknown_hooks_message(pm: pluggy.PluginManager, plugin: Any) -> str:
    """`implements an unknown hook 'himalia_kernel_stoped' (did you mean 'himalia_kernel_stopped'?)`,
    naming every unknown hook of the plugin, not only the first pluggy reports."""
    import difflib

    known = sorted(n for n in dir(hookspecs) if n.startswith("himalia_"))
    unknown = sorted(c.name for c in pm.get_hookcallers(plugin) or [] if not c.has_spec())
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    if not parts:  # not expected: pluggy raised for a hook it has a spec for
        return "implements an unknown hook"
    return f"implements unknown hook{'s' if len(parts) > 1 else ''} " + ", ".join(parts)


def _register(pm: pluggy.PluginManager, name: str, obj: Any, info: PluginInfo) -> None:
    async_hooks = [
        attr for attr in dir(obj)
        if attr.startswith("himalia_")
        and (inspect.iscoroutinefunction(getattr(obj, attr, None))
             or inspect.isasyncgenfunction(getattr(obj, attr, None)))
    ]
    if async_hooks:
        info.error = (f"implements {', '.join(async_hooks)} as async; hooks must be synchronous "
                      "(return objects that do the async work)")
        return
    try:
        pm.register(obj, name=name)
    except (pluggy.PluginValidationError, ValueError) as e:
        info.error = f"cannot be registered: {e}"
        return
    callers = pm.get_hookcallers(obj) or []
    for caller in sorted(callers, key=lambda c: c.name):
        for impl in caller.get_hookimpls():
            used = [o for o in IGNORED_HOOKIMPL_OPTIONS if impl.plugin is obj and getattr(impl, o, False)]
            if used:
                pm.unregister(obj)
                info.error = (f"uses @hookimpl({', '.join(used)}) on {caller.name}; Himalia calls every "
                              "implementation itself, in plugin-name order, so tryfirst, trylast, wrapper "
                              "and hookwrapper would be ignored: use a plain @hookimpl")
                return
    info.hooks = sorted(h.name for h in callers)
