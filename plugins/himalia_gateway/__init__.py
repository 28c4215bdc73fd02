"""Default plugin `gateway`: kernels and kernelspecs from a remote Jupyter Kernel Gateway or Enterprise Gateway.

It offers the kernel provider `gateway`, chosen by default when a gateway url is set; the kernels
plugin's routes and websocket protocols serve its kernels unchanged. It adds the gateway's
reachability to `/api/status`.
"""

from __future__ import annotations

from himalia import CliOption, ConfigSection, Provider, Requirement, hookimpl

from .config import MOVED, GatewayConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("gateway", GatewayConfig, "A remote Jupyter Kernel Gateway or Enterprise Gateway.",
                          moved=MOVED)]


@hookimpl
def himalia_cli_options():
    return [
        CliOption("--gateway-url", "plugins.gateway.url", "run kernels on the gateway at this URL "
                                                         "(Jupyter Kernel Gateway, Enterprise Gateway)"),
        CliOption("--gateway-ws-url", "plugins.gateway.ws_url", "websocket URL of the gateway (default: from "
                                                               "--gateway-url)"),
        CliOption("--gateway-auth-token", "plugins.gateway.auth_token", "token sent to the gateway"),
    ]


def _url_is_set(config) -> bool:
    return bool(config.section("gateway").effective().url)


def _gateway_kernels(app):
    from .manager import gateway_kernels  # only when the gateway is the chosen provider

    return gateway_kernels(app)


@hookimpl
def himalia_kernel_providers():
    return [Provider("gateway", _gateway_kernels, "kernels on a remote Jupyter Kernel/Enterprise Gateway",
                     preferred=_url_is_set, requires=(Requirement("kernels", provided_by="kernels"),))]


@hookimpl
def himalia_resources(config):
    from .health import GatewayProbe

    gateway = config.section("gateway").effective()
    in_use = gateway.url and config.server.kernel_provider in ("", "gateway")
    return [GatewayProbe(gateway)] if in_use else []


@hookimpl
def himalia_status(app):
    from .health import status

    return status(app)


@hookimpl
def himalia_kept_kernels(config):
    from .kept import GatewayKept

    return [GatewayKept(config)]
