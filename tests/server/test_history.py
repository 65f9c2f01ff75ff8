"""What a reopened conversation shows: its totals so far (exactly once with the events that
follow the welcome), how full its context was, and each client call as its client reported
it."""

from __future__ import annotations

from cairn_protocol import ContextCompacted, RunFinished, Usage
from cairn_protocol.messages import ContextUse
from cairn_server.domain import ModelMessage, ToolCall
from cairn_server.runtime.history import build_history
from cairn_server.storage.store import Store
from support.store import new_agent


async def test_totals_count_the_runs_finished_up_to_the_welcome_seq(store: Store) -> None:
    agent = await new_agent(store)
    conversation = await store.create_conversation(agent.id)
    first = await store.append_event(
        conversation.id,
        RunFinished(
            run_id="run-1",
            stop_reason="end_turn",
            usage=Usage(
                input_tokens=1000, cached_input_tokens=200, output_tokens=50, cost_usd=0.01
            ),
        ),
    )
    await store.append_event(
        conversation.id,
        RunFinished(
            run_id="run-2",
            stop_reason="cancelled",
            usage=Usage(input_tokens=500, output_tokens=5, cost_usd=0.002),
        ),
    )
    assert await store.usage_through(conversation.id, first.seq) == Usage(
        input_tokens=1000, cached_input_tokens=200, output_tokens=50, cost_usd=0.01
    )
    both = await store.usage_through(conversation.id, first.seq + 1)
    assert (both.input_tokens, both.output_tokens) == (1500, 55)
    assert await store.usage_through(conversation.id, 0) == Usage()


async def test_the_context_gauge_is_the_last_model_call_or_a_later_compaction(
    store: Store,
) -> None:
    agent = await new_agent(store)
    conversation = await store.create_conversation(agent.id)
    assert await store.context_through(conversation.id, 0) is None
    run = await store.create_run(conversation.id, "openai/gpt-4o-mini")
    await store.record_step(run.id, Usage(input_tokens=900), 850, 12_000)
    await store.record_step(run.id, Usage(input_tokens=1300), 1234, 11_500)
    assert await store.context_through(conversation.id, 0) == ContextUse(tokens=1234, budget=11_500)
    compacted = await store.append_event(
        conversation.id,
        ContextCompacted(
            trigger="requested",
            method="summary",
            messages_compacted=4,
            tokens_before=1234,
            tokens_after=400,
            context_budget=11_500,
        ),
    )
    after = ContextUse(tokens=400, budget=11_500)
    assert await store.context_through(conversation.id, compacted.seq) == after
    # A welcome older than the compaction shows the call before it; the compaction follows.
    assert await store.context_through(conversation.id, compacted.seq - 1) == ContextUse(
        tokens=1234, budget=11_500
    )
    await store.finish_run(run.id, "end_turn")  # one running run per conversation
    later = await store.create_run(conversation.id, "openai/gpt-4o-mini")
    await store.record_step(later.id, Usage(input_tokens=500), 480, 11_500)
    assert await store.context_through(conversation.id, compacted.seq) == ContextUse(
        tokens=480, budget=11_500
    )
    # A call stored before its budget was (an older server): no gauge rather than a wrong one.
    await store.record_step(later.id, Usage(input_tokens=520), 500)
    assert await store.context_through(conversation.id, compacted.seq) is None


async def test_a_client_call_reads_as_its_client_reported_it(store: Store) -> None:
    agent = await new_agent(store)
    conversation = await store.create_conversation(agent.id)
    run = await store.create_run(conversation.id, "openai/gpt-4o-mini")
    calls = (
        ToolCall(id="m-1", name="shell", arguments='{"command": "rm -rf build"}'),
        ToolCall(id="m-2", name="read", arguments='{"path": "README.md"}'),
    )
    await store.add_message(
        conversation.id, run.id, ModelMessage("assistant", "", tool_calls=calls)
    )
    denied = await store.create_tool_call(
        conversation.id, run.id, "m-1", "shell", {"command": "rm -rf build"}
    )
    await store.settle_tool_call(denied.id, "denied", "", "rm is denied by policy")
    await store.add_message(
        conversation.id,
        run.id,
        ModelMessage(
            "tool", "The user's side denied this call.", tool_call_id="m-1", is_error=True
        ),
    )
    await store.add_message(
        conversation.id,
        run.id,
        ModelMessage("tool", "not run: interrupted by the user", tool_call_id="m-2", is_error=True),
    )
    history = build_history(
        await store.list_messages(conversation.id),
        await store.tool_calls_of_conversation(conversation.id),
        await store.approvals_of_conversation(conversation.id),
    )
    shell, read = history[0].tool_calls
    assert (shell.status, shell.reason) == ("denied", "rm is denied by policy")
    assert (read.status, read.reason) == ("error", "not run: interrupted by the user")
