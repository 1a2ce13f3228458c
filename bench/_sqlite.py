"""SQLite in WAL mode through ``aiosqlite``: one shared connection, one INSERT + commit per append.

``synchronous=FULL`` fsyncs the WAL at every commit; ``synchronous=OFF`` never syncs (the
OS decides). aiosqlite runs every call on the connection's own thread, so each append is
two hand-offs (execute, commit). Commits of concurrent appends coalesce by accident: the
INSERTs of many coroutines queue on the connection's thread ahead of their commits, so one
COMMIT may cover many rows. SQLite gives no fsync count: left empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._harness import AsyncSubject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import aiosqlite

__all__ = ("SqliteOffSubject", "SqliteSubject")


class SqliteSubject(AsyncSubject):
    synchronous = "FULL"
    db: aiosqlite.Connection | None = None

    async def open(self) -> Callable[[bytes], Awaitable[object]]:
        import aiosqlite

        db = await aiosqlite.connect(self.workdir / "bench.sqlite")
        self.db = db
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={self.synchronous}")
        await db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        await db.commit()

        async def append(data: bytes) -> None:
            await db.execute("INSERT INTO log (data) VALUES (?)", (data,))
            await db.commit()

        return append

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    def notes(self) -> str:
        import sqlite3

        return f"journal_mode=WAL synchronous={self.synchronous} sqlite {sqlite3.sqlite_version}"


class SqliteOffSubject(SqliteSubject):
    synchronous = "OFF"
