"""Default plugin `kernels`: the kernel service, which serves the chosen kernel provider's kernels (local,
gateway, a third party's): the kernel and kernelspec routes, the websocket relay with its replay buffers,
live models and activity, culling, and the started/stopped events. It runs no kernel itself."""

from __future__ import annotations

from himalia import CliCommand, ConfigSection, Requirement, Route, Service, hookimpl

from .config import MOVED, KernelsConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("kernels", KernelsConfig, "Kernel lifecycle, reconnect buffers and culling.",
                          moved=MOVED)]


def _kernel_service(app):
    from .live import kernel_service

    return kernel_service(app)


def _kernel_relay(app):
    from .live import kernel_relay

    return kernel_relay(app)


async def _end_kernels(live):
    await live.end()  # at shutdown, before any plugin resource exits (see `Service.stop`)


_NEEDS_PROVIDER = (Requirement("kernel_provider", provided_by="local"),)


@hookimpl
def himalia_services(config):
    return [Service("kernels", _kernel_service, "live kernels, culling and events over the kernel provider",
                    requires=_NEEDS_PROVIDER, stop=_end_kernels),
            Service("kernel_relay", _kernel_relay, "the kernel websocket relay",
                    requires=(Requirement("kernels", provided_by="kernels"),))]


@hookimpl
def himalia_requirements(config):
    return list(_NEEDS_PROVIDER)


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
        Route("GET", "/api/kernels/{kernel_id}/outputs", h.kernel_outputs),
    ]


@hookimpl
def himalia_openapi(config):
    from .handlers import openapi

    return openapi()


def _add_arguments(parser):
    from .commands import add_arguments

    add_arguments(parser)


def _run(ns, config):
    from .commands import run

    return run(ns, config)


@hookimpl
def himalia_cli_commands():
    return [CliCommand("kernels", "list or stop the kernels recorded in the state dir (kept kernels, local "
                                  "and on a gateway), with no server running", _add_arguments, _run)]
