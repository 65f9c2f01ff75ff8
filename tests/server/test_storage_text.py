"""Any text survives storage: NUL (which PostgreSQL refuses) in every table, read back as written.

Every test runs on SQLite and on PostgreSQL (see conftest).
"""

from __future__ import annotations

from datetime import UTC, datetime

from cairn_protocol import ToolRequest, WorkspaceIdentity
from cairn_protocol.messages import ApprovalRecord
from cairn_server.domain import ModelMessage, ToolCall
from cairn_server.memory.blocks import Author
from cairn_server.memory.services import Memory
from cairn_server.storage.db import Database
from cairn_server.storage.models import Conversation, MessageEmbedding
from cairn_server.storage.store import Store
from cairn_server.storage.text import STORED_FORM_TYPES, from_stored, to_stored
from sqlalchemy import JSON, String, Text
from sqlmodel import SQLModel, select

# NUL, the escape character itself, and the two-character spelling of an escaped NUL.
NASTY = "a\x00b \x10 \x10@ \x10\x10 é\x00"


def test_every_text_and_json_column_stores_any_text() -> None:
    """A new column cannot forget it: every string, text and JSON column escapes NUL."""
    plain = [
        f"{table.name}.{column.name}"
        for table in SQLModel.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, String | Text | JSON)
        and not isinstance(column.type, STORED_FORM_TYPES)
    ]
    assert plain == []


def test_stored_form_is_lossless_and_never_holds_nul() -> None:
    for text in (NASTY, "", "plain", "\x00", "\x10", "\x10\x10@", "x\x10y", "\x00" * 3):
        stored = to_stored(text)
        assert "\x00" not in stored
        assert from_stored(stored) == text
    assert to_stored("ordinary text is stored as it is") == "ordinary text is stored as it is"


async def test_nul_round_trips_through_every_table(database: Database) -> None:
    store = Store(database)
    memory = Memory.open(database)
    user = await store.ensure_user("al\x00ice")
    token = await store.create_token(user.name, label=NASTY)
    assert (await store.authenticate(token)).id == user.id
    identity = WorkspaceIdentity(
        root_commit=None, origin="git.example/\x00", display_name=NASTY, path="/tmp/\x00"
    )
    agent = await store.get_or_create_agent(user.id, identity)
    assert (await store.get_or_create_agent(user.id, identity)).id == agent.id
    conversation = await store.create_conversation(agent.id, NASTY)
    run = await store.create_run(conversation.id, "model\x00")
    call = ToolCall(id="m\x00", name="read", arguments='{"path": "\\u0000"}')
    await store.add_message(conversation.id, run.id, ModelMessage("user", NASTY))
    await store.add_message(
        conversation.id, run.id, ModelMessage("assistant", NASTY, tool_calls=(call,))
    )
    record = await store.create_tool_call(
        conversation.id, run.id, "m\x00", "read", {NASTY: [NASTY, {"k\x00": NASTY}]}
    )
    approval = ApprovalRecord(
        decision="allow",
        decided_by="user",
        answer="once",
        reason=NASTY,
        shown_title=NASTY,
        shown=NASTY,
        content_hash="sha256:" + "0" * 64,
        decided_at=datetime.now(UTC),
    )
    settled = await store.settle_tool_call(record.id, "ok", NASTY, NASTY, approval)
    assert settled is not None and settled.content == NASTY
    await store.append_event(
        conversation.id,
        ToolRequest(run_id=run.id, call_id=record.id, tool="read", arguments={"p": NASTY}),
    )
    await store.compact_conversation(conversation.id, NASTY, 0)
    await store.finish_run(run.id, "end_turn", NASTY)
    await memory.blocks.create(
        agent.id, "notes", Author("user", name=NASTY, reason=NASTY), value=NASTY, description=NASTY
    )
    await memory.archive.insert(agent.id, NASTY, ["t\x00g", "plain"], conversation.id, run.id)
    async with database.session() as session, session.begin():
        session.add(MessageEmbedding(message_id=1, agent_id=agent.id, model=NASTY, vector=b"\0"))
        conversation_row = await session.get(Conversation, conversation.id)
        assert conversation_row is not None
        conversation_row.memory_seen = {NASTY: 1}

    # Everything reads back exactly as written, through a fresh store.
    store = Store(database)
    assert [(t.label, u.name) for t, u in await store.list_tokens()] == [(NASTY, "al\x00ice")]
    assert (await store.ensure_user("al\x00ice")).id == user.id
    conversation_back = await store.get_conversation(conversation.id)
    assert conversation_back is not None
    assert (conversation_back.title, conversation_back.summary) == (NASTY, NASTY)
    assert conversation_back.memory_seen == {NASTY: 1}
    agent_back = await store.get_agent(agent.id)
    assert agent_back is not None
    assert (agent_back.display_name, agent_back.origin) == (NASTY, "git.example/\x00")
    messages = await store.list_messages(conversation.id)
    assert [m.content for m in messages] == [NASTY, NASTY]
    assert store.to_model_message(messages[1]).tool_calls == (call,)
    call_back = await store.get_tool_call(record.id)
    assert call_back is not None
    assert call_back.arguments == {NASTY: [NASTY, {"k\x00": NASTY}]}
    assert (call_back.content, call_back.reason, call_back.model_call_id) == (NASTY, NASTY, "m\x00")
    [approval_back] = await store.list_approvals(run.id)
    assert (approval_back.reason, approval_back.shown, approval_back.shown_title) == (NASTY,) * 3
    [event] = await store.events_after(conversation.id, 0)
    assert isinstance(event, ToolRequest) and event.arguments == {"p": NASTY}
    run_back = await store.get_run(run.id)
    assert run_back is not None and (run_back.model, run_back.detail) == ("model\x00", NASTY)
    block = await memory.blocks.get(agent.id, "notes")
    assert (block.value, block.description) == (NASTY, NASTY)
    [version] = await memory.blocks.history(agent.id, "notes")
    assert (version.value, version.author, version.reason) == (NASTY, NASTY, NASTY)
    [passage] = await memory.archive.list_passages(agent.id, tags=["T\x00G"])
    assert (passage.text, passage.tags) == (NASTY, ["t\x00g", "plain"])
    assert [p.text for p in await memory.archive.list_passages(agent.id, tags=["plain"])] == [NASTY]
    async with database.session(read_only=True) as session:
        embedding = (await session.exec(select(MessageEmbedding))).one()
    assert embedding.model == NASTY


async def test_text_around_a_nul_is_still_found_by_search(database: Database) -> None:
    store = Store(database)
    memory = Memory.open(database)
    user = await store.ensure_user("dev")
    identity = WorkspaceIdentity(root_commit="c" * 40, display_name="app", path="/app")
    agent = await store.get_or_create_agent(user.id, identity)
    conversation = await store.create_conversation(agent.id)
    await store.add_message(
        conversation.id, None, ModelMessage("tool", "binary\x00garbage then zebra")
    )
    await memory.archive.insert(agent.id, "header\x00quagga stripes")
    hits = await memory.recall.search(agent.id, "zebra")
    assert [hit.content for hit in hits] == ["binary\x00garbage then zebra"]
    assert [h.text for h in await memory.archive.search(agent.id, "quagga")] == [
        "header\x00quagga stripes"
    ]
