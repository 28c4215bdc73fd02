"""The sqlite session store passes `himalia.testing.SessionStoreKit`, in memory and on disk, through a
real app: the kit cannot drift from the default store it describes."""

from __future__ import annotations

import pytest

from himalia import SERVICES
from himalia.testing import SessionStoreKit


class TestSqliteStoreInMemory(SessionStoreKit):
    @pytest.fixture
    async def session_store(self, himalia_server):
        async with himalia_server() as server:
            yield server.app[SERVICES].session_store


class TestSqliteStoreOnDisk(SessionStoreKit):
    @pytest.fixture
    async def session_store(self, himalia_server, tmp_path):
        config = {"plugins": {"sessions": {"database": str(tmp_path / "sessions.db")}}}
        async with himalia_server(config=config) as server:
            yield server.app[SERVICES].session_store
