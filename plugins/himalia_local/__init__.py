"""Default plugin `local`: the `local` kernel provider, kernels as processes on this host (jupyter_client's
kernel managers, kernelspecs, provisioners and restarter; process groups; the zmq channels).

It is a provider only: the kernels plugin's kernel service serves its kernels (routes, websocket relay,
culling, events), as it serves any provider's.
"""

from __future__ import annotations

from himalia import ConfigSection, Provider, Requirement, hookimpl

from .config import LocalConfig


@hookimpl
def himalia_config_sections():
    return [ConfigSection("local", LocalConfig, "Local kernel processes: restarts, liveness checks, shutdown, "
                                                 "the warm pool.")]


def _local_kernels(app):
    from .manager import local_kernels  # jupyter_client only once the provider is chosen

    return local_kernels(app)


@hookimpl
def himalia_kernel_providers():
    return [Provider("local", _local_kernels, "Kernels as local processes, via jupyter_client",
                     requires=(Requirement("kernels", provided_by="kernels"),))]


@hookimpl
def himalia_status(app):
    from himalia import SERVICES

    from .manager import LocalKernels

    provider = app[SERVICES].kernel_provider
    if not isinstance(provider, LocalKernels) or provider.pool is None:
        return {}
    return {"kernel_pool": provider.pool_status()}


@hookimpl
def himalia_kept_kernels(config):
    from .commands import LocalKept

    return [LocalKept(config)]
