"""The local kernel provider passes `himalia.testing.KernelsKit` with real ipykernel kernels, through a
real app: the kit cannot drift from the default provider it describes."""

from __future__ import annotations

import pytest

from himalia import SERVICES
from himalia.testing import KernelsKit


class TestLocalKernels(KernelsKit):
    @pytest.fixture
    async def kernel_provider(self, himalia_server, no_orphans):
        async with himalia_server() as server:
            yield server.app[SERVICES].kernel_provider
