"""Snapshots of the TUI at a fixed size: a finished exchange (with the context use in the status
line), an approval with a diff, the setup.

Regenerate with `uv run pytest tests/client/test_tui_snapshots.py --snapshot-update` and look at
the SVGs under tests/client/__snapshots__/ before accepting them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cairn_client.policy.types import Approval, Verdict
from cairn_client.tools.base import ToolOutcome
from cairn_client.tui.screens.plan import PlanScreen
from cairn_protocol.messages import AssistantDelta, AssistantMessage, RunStarted, StepFinished
from pytest_textual_snapshot import SVGImageExtension  # type: ignore[import-untyped]
from support.scripted_tui import (
    edit_call,
    finished,
    read_call,
    scripted_app,
    settle,
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
