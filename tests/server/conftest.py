"""Fixtures for server tests: a fresh, migrated database on SQLite and on PostgreSQL.

`database_url` is parametrized, so every test that uses it (or `database`, or `store`) runs
once per backend:

- `sqlite`: a file in the test's tmp_path (for `database`, a copy of one migrated per process).
- `postgresql`: a fresh database `cairn_test_<random>` on the server named by
  `CAIRN_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/test), dropped
  afterwards. Skipped, with the reason, when that server cannot be reached, unless
  `CAIRN_TEST_REQUIRE_POSTGRES=1` (set by .ci/run): then such a test fails.

A test that only makes sense on one backend can narrow it:

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_server.storage.db import Database, open_database
from cairn_server.storage.store import Store

POSTGRES_ADMIN_URL = os.environ.get(
    "CAIRN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CAIRN_TEST_REQUIRE_POSTGRES") == "1"
_CONNECT_TIMEOUT_S = 3.0
_postgres_problem: list[str] = []  # remembers, for the session, why PostgreSQL is unusable


@dataclass
class SqliteTemplate:
    """Where this process keeps a migrated SQLite database, made when first needed."""

    path: Path
    made: bool = False

    async def migrated(self) -> Path:
        if not self.made:
            migrated = await open_database(f"sqlite+aiosqlite:///{self.path}")
            await migrated.close()
            self.made = True
        return self.path


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("migrated") / "cairn.db")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: SqliteTemplate
) -> AsyncIterator[str]:
    """The URL of an empty database (not yet migrated), removed after the test. On SQLite,
    a test that uses `database` starts from a copy of a migrated file instead: the migration
    it would run at once is then a no-op, five times quicker."""
    if request.param == "sqlite":
        path = tmp_path / "cairn.db"
        if "database" in request.fixturenames:
            shutil.copyfile(await sqlite_template.migrated(), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"cairn_test_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _postgres_url_for(name)
    finally:
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated database, closed after the test."""
    db = await open_database(database_url)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def store(database: Database) -> Store:
    """A Store over a fresh, migrated database."""
    return Store(database)


def _postgres_unusable() -> None:
    """Skip the test, or fail it when PostgreSQL is required."""
    if REQUIRE_POSTGRES:
        pytest.fail(f"CAIRN_TEST_REQUIRE_POSTGRES=1 but {_postgres_problem[0]}", pytrace=False)
    pytest.skip(_postgres_problem[0])


async def _postgres_admin(sql: str) -> None:
    """Run one statement on the admin database; when the server is unreachable, skip the
    test (or fail it, when PostgreSQL is required)."""
    if _postgres_problem:
        _postgres_unusable()
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=_CONNECT_TIMEOUT_S)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _postgres_problem.append(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc!r}); "
            "set CAIRN_TEST_POSTGRES_URL to test on PostgreSQL"
        )
        _postgres_unusable()
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _postgres_url_for(database_name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database_name}"


@pytest.fixture
def fake(fake_model: FakeModelServer) -> FakeModelServer:
    """The fake model server, reset (see `fake_model`): the name the server tests use."""
    return fake_model


@pytest.fixture
def summaries() -> Iterator[FakeModelServer]:
    """The summary model's own fake server (see support.servers.with_summaries)."""
    with FakeModelServer() as fake:
        yield fake
