"""Units of work: the writes of a step commit together or not at all, a hub's batch is seen
only once committed, and on SQLite concurrent writers take turns instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cairn_protocol import AssistantMessage, RunStarted, ServerEvent, ToolSettled
from cairn_server.config import ServerSettings
from cairn_server.domain import ModelMessage
from cairn_server.runtime.hub import ConversationHub
from cairn_server.storage.db import open_database
from cairn_server.storage.store import Store
from sqlalchemy.pool import QueuePool
from support.store import new_agent


class Failed(Exception):
    """Raised inside a unit to make it fail after its writes."""


async def conversation_of(store: Store) -> str:
    agent = await new_agent(store)
    return (await store.create_conversation(agent.id)).id


async def test_a_unit_that_fails_keeps_none_of_its_writes(store: Store) -> None:
    conversation = await conversation_of(store)
    with pytest.raises(Failed):
        async with store.unit():
            await store.add_message(conversation, None, ModelMessage("user", "lost"))
            await store.append_event(conversation, RunStarted(run_id="r", user_text="lost"))
            raise Failed
    assert await store.list_messages(conversation) == []
    assert await store.events_after(conversation, 0) == []
    async with store.unit():
        await store.add_message(conversation, None, ModelMessage("user", "kept"))
        await store.add_message(conversation, None, ModelMessage("assistant", "also kept"))
    assert [m.content for m in await store.list_messages(conversation)] == ["kept", "also kept"]


async def test_a_task_started_inside_a_unit_writes_on_its_own(store: Store) -> None:
    conversation = await conversation_of(store)

    async def elsewhere() -> None:
        await store.add_message(conversation, None, ModelMessage("user", "its own"))

    with pytest.raises(Failed):
        async with store.unit():
            assert store.in_unit()
            await store.add_message(conversation, None, ModelMessage("user", "rolled back"))
            task = asyncio.ensure_future(elsewhere())
            raise Failed
    await task
    assert [m.content for m in await store.list_messages(conversation)] == ["its own"]


async def test_a_batch_is_delivered_after_its_commit_and_not_at_all_when_it_fails(
    store: Store,
) -> None:
    conversation = await conversation_of(store)
    hub = ConversationHub(store, conversation, 0)
    seen: list[ServerEvent] = []

    async def deliver(event: ServerEvent) -> None:
        seen.append(event)

    await hub.attach(1, deliver, None)
    with pytest.raises(Failed):
        async with hub.batch():
            await hub.publish(RunStarted(run_id="r", user_text="hi"))
            raise Failed
    assert seen == [] and hub.last_seq == 0
    assert await store.events_after(conversation, 0) == []

    async with hub.batch():
        stored = await hub.publish(AssistantMessage(run_id="r", text="one", tool_calls=[]))
        assert seen == [], "nothing is delivered before the batch commits"
        await hub.publish(ToolSettled(run_id="r", call_id="c", status="ok"))
    assert [event.seq for event in seen] == [1, 2] and stored.seq == 1
    assert hub.last_seq == 2
    assert [e.seq for e in await store.events_after(conversation, 0)] == [1, 2]


async def test_sqlite_writers_take_turns_however_long_each_holds_the_lock(
    tmp_path: Path,
) -> None:
    database = await open_database(f"sqlite:///{tmp_path / 'cairn.db'}")
    try:
        store = Store(database)
        conversation = await conversation_of(store)

        async def writer(number: int) -> None:
            async with store.unit():
                await store.add_message(conversation, None, ModelMessage("user", f"{number}"))
                await asyncio.sleep(0.001)  # holds the write transaction across an await
                await store.add_message(conversation, None, ModelMessage("assistant", "ok"))

        await asyncio.gather(*(writer(n) for n in range(40)))
        messages = await store.list_messages(conversation)
        assert len(messages) == 80
        # Each unit's two messages are adjacent: no writer got in between.
        assert all(messages[i + 1].content == "ok" for i in range(0, 80, 2))
    finally:
        await database.close()


async def test_the_pool_keeps_the_configured_connections(database_url: str) -> None:
    database = await open_database(database_url, pool_size=3)
    try:
        pool = database.engine.pool
        assert isinstance(pool, QueuePool) and (pool.size(), pool._max_overflow) == (3, 3)
    finally:
        await database.close()
    memory = await open_database("sqlite://", pool_size=3)  # one connection, shared
    await memory.close()
    assert ServerSettings.from_env({"CAIRN_DATABASE_POOL_SIZE": "7"}).database_pool_size == 7
