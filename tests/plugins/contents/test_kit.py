"""The filesystem contents provider passes `himalia.testing.ContentsKit`, through a real app: the kit
cannot drift from the default provider it describes."""

from __future__ import annotations

import pytest

from himalia import SERVICES
from himalia.testing import ContentsKit


class TestFilesystemContents(ContentsKit):
    @pytest.fixture
    async def contents(self, himalia_server):
        async with himalia_server() as server:
            yield server.app[SERVICES].contents

