"""What a reopened conversation shows: its totals so far (exactly once with the events that
follow the welcome) and each client call as its client reported it."""

from __future__ import annotations

from cairn_protocol import RunFinished, Usage
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
