"""Conformance kits: test classes a provider's author subclasses to prove the provider honours its
Protocol in `himalia.services`, the contract the default plugins' handlers rely on.

    from himalia.testing import ContentsKit

    class TestMyContents(ContentsKit):
        @pytest.fixture
        async def contents(self, himalia_server):
            async with himalia_server(config={"server": {"contents_provider": "mine"}}) as server:
                yield server.app[SERVICES].contents

One module per service: `contents` (ContentsKit), `session_store` (SessionStoreKit), `identity`
(IdentityKit), `kernels` (KernelsKit, for kernel providers). The default providers run these kits in
Himalia's own suite, so a kit cannot drift from what the defaults do.

A kit declares what may legitimately be missing as class attributes (`read_only = True`,
`checkpoints = False`); the cases that need it are then skipped with the reason, never failed.
"""

from __future__ import annotations

from .contents import ContentsKit
from .identity import IdentityKit
from .kernels import KernelsKit
from .session_store import SessionStoreKit

__all__ = ["ContentsKit", "IdentityKit", "KernelsKit", "SessionStoreKit"]
