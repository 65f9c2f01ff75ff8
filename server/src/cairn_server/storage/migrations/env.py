"""Alembic environment: runs Cairn's migrations on a connection or a URL.

`open_database` hands over its own connection (config.attributes["connection"]); the
Alembic command line falls back to an async engine built from `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import cairn_server.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from alembic.autogenerate.api import AutogenContext
from cairn_server.storage.db import include_in_schema_compare, make_engine
from sqlalchemy import JSON, Connection, Text, pool
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write column types as plain sa.String(), sa.Text() or sa.JSON(), so migrations never
    import sqlmodel or Cairn: the escaping of storage/text.py happens in Python, not SQL."""
    if type_ != "type":
        return False
    if isinstance(obj, TypeDecorator):
        obj = obj.impl_instance
    if isinstance(obj, AutoString):
        return "sa.String()"
    if isinstance(obj, Text | JSON):
        return f"sa.{type(obj).__name__}()"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        render_as_batch=True,  # SQLite can only ALTER tables by copying them
        compare_type=True,
        include_object=include_in_schema_compare,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_from_url(url: str) -> None:
    engine = make_engine(url, poolclass=pool.NullPool)
    async with engine.begin() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


def run_migrations_offline(url: str) -> None:
    context.configure(
        url=url,
        target_metadata=target_metadata,
        render_item=render_item,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    given: Connection | None = context.config.attributes.get("connection")
    url = context.config.get_main_option("sqlalchemy.url") or ""
    if given is not None:
        run_migrations(given)
    elif context.is_offline_mode():
        run_migrations_offline(url)
    else:
        asyncio.run(run_migrations_from_url(url))


main()
