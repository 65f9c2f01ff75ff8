"""Agent files (.af) in and out of a real database: the four public files import with their
report, export → import → export keeps blocks, messages and settings, bad files are refused
in one line with nothing created, an import is one transaction (SQLite and PostgreSQL), and
long Letta histories become histories every provider accepts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cairn_protocol import WorkspaceIdentity
from cairn_protocol.rest import AgentImportReport
from cairn_server.agentfiles.history import HistoryMessage
from cairn_server.agentfiles.mapping import ImportPlan, PlannedBlock
from cairn_server.agentfiles.schema import AgentFileError, AgentFileTooLarge
from cairn_server.agentfiles.service import AgentExistsError, AgentFiles
from cairn_server.config import ModelSettings, ServerSettings
from cairn_server.domain import ModelMessage, ToolCall
from cairn_server.memory.blocks import Author
from cairn_server.memory.services import Memory
from cairn_server.storage.db import Database
from cairn_server.storage.models import Message, User
from cairn_server.storage.store import Store
from sqlmodel import func, select

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "agentfiles"
WORKSPACE = WorkspaceIdentity(root_commit="c" * 40, display_name="shop", path="/w/shop")
OTHER = WorkspaceIdentity(root_commit="d" * 40, display_name="shop", path="/w/shop2")
SETTINGS = ServerSettings(model=ModelSettings(openai_base_url="http://127.0.0.1:9/v1"))

# (kept, converted, left out) of each public file, as the report counts them.
SHARED_COUNTS = {
    "customer_service.af": (3, 5, 9),
    "deep_research_agent.af": (5, 3, 9),
    "memgpt_agent.af": (3, 5, 5),
    "memgpt_agent_with_convo.af": (3, 5, 5),
}

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def shared_file(name: str) -> bytes:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    return path.read_bytes()


def letta_file(**agent: Any) -> dict[str, Any]:
    """A small agent file in Letta's shape, with `agent`'s fields on top."""
    base: dict[str, Any] = {
        "name": "helper",
        "system": "You are a helpful assistant.",
        "block_ids": ["block-0"],
        "tool_ids": [],
        "llm_config": {"model": "gpt-4o-mini", "model_endpoint_type": "openai"},
        "messages": [],
    }
    block = {"id": "block-0", "label": "human", "value": "Name: Ana", "limit": 100}
    return {"agents": [{**base, **agent}], "blocks": [block], "tools": []}


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


async def user_of(store: Store) -> User:
    return await store.ensure_user("dev")


def totals(report: AgentImportReport) -> tuple[int, int, int]:
    return report.total("kept"), report.total("converted"), report.total("left_out")


async def row_count(database: Database, table: Any) -> int:
    async with database.session(read_only=True) as session:
        return int((await session.exec(select(func.count()).select_from(table))).one())


# ---------------------------------------------------------------------- the public files


@sqlite_only
@pytest.mark.parametrize("name", sorted(SHARED_COUNTS))
async def test_each_public_file_imports_with_its_report(
    database: Database, store: Store, name: str
) -> None:
    raw = shared_file(name)
    report = await AgentFiles(database).import_file(raw, await user_of(store), WORKSPACE, SETTINGS)
    assert totals(report) == SHARED_COUNTS[name]
    document = json.loads(raw)
    document = json.loads(document) if isinstance(document, str) else document
    memory = Memory.open(database)
    stored = {b.label: b for b in await memory.blocks.list_blocks(report.agent.id)}
    for block in document["blocks"]:
        kept = stored[block["label"]]
        assert (kept.value, kept.char_limit, kept.read_only) == (
            block["value"],
            block["limit"],
            block["read_only"],
        )
    assert stored["instructions"].value == document["agents"][0]["system"].strip("\n")
    assert stored["instructions"].read_only
    tools = {i.name: i for i in report.items if i.kind == "tool"}
    assert {t["name"] for t in document["tools"]} == set(tools)
    for tool in document["tools"]:  # Python tools are listed, never taken in as code
        if tool["source_code"]:
            assert tools[tool["name"]].outcome == "left_out"
            assert "never executed" in tools[tool["name"]].reason


async def test_letta_tools_cairn_has_are_converted_and_the_others_left_out(
    database: Database, store: Store
) -> None:
    document = letta_file(tool_ids=["t-fetch", "t-search", "t-code"])
    document["tools"] = [
        {"id": "t-fetch", "name": "fetch_webpage", "tool_type": "letta_builtin"},
        {"id": "t-search", "name": "web_search", "tool_type": "letta_builtin"},
        {"id": "t-code", "name": "roll_dice", "source_code": "def roll_dice(): ..."},
    ]
    report = await AgentFiles(database).import_file(
        encoded(document), await user_of(store), WORKSPACE, SETTINGS
    )
    tools = {item.name: (item.outcome, item.reason) for item in report.items if item.kind == "tool"}
    assert tools["fetch_webpage"] == (
        "converted",
        "replaced by Cairn's fetch_url (each fetch asked for, as your rules say)",
    )
    assert tools["web_search"] == ("left_out", "letta_builtin: Cairn has no counterpart")
    assert tools["roll_dice"][0] == "left_out" and "never executed" in tools["roll_dice"][1]


@sqlite_only
async def test_a_model_the_server_can_run_becomes_the_agents_model(
    database: Database, store: Store
) -> None:
    files = AgentFiles(database)
    user = await user_of(store)
    openai = await files.import_file(shared_file("memgpt_agent.af"), user, WORKSPACE, SETTINGS)
    assert (openai.agent.model, openai.agent.context_budget) == ("openai/gpt-4o-mini", 32000)
    claude = await files.import_file(shared_file("deep_research_agent.af"), user, OTHER, SETTINGS)
    assert claude.agent.model is None  # no Anthropic key here: the server's default stays
    [row] = [i for i in claude.items if i.kind == "model" and i.name.startswith("anthropic/")]
    assert row.outcome == "left_out" and "ANTHROPIC_API_KEY" in row.reason


# ---------------------------------------------------------------------- round trip


async def test_export_import_export_keeps_blocks_messages_and_settings(
    database: Database, store: Store
) -> None:
    user = await user_of(store)
    memory = Memory.open(database)
    agent = await store.get_or_create_agent(user.id, WORKSPACE)
    await memory.blocks.ensure_defaults(agent.id)
    await memory.blocks.create(
        agent.id, "team", Author("user"), value="Ana reviews", char_limit=300, read_only=True
    )
    await store.set_agent_model(agent.id, "openai/gpt-4o-mini")
    await store.set_agent_budget(agent.id, 50_000)
    first = await store.create_conversation(agent.id)
    await store.add_message(first.id, None, ModelMessage("user", "How do I run the tests?"))
    call = ToolCall("call_1", "grep", '{"pattern": "pytest"}')
    await store.add_message(first.id, None, ModelMessage("assistant", "Looking.", (call,)))
    await store.add_message(
        first.id, None, ModelMessage("tool", "Makefile:3: pytest", tool_call_id="call_1")
    )
    await store.add_event_message(first.id, None, "Block project changed elsewhere")
    await store.add_message(first.id, None, ModelMessage("assistant", "Run `make test`."))
    second = await store.create_conversation(agent.id)
    await store.add_message(second.id, None, ModelMessage("user", "Thanks"))
    await memory.archive.insert(agent.id, "Releases go out on Fridays", ["process"])

    files = AgentFiles(database)
    exported = await files.export_file(agent.id, SETTINGS)
    report = await files.import_file(encoded(exported), user, OTHER, SETTINGS)
    again = await files.export_file(report.agent.id, SETTINGS)

    assert again["blocks"] == exported["blocks"]
    assert [b["label"] for b in again["blocks"]] == ["persona", "human", "project", "team"]
    before, after = exported["agents"][0], again["agents"][0]
    for key in ("system", "llm_config", "messages", "passages", "block_ids"):
        assert after[key] == before[key], key
    assert before["llm_config"]["context_window"] == 50_000
    assert len(before["messages"]) == 1 + 6  # the system message, then both conversations
    assert report.total("left_out") == 1  # only the system message, rebuilt by Cairn


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", "not an agent file: not JSON (Expecting property name"),
        (b'{"blocks": []}', "agents: Field required"),
        (encoded({"agents": [{"messages": [{"content": "hi"}]}]}), "agents.0.messages.0.role"),
        (encoded(letta_file(block_ids=["block-9"])), "no block 'block-9'"),
    ],
)
@sqlite_only
async def test_a_file_that_is_not_an_agent_file_is_refused_in_one_line(
    database: Database, store: Store, raw: bytes, error: str
) -> None:
    with pytest.raises(AgentFileError) as refused:
        await AgentFiles(database).import_file(raw, await user_of(store), WORKSPACE, SETTINGS)
    assert error in str(refused.value) and "\n" not in str(refused.value)
    assert await store.list_agents((await user_of(store)).id) == []


async def test_memory_that_cannot_be_kept_refuses_the_whole_import(
    database: Database, store: Store
) -> None:
    user = await user_of(store)
    files = AgentFiles(database)
    talk = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    over = letta_file(messages=talk)
    over["blocks"][0]["value"] = "x" * 101
    secret = letta_file(messages=talk)
    secret["blocks"][0]["value"] = "token: ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    cases = [(over, "holds 101 characters, over its limit of 100"), (secret, "holds a secret")]
    for document, error in cases:
        with pytest.raises(AgentFileError, match=error):
            await files.import_file(encoded(document), user, WORKSPACE, SETTINGS)
    with pytest.raises(AgentFileError, match="or import with --raise-limits"):
        await files.import_file(encoded(over), user, WORKSPACE, SETTINGS)
    with pytest.raises(AgentFileTooLarge, match="50.0 MiB; Cairn reads agent files up to 32"):
        await files.import_file(b" " * (50 * 2**20), user, WORKSPACE, SETTINGS)
    assert await store.list_agents(user.id) == []
    assert await row_count(database, Message) == 0


async def test_raise_limits_keeps_a_block_over_its_limit_and_says_so(
    database: Database, store: Store
) -> None:
    """Public agent files hold blocks over their own limits (Letta checks limits on edits):
    with --raise-limits the block is kept whole, its limit raised, and the report says so."""
    over = letta_file()
    over["blocks"][0]["value"] = "x" * 150
    report = await AgentFiles(database).import_file(
        encoded(over), await user_of(store), WORKSPACE, SETTINGS, raise_limits=True
    )
    row = next(item for item in report.items if item.kind == "block")
    assert (row.outcome, row.reason) == (
        "converted",
        "limit 100 raised to 150 to hold it (--raise-limits)",
    )
    blocks = await Memory.open(database).blocks.list_blocks(report.agent.id)
    human = next(block for block in blocks if block.label == "human")
    assert (human.value, human.char_limit) == ("x" * 150, 150)


async def test_an_import_is_one_transaction(database: Database, store: Store) -> None:
    """A failure after the messages were written (here two blocks of one label, which the
    planner never makes) leaves no agent, conversation, message or block behind."""
    user = await user_of(store)
    block = PlannedBlock("human", "Ana", "", 100, False)
    plan = ImportPlan(
        name="broken",
        blocks=[block, block],
        messages=[HistoryMessage("user", f"message {n}") for n in range(2500)],
    )
    with pytest.raises(AgentFileError, match="nothing was imported"):
        await AgentFiles(database).store_plan(plan, user, WORKSPACE, 100_000)
    assert await store.list_agents(user.id) == []
    assert await row_count(database, Message) == 0


async def test_an_existing_agent_is_set_aside_only_with_replace(
    database: Database, store: Store
) -> None:
    user = await user_of(store)
    files = AgentFiles(database)
    before = await store.get_or_create_agent(user.id, WORKSPACE)
    with pytest.raises(AgentExistsError, match="--replace"):
        await files.import_file(encoded(letta_file()), user, WORKSPACE, SETTINGS)
    report = await files.import_file(encoded(letta_file()), user, WORKSPACE, SETTINGS, replace=True)
    assert report.replaced_agent_id == before.id
    now = await store.get_or_create_agent(user.id, WORKSPACE)
    assert now.id == report.agent.id != before.id
    kept = await store.get_agent(before.id)
    assert kept is not None and kept.codebase_key.startswith("replaced:")


# ---------------------------------------------------------------------- other public files


def tool_call(call_id: str, name: str, arguments: dict[str, str]) -> dict[str, Any]:
    """A call in the OpenAI form Letta's files use."""
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def long_history(turns: int) -> list[dict[str, Any]]:
    """A Letta history: a system message, MemGPT envelopes, send_message replies, tool
    calls with results (some never answered), reasoning and a heartbeat."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "compiled prompt"}]
    for n in range(turns):
        text = json.dumps({"type": "user_message", "message": f"question {n} about turnip{n}"})
        messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
        call = tool_call(f"c{n}", "web_search", {"query": f"q{n}"})
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "reasoning", "reasoning": "let me look"}],
                "tool_calls": [call],
            }
        )
        if n % 10:  # every tenth call is never answered
            messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": f"result {n}"})
        reply = tool_call(f"r{n}", "send_message", {"message": f"answer {n}"})
        messages.append({"role": "assistant", "content": "inner", "tool_calls": [reply]})
        messages.append({"role": "tool", "tool_call_id": f"r{n}", "content": "None"})
    alert = json.dumps({"type": "heartbeat", "message": "woke up"})
    messages.append({"role": "user", "content": alert})
    return messages


async def test_a_long_letta_history_becomes_one_every_provider_accepts(
    database: Database, store: Store
) -> None:
    turns = 1000
    document = letta_file(
        messages=long_history(turns),
        enable_sleeptime=True,
        tool_rules=[{"tool_name": "send_message", "type": "exit_loop"}],
        mystery_setting={"x": 1},
    )
    document["blocks"] += [
        {"id": f"block-{n}", "label": f"Topic-{n}", "value": f"notes {n}"} for n in range(1, 40)
    ]
    document["blocks"][1]["colour"] = "teal"
    document["agents"][0]["block_ids"] = [b["id"] for b in document["blocks"]]
    document["groups"] = [{"id": "group-0", "agent_ids": ["agent-0"], "description": "g"}]
    document["skills"] = [{"name": "triage"}]
    document["agents"].append({"name": "sleeper"})

    report = await AgentFiles(database).import_file(
        encoded(document), await user_of(store), WORKSPACE, SETTINGS
    )
    rows = {(i.kind, i.name): i for i in report.items}
    assert rows[("messages", "messages")].count == turns * 2 - turns // 10
    assert rows[("messages", "send_message calls")].count == turns
    assert rows[("messages", "unanswered tool calls")].count == turns // 10
    assert rows[("messages", "MemGPT user envelopes")].count == turns
    assert rows[("messages", "system notices")].count == 1
    assert rows[("block", "topic_7")].outcome == "converted"
    for left_out in ("enable_sleeptime", "tool_rules"):
        assert rows[("setting", left_out)].outcome == "left_out"
    assert rows[("field", "mystery_setting")].reason == "unknown fields, ignored"
    assert rows[("field", "block topic_1: colour")].outcome == "left_out"
    assert {("file", "groups"), ("file", "skills"), ("agent", "sleeper")} <= set(rows)

    assert report.conversation_id is not None
    stored = await store.list_messages(report.conversation_id)
    assert_provider_rules(stored)
    assert Counter(m.role for m in stored)["assistant"] == turns * 2
    assert stored[3].content == "answer 0" and stored[-1].role == "event"
    memory = Memory.open(database)
    [hit] = await memory.recall.search(report.agent.id, "turnip732", limit=1)
    assert hit.content == "question 732 about turnip732"


def assert_provider_rules(messages: list[Message]) -> None:
    """Every tool call is answered, by the messages just after it, before anything else."""
    waiting: set[str] = set()
    for message in messages:
        if message.role == "tool":
            assert message.tool_call_id in waiting, message.tool_call_id
            waiting.discard(message.tool_call_id)
            continue
        assert not waiting, f"unanswered before {message.role}: {waiting}"
        waiting = {str(call["id"]) for call in message.tool_calls or []}
    assert not waiting
    ids = [str(call["id"]) for m in messages for call in m.tool_calls or []]
    assert len(ids) == len(set(ids))
    assert all(m.content or m.tool_calls for m in messages if m.role == "assistant")


async def test_times_without_a_zone_and_older_function_results_are_read(
    database: Database, store: Store
) -> None:
    history = [
        {"role": "user", "content": "When?", "created_at": "2025-01-02T03:04:05"},
        {"role": "assistant", "tool_calls": [tool_call("f1", "clock", {})]},
        {"role": "function", "tool_call_id": "f1", "content": "noon"},
    ]
    report = await AgentFiles(database).import_file(
        encoded(letta_file(messages=history)), await user_of(store), WORKSPACE, SETTINGS
    )
    assert report.conversation_id is not None
    first, call, result = await store.list_messages(report.conversation_id)
    assert first.created_at.replace(tzinfo=None).isoformat() == "2025-01-02T03:04:05"
    assert first.created_at.utcoffset() in (None, timedelta(0))
    assert (result.role, result.tool_call_id, result.content) == ("tool", "f1", "noon")
    assert call.tool_calls[0]["id"] == "f1"
