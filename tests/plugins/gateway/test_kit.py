"""The gateway kernel provider passes `himalia.testing.KernelsKit` against a real Kernel Gateway: the
kit holds for a remote provider too."""

from __future__ import annotations

import pytest
from gateway_kit import TOKEN

from himalia import SERVICES
from himalia.testing import KernelsKit


class TestGatewayKernels(KernelsKit):
    @pytest.fixture
    async def kernel_provider(self, himalia_server, gateway, kernels_left):
        async with himalia_server(config={"plugins": {"gateway": {"url": gateway.url, "auth_token": TOKEN}}}) as server:
            yield server.app[SERVICES].kernel_provider
