"""`IdentityKit`: the identity-provider contract the core's auth middleware relies on.

    class TestMyIdentity(IdentityKit):
        @pytest.fixture
        async def identity(self, himalia_server):
            async with himalia_server(config={"server": {"identity_provider": "mine"}}) as server:
                yield server.app[SERVICES].identity

        @pytest.fixture
        def credentials(self, identity):
            return IdentityKit.request(headers={"Authorization": "Bearer " + make_a_valid_token()})

`credentials` is a request the provider accepts; the kit checks it is accepted (on plain requests and
websocket upgrades alike) and that strangers, forged tokens and forged cookies are refused with a 401
or 403 ApiError, never an accepted identity or another exception.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import pytest

from ..errors import ApiError
from ..services import Authenticated, Cookie, Credentials, Identity, IdentityProvider

FORGED = "forged-0123456789abcdef0123456789abcdef"


class IdentityKit:
    """The identity contract. Subclass with `identity` and `credentials` fixtures."""

    @pytest.fixture
    def identity(self) -> IdentityProvider:
        raise NotImplementedError("define an `identity` fixture yielding your IdentityProvider")

    @pytest.fixture
    def credentials(self) -> Credentials:
        raise NotImplementedError("define a `credentials` fixture: a request your provider accepts "
                                  "(IdentityKit.request(headers=...) builds one)")

    @staticmethod
    def request(method: str = "GET", path: str = "/api/status", *, headers: Mapping[str, str] = {},
                cookies: Mapping[str, str] = {}, query: Mapping[str, str] = {}, is_websocket: bool = False,
                secure: bool = False) -> Credentials:
        """A `Credentials` as the core builds one from a request."""
        return Credentials(method, path, dict(headers), dict(cookies), dict(query), is_websocket, secure)

    async def refused(self, identity: IdentityProvider, credentials: Credentials) -> ApiError:
        with pytest.raises(ApiError) as info:
            await identity.authenticate(credentials)
        assert info.value.status in (401, 403), f"expected 401 or 403, got {info.value.status}: {info.value}"
        assert info.value.message
        return info.value

    async def test_is_an_identity_provider(self, identity: IdentityProvider) -> None:
        assert isinstance(identity, IdentityProvider)
        assert identity.token is None or (isinstance(identity.token, str) and identity.token)

    async def test_accepted_credentials_give_an_identity(self, identity: IdentityProvider,
                                                         credentials: Credentials) -> None:
        result = await identity.authenticate(credentials)
        assert isinstance(result, Authenticated)
        assert isinstance(result.identity, Identity)
        assert isinstance(result.identity.username, str) and result.identity.username
        model = result.identity.model()
        assert json.loads(json.dumps(model)) == model
        assert {"username", "name", "display_name", "initials", "avatar_url", "color"} <= set(model)
        assert all(isinstance(c, Cookie) and c.name for c in result.set_cookies)

    async def test_accepted_again_and_on_a_websocket_upgrade(self, identity: IdentityProvider,
                                                             credentials: Credentials) -> None:
        first = await identity.authenticate(credentials)
        again = await identity.authenticate(credentials)
        assert again.identity.username == first.identity.username
        upgrade = dataclasses.replace(credentials, method="GET", path="/api/kernels/k/channels", is_websocket=True)
        assert (await identity.authenticate(upgrade)).identity.username == first.identity.username

    async def test_a_stranger_is_refused(self, identity: IdentityProvider) -> None:
        await self.refused(identity, self.request())
        await self.refused(identity, self.request("POST", "/api/contents"))
        await self.refused(identity, self.request(path="/api/kernels/k/channels", is_websocket=True))

    async def test_forged_tokens_and_cookies_are_refused(self, identity: IdentityProvider,
                                                         credentials: Credentials) -> None:
        for forged in (
            self.request(headers={"Authorization": f"token {FORGED}"}),
            self.request(headers={"Authorization": f"Bearer {FORGED}"}),
            self.request(query={"token": FORGED}),
            self.request(cookies={name: FORGED for name in credentials.cookies} or {"session": FORGED}),
        ):
            await self.refused(identity, forged)

    async def test_a_refusal_is_not_remembered_against_good_credentials(self, identity: IdentityProvider,
                                                                        credentials: Credentials) -> None:
        await self.refused(identity, self.request(headers={"Authorization": f"token {FORGED}"}))
        assert isinstance(await identity.authenticate(credentials), Authenticated)
