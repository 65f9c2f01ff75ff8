"""The base every store of durable state builds on: transactions and small query helpers.

Owns how a service opens a transaction and the shared find/get/update idioms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import ReturningUpdate
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from cairn_server.errors import CairnServerError
from cairn_server.storage.db import Database

T = TypeVar("T")


class NotFoundError(CairnServerError, LookupError):
    """An id that names no row; the message says which."""


def describe_failure(exc: BaseException, limit: int = 300) -> str:
    """One line about a failure, fit for a person or a model: the exception's type and
    first line, never the SQL statement or the parameters a database error goes on with."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class _Unit:
    """An open unit of work: the session the task that opened it shares with every store
    call it makes on the same database."""

    database: Database
    task: asyncio.Task[Any] | None
    session: AsyncSession
    read_only: bool


_UNIT: ContextVar[_Unit | None] = ContextVar("cairn_unit_of_work", default=None)


class Repository:
    """Holds the database; each public method of a subclass is its own transaction, or a
    part of the unit of work its caller opened (`unit`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        """The database it works on (another repository over it shares its engine)."""
        return self._db

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._db.dialect

    @asynccontextmanager
    async def unit(self, *, read_only: bool = False) -> AsyncIterator[None]:
        """One transaction for every store call the current task makes inside, on any
        repository of this database: they commit together, or none does. For steps that
        write several rows at once (a step costs a transaction, not one per row); the calls
        inside must not catch a database error and go on (the transaction is lost by then).
        A unit inside a unit is part of it; a write inside a read-only unit is its own."""
        if self._joined(read_only) is not None:
            yield
            return
        async with self._db.session(read_only=read_only) as session, session.begin():
            token = _UNIT.set(_Unit(self._db, asyncio.current_task(), session, read_only))
            try:
                yield
            finally:
                _UNIT.reset(token)

    def in_unit(self) -> bool:
        """Whether the current task has a unit of work open on this database."""
        return self._joined(read_only=True) is not None

    def _joined(self, read_only: bool) -> AsyncSession | None:
        unit = _UNIT.get()
        if unit is None or unit.database is not self._db:
            return None
        if unit.task is not asyncio.current_task() or (unit.read_only and not read_only):
            return None
        return unit.session

    @asynccontextmanager
    async def _transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        joined = self._joined(read_only)
        if joined is not None:
            yield joined
            return
        async with self._db.session(read_only=read_only) as session, session.begin():
            yield session

    async def _all(self, query: SelectOfScalar[T]) -> list[T]:
        async with self._transaction(read_only=True) as session:
            return list((await session.exec(query)).all())

    async def _find_or_create(
        self, find: Callable[[AsyncSession], Awaitable[T | None]], make: Callable[[], T]
    ) -> T:
        """Find a row or insert it. If a concurrent insert wins the unique constraint, the
        loser's transaction fails; it then reads the winner's row instead of failing."""
        try:
            async with self._transaction() as session:
                found = await find(session)
                if found is not None:
                    return found
                row = make()
                session.add(row)
            return row
        except IntegrityError:
            async with self._transaction(read_only=True) as session:
                found = await find(session)
            if found is None:
                raise
            return found


async def first(session: AsyncSession, query: SelectOfScalar[T]) -> T | None:
    return (await session.exec(query)).first()


async def updated_rows(session: AsyncSession, statement: ReturningUpdate[T]) -> list[T]:
    """Run an UPDATE ... RETURNING <table> and give back the updated rows."""
    result = await session.exec(statement)
    return list(result.scalars().all())


async def get_or_raise(session: AsyncSession, table: type[T], row_id: Any) -> T:
    row = await session.get(table, row_id)
    if row is None:
        raise NotFoundError(f"no {table.__name__.lower()} {row_id!r}")
    return row
