"""The search tools as the model calls them: answers, clamps and errors, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cairn_server.domain import ToolCall
from cairn_server.memory.services import Memory
from cairn_server.storage.db import Database
from cairn_server.storage.store import Store
from cairn_server.tools.archival import ARCHIVAL_TOOLS
from cairn_server.tools.base import ToolContext, ToolOutcome
from cairn_server.tools.recall_search import RECALL_TOOLS
from cairn_server.tools.registry import SERVER_TOOLS, TOOLS
from cairn_server.tools.search import MAX_LIMIT
from support.store import new_agent, say

SEARCH_TOOLS = [*RECALL_TOOLS, *ARCHIVAL_TOOLS]


async def run_server_tool(ctx: ToolContext, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
    """The call as the model would make it, dispatched by the server's tool registry."""
    return await TOOLS.dispatch(ctx, ToolCall("call_1", tool, json.dumps(arguments)))


@pytest.fixture
async def ctx(store: Store, database: Database) -> ToolContext:
    agent = await new_agent(store)
    conversation = await store.create_conversation(agent.id)
    return ToolContext(Memory.open(database), agent.id, conversation.id, "run_1", "call_1")


async def call(ctx: ToolContext, tool: str, **arguments: Any) -> ToolOutcome:
    return await run_server_tool(ctx, tool, arguments)


def error(outcome: ToolOutcome, *fragments: str) -> bool:
    return outcome.is_error and all(fragment in outcome.content for fragment in fragments)


def test_the_search_tools_are_registered_and_small() -> None:
    assert {tool.spec.name for tool in SEARCH_TOOLS} == {
        "conversation_search",
        "archival_insert",
        "archival_search",
    }
    for tool in SEARCH_TOOLS:
        assert SERVER_TOOLS[tool.spec.name] is tool
        assert tool.spec.description.count(".") == 1  # one sentence
    schemas = json.dumps([[t.spec.description, t.spec.parameters] for t in SEARCH_TOOLS])
    assert len(schemas) < 1600, len(schemas)  # roughly 400 tokens for all three


# --------------------------------------------------------------------------- conversation_search


async def test_conversation_search_answers_one_compact_line_per_hit(
    store: Store, ctx: ToolContext
) -> None:
    at = datetime(2026, 1, 2, 13, 45, tzinfo=UTC)
    said = await say(
        store,
        ctx.conversation_id,
        "The flaky test\nis  test_reconnect in the websocket suite",
        at=at,
    )
    long = await say(store, ctx.conversation_id, "flaky " + "x" * 1000, role="assistant")
    outcome = await call(ctx, "conversation_search", query="flaky websocket test")
    assert not outcome.is_error
    header, *lines = outcome.content.splitlines()
    assert header.startswith("2 messages for 'flaky websocket test' (all conversations")
    assert lines[0] == (
        f"[2026-01-02 13:45] user (msg {said}): "
        "The flaky test is test_reconnect in the websocket suite"
    )
    assert lines[1].startswith("[") and f"assistant (msg {long}): flaky xxx" in lines[1]
    assert lines[1].endswith("…") and len(lines[1]) < 460


async def test_conversation_search_filters_by_role_and_by_whole_days(
    store: Store, ctx: ToolContext
) -> None:
    late = datetime(2026, 3, 5, 23, 30, tzinfo=UTC)
    await say(
        store, ctx.conversation_id, "deploy failed on friday", at=datetime(2026, 3, 1, tzinfo=UTC)
    )
    on_the_day = await say(store, ctx.conversation_id, "deploy fixed", role="assistant", at=late)
    await say(store, ctx.conversation_id, "deploy again", at=datetime(2026, 3, 6, 0, 0, tzinfo=UTC))
    await say(store, ctx.conversation_id, "memory changed: deploy notes", role="event", at=late)
    found = await call(
        ctx, "conversation_search", query="deploy", start_date="2026-03-05", end_date="2026-03-05"
    )
    assert not found.is_error and found.content.count("(msg ") == 1
    assert f"(msg {on_the_day})" in found.content  # 23:30 is inside the end day
    assert "dates 2026-03-05 to 2026-03-05" in found.content
    assistant = await call(ctx, "conversation_search", query="deploy", roles=["assistant"])
    assert assistant.content.count("(msg ") == 1 and "roles assistant" in assistant.content
    events = await call(ctx, "conversation_search", query="deploy", roles=["event"])
    assert events.content.count("(msg ") == 1 and "] event (msg" in events.content
    iso = await call(ctx, "conversation_search", query="deploy", start_date="2026-03-05T23:00Z")
    assert iso.content.count("(msg ") == 2
    nulls = await call(ctx, "conversation_search", query="deploy", roles=None, end_date=None)
    assert nulls.content.count("(msg ") == 3  # null means not given; events left out


async def test_conversation_search_with_no_match_says_what_was_searched(
    store: Store, ctx: ToolContext
) -> None:
    await say(store, ctx.conversation_id, "nothing relevant")
    outcome = await call(
        ctx, "conversation_search", query="kubernetes", roles=["tool"], start_date="2026-01-01"
    )
    assert not outcome.is_error
    assert outcome.content == (
        "No messages match 'kubernetes' (all conversations, roles tool; dates 2026-01-01 to any)."
    )


async def test_conversation_search_clamps_a_huge_limit_and_says_so(
    store: Store, ctx: ToolContext
) -> None:
    for n in range(MAX_LIMIT + 5):
        await say(store, ctx.conversation_id, f"retry number {n} of the upload")
    outcome = await call(ctx, "conversation_search", query="upload retry", limit=1_000_000)
    assert not outcome.is_error
    assert f"[limit clamped to {MAX_LIMIT}]" in outcome.content.splitlines()[0]
    assert outcome.content.count("(msg ") == MAX_LIMIT


SEARCH_MISTAKES: list[tuple[dict[str, Any], list[str]]] = [
    ({"query": "   "}, ["query is empty"]),
    ({"query": "?!"}, ["no words to search for"]),
    ({"query": "x", "limit": 0}, ["limit must be between 1 and 50, not 0"]),
    ({"query": "x", "limit": -3}, ["limit must be between 1 and 50"]),
    ({"query": "x", "start_date": "yesterday"}, ["start_date 'yesterday'", "YYYY-MM-DD"]),
    ({"query": "x", "end_date": "03/05/2026"}, ["end_date '03/05/2026'", "YYYY-MM-DD"]),
    ({"query": "x", "end_date": "2026-02-30"}, ["end_date '2026-02-30'", "YYYY-MM-DD"]),
    ({"query": "x", "start_date": "20260102"}, ["start_date '20260102'", "YYYY-MM-DD"]),
    (
        {"query": "x", "start_date": "2026-03-02", "end_date": "2026-03-01"},
        ["start_date 2026-03-02 is after end_date 2026-03-01"],
    ),
    ({"query": "x", "roles": ["system"]}, ["unknown role 'system'", "user, assistant, tool"]),
    ({"query": "x", "limit": "many"}, ["invalid arguments", "limit"]),
    ({"query": "x", "since": "2026-01-01"}, ["invalid arguments", "since"]),
    ({}, ["invalid arguments", "query"]),
]


async def test_conversation_search_bad_input_is_a_clear_error(ctx: ToolContext) -> None:
    for arguments, expected in SEARCH_MISTAKES:
        outcome = await run_server_tool(ctx, "conversation_search", arguments)
        assert error(outcome, *expected), (arguments, outcome.content)


# --------------------------------------------------------------------------- archival


async def test_archival_insert_answers_with_the_passage_id_and_records_where_from(
    ctx: ToolContext,
) -> None:
    outcome = await call(
        ctx, "archival_insert", text=" Run `make check` before pushing. ", tags=["CI", "ci", "dev"]
    )
    assert not outcome.is_error
    [passage] = await ctx.memory.archive.list_passages(ctx.agent_id)
    assert outcome.content == f"Stored passage {passage.id} (tags: ci, dev)."
    assert passage.text == "Run `make check` before pushing."
    assert (passage.conversation_id, passage.run_id) == (ctx.conversation_id, "run_1")
    plain = await call(ctx, "archival_insert", text="no tags here", tags=None)
    assert plain.content.startswith("Stored passage ") and "tags" not in plain.content


INSERT_MISTAKES: list[tuple[dict[str, Any], list[str]]] = [
    ({"text": " \n "}, ["text is empty"]),
    ({"text": "x" * 10_001}, ["text is 10001 characters", "under 10000"]),
    ({"text": "ok", "tags": ["fine", " "]}, ["tags must not be empty"]),
    ({"text": "ok", "tags": [f"t{n}" for n in range(11)]}, ["11 tags given", "at most 10"]),
    ({"text": "ok", "tags": ["x" * 41]}, ["longer than 40 characters"]),
    ({"text": "ok", "tags": "ci"}, ["invalid arguments", "tags"]),
    ({"tags": ["ci"]}, ["invalid arguments", "text"]),
]


async def test_archival_insert_bad_input_writes_nothing(ctx: ToolContext) -> None:
    for arguments, expected in INSERT_MISTAKES:
        outcome = await run_server_tool(ctx, "archival_insert", arguments)
        assert error(outcome, *expected), (arguments, outcome.content)
    assert await ctx.memory.archive.count(ctx.agent_id) == 0


async def test_archival_search_finds_by_words_and_tags(ctx: ToolContext) -> None:
    await call(ctx, "archival_insert", text="Releases are cut from main on Tuesdays.", tags=["rel"])
    await call(ctx, "archival_insert", text="Release notes go in CHANGES.md.")
    found = await call(ctx, "archival_search", query="release")
    assert not found.is_error
    header, *lines = found.content.splitlines()
    assert header == "2 passages for 'release' (all tags):"
    assert sorted(line.split("] ", 1)[1].split(" ", 2)[2] for line in lines) == [
        "(tags: rel): Releases are cut from main on Tuesdays.",
        "Release notes go in CHANGES.md.",
    ]
    tagged = await call(ctx, "archival_search", query="release", tags=["REL"])
    assert tagged.content.count("] passage ") == 1 and "(tags rel)" in tagged.content
    none = await call(ctx, "archival_search", query="kubernetes", tags=["rel"])
    assert none.content == "No passages match 'kubernetes' (tags rel; 2 passages kept)."


async def test_archival_search_clamps_and_refuses_bad_input(ctx: ToolContext) -> None:
    await call(ctx, "archival_insert", text="alpha")
    clamped = await call(ctx, "archival_search", query="alpha", limit=10**9)
    assert "[limit clamped to 50]" in clamped.content and clamped.content.count("] passage ") == 1
    assert error(await call(ctx, "archival_search", query="alpha", limit=0), "limit must be")
    assert error(await call(ctx, "archival_search", query=""), "query is empty")
    assert error(await call(ctx, "archival_search", query="a", tags=[""]), "tags must not be")
