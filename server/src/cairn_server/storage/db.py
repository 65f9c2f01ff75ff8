"""The database connection: URL resolution, the async engine, sessions and migrations.

Owns how Cairn talks to SQLite (embedded default, a file only its owner can read) or
PostgreSQL; the tables live in models.py.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from sqlalchemy import Connection, event, inspect, make_url, text
from sqlalchemy.dialects import registry
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import attributes
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from cairn_server.storage import sqlite_inline

if TYPE_CHECKING:  # Alembic loads only when the schema is behind (it takes a while)
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
DEFAULT_POOL_SIZE = 10
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

# Any constant works: it names the lock that keeps two replicas from migrating at once.
_POSTGRES_MIGRATION_LOCK = 0x636169726E  # "cairn"

_REVISION = re.compile(r'^revision: str = "([^"]+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision: [^=]+= "([^"]+)"$', re.MULTILINE)

# Execution option read by the SQLite "begin" listener; see Database.session().
_SQLITE_BEGIN = "cairn_sqlite_begin"

registry.register("sqlite.cairn", "cairn_server.storage.sqlite_inline", "InlineSQLiteDialect")


def default_database_url(configured: str | None = None) -> str:
    """The configured URL (CAIRN_DATABASE_URL) with its async driver, else a SQLite file in the
    user's data folder (0700)."""
    if configured:
        return normalise_database_url(configured)
    folder = Path(platformdirs.user_data_dir("cairn"))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(folder)
    return f"sqlite+aiosqlite:///{folder / 'cairn.db'}"


def private_sqlite_file(url: str) -> None:
    """Make a SQLite database file readable by its owner only (0600), created so before
    SQLite opens it: it holds every conversation and tool output. SQLite gives its -wal,
    -shm and -journal files the database's mode; ones left wider by an older Cairn are
    tightened too. A folder this creates is 0700. Not SQLite, or in memory: nothing to do."""
    parsed = make_url(normalise_database_url(url))
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:") or parsed.query.get("uri"):
        return  # a URI filename: SQLite's own options decide
    path = Path(database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for member in (path, *(path.with_name(path.name + end) for end in SQLITE_SIDE_FILES)):
        if member.exists():
            _owner_only(member)


def _owner_only(path: Path) -> None:
    """Drop the group and other permission bits of `path`, if it has any."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)


def normalise_database_url(url: str) -> str:
    """Give plain `postgresql://`, `postgres://` and `sqlite://` URLs their async driver."""
    for plain, async_form in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return async_form + url.removeprefix(plain)
    return url


def is_search_index(name: str | None, type_: str) -> bool:
    """Full-text search objects made by migration 0002 outside the models (FTS5, tsvector)."""
    if name is None:
        return False
    if type_ == "table":
        return "_fts" in name  # messages_fts and its FTS5 shadow tables
    return name == "search_vector" or name.endswith("_search_vector")


# Partial unique indexes made by the migrations alone: declared on a model, their
# `postgresql_where` would load every PostgreSQL driver's dialect at import (~0.1 s of each
# server start, SQLite included).
PARTIAL_INDEXES = frozenset({"ux_reflections_running", "ux_runs_running"})


def include_in_schema_compare(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's include_object hook: leave the search objects and the partial indexes the
    migrations make out of model comparison."""
    if type_ == "index" and name in PARTIAL_INDEXES:
        return False
    return not is_search_index(name, type_)


def alembic_config(url: str) -> Config:
    """An Alembic config built in code, so migrations run from an installed package too.

    For a new migration: `command.revision(alembic_config(url), "what", autogenerate=True)`.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    """The async engine and a session factory; open it with `open_database`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        deferred = engine.execution_options(**{_SQLITE_BEGIN: "DEFERRED"})
        self._read_sessions = async_sessionmaker(
            deferred, class_=AsyncSession, expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def session(self, *, read_only: bool = False) -> AsyncSession:
        """A new session (expire_on_commit=False); use `async with db.session() as s, s.begin():`.

        On SQLite a transaction takes the write lock when it begins (BEGIN IMMEDIATE), so a
        read-then-write transaction cannot fail half-way on a lock; pass `read_only=True` for
        transactions that only read, which then never wait for writers.
        """
        return (self._read_sessions if read_only else self._sessions)()

    async def close(self) -> None:
        await self.engine.dispose()


async def open_database(url: str | None, pool_size: int = DEFAULT_POOL_SIZE) -> Database:
    """Connect to `url` (None: the default SQLite file) and migrate the schema to the newest
    version; `pool_size` connections are kept, as many more opened in a burst."""
    url = default_database_url(url)
    private_sqlite_file(url)
    engine = make_engine(url, pool_size=pool_size)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head, url)
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine)


def make_engine(url: str, *, pool_size: int | None = None, **engine_options: Any) -> AsyncEngine:
    """An async engine for `url`, with Cairn's SQLite settings when it is SQLite (whose
    statements run on the event loop: sqlite_inline.py); `pool_size` connections kept and as
    many more in a burst (an in-memory SQLite database has just one)."""
    parsed = make_url(normalise_database_url(url))
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        parsed = parsed.set(drivername=f"sqlite+{sqlite_inline.DRIVER}")
    pooled = not sqlite or sqlite_inline.InlineSQLiteDialect.is_file(parsed)
    if pool_size is not None and pooled and "poolclass" not in engine_options:
        engine_options |= {"pool_size": pool_size, "max_overflow": pool_size}
    engine = create_async_engine(parsed, **engine_options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, parsed.database or ":memory:")
    return engine


def _upgrade_to_head(connection: Connection, url: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK}
        )
    head = head_revision()
    if head is not None and _current_revision(connection) == head:
        return  # up to date: what Alembic would find, without loading it
    from alembic import command

    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def head_revision() -> str | None:
    """The newest migration's revision, read from the scripts' text; None unless they form
    one line (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        if revision is None:
            return None
        revisions.add(revision.group(1))
        parents.update(found.group(1) for found in _DOWN_REVISION.finditer(source))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current_revision(connection: Connection) -> str | None:
    """The revision the database's schema is at, None for a new database."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    found = list(versions)
    return str(found[0]) if len(found) == 1 else None


def _configure_sqlite(engine: AsyncEngine, database: str) -> None:
    """WAL, foreign keys and a busy timeout on every connection; Cairn emits BEGIN itself,
    a writing transaction once it has the writer's turn.

    The sqlite3 driver would begin transactions lazily (only before a write), which lets
    two read-then-write transactions deadlock; this is SQLAlchemy's documented recipe.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL still survives a killed process; only a power cut can lose the
        # newest commits. FULL would fsync every commit (~3 ms each, several per step).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        if mode == "IMMEDIATE":
            raw = connection.connection.dbapi_connection
            assert isinstance(raw, sqlite_inline.InlineConnection)
            raw.begin_writing(sqlite_inline.writer_lock(database))
        connection.exec_driver_sql(f"BEGIN {mode}")


@event.listens_for(SQLModel, "load", propagate=True)
def _restore_utc_on_load(target: Any, _context: Any) -> None:
    """SQLite keeps no UTC offset; every timestamp Cairn stores is UTC, so say so on load."""
    _restore_utc(target)


@event.listens_for(SQLModel, "refresh", propagate=True)
def _restore_utc_on_refresh(target: Any, _context: Any, _attrs: Any) -> None:
    _restore_utc(target)


def _restore_utc(target: Any) -> None:
    for key, value in list(vars(target).items()):
        if isinstance(value, datetime) and value.tzinfo is None:
            attributes.set_committed_value(target, key, value.replace(tzinfo=UTC))
