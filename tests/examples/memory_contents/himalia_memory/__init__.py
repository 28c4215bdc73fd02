"""Example plugin `memory`: an in-memory contents provider, selected with `[server] contents_provider = "memory"`."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import ConfigSection, Provider, Route, hookimpl, setting


@dataclass(frozen=True)
class MemoryConfig:
    files: dict[str, str] = setting(default_factory=dict, help="Text files to start with: API path → content.")


@hookimpl
def himalia_config_sections():
    return [ConfigSection("memory", MemoryConfig, "The in-memory contents provider.")]


@hookimpl
def himalia_contents_providers():
    from .contents import memory_contents

    return [Provider("memory", memory_contents, "Files and notebooks in a dict; gone when the server stops")]


@hookimpl
def himalia_routes(config):
    from .contents import read_contents

    return [Route("GET", "/api/memory/files/{path:.*}", read_contents)]
