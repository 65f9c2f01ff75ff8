"""The context window as a unit: preparing a request writes nothing, and its compiled draft is
compiled again only when what it is compiled from changes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cairn_protocol import CLIENT_TOOLS, WorkspaceIdentity
from cairn_server.config import ModelSettings
from cairn_server.context import window as window_module
from cairn_server.context.budget import Budget
from cairn_server.context.compiler import AgentContext, CompiledContext, compile_context
from cairn_server.context.memory_view import MemorySections
from cairn_server.context.window import ContextWindow
from cairn_server.domain import ModelMessage
from cairn_server.memory.blocks import Author
from cairn_server.memory.services import Memory
from cairn_server.providers.catalog import ModelCatalog
from cairn_server.storage.db import Database
from cairn_server.storage.store import Store
from cairn_server.tools.registry import TOOLS

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def window(store: Store, database: Database) -> ContextWindow:
    memory = Memory.open(database)
    user = await store.ensure_user("dev")
    workspace = WorkspaceIdentity(root_commit="abc", display_name="repo", path="/r")
    agent = await store.get_or_create_agent(user.id, workspace)
    await memory.blocks.ensure_defaults(agent.id)
    conversation = await store.create_conversation(agent.id)
    await store.add_message(conversation.id, None, ModelMessage("user", "what does app.py do?"))
    return ContextWindow(
        store=store,
        memory=memory,
        context=AgentContext(agent.display_name, TOOLS.specs(CLIENT_TOOLS)),
        agent_id=agent.id,
        conversation_id=conversation.id,
        budget=Budget(100_000, 0.8),
        catalog=ModelCatalog(ModelSettings()),
    )


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per compilation of a draft."""
    counted: list[int] = []

    def counting(
        context: AgentContext,
        memory: MemorySections,
        messages: Sequence[ModelMessage],
        summary: str = "",
    ) -> CompiledContext:
        counted.append(len(messages))
        return compile_context(context, memory, messages, summary)

    monkeypatch.setattr(window_module, "compile_context", counting)
    return counted


async def test_a_second_request_on_an_unchanged_conversation_is_not_compiled_again(
    window: ContextWindow, store: Store, compiles: list[int]
) -> None:
    await window.note_memory_changes(None)
    first = await window.prepare()
    again = await window.prepare()
    assert again.compiled.request == first.compiled.request and again.tokens == first.tokens
    assert len(compiles) == 1

    await store.add_message(window.conversation_id, None, ModelMessage("assistant", "It prints."))
    grown = await window.prepare()
    assert len(compiles) == 2 and len(grown.compiled.request.messages) == 2


async def test_preparing_writes_nothing_and_memory_notes_are_their_own_step(
    window: ContextWindow, store: Store
) -> None:
    await window.note_memory_changes(None)  # the first request freezes the memory
    before = await store.list_messages(window.conversation_id)
    await window.memory.blocks.edit(
        window.agent_id, "project", lambda _: "Run `make check`.", Author("user")
    )
    prepared = await window.prepare()
    assert await store.list_messages(window.conversation_id) == before
    assert "make check" not in str(prepared.compiled.request.messages)

    await window.note_memory_changes(None)
    noted = await window.prepare()
    assert "<memory_update>" in noted.compiled.request.messages[-1].content
    assert "make check" in noted.compiled.request.messages[-1].content
