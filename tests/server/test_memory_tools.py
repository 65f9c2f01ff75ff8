"""The memory edit tools as the model calls them: answers, errors, and what they store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cairn_server.domain import ToolCall
from cairn_server.memory.blocks import Author
from cairn_server.memory.services import Memory
from cairn_server.storage.db import Database
from cairn_server.storage.store import Store
from cairn_server.tools.base import ToolContext, ToolOutcome
from cairn_server.tools.registry import SERVER_TOOLS, TOOLS
from support.store import agent_in_conversation


async def run_server_tool(ctx: ToolContext, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
    """The call as the model would make it, dispatched by the server's tool registry."""
    return await TOOLS.dispatch(ctx, ToolCall("call_1", tool, json.dumps(arguments)))


@pytest.fixture
async def memory(database: Database) -> Memory:
    return Memory.open(database)


@pytest.fixture
async def ctx(store: Store, memory: Memory) -> ToolContext:
    agent, conversation_id = await agent_in_conversation(store, memory)
    await memory.snapshots.freeze(
        conversation_id, "m", "meta", {"persona": 1, "human": 1, "project": 1}
    )
    return ToolContext(memory, agent.id, conversation_id, "run_1", "toolu_1")


async def call(ctx: ToolContext, tool: str, **arguments: Any) -> ToolOutcome:
    return await run_server_tool(ctx, tool, arguments)


async def test_the_model_sees_a_tight_tool_set() -> None:
    assert {"memory_replace", "memory_insert", "memory_rethink"} <= set(SERVER_TOOLS)
    for tool in SERVER_TOOLS.values():
        assert len(tool.spec.description) < 120, tool.spec.name


async def test_insert_answers_with_a_short_diff_and_records_who(ctx: ToolContext) -> None:
    outcome = await call(ctx, "memory_insert", label="project", text="Test: uv run pytest")
    assert not outcome.is_error
    assert "version 2" in outcome.content and "+Test: uv run pytest" in outcome.content
    version = (await ctx.memory.blocks.history(ctx.agent_id, "project"))[0]
    assert (
        version.author_kind,
        version.conversation_id,
        version.run_id,
        version.tool_call_id,
        version.tool,
    ) == ("agent", ctx.conversation_id, "run_1", "toolu_1", "memory_insert")
    # the conversation is not told about its own edit a second time
    assert (await ctx.memory.snapshots.get(ctx.conversation_id)).seen["project"] == 2


async def test_replace_and_its_failures(ctx: ToolContext) -> None:
    await call(ctx, "memory_insert", label="human", text="likes tabs\nlikes short answers")
    ok = await call(ctx, "memory_replace", label="human", old_string="tabs", new_string="spaces")
    assert "-likes tabs" in ok.content and "+likes spaces" in ok.content
    assert "likes short answers" not in ok.content.split("\n", 1)[0]
    twice = await call(ctx, "memory_replace", label="human", old_string="likes", new_string="x")
    assert twice.is_error and "occurs 2 times" in twice.content and "lines 1, 2" in twice.content
    missing = await call(ctx, "memory_replace", label="human", old_string="vim", new_string="x")
    assert missing.is_error and "not found" in missing.content
    numbered = await call(
        ctx, "memory_replace", label="human", old_string="1: likes spaces", new_string="x"
    )
    assert numbered.is_error and "line numbers" in numbered.content
    assert (await ctx.memory.blocks.get(ctx.agent_id, "human")).version == 3


async def test_bad_labels_and_read_only_blocks(ctx: ToolContext) -> None:
    unknown = await call(ctx, "memory_insert", label="notes", text="x")
    assert unknown.is_error and "human, persona, project" in unknown.content
    await ctx.memory.blocks.create(ctx.agent_id, "rules", Author("user"), value="r", read_only=True)
    frozen = await call(ctx, "memory_rethink", label="rules", new_value="none")
    assert frozen.is_error and "read-only" in frozen.content


async def test_over_limit_says_how_far_and_writes_nothing(ctx: ToolContext) -> None:
    outcome = await call(ctx, "memory_rethink", label="human", new_value="y" * 2500)
    assert outcome.is_error and "500 over its limit of 2000" in outcome.content
    assert (await ctx.memory.blocks.get(ctx.agent_id, "human")).value == ""


async def test_invalid_arguments_are_named(ctx: ToolContext) -> None:
    outcome = await call(ctx, "memory_replace", label="human", old_string="x")
    assert outcome.is_error and "new_string: Field required" in outcome.content
    extra = await call(ctx, "memory_insert", label="human", text="x", position=3)
    assert extra.is_error and "position" in extra.content


async def test_rethink_of_a_block_changed_elsewhere_is_refused(ctx: ToolContext) -> None:
    await ctx.memory.blocks.configure(ctx.agent_id, "project", Author("user"), value="by the user")
    outcome = await call(ctx, "memory_rethink", label="project", new_value="my rewrite")
    assert outcome.is_error and "changed since you saw it" in outcome.content
    assert "by the user" in outcome.content  # the model gets the value to work from
    assert (await ctx.memory.blocks.get(ctx.agent_id, "project")).value == "by the user"
    retry = await call(ctx, "memory_rethink", label="project", new_value="by the user, refined")
    assert not retry.is_error
