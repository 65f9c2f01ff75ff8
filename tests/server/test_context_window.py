"""The context window as a unit: a temporary SQLite store, an in-process model.

Every request fits the budget; between compactions each request starts with the previous one
(the prefix a provider caches); a failing or overlong summary falls back to the digest;
preparing a request writes nothing, and its draft is compiled again only when what it is
compiled from changes. The budget, prefix and digest properties are also checked end to end,
once each, in test_compaction.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from cairn_protocol import CLIENT_TOOLS, ContextCompacted, Usage
from cairn_server.config import ModelSettings
from cairn_server.context import window as window_module
from cairn_server.context.budget import Budget
from cairn_server.context.compiler import (
    AgentContext,
    CompiledContext,
    compile_context,
    count_context,
)
from cairn_server.context.memory_view import MemorySections
from cairn_server.context.window import ContextWindow
from cairn_server.domain import ModelMessage, ModelRequest, ToolCall
from cairn_server.memory.blocks import Author
from cairn_server.memory.services import Memory
from cairn_server.providers.base import (
    Completed,
    Provider,
    ProviderError,
    StreamEvent,
    TextDelta,
)
from cairn_server.providers.catalog import ModelCatalog
from cairn_server.providers.model_list import Listing
from cairn_server.storage.db import Database
from cairn_server.storage.models import Message
from cairn_server.storage.store import Store
from cairn_server.tools.registry import TOOLS
from sqlmodel import col, delete
from support.store import agent_in_conversation

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BUDGET = Budget(tokens=6000, threshold=0.8)
LONG_OUTPUT = "\n".join(
    f"{n:4}\tvalue_{n} = compute({n}, mode='fast')  # step {n}" for n in range(60)
)


class ScriptedSummariser:
    """A Provider in this process: answers each summary request with the next text, or
    fails with `error` when it has one."""

    model = "summariser"

    def __init__(self, texts: Sequence[str] = (), error: str | None = None) -> None:
        self.texts = list(texts)
        self.error = error
        self.requests: list[ModelRequest] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        if self.error is not None:
            raise ProviderError(self.error)
        yield TextDelta(self.texts[len(self.requests) - 1])
        yield Completed("end_turn", Usage())

    async def list_models(self) -> Listing | None:
        return None  # never asked: summaries are not checked against a list

    async def aclose(self) -> None:
        pass


async def context_window(
    store: Store, database_memory: Memory, summariser: Provider | None, budget: Budget = BUDGET
) -> ContextWindow:
    """A fresh conversation's window, summarised by `summariser` (None: digest only)."""
    agent, conversation_id = await agent_in_conversation(store, database_memory)
    return ContextWindow(
        store=store,
        memory=database_memory,
        context=AgentContext(agent.display_name, TOOLS.specs(CLIENT_TOOLS)),
        agent_id=agent.id,
        conversation_id=conversation_id,
        budget=budget,
        catalog=ModelCatalog(ModelSettings(), factory=lambda _model: summariser)
        if summariser is not None
        else ModelCatalog(ModelSettings()),
        model=None if summariser is None else ScriptedSummariser.model,
    )


@dataclass(frozen=True)
class Step:
    """What a run does before a model call: memory notes, compaction when due, the request."""

    compiled: CompiledContext
    tokens: int
    compaction: ContextCompacted | None


async def before_model_call(window: ContextWindow) -> Step:
    await window.note_memory_changes(None)
    compaction, prepared = await window.next_request(None)
    return Step(prepared.compiled, prepared.tokens, compaction)


async def converse(window: ContextWindow, turns: int) -> list[Step]:
    """`turns` exchanges as a run makes them (every fifth reads a file with a long output);
    the request prepared before each model answer, in order."""
    store, conversation = window.store, window.conversation_id
    prepared: list[Step] = []
    for k in range(turns):
        text = f"Turn {k}: look at feature-{k} in src/mod{k}.py; its cache invalidation fails."
        await store.add_message(conversation, None, ModelMessage("user", text))
        if k % 5 == 2:
            prepared.append(await before_model_call(window))
            read = ToolCall(f"call_{k}", "read", f'{{"path": "src/mod{k}.py"}}')
            reading = ModelMessage("assistant", f"Reading mod{k}.", tool_calls=(read,))
            await store.add_message(conversation, None, reading)
            result = ModelMessage("tool", LONG_OUTPUT, tool_call_id=read.id)
            await store.add_message(conversation, None, result)
        prepared.append(await before_model_call(window))
        answer = ModelMessage("assistant", f"Answer {k}: mod{k} keeps its cache in memory.")
        await store.add_message(conversation, None, answer)
    return prepared


def compactions(prepared: list[Step]) -> list[ContextCompacted]:
    return [p.compaction for p in prepared if p.compaction is not None]


@pytest.fixture
def memory(database: Database) -> Memory:
    return Memory.open(database)


async def summarised_conversation(
    store: Store, memory: Memory
) -> tuple[ScriptedSummariser, list[Step]]:
    """60 exchanges whose compactions are summarised as SUMMARY-0, SUMMARY-1, ..."""
    summariser = ScriptedSummariser([f"SUMMARY-{n}: goals, files, errors." for n in range(40)])
    window = await context_window(store, memory, summariser)
    return summariser, await converse(window, 60)


async def test_no_request_exceeds_the_budget_and_compaction_starts_at_the_threshold(
    store: Store, memory: Memory
) -> None:
    summariser, prepared = await summarised_conversation(store, memory)

    assert max(count_context(p.compiled).total for p in prepared) <= BUDGET.tokens
    assert max(p.tokens for p in prepared) <= BUDGET.tokens
    done = compactions(prepared)
    assert done and len(summariser.requests) == len(done)
    for compaction in done:
        assert compaction.method == "summary" and compaction.trigger == "threshold"
        assert compaction.tokens_before > BUDGET.trigger >= compaction.tokens_after
    for step in prepared:
        if step.compaction is None:
            assert step.tokens <= BUDGET.trigger


async def test_between_compactions_each_request_extends_the_one_before(
    store: Store, memory: Memory
) -> None:
    _, prepared = await summarised_conversation(store, memory)

    summaries_seen = 0
    for previous, current in zip(prepared, prepared[1:], strict=False):
        before, after = previous.compiled.request, current.compiled.request
        if current.compaction is not None:
            summaries_seen += 1
            assert f"SUMMARY-{summaries_seen - 1}" in after.system
            continue
        assert after.system == before.system and after.tools == before.tools
        assert after.messages[: len(before.messages)] == before.messages
    assert summaries_seen == len(compactions(prepared)) > 0


async def test_a_failing_summariser_falls_back_to_a_digest(store: Store, memory: Memory) -> None:
    window = await context_window(store, memory, ScriptedSummariser(error="summaries are off"))

    prepared = await converse(window, 40)

    done = compactions(prepared)
    assert done and all(c.method == "trim" for c in done)
    assert "summary model failed" in (done[0].detail or "")
    last_system = prepared[-1].compiled.request.system
    assert "Compacted without a model summary" in last_system
    assert "Turn 39" not in last_system and "conversation_search" in last_system
    assert max(p.tokens for p in prepared) <= BUDGET.tokens


async def test_an_overlong_summary_or_no_summariser_falls_back_to_a_digest(
    store: Store, memory: Memory
) -> None:
    overlong = await context_window(store, memory, ScriptedSummariser(["word " * 3000] * 20))
    alone = await context_window(store, memory, None)

    overlong_done = compactions(await converse(overlong, 40))
    alone_done = compactions(await converse(alone, 40))

    assert overlong_done and {c.method for c in overlong_done} == {"trim"}
    assert "over the limit" in (overlong_done[0].detail or "")
    assert alone_done and {c.method for c in alone_done} == {"trim"}
    assert "no model is configured" in (alone_done[0].detail or "")


@pytest.fixture
async def window(store: Store, database: Database) -> ContextWindow:
    window = await context_window(store, Memory.open(database), None, Budget(100_000, 0.8))
    question = ModelMessage("user", "what does app.py do?")
    await store.add_message(window.conversation_id, None, question)
    return window


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


async def test_a_message_committed_late_with_a_lower_id_still_reaches_the_request(
    window: ContextWindow, store: Store
) -> None:
    """Each step reads only the messages it has not read; one that a concurrent writer
    committed after a later one (PostgreSQL hands out ids before commit) is not skipped."""
    conversation = window.conversation_id
    await store.add_message(conversation, None, ModelMessage("user", "first"))
    late_id = (await store.add_message(conversation, None, ModelMessage("user", "gap"))).id
    await store.add_message(conversation, None, ModelMessage("user", "third"))
    async with store._transaction() as session:  # the id the late writer was handed
        await session.exec(delete(Message).where(col(Message.id) == late_id))
    contents = [m.content for m in (await window.prepare()).compiled.request.messages]
    assert contents[-2:] == ["first", "third"]

    async with store._transaction() as session:
        session.add(Message(id=late_id, conversation_id=conversation, role="user", content="late"))
    contents = [m.content for m in (await window.prepare()).compiled.request.messages]
    assert contents[-3:] == ["first", "late", "third"]


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


async def test_no_summary_is_asked_for_when_compacting_could_not_shrink_the_request(
    store: Store, memory: Memory
) -> None:
    summariser = ScriptedSummariser(["SUMMARY: never needed."])
    window = await context_window(store, memory, summariser)
    conversation = window.conversation_id
    await store.add_message(conversation, None, ModelMessage("user", "hi"))
    await store.add_message(conversation, None, ModelMessage("assistant", "Hello."))
    await store.add_message(conversation, None, ModelMessage("user", "word " * 3600))
    assert (await window.prepare()).tokens > BUDGET.trigger  # due, but only "hi" could leave

    step = await before_model_call(window)

    assert step.compaction is None and summariser.requests == []
    assert step.tokens <= BUDGET.tokens


async def test_a_summary_no_smaller_than_what_it_replaces_is_dropped_and_not_asked_again(
    store: Store, memory: Memory
) -> None:
    summariser = ScriptedSummariser(["a long-winded summary " * 150] * 3)
    window = await context_window(store, memory, summariser)
    conversation = window.conversation_id
    await store.add_message(conversation, None, ModelMessage("user", "alpha " * 600))
    await store.add_message(conversation, None, ModelMessage("assistant", "Noted."))
    await store.add_message(conversation, None, ModelMessage("user", "word " * 3600))

    first = await before_model_call(window)
    second = await before_model_call(window)

    assert first.compaction is None and second.compaction is None
    assert len(summariser.requests) == 1  # the same cut is not summarised twice
    stored = await store.get_conversation(conversation)
    assert stored is not None and stored.summary == ""
    assert second.tokens <= BUDGET.tokens  # shortened to fit instead, as a last resort
