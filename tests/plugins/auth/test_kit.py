"""The token identity provider passes `himalia.testing.IdentityKit` with each way a client proves
itself (header, ?token= login, login cookie), through a real app."""

from __future__ import annotations

import pytest

from himalia import SERVICES
from himalia.testing import IdentityKit


class TokenKit(IdentityKit):
    @pytest.fixture
    async def identity(self, himalia_server):
        async with himalia_server() as server:
            yield server.app[SERVICES].identity


class TestTokenHeader(TokenKit):
    @pytest.fixture
    def credentials(self, identity):
        return self.request(headers={"Authorization": f"token {identity.token}"})


class TestTokenQuery(TokenKit):
    @pytest.fixture
    def credentials(self, identity):
        return self.request(query={"token": identity.token})


class TestLoginCookie(TokenKit):
    @pytest.fixture
    async def credentials(self, identity):
        login = await identity.authenticate(self.request(query={"token": identity.token}))
        return self.request(cookies={c.name: c.value for c in login.set_cookies})
