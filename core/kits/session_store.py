"""`SessionStoreKit`: the session-store contract the sessions plugin relies on.

    class TestMyStore(SessionStoreKit):
        @pytest.fixture
        async def session_store(self, himalia_server):
            async with himalia_server(config={"server": {"session_store": "mine"}}) as server:
                yield server.app[SERVICES].session_store

The store must start empty. Rows only: the kit never needs a kernel.
"""

from __future__ import annotations

import asyncio

import pytest

from ..services import SessionRecord, SessionStore


def record(n: int, *, path: str | None = None, kernel: str = "k1", name: str | None = "nb.ipynb") -> SessionRecord:
    return SessionRecord(f"s{n}", path or f"dir/nb{n}.ipynb", name, "notebook", kernel)


class SessionStoreKit:
    """The session-store contract. Subclass with a `session_store` fixture yielding an empty store."""

    @pytest.fixture
    def session_store(self) -> SessionStore:
        raise NotImplementedError("define a `session_store` fixture yielding your SessionStore, empty")

    async def test_is_a_session_store_and_starts_empty(self, session_store: SessionStore) -> None:
        assert isinstance(session_store, SessionStore)
        assert await session_store.list() == []

    async def test_add_then_get_returns_an_equal_record(self, session_store: SessionStore) -> None:
        await session_store.add(record(1))
        assert await session_store.get("s1") == record(1)
        assert await session_store.get("nope") is None

    async def test_a_missing_name_stays_none(self, session_store: SessionStore) -> None:
        await session_store.add(record(1, name=None))
        got = await session_store.get("s1")
        assert got is not None and got.name is None

    async def test_adding_an_existing_id_raises_value_error(self, session_store: SessionStore) -> None:
        await session_store.add(record(1))
        with pytest.raises(ValueError):
            await session_store.add(record(1, path="other.ipynb"))
        assert [r.path for r in await session_store.list()] == ["dir/nb1.ipynb"]

    async def test_list_and_find_are_oldest_first(self, session_store: SessionStore) -> None:
        for r in (record(3), record(1, kernel="k2"), record(2, path="dir/nb3.ipynb", kernel="k2", name=None)):
            await session_store.add(r)
        assert [r.id for r in await session_store.list()] == ["s3", "s1", "s2"]
        assert [r.id for r in await session_store.find()] == ["s3", "s1", "s2"]
        assert [r.id for r in await session_store.find(path="dir/nb3.ipynb")] == ["s3", "s2"]
        assert [r.id for r in await session_store.find(kernel_id="k2")] == ["s1", "s2"]
        assert [r.id for r in await session_store.find(path="dir/nb3.ipynb", kernel_id="k2")] == ["s2"]
        assert await session_store.find(path="nowhere.ipynb") == []

    async def test_update_replaces_the_record_or_says_there_was_none(self, session_store: SessionStore) -> None:
        await session_store.add(record(1))
        changed = SessionRecord("s1", "moved.ipynb", "moved.ipynb", "console", "k9")
        assert await session_store.update(changed) is True
        assert await session_store.get("s1") == changed
        assert await session_store.find(path="dir/nb1.ipynb") == []
        assert await session_store.update(record(99)) is False
        assert await session_store.get("s99") is None

    async def test_remove_reports_the_deletion_once(self, session_store: SessionStore) -> None:
        await session_store.add(record(1))
        await session_store.add(record(2))
        assert await session_store.remove("s1") is True
        assert await session_store.remove("s1") is False
        assert [r.id for r in await session_store.list()] == ["s2"]

    async def test_concurrent_calls_are_each_atomic(self, session_store: SessionStore) -> None:
        await asyncio.gather(*(session_store.add(record(n)) for n in range(20)))
        assert sorted(r.id for r in await session_store.list()) == sorted(f"s{n}" for n in range(20))
        results = await asyncio.gather(*(session_store.remove("s0") for _ in range(10)))
        assert results.count(True) == 1
        duplicates = await asyncio.gather(*(session_store.add(record(100)) for _ in range(5)),
                                          return_exceptions=True)
        assert sum(d is None for d in duplicates) == 1
        assert all(isinstance(d, ValueError) for d in duplicates if d is not None)

    async def test_records_returned_are_copies(self, session_store: SessionStore) -> None:
        await session_store.add(record(1))
        got = await session_store.get("s1")
        assert got is not None
        got.path = "changed-by-the-caller.ipynb"
        assert (await session_store.get("s1")) == record(1)
