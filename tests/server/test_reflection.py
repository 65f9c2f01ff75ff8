"""Reflection (sleep-time memory) over the real store and a fake model through the Anthropic
SDK: the edits it makes and refuses, its watermark, its cost and the idle trigger.

Each test runs on SQLite and on PostgreSQL; the reflection model (CAIRN_REFLECTION_MODEL) is
the fake's Anthropic endpoint, scripted with the tool calls a model would answer with.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_server.config import ServerSettings
from cairn_server.memory.blocks import Author
from cairn_server.memory.services import Memory
from cairn_server.providers.catalog import ModelCatalog
from cairn_server.runtime.reflector import ReflectionBusyError, Reflector
from cairn_server.storage.db import Database, open_database
from cairn_server.storage.models import Conversation, Reflection, utcnow
from cairn_server.storage.store import Store
from sqlmodel import col, update
from support.servers import call, model_env, script
from support.store import agent_in_conversation, say
from support.waiting import until

REFLECTION_MODEL = "anthropic/claude-haiku-4-5"
GITHUB_TOKEN = "ghp_" + "Q8mVt3LxR7wN2cK9pZ4bH6yJ1dF5gS0aE3uT"
USER = Author("user", name="dev")


def reflection_settings(
    fake: FakeModelServer, model: str = REFLECTION_MODEL, **fields: Any
) -> ServerSettings:
    env = {**model_env(fake), "CAIRN_REFLECTION_MODEL": model}
    return ServerSettings.from_env(env, **fields)


@dataclass
class World:
    store: Store
    memory: Memory
    reflector: Reflector
    agent_id: str
    conversation_id: str

    async def reflect(self) -> Reflection:
        agent = await self.store.get_agent(self.agent_id)
        assert agent is not None
        return await self.reflector.reflect(agent, self.conversation_id, "requested")

    async def value(self, label: str) -> str:
        return (await self.memory.blocks.get(self.agent_id, label)).value

    async def watermark(self) -> int:
        conversation = await self.store.get_conversation(self.conversation_id)
        assert conversation is not None
        return conversation.reflected_through

    async def go_quiet(self, seconds: float = 600) -> None:
        """The conversation's last activity, `seconds` ago."""
        async with self.store.database.session() as session, session.begin():
            await session.exec(
                update(Conversation)
                .where(col(Conversation.id) == self.conversation_id)
                .values(updated_at=utcnow() - timedelta(seconds=seconds))
            )


async def open_world(
    store: Store,
    database: Database,
    fake: FakeModelServer,
    model: str = REFLECTION_MODEL,
    **fields: Any,
) -> tuple[World, ModelCatalog]:
    settings = reflection_settings(fake, model, **fields)
    memory = Memory.open(database)
    catalog = ModelCatalog(settings.model)
    reflector = Reflector(store, memory, catalog, settings, lambda _conversation: False)
    agent, conversation_id = await agent_in_conversation(store, memory)
    return World(store, memory, reflector, agent.id, conversation_id), catalog


@pytest.fixture
async def world(store: Store, database: Database, fake: FakeModelServer) -> AsyncIterator[World]:
    made, catalog = await open_world(store, database, fake, reflection_idle_s=60)
    yield made
    await made.reflector.aclose()
    await catalog.aclose()


def reflection_requests(fake: FakeModelServer) -> list[dict[str, Any]]:
    return [request.body for request in fake.requests if request.path.endswith("/messages")]


def transcript_of(body: dict[str, Any]) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else content[0]["text"]


async def test_facts_become_versions_by_reflection_with_their_cost(
    world: World, fake: FakeModelServer
) -> None:
    await say(world.store, world.conversation_id, "I'm Dana. Always use tabs, never spaces.")
    last = await say(world.store, world.conversation_id, "Noted, tabs it is.", "assistant")
    fake.set_script(
        script(
            {
                "text": "Two facts.",
                "tool_calls": [
                    call("memory_insert", label="human", text="- Dana: tabs, never spaces"),
                    call("memory_insert", label="project", text="- Tests: make check"),
                ],
            }
        )
    )

    row = await world.reflect()

    assert row.status == "finished", row.detail
    assert [(e["label"], e["tool"], e.get("version")) for e in row.edits] == [
        ("human", "memory_insert", 2),
        ("project", "memory_insert", 2),
    ]
    assert await world.value("human") == "- Dana: tabs, never spaces"
    newest = (await world.memory.blocks.history(world.agent_id, "human"))[0]
    assert (newest.author_kind, newest.tool, newest.conversation_id) == (
        "reflection",
        "memory_insert",
        world.conversation_id,
    )
    assert newest.reason is not None and row.id in newest.reason
    assert await world.watermark() == last and row.through_message == last
    assert row.messages_read == 2
    assert row.input_tokens > 0 and row.output_tokens > 0 and row.cost_usd > 0
    # What the model was asked: the transcript and the blocks with their limits, and only
    # the memory edit tools.
    (body,) = reflection_requests(fake)
    assert body["model"] == REFLECTION_MODEL.partition("/")[2]
    assert {tool["name"] for tool in body["tools"]} == {
        "memory_insert",
        "memory_replace",
        "memory_rethink",
    }
    assert "Always use tabs" in transcript_of(body)
    assert 'label="human" chars="0/2000"' in transcript_of(body)
    # A person reverts it like any other version.
    await world.memory.blocks.revert(world.agent_id, "human", 1, USER)
    assert await world.value("human") == ""


async def test_read_only_over_limit_and_secret_edits_are_refused_one_by_one(
    world: World, fake: FakeModelServer
) -> None:
    blocks = world.memory.blocks
    await blocks.configure(world.agent_id, "persona", USER, read_only=True)
    await blocks.configure(world.agent_id, "project", USER, char_limit=40)
    persona = await world.value("persona")
    await say(world.store, world.conversation_id, "My token is in the env; keep answers short.")
    fake.set_script(
        script(
            {
                "tool_calls": [
                    call("memory_rethink", label="persona", new_value="I am a pirate."),
                    call("memory_insert", label="project", text="- " + "long fact " * 10),
                    call("memory_insert", label="human", text=f"- token {GITHUB_TOKEN}"),
                    call("memory_insert", label="human", text="- keep answers short"),
                    call("memory_insert", label="nowhere", text="- lost"),
                ]
            }
        )
    )

    row = await world.reflect()

    assert row.status == "finished"
    reasons = {(e["label"], e.get("version")): e.get("reason") or "" for e in row.edits}
    assert "read-only" in reasons[("persona", None)]
    assert "over its limit of 40" in reasons[("project", None)]
    assert "secret" in reasons[("human", None)]
    assert "no block 'nowhere'" in reasons[("nowhere", None)]
    assert reasons[("human", 2)] == ""
    assert await world.value("persona") == persona
    assert await world.value("project") == ""
    assert await world.value("human") == "- keep answers short"
    versions = await blocks.history(world.agent_id, "human")
    assert GITHUB_TOKEN not in json.dumps([v.value for v in versions])


@pytest.mark.parametrize(
    "bad_call",
    [
        {"name": "memory_insert", "raw_arguments": '{"label": "human", "text": '},
        {"name": "shell", "arguments": {"command": "rm -rf /"}},
        {"name": "memory_insert", "arguments": {"text": "- no label"}},
    ],
    ids=["truncated-json", "not-a-memory-tool", "missing-label"],
)
async def test_a_malformed_answer_ends_the_reflection_and_changes_nothing(
    world: World, fake: FakeModelServer, caplog: pytest.LogCaptureFixture, bad_call: dict[str, Any]
) -> None:
    await say(world.store, world.conversation_id, "We deploy with `make ship`.")
    good = call("memory_insert", label="project", text="- Deploy: make ship")
    fake.set_script(script({"tool_calls": [good, bad_call]}))

    with caplog.at_level(logging.WARNING, logger="cairn_server.runtime.reflection"):
        row = await world.reflect()

    assert row.status == "failed"
    assert row.detail is not None
    assert row.detail.startswith("the reflection model's answer was malformed")
    assert row.detail.endswith("nothing was changed")
    assert row.edits == []
    assert await world.value("project") == ""
    assert await world.watermark() == 0
    assert any(row.id in record.getMessage() for record in caplog.records)


async def test_a_concurrent_edit_wins_over_a_rewrite(world: World, fake: FakeModelServer) -> None:
    await say(world.store, world.conversation_id, "The build uses Bazel now, not make.")
    fake.set_script(
        script(
            {
                "delay_s": 2,
                "tool_calls": [
                    call("memory_rethink", label="project", new_value="- Build: bazel"),
                    call("memory_insert", label="project", text="- Bazel since December"),
                ],
            }
        )
    )
    reflecting = asyncio.create_task(world.reflect())
    await until(None, lambda: len(reflection_requests(fake)) == 1)
    await world.memory.blocks.configure(
        world.agent_id, "project", USER, value="- Build: make (the user's)"
    )

    row = await reflecting

    rethink, insert = row.edits
    assert rethink.get("version") is None and "changed" in rethink["reason"]
    assert insert["version"] == 3
    assert await world.value("project") == "- Build: make (the user's)\n- Bazel since December"


async def test_one_reflection_at_a_time_per_agent(world: World, fake: FakeModelServer) -> None:
    await say(world.store, world.conversation_id, "hello")
    held = await world.reflector.reflections.claim(
        world.agent_id, world.conversation_id, "requested", REFLECTION_MODEL
    )
    assert held is not None
    with pytest.raises(ReflectionBusyError, match="already running"):
        await world.reflect()
    await world.go_quiet()
    assert await world.reflector.sweep() == 0  # the idle watch leaves a reflecting agent be
    # A restart ends the one a dead process left running; the next one goes ahead.
    assert await world.reflector.reflections.interrupt_running() == 1
    assert (await world.reflector.reflections.get(held.id)).status == "failed"
    fake.set_script(script({"text": "no changes"}))
    assert (await world.reflect()).status == "finished"


async def test_the_idle_trigger_fires_once_until_new_messages_come(
    world: World, fake: FakeModelServer
) -> None:
    first = "Remember: the staging host is stg-7."
    await say(world.store, world.conversation_id, first)
    fake.set_script(
        script(
            {"tool_calls": [call("memory_insert", label="project", text="- Staging: stg-7")]},
            {"text": "no changes"},
            {"error": {"status": 400, "message": "scripted refusal"}},
        )
    )
    assert await world.reflector.sweep() == 0  # active just now: not idle yet

    await world.go_quiet()
    assert await world.reflector.sweep() == 1
    await world.reflector.settled()
    assert await world.reflector.sweep() == 0  # nothing new since

    await say(world.store, world.conversation_id, "Thanks, that's all.")
    assert await world.reflector.sweep() == 0
    await world.go_quiet()
    assert await world.reflector.sweep() == 1
    await world.reflector.settled()
    # The second reflection read only what came after the first.
    second = transcript_of(reflection_requests(fake)[1])
    assert "that's all" in second and first not in second

    await say(world.store, world.conversation_id, "One more thing.")
    await world.go_quiet()
    assert await world.reflector.sweep() == 1
    await world.reflector.settled()
    assert await world.reflector.sweep() == 0  # a failed one is not retried without news
    rows = await world.reflector.reflections.of_conversation(world.conversation_id)
    assert [(r.trigger, r.status) for r in rows] == [
        ("idle", "failed"),
        ("idle", "finished"),
        ("idle", "finished"),
    ]
    assert "scripted refusal" in (rows[0].detail or "")
    assert await world.value("project") == "- Staging: stg-7"


async def test_without_a_usable_model_an_idle_conversation_fails_once(
    store: Store, database: Database, fake: FakeModelServer
) -> None:
    world, catalog = await open_world(store, database, fake, "nowhere/model", reflection_idle_s=60)
    try:
        await say(world.store, world.conversation_id, "hello")
        await world.go_quiet()
        assert await world.reflector.sweep() == 1
        await world.reflector.settled()
        assert await world.reflector.sweep() == 0
    finally:
        await world.reflector.aclose()
        await catalog.aclose()
    (row,) = await world.reflector.reflections.of_conversation(world.conversation_id)
    assert row.status == "failed"
    assert row.detail == "no reflection: nowhere/model cannot be used"
    assert fake.requests == []


async def test_the_watermark_survives_a_restart(
    world: World, fake: FakeModelServer, database_url: str
) -> None:
    await say(world.store, world.conversation_id, "Old news: we use Postgres 16.")
    fake.set_script(script({"text": "no changes"}, {"text": "no changes"}))
    first = await world.reflect()
    assert first.status == "finished"

    # Another process on the same database (a restarted server).
    database = await open_database(database_url)
    try:
        store = Store(database)
        settings = reflection_settings(fake, reflection_idle_s=60)
        catalog = ModelCatalog(settings.model)
        reflector = Reflector(store, Memory.open(database), catalog, settings, lambda _c: False)
        await reflector.reflections.interrupt_running()
        await world.go_quiet()
        assert await reflector.sweep() == 0
        await say(store, world.conversation_id, "New: the cache is Redis.")
        await world.go_quiet()
        assert await reflector.sweep() == 1
        await reflector.settled()
        await catalog.aclose()
    finally:
        await database.close()
    second = transcript_of(reflection_requests(fake)[1])
    assert "Redis" in second and "Postgres" not in second


async def test_a_long_backlog_is_read_in_chunks_within_the_budget(
    store: Store, database: Database, fake: FakeModelServer
) -> None:
    world, catalog = await open_world(store, database, fake, reflection_chunk_tokens=500)
    try:
        for n in range(40):
            await say(world.store, world.conversation_id, f"Fact {n}: " + "detail " * 20)
        fake.set_script(script(*[{"text": "no changes"}] * 10))
        row = await world.reflect()
    finally:
        await world.reflector.aclose()
        await catalog.aclose()
    assert row.status == "finished" and row.messages_read == 40
    requests = reflection_requests(fake)
    assert len(requests) > 2
    assert "Fact 39" in transcript_of(requests[-1]) and "Fact 0:" not in transcript_of(requests[-1])
