"""The default session store: stdlib sqlite3, in memory or in a file, driven from one worker thread.

sqlite3 blocks, so every statement runs on the store's own single-thread executor; that thread
owns the connection (sqlite3's same-thread check stays on) and serialises access. The schema is
versioned with `PRAGMA user_version` so that a later version can add tables (kernel records for
reattaching to kernels after a restart) by appending a migration.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from himalia import CONFIG, SessionRecord

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: sessions. kernel_id is not a foreign key: kernels live in the kernel provider, not here.
    # A future `kernel` table (id, kernelspec, provisioner, connection info) is migration 2.
    """
    CREATE TABLE session (
        id        TEXT PRIMARY KEY,
        path      TEXT NOT NULL,
        name      TEXT,
        type      TEXT NOT NULL,
        kernel_id TEXT NOT NULL,
        seq       INTEGER NOT NULL
    );
    CREATE INDEX session_path ON session (path);
    CREATE INDEX session_kernel ON session (kernel_id);
    """,
]

_COLUMNS = "id, path, name, type, kernel_id"


class SqliteSessionStore:
    """A `SessionStore` on one sqlite3 connection. Build it with `open_sqlite_store`."""

    def __init__(self, database: str):
        self.database = database
        """The file path, or ":memory:"."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="himalia-sessions-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    # -- lifetime (runs on the worker thread) ---------------------------------------------------

    def _open(self) -> None:
        conn = sqlite3.connect(self.database, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(f"session database {self.database} has schema version {version}, newer "
                                   f"than this himalia understands ({len(MIGRATIONS)})")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                # executescript commits first; BEGIN makes each migration all-or-nothing
                conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def open(self) -> None:
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=True)

    # -- statements (run on the worker thread) --------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the session store is closed")
        return self._conn

    def _insert(self, r: SessionRecord) -> None:
        try:
            self._db.execute(
                "INSERT INTO session (id, path, name, type, kernel_id, seq) "
                "VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM session))",
                (r.id, r.path, r.name, r.type, r.kernel_id))
        except sqlite3.IntegrityError:
            raise ValueError(f"a session with id {r.id} is already stored") from None

    def _select(self, where: str = "", params: tuple[Any, ...] = ()) -> list[SessionRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM session {where} ORDER BY seq", params).fetchall()
        return [SessionRecord(*row) for row in rows]

    def _update(self, r: SessionRecord) -> bool:
        cur = self._db.execute("UPDATE session SET path = ?, name = ?, type = ?, kernel_id = ? WHERE id = ?",
                               (r.path, r.name, r.type, r.kernel_id, r.id))
        return cur.rowcount > 0

    def _delete(self, session_id: str) -> bool:
        return self._db.execute("DELETE FROM session WHERE id = ?", (session_id,)).rowcount > 0

    # -- the SessionStore protocol ---------------------------------------------------------------

    async def add(self, record: SessionRecord) -> None:
        await self._run(self._insert, record)

    async def get(self, session_id: str) -> SessionRecord | None:
        found = await self._run(self._select, "WHERE id = ?", (session_id,))
        return found[0] if found else None

    async def find(self, *, path: str | None = None, kernel_id: str | None = None) -> list[SessionRecord]:
        clauses, params = [], []
        if path is not None:
            clauses.append("path = ?")
            params.append(path)
        if kernel_id is not None:
            clauses.append("kernel_id = ?")
            params.append(kernel_id)
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        return await self._run(self._select, where, tuple(params))

    async def update(self, record: SessionRecord) -> bool:
        return await self._run(self._update, record)

    async def remove(self, session_id: str) -> bool:
        return await self._run(self._delete, session_id)

    async def list(self) -> list[SessionRecord]:
        return await self._run(self._select)


@asynccontextmanager
async def open_sqlite_store(database: str | Path | None = None) -> AsyncIterator[SqliteSessionStore]:
    """A store on `database` (a file, created with its schema when missing), or in memory when None/""."""
    path = str(database) if database else ":memory:"
    store = SqliteSessionStore(path)
    try:
        if path != ":memory:":
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
        await store.open()
    except (OSError, sqlite3.Error) as e:
        raise RuntimeError(f"cannot open the session database {path}: {e}") from e
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def sqlite_store(app: web.Application) -> AsyncIterator[SqliteSessionStore]:
    """The `sqlite` provider: `[plugins.sessions] database`, in memory when unset."""
    async with open_sqlite_store(app[CONFIG].section("sessions").database) as store:
        yield store
