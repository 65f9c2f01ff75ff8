"""What the search tools share: the query and limit checks, null-tolerant arguments, and
compact answers (one shortened line per hit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

from pydantic import BeforeValidator

from cairn_server.memory.recall import search_terms
from cairn_server.tools.base import ToolOutcome

Hit = TypeVar("Hit")

MAX_LIMIT = 50
SHOWN_CHARS = 400


class BadArguments(ValueError):
    """Arguments that fit the schema but not the tool; the message says what is expected."""


def null_as(empty: object) -> BeforeValidator:
    """Models often send null for an argument they skip; treat it as not given. (Keeps the
    schema a plain type rather than an anyOf with null, which costs tokens every request.)"""
    return BeforeValidator(lambda value: empty if value is None else value)


Words = Annotated[list[str], null_as([])]
Day = Annotated[str, null_as("")]


def check_query(query: str) -> None:
    if not query.strip():
        raise BadArguments("query is empty; give words to search for")
    if not search_terms(query):
        raise BadArguments(f"query {query!r} has no words to search for")


def limit_of(limit: int) -> tuple[int, str]:
    """The limit to use and a note for the answer when it was clamped."""
    if limit < 1:
        raise BadArguments(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if limit > MAX_LIMIT:
        return MAX_LIMIT, f" [limit clamped to {MAX_LIMIT}]"
    return limit, ""


def hits_answer(
    hits: Sequence[Hit], line: Callable[[Hit], str], noun: str, query: str, where: str, clamped: str
) -> ToolOutcome:
    """The hits, one `line` each, under a heading that says how many, for what and where (or
    that none matched)."""
    if not hits:
        return ToolOutcome(f"No {noun}s match {query!r} ({where}).")
    heading = f"{count(len(hits), noun)} for {query!r} ({where}){clamped}:"
    return ToolOutcome("\n".join([heading, *map(line, hits)]))


def shown(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
