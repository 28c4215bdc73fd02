"""Fixtures for the gateway plugin's tests: a module-scoped real Kernel Gateway, kernels per test."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module next to this file

from gateway_kit import WAIT, Gateway, Proxy, run_gateway  # noqa: E402


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway per test module (kernel listing on, as Enterprise Gateway has it); kernels per test."""
    with run_gateway(tmp_path_factory.mktemp("kg"), "--JupyterWebsocketPersonality.list_kernels=True",
                     "--KernelGatewayApp.env_process_whitelist=PATH") as gw:
        yield gw


@pytest.fixture
def own_gateway(tmp_path: Path) -> Any:
    """A factory for a gateway this test may stop: `with own_gateway() as gw:`."""
    return lambda *args, **kw: run_gateway(tmp_path / "own-kg", *args, **kw)


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[Proxy]:
    p = Proxy(gateway.port)
    p.server = await asyncio.start_server(p._handle, "127.0.0.1", 0)
    p.port = p.server.sockets[0].getsockname()[1]
    try:
        yield p
    finally:
        p.cut()
        p.server.close()
        await asyncio.wait_for(p.server.wait_closed(), WAIT)


@pytest.fixture
async def kernels_left(gateway: Gateway) -> AsyncIterator[None]:
    """After the test: shut down any kernel still on the shared gateway, and fail if there was one."""
    yield
    status, kernels = await gateway.aapi("GET", "/api/kernels")
    assert status == 200, kernels
    for k in kernels:
        await gateway.aapi("DELETE", f"/api/kernels/{k['id']}")
    assert not kernels, f"kernels outlived the test: {kernels}"
