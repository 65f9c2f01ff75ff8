"""Column types that store any Python text on every backend, NUL included.

Owns the stored form of text: PostgreSQL refuses NUL, so it is escaped on write and
restored on read for every string, text and JSON column (models.py uses only these).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import JSON, Dialect, Text
from sqlalchemy.types import TypeDecorator
from sqlmodel.sql.sqltypes import AutoString

# DLE ("data link escape") is as rare in text as a control character can be, and, like NUL,
# it separates words for SQLite's FTS5 and PostgreSQL's text search, as does "@".
ESCAPE = "\x10"
_ESCAPED = {"@": "\x00", ESCAPE: ESCAPE}
_STORED_ESCAPE = re.compile(ESCAPE + "(.)", re.DOTALL)


def to_stored(text: str) -> str:
    """`text` as the database keeps it: NUL → DLE @, DLE → DLE DLE; all else unchanged."""
    if "\x00" not in text and ESCAPE not in text:
        return text
    return text.replace(ESCAPE, ESCAPE + ESCAPE).replace("\x00", ESCAPE + "@")


def from_stored(stored: str) -> str:
    """The text `to_stored` was given. A DLE before any other character (a row written
    before this escaping existed) is kept as it is."""
    if ESCAPE not in stored:
        return stored
    return _STORED_ESCAPE.sub(lambda m: _ESCAPED.get(m.group(1), m.group(0)), stored)


def _map_strings(value: Any, convert: Any) -> Any:
    """`value` (JSON-shaped) with `convert` applied to every string in it, keys included."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {_map_strings(k, convert): _map_strings(v, convert) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(item, convert) for item in value]
    return value


class _StoredStr(TypeDecorator[str]):
    """A string column holding any text; subclasses name the SQL type."""

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else to_stored(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else from_stored(value)


class StoredString(_StoredStr):
    """VARCHAR (what SQLModel makes of `str` fields) holding any text."""

    impl = AutoString
    cache_ok = True


class StoredText(_StoredStr):
    """TEXT holding any text."""

    impl = Text
    cache_ok = True


class StoredJSON(TypeDecorator[Any]):
    """JSON whose strings, keys included, may hold any text (PostgreSQL's JSON functions
    refuse an escaped NUL, `\\u0000`, so none is ever stored)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return _map_strings(value, to_stored)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return _map_strings(value, from_stored)


STORED_FORM_TYPES = (_StoredStr, StoredJSON)
