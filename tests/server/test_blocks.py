"""Core memory blocks on each database: defaults, versions, history, revert, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from cairn_server.memory.blocks import (
    Author,
    BlockExistsError,
    Blocks,
    ReadOnlyBlockError,
    StaleBlockError,
    UnknownBlockError,
)
from cairn_server.memory.edits import MemoryEditError, insert_at
from cairn_server.storage.db import Database
from cairn_server.storage.store import Store
from support.store import new_agent

USER = Author("user", name="dev")


def agent_author(conversation: str, run: str = "run_1") -> Author:
    return Author(
        "agent", conversation_id=conversation, run_id=run, tool_call_id="tc_1", tool="memory_insert"
    )


@pytest.fixture
async def agent_id(store: Store) -> str:
    return (await new_agent(store)).id


@pytest.fixture
async def blocks(database: Database, agent_id: str) -> Blocks:
    blocks = Blocks(database)
    await blocks.ensure_defaults(agent_id)
    return blocks


async def test_defaults_are_created_once_in_order(blocks: Blocks, agent_id: str) -> None:
    await asyncio.gather(*(blocks.ensure_defaults(agent_id) for _ in range(3)))
    listed = await blocks.list_blocks(agent_id)
    assert [b.label for b in listed] == ["persona", "human", "project"]
    assert all(b.version == 1 for b in listed)
    history = await blocks.history(agent_id, "project")
    assert [(v.version, v.action, v.author_kind) for v in history] == [(1, "create", "system")]


async def test_a_deleted_default_is_not_recreated(blocks: Blocks, agent_id: str) -> None:
    await blocks.delete(agent_id, "human", USER)
    await blocks.ensure_defaults(agent_id)
    assert [b.label for b in await blocks.list_blocks(agent_id)] == ["persona", "project"]


async def test_every_edit_is_a_version_with_its_author(blocks: Blocks, agent_id: str) -> None:
    author = agent_author("cnv_a")
    result = await blocks.edit(
        agent_id, "project", lambda b: insert_at("project", b.value, "Test: pytest", None), author
    )
    assert result.before == "" and result.block.value == "Test: pytest"
    newest = (await blocks.history(agent_id, "project"))[0]
    assert (newest.version, newest.action, newest.value) == (2, "edit", "Test: pytest")
    assert (newest.conversation_id, newest.run_id, newest.tool_call_id, newest.tool) == (
        "cnv_a",
        "run_1",
        "tc_1",
        "memory_insert",
    )


async def test_over_limit_edit_writes_nothing(blocks: Blocks, agent_id: str) -> None:
    with pytest.raises(MemoryEditError, match="over its limit of 2000"):
        await blocks.edit(agent_id, "human", lambda b: "x" * 2001, agent_author("c"))
    human = await blocks.get(agent_id, "human")
    assert (human.version, human.value) == (1, "")
    assert len(await blocks.history(agent_id, "human")) == 1


async def test_read_only_stops_the_agent_but_not_the_user(blocks: Blocks, agent_id: str) -> None:
    await blocks.create(agent_id, "policy", USER, value="no force pushes", read_only=True)
    with pytest.raises(ReadOnlyBlockError, match="read-only"):
        await blocks.edit(agent_id, "policy", lambda b: "anything", agent_author("c"))
    changed = (await blocks.configure(agent_id, "policy", USER, value="no pushes at all")).block
    assert changed.value == "no pushes at all" and changed.version == 2


async def test_unknown_label_names_the_blocks_there_are(blocks: Blocks, agent_id: str) -> None:
    with pytest.raises(UnknownBlockError, match="persona, project"):
        await blocks.get(agent_id, "nope")


async def test_create_validates_and_refuses_duplicates(blocks: Blocks, agent_id: str) -> None:
    with pytest.raises(BlockExistsError):
        await blocks.create(agent_id, "project", USER)
    with pytest.raises(MemoryEditError, match="invalid block label"):
        await blocks.create(agent_id, "Bad Label", USER)


async def test_diff_and_revert_make_a_new_version(blocks: Blocks, agent_id: str) -> None:
    await blocks.configure(agent_id, "project", USER, value="one")
    await blocks.configure(agent_id, "project", USER, value="two")
    old, new, diff = await blocks.diff(agent_id, "project", None, None)
    assert (old, new) == (2, 3) and "-one" in diff and "+two" in diff
    reverted = (await blocks.revert(agent_id, "project", 2, USER)).block
    assert (reverted.version, reverted.value) == (4, "one")
    newest = (await blocks.history(agent_id, "project"))[0]
    assert (newest.action, newest.reason) == ("revert", "revert to version 2")


async def test_revert_brings_back_a_deleted_block(blocks: Blocks, agent_id: str) -> None:
    await blocks.configure(agent_id, "human", USER, value="prefers tabs")
    await blocks.delete(agent_id, "human", USER)
    with pytest.raises(UnknownBlockError):
        await blocks.get(agent_id, "human")
    assert [v.action for v in await blocks.history(agent_id, "human")] == [
        "delete",
        "edit",
        "create",
    ]
    back = (await blocks.revert(agent_id, "human", 2, USER)).block
    assert (back.value, back.version) == ("prefers tabs", 4)


async def test_concurrent_edits_from_two_conversations_both_land(
    blocks: Blocks, agent_id: str
) -> None:
    async def add(line: str, conversation: str) -> None:
        await blocks.edit(
            agent_id,
            "project",
            lambda b: insert_at("project", b.value, line, None),
            agent_author(conversation),
        )

    await asyncio.gather(*(add(f"fact {i}", f"cnv_{i % 2}") for i in range(8)))
    project = await blocks.get(agent_id, "project")
    assert sorted(project.value.splitlines()) == sorted(f"fact {i}" for i in range(8))
    versions = [v.version for v in await blocks.history(agent_id, "project")]
    assert versions == list(range(9, 0, -1))


async def test_a_stale_rewrite_fails_clearly_and_changes_nothing(
    blocks: Blocks, agent_id: str
) -> None:
    await blocks.configure(agent_id, "project", USER, value="from the user")
    with pytest.raises(StaleBlockError, match="you saw version 1, it is now version 2") as caught:
        await blocks.edit(
            agent_id, "project", lambda b: "rewritten", agent_author("c"), expected_version=1
        )
    assert caught.value.current.value == "from the user"
    assert (await blocks.get(agent_id, "project")).value == "from the user"
