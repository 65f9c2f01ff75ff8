"""The archival tools: archival_insert and archival_search, over the passages the agent keeps.

Owns their arguments, the tag and passage checks, and their answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from cairn_protocol.tools import ToolArgs
from pydantic import Field

from cairn_server.memory.archival import PassageHit, normalised_tags
from cairn_server.tools.base import (
    ServerTool,
    ToolContext,
    ToolOutcome,
    redacted_note,
    server_tool,
    tool_error,
)
from cairn_server.tools.search import (
    MAX_LIMIT,
    BadArguments,
    Words,
    check_query,
    count,
    hits_answer,
    limit_of,
    shown,
)

MAX_PASSAGE_CHARS = 10_000
MAX_TAGS = 10
MAX_TAG_CHARS = 40


class ArchivalInsertArgs(ToolArgs):
    text: str = Field(description="A self-contained passage worth finding later.")
    tags: Words = Field(default=[], description="Labels to filter searches by.")


class ArchivalSearchArgs(ToolArgs):
    query: str = Field(description="Words to look for.")
    tags: Words = Field(default=[], description="Only passages with all these tags.")
    limit: int = Field(default=10, description=f"Most results, up to {MAX_LIMIT}.")


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
        check_query(args.query)
        limit, clamped = limit_of(args.limit)
        tags = _tags(args.tags)
    except BadArguments as exc:
        return tool_error(str(exc))
    hits = await ctx.memory.archive.search(ctx.agent_id, args.query, tags=tags, limit=limit)
    where = f"tags {', '.join(tags)}" if tags else "all tags"
    if not hits:
        total = await ctx.memory.archive.count(ctx.agent_id)
        where += f"; {count(total, 'passage')} kept"
    return hits_answer(hits, _passage_line, "passage", args.query, where, clamped)


ARCHIVAL_TOOLS: list[ServerTool] = [
    server_tool(
        "archival_insert",
        "Keep a passage in archival memory to find later with archival_search.",
        ArchivalInsertArgs,
        archival_insert,
        "edit",
    ),
    server_tool(
        "archival_search",
        "Search your archival memory passages by words, optionally by tags.",
        ArchivalSearchArgs,
        archival_search,
        "read",
    ),
]


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


def _passage_line(hit: PassageHit) -> str:
    when = hit.created_at.astimezone(UTC).strftime("%Y-%m-%d")
    tagged = f" (tags: {', '.join(hit.tags)})" if hit.tags else ""
    return f"[{when}] passage {hit.id}{tagged}: {shown(hit.text)}"
