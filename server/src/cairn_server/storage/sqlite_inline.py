"""SQLite for the async engine, run on the event loop itself, one writer at a time.

Owns the `sqlite+cairn` dialect every SQLite URL is given: statements run inline (a step's
dozen statements take microseconds each; a worker thread per connection cost ten thread
hops per statement, most of a step's time), and writers take turns on an asyncio lock, so
a transaction waits for another without blocking the loop or meeting "database is locked".
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from types import SimpleNamespace
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util.concurrency import await_

DRIVER = "cairn"
# How long a transaction waits for the writer's turn before failing as SQLite would.
WRITER_WAIT_S = 30.0

# One lock per database file and event loop: every engine of this process on that file (a
# test may open two) takes turns, and a lock never crosses event loops.
_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def _returned() -> None:
    """Awaited by each statement: SQLAlchemy's AsyncConnection.execute insists that a
    statement awaited something (two greenlet switches, no trip through the loop)."""


class InlineCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> InlineCursor:
        await_(_returned())
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> InlineCursor:
        await_(_returned())
        return super().executemany(sql, parameters)

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's async results call before rows are read outside the greenlet;
        a sqlite3 cursor reads them from there as well, so it stays as it is."""


class InlineConnection(sqlite3.Connection):
    """A sqlite3 connection that gives back the writer's turn when its transaction ends."""

    writer_lock: asyncio.Lock | None = None

    def cursor(self, factory: Any = InlineCursor) -> Any:
        return super().cursor(factory)

    def begin_writing(self, lock: asyncio.Lock) -> None:
        """Wait for the writer's turn (other tasks go on meanwhile), then keep it until this
        connection commits, rolls back or closes."""
        try:
            await_(asyncio.wait_for(lock.acquire(), WRITER_WAIT_S))
        except TimeoutError:
            raise sqlite3.OperationalError(
                f"database is locked (no turn to write within {WRITER_WAIT_S:g} s)"
            ) from None
        self.writer_lock = lock

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._end_writing()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._end_writing()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._end_writing()

    def _end_writing(self) -> None:
        lock, self.writer_lock = self.writer_lock, None
        if lock is not None and lock.locked():
            lock.release()


def writer_lock(database: str) -> asyncio.Lock:
    """The writer's turn for `database` (a file path, or ":memory:") on the running loop."""
    locks = _WRITERS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(database, asyncio.Lock())


def _connect(*args: Any, **kwargs: Any) -> InlineConnection:
    kwargs["factory"] = InlineConnection
    kwargs["check_same_thread"] = False  # a pool may close it from the thread that disposes
    return sqlite3.connect(*args, **kwargs)  # type: ignore[no-any-return]


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite, declared async: SQLAlchemy's async engine runs it in its greenlet, and the
    sqlite3 calls return at once."""

    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        names = {name: getattr(sqlite3, name) for name in dir(sqlite3) if not name.startswith("_")}
        return SimpleNamespace(**{**names, "connect": _connect})

    @classmethod
    def is_file(cls, url: URL) -> bool:
        """Whether `url` names a database file (not one in memory)."""
        return bool(cls._is_url_file_db(url))

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls.is_file(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool


dialect = InlineSQLiteDialect
