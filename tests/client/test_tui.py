"""The Textual app under Pilot, driven by a scripted session calling the listener like the real one.

Covers what a user notices: streaming, approvals, interrupts, setup, history, status and input.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from cairn_client.policy.settings import PolicySettings, load_settings
from cairn_client.policy.types import Approval, Verdict
from cairn_client.tools.base import McpCall, PreparedCall, Preview, ToolOutcome
from cairn_client.tools.registry import prepare_call, redact_outcome
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_client.tui.screens.setup import SetupScreen
from cairn_client.tui.widgets.chat import AssistantEntry, ToolEntry
from cairn_protocol import ServerFrame
from cairn_protocol.messages import (
    AssistantDelta,
    AssistantMessage,
    ContextCompacted,
    ErrorEvent,
    HistoryItem,
    HistoryToolCall,
    ModelRetry,
    RunFinished,
    RunStarted,
    StepFinished,
    ToolRequest,
    ToolSettled,
    ToolWithdrawn,
    Usage,
    UserMessage,
)
from support.scripted_tui import (
    asked,
    edit_call,
    finished,
    grep_call,
    read_call,
    scripted_run,
    settle,
    shell_call,
    type_and_send,
    welcome,
)
from support.settings import policy_for
from support.tui import chat_entries, rendered_text, status_text, tool_entries, tool_results
from support.waiting import until
from textual.widget import Widget
from textual.widgets import Input


async def test_streamed_answer_appears_and_the_final_message_replaces_it() -> None:
    async with scripted_run() as (app, session, pilot):
        await pilot.press(*"Fix it", "enter")
        await settle(pilot)
        assert session.sent == ["Fix it"]

        session.events(RunStarted(seq=4, run_id="run-1", user_text="Fix it"))
        session.events(
            AssistantDelta(seq=4, run_id="run-1", text="Looking at **src/"),
            AssistantDelta(seq=4, run_id="run-1", text="app.py** now"),
        )
        await settle(pilot)
        assert chat_entries(app) == ["Fix it", "Looking at **src/app.py** now"]
        assert "running…" in status_text(app)

        # A replayed delta garbles the stream; the complete message puts it right.
        session.events(AssistantDelta(seq=4, run_id="run-1", text="app.py** now"))
        session.events(AssistantMessage(seq=5, run_id="run-1", text="Looking at **src/app.py**."))
        await settle(pilot)
        assert chat_entries(app) == ["Fix it", "Looking at **src/app.py**."]
        paragraph = app.chat.query_one(AssistantEntry).query_one("MarkdownParagraph", Widget)
        assert rendered_text(paragraph) == "Looking at src/app.py."  # rendered, not raw Markdown

        session.events(finished())
        await settle(pilot)
        assert "running…" not in status_text(app)
        assert chat_entries(app) == ["Fix it", "Looking at **src/app.py**."]


async def test_repository_settings_that_would_widen_permissions_are_shown_as_ignored(
    tmp_path: Path,
) -> None:
    (tmp_path / ".cairn").mkdir()
    (tmp_path / ".cairn" / "settings.toml").write_text(
        'mode = "bypass"\n[permissions]\nallow = ["shell(curl:*)"]\ndeny = ["read(secrets/**)"]\n'
    )
    policy = policy_for(load_settings(tmp_path, user_file=tmp_path / "absent.toml"))
    async with scripted_run(policy=policy) as (app, _session, pilot):
        entries = chat_entries(app)
        assert any("mode 'bypass' would widen 'default'; ignored" in e for e in entries)
        assert any("allow rules are ignored" in e for e in entries)
        assert policy.settings.deny == ["read(secrets/**)"]  # narrowing still applies


async def test_text_after_a_tool_call_starts_a_new_answer_below_the_tool_line() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="What does app.py do?"),
            AssistantDelta(seq=4, run_id="run-1", text="Let me read it."),
            AssistantMessage(seq=5, run_id="run-1", text="Let me read it."),
        )
        app.tool_handled(read_call(), Verdict("allow", "read-only"), ToolOutcome("ok", "1\tx"))
        session.events(
            AssistantDelta(seq=8, run_id="run-1", text="It computes totals."),
            AssistantMessage(seq=9, run_id="run-1", text="It computes totals."),
            finished(),
        )
        await settle(pilot)
        assert chat_entries(app) == [
            "What does app.py do?",
            "Let me read it.",
            "✓ read src/app.py",
            "It computes totals.",
        ]


async def test_tool_calls_show_as_compact_lines() -> None:
    async with scripted_run() as (app, session, pilot):
        app.tool_handled(read_call(), Verdict("allow", "read-only"), ToolOutcome("ok", "1\tx"))
        task = await asked(pilot, session, edit_call())
        await pilot.press("y")
        await task
        app.tool_handled(
            edit_call(),
            Verdict("allow", "allowed once by the user"),
            ToolOutcome("ok", "edited", changed_files=("src/app.py",)),
        )
        app.tool_handled(
            shell_call("rm -rf build"),
            Verdict("deny", "rm is denied by policy"),
            ToolOutcome("denied", reason="rm is denied by policy"),
        )
        app.tool_handled(
            grep_call("TODO("),
            Verdict("allow", "read-only"),
            ToolOutcome("error", reason="regex parse error: unclosed group"),
        )
        await settle(pilot)
        assert chat_entries(app) == [
            "✓ read src/app.py",
            "✓ edit src/app.py (allowed once)",
            '✗ shell "rm -rf build" denied: rm is denied by policy',
            '! grep "TODO(" error: regex parse error: unclosed group',
        ]


def in_another_client(
    seq: int, run_id: str, call_id: str, tool: str, **arguments: str
) -> ToolRequest:
    """A tool request the server gave another client (cli_other) to run."""
    return ToolRequest(
        seq=seq,
        run_id=run_id,
        call_id=call_id,
        tool=tool,
        arguments=arguments,
        executor="cli_other",
    )


async def test_a_request_another_client_runs_is_shown_never_asked_about() -> None:
    waiting = in_another_client(2, "run-0", "call-w", "read", path="README.md")
    shell = in_another_client(7, "run-1", "call-s", "shell", command="pwd >> where.txt")
    async with scripted_run(welcome(pending=[waiting])) as (app, session, pilot):
        session.events(shell, shell.model_copy())  # a replay of the same request changes nothing
        await settle(pilot)
        running = [re.sub(r"  \d+s$", "  Ns", entry[1:]) for entry in chat_entries(app)]
        assert running == [
            " read README.md — running in another client  Ns",
            ' shell "pwd >> where.txt" — running in another client  Ns',
        ]
        session.events(ToolSettled(seq=8, run_id="run-1", call_id="call-s", status="ok"))
        await settle(pilot)
        assert chat_entries(app)[1:] == ['✓ shell "pwd >> where.txt" — in another client']
        assert not isinstance(app.screen, ApprovalScreen)


GO_ON = 'Send "continue" to pick the work up where it stopped.'


@pytest.mark.parametrize(
    ("stop_reason", "detail", "line"),
    [
        ("cancelled", None, "Interrupted."),
        ("step_limit", None, f"Step limit reached. {GO_ON}"),
        (
            "step_limit",
            "stopped after 200 model calls, the run's step limit (CAIRN_STEP_LIMIT)",
            "Step limit reached: stopped after 200 model calls, the run's step limit "
            f"(CAIRN_STEP_LIMIT). {GO_ON}",
        ),
        (
            "token_limit",
            "stopped after 2,000,412 tokens in 61 model calls, the run's limit being 2,000,000 "
            "(CAIRN_RUN_TOKEN_LIMIT)",
            "Token limit reached: stopped after 2,000,412 tokens in 61 model calls, the run's "
            f"limit being 2,000,000 (CAIRN_RUN_TOKEN_LIMIT). {GO_ON}",
        ),
        (
            "cost_limit",
            "stopped after $5.02 in 40 model calls, the run's limit being $5.00 "
            "(CAIRN_RUN_COST_LIMIT_USD)",
            "Cost limit reached: stopped after $5.02 in 40 model calls, the run's limit being "
            f"$5.00 (CAIRN_RUN_COST_LIMIT_USD). {GO_ON}",
        ),
        (
            "loop_detected",
            "stopped: the model made the same failing read call 3 times, the run's repeat "
            "limit (CAIRN_REPEAT_LIMIT)",
            "Loop detected: the model made the same failing read call 3 times, the run's "
            f"repeat limit (CAIRN_REPEAT_LIMIT). {GO_ON}",
        ),
        ("model_error", "HTTP 401: invalid API key", "Model error: HTTP 401: invalid API key"),
    ],
)
async def test_a_run_that_ends_early_says_why(
    stop_reason: Any, detail: str | None, line: str
) -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="go"),
            AssistantDelta(seq=4, run_id="run-1", text="Half an ans"),
            RunFinished(seq=5, run_id="run-1", stop_reason=stop_reason, detail=detail),
        )
        await settle(pilot)
        assert chat_entries(app) == ["go", "Half an ans", line]
        if GO_ON in line:  # the input is free again, and "continue" goes to the server as is
            await type_and_send(pilot, "continue")
            assert session.sent == ["continue"]


# ---------------------------------------------------------------- retries, context, compaction


async def test_a_retry_that_voids_streamed_text_removes_it_before_the_answer_restarts() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="go"),
            AssistantDelta(seq=4, run_id="run-1", text="The answer is"),
            ModelRetry(
                run_id="run-1",
                attempt=2,
                delay_s=2.0,
                reason="rate limited (429)",
                discarded_output=True,
            ),
        )
        await settle(pilot)
        assert chat_entries(app) == ["go"]
        assert "retrying in 2.0 s — rate limited (429) (attempt 2)" in status_text(app)

        session.events(
            AssistantDelta(seq=4, run_id="run-1", text="The answer is 42."),
            AssistantMessage(seq=5, run_id="run-1", text="The answer is 42."),
        )
        await settle(pilot)
        assert chat_entries(app) == ["go", "The answer is 42."]
        assert "running…" in status_text(app) and "retrying" not in status_text(app)


async def test_an_answer_split_by_a_notice_shows_once_when_it_is_complete() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="go"),
            AssistantDelta(seq=4, run_id="run-1", text="The answer"),
        )
        await settle(pilot)
        app.connection_changed("reconnecting", "the connection dropped")
        await settle(pilot)
        session.events(
            AssistantDelta(seq=4, run_id="run-1", text=" is 42."),
            AssistantMessage(seq=5, run_id="run-1", text="The answer is 42."),
        )
        await settle(pilot)
        lost = "Server connection lost: the connection dropped — reconnecting…"
        assert chat_entries(app) == ["go", lost, "The answer is 42."]


async def test_a_retry_that_keeps_the_streamed_text_only_shows_in_the_status_line() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="go"),
            AssistantMessage(seq=5, run_id="run-1", text="Step one done."),
            ModelRetry(run_id="run-1", attempt=1, delay_s=0.4, reason="server error (503)"),
        )
        await settle(pilot)
        assert chat_entries(app) == ["go", "Step one done."]
        assert "retrying in 0.4 s — server error (503) (attempt 1)" in status_text(app)
        session.events(finished())
        await settle(pilot)
        assert "retrying" not in status_text(app)


async def test_steps_show_the_context_use_and_usage_is_counted_once_per_run() -> None:
    async with scripted_run() as (app, session, pilot):
        assert "ctx" not in status_text(app)
        step_usage = Usage(input_tokens=1000, output_tokens=10, cost_usd=0.001)
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="go"),
            StepFinished(
                run_id="run-1", step=1, usage=step_usage, context_tokens=980, context_budget=12000
            ),
        )
        await settle(pilot)
        assert "ctx 980/12k" in status_text(app)
        assert "in 0 ·" in status_text(app)  # the run's total comes with run_finished

        session.events(
            StepFinished(
                run_id="run-1", step=2, usage=step_usage, context_tokens=3104, context_budget=12000
            ),
            finished(input_tokens=2000, output_tokens=20, cost_usd=0.002),
        )
        await settle(pilot)
        status = status_text(app)
        assert "ctx 3.1k/12k · in 2,000 · cached 0 · out 20 · $0.0020" in status


@pytest.mark.parametrize(
    ("compaction", "line"),
    [
        (
            ContextCompacted(
                seq=9,
                run_id="run-1",
                trigger="threshold",
                method="summary",
                messages_compacted=42,
                tokens_before=9812,
                tokens_after=3104,
                context_budget=12000,
            ),
            "Context compacted (summary): 42 messages → summary; "
            "9,812 → 3,104 tokens of 12,000 (freed 6,708)",
        ),
        (
            ContextCompacted(
                seq=9,
                trigger="requested",
                method="trim",
                messages_compacted=1,
                tokens_before=5000,
                tokens_after=1200,
                context_budget=100000,
                detail="the summary model failed (HTTP 500)",
            ),
            "Context compacted on request (trim): 1 message → digest; "
            "5,000 → 1,200 tokens of 100,000 (freed 3,800); "
            "digest used: the summary model failed (HTTP 500)",
        ),
        (
            ContextCompacted(
                seq=9,
                run_id="run-1",
                trigger="overflow",
                method="summary",
                messages_compacted=7,
                tokens_before=3300,
                tokens_after=900,
                context_budget=3230,
            ),
            "Context compacted after the model reported a context overflow (summary): "
            "7 messages → summary; 3,300 → 900 tokens of 3,230 (freed 2,400)",
        ),
    ],
)
async def test_a_compaction_is_one_line_in_the_chat(
    compaction: ContextCompacted, line: str
) -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(compaction)
        await settle(pilot)
        assert chat_entries(app) == [line]
        tokens, budget = compaction.tokens_after, compaction.context_budget
        assert app.status.context == (tokens, budget)


@pytest.mark.parametrize(
    ("typed", "instructions"),
    [("/compact", None), ("/compact   keep the API notes ", "keep the API notes")],
)
async def test_compact_asks_the_server_and_its_refusals_are_notices(
    typed: str, instructions: str | None
) -> None:
    async with scripted_run() as (app, session, pilot):
        await type_and_send(pilot, typed)
        assert session.compactions == [instructions]
        assert session.sent == []
        assert "compacting…" in status_text(app)

        message = "nothing to compact yet: the conversation holds only its latest exchange"
        session.events(ErrorEvent(code="nothing_to_compact", message=message))
        await settle(pilot)
        assert chat_entries(app) == [
            "Nothing to compact yet: the conversation holds only its latest exchange"
        ]
        assert "compacting…" not in status_text(app)

        session.events(RunStarted(seq=4, run_id="run-1", user_text="long job"))
        await type_and_send(pilot, "/compact")
        session.events(
            ErrorEvent(code="run_in_progress", message="a run is in progress; wait for it")
        )
        await settle(pilot)
        assert chat_entries(app)[-1] == "A run is in progress; wait for it"
        assert "running…" in status_text(app)


async def test_unexpected_events_are_shown_dim_and_the_app_keeps_working() -> None:
    async with scripted_run() as (app, session, pilot):
        app.server_event(cast(Any, UserMessage(text="not a server event")))
        session.events(ErrorEvent(seq=3, code="internal", message="database is locked"))
        await settle(pilot)
        entries = chat_entries(app)
        assert entries[0].startswith("Unexpected event: UserMessage(")
        assert entries[1] == "Server error (internal): database is locked"
        await type_and_send(pilot, "ok?")
        assert session.sent == ["ok?"]


# ---------------------------------------------------------------- approvals


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["y"], Approval(kind="once")),
        (["a"], Approval(kind="session")),
        (["p"], Approval(kind="always")),
        (
            ["n", *"not yet, any tests?", "enter"],
            Approval(kind="deny", reason="not yet, any tests?"),
        ),
        (["n", "enter"], Approval(kind="deny", reason="denied by the user")),
    ],
)
async def test_approval_screen_shows_the_diff_and_returns_the_answer(
    keys: list[str], expected: Approval
) -> None:
    async with scripted_run() as (app, session, pilot):
        task = await asked(pilot, session, edit_call())
        assert isinstance(app.screen, ApprovalScreen)
        assert rendered_text(app.screen.query_one("#approval-title")) == "Edit src/app.py"
        assert "edit" in rendered_text(app.screen.query_one("#approval-tool"))
        body = rendered_text(app.screen.query_one("#approval-body"))
        assert "-    return 1" in body
        assert "+    return sum(item.price for item in items)" in body

        await pilot.press(*keys)
        assert await asyncio.wait_for(task, 2) == expected
        await settle(pilot)
        assert not isinstance(app.screen, ApprovalScreen)
        assert app.focused is app.query_one("#prompt")


@pytest.mark.parametrize(
    ("prepared", "hint"),
    [
        (
            lambda: edit_call(),
            'p saves allow = ["edit(src/app.py)"] under [permissions] in '
            "your settings.toml and stops the asking",
        ),
        (
            lambda: shell_call("pytest -q tests/x.py"),
            'p saves allow = ["shell(pytest:*)"] under [permissions] in your settings.toml '
            "and stops the asking",
        ),
        (
            lambda: shell_call("make && make install"),
            "No allow rule can cover this call; it will keep asking.",
        ),
        (
            lambda: mcp_call("github", "create_issue", title="Crash on start"),
            'p saves allow = ["mcp(github:create_issue)"] under [permissions] in your '
            "settings.toml and stops the asking",
        ),
    ],
)
async def test_the_approval_screen_suggests_the_narrowest_rule(
    prepared: Callable[[], PreparedCall], hint: str
) -> None:
    async with scripted_run() as (app, session, pilot):
        task = await asked(pilot, session, prepared())
        assert isinstance(app.screen, ApprovalScreen)
        assert " ".join(rendered_text(app.screen.query_one("#approval-hint")).split()) == hint
        await pilot.press("y")
        await asyncio.wait_for(task, 2)


def mcp_call(server: str, tool: str, **arguments: Any) -> PreparedCall:
    """A call of an MCP server's tool, prepared as the session prepares one."""
    name = f"mcp__{server}__{tool}"
    request = ToolRequest(run_id="run-1", call_id="call-m", tool=name, arguments=arguments)
    body = json.dumps(arguments, indent=2)
    preview = Preview(f"MCP {server}: {tool}", "command", body, language="json")
    return PreparedCall(request, None, preview, mcp=McpCall(server, tool, arguments))


def prepared_shell(root: Path, **arguments: Any) -> PreparedCall:
    """A shell call prepared for real against `root`, as the session would."""
    request = ToolRequest(run_id="run-1", call_id="call-s", tool="shell", arguments=arguments)
    return prepare_call(root, request)


async def test_leaving_the_sandbox_offers_only_once_and_says_why(tmp_path: Path) -> None:
    command = "curl -sSO https://example.com/x"
    prepared = prepared_shell(tmp_path, command=command, outside_sandbox=True)
    async with scripted_run() as (app, session, pilot):
        task = await asked(pilot, session, prepared)
        assert isinstance(app.screen, ApprovalScreen)
        title = rendered_text(app.screen.query_one("#approval-title"))
        assert title == "Run shell command OUTSIDE the sandbox"
        warnings = [rendered_text(w) for w in app.screen.query(".approval-warning")]
        assert any("runs outside the sandbox" in warning for warning in warnings)
        hint = " ".join(rendered_text(app.screen.query_one("#approval-hint")).split())
        assert hint == "Running outside the sandbox asks every time; no rule can skip it."
        await pilot.press("a", "p")  # neither is offered: the screen stays
        await settle(pilot)
        assert isinstance(app.screen, ApprovalScreen) and not task.done()
        await pilot.press("y")
        assert await asyncio.wait_for(task, 2) == Approval(kind="once")


@pytest.mark.parametrize("keys", [["escape"], ["n", *"hm", "escape"]])
async def test_escape_on_the_approval_screen_denies_and_interrupts_the_run(
    keys: list[str],
) -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(RunStarted(seq=4, run_id="run-1", user_text="edit it"))
        task = await asked(pilot, session, edit_call())
        await pilot.press(*keys)
        assert await asyncio.wait_for(task, 2) == Approval(
            kind="deny", reason="interrupted by the user"
        )
        await settle(pilot)
        assert session.cancels == 1
        assert "interrupting…" in status_text(app)


@pytest.mark.parametrize(
    "ending",
    [
        ToolSettled(seq=9, run_id="run-1", call_id="call-1", status="denied", reason="timeout"),
        ToolWithdrawn(seq=9, run_id="run-1", call_id="call-1", reason="interrupted by the user"),
        RunFinished(seq=9, run_id="run-1", stop_reason="superseded"),
    ],
)
async def test_an_open_approval_closes_itself_when_the_request_ends(ending: ServerFrame) -> None:
    async with scripted_run() as (app, session, pilot):
        task = await asked(pilot, session, edit_call(call_id="call-1", run_id="run-1"))
        assert isinstance(app.screen, ApprovalScreen)
        session.events(ending)
        assert await asyncio.wait_for(task, 2) == Approval(
            kind="deny", reason="the request was withdrawn"
        )
        await settle(pilot)
        assert not isinstance(app.screen, ApprovalScreen)


async def test_a_settled_call_leaves_other_open_approvals_alone() -> None:
    async with scripted_run() as (app, session, pilot):
        first = await asked(pilot, session, edit_call(call_id="call-1"))
        second = await asked(pilot, session, edit_call(call_id="call-2"))
        session.events(ToolSettled(seq=9, run_id="run-1", call_id="call-1", status="denied"))
        assert await asyncio.wait_for(first, 2) == Approval("deny", "the request was withdrawn")
        await settle(pilot)
        assert isinstance(app.screen, ApprovalScreen)
        assert app.screen.prepared.request.call_id == "call-2"
        await pilot.press("a")
        assert await asyncio.wait_for(second, 2) == Approval(kind="session")
        await settle(pilot)
        assert not isinstance(app.screen, ApprovalScreen)


async def test_approvals_are_shown_one_at_a_time_in_the_order_asked() -> None:
    async with scripted_run() as (app, session, pilot):
        first = session.ask(edit_call(call_id="call-1"))
        second = await asked(pilot, session, edit_call(call_id="call-2"))
        assert [type(s) for s in app.screen_stack].count(ApprovalScreen) == 1
        assert isinstance(app.screen, ApprovalScreen)
        assert app.screen.prepared.request.call_id == "call-1"
        await pilot.press("y")
        assert await asyncio.wait_for(first, 2) == Approval(kind="once")
        await settle(pilot)
        assert isinstance(app.screen, ApprovalScreen)
        assert app.screen.prepared.request.call_id == "call-2"
        await pilot.press("y")
        assert await asyncio.wait_for(second, 2) == Approval(kind="once")


async def test_a_question_the_session_stops_asking_closes_its_screen() -> None:
    async with scripted_run() as (app, session, pilot):
        task = await asked(pilot, session, edit_call())
        task.cancel()
        await settle(pilot)
        assert not isinstance(app.screen, ApprovalScreen)


# ---------------------------------------------------------------- interrupt, input, quit


async def test_escape_interrupts_a_running_run_and_does_nothing_when_idle() -> None:
    async with scripted_run() as (app, session, pilot):
        await pilot.press("escape")
        await settle(pilot)
        assert session.cancels == 0

        session.events(RunStarted(seq=4, run_id="run-1", user_text="long job"))
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert session.cancels == 1
        assert "interrupting…" in status_text(app)

        session.events(finished(stop_reason="cancelled"))
        await settle(pilot)
        assert "interrupting…" not in status_text(app)
        assert chat_entries(app)[-1] == "Interrupted."


async def test_input_ignores_empty_text_sends_during_a_run_and_clear_waits_for_it() -> None:
    async with scripted_run() as (app, session, pilot):
        await type_and_send(pilot, "   ")
        assert session.sent == []
        assert chat_entries(app) == []

        await type_and_send(pilot, "first")
        session.events(RunStarted(seq=4, run_id="run-1", user_text="first"))
        await settle(pilot)
        await type_and_send(pilot, "and 2")
        assert session.sent == ["first", "and 2"]
        assert app.query_one("#prompt", Input).value == ""

        await type_and_send(pilot, "/clear")  # a new conversation: not while a run goes on
        await settle(pilot)
        assert session.switches == []
        assert "A run is going" in chat_entries(app)[-1]
        session.events(finished("run-1"))
        await settle(pilot)
        await type_and_send(pilot, "/clear")
        await settle(pilot)
        assert session.switches == ["new"]
        assert chat_entries(app) == ["New conversation (the agent's memory stays)."]
        assert session.sent == ["first", "and 2"]


async def test_init_with_a_focus_is_sent_whole_as_the_init_command() -> None:
    async with scripted_run() as (app, session, pilot):
        await type_and_send(pilot, "/init look at the billing module")
        await type_and_send(pilot, "/init")
        await settle(pilot)
        assert session.sent == ["/init look at the billing module", "/init"]
        assert session.commands == ["init", "init"]


async def test_help_lists_the_commands_and_a_headless_only_refusal_is_one_line() -> None:
    async with scripted_run() as (app, session, pilot):
        await type_and_send(pilot, "/help")
        await settle(pilot)
        listed = chat_entries(app)[-1]
        for usage in ("/compact [focus]", "/mode [name]", "/undo", "/memory", "/help"):
            assert usage in listed
        await type_and_send(pilot, "/quit now, please")  # a command takes no such text
        assert session.sent == ["/quit now, please"]
        assert not session.closed


async def test_the_command_palette_runs_the_slash_commands() -> None:
    async with scripted_run() as (app, _session, pilot):
        await pilot.press("ctrl+p", *"/help")
        await pilot.pause(0.3)  # the palette searches in the background
        await pilot.press("enter")
        await settle(pilot)
        assert "/compact [focus]" in chat_entries(app)[-1]


async def test_a_run_started_elsewhere_shows_its_user_text() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(RunStarted(seq=4, run_id="run-1", user_text="sent from another client"))
        await settle(pilot)
        assert chat_entries(app) == ["sent from another client"]


@pytest.mark.parametrize("how", [["ctrl+q"], ["ctrl+c", "ctrl+c"], [*"/quit", "enter"]])
async def test_quitting_closes_the_session_first(how: list[str]) -> None:
    async with scripted_run() as (app, session, pilot):
        await pilot.press(*how)
        await settle(pilot)
    assert session.closed
    assert app.return_value is None


async def test_cost_says_what_the_session_spent() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="work"),
            finished(input_tokens=2000, cached_input_tokens=500, output_tokens=20, cost_usd=0.002),
        )
        await settle(pilot)
        await type_and_send(pilot, "/cost")
        await settle(pilot)
        assert chat_entries(app)[-1] == (
            "This conversation: in 2,000 · cached 500 · out 20 · $0.0020\n"
            "This session: in 2,000 · cached 500 · out 20 · $0.0020"
        )
        assert session.sent == []


async def test_ctrl_c_interrupts_the_run_first_and_quits_when_pressed_again() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(RunStarted(seq=4, run_id="run-1", user_text="long job"))
        await settle(pilot)
        await pilot.press("ctrl+c")
        await settle(pilot)
        assert session.cancels == 1 and "interrupting…" in status_text(app)
        assert app.return_code is None and not session.closed  # still open
        await pilot.press("ctrl+c")
        await settle(pilot)
    assert session.closed and app.return_code == 0


async def test_ctrl_c_when_idle_asks_for_a_second_press() -> None:
    async with scripted_run() as (app, session, pilot):
        await pilot.press("ctrl+c")
        await settle(pilot)
        assert session.cancels == 0 and app.return_code is None
        assert any("Ctrl-C again" in str(n.message) for n in app._notifications)


async def test_shift_tab_cycles_the_everyday_permission_modes() -> None:
    policy = policy_for(PolicySettings(user_file=Path("/nonexistent/cairn.toml")))
    async with scripted_run(policy=policy) as (app, session, pilot):
        seen = []
        for _ in range(4):
            await pilot.press("shift+tab")
            await settle(pilot)
            seen.append(session.mode)
        assert seen == ["accept-edits", "plan", "default", "accept-edits"]
        assert "accept-edits" in status_text(app)


# ---------------------------------------------------------------- welcome, setup, history


async def test_no_model_shows_the_setup_screen_and_its_demo_exits_with_demo() -> None:
    problem = "No model is configured. Set `CAIRN_MODEL` and `OPENAI_API_KEY` on the server."
    async with scripted_run(welcome(model=None, model_problem=problem)) as (app, session, pilot):
        assert isinstance(app.screen, SetupScreen)
        shown = rendered_text(app.screen.query_one("#setup-problem MarkdownParagraph", Widget))
        assert "Set CAIRN_MODEL and OPENAI_API_KEY on the server." in shown
        await pilot.press("d")
        await settle(pilot)
    assert app.return_value == "demo"
    assert session.closed


async def test_the_setup_screen_quit_button_exits_without_demo() -> None:
    no_model = welcome(model=None, model_problem="No model.")
    async with scripted_run(no_model) as (app, session, pilot):
        await pilot.click("#setup-quit")
        await settle(pilot)
    assert app.return_value is None
    assert session.closed


HISTORY = [
    HistoryItem(role="user", text="Where is the total computed?"),
    HistoryItem(
        role="assistant",
        text="",
        tool_calls=[
            HistoryToolCall(
                call_id="h1", tool="read", arguments={"path": "src/app.py"}, status="ok"
            ),
            HistoryToolCall(
                call_id="h2",
                tool="shell",
                arguments={"command": "make test"},
                status="denied",
                reason="not now",
            ),
        ],
    ),
    HistoryItem(role="tool", text="1\tdef total(items):"),
    HistoryItem(role="assistant", text="In `total()` in **src/app.py**."),
]


async def test_history_renders_once_even_after_a_reconnect() -> None:
    async with scripted_run(welcome(history=HISTORY)) as (app, session, pilot):
        expected = [
            "Where is the total computed?",
            "✓ read src/app.py",
            '✗ shell "make test" denied: not now',
            "In `total()` in **src/app.py**.",
        ]
        assert chat_entries(app) == expected

        app.connection_changed("reconnecting", "the connection dropped")
        await settle(pilot)
        lost = "Server connection lost: the connection dropped — reconnecting…"
        assert chat_entries(app)[-1] == lost
        assert lost in status_text(app)

        app.connection_changed("reconnecting", "connecting to the server")
        app.connection_changed("connected", "connected")
        session.events(welcome(history=HISTORY))
        await settle(pilot)
        assert chat_entries(app) == [*expected, lost, "Reconnected to the server."]
        assert "connected" in status_text(app)
        assert "lost" not in status_text(app)


async def test_status_line_shows_workspace_model_and_summed_usage() -> None:
    async with scripted_run() as (app, session, pilot):
        status = status_text(app)
        assert "shop-api" in status
        assert "gpt-test" in status
        assert "connected" in status
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="a"),
            finished(
                "run-1",
                input_tokens=1200,
                cached_input_tokens=800,
                output_tokens=100,
                cost_usd=0.01,
            ),
            RunStarted(seq=21, run_id="run-2", user_text="b"),
            finished(
                "run-2",
                input_tokens=300,
                cached_input_tokens=200,
                output_tokens=50,
                cost_usd=0.0025,
            ),
        )
        await settle(pilot)
        assert "in 1,500 · cached 1,000 · out 150 · $0.0125" in status_text(app)


async def test_a_session_that_cannot_start_is_reported_not_fatal() -> None:
    failure = RuntimeError("bad server URL 'htp://x'")
    async with scripted_run(fail_with=failure) as (app, session, pilot):
        assert chat_entries(app) == ["The session stopped: bad server URL 'htp://x'"]
        assert "session failed" in status_text(app)
        await type_and_send(pilot, "hello?")
        assert session.sent == ["hello?"]  # the app still passes it on; the session refuses


async def test_a_refused_session_is_explained_once() -> None:
    refusal = RuntimeError("the server refused the session: bad token")
    async with scripted_run(fail_with=refusal, announce_failure=True) as (app, _session, pilot):
        assert chat_entries(app) == [
            "Could not reach the server: the server refused the session: bad token"
        ]
        assert "connection failed: the server refused the session" in status_text(app)


async def test_page_up_reads_back_without_new_output_pulling_the_view_down() -> None:
    async with scripted_run() as (app, session, pilot):
        session.events(
            *[
                AssistantMessage(seq=10 + n, run_id=f"run-{n}", text=f"Answer number {n}.")
                for n in range(40)
            ]
        )
        await settle(pilot)
        assert app.chat.scroll_y == app.chat.max_scroll_y > 0

        await pilot.press("pageup")
        await settle(pilot)
        reading_at = app.chat.scroll_y
        assert reading_at < app.chat.max_scroll_y
        session.events(AssistantMessage(seq=60, run_id="run-60", text="A new answer."))
        await settle(pilot)
        assert app.chat.scroll_y == reading_at

        await pilot.press("pagedown", "pagedown", "pagedown")
        session.events(AssistantMessage(seq=61, run_id="run-61", text="Another one."))
        await settle(pilot)
        assert app.chat.scroll_y == app.chat.max_scroll_y


async def test_output_that_arrives_behind_an_open_approval_is_not_lost() -> None:
    async with scripted_run() as (app, session, pilot):
        app.chat.clock = lambda: 50.0  # the running edit's elapsed time stays at 0s
        session.events(RunStarted(seq=4, run_id="run-1", user_text="two things"))
        task = await asked(pilot, session, edit_call())
        app.tool_handled(read_call(), Verdict("allow", "read-only"), ToolOutcome("ok", "1\tx"))
        session.events(
            AssistantDelta(seq=8, run_id="run-1", text="Meanwhile"),
            ErrorEvent(seq=8, code="internal", message="hiccup"),
        )
        app.connection_changed("reconnecting", "the connection dropped")
        await settle(pilot)
        assert isinstance(app.screen, ApprovalScreen)
        await pilot.press("y")
        await task
        await settle(pilot)
        assert chat_entries(app) == [
            "two things",
            "⠋ edit src/app.py  0s",  # asked first, then allowed: it runs
            "✓ read src/app.py",
            "Meanwhile",
            "Server error (internal): hiccup",
            "Server connection lost: the connection dropped — reconnecting…",
        ]


async def test_approval_screen_flags_a_destructive_command_and_shows_its_pieces(
    tmp_path: Path,
) -> None:
    prepared = prepared_shell(tmp_path, command="pytest -q && git push --force origin main")
    async with scripted_run() as (app, session, pilot):
        task = await asked(pilot, session, prepared)
        assert isinstance(app.screen, ApprovalScreen)
        warnings = [rendered_text(w) for w in app.screen.query(".approval-warning")]
        assert warnings == ["⚠ git push --force rewrites history on the remote"]
        body = rendered_text(app.screen.query_one("#approval-body"))
        assert "#   pytest -q" in body and "#   git push --force origin main" in body
        await pilot.press("n", "enter")
        assert (await asyncio.wait_for(task, 2)).kind == "deny"


class Clock:
    """The chat's clock for elapsed times, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shell_request(command: str, call_id: str = "call-s", model_call_id: str = "m-1") -> ToolRequest:
    return ToolRequest(
        seq=6,
        run_id="run-1",
        call_id=call_id,
        tool="shell",
        arguments={"command": command},
        executor="cli_this",
        model_call_id=model_call_id,
    )


async def test_a_running_call_shows_its_elapsed_time_then_its_result_collapsed() -> None:
    async with scripted_run() as (app, session, pilot):
        clock = Clock()
        app.chat.clock = clock
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="test it"),
            AssistantMessage(
                seq=5,
                run_id="run-1",
                text="",
                tool_calls=[
                    HistoryToolCall(call_id="m-1", tool="shell", arguments={"command": "pytest"})
                ],
            ),
        )
        await settle(pilot)
        assert chat_entries(app) == ["test it", '· shell "pytest"']  # asked for, not started

        session.events(shell_request("pytest"))
        await settle(pilot)
        assert chat_entries(app)[-1] == '⠋ shell "pytest"  0s'
        clock.now += 12  # the timer redraws it about once a second
        await until(pilot, lambda: chat_entries(app)[-1] == '⠹ shell "pytest"  12s')
        clock.now += 63
        await until(pilot, lambda: chat_entries(app)[-1].endswith("  1m 15s"))

        output = "exit code: 0\nstdout:\n" + "\n".join(f"test {n} ok" for n in range(42))
        app.tool_handled(
            shell_call("pytest"), Verdict("allow", "sandboxed"), ToolOutcome("ok", output)
        )
        await settle(pilot)
        assert chat_entries(app) == ["test it", '✓ shell "pytest"']  # the same entry, ended
        assert tool_results(app) == ["  ⎿ exit code 0 · 42 lines of output"]


async def test_enter_and_a_click_expand_a_result_and_collapse_it_again() -> None:
    async with scripted_run() as (app, _session, pilot):
        numbered = "\n".join(f"{n}\tline {n}" for n in range(1, 101))
        app.tool_handled(read_call(), Verdict("allow", "read-only"), ToolOutcome("ok", numbered))
        await settle(pilot)
        entry = tool_entries(app)[0]
        assert tool_results(app) == ["  ⎿ 100 lines"]

        entry.focus()
        await settle(pilot)
        assert tool_results(app) == ["  ⎿ 100 lines  enter to expand"]
        await pilot.press("enter")
        await settle(pilot)
        shown = tool_results(app)[0].splitlines()
        assert shown[0] == "  ⎿ 1\tline 1"
        assert "    … 40 lines not shown …" in shown  # capped: the head and the tail
        assert shown[-1] == "    100\tline 100"
        assert len(shown) == 61

        await pilot.press("enter")
        await settle(pilot)
        assert tool_results(app) == ["  ⎿ 100 lines  enter to expand"]

        app.query_one("#prompt", Input).focus()
        app.chat.scroll_home(animate=False)
        await settle(pilot)
        await pilot.click(ToolEntry)
        await settle(pilot)
        assert entry.has_focus and entry.expanded
        await pilot.click(ToolEntry)
        await settle(pilot)
        assert not entry.expanded


async def test_a_result_shows_what_the_model_was_given_with_secrets_cut() -> None:
    async with scripted_run() as (app, _session, pilot):
        key = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
        prepared = shell_call("cat notes.txt")
        outcome = redact_outcome(ToolOutcome("ok", f"exit code: 0\nstdout:\ntoken={key}"))
        app.tool_handled(prepared, Verdict("allow", "sandboxed"), outcome)
        await settle(pilot)
        entry = tool_entries(app)[0]
        entry.action_toggle_result()
        await settle(pilot)
        assert key not in tool_results(app)[0]
        assert outcome.content.splitlines()[-1] in tool_results(app)[0]


async def test_a_call_still_waiting_when_cairn_restarts_runs_in_its_place_in_the_history() -> None:
    waiting = HistoryToolCall(call_id="m-1", tool="shell", arguments={"command": "pytest"})
    history = [
        HistoryItem(role="user", text="test it"),
        HistoryItem(role="assistant", text="Running them.", tool_calls=[waiting]),
    ]
    pending = shell_request("pytest")
    async with scripted_run(welcome(history=history, pending=[pending])) as (app, _session, pilot):
        await settle(pilot)
        entries = chat_entries(app)
        assert entries[:2] == ["test it", "Running them."]
        assert len(entries) == 3
        assert re.fullmatch(r'. shell "pytest"  \d+s', entries[2])  # running, with its time
