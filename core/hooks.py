"""The typed facade over the plugin manager: the only place that calls hook implementations.

Collect-all hooks are called implementation by implementation in plugin-name order, so results
never depend on registration order and every error names the plugin at fault (pluggy's tryfirst,
trylast and wrappers are therefore refused when plugins load; see `himalia.plugins`). Notifications log
an observer's exception instead of letting it break the kernel, session or save that triggered it.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from .errors import ApiError, PluginError, ProviderError

if TYPE_CHECKING:
    from aiohttp import web

    from .config import Config, ConfigSection
    from .records import CliCommand, CliOption, Middleware, Route
    from .statedir import KeptKernels
    from .services import AppResource, Model, Provider, Requirement, Service

log = logging.getLogger("himalia.hooks")
T = TypeVar("T")


class Attributed(Generic[T]):
    """An item returned by a collect-all hook, with the plugin that returned it."""

    __slots__ = ("plugin", "item")

    def __init__(self, plugin: str, item: T):
        self.plugin = plugin
        self.item = item


class Hooks:
    """Typed calls of every hookspec in `himalia.hookspecs`."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm

    # -- machinery ---------------------------------------------------------------------------

    def _impls(self, hookname: str) -> list[Any]:
        return sorted(getattr(self.pm.hook, hookname).get_hookimpls(), key=lambda i: i.plugin_name)

    def _call(self, impl: Any, hookname: str, kwargs: dict[str, Any]) -> Any:
        result = impl.function(*[kwargs[a] for a in impl.argnames])
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise PluginError(f"plugin '{impl.plugin_name}' returned an awaitable from {hookname}; "
                              "hooks must be synchronous")
        return result

    def _collect(self, hookname: str, **kwargs: Any) -> list[Attributed[Any]]:
        out: list[Attributed[Any]] = []
        for impl in self._impls(hookname):
            try:
                result = self._call(impl, hookname, kwargs)
            except PluginError:
                raise
            except Exception as e:
                raise PluginError(f"plugin '{impl.plugin_name}' failed in {hookname}: "
                                  f"{type(e).__name__}: {e}") from e
            if result is None:
                continue
            if isinstance(result, dict):
                out.append(Attributed(impl.plugin_name, result))
                continue
            if not isinstance(result, (list, tuple)):
                raise PluginError(f"plugin '{impl.plugin_name}' returned {type(result).__name__} from "
                                  f"{hookname}; expected a list")
            out.extend(Attributed(impl.plugin_name, r) for r in result)
        return out

    def _notify(self, hookname: str, **kwargs: Any) -> None:
        for impl in self._impls(hookname):
            try:
                self._call(impl, hookname, kwargs)
            except Exception:
                log.exception("plugin '%s' failed in %s", impl.plugin_name, hookname)

    # -- configuration -----------------------------------------------------------------------

    def config_sections(self) -> list[ConfigSection]:
        seen: dict[str, str] = {}
        sections = []
        for a in self._collect("himalia_config_sections"):
            if a.item.name in seen:
                raise PluginError(f"config section [plugins.{a.item.name}] is declared by plugin "
                                  f"'{seen[a.item.name]}' and plugin '{a.plugin}'")
            seen[a.item.name] = a.plugin
            sections.append(a.item)
        return sections

    def cli_options(self) -> list[Attributed[CliOption]]:
        return self._collect("himalia_cli_options")

    def server_defaults(self) -> dict[str, Any]:
        """Every plugin's proposed `[server]` values, merged; a key proposed with two values is an error."""
        merged: dict[str, tuple[Any, str]] = {}
        for a in self._collect("himalia_server_defaults"):
            for key, value in a.item.items():
                if key in merged and merged[key][0] != value:
                    raise PluginError(f"plugins '{merged[key][1]}' and '{a.plugin}' propose different "
                                      f"[server] {key}: {merged[key][0]!r} and {value!r}; set it in the config")
                merged[key] = (value, a.plugin)
        return {key: value for key, (value, _) in merged.items()}

    def cli_commands(self) -> list[Attributed[CliCommand]]:
        return self._collect("himalia_cli_commands")

    def kept_kernels(self, config: Config) -> list[Attributed[KeptKernels]]:
        """Each plugin's kernels recorded in the state dir (`himalia kernels list|stop`)."""
        return self._collect("himalia_kept_kernels", config=config)

    # -- providers ---------------------------------------------------------------------------

    def providers(self, role: str) -> list[Attributed[Provider[Any]]]:
        """Provider records for `role`: contents, session_store, kernel, identity."""
        return self._collect(f"himalia_{role}_providers")

    def select_provider(self, role: str, wanted: str, default: str | None, config: Config) -> Provider[Any] | None:
        """The provider named `wanted`, else the preferred one, else `default`.

        Raises ProviderError for duplicate names and for an unknown name (listing what is installed).
        Returns None only when nothing is wanted and no default is installed.
        """
        label = role.replace("_", " ")
        by_name: dict[str, Attributed[Provider[Any]]] = {}
        for a in self.providers(role):
            if a.item.name in by_name:
                raise ProviderError(f"two {label} providers are named '{a.item.name}': from plugin "
                                    f"'{by_name[a.item.name].plugin}' and plugin '{a.plugin}'")
            by_name[a.item.name] = a
        installed = ", ".join(sorted(by_name)) or "none"
        if not wanted:
            preferred = [a for a in by_name.values() if a.item.preferred and a.item.preferred(config)]
            if len(preferred) > 1:
                names = ", ".join(a.item.name for a in preferred)
                raise ProviderError(f"several {label} providers want to be the default ({names}); "
                                    f"choose one in [server]")
            if preferred:
                return preferred[0].item
            if default is None or default not in by_name:
                return None
            wanted = default
        if wanted not in by_name:
            raise ProviderError(f"unknown {label} provider '{wanted}'; installed: {installed}")
        return by_name[wanted].item

    # -- the web application -----------------------------------------------------------------

    def routes(self, config: Config) -> list[Attributed[Route]]:
        return self._collect("himalia_routes", config=config)

    def middlewares(self, config: Config) -> list[Attributed[Middleware]]:
        return self._collect("himalia_middlewares", config=config)

    def services(self, config: Config) -> list[Attributed[Service[Any]]]:
        return self._collect("himalia_services", config=config)

    def requirements(self, config: Config) -> list[Attributed[Requirement]]:
        return self._collect("himalia_requirements", config=config)

    def resources(self, config: Config) -> list[Attributed[AppResource]]:
        return self._collect("himalia_resources", config=config)

    def openapi(self, config: Config) -> list[Attributed[dict[str, Any]]]:
        return self._collect("himalia_openapi", config=config)

    def event_schemas(self, config: Config) -> list[Attributed[Any]]:
        """Each plugin's event schemas (dicts or schema file paths), with the plugin that gave them."""
        return self._collect("himalia_event_schemas", config=config)

    def status(self, app: web.Application) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for a in self._collect("himalia_status", app=app):
            merged.update(a.item)
        return merged

    def default_url(self, config: Config) -> str | None:
        """The first root page offered (plugin-name order), or None."""
        urls = self._collect("himalia_default_urls", config=config)
        return urls[0].item if urls else None

    def page_config(self, app: web.Application) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for a in self._collect("himalia_page_config", app=app):
            merged.update(a.item)
        return merged

    def plugin_notes(self, config: Config | None) -> dict[str, list[str]]:
        """Notes per plugin name for `himalia plugins`."""
        notes: dict[str, list[str]] = {}
        for a in self._collect("himalia_plugin_notes", config=config):
            notes.setdefault(a.plugin, []).append(str(a.item))
        return notes

    # -- events ------------------------------------------------------------------------------

    # The event hooks carry the app their kernel or session belongs to; an implementation written
    # before the argument existed (no `app` in its signature) is called without it, as pluggy allows.

    def kernel_started(self, kernel_id: str, name: str, app: web.Application | None = None) -> None:
        self._notify("himalia_kernel_started", kernel_id=kernel_id, name=name, app=app)

    def kernel_stopped(self, kernel_id: str, reason: str, app: web.Application | None = None) -> None:
        self._notify("himalia_kernel_stopped", kernel_id=kernel_id, reason=reason, app=app)

    def kernel_restarting(self, kernel_id: str, reason: str, app: web.Application | None = None) -> None:
        self._notify("himalia_kernel_restarting", kernel_id=kernel_id, reason=reason, app=app)

    def kernel_restarted(self, kernel_id: str, reason: str, app: web.Application | None = None) -> None:
        self._notify("himalia_kernel_restarted", kernel_id=kernel_id, reason=reason, app=app)

    def kernel_dead(self, kernel_id: str, reason: str, app: web.Application | None = None) -> None:
        self._notify("himalia_kernel_dead", kernel_id=kernel_id, reason=reason, app=app)

    def session_created(self, session: Model, app: web.Application | None = None) -> None:
        self._notify("himalia_session_created", session=session, app=app)

    def session_deleted(self, session_id: str, app: web.Application | None = None) -> None:
        self._notify("himalia_session_deleted", session_id=session_id, app=app)

    def contents_pre_save(self, path: str, model: Model) -> None:
        """Run every pre-save hook; they may mutate `model`. A failure aborts the save (ApiError)."""
        for impl in self._impls("himalia_contents_pre_save"):
            try:
                self._call(impl, "himalia_contents_pre_save", {"path": path, "model": model})
            except Exception as e:
                log.exception("plugin '%s' failed in pre-save of %s", impl.plugin_name, path)
                raise ApiError(f"plugin '{impl.plugin_name}' failed before saving {path}: "
                               f"{type(e).__name__}: {e}", "pre-save hook failed") from e

    def contents_post_save(self, path: str, model: Model) -> None:
        self._notify("himalia_contents_post_save", path=path, model=model)
