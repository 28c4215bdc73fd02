"""The SQLite session store on its own: the SessionStore protocol, a file that survives reopening,
schema versions, and that it runs off the event loop."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from himalia import SessionRecord, SessionStore
from himalia_sessions.store_sqlite import MIGRATIONS, SqliteSessionStore, open_sqlite_store


def record(n: int, *, path: str | None = None, kernel: str = "k1", name: str | None = "nb.ipynb") -> SessionRecord:
    return SessionRecord(f"s{n}", path or f"dir/nb{n}.ipynb", name, "notebook", kernel)


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "file"])
async def test_store_implements_the_protocol(tmp_path, on_disk):
    async with open_sqlite_store(tmp_path / "s.db" if on_disk else None) as store:
        assert isinstance(store, SessionStore)
        assert await store.list() == []
        for r in (record(1), record(2, kernel="k2"), record(3, path="dir/nb1.ipynb", kernel="k2", name=None)):
            await store.add(r)
        assert await store.get("s1") == record(1)
        assert await store.get("nope") is None
        assert [r.id for r in await store.list()] == ["s1", "s2", "s3"]
        assert [r.id for r in await store.find(path="dir/nb1.ipynb")] == ["s1", "s3"]
        assert [r.id for r in await store.find(kernel_id="k2")] == ["s2", "s3"]
        assert [r.id for r in await store.find(path="dir/nb1.ipynb", kernel_id="k2")] == ["s3"]
        assert (await store.get("s3")).name is None

        with pytest.raises(ValueError, match="s1"):
            await store.add(record(1))

        changed = SessionRecord("s1", "moved.ipynb", "moved.ipynb", "notebook", "k9")
        assert await store.update(changed) is True
        assert await store.get("s1") == changed
        assert await store.update(record(99)) is False

        assert await store.remove("s2") is True
        assert await store.remove("s2") is False
        assert [r.id for r in await store.list()] == ["s1", "s3"]


async def test_file_database_survives_reopening(tmp_path):
    db = tmp_path / "state" / "sessions.db"
    async with open_sqlite_store(db) as store:
        await store.add(record(1))
        await store.add(record(2, kernel="k2"))
        await store.remove("s2")
    assert db.is_file()
    async with open_sqlite_store(db) as store:
        assert await store.list() == [record(1)]
        await store.add(record(3))  # ordering continues after the surviving rows
        assert [r.id for r in await store.list()] == ["s1", "s3"]


async def test_schema_version_is_recorded_and_a_newer_one_refused(tmp_path):
    db = tmp_path / "s.db"
    async with open_sqlite_store(db):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this himalia understands"):
        async with open_sqlite_store(db):
            pass


async def test_memory_stores_are_separate():
    async with open_sqlite_store() as a, open_sqlite_store() as b:
        await a.add(record(1))
        assert await b.list() == []


async def test_statements_run_on_the_store_thread_not_the_event_loop(monkeypatch):
    seen: list[str] = []
    original = SqliteSessionStore._select

    def spy(self, *args):
        seen.append(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(SqliteSessionStore, "_select", spy)
    async with open_sqlite_store() as store:
        await store.list()
        await store.get("x")
    assert len(seen) == 2
    assert all(name.startswith("himalia-sessions-sqlite") for name in seen)
    assert threading.current_thread().name not in seen


async def test_closed_store_refuses_work():
    async with open_sqlite_store() as store:
        pass
    with pytest.raises(RuntimeError):
        await store.list()


async def test_unusable_database_path_names_the_file(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(RuntimeError, match=f"cannot open the session database {tmp_path / 'taken'}"):
        async with open_sqlite_store(tmp_path / "taken"):
            pass
