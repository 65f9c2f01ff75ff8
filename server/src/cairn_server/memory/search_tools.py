"""The search tools the model calls: conversation_search, archival_insert, archival_search.

Owns their arguments, the checks the argument models cannot express, and compact answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from cairn_server.memory.archival import PassageHit, normalised_tags
from cairn_server.memory.recall import DEFAULT_ROLES, ROLES, RecallHit, search_terms
from cairn_server.memory.tool_base import (
    ServerTool,
    ToolContext,
    ToolOutcome,
    redacted_note,
    server_tool,
    tool_error,
)

MAX_LIMIT = 50
SHOWN_CHARS = 400
MAX_PASSAGE_CHARS = 10_000
MAX_TAGS = 10
MAX_TAG_CHARS = 40
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadArguments(ValueError):
    """Arguments that fit the schema but not the tool; the message says what is expected."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _null_as(empty: object) -> BeforeValidator:
    """Models often send null for an argument they skip; treat it as not given. (Keeps the
    schema a plain type rather than an anyOf with null, which costs tokens every request.)"""
    return BeforeValidator(lambda value: empty if value is None else value)


Words = Annotated[list[str], _null_as([])]
Day = Annotated[str, _null_as("")]


class ConversationSearchArgs(_Args):
    query: str = Field(description="Words to look for.")
    roles: Words = Field(default=[], description="Only these: user, assistant, tool, event.")
    limit: int = Field(default=10, description=f"Most results, up to {MAX_LIMIT}.")
    start_date: Day = Field(default="", description="YYYY-MM-DD, inclusive.")
    end_date: Day = Field(default="", description="YYYY-MM-DD, inclusive.")


class ArchivalInsertArgs(_Args):
    text: str = Field(description="A self-contained passage worth finding later.")
    tags: Words = Field(default=[], description="Labels to filter searches by.")


class ArchivalSearchArgs(_Args):
    query: str = Field(description="Words to look for.")
    tags: Words = Field(default=[], description="Only passages with all these tags.")
    limit: int = Field(default=10, description=f"Most results, up to {MAX_LIMIT}.")


async def conversation_search(ctx: ToolContext, args: ConversationSearchArgs) -> ToolOutcome:
    try:
        _check_query(args.query)
        limit, clamped = _limit(args.limit)
        roles = _roles(args.roles)
        start = _moment("start_date", args.start_date, end=False)
        end = _moment("end_date", args.end_date, end=True)
        if start and end and start > end:
            raise BadArguments(f"start_date {args.start_date} is after end_date {args.end_date}")
    except BadArguments as exc:
        return tool_error(str(exc))
    hits = await ctx.memory.recall.search(
        ctx.agent_id, args.query, roles=roles, start=start, end=end, limit=limit
    )
    scope = [f"roles {', '.join(roles)}"]
    if args.start_date or args.end_date:
        scope.append(f"dates {args.start_date or 'any'} to {args.end_date or 'any'}")
    where = f"all conversations, {'; '.join(scope)}"
    if not hits:
        return ToolOutcome(f"No messages match {args.query!r} ({where}).")
    lines = [f"{_count(len(hits), 'message')} for {args.query!r} ({where}){clamped}:"]
    lines += [_message_line(hit) for hit in hits]
    return ToolOutcome("\n".join(lines))


async def archival_insert(ctx: ToolContext, args: ArchivalInsertArgs) -> ToolOutcome:
    try:
        text = args.text.strip()
        if not text:
            raise BadArguments("text is empty; give the passage to keep")
        if len(text) > MAX_PASSAGE_CHARS:
            raise BadArguments(
                f"text is {len(text)} characters; keep a passage under {MAX_PASSAGE_CHARS} "
                "(split it into several)"
            )
        tags = _tags(args.tags)
    except BadArguments as exc:
        return tool_error(str(exc))
    kept = await ctx.memory.archive.insert(
        ctx.agent_id, text, tags, conversation_id=ctx.conversation_id, run_id=ctx.run_id
    )
    tagged = f" (tags: {', '.join(kept.passage.tags)})" if kept.passage.tags else ""
    stored = f"Stored passage {kept.passage.id}{tagged}."
    return ToolOutcome(stored + redacted_note(kept.secrets_redacted))


async def archival_search(ctx: ToolContext, args: ArchivalSearchArgs) -> ToolOutcome:
    try:
        _check_query(args.query)
        limit, clamped = _limit(args.limit)
        tags = _tags(args.tags)
    except BadArguments as exc:
        return tool_error(str(exc))
    hits = await ctx.memory.archive.search(ctx.agent_id, args.query, tags=tags, limit=limit)
    where = f"tags {', '.join(tags)}" if tags else "all tags"
    if not hits:
        total = await ctx.memory.archive.count(ctx.agent_id)
        kept = f"{_count(total, 'passage')} kept"
        return ToolOutcome(f"No passages match {args.query!r} ({where}; {kept}).")
    lines = [f"{_count(len(hits), 'passage')} for {args.query!r} ({where}){clamped}:"]
    lines += [_passage_line(hit) for hit in hits]
    return ToolOutcome("\n".join(lines))


SEARCH_TOOLS: list[ServerTool] = [
    server_tool(
        "conversation_search",
        "Search all past messages of your conversations by words, role and date.",
        ConversationSearchArgs,
        conversation_search,
    ),
    server_tool(
        "archival_insert",
        "Keep a passage in archival memory to find later with archival_search.",
        ArchivalInsertArgs,
        archival_insert,
    ),
    server_tool(
        "archival_search",
        "Search your archival memory passages by words, optionally by tags.",
        ArchivalSearchArgs,
        archival_search,
    ),
]


# --------------------------------------------------------------------------- checks


def _check_query(query: str) -> None:
    if not query.strip():
        raise BadArguments("query is empty; give words to search for")
    if not search_terms(query):
        raise BadArguments(f"query {query!r} has no words to search for")


def _limit(limit: int) -> tuple[int, str]:
    """The limit to use and a note for the answer when it was clamped."""
    if limit < 1:
        raise BadArguments(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if limit > MAX_LIMIT:
        return MAX_LIMIT, f" [limit clamped to {MAX_LIMIT}]"
    return limit, ""


def _roles(roles: Sequence[str]) -> tuple[str, ...]:
    if not roles:
        return DEFAULT_ROLES
    wanted = [role.strip().lower() for role in roles]
    unknown = [role for role in wanted if role not in ROLES]
    if unknown:
        raise BadArguments(
            f"unknown role {', '.join(map(repr, unknown))}; roles are {', '.join(ROLES)}"
        )
    return tuple(dict.fromkeys(wanted))


def _moment(name: str, value: str, *, end: bool) -> datetime | None:
    """A bound from YYYY-MM-DD (a whole day: its start, or for `end` its last instant) or a
    full ISO 8601 date and time; without a UTC offset, UTC."""
    if not value.strip():
        return None
    text = value.strip()
    expected = f"{name} {value!r} is not a date; use YYYY-MM-DD (or ISO 8601 date and time)"
    try:
        if DATE_ONLY.fullmatch(text):
            return datetime.combine(date.fromisoformat(text), time.max if end else time.min, UTC)
        if "T" not in text.upper() and " " not in text:
            raise BadArguments(expected)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadArguments(expected) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _tags(tags: Sequence[str]) -> list[str]:
    if not tags:
        return []
    if any(not tag.strip() for tag in tags):
        raise BadArguments("tags must not be empty strings")
    cleaned = normalised_tags(tags)
    if len(cleaned) > MAX_TAGS:
        raise BadArguments(f"{len(cleaned)} tags given; use at most {MAX_TAGS}")
    too_long = [tag for tag in cleaned if len(tag) > MAX_TAG_CHARS]
    if too_long:
        raise BadArguments(f"tag {too_long[0]!r} is longer than {MAX_TAG_CHARS} characters")
    return cleaned


# --------------------------------------------------------------------------- answers


def _message_line(hit: RecallHit) -> str:
    when = hit.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return f"[{when}] {hit.role} (msg {hit.message_id}): {_shown(hit.content)}"


def _passage_line(hit: PassageHit) -> str:
    when = hit.created_at.astimezone(UTC).strftime("%Y-%m-%d")
    tagged = f" (tags: {', '.join(hit.tags)})" if hit.tags else ""
    return f"[{when}] passage {hit.id}{tagged}: {_shown(hit.text)}"


def _shown(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
