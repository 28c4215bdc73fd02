"""Default plugin `kernels`: the `local` kernel provider, the kernel and kernelspec routes, and the
kernel websocket with its relay, which serve any kernel provider (local or remote)."""

from __future__ import annotations

from himalia import ConfigSection, Provider, Route, hookimpl

from .config import KernelsConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("kernels", KernelsConfig, "Kernel lifecycle, reconnect buffers and culling.")]


@hookimpl
def himalia_kernel_providers():
    from .local import local_kernels

    return [Provider("local", local_kernels, "Kernels as local processes, via jupyter_client")]


@hookimpl
def himalia_resources(config):
    from .live import live_kernels

    return [live_kernels]


@hookimpl
def himalia_routes(config):
    from . import handlers as h

    return [
        Route("GET", "/api/kernelspecs", h.list_kernelspecs),
        Route("GET", "/api/kernelspecs/{name}", h.get_kernelspec),
        Route("GET", "/kernelspecs/{name}/{resource}", h.get_kernelspec_resource),
        Route("GET", "/api/kernels", h.list_kernels),
        Route("POST", "/api/kernels", h.start_kernel),
        Route("GET", "/api/kernels/{kernel_id}", h.get_kernel),
        Route("DELETE", "/api/kernels/{kernel_id}", h.delete_kernel),
        Route("POST", "/api/kernels/{kernel_id}/interrupt", h.interrupt_kernel),
        Route("POST", "/api/kernels/{kernel_id}/restart", h.restart_kernel),
        Route("GET", "/api/kernels/{kernel_id}/channels", h.kernel_channels),
    ]


@hookimpl
def himalia_openapi(config):
    from .handlers import openapi

    return openapi()
