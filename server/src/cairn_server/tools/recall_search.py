"""The recall search tool: conversation_search, over every message of the agent's conversations.

Owns its arguments, the role and date checks, and its answer lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from cairn_protocol.tools import ToolArgs
from pydantic import Field

from cairn_server.domain import STORED_ROLES
from cairn_server.memory.recall import DEFAULT_ROLES, RecallHit
from cairn_server.tools.base import ServerTool, ToolContext, ToolOutcome, server_tool, tool_error
from cairn_server.tools.search import (
    MAX_LIMIT,
    BadArguments,
    Day,
    Words,
    check_query,
    hits_answer,
    limit_of,
    shown,
)

DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ConversationSearchArgs(ToolArgs):
    query: str = Field(description="Words to look for.")
    roles: Words = Field(default=[], description="Only these: user, assistant, tool, event.")
    limit: int = Field(default=10, description=f"Most results, up to {MAX_LIMIT}.")
    start_date: Day = Field(default="", description="YYYY-MM-DD, inclusive.")
    end_date: Day = Field(default="", description="YYYY-MM-DD, inclusive.")


async def conversation_search(ctx: ToolContext, args: ConversationSearchArgs) -> ToolOutcome:
    try:
        check_query(args.query)
        limit, clamped = limit_of(args.limit)
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
    return hits_answer(hits, _message_line, "message", args.query, where, clamped)


RECALL_TOOLS: list[ServerTool] = [
    server_tool(
        "conversation_search",
        "Search all past messages of your conversations by words, role and date.",
        ConversationSearchArgs,
        conversation_search,
        "read",
    ),
]


def _roles(roles: Sequence[str]) -> tuple[str, ...]:
    if not roles:
        return DEFAULT_ROLES
    wanted = [role.strip().lower() for role in roles]
    unknown = [role for role in wanted if role not in STORED_ROLES]
    if unknown:
        raise BadArguments(
            f"unknown role {', '.join(map(repr, unknown))}; roles are {', '.join(STORED_ROLES)}"
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


def _message_line(hit: RecallHit) -> str:
    when = hit.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return f"[{when}] {hit.role} (msg {hit.message_id}): {shown(hit.content)}"
