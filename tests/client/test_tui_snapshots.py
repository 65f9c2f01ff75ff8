"""Snapshots of the TUI at a fixed size: a finished exchange (with the context use in the status
line), an approval with a diff, the setup.

Regenerate with `uv run pytest tests/client/test_tui_snapshots.py --snapshot-update` and look at
the SVGs under tests/client/__snapshots__/ before accepting them.
"""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

from cairn_client.policy.types import Approval, Verdict
from cairn_client.tools.base import FileChange, PreparedCall, Preview, ToolOutcome
from cairn_client.tools.web import prepare_approval
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.plan import PlanScreen
from cairn_client.tui.widgets.chat import ToolEntry
from cairn_protocol.messages import (
    AssistantDelta,
    AssistantMessage,
    RunStarted,
    StepFinished,
    ToolRequest,
)
from cairn_protocol.tools import EditArgs
from pytest_textual_snapshot import SVGImageExtension  # type: ignore[import-untyped]
from support.scripted_tui import (
    THIS_CLIENT,
    ScriptedSession,
    edit_call,
    finished,
    read_call,
    scripted_app,
    settle,
    shell_call,
    welcome,
)
from textual.pilot import Pilot
from textual.widgets import Input

# pytest-textual-snapshot 1.0 names its extension with syrupy's old `_file_extension`; syrupy 7
# reads `file_extension`, so without this the SVGs would be stored as `.raw` files.
SVGImageExtension.file_extension = "svg"

TERMINAL = (100, 30)


async def settle_steady(pilot: Pilot[Any]) -> None:
    """Settle, with the prompt's cursor not blinking: a blink phase must not fail a snapshot."""
    pilot.app.screen_stack[0].query_one("#prompt", Input).cursor_blink = False
    await settle(pilot)


ANSWER = """The total ignored the item prices. I changed `total()` to sum them:

```python
return sum(item.price for item in items)
```

The tests in `tests/test_app.py` pass again."""


def test_chat_with_a_finished_exchange(snap_compare: Any) -> None:
    app, session = scripted_app()

    async def exchange(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        await pilot.press(*"Fix the total", "enter")
        session.events(
            RunStarted(seq=4, run_id="run-1", user_text="Fix the total"),
            AssistantDelta(seq=4, run_id="run-1", text="Reading the code."),
            AssistantMessage(seq=5, run_id="run-1", text="Reading the code."),
        )
        app.tool_handled(read_call(), Verdict("allow", "read-only"), ToolOutcome("ok", "1\tx"))
        asked = session.ask(edit_call())
        await settle(pilot)
        await pilot.press("y")
        assert await asked == Approval(kind="once")
        app.tool_handled(
            edit_call(),
            Verdict("allow", "allowed once by the user"),
            ToolOutcome("ok", "edited", changed_files=("src/app.py",)),
        )
        session.events(
            AssistantDelta(seq=8, run_id="run-1", text=ANSWER[:40]),
            AssistantMessage(seq=9, run_id="run-1", text=ANSWER),
            StepFinished(run_id="run-1", step=3, context_tokens=5234, context_budget=100_000),
            finished(
                input_tokens=5234, cached_input_tokens=4096, output_tokens=187, cost_usd=0.0123
            ),
        )
        await settle(pilot)

    assert snap_compare(app, terminal_size=TERMINAL, run_before=exchange)


def test_approval_screen_with_a_diff(snap_compare: Any) -> None:
    app, session = scripted_app()
    asked: list[asyncio.Task[Approval]] = []

    async def ask(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        session.events(RunStarted(seq=4, run_id="run-1", user_text="Fix the total"))
        asked.append(session.ask(edit_call()))
        await settle(pilot)

    assert snap_compare(app, terminal_size=TERMINAL, run_before=ask)


def test_setup_screen_without_a_model(snap_compare: Any) -> None:
    problem = (
        "No model is configured for this server.\n\n"
        "Set `CAIRN_MODEL` (e.g. `openai:gpt-4.1`) and `OPENAI_API_KEY` where the server runs, "
        "or point `CAIRN_OPENAI_BASE_URL` at any OpenAI-compatible server, then restart cairn."
    )
    app, _session = scripted_app(welcome(model=None, model_problem=problem))
    assert snap_compare(app, terminal_size=TERMINAL, run_before=settle_steady)


PLAN = """1. In `src/app.py`, make `total()` add the item prices.
2. Add a test for an order of two items in `tests/test_app.py`.
3. Run `uv run pytest -q`."""


def test_plan_review_screen(snap_compare: Any) -> None:
    app, _session = scripted_app()

    async def review(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        app.push_screen(PlanScreen(PLAN, "Total ignores the item prices"))
        await settle(pilot)

    assert snap_compare(app, terminal_size=TERMINAL, run_before=review)


# ---------------------------------------------------------- 80×24, the smallest usual terminal

SMALL = (80, 24)
PYTEST_OUTPUT = "exit code: 0\nstdout:\n" + "\n".join(
    f"tests/test_app.py::test_total_{n} PASSED" for n in range(12)
)


async def transcript(pilot: Pilot[Any], session: ScriptedSession, *, finish: bool) -> None:
    """A request, a read, then `pytest -q` running for 12 s (or finished, with its output)."""
    app = pilot.app
    assert isinstance(app, CairnApp)
    await settle_steady(pilot)
    now = [100.0]
    app.chat.clock = lambda: now[0]
    session.events(
        RunStarted(seq=4, run_id="run-1", user_text="Run the tests"),
        AssistantMessage(seq=5, run_id="run-1", text="Running the test suite."),
    )
    app.tool_handled(read_call(), Verdict("allow", "read-only"), ToolOutcome("ok", "1\tx\n2\ty"))
    session.events(
        ToolRequest(
            seq=6,
            run_id="run-1",
            call_id="call-s",
            tool="shell",
            arguments={"command": "pytest -q"},
            executor=THIS_CLIENT,
        )
    )
    await settle(pilot)
    now[0] = 112.0
    app.chat.query(ToolEntry).last().refresh_state()
    if finish:
        app.tool_handled(
            shell_call("pytest -q"), Verdict("allow", "sandboxed"), ToolOutcome("ok", PYTEST_OUTPUT)
        )
    await settle(pilot)


def test_small_transcript_with_a_running_tool(snap_compare: Any) -> None:
    app, session = scripted_app()

    async def running(pilot: Pilot[Any]) -> None:
        await transcript(pilot, session, finish=False)

    assert snap_compare(app, terminal_size=SMALL, run_before=running)


def test_small_transcript_with_a_collapsed_result(snap_compare: Any) -> None:
    app, session = scripted_app()

    async def finished_call(pilot: Pilot[Any]) -> None:
        await transcript(pilot, session, finish=True)

    assert snap_compare(app, terminal_size=SMALL, run_before=finished_call)


def test_small_transcript_with_an_expanded_result(snap_compare: Any) -> None:
    app, session = scripted_app()

    async def expanded(pilot: Pilot[Any]) -> None:
        await transcript(pilot, session, finish=True)
        app.chat.query(ToolEntry).last().focus()
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=expanded)


def test_small_transcript_with_a_denied_call(snap_compare: Any) -> None:
    app, session = scripted_app()

    async def denied(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        session.events(RunStarted(seq=4, run_id="run-1", user_text="Clean the build"))
        app.tool_handled(
            shell_call("rm -rf build dist"),
            Verdict("deny", "rm -rf is denied by your settings"),
            ToolOutcome("denied", reason="rm -rf is denied by your settings"),
        )
        session.events(
            AssistantMessage(seq=8, run_id="run-1", text="I will not delete them, then."),
            finished(),
        )
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=denied)


def long_edit_call() -> PreparedCall:
    before = "".join(f"def step_{n}(order):\n    return order\n\n" for n in range(30))
    after = before.replace("return order", "return order.validated()")
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            "a/src/pipeline.py",
            "b/src/pipeline.py",
        )
    )
    arguments = {"path": "src/pipeline.py", "old_string": before, "new_string": after}
    request = ToolRequest(seq=7, run_id="run-1", call_id="call-1", tool="edit", arguments=arguments)
    return PreparedCall(
        request=request,
        args=EditArgs.model_validate(arguments),
        preview=Preview(title="Edit src/pipeline.py", kind="diff", body=diff, language="diff"),
        changes=(FileChange("src/pipeline.py", before, after),),
    )


def test_small_approval_screen_with_a_long_diff(snap_compare: Any) -> None:
    app, session = scripted_app()
    asked: list[asyncio.Task[Approval]] = []

    async def ask(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        session.events(RunStarted(seq=4, run_id="run-1", user_text="Validate every step"))
        asked.append(session.ask(long_edit_call()))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=ask)


LONG_COMMAND = (
    "uv run pytest -q tests/client/test_tui.py tests/client/test_tui_snapshots.py "
    "tests/server/test_history.py --maxfail=1 -x -k 'transcript or approval or history' "
    "&& git diff --stat origin/main...HEAD"
)


def test_small_approval_screen_with_a_long_command(snap_compare: Any) -> None:
    app, session = scripted_app()
    asked: list[asyncio.Task[Approval]] = []

    async def ask(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        session.events(RunStarted(seq=4, run_id="run-1", user_text="Check the branch"))
        asked.append(session.ask(shell_call(LONG_COMMAND)))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=ask)


FETCH_URL_ASKED = "https://docs.python.org/3/library/asyncio-task.html?highlight=wait_for#timeouts"


def test_small_approval_screen_for_a_web_fetch(snap_compare: Any) -> None:
    app, session = scripted_app()
    asked: list[asyncio.Task[Approval]] = []
    request = ToolRequest(
        seq=5,
        run_id="run-1",
        call_id="call-f",
        tool="fetch_url",
        arguments={"url": FETCH_URL_ASKED.partition("#")[0], "offset": 0},
        approve_only=True,
    )

    async def ask(pilot: Pilot[Any]) -> None:
        await settle_steady(pilot)
        session.events(RunStarted(seq=4, run_id="run-1", user_text="How do timeouts work?"))
        asked.append(session.ask(prepare_approval(request)))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=ask)
