"""Example plugin `echo`: the `echo` kernel provider (kernels that print their code back)."""

from __future__ import annotations

from himalia import Provider, Requirement, hookimpl


def _echo_kernels(app):
    from .kernels import echo_kernels

    return echo_kernels(app)


@hookimpl
def himalia_kernel_providers():
    return [Provider("echo", _echo_kernels, "kernels in the server process that print their code back",
                     requires=(Requirement("kernels", provided_by="kernels"),))]
