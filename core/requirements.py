"""Services plugins build on the providers (`himalia_services`) and declared requirements
(`himalia_requirements`, `Provider.requires`): their start-up order and the one-line error for a
service nothing provides (`plugin 'sessions' needs the kernel service, which plugin 'kernels'
provides; it is disabled`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from .config import Config
from .errors import StartupError
from .hooks import Hooks
from .keys import SERVICES
from .plugins import LoadedPlugins
from .services import Provider, Requirement, Service, Services

log = logging.getLogger("himalia")


def service_context(plugin: str, service: Service[Any], entered: Callable[..., Any]) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of one service: entered like a provider (`entered` turns a failure into a
    StartupError naming it), stored as `app[SERVICES].<role>`, cleared at exit."""
    async def context(app: web.Application) -> AsyncIterator[None]:
        what = f"plugin '{plugin}' service '{service.role}'"
        async with entered(what, lambda: service.factory(app)) as value:
            setattr(app[SERVICES], service.role, value)
            try:
                yield
            finally:
                setattr(app[SERVICES], service.role, None)

    context.__name__ = f"{service.role}_service"
    return context


def stop_services(services: list[tuple[str, Service[Any]]]) -> Callable[[web.Application], Awaitable[None]]:
    """The shutdown phase (an `on_shutdown` handler, after the core's websocket closing): each running
    service's `stop`, in reverse start order, before `cleanup_ctx` exits any resource or service."""
    async def stop(app: web.Application) -> None:
        for plugin, service in reversed(services):
            value = getattr(app[SERVICES], service.role, None)
            if service.stop is None or value is None:
                continue
            try:
                await service.stop(value)
            except Exception:
                log.exception("plugin '%s' service '%s' failed to stop at shutdown", plugin, service.role)

    return stop


ROLE_NAMES = {"kernels": "the kernel service", "kernel_provider": "a kernel provider",
              "contents": "the contents service", "session_store": "a session store",
              "identity": "an identity provider"}


def ordered_services(hooks: Hooks, config: Config,
                      chosen: dict[str, Provider[Any]]) -> list[tuple[str, Service[Any]]]:
    """`himalia_services` records in start-up order: each after the services it requires (plugin-name
    order otherwise). A role offered twice, or by a service and a provider, names both."""
    offered: dict[str, str] = {role: "a provider" for role in chosen}
    pending: list[tuple[str, Service[Any]]] = []
    for a in hooks.services(config):
        role = a.item.role
        if role not in Services.__dataclass_fields__:
            raise StartupError(f"plugin '{a.plugin}' offers a service for unknown role '{role}'")
        if role in offered:
            raise StartupError(f"service '{role}' from plugin '{a.plugin}' conflicts with {offered[role]}")
        offered[role] = f"plugin '{a.plugin}'"
        pending.append((a.plugin, a.item))
    ordered: list[tuple[str, Service[Any]]] = []
    ready = set(chosen)
    while pending:
        next_round = [(p, s) for p, s in pending
                      if all(r.role in ready or r.role not in offered for r in s.requires)]
        if not next_round:
            names = ", ".join(f"'{s.role}' (plugin '{p}')" for p, s in pending)
            raise StartupError(f"services require each other in a cycle: {names}")
        for item in next_round:
            ordered.append(item)
            ready.add(item[1].role)
            pending.remove(item)
    return ordered


def check_requirements(hooks: Hooks, config: Config, plugins: LoadedPlugins, chosen: dict[str, Provider[Any]],
                       services: list[tuple[str, Service[Any]]], hook_roles: dict[str, str]) -> None:
    """One line for the first requirement nothing fills: which plugin needs what, who provides it."""
    filled = set(chosen) | {s.role for _, s in services}
    needs: list[tuple[str, Requirement]] = [(a.plugin, a.item) for a in hooks.requirements(config)]
    for role, provider in chosen.items():
        if provider.requires:
            plugin = next(a.plugin for a in hooks.providers(hook_roles[role]) if a.item.name == provider.name)
            needs.extend((plugin, r) for r in provider.requires)
    needs.extend((p, r) for p, s in services for r in s.requires)
    missing = [(p, r) for p, r in needs if r.role not in filled]
    if not missing:
        return
    plugin, first = missing[0]
    info = plugins.infos.get(first.provided_by)
    if info is None:
        state = "it is not installed"
    elif info.disabled or first.provided_by in config.disabled:
        state = "it is disabled"
    elif info.error:
        state = "it failed to load"
    else:
        state = "it offers none with this config"
    raise StartupError(f"plugin '{plugin}' needs {ROLE_NAMES.get(first.role, f'the {first.role} service')}, which "
                       f"plugin '{first.provided_by}' provides; {state}")
